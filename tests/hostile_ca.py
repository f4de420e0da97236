"""A scriptable ACME server on loopback: an honest little CA by default, told per test how to misbehave.

It speaks HTTPS with a throwaway TLS certificate (made as tools/local_ca.py makes Pebble's),
issues real certificates from the CSRs it is sent, and keeps every request. A test overrides
any endpoint with canned answers or a function, and can make an answer trickle, stall or lie:

    hostile.answer("POST", "/new-order", Reply(201, {"status": "valid"}, {"Location": "/order/1"}))
    hostile.answer("POST", "/order/1", lambda req: Reply(200, hostile.order_body(), {"Retry-After": "9" * 300}))

Nothing validates anything: a challenge POST makes its authorization valid at once, so each
test sees exactly the misbehaviour it scripted and nothing else.
"""

from __future__ import annotations

import datetime
import json
import re
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hostile_certs import repeat_extension

from common.jws import b64url_decode


@dataclass
class Reply:
    """One answer: status, JSON (dict/list) or raw body (str/bytes), headers, and how to send it."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None
    trickle: float = 0.0  # seconds between bytes of the body
    trickle_headers: float = 0.0  # seconds between bytes of the status line and headers
    stall: float = 0.0  # seconds of silence before anything is sent


@dataclass
class Request:
    method: str
    path: str
    protected: dict[str, Any]
    payload: Any


Answer = Reply | Callable[[Request], Reply]


def token(index: int) -> str:
    """The honest CA's challenge token for authorization ``index``: base64url, as long as §8.1 asks (22+)."""
    return f"token-{index}-".ljust(32, "x")


class HostileCA:
    def __init__(self, tls_dir: Path) -> None:
        self.tls_dir = tls_dir
        self.ca_bundle = str(tls_dir / "ca.pem")
        self._issuer_key = ec.generate_private_key(ec.SECP256R1())
        self._root_key = ec.generate_private_key(ec.SECP256R1())
        self.root = _ca_cert("Hostile test root", self._root_key, self._root_key, None)
        self.intermediate = _ca_cert("Hostile test intermediate", self._issuer_key, self._root_key, self.root.subject)
        handler = _handler(self)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls_dir / "localhost.pem", tls_dir / "localhost.key")
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.reset()

    # -- what a test uses ------------------------------------------------------------------

    @property
    def directory_url(self) -> str:
        return self.url("/dir")

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.server.server_port}{path}"

    def reset(self) -> None:
        """Forget scripts, requests and orders: an honest CA again."""
        self.scripts: dict[tuple[str, str], list[Answer]] = {}
        self.requests: list[Request] = []
        self.names: list[str] = []
        self.answered: set[int] = set()
        self.finalized = False
        self.csr: x509.CertificateSigningRequest | None = None
        self.nonces = 0
        self.ari = False  # whether the directory offers renewalInfo (RFC 9773)

    def answer(self, method: str, path: str, *answers: Answer) -> None:
        """Answer ``method path`` with these, in turn; the last one keeps answering."""
        self.scripts[(method, path)] = list(answers)

    def hits(self, method: str, path: str) -> int:
        return sum(1 for r in self.requests if r.method == method and r.path == path)

    # -- the honest CA's objects -----------------------------------------------------------

    def directory_body(self) -> dict[str, Any]:
        return {name: self.url(path) for name, path in (
            ("newNonce", "/nonce"), ("newAccount", "/new-acct"), ("newOrder", "/new-order"),
            ("revokeCert", "/revoke"), ("keyChange", "/key-change"),
            *([("renewalInfo", "/renewal-info")] if self.ari else []))} | {"meta": {"termsOfService": self.url("/tos")}}

    def order_body(self, status: str | None = None) -> dict[str, Any]:
        if status is None:
            status = ("valid" if self.finalized else
                      "ready" if len(self.answered) == len(self.names) else "pending")
        body = {
            "status": status,
            "identifiers": [{"type": "dns", "value": n} for n in self.names],
            "authorizations": [self.url(f"/authz/{i}") for i in range(len(self.names))],
            "finalize": self.url("/order/1/finalize"),
        }
        if status == "valid":
            body["certificate"] = self.url("/cert/1")
        return body

    def authz_body(self, index: int, *, value: str | None = None) -> dict[str, Any]:
        name = self.names[index]
        valid = index in self.answered
        body = {
            "status": "valid" if valid else "pending",
            "identifier": {"type": "dns", "value": value or name.removeprefix("*.")},
            "challenges": [{"type": "dns-01", "url": self.url(f"/chall/{index}"), "token": token(index),
                            "status": "valid" if valid else "pending"}],
        }
        if name.startswith("*."):
            body["wildcard"] = True
        return body

    def chain_pem(self, *, leaf_is_ca: bool = False, expired: bool = False, wrong_issuer: bool = False,
                  repeated_extension: bool = False, repeated_extension_in_intermediate: bool = False) -> str:
        """The certificate for the last CSR, then the intermediate; optionally broken in one way."""
        assert self.csr is not None, "no CSR finalized yet"
        now = datetime.datetime.now(datetime.timezone.utc)
        start = now - datetime.timedelta(days=100 if expired else 0, minutes=1)
        signer = ec.generate_private_key(ec.SECP256R1()) if wrong_issuer else self._issuer_key
        san = self.csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.intermediate.subject)
            .public_key(self.csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=90))
            .add_extension(san, critical=False)
            .add_extension(x509.BasicConstraints(ca=leaf_is_ca, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False)
        )
        leaf = repeat_extension(builder, signer) if repeated_extension else builder.sign(signer, hashes.SHA256())
        intermediate = self.intermediate
        if repeated_extension_in_intermediate:
            intermediate = _ca_cert("Hostile test intermediate", self._issuer_key, self._root_key, self.root.subject,
                                    repeated=True)
        return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in (leaf, intermediate))

    # -- behind the scenes -----------------------------------------------------------------

    def honest(self, req: Request) -> Reply:
        """What an honest CA answers; a script may end with it to misbehave only at first."""
        path = req.path
        if path == "/dir":
            return Reply(200, self.directory_body())
        if path == "/nonce":
            return Reply(200 if req.method == "HEAD" else 204)
        if path == "/new-acct":
            return Reply(201, {"status": "valid", "contact": req.payload.get("contact", []),
                               "orders": self.url("/acct/1/orders")}, {"Location": self.url("/acct/1")})
        if path == "/new-order":
            self.names = [i["value"] for i in req.payload["identifiers"]]
            self.answered, self.finalized = set(), False
            return Reply(201, self.order_body(), {"Location": self.url("/order/1")})
        if m := re.fullmatch(r"/authz/(\d+)", path):
            return Reply(200, self.authz_body(int(m.group(1))))
        if m := re.fullmatch(r"/chall/(\d+)", path):
            self.answered.add(int(m.group(1)))
            return Reply(200, {"type": "dns-01", "url": self.url(path), "token": token(int(m.group(1))),
                               "status": "processing"})
        if path == "/order/1":
            return Reply(200, self.order_body())
        if path == "/order/1/finalize":
            self.csr = x509.load_der_x509_csr(b64url_decode(req.payload["csr"]))
            self.finalized = True
            return Reply(200, self.order_body("processing"), {"Location": self.url("/order/1")})
        if path == "/cert/1":
            return Reply(200, self.chain_pem(), content_type="application/pem-certificate-chain")
        if path.startswith("/renewal-info/") and self.ari:  # a window a month from now, as for a fresh certificate
            now = datetime.datetime.now(datetime.timezone.utc)
            window = {"start": f"{now + datetime.timedelta(days=59):%Y-%m-%dT%H:%M:%SZ}",
                      "end": f"{now + datetime.timedelta(days=60):%Y-%m-%dT%H:%M:%SZ}"}
            return Reply(200, {"suggestedWindow": window}, {"Retry-After": "21600"})
        return Reply(404, {"type": "urn:ietf:params:acme:error:malformed", "detail": f"no such resource {path}"})

    def _reply_for(self, req: Request) -> Reply:
        self.requests.append(req)
        script = self.scripts.get((req.method, req.path))
        if script:
            answer = script.pop(0) if len(script) > 1 else script[0]
            return answer(req) if callable(answer) else answer
        return self.honest(req)


def _handler(ca: HostileCA) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            protected, payload = {}, None
            if length:
                jws = json.loads(self.rfile.read(length))
                protected = json.loads(b64url_decode(jws["protected"]))
                payload = json.loads(b64url_decode(jws["payload"])) if jws["payload"] else None
            reply = ca._reply_for(Request(self.command, self.path, protected, payload))
            try:
                self._send(reply)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
                pass  # the client hung up on a trickle: that is the point

        def _send(self, reply: Reply) -> None:
            if reply.stall:
                time.sleep(reply.stall)
            body = reply.body
            if isinstance(body, (dict, list)):
                data = json.dumps(body).encode()
                kind = reply.content_type or ("application/problem+json" if reply.status >= 400 else "application/json")
            else:
                data = body.encode() if isinstance(body, str) else (body or b"")
                kind = reply.content_type
            ca.nonces += 1
            headers = {"Replay-Nonce": f"nonce-{ca.nonces}", "Content-Length": str(len(data)), **reply.headers}
            if kind:
                headers["Content-Type"] = kind
            head = f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Whatever')}\r\n"
            head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
            self._write(head.encode("latin-1"), reply.trickle_headers)
            if self.command != "HEAD":
                self._write(data, reply.trickle)

        def _write(self, data: bytes, delay: float) -> None:
            if not delay:
                self.wfile.write(data)
                self.wfile.flush()
                return
            for i in range(len(data)):
                self.wfile.write(data[i:i + 1])
                self.wfile.flush()
                time.sleep(delay)

        do_GET = do_HEAD = do_POST = _serve  # noqa: N815  (http.server names them so)

    return Handler


_REASONS = {200: "OK", 201: "Created", 204: "No Content", 301: "Moved Permanently", 302: "Found",
            400: "Bad Request", 403: "Forbidden", 404: "Not Found", 429: "Too Many Requests",
            500: "Internal Server Error", 503: "Service Unavailable"}


def _ca_cert(name: str, key: ec.EllipticCurvePrivateKey, signer: ec.EllipticCurvePrivateKey,
             issuer: x509.Name | None, *, repeated: bool = False) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer or subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    return repeat_extension(builder, signer) if repeated else builder.sign(signer, hashes.SHA256())

