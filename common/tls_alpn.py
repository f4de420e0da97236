"""The tls-alpn-01 challenge (RFC 8737): a challenge certificate, and a TLS server that shows it only to the CA.

For a tls-alpn-01 challenge the CA connects to port 443 of the identifier and starts a TLS
handshake that offers one application protocol, ALPN ``acme-tls/1``, with the identifier as
the server name (SNI). The client must answer that handshake with a self-signed certificate
made for the challenge (:func:`challenge_certificate`): its only subjectAltName is the
identifier, and its critical ``acmeIdentifier`` extension holds SHA-256 of the key
authorization (RFC 8555 §8.1). Nothing is sent after the handshake; the CA closes.

IP addresses (RFC 8738 §6): TLS may not carry an address in SNI (RFC 6066 §3), so the CA
sends the address's reverse name instead (:func:`reverse_name`: ``1.2.0.192.in-addr.arpa``),
and the certificate's one subjectAltName is the address itself (an iPAddress entry).

:class:`ChallengeServer` (``with tls_alpn.server(443) as server: server.publish(certs)``)
answers those handshakes from threads of the step, several at once (CAs validate from several
places, Pebble opens several connections per challenge), and refuses every other handshake
*before* any certificate is sent: one that does not offer ``acme-tls/1`` (an ordinary HTTPS
client, or one with no ALPN extension at all), or that names an identifier not being
validated. Why that needs care, and how it is done, is told at :class:`ChallengeServer`.

A wildcard cannot be proved this way (the CA would have to connect to ``*.example.com``).
"""

from __future__ import annotations

import datetime
import errno
import hashlib
import ipaddress
import logging
import select
import socket
import struct
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .errors import UsageError
from .listener import Server, client_address, listen_address
from .names import count

if TYPE_CHECKING:
    from OpenSSL import SSL

log = logging.getLogger("acme")

TLS_ALPN01 = "tls-alpn-01"
ACME_TLS_1 = "acme-tls/1"  # RFC 8737 §6.2: the ALPN protocol name the CA offers, and the only one answered
# RFC 8737 §6.1: id-pe-acmeIdentifier, { id-pe 31 }.
ID_PE_ACME_IDENTIFIER = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")
TLS_PORT = 443  # the CA always connects to port 443 (RFC 8737 §3); only test CAs such as Pebble let you change it

CERT_VALIDITY = datetime.timedelta(days=7)  # the CA checks no dates; short, since the certificate is thrown away
CLOCK_SKEW = datetime.timedelta(hours=1)
HANDSHAKE_TIMEOUT = 10.0  # per connection: a client that goes quiet loses its connection, not a thread
MAX_CONNECTIONS = 64  # at once; more are closed unanswered (port 443 of a public address gets scanned)
MAX_CLIENT_HELLO = 32 * 1024  # a ClientHello is 200 bytes to 2 KB; post-quantum key shares make it grow
POLL = 0.2  # how often waiting threads look whether the server is stopping

# TLS alert descriptions (RFC 8446 §6) sent when a handshake is refused before OpenSSL sees it.
ALERT_HANDSHAKE_FAILURE = 40
ALERT_UNRECOGNIZED_NAME = 112
ALERT_NO_APPLICATION_PROTOCOL = 120


# --- names and the certificate -----------------------------------------------------------------


def reverse_name(address: str) -> str:
    """The reverse name the CA sends as SNI for an IP identifier (RFC 8738 §6).

    ``192.0.2.1`` -> ``1.2.0.192.in-addr.arpa`` (RFC 1034 §3.5); an IPv6 address gives its 32
    nibbles, lowest first, under ``ip6.arpa`` (RFC 3596 §2.5). Without the trailing dot, as
    SNI carries names (RFC 6066 §3). ValueError for text that is not an address.
    """
    return ipaddress.ip_address(address).reverse_pointer


def server_name(identifier: Mapping[str, str]) -> str:
    """The SNI the CA sends for ``identifier`` ({"type": "dns"|"ip", "value": ...}): the name, or the reverse name."""
    kind, value = identifier.get("type"), identifier.get("value", "")
    if kind == "ip":
        return reverse_name(value)
    if kind == "dns":
        if value.startswith("*."):
            raise ValueError(f"{value}: tls-alpn-01 cannot prove a wildcard (the CA cannot connect to it); "
                             "use dns-01")
        return value.rstrip(".").lower()
    raise ValueError(f"tls-alpn-01 proves dns and ip identifiers, not {kind!r}")


def key_authorization_digest(key_authorization: str) -> bytes:
    """SHA-256 of the key authorization (RFC 8737 §3): the 32 bytes the acmeIdentifier extension carries."""
    return hashlib.sha256(key_authorization.encode("ascii")).digest()


def acme_identifier_value(key_authorization: str) -> bytes:
    """The acmeIdentifier extension's value (RFC 8737 §3, §6.1): DER of ``Authorization ::= OCTET STRING (SIZE (32))``.

    An extension's value is itself DER, so the 32 bytes are wrapped: tag 04 (OCTET STRING),
    length 0x20, then the digest. CAs decode the DER (Boulder and Pebble use ASN.1
    unmarshalling), so the bare 32 bytes would fail.
    """
    digest = key_authorization_digest(key_authorization)
    return bytes((0x04, len(digest))) + digest


@dataclass(frozen=True)
class ChallengeCertificate:
    """The certificate answering one tls-alpn-01 challenge, its throwaway key, and what it was made from."""

    identifier: dict[str, str]  # {"type": "dns"|"ip", "value": ...}, as the authorization names it
    server_name: str  # the SNI the CA sends for it
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey = field(repr=False)
    digest: bytes  # SHA-256 of the key authorization

    def describe(self) -> list[str]:
        """What the certificate holds, one line each, for ``-v`` (no key material)."""
        kind = "iPAddress" if self.identifier["type"] == "ip" else "dNSName"
        return [
            f"challenge certificate for {self.identifier['value']} (SNI {self.server_name}):",
            f"  subjectAltName: {kind} {self.identifier['value']} (the only entry)",
            f"  acmeIdentifier {ID_PE_ACME_IDENTIFIER.dotted_string} (critical): {self.digest.hex()}",
            "    = SHA-256 of the key authorization (token \".\" account key thumbprint), as DER OCTET STRING",
            f"  self-signed, valid until {self.certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC",
        ]


def challenge_certificate(identifier: Mapping[str, str], key_authorization: str, *,
                          now: datetime.datetime | None = None) -> ChallengeCertificate:
    """A self-signed certificate answering a tls-alpn-01 challenge for ``identifier`` (RFC 8737 §3).

    What RFC 8737 §3 asks, and why:
    - exactly one subjectAltName: the dNSName being validated, or for an IP identifier the
      iPAddress (RFC 8738 §6). One only, so the certificate proves this identifier and no other;
    - the acmeIdentifier extension holding SHA-256 of the key authorization, which only the
      account key's holder can compute for this token: that is the proof;
    - that extension critical, so software that does not know it rejects the certificate: it
      can never be mistaken for an ordinary server certificate.
    The key is fresh (ECDSA P-256) and used for nothing else; the CA checks neither the key nor
    the dates, so the validity is short and starts an hour early for clock skew.
    ValueError for a wildcard or an identifier type other than dns and ip.
    """
    sni = server_name(identifier)
    value = identifier["value"]
    if identifier["type"] == "ip":
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(value))
    else:
        san = x509.DNSName(sni)
    key = ec.generate_private_key(ec.SECP256R1())
    now = now or datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ACME tls-alpn-01 challenge")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)  # self-signed: the CA does not check who signed it
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .add_extension(x509.UnrecognizedExtension(ID_PE_ACME_IDENTIFIER, acme_identifier_value(key_authorization)),
                       critical=True)
        .sign(key, hashes.SHA256())
    )
    return ChallengeCertificate({"type": identifier["type"], "value": value}, sni, certificate, key,
                                key_authorization_digest(key_authorization))


# --- reading the ClientHello -------------------------------------------------------------------


@dataclass(frozen=True)
class ClientHello:
    """What a ClientHello asks for: the SNI host name and the ALPN protocols (None: no such extension)."""

    server_name: str | None
    alpn: tuple[bytes, ...] | None
    size: int  # bytes of TLS records it took, so a refused one can be read off the socket


class ClientHelloError(ValueError):
    """The first bytes are not a TLS ClientHello (or not a well-formed one)."""


class _Reader:
    """A cursor over bytes that raises ClientHelloError when a length runs past the end."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise ClientHelloError("truncated ClientHello")
        chunk = self.data[self.at:self.at + n]
        self.at += n
        return chunk

    def number(self, width: int) -> int:
        return int.from_bytes(self.take(width), "big")

    def vector(self, width: int) -> _Reader:
        return _Reader(self.take(self.number(width)))

    @property
    def left(self) -> int:
        return len(self.data) - self.at


def parse_client_hello(data: bytes) -> ClientHello | int:
    """The ClientHello at the start of ``data`` (TLS records as received), or how many bytes it needs in all.

    ClientHelloError when the bytes cannot be a TLS ClientHello. Only the two extensions that matter
    here are read (RFC 8446 §4.1.2 and §4.2, RFC 6066 §3, RFC 7301 §3.1); a ClientHello may
    span several handshake records, which are joined.
    """
    handshake, at = b"", 0
    while True:
        if len(data) < at + 5:
            return at + 5
        kind, version, length = struct.unpack("!BHH", data[at:at + 5])
        if kind != 22 or version >> 8 != 3 or not 0 < length <= 2 ** 14 + 256:
            raise ClientHelloError("not a TLS handshake record")
        if len(data) < at + 5 + length:
            return at + 5 + length
        handshake += data[at + 5:at + 5 + length]
        at += 5 + length
        if len(handshake) >= 4:
            if handshake[0] != 1:
                raise ClientHelloError("the first handshake message is not a ClientHello")
            needed = 4 + int.from_bytes(handshake[1:4], "big")
            if needed > MAX_CLIENT_HELLO:
                raise ClientHelloError("ClientHello too large")
            if len(handshake) >= needed:
                if len(handshake) > needed:
                    raise ClientHelloError("more than a ClientHello in its records")
                break
    body = _Reader(handshake[4:])
    body.take(2 + 32)  # legacy_version, random
    body.vector(1)  # legacy_session_id
    body.vector(2)  # cipher_suites
    body.vector(1)  # legacy_compression_methods
    if not body.left:
        return ClientHello(None, None, at)  # no extensions at all (TLS 1.2 allows that)
    extensions = body.vector(2)
    if body.left:
        raise ClientHelloError("bytes after the extensions")
    seen: set[int] = set()
    name: str | None = None
    alpn: tuple[bytes, ...] | None = None
    while extensions.left:
        kind, content = extensions.number(2), extensions.vector(2)
        if kind in seen:
            raise ClientHelloError(f"extension {kind} twice")  # OpenSSL refuses that too
        seen.add(kind)
        if kind == 0:  # server_name (RFC 6066 §3): one host_name entry (type 0) at most
            names = content.vector(2)
            while names.left:
                name_type, host = names.number(1), names.vector(2).data
                if name_type == 0:
                    if name is not None:
                        raise ClientHelloError("two host names in server_name")
                    name = host.decode("ascii", "replace")
        elif kind == 16:  # application_layer_protocol_negotiation (RFC 7301 §3.1)
            protocols = content.vector(2)
            found = []
            while protocols.left:
                found.append(protocols.vector(1).data)
            alpn = tuple(found)
    return ClientHello(name, alpn, at)


# --- the server ---------------------------------------------------------------------------------


class _RefusedError(Exception):
    """Raised in OpenSSL's ALPN callback to abort a handshake with a no_application_protocol alert."""


def _alert(description: int) -> bytes:
    """A fatal TLS alert record, sent in the clear as a server does before its ServerHello (RFC 8446 §6)."""
    return bytes((21, 3, 3, 0, 2, 2, description))


class ChallengeServer(Server):
    """A TLS server answering tls-alpn-01 handshakes (RFC 8737 §3) from threads of the step.

    It listens from ``__enter__`` to ``__exit__`` on ``port`` of ``address`` (default: every
    address, IPv6 and IPv4). For each connection it reads the ClientHello first, without
    taking it off the socket (MSG_PEEK), and decides from it:

    - ``acme-tls/1`` offered, SNI naming a published identifier: a TLS handshake (1.2 or
      newer, RFC 8737 §4) with that identifier's challenge certificate, ALPN ``acme-tls/1``;
      then the connection is closed, as the CA closes it too;
    - ``acme-tls/1`` not offered (other protocols only, or no ALPN extension at all): a fatal
      no_application_protocol alert, and no certificate;
    - an SNI not published (or none): a fatal unrecognized_name alert, and no certificate.

    Why decide before OpenSSL answers: the certificate leaves in the server's first flight,
    and OpenSSL picks it before it asks about ALPN in TLS 1.2 (with TLS 1.3 the order is the
    other way round). Its ALPN callback is not called at all when the client sends no ALPN
    extension, and when no protocol matches OpenSSL goes on without one. So looking at the
    negotiated protocol after the handshake is too late: the certificate has been shown. The
    ClientHello is the one place that says what the client asked for before we answer.

    Each connection has ``handshake_timeout`` seconds in all; at most MAX_CONNECTIONS are
    served at once. ``stop()`` (or leaving the ``with`` block) closes the listening socket and
    every connection, and returns once every thread has ended.

    Why pyOpenSSL (its SSL module only) rather than Python's ssl: the challenge certificate and
    its key stay in memory (ssl loads them from files only), and its ALPN callback can abort a
    handshake (ssl's goes on without a protocol), which guards the decision above once more.
    """

    def __init__(self, port: int = TLS_PORT, address: str | None = None, *,
                 handshake_timeout: float = HANDSHAKE_TIMEOUT) -> None:
        self.port = port
        self.address = address
        self.handshake_timeout = handshake_timeout
        self.served: set[tuple[str, str]] = set()  # (SNI, client address) pairs answered so far
        self._certs: dict[str, ChallengeCertificate] = {}
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._connections: dict[threading.Thread, socket.socket] = {}

    # -- running --

    def start(self) -> None:
        """Listen (a UsageError when the port is taken or needs root), then serve from a thread."""
        family, address, dual_stack = listen_address(self.address, self.port)
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as http.server does: TIME_WAIT is no conflict
            if dual_stack:  # one IPv6 socket that takes IPv4 too: the CA may come either way
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(address)
            sock.listen(128)
        except OSError as exc:
            sock.close()
            raise UsageError(self._bind_error(exc)) from None
        self.port = sock.getsockname()[1]  # the one the system chose, for port 0
        self._socket = sock
        self._stopping.clear()
        self._thread = threading.Thread(target=self._accept, name="tls-alpn-01 server", daemon=True)
        self._thread.start()
        log.info("Listening for the CA's tls-alpn-01 handshakes on %s", self.where)

    def _bind_error(self, exc: OSError) -> str:
        if exc.errno in (errno.EACCES, errno.EPERM):
            return (f"cannot listen on {self.where}: ports below 1024 need root (or the CAP_NET_BIND_SERVICE "
                    "capability); run as root, or let the web server on port 443 pass acme-tls/1 handshakes to "
                    "another port (--tls-port) as the docs show for nginx")
        if exc.errno == errno.EADDRINUSE:
            return (f"cannot listen on {self.where}: another program (a web server?) already does; stop it for "
                    "the run, or let it pass acme-tls/1 handshakes to another port (--tls-port) as the docs show "
                    "for nginx")
        if exc.errno == errno.EADDRNOTAVAIL:
            return f"--bind {self.address}: not an address of this machine"
        return f"cannot listen on {self.where}: {exc.strerror or exc}"

    def publish(self, certificates: Iterable[ChallengeCertificate]) -> list[str]:
        """Answer these challenges from now on (and no others); returns the server names (SNI) served."""
        if self._socket is None:
            raise RuntimeError("the tls-alpn-01 server is not running")
        certs = {cert.server_name: cert for cert in certificates}
        self._certs = certs  # one assignment: the connection threads see all or nothing
        log.info("Serving %s:", count(len(certs), "challenge certificate"))
        for name, cert in certs.items():
            label = cert.identifier["value"]
            log.info("  %s%s", label, "" if name == label else f" (SNI {name})")
        return list(certs)

    def stop(self) -> None:
        """Stop listening, end every connection, wait for the threads; safe to call again."""
        if self._socket is None:
            return
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            threads = list(self._connections)
        for thread in threads:  # each looks at _stopping at least every POLL seconds
            thread.join(self.handshake_timeout)
        self._socket.close()
        self._socket, self._thread = None, None
        log.info("Stopped the tls-alpn-01 server on %s", self.where)

    def _accept(self) -> None:
        assert self._socket is not None
        listener = self._socket
        while not self._stopping.is_set():
            if not select.select([listener], [], [], POLL)[0]:
                continue
            try:
                conn, peer = listener.accept()
            except OSError:
                continue  # the client gave up meanwhile (ECONNABORTED)
            with self._lock:
                if len(self._connections) >= MAX_CONNECTIONS:
                    log.debug("  %s: too many connections at once, closed", client_address(peer[0]))
                    conn.close()
                    continue
                thread = threading.Thread(target=self._serve, args=(conn, client_address(peer[0])),
                                          name="tls-alpn-01 connection", daemon=True)
                self._connections[thread] = conn
            thread.start()

    # -- one connection --

    def _serve(self, conn: socket.socket, client: str) -> None:
        deadline = time.monotonic() + self.handshake_timeout
        try:
            conn.setblocking(False)
            hello = self._read_hello(conn, deadline)
            if hello is None:
                return
            cert = self._certs.get((hello.server_name or "").rstrip(".").lower())
            if hello.alpn is None or ACME_TLS_1.encode() not in hello.alpn:
                offered = "no ALPN" if hello.alpn is None else "ALPN " + ", ".join(
                    p.decode("ascii", "replace") for p in hello.alpn)
                log.debug("  refused a handshake from %s: %s, not %s", client, offered, ACME_TLS_1)
                self._refuse(conn, hello, ALERT_NO_APPLICATION_PROTOCOL)
            elif cert is None:
                # A CA asking for a name this run does not prove: worth a line, it is usually a setup mistake.
                log.info("  refused an %s handshake from %s for %s: not an identifier being validated",
                         ACME_TLS_1, client, hello.server_name or "no server name (SNI)")
                self._refuse(conn, hello, ALERT_UNRECOGNIZED_NAME)
            else:
                self._handshake(conn, cert, deadline, client)
        except ClientHelloError as exc:
            log.debug("  closed a connection from %s: %s", client, exc)
        except OSError as exc:
            log.debug("  connection from %s: %s", client, exc.strerror or exc)
        finally:
            conn.close()
            with self._lock:
                self._connections.pop(threading.current_thread(), None)

    def _wait(self, conn: socket.socket, deadline: float, *, write: bool = False) -> bool:
        """Wait until ``conn`` can be read (or written); False at the deadline or when the server stops."""
        while not self._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            ready = select.select(*(([], [conn]) if write else ([conn], [])), [], min(remaining, POLL))
            if ready[0] or ready[1]:
                return True
        return False

    def _read_hello(self, conn: socket.socket, deadline: float) -> ClientHello | None:
        """Peek at the ClientHello (it stays on the socket for OpenSSL); None if the client went quiet or away."""
        while self._wait(conn, deadline):
            data = conn.recv(MAX_CLIENT_HELLO + 1024, socket.MSG_PEEK)
            if not data:
                return None  # closed before saying anything
            result = parse_client_hello(data)
            if isinstance(result, ClientHello):
                return result
            if len(data) >= MAX_CLIENT_HELLO + 1024:
                raise ClientHelloError("ClientHello too large")
            time.sleep(0.01)  # the rest is on its way; select would only repeat that some bytes are here
        return None

    def _refuse(self, conn: socket.socket, hello: ClientHello, alert: int) -> None:
        """A fatal alert instead of a ServerHello: the client learns why, and gets no certificate."""
        left = hello.size
        while left > 0:  # read what was peeked, so closing sends FIN, not a reset that could overtake the alert
            chunk = conn.recv(left)
            if not chunk:
                return
            left -= len(chunk)
        conn.sendall(_alert(alert))
        conn.shutdown(socket.SHUT_WR)

    def _handshake(self, conn: socket.socket, cert: ChallengeCertificate, deadline: float, client: str) -> None:
        from OpenSSL import SSL  # here, not at the top: only this step pays for loading pyOpenSSL

        def choose(connection: SSL.Connection, offered: list[bytes]) -> bytes:
            # The ClientHello was read above; OpenSSL read it again. Refuse if the two disagree.
            sni = (connection.get_servername() or b"").decode("ascii", "replace").rstrip(".").lower()
            if ACME_TLS_1.encode() not in offered or sni != cert.server_name:
                raise _RefusedError(f"OpenSSL saw ALPN {offered} and SNI {sni!r}")
            return ACME_TLS_1.encode()

        context = SSL.Context(SSL.TLS_SERVER_METHOD)  # one per connection: its callback's errors stay its own
        context.set_min_proto_version(SSL.TLS1_2_VERSION)  # RFC 8737 §4: TLS 1.2 or newer only
        context.set_options(SSL.OP_NO_TICKET)  # nothing will resume this
        context.use_certificate(cert.certificate)
        context.use_privatekey(cert.key)
        context.set_alpn_select_callback(choose)
        connection = SSL.Connection(context, conn)
        connection.set_accept_state()
        while True:
            try:
                connection.do_handshake()
                break
            except SSL.WantReadError:
                ready = self._wait(conn, deadline)
            except SSL.WantWriteError:
                ready = self._wait(conn, deadline, write=True)
            except (SSL.Error, _RefusedError) as exc:
                log.debug("  handshake with %s for %s failed: %s", client, cert.server_name, exc)
                return
            if not ready:
                log.debug("  handshake with %s for %s: no progress, closed", client, cert.server_name)
                return
        first = (cert.server_name, client) not in self.served
        self.served.add((cert.server_name, client))
        # CAs connect from several places, several times each: one line per place is enough.
        log.log(logging.INFO if first else logging.DEBUG, "  showed the challenge certificate for %s to %s",
                cert.identifier["value"], client)
        try:
            connection.shutdown()  # close_notify; the CA sends nothing more (RFC 8737 §3)
        except (SSL.Error, OSError):
            pass


def server(port: int = TLS_PORT, address: str | None = None) -> ChallengeServer:
    """``with tls_alpn.server(443) as server: server.publish([challenge_certificate(...)])`` (RFC 8737 §3)."""
    return ChallengeServer(port, address)
