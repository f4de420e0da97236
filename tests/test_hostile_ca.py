"""The steps against a CA that misbehaves on purpose (tests/hostile_ca.py).

One test per way a CA can go wrong: waits it asks for, answers that trickle or never end,
URLs that lead elsewhere, bodies of the wrong shape, problem documents that are not, names
nobody ordered, chains that do not hold, and signals in the middle of it all. Each checks
the exit status, that no traceback was printed, and what the work directory holds afterwards.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
from helpers import ROOT, STEPS, fails, free_port, hostile_account, plain_env, run_script, unique, wait_for_line
from hostile_ca import Reply, token

NAME = unique("hostile")


@pytest.fixture(scope="module")
def template(hostile, tmp_path_factory):
    """An account and a CSR on the hostile CA, made once; each test works on a copy."""
    work = tmp_path_factory.mktemp("hostile-account") / "acme-work"
    hostile_account(hostile, work, [NAME])
    return work


@pytest.fixture
def work(hostile, template, tmp_path):
    hostile.reset()
    copy = tmp_path / "acme-work"
    shutil.copytree(template, copy)
    (tmp_path / "tmp").mkdir()
    return copy


def run(step: int, work, *args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run a step on ``work``; temporary files go to a directory the test can inspect."""
    command = [sys.executable, str(ROOT / STEPS[step]), "--dir", str(work), *args]
    return run_script(command, timeout=timeout, cwd=work.parent,
                      env=plain_env({"TMPDIR": str(work.parent / "tmp"), **(env or {})}))


def start(step: int, work, *args: str) -> subprocess.Popen:
    command = [sys.executable, str(ROOT / STEPS[step]), "--dir", str(work), *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=work.parent,
                            env=plain_env({"TMPDIR": str(work.parent / "tmp")}))


def dns_challenge(ca, *extra: str) -> list[str]:
    """Step 06's options for the session's challtestsrv, where the records go (and are checked)."""
    return ["--provider", "challtestsrv", "--challtestsrv-url", ca.state["challtestsrv_url"],
            "--dns-resolver", ca.state["dns_server"], *extra]


def order_json(work) -> dict:
    return json.loads((work / "order.json").read_text())


def ready_order(hostile, work) -> None:
    """An order the CA calls ready, as if 06 had run: 05 against the honest CA, then every name proven."""
    assert run(5, work).returncode == 0
    hostile.answered = set(range(len(hostile.names)))
    saved = order_json(work)
    (work / "order.json").write_text(json.dumps({**saved, "order": hostile.order_body()}))


def finalized(hostile, work) -> None:
    ready_order(hostile, work)
    result = run(7, work)
    assert result.returncode == 0, result.stderr


def leftover_temp_files(work) -> list[str]:
    return os.listdir(work.parent / "tmp")


def timed(step: int, work, *args: str, **kw) -> tuple[subprocess.CompletedProcess, float]:
    began = time.monotonic()
    result = run(step, work, *args, **kw)
    return result, time.monotonic() - began


# --- 1. time is bounded -------------------------------------------------------------------------

FAR_FUTURE = "Fri, 31 Dec 9999 23:59:59 GMT"


def test_far_future_retry_after_on_a_challenge_answer_gives_up_at_once(ca, hostile, work):
    assert run(5, work).returncode == 0
    challenge = {"type": "dns-01", "url": hostile.url("/chall/0"), "token": token(0), "status": "processing"}
    hostile.answer("POST", "/chall/0", Reply(200, challenge, {"Retry-After": FAR_FUTURE}))
    result, seconds = timed(6, work, *dns_challenge(ca, "--timeout", "20"))
    fails(result, 1, "gave up after", "days more", "06_dns_challenge.py again", one_line=False)
    assert seconds < 10
    assert ca.txt("_acme-challenge." + NAME) == []


@pytest.mark.parametrize(("value", "status"), [
    ("9" * 400, 1), (FAR_FUTURE, 1), ("-5", 0), ("garbage", 0), ("0x10", 0), ("1.5", 0), ("", 0),
], ids=["400-digits", "year-9999", "negative", "garbage", "hex", "fraction", "empty"])
def test_absurd_retry_after_on_a_poll_neither_crashes_nor_hangs(hostile, work, value, status):
    ready_order(hostile, work)
    processing = Reply(200, None, {"Retry-After": value})
    hostile.answer("POST", "/order/1", lambda req: Reply(200, hostile.order_body("processing"), processing.headers),
                   hostile.honest)
    result, seconds = timed(7, work, "--timeout", "20")
    assert seconds < 10, result.stderr
    if status:
        fails(result, 1, "gave up after", "07_finalize.py again", one_line=False)
        assert order_json(work)["order"]["status"] == "processing"
    else:
        assert result.returncode == 0, result.stderr
        assert order_json(work)["order"]["status"] == "valid"


def test_absurd_retry_after_on_finalize_saves_the_order_for_a_resume(hostile, work):
    ready_order(hostile, work)
    hostile.answer("POST", "/order/1/finalize",
                   lambda req: Reply(200, hostile.honest(req).body, {"Retry-After": "9" * 300}))
    result, seconds = timed(7, work, "--timeout", "20")
    fails(result, 1, "gave up after", "07_finalize.py again", one_line=False)
    assert seconds < 10
    assert order_json(work)["order"]["status"] == "processing"
    hostile.answer("POST", "/order/1/finalize", hostile.honest)
    again = run(7, work)
    assert again.returncode == 0, again.stderr
    assert "finalized by an earlier run" in again.stdout
    assert hostile.hits("POST", "/order/1/finalize") == 1  # the CSR was not sent twice
    assert order_json(work)["order"]["status"] == "valid"


def test_the_timeout_message_states_the_real_elapsed_time(hostile, work):
    ready_order(hostile, work)
    hostile.answer("POST", "/order/1", lambda req: Reply(200, hostile.order_body("processing"), {"Retry-After": "1"}))
    result, seconds = timed(7, work, "--timeout", "3")
    fails(result, 1, "(--timeout 3)", one_line=False)
    stated = float(re.search(r"gave up after ([0-9.]+) s", result.stderr).group(1))
    # At least the waits it made, at most the time it ran (the step rounds to 0.1 s; the test measures more)
    assert 2 <= stated <= seconds + 0.05


def test_503_with_a_short_retry_after_is_retried(hostile, work):
    busy = Reply(503, {"type": "urn:ietf:params:acme:error:serverInternal", "detail": "busy"}, {"Retry-After": "1"})
    hostile.answer("POST", "/new-order", busy, hostile.honest)
    result = run(5, work)
    assert result.returncode == 0, result.stderr
    assert "busy (HTTP 503)" in result.stdout
    assert hostile.hits("POST", "/new-order") == 2


@pytest.mark.parametrize(("status", "kind", "words"), [
    (503, "serverInternal", ["HTTP 503", "retry in 2.0 h"]),
    (429, "rateLimited", ["HTTP 429", "retry in 2.0 h", "wait as the detail says"]),
])
def test_a_long_retry_after_is_reported_not_slept(hostile, work, status, kind, words):
    problem = {"type": f"urn:ietf:params:acme:error:{kind}", "detail": "later"}
    hostile.answer("POST", "/new-order", Reply(status, problem, {"Retry-After": "7200"}))
    result, seconds = timed(5, work)
    fails(result, 1, *words, one_line=False)
    assert seconds < 10
    assert not (work / "order.json").exists()


@pytest.mark.parametrize("where", ["body", "headers"])
def test_a_trickling_answer_is_cut_off(hostile, work, where):
    (work / "session.json").unlink()  # make 05 fetch the directory, which now trickles
    slow = Reply(200, hostile.directory_body(), **{"trickle" if where == "body" else "trickle_headers": 0.3})
    hostile.answer("GET", "/dir", slow)
    result, seconds = timed(5, work, "--timeout", "3")
    fails(result, 1, "no complete answer within 3 s")
    assert seconds < 20  # byte by byte, the answer would take minutes
    assert not (work / "order.json").exists()


def test_an_oversize_json_body_is_refused(hostile, work):
    huge = {"status": "pending", "padding": "x" * (600 * 1024)}
    hostile.answer("POST", "/new-order", Reply(201, huge, {"Location": hostile.url("/order/1")}))
    fails(run(5, work), 1, "more than 512 KiB")
    assert not (work / "order.json").exists()


def test_an_oversize_certificate_chain_is_refused_and_nothing_written(hostile, work):
    finalized(hostile, work)
    pem = "-----BEGIN CERTIFICATE-----\n" + "QUFB\n" * 300_000 + "-----END CERTIFICATE-----\n"
    hostile.answer("POST", "/cert/1", Reply(200, pem, content_type="application/pem-certificate-chain"))
    fails(run(8, work), 1, "more than 1024 KiB")
    assert not (work / "cert.pem").exists()


# --- 2. URLs are checked before use --------------------------------------------------------------


def test_an_http_endpoint_in_the_directory_is_refused(hostile, work):
    (work / "session.json").unlink()
    directory = hostile.directory_body() | {"newOrder": hostile.url("/new-order").replace("https:", "http:")}
    hostile.answer("GET", "/dir", Reply(200, directory))
    fails(run(5, work), 1, "not an https URL")
    assert hostile.hits("POST", "/new-order") == 0
    assert not (work / "order.json").exists()


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_reported_not_followed(hostile, work, status):
    hostile.answer("POST", "/new-order", Reply(status, None, {"Location": hostile.url("/elsewhere")}))
    fails(run(5, work), 1, f"HTTP {status}", "/elsewhere", "not followed")
    assert hostile.hits("POST", "/elsewhere") == hostile.hits("GET", "/elsewhere") == 0


def test_a_redirected_directory_says_to_use_the_new_url(hostile, work):
    (work / "session.json").unlink()
    hostile.answer("GET", "/dir", Reply(301, None, {"Location": "https://new.example/dir"}))
    fails(run(5, work), 1, "https://new.example/dir", "--server")


def _order_on(hostile, host_url: str) -> Reply:
    body = hostile.order_body("pending") | {"authorizations": [f"{host_url}/authz/0"]}
    return Reply(201, body, {"Location": hostile.url("/order/1")})


def test_an_authorization_on_another_host_is_refused_unless_allowed(hostile, work):
    hostile.answer("POST", "/new-order", lambda req: (hostile.honest(req), _order_on(hostile, "https://evil.example"))[1])
    fails(run(5, work), 1, "evil.example", "--allow-host evil.example")
    assert not (work / "order.json").exists()
    allowed = run(5, work, "--allow-host", "evil.example")
    assert allowed.returncode == 0, allowed.stderr
    assert order_json(work)["order"]["authorizations"] == ["https://evil.example/authz/0"]
    (work / "order.json").unlink()
    from_env = run(5, work, env={"ACME_ALLOW_HOSTS": "other.example,evil.example"})
    assert from_env.returncode == 0, from_env.stderr


def test_a_location_on_another_host_is_refused(hostile, work):
    hostile.answer("POST", "/new-order",
                   lambda req: Reply(201, hostile.honest(req).body, {"Location": "https://evil.example/order/1"}))
    fails(run(5, work), 1, "evil.example")
    assert not (work / "order.json").exists()


def test_a_relative_location_is_resolved_before_it_is_saved(hostile, work):
    hostile.answer("POST", "/new-order", lambda req: Reply(201, hostile.honest(req).body, {"Location": "/order/1"}))
    assert run(5, work).returncode == 0
    assert order_json(work)["url"] == hostile.url("/order/1")


# --- 3. bodies are checked before they are used or saved ------------------------------------------


@pytest.mark.parametrize("reply", [
    Reply(201, ["an", "array"]),
    Reply(201, {"status": "bogus", "identifiers": [], "authorizations": [], "finalize": "https://x/"}),
    Reply(201, {"status": "pending"}),
    Reply(201, "<html>oops</html>", content_type="text/html"),
    Reply(201, "{not json", content_type="application/json"),
], ids=["array", "bad-status", "no-fields", "html", "broken-json"])
def test_a_non_order_never_replaces_order_json(hostile, work, reply):
    assert run(5, work).returncode == 0
    before = (work / "order.json").read_text()
    hostile.reset()
    hostile.answer("POST", "/new-order", Reply(reply.status, reply.body, {"Location": hostile.url("/order/1")},
                                                reply.content_type))
    fails(run(5, work), 1, "the CA sent")
    assert (work / "order.json").read_text() == before
    assert oct((work / "order.json").stat().st_mode & 0o777) == "0o644"


def test_an_order_for_other_names_is_refused(hostile, work):
    hostile.answer("POST", "/new-order",
                   lambda req: (hostile.honest(req), setattr(hostile, "names", ["other.example"]),
                                Reply(201, hostile.order_body(), {"Location": hostile.url("/order/1")}))[2])
    fails(run(5, work), 1, "other names than asked")
    assert not (work / "order.json").exists()


def test_garbage_at_the_end_of_06_keeps_the_order_and_removes_the_records(ca, hostile, work):
    assert run(5, work).returncode == 0
    before = order_json(work)["order"]
    hostile.answer("POST", "/order/1", Reply(200, {"status": "ready"}))
    fails(run(6, work, *dns_challenge(ca)), 1, "the CA sent a bad order")
    assert order_json(work)["order"] == before
    assert ca.txt("_acme-challenge." + NAME) == []


PROBLEMS = {
    "types-not-strings": {"type": 5, "detail": ["x", {"y": 1}]},
    "subproblems-string": {"type": "urn:ietf:params:acme:error:malformed", "subproblems": "oops"},
    "subproblems-not-objects": {"type": "urn:ietf:params:acme:error:malformed", "subproblems": ["a", 1, None, []]},
    "identifier-string": {"type": "urn:ietf:params:acme:error:rejectedIdentifier", "detail": "no",
                          "subproblems": [{"identifier": "bad.example", "type": "x", "detail": "y"}]},
    "problem-array": [1, 2, 3],
    "problem-string": "just text",
}


@pytest.mark.parametrize("verbose", [[], ["-v"]], ids=["plain", "verbose"])
@pytest.mark.parametrize("problem", list(PROBLEMS.values()), ids=list(PROBLEMS))
def test_a_malformed_problem_document_still_prints_cleanly(hostile, work, problem, verbose):
    hostile.answer("POST", "/new-order", Reply(400, problem, content_type="application/problem+json"))
    result = run(5, work, *verbose)
    fails(result, 1, "HTTP 400", one_line=False)
    assert "internal error" not in result.stderr


@pytest.mark.parametrize("verbose", [[], ["-v"]], ids=["plain", "verbose"])
@pytest.mark.parametrize("status", [201, 400])
def test_deeply_nested_json_is_an_error_message(hostile, work, status, verbose):
    nested = "[" * 100_000 + "]" * 100_000
    kind = "application/json" if status == 201 else "application/problem+json"
    hostile.answer("POST", "/new-order", Reply(status, nested, {"Location": hostile.url("/order/1")}, kind))
    result = run(5, work, *verbose)
    fails(result, 1, "JSON", one_line=False)
    assert "RecursionError" not in result.stderr and "internal error" not in result.stderr


def test_an_authorization_for_a_name_not_ordered_publishes_nothing(ca, hostile, work):
    assert run(5, work).returncode == 0
    hostile.answer("POST", "/authz/0", Reply(200, hostile.authz_body(0, value="victim.example")))
    result = run(6, work, *dns_challenge(ca))
    fails(result, 1, "victim.example", "does not name")
    assert "Publishing" not in result.stdout and "proven" not in result.stdout
    assert ca.txt("_acme-challenge.victim.example") == [] and ca.txt("_acme-challenge." + NAME) == []
    assert hostile.hits("POST", "/chall/0") == 0


def test_a_challenge_already_invalid_stops_at_once_with_its_error(ca, hostile, work):
    assert run(5, work).returncode == 0
    failed = {"type": "dns-01", "url": hostile.url("/chall/0"), "token": token(0), "status": "invalid",
              "error": "a plain string, not a problem document"}
    hostile.answer("POST", "/chall/0", Reply(200, failed))
    result, seconds = timed(6, work, *dns_challenge(ca))
    fails(result, 1, f"dns-01 challenge for {NAME} is invalid", one_line=False)
    assert seconds < 10 and hostile.hits("POST", "/order/1") == 0
    assert ca.txt("_acme-challenge." + NAME) == []


def test_an_invalid_order_shows_each_failed_authorization(ca, hostile, work):
    assert run(5, work).returncode == 0
    invalid_authz = hostile.authz_body(0) | {"status": "invalid"}
    invalid_authz["challenges"][0] |= {"status": "invalid", "error": {"type": "urn:ietf:params:acme:error:dns",
                                                                      "detail": "no TXT record found"}}
    hostile.answer("POST", "/authz/0", hostile.honest, Reply(200, invalid_authz))
    hostile.answer("POST", "/order/1", lambda req: Reply(200, hostile.order_body("invalid") | {"error": "a string"}))
    result = run(6, work, *dns_challenge(ca))
    fails(result, 1, "the order is invalid", f"dns:{NAME}", "no TXT record found", one_line=False)


HTTP_STEP = "06_http_challenge.py"


def run_http(work, *args: str) -> subprocess.CompletedProcess:
    """06_http_challenge.py on ``work``, without the self-check (the names resolve nowhere)."""
    command = [sys.executable, str(ROOT / HTTP_STEP), "--dir", str(work), "--no-self-check", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=work.parent, env=plain_env())


def offer_http01(hostile, token_value) -> None:
    """Make the first authorization offer an http-01 challenge with this token."""
    def authz(req):
        body = hostile.authz_body(0)
        body["challenges"] = [{"type": "http-01", "url": hostile.url("/chall/0"), "token": token_value,
                               "status": "pending"}]
        return Reply(200, body)
    hostile.answer("POST", "/authz/0", authz)


@pytest.mark.parametrize("mode", ["webroot", "standalone"])
def test_a_token_of_ten_kilobytes_is_the_cas_fault_and_touches_nothing(hostile, work, tmp_path, mode):
    assert run(5, work).returncode == 0
    offer_http01(hostile, "A" * 10240)
    webroot = tmp_path / "www"
    webroot.mkdir()
    where = ["--webroot", str(webroot)] if mode == "webroot" else [
        "--standalone", "--http-port", str(free_port()), "--bind", "127.0.0.1"]
    result = run_http(work, *where)
    fails(result, 1, "the CA sent a bad authorization", "token", "22 to 128 characters", "10240 characters")
    assert len(result.stderr) < 1000
    assert list(webroot.iterdir()) == [] and hostile.hits("POST", "/chall/0") == 0


def test_a_token_shorter_than_128_bits_is_refused(ca, hostile, work):
    assert run(5, work).returncode == 0
    short = hostile.authz_body(0)
    short["challenges"][0]["token"] = "token-0"
    hostile.answer("POST", "/authz/0", Reply(200, short))
    fails(run(6, work, *dns_challenge(ca)), 1, "a token that is not base64url of 22 to 128 characters")
    assert ca.txt("_acme-challenge." + NAME) == [] and hostile.hits("POST", "/chall/0") == 0


@pytest.mark.parametrize("linked", [".well-known", ".well-known/acme-challenge"])
def test_a_link_in_the_webroot_is_refused_unless_allowed(hostile, work, tmp_path, linked):
    assert run(5, work).returncode == 0
    offer_http01(hostile, token(0))
    webroot, elsewhere = tmp_path / "www", tmp_path / "elsewhere"
    (webroot / ".well-known").mkdir(parents=True)
    (elsewhere / "acme-challenge" if linked == ".well-known" else elsewhere).mkdir(parents=True)
    if linked == ".well-known":
        (webroot / ".well-known").rmdir()
    (webroot / linked).symlink_to(elsewhere, target_is_directory=True)
    result = run_http(work, "--webroot", str(webroot))
    fails(result, 2, f"{webroot / linked} is a link (to {elsewhere})", "--follow-webroot-links")
    assert [p for p in elsewhere.rglob("*") if p.is_file()] == [] and hostile.hits("POST", "/chall/0") == 0

    # Said deliberately, a shared challenge directory is used, and only this step's file removed again.
    result = run_http(work, "--webroot", str(webroot), "--follow-webroot-links")
    assert result.returncode == 0, result.stderr
    assert token(0) in result.stdout and [p for p in elsewhere.rglob("*") if p.is_file()] == []
    assert (webroot / linked).is_symlink()


def test_control_characters_from_the_ca_are_escaped(hostile, work):
    detail = "line one\nerror: forged line\x1b[2J\x07\u202eevil"
    hostile.answer("POST", "/new-order", Reply(403, {"type": "urn:ietf:params:acme:error:unauthorized",
                                                     "detail": detail}))
    for verbose in ([], ["-v"]):
        result = run(5, work, *verbose)
        fails(result, 1, "\\x1b[2J", "\\u202e", one_line=False)
        assert "\x1b" not in result.stderr + result.stdout and "\u202e" not in result.stderr + result.stdout
        assert "\nerror: forged line" not in result.stderr


# --- 4. signals and interruptions -------------------------------------------------------------


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)], ids=["TERM", "HUP"])
def test_a_signal_during_06_cleans_up_like_ctrl_c(ca, hostile, work, signum, status):
    assert run(5, work).returncode == 0
    hostile.answer("POST", "/order/1", lambda req: Reply(200, hostile.order_body("pending"), {"Retry-After": "1"}))
    proc = start(6, work, *dns_challenge(ca, "--timeout", "60"))
    wait_for_line(proc, "Waiting for the CA")
    assert ca.txt("_acme-challenge." + NAME) != []
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == status, err
    assert "Traceback" not in err and f"interrupted by {signal.Signals(signum).name}" in err
    assert "Removing TXT records" in out
    assert ca.txt("_acme-challenge." + NAME) == []
    assert leftover_temp_files(work) == []  # the merged CA bundle is gone too


def test_07_interrupted_while_processing_resumes_without_finalizing_again(hostile, work):
    ready_order(hostile, work)
    hostile.answer("POST", "/order/1", lambda req: Reply(200, hostile.order_body("processing"), {"Retry-After": "1"}))
    proc = start(7, work, "-v", "--timeout", "60")
    wait_for_line(proc, "waiting 1 s")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert order_json(work)["order"]["status"] == "processing"
    assert leftover_temp_files(work) == []
    hostile.answer("POST", "/order/1", hostile.honest)
    again = run(7, work)
    assert again.returncode == 0, again.stderr
    assert hostile.hits("POST", "/order/1/finalize") == 1
    assert (run(8, work)).returncode == 0


def test_an_order_valid_without_a_certificate_url_says_so(hostile, work):
    ready_order(hostile, work)
    no_url = {k: v for k, v in hostile.order_body("valid").items() if k != "certificate"}
    hostile.answer("POST", "/order/1", Reply(200, no_url))
    fails(run(7, work), 1, "valid but has no certificate URL")
    assert order_json(work)["order"]["status"] == "processing"
    fails(run(8, work), 2, "07_finalize.py")
    fails(run(7, work), 1, "valid but has no certificate URL")  # the same clear error, no ping-pong


# --- 5. what is written is what was checked ------------------------------------------------------


@pytest.mark.parametrize(("flaw", "words"), [
    ("leaf_is_ca", ["CA certificate where the leaf belongs"]),
    ("expired", ["expired"]),
    ("wrong_issuer", ["not signed by certificate 2"]),
    ("repeated_extension", ["does not parse", "certificate 1 (the leaf)", "Duplicate", "extension"]),
    ("repeated_extension_in_intermediate", ["does not parse", "certificate 2 (an intermediate)", "Duplicate"]),
])
def test_a_chain_that_does_not_hold_is_not_saved(hostile, work, flaw, words):
    finalized(hostile, work)
    hostile.answer("POST", "/cert/1", lambda req: Reply(200, hostile.chain_pem(**{flaw: True}),
                                                        content_type="application/pem-certificate-chain"))
    fails(run(8, work), 1, *words)
    for name in ("cert.pem", "chain.pem", "fullchain.pem"):
        assert not (work / name).exists()
    hostile.answer("POST", "/cert/1", hostile.honest)
    assert run(8, work).returncode == 0  # the honest chain passes the same checks


def test_the_work_dir_is_created_private_whatever_the_umask(tmp_path):
    work = tmp_path / "new" / "acme-work"
    command = [sys.executable, str(ROOT / STEPS[1]), "--dir", str(work)]
    result = subprocess.run(command, capture_output=True, text=True, env=plain_env(), preexec_fn=lambda: os.umask(0),
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert work.stat().st_mode & 0o777 == 0o700
    assert (work / "account.key").stat().st_mode & 0o777 == 0o600


def test_an_account_json_without_an_account_url(hostile, work):
    saved = json.loads((work / "account.json").read_text())
    (work / "account.json").write_text(json.dumps({**saved, "account_url": ""}))
    fails(run(5, work), 2, "holds no account URL", "04_new_account.py")


def test_an_unknown_order_status_on_disk_is_a_local_error(hostile, work):
    ready_order(hostile, work)
    saved = order_json(work)
    saved["order"]["status"] = "bogus"
    (work / "order.json").write_text(json.dumps(saved))
    for step in (6, 7, 8):
        fails(run(step, work, *(["--provider", "exec", "--exec-hook", "/bin/true"] if step == 6 else [])), 2,
              "damaged", "05_new_order.py")


def test_a_cached_directory_whose_endpoint_is_not_a_url_is_fetched_again(hostile, work):
    session = json.loads((work / "session.json").read_text())
    session["directory"]["newOrder"] = "not a url"
    (work / "session.json").write_text(json.dumps(session))
    result = run(5, work)
    assert result.returncode == 0, result.stderr
    assert hostile.hits("GET", "/dir") == 1


# --- 6. ARI answers are judged before they are used or saved (step 11, RFC 9773) ------------------


def issued_with_ari(hostile, work):
    """cert.pem from the scripted CA, which now offers renewalInfo; returns the certificate's renewalInfo path."""
    from cryptography import x509

    from common import certs

    finalized(hostile, work)
    assert run(8, work).returncode == 0
    hostile.ari = True
    (work / "session.json").unlink()  # it caches the directory without renewalInfo
    cert = x509.load_pem_x509_certificate((work / "cert.pem").read_bytes())
    return f"/renewal-info/{certs.ari_cert_id(cert)}", cert


def window(start: str, end: str, **extra) -> Reply:
    return Reply(200, {"suggestedWindow": {"start": start, "end": end}, **extra}, {"Retry-After": "21600"})


def saved_decision(work) -> dict:
    return json.loads((work / "renewal.json").read_text())


def rfc3339_reads_back(text: str) -> None:
    import datetime

    when = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
    assert f"{when.year:04d}-{when:%m-%dT%H:%M:%S}Z" == text


@pytest.mark.parametrize(("start", "end", "words"), [
    ("9999-12-30T00:00:00Z", "9999-12-31T00:00:00Z", "after the certificate has expired"),
    ("0001-01-01T00:00:00Z", "0001-01-02T00:00:00Z", "long before the certificate was issued"),
    ("0001-01-01T00:00:00+01:00", "0001-01-01T00:30:00+01:00", "not a time that can be used"),
    ("2026-06-01T00:00:00Z", "9999-12-31T23:59:59-01:00", "not a time that can be used"),
    ("{later}", "{sooner}", "ends (" ),
], ids=["year-9999", "year-1", "offset-below-year-1", "offset-past-year-9999", "ends-before-it-starts"])
def test_an_unusable_renewal_window_is_no_answer_and_nothing_of_it_is_kept(hostile, work, start, end, words):
    import datetime

    path, cert = issued_with_ari(hostile, work)
    later = cert.not_valid_before_utc + datetime.timedelta(days=40)
    sooner = cert.not_valid_before_utc + datetime.timedelta(days=30)
    start, end = (t.format(later=f"{later:%Y-%m-%dT%H:%M:%SZ}", sooner=f"{sooner:%Y-%m-%dT%H:%M:%SZ}")
                  for t in (start, end))
    hostile.answer("GET", path, window(start, end, explanationURL="https://ca.example/why"))
    result = run(11, work, "--check")
    assert result.returncode == 3, result.stdout + result.stderr  # not due: the lifetime rule decided
    assert "Traceback" not in result.stderr and words in result.stderr
    assert "going by the certificate's lifetime" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    saved = saved_decision(work)
    assert saved["source"] == "lifetime" and saved["window_start"] is saved["explanation_url"] is None
    assert saved["ask_again_after"] is None  # nothing of the answer, not even its Retry-After
    rfc3339_reads_back(saved["renew_at"])
    again = run(11, work, "--check")  # the file written reads back, and the CA is asked again
    assert again.returncode == 3 and "Traceback" not in again.stderr
    assert hostile.hits("GET", path) == 2


def test_a_window_before_issuance_still_asks_for_renewal_now(hostile, work):
    """A revoked certificate's window lies in the past, even before issuance (Pebble: an hour ago)."""
    import datetime

    path, cert = issued_with_ari(hostile, work)
    start = cert.not_valid_before_utc - datetime.timedelta(hours=2)
    hostile.answer("GET", path, window(f"{start:%Y-%m-%dT%H:%M:%SZ}",
                                       f"{start + datetime.timedelta(hours=1):%Y-%m-%dT%H:%M:%SZ}"))
    result = run(11, work, "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "due now" in result.stdout and saved_decision(work)["source"] == "ari"


@pytest.mark.parametrize("url", [
    "https://ca.example/" + "a" * 200_000, "http://ca.example/why", "https://ca.example/why\nerror: forged",
    "javascript:alert(1)", "https://ca.example/\x1b[2Jwhy",
], ids=["200kB", "http", "newline", "javascript", "escape"])
def test_an_explanation_url_is_kept_only_if_it_is_a_sane_https_link(hostile, work, url):
    import datetime

    path, cert = issued_with_ari(hostile, work)
    start = cert.not_valid_before_utc + datetime.timedelta(days=60)
    hostile.answer("GET", path, window(f"{start:%Y-%m-%dT%H:%M:%SZ}",
                                       f"{start + datetime.timedelta(days=1):%Y-%m-%dT%H:%M:%SZ}", explanationURL=url))
    result = run(11, work, "--check")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "dropped the CA's explanationURL" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert len(result.stdout + result.stderr) < 2000 and "\x1b" not in result.stdout + result.stderr
    saved = saved_decision(work)
    assert saved["source"] == "ari" and saved["explanation_url"] is None
    assert len((work / "renewal.json").read_text()) < 1000


def test_a_sane_explanation_url_and_an_absurd_retry_after_are_kept_within_bounds(hostile, work):
    import datetime

    path, cert = issued_with_ari(hostile, work)
    start = cert.not_valid_before_utc + datetime.timedelta(days=60)
    reply = window(f"{start:%Y-%m-%dT%H:%M:%SZ}", f"{start + datetime.timedelta(days=1):%Y-%m-%dT%H:%M:%SZ}",
                   explanationURL="https://ca.example/why")
    reply.headers["Retry-After"] = "9" * 400
    hostile.answer("GET", path, reply)
    result = run(11, work, "--check")
    assert result.returncode == 3 and "why: https://ca.example/why" in result.stdout, result.stderr
    saved = saved_decision(work)
    assert saved["explanation_url"] == "https://ca.example/why"
    ask = datetime.datetime.strptime(saved["ask_again_after"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc)
    assert ask <= datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
