"""The ACME resources a CA sends (RFC 8555 §7.1), checked before a step uses or saves them.

A CA is a remote party. A body that lacks a field, has the wrong type or points somewhere
unexpected must stop the step with one clear line, not a KeyError three functions later, and
must never replace good state on disk. Each check returns the object it was given, so a step
reads ``order = resources.order(body, url_check)``; a :class:`ShapeError` says what is wrong.

The same checks read the work directory's copies back (``order.json``), where a failure means
the file is damaged rather than that the CA misbehaved.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from . import challenges

# The status values of each object (RFC 8555 §7.1.6). Anything else is not ACME.
ACCOUNT_STATUSES = ("valid", "deactivated", "revoked")
ORDER_STATUSES = ("pending", "ready", "processing", "valid", "invalid")
AUTHZ_STATUSES = ("pending", "valid", "invalid", "deactivated", "expired", "revoked")
CHALLENGE_STATUSES = ("pending", "processing", "valid", "invalid")

# Checks a URL the CA sent and returns it; ``what`` names it in the error (see transport.Client.check_url).
UrlCheck = Callable[[Any, str], str]


class ShapeError(ValueError):
    """What is wrong with a body, in words a user can act on."""


def shown(value: Any, limit: int = 80) -> str:
    """A short, printable rendering of a value the CA sent, for error messages."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = text if len(text) <= limit else text[:limit] + "..."
    return repr(text) if isinstance(value, str) else text


def https_url(value: Any, what: str) -> str:
    """The plain check: an absolute https URL. ``transport.Client.check_url`` adds the host check."""
    if not isinstance(value, str) or urlsplit(value).scheme != "https" or not urlsplit(value).hostname:
        raise ShapeError(f"its {what} URL is not an https URL: {shown(value)}")
    return value


# -- the objects --------------------------------------------------------------------------------


def directory(body: Any, url: UrlCheck = https_url) -> dict[str, Any]:
    """The directory (§7.1.1): three endpoints every flow needs, the rest when present."""
    d = _object(body, "the directory")
    for name in ("newNonce", "newAccount", "newOrder"):
        if name not in d:
            raise ShapeError(f"it has no {name} endpoint")
        url(d[name], name)
    for name in ("revokeCert", "keyChange", "newAuthz", "renewalInfo"):
        if name in d:
            url(d[name], name)
    meta = _optional(d, "meta", dict, "the directory")
    if meta:
        _optional(meta, "termsOfService", str, "meta")
        _optional(meta, "externalAccountRequired", bool, "meta")
        profiles = _optional(meta, "profiles", dict, "meta") or {}
        if not all(isinstance(v, str) for v in profiles.values()):
            raise ShapeError("meta.profiles holds a description that is not a string")
    return d


def account(body: Any, url: UrlCheck = https_url) -> dict[str, Any]:
    """An account object (§7.1.2): its status, and contacts and orders URL when present."""
    a = _object(body, "the account")
    _status(a, ACCOUNT_STATUSES, "the account", required=False)  # some CAs omit it on 200
    contacts = _optional(a, "contact", list, "the account") or []
    if not all(isinstance(c, str) for c in contacts):
        raise ShapeError("its contact list holds something that is not a string")
    if "orders" in a:
        url(a["orders"], "orders")
    return a


def order(body: Any, url: UrlCheck = https_url) -> dict[str, Any]:
    """An order (§7.1.3): status, identifiers, authorization URLs, finalize URL, and the
    certificate URL once valid (an order that is valid without one can never be downloaded)."""
    o = _object(body, "the order")
    status = _status(o, ORDER_STATUSES, "the order")
    for ident in _list(o, "identifiers", "the order"):
        identifier(ident)
    for authz_url in _list(o, "authorizations", "the order"):
        url(authz_url, "authorization")
    url(o.get("finalize"), "finalize")
    if status == "valid" and "certificate" not in o:
        raise ShapeError("it is valid but has no certificate URL to download from")
    if "certificate" in o:
        url(o["certificate"], "certificate")
    return o


def authorization(body: Any, url: UrlCheck = https_url) -> dict[str, Any]:
    """An authorization (§7.1.4): the identifier, its status and the challenges on offer."""
    a = _object(body, "the authorization")
    identifier(a.get("identifier"))
    _status(a, AUTHZ_STATUSES, "the authorization")
    _optional(a, "wildcard", bool, "the authorization")
    for item in _list(a, "challenges", "the authorization"):
        challenge(item, url)
    return a


def challenge(body: Any, url: UrlCheck = https_url) -> dict[str, Any]:
    """A challenge (§7.1.5, §8): type, URL, status, and a base64url token when it has one."""
    c = _object(body, "a challenge")
    if not isinstance(c.get("type"), str):
        raise ShapeError(f"a challenge has no type: {shown(c)}")
    url(c.get("url"), f"{c['type']} challenge")
    _status(c, CHALLENGE_STATUSES, f"its {c['type']} challenge")
    # §8.1: a token is base64url of a sensible length; it becomes part of a file name and a URL path (http-01).
    if "token" in c and not challenges.valid_token(c["token"]):
        token = c["token"]
        size = f" ({len(token)} characters)" if isinstance(token, str) else ""
        raise ShapeError(f"its {shown(c['type'])} challenge has a token that is not base64url of "
                         f"{challenges.MIN_TOKEN_LENGTH} to {challenges.MAX_TOKEN_LENGTH} characters "
                         f"(RFC 8555 §8.1): {shown(token)}{size}")
    return c


def renewal_info(body: Any, url: UrlCheck = https_url) -> dict[str, Any]:
    """A renewalInfo object (RFC 9773 §4.2): the suggested window, two times, and maybe an
    explanationURL (a page for people, shown, never fetched: so not held to the CA's host).
    Whether the window makes sense for the certificate is :mod:`renewal`'s to judge."""
    info = _object(body, "the renewalInfo")
    window = info.get("suggestedWindow")
    if not isinstance(window, dict):
        raise ShapeError(f"it has no suggestedWindow: {shown(window)}")
    start, end = rfc3339(window.get("start")), rfc3339(window.get("end"))
    if start is None or end is None:
        raise ShapeError(f"its suggestedWindow does not run from start to end: {shown(window)}")
    _optional(info, "explanationURL", str, "the renewalInfo")
    return info


_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\d)[Tt ](\d\d:\d\d:\d\d)(\.\d+)?([Zz]|[+-]\d\d:\d\d)")


def rfc3339(value: Any) -> datetime.datetime | None:
    """An RFC 3339 time as ACME sends it (``2026-11-27T13:40:34.123456789Z``), or None.

    Go servers send nanoseconds, which Python's ``fromisoformat`` before 3.11 refuses: the
    fraction is cut to microseconds first.
    """
    match = _RFC3339.fullmatch(value) if isinstance(value, str) else None
    if not match:
        return None
    date, clock, fraction, zone = match.groups()
    zone = "+00:00" if zone in "Zz" else zone
    micro = "." + fraction[1:7].ljust(6, "0") if fraction else ""  # 3.10 takes exactly 3 or 6 digits
    try:
        return datetime.datetime.fromisoformat(f"{date}T{clock}{micro}{zone}")
    except ValueError:
        return None


def identifier(body: Any) -> dict[str, str]:
    """An identifier (§9.7.7): {"type": "dns", "value": "example.com"}."""
    if not (isinstance(body, dict) and isinstance(body.get("type"), str) and isinstance(body.get("value"), str)):
        raise ShapeError(f"an identifier is not a type and a value: {shown(body)}")
    return body


def identifier_label(authz: dict[str, Any]) -> str:
    """The name an authorization is for, as the order lists it: ``*.example.com`` for a wildcard's (§7.1.4)."""
    value = authz["identifier"]["value"]
    return f"*.{value}" if authz.get("wildcard") else value


# -- the pieces ---------------------------------------------------------------------------------


def _object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ShapeError(f"{what} is not a JSON object: {shown(body)}")
    return body


def _list(obj: dict[str, Any], key: str, where: str) -> list[Any]:
    value = obj.get(key)
    if not isinstance(value, list):
        raise ShapeError(f"{where} has no {key} list: {shown(value)}")
    return value


def _optional(obj: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = obj.get(key)
    if value is not None and not isinstance(value, kind):
        raise ShapeError(f"{where}'s {key} is not a {kind.__name__}: {shown(value)}")
    return value


def _status(obj: dict[str, Any], allowed: tuple[str, ...], where: str, *, required: bool = True) -> str | None:
    status = obj.get("status")
    if status is None and not required:
        return None
    if status not in allowed:
        raise ShapeError(f"{where} has status {shown(status)}, not one of {', '.join(allowed)}")
    return status
