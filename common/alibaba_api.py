"""Calling Alibaba Cloud APIs: endpoints, errors, paging, on top of the signer in :mod:`common.alibaba`.

What the Alidns client (:mod:`common.alidns`, step 06) and the deploy calls (CAS, CDN and API
Gateway in :mod:`common.alibaba_deploy`, step 20) share, once:

- :func:`endpoint_url`   the endpoint rule: an https:// URL, optionally with a path (a test double's)
- :func:`credentials`    the AccessKey from the environment, or a UsageError (exit 2) naming what is missing
- :data:`HINTS`          what to do about the errors a user can fix, by Alibaba's error code
- :func:`call`           one action; Alibaba's refusal (or the network's) becomes an :class:`AlibabaApiError`
- :func:`paged`          every item of a paged listing, page after page, bounded

``alibaba.py`` stays free of all this on purpose: it is the one file meant to be copied alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

import requests

from . import alibaba
from .errors import AcmeError, UsageError

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
        super().__init__(f"{what} failed: {error}{inline}")

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
         session: requests.Session, what: str, error: type[AlibabaApiError] = AlibabaApiError) -> dict[str, Any]:
    """One action (:func:`common.alibaba.call`); a refusal becomes ``error`` saying "<what> failed: <code>: ..."."""
    try:
        return alibaba.call(endpoint, action, version, params, credentials, session=session)
    except alibaba.AlibabaError as exc:
        raise error(what, exc) from None


def paged(fetch: Callable[[int], Mapping[str, Any]], path: tuple[str, ...], page_size: int,
          max_pages: int) -> Iterator[dict[str, Any]]:
    """Every item of a listing Alibaba answers in pages: ``fetch(page)`` for page 1, 2, ...

    The items of a page are at ``path`` in its answer (``("Domains", "Domain")`` for Alidns,
    ``("CertificateOrderList",)`` for CAS); anything there that is not an object is skipped.
    Paging stops at an empty page, once ``TotalCount`` items are covered, or after
    ``max_pages``: a broken answer must not page forever. Stop iterating to stop asking.
    """
    for page in range(1, max_pages + 1):
        answer = fetch(page)
        items = listed_items(answer, path)
        yield from items
        if not items or page * page_size >= _int(answer.get("TotalCount")):
            return


def listed_items(answer: Mapping[str, Any], path: tuple[str, ...]) -> list[dict[str, Any]]:
    """The objects in the list at ``path`` in ``answer`` (Alibaba nests lists: ``{"Domains": {"Domain": [...]}}``)."""
    value: Any = answer
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _int(value: object) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 0
