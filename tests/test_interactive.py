"""What a person does by hand: demo.sh, the manual DNS provider, the .pfx password prompt."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from conftest import ROOT, STEPS, _free_port


def test_demo_runs_twice_from_scratch(tmp_path):
    """./demo.sh sets up the CA and runs 01-09; a second run works too and loses nothing of the first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACME_")}
    env.update({
        "ACME_LOCAL_CA_DIR": str(tmp_path / "ca"),
        "DEMO_WORK": str(tmp_path / "demo"),
        **{f"LOCAL_CA_{p}_PORT": str(_free_port()) for p in ("ACME", "MANAGEMENT", "DNS", "CHALLTESTSRV")},
    })
    try:
        outputs = [subprocess.run(["bash", str(ROOT / "demo.sh")], env=env, capture_output=True, text=True,
                                  timeout=300) for _ in range(2)]
    finally:
        subprocess.run([sys.executable, str(ROOT / "tools" / "local_ca.py"), "stop"], env=env, check=False)
    for result in outputs:
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Done. In" in result.stdout and ".pfx" in result.stdout
    runs = sorted((tmp_path / "demo").iterdir())
    assert len(runs) == 2
    for run in runs:
        for name in ("account.key", "cert.pem", "chain.pem", "fullchain.pem", "certificate.pfx"):
            assert (run / name).stat().st_size > 0, f"{run}/{name}"
        password = (run / "pfx-password.txt").read_text().strip()
        assert password and all(password not in r.stdout + r.stderr for r in outputs)


def test_manual_provider_prints_records_and_waits_for_enter(ca, work):
    ca.ok(1, work)
    ca.ok(2, work)
    base = f"manual{_free_port()}.example.org"
    ca.ok(3, work, "-d", base, "-d", f"*.{base}")
    ca.ok(4, work, "--server", "pebble", "--agree-tos")
    ca.ok(5, work)
    proc = subprocess.Popen([sys.executable, str(ROOT / STEPS[6]), "--dir", str(work), "--provider", "manual"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ca.step_env())
    shown = ""
    while "Press Enter" not in shown:  # the prompt has no newline, so read by character
        char = proc.stdout.read(1)
        assert char, f"06 ended before asking for Enter: {shown}{proc.stderr.read()}"
        shown += char
    records = re.findall(r"(\S+)\.\s+TXT\s+\"([\w-]+)\"", shown)
    assert len(records) == 2 and {name for name, _ in records} == {f"_acme-challenge.{base}"}
    for name, value in records:  # a person would do this in their DNS provider's console
        ca.challtestsrv("/set-txt", {"host": name + ".", "value": value})
    out, err = proc.communicate("\n", timeout=120)
    assert proc.returncode == 0, shown + out + err
    assert "You can now delete these TXT records" in out and "Order is ready" in out


def test_manual_provider_without_a_terminal_exits_2(ca, work):
    ca.ok(1, work)
    ca.ok(2, work)
    ca.ok(3, work, "-d", f"noterm{_free_port()}.example.org")
    ca.ok(4, work, "--server", "pebble", "--agree-tos")
    ca.ok(5, work)
    result = ca.run(6, work, "--provider", "manual", input="")
    assert result.returncode == 2 and "terminal" in result.stderr and "Traceback" not in result.stderr


def _run_on_terminal(command: list[str], env: dict[str, str], answers: list[str]) -> tuple[int, str]:
    """Run ``command`` with a pseudo-terminal as its controlling tty, typing one answer per prompt."""
    import fcntl
    import pty
    import select
    import termios
    import time

    master, slave = pty.openpty()

    def take_terminal():  # getpass reads /dev/tty, so the pty must be the controlling terminal
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, env=env, preexec_fn=take_terminal)
    os.close(slave)
    seen, answered_up_to, pending = b"", 0, list(answers)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not select.select([master], [], [], 1)[0]:
            continue
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
        # Answer only a prompt that appeared since the last answer: typing early would be
        # thrown away when getpass switches echo off (TCSAFLUSH discards pending input).
        if pending and seen[answered_up_to:].rstrip().endswith(b":"):
            os.write(master, pending.pop(0).encode() + b"\n")
            answered_up_to = len(seen)
    os.close(master)
    if proc.poll() is None:
        proc.kill()
    return proc.wait(timeout=30), seen.decode(errors="replace")


def test_pfx_password_asked_twice_at_a_prompt(ca, work):
    ca.issue(work, [f"prompt{_free_port()}.example.org"])
    command = [sys.executable, str(ROOT / STEPS[9]), "--dir", str(work)]
    status, screen = _run_on_terminal(command, ca.step_env(), ["typed-secret", "typed-secret"])
    assert status == 0, screen
    assert "Password for the .pfx" in screen and "Same password again" in screen
    assert "typed-secret" not in screen  # no echo, never printed
    from cryptography.hazmat.primitives.serialization import pkcs12

    pkcs12.load_key_and_certificates((work / "certificate.pfx").read_bytes(), b"typed-secret")


def test_pfx_passwords_that_differ_exit_2(ca, work):
    ca.issue(work, [f"differ{_free_port()}.example.org"])
    command = [sys.executable, str(ROOT / STEPS[9]), "--dir", str(work)]
    status, screen = _run_on_terminal(command, ca.step_env(), ["one-password", "another-one"])
    assert status == 2 and "differ" in screen and "Traceback" not in screen
    assert not (work / "certificate.pfx").exists()
