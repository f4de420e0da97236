"""Key authorizations and the dns-01 TXT record (RFC 8555 §8.1, §8.4)."""

from __future__ import annotations

import hashlib
from typing import Any

from .encoding import b64url
from .errors import AcmeError

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


def find_challenge(authz: dict[str, Any], challenge_type: str) -> dict[str, Any]:
    """The challenge of ``challenge_type`` in an authorization, or an AcmeError listing the offers."""
    for challenge in authz.get("challenges", []):
        if challenge.get("type") == challenge_type:
            return challenge
    offered = ", ".join(c.get("type", "?") for c in authz.get("challenges", [])) or "none"
    name = (authz.get("identifier") or {}).get("value", "?")
    raise AcmeError(f"the CA offers no {challenge_type} challenge for {name} (offered: {offered})")
