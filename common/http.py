"""The ACME transport: directory, nonces, signed POSTs, retries and polling (RFC 8555 §6, §7.1-7.2).

Every request after the directory GET is a POST whose body is a JWS; each carries a fresh
nonce, and each response hands over the next one in ``Replay-Nonce`` (§6.5).
"""

from __future__ import annotations

import datetime
import email.utils
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests

from . import jws
from .encoding import b64url_decode
from .errors import AcmeError
from .keys import PrivateKey

log = logging.getLogger("acme")

USER_AGENT = "acme-step-by-step/1.0 " + requests.utils.default_user_agent()
JOSE_JSON = "application/jose+json"
PEM_CHAIN = "application/pem-certificate-chain"
BAD_NONCE = "urn:ietf:params:acme:error:badNonce"

# A CA may reject any nonce as bad and the client must retry (§6.5); Pebble rejects a
# configurable share on purpose. Bounded so a broken CA cannot keep us looping.
MAX_BAD_NONCE_RETRIES = 200
DEFAULT_POLL_INTERVAL = 2.0
MIN_POLL_INTERVAL = 0.5
HTTP_TIMEOUT = 30.0
# Headers worth showing with -v; the rest is noise.
SHOWN_HEADERS = ("Location", "Replay-Nonce", "Retry-After", "Link", "Content-Type")
# Environment variable naming a file to append one line per request to (for counting).
REQUEST_LOG_ENV = "ACME_REQUEST_LOG"


class NonceStore(Protocol):
    """Where the latest nonce and the directory survive between steps (see state.SessionCache)."""

    directory: dict[str, Any] | None
    nonce: str | None

    def remember_directory(self, directory: dict[str, Any]) -> None: ...

    def remember_nonce(self, nonce: str) -> None: ...


@dataclass
class Response:
    """What came back: status, headers and the body parsed by its Content-Type."""

    status: int
    reason: str
    headers: Any  # requests' case-insensitive dict
    body: Any  # dict for JSON, str otherwise
    url: str
    content_type: str = ""
    problem: dict[str, Any] = field(default_factory=dict)

    @property
    def location(self) -> str | None:
        return self.headers.get("Location")

    @property
    def retry_after(self) -> float | None:
        return retry_after_seconds(self.headers.get("Retry-After"))

    def links(self, rel: str) -> list[str]:
        """All ``Link`` targets with this relation (§7.4.2 sends several ``alternate`` ones)."""
        raw = self.headers.get("Link", "")
        return [link["url"] for link in requests.utils.parse_header_links(raw) if link.get("rel") == rel] if raw else []


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"[0-9]+", value):  # not str.isdigit(): that accepts '²', which float() refuses
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # the asctime form has no zone, and HTTP dates are always GMT
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class Client:
    """One ACME server, seen through one account key.

    ``kid`` is the account URL once the account exists; until then requests carry the ``jwk``
    (§6.2). The nonce store, when given, carries the directory and nonce to the next step.
    """

    def __init__(
        self,
        directory_url: str,
        *,
        verify: str | bool = True,
        key: PrivateKey | None = None,
        kid: str | None = None,
        store: NonceStore | None = None,
    ) -> None:
        self.directory_url = directory_url
        self.verify = verify
        self.key = key
        self.kid = kid
        self.store = store
        self.requests_sent = 0
        self.ca_bundle: str | None = None
        self._directory = store.directory if store else None
        self._directory_cached = self._directory is not None
        self._nonce = store.nonce if store else None
        self._http = requests.Session()
        self._http.headers["User-Agent"] = USER_AGENT

    # -- the directory (§7.1.1) -------------------------------------------------------------

    @property
    def directory(self) -> dict[str, Any]:
        """The directory object, fetched once and then kept in the work dir."""
        if self._directory is None:
            self._directory = self._send("GET", self.directory_url).body
            if not isinstance(self._directory, dict) or "newNonce" not in self._directory:
                raise AcmeError(f"{self.directory_url} is not an ACME directory")
            if self.store:
                self.store.remember_directory(self._directory)
        return self._directory

    def endpoint(self, name: str) -> str:
        """The URL of a directory resource such as ``newOrder``."""
        url = self.directory.get(name)
        if not url and self._directory_cached:  # the CA may have changed since we cached it
            self._directory, self._directory_cached = None, False
            url = self.directory.get(name)
        if not url:
            raise AcmeError(f"this CA offers no {name} resource (directory {self.directory_url})")
        return url

    # -- nonces (§7.2) ----------------------------------------------------------------------

    def _take_nonce(self) -> str:
        """The nonce for the next POST: the last one the CA handed out, else a fresh one."""
        if not self._nonce:
            self._send("HEAD", self.endpoint("newNonce"))  # _send keeps its Replay-Nonce
        nonce, self._nonce = self._nonce, None  # a nonce is good for one request only
        if not nonce:
            raise AcmeError("the CA's newNonce response carried no Replay-Nonce header")
        return nonce

    # -- signed requests (§6.2, §6.3) -----------------------------------------------------

    def post(self, url: str, payload: Any | None, *, use_jwk: bool = False, accept: str | None = None) -> Response:
        """POST a JWS-signed ``payload`` to ``url``; ``payload=None`` is a POST-as-GET (§6.3).

        A badNonce error is retried with the nonce that came with it (§6.5).
        """
        if self.key is None:
            raise AcmeError("internal error: no account key to sign with")
        for _ in range(MAX_BAD_NONCE_RETRIES + 1):
            protected: dict[str, Any] = {"alg": jws.algorithm(self.key), "nonce": self._take_nonce(), "url": url}
            if use_jwk or not self.kid:
                protected["jwk"] = jws.jwk(self.key)
            else:
                protected["kid"] = self.kid
            body = jws.flattened_jws(self.key, protected, payload)
            try:
                return self._send("POST", url, body=body, accept=accept)
            except AcmeError as exc:
                if exc.type != BAD_NONCE:
                    raise
                log.debug("  badNonce: retrying with the nonce from the error response")
        raise AcmeError(f"the CA rejected {MAX_BAD_NONCE_RETRIES + 1} nonces in a row for {url}")

    def post_as_get(self, url: str, accept: str | None = None) -> Response:
        """Read a resource as the account (§6.3): every read after newAccount is one of these."""
        return self.post(url, None, accept=accept)

    def poll(self, url: str, waiting: tuple[str, ...], *, timeout: float, first_wait: float | None = None) -> Response:
        """POST-as-GET ``url`` until its status leaves ``waiting``, honouring Retry-After (§7.5.1).

        Ends in an AcmeError when the next wait would pass ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        wait = first_wait
        while True:
            if wait:
                log.debug("  waiting %.1f s before polling %s", wait, url)
                time.sleep(wait)
            resp = self.post_as_get(url)
            status = resp.body.get("status") if isinstance(resp.body, dict) else None
            if status not in waiting:
                return resp
            asked = resp.retry_after
            wait = max(MIN_POLL_INTERVAL, DEFAULT_POLL_INTERVAL if asked is None else asked)
            if time.monotonic() + wait > deadline:
                raise AcmeError(f"gave up after {timeout:.0f} s: {url} is still {status!r}; "
                                "raise --timeout to wait longer")

    # -- the wire ---------------------------------------------------------------------------

    def _send(
        self, method: str, url: str, *, body: dict[str, str] | None = None, accept: str | None = None
    ) -> Response:
        headers = {"Content-Type": JOSE_JSON} if body is not None else {}
        if accept:
            headers["Accept"] = accept
        _log_request(method, url, body)
        try:
            # verify is passed on every call: a Session-level value would lose to
            # REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE from the environment.
            raw = self._http.request(
                method, url, data=json.dumps(body) if body is not None else None,
                headers=headers, verify=self.verify, timeout=HTTP_TIMEOUT,
            )
        except requests.exceptions.SSLError as exc:
            raise AcmeError(f"TLS verification failed for {url}: {_reason(exc)}; "
                            "trust the server's CA with --ca-bundle FILE") from None
        except requests.exceptions.RequestException as exc:
            raise AcmeError(f"cannot reach {url}: {_reason(exc)}") from None
        self.requests_sent += 1
        resp = _parse(raw)
        _log_response(resp)
        _append_request_log(method, url, resp.status)
        nonce = raw.headers.get("Replay-Nonce")
        if nonce:
            self._nonce = nonce
            if self.store:
                self.store.remember_nonce(nonce)
        if resp.status >= 400:
            problem = resp.problem or {"type": "about:blank", "detail": f"HTTP {resp.status} {resp.reason}"}
            raise AcmeError(f"{method} {url} failed with HTTP {resp.status}", problem)
        return resp


def _reason(exc: Exception) -> str:
    """The innermost message of a requests/urllib3 exception chain, on one line."""
    while exc.__context__ is not None and str(exc.__context__):
        exc = exc.__context__  # type: ignore[assignment]
    return " ".join(str(exc).split())


def _parse(raw: requests.Response) -> Response:
    content_type = raw.headers.get("Content-Type", "").split(";")[0].strip()
    body: Any = raw.text
    problem: dict[str, Any] = {}
    if content_type.endswith("json") and raw.content:
        try:
            body = raw.json()
        except ValueError:
            pass
        if content_type == "application/problem+json" and isinstance(body, dict):
            problem = body
    return Response(raw.status_code, raw.reason, raw.headers, body, raw.url, content_type, problem)


# -- showing the exchange with -v ---------------------------------------------------------------


ABBREVIATE_OVER = 200  # longer than any URL a CA sends, shorter than any CSR or certificate


def _abbreviate(value: Any) -> Any:
    """Shorten a CSR or a certificate (long base64) so the exchange stays readable; URLs stay whole."""
    if isinstance(value, str) and len(value) > ABBREVIATE_OVER:
        return f"{value[:40]}...({len(value)} chars)"
    if isinstance(value, dict):
        return {k: _abbreviate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_abbreviate(v) for v in value]
    return value


def _decoded(part: str) -> Any:
    return json.loads(b64url_decode(part)) if part else ""


def _log_request(method: str, url: str, body: dict[str, str] | None) -> None:
    if not log.isEnabledFor(logging.DEBUG):
        return
    log.debug("> %s %s", method, url)
    if body is not None:
        log.debug("  protected: %s", json.dumps(_abbreviate(_decoded(body["protected"]))))
        payload = _decoded(body["payload"])
        log.debug("  payload:   %s", json.dumps(_abbreviate(payload)) if payload != "" else '"" (POST-as-GET)')


def _log_response(resp: Response) -> None:
    if not log.isEnabledFor(logging.DEBUG):
        return
    log.debug("< %s %s", resp.status, resp.reason)
    for name in SHOWN_HEADERS:
        if name in resp.headers:
            log.debug("  %s: %s", name, resp.headers[name])
    if isinstance(resp.body, (dict, list)):
        for line in json.dumps(_abbreviate(resp.body), indent=2).splitlines():
            log.debug("  %s", line)
    elif "BEGIN CERTIFICATE" in resp.body:
        log.debug("  (%d PEM certificates, %d bytes)", resp.body.count("BEGIN CERTIFICATE"), len(resp.body))
    elif resp.body:
        log.debug("  %s", _abbreviate(resp.body))


def _append_request_log(method: str, url: str, status: int) -> None:
    path = os.environ.get(REQUEST_LOG_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{method} {url} {status}\n")
