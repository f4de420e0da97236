"""Start the numbered steps for the tests as processes, without paying for a new interpreter each time.

A step run as ``python NN_step.py`` spends about 0.2 s starting Python and importing common/, requests
and cryptography before its first line runs; the suite runs steps well over a thousand times. This
program is started once per test process (helpers.run_script starts it on first use) with those
modules imported, and forks for each run. The child takes the test's stdin, stdout and stderr, its
argv, environment and working directory, and runs the script as ``__main__``: the step is still a
process of its own, with its own exit status, file descriptors, signals and cleanup at exit. What it
does not redo is what a new interpreter does before running the script; helpers.run_script therefore
starts a new interpreter instead whenever the run's environment would change that start-up
(PYTHON* variables, the locale) or the command is not ``python SCRIPT ARGS...``.

Protocol: one Unix-socket connection per run. The test sends one JSON line (``argv``, ``env``, ``cwd``,
``new_session``) with three file descriptors attached (stdin, stdout, stderr); the launcher answers
one JSON line with the step's ``pid`` once it runs, and one with its ``returncode`` (as
subprocess reports it: -N if signal N ended it) when it ends. The launcher exits when its stdin
closes, i.e. when the test process that started it is gone.

Usage: python step_launcher.py SOCKET_PATH
"""

from __future__ import annotations

import atexit
import importlib
import io
import json
import os
import pkgutil
import runpy
import selectors
import socket
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# What the steps import lazily (inside functions) besides common/: imported here once, too.
LAZY = ("dns.message", "dns.name", "dns.query", "dns.rcode", "dns.rdatatype", "dns.resolver", "dns.tsig",
        "dns.tsigkeyring", "dns.update", "OpenSSL.SSL", "cryptography.x509.verification", "certifi")


def preload() -> None:
    sys.path.insert(0, str(ROOT))
    import common

    for module in pkgutil.iter_modules(common.__path__):
        importlib.import_module(f"common.{module.name}")
    for name in LAZY:
        importlib.import_module(name)


def main() -> None:
    path = sys.argv[1]
    preload()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    print("ready", flush=True)
    events = selectors.DefaultSelector()
    events.register(listener, selectors.EVENT_READ)
    events.register(sys.stdin, selectors.EVENT_READ)
    while True:
        for key, _ in events.select(timeout=1.0):
            if key.fileobj is sys.stdin:
                if not os.read(sys.stdin.fileno(), 4096):
                    return  # the test process is gone
                continue
            conn, _ = listener.accept()
            if os.fork() == 0:
                listener.close()
                serve(conn)  # never returns
            conn.close()
        reap()


def reap() -> None:
    """Collect the waiters (below) that have finished."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


def serve(conn: socket.socket) -> None:
    """In a child of the launcher: run one step in a child of its own, wait for it, report. Exits."""
    try:
        data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
        while not data.endswith(b"\n"):
            more = conn.recv(1 << 16)
            if not more:
                os._exit(1)
            data += more
        request = json.loads(data)
        pid = os.fork()
        if pid == 0:
            conn.close()
            become(request, fds)  # never returns
        for fd in fds:
            os.close(fd)
        conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        _, status = os.waitpid(pid, 0)
        conn.sendall(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}).encode() + b"\n")
    finally:
        os._exit(0)


def become(request: dict, fds: list[int]) -> None:
    """In the step's process: take the test's streams, argv, environment and directory, run, exit."""
    code = 1
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        standard_streams()
        if request["new_session"]:
            os.setsid()
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        time.tzset()
        tempfile.tempdir = None  # $TMPDIR is read again
        script = request["argv"][1]
        sys.argv = request["argv"][1:]
        sys.path[0] = os.path.dirname(os.path.abspath(script))
        code = run(script)
    finally:
        os._exit(code)


def standard_streams() -> None:
    """sys.stdin, stdout and stderr made anew on descriptors 0, 1 and 2, as Python makes them at start-up.

    The launcher's own were made for what it was given (stderr may be pytest's capture file, seekable),
    and a step reconfigures them.
    """
    for fd, name, mode in ((0, "stdin", "rb"), (1, "stdout", "wb"), (2, "stderr", "wb")):
        old = getattr(sys, f"__{name}__")
        binary = io.open(fd, mode, closefd=False)  # noqa: UP020  (buffered, like Python's own)
        interactive = os.isatty(fd)
        stream = io.TextIOWrapper(binary, encoding=old.encoding, errors=old.errors, newline="\n",
                                  line_buffering=interactive or name == "stderr")
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def run(script: str) -> int:
    """Run ``script`` as ``__main__``; the exit status Python itself would give, after the atexit handlers."""
    try:
        runpy.run_path(script, run_name="__main__")
        code = 0
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code & 0xFF
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    return code


if __name__ == "__main__":
    main()
