#!/usr/bin/env python3
"""Benchmark the nine-process ACME flow (01 .. 09) against a private local Pebble, next to certbot.

What it measures, for certificates of n = 1, 10 and 100 names (--sizes):

  * requests per certificate, counted twice:
      - by the client: every step runs with ACME_REQUEST_LOG set, so common/transport.py appends
        one "METHOD URL STATUS" line per HTTP request; steps 04-08 are counted (01-03 and 09
        work offline; a note is printed if they ever log a request);
      - by the CA: the "<METHOD> <path> -> calling handler()" lines Pebble appends to its log
        while the flow runs (the directory GET and the newNonce HEAD show up there too);
    both compared with the design target 8 + 2n (directory, nonce, account, order, n
    authorizations, n challenges, one order poll, finalize, one poll, certificate);
  * wall time and CPU time of the whole flow: the nine `python NN_step.py ...` processes run
    back to back, start-up included. CPU time is user + system time of the child processes
    (getrusage(RUSAGE_CHILDREN) before and after each one), so it counts the client only,
    not Pebble. Median and range over --runs runs; each step is also shown alone;
  * certbot doing the same job on the same Pebble, interleaved with our flow (ours, certbot,
    ours, certbot ...) so that whatever else loads the machine weighs on both alike:
      certbot certonly --manual --preferred-challenges dns --manual-auth-hook ... --manual-cleanup-hook ...
    with hooks that publish and clear the TXT record through pebble-challtestsrv's HTTP API
    (one `curl` per name and hook; their CPU counts as certbot's), Pebble's CA trusted through
    REQUESTS_CA_BUNDLE (never --no-verify-ssl), fresh --config-dir/--work-dir/--logs-dir per
    run, so a new account each run like ours. Its certificate key is RSA 2048 like our step
    02's default; its account key is RSA 2048 (certbot has no choice), ours is P-256. Its
    requests are counted in Pebble's log the same way. certbot is installed with pip into its
    own virtualenv, bench/.certbot-venv (git-ignored), on the first run; delete that directory
    to get a newer certbot. --no-certbot leaves it out;
  * start-up of every numbered step: median wall and CPU time over --startup-runs runs of
    `python NN_step.py --help`, next to a bare `python -c pass` and `certbot --help` for scale,
    with what the heavy imports cost (median of three `python -X importtime` runs);
  * imports of a real run: three more one-name flows with PYTHONPROFILEIMPORTTIME=1 (not
    timed), showing per step what the heavy packages cost when the step does its work.

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
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parent.parent
LOCAL_CA = ROOT / "tools" / "local_ca.py"
CERTBOT_VENV = Path(__file__).resolve().parent / ".certbot-venv"
SCRIPTS = (
    "01_create_account_key.py", "02_create_cert_key.py", "03_create_csr.py", "04_new_account.py",
    "05_new_order.py", "06_dns_challenge.py", "07_finalize.py", "08_get_certificate.py", "09_export_pkcs12.py",
)
OFFLINE_STEPS = ("01", "02", "03", "09")  # steps that make no request; left out of the client count
PREFERRED_PORTS = {"acme": 14900, "management": 15900, "dns": 8953, "challtestsrv": 8955}
PEBBLE_ENV = {"PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_AUTHZREUSE": "0"}
PFX_PASSWORD_ENV = "BENCH_PFX_PASSWORD"
PEBBLE_REQUEST = re.compile(r"\b(GET|HEAD|POST|PUT|DELETE) (\S+) -> calling handler\(\)")

# certbot's manual hooks run through `sh -c` with CERTBOT_DOMAIN and CERTBOT_VALIDATION set.
# challtestsrv wants the record's name with its trailing dot; clear-txt drops every value of a name.
CURL = "curl -fsS --noproxy '*' -o /dev/null"
AUTH_HOOK = CURL + r""" -d "{\"host\": \"_acme-challenge.$CERTBOT_DOMAIN.\", \"value\": \"$CERTBOT_VALIDATION\"}" """
CLEANUP_HOOK = CURL + r""" -d "{\"host\": \"_acme-challenge.$CERTBOT_DOMAIN.\"}" """

# Packages whose import cost is worth watching: (label, module-name prefixes).
HEAVY_IMPORTS = (
    ("requests", ("requests",)),
    ("x509", ("cryptography.x509",)),
    ("dnspython", ("dns",)),
    ("pyOpenSSL", ("OpenSSL",)),
    ("http.server", ("http.server",)),
    ("alibaba", ("common.alibaba",)),
)
IMPORTTIME_RUNS = 3  # runs under -X importtime per command (and extra flows); the median is shown
IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( +)(\S+)$", re.M)


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
    dns_server: str  # challtestsrv's DNS, ADDR:PORT: the only one Pebble asks
    pebble_log: Path


@dataclass
class StepResult:
    seconds: float
    cpu: float  # user + system seconds of the step's process
    client: list[str]  # "METHOD URL STATUS" lines from ACME_REQUEST_LOG
    pebble: list[str]  # "METHOD /path" lines from Pebble's log
    imports: dict[str, float] | None = None  # ms per HEAVY_IMPORTS label, when run with importtime


@dataclass
class FlowResult:
    names: int
    steps: dict[str, StepResult] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return sum(step.seconds for step in self.steps.values())

    @property
    def cpu(self) -> float:
        return sum(step.cpu for step in self.steps.values())

    @property
    def client_requests(self) -> int:
        return sum(len(s.client) for n, s in self.steps.items() if n not in OFFLINE_STEPS)

    @property
    def offline_requests(self) -> int:
        return sum(len(s.client) for n, s in self.steps.items() if n in OFFLINE_STEPS)

    @property
    def pebble_requests(self) -> int:
        return sum(len(step.pebble) for step in self.steps.values())


@dataclass
class CertbotResult:
    names: int
    seconds: float
    cpu: float  # certbot and the shells and curls of its hooks
    pebble: list[str]

    @property
    def pebble_requests(self) -> int:
        return len(self.pebble)


class Timed(Protocol):
    seconds: float
    cpu: float


# -- running a child and timing it ---------------------------------------------------------------


def children_cpu() -> float:
    """User + system seconds of every child process that has ended and been waited for.

    That includes their own children once those were waited for: certbot's hook shells and
    curls count, Pebble (started by tools/local_ca.py, which does not wait for it) does not.
    """
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_timed(command: list[str], **kwargs: Any) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """Run ``command`` to its end: the finished process, wall seconds and CPU seconds."""
    cpu, started = children_cpu(), time.perf_counter()
    proc = subprocess.run(command, **kwargs)
    return proc, time.perf_counter() - started, children_cpu() - cpu


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
              state["dns_server"], Path(state["pebble_log"]))


def read_from(path: Path, offset: int) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        f.seek(offset)
        return f.read()


def pebble_requests(text: str) -> list[str]:
    return [f"{m.group(1)} {m.group(2)}" for m in PEBBLE_REQUEST.finditer(text)]


# -- -X importtime -------------------------------------------------------------------------------


def import_costs(stderr: str) -> dict[str, float]:
    """Milliseconds that -X importtime charges to each HEAVY_IMPORTS package, and "all" imports.

    importtime prints a module once its own imports are done, indented by nesting depth, so a
    line at depth d is the parent of the lines at depth d + 1 printed just before it. A package
    is charged the cumulative time of its outermost import: what loading it cost this process,
    including the modules it was first to load.
    """
    waiting: dict[int, list[tuple[str, int, list]]] = defaultdict(list)
    for m in IMPORT_LINE.finditer(stderr):
        depth = (len(m.group(3)) - 1) // 2
        waiting[depth].append((m.group(4), int(m.group(2)), waiting.pop(depth + 1, [])))
    costs: Counter[str] = Counter()

    def walk(node: tuple[str, int, list], inside: frozenset[str]) -> None:
        name, cumulative, children = node
        hits = {label for label, prefixes in HEAVY_IMPORTS
                if label not in inside and any(name == p or name.startswith(p + ".") for p in prefixes)}
        for label in hits:
            costs[label] += cumulative / 1000
        for child in children:
            walk(child, inside | hits)

    for root in waiting[0]:
        costs["all"] += root[1] / 1000
        walk(root, frozenset())
    return dict(costs)


def median_costs(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per label, the median over several importtime runs (a label a run lacks counts as 0)."""
    labels = {label for costs in runs for label in costs}
    return {label: statistics.median(costs.get(label, 0.0) for costs in runs) for label in labels}


def describe_imports(costs: dict[str, float] | None) -> str:
    if not costs:
        return ""
    heavy = ", ".join(f"{label} {costs[label]:.0f}" for label, _ in HEAVY_IMPORTS if costs.get(label, 0) >= 0.5)
    return f"all {costs.get('all', 0):.0f}" + (f"; {heavy}" if heavy else "")


# -- our flow ------------------------------------------------------------------------------------


def step_commands(ca: Ca, work: Path, domains: list[str]) -> list[tuple[str, list[str]]]:
    """(script, its arguments) for the nine steps, in order."""
    common = ["--dir", str(work)]
    extra = {
        "03": [arg for name in domains for arg in ("-d", name)],
        "04": ["--server", ca.directory_url, "--ca-bundle", ca.ca_bundle, "--agree-tos"],
        "06": ["--provider", "challtestsrv", "--challtestsrv-url", ca.challtestsrv_url,
               "--dns-resolver", ca.dns_server],
        "09": ["--password-env", PFX_PASSWORD_ENV],
    }
    return [(script, common + extra.get(script[:2], [])) for script in SCRIPTS]


def clean_env() -> dict[str, str]:
    """The environment without ACME_* settings that could point the steps elsewhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACME_")}
    env[PFX_PASSWORD_ENV] = uuid.uuid4().hex
    return env


def run_step(script: str, args: list[str], env: dict[str, str], ca: Ca, request_log: Path,
             importtime: bool = False) -> StepResult:
    command = [sys.executable, str(ROOT / script), *args]
    if importtime:
        env = {**env, "PYTHONPROFILEIMPORTTIME": "1"}
    offset = ca.pebble_log.stat().st_size
    proc, seconds, cpu = run_timed(command, cwd=ROOT, env={**env, "ACME_REQUEST_LOG": str(request_log)},
                                   capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise FlowError(command, proc.returncode, proc.stdout + proc.stderr)
    client = request_log.read_text().splitlines() if request_log.exists() else []
    return StepResult(seconds, cpu, client, pebble_requests(read_from(ca.pebble_log, offset)),
                      import_costs(proc.stderr) if importtime else None)


def run_flow(ca: Ca, scratch: Path, names: int, run: int | str, importtime: bool = False) -> FlowResult:
    label = f"bench-{names}-{run}-{uuid.uuid4().hex[:8]}"
    work = scratch / label
    work.mkdir(parents=True)
    domains = [f"n{i}.{label}.example.com" for i in range(names)]
    env, result = clean_env(), FlowResult(names)
    for script, args in step_commands(ca, work, domains):
        result.steps[script[:2]] = run_step(script, args, env, ca, scratch / f"{label}-{script[:2]}.requests",
                                            importtime)
    return result


# -- certbot -------------------------------------------------------------------------------------


def ensure_certbot(venv: Path) -> Path:
    """certbot from PyPI in its own virtualenv, installed on first use; never in the project's."""
    certbot = venv / "bin" / "certbot"
    if certbot.exists():
        return certbot
    print(f"Installing certbot with pip into {venv} (first run only) ...", flush=True)
    try:
        if not (venv / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "certbot"], check=True)
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"installing certbot failed ({exc}); run again with --no-certbot to leave it out") from None
    return certbot


def certbot_version(certbot: Path) -> str:
    proc = subprocess.run([str(certbot), "--version"], capture_output=True, text=True)
    return (proc.stdout + proc.stderr).strip()


def certbot_command(certbot: Path, ca: Ca, run_dir: Path, domains: list[str]) -> list[str]:
    return [
        str(certbot), "certonly", "--non-interactive", "--agree-tos", "--register-unsafely-without-email",
        "--server", ca.directory_url,
        "--config-dir", str(run_dir / "config"), "--work-dir", str(run_dir / "work"),
        "--logs-dir", str(run_dir / "logs"),
        "--manual", "--preferred-challenges", "dns",
        "--manual-auth-hook", f"{AUTH_HOOK}{ca.challtestsrv_url}/set-txt",
        "--manual-cleanup-hook", f"{CLEANUP_HOOK}{ca.challtestsrv_url}/clear-txt",
        "--key-type", "rsa", "--rsa-key-size", "2048",  # the same certificate key as our step 02 makes
        *[arg for name in domains for arg in ("-d", name)],
    ]


def run_certbot(certbot: Path, ca: Ca, scratch: Path, names: int, run: int) -> CertbotResult:
    label = f"certbot-{names}-{run}-{uuid.uuid4().hex[:8]}"
    run_dir = scratch / label
    run_dir.mkdir(parents=True)
    command = certbot_command(certbot, ca, run_dir, [f"n{i}.{label}.example.com" for i in range(names)])
    env = {**clean_env(), "REQUESTS_CA_BUNDLE": ca.ca_bundle}  # how certbot is told to trust Pebble's CA
    offset = ca.pebble_log.stat().st_size
    proc, seconds, cpu = run_timed(command, cwd=run_dir, env=env, capture_output=True, text=True,
                                   stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        log = run_dir / "logs" / "letsencrypt.log"
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:]) if log.exists() else ""
        raise FlowError(command, proc.returncode, f"{proc.stdout}{proc.stderr}\n--- log tail ---\n{tail}")
    return CertbotResult(names, seconds, cpu, pebble_requests(read_from(ca.pebble_log, offset)))


def hook_cost(ca: Ca, runs: int = 10) -> float:
    """Median CPU seconds of one auth hook plus one cleanup hook, run through `sh -c` as certbot runs them."""
    env = {**os.environ, "CERTBOT_DOMAIN": "hook-cost.example.com", "CERTBOT_VALIDATION": "x" * 43}
    samples = []
    for hook in [f"{AUTH_HOOK}{ca.challtestsrv_url}/set-txt", f"{CLEANUP_HOOK}{ca.challtestsrv_url}/clear-txt"] * runs:
        proc, _, cpu = run_timed(["sh", "-c", hook], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise FlowError(["sh", "-c", hook], proc.returncode, proc.stdout + proc.stderr)
        samples.append(cpu)
    return 2 * statistics.median(samples)


# -- start-up time -------------------------------------------------------------------------------


def numbered_steps() -> list[str]:
    """Every numbered step in the project, whichever exist now."""
    return sorted(path.name for path in ROOT.glob("[0-9][0-9]_*.py"))


def time_command(command: list[str], runs: int) -> tuple[float, float, dict[str, float]]:
    """Median wall and CPU seconds over ``runs`` runs after a warm-up; median import costs of IMPORTTIME_RUNS."""
    walls, cpus = [], []
    for _ in range(runs + 1):
        proc, wall, cpu = run_timed(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(command)} exited with status {proc.returncode}")
        walls.append(wall)
        cpus.append(cpu)
    profiled = [subprocess.run(command, cwd=ROOT, env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True).stderr
                for _ in range(IMPORTTIME_RUNS)]
    return statistics.median(walls[1:]), statistics.median(cpus[1:]), median_costs(list(map(import_costs, profiled)))


def startup_times(runs: int, certbot: Path | None) -> dict[str, tuple[float, float, dict[str, float]]]:
    times = {"python -c pass": time_command([sys.executable, "-c", "pass"], runs)}
    for script in numbered_steps():
        times[f"{script} --help"] = time_command([sys.executable, str(ROOT / script), "--help"], runs)
    if certbot:
        times["certbot --help"] = time_command([str(certbot), "--help"], runs)
    return times


# -- printing ------------------------------------------------------------------------------------


def spread(values: Iterable[float], fmt: str = "{:.0f}") -> str:
    """Median, with the range when the runs differ."""
    values = sorted(values)
    median = fmt.format(statistics.median(values))
    if fmt.format(values[0]) == fmt.format(values[-1]):
        return median
    return f"{median} ({fmt.format(values[0])}-{fmt.format(values[-1])})"


def ratio(ours: Sequence[Timed], theirs: Sequence[Timed], what: str) -> str:
    """ours / theirs, of the medians of ``what`` (seconds or cpu)."""
    mine, other = (statistics.median(getattr(r, what) for r in runs) for runs in (ours, theirs))
    return f"{mine / other:.2f}"


def print_summary(results: dict[int, list[FlowResult]]) -> None:
    print("Requests per certificate, wall and CPU time of the nine-process flow (median; range when runs differ)")
    header = f"{'names':>5}  {'runs':>4}  {'client req':>10}  {'Pebble req':>10}  {'target 8+2n':>11}  " \
             f"{'flow wall s':>17}  {'flow CPU s':>17}  {'ms/name':>7}"
    print(header)
    print("-" * len(header))
    for n, flows in results.items():
        wall = statistics.median(f.seconds for f in flows)
        print(f"{n:>5}  {len(flows):>4}  {spread(f.client_requests for f in flows):>10}  "
              f"{spread(f.pebble_requests for f in flows):>10}  {8 + 2 * n:>11}  "
              f"{spread((f.seconds for f in flows), '{:.2f}'):>17}  {spread((f.cpu for f in flows), '{:.2f}'):>17}  "
              f"{1000 * wall / n:>7.0f}")
    print("client req: ACME_REQUEST_LOG lines of steps 04-08; Pebble req: request lines in Pebble's log "
          "during the flow;\nCPU: user + system time of the nine processes (Pebble's own CPU is not counted)")


def print_certbot(results: dict[int, list[FlowResult]], certbot: dict[int, list[CertbotResult]], version: str,
                  hooks: float) -> None:
    print(f"Ours (nine processes) next to {version} (one process + 2 hook commands per name), run interleaved "
          "on the same Pebble;\nmedian (range) of each; ratio = ours / certbot, of the medians")
    header = f"{'names':>5}  {'runs':>4}  {'Pebble req':>14}  {'wall s ours':>17}  {'wall s certbot':>17}  " \
             f"{'ratio':>5}  {'CPU s ours':>17}  {'CPU s certbot':>17}  {'ratio':>5}"
    print(header)
    print("-" * len(header))
    for n, ours in results.items():
        theirs = certbot[n]
        requests = f"{spread(f.pebble_requests for f in ours)} / {spread(c.pebble_requests for c in theirs)}"
        print(f"{n:>5}  {len(ours):>4}  {requests:>14}  {spread((f.seconds for f in ours), '{:.2f}'):>17}  "
              f"{spread((c.seconds for c in theirs), '{:.2f}'):>17}  {ratio(ours, theirs, 'seconds'):>5}  "
              f"{spread((f.cpu for f in ours), '{:.2f}'):>17}  {spread((c.cpu for c in theirs), '{:.2f}'):>17}  "
              f"{ratio(ours, theirs, 'cpu'):>5}")
    print("Pebble req: ours / certbot's, from Pebble's log; certbot waits 1 s before its first authorization poll, "
          "then\nRetry-After. certbot's CPU includes its hooks' `sh -c` and `curl` processes: one name's pair of "
          f"hooks costs {1000 * hooks:.0f} ms CPU\n(so {', '.join(f'{n * hooks:.2f} s at n={n}' for n in certbot)}); "
          "our step 06 makes the same challtestsrv calls in-process.")


def print_certbot_endpoints(certbot: dict[int, list[CertbotResult]]) -> None:
    print("certbot's requests in Pebble's log by endpoint (first run of each size):")
    for n, runs in certbot.items():
        counts = Counter(runs[0].pebble)
        print(f"  n={n}: " + ", ".join(f"{line} x{count}" for line, count in counts.items()))


def print_steps(results: dict[int, list[FlowResult]]) -> None:
    print("Per step: median wall seconds / CPU seconds / client requests")
    sizes = list(results)
    print(f"{'step':<26}" + "".join(f"{f'n={n}':>22}" for n in sizes))
    for script in SCRIPTS:
        cells = []
        for n in sizes:
            steps = [flow.steps[script[:2]] for flow in results[n]]
            seconds, cpu = statistics.median(s.seconds for s in steps), statistics.median(s.cpu for s in steps)
            cells.append(f"{seconds:.2f} / {cpu:.2f} / {statistics.median(len(s.client) for s in steps):>3.0f}")
        print(f"{script:<26}" + "".join(f"{cell:>22}" for cell in cells))


def print_endpoints(results: dict[int, list[FlowResult]]) -> None:
    print("Our requests in Pebble's log by endpoint (first run of each size):")
    for n, flows in results.items():
        counts = Counter(line for step in flows[0].steps.values() for line in step.pebble)
        print(f"  n={n}: " + ", ".join(f"{line} x{count}" for line, count in counts.items()))
    offline = sum(flow.offline_requests for flows in results.values() for flow in flows)
    if offline:
        print(f"  note: steps {', '.join(OFFLINE_STEPS)} logged {offline} client request(s), expected none")


def print_startup(times: dict[str, tuple[float, float, dict[str, float]]], runs: int,
                  results: dict[int, list[FlowResult]]) -> None:
    print(f"Start-up: median wall and CPU ms of {runs} runs after a warm-up; then, median of {IMPORTTIME_RUNS} "
          "`-X importtime` runs: ms spent\nimporting (all) and in the heavy packages (importtime's own overhead "
          "inflates these; compare them with each other)")
    print(f"  {'command':<36} {'wall ms':>7} {'CPU ms':>7}  imports ms")
    for command, (wall, cpu, costs) in times.items():
        print(f"  {command:<36} {1000 * wall:>7.0f} {1000 * cpu:>7.0f}  {describe_imports(costs)}")
    startup_cpu = sum(times[f"{script} --help"][1] for script in SCRIPTS)
    if 1 in results:
        flow_cpu = statistics.median(flow.cpu for flow in results[1])
        print(f"  The nine flow steps' --help add up to {1000 * startup_cpu:.0f} ms CPU: "
              f"{100 * startup_cpu / flow_cpu:.0f}% of the one-name flow's {flow_cpu:.2f} s CPU is start-up "
              "(interpreter and imports).")


def print_flow_imports(flows: list[FlowResult]) -> None:
    print(f"Imports during a real one-name flow (median of {len(flows)} extra flows with PYTHONPROFILEIMPORTTIME=1, "
          "not timed above):\nms spent importing, as above")
    for script in SCRIPTS:
        costs = median_costs([flow.steps[script[:2]].imports or {} for flow in flows])
        print(f"  {script:<26} {describe_imports(costs)}")


# -- main ----------------------------------------------------------------------------------------


def run_sizes(ca: Ca, scratch: Path, sizes: list[int], runs: int, certbot: Path | None
              ) -> tuple[dict[int, list[FlowResult]], dict[int, list[CertbotResult]]]:
    results: dict[int, list[FlowResult]] = {}
    theirs: dict[int, list[CertbotResult]] = {}
    for n in sizes:
        results[n], theirs[n] = [], []
        for run in range(runs):
            flow = run_flow(ca, scratch, n, run)
            line = (f"  n={n} run {run + 1}/{runs}: ours {flow.seconds:.2f} s wall, {flow.cpu:.2f} s CPU, "
                    f"{flow.client_requests} client / {flow.pebble_requests} Pebble requests")
            results[n].append(flow)
            if certbot:
                other = run_certbot(certbot, ca, scratch, n, run)
                line += f"; certbot {other.seconds:.2f} s wall, {other.cpu:.2f} s CPU, {other.pebble_requests} requests"
                theirs[n].append(other)
            print(line, flush=True)
    return results, theirs


def code_version() -> str:
    """The commit the steps run from, and whether the work tree differs from it."""
    git = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty=+uncommitted changes"],
                         capture_output=True, text=True)
    return git.stdout.strip() or "unknown (not a git checkout)"


def benchmark(args: argparse.Namespace, scratch: Path) -> int:
    print(f"Code: {code_version()}; Python {sys.version.split()[0]} ({sys.executable}); {os.cpu_count()} CPUs; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    certbot = None if args.no_certbot else ensure_certbot(CERTBOT_VENV)
    version = certbot_version(certbot) if certbot else ""
    if certbot:
        print(f"Comparing with {version} ({certbot})")
    ports = pick_ports()
    state_dir = scratch / "ca"
    print(f"Starting Pebble in {state_dir} on ports {ports} ...", flush=True)
    try:
        ca = start_ca(state_dir, ports)
        print(f"Pebble at {ca.directory_url}; {args.runs} run(s) per size {args.sizes}", flush=True)
        results, theirs = run_sizes(ca, scratch, args.sizes, args.runs, certbot)
        hooks = hook_cost(ca) if certbot else 0.0
        imports = [run_flow(ca, scratch, 1, f"imports{i}", importtime=True) for i in range(IMPORTTIME_RUNS)]
    except FlowError as exc:
        print(f"\nA step failed (exit status {exc.returncode}):\n  {' '.join(exc.command)}\n{exc.output}")
        return 1
    finally:
        local_ca("stop", state_dir, ports)
    startup = startup_times(args.startup_runs, certbot)
    parts = [lambda: print_summary(results)]
    if certbot:
        parts.append(lambda: print_certbot(results, theirs, version, hooks))
    parts += [lambda: print_steps(results), lambda: print_endpoints(results)]
    if certbot:
        parts.append(lambda: print_certbot_endpoints(theirs))
    parts += [lambda: print_startup(startup, args.startup_runs, results), lambda: print_flow_imports(imports)]
    for part in parts:
        print()
        part()
    return 0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 100], metavar="N",
                   help="numbers of names per certificate (default: 1 10 100)")
    p.add_argument("--runs", type=int, default=3, help="flows per size; the median is reported (default: 3)")
    p.add_argument("--startup-runs", type=int, default=5,
                   help="runs of each `script --help` for the start-up median (default: 5)")
    p.add_argument("--no-certbot", action="store_true",
                   help="leave certbot out (it is otherwise installed into bench/.certbot-venv on first use)")
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
