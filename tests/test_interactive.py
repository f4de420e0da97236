"""What a person does by hand, on a terminal: demo.sh, the manual DNS provider, the .pfx password prompt."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import subprocess
import sys
import termios
import time

from helpers import ROOT, STEPS, free_port, wait_until_blocked_reading


def test_demo_runs_twice_from_scratch(tmp_path):
    """./demo.sh sets up the CA and runs 01-09; a second run works too and loses nothing of the first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACME_")}
    env.update({
        "ACME_LOCAL_CA_DIR": str(tmp_path / "ca"),
        "DEMO_WORK": str(tmp_path / "demo"),
        **{f"LOCAL_CA_{p}_PORT": str(free_port()) for p in ("ACME", "MANAGEMENT", "DNS", "CHALLTESTSRV")},
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


class Terminal:
    """A command running on a pseudo-terminal, its controlling tty: what it shows, and keys typed into it."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        master, slave = pty.openpty()

        def take_terminal():  # getpass reads /dev/tty, and Ctrl-C must reach the step: the pty is its terminal
            os.setsid()
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, env=env,
                                     preexec_fn=take_terminal)
        os.close(slave)
        self.master = master
        self.screen = b""

    @property
    def text(self) -> str:
        return self.screen.decode(errors="replace")

    def read(self, timeout: float = 1.0) -> bool:
        """Add what the command wrote within ``timeout`` to the screen; False once it closed the terminal."""
        if not select.select([self.master], [], [], timeout)[0]:
            return True
        try:
            chunk = os.read(self.master, 4096)
        except OSError:  # the child closed the terminal
            return False
        self.screen += chunk
        return bool(chunk)

    def expect(self, text: str, timeout: float = 60) -> str:
        """Read until ``text`` is on the screen; returns the screen."""
        deadline = time.monotonic() + timeout
        while text not in self.text:
            assert time.monotonic() < deadline and self.read(), f"{text!r} never appeared:\n{self.text}"
        return self.text

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def wait(self, timeout: float = 60) -> int:
        """Read to the end; returns the exit status (the command is killed after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.read():
            pass
        os.close(self.master)
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.wait(timeout=30)


def _manual_order(ca_bind, work, *names: str) -> None:
    ca_bind.ok(1, work)
    ca_bind.ok(2, work)
    ca_bind.ok(3, work, *[arg for name in names for arg in ("-d", name)])
    ca_bind.ok(4, work, "--server", "pebble", "--agree-tos")
    ca_bind.ok(5, work)


def _manual_06(ca_bind, bind, work, *extra: str, env: dict[str, str] | None = None) -> Terminal:
    """Step 06 with the manual provider on a terminal; BIND is the person's DNS (found with --dns-resolver)."""
    command = [sys.executable, str(ROOT / STEPS[6]), "--dir", str(work), "--provider", "manual",
               "--dns-resolver", bind.address, *extra]
    return Terminal(command, ca_bind.step_env(env))


def _shown_records(screen: str) -> list[tuple[str, str]]:
    return re.findall(r"(\S+)\.\s+TXT\s+\"([\w-]+)\"", screen.split("Press Enter")[0])


def _challenges_answered(log) -> list[str]:
    return [line for line in log.read_text().splitlines() if line.startswith("POST") and "/chal" in line]


def test_manual_provider_prints_records_and_waits_for_enter(ca_bind, bind, work):
    """A person at a terminal: the step shows the records, the person creates them (in BIND, their DNS
    host's console here) and presses Enter; the step checks BIND, then the CA validates against it."""
    base = f"manual{free_port()}.example.test"
    _manual_order(ca_bind, work, base, f"*.{base}")
    term = _manual_06(ca_bind, bind, work)
    records = _shown_records(term.expect("Press Enter"))
    assert len(records) == 2 and {name for name, _ in records} == {f"_acme-challenge.{base}"}
    for name, value in records:
        bind.add(name, "TXT", value)
    term.type("\n")
    status = term.wait()
    assert status == 0, term.text
    assert "every record is visible on every authoritative server" in term.text
    assert "You can now delete these TXT records" in term.text and "Order is ready" in term.text
    bind.delete(f"_acme-challenge.{base}", "TXT")


def test_manual_provider_without_a_terminal_exits_2_before_showing_records(ca, work, tmp_path):
    ca.ok(1, work)
    ca.ok(2, work)
    ca.ok(3, work, "-d", f"noterm{free_port()}.example.org")
    ca.ok(4, work, "--server", "pebble", "--agree-tos")
    ca.ok(5, work)
    log = tmp_path / "requests.log"
    result = ca.run(6, work, "--provider", "manual", input="\n", env={"ACME_REQUEST_LOG": str(log)})
    assert result.returncode == 2 and "terminal" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "TXT" not in result.stdout and "Publishing" not in result.stdout
    assert not log.exists()  # nor was the CA asked anything


def test_manual_provider_catches_a_typo_before_the_ca_looks(ca_bind, bind, work, tmp_path):
    """The person publishes a value with one character wrong: the propagation check never sees the
    right one, and the step stops without answering the challenge (which would fail it for good)."""
    base = f"typo{free_port()}.example.test"
    _manual_order(ca_bind, work, base)
    log = tmp_path / "requests.log"
    term = _manual_06(ca_bind, bind, work, "--propagation-timeout", "3", env={"ACME_REQUEST_LOG": str(log)})
    [(name, value)] = _shown_records(term.expect("Press Enter"))
    bind.add(name, "TXT", value[:-1] + ("A" if value[-1] != "A" else "B"))
    term.type("\n")
    status = term.wait()
    assert status == 1 and "Traceback" not in term.text, term.text
    assert "not yet visible" in term.text and name in term.text and "--propagation-timeout" in term.text
    assert _challenges_answered(log) == []
    assert "You can now delete these TXT records" in term.text
    bind.delete(name, "TXT")


def test_ctrl_c_at_the_manual_prompt_says_what_may_be_left(ca_bind, bind, work):
    _manual_order(ca_bind, work, f"ctrlc{free_port()}.example.test")
    term = _manual_06(ca_bind, bind, work)
    term.expect("Press Enter")
    # A person reads the prompt first. Typed at once, Ctrl-C may land between the prompt's write and
    # the read that follows it, where Python only notices the signal once that read returns.
    wait_until_blocked_reading(term.proc.pid)
    term.type("\x03")  # Ctrl-C: the terminal sends SIGINT to the step
    status = term.wait()
    assert status == 130 and "Traceback" not in term.text, term.text
    said = term.text.split("Press Enter", 1)[1]
    assert "delete these TXT records" in said and "Run 06_dns_challenge.py again" in said
    assert "records were removed" not in said  # nobody removed what the person may have created


def _run_on_terminal(command: list[str], env: dict[str, str], answers: list[str]) -> tuple[int, str]:
    """Run ``command`` on a terminal, typing one answer per prompt."""
    term = Terminal(command, env)
    answered_up_to, pending = 0, list(answers)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and term.read():
        # Answer only a prompt that appeared since the last answer: typing early would be
        # thrown away when getpass switches echo off (TCSAFLUSH discards pending input).
        if pending and term.screen[answered_up_to:].rstrip().endswith(b":"):
            term.type(pending.pop(0) + "\n")
            answered_up_to = len(term.screen)
    return term.wait(), term.text


def test_pfx_password_asked_twice_at_a_prompt(ca, work):
    ca.issue(work, [f"prompt{free_port()}.example.org"])
    command = [sys.executable, str(ROOT / STEPS[9]), "--dir", str(work)]
    status, screen = _run_on_terminal(command, ca.step_env(), ["typed-secret", "typed-secret"])
    assert status == 0, screen
    assert "Password for the .pfx" in screen and "Same password again" in screen
    assert "typed-secret" not in screen  # no echo, never printed
    from cryptography.hazmat.primitives.serialization import pkcs12

    pkcs12.load_key_and_certificates((work / "certificate.pfx").read_bytes(), b"typed-secret")


def test_pfx_passwords_that_differ_exit_2(ca, work):
    ca.issue(work, [f"differ{free_port()}.example.org"])
    command = [sys.executable, str(ROOT / STEPS[9]), "--dir", str(work)]
    status, screen = _run_on_terminal(command, ca.step_env(), ["one-password", "another-one"])
    assert status == 2 and "differ" in screen and "Traceback" not in screen
    assert not (work / "certificate.pfx").exists()
