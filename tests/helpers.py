"""What the tests share: the local CA as a test sees it, and running the steps as a user would.

Imported by test modules and by conftest.py (which holds only fixtures), so no test imports conftest.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import io
import json
import os
import select
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
LOCAL_CA = ROOT / "tools" / "local_ca.py"
LAUNCHER = Path(__file__).resolve().parent / "step_launcher.py"
STEPS = {
    1: "01_create_account_key.py",
    2: "02_create_cert_key.py",
    3: "03_create_csr.py",
    4: "04_new_account.py",
    5: "05_new_order.py",
    6: "06_dns_challenge.py",
    7: "07_finalize.py",
    8: "08_get_certificate.py",
    9: "09_export_pkcs12.py",
    10: "10_account_info.py",
    11: "11_renewal_info.py",
    12: "12_revoke_certificate.py",
    13: "13_change_account_key.py",
    14: "14_deactivate_account.py",
}


@dataclass
class LocalCA:
    """One running Pebble + challtestsrv pair, and how to run the steps against it."""

    state_dir: Path
    ports: dict[str, int]
    env: dict[str, str] = field(default_factory=dict)
    options: list[str] = field(default_factory=list)  # more tools/local_ca.py options, e.g. --pebble-dns
    eab: tuple[str, str] | None = None  # (key id, base64url HMAC key) when started with --eab

    def start(self) -> None:
        args = [f"--{name.replace('_', '-')}={port}" for name, port in self.ports.items()] + self.options
        subprocess.run([sys.executable, str(LOCAL_CA), "start", "--state-dir", str(self.state_dir), *args],
                       env={**os.environ, **self.env}, check=True)

    def stop(self) -> None:
        subprocess.run([sys.executable, str(LOCAL_CA), "stop", "--state-dir", str(self.state_dir)], check=False)

    @property
    def state(self) -> dict:
        return json.loads((self.state_dir / "state.json").read_text())

    def step_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ACME_")}
        return {**env, "ACME_LOCAL_CA_DIR": str(self.state_dir), "PYTHONUTF8": "1", **(extra or {})}

    def run(self, step: int, work: Path, *args: str, env: dict[str, str] | None = None,
            input: str | None = None) -> subprocess.CompletedProcess:
        """Run one numbered step as a user would; returns the finished process (never raises)."""
        command = [sys.executable, str(ROOT / STEPS[step]), "--dir", str(work), *args]
        return run_script(command, env=self.step_env(env), input=input, timeout=240, cwd=work.parent)

    def ok(self, step: int, work: Path, *args: str, **kw) -> subprocess.CompletedProcess:
        result = self.run(step, work, *args, **kw)
        assert result.returncode == 0, f"{STEPS[step]} {args} failed:\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stderr
        return result

    def challtestsrv(self, path: str, body: dict) -> None:
        requests.post(self.state["challtestsrv_url"] + path, json=body, timeout=5).raise_for_status()

    def txt(self, name: str) -> list[str]:
        """The TXT values challtestsrv's DNS serves for ``name`` right now (what Pebble would see)."""
        import dns.message
        import dns.query
        import dns.rdatatype

        host, port = self.state["dns_server"].rsplit(":", 1)
        reply = dns.query.udp(dns.message.make_query(name, dns.rdatatype.TXT), host, port=int(port), timeout=5)
        return [b"".join(r.strings).decode() for rrset in reply.answer for r in rrset]

    def management(self, path: str, json_body: dict | None = None) -> requests.Response:
        """GET (or POST ``json_body`` to) Pebble's management API, e.g. /roots/0, /set-renewal-info/."""
        url, verify = self.state["management_url"] + path, self.state["ca_bundle"]
        resp = (requests.post(url, json=json_body, verify=verify, timeout=5) if json_body is not None
                else requests.get(url, verify=verify, timeout=5))
        resp.raise_for_status()
        return resp

    def issue(self, work: Path, names: list[str], *, v: bool = False, key_type: str = "ec256",
              env: dict[str, str] | None = None) -> list[subprocess.CompletedProcess]:
        """Steps 01 to 08 for ``names``; returns each step's finished process."""
        verbose = ["-v"] if v else []
        domains = [a for n in names for a in ("-d", n)]
        runs = [
            self.ok(1, work, "--key-type", key_type, *verbose),
            self.ok(2, work, *verbose),
            self.ok(3, work, *domains, *verbose),
            self.ok(4, work, "--server", "pebble", "--agree-tos", "--email", "test@example.com", *verbose, env=env),
        ]
        runs += self.order(work, v=v, env=env)
        return runs

    def finish(self, work: Path, names: list[str]) -> None:
        """Steps 07 and 08 after a successful 06; the certificate must be for exactly ``names``."""
        from cryptography import x509

        self.ok(7, work)
        self.ok(8, work)
        leaf = x509.load_pem_x509_certificate((work / "cert.pem").read_bytes())
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sorted(san.get_values_for_type(x509.DNSName)) == sorted(names)

    def order(self, work: Path, *, v: bool = False, env: dict[str, str] | None = None
              ) -> list[subprocess.CompletedProcess]:
        """Steps 05 to 08 on an existing account and CSR."""
        verbose = ["-v"] if v else []
        return [
            self.ok(5, work, *verbose, env=env),
            self.ok(6, work, "--provider", "challtestsrv", "--challtestsrv-url", self.state["challtestsrv_url"],
                    *verbose, env=env),
            self.ok(7, work, *verbose, env=env),
            self.ok(8, work, *verbose, env=env),
        ]


def free_port(address: str = "127.0.0.1") -> int:
    """A port nothing listens on now, so parallel test runs and a running demo never collide."""
    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def free_ports(count: int, address: str = "127.0.0.1") -> list[int]:
    """``count`` different free ports: each socket stays open until all are picked, so none comes twice."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind((address, 0))
        return [sock.getsockname()[1] for sock in socks]


CA_PORTS = ("acme_port", "management_port", "dns_port", "challtestsrv_port", "http_port", "tls_port")


def start_ca(tmp_path_factory: pytest.TempPathFactory, name: str, env: dict[str, str],
             options: list[str] | None = None, attempts: int = 3) -> LocalCA:
    """A Pebble on free ports. Another test process may take a port between the pick and Pebble's
    bind (the workers run in parallel): then it starts again on other ports."""
    state_dir = tmp_path_factory.mktemp(f"ca-{name}")
    for attempt in range(attempts):
        ca = LocalCA(state_dir, dict(zip(CA_PORTS, free_ports(len(CA_PORTS)), strict=True)), env, options or [])
        try:
            ca.start()
            return ca
        except subprocess.CalledProcessError:
            ca.stop()
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def unique(label: str) -> str:
    """A name no earlier order used, so Pebble cannot reuse an authorization unless told to."""
    return f"{label}.t{uuid.uuid4().hex[:10]}.example.com"


def past_window() -> str:
    """A renewalInfo answer that makes a fresh certificate due: a window an hour in the past, as Pebble
    gives a revoked certificate (RFC 9773 §4.2). One far before issuance would be no answer (common/renewal.py)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return json.dumps({"suggestedWindow": {"start": f"{now - datetime.timedelta(hours=2):%Y-%m-%dT%H:%M:%SZ}",
                                           "end": f"{now - datetime.timedelta(hours=1):%Y-%m-%dT%H:%M:%SZ}"}})


def fails(result: subprocess.CompletedProcess, status: int, *words: str, one_line: bool = True) -> None:
    """The step ended with ``status``, no traceback, and an error naming every one of ``words``."""
    shown = f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == status, shown
    assert "Traceback" not in result.stderr, shown
    for word in words:
        assert word in result.stderr, f"{word!r} not in stderr\n{shown}"
    if one_line:
        assert len(result.stderr.strip().splitlines()) == 1, shown


def plain_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment LocalCA.step_env gives, minus the local CA: for steps that need none."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACME_")}
    return {**env, "PYTHONUTF8": "1", **(extra or {})}


def run_plain(step: int, *args: str, env: dict[str, str], cwd, stdin=None, new_session: bool = False
              ) -> subprocess.CompletedProcess:
    """Run a step exactly as given (no --dir added), for what LocalCA.run cannot express."""
    return run_script([sys.executable, str(ROOT / STEPS[step]), *args], env=env, cwd=cwd, stdin=stdin,
                      start_new_session=new_session, timeout=120)


def wait_for_line(proc: subprocess.Popen, text: str, timeout: float = 60) -> str:
    """Read a running step's stdout up to the end of the first line holding ``text``; returns what was read.

    Steps log line by line (logging flushes each record), so this follows them as they go.
    """
    return _read_stdout(proc, lambda seen: text in seen and seen.endswith("\n"), repr(text), timeout)


def wait_until_blocked_reading(pid: int, timeout: float = 30) -> None:
    """Wait until process ``pid`` sleeps in the kernel reading its terminal (Linux's /proc); elsewhere wait 1 s.

    A signal sent earlier, between a prompt's write and the read after it, is noticed by Python only
    once that read returns.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            wchan = Path(f"/proc/{pid}/wchan").read_text()
        except OSError:
            time.sleep(1.0)
            return
        if wchan in ("wait_woken", "n_tty_read"):
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} never blocked reading its terminal")


def read_until(proc: subprocess.Popen, text: str, timeout: float = 60) -> str:
    """Read a running step's stdout up to ``text``, mid-line too (a step that prints a dot per attempt)."""
    return _read_stdout(proc, lambda seen: seen.endswith(text), repr(text), timeout)


def _read_stdout(proc: subprocess.Popen, enough, what: str, timeout: float) -> str:
    """Read byte by byte from the pipe itself, so nothing is left in a buffer: proc.communicate() gets the rest."""
    data = b""
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    while time.monotonic() < deadline:
        if not select.select([fd], [], [], min(1.0, max(deadline - time.monotonic(), 0)))[0]:
            continue
        byte = os.read(fd, 1)
        if not byte:
            break
        data += byte
        if enough(data.decode(errors="replace")):
            return data.decode(errors="replace")
    proc.kill()
    raise AssertionError(f"{what} never appeared:\n{data.decode(errors='replace')}\n{proc.communicate()[1]}")


def hostile_account(hostile, work: Path, names: list[str] | tuple[str, ...] = ()) -> None:
    """Steps 01, 02, 03 (when ``names`` are given) and 04 on the scripted CA of tests/hostile_ca.py."""
    domains = [arg for name in names for arg in ("-d", name)]
    for step, args in ((1, []), (2, ["--key-type", "ec256"]), *([(3, domains)] if names else []),
                       (4, ["--server", hostile.directory_url, "--ca-bundle", hostile.ca_bundle, "--agree-tos"])):
        result = run_plain(step, "--dir", str(work), *args, env=plain_env(), cwd=work.parent)
        assert result.returncode == 0, result.stderr


# --- running a script as a process ----------------------------------------------------------------


def run_script(command: list[str], *, env: dict[str, str], cwd=None, input: str | None = None, stdin=None,
               timeout: float | None = None, start_new_session: bool = False) -> subprocess.CompletedProcess:
    """``subprocess.run(command, capture_output=True, text=True, ...)`` for ``[sys.executable, SCRIPT, ARGS...]``.

    The step launcher of tests/step_launcher.py starts the script, as a process of its own, some 0.2 s
    sooner than a new interpreter would; when it cannot stand in for one (another command, options for
    Python itself, an environment that changes how Python starts) this is plain subprocess.run.
    """
    launcher = _Launcher.get() if _Launcher.can_run(command, env) else None
    if launcher is None:
        return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, input=input, stdin=stdin,
                              timeout=timeout, start_new_session=start_new_session)
    return launcher.run(command, env=env, cwd=cwd, input=input, stdin=stdin, timeout=timeout,
                        start_new_session=start_new_session)


def _startup_env(env: dict[str, str]) -> dict[str, str]:
    """The variables Python reads as it starts (PYTHON*, the locale): a forked step must not need others."""
    return {k: v for k, v in env.items() if k.startswith(("PYTHON", "LC_")) or k == "LANG"}


class _Launcher:
    """This test process's tests/step_launcher.py, started on first use and gone with the process."""

    _running: _Launcher | None = None

    def __init__(self) -> None:
        self.env = plain_env()
        self.dir = tempfile.mkdtemp(prefix="step-launcher-")
        self.socket = os.path.join(self.dir, "socket")
        self.process = subprocess.Popen([sys.executable, str(LAUNCHER), self.socket], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, env=self.env, cwd=ROOT)
        ready = self.process.stdout.readline()
        if ready != b"ready\n":
            self.process.kill()
            raise RuntimeError(f"{LAUNCHER.name} did not start (exit {self.process.wait()})")
        atexit.register(self.stop)

    @classmethod
    def get(cls) -> _Launcher:
        if cls._running is None or cls._running.process.poll() is not None:
            cls._running = cls()
        return cls._running

    @staticmethod
    def can_run(command: list[str], env: dict[str, str]) -> bool:
        return (len(command) >= 2 and command[0] == sys.executable and command[1].endswith(".py")
                and not command[1].startswith("-") and _startup_env(env) == _startup_env(plain_env()))

    def stop(self) -> None:
        self.process.stdin.close()  # the launcher exits when its stdin closes
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def run(self, command: list[str], *, env: dict[str, str], cwd, input: str | None, stdin, timeout: float | None,
            start_new_session: bool) -> subprocess.CompletedProcess:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        in_w = None
        if input is not None:
            in_r, in_w = os.pipe()
            os.set_blocking(in_w, False)
        elif stdin is None:
            in_r = os.dup(0) if _is_open(0) else os.open(os.devnull, os.O_RDONLY)  # inherited, as subprocess does
        elif stdin == subprocess.DEVNULL:
            in_r = os.open(os.devnull, os.O_RDONLY)
        else:
            in_r = os.dup(stdin if isinstance(stdin, int) else stdin.fileno())
        request = {"argv": [str(a) for a in command], "env": env, "cwd": str(cwd or os.getcwd()),
                   "new_session": start_new_session}
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(self.socket)
            socket.send_fds(conn, [json.dumps(request).encode() + b"\n"], [in_r, out_w, err_w])
        finally:
            for fd in (in_r, out_w, err_w):
                os.close(fd)
        pending = (input or "").encode()
        outputs: dict[int, bytearray] = {out_r: bytearray(), err_r: bytearray()}
        answers = bytearray()
        pid = returncode = None
        deadline = None if timeout is None else time.monotonic() + timeout
        events = selectors.DefaultSelector()
        for fd in outputs:
            events.register(fd, selectors.EVENT_READ)
        events.register(conn, selectors.EVENT_READ)
        if in_w is not None:
            events.register(in_w, selectors.EVENT_WRITE)
        try:
            while events.get_map():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    if pid is not None:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                    raise subprocess.TimeoutExpired(command, timeout, _text(outputs[out_r]), _text(outputs[err_r]))
                for key, _ in events.select(left):
                    if key.fileobj is conn:
                        chunk = conn.recv(4096)
                        answers += chunk
                        while b"\n" in answers:
                            line, _, answers[:] = answers.partition(b"\n")
                            answer = json.loads(line)
                            pid = answer.get("pid", pid)
                            returncode = answer.get("returncode", returncode)
                        if not chunk:
                            events.unregister(conn)
                    elif key.fd == in_w:
                        try:
                            pending = pending[os.write(in_w, pending[:65536]):]
                        except BrokenPipeError:
                            pending = b""
                        if not pending:
                            events.unregister(in_w)
                            os.close(in_w)
                            in_w = None
                    else:
                        chunk = os.read(key.fd, 65536)
                        outputs[key.fd] += chunk
                        if not chunk:
                            events.unregister(key.fd)
        finally:
            events.close()
            conn.close()
            for fd in (out_r, err_r, in_w):
                if fd is not None:
                    os.close(fd)
        if returncode is None:
            raise RuntimeError(f"{LAUNCHER.name} lost track of {command}")
        return subprocess.CompletedProcess(command, returncode, _text(outputs[out_r]), _text(outputs[err_r]))


def _text(data: bytes) -> str:
    """Bytes decoded as subprocess.run(text=True) decodes them: the locale's encoding, universal newlines."""
    return io.TextIOWrapper(io.BytesIO(bytes(data))).read()


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def load_renew_tool():
    """tools/renew.py as a module, to replace what it runs where no real failure can be arranged."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("renew_tool", ROOT / "tools" / "renew.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def gone(pid: int) -> bool:
    """No process ``pid`` runs (a zombie waiting for its parent counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")
