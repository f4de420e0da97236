"""06_http_challenge.py end to end against Pebble 2.10, and common/http01.py on its own.

Pebble validates http-01 by fetching http://<name>:<its httpPort>/.well-known/acme-challenge/<token>
from the address its DNS (challtestsrv) gives for the name. This module has a Pebble of its own
(``ca_http``): its http-01 port is free for these tests alone, and its DNS answers 127.0.0.1 for
every A query and nothing for AAAA. challtestsrv's default AAAA answer is ::1, and Pebble dials
the first address it finds, IPv6 first: a server on 127.0.0.1 only would never be reached.

The --webroot tests serve the webroot with the real nginx of tests/servers.py; --standalone
serves it from the step. Only one of them can listen on the http-01 port at a time, so each
test that puts nginx there takes it away again.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype
import pytest
import requests
from helpers import ROOT, fails, free_port, run_script, start_ca, unique, wait_for_line

from common import errors, http01
from common.errors import AcmeError, Interrupted, UsageError
from common.rfc8555 import get_authorization
from common.transport import Client
from common.workdir import WorkDir

STEP = ROOT / "06_http_challenge.py"
CHALLENGE_DIR = Path(".well-known") / "acme-challenge"
TOKEN = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"  # RFC 8555 §8.3's example
OTHER_TOKEN = "other-token-" + "x" * 20  # base64url of 22 to 128 characters, as tokens must be (§8.1)
KEY_AUTHZ = TOKEN + ".9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"


# --- fixtures and helpers -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca_http(tmp_path_factory):
    """A Pebble for this module: its own http-01 port, and names that resolve to 127.0.0.1 only."""
    ca = start_ca(tmp_path_factory, "http", {})
    try:
        ca.challtestsrv("/set-default-ipv6", {"ip": ""})
        yield ca
    finally:
        ca.stop()


@pytest.fixture(scope="module")
def account(ca_http, tmp_path_factory):
    """Keys and an account on ca_http, made once; each test orders on a copy."""
    work = tmp_path_factory.mktemp("http-account") / "acme-work"
    ca_http.ok(1, work, "--key-type", "ec256")
    ca_http.ok(2, work)
    ca_http.ok(4, work, "--server", "pebble", "--agree-tos")
    return work


def ordered(ca, account, tmp_path, names: list[str]) -> Path:
    """A work dir with a fresh order (steps 03 and 05) for ``names``."""
    work = tmp_path / "acme-work"
    shutil.copytree(account, work)
    ca.ok(3, work, *[a for n in names for a in ("-d", n)])
    ca.ok(5, work)
    return work


def command(work: Path, *args: str) -> list[str]:
    return [sys.executable, str(STEP), "--dir", str(work), *args]


def run06(ca, work: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_script(command(work, *args), env=ca.step_env(env), cwd=work.parent, timeout=120)


def resolves_to(ca, name: str) -> tuple[list[str], list[str]]:
    """What challtestsrv, Pebble's DNS, answers for ``name``: (A addresses, AAAA addresses)."""
    host, port = ca.state["dns_server"].rsplit(":", 1)
    found = []
    for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        reply = dns.query.udp(dns.message.make_query(name, rdtype), host, port=int(port), timeout=5)
        found.append([r.to_text() for rrset in reply.answer if rrset.rdtype == rdtype for r in rrset])
    return found[0], found[1]


def tokens_in(output: str) -> list[str]:
    return re.findall(r"/\.well-known/acme-challenge/([A-Za-z0-9_-]+)$", output, re.MULTILINE)


def thumbprint(work: Path) -> str:
    return json.loads((work / "account.json").read_text())["key_thumbprint"]


def order_status(work: Path) -> str:
    return json.loads((work / "order.json").read_text())["order"]["status"]


def http01_tokens(work: Path) -> dict[str, str]:
    """name -> http-01 token of the pending order, read from the CA as the account (test setup only)."""
    w = WorkDir(work)
    saved, acct = w.read_order(), w.read_account()
    client = Client(acct["directory_url"], verify=acct["ca_bundle"], key=w.read_key("account.key"),
                    kid=acct["account_url"])
    found = {}
    for url in saved["order"]["authorizations"]:
        authz = get_authorization(client, url)
        found[authz["identifier"]["value"]] = next(c["token"] for c in authz["challenges"] if c["type"] == "http-01")
    return found


def refused(port: int, address: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((address, port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


@contextlib.contextmanager
def served_by_nginx(nginx, webroot: Path, port: int):
    site = nginx.serve_webroot(webroot, port=port)
    try:
        yield site
    finally:
        nginx.remove(site)


@contextlib.contextmanager
def tarpit(address: str, port: int):
    """A socket that takes connections and never answers: a CA fetching from it waits until its own timeout."""
    with socket.socket() as sock:
        sock.bind((address, port))
        sock.listen(16)
        yield


# --- end to end: a certificate through each mode ---------------------------------------------------


def test_webroot_served_by_nginx_issues_a_certificate(ca_http, account, nginx, tmp_path):
    name = unique("webroot")
    names = [name, "www." + name]
    assert resolves_to(ca_http, name) == (["127.0.0.1"], [])  # where Pebble will look: nginx
    webroot = tmp_path / "www"
    webroot.mkdir()
    (webroot / "index.html").write_text("the site's own page\n")
    work = ordered(ca_http, account, tmp_path, names)
    port = ca_http.state["http01_port"]
    with served_by_nginx(nginx, webroot, port):
        result = run06(ca_http, work, "--webroot", str(webroot))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Order is ready" in result.stdout and "Next: 07_finalize.py" in result.stdout
    tokens = sorted(set(tokens_in(result.stdout)))
    assert len(tokens) == 2
    for token in tokens:
        path = webroot / CHALLENGE_DIR / token
        assert f"  {path}\n" in result.stdout and f"removed {path}\n" in result.stdout
        # nginx served the file to Pebble: 200, and exactly the key authorization's length
        served = f'{port} 127.0.0.1 "GET /.well-known/acme-challenge/{token} HTTP/1.1" 200 {len(token) + 44}'
        assert served in nginx.access_log.read_text()
    assert sorted(p.name for p in webroot.iterdir()) == ["index.html"]  # files and the dirs it made: gone
    assert f"removed {webroot / '.well-known'}/ (this step created it)" in result.stdout
    ca_http.finish(work, names)


@pytest.mark.parametrize("bind", ["127.0.0.1", None], ids=["bind-127.0.0.1", "every-address"])
def test_standalone_issues_a_certificate(ca_http, account, tmp_path, bind):
    name = unique("standalone")
    work = ordered(ca_http, account, tmp_path, [name])
    port = ca_http.state["http01_port"]
    result = run06(ca_http, work, "--standalone", "--http-port", str(port), *(["--bind", bind] if bind else []))
    assert result.returncode == 0, result.stdout + result.stderr
    [token] = tokens_in(result.stdout)
    assert f"served /.well-known/acme-challenge/{token} to 127.0.0.1" in result.stdout  # Pebble came
    assert "Stopped the http-01 server" in result.stdout
    assert refused(port)
    again = run06(ca_http, work, "--standalone", "--http-port", str(port))
    assert again.returncode == 0 and "Order is already ready. Next: 07_finalize.py" in again.stdout
    ca_http.finish(work, [name])


def test_verbose_shows_the_thumbprint_and_each_files_contents_in_request_order(ca_http, account, tmp_path):
    """-v: the account key's thumbprint, then per name the key authorization the file holds; the
    requests in main()'s order: authorization, challenge, order. No private key."""
    name = unique("verbose")
    work = ordered(ca_http, account, tmp_path, [name])
    [authz_url] = json.loads((work / "order.json").read_text())["order"]["authorizations"]
    result = run06(ca_http, work, "--standalone", "--http-port", str(ca_http.state["http01_port"]), "-v")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    [token] = set(tokens_in(out))
    key_authz = f"{token}.{thumbprint(work)}"
    lines = [f"Account key thumbprint (RFC 7638): {thumbprint(work)}", "Fetching the order's 1 authorization...",
             f"> POST {authz_url}", f"  {name}: pending, to prove with http-01",
             f"  {name}: file contents, the key authorization (token \".\" thumbprint): {key_authz}",
             "> POST https://", f"Answered http-01 for {name}", "Waiting for the CA to validate: polling the order...",
             "Order is ready"]
    at = 0
    for line in lines:  # each after the one before
        assert out.find(line, at) >= 0, f"{line!r} not after position {at}:\n{out}"
        at = out.find(line, at) + len(line)
    assert "PRIVATE KEY" not in out + result.stderr


# --- when it does not work ---------------------------------------------------------------------------


@pytest.mark.parametrize("served", ["nothing", "a wrong key authorization"])
def test_a_failed_validation_exits_1_with_the_cas_error_and_cleans_up(ca_http, account, nginx, tmp_path, served):
    """nginx serves another directory than --webroot: Pebble finds no file, or one with the wrong content."""
    name = unique("fail")
    work = ordered(ca_http, account, tmp_path, [name])
    served_root, webroot = tmp_path / "served", tmp_path / "www"
    (served_root / CHALLENGE_DIR).mkdir(parents=True)
    webroot.mkdir()
    planted = []
    if served != "nothing":
        for token in http01_tokens(work).values():
            planted.append(served_root / CHALLENGE_DIR / token)
            planted[-1].write_text(f"{token}.{'A' * 43}")  # another account's thumbprint
    with served_by_nginx(nginx, served_root, ca_http.state["http01_port"]):
        result = run06(ca_http, work, "--webroot", str(webroot))
    expected = "did not match this challenge" if planted else "returned 404"
    fails(result, 1, "the order is invalid", expected, "urn:ietf:params:acme:error:", one_line=False)
    assert list(webroot.iterdir()) == []  # what it wrote is gone ...
    assert all(p.exists() for p in planted)  # ... and only that
    assert order_status(work) == "invalid"


def test_a_wildcard_is_refused_before_any_request(ca_http, account, tmp_path):
    name = unique("wild")
    work = ordered(ca_http, account, tmp_path, [name, "*." + name])
    request_log = tmp_path / "requests.log"
    before = (work / "order.json").read_bytes()
    for mode in (["--standalone", "--http-port", str(ca_http.state["http01_port"])], ["--webroot", str(tmp_path)]):
        result = run06(ca_http, work, *mode, env={"ACME_REQUEST_LOG": str(request_log)})
        fails(result, 2, f"*.{name}", "wildcard", "06_dns_challenge.py")
    assert not request_log.exists()
    assert (work / "order.json").read_bytes() == before
    assert list(tmp_path.glob(".well-known")) == []


def test_standalone_on_a_port_in_use_exits_2_before_any_request(ca_http, account, nginx, tmp_path):
    name = unique("busy")
    work = ordered(ca_http, account, tmp_path, [name])
    request_log = tmp_path / "requests.log"
    before = (work / "order.json").read_bytes()
    (tmp_path / "www").mkdir()
    port = ca_http.state["http01_port"]
    with served_by_nginx(nginx, tmp_path / "www", port):
        result = run06(ca_http, work, "--standalone", "--http-port", str(port), "--bind", "127.0.0.1",
                       env={"ACME_REQUEST_LOG": str(request_log)})
    fails(result, 2, f"127.0.0.1:{port}", "already", "--webroot")
    assert not request_log.exists()  # no challenge answered: no request at all
    assert (work / "order.json").read_bytes() == before
    assert http01_tokens(work)  # and the CA still has the challenge pending
    assert order_status(work) == "pending"


def test_standalone_on_a_privileged_port_without_root_exits_2(tmp_path):
    """Run as nobody; the step gets as far as listening, which needs root below 1024."""
    start = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    if os.geteuid() != 0 or start <= 80 or not shutil.which("setpriv"):
        pytest.skip("needs root to become nobody, and a kernel that reserves port 80 for root")
    work = Path(tempfile.mkdtemp(prefix="http01-nobody-"))  # not under pytest's 0700 tmp: nobody must read it
    try:
        order = {"url": "https://localhost:1/order/1", "order": {
            "status": "pending", "identifiers": [{"type": "dns", "value": "nobody.example.com"}],
            "authorizations": ["https://localhost:1/authz/1"], "finalize": "https://localhost:1/order/1/finalize"}}
        (work / "order.json").write_text(json.dumps(order))
        shutil.chown(work, "nobody")
        nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        result = subprocess.run(nobody + command(work, "--standalone", "--http-port", "80"), capture_output=True,
                                text=True, cwd=work, timeout=60, env={"PATH": os.environ["PATH"], "HOME": str(work)})
    finally:
        shutil.rmtree(work)
    fails(result, 2, "port 80", "need root")


@pytest.mark.parametrize("mode", ["webroot", "standalone"])
def test_sigterm_while_the_ca_validates_cleans_up(ca_http, account, tmp_path, mode):
    """The name points Pebble at a socket that never answers, so validation hangs; then SIGTERM."""
    name = unique("term")
    port = ca_http.state["http01_port"]
    ca_http.challtestsrv("/add-a", {"host": name + ".", "addresses": ["127.0.0.2"]})
    assert resolves_to(ca_http, name) == (["127.0.0.2"], [])
    work = ordered(ca_http, account, tmp_path, [name])
    webroot = tmp_path / "www"
    webroot.mkdir()
    args = ["--webroot", str(webroot)] if mode == "webroot" else ["--standalone", "--http-port", str(port),
                                                                   "--bind", "127.0.0.1"]
    with tarpit("127.0.0.2", port):
        proc = subprocess.Popen(command(work, *args, "--timeout", "60"), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=ca_http.step_env(), cwd=tmp_path)
        seen = wait_for_line(proc, "Waiting for the CA to validate")
        [token] = tokens_in(seen)
        key_authz = f"{token}.{thumbprint(work)}"
        if mode == "webroot":
            path = webroot / CHALLENGE_DIR / token
            assert path.read_text() == key_authz and path.stat().st_mode & 0o777 == 0o644
        else:
            url = f"http://127.0.0.1:{port}/.well-known/acme-challenge/{token}"
            assert requests.get(url, timeout=5).text == key_authz
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, seen + out + err
    assert "Traceback" not in err and "interrupted by SIGTERM" in err
    if mode == "webroot":
        assert f"removed {path}" in out
        assert list(webroot.iterdir()) == []
    else:
        assert "Stopped the http-01 server" in out
        assert refused(port)
    assert order_status(work) == "pending"


def test_modes_are_exclusive_and_one_is_required(tmp_path):
    work = tmp_path / "acme-work"
    neither = subprocess.run(command(work), capture_output=True, text=True, timeout=60)
    assert neither.returncode == 2 and "one of the arguments --webroot --standalone is required" in neither.stderr
    both = subprocess.run(command(work, "--webroot", str(tmp_path), "--standalone"), capture_output=True, text=True,
                          timeout=60)
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


# --- common/http01.py on its own ------------------------------------------------------------------


def test_webroot_writes_public_files_atomically_and_removes_exactly_what_it_made(tmp_path):
    root = tmp_path / "www"
    (root / ".well-known").mkdir(parents=True)  # the site has one already (security.txt ...)
    (root / ".well-known" / "security.txt").write_text("Contact: mailto:security@example.com\n")
    old_umask = os.umask(0o077)  # a strict umask must not leave the web server locked out
    try:
        with http01.webroot(root) as site:
            [path] = site.publish({TOKEN: KEY_AUTHZ})
            assert path == root / CHALLENGE_DIR / TOKEN
            assert path.read_bytes() == KEY_AUTHZ.encode()  # the key authorization itself, no newline
            assert path.stat().st_mode & 0o777 == 0o644
            assert path.parent.stat().st_mode & 0o777 == 0o755
            assert sorted(p.name for p in path.parent.iterdir()) == [TOKEN]  # no temporary file left
    finally:
        os.umask(old_umask)
    assert sorted(p.name for p in (root / ".well-known").iterdir()) == ["security.txt"]


def test_webroot_keeps_a_directory_that_others_use_meanwhile(tmp_path):
    with http01.webroot(tmp_path) as site:
        site.publish({TOKEN: KEY_AUTHZ, OTHER_TOKEN: f"{OTHER_TOKEN}.x"})
        (tmp_path / CHALLENGE_DIR / "not-mine").write_text("another client's file")
    assert sorted(p.name for p in (tmp_path / CHALLENGE_DIR).iterdir()) == ["not-mine"]


def test_webroot_cleans_up_when_interrupted(tmp_path):
    with pytest.raises(Interrupted), http01.webroot(tmp_path) as site:
        site.publish({TOKEN: KEY_AUTHZ})
        raise Interrupted(signal.SIGTERM, "SIGTERM")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("token", ["../../etc/passwd", "a/b", "", "tok en", "tök", ".", "a.b", "short", "A" * 10240])
def test_a_token_that_is_not_base64url_touches_nothing(tmp_path, token):
    with http01.webroot(tmp_path) as site, pytest.raises(AcmeError, match="not base64url"):
        site.publish({TOKEN: KEY_AUTHZ, token: "x"})
    assert list(tmp_path.iterdir()) == []
    with http01.standalone(free_port(), "127.0.0.1") as server, pytest.raises(AcmeError, match="not base64url"):
        server.publish({token: "x"})


def test_webroot_must_exist(tmp_path):
    with pytest.raises(UsageError, match="no such directory"):
        http01.webroot(tmp_path / "missing")


def test_cleanup_runs_to_the_end_through_an_interruption():
    calls = []

    def cleanup():
        calls.append(len(calls))
        if len(calls) == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        errors.despite_interrupts(cleanup)
    assert calls == [0, 1]


def test_standalone_answers_its_tokens_only():
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with http01.standalone(port, "127.0.0.1") as server:
        server.publish({TOKEN: KEY_AUTHZ})
        resp = requests.get(f"{base}/.well-known/acme-challenge/{TOKEN}", timeout=5)
        assert (resp.status_code, resp.text, resp.headers["Content-Type"]) == (200, KEY_AUTHZ, http01.CONTENT_TYPE)
        head = requests.head(f"{base}/.well-known/acme-challenge/{TOKEN}", timeout=5)
        assert head.status_code == 200 and head.headers["Content-Length"] == str(len(KEY_AUTHZ))
        for path in ("/", "/.well-known/acme-challenge/", "/.well-known/acme-challenge/other",
                     f"/.well-known/acme-challenge/{TOKEN}/", f"/.well-known/acme-challenge/../acme-challenge/{TOKEN}",
                     f"/x/.well-known/acme-challenge/{TOKEN}"):
            assert status_of(port, path) == 404, path  # sent as written: requests would resolve the ".."
    assert refused(port)


def status_of(port: int, path: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


def test_standalone_refuses_a_port_in_use_and_a_foreign_address():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(UsageError, match="another program"), http01.standalone(port, "127.0.0.1"):
            pass
    with pytest.raises(UsageError, match="not an address of this machine"), http01.standalone(free_port(),
                                                                                                "192.0.2.1"):
        pass


def test_self_check_fetches_as_the_ca_does():
    port = free_port()
    with http01.standalone(port, "127.0.0.1") as server:
        server.publish({TOKEN: KEY_AUTHZ})
        assert http01.self_check("localhost", TOKEN, KEY_AUTHZ, port=port) is True
        with pytest.raises(UsageError, match="instead of the key authorization.*--no-self-check"):
            http01.self_check("localhost", TOKEN, TOKEN + ".wrong", port=port)
        with pytest.raises(UsageError, match="answers HTTP 404"):
            http01.self_check("localhost", OTHER_TOKEN, KEY_AUTHZ, port=port)
        with redirect_to(f"http://127.0.0.1:{port}") as redirecting:  # the CA follows redirects, so does the check
            assert http01.self_check("localhost", TOKEN, KEY_AUTHZ, port=redirecting) is True
    with pytest.raises(UsageError, match=r"cannot be fetched \(Connection refused\)"):
        http01.self_check("localhost", TOKEN, KEY_AUTHZ, port=port)
    assert http01.self_check("nothing.invalid", TOKEN, KEY_AUTHZ) is False  # RFC 6761: never resolves


@contextlib.contextmanager
def redirect_to(target: str):
    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(301)
            self.send_header("Location", target + self.path)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_errno_of_a_privileged_port_is_named():
    message = http01.Standalone(80, "127.0.0.1")._bind_error(OSError(errno.EACCES, "Permission denied"))
    assert "need root" in message and "--webroot" in message
