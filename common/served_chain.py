"""A TLS server as its clients see it: the chain it sends for a name, compared with the work dir.

Renewals tend to fail at the very end, quietly: the new files are written and the server
goes on serving the old certificate (nobody reloaded it), or it serves cert.pem without the
intermediate, which works in a browser that has the intermediate cached and fails in most
API clients. The only way to know is to connect as a client does and look at what comes back.

The chain is read with pyOpenSSL: Python's ssl module hands over the full, unverified chain
a server sent only from Python 3.13 on. Trust is then checked with cryptography's verifier
(RFC 5280 path building), against the chain as sent and nothing else.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import re
import select
import socket
import ssl
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509

from .certs import ip_sans, parse_pem_certificates, read_pem_file, san_names, summary, unreadable_certificates
from .errors import AcmeError, UsageError, bounded, printable
from .names import host_name

if TYPE_CHECKING:
    from OpenSSL import SSL

DEFAULT_PORT = 443
# How often --wait asks again: a CDN takes minutes, a reloaded server a second.
WAIT_INTERVAL = 2.0


@dataclass(frozen=True)
class Target:
    """Where to connect: a host name (as A-labels) or an IP address, and a port."""

    host: str
    port: int

    @property
    def ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        with contextlib.suppress(ValueError):
            return ipaddress.ip_address(self.host)
        return None

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class EndpointError(AcmeError):
    """The server answered, but not with the new certificate and its complete chain: one line per finding."""

    def __init__(self, message: str, findings: list[str]) -> None:
        super().__init__(message)
        self.findings = findings

    def lines(self) -> list[str]:
        return [str(self), *(f"  {finding}" for finding in self.findings)]


# --- what the user asked for ---------------------------------------------------------------------


def parse_target(text: str) -> Target:
    """HOST, HOST:PORT, [IPv6]:PORT or a bare IPv6 address; UsageError saying what is wrong."""
    raw = text.strip()
    usage = "give HOST or HOST:PORT, such as example.com or example.com:8443"
    if not raw or "/" in raw or "@" in raw:
        raise UsageError(f"{text!r} is not a server address: {usage} (not a URL)")
    bracketed = re.fullmatch(r"\[([^\]]+)\](?::(.*))?", raw)
    if bracketed:
        host, port_text = bracketed.group(1), bracketed.group(2)
    elif raw.count(":") == 1:
        host, port_text = raw.split(":")
    else:  # a name, IPv4, or an IPv6 address without a port
        host, port_text = raw, None
    port = DEFAULT_PORT
    if port_text is not None:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise UsageError(f"{text!r}: the port must be a number from 1 to 65535; {usage}")
        port = int(port_text)
    with contextlib.suppress(ValueError):
        return Target(str(ipaddress.ip_address(host)), port)
    return Target(host_name(host, text), port)


def server_name(servername: str | None, target: Target, leaf: x509.Certificate) -> str | None:
    """The SNI name to send: --servername, else the host; for an IP address, none if cert.pem holds
    that address (an IP certificate, RFC 8738), else cert.pem's first name.

    SNI carries only host names (RFC 6066 §3), so an IP address never goes there. A client that
    connects to an address sends no SNI, so that is how an IP certificate is checked: None, and
    the address itself is what the certificate must cover.
    """
    if servername:
        if ipaddress_or_none(servername) is not None:
            raise UsageError(f"--servername {servername}: SNI takes a host name, not an IP address")
        return host_name(servername)
    if target.ip is None:
        return target.host
    if str(target.ip) in ip_sans(leaf):
        return None
    names = [n for n in san_names(leaf) if not n.startswith("*.")]
    return names[0] if names else None


def ipaddress_or_none(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(text.strip("[]"))
    return None


@dataclass(frozen=True)
class Roots:
    """The root certificates a served chain must lead to, and how to name them in messages."""

    certificates: list[x509.Certificate]
    label: str
    private: bool  # --ca-bundle added some


def load_roots(ca_bundle: str | None) -> Roots:
    """The system's roots (what Python's ssl module loads: OpenSSL's default paths, SSL_CERT_FILE,
    the Windows store), plus ``ca_bundle``'s for a private CA such as a test CA's root."""
    roots = _system_roots()
    label = "the system's roots"
    if not roots:  # no system bundle (macOS, minimal containers): the roots requests would use
        import certifi

        roots = parse_pem_certificates(Path(certifi.where()).read_bytes())
        label = "certifi's roots"
    if not ca_bundle:
        return Roots(roots, label, private=False)
    extra = read_pem_file(Path(ca_bundle), "--ca-bundle")
    return Roots(roots + extra, f"{label} and {ca_bundle}", private=True)


def _system_roots() -> list[x509.Certificate]:
    roots = []
    for der in ssl.create_default_context().get_ca_certs(binary_form=True):
        # Some old roots in system bundles break RFC 5280 (a serial of 0 or below): cryptography
        # warns about them, and will refuse them. They can stay out.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.suppress(ValueError):
                roots.append(x509.load_der_x509_certificate(der))
    return roots


# --- what the server sends -----------------------------------------------------------------------


def fetch_chain(target: Target, servername: str | None, timeout: float) -> list[x509.Certificate]:
    """Connect, do a TLS handshake with SNI ``servername``, return the certificates sent, leaf first.

    Nothing is verified during the handshake: a wrong chain is what this is here to show.
    AcmeError (exit 1) with one line when there is no connection or no TLS.
    """
    from OpenSSL import SSL, crypto  # here, not at the top: no other step pays for loading pyOpenSSL

    if timeout <= 0:
        raise UsageError("--timeout must be more than 0 seconds")
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((target.host, target.port), timeout=timeout)
    except ConnectionRefusedError:
        raise AcmeError(f"{target}: connection refused: nothing listens on port {target.port}") from None
    except TimeoutError:
        raise AcmeError(f"{target}: no answer within {timeout:g} s (a firewall dropping packets?)") from None
    except socket.gaierror as exc:
        raise AcmeError(f"{target.host}: the name does not resolve ({exc.strerror})") from None
    except OSError as exc:
        raise AcmeError(f"{target}: cannot connect: {exc.strerror or exc}") from None
    with sock:
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        context.set_verify(SSL.VERIFY_NONE)
        conn = SSL.Connection(context, sock)
        if servername:
            conn.set_tlsext_host_name(servername.encode("ascii"))
        conn.set_connect_state()
        _handshake(conn, sock, deadline, target, timeout)
        sent = conn.get_peer_cert_chain() or []
        with contextlib.suppress(SSL.Error, OSError):
            conn.shutdown()
    if not sent:
        raise AcmeError(f"{target}: the TLS handshake finished but the server sent no certificate")
    return _read_chain([crypto.dump_certificate(crypto.FILETYPE_ASN1, cert) for cert in sent], target)


def _read_chain(ders: list[bytes], target: Target) -> list[x509.Certificate]:
    """The certificates a server sent, each read in full: one the parser refuses is a finding, not a crash."""
    chain, problems = [], []
    for position, der in enumerate(ders, start=1):
        try:
            chain.append(x509.load_der_x509_certificate(der))
        except ValueError as exc:
            problems.append(f"certificate {position}{' (the leaf)' if position == 1 else ''}: {printable(str(exc))}")
    problems = problems or unreadable_certificates(chain)
    if problems:
        raise EndpointError(f"{target} sends a certificate that does not parse:", problems)
    return chain


def _handshake(conn: SSL.Connection, sock: socket.socket, deadline: float, target: Target, timeout: float) -> None:
    """do_handshake on a socket with a timeout: OpenSSL asks to be called again when data can move."""
    from OpenSSL import SSL

    not_tls = "is this a TLS port?"
    while True:
        try:
            conn.do_handshake()
            return
        except SSL.WantReadError:
            ready = (sock,), ()
        except SSL.WantWriteError:
            ready = (), (sock,)
        except SSL.SysCallError as exc:  # (errno, text); (-1, 'Unexpected EOF') when the peer hung up
            reason = exc.args[1] if len(exc.args) > 1 else exc
            raise AcmeError(f"{target}: the connection closed during the TLS handshake ({reason}): {not_tls}") from None
        except SSL.Error as exc:
            raise AcmeError(f"{target}: TLS handshake failed ({_openssl_reason(exc)}): {not_tls}") from None
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not any(select.select(*ready, (), remaining)[:2]):
            raise AcmeError(f"{target}: no TLS handshake within {timeout:g} s: {not_tls}")


def _openssl_reason(exc: Exception) -> str:
    """'wrong version number' from pyOpenSSL's [(library, function, reason), ...]."""
    entries = exc.args[0] if exc.args and isinstance(exc.args[0], list) else []
    reasons = [entry[-1] for entry in entries if isinstance(entry, tuple) and entry]
    return ", ".join(reasons) or str(exc) or type(exc).__name__


def wait_for(leaf: x509.Certificate, fetch: Callable[[], list[x509.Certificate]], wait: float, *,
             show: bool = True) -> list[x509.Certificate]:
    """Ask again every WAIT_INTERVAL seconds until the server sends ``leaf``, for ``wait`` seconds at most
    (plus the last attempt's own time, at most the connection --timeout).

    Returns the last chain seen, new or not; connection failures count as "not yet" until the
    time is up, then the last one is raised. With ``show``, one line of dots, one per attempt.
    """
    started = time.monotonic()
    deadline = started + wait
    dots = 0
    try:
        while True:
            try:
                served = fetch()
                if served[0] == leaf:
                    return served
                failure = None
            except AcmeError as exc:
                failure = exc
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if failure:
                    raise failure
                return served
            if show:
                if not dots:
                    _write(f"  not cert.pem yet; asking every {WAIT_INTERVAL:g} s for up to {wait:g} s ")
                _write(".")
                dots += 1
            time.sleep(min(WAIT_INTERVAL, remaining))  # the last attempt comes when the time is up
    finally:
        if dots:
            _write(f" {time.monotonic() - started:.0f} s\n")


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


# --- comparing -----------------------------------------------------------------------------------


def covers(names: list[str], host: str) -> bool:
    """Does any of the certificate's DNS ``names`` match ``host``? (RFC 6125 §6.4.3)

    A wildcard is only a whole leftmost ``*`` label and stands for exactly one label:
    ``*.example.com`` covers ``a.example.com``, not ``example.com`` or ``a.b.example.com``.
    """
    host = host.lower().removesuffix(".")
    for name in names:
        name = name.lower().removesuffix(".")
        if name == host:
            return True
        if name.startswith("*.") and "*" not in name[2:]:
            first, _, rest = host.partition(".")
            if first and rest == name[2:]:
                return True
    return False


def subject(cert: x509.Certificate) -> str:
    """The subject as RFC 4514 text, cut and escaped: a server may send anything there."""
    return bounded(cert.subject.rfc4514_string()) if len(cert.subject) else "(empty subject)"


def _names(cert: x509.Certificate) -> str:
    """The certificate's DNS names and IP addresses, comma-separated, cut and escaped."""
    return bounded(", ".join(san_names(cert) + ip_sans(cert)))


def describe_chain(served: list[x509.Certificate], now: datetime.datetime) -> list[str]:
    """One line per certificate sent: the leaf's names and validity, then each intermediate's subject."""
    leaf, *rest = served
    lines = [f"leaf: {_names(leaf) or subject(leaf)}; {summary(leaf, now)}"]
    lines += [f"then: {subject(cert)}" for cert in rest]
    return lines


def findings(served: list[x509.Certificate], leaf: x509.Certificate, chain: list[x509.Certificate],
             name: str, roots: Roots | None, now: datetime.datetime) -> list[str]:
    """Everything wrong with what the server sent, one line each; empty when it serves the new certificate well.

    ``leaf`` and ``chain`` are cert.pem and chain.pem, ``name`` the host name (or IP address)
    clients ask for, ``roots`` what to verify against (None: only compare).
    """
    problems = []
    sent, *intermediates = served
    if sent != leaf:
        age = "an older certificate" if sent.not_valid_before_utc < leaf.not_valid_before_utc else "another certificate"
        problems.append(f"serves {age} ({summary(sent)}), not cert.pem ({summary(leaf)}): "
                        "install the new files and reload the server")
    if sent.not_valid_after_utc < now:
        problems.append(f"the certificate it serves expired on {sent.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    elif sent.not_valid_before_utc > now:
        problems.append(f"the certificate it serves is not valid before {sent.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")
    ip = ipaddress_or_none(name)
    covered = str(ip) in ip_sans(sent) if ip is not None else covers(san_names(sent), name)
    if not covered:
        listed = _names(sent) or "none"
        problems.append(f"the certificate it serves does not cover {name} (its names: {listed})")
    problems += _chain_findings(intermediates, chain)
    if roots is not None and covered:  # uncovered, every client refuses it anyway: said above
        problems += _trust_findings(served, name, roots, now)
    return problems


def _chain_findings(sent: list[x509.Certificate], expected: list[x509.Certificate]) -> list[str]:
    """chain.pem's intermediates must all be sent, right after the leaf, in chain.pem's order."""
    problems = []
    for position, cert in enumerate(expected, start=1):
        if cert not in sent:
            problems.append(f"missing intermediate: {subject(cert)} (chain.pem #{position}); clients that do not "
                            "have it cached cannot reach a root: configure the server with fullchain.pem, not cert.pem")
    present = [cert for cert in expected if cert in sent]
    if present and sent[:len(present)] != present:
        order = ", ".join(subject(c) for c in sent)
        problems.append(f"intermediates out of order: it sends {order}; chain.pem has them as "
                        f"{', '.join(subject(c) for c in present)}, each right after the one it signs")
    return problems


def _trust_findings(served: list[x509.Certificate], name: str, roots: Roots, now: datetime.datetime) -> list[str]:
    """Can a client build a path from the leaf, through what was sent, to one of ``roots``? (RFC 5280 §6)"""
    from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

    ip = ipaddress_or_none(name)
    subject_name = x509.IPAddress(ip) if ip is not None else x509.DNSName(name)
    try:
        verifier = PolicyBuilder().store(Store(roots.certificates)).time(now).build_server_verifier(subject_name)
    except ValueError as exc:  # a name no public certificate can hold, such as one with "_"
        return [f"cannot verify a certificate for {name}: {exc}"]
    try:
        verifier.verify(served[0], served[1:])
    except VerificationError as exc:
        hint = "" if roots.private else "; a private CA? pass its root with --ca-bundle"
        return [f"not trusted: no path from what it sends to {roots.label} ({exc}){hint}"]
    return []
