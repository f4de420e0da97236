"""Calling Alibaba Cloud APIs: endpoints, errors, paging, on top of the signer in :mod:`common.alibaba`.

What the Alidns client (:mod:`common.alidns`, step 06) and the deploy calls (CAS, CDN and API
Gateway in :mod:`common.alibaba_deploy`, step 20) share, once:

- :func:`endpoint_url`   the endpoint rule: an https:// URL, optionally with a path (a test double's)
- :func:`credentials`    the AccessKey from the environment, or a UsageError (exit 2) naming what is missing
- :data:`HINTS`          what to do about the errors a user can fix, by Alibaba's error code
- :func:`call`           one action within a total deadline; Alibaba's refusal (or the network's)
                         becomes an :class:`AlibabaApiError`
- :func:`paged`          every item of a paged listing, page after page, bounded, its shape checked
- :func:`malformed`      the error for an answer of the wrong shape: "Alibaba Cloud sent ...", exit 1

Alibaba Cloud is a remote party, distrusted like the CA: every exchange has a total deadline
(a body that trickles in byte by byte must not hang a step) and a size cap (in ``alibaba.call``),
every answer's shape is checked before it is used, and its strings are cut and escaped
(:func:`common.errors.bounded`) wherever they are shown.

``alibaba.py`` stays free of all this on purpose: it is the one file meant to be copied alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

import requests

from . import alibaba, deadline
from .errors import AcmeError, UsageError, bounded

# requests bounds each read, not the whole exchange: this bounds the whole (see common.deadline).
EXCHANGE_DEADLINE = 60.0

# An endpoint: https://host, or a test double's https://host:port/prefix.
_ENDPOINT = re.compile(r"https://[^\s/?#]+(/[^\s?#]*)?")

NOT_ALLOWED = ("the RAM user may not call this action: attach the policy in docs/real-domains.md (DNS) "
               "or docs/put-to-work.md (step 20)")

# What to do about the errors a user can fix, by Alibaba's error code.
HINTS = {
    "InvalidAccessKeyId.NotFound": f"Alibaba does not know this AccessKey: check {alibaba.ENV_ACCESS_KEY_ID}",
    "InvalidAccessKeyId.Inactive": "this AccessKey is disabled: enable it in the RAM console or use another",
    "SignatureDoesNotMatch": f"check {alibaba.ENV_ACCESS_KEY_SECRET}: it does not belong to the AccessKey",
    "InvalidSecurityToken.Expired": f"the STS token expired: get a new one into {alibaba.ENV_SECURITY_TOKEN}",
    "InvalidSecurityToken.MismatchWithAccessKey": f"{alibaba.ENV_SECURITY_TOKEN} belongs to another AccessKey",
    "Forbidden.RAM": NOT_ALLOWED,
    "NoPermission": NOT_ALLOWED,
    "InvalidDomain.NotFound": "no CDN domain of that name in this account: check --cdn-domain",
    "Abs.CertRegion.ValueNotSupported": "use --cert-region cn-hangzhou (China) or ap-southeast-1 (international)",
}


class AlibabaApiError(AcmeError):
    """An Alibaba Cloud action failed, refused by Alibaba or lost on the network: exit status 1.

    ``code`` is Alibaba's error code (``NetworkError`` for the network). The message names the
    action; the hint for the code, if any, is a line of its own (``lines()``), as for the CA's
    problems. A subclass with ``one_line`` puts it at the end of the message instead.
    """

    one_line: ClassVar[bool] = False

    def __init__(self, what: str, error: alibaba.AlibabaError) -> None:
        self.code = error.code
        hint = HINTS.get(error.code)
        inline = f" ({hint})" if hint and self.one_line else ""
        # Code, message and RequestId come from the endpoint, which may send anything: cut and escaped.
        request = f" (RequestId {bounded(error.request_id)})" if error.request_id else ""
        super().__init__(f"{what} failed: {bounded(error.code)}: {bounded(error.message)}{request}{inline}")

    def hint(self) -> str | None:
        return None if self.one_line else HINTS.get(self.code)


def endpoint_url(text: str) -> str | None:
    """``text`` without trailing slashes if it is an https:// URL fit to be an endpoint, else None."""
    url = text.rstrip("/")
    return url if _ENDPOINT.fullmatch(url) else None


def credentials(about: str | None = None) -> alibaba.Credentials:
    """The AccessKey in the environment; UsageError (exit 2) naming the missing variables, after ``about``."""
    try:
        return alibaba.credentials_from_env()
    except alibaba.MissingCredentialsError as exc:
        raise UsageError(f"{about}: {exc}" if about else str(exc)) from None


def call(endpoint: str, action: str, version: str, params: Mapping[str, Any], credentials: alibaba.Credentials, *,
         session: requests.Session, what: str, error: type[AlibabaApiError] = AlibabaApiError,
         timeout: float | None = None, timeout_hint: str = "") -> dict[str, Any]:
    """One action (:func:`common.alibaba.call`); a refusal becomes ``error`` saying "<what> failed: <code>: ...".

    The whole exchange must end within ``timeout`` seconds (default EXCHANGE_DEADLINE); if not,
    that is a ``NetworkError`` too, with ``timeout_hint`` (what to do) after it.
    """
    seconds = EXCHANGE_DEADLINE if timeout is None else timeout
    try:
        return deadline.within(seconds, lambda: alibaba.call(endpoint, action, version, params, credentials,
                                                             session=session), "alibaba-exchange")
    except deadline.ExpiredError:
        within = f"{seconds:.1f}".rstrip("0").rstrip(".")
        late = alibaba.AlibabaError("NetworkError", f"no complete answer within {within} s: the endpoint is too "
                                                    f"slow or something in between holds the connection{timeout_hint}")
        raise error(what, late) from None
    except alibaba.AlibabaError as exc:
        raise error(what, exc) from None


def malformed(what: str, problem: str, *value: Any) -> AcmeError:
    """The error for an answer of the wrong shape: "Alibaba Cloud sent <problem>[: <value>] (<what>)", exit 1."""
    # A string shown in quotes, so that "4" and 4 look different; everything cut and escaped.
    shown = f": {bounded(json.dumps(value[0], ensure_ascii=False, default=str))}" if value else ""
    return AcmeError(f"Alibaba Cloud sent {problem}{shown} ({what})")


def paged(fetch: Callable[[int], Mapping[str, Any]], path: tuple[str, ...], page_size: int,
          max_pages: int, what: str = "a listing") -> Iterator[dict[str, Any]]:
    """Every item of a listing Alibaba answers in pages: ``fetch(page)`` for page 1, 2, ...

    The items of a page are at ``path`` in its answer (``("Domains", "Domain")`` for Alidns,
    ``("CertificateOrderList",)`` for CAS), each an object; ``what`` names the listing in the
    error for an answer of another shape. Paging stops at an empty page, once ``TotalCount``
    items are covered, or after ``max_pages``: a broken answer must not page forever. Stop
    iterating to stop asking.
    """
    for page in range(1, max_pages + 1):
        answer = fetch(page)
        items = listed_items(answer, path, f"{what}, page {page}")
        yield from items
        if not items or page * page_size >= total_count(answer, f"{what}, page {page}"):
            return


def listed_items(answer: Mapping[str, Any], path: tuple[str, ...], what: str = "a listing") -> list[dict[str, Any]]:
    """The objects in the list at ``path`` in ``answer`` (Alibaba nests lists: ``{"Domains": {"Domain": [...]}}``).

    No list there at all is an empty listing; anything else than objects in a list is the
    wrong shape (:func:`malformed`).
    """
    value: Any = answer
    for depth, key in enumerate(path):
        if value is None:
            return []
        if not isinstance(value, Mapping):
            raise malformed(what, f"a {'.'.join(path[:depth])} that is not an object", value)
        value = value.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise malformed(what, f"a {'.'.join(path)} that is not a list", value)
    for item in value:
        if not isinstance(item, dict):
            raise malformed(what, f"a {'.'.join(path)} entry that is not an object", item)
    return value


def total_count(answer: Mapping[str, Any], what: str = "a listing") -> int:
    """The listing's ``TotalCount``: a whole number, or 0 (no more pages) when there is none."""
    value = answer.get("TotalCount")
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise malformed(what, "a TotalCount that is not a number of items", value)
    return value


def text_field(entry: Mapping[str, Any], name: str, what: str, *, required: bool = True) -> str:
    """``entry[name]`` as text: a string, or a whole number (Alibaba sends ids either way); "" if absent
    and not ``required``; the wrong shape (:func:`malformed`) otherwise."""
    value = entry.get(name)
    if value is None and not required:
        return ""
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return str(value)
    if value is None:
        raise malformed(what, f"an answer without a {name}")
    raise malformed(what, f"a {name} that is not a string", value)
