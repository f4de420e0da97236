"""The ACME transport: directory, nonces, signed POSTs, retries and polling (RFC 8555 §6, §7.1-7.2).

After the directory GET and one HEAD to newNonce, every request is a POST whose body is a JWS;
each carries a fresh nonce, and each response hands over the next one in ``Replay-Nonce`` (§6.5).

The CA is a remote party and is not trusted blindly: only https URLs on the directory's host
are followed, redirects are reported rather than followed, every exchange has a deadline and a
size cap, and every wait (``Retry-After``) is bounded by the step's ``--timeout``.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

import requests

from . import deadline, jws, resources, wire
from .errors import AcmeError, StepTimeoutError, UsageError
from .jws import b64url_decode
from .keys import PrivateKey

log = logging.getLogger("acme")

USER_AGENT = "acme-step-by-step/1.0 " + requests.utils.default_user_agent()
JOSE_JSON = "application/jose+json"
PEM_CHAIN = "application/pem-certificate-chain"

# A CA may reject any nonce as bad and the client must retry (§6.5); Pebble rejects a
# configurable share on purpose. Bounded so a broken CA cannot keep us looping.
MAX_BAD_NONCE_RETRIES = 200
# 503 and 429 (rateLimited) may carry Retry-After (§6.6): short waits are retried, long ones reported.
BUSY_STATUSES = (429, 503)
MAX_BUSY_RETRIES = 3
MAX_BUSY_WAIT = 60.0
DEFAULT_POLL_INTERVAL = 2.0
MIN_POLL_INTERVAL = 0.5
DEFAULT_TIMEOUT = 300.0
# requests' timeouts bound each connect and each read, not the whole exchange: a server that
# sends one byte every few seconds would never time out. EXCHANGE_DEADLINE bounds the whole.
CONNECT_TIMEOUT, READ_TIMEOUT = 10.0, 30.0
EXCHANGE_DEADLINE = 60.0
# Size caps: generous for a certificate chain, small for JSON; ACME objects nest only a few levels.
MAX_JSON_BYTES = 512 * 1024
MAX_CHAIN_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 32
# Headers worth showing with -v; the rest is noise.
SHOWN_HEADERS = ("Location", "Replay-Nonce", "Retry-After", "Link", "Content-Type")
# Environment variable naming a file to append one line per request to (for counting).
REQUEST_LOG_ENV = "ACME_REQUEST_LOG"


class NonceStore(Protocol):
    """Where the latest nonce and the directory survive between steps (see workdir.SessionCache)."""

    directory: dict[str, Any] | None
    nonce: str | None

    def remember_directory(self, directory: dict[str, Any]) -> None: ...

    def remember_nonce(self, nonce: str) -> None: ...


@dataclass
class Response:
    """What came back: status, headers and the body parsed by its Content-Type.

    ``location`` is the Location header resolved against the request URL (RFC 9110 §10.2.2)
    and already checked by the client.
    """

    status: int
    reason: str
    headers: Any  # requests' case-insensitive dict
    body: Any  # dict or list for JSON, str otherwise
    url: str
    content_type: str = ""
    problem: dict[str, Any] = field(default_factory=dict)
    location: str | None = None

    @property
    def retry_after(self) -> float | None:
        return retry_after_seconds(self.headers.get("Retry-After"))

    def links(self, rel: str) -> list[str]:
        """All ``Link`` targets with this relation, resolved (§7.4.2 sends several ``alternate`` ones)."""
        raw = self.headers.get("Link", "")
        links = requests.utils.parse_header_links(raw) if raw else []
        return [urljoin(self.url, link["url"]) for link in links if link.get("rel") == rel]


# Longer waits than this are as good as "never" for a step; it also keeps float maths finite.
MAX_RETRY_AFTER = 10 * 365 * 86400.0


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date (RFC 9110 §10.2.3).

    Garbage and negative values give None (no advice); absurd ones are capped, never an error.
    """
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"[0-9]+", value):  # not str.isdigit(): that accepts '²', which float() refuses
        return min(float(value[:20]), MAX_RETRY_AFTER)  # 20 digits already exceed the cap
    try:
        when = email.utils.parsedate_to_datetime(value)
        if when.tzinfo is None:  # the asctime form has no zone, and HTTP dates are always GMT
            when = when.replace(tzinfo=datetime.timezone.utc)
        seconds = when.timestamp() - (time.time() if now is None else now)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


class Client:
    """One ACME server, seen through one account key, within one step's time budget.

    ``kid`` is the account URL once the account exists; until then requests carry the ``jwk``
    (§6.2). The nonce store, when given, carries the directory and nonce to the next step.
    ``allowed_hosts`` are hosts besides the directory's that URLs from the CA may point to.
    ``timeout`` bounds the whole step: every exchange and every wait the CA asks for.
    """

    def __init__(
        self,
        directory_url: str,
        *,
        verify: str | bool = True,
        key: PrivateKey | None = None,
        kid: str | None = None,
        store: NonceStore | None = None,
        allowed_hosts: tuple[str, ...] = (),
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        parts = urlsplit(directory_url)
        if parts.scheme != "https" or not parts.hostname:
            raise UsageError(f"the directory URL must be an https:// URL, not {directory_url!r}")
        self.directory_url = directory_url
        self.host = parts.hostname
        self.allowed_hosts = tuple(h.lower() for h in allowed_hosts)
        self.verify = verify
        self.key = key
        self.kid = kid
        self.store = store
        self.timeout = timeout
        self.started = time.monotonic()
        self.ca_bundle: str | None = None
        self.unreachable_hint = ""  # what to tell a user who cannot reach the server
        self._directory = self._cached_directory()
        self._directory_cached = self._directory is not None
        self._nonce = store.nonce if store else None
        self._http = requests.Session()
        self._http.headers["User-Agent"] = USER_AGENT

    # -- time --------------------------------------------------------------------------------

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def remaining(self) -> float:
        """Seconds left of the step's ``--timeout``."""
        return self.timeout - self.elapsed()

    def restart_clock(self) -> None:
        """Count --timeout from now: a wait of another kind (DNS propagation) has its own timeout."""
        self.started = time.monotonic()

    def allow_more(self, seconds: float) -> None:
        """Extend the budget past --timeout, for a last look that explains why the step gave up."""
        self.timeout = max(self.timeout, self.elapsed()) + seconds

    def pause(self, seconds: float, still: str, hint: str) -> None:
        """Sleep ``seconds`` unless that would pass the step's timeout; then give up, saying so."""
        if seconds > self.remaining():
            long_wait = seconds > DEFAULT_POLL_INTERVAL
            asked = f", and the CA asks to wait {describe_seconds(seconds)} more" if long_wait else ""
            raise StepTimeoutError(f"gave up after {self.elapsed():.1f} s (--timeout {self.timeout:.0f}): "
                           f"{still}{asked}; {hint}")
        log.debug("  waiting %s s", f"{round(seconds, 2):g}")  # --first-wait 0.25 shows as 0.25
        time.sleep(seconds)

    # -- URLs the CA hands out ---------------------------------------------------------------

    def check_url(self, url: Any, what: str) -> str:
        """``url`` if it is https on the directory's host (or one the user allowed), else an AcmeError.

        A CA's URLs all live on its own host; one elsewhere is a misconfigured or hostile CA,
        and following it would send signed requests (and our trust) to a stranger.
        """
        try:
            url = resources.https_url(url, what)
            host = (urlsplit(url).hostname or "").lower()
            urlsplit(url).port  # noqa: B018  (a port that is not a number raises ValueError)
        except (resources.ShapeError, ValueError) as exc:
            raise AcmeError(f"refusing a {what} URL from the CA: {exc}") from None
        if host != self.host.lower() and host not in self.allowed_hosts:
            raise AcmeError(f"refusing the {what} URL {url}: it is on {host}, not on the directory's host "
                            f"{self.host}; if {host} really belongs to the CA, allow it with --allow-host {host}")
        return url

    def checked(self, check: Callable[[Any, resources.UrlCheck], dict[str, Any]], resp: Response,
                what: str) -> dict[str, Any]:
        """``resp.body`` after ``check`` (a :mod:`resources` function), or one line saying what is wrong."""
        if isinstance(resp.body, Unparseable):
            raise AcmeError(f"the CA sent {resp.body} from {resp.url} instead of the {what}")
        if not resp.content_type.endswith("json"):
            sent = resp.content_type or "a body without a Content-Type"
            raise AcmeError(f"the CA sent {sent} from {resp.url} instead of the {what} (JSON)")
        try:
            return check(resp.body, self.check_url)
        except resources.ShapeError as exc:
            raise AcmeError(f"the CA sent a bad {what} from {resp.url}: {exc}") from None

    # -- the directory (§7.1.1) -------------------------------------------------------------

    @property
    def directory(self) -> dict[str, Any]:
        """The directory object, fetched once and then kept in the work dir."""
        if self._directory is None:
            self._directory = self.checked(resources.directory, self.get(self.directory_url), "directory")
            if self.store:
                self.store.remember_directory(self._directory)
        return self._directory

    def _cached_directory(self) -> dict[str, Any] | None:
        """The directory an earlier step saw, if it still passes the checks; else None (fetch it again)."""
        cached = self.store.directory if self.store else None
        if cached is None:
            return None
        try:
            return resources.directory(cached, self.check_url)
        except (resources.ShapeError, AcmeError) as exc:
            log.debug("  ignoring the cached directory: %s", exc)
            return None

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

    # -- requests (§6.2, §6.3) --------------------------------------------------------------

    def post(self, url: str, payload: Any | None, *, key: PrivateKey | None = None, use_jwk: bool = False,
             accept: str | None = None) -> Response:
        """POST a JWS-signed ``payload`` to ``url``; ``payload=None`` is a POST-as-GET (§6.3).

        Signed with the account key and its ``kid``; ``key`` signs with another key instead and
        ``use_jwk`` sends the public key itself (newAccount, revocation by the certificate key).
        A badNonce error is retried with the nonce that came with it (§6.5).
        """
        signer = key or self.key
        if signer is None:
            raise AcmeError("internal error: no account key to sign with")

        def attempt() -> Response:
            protected: dict[str, Any] = {"alg": jws.algorithm(signer), "nonce": self._take_nonce(), "url": url}
            if use_jwk or key is not None or not self.kid:
                protected["jwk"] = jws.jwk(signer)
            else:
                protected["kid"] = self.kid
            body = jws.flattened_jws(signer, protected, payload)
            return self._send("POST", url, body=body, accept=accept)

        return self._with_retries(url, attempt)

    def post_as_get(self, url: str, accept: str | None = None) -> Response:
        """Read a resource as the account (§6.3): every read after newAccount is one of these."""
        return self.post(url, None, accept=accept)

    def get(self, url: str) -> Response:
        """A plain GET, for the few resources anyone may read: the directory, renewalInfo (§7.1.1)."""
        return self._with_retries(url, lambda: self._send("GET", url))

    def _with_retries(self, url: str, attempt: Callable[[], Response]) -> Response:
        """Run ``attempt`` again after a badNonce (§6.5) or a short Retry-After on 503/429 (§6.6)."""
        bad_nonces = busy = 0
        while True:
            try:
                return attempt()
            except AcmeError as exc:
                if exc.is_type("badNonce"):
                    bad_nonces += 1
                    if bad_nonces > MAX_BAD_NONCE_RETRIES:
                        raise AcmeError(f"the CA rejected {bad_nonces} nonces in a row for {url}") from None
                    log.debug("  badNonce: retrying with the nonce from the error response")
                    continue
                wait = exc.retry_after
                if (exc.status not in BUSY_STATUSES or wait is None or busy >= MAX_BUSY_RETRIES
                        or wait > min(MAX_BUSY_WAIT, self.remaining())):
                    raise
                busy += 1
                log.info("The CA is busy (HTTP %s); retrying in %.0f s as it asks", exc.status, wait)
                time.sleep(wait)

    def poll(self, url: str, waiting: tuple[str, ...], *, check: Callable[[Response], dict[str, Any]],
             status: str, hint: str, first_wait: float | None = None) -> dict[str, Any]:
        """POST-as-GET ``url`` until its status leaves ``waiting``, honouring Retry-After (§7.5.1, §8.2).

        ``check`` turns each response into the checked object; ``status`` is its status so far.
        Gives up, with ``hint`` saying what to do next, when a wait would pass the step's timeout.
        """
        wait = first_wait or 0.0
        while True:
            if wait:
                self.pause(wait, f"{url} is still {status!r}", hint)
            resp = self.post_as_get(url)
            body = check(resp)
            status = body["status"]
            if status not in waiting:
                return body
            asked = resp.retry_after
            wait = max(MIN_POLL_INTERVAL, DEFAULT_POLL_INTERVAL if asked is None else asked)

    # -- the wire ---------------------------------------------------------------------------

    def _send(self, method: str, url: str, *, body: dict[str, str] | None = None,
              accept: str | None = None) -> Response:
        if url != self.directory_url:
            self.check_url(url, "request")  # URLs read back from the work dir pass here too
        headers = {"Content-Type": JOSE_JSON} if body is not None else {}
        if accept:
            headers["Accept"] = accept
        limit = MAX_CHAIN_BYTES if accept == PEM_CHAIN else MAX_JSON_BYTES
        data = json.dumps(body).encode() if body is not None else None  # these very bytes go out
        if wire.enabled():  # -vv: the exchange as it travels (common/wire.py), instead of -v's digest
            wire.show_request(method, url, {**self._http.headers, **headers}, data)
        else:
            _log_request(method, url, body)
        raw, content = self._exchange(method, url, data, headers, limit)
        resp = _parse(raw, content)
        if wire.enabled():
            wire.show_response(_http_version(raw), resp.status, resp.reason, _header_pairs(raw), content, resp.body,
                               head=method == "HEAD")
        else:
            _log_response(resp)
        _append_request_log(method, url, resp.status)
        nonce = raw.headers.get("Replay-Nonce")
        if nonce:
            self._nonce = nonce
            if self.store:
                self.store.remember_nonce(nonce)
        if 300 <= resp.status < 400:
            target = raw.headers.get("Location", "nowhere")
            moved = "; if the directory moved, pass its new URL with --server" if url == self.directory_url else ""
            raise AcmeError(f"{method} {url} answered HTTP {resp.status} redirecting to {target}: "
                            f"ACME does not use redirects, so it was not followed{moved}")
        if resp.status >= 400:
            malformed = f", with {resp.body}" if isinstance(resp.body, Unparseable) else ""
            problem = resp.problem or {"type": "about:blank", "detail": f"HTTP {resp.status} {resp.reason}{malformed}"}
            message = f"{method} {url} failed with HTTP {resp.status}"
            if resp.status in BUSY_STATUSES and resp.retry_after is not None:
                message += f"; the CA asks to retry in {describe_seconds(resp.retry_after)}"
            raise AcmeError(message, problem, status=resp.status, retry_after=resp.retry_after)
        if raw.headers.get("Location"):
            resp.location = self.check_url(urljoin(url, raw.headers["Location"]), "Location")
        return resp

    def _exchange(self, method: str, url: str, data: bytes | None, headers: dict[str, str],
                  limit: int) -> tuple[requests.Response, bytes]:
        """One request and its whole body (at most ``limit`` bytes), within a deadline.

        The exchange runs in a helper thread that the step waits for at most EXCHANGE_DEADLINE
        (or what is left of --timeout): requests has no overall timeout of its own.
        """
        budget = min(EXCHANGE_DEADLINE, self.remaining())
        if budget <= 0:
            raise StepTimeoutError(f"gave up after {self.elapsed():.1f} s (--timeout {self.timeout:.0f}) "
                           f"before {method} {url}; raise --timeout to wait longer")

        def run() -> tuple[requests.Response, bytes]:
            # verify is passed on every call: a Session-level value would lose to
            # REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE from the environment.
            raw = self._http.request(method, url, data=data, headers=headers, verify=self.verify,
                                     timeout=(CONNECT_TIMEOUT, READ_TIMEOUT), allow_redirects=False, stream=True)
            return raw, _read_body(raw, limit)

        error: Exception
        try:
            return deadline.within(budget, run, "acme-exchange")
        except deadline.ExpiredError:
            raise AcmeError(f"{method} {url} got no complete answer within {budget:.0f} s: "
                            "the CA is too slow or something in between holds the connection") from None
        except Exception as exc:  # sorted out below
            error = exc
        if isinstance(error, requests.exceptions.SSLError):
            raise AcmeError(f"TLS verification failed for {url}: {_reason(error)}; "
                            "trust the server's CA with --ca-bundle FILE") from None
        if isinstance(error, requests.exceptions.RequestException):
            hint = f"; {self.unreachable_hint}" if self.unreachable_hint else ""
            raise AcmeError(f"cannot reach {url}: {_reason(error)}{hint}") from None
        if isinstance(error, _TooLargeError):
            raise AcmeError(f"{method} {url}: the CA sent more than {limit // 1024} KiB; refusing to read it") from None
        raise error


class _TooLargeError(Exception):
    pass


def _read_body(raw: requests.Response, limit: int) -> bytes:
    """The body, refusing more than ``limit`` bytes (after decompression)."""
    declared = raw.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _TooLargeError
    body = bytearray()
    for chunk in raw.iter_content(64 * 1024):
        body += chunk
        if len(body) > limit:
            raise _TooLargeError
    return bytes(body)


def describe_seconds(seconds: float) -> str:
    """'45 s', '12 min', '3.5 h' or '2 days': a wait as a person reads it."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def _reason(exc: Exception) -> str:
    """The innermost message of a requests/urllib3 exception chain, on one line."""
    while exc.__context__ is not None and str(exc.__context__):
        exc = exc.__context__  # type: ignore[assignment]
    return " ".join(str(exc).split())


def _parse(raw: requests.Response, content: bytes) -> Response:
    """A Response with the body parsed: JSON for *json types (None if unparseable), text otherwise."""
    content_type = raw.headers.get("Content-Type", "").split(";")[0].strip().lower()
    body: Any = content.decode(raw.encoding or "utf-8", errors="replace")
    problem: dict[str, Any] = {}
    if content_type.endswith("json") and content:
        body = _json(content)
        if content_type == "application/problem+json" and isinstance(body, dict):
            problem = body
    return Response(raw.status_code, raw.reason or "", raw.headers, body, raw.url or "", content_type, problem)


class Unparseable(str):
    """A JSON body that did not parse, kept as its (short) description so checks can name it."""


def _json(content: bytes) -> Any:
    """Parsed JSON, or an :class:`Unparseable` when it is broken or nested deeper than any ACME object."""
    try:
        value = json.loads(content)
    except RecursionError:
        return Unparseable("JSON nested too deeply to parse")
    except ValueError:
        return Unparseable("JSON that does not parse")
    if _depth(value) > MAX_JSON_DEPTH:
        return Unparseable(f"JSON nested more than {MAX_JSON_DEPTH} levels deep")
    return value


def _depth(value: Any) -> int:
    """How deeply lists and objects nest, counted without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest


# -- showing the exchange with -v (-vv shows it as it travels instead: common/wire.py) ----------


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
    elif not isinstance(resp.body, str):
        log.debug("  %s", resp.body)
    elif "BEGIN CERTIFICATE" in resp.body:
        log.debug("  (%d PEM certificates, %d bytes)", resp.body.count("BEGIN CERTIFICATE"), len(resp.body))
    elif resp.body:
        log.debug("  %s", _abbreviate(resp.body))


def _http_version(raw: requests.Response) -> str:
    """'HTTP/1.1' as the status line said it (urllib3 keeps it as 11)."""
    version = getattr(raw.raw, "version", 11)
    return f"HTTP/{version // 10}.{version % 10}" if isinstance(version, int) and version >= 10 else "HTTP/1.1"


def _header_pairs(raw: requests.Response) -> list[tuple[str, str]]:
    """The response headers as received, in order, a repeated one (Link) as often as it came."""
    received = getattr(raw.raw, "headers", None)
    return list(received.items() if received is not None else raw.headers.items())


def _append_request_log(method: str, url: str, status: int) -> None:
    path = os.environ.get(REQUEST_LOG_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{method} {url} {status}\n")
