"""renew.sh left alone: saved options, many directories, locks, back-off, pauses, hooks, a fallback CA, units.

Against Pebble (ARI on; a certificate is made due through the management API before anything asked
about it, since Pebble answers renewalInfo with Retry-After 21600), a second Pebble with EAB as the
fallback CA, and the scripted CA of tests/hostile_ca.py where Pebble cannot go (no renewalInfo, a
paused account, a certificate a day from expiry). Directories that must fail before any CA answers
(damaged files, a lock that cannot be taken, a hung hook) hold a self-signed certificate and an
account at a CA that is not there.
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from helpers import (
    ROOT,
    free_port,
    gone,
    hostile_account,
    load_renew_tool,
    past_window,
    plain_env,
    run_plain,
    start_ca,
    unique,
    wait_for_line,
)
from hostile_ca import Reply

from common import keys
from common import renewal_runs as runs
from common.renewal_runs import RenewOptions

HOUR = datetime.timedelta(hours=1)


# --- helpers ---------------------------------------------------------------------------------------------


def renew(ca, *args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    environment = ca.step_env(env) if ca is not None else plain_env(env)
    return subprocess.run(["bash", str(ROOT / "renew.sh"), *map(str, args)], capture_output=True, text=True,
                          env={**environment, "PYTHON": sys.executable}, timeout=300, cwd=cwd or ROOT)


def shown(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def summary(result: subprocess.CompletedProcess) -> dict[str, str]:
    """The summary lines renew.sh ends with, by directory."""
    assert "== Summary" in result.stdout, shown(result)
    lines = result.stdout.split("== Summary\n", 1)[1].strip().splitlines()
    return dict(line.split(": ", 1) for line in lines)


def state(work: Path) -> dict:
    return json.loads((work / runs.STATE).read_text())


def when(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def leaf(work: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate((work / "cert.pem").read_bytes())


def issue(ca, work: Path, names: list[str]) -> None:
    """Steps 01 to 08, again if the serial needs a DER leading zero (Pebble cannot match it in replaces)."""
    work.parent.mkdir(parents=True, exist_ok=True)
    ca.issue(work, names)
    while leaf(work).serial_number.bit_length() % 8 == 0:
        ca.order(work)


def make_due(ca, work: Path) -> None:
    """A renewalInfo window in the past for cert.pem, before anything asked about this certificate."""
    assert not (work / "renewal.json").exists()
    ca.management("/set-renewal-info/", {"Certificate": (work / "cert.pem").read_text(), "ARIResponse": past_window()})


def challtestsrv(ca) -> list[str]:
    return ["--provider", "challtestsrv", "--challtestsrv-url", ca.state["challtestsrv_url"]]


def saved_options(work: Path) -> dict:
    return json.loads((work / runs.OPTIONS).read_text())


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def offline_dir(work: Path, name: str = "offline.example.com") -> Path:
    """A work directory needing no CA until a renewal orders: a self-signed cert.pem with its cert.key, and an
    account at a CA that is not there (nothing listens on its port), so step 05 fails at once."""
    work.mkdir(parents=True)
    key = keys.generate_key("ec256")
    start = now() - HOUR
    subject = x509.Name([])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(start + 90 * 24 * HOUR)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    (work / "cert.key").write_bytes(keys.key_to_pem(key))
    (work / "cert.key").chmod(0o600)
    (work / "account.key").write_bytes(keys.key_to_pem(keys.generate_key("ec256")))
    (work / "account.key").chmod(0o600)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    for file in ("cert.pem", "fullchain.pem"):
        (work / file).write_bytes(pem)
    (work / "chain.pem").write_text("")
    gone = f"https://127.0.0.1:{free_port()}"
    (work / "account.json").write_text(json.dumps({"directory_url": f"{gone}/dir", "account_url": f"{gone}/acct/1"}))
    return work


def backing_off(work: Path) -> None:
    """A failure recorded an hour ago: the next run skips the directory, asking no CA anything."""
    later = (now() + HOUR).strftime("%Y-%m-%dT%H:%M:%SZ")
    (work / runs.STATE).write_text(json.dumps({"failures": 1, "next_try": later,
                                               "last_failure": {"step": "06_dns_challenge.py", "error": "x"}}))





def env_file(path: Path) -> dict[str, str]:
    """What a hook wrote with ``env -0``: its environment, as it got it."""
    pairs = [item.split("=", 1) for item in path.read_text().split("\0") if "=" in item]
    return {k: v for k, v in pairs if k.startswith("ACME_")}


# --- offline: the arithmetic and the parsing --------------------------------------------------------------


@pytest.mark.parametrize(("failures", "left", "wait"), [
    (1, 90 * 24 * HOUR, HOUR), (2, 90 * 24 * HOUR, 2 * HOUR), (3, 90 * 24 * HOUR, 4 * HOUR),
    (5, 90 * 24 * HOUR, 16 * HOUR), (6, 90 * 24 * HOUR, 24 * HOUR), (40, 90 * 24 * HOUR, 24 * HOUR),
    (5, 20 * HOUR, 10 * HOUR), (1, HOUR, HOUR / 2), (3, -HOUR, HOUR), (0, 90 * 24 * HOUR, HOUR),
], ids=["1h", "2h", "4h", "16h", "24h-cap", "24h-many", "half-the-time-left", "half-an-hour-left", "expired",
        "zero-is-one"])
def test_backoff_doubles_to_a_day_and_never_past_half_the_time_left(failures, left, wait):
    assert runs.backoff(failures, left) == wait


def test_a_failure_is_recorded_with_the_next_try():
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    state = {"issued_by": {"directory_url": "https://ca.example/dir"}}
    for failures, wait in ((1, HOUR), (2, 2 * HOUR), (3, 3 * HOUR)):  # the third capped: 6 h left
        runs.record_failure(state, start, start + 6 * HOUR, {"step": "06_dns_challenge.py", "error": "no"})
        assert state["failures"] == failures and when(state["next_try"]) == start + wait
    runs.record_failure(state, start, start + 6 * HOUR, {"step": "05_new_order.py", "error": "x",
                                                          "unpause_url": "https://ca.example/unpause?j=1"})
    assert state["paused"]["unpause_url"] == "https://ca.example/unpause?j=1"
    runs.record_success(state, {"directory_url": "https://other.example/dir"})
    assert "failures" not in state and "paused" not in state and "next_try" not in state


def test_a_steps_error_becomes_one_line_and_a_pause_link():
    stderr = ("error: POST https://ca.example/new-order: HTTP 429\n"
              "  urn:ietf:params:acme:error:rateLimited: Your account is temporarily prevented from requesting "
              "certificates for a.example.com. Please visit: https://portal.example/sfe/v1/unpause?jwt=abc.def\n"
              "  (wait as the detail says)\n")
    assert runs.problem_type(stderr) == "rateLimited"
    assert runs.unpause_url(stderr) == "https://portal.example/sfe/v1/unpause?jwt=abc.def"
    assert runs.error_line(stderr, 1).startswith("POST https://ca.example/new-order: HTTP 429 (urn:ietf:")
    other = stderr.replace("rateLimited", "serverInternal")
    assert runs.unpause_url(other) is None
    assert runs.error_line("Traceback...\n", 1) == "exit status 1"


def test_work_dirs_are_found_but_not_previous_copies_or_scratch(tmp_path):
    for sub in ("a", "a/previous", "b/c", "b/c/.fallback-work", "d"):
        (tmp_path / sub).mkdir(parents=True)
    for sub in ("a", "a/previous", "b/c", "b/c/.fallback-work"):
        (tmp_path / sub / "cert.pem").write_text("x")
    assert runs.find_work_dirs(tmp_path) == [tmp_path / "a", tmp_path / "b" / "c"]


def test_path_options_are_saved_absolute(tmp_path):
    given = ["--webroot", "site", "--exec-hook=./hook.sh", "--provider", "exec", "--exec-hook", "myhook",
             "--ca-bundle", "ca.pem", "--ca-bundle=certs/ca.pem", "--tsig-key-file", "tsig.key",
             "--dns-resolver", "127.0.0.1:53", "--ca-bundle", "/etc/ca.pem"]
    assert runs.absolute_paths(given, tmp_path) == [
        "--webroot", f"{tmp_path}/site", f"--exec-hook={tmp_path}/hook.sh", "--provider", "exec", "--exec-hook",
        "myhook", "--ca-bundle", f"{tmp_path}/ca.pem", f"--ca-bundle={tmp_path}/certs/ca.pem", "--tsig-key-file",
        f"{tmp_path}/tsig.key", "--dns-resolver", "127.0.0.1:53", "--ca-bundle", "/etc/ca.pem"]


def test_options_given_again_replace_only_their_kind_and_reset_replaces_all(tmp_path):
    """A directory without a certificate (another's --fallback) only saves: the same merging as with one."""
    work = tmp_path / "account-only"
    work.mkdir()
    (work / "account.json").write_text("{}")
    first = renew(None, "--dir", work, "--provider", "exec", "--exec-hook", "/bin/true", "--profile", "short",
                  "--deploy-hook", "curl https://hooks.example/T0KEN", "--hook-timeout", "30")
    assert first.returncode == 0, shown(first)
    assert mode(work / runs.OPTIONS) == 0o600, "hook command lines hold tokens"
    provider = ["--provider", "exec", "--exec-hook", "/bin/true"]

    renew(None, "--dir", work, "--new-key")  # what step 12 suggests after keyCompromise
    assert saved_options(work) | {"about": None} == {
        "about": None, "challenge_step": runs.DNS_CHALLENGE, "challenge_options": provider, "profile": "short",
        "new_key": True, "password_file": None, "password_env": None,
        "deploy_hook": "curl https://hooks.example/T0KEN", "on_failure_hook": None, "hook_timeout": 30,
        "fallback": None}

    renew(None, "--dir", work, "--http", "--webroot", "site", cwd=tmp_path)  # step 06 and its options: one kind
    saved = saved_options(work)
    assert saved["challenge_step"] == runs.HTTP_CHALLENGE and saved["challenge_options"] == [
        "--webroot", str(tmp_path / "site")]
    assert saved["profile"] == "short" and saved["new_key"] and saved["deploy_hook"]

    renew(None, "--dir", work, "--deploy-hook", "", "--password-env", "PFX_PASSWORD")  # an empty value drops one
    saved = saved_options(work)
    assert saved["deploy_hook"] is None and saved["password_env"] == "PFX_PASSWORD" and saved["profile"] == "short"

    reset = renew(None, "--dir", work, "--reset", "--on-failure-hook", "alert")
    assert reset.returncode == 0, shown(reset)
    assert {k: v for k, v in saved_options(work).items() if k != "about"} == {
        **vars(RenewOptions()), "on_failure_hook": "alert"}

    (work / runs.OPTIONS).write_text('{"profile": 5}')  # hand-edited
    damaged = renew(None, "--dir", work, "--new-key")
    assert damaged.returncode == 2 and "Traceback" not in damaged.stderr, shown(damaged)
    assert len(damaged.stderr.strip().splitlines()) == 1 and str(work / runs.OPTIONS) in damaged.stderr
    assert "profile" in damaged.stderr and "--reset" in damaged.stderr
    fixed = renew(None, "--dir", work, "--reset", *provider)
    assert fixed.returncode == 0 and saved_options(work)["challenge_options"] == provider, shown(fixed)


# --- against Pebble -----------------------------------------------------------------------------------------


def test_all_renews_each_with_its_saved_options_and_one_failure_stops_no_other(ca, tmp_path):
    root = tmp_path / "certs"
    hook = tmp_path / "present-hook"
    url = ca.state["challtestsrv_url"]
    hook.write_text(f"""#!{sys.executable}
import json, sys, urllib.request
action, name, value = sys.argv[1:4]
body = {{"host": name, "value": value}} if action == "present" else {{"host": name}}
urllib.request.urlopen(urllib.request.Request("{url}/" + ("set-txt" if action == "present" else "clear-txt"),
                       data=json.dumps(body).encode(), headers={{"Content-Type": "application/json"}}))
""")
    hook.chmod(0o755)
    dirs = {label: root / label for label in ("a", "b", "c")}
    options = {"a": challtestsrv(ca), "b": [*challtestsrv(ca), "--new-key"],
               "c": ["--provider", "exec", "--exec-hook", str(hook), "--no-propagation-check"]}
    for label, work in dirs.items():
        issue(ca, work, [unique(f"all-{label}")])
        make_due(ca, work)
        first = renew(ca, "--dir", work, *options[label])  # an operator's first run: saves, and renews
        assert first.returncode == 0, shown(first)
        assert "Saved in" in first.stdout and summary(first)[str(work)].startswith("renewed by https://")
        saved = json.loads((work / runs.OPTIONS).read_text())
        assert saved["challenge_options"] == [o for o in options[label] if o != "--new-key"]
        assert saved["new_key"] == (label == "b")
        make_due(ca, work)  # the new certificate, before anything asked about it
    before_c = (dirs["c"] / "cert.pem").read_bytes()
    key_b = (dirs["b"] / "cert.key").read_bytes()
    hook.unlink()  # c's DNS provider is gone

    result = renew(ca, "--all", root)
    assert result.returncode == 1, shown(result)
    lines = summary(result)
    assert sorted(lines) == sorted(map(str, dirs.values())), "previous/ copies are not work directories"
    assert lines[str(dirs["a"])].startswith("renewed by") and lines[str(dirs["b"])].startswith("renewed by")
    assert lines[str(dirs["c"])].startswith("failed: 06_dns_challenge.py: --exec-hook"), lines
    assert "--names-from-cert" in result.stdout and "-> 06_dns_challenge.py" in result.stdout
    assert (dirs["b"] / "cert.key").read_bytes() != key_b, "b's saved --new-key was not used"
    assert (dirs["c"] / "cert.pem").read_bytes() == before_c
    failed = state(dirs["c"])
    assert failed["failures"] == 1 and failed["last_failure"]["step"] == "06_dns_challenge.py"
    assert abs(when(failed["next_try"]) - (now() + HOUR)) < datetime.timedelta(minutes=2)

    again = renew(ca, "--all", root)  # at once: a and b not due, c backing off; none failed
    assert again.returncode == 0, shown(again)
    lines = summary(again)
    assert lines[str(dirs["a"])].startswith("not due until") and lines[str(dirs["b"])].startswith("not due until")
    assert lines[str(dirs["c"])] == f"skipped: backing off until {failed['next_try']}"
    assert "-> 06_dns_challenge.py" not in again.stdout and "-> 11_renewal_info.py" in again.stdout

    forced = renew(ca, "--dir", dirs["c"], "--force")  # --force ignores the back-off, and fails again
    assert forced.returncode == 1 and "-> 06_dns_challenge.py" in forced.stdout, shown(forced)
    assert state(dirs["c"])["failures"] == 2
    assert abs(when(state(dirs["c"])["next_try"]) - (now() + 2 * HOUR)) < datetime.timedelta(minutes=2)

    status = renew(ca, "--status", "--all", root, env={"ACME_REQUEST_LOG": str(tmp_path / "requests.log")})
    assert status.returncode == 0, shown(status)
    assert "failures in a row: 2" in status.stdout and "back-off: no new try before" in status.stdout
    assert status.stdout.count("saved options: --provider") == 3 and "renewal time: " in status.stdout
    assert not (tmp_path / "requests.log").exists(), "--status asked a CA"


def test_the_next_line_of_step_12_after_key_compromise_keeps_the_saved_options(ca, tmp_path):
    work = tmp_path / "compromised"
    issue(ca, work, [unique("compromised")])
    make_due(ca, work)
    first = renew(ca, "--dir", work, *challtestsrv(ca), "--deploy-hook", f"echo deployed >> {tmp_path}/deployed")
    assert first.returncode == 0 and summary(first)[str(work)].startswith("renewed by"), shown(first)

    revoked = ca.ok(12, work, "--reason", "keyCompromise", "--yes")
    next_line = next(line for line in revoked.stdout.splitlines() if line.startswith("Next: "))
    command = next_line.split(" now: ", 1)[1].split(" (or ", 1)[0]
    assert command == f"./renew.sh --dir {work} --force --new-key", next_line
    old_key = (work / "cert.key").read_bytes()
    replaced = renew(ca, *shlex.split(command)[1:])
    assert replaced.returncode == 0 and summary(replaced)[str(work)].startswith("renewed by"), shown(replaced)
    assert (work / "cert.key").read_bytes() != old_key
    saved = saved_options(work)
    assert saved["challenge_options"] == challtestsrv(ca) and saved["new_key"] and saved["deploy_hook"]

    timer = renew(ca, "--dir", work, "--force")  # a later run, as the timer makes it: still complete
    assert timer.returncode == 0, shown(timer)
    assert f"-> 06_dns_challenge.py --dir {work} --provider challtestsrv" in timer.stdout
    assert (tmp_path / "deployed").read_text() == "deployed\n" * 3


def test_two_runs_started_together_one_skips_as_locked(ca, tmp_path):
    work = tmp_path / "locked"
    issue(ca, work, [unique("lock")])
    make_due(ca, work)
    env = {**ca.step_env(), "PYTHON": sys.executable}
    first = subprocess.Popen(["bash", str(ROOT / "renew.sh"), "--dir", str(work), *challtestsrv(ca)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_for_line(first, "-> 05_new_order.py")  # the first run holds the lock, mid-renewal
        second = renew(ca, "--dir", work)
    finally:
        out, err = first.communicate(timeout=300)
    assert second.returncode == 0, shown(second)
    assert summary(second) == {str(work): "locked: another run is renewing it; skipped"}
    assert "03_create_csr.py" not in second.stdout
    assert first.returncode == 0, out + err
    assert "renewed by" in out


def test_hooks_get_the_details_in_their_environment_only(ca, tmp_path):
    work = tmp_path / "it's a $(touch pwned) dir"
    names = [unique("hook"), unique("www")]
    issue(ca, work, names)
    make_due(ca, work)
    password = tmp_path / "pfx-password"
    password.write_text("hook-secret\n")
    deploy = f"env -0 > {tmp_path}/deploy.env; test -f \"$ACME_CERT_PATH\""
    result = renew(ca, "--dir", work, *challtestsrv(ca), "--password-file", password, "--deploy-hook", deploy,
                   cwd=tmp_path)
    assert result.returncode == 0, shown(result)
    assert "Running the deploy hook" in result.stdout and not (tmp_path / "pwned").exists()
    got = env_file(tmp_path / "deploy.env")
    assert got["ACME_RENEWED_DIR"] == got["ACME_DIR"] == str(work)
    assert sorted(got["ACME_RENEWED_NAMES"].split()) == sorted(names)
    assert got["ACME_CERT_PATH"] == str(work / "cert.pem") and got["ACME_KEY_PATH"] == str(work / "cert.key")
    assert got["ACME_FULLCHAIN_PATH"] == str(work / "fullchain.pem") and got["ACME_PFX_PATH"] == str(
        work / "certificate.pfx")
    assert got["ACME_CERT_NOT_AFTER"] == leaf(work).not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert got["ACME_ISSUER_URL"] == ca.state["directory_url"]
    saved = (work / runs.OPTIONS).read_text()
    assert str(password) in saved and "hook-secret" not in saved + result.stdout + result.stderr

    failing = f"env -0 > {tmp_path}/failure.env"
    result = renew(ca, "--dir", work, "--force", "--provider", "exec", "--exec-hook", "/nonexistent/hook",
                   "--on-failure-hook", failing, cwd=tmp_path)
    assert result.returncode == 1, shown(result)
    got = env_file(tmp_path / "failure.env")
    assert got["ACME_FAILED_DIR"] == str(work) and got["ACME_FAILED_STEP"] == "06_dns_challenge.py"
    assert "/nonexistent/hook" in got["ACME_ERROR"] and got["ACME_FAILURES"] == "1"
    assert got["ACME_NEXT_TRY"] == state(work)["next_try"] and got["ACME_UNPAUSE_URL"] == ""
    assert sorted(got["ACME_FAILED_NAMES"].split()) == sorted(names) and not (tmp_path / "pwned").exists()


def fallback_account(ca_eab, primary, account_dir: Path) -> None:
    """An account at the EAB Pebble made by 01 and 04, with its own step-06 options saved by renew.sh."""
    kid, key = ca_eab.eab
    primary.ok(1, account_dir)
    primary.ok(4, account_dir, "--server", ca_eab.state["directory_url"], "--ca-bundle", ca_eab.state["ca_bundle"],
               "--agree-tos", "--eab-kid", kid, "--eab-hmac-key-env", "EAB_KEY", env={"EAB_KEY": key})
    saved = renew(primary, "--dir", account_dir, *challtestsrv(ca_eab), "--dns-resolver", ca_eab.state["dns_server"])
    assert saved.returncode == 0 and "holds no certificate to renew" in saved.stdout, shown(saved)


def test_fallback_ca_when_the_primary_is_stopped(tmp_path_factory, ca_eab, tmp_path):
    primary = start_ca(tmp_path_factory, "doomed", {"PEBBLE_WFE_NONCEREJECT": "0"})
    try:
        work, account_dir = tmp_path / "site", tmp_path / "fallback-account"
        issue(primary, work, [unique("fallback")])
        old_issuer = leaf(work).issuer
        fallback_account(ca_eab, primary, account_dir)
        make_due(primary, work)
        assert primary.run(11, work, "--check").returncode == 0  # the CA said: due; then it went away
        primary_06 = challtestsrv(primary)
    finally:
        primary.stop()

    result = renew(primary, "--dir", work, *primary_06, "--fallback", account_dir)
    assert result.returncode == 0, shown(result)
    assert "trying the fallback CA" in result.stderr and "-> 05_new_order.py --dir " + str(work) in result.stdout
    line = summary(result)[str(work)]
    assert line.startswith(f"renewed by the fallback CA {ca_eab.state['directory_url']} ({account_dir})"), line
    assert "replacing the certificate" not in result.stdout, "an order at another CA carries no replaces"
    assert leaf(work).issuer != old_issuer
    assert not (account_dir / "cert.pem").exists() and not (work / runs.FALLBACK_WORK).exists()
    assert state(work)["issued_by"]["fallback"] == str(account_dir)

    log = tmp_path / "requests.log"
    later = renew(primary, "--dir", work, env={"ACME_REQUEST_LOG": str(log)})  # ARI of the CA that issued it
    assert later.returncode == 0, shown(later)
    assert summary(later)[str(work)].startswith("not due until")
    assert "renewalInfo" in log.read_text() and f":{ca_eab.ports['acme_port']}/" in log.read_text()

    forced = renew(primary, "--dir", work, "--force")  # the primary first again, without replaces; then back
    assert forced.returncode == 0, shown(forced)
    orders = [line for line in forced.stdout.splitlines() if line.startswith("-> 05_new_order.py")]
    assert orders[0] == f"-> 05_new_order.py --dir {work}", orders
    assert "--replaces" in orders[1] and runs.FALLBACK_WORK in orders[1], orders
    assert "renewed by the fallback CA" in summary(forced)[str(work)]


def test_a_certificate_from_the_fallback_renews_at_the_primary_without_replaces(ca, ca_eab, tmp_path):
    work, account_dir = tmp_path / "site", tmp_path / "fallback-account"
    issue(ca, work, [unique("back")])
    fallback_account(ca_eab, ca, account_dir)
    broken = ["--provider", "exec", "--exec-hook", "/nonexistent/hook"]  # the primary's step 06 fails
    first = renew(ca, "--dir", work, "--force", *broken, "--fallback", account_dir)
    assert first.returncode == 0, shown(first)
    assert "renewed by the fallback CA" in summary(first)[str(work)]
    fixed = renew(ca, "--dir", work, "--force", *challtestsrv(ca), "--fallback", account_dir)
    assert fixed.returncode == 0, shown(fixed)
    assert summary(fixed)[str(work)].startswith(f"renewed by {ca.state['directory_url']}")
    assert "replacing the certificate" not in fixed.stdout and "trying the fallback" not in fixed.stderr
    assert state(work)["issued_by"]["fallback"] is None


# --- against the scripted CA: no renewalInfo, a paused account, a certificate soon to expire -------------------


def short_chain(hostile, hours: float) -> str:
    """What /cert/1 answers: a certificate for the last CSR valid ``hours``, then the intermediate."""
    from cryptography.hazmat.primitives import serialization

    start = now() - datetime.timedelta(minutes=1)
    san = hostile.csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    cert = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(hostile.intermediate.subject)
            .public_key(hostile.csr.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + datetime.timedelta(hours=hours))
            .add_extension(san, critical=False).sign(hostile._issuer_key, hashes.SHA256()))
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in (cert, hostile.intermediate))


HOSTILE_06 = ["--provider", "exec", "--exec-hook", "/bin/true", "--no-propagation-check"]


def hostile_certificate(hostile, work: Path, hours: float | None = None) -> None:
    hostile.reset()
    if hours:
        hostile.answer("POST", "/cert/1", lambda req: Reply(200, short_chain(hostile, hours),
                                                           content_type="application/pem-certificate-chain"))
    hostile_account(hostile, work, [unique("scripted")])
    for step, args in ((5, []), (6, HOSTILE_06), (7, []), (8, [])):
        result = run_plain(step, "--dir", str(work), *args, env=plain_env(), cwd=work.parent)
        assert result.returncode == 0, result.stdout + result.stderr
    hostile.scripts.clear()


def test_without_renewal_info_the_lifetime_decides_and_the_backoff_doubles_then_stops_short_of_expiry(
        hostile, tmp_path):
    work = tmp_path / "scripted"
    hostile_certificate(hostile, work, hours=30)  # lifetime under 10 days: due with half of it left
    result = renew(None, "--dir", work, *HOSTILE_06)
    assert result.returncode == 0, shown(result)
    expiry = leaf(work).not_valid_after_utc
    due = json.loads((work / "renewal.json").read_text())
    assert due["source"] == "lifetime" and "no renewal information (ARI)" in result.stdout
    assert summary(result)[str(work)] == f"not due until {due['renew_at']}"
    assert abs(when(due["renew_at"]) - (expiry - 15 * HOUR)) < datetime.timedelta(minutes=2)

    hostile.answer("POST", "/new-order", Reply(500, {"type": "urn:ietf:params:acme:error:serverInternal",
                                                     "detail": "down for maintenance"}))
    for failures, wait in ((1, HOUR), (2, 2 * HOUR)):
        failed = renew(None, "--dir", work, "--force")
        assert failed.returncode == 1, shown(failed)
        assert "failed: 05_new_order.py" in summary(failed)[str(work)] and "down for maintenance" in failed.stderr
        assert state(work)["failures"] == failures
        assert abs(when(state(work)["next_try"]) - (now() + wait)) < datetime.timedelta(minutes=2)
    orders = hostile.hits("POST", "/new-order")
    waiting = renew(None, "--dir", work)
    assert waiting.returncode == 0 and "skipped: backing off until" in summary(waiting)[str(work)], shown(waiting)
    assert hostile.hits("POST", "/new-order") == orders

    saved = state(work)
    (work / runs.STATE).write_text(json.dumps({**saved, "failures": 4}))  # the fifth failure would wait 16 h
    capped = renew(None, "--dir", work, "--force")
    assert capped.returncode == 1, shown(capped)
    next_try = when(state(work)["next_try"])
    assert next_try < expiry and abs(next_try - (now() + (expiry - now()) / 2)) < datetime.timedelta(minutes=2)

    hostile.scripts.clear()
    fine = renew(None, "--dir", work, "--force")
    assert fine.returncode == 0 and summary(fine)[str(work)].startswith("renewed by"), shown(fine)
    assert "failures" not in state(work)


def test_a_paused_account_stops_retries_and_prints_the_link(hostile, tmp_path):
    work = tmp_path / "paused"
    hostile_certificate(hostile, work)
    link = "https://portal.example/sfe/v1/unpause?jwt=eyJ0.eyJ1.c2ln"
    hostile.answer("POST", "/new-order", Reply(429, {
        "type": "urn:ietf:params:acme:error:rateLimited",
        "detail": f"Your account is temporarily prevented from requesting certificates for these names and "
                  f"possibly others. Please visit: {link}"}))
    hook = f"echo $ACME_UNPAUSE_URL >> {tmp_path}/alerts"
    first = renew(None, "--dir", work, "--force", *HOSTILE_06, "--on-failure-hook", hook)
    assert first.returncode == 1, shown(first)
    assert link in first.stderr and link in summary(first)[str(work)]
    assert state(work)["paused"]["unpause_url"] == link
    requests = len(hostile.requests)
    again = renew(None, "--dir", work)
    assert again.returncode == 1 and link in again.stderr, shown(again)
    assert "paused by the CA" in summary(again)[str(work)] and len(hostile.requests) == requests
    status = renew(None, "--status", "--dir", work)
    assert status.returncode == 0 and f"PAUSED by the CA: visit {link}" in status.stdout, shown(status)
    assert len(hostile.requests) == requests, "--status asked the CA"
    assert (tmp_path / "alerts").read_text() == link + "\n", "the failure hook runs once, at the failure"
    hostile.scripts.clear()  # unpaused
    unpaused = renew(None, "--dir", work, "--force")
    assert unpaused.returncode == 0, shown(unpaused)
    assert "paused" not in state(work)


# --- failures of renew.sh's own: each directory fails alone, the run goes on ------------------------------------


def test_a_damaged_options_file_or_a_lock_that_cannot_be_taken_fails_that_directory_alone(tmp_path):
    root = tmp_path / "certs"
    damaged, unlockable, waiting = (offline_dir(root / label) for label in ("a-damaged", "b-unlockable", "c-ok"))
    (damaged / runs.OPTIONS).write_text(json.dumps({"profile": 5, "challenge_options": []}))  # hand-edited
    (unlockable / runs.LOCK).mkdir()  # what cannot be opened for writing, even by root
    backing_off(waiting)
    result = renew(None, "--all", root)
    assert result.returncode == 1 and "Traceback" not in result.stderr, shown(result)
    lines = summary(result)
    assert lines[str(damaged)] == (f"failed: {damaged / runs.OPTIONS} is damaged (profile should be a string or "
                                   f"null, not 5): fix it, or save the options again with renew.sh --dir {damaged} "
                                   "--reset OPTIONS"), lines
    assert lines[str(unlockable)].startswith(f"failed: cannot lock {unlockable / runs.LOCK} (Is a directory)"), lines
    assert lines[str(waiting)].startswith("skipped: backing off until"), lines
    assert "-> 11_renewal_info.py" not in result.stdout
    assert mode(waiting / runs.STATE) == 0o600, "renew-state.json is private, as renew-options.json is"


def test_an_unexpected_error_mid_renewal_puts_the_files_back_records_it_and_the_run_goes_on(
        tmp_path, monkeypatch, capsys):
    """A failure no step reports (a disk full as files are moved, a bug): the same as a step's failure."""
    tool = load_renew_tool()
    root = tmp_path / "certs"
    dirs = [offline_dir(root / label) for label in ("a", "b")]
    alerts = tmp_path / "alerts"
    for work in dirs:
        runs.save_options(work, RenewOptions(new_key=True, on_failure_hook=f'echo "$ACME_FAILED_STEP: $ACME_ERROR" '
                                                                           f'>> {alerts}'))
    before = {work: ((work / "cert.key").read_bytes(), (work / "cert.pem").read_bytes()) for work in dirs}
    troubles = {dirs[0]: OSError(errno.ENOSPC, "No space left on device"), dirs[1]: TypeError("a bug")}

    def step(work, script, *args, **kw):
        if script == "02_create_cert_key.py":  # the new key is in place: what must not stay
            (work / "cert.key").write_bytes(keys.key_to_pem(keys.generate_key("ec256")))
        if script == "05_new_order.py":
            raise troubles[work]
        return ""

    monkeypatch.setattr(tool, "step", step)
    assert tool.main(["--all", str(root), "--force"]) == 1
    out = capsys.readouterr().out
    lines = dict(line.split(": ", 1) for line in out.split("== Summary\n", 1)[1].strip().splitlines())
    for work, error in ((dirs[0], "OSError: [Errno 28] No space left on device"), (dirs[1], "TypeError: a bug")):
        assert ((work / "cert.key").read_bytes(), (work / "cert.pem").read_bytes()) == before[work]
        recorded = state(work)
        assert recorded["failures"] == 1 and recorded["last_failure"]["step"] == "renew.sh"
        assert recorded["last_failure"]["error"] == error
        assert lines[str(work)] == f"failed: renew.sh: {error}; next try after {recorded['next_try']}"
    assert alerts.read_text().splitlines() == ["renew.sh: OSError: [Errno 28] No space left on device",
                                               "renew.sh: TypeError: a bug"]


def test_a_hook_that_hangs_is_stopped_with_what_it_started(tmp_path):
    work = offline_dir(tmp_path / "hung")
    pid_file = tmp_path / "pid"
    hook = f"sleep 40 & echo $! > {pid_file}; wait"  # the sleep keeps on if only sh is killed
    started = time.monotonic()
    result = renew(None, "--dir", work, "--force", "--on-failure-hook", hook, "--hook-timeout", "2")
    assert time.monotonic() - started < 30, shown(result)
    assert result.returncode == 1 and "Traceback" not in result.stderr, shown(result)
    assert "the on-failure hook was still running after 2 s (--hook-timeout); stopping it" in result.stderr
    assert summary(result)[str(work)].startswith("failed: 05_new_order.py")
    assert saved_options(work)["hook_timeout"] == 2
    assert gone(int(pid_file.read_text()))


# --- usage and the units -------------------------------------------------------------------------------------


def test_usage_errors(tmp_path):
    bare = subprocess.run(["bash", str(ROOT / "renew.sh")], capture_output=True, text=True, timeout=30,
                          env={k: v for k, v in os.environ.items() if k != "ACME_DIR"})
    assert bare.returncode == 2 and "--dir" in bare.stderr and "--all" in bare.stderr
    (tmp_path / "cert.pem").write_text("x")
    for args, words in ((["--all", tmp_path / "nonesuch"], "not a directory"),
                        (["--all", tmp_path, "--provider", "exec"], "saved with --dir DIR alone"),
                        (["--dir", tmp_path, "--fallback", tmp_path / "nonesuch"], "no account.json"),
                        (["--dir", tmp_path, "--status", "--profile", "x"], "--status shows what is saved")):
        result = renew(None, *args)
        assert result.returncode == 2 and words in result.stderr, shown(result)
        assert len(result.stderr.strip().splitlines()) == 1, shown(result)
    both = renew(None, "--dir", tmp_path, "--tls-alpn", "--http")
    assert both.returncode == 2 and "give one" in both.stderr, shown(both)
    for args, words in ((["--all", tmp_path, "--reset"], "saved with --dir DIR alone"),
                        (["--dir", tmp_path, "--hook-timeout", "soon"], "whole number of seconds"),
                        (["--dir", tmp_path, "--status", "--reset"], "--status shows what is saved")):
        result = renew(None, *args)
        assert result.returncode == 2 and words in result.stderr, shown(result)
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = renew(None, "--all", empty)
    assert nothing.returncode == 0 and "Nothing to renew" in nothing.stdout, shown(nothing)


UNITS = ROOT / "systemd"


def test_the_units_pass_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: run tools/install_test_servers.sh"
    units = [UNITS / "acme-renew.service", UNITS / "acme-renew.timer"]
    result = subprocess.run([analyze, "verify", *map(str, units)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    service = (UNITS / "acme-renew.service").read_text()
    assert re.search(r"^TimeoutStartSec=\d+h$", service, re.MULTILINE), "a run that hangs must be stopped"
    timer = (UNITS / "acme-renew.timer").read_text()
    assert "OnCalendar=*-*-* 00,12:00:00" in timer and "RandomizedDelaySec=" in timer and "Persistent=true" in timer
    # The checker fails a broken copy, so the pass above means something.
    for unit in units:
        (tmp_path / unit.name).write_text(unit.read_text().replace("OnCalendar", "OnCalender")
                                          .replace("/bin/bash", "/nonexistent/bash"))
    broken = subprocess.run([analyze, "verify", str(tmp_path / "acme-renew.timer")], capture_output=True,
                            text=True, timeout=60)
    assert broken.returncode != 0


def test_the_checkout_is_named_in_one_place():
    service = (UNITS / "acme-renew.service").read_text()
    settings = [line for line in service.splitlines() if line and not line.startswith("#")]
    assert sum("/opt/acme-step-by-step" in line for line in settings) == 1
    assert "WorkingDirectory=/opt/acme-step-by-step" in settings and "ExecStart=/bin/bash ./renew.sh --all " \
        "/var/lib/acme" in settings
    cron = [line for line in (UNITS / "acme-renew.cron").read_text().splitlines() if line and line[0] != "#"]
    assert len(cron) == 1 and cron[0].count("/opt/acme-step-by-step") == 1 and "./renew.sh --all" in cron[0]


def test_the_usage_comment_of_renew_sh_names_every_option_help_lists():
    helped = subprocess.run(["bash", str(ROOT / "renew.sh"), "--help"], capture_output=True, text=True, timeout=30,
                            env={**plain_env(), "PYTHON": sys.executable})
    table = [line.strip().split("  ")[0] for line in helped.stdout.splitlines() if re.match(r"  \[?--", line)]
    options = set(re.findall(r"--[a-z][a-z-]+", " ".join(table)))
    assert {"--http", "--tls-alpn", "--reset", "--hook-timeout"} <= options, table
    comment = "".join(line for line in (ROOT / "renew.sh").read_text().splitlines(True) if line.startswith("#"))
    assert not {o for o in options if o not in comment}
