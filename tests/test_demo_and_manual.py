"""The two ways a person drives the steps without the test helpers: demo.sh, and the manual DNS provider."""

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
