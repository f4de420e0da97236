#!/usr/bin/env python3
"""Benchmark the nine-process ACME flow (01 .. 09) against a private local Pebble.

What it measures, for certificates of n = 1, 10 and 100 names (--sizes):

  * requests per certificate, counted twice:
      - by the client: every step runs with ACME_REQUEST_LOG set, so common/http.py appends
        one "METHOD URL STATUS" line per HTTP request; steps 04-08 are counted (01-03 and 09
        work offline; a note is printed if they ever log a request);
      - by the CA: the "<METHOD> <path> -> calling handler()" lines Pebble appends to its log
        while the flow runs (the directory GET and the newNonce HEAD show up there too);
    both compared with the design target 8 + 2n (directory, nonce, account, order, n
    authorizations, n challenges, one order poll, finalize, one poll, certificate);
  * wall time of the whole flow: the nine `python NN_step.py ...` processes run back to back,
    start-up included (median, min and max over --runs runs; each step is also timed);
  * start-up time of each script: median over --startup-runs runs of `python NN_step.py --help`,
    next to a bare `python -c pass` for scale.

How: it starts its own Pebble and pebble-challtestsrv with tools/local_ca.py in a temporary
state dir, on free ports away from the defaults, with PEBBLE_VA_NOSLEEP=1 (no random
validation delay), PEBBLE_WFE_NONCEREJECT=0 (no forced badNonce retries),
PEBBLE_AUTHZREUSE=0 and --retry-after 1, and stops it at the end. Each run uses a fresh work
dir, a new account and new names (n{i}.bench-{run}.example.com), so every name is really
validated. The figures are printed, never asserted. A failing step stops the benchmark with
its exact command and output.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCAL_CA = ROOT / "tools" / "local_ca.py"
SCRIPTS = (
    "01_create_account_key.py", "02_create_cert_key.py", "03_create_csr.py", "04_new_account.py",
    "05_new_order.py", "06_dns_challenge.py", "07_finalize.py", "08_get_certificate.py", "09_export_pkcs12.py",
)
OFFLINE_STEPS = ("01", "02", "03", "09")  # steps that make no request; left out of the client count
PREFERRED_PORTS = {"acme": 14900, "management": 15900, "dns": 8953, "challtestsrv": 8955}
PEBBLE_ENV = {"PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_AUTHZREUSE": "0"}
PFX_PASSWORD_ENV = "BENCH_PFX_PASSWORD"
PEBBLE_REQUEST = re.compile(r"\b(GET|HEAD|POST|PUT|DELETE) (\S+) -> calling handler\(\)")
CERTBOT_REFERENCE = ("certbot 5.8 on the same Pebble (no validation sleep, Retry-After 1 s, no nonce rejection): "
                     "2.3 s / 10 requests for 1 name, 4.4 s / 307 requests for 100 names, single process.")


class FlowError(Exception):
    """A step exited non-zero: carries the exact command and what it printed."""

    def __init__(self, command: list[str], returncode: int, output: str) -> None:
        super().__init__(f"exit status {returncode}")
        self.command, self.returncode, self.output = command, returncode, output


@dataclass(frozen=True)
class Ca:
    """The private Pebble this benchmark talks to."""

    state_dir: Path
    directory_url: str
    ca_bundle: str
    challtestsrv_url: str
    pebble_log: Path


@dataclass
class StepResult:
    seconds: float
    client: list[str]  # "METHOD URL STATUS" lines from ACME_REQUEST_LOG
    pebble: list[str]  # "METHOD /path" lines from Pebble's log


@dataclass
class FlowResult:
    names: int
    steps: dict[str, StepResult] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return sum(step.seconds for step in self.steps.values())

    @property
    def client_requests(self) -> int:
        return sum(len(s.client) for n, s in self.steps.items() if n not in OFFLINE_STEPS)

    @property
    def offline_requests(self) -> int:
        return sum(len(s.client) for n, s in self.steps.items() if n in OFFLINE_STEPS)

    @property
    def pebble_requests(self) -> int:
        return sum(len(step.pebble) for step in self.steps.values())


# -- the local CA --------------------------------------------------------------------------------


def port_free(port: int, udp: bool) -> bool:
    kinds = (socket.SOCK_STREAM, socket.SOCK_DGRAM) if udp else (socket.SOCK_STREAM,)
    for kind in kinds:
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def pick_port(preferred: int, taken: set[int], udp: bool = False) -> int:
    """``preferred`` if nothing listens there, else a free port the kernel hands out."""
    port = preferred
    while port in taken or not port_free(port, udp):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
    taken.add(port)
    return port


def pick_ports() -> dict[str, int]:
    taken: set[int] = set()
    return {name: pick_port(port, taken, udp=name == "dns") for name, port in PREFERRED_PORTS.items()}


def local_ca(action: str, state_dir: Path, ports: dict[str, int]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(LOCAL_CA), action, "--state-dir", str(state_dir),
               "--acme-port", str(ports["acme"]), "--management-port", str(ports["management"]),
               "--dns-port", str(ports["dns"]), "--challtestsrv-port", str(ports["challtestsrv"]),
               "--retry-after", "1"]
    return subprocess.run(command, cwd=ROOT, env={**os.environ, **PEBBLE_ENV}, capture_output=True, text=True)


def start_ca(state_dir: Path, ports: dict[str, int]) -> Ca:
    result = local_ca("start", state_dir, ports)
    if result.returncode != 0:
        raise SystemExit(f"tools/local_ca.py start failed:\n{result.stdout}{result.stderr}")
    state = json.loads((state_dir / "state.json").read_text())
    return Ca(state_dir, state["directory_url"], state["ca_bundle"], state["challtestsrv_url"],
              Path(state["pebble_log"]))


# -- one flow ----------------------------------------------------------------------------------


def step_commands(ca: Ca, work: Path, domains: list[str]) -> list[tuple[str, list[str]]]:
    """(script, its arguments) for the nine steps, in order."""
    common = ["--dir", str(work)]
    extra = {
        "03": [arg for name in domains for arg in ("-d", name)],
        "04": ["--server", ca.directory_url, "--ca-bundle", ca.ca_bundle, "--agree-tos"],
        "06": ["--provider", "challtestsrv", "--challtestsrv-url", ca.challtestsrv_url],
        "09": ["--password-env", PFX_PASSWORD_ENV],
    }
    return [(script, common + extra.get(script[:2], [])) for script in SCRIPTS]


def clean_env() -> dict[str, str]:
    """The environment without ACME_* settings that could point the steps elsewhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACME_")}
    env[PFX_PASSWORD_ENV] = uuid.uuid4().hex
    return env


def read_from(path: Path, offset: int) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        f.seek(offset)
        return f.read()


def pebble_requests(text: str) -> list[str]:
    return [f"{m.group(1)} {m.group(2)}" for m in PEBBLE_REQUEST.finditer(text)]


def run_step(script: str, args: list[str], env: dict[str, str], ca: Ca, request_log: Path) -> StepResult:
    command = [sys.executable, str(ROOT / script), *args]
    offset = ca.pebble_log.stat().st_size
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, env={**env, "ACME_REQUEST_LOG": str(request_log)},
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise FlowError(command, proc.returncode, proc.stdout + proc.stderr)
    client = request_log.read_text().splitlines() if request_log.exists() else []
    return StepResult(seconds, client, pebble_requests(read_from(ca.pebble_log, offset)))


def run_flow(ca: Ca, scratch: Path, names: int, run: int) -> FlowResult:
    label = f"bench-{names}-{run}-{uuid.uuid4().hex[:8]}"
    work = scratch / label
    work.mkdir(parents=True)
    domains = [f"n{i}.{label}.example.com" for i in range(names)]
    env, result = clean_env(), FlowResult(names)
    for script, args in step_commands(ca, work, domains):
        result.steps[script[:2]] = run_step(script, args, env, ca, scratch / f"{label}-{script[:2]}.requests")
    return result


# -- start-up time -------------------------------------------------------------------------------


def time_command(command: list[str], runs: int) -> float:
    """Median wall seconds of ``command`` over ``runs`` runs, after one warm-up run."""
    samples = []
    for _ in range(runs + 1):
        started = time.perf_counter()
        subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples[1:])


def startup_times(runs: int) -> dict[str, float]:
    times = {"python -c pass": time_command([sys.executable, "-c", "pass"], runs)}
    for script in SCRIPTS:
        times[f"{script} --help"] = time_command([sys.executable, str(ROOT / script), "--help"], runs)
    return times


# -- printing ------------------------------------------------------------------------------------


def spread(values: Iterable[float], fmt: str = "{:.0f}") -> str:
    """Median, with the range when the runs differ."""
    values = sorted(values)
    median = fmt.format(statistics.median(values))
    if values[0] == values[-1]:
        return median
    return f"{median} ({fmt.format(values[0])}-{fmt.format(values[-1])})"


def print_summary(results: dict[int, list[FlowResult]]) -> None:
    print("Requests per certificate and wall time of the nine-process flow (median; range when runs differ)")
    header = f"{'names':>5}  {'runs':>4}  {'client req':>12}  {'Pebble req':>12}  {'target 8+2n':>11}  " \
             f"{'flow wall s':>18}  {'ms/name':>8}"
    print(header)
    print("-" * len(header))
    for n, flows in results.items():
        wall = statistics.median(f.seconds for f in flows)
        print(f"{n:>5}  {len(flows):>4}  {spread(f.client_requests for f in flows):>12}  "
              f"{spread(f.pebble_requests for f in flows):>12}  {8 + 2 * n:>11}  "
              f"{spread((f.seconds for f in flows), '{:.2f}'):>18}  {1000 * wall / n:>8.0f}")
    print("client req: ACME_REQUEST_LOG lines of steps 04-08; Pebble req: request lines in Pebble's log "
          "during the flow")


def print_steps(results: dict[int, list[FlowResult]]) -> None:
    print("Per step: median wall seconds / client requests")
    sizes = list(results)
    print(f"{'step':<26}" + "".join(f"{f'n={n}':>16}" for n in sizes))
    for script in SCRIPTS:
        cells = []
        for n in sizes:
            steps = [flow.steps[script[:2]] for flow in results[n]]
            seconds = statistics.median(s.seconds for s in steps)
            cells.append(f"{seconds:.2f} s / {statistics.median(len(s.client) for s in steps):>3.0f}")
        print(f"{script:<26}" + "".join(f"{cell:>16}" for cell in cells))


def print_endpoints(results: dict[int, list[FlowResult]]) -> None:
    print("Pebble's log by endpoint (first run of each size):")
    for n, flows in results.items():
        counts = Counter(line for step in flows[0].steps.values() for line in step.pebble)
        print(f"  n={n}: " + ", ".join(f"{line} x{count}" for line, count in counts.items()))
    offline = sum(flow.offline_requests for flows in results.values() for flow in flows)
    if offline:
        print(f"  note: steps {', '.join(OFFLINE_STEPS)} logged {offline} client request(s), expected none")


def print_startup(times: dict[str, float], runs: int) -> None:
    print(f"Start-up time (median of {runs} runs after a warm-up)")
    for command, seconds in times.items():
        print(f"  {command:<36} {1000 * seconds:>6.0f} ms")


# -- main ----------------------------------------------------------------------------------------


def run_sizes(ca: Ca, scratch: Path, sizes: list[int], runs: int) -> dict[int, list[FlowResult]]:
    results: dict[int, list[FlowResult]] = {}
    for n in sizes:
        results[n] = []
        for run in range(runs):
            flow = run_flow(ca, scratch, n, run)
            print(f"  n={n} run {run + 1}/{runs}: {flow.seconds:.2f} s, {flow.client_requests} client / "
                  f"{flow.pebble_requests} Pebble requests", flush=True)
            results[n].append(flow)
    return results


def report(results: dict[int, list[FlowResult]], startup: dict[str, float], startup_runs: int) -> None:
    for part in (lambda: print_summary(results), lambda: print_steps(results), lambda: print_endpoints(results),
                 lambda: print_startup(startup, startup_runs)):
        print()
        part()
    print()
    print("Reference: " + CERTBOT_REFERENCE)


def code_version() -> str:
    """The commit the steps run from, and whether the work tree differs from it."""
    git = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty=+uncommitted changes"],
                         capture_output=True, text=True)
    return git.stdout.strip() or "unknown (not a git checkout)"


def benchmark(args: argparse.Namespace, scratch: Path) -> int:
    print(f"Code: {code_version()}; Python {sys.version.split()[0]} ({sys.executable})")
    ports = pick_ports()
    state_dir = scratch / "ca"
    print(f"Starting Pebble in {state_dir} on ports {ports} ...", flush=True)
    try:
        ca = start_ca(state_dir, ports)
        print(f"Pebble at {ca.directory_url}; {args.runs} run(s) per size {args.sizes}", flush=True)
        results = run_sizes(ca, scratch, args.sizes, args.runs)
    except FlowError as exc:
        print(f"\nA step failed (exit status {exc.returncode}):\n  {' '.join(exc.command)}\n{exc.output}")
        return 1
    finally:
        local_ca("stop", state_dir, ports)
    report(results, startup_times(args.startup_runs), args.startup_runs)
    return 0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 100], metavar="N",
                   help="numbers of names per certificate (default: 1 10 100)")
    p.add_argument("--runs", type=int, default=3, help="flows per size; the median is reported (default: 3)")
    p.add_argument("--startup-runs", type=int, default=5,
                   help="runs of each `script --help` for the start-up median (default: 5)")
    p.add_argument("--keep", action="store_true",
                   help="keep the temporary dir (Pebble's log, work dirs, request logs) and print its path")
    args = p.parse_args()
    if args.runs < 1 or args.startup_runs < 1 or min(args.sizes) < 1:
        p.error("--sizes, --runs and --startup-runs must be at least 1")
    return args


def main() -> int:
    args = parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="acme-bench-"))
    try:
        return benchmark(args, scratch)
    finally:
        if args.keep:
            print(f"\nKept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
