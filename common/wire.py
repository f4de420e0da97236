"""What crosses the wire between a step and the CA, shown with -vv.

-v shows each exchange decoded and shortened. -vv shows it as it travels, laid out like the
examples in RFC 8555: lines marked ``>`` went to the CA, lines marked ``<`` came back, and the
indented lines say what the JWS's base64url strings decode to (those lines are not on the wire):

    > POST /order-plz HTTP/1.1                      the request line
    > Host: localhost:14000                         the headers that matter
    > Content-Type: application/jose+json           (every POST: the body is a JWS, §6.2)
    >
    > {"protected": "eyJ...", "payload": "eyJ...", "signature": "..."}    the body, byte for byte
      protected, decoded: {"alg": ..., "nonce": ..., "url": ..., "kid": ...}
      payload, decoded: {"identifiers": [...]}      ("" for a POST-as-GET, §6.3)
    < HTTP/1.1 201 Created                          the status line
    < Location: https://localhost:14000/my-order/...
    < Replay-Nonce: jbs09N-Rs4qR-Hdo2WRjYw          the nonce the next request carries (§6.5)
    <
    < {...}                                         the body: JSON re-indented, a PEM chain as text

Only the headers named below are shown, and none of them ever carries a secret. The bodies
hold only public things: public keys (the ``jwk`` header, the EAB and keyChange payloads),
signatures, CSRs, certificates. A private key only ever contributes a signature, and the EAB
HMAC key only a MAC, made before the transport sees the payload (common/jws.py). What is shown
is what was sent, so it can hold nothing more.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from .jws import b64url_decode

# A logger of its own, below "acme": off until the command line's -vv turns it on.
log = logging.getLogger("acme.wire")
log.setLevel(logging.INFO)

REQUEST_HEADERS = ("Content-Type", "Accept", "User-Agent")
RESPONSE_HEADERS = ("Replay-Nonce", "Location", "Link", "Retry-After", "Content-Type")
# A response body is shown up to this many characters: an order with a hundred names, a chain
# of four certificates. What is cut is counted, never silently dropped.
MAX_SHOWN = 12_000


def enabled() -> bool:
    """True when -vv asked for the wire view."""
    return log.isEnabledFor(logging.DEBUG)


def show_request(method: str, url: str, headers: Mapping[str, str], body: bytes | None) -> None:
    """The request: request line, Host and the headers that matter, then the body exactly as sent."""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    log.debug("> %s %s HTTP/1.1", method, target)  # requests (urllib3) speaks HTTP/1.1
    log.debug("> Host: %s", parts.netloc)
    for name in REQUEST_HEADERS:
        if name in headers:
            log.debug("> %s: %s", name, headers[name])
    if body is None:
        return
    log.debug(">")
    log.debug("> %s", body.decode("ascii"))  # JSON text as json.dumps writes it: ASCII, one line
    _show_jws(json.loads(body), "")


def _show_jws(jws: dict[str, str], inner: str) -> None:
    """What a flattened JWS's base64url strings say (RFC 7515 §7.2.2); the signature is just bytes."""
    _show_json(f"  {inner}protected, decoded:", json.loads(b64url_decode(jws["protected"])))
    if not jws["payload"]:
        log.debug('  %spayload, decoded: "" (empty: a POST-as-GET, RFC 8555 §6.3)', inner)
        return
    payload = json.loads(b64url_decode(jws["payload"]))
    _show_json(f"  {inner}payload, decoded:", payload)
    if _is_jws(payload):  # keyChange: the payload is a JWS signed by the new key (§7.3.5)
        _show_jws(payload, "inner JWS, ")
    elif isinstance(payload, dict) and _is_jws(payload.get("externalAccountBinding")):  # §7.3.4, HMAC-signed
        _show_jws(payload["externalAccountBinding"], "externalAccountBinding, ")


def _is_jws(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"protected", "payload", "signature"}


def _show_json(title: str, value: Any) -> None:
    lines = json.dumps(value, indent=2, ensure_ascii=False).splitlines()
    log.debug("%s %s", title, lines[0])
    for line in lines[1:]:
        log.debug("  %s", line)


def show_response(version: str, status: int, reason: str, headers: Iterable[tuple[str, str]],
                  content: bytes, parsed: Any, *, head: bool = False) -> None:
    """The response: status line, the headers that matter, then the body.

    ``headers`` are pairs, so a header sent twice (Link) shows twice, as it came. ``content`` is
    the body as received and ``parsed`` its JSON, if it parsed: JSON is shown re-indented.
    """
    log.debug("< %s %s %s", version, status, reason)
    for name, value in headers:
        if name.lower() in (shown.lower() for shown in RESPONSE_HEADERS):
            log.debug("< %s: %s", name, value)
    if head or not content:  # the answer to a HEAD has no body, nor has a 204
        return
    log.debug("<")
    if isinstance(parsed, (dict, list)):
        text = json.dumps(parsed, indent=2, ensure_ascii=False)
    else:  # a PEM chain, or JSON that did not parse: the text as it came
        text = content.decode("utf-8", errors="replace")
    shown = _cut(text)
    for line in shown.splitlines():
        log.debug("< %s", line)
    if len(shown) < len(text):
        log.debug("  ... %d more characters not shown (the body was %d bytes)", len(text) - len(shown), len(content))


def _cut(text: str) -> str:
    """``text`` whole if short, else its first MAX_SHOWN characters, ending at a line's end if one is near."""
    if len(text) <= MAX_SHOWN:
        return text
    end = text.rfind("\n", 0, MAX_SHOWN)
    return text[:end if end > MAX_SHOWN // 2 else MAX_SHOWN]
