"""Step 06's DNS side end to end, against real servers.

BIND 9 (tests/servers.py) takes the records: through the rfc2136 provider, through exec hooks
written here in lego's convention, or by a test acting late or not at all. Pebble then
validates against that same BIND (``ca_bind``), so a certificate issued proves the record was
really there. dns-account-01 and dns-persist-01 run against Pebble 2.10 and its challtestsrv
(``ca``); what other CAs do wrong is scripted on tests/hostile_ca.py. Every test checks the
exit status, that no traceback was printed, and what is left in DNS and in the work dir.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import ROOT, STEPS, fails, hostile_account, plain_env, run_script, start_ca, wait_for_line
from hostile_ca import Reply, token
from servers import Bind, _free_bind_address, new_tsig_secret, tsig_key_file

RECORDS_FILE = "dns-records.json"


# --- helpers --------------------------------------------------------------------------------------


def bind_name(label: str, zone: str = "example.test") -> str:
    """A name under one of BIND's zones that no earlier test used."""
    return f"{label}.t{uuid.uuid4().hex[:10]}.{zone}"


def account(ca, directory: Path) -> Path:
    """Steps 01, 02 and 04: an account and a certificate key, copied by each test (see :func:`order`)."""
    work = directory / "acme-work"
    ca.ok(1, work, "--key-type", "ec256")
    ca.ok(2, work, "--key-type", "ec256")
    ca.ok(4, work, "--server", "pebble", "--agree-tos")
    return work


def order(ca, template: Path, tmp_path: Path, *names: str) -> Path:
    """A copy of ``template`` with a CSR (03) and a fresh order (05) for ``names``."""
    work = tmp_path / "acme-work"
    shutil.copytree(template, work, ignore=shutil.ignore_patterns("session.json"))
    ca.ok(3, work, *[arg for name in names for arg in ("-d", name)])
    ca.ok(5, work)
    return work


def saved_order(work: Path) -> dict:
    return json.loads((work / "order.json").read_text())


def published(result: subprocess.CompletedProcess) -> list[tuple[str, str]]:
    """The (name, value) pairs 06 said it published: its '  NAME TXT VALUE' lines after 'Publishing'."""
    out = result.stdout
    lines = out.split("Publishing", 1)[1].splitlines()[1:] if "Publishing" in out else []
    pairs = []
    for line in lines:
        name, txt, value = line.strip().partition(" TXT ")
        if not line.startswith("  ") or not txt:
            break
        pairs.append((name, value))
    return pairs


def rfc2136(bind, *extra: str) -> list[str]:
    """06's options for BIND: the key under test, BIND as the resolver that finds zones and servers."""
    return ["--provider", "rfc2136", "--tsig-key-file", str(bind.key_file), "--dns-resolver", bind.address, *extra]


def challtestsrv(ca, *extra: str) -> list[str]:
    return ["--provider", "challtestsrv", "--challtestsrv-url", ca.state["challtestsrv_url"],
            "--dns-resolver", ca.state["dns_server"], *extra]


def requests_made(log: Path) -> str:
    return log.read_text() if log.exists() else ""


def answered_challenges(log: Path) -> list[str]:
    """The challenge URLs step 06 POSTed to, from ACME_REQUEST_LOG (Pebble's are /chalZ/...).

    Each once: a POST that Pebble refused with badNonce (5% of them) is sent again, and logged again.
    """
    posts = [line.split() for line in requests_made(log).splitlines() if line.startswith("POST")]
    return list(dict.fromkeys(url for _, url, _status in posts if "/chal" in url))


STARTED: list[subprocess.Popen] = []  # steps running in the background; killed after each test


def start(ca, step: int, work: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    command = [sys.executable, str(ROOT / STEPS[step]), "--dir", str(work), *args]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=work.parent,
                            env=ca.step_env(env))
    STARTED.append(proc)
    return proc


def wait_until(check, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# An exec hook in lego's convention (HOOK present|cleanup FQDN. VALUE), run by step 06 with the
# venv's python. Its settings are in HOOK.json next to it, read on each run, so a test can change
# them between runs: "calls" (file each call is appended to), "publish" (present adds the record to
# BIND by a signed dynamic update; cleanup always deletes it), "skip" (names present leaves alone),
# "fail" (actions that exit 3 with a message on stderr).
HOOK = '''#!{python}
import json
import sys
from pathlib import Path

import dns.query
import dns.rcode
import dns.tsig
import dns.update

conf = json.loads(Path(__file__).with_suffix(".json").read_text())
action, fqdn, value = sys.argv[1:]
with open(conf["calls"], "a") as calls:
    print(action, fqdn, value, file=calls)
if action in conf["fail"]:
    print("starting " + action, file=sys.stderr)
    print("the zone is locked by its hostmaster", file=sys.stderr)
    sys.exit(3)
if action == "present" and (not conf["publish"] or any(s in fqdn for s in conf["skip"])):
    sys.exit(0)
zone = max((z for z in conf["zones"] if fqdn.rstrip(".").endswith("." + z)), key=len)
update = dns.update.UpdateMessage(zone, keyring=dns.tsig.Key(conf["key_name"], conf["secret"], "hmac-sha256"))
if action == "present":
    update.add(fqdn, 60, "TXT", '"' + value + '"')
else:
    update.delete(fqdn, "TXT", '"' + value + '"')
reply = dns.query.tcp(update, conf["server"], port=53, timeout=5)
if reply.rcode() != dns.rcode.NOERROR:
    sys.exit("the DNS server said " + dns.rcode.to_text(reply.rcode()))
'''


class Hook:
    """An exec hook on disk, its settings, and the calls step 06 made to it."""

    def __init__(self, directory: Path, bind, *, publish: bool = True, skip: tuple[str, ...] = (),
                 fail: tuple[str, ...] = (), executable: bool = True) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "dns-hook"
        self.calls_file = directory / "hook-calls.txt"
        self.path.write_text(HOOK.replace("{python}", sys.executable))
        self.path.chmod(0o755 if executable else 0o644)
        self.bind = bind
        self.configure(publish=publish, skip=skip, fail=fail)

    def configure(self, *, publish: bool = True, skip: tuple[str, ...] = (), fail: tuple[str, ...] = ()) -> None:
        settings = {"calls": str(self.calls_file), "publish": publish, "skip": list(skip), "fail": list(fail),
                    "zones": list(self.bind.zones), "key_name": self.bind.key_name, "secret": self.bind.secret,
                    "server": self.bind.address}
        self.path.with_suffix(".json").write_text(json.dumps(settings))

    def options(self, *extra: str) -> list[str]:
        return ["--provider", "exec", "--exec-hook", str(self.path), "--dns-resolver", self.bind.address, *extra]

    def calls(self) -> list[tuple[str, str, str]]:
        if not self.calls_file.exists():
            return []
        return [tuple(line.split()) for line in self.calls_file.read_text().splitlines()]


@dataclass
class RecursiveResolver(Bind):
    """named as a CA's resolver: recursive, and finding the test zones on ``upstream`` (static-stub
    zones stand in for the delegations from the root). Pebble sends each validation query to its
    -dnsserver and keeps the answer's TXT records, without chasing a CNAME itself: it relies on a
    recursive resolver for that, as real CAs use one. An authoritative-only named (``bind``) does
    not follow a CNAME into another zone, so a delegated _acme-challenge needs this in between.
    Caching is cut to a second, so a test's late record is not hidden by an earlier answer."""

    upstream: str = ""

    def write_config(self) -> Path:
        conf = self.workdir / "named.conf"
        stubs = "".join(f'zone "{zone}" {{ type static-stub; server-addresses {{ {self.upstream}; }}; }};\n'
                        for zone in self.zones)
        conf.write_text(self.options("recursion yes;", "allow-recursion { any; };", "allow-query-cache { any; };",
                                     "max-cache-ttl 1;", "max-ncache-ttl 1;") + stubs)
        return conf


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_step_left_running():
    """A test that fails while a step runs in the background must not leave it running."""
    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


@pytest.fixture(scope="module")
def resolver(bind, tmp_path_factory):
    """A recursive named in front of ``bind``, as a real CA's validation resolver."""
    server = RecursiveResolver(tmp_path_factory.mktemp("resolver"), _free_bind_address(), upstream=bind.address)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ca_resolver(tmp_path_factory, resolver):
    """Pebble validating DNS challenges through ``resolver``, so CNAMEs into another zone are followed."""
    ca = start_ca(tmp_path_factory, "resolver", {"PEBBLE_WFE_NONCEREJECT": "0"},
             ["--pebble-dns", f"{resolver.address}:{resolver.port}"])
    yield ca
    ca.stop()


@pytest.fixture(scope="module")
def resolver_account(ca_resolver, tmp_path_factory) -> Path:
    return account(ca_resolver, tmp_path_factory.mktemp("resolver-account"))


@pytest.fixture(scope="module")
def bind_account(ca_bind, tmp_path_factory) -> Path:
    """An account on the Pebble that validates against BIND."""
    return account(ca_bind, tmp_path_factory.mktemp("bind-account"))


@pytest.fixture(scope="module")
def pebble_account(ca, tmp_path_factory) -> Path:
    """An account on the Pebble that validates against challtestsrv."""
    return account(ca, tmp_path_factory.mktemp("pebble-account"))


@pytest.fixture
def hook(tmp_path, bind) -> Hook:
    return Hook(tmp_path / "hook", bind)


# --- rfc2136 end to end ---------------------------------------------------------------------------


@pytest.mark.parametrize("server", ["soa-mname", "explicit"])
def test_rfc2136_issues_for_a_deep_name_its_wildcard_and_apex(ca_bind, bind, bind_account, tmp_path, server):
    """Two values on one name, in a zone two labels below the public suffix (not "the last two labels"),
    next to a foreign value that must survive the cleanup."""
    name = f"a.b.{bind_name('deep', 'example.com.cn')}"
    record_name = f"_acme-challenge.{name}"
    bind.add(record_name, "TXT", "someone-else's-value")
    work = order(ca_bind, bind_account, tmp_path, name, f"*.{name}")
    extra = ["--rfc2136-server", f"{bind.address}:53"] if server == "explicit" else []
    result = ca_bind.ok(6, work, *rfc2136(bind, *extra))
    shown = published(result)
    assert len(shown) == 2 and {n for n, _ in shown} == {record_name} and len({v for _, v in shown}) == 2
    assert "Publishing 2 TXT records with rfc2136" in result.stdout
    assert "every record is visible on every authoritative server" in result.stdout
    assert "Order is ready" in result.stdout
    assert bind.txt(record_name) == ["someone-else's-value"]  # ours are gone, the other one is not
    assert not (work / RECORDS_FILE).exists()
    ca_bind.finish(work, [name, f"*.{name}"])
    bind.delete(record_name)


# --- CNAME delegation -----------------------------------------------------------------------------


def test_a_cname_delegated_acme_challenge_is_answered_where_it_points(ca_resolver, bind, resolver_account, tmp_path):
    """_acme-challenge in example.test points into acme-delegate.test: the record goes there, the CA
    (through a recursive resolver, see RecursiveResolver) follows the CNAME to it, and it is removed."""
    name = bind_name("delegated", "example.test")
    alias = f"_acme-challenge.{name}"
    target = bind_name("validation", "acme-delegate.test")
    bind.set_cname(alias, target)
    work = order(ca_resolver, resolver_account, tmp_path, name)
    result = ca_resolver.ok(6, work, *rfc2136(bind))
    assert f"{alias} is a CNAME for {target}: the record goes there" in result.stdout
    [(where, value)] = published(result)
    assert where == target
    assert "Order is ready" in result.stdout  # Pebble followed the CNAME to the record, on BIND
    assert bind.txt(target) == []
    assert bind.records(alias, "CNAME") == [target + "."]  # the delegation itself is left alone
    assert not (work / RECORDS_FILE).exists()
    ca_resolver.finish(work, [name])
    bind.delete(alias)


# --- the propagation check ------------------------------------------------------------------------


def test_the_propagation_check_waits_for_a_record_that_appears_late(ca_bind, bind, bind_account, tmp_path):
    """The hook's present only notes its arguments; the record shows up in BIND only once 06 has looked
    and not found it, as on a DNS host that takes its time. 06 must wait for it, and only then let the CA look."""
    hook = Hook(tmp_path / "hook", bind, publish=False)
    name = bind_name("late")
    work = order(ca_bind, bind_account, tmp_path, name)
    proc = start(ca_bind, 6, work, *hook.options("--propagation-timeout", "30"))
    [(action, fqdn, value)] = wait_until(hook.calls, what="the hook's present")
    assert (action, fqdn) == ("present", f"_acme-challenge.{name}.")
    seen = wait_for_line(proc, f"DNS: waiting for _acme-challenge.{name}")  # it looked and did not find it
    assert proc.poll() is None  # still waiting
    bind.add(fqdn, "TXT", value)
    out, err = proc.communicate(timeout=60)
    out = seen + out
    assert proc.returncode == 0, out + err
    assert f"DNS: waiting for _acme-challenge.{name} (on {bind.address})" in out
    assert "DNS: every record is visible on every authoritative server" in out
    assert out.index("every record is visible") < out.index("Answered dns-01")
    assert hook.calls()[-1] == ("cleanup", fqdn, value)
    assert bind.txt(fqdn) == []  # the hook's cleanup deleted it
    assert not (work / RECORDS_FILE).exists()
    ca_bind.finish(work, [name])


def test_a_record_that_never_appears_stops_06_before_any_challenge_is_answered(ca_bind, bind, bind_account,
                                                                                tmp_path):
    hook = Hook(tmp_path / "hook", bind, publish=False)
    name = bind_name("never")
    work = order(ca_bind, bind_account, tmp_path, name)
    log = tmp_path / "requests.log"
    began = time.monotonic()
    result = ca_bind.run(6, work, *hook.options("--propagation-timeout", "3"), env={"ACME_REQUEST_LOG": str(log)})
    assert time.monotonic() - began < 40  # it gave up near the 3 s, not at a default of minutes
    fails(result, 1, "not yet visible", f"_acme-challenge.{name}", "--propagation-timeout 3")
    assert answered_challenges(log) == []
    assert [call[0] for call in hook.calls()] == ["present", "cleanup"]
    assert not (work / RECORDS_FILE).exists()
    assert saved_order(work)["order"]["status"] == "pending"


# --- exec hooks -----------------------------------------------------------------------------------


def test_an_exec_hook_publishing_by_dynamic_update_issues(ca_bind, bind, bind_account, hook, tmp_path):
    name = bind_name("hooked", "example.com.cn")
    work = order(ca_bind, bind_account, tmp_path, name, f"*.{name}")
    result = ca_bind.ok(6, work, *hook.options())
    record = f"_acme-challenge.{name}."
    values = {value for _, value in published(result)}
    assert len(values) == 2
    calls = hook.calls()  # lego's convention: FQDN with the trailing dot, then the value
    assert sorted(calls[:2]) == sorted(("present", record, v) for v in values)
    assert sorted(calls[2:]) == sorted(("cleanup", record, v) for v in values)
    assert bind.txt(record) == []
    assert not (work / RECORDS_FILE).exists()
    ca_bind.finish(work, [name, f"*.{name}"])


def test_a_failing_hook_stops_06_with_its_stderr(ca_bind, bind, bind_account, tmp_path):
    hook = Hook(tmp_path / "hook", bind, fail=("present",))
    name = bind_name("hookfails")
    work = order(ca_bind, bind_account, tmp_path, name)
    log = tmp_path / "requests.log"
    result = ca_bind.run(6, work, *hook.options(), env={"ACME_REQUEST_LOG": str(log)})
    fails(result, 1, str(hook.path), "present", "exit status 3", "the zone is locked by its hostmaster")
    assert answered_challenges(log) == []
    assert [call[0] for call in hook.calls()] == ["present", "cleanup"]  # cleaned up all the same
    assert not (work / RECORDS_FILE).exists()


def test_a_hook_that_is_not_executable_exits_2_before_any_request(ca_bind, bind, bind_account, tmp_path):
    hook = Hook(tmp_path / "hook", bind, executable=False)
    work = order(ca_bind, bind_account, tmp_path, bind_name("noexec"))
    log = tmp_path / "requests.log"
    result = ca_bind.run(6, work, *hook.options(), env={"ACME_REQUEST_LOG": str(log)})
    fails(result, 2, "--exec-hook", "not an executable file", "chmod +x")
    assert requests_made(log) == "" and hook.calls() == []
    assert not (work / RECORDS_FILE).exists()


# --- bad input and failures -----------------------------------------------------------------------


def test_rfc2136_without_a_key_file_exits_2_before_any_request(ca_bind, bind, bind_account, tmp_path):
    work = order(ca_bind, bind_account, tmp_path, bind_name("nokey"))
    log = tmp_path / "requests.log"
    result = ca_bind.run(6, work, "--provider", "rfc2136", "--dns-resolver", bind.address,
                         env={"ACME_REQUEST_LOG": str(log)})
    fails(result, 2, "--tsig-key-file", "tsig-keygen")
    assert requests_made(log) == ""


GARBLED_KEYS = {
    "missing": None,
    "a-directory": "DIR",
    "not-a-key-file": "this is not a key\n",
    "not-utf8": b"\xff\xfe key \x00\x81",
    "no-secret": 'key "acme-update-key" { algorithm hmac-sha256; };\n',
    "secret-not-base64": 'key "acme-update-key" { algorithm hmac-sha256; secret "%%%not*base64%%%"; };\n',
    "unknown-algorithm": 'key "acme-update-key" { algorithm hmac-md17; secret "c2VjcmV0c2VjcmV0"; };\n',
}


@pytest.mark.parametrize("content", list(GARBLED_KEYS.values()), ids=list(GARBLED_KEYS))
def test_an_unusable_key_file_exits_2_before_any_request(ca_bind, bind, bind_account, tmp_path, content):
    name = bind_name("badkey")
    work = order(ca_bind, bind_account, tmp_path, name)
    key_file = tmp_path / "acme.key"
    if content == "DIR":
        key_file.mkdir()
    elif isinstance(content, bytes):
        key_file.write_bytes(content)
    elif content is not None:
        key_file.write_text(content)
    log = tmp_path / "requests.log"
    result = ca_bind.run(6, work, "--provider", "rfc2136", "--tsig-key-file", str(key_file),
                         "--dns-resolver", bind.address, env={"ACME_REQUEST_LOG": str(log)})
    fails(result, 2, str(key_file))
    assert requests_made(log) == ""
    assert bind.txt(f"_acme-challenge.{name}") == []
    assert not (work / RECORDS_FILE).exists()


def test_a_wrong_tsig_secret_exits_1_and_publishes_nothing(ca_bind, bind, bind_account, tmp_path):
    name = bind_name("wrongsecret")
    work = order(ca_bind, bind_account, tmp_path, name, f"*.{name}")
    key_file = tmp_path / "wrong.key"
    key_file.write_text(tsig_key_file(bind.key_name, new_tsig_secret()))
    log = tmp_path / "requests.log"
    result = ca_bind.run(6, work, "--provider", "rfc2136", "--tsig-key-file", str(key_file),
                         "--dns-resolver", bind.address, env={"ACME_REQUEST_LOG": str(log)})
    fails(result, 1, "refused the update", "TSIG key name or secret")
    assert bind.txt(f"_acme-challenge.{name}") == []
    assert answered_challenges(log) == []
    assert not (work / RECORDS_FILE).exists()
    assert saved_order(work)["order"]["status"] == "pending"


def test_an_unreachable_dns_server_exits_1(ca_bind, bind, bind_account, tmp_path):
    name = bind_name("unreachable")
    work = order(ca_bind, bind_account, tmp_path, name)
    log = tmp_path / "requests.log"
    result = ca_bind.run(6, work, *rfc2136(bind, "--rfc2136-server", "127.0.0.1:1"),
                         env={"ACME_REQUEST_LOG": str(log)})
    fails(result, 1, "127.0.0.1:1")
    assert answered_challenges(log) == []
    assert bind.txt(f"_acme-challenge.{name}") == []
    assert not (work / RECORDS_FILE).exists()


def test_no_provider_exits_2_naming_the_one_for_the_local_ca(ca, pebble_account, tmp_path):
    work = order(ca, pebble_account, tmp_path, bind_name("noprovider"))
    log = tmp_path / "requests.log"
    result = ca.run(6, work, env={"ACME_REQUEST_LOG": str(log)})
    fails(result, 2, "--provider", "challtestsrv for the local test CA", "rfc2136", "exec", "manual")
    assert requests_made(log) == ""


def test_an_unknown_provider_exits_2_listing_the_known_ones(ca, pebble_account, tmp_path):
    work = order(ca, pebble_account, tmp_path, bind_name("unknownprovider"))
    result = ca.run(6, work, "--provider", "route53")
    fails(result, 2, "invalid choice: 'route53'", "rfc2136", "challtestsrv", one_line=False)
    assert result.stderr.strip().splitlines()[-1].startswith("06_dns_challenge.py: error:")


# --- dns-account-01 and dns-persist-01 ------------------------------------------------------------


def account_label(work: Path) -> str:
    """draft-ietf-acme-dns-account-label: base32(SHA-256(account URL)[0:10]), lower case, computed here again."""
    url = json.loads((work / "account.json").read_text())["account_url"]
    return base64.b32encode(hashlib.sha256(url.encode()).digest()[:10]).decode().lower()


def deactivate_authorizations(work: Path) -> None:
    """Deactivate the order's (valid) authorizations (RFC 8555 §7.5.2): the CA may then not reuse them,
    so the next order for the names must be validated again. Pebble reuses half of them otherwise."""
    import argparse

    from common import cli, workdir

    client = cli.connect_account(argparse.Namespace(server=None, ca_bundle=None, allow_host=[], timeout=30.0),
                                 workdir.WorkDir(work))
    for url in saved_order(work)["order"]["authorizations"]:
        assert client.post(url, {"status": "deactivated"}).body["status"] == "deactivated"


def test_dns_account_01_issues_with_the_record_under_the_account_label(ca, pebble_account, tmp_path):
    name = bind_name("account", "example.org")
    work = order(ca, pebble_account, tmp_path, name, f"*.{name}")
    result = ca.ok(6, work, *challtestsrv(ca, "--challenge", "dns-account-01"))
    record = f"_{account_label(work)}._acme-challenge.{name}"
    shown = published(result)
    assert {n for n, _ in shown} == {record} and len({v for _, v in shown}) == 2
    assert "Answered dns-account-01 for" in result.stdout
    assert ca.txt(record) == [] and ca.txt(f"_acme-challenge.{name}") == []
    assert not (work / RECORDS_FILE).exists()
    ca.finish(work, [name, f"*.{name}"])


def test_dns_account_01_through_rfc2136_on_bind(ca_bind, bind, bind_account, tmp_path):
    name = bind_name("account", "example.com.cn")
    work = order(ca_bind, bind_account, tmp_path, name)
    result = ca_bind.ok(6, work, *rfc2136(bind, "--challenge", "dns-account-01"))
    record = f"_{account_label(work)}._acme-challenge.{name}"
    assert [n for n, _ in published(result)] == [record]
    assert bind.txt(record) == []
    ca_bind.finish(work, [name])


def test_a_dns_persist_01_record_stays_and_proves_the_next_order(ca, pebble_account, tmp_path):
    name = bind_name("persist", "example.org")
    record = f"_validation-persist.{name}"
    work = order(ca, pebble_account, tmp_path, name, f"*.{name}")
    result = ca.ok(6, work, *challtestsrv(ca, "--challenge", "dns-persist-01"))
    account_url = json.loads((work / "account.json").read_text())["account_url"]
    shown = published(result)
    assert {n for n, _ in shown} == {record}
    values = sorted(v for _, v in shown)
    assert len(values) == 2 and all(f"accounturi={account_url}" in v for v in values)
    assert [v.endswith("; policy=wildcard") for v in values] == [False, True]
    assert "stay published" in result.stdout
    assert sorted(ca.txt(record)) == values  # still there: that is the point
    assert not (work / RECORDS_FILE).exists()  # and nothing for a later run to clean up
    ca.finish(work, [name, f"*.{name}"])

    # Months later: a new order for the same names by the same account, validated through the same record.
    deactivate_authorizations(work)
    ca.ok(5, work)
    log = tmp_path / "requests.log"
    again = ca.ok(6, work, *challtestsrv(ca, "--challenge", "dns-persist-01"), env={"ACME_REQUEST_LOG": str(log)})
    assert "Publishing" not in again.stdout and again.stdout.count("is already published") == 2
    assert len(answered_challenges(log)) == 2  # the CA looked again, and found the standing record
    assert sorted(ca.txt(record)) == values
    ca.finish(work, [name, f"*.{name}"])
    ca.challtestsrv("/clear-txt", {"host": record + "."})


# --- interrupted runs -----------------------------------------------------------------------------


@dataclass
class Killed:
    work: Path
    hook: Hook
    names: list[str]
    left: str  # the record the killed run published and never removed
    value: str


@pytest.fixture
def killed(ca_bind, bind, bind_account, tmp_path) -> Killed:
    """06 SIGKILLed while its propagation check waits: one record published, the other never to appear
    (the hook leaves names with 'never.' alone), so nothing got the chance to clean up."""
    base = bind_name("killed")
    names = [f"pub.{base}", f"never.{base}"]
    hook = Hook(tmp_path / "hook", bind, skip=("never.",))
    work = order(ca_bind, bind_account, tmp_path, *names)
    proc = start(ca_bind, 6, work, *hook.options("--propagation-timeout", "60"))
    wait_for_line(proc, f"DNS: waiting for _acme-challenge.never.{base}")
    proc.kill()
    proc.communicate(timeout=10)
    listed = json.loads((work / RECORDS_FILE).read_text())
    assert listed["provider"] == "exec"
    assert sorted(r["name"] for r in listed["records"]) == sorted(f"_acme-challenge.{n}" for n in names)
    left = f"_acme-challenge.pub.{base}"
    value = next(r["value"] for r in listed["records"] if r["name"] == left)
    assert bind.txt(left) == [value]  # still in DNS: the killed run could not remove it
    hook.configure()  # from now on the hook publishes every name
    return Killed(work, hook, names, left, value)


def test_cleanup_removes_what_a_killed_run_left(ca_bind, bind, killed, tmp_path):
    log = tmp_path / "requests.log"
    result = ca_bind.ok(6, killed.work, "--cleanup", *killed.hook.options(), env={"ACME_REQUEST_LOG": str(log)})
    assert "Removing 2 TXT records an earlier run left" in result.stdout
    assert bind.txt(killed.left) == []
    assert not (killed.work / RECORDS_FILE).exists()
    assert sorted(c[1] for c in killed.hook.calls() if c[0] == "cleanup") == sorted(
        f"_acme-challenge.{n}." for n in killed.names)
    assert requests_made(log) == ""  # cleaning up is DNS only
    again = ca_bind.ok(6, killed.work, "--cleanup", *killed.hook.options())
    assert "Nothing an earlier run published is left" in again.stdout


def test_the_next_run_removes_what_a_killed_run_left_then_proves_the_names(ca_bind, bind, killed):
    result = ca_bind.ok(6, killed.work, *killed.hook.options())
    out = result.stdout
    assert "Removing 2 TXT records an earlier run left" in out
    assert out.index("an earlier run left") < out.index("Publishing") < out.index("Order is ready")
    assert bind.txt(killed.left) == []
    assert not (killed.work / RECORDS_FILE).exists()
    ca_bind.finish(killed.work, killed.names)


def test_records_left_by_another_provider_exit_2_naming_the_cleanup(ca_bind, bind, killed, tmp_path):
    log = tmp_path / "requests.log"
    result = ca_bind.run(6, killed.work, *rfc2136(bind), env={"ACME_REQUEST_LOG": str(log)})
    fails(result, 2, RECORDS_FILE, "--cleanup --provider exec")
    assert requests_made(log) == ""
    assert (killed.work / RECORDS_FILE).exists() and bind.txt(killed.left) == [killed.value]
    ca_bind.ok(6, killed.work, "--cleanup", *killed.hook.options())
    assert bind.txt(killed.left) == []


# --- what other CAs do ----------------------------------------------------------------------------

HOSTILE_NAMES = [bind_name("first", "example.net"), bind_name("second", "example.net")]


@pytest.fixture(scope="module")
def hostile_template(hostile, tmp_path_factory) -> Path:
    """An account and a CSR for two names on the scripted CA, made once."""
    work = tmp_path_factory.mktemp("hostile-dns") / "acme-work"
    hostile_account(hostile, work, HOSTILE_NAMES)
    return work


@pytest.fixture
def hostile_work(hostile, hostile_template, tmp_path) -> Path:
    hostile.reset()
    work = tmp_path / "acme-work"
    shutil.copytree(hostile_template, work)
    assert run_step(5, work).returncode == 0
    return work


def run_step(step: int, work: Path, *args: str) -> subprocess.CompletedProcess:
    """Run a step on the scripted CA, outside the local test CA's environment."""
    command = [sys.executable, str(ROOT / STEPS[step]), "--dir", str(work), *args]
    return run_script(command, timeout=120, cwd=work.parent, env=plain_env())


def test_a_challenge_put_back_to_pending_ends_at_the_timeout_saying_where_each_name_stands(ca, hostile,
                                                                                          hostile_work):
    """ACMEEH without its retry worker: the answer says pending, with no error, and the order stays pending."""
    for i in range(2):
        hostile.answer("POST", f"/chall/{i}", Reply(200, {"type": "dns-01", "url": hostile.url(f"/chall/{i}"),
                                                          "token": token(i), "status": "pending"}))
    began = time.monotonic()
    result = run_step(6, hostile_work, *challtestsrv(ca, "--timeout", "3"))
    assert time.monotonic() - began < 40  # near the 3 s, not at a default of minutes
    fails(result, 1, "gave up after", "--timeout 3", "where each authorization stands", one_line=False)
    for name in HOSTILE_NAMES:
        assert f"dns:{name}: : the authorization is pending, with no challenge error" in result.stderr
        assert ca.txt(f"_acme-challenge.{name}") == []
    assert hostile.hits("POST", "/chall/0") == hostile.hits("POST", "/chall/1") == 1
    assert not (hostile_work / RECORDS_FILE).exists()


def test_an_invalid_order_with_one_subproblem_shows_each_names_challenge_error(ca, hostile, hostile_work):
    """ACMEEH invalidates the order when the first authorization fails, with one subproblem that names
    that name only and no reason; both names' challenges failed, each with its own error."""
    for i, name in enumerate(HOSTILE_NAMES):
        failed = hostile.authz_body(i) | {"status": "invalid"}
        failed["challenges"][0] |= {"status": "invalid", "error": {
            "type": "urn:ietf:params:acme:error:unauthorized",
            "detail": f"no TXT record with the expected value at _acme-challenge.{name}"}}
        hostile.answer("POST", f"/authz/{i}", hostile.honest, Reply(200, failed))
    error = {"type": "urn:ietf:params:acme:error:unauthorized",
             "detail": "Authorization failed for one or more identifiers",
             "subproblems": [{"type": "urn:ietf:params:acme:error:unauthorized",
                              "detail": "Challenge validation failed for identifier",
                              "identifier": {"type": "dns", "value": HOSTILE_NAMES[0]}}]}
    hostile.answer("POST", "/order/1", lambda req: Reply(200, hostile.order_body("invalid") | {"error": error}))
    result = run_step(6, hostile_work, *challtestsrv(ca))
    fails(result, 1, "the order is invalid", "Authorization failed for one or more identifiers", one_line=False)
    for name in HOSTILE_NAMES:
        assert f"dns:{name}: urn:ietf:params:acme:error:unauthorized: no TXT record with the expected value at " \
               f"_acme-challenge.{name}" in result.stderr
        assert ca.txt(f"_acme-challenge.{name}") == []
    assert saved_order(hostile_work)["order"]["status"] == "invalid"
