"""Key authorizations and the dns-01 TXT record (RFC 8555 §8.1, §8.4)."""

from __future__ import annotations

import hashlib

from .encoding import b64url

DNS01 = "dns-01"


def key_authorization(token: str, account_thumbprint: str) -> str:
    """token || '.' || base64url(JWK thumbprint): binds the challenge to this account (§8.1)."""
    return f"{token}.{account_thumbprint}"


def dns01_txt_value(key_authz: str) -> str:
    """The TXT record's value: base64url(SHA-256(key authorization)) (§8.4)."""
    return b64url(hashlib.sha256(key_authz.encode("ascii")).digest())


def dns01_record_name(identifier: str) -> str:
    """Where the TXT record goes. A wildcard's authorization names its base domain (§7.1.4)."""
    return "_acme-challenge." + identifier.removeprefix("*.")
