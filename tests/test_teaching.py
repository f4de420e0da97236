"""What a newcomer meets first: messages that say what to do, and every step pointing to the next one.

Each test is one item of the teaching pass: a Python without the packages, a name with an
underscore, a key step run twice, a CA that is not running or not reachable, no --server on the
first run, and the "Next:" line at the end of every step of the flow.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import ROOT, STEPS, fails, plain_env, run_plain, unique


@pytest.mark.parametrize("step", [1, 5, 6, 9])
def test_a_python_without_the_packages_says_what_to_do(step, tmp_path):
    """-S leaves out site-packages, as a Python outside the virtualenv would be: one line, exit 2, even for --help."""
    result = subprocess.run([sys.executable, "-S", str(ROOT / STEPS[step]), "--help"], capture_output=True,
                            text=True, env=plain_env(), cwd=tmp_path, timeout=60)
    fails(result, 2, "lacks the packages", ".venv/bin/python", "./setup.sh")


@pytest.mark.parametrize("script", sorted(p.name for p in ROOT.glob("[0-9][0-9]_*.py")))
def test_every_step_starts_in_a_fresh_interpreter(script):
    """--help in a new Python, not through tests/step_launcher.py (which has every module imported already)."""
    result = subprocess.run([sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True,
                            env=plain_env(), timeout=60)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert "Reads:" in result.stdout or "Writes:" in result.stdout, result.stdout


@pytest.mark.parametrize(("name", "words"), [
    ("exa_mple.com", ["underscore", "letters, digits and hyphens"]),
    ("ex ample.com", ["' ' (U+0020)", "cannot be part of a domain name"]),
    ("a..example.com", ["empty label"]),
])
def test_invalid_names_are_explained_without_library_jargon(tmp_path, name, words):
    work = tmp_path / "acme-work"
    assert run_plain(2, "--dir", str(work), env=plain_env(), cwd=tmp_path).returncode == 0
    result = run_plain(3, "--dir", str(work), "-d", name, env=plain_env(), cwd=tmp_path)
    fails(result, 2, *words)
    assert "Codepoint" not in result.stderr and "IDNA" not in result.stderr


def test_a_key_step_run_again_refuses_before_announcing_anything(tmp_path):
    work = tmp_path / "acme-work"
    first = run_plain(1, "--dir", str(work), env=plain_env(), cwd=tmp_path)
    assert "Creating ec256 key account.key..." in first.stdout
    key = (work / "account.key").read_bytes()
    again = run_plain(1, "--dir", str(work), env=plain_env(), cwd=tmp_path)
    fails(again, 2, "already exists", "--force")
    assert again.stdout == ""
    assert (work / "account.key").read_bytes() == key


def test_a_stopped_local_ca_says_how_to_start_it(ca, work, tmp_path):
    ca.ok(1, work)
    stopped = tmp_path / "stopped-ca"
    stopped.mkdir()
    state = {**ca.state, "directory_url": "https://localhost:9/dir"}  # nothing listens on port 9
    (stopped / "state.json").write_text(json.dumps(state))
    result = ca.run(4, work, "--server", "pebble", "--agree-tos", env={"ACME_LOCAL_CA_DIR": str(stopped)})
    fails(result, 1, "cannot reach https://localhost:9/dir", "is the local test CA running?",
          "tools/local_ca.py start")


def test_an_unreachable_server_says_to_check_the_network(ca, work):
    ca.ok(1, work)
    result = ca.run(4, work, "--server", "https://acme.invalid/directory", "--agree-tos")
    fails(result, 1, "cannot reach https://acme.invalid/directory", "check the network connection", "HTTPS_PROXY")


def test_no_server_on_the_first_run_says_which_one_is_used(tmp_path):
    """No --server, no account.json, no $ACME_SERVER: 04 says it goes to staging before it tries.

    Without --agree-tos it stops after the directory GET (or at once, offline): nothing is registered.
    """
    work = tmp_path / "acme-work"
    env = plain_env({"ACME_LOCAL_CA_DIR": str(tmp_path / "no-ca")})
    assert run_plain(1, "--dir", str(work), env=env, cwd=tmp_path).returncode == 0
    result = run_plain(4, "--dir", str(work), "--timeout", "20", env=env, cwd=tmp_path)
    assert result.returncode in (1, 2), result.stderr
    assert "No --server given and none recorded in account.json: using staging" in result.stdout
    assert not (work / "account.json").exists()


def test_every_step_of_the_flow_ends_with_the_next_command(ca, work, tmp_path):
    runs = ca.issue(work, [unique("next")])
    password = tmp_path / "pw.txt"
    password.write_text("next-step-password\n")
    runs.append(ca.ok(9, work, "--password-file", str(password)))
    runs.append(ca.ok(11, work))
    for step, result in zip((1, 2, 3, 4, 5, 6, 7, 8, 9, 11), runs, strict=True):
        assert "Next:" in result.stdout, f"{STEPS[step]} names no next step:\n{result.stdout}"


def test_demo_prints_a_stop_command_that_works_as_printed():
    """The last line of demo.sh names a command; run from the clone, exactly as printed, it must work."""
    demo = (ROOT / "demo.sh").read_text()
    printed = demo.strip().splitlines()[-1]
    command = printed.split("stop it with: ")[1].rstrip('"')
    assert command == ".venv/bin/python tools/local_ca.py stop"
    result = subprocess.run([*command.split()[:-1], "status"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode in (0, 3) and "Traceback" not in result.stderr, result.stderr
