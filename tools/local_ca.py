#!/usr/bin/env python3
"""Start, stop or inspect the local test CA: Pebble and its mock DNS, pebble-challtestsrv.

  python tools/local_ca.py start    # ACME at https://localhost:14000/dir, DNS on 127.0.0.1:8053
  python tools/local_ca.py status
  python tools/local_ca.py stop

Pebble is Let's Encrypt's small test CA. It needs version 2.10 or newer (ARI, profiles).
The first start looks for one in $PEBBLE_BIN, then in .local-ca/bin, then on PATH; failing
those it downloads Debian's package (from the mirror this machine's apt already uses) and
unpacks it into .local-ca/bin. It also makes a small CA and a TLS certificate for localhost,
since Pebble serves only HTTPS, and writes .local-ca/state.json with the directory URL and
the CA bundle, which is where `--server pebble` finds them.

Pebble reads its test knobs from the environment at start: PEBBLE_VA_NOSLEEP (set to 1
here unless given), PEBBLE_WFE_NONCEREJECT, PEBBLE_AUTHZREUSE, PEBBLE_ALTERNATE_ROOTS ...
"""

from __future__ import annotations

import argparse
import datetime
import fcntl
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common.acme_servers import PROJECT_ROOT, local_ca_dir  # noqa: E402
from common.keys import key_to_pem  # noqa: E402
from common.workdir import PRIVATE, atomic_write  # noqa: E402

MIN_VERSION = (2, 10)
BIN_DIR = PROJECT_ROOT / ".local-ca" / "bin"
DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


# Let's Encrypt's profiles as of 2026 (classic is called "default" here), with their lifetimes.
PROFILES = {
    "default": {"description": "The default profile: 90 days", "validityPeriod": 90 * 86400},
    "tlsserver": {"description": "Server authentication only, no common name: 45 days", "validityPeriod": 45 * 86400},
    "shortlived": {"description": "Short-lived certificates: 6 days", "validityPeriod": 6 * 86400},
}


class SetupError(Exception):
    """Something the user has to fix; printed as one line, exit status 1."""


# -- finding or installing Pebble ---------------------------------------------------------------


def _version_tuple(text: str) -> tuple[int, ...]:
    match = re.search(r"(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else (0,)


def _debian_version(binary: str) -> tuple[int, ...]:
    """Pebble built by Debian prints 'dev' as its version, so ask dpkg who owns the file."""
    try:
        owner = subprocess.run(["dpkg", "-S", os.path.realpath(binary)], capture_output=True, text=True, check=True)
        package = owner.stdout.split(":")[0]
        version = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package],
                                 capture_output=True, text=True, check=True)
        return _version_tuple(version.stdout)
    except (OSError, subprocess.CalledProcessError):
        out = subprocess.run([binary, "-version"], capture_output=True, text=True)
        return _version_tuple(out.stdout + out.stderr)


def find_pebble() -> tuple[str, str]:
    """Paths of pebble and pebble-challtestsrv, installing them on first use."""
    if os.environ.get("PEBBLE_BIN"):
        pebble = os.environ["PEBBLE_BIN"]
        challtestsrv = os.environ.get("PEBBLE_CHALLTESTSRV_BIN") or str(Path(pebble).with_name("pebble-challtestsrv"))
        if not (os.access(pebble, os.X_OK) and os.access(challtestsrv, os.X_OK)):
            raise SetupError(f"PEBBLE_BIN={pebble}: it and {challtestsrv} must both be executable files")
        version = _debian_version(pebble)
        if version != (0,) and version < MIN_VERSION:  # (0,): a build that says only "dev"
            raise SetupError(f"PEBBLE_BIN is Pebble {'.'.join(map(str, version))}; version 2.10 or newer is needed")
        return pebble, challtestsrv
    local = BIN_DIR / "pebble"
    if local.exists():
        return str(local), str(BIN_DIR / "pebble-challtestsrv")
    on_path = shutil.which("pebble")
    if on_path and shutil.which("pebble-challtestsrv") and _debian_version(on_path) >= MIN_VERSION:
        return on_path, shutil.which("pebble-challtestsrv") or ""
    # Parallel test workers all start a CA at once: one installs, the others wait and use its copy.
    BIN_DIR.parent.mkdir(parents=True, exist_ok=True)
    with open(BIN_DIR.parent / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not local.exists():
            install_from_debian(BIN_DIR)
    return str(local), str(BIN_DIR / "pebble-challtestsrv")


def debian_mirror() -> tuple[str, str]:
    """The Debian mirror URI and keyring this machine's apt already uses."""
    entries: list[tuple[str, str, str]] = []  # (uri, suites, keyring)
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            pairs = (line.partition(":") for line in stanza.splitlines() if not line.startswith("#"))
            fields = {k.strip(): v.strip() for k, _, v in pairs if v}
            if fields.get("URIs") and "deb" in fields.get("Types", "").split():
                entries.append((fields["URIs"].split()[0], fields.get("Suites", ""), fields.get("Signed-By", "")))
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            parts = re.sub(r"\[[^]]*\]", "", line).split()
            if len(parts) >= 3 and parts[0] == "deb":
                entries.append((parts[1], parts[2], ""))
    for uri, suites, keyring in entries:
        if "security" in uri or not uri.rstrip("/").endswith("/debian"):
            continue
        if any("-" not in suite for suite in suites.split()):
            keyring = keyring if keyring.startswith("/") else DEFAULT_KEYRING
            return uri, keyring
    raise SetupError("no Debian mirror found in /etc/apt: install Pebble 2.10+ yourself and set PEBBLE_BIN")


def install_from_debian(bin_dir: Path) -> None:
    """Fetch Debian unstable's pebble package (it depends only on libc) and unpack its binaries."""
    if not shutil.which("apt-get") or not shutil.which("dpkg"):
        raise SetupError("Pebble 2.10+ not found and this is not a Debian system: set PEBBLE_BIN to a pebble binary")
    uri, keyring = debian_mirror()
    print(f"Installing Pebble from Debian unstable ({uri}) into {bin_dir} ...")
    with tempfile.TemporaryDirectory(prefix="pebble-apt-") as tmp:
        work = Path(tmp)
        (work / "lists" / "partial").mkdir(parents=True)
        (work / "cache" / "archives" / "partial").mkdir(parents=True)
        sources = work / "sources.list"
        sources.write_text(f"deb [signed-by={keyring}] {uri} unstable main\n")
        apt = ["apt-get", "-q", "-o", f"Dir::Etc::SourceList={sources}", "-o", "Dir::Etc::SourceParts=/dev/null",
               "-o", f"Dir::State::Lists={work / 'lists'}", "-o", f"Dir::Cache={work / 'cache'}",
               "-o", "APT::Sandbox::User=root"]
        for step in (["update"], ["download", "pebble"]):
            result = subprocess.run(apt + step, cwd=work, capture_output=True, text=True)
            if result.returncode != 0:
                raise SetupError(f"apt-get {' '.join(step)} failed: {result.stderr.strip().splitlines()[-1:]}")
        deb = next(work.glob("pebble_*.deb"))
        subprocess.run(["dpkg", "-x", str(deb), str(work / "root")], check=True)
        # Both binaries appear at once (one rename of their directory), so bin_dir/pebble means both are there.
        staged = Path(tempfile.mkdtemp(prefix="bin-", dir=bin_dir.parent))
        for name in ("pebble", "pebble-challtestsrv"):
            shutil.copy2(work / "root" / "usr" / "bin" / name, staged / name)
        staged.chmod(0o755)
        if bin_dir.exists():  # an empty or partial directory from an older, interrupted install
            shutil.rmtree(bin_dir)
        staged.rename(bin_dir)
    print(f"Installed {deb.name}")


# -- TLS for Pebble's own HTTPS listener ---------------------------------------------------------


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer_key: ec.EllipticCurvePrivateKey,
          issuer: x509.Name | None, *, ca: bool) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=3650 if ca else 365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        usage = x509.KeyUsage(False, False, False, False, False, key_cert_sign=True, crl_sign=True,
                              encipher_only=False, decipher_only=False)
        builder = builder.add_extension(usage, critical=True)
    else:
        san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
               x509.IPAddress(ipaddress.ip_address("::1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)
    return builder.sign(issuer_key, hashes.SHA256())


def ensure_tls(state_dir: Path) -> Path:
    """A CA (the bundle clients trust) and a localhost certificate signed by it."""
    bundle = state_dir / "ca.pem"
    if bundle.exists() and (state_dir / "localhost.pem").exists():
        return bundle
    from cryptography.hazmat.primitives.serialization import Encoding

    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _cert("Local test CA for Pebble's HTTPS", ca_key, ca_key, None, ca=True)
    leaf = _cert("localhost", leaf_key, ca_key, ca.subject, ca=False)
    atomic_write(state_dir / "localhost.key", key_to_pem(leaf_key), PRIVATE)
    atomic_write(state_dir / "localhost.pem", leaf.public_bytes(Encoding.PEM))
    atomic_write(bundle, ca.public_bytes(Encoding.PEM))
    return bundle


# -- processes --------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc here: the signal check above is all there is
    if state == "Z":
        return False  # exited; its parent (init, in a container maybe a slow one) has yet to reap it
    return not command or b"pebble" in command  # empty while a new process is still starting


def read_state(state_dir: Path) -> dict | None:
    path = state_dir / "state.json"
    return json.loads(path.read_text()) if path.exists() else None


def start(args: argparse.Namespace) -> None:
    state_dir: Path = args.state_dir
    current = read_state(state_dir)
    if current and all(_alive(pid) for pid in current["pids"]):
        print(f"Local test CA already running: {current['directory_url']}")
        return
    state_dir.mkdir(parents=True, exist_ok=True)
    pebble, challtestsrv = find_pebble()
    bundle = ensure_tls(state_dir)
    config = {"pebble": {
        "listenAddress": f"127.0.0.1:{args.acme_port}",
        "managementListenAddress": f"127.0.0.1:{args.management_port}",
        "certificate": str(state_dir / "localhost.pem"),
        "privateKey": str(state_dir / "localhost.key"),
        "httpPort": args.http_port, "tlsPort": args.tls_port,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": bool(args.eab),
        "externalAccountMACKeys": dict(pair.split("=", 1) for pair in args.eab),
        "domainBlocklist": ["blocked-domain.example"],
        "retryAfter": {"authz": args.retry_after, "order": args.retry_after},
        # One profile unless asked: given several, Pebble picks one at random for orders that name none.
        "profiles": PROFILES if args.profiles else {"default": PROFILES["default"]},
    }}
    (state_dir / "pebble-config.json").write_text(json.dumps(config, indent=2))
    env = {**os.environ, "PEBBLE_VA_NOSLEEP": os.environ.get("PEBBLE_VA_NOSLEEP", "1")}
    dns = f"127.0.0.1:{args.dns_port}"
    commands = {
        "challtestsrv": [challtestsrv, "-dnsserver", dns, "-management", f"127.0.0.1:{args.challtestsrv_port}",
                         "-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "",
                         # Every name resolves to 127.0.0.1 only: with its default ::1 as well, Pebble
                         # would try http-01 on IPv6 first and never reach a server on 127.0.0.1.
                         "-defaultIPv6", ""],
        "pebble": [pebble, "-config", str(state_dir / "pebble-config.json"), "-dnsserver", args.pebble_dns or dns],
    }
    pids = []
    for name, command in commands.items():
        with open(state_dir / f"{name}.log", "ab") as logfile:
            proc = subprocess.Popen(command, stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, start_new_session=True)
        pids.append(proc.pid)
    directory_url = f"https://localhost:{args.acme_port}/dir"
    state = {
        "directory_url": directory_url,
        "ca_bundle": str(bundle),
        "management_url": f"https://localhost:{args.management_port}",
        "challtestsrv_url": f"http://localhost:{args.challtestsrv_port}",
        "dns_server": dns,
        "pebble_dns": args.pebble_dns or dns,
        "http01_port": args.http_port,
        "tls_alpn01_port": args.tls_port,
        "pids": pids,
        "pebble_log": str(state_dir / "pebble.log"),
    }
    atomic_write(state_dir / "state.json", json.dumps(state, indent=2).encode())
    _wait_ready(state, state_dir)
    print(f"Local test CA running: {directory_url} (CA bundle {bundle}, challtestsrv {state['challtestsrv_url']})")


def _wait_ready(state: dict, state_dir: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not all(_alive(pid) for pid in state["pids"]):
            break
        try:
            requests.get(state["directory_url"], verify=state["ca_bundle"], timeout=2).raise_for_status()
            requests.post(state["challtestsrv_url"] + "/clear-txt", json={"host": "ready.invalid."}, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.2)
    stop_processes(state_dir)
    logs = "".join((state_dir / f"{n}.log").read_text(errors="replace")[-600:] for n in ("pebble", "challtestsrv"))
    raise SetupError(f"the local test CA did not come up (ports in use?). Log tail:\n{logs}")


def stop_processes(state_dir: Path) -> bool:
    current = read_state(state_dir)
    if not current:
        return False
    for pid in current["pids"]:
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in current["pids"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in current["pids"]:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    (state_dir / "state.json").unlink()
    return True


def stop(args: argparse.Namespace) -> None:
    print("Local test CA stopped" if stop_processes(args.state_dir) else "Local test CA was not running")


def status(args: argparse.Namespace) -> None:
    current = read_state(args.state_dir)
    if not current or not all(_alive(pid) for pid in current["pids"]):
        print("Local test CA is not running")
        sys.exit(3)
    print(json.dumps(current, indent=2))


def install(args: argparse.Namespace) -> None:
    pebble, _ = find_pebble()
    print(f"Pebble: {pebble}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("start", "stop", "status", "install"),
                   help="install: only make sure Pebble is there (start does it too)")
    p.add_argument("--state-dir", type=Path, default=local_ca_dir(),
                   help="config, certificates, logs and state.json (default: $ACME_LOCAL_CA_DIR or .local-ca)")
    for option, default in (("acme-port", 14000), ("management-port", 15000), ("dns-port", 8053),
                            ("challtestsrv-port", 8055), ("http-port", 5002), ("tls-port", 5001)):
        env = "LOCAL_CA_" + option.upper().replace("-", "_")
        p.add_argument(f"--{option}", type=int, default=int(os.environ.get(env, default)),
                       help=f"(default: ${env} or {default})")
    p.add_argument("--pebble-dns", metavar="ADDR:PORT",
                   help="the DNS server Pebble validates against (default: challtestsrv's, on --dns-port)")
    p.add_argument("--profiles", action="store_true",
                   help=f"offer the profiles {', '.join(PROFILES)}; an order naming none gets one at random")
    p.add_argument("--eab", action="append", default=[], metavar="KID=KEY",
                   help="require External Account Binding, accepting this key id and base64url HMAC key; repeatable")
    p.add_argument("--retry-after", type=int, default=1,
                   help="Retry-After seconds Pebble sends on orders and authorizations (default: %(default)s)")
    args = p.parse_args()
    args.state_dir = args.state_dir.resolve()
    try:
        {"start": start, "stop": stop, "status": status, "install": install}[args.action](args)
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
