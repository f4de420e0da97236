"""Real servers from Debian's packages for the tests, each started once per session: BIND 9 and nginx.

A pytest plugin (conftest.py: ``pytest_plugins = ["servers"]``) with two session fixtures:

``bind``
    named, authoritative for the zones in ZONES, taking dynamic updates (RFC 2136) signed with
    a TSIG key (RFC 8945). Code under test finds a zone's servers by SOA and NS lookups and then
    sends them queries and updates on port 53, as it would on the Internet, so named must have
    the standard port: it gets it on an address of its own, 127.53.N.1, which keeps parallel
    test runs apart. named listens only on addresses an interface has, so the address is added
    to ``lo`` for the session (BIND's own system tests do the same with 10.53.0.N); this needs
    root, as port 53 does.
``nginx``
    one nginx whose sites are added while the session runs: a plain HTTP webroot (http-01
    serves /.well-known/acme-challenge/ files from it) or a TLS site with given certificate
    files. Each change rewrites the configuration and reloads nginx, which costs milliseconds,
    where a new server per test would cost a start.

tools/install_test_servers.sh (run by test.sh) installs both packages.
"""

from __future__ import annotations

import base64
import contextlib
import grp
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from helpers import free_port

ZONES = ("example.test", "example.com.cn", "acme-delegate.test")
KEY_NAME = "acme-update-key"  # what the code under test signs with: TXT and CNAME only
ADMIN_KEY_NAME = "fixture-admin-key"  # what the helpers below sign with: any type
TSIG_ALGORITHM = "hmac-sha256"
START_TIMEOUT = 20.0
APPARMOR_PROFILES = Path("/sys/kernel/security/apparmor/profiles")


def _program(name: str) -> str:
    """Where a Debian package put ``name``: PATH, else /usr/sbin (not on a normal user's PATH)."""
    found = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.path.exists(p)), None)
    if not found:
        raise RuntimeError(f"{name} is not installed: run tools/install_test_servers.sh (as root)")
    return found


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} was not written)"


def tsig_key_file(name: str, secret: str) -> str:
    """A key file exactly as ``tsig-keygen -a hmac-sha256 NAME`` writes it."""
    return f'key "{name}" {{\n\talgorithm {TSIG_ALGORITHM};\n\tsecret "{secret}";\n}};\n'


def new_tsig_secret() -> str:
    """32 random bytes in base64, the size tsig-keygen picks for hmac-sha256."""
    return base64.b64encode(os.urandom(32)).decode("ascii")


def apparmor_confines(program: str, profiles: Path = APPARMOR_PROFILES) -> bool:
    """True if AppArmor enforces a profile on ``program``.

    Debian's bind9 ships one that lets /usr/sbin/named read only /etc/bind and a few more
    system paths, so on a host with AppArmor on it could not read a configuration in /tmp.
    """
    try:
        loaded = profiles.read_text().splitlines()
    except OSError:
        return False
    names = {program, Path(program).name}
    return any(line.rsplit(" (", 1)[0] in names and line.endswith("(enforce)") for line in loaded)


# --- BIND ---------------------------------------------------------------------------------------


class AddressTakenError(RuntimeError):
    """Another session added the address to ``lo`` first: the fixture picks another."""


@dataclass
class Bind:
    """A running named: where it listens, its zones and key, and helpers to look and change.

    ``add``, ``delete`` and ``set_cname`` sign with a second key that may change any record
    type, so a test can pre-seed what the key under test may not write.
    """

    workdir: Path
    address: str
    key_name: str = KEY_NAME
    secret: str = field(default_factory=new_tsig_secret, repr=False)
    zones: tuple[str, ...] = ZONES
    port: int = 53
    algorithm: str = TSIG_ALGORITHM
    admin_secret: str = field(default_factory=new_tsig_secret, repr=False)
    process: subprocess.Popen | None = field(default=None, repr=False)
    address_added: bool = False

    @property
    def key_file(self) -> Path:
        """The TSIG key in tsig-keygen's format, for the code under test."""
        return self.workdir / f"{self.key_name}.key"

    @property
    def log_file(self) -> Path:
        return self.workdir / "named.log"

    # -- running it --

    def write_config(self) -> Path:
        self.key_file.write_text(tsig_key_file(self.key_name, self.secret))
        admin_key = self.workdir / f"{ADMIN_KEY_NAME}.key"
        admin_key.write_text(tsig_key_file(ADMIN_KEY_NAME, self.admin_secret))
        zones = []
        for zone in self.zones:
            (self.workdir / f"{zone}.zone").write_text(
                f"$ORIGIN {zone}.\n$TTL 60\n"
                f"@    SOA ns1 hostmaster 1 3600 600 86400 60\n"
                f"@    NS  ns1\n"
                f"ns1  A   {self.address}\n"
            )
            zones.append(
                f'zone "{zone}" {{\n  type primary;\n  file "{zone}.zone";\n'
                f"  update-policy {{\n    grant {self.key_name} zonesub TXT CNAME;\n"
                f"    grant {ADMIN_KEY_NAME} zonesub ANY;\n  }};\n}};\n"
            )
        conf = self.workdir / "named.conf"
        conf.write_text(f'include "{self.key_file}";\ninclude "{admin_key}";\n'
                        + self.options("recursion no;", "allow-transfer { none; };") + "".join(zones))
        return conf

    def options(self, *more: str) -> str:
        """named.conf's options: its own directory and address, IPv4 only, no rndc, and ``more``."""
        lines = [f'directory "{self.workdir}";', f'pid-file "{self.workdir}/named.pid";',
                 f'session-keyfile "{self.workdir}/session.key";',
                 f"listen-on port {self.port} {{ {self.address}; }};", "listen-on-v6 { none; };",
                 "dnssec-validation no;", "notify no;", *more]
        # controls { }: no rndc, the fixture stops named with a signal
        return "options {\n" + "".join(f"  {line}\n" for line in lines) + "};\ncontrols { };\n"

    def start(self) -> None:
        conf = self.write_config()
        self._add_address()
        named = _program("named")
        if apparmor_confines(named):
            # A copy elsewhere runs unconfined: the profile attaches to the path /usr/sbin/named.
            named = str(shutil.copy2(named, self.workdir / "named"))
        with open(self.log_file, "wb") as log:
            # -g: foreground, log to stderr; -4: IPv4 only; -n 1: one worker thread is plenty.
            self.process = subprocess.Popen([named, "-g", "-4", "-n", "1", "-c", str(conf)], stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers_every_zone():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"named did not start on {self.address}:{self.port}; its log:\n"
                                   + _tail(self.log_file))
            time.sleep(0.1)

    def stop(self) -> None:
        _terminate(self.process)
        if self.address_added:
            subprocess.run([_program("ip"), "addr", "del", f"{self.address}/32", "dev", "lo"], check=False,
                           capture_output=True)
            self.address_added = False

    def _add_address(self) -> None:
        result = subprocess.run([_program("ip"), "addr", "add", f"{self.address}/32", "dev", "lo"],
                                capture_output=True, text=True)
        if result.returncode and "File exists" in result.stderr:
            raise AddressTakenError(self.address)  # by a parallel session since _free_bind_address looked
        if result.returncode:
            raise RuntimeError(f"cannot add {self.address} to lo for named ({result.stderr.strip()}): "
                               "the BIND tests need root (CAP_NET_ADMIN and port 53)")
        self.address_added = True

    def _answers_every_zone(self) -> bool:
        import dns.exception
        import dns.rcode

        try:
            return all(self.query(zone, "SOA", timeout=0.5).rcode() == dns.rcode.NOERROR for zone in self.zones)
        except (dns.exception.DNSException, OSError):
            return False

    # -- looking --

    def zone_of(self, name: str) -> str:
        """The zone (of ours) that holds ``name``: the longest one it ends with."""
        bare = name.rstrip(".").lower()
        found = [z for z in self.zones if bare == z or bare.endswith("." + z)]
        if not found:
            raise ValueError(f"{name} is in none of the test zones {self.zones}")
        return max(found, key=len)

    def query(self, name: str, rdtype: str, *, timeout: float = 5.0):
        """One UDP query straight to named; returns the dns.message.Message it answered."""
        import dns.message
        import dns.query

        return dns.query.udp(dns.message.make_query(name, rdtype), self.address, port=self.port, timeout=timeout)

    def records(self, name: str, rdtype: str) -> list[str]:
        """The records of ``rdtype`` at ``name`` right now, as text (empty if none)."""
        import dns.rdatatype

        wanted = dns.rdatatype.from_text(rdtype)
        reply = self.query(name, rdtype)
        return [r.to_text() for rrset in reply.answer if rrset.rdtype == wanted for r in rrset]

    def txt(self, name: str) -> list[str]:
        """The TXT values at ``name`` (each one's strings joined), in the order named sends them."""
        import dns.rdatatype

        reply = self.query(name, "TXT")
        return [b"".join(r.strings).decode() for rrset in reply.answer if rrset.rdtype == dns.rdatatype.TXT
                for r in rrset]

    # -- changing --

    def tsig_key(self, secret: str | None = None, name: str | None = None):
        """A dns.tsig.Key: the key under test, or the same name with another ``secret``."""
        import dns.tsig

        return dns.tsig.Key(name or self.key_name, secret or self.secret, self.algorithm)

    def update(self, name: str, *, key=None):
        """An empty RFC 2136 update for the zone holding ``name``, signed with ``key`` (default: admin)."""
        import dns.tsig
        import dns.update

        key = key or dns.tsig.Key(ADMIN_KEY_NAME, self.admin_secret, self.algorithm)
        return dns.update.UpdateMessage(self.zone_of(name), keyring=key)

    def send(self, update):
        """Send an update over TCP; returns the reply (a bad signature raises dns.tsig.PeerBadSignature)."""
        import dns.query

        return dns.query.tcp(update, self.address, port=self.port, timeout=5)

    def _apply(self, update) -> None:
        import dns.rcode

        rcode = self.send(update).rcode()
        if rcode != dns.rcode.NOERROR:
            raise RuntimeError(f"named refused the update: {dns.rcode.to_text(rcode)}\n{_tail(self.log_file, 5)}")

    def add(self, name: str, rdtype: str, value: str, ttl: int = 60) -> None:
        """Add one record; a TXT ``value`` is the bare text (quoted here)."""
        update = self.update(name)
        update.add(_absolute(name), ttl, _rdata(rdtype, value))
        self._apply(update)

    def delete(self, name: str, rdtype: str | None = None, value: str | None = None) -> None:
        """Delete one record, every record of ``rdtype``, or (neither given) everything at ``name``."""
        update = self.update(name)
        if value is not None and rdtype:
            update.delete(_absolute(name), _rdata(rdtype, value))
        elif rdtype:
            update.delete(_absolute(name), rdtype)
        else:
            update.delete(_absolute(name))
        self._apply(update)

    def set_cname(self, name: str, target: str, ttl: int = 60) -> None:
        """Make ``name`` a CNAME to ``target``, replacing whatever was at ``name``."""
        update = self.update(name)
        update.delete(_absolute(name))
        update.add(_absolute(name), ttl, _rdata("CNAME", _absolute(target)))
        self._apply(update)


def _absolute(name: str) -> str:
    return name if name.endswith(".") else name + "."


def _rdata(rdtype: str, value: str):
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype

    if rdtype.upper() == "TXT":
        value = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), value)


def _free_bind_address() -> str:
    """127.53.N.1 that no interface has and nothing listens on (port 53, UDP and TCP)."""
    taken = subprocess.run([_program("ip"), "-4", "-o", "addr", "show"], capture_output=True, text=True).stdout
    for n in random.sample(range(1, 255), 254):
        address = f"127.53.{n}.1"
        if f" {address}/" in taken:
            continue
        try:
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                with socket.socket(socket.AF_INET, kind) as sock:
                    sock.bind((address, 53))
        except OSError:
            continue
        return address
    raise RuntimeError("no free address 127.53.N.1 for named")


# --- nginx --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Site:
    """One nginx server block: a webroot over HTTP, or certificate files over TLS."""

    port: int
    address: str = "127.0.0.1"
    webroot: Path | None = None
    cert: Path | None = None  # PEM: the leaf first, then what nginx sends after it
    key: Path | None = None
    server_names: tuple[str, ...] = ()

    @property
    def tls(self) -> bool:
        return self.cert is not None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.address}:{self.port}"

    @property
    def target(self) -> str:
        """HOST:PORT, as 21_check_endpoint.py takes it."""
        return f"{self.address}:{self.port}"


class Nginx:
    """One nginx for the session; sites come and go with a configuration reload."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        self.sites: list[Site] = []
        self.streams: list[Stream] = []
        self.process: subprocess.Popen | None = None

    @property
    def conf(self) -> Path:
        return self.prefix / "nginx.conf"

    @property
    def error_log(self) -> Path:
        return self.prefix / "error.log"

    @property
    def access_log(self) -> Path:
        """One line per request: ``port client "request" status bytes``."""
        return self.prefix / "access.log"

    def start(self) -> None:
        (self.prefix / "tmp").mkdir(parents=True, exist_ok=True)
        self._check_and_write()
        self.process = subprocess.Popen(self._command(self.conf, "-g", "daemon off;"), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self._wait_for_workers(old=set())

    def stop(self) -> None:
        _terminate(self.process)

    def serve_webroot(self, webroot: Path, *, port: int | None = None, address: str = "127.0.0.1") -> Site:
        """Serve ``webroot`` over plain HTTP (files as they are, e.g. http-01 key authorizations)."""
        return self.add(Site(port or free_port(address), address, webroot=webroot))

    def serve_tls(self, cert: Path, key: Path, *, port: int | None = None, server_names: tuple[str, ...] = (),
                  address: str = "127.0.0.1") -> Site:
        """Serve TLS with ``cert`` (leaf, then the chain nginx should send) and ``key``."""
        return self.add(Site(port or free_port(address), address, cert=cert, key=key, server_names=server_names))

    def add(self, site: Site) -> Site:
        self.sites.append(site)
        self.reload()
        return site

    def change(self, site: Site, **changes) -> Site:
        """The same site with other files (``cert=``, ``key=``, ``webroot=``), live once this returns."""
        new = replace(site, **changes)
        self.sites[self.sites.index(site)] = new
        self.reload()
        return new

    def remove(self, site: Site) -> None:
        self.sites.remove(site)
        self.reload()

    def add_stream(self, stream: Stream) -> Stream:
        """A ``stream { }`` block (TCP proxying, e.g. ssl_preread), live once this returns."""
        self.streams.append(stream)
        self.reload()
        return stream

    def remove_stream(self, stream: Stream) -> None:
        self.streams.remove(stream)
        self.reload()

    def reload(self) -> None:
        """Apply the sites: check the configuration, SIGHUP, wait until only new workers run.

        Waiting for the old workers to go matters: until they exit they still accept
        connections with the old configuration (the old certificate).
        """
        if not self.process or self.process.poll() is not None:
            raise RuntimeError("nginx is not running; its log:\n" + _tail(self.error_log))
        self._check_and_write()
        old = _children(self.process.pid)
        self.process.send_signal(signal.SIGHUP)
        self._wait_for_workers(old)

    def _command(self, conf: Path, *extra: str) -> list[str]:
        return [_program("nginx"), "-p", f"{self.prefix}/", "-c", str(conf), "-e", str(self.error_log), *extra]

    def _check_and_write(self) -> None:
        candidate = self.prefix / "nginx.conf.new"
        candidate.write_text(self._config())
        result = subprocess.run(self._command(candidate, "-t", "-q"), capture_output=True, text=True)
        if result.returncode:
            raise RuntimeError(f"nginx refuses the configuration:\n{result.stderr}")
        os.replace(candidate, self.conf)

    def _wait_for_workers(self, old: set[int]) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self.process
            if self.process.poll() is not None:
                raise RuntimeError("nginx stopped; its log:\n" + _tail(self.error_log))
            workers = _children(self.process.pid)
            if workers and not workers & old and all(_listening(s) for s in [*self.sites, *self.streams]):
                return
            if time.monotonic() > deadline:
                raise RuntimeError("nginx did not apply its configuration; its log:\n" + _tail(self.error_log))
            time.sleep(0.05)

    def _config(self) -> str:
        p = self.prefix
        lines = [
            *([f"load_module {STREAM_MODULE};"] if self.streams and STREAM_MODULE.exists() else []),
            "worker_processes 1;",
            f"pid {p}/nginx.pid;",
            f"error_log {p}/error.log notice;",
        ]
        if os.geteuid() == 0:
            # Workers would run as nobody and could not read webroots in pytest's 0700 temp dirs.
            lines.append(f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};")
        lines += [
            "events { worker_connections 64; }",
            "http {",
            "  log_format short '$server_port $remote_addr \"$request\" $status $body_bytes_sent';",
            f"  access_log {p}/access.log short;",
            *(f"  {kind}_temp_path {p}/tmp/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")),
            "  server_tokens off;",
            "  keepalive_timeout 0;",  # a reload then never waits for an idle connection to close
        ]
        defaults: set[tuple[str, int]] = set()
        for site in self.sites:
            first = (site.address, site.port) not in defaults
            defaults.add((site.address, site.port))
            listen = f"{site.address}:{site.port}{' ssl' if site.tls else ''}{' default_server' if first else ''}"
            lines += ["  server {", f"    listen {listen};", f"    server_name {' '.join(site.server_names) or '_'};"]
            if site.tls:
                lines += [f"    ssl_certificate {site.cert};", f"    ssl_certificate_key {site.key};"]
            if site.webroot:
                lines.append(f"    root {site.webroot};")
            else:
                lines.append("    location / { return 200 'ok\\n'; }")
            lines.append("  }")
        lines.append("}")
        lines += [stream.config for stream in self.streams]
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Stream:
    """A top-level ``stream { }`` block listening on ``address:port`` (e.g. tools/nginx_tls_alpn.py's)."""

    port: int
    config: str
    address: str = "127.0.0.1"


# Debian builds the stream module (with ssl_preread) as a dynamic module: package libnginx-mod-stream.
STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")


def _terminate(process: subprocess.Popen | None) -> None:
    """Stop a server politely, then firmly."""
    if process and process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _listening(site: Site) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((site.address, site.port), timeout=0.5):
        return True
    return False


def _children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (nginx's workers), from /proc."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def bind(tmp_path_factory) -> Iterator[Bind]:
    """named on 127.53.N.1:53, authoritative for ZONES, updatable with ``bind.key_file``."""
    workdir = tmp_path_factory.mktemp("bind")
    for _ in range(10):  # parallel sessions (pytest-xdist workers) may pick the same address at once
        server = Bind(workdir, _free_bind_address())
        try:
            server.start()
            break
        except AddressTakenError:
            continue
    else:
        raise RuntimeError("no free address 127.53.N.1 for named after 10 tries")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def nginx(tmp_path_factory) -> Iterator[Nginx]:
    """One nginx for the session; add sites with ``serve_webroot`` and ``serve_tls``."""
    server = Nginx(tmp_path_factory.mktemp("nginx"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
