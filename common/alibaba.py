"""Calling Alibaba Cloud's RPC-style APIs with requests signed as ACS3-HMAC-SHA256 ("signature V3").

The signature follows Alibaba's document "Request syntax and signature method V3" (also titled "V3
request structure and signature"),
https://www.alibabacloud.com/help/en/sdk/product-overview/v3-request-structure-and-signature
in its four steps, one short function each, top to bottom:

  Step 1  canonical request   method, path, sorted query, signed headers, hash of the body
  Step 2  string to sign      "ACS3-HMAC-SHA256" + hex SHA-256 of the canonical request
  Step 3  signature           hex HMAC-SHA256(AccessKey secret, string to sign)
  Step 4  Authorization       "ACS3-HMAC-SHA256 Credential=<id>,SignedHeaders=<names>,Signature=<hex>"

:func:`call` sends one action the way Alibaba's own SDK does for RPC-style APIs (Alidns
2015-01-09, CAS 2020-04-07, CDN 2018-05-10, CloudAPI 2016-07-14, ...): POST to "/", every
parameter in the query string, an empty body, the action and version in ``x-acs-*`` headers.

This file stands alone on purpose: it imports only the standard library and ``requests``, so it
can be copied into another project as it is. Credentials come from the environment, never from
options; nothing here prints or logs a secret, a security token or a private key parameter.
"""

from __future__ import annotations

import datetime
import email.utils
import hashlib
import hmac
import json
import logging
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import requests

log = logging.getLogger("acme.alibaba")

ALGORITHM = "ACS3-HMAC-SHA256"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # x-acs-date: ISO 8601 in UTC, to the second

# The environment variables Alibaba's SDKs and CLI read (STS adds the token).
ENV_ACCESS_KEY_ID = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ENV_ACCESS_KEY_SECRET = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"
ENV_SECURITY_TOKEN = "ALIBABA_CLOUD_SECURITY_TOKEN"

# Parameters whose values are private keys or credentials: -v traces show their length only.
# Add to this set before passing such a parameter under another name.
SECRET_PARAMS = frozenset({
    "Key",                    # CAS UploadUserCertificate
    "PrivateKey",             # CAS UploadPCACert and others
    "EncryptPrivateKey",      # CAS, SM2 certificates
    "SignPrivateKey",         # CAS, SM2 certificates
    "SSLPri",                 # CDN SetCdnDomainSSLCertificate with CertType=upload
    "CertificatePrivateKey",  # API Gateway SetDomainCertificate
    "AccessKeySecret",
    "SecurityToken",
    "Password",
})

# Error codes that mean "your x-acs-date is too far from Alibaba's clock".
CLOCK_SKEW_CODES = frozenset({"InvalidTimeStamp.Expired", "IllegalTimestamp", "RequestTimeTooSkewed"})

CONNECT_TIMEOUT = 10.0  # seconds to set up TCP and TLS
READ_TIMEOUT = 60.0  # seconds between bytes of the answer
MAX_RESPONSE_BYTES = 4 * 1024 * 1024  # no API answer we use comes near this
TRACE_VALUE_LIMIT = 80  # -v shortens longer values (certificates) to this many characters


class MissingCredentialsError(Exception):
    """An environment variable the credentials need is not set (a command line turns this into exit 2)."""


class AlibabaError(Exception):
    """An API call failed: Alibaba's ``Code`` and ``Message``, its ``RequestId`` and the HTTP status.

    Network failures are AlibabaErrors too, with code ``NetworkError`` and no status.
    """

    def __init__(self, code: str, message: str, request_id: str | None = None, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.request_id = request_id
        self.status = status

    def __str__(self) -> str:
        request = f" (RequestId {self.request_id})" if self.request_id else ""
        return f"{self.code}: {self.message}{request}"


@dataclass(frozen=True)
class Credentials:
    """An AccessKey pair, optionally with an STS security token. Its repr shows the key id only."""

    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)


def credentials_from_env(environ: Mapping[str, str] | None = None) -> Credentials:
    """The credentials in ALIBABA_CLOUD_ACCESS_KEY_ID/_SECRET (and _SECURITY_TOKEN for STS)."""
    env = os.environ if environ is None else environ
    key_id, secret = env.get(ENV_ACCESS_KEY_ID, "").strip(), env.get(ENV_ACCESS_KEY_SECRET, "").strip()
    missing = [name for name, value in ((ENV_ACCESS_KEY_ID, key_id), (ENV_ACCESS_KEY_SECRET, secret)) if not value]
    if missing:
        raise MissingCredentialsError(
            f"{' and '.join(missing)} not set: export {ENV_ACCESS_KEY_ID} and {ENV_ACCESS_KEY_SECRET} "
            f"(and {ENV_SECURITY_TOKEN} for an STS token) with a RAM user's AccessKey")
    return Credentials(key_id, secret, env.get(ENV_SECURITY_TOKEN, "").strip() or None)


# --- the signature, step by step ------------------------------------------------------------


def percent_encode(text: str) -> str:
    """RFC 3986 encoding of UTF-8: letters, digits and ``-_.~`` stay, space is %20, ``*`` is %2A."""
    return quote(text, safe="~")


def canonical_query_string(params: Iterable[tuple[str, str]]) -> str:
    """Step 1, CanonicalQueryString: names and values percent-encoded, sorted by name, joined by ``&``.

    A parameter without a value is written ``name=``.
    """
    encoded = sorted((percent_encode(name), percent_encode(value)) for name, value in params)
    return "&".join(f"{name}={value}" for name, value in encoded)


def hashed_payload(body: bytes) -> str:
    """Step 1, HashedRequestPayload: hex SHA-256 of the body (of b"" when there is none)."""
    return hashlib.sha256(body).hexdigest()


def canonical_headers(headers: Mapping[str, str]) -> tuple[str, str]:
    """Step 1, CanonicalHeaders and SignedHeaders: ``host``, ``content-type`` and every ``x-acs-*``.

    Names lower-cased and sorted, values trimmed, one ``name:value`` line each. Returns the
    lines and the ``;``-joined names.
    """
    signed = sorted(
        (name.lower(), value.strip()) for name, value in headers.items()
        if name.lower() in ("host", "content-type") or name.lower().startswith("x-acs-")
    )
    return "".join(f"{name}:{value}\n" for name, value in signed), ";".join(name for name, _ in signed)


def canonical_request(method: str, path: str, query: Iterable[tuple[str, str]], headers: Mapping[str, str],
                      payload_hash: str) -> tuple[str, str]:
    """Step 1: the canonical request, and the signed header names it used.

    ``path`` is the canonical URI: "/" for RPC-style APIs, each segment percent-encoded.
    """
    header_lines, signed_headers = canonical_headers(headers)
    uri = quote(path or "/", safe="/~")
    request = "\n".join([method.upper(), uri, canonical_query_string(query), header_lines, signed_headers,
                         payload_hash])
    return request, signed_headers


def string_to_sign(canonical: str) -> str:
    """Step 2: the algorithm name, a newline, and the hex SHA-256 of the canonical request."""
    return f"{ALGORITHM}\n{hashlib.sha256(canonical.encode('utf-8')).hexdigest()}"


def signature(access_key_secret: str, to_sign: str) -> str:
    """Step 3: hex HMAC-SHA256 of the string to sign, keyed with the AccessKey secret as it is."""
    return hmac.new(access_key_secret.encode("utf-8"), to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def authorization(access_key_id: str, signed_headers: str, signature_hex: str) -> str:
    """Step 4: the Authorization header value."""
    return f"{ALGORITHM} Credential={access_key_id},SignedHeaders={signed_headers},Signature={signature_hex}"


def sign_request(method: str, host: str, path: str, query: Iterable[tuple[str, str]], headers: Mapping[str, str],
                 body: bytes, access_key_id: str, access_key_secret: str, date: datetime.datetime | str,
                 nonce: str, security_token: str | None = None) -> dict[str, str]:
    """Every header a V3 request needs, Authorization included; a pure function of its arguments.

    ``headers`` carries ``x-acs-action``, ``x-acs-version`` and, with a body, ``content-type``;
    this adds ``host``, ``x-acs-date``, ``x-acs-signature-nonce``, ``x-acs-content-sha256`` and,
    for STS credentials, ``x-acs-security-token`` (signed like every other ``x-acs-*`` header).
    """
    when = date if isinstance(date, str) else date.astimezone(datetime.timezone.utc).strftime(DATE_FORMAT)
    out = {name.lower(): value for name, value in headers.items()}
    out.update({"host": host, "x-acs-date": when, "x-acs-signature-nonce": nonce,
                "x-acs-content-sha256": hashed_payload(body)})
    if security_token:
        out["x-acs-security-token"] = security_token
    canonical, signed_headers = canonical_request(method, path, list(query), out, out["x-acs-content-sha256"])
    out["authorization"] = authorization(access_key_id, signed_headers,
                                         signature(access_key_secret, string_to_sign(canonical)))
    return out


# --- calling an RPC-style API ---------------------------------------------------------------


def flatten_params(params: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """Parameters as name/value strings, the way the SDKs send them.

    None is left out; booleans are ``true``/``false``; a list becomes ``Name.1``, ``Name.2``...
    and a dict ``Name.Key`` (Alibaba's "repeat list" and object forms).
    """
    out: list[tuple[str, str]] = []

    def add(name: str, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, Mapping):
            for key, item in value.items():
                add(f"{name}.{key}", item)
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value, 1):
                add(f"{name}.{index}", item)
        elif isinstance(value, bool):
            out.append((name, "true" if value else "false"))
        else:
            out.append((name, value.decode("utf-8") if isinstance(value, bytes) else str(value)))

    for name, value in (params or {}).items():
        add(name, value)
    return out


def call(endpoint: str, action: str, version: str, params: Mapping[str, Any] | None, credentials: Credentials, *,
         form: Mapping[str, Any] | None = None, session: requests.Session | None = None,
         timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT),
         max_response_bytes: int = MAX_RESPONSE_BYTES) -> dict[str, Any]:
    """Call one RPC-style action and return its JSON answer; AlibabaError if Alibaba or the network says no.

    ``endpoint`` is ``https://host`` (``https://alidns.aliyuncs.com``), or a test double's
    ``https://host:port/prefix``. ``params`` go in the query string as the SDKs send them;
    ``form`` is for the few actions whose metadata puts parameters ``in: formData`` (sent as an
    ``application/x-www-form-urlencoded`` body). Each call gets a fresh random nonce and date.
    """
    url = urlsplit(endpoint)
    if url.scheme != "https" or not url.hostname:
        raise ValueError(f"Alibaba Cloud endpoint {endpoint!r} must be an https:// URL")
    path = url.path or "/"
    query = flatten_params(params)
    body, headers = b"", {"x-acs-action": action, "x-acs-version": version}
    if form:
        body = urlencode(flatten_params(form)).encode("ascii")
        headers["content-type"] = "application/x-www-form-urlencoded"
    signed = sign_request("POST", url.netloc, path, query, headers, body, credentials.access_key_id,
                          credentials.access_key_secret, datetime.datetime.now(datetime.timezone.utc),
                          secrets.token_hex(16), credentials.security_token)
    _trace_request(endpoint, action, version, query, flatten_params(form), signed)
    target = f"{url.scheme}://{url.netloc}{quote(path, safe='/~')}"
    if query:
        target += "?" + canonical_query_string(query)  # sent exactly as signed
    http = session or requests.Session()
    try:
        with http.post(target, data=body, headers=signed, timeout=timeout, stream=True,
                       allow_redirects=False) as resp:
            raw = _read_capped(resp, max_response_bytes, url.hostname)
            status, reason, resp_headers = resp.status_code, resp.reason, resp.headers
    except requests.RequestException as exc:
        # Never put str(exc) in the message: requests quotes the URL, whose query holds the parameters.
        raise AlibabaError("NetworkError", f"cannot reach {url.hostname} ({type(exc).__name__}): "
                                           f"{_network_reason(exc)}") from None
    finally:
        if session is None:
            http.close()
    answer = _parse_json(raw)
    _trace_response(status, reason, resp_headers, answer, raw)
    if status >= 300 or not isinstance(answer, dict):
        raise _error_from(status, reason, resp_headers, answer, raw)
    return answer


def _read_capped(resp: requests.Response, limit: int, host: str) -> bytes:
    """The body, refusing one longer than ``limit`` (a broken proxy must not fill the memory)."""
    chunks, size = [], 0
    for chunk in resp.iter_content(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise AlibabaError("ResponseTooLarge", f"{host} sent more than {limit} bytes; giving up",
                               resp.headers.get("x-acs-request-id"), resp.status_code)
        chunks.append(chunk)
    return b"".join(chunks)


def _network_reason(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS failed: is the certificate trusted (REQUESTS_CA_BUNDLE)?"
    if isinstance(exc, requests.exceptions.Timeout):
        return "no answer in time"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "connection failed: check the endpoint and the network"
    return "request failed"


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _error_from(status: int, reason: str, headers: Mapping[str, str], answer: Any, raw: bytes) -> AlibabaError:
    """Alibaba's JSON error (Code, Message, RequestId), with the clock's offset for timestamp errors."""
    if not isinstance(answer, dict):
        text = raw[:200].decode("utf-8", "replace").strip() or reason
        return AlibabaError(f"HTTP{status}", f"not a JSON answer: {text}", headers.get("x-acs-request-id"), status)
    code = str(answer.get("Code") or f"HTTP{status}")
    message = str(answer.get("Message") or reason)
    if code in CLOCK_SKEW_CODES:
        message += " " + clock_advice(headers.get("Date"))
    return AlibabaError(code, message, answer.get("RequestId") or headers.get("x-acs-request-id"), status)


def clock_advice(server_date: str | None, now: datetime.datetime | None = None) -> str:
    """What to say when Alibaba rejects x-acs-date: how far this machine's clock is off, if the Date header tells."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    try:
        server = email.utils.parsedate_to_datetime(server_date) if server_date else None
    except (TypeError, ValueError):
        server = None
    if server is None:
        return ("This machine's clock seems to be off: Alibaba accepts x-acs-date up to 15 minutes from "
                "its own time. Set the clock (NTP) and try again.")
    if server.tzinfo is None:
        server = server.replace(tzinfo=datetime.timezone.utc)
    skew = (now - server).total_seconds()
    direction = "ahead of" if skew > 0 else "behind"
    return (f"This machine's clock is off: it is about {abs(skew):.0f} seconds {direction} Alibaba's "
            f"(Alibaba says {server:%Y-%m-%d %H:%M:%S} UTC, this machine {now:%Y-%m-%d %H:%M:%S} UTC). "
            "Set the clock (NTP) and try again.")


# --- -v traces, with secrets redacted -------------------------------------------------------


def redact_value(name: str, value: str) -> str:
    """What a trace shows for one parameter: secrets as their length only, long values shortened."""
    if name.split(".")[0] in SECRET_PARAMS or name in SECRET_PARAMS:
        return f"<redacted, {len(value)} characters>"
    if len(value) > TRACE_VALUE_LIMIT:
        return f"{value[:TRACE_VALUE_LIMIT]!r}... ({len(value)} characters)"
    return repr(value)


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers fit to log: the signature and the security token replaced."""
    out = {}
    for name, value in headers.items():
        if name.lower() == "authorization":
            value = value.rsplit("Signature=", 1)[0] + "Signature=<redacted>"
        elif name.lower() == "x-acs-security-token":
            value = "<redacted>"
        out[name] = value
    return out


def _redact_json(value: Any) -> Any:
    """A JSON answer fit to log: members named like secret parameters (GetUserCertificateDetail's Key) hidden."""
    if isinstance(value, dict):
        return {k: (f"<redacted, {len(str(v))} characters>" if k in SECRET_PARAMS and v else _redact_json(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_json(v) for v in value]
    if isinstance(value, str) and len(value) > TRACE_VALUE_LIMIT:
        return value[:TRACE_VALUE_LIMIT] + f"... ({len(value)} characters)"
    return value


def _trace_request(endpoint: str, action: str, version: str, query: list[tuple[str, str]],
                   form: list[tuple[str, str]], headers: Mapping[str, str]) -> None:
    if not log.isEnabledFor(logging.DEBUG):
        return
    lines = [f"> POST {endpoint} {action} (API {version})"]
    lines += [f">   {name} = {redact_value(name, value)}" for name, value in query + form]
    lines += [f">   [{name}: {value}]" for name, value in sorted(redact_headers(headers).items())]
    log.debug("\n".join(lines))


def _trace_response(status: int, reason: str, headers: Mapping[str, str], answer: Any, raw: bytes) -> None:
    if not log.isEnabledFor(logging.DEBUG):
        return
    shown = json.dumps(_redact_json(answer), ensure_ascii=False) if answer is not None else f"({len(raw)} bytes)"
    log.debug("< %s %s %s", status, reason, shown)
