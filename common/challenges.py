"""What each ACME challenge type asks the client to publish (RFC 8555 §8 and two drafts).

Most challenges prove control of a name by publishing a value derived from the challenge's
token and the account key, the key authorization (RFC 8555 §8.1). Where the value goes, and
what form it takes, is what tells the types apart:

- dns-01 (RFC 8555 §8.4): TXT at ``_acme-challenge.<domain>``.
- http-01 (RFC 8555 §8.3): a file at ``http://<domain>/.well-known/acme-challenge/<token>``.
- dns-account-01 (draft-ietf-acme-dns-account-label): TXT at
  ``_<account label>._acme-challenge.<domain>``, a name of the account's own.
- dns-persist-01 (draft-ietf-acme-dns-persist): a long-lived TXT at
  ``_validation-persist.<domain>`` naming the CA and the account, with no token at all.

The two drafts are what Pebble 2.10 (the CA the tests run against) implements; each
function's docstring names the revision it follows.

This file stands alone: it imports only the standard library, so it can be copied into
another project as it is.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from typing import Any

DNS01 = "dns-01"
HTTP01 = "http-01"
DNS_ACCOUNT01 = "dns-account-01"
DNS_PERSIST01 = "dns-persist-01"

_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
# RFC 8555 §8.1: a token MUST hold at least 128 bits of entropy, so at least 22 base64url characters
# (every CA in use sends 43: 32 random bytes). The RFC sets no upper bound, but a token becomes a
# file name (http-01 --webroot, plus a temporary file's prefix and suffix), and most file systems
# stop at 255 bytes a name: 128 characters (768 bits) leaves room and is 3 times what any CA needs.
MIN_TOKEN_LENGTH = 22
MAX_TOKEN_LENGTH = 128
# RFC 8659 §4.2: issuer-domain-name = label *("." label), label = (ALPHA / DIGIT) *(*("-") (ALPHA / DIGIT)).
_ISSUER_DOMAIN_NAME = re.compile(r"[A-Za-z0-9](?:-*[A-Za-z0-9])*(?:\.[A-Za-z0-9](?:-*[A-Za-z0-9])*)*")
# RFC 8659 §4.2: a parameter value is printable ASCII without space or ';'.
_PARAMETER_VALUE = re.compile(r"[\x21-\x3a\x3c-\x7e]+")


def _b64url(data: bytes) -> str:
    """base64url without padding (RFC 8555 §6.1 via RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _base_domain(identifier: str) -> str:
    """A wildcard's authorization names its base domain (RFC 8555 §7.1.4)."""
    return identifier.removeprefix("*.")


# --- every token-based type ------------------------------------------------------------------


def valid_token(token: Any) -> bool:
    """True if ``token`` is base64url without padding, of 22 to 128 characters (RFC 8555 §8.1).

    Check before a token becomes part of a file name, a URL path or a DNS name: a CA that
    sends "../x", "/", "" or ten kilobytes is broken or hostile, and this project will not
    follow it there. (22 characters are the 128 bits §8.1 demands; 128 keeps a file name short.)
    """
    return (isinstance(token, str) and MIN_TOKEN_LENGTH <= len(token) <= MAX_TOKEN_LENGTH
            and _TOKEN.fullmatch(token) is not None)


def key_authorization(token: str, account_thumbprint: str) -> str:
    """token || '.' || base64url(JWK thumbprint): binds the challenge to this account (§8.1)."""
    return f"{token}.{account_thumbprint}"


# --- dns-01 ----------------------------------------------------------------------------------


def dns01_txt_value(key_authz: str) -> str:
    """The TXT record's value: base64url(SHA-256(key authorization)) (§8.4)."""
    return _b64url(hashlib.sha256(key_authz.encode("ascii")).digest())


def dns01_record_name(identifier: str) -> str:
    """Where the dns-01 TXT record goes (RFC 8555 §8.4). A wildcard's authorization names its base domain (§7.1.4).

    Pick dns-01 when you can change the domain's DNS through an API: it needs no inbound port,
    works for hosts the CA cannot reach, and is the only RFC 8555 type that can prove a
    wildcard. Its limit is the fixed name: ``_acme-challenge.<domain>`` can be CNAME-delegated
    to one place only, so two ACME clients for the same name get in each other's way.
    """
    return "_acme-challenge." + _base_domain(identifier)


# --- http-01 ---------------------------------------------------------------------------------


def http01_path(token: str) -> str:
    """The path the CA fetches over plain HTTP on port 80 (RFC 8555 §8.3).

    The response body is the key authorization itself (:func:`key_authorization`), not a
    hash of it; RFC 8555's example serves it as ``application/octet-stream``. The CA follows
    redirects. Raises ValueError for a token that is not base64url of a sensible length
    (:func:`valid_token`).

    Pick http-01 when a web server you control answers port 80 for every name on the
    certificate: it needs no DNS credentials at all. It cannot prove a wildcard, and the CA
    must reach the server from the Internet, from several vantage points.
    """
    if not valid_token(token):
        raise ValueError(f"the CA sent a challenge token that is not base64url of {MIN_TOKEN_LENGTH} to "
                         f"{MAX_TOKEN_LENGTH} characters (RFC 8555 §8.1); refusing to use it")
    return "/.well-known/acme-challenge/" + token


# --- dns-account-01 --------------------------------------------------------------------------


def _account_label(account_url: str) -> str:
    """base32 of the first 10 bytes of SHA-256(account URL), lower case: 16 characters, no padding."""
    ten_bytes = hashlib.sha256(account_url.encode("utf-8")).digest()[:10]
    # 10 bytes = 80 bits = exactly 16 base32 characters, so there is never '=' padding.
    return base64.b32encode(ten_bytes).decode("ascii").lower()


def dns_account01_record_name(identifier: str, account_url: str) -> str:
    """Where the dns-account-01 TXT record goes: ``_<label>._acme-challenge.<domain>``.

    Follows draft-ietf-acme-dns-account-label-03 §3.2 (the same rule as -00 to -02):
    label = base32(SHA-256(account URL)[0:10]), RFC 4648 base32, 16 characters and no
    padding. The draft calls base32 case-insensitive here; lower case is what Pebble 2.10
    computes (va/va.go, validateDNSAccount01) and what the draft's example shows. The account
    URL is the one in the newAccount response's Location header, byte for byte. The record's
    value is dns-01's (:func:`dns01_txt_value`), and a wildcard validates its base domain.

    Pick dns-account-01 instead of dns-01 when several ACME clients or accounts must validate
    the same name independently (several regions, several CDNs, a migration, a standby
    certificate): each account gets its own record name, so each can CNAME-delegate its own
    and none overwrites another's. The CA must offer it (Pebble 2.10 does).
    """
    return f"_{_account_label(account_url)}._acme-challenge.{_base_domain(identifier)}"


# --- dns-persist-01 --------------------------------------------------------------------------


def _issuer_domain_name(challenge: Mapping[str, Any]) -> str:
    """The Issuer Domain Name to put in the record, chosen from the challenge's list."""
    # draft -01 and Pebble 2.10 say "issuer-domain-names"; draft -02 renamed it "issuerDomainNames".
    names = challenge.get("issuer-domain-names", challenge.get("issuerDomainNames"))
    # The client MUST treat an empty list, or more than 10 names, as malformed (draft -01 §3.1).
    if not isinstance(names, list) or not 1 <= len(names) <= 10:
        raise ValueError("malformed dns-persist-01 challenge: issuer-domain-names must list 1 to 10 names")
    usable = sorted(name for name in names if isinstance(name, str) and _ISSUER_DOMAIN_NAME.fullmatch(name))
    if not usable:
        raise ValueError("malformed dns-persist-01 challenge: no issuer-domain-names entry is a domain name")
    # Any one will do and the list's order means nothing (draft -01 §3.1, §7.6); the smallest
    # keeps a persistent record the same when the CA reorders its list.
    return usable[0]


def dns_persist01_record(
    identifier: str,
    challenge: Mapping[str, Any],
    account_uri: str,
    *,
    wildcard: bool = False,
    persist_until: int | None = None,
) -> tuple[str, str]:
    """(record name, TXT value) answering a dns-persist-01 challenge for ``identifier``.

    Follows draft-ietf-acme-dns-persist-01 (24 March 2026) §3.1 and §4.1, which Pebble 2.10
    implements (va/va.go, validateDNSPersist01)::

        _validation-persist.<domain>  TXT  "<issuer-domain-name>; accounturi=<account URI>"
                                           [+ "; policy=wildcard"] [+ "; persistUntil=<unix time>"]

    The value uses RFC 8659's issue-value syntax, spaced as the draft's examples are
    ("authority.example; accounturi=https://ca.example/acct/123"); Pebble trims the spaces.
    - issuer-domain-name: one of the challenge's ``issuer-domain-names``, used exactly as
      sent (Pebble compares the bytes). The client must choose one; any one will do.
    - accounturi: the challenge's ``accounturi`` when it has one (added in draft -01 as "the
      URI the CA expects"; Pebble 2.10.1 sends it, 2.10.0 does not), else ``account_uri``:
      the account URL from newAccount's Location header, compared byte for byte. Draft -02
      (September 2026) replaces it with a hashed URI that Pebble 2.10 does not accept; for a
      draft -02 CA pass that URI as ``account_uri``.
    - policy=wildcard: added for a wildcard identifier ("*.example.com", or ``wildcard=True``
      with an authorization's base domain); it lets the record also cover every subdomain.
    - persistUntil: optional, seconds since 1970 UTC; after it the CA no longer accepts the
      record for new validations.
    A value over 255 bytes must be split into several character-strings of one TXT record.

    Pick dns-persist-01 when DNS changes are slow or not yours to make (change approval,
    another team's zone, a DNS host without an API): the record is published once and then
    serves every renewal by this account at this CA, until removed or past persistUntil.
    The price is that the record is a standing authorisation: whoever holds the account key
    can get certificates for the name. The CA must offer it (Pebble 2.10 does).
    """
    uri = challenge.get("accounturi") or account_uri
    if not isinstance(uri, str) or not _PARAMETER_VALUE.fullmatch(uri):
        raise ValueError("dns-persist-01: the account URI must be printable ASCII without spaces or ';' (RFC 8659)")
    value = f"{_issuer_domain_name(challenge)}; accounturi={uri}"
    if wildcard or identifier.startswith("*."):
        value += "; policy=wildcard"
    if persist_until is not None:
        if isinstance(persist_until, bool) or not isinstance(persist_until, int) or persist_until < 0:
            raise ValueError("dns-persist-01: persistUntil must be a Unix time in whole seconds")
        value += f"; persistUntil={persist_until}"
    return "_validation-persist." + _base_domain(identifier), value
