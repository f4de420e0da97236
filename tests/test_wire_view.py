"""-vv: every exchange with the CA as it crosses the wire (common/wire.py), checked against Pebble.

What is shown is checked by what does not trust it: jwcrypto verifies each JWS shown with the
account's public key, the nonces shown must chain from each response to the next request, the
Locations shown are the ones the steps saved, and a requests adapter records the bytes really
sent. And nothing secret shows: not the keys' PEM or private numbers, nor the EAB HMAC key.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from helpers import fails, hostile_account, plain_env, run_plain, unique
from hostile_ca import Reply
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto import jws as jwcrypto_jws

from common import keys, wire
from common.jws import b64url, b64url_decode, int_to_bytes
from common.transport import Client

ACCOUNT = ("--server", "pebble", "--agree-tos", "--email", "wire@example.com")


@dataclass
class Exchange:
    """One request and its response as -vv showed them: the ``>`` lines and the ``<`` lines."""

    method: str
    target: str
    sent: list[str] = field(default_factory=list)  # header lines, "", the body line
    received: list[str] = field(default_factory=list)  # status line, header lines, "", body lines

    def _split(self, lines: list[str]) -> tuple[list[str], list[str]]:
        return (lines[:lines.index("")], lines[lines.index("") + 1:]) if "" in lines else (lines, [])

    @property
    def headers(self) -> dict[str, str]:
        return dict(line.split(": ", 1) for line in self._split(self.sent)[0])

    @property
    def body(self) -> str | None:
        body = self._split(self.sent)[1]
        assert len(body) <= 1, body  # the JWS goes out as one line
        return body[0] if body else None

    @property
    def jws(self) -> dict[str, str]:
        return json.loads(self.body)

    @property
    def protected(self) -> dict:
        return json.loads(b64url_decode(self.jws["protected"]))

    @property
    def status(self) -> int:
        return int(re.fullmatch(r"HTTP/1\.1 (\d{3}) .*", self.received[0])[1])

    @property
    def response_headers(self) -> list[tuple[str, str]]:
        return [tuple(line.split(": ", 1)) for line in self._split(self.received[1:])[0]]

    def response_header(self, name: str) -> str | None:
        return next((value for key, value in self.response_headers if key.lower() == name.lower()), None)

    @property
    def response_text(self) -> str:
        return "\n".join(self._split(self.received[1:])[1])


def exchanges(output: str) -> list[Exchange]:
    """The exchanges in a step's output; the other lines (progress, decoded JWS parts) are skipped."""
    found: list[Exchange] = []
    for line in output.splitlines():
        if m := re.fullmatch(r"> (GET|HEAD|POST) (\S+) HTTP/1\.1", line):
            found.append(Exchange(m[1], m[2]))
        elif found and line[:1] in (">", "<") and line[1:2] in ("", " "):
            (found[-1].sent if line[0] == ">" else found[-1].received).append(line[2:])
    return found


def collapse(items: list[str]) -> list[str]:
    """``items`` with repeats in a row (a badNonce retry) counted once."""
    return [item for i, item in enumerate(items) if i == 0 or items[i - 1] != item]


def private_material(pem_file) -> list[str]:
    """What would give a key away: its PEM's first line and its private numbers, base64url as a JWK's d."""
    pem = pem_file.read_text()
    key = serialization.load_pem_private_key(pem.encode(), None)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        numbers = [(key.private_numbers().private_value, (key.curve.key_size + 7) // 8)]
    else:
        assert isinstance(key, rsa.RSAPrivateKey)
        private = key.private_numbers()
        numbers = [(private.d, None), (private.p, None), (private.q, None)]
    first_line = [line for line in pem.splitlines() if "-----" not in line][0]
    return ["PRIVATE KEY", first_line, *(b64url(int_to_bytes(n, size)) for n, size in numbers)]


def account_public_jwk(work) -> jwcrypto_jwk.JWK:
    key = serialization.load_pem_private_key((work / "account.key").read_bytes(), None)
    return jwcrypto_jwk.JWK.from_pyca(key.public_key())


def decoded_block(title: str, value) -> str:
    """How -vv lays out a decoded JWS part: ``title`` then the JSON, indented by two spaces."""
    return "\n".join("  " + line for line in f"{title} {json.dumps(value, indent=2)}".splitlines())


def check_posts(posts: list[Exchange], output: str, public: jwcrypto_jwk.JWK) -> None:
    """Each POST as RFC 8555 §6.2 wants it, its JWS verifying with ``public``, and its decoding shown."""
    for post in posts:
        assert post.headers["Content-Type"] == "application/jose+json"
        assert post.headers["User-Agent"].startswith("acme-step-by-step/")
        assert set(post.jws) == {"protected", "payload", "signature"}
        token = jwcrypto_jws.JWS()
        token.deserialize(post.body, key=public)  # raises InvalidJWSSignature unless it verifies
        assert post.protected["url"].endswith(post.target)
        assert decoded_block("protected, decoded:", post.protected) in output
        if post.jws["payload"]:
            assert decoded_block("payload, decoded:", json.loads(b64url_decode(post.jws["payload"]))) in output


def check_nonce_chain(shown: list[Exchange]) -> None:
    """Every POST carries the Replay-Nonce of the response just before it (§6.5): the one shown."""
    previous = None
    for exchange in shown:
        if exchange.method == "POST":
            assert previous is not None, "a POST before any Replay-Nonce was shown"
            assert exchange.protected["nonce"] == previous
        previous = exchange.response_header("Replay-Nonce") or previous


def test_04_and_05_show_each_request_and_response_as_sent(ca, work):
    ca.ok(1, work)
    ca.ok(2, work)
    ca.ok(3, work, "-d", unique("wire"))
    runs = [ca.ok(4, work, *ACCOUNT, "-vv"), ca.ok(5, work, "-vv")]
    output = "".join(r.stdout for r in runs)
    new_account, new_order = exchanges(runs[0].stdout), exchanges(runs[1].stdout)

    # 04: the directory, a first nonce, then newAccount (again after a badNonce, if Pebble sent one).
    directory = json.loads(new_account[0].response_text)
    path = {name: urlsplit(directory[name]).path for name in ("newNonce", "newAccount", "newOrder")}
    assert collapse([f"{e.method} {e.target}" for e in new_account]) == [
        "GET /dir", f"HEAD {path['newNonce']}", f"POST {path['newAccount']}"]
    assert new_account[0].body is None and new_account[1].body is None
    head = new_account[1]
    assert head.status == 200 and head.response_header("Replay-Nonce") and head.response_text == ""
    account = new_account[-1]
    assert account.status == 201 and "jwk" in account.protected
    assert account.response_header("Location") == json.loads((work / "account.json").read_text())["account_url"]
    assert json.loads(account.response_text)["status"] == "valid"

    # 05: the directory and the nonce come from session.json, so newOrder is the first request.
    assert collapse([f"{e.method} {e.target}" for e in new_order])[0] == f"POST {path['newOrder']}"
    order = next(e for e in new_order if e.status == 201)
    assert order.protected["kid"] == account.response_header("Location")
    assert order.response_header("Location") == json.loads((work / "order.json").read_text())["url"]

    shown = new_account + new_order
    check_posts([e for e in shown if e.method == "POST"], output, account_public_jwk(work))
    check_nonce_chain(shown)  # across the two steps too: 05 uses the nonce 04 was given last
    everything = "".join(r.stdout + r.stderr for r in runs)
    for secret in private_material(work / "account.key") + private_material(work / "cert.key"):
        assert secret not in everything


def test_08_shows_the_pem_chain_as_text(ca, work):
    ca.issue(work, [unique("wire-chain")])
    result = ca.ok(8, work, "-vv")
    download = [e for e in exchanges(result.stdout) if e.headers.get("Accept") == "application/pem-certificate-chain"]
    assert download and download[-1].status == 200
    assert download[-1].jws["payload"] == ""  # a POST-as-GET (§6.3)
    assert '  payload, decoded: "" (empty: a POST-as-GET' in result.stdout
    check_posts(download, result.stdout, account_public_jwk(work))
    assert download[-1].response_text == (work / "fullchain.pem").read_text().strip()
    assert any(name == "Link" and 'rel="index"' in value for name, value in download[-1].response_headers)
    for secret in private_material(work / "account.key") + private_material(work / "cert.key"):
        assert secret not in result.stdout + result.stderr


def test_each_bad_nonce_attempt_is_shown(ca_nonce90, work):
    """Pebble rejecting 90% of nonces: each rejected POST and its retry show, the nonces chaining through."""
    ca_nonce90.ok(1, work)
    runs = [ca_nonce90.ok(4, work, *ACCOUNT, "-vv")]
    while not any("badNonce" in r.stdout for r in runs) and len(runs) < 6:  # 0.1 ** 6 that none comes
        runs.append(ca_nonce90.ok(10, work, "-vv"))
    shown = [e for r in runs for e in exchanges(r.stdout)]
    rejected = [i for i, e in enumerate(shown) if e.status == 400 and "badNonce" in e.response_text]
    assert rejected, "no badNonce in six steps"
    for i in rejected:
        retry = shown[i + 1]
        assert (retry.method, retry.target) == (shown[i].method, shown[i].target)
        assert retry.protected["nonce"] == shown[i].response_header("Replay-Nonce")
    check_nonce_chain(shown)
    check_posts([e for e in shown if e.method == "POST"], "".join(r.stdout for r in runs), account_public_jwk(work))
    assert "badNonce: retrying" in "".join(r.stdout for r in runs)  # -v's lines stay at -vv


def test_eab_shows_the_binding_never_the_hmac_key(ca_eab, work):
    kid, hmac_key = ca_eab.eab
    raw = b64url_decode(hmac_key)
    secrets = [hmac_key, base64.b64encode(raw).decode(), raw.hex()]
    ca_eab.ok(1, work)
    result = ca_eab.ok(4, work, *ACCOUNT, "--eab-kid", kid, "--eab-hmac-key-env", "EAB_KEY", "-vv",
                       env={"EAB_KEY": hmac_key})
    for secret in secrets + private_material(work / "account.key"):
        assert secret not in result.stdout + result.stderr
    post = next(e for e in exchanges(result.stdout) if e.method == "POST")
    binding = json.loads(b64url_decode(post.jws["payload"]))["externalAccountBinding"]
    token = jwcrypto_jws.JWS()  # the MAC shown is the right one: it verifies under the key never shown
    token.deserialize(json.dumps(binding), key=jwcrypto_jwk.JWK(kty="oct", k=hmac_key))
    assert decoded_block("externalAccountBinding, protected, decoded:",
                         json.loads(b64url_decode(binding["protected"]))) in result.stdout
    assert decoded_block("externalAccountBinding, payload, decoded:", post.protected["jwk"]) in result.stdout


def test_v_alone_shows_no_wire_lines(ca, work):
    ca.ok(1, work)
    result = ca.ok(4, work, *ACCOUNT, "-v")
    assert "> POST https://" in result.stdout and "  protected: " in result.stdout  # -v as before
    assert exchanges(result.stdout) == []
    for wire_only in ("HTTP/1.1", "application/jose+json", "User-Agent", '"signature"', "decoded:", "> {"):
        assert wire_only not in result.stdout + result.stderr


def test_vv_means_v_where_no_ca_is_involved_and_help_says_what_it_shows(tmp_path):
    result = run_plain(1, "--dir", str(tmp_path / "acme-work"), "-vv", env=plain_env(), cwd=tmp_path)
    assert result.returncode == 0 and "public JWK" in result.stdout
    help_text = " ".join(run_plain(5, "--help", env=plain_env(), cwd=tmp_path).stdout.split())
    assert "-vv: each as it crosses the wire" in help_text


def test_the_body_shown_is_the_body_sent(ca, caplog):
    """In-process, with an adapter recording what requests hands to the socket: the same bytes, the same headers."""
    sent: list[requests.PreparedRequest] = []

    class Recording(requests.adapters.HTTPAdapter):
        def send(self, request, *args, **kwargs):
            sent.append(request)
            return super().send(request, *args, **kwargs)

    client = Client(ca.state["directory_url"], verify=ca.state["ca_bundle"], key=keys.generate_key("ec256"))
    client._http.mount("https://", Recording())
    caplog.set_level(logging.DEBUG, logger=wire.log.name)
    client.post(client.endpoint("newAccount"), {"termsOfServiceAgreed": True}, use_jwk=True)
    shown = exchanges("\n".join(r.getMessage() for r in caplog.records if r.name == wire.log.name))
    assert len(shown) == len(sent) >= 3  # GET directory, HEAD newNonce, POST newAccount (and retries)
    for exchange, request in zip(shown, sent, strict=True):
        assert (exchange.method, exchange.target) == (request.method, request.path_url)
        assert exchange.body == (request.body.decode() if request.body else None)
        for name, value in exchange.headers.items():
            assert request.headers.get(name, urlsplit(request.url).netloc if name == "Host" else None) == value


def test_what_a_hostile_ca_sends_shows_escaped_and_cut(hostile, work):
    hostile.reset()
    hostile_account(hostile, work, [unique("wire-hostile")])
    forged = "line one\nerror: forged\x1b[2J\u202eevil"
    hostile.answer("POST", "/new-order", Reply(403, forged, content_type="text/plain"))
    result = run_plain(5, "--dir", str(work), "-vv", env=plain_env(), cwd=work.parent)
    fails(result, 1, "HTTP 403", one_line=False)
    assert "< line one" in result.stdout and "< error: forged\\x1b[2J\\u202eevil" in result.stdout
    assert "\x1b" not in result.stdout + result.stderr and "\u202e" not in result.stdout + result.stderr

    nested = "[" * 100_000 + "]" * 100_000  # deeper than any ACME object: shown as the text it is, cut
    hostile.answer("POST", "/new-order", Reply(201, nested, {"Location": hostile.url("/order/1")}, "application/json"))
    result = run_plain(5, "--dir", str(work), "-vv", env=plain_env(), cwd=work.parent)
    fails(result, 1, "JSON", one_line=False)
    assert f"< {'[' * wire.MAX_SHOWN}" in result.stdout
    assert "more characters not shown (the body was 200000 bytes)" in result.stdout


def test_a_long_body_is_cut_and_what_was_cut_is_counted(caplog):
    caplog.set_level(logging.DEBUG, logger=wire.log.name)
    body = "".join(f"line {i:05} " + "x" * 50 + "\n" for i in range(2000)).encode()  # 122,000 bytes
    wire.show_response("HTTP/1.1", 200, "OK", [("Content-Type", "text/plain"), ("X-Other", "no")], body, None)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:3] == ["< HTTP/1.1 200 OK", "< Content-Type: text/plain", "<"]
    shown = "\n".join(line[2:] for line in lines[3:-1])
    assert body.decode().startswith(shown + "\n") and len(shown) <= wire.MAX_SHOWN
    assert lines[-1] == f"  ... {len(body) - len(shown)} more characters not shown (the body was {len(body)} bytes)"
