"""The transport in-process against the scripted CA (tests/hostile_ca.py): bad nonces, Retry-After, endless pending.

Pebble covers the happy path and random nonce rejection; this server makes the rarer cases
happen every time. Waits are recorded instead of slept, so nothing here depends on timing.
"""

from __future__ import annotations

import email.utils
import json
import time

import pytest
from hostile_ca import Reply

from common import keys, rfc8555, transport, workdir
from common.errors import AcmeError, StepTimeoutError, UsageError


@pytest.fixture
def ca(hostile):
    hostile.reset()
    return hostile


@pytest.fixture
def client(ca):
    return transport.Client(ca.directory_url, verify=ca.ca_bundle, key=keys.generate_key("ec256"),
                            kid=ca.url("/acct/1"))


def posts(ca, path: str) -> list[dict]:
    return [r.protected for r in ca.requests if r.method == "POST" and r.path == path]


@pytest.fixture
def waits(monkeypatch):
    """Record each sleep and move a fake monotonic clock instead of waiting."""
    recorded: list[float] = []
    clock = [time.monotonic()]  # where a client made just before started its clock

    def sleep(seconds: float) -> None:
        recorded.append(seconds)
        clock[0] += seconds

    monkeypatch.setattr(transport.time, "sleep", sleep)
    monkeypatch.setattr(transport.time, "monotonic", lambda: clock[0])
    return recorded


BAD_NONCE = Reply(400, {"type": "urn:ietf:params:acme:error:badNonce", "detail": "try again"})
PENDING, READY = Reply(200, {"status": "pending"}), Reply(200, {"status": "ready"})


def status_of(resp):
    return resp.body


def test_bad_nonce_is_retried_with_the_nonce_from_the_error(ca, client):
    ca.answer("POST", "/order/1", BAD_NONCE, BAD_NONCE, BAD_NONCE, PENDING)
    assert client.post_as_get(ca.url("/order/1")).body == {"status": "pending"}
    sent = posts(ca, "/order/1")
    assert len(sent) == 4
    heads = [r for r in ca.requests if r.method == "HEAD"]
    assert len(heads) == 1, "only the first nonce needs newNonce; retries use the error's Replay-Nonce"
    # Each retry carries the nonce the previous error response handed out (1: GET dir, 2: HEAD).
    assert [p["nonce"] for p in sent[1:]] == [f"nonce-{n}" for n in (3, 4, 5)]


def test_endless_bad_nonces_end_in_a_clear_error(ca, client, monkeypatch):
    monkeypatch.setattr(transport, "MAX_BAD_NONCE_RETRIES", 4)
    ca.answer("POST", "/order/1", BAD_NONCE)
    with pytest.raises(AcmeError, match="rejected 5 nonces in a row"):
        client.post_as_get(ca.url("/order/1"))
    assert len(posts(ca, "/order/1")) == 5


def test_poll_honours_retry_after_seconds(ca, client, waits):
    ca.answer("POST", "/order/1", Reply(200, {"status": "processing"}, {"Retry-After": "3"}),
              Reply(200, {"status": "valid"}))
    assert client.poll(ca.url("/order/1"), ("processing",), check=status_of, status="processing",
                       hint="")["status"] == "valid"
    assert waits == [3.0]


def test_poll_honours_retry_after_http_date(ca, client, waits):
    when = email.utils.formatdate(time.time() + 20, usegmt=True)
    ca.answer("POST", "/order/1", Reply(200, {"status": "pending"}, {"Retry-After": when}), READY)
    assert client.poll(ca.url("/order/1"), ("pending",), check=status_of, status="pending",
                       hint="")["status"] == "ready"
    assert len(waits) == 1 and 17 <= waits[0] <= 20


def test_poll_without_retry_after_uses_the_default(ca, client, waits):
    ca.answer("POST", "/order/1", PENDING, PENDING, READY)
    client.poll(ca.url("/order/1"), ("pending",), check=status_of, status="pending", hint="", first_wait=0.25)
    assert waits == [0.25, transport.DEFAULT_POLL_INTERVAL, transport.DEFAULT_POLL_INTERVAL]


def test_poll_gives_up_before_a_wait_would_pass_the_timeout(ca, client, waits):
    client.timeout = 45
    ca.answer("POST", "/order/1", Reply(200, {"status": "pending"}, {"Retry-After": "30"}))
    with pytest.raises(StepTimeoutError, match=r"gave up after 30.0 s \(--timeout 45\).*still 'pending'.*do this"):
        client.poll(ca.url("/order/1"), ("pending",), check=status_of, status="pending", hint="do this")
    assert len(posts(ca, "/order/1")) == 2 and waits == [30.0]


def test_a_first_wait_past_the_timeout_is_not_slept(ca, client, waits):
    client.timeout = 10
    with pytest.raises(StepTimeoutError, match="asks to wait 2.0 h more"):
        client.poll(ca.url("/order/1"), ("pending",), check=status_of, status="pending", hint="", first_wait=7200)
    assert waits == [] and posts(ca, "/order/1") == []


def test_problem_document_with_subproblems(ca, client):
    problem = {
        "type": "urn:ietf:params:acme:error:rejectedIdentifier",
        "detail": "Some names were rejected",
        "subproblems": [
            {"type": "urn:ietf:params:acme:error:rejectedIdentifier", "detail": "blocked",
             "identifier": {"type": "dns", "value": "bad.example"}},
        ],
    }
    ca.answer("POST", "/new-order", Reply(403, problem))
    with pytest.raises(AcmeError) as info:
        rfc8555.new_order(client, ["bad.example", "good.example"])
    text = "\n".join(info.value.lines())
    assert "urn:ietf:params:acme:error:rejectedIdentifier: Some names were rejected" in text
    assert "dns:bad.example: urn:ietf:params:acme:error:rejectedIdentifier: blocked" in text


def test_directory_and_nonce_carry_over_between_steps(ca, tmp_path):
    """A second step reuses the first one's directory and last nonce: no GET, no HEAD."""
    work = workdir.WorkDir(tmp_path)
    key = keys.generate_key("ec256")
    first = transport.Client(ca.directory_url, verify=ca.ca_bundle, key=key, kid="k",
                        store=workdir.SessionCache(work, ca.directory_url))
    rfc8555.new_order(first, ["a.example"])
    first.store.save()  # what atexit does when the step ends
    before = len(ca.requests)
    second = transport.Client(ca.directory_url, verify=ca.ca_bundle, key=key, kid="k",
                         store=workdir.SessionCache(work, ca.directory_url))
    second.post_as_get(ca.url("/order/1"))
    new = ca.requests[before:]
    assert [r.method for r in new] == ["POST"]
    assert new[0].protected["nonce"] == f"nonce-{ca.nonces - 1}"


def test_unreachable_server_is_a_clear_error():
    client = transport.Client("https://127.0.0.1:9/dir", key=keys.generate_key("ec256"))
    with pytest.raises(AcmeError, match="cannot reach https://127.0.0.1:9/dir"):
        client.directory  # noqa: B018


def test_an_http_directory_url_is_refused():
    with pytest.raises(UsageError, match="must be an https:// URL"):
        transport.Client("http://127.0.0.1:9/dir")


def test_retry_after_date_uses_wall_clock():
    now = time.time()
    header = email.utils.formatdate(now + 10, usegmt=True)
    assert 9 <= transport.retry_after_seconds(header, now=now) <= 10


@pytest.mark.parametrize(("header", "expected"), [
    ("9" * 400, transport.MAX_RETRY_AFTER), ("Fri, 31 Dec 9999 23:59:59 GMT", transport.MAX_RETRY_AFTER),
    ("-5", None), ("1e5", None), ("Mon, 99 Foo 2020 99:99:99 GMT", None), ("\x00", None),
])
def test_absurd_retry_after_values(header, expected):
    assert transport.retry_after_seconds(header) == expected


def test_json_nesting_is_measured_without_recursion():
    deep: list = []
    for _ in range(10_000):
        deep = [deep]
    assert transport._depth(deep) == 10_001
    assert transport._json(json.dumps({"a": [1, {"b": 2}]}).encode()) == {"a": [1, {"b": 2}]}
    assert isinstance(transport._json(b"[" * 40 + b"]" * 40), transport.Unparseable)
