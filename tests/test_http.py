"""The transport against a scripted CA that misbehaves on cue: bad nonces, Retry-After forms, endless pending.

Pebble covers the happy path and random nonce rejection; this server makes the rarer cases
happen every time. Waits are recorded instead of slept, so nothing here depends on timing.
"""

from __future__ import annotations

import email.utils
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from common import http, keys, rfc8555, state
from common.encoding import b64url_decode
from common.errors import AcmeError


class ScriptedCA:
    """Answers POSTs from a per-path queue of (status, headers, body); records each request."""

    def __init__(self) -> None:
        self.queues: dict[str, list[tuple[int, dict, dict]]] = {}
        self.requests: list[tuple[str, str, dict]] = []  # (method, path, protected header)
        self.counter = 0
        ca = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _reply(self, status, headers, body):
                ca.counter += 1
                payload = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Replay-Nonce", f"nonce-{ca.counter}")
                for name, value in headers.items():
                    self.send_header(name, value)
                if body is not None:
                    kind = "application/problem+json" if status >= 400 else "application/json"
                    self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_HEAD(self):
                ca.requests.append(("HEAD", self.path, {}))
                self._reply(200, {}, None)

            def do_GET(self):
                ca.requests.append(("GET", self.path, {}))
                endpoints = {"newNonce": "nonce", "newOrder": "order", "newAccount": "acct"}
                self._reply(200, {}, {name: ca.url(path) for name, path in endpoints.items()})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                ca.requests.append(("POST", self.path, json.loads(b64url_decode(body["protected"]))))
                queue = ca.queues.get(self.path.lstrip("/")) or [(200, {}, {"status": "valid"})]
                self._reply(*(queue.pop(0) if len(queue) > 1 else queue[0]))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/{path}"

    def posts(self, path: str) -> list[dict]:
        return [protected for method, p, protected in self.requests if method == "POST" and p == "/" + path]


@pytest.fixture
def ca():
    server = ScriptedCA()
    yield server
    server.server.shutdown()


@pytest.fixture
def client(ca):
    return http.Client(ca.url("dir"), key=keys.generate_key("ec256"), kid=ca.url("acct/1"))


@pytest.fixture
def waits(monkeypatch):
    """Record each sleep and move a fake monotonic clock instead of waiting."""
    recorded: list[float] = []
    clock = [1000.0]

    def sleep(seconds: float) -> None:
        recorded.append(seconds)
        clock[0] += seconds

    monkeypatch.setattr(http.time, "sleep", sleep)
    monkeypatch.setattr(http.time, "monotonic", lambda: clock[0])
    return recorded


BAD_NONCE = (400, {}, {"type": "urn:ietf:params:acme:error:badNonce", "detail": "try again"})


def test_bad_nonce_is_retried_with_the_nonce_from_the_error(ca, client):
    ca.queues["order/1"] = [BAD_NONCE, BAD_NONCE, BAD_NONCE, (200, {}, {"status": "pending"})]
    assert client.post_as_get(ca.url("order/1")).body == {"status": "pending"}
    sent = ca.posts("order/1")
    assert len(sent) == 4
    heads = [r for r in ca.requests if r[0] == "HEAD"]
    assert len(heads) == 1, "only the first nonce needs newNonce; retries use the error's Replay-Nonce"
    # Each retry carries the nonce the previous error response handed out (1: GET dir, 2: HEAD).
    assert [p["nonce"] for p in sent[1:]] == [f"nonce-{n}" for n in (3, 4, 5)]


def test_endless_bad_nonces_end_in_a_clear_error(ca, client, monkeypatch):
    monkeypatch.setattr(http, "MAX_BAD_NONCE_RETRIES", 4)
    ca.queues["order/1"] = [BAD_NONCE]
    with pytest.raises(AcmeError, match="rejected 5 nonces in a row"):
        client.post_as_get(ca.url("order/1"))
    assert len(ca.posts("order/1")) == 5


def test_poll_honours_retry_after_seconds(ca, client, waits):
    ca.queues["order/1"] = [(200, {"Retry-After": "3"}, {"status": "processing"}), (200, {}, {"status": "valid"})]
    assert client.poll(ca.url("order/1"), ("processing",), timeout=60).body["status"] == "valid"
    assert waits == [3.0]


def test_poll_honours_retry_after_http_date(ca, client, waits):
    when = email.utils.formatdate(time.time() + 20, usegmt=True)
    ca.queues["order/1"] = [(200, {"Retry-After": when}, {"status": "pending"}), (200, {}, {"status": "ready"})]
    assert client.poll(ca.url("order/1"), ("pending",), timeout=60).body["status"] == "ready"
    assert len(waits) == 1 and 17 <= waits[0] <= 20


def test_poll_without_retry_after_uses_the_default(ca, client, waits):
    pending, ready = (200, {}, {"status": "pending"}), (200, {}, {"status": "ready"})
    ca.queues["order/1"] = [pending, pending, ready]
    client.poll(ca.url("order/1"), ("pending",), timeout=60, first_wait=0.25)
    assert waits == [0.25, http.DEFAULT_POLL_INTERVAL, http.DEFAULT_POLL_INTERVAL]


def test_poll_gives_up_at_the_timeout(ca, client, waits):
    ca.queues["order/1"] = [(200, {"Retry-After": "30"}, {"status": "pending"})]
    with pytest.raises(AcmeError, match="gave up after 45 s.*still 'pending'"):
        client.poll(ca.url("order/1"), ("pending",), timeout=45)
    assert len(ca.posts("order/1")) == 2 and waits == [30.0]


def test_problem_document_with_subproblems(ca, client):
    problem = {
        "type": "urn:ietf:params:acme:error:rejectedIdentifier",
        "detail": "Some names were rejected",
        "subproblems": [
            {"type": "urn:ietf:params:acme:error:rejectedIdentifier", "detail": "blocked",
             "identifier": {"type": "dns", "value": "bad.example"}},
        ],
    }
    ca.queues["order"] = [(403, {}, problem)]
    with pytest.raises(AcmeError) as info:
        rfc8555.new_order(client, ["bad.example", "good.example"])
    text = "\n".join(info.value.lines())
    assert "urn:ietf:params:acme:error:rejectedIdentifier: Some names were rejected" in text
    assert "dns:bad.example: urn:ietf:params:acme:error:rejectedIdentifier: blocked" in text


def test_directory_and_nonce_carry_over_between_steps(ca, tmp_path):
    """A second step reuses the first one's directory and last nonce: no GET, no HEAD."""
    work = state.WorkDir(tmp_path)
    key = keys.generate_key("ec256")
    first = http.Client(ca.url("dir"), key=key, kid="k", store=state.SessionCache(work, ca.url("dir")))
    ca.queues["order"] = [(201, {"Location": ca.url("order/1")}, {"status": "pending"})]
    rfc8555.new_order(first, ["a.example"])
    first.store.save()  # what atexit does when the step ends
    before = list(ca.requests)
    second = http.Client(ca.url("dir"), key=key, kid="k", store=state.SessionCache(work, ca.url("dir")))
    second.post_as_get(ca.url("order/1"))
    new = ca.requests[len(before):]
    assert [r[0] for r in new] == ["POST"]
    assert new[0][2]["nonce"] == f"nonce-{len(before)}"


def test_unreachable_server_is_a_clear_error(tmp_path):
    client = http.Client("http://127.0.0.1:9/dir", key=keys.generate_key("ec256"))
    with pytest.raises(AcmeError, match="cannot reach http://127.0.0.1:9/dir"):
        client.directory  # noqa: B018


def test_retry_after_date_uses_wall_clock():
    now = time.time()
    header = email.utils.formatdate(now + 10, usegmt=True)
    assert 9 <= http.retry_after_seconds(header, now=now) <= 10
