"""One step at a time per work directory, and interruptions of renew.sh that leave a matching pair.

Against the scripted CA (tests/hostile_ca.py), with step 06's exec provider running a hook that
holds "present" until the test lets it go: so a second step, a second renewal or a signal can be
sent while a step is in the middle of its work. Afterwards cert.key must match cert.pem, previous/
must match itself, the TXT records must be removed and no step may be left running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from helpers import (
    ROOT,
    STEPS,
    fails,
    gone,
    hostile_account,
    load_renew_tool,
    plain_env,
    run_plain,
    unique,
    wait_for_line,
)
from hostile_ca import Reply

from common import keys

HOOK = """#!/bin/sh
echo "$1 $2 $3" >> "{log}"
if [ "$1" = present ]; then
  touch "{held}"
  while [ ! -e "{release}" ]; do sleep 0.05; done
fi
"""


class Hook:
    """An exec hook for step 06 that logs each call and holds "present" until released."""

    def __init__(self, where: Path) -> None:
        self.log, self.held, self.release_file = where / "hook.log", where / "held", where / "release"
        self.path = where / "hook.sh"
        self.path.write_text(HOOK.format(log=self.log, held=self.held, release=self.release_file))
        self.path.chmod(0o755)

    def options(self) -> list[str]:
        return ["--provider", "exec", "--exec-hook", str(self.path), "--no-propagation-check"]

    def wait_held(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.held.exists():
            assert time.monotonic() < deadline, "the hook was never called"
            time.sleep(0.05)

    def release(self) -> None:
        self.release_file.touch()

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def hook(tmp_path):
    hook = Hook(tmp_path)
    yield hook
    hook.release()  # never leave a hook (and the step waiting on it) running


def step(n: int, work: Path, *args: str) -> subprocess.CompletedProcess:
    return run_plain(n, "--dir", str(work), *args, env=plain_env(), cwd=work.parent)


def start_step(n: int, work: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / STEPS[n]), "--dir", str(work), *args], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=plain_env(), cwd=work.parent)


def ordered(hostile, work: Path) -> None:
    hostile.reset()
    hostile_account(hostile, work, [unique("one")])
    assert step(5, work).returncode == 0


def certified(hostile, work: Path) -> None:
    """cert.pem and cert.key from the scripted CA (06 with a hook that does nothing)."""
    ordered(hostile, work)
    for n, args in ((6, ["--provider", "exec", "--exec-hook", "/bin/true", "--no-propagation-check"]), (7, []),
                    (8, [])):
        result = step(n, work, *args)
        assert result.returncode == 0, result.stdout + result.stderr
    hostile.scripts.clear()


def matching(where: Path) -> bool:
    cert = x509.load_pem_x509_certificate((where / "cert.pem").read_bytes())
    return keys.same_public_key(cert, keys.key_from_pem((where / "cert.key").read_bytes(), "cert.key"))


def holder_pid(work: Path) -> int:
    """The pid the work directory's lock file names (the last step that held it)."""
    text = (work / ".lock").read_text()
    return int(text.rsplit("pid ", 1)[1].rstrip(")\n"))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# --- the lock on the work directory -------------------------------------------------------------------


def test_a_second_06_on_the_same_directory_says_what_holds_it_and_touches_nothing(hostile, hook, tmp_path):
    work = tmp_path / "acme-work"
    ordered(hostile, work)
    first = start_step(6, work, *hook.options())
    try:
        hook.wait_held()
        second = step(6, work, *hook.options())
        fails(second, 2, f"is being changed by 06_dns_challenge.py (pid {first.pid})", "one step at a time")
        assert [c.split()[0] for c in hook.calls()] == ["present"], "the second run removed the first one's record"
        fails(step(5, work), 2, "06_dns_challenge.py")  # any step that writes waits its turn
    finally:
        hook.release()
        out, err = first.communicate(timeout=60)
    assert first.returncode == 0, out + err
    assert [c.split()[0] for c in hook.calls()] == ["present", "cleanup"]


def test_leftovers_are_those_of_a_run_no_longer_alive(hostile, hook, tmp_path):
    work = tmp_path / "acme-work"
    ordered(hostile, work)
    first = start_step(6, work, *hook.options())
    hook.wait_held()
    first.kill()  # SIGKILL: no cleanup, the record stays listed in dns-records.json; the lock goes with it
    first.communicate(timeout=30)
    assert (work / "dns-records.json").exists()
    hook.release()
    again = step(6, work, *hook.options())
    assert again.returncode == 0, again.stdout + again.stderr
    assert "an earlier run left" in again.stdout
    assert [c.split()[0] for c in hook.calls()] == ["present", "cleanup", "present", "cleanup"]


# --- renew.sh --new-key, interrupted or run twice -------------------------------------------------------------


def start_renew(work: Path, *args: str) -> subprocess.Popen:
    """renew.sh in a session of its own, as a terminal or a service would start it."""
    return subprocess.Popen(["bash", str(ROOT / "renew.sh"), "--dir", str(work), *args], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            env=plain_env({"PYTHON": sys.executable}))


def processing_forever(hostile) -> None:
    """After finalize the order stays "processing", so step 07 polls until it is stopped."""
    hostile.answer("POST", "/order/1", lambda req: Reply(
        200, hostile.order_body("processing" if hostile.finalized else None), {"Retry-After": "1"}))


def check_pairs(work: Path, old_cert: bytes, old_key: bytes) -> None:
    assert (work / "cert.pem").read_bytes() == old_cert and (work / "cert.key").read_bytes() == old_key
    assert matching(work) and matching(work / "previous")


@pytest.mark.parametrize("during", ["06", "07"])
@pytest.mark.parametrize(("signum", "to_group"), [(signal.SIGTERM, False), (signal.SIGINT, True),
                                                  (signal.SIGHUP, False)], ids=["TERM", "INT-from-terminal", "HUP"])
def test_a_signal_during_a_new_key_renewal_leaves_the_matching_pair(hostile, hook, tmp_path, during, signum,
                                                                     to_group):
    work = tmp_path / "acme-work"
    certified(hostile, work)
    old_cert, old_key = (work / "cert.pem").read_bytes(), (work / "cert.key").read_bytes()
    if during == "07":
        processing_forever(hostile)
        hook.release()
    proc = start_renew(work, "--force", "--new-key", *hook.options())
    try:
        if during == "06":
            hook.wait_held()
        else:
            wait_for_line(proc, "-> 07_finalize.py")
            time.sleep(1.5)  # 07 is polling the order
        assert not matching(work)  # the new key beside the old certificate: what must not stay
        step_pid = holder_pid(work)
        assert alive(step_pid)
        if to_group:
            os.killpg(proc.pid, signum)  # Ctrl-C: the terminal signals renew.sh's process group
        else:
            proc.send_signal(signum)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signum, out + err
    assert "Traceback" not in err and "previous certificate files are back" in err
    check_pairs(work, old_cert, old_key)
    assert not alive(step_pid), "the step renew.sh ran is still running"
    if during == "06":
        assert [c.split()[0] for c in hook.calls()] == ["present", "cleanup"]  # the TXT record was removed
        assert not (work / "dns-records.json").exists()


def test_two_new_key_renewals_at_once_leave_previous_matching_itself(hostile, hook, tmp_path):
    work = tmp_path / "acme-work"
    certified(hostile, work)
    old_cert, old_key = (work / "cert.pem").read_bytes(), (work / "cert.key").read_bytes()
    first = start_renew(work, "--force", "--new-key", *hook.options())
    try:
        hook.wait_held()
        second = subprocess.run(["bash", str(ROOT / "renew.sh"), "--dir", str(work), "--force", "--new-key",
                                 *hook.options()], capture_output=True, text=True, timeout=120,
                                env=plain_env({"PYTHON": sys.executable}))
        assert second.returncode == 0, second.stdout + second.stderr
        assert "locked: another run is renewing it; skipped" in second.stdout
        assert (work / "previous" / "cert.key").read_bytes() == old_key
        assert (work / "previous" / "cert.pem").read_bytes() == old_cert
    finally:
        hook.release()
        out, err = first.communicate(timeout=120)
    assert first.returncode == 0, out + err
    assert matching(work) and (work / "cert.key").read_bytes() != old_key
    assert matching(work / "previous") and (work / "previous" / "cert.key").read_bytes() == old_key


def test_a_renewal_killed_outright_is_put_right_by_the_next_run(hostile, hook, tmp_path):
    work = tmp_path / "acme-work"
    certified(hostile, work)
    old_cert, old_key = (work / "cert.pem").read_bytes(), (work / "cert.key").read_bytes()
    proc = start_renew(work, "--force", "--new-key", *hook.options())
    hook.wait_held()
    step_pid = holder_pid(work)
    proc.kill()  # SIGKILL: renew.sh can put nothing back
    os.kill(step_pid, signal.SIGKILL)  # and the step it ran, as a power cut would
    hook.release()
    proc.communicate(timeout=30)
    assert not matching(work)
    status = subprocess.run(["bash", str(ROOT / "renew.sh"), "--dir", str(work)], capture_output=True, text=True,
                            timeout=120, env=plain_env({"PYTHON": sys.executable}))
    assert "does not match cert.pem (a renewal was cut short); putting the previous files back" in status.stderr, \
        status.stdout + status.stderr
    check_pairs(work, old_cert, old_key)


# --- what a step leaves running does not hold renew.sh --------------------------------------------------------

LEAVES_A_CHILD = """import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a step that does not stop when asked (with --hold)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(40)"])  # inherits the stderr pipe
open(sys.argv[-1], "w").write(str(child.pid))
print("step: done", file=sys.stderr, flush=True)
if "--hold" in sys.argv:
    time.sleep(40)
"""





def test_a_step_that_ended_is_done_though_a_process_it_left_holds_its_stderr(tmp_path):
    tool = load_renew_tool()
    script, pid_file = tmp_path / "leaves_a_child.py", tmp_path / "child.pid"
    script.write_text(LEAVES_A_CHILD)
    started = time.monotonic()
    try:
        stderr = tool.step(tmp_path, str(script), str(pid_file), quiet_error=True)
        assert time.monotonic() - started < 15, "renew.sh waited for the step's child, not for the step"
        assert stderr == "step: done\n"
    finally:
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_a_step_killed_after_the_grace_goes_with_what_it_started(tmp_path, monkeypatch):
    tool = load_renew_tool()
    monkeypatch.setattr(tool, "STEP_GRACE", 1.0)
    script, pid_file = tmp_path / "leaves_a_child.py", tmp_path / "child.pid"
    script.write_text(LEAVES_A_CHILD)
    proc = subprocess.Popen([sys.executable, str(script), "--hold", str(pid_file)], stderr=subprocess.PIPE,
                            process_group=0)
    try:
        deadline = time.monotonic() + 30
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, "the step never started its child"
            time.sleep(0.05)
        child = int(pid_file.read_text())
        seen: list[str] = []
        started = time.monotonic()
        tool.stop_step(proc, signal.SIGTERM, seen, True)
        assert time.monotonic() - started < 15
        assert proc.returncode == -signal.SIGKILL
        deadline = time.monotonic() + 5
        while not gone(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gone(child), "the step's child outlived it"
    finally:
        for pid in (proc.pid, int(pid_file.read_text()) if pid_file.exists() and pid_file.read_text() else None):
            if pid and not gone(pid):
                os.kill(pid, signal.SIGKILL)
        proc.wait()
