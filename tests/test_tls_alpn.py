"""tls-alpn-01 (RFC 8737) and the reverse names of RFC 8738 §6: common/tls_alpn.py.

The challenge certificate is checked against RFC 8737's rules with values computed here
independently; the server is talked to by real TLS clients (Python's ssl, Pebble's Go VA),
directly and through a real nginx that routes by ALPN (ssl_preread).
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.util
import ipaddress
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID
from helpers import ROOT, free_port, run_script, unique
from servers import Stream

from common import jws, tls_alpn
from common.errors import UsageError

# RFC 8555 §8.3's example key authorization (token "." thumbprint).
KEY_AUTHZ = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
DNS = {"type": "dns", "value": "example.com"}
IPV4 = {"type": "ip", "value": "192.0.2.1"}
IPV6 = {"type": "ip", "value": "2001:db8::1"}
# RFC 8738 §6's example: the SNI for 2001:db8::1.
IPV6_REVERSE = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"


def _acme_extension(cert: x509.Certificate) -> x509.Extension:
    return cert.extensions.get_extension_for_oid(x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31"))


# --- the challenge certificate -----------------------------------------------------------------


def test_acme_identifier_is_the_der_octet_string_of_the_sha256_of_the_key_authorization():
    digest = hashlib.sha256(KEY_AUTHZ.encode()).digest()
    challenge = tls_alpn.challenge_certificate(DNS, KEY_AUTHZ)
    extension = _acme_extension(challenge.certificate)
    assert extension.critical
    assert extension.value.value == b"\x04\x20" + digest  # OCTET STRING, 32 bytes, the digest
    assert challenge.digest == digest
    # The same digest as dns-01's TXT value for RFC 8555 §8.3's key authorization (as in Boulder's tests),
    # in another encoding.
    assert jws.b64url(digest) == "LPsIwTo7o8BoG0-vjCyGQGBWSVIPxI-i_X336eUOQZo"
    # And as a CA decodes it: DER, one OCTET STRING, nothing after it.
    from cryptography.hazmat.primitives.serialization import Encoding
    der = challenge.certificate.public_bytes(Encoding.DER)
    assert b"\x06\x08\x2b\x06\x01\x05\x05\x07\x01\x1f\x01\x01\xff\x04\x22\x04\x20" + digest in der


@pytest.mark.parametrize("identifier, kind, value", [
    (DNS, x509.DNSName, "example.com"),
    (IPV4, x509.IPAddress, ipaddress.ip_address("192.0.2.1")),
    (IPV6, x509.IPAddress, ipaddress.ip_address("2001:db8::1")),
])
def test_exactly_one_subject_alt_name_of_the_identifiers_type(identifier, kind, value):
    cert = tls_alpn.challenge_certificate(identifier, KEY_AUTHZ).certificate
    names = list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    assert names == [kind(value)]


def test_self_signed_with_a_fresh_key_and_a_short_life():
    now = datetime.datetime.now(datetime.timezone.utc)
    one, two = (tls_alpn.challenge_certificate(DNS, KEY_AUTHZ) for _ in range(2))
    cert = one.certificate
    assert cert.issuer == cert.subject
    cert.verify_directly_issued_by(cert)  # its own key signed it
    assert isinstance(one.key, ec.EllipticCurvePrivateKey)
    assert one.key.public_key().public_numbers() != two.key.public_key().public_numbers()
    assert cert.public_key().public_numbers() == one.key.public_key().public_numbers()
    assert cert.not_valid_before_utc <= now <= cert.not_valid_after_utc
    assert cert.not_valid_after_utc - now <= datetime.timedelta(days=8)
    # Nothing a CA could mistake for more: the SAN and the acmeIdentifier are all it holds.
    assert {e.oid for e in cert.extensions} == {ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
                                                 tls_alpn.ID_PE_ACME_IDENTIFIER}


def test_describe_says_what_the_certificate_holds_and_no_key():
    challenge = tls_alpn.challenge_certificate(IPV4, KEY_AUTHZ)
    text = "\n".join(challenge.describe())
    assert "iPAddress 192.0.2.1" in text and "1.2.0.192.in-addr.arpa" in text
    assert hashlib.sha256(KEY_AUTHZ.encode()).hexdigest() in text
    assert "PRIVATE" not in text and "key=" not in repr(challenge)


def test_wildcards_and_other_identifier_types_are_refused():
    with pytest.raises(ValueError, match="wildcard.*dns-01"):
        tls_alpn.challenge_certificate({"type": "dns", "value": "*.example.com"}, KEY_AUTHZ)
    with pytest.raises(ValueError, match="not 'email'"):
        tls_alpn.challenge_certificate({"type": "email", "value": "a@example.com"}, KEY_AUTHZ)
    with pytest.raises(ValueError):
        tls_alpn.challenge_certificate({"type": "ip", "value": "example.com"}, KEY_AUTHZ)


# --- reverse names (RFC 8738 §6) -----------------------------------------------------------------


@pytest.mark.parametrize("address, name", [
    ("192.0.2.1", "1.2.0.192.in-addr.arpa"),
    ("2001:db8::1", IPV6_REVERSE),  # RFC 8738 §6's example
    ("2001:DB8:0:0:0:0:0:1", IPV6_REVERSE),  # any textual form of the same address
    ("::1", "1." + "0." * 31 + "ip6.arpa"),
])
def test_reverse_names(address, name):
    assert tls_alpn.reverse_name(address) == name
    assert not name.endswith(".")  # SNI carries no trailing dot (RFC 6066 §3)


def test_reverse_name_by_hand():
    """The nibbles of RFC 3596 §2.5, computed without the ipaddress module."""
    packed = socket.inet_pton(socket.AF_INET6, "2001:db8::1")
    nibbles = "".join(f"{b:02x}" for b in packed)[::-1]
    assert ".".join(nibbles) + ".ip6.arpa" == IPV6_REVERSE == tls_alpn.server_name(IPV6)
    assert tls_alpn.server_name(IPV4) == "1.2.0.192.in-addr.arpa"
    assert tls_alpn.server_name(DNS) == "example.com"


# --- reading a ClientHello ------------------------------------------------------------------------


def _client_hello(server_name: str | None, alpn: list[str] | None,
                  version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3) -> bytes:
    """The bytes Python's ssl sends first as a client."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.maximum_version = version
    if alpn:
        context.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def test_parse_client_hello():
    data = _client_hello("example.com", ["h2", "acme-tls/1"])
    hello = tls_alpn.parse_client_hello(data)
    assert hello == tls_alpn.ClientHello("example.com", (b"h2", b"acme-tls/1"), len(data))
    assert tls_alpn.parse_client_hello(_client_hello("example.com", None)).alpn is None
    assert tls_alpn.parse_client_hello(_client_hello(None, ["acme-tls/1"])).server_name is None
    # Part of it: how much is needed in all.
    assert tls_alpn.parse_client_hello(data[:3]) == 5
    assert tls_alpn.parse_client_hello(data[:100]) == len(data)


def test_parse_client_hello_split_over_records():
    data = _client_hello("example.com", ["acme-tls/1"], ssl.TLSVersion.TLSv1_2)
    body = data[5:]
    split = b"".join(bytes((22, 3, 1)) + len(part).to_bytes(2, "big") + part for part in (body[:50], body[50:]))
    hello = tls_alpn.parse_client_hello(split)
    assert (hello.server_name, hello.alpn, hello.size) == ("example.com", (b"acme-tls/1",), len(split))


def test_parse_client_hello_without_extensions():
    body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x00\x2f" + b"\x01\x00"
    record = bytes((22, 3, 1)) + (len(body) + 4).to_bytes(2, "big") + b"\x01" + len(body).to_bytes(3, "big") + body
    assert tls_alpn.parse_client_hello(record) == tls_alpn.ClientHello(None, None, len(record))


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",  # plain HTTP on the TLS port
    b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00",  # a handshake record, but a ServerHello
    b"\x16\x03\x01\x00\x08\x01\x00\x00\x04\x03\x03\x00\x00",  # a ClientHello cut inside its fields
])
def test_parse_client_hello_refuses_what_is_not_one(data):
    with pytest.raises(tls_alpn.ClientHelloError):
        tls_alpn.parse_client_hello(data)


# --- the server -----------------------------------------------------------------------------------


def _context(alpn: list[str] | None, version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # a self-signed certificate, as the CA sees it
    if version:
        context.minimum_version = context.maximum_version = version
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


def handshake(port: int, server_name: str | None, alpn: list[str] | None = None,
              version: ssl.TLSVersion | None = None, host: str = "127.0.0.1") -> tuple[str | None, x509.Certificate]:
    """A TLS handshake as a CA's VA does it; returns the ALPN protocol chosen and the certificate shown."""
    with socket.create_connection((host, port), timeout=10) as sock, \
            _context(alpn, version).wrap_socket(sock, server_hostname=server_name) as tls:
        return tls.selected_alpn_protocol(), x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def raw_answer(port: int, hello: bytes) -> bytes:
    """Everything the server sends back to ``hello``, until it closes."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(hello)
        while chunk := sock.recv(4096):
            received += chunk
    return received


@pytest.fixture
def served():
    """A running server on a free port, serving the challenges for DNS and IPV4 and IPV6."""
    certs = [tls_alpn.challenge_certificate(i, KEY_AUTHZ) for i in (DNS, IPV4, IPV6)]
    with tls_alpn.server(0, "127.0.0.1") as server:
        server.publish(certs)
        yield server


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
@pytest.mark.parametrize("sni, san", [
    ("example.com", x509.DNSName("example.com")),
    ("1.2.0.192.in-addr.arpa", x509.IPAddress(ipaddress.ip_address("192.0.2.1"))),
    (IPV6_REVERSE, x509.IPAddress(ipaddress.ip_address("2001:db8::1"))),
])
def test_an_acme_tls_1_handshake_gets_the_challenge_certificate(served, version, sni, san):
    protocol, cert = handshake(served.port, sni, [tls_alpn.ACME_TLS_1], version)
    assert protocol == "acme-tls/1"
    assert list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value) == [san]
    extension = _acme_extension(cert)
    assert extension.critical and extension.value.value == b"\x04\x20" + hashlib.sha256(KEY_AUTHZ.encode()).digest()
    deadline = time.monotonic() + 5  # the server notes it once its side of the handshake is done too
    while (sni, "127.0.0.1") not in served.served and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (sni, "127.0.0.1") in served.served


def test_an_sni_with_a_trailing_dot_or_capitals_is_the_same_name(served):
    assert handshake(served.port, "Example.COM.", [tls_alpn.ACME_TLS_1])[0] == "acme-tls/1"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
@pytest.mark.parametrize("alpn, alert", [
    (["h2", "http/1.1"], "NO_APPLICATION_PROTOCOL"),  # a browser
    (None, "NO_APPLICATION_PROTOCOL"),  # no ALPN extension at all: OpenSSL would never ask about ALPN
])
def test_a_handshake_without_acme_tls_1_is_refused(served, version, alpn, alert):
    with pytest.raises(ssl.SSLError, match=alert.lower().replace("_", " ")):
        handshake(served.port, "example.com", alpn, version)


@pytest.mark.parametrize("sni", ["other.example.com", "2.2.0.192.in-addr.arpa", "192.0.2.1", None])
def test_an_identifier_not_being_validated_is_refused(served, sni):
    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
        handshake(served.port, sni, [tls_alpn.ACME_TLS_1])


@pytest.mark.parametrize("sni, alpn, alert", [
    ("example.com", ["h2", "http/1.1"], tls_alpn.ALERT_NO_APPLICATION_PROTOCOL),
    ("example.com", None, tls_alpn.ALERT_NO_APPLICATION_PROTOCOL),
    ("other.example.com", [tls_alpn.ACME_TLS_1], tls_alpn.ALERT_UNRECOGNIZED_NAME),
])
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_a_refusal_is_one_alert_and_no_certificate(served, sni, alpn, alert, version):
    """Byte for byte: no ServerHello, so no certificate, whatever the TLS version."""
    answer = raw_answer(served.port, _client_hello(sni, alpn, version))
    assert answer == bytes((21, 3, 3, 0, 2, 2, alert))


def test_not_tls_is_closed_without_an_answer(served):
    try:  # closed with the request unread: the client may see a reset rather than the end
        answer = raw_answer(served.port, b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
    except ConnectionResetError:
        answer = b""
    assert answer == b""


def test_concurrent_handshakes_are_all_answered(served):
    results: list[object] = []

    def one(sni):
        try:
            results.append(handshake(served.port, sni, [tls_alpn.ACME_TLS_1])[0])
        except Exception as exc:  # noqa: BLE001 (collected, then shown by the assertion)
            results.append(exc)

    # Idle connections hold threads of their own; they must not hold up the rest.
    idle = [socket.create_connection(("127.0.0.1", served.port)) for _ in range(5)]
    try:
        threads = [threading.Thread(target=one, args=(sni,))
                   for sni in ["example.com", "1.2.0.192.in-addr.arpa", IPV6_REVERSE] * 6]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
    finally:
        for sock in idle:
            sock.close()
    assert results == ["acme-tls/1"] * 18


def test_stop_returns_promptly_with_an_idle_and_a_half_open_connection():
    server = tls_alpn.server(0, "127.0.0.1")
    server.start()
    server.publish([tls_alpn.challenge_certificate(DNS, KEY_AUTHZ)])
    idle = socket.create_connection(("127.0.0.1", server.port))
    half = socket.create_connection(("127.0.0.1", server.port))
    half.sendall(_client_hello("example.com", [tls_alpn.ACME_TLS_1])[:20])  # a ClientHello that never ends
    time.sleep(0.3)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2
    assert not [t for t in threading.enumerate() if t.name.startswith("tls-alpn-01")]
    idle.settimeout(5)
    assert idle.recv(10) == b""  # closed by the server
    idle.close()
    half.close()
    server.stop()  # again: nothing happens


def test_a_slow_client_loses_its_connection_at_the_timeout():
    with tls_alpn.ChallengeServer(0, "127.0.0.1", handshake_timeout=0.5) as server:
        server.publish([tls_alpn.challenge_certificate(DNS, KEY_AUTHZ)])
        with socket.create_connection(("127.0.0.1", server.port)) as slow:
            slow.settimeout(5)
            started = time.monotonic()
            assert slow.recv(10) == b""
            assert time.monotonic() - started < 3
        assert handshake(server.port, "example.com", [tls_alpn.ACME_TLS_1])[0] == "acme-tls/1"


def test_a_port_in_use_is_a_usage_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UsageError, match="another program.*--tls-port"):
            tls_alpn.server(port, "127.0.0.1").start()


def test_a_privileged_port_without_rights_is_a_usage_error(monkeypatch):
    def refuse(self, address):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(socket.socket, "bind", refuse)
    with pytest.raises(UsageError, match="ports below 1024 need root"):
        tls_alpn.server(443, "127.0.0.1").start()


def test_bind_to_an_address_this_machine_lacks_is_a_usage_error():
    with pytest.raises(UsageError, match="--bind 192.0.2.1: not an address of this machine"):
        tls_alpn.server(free_port(), "192.0.2.1").start()


# --- against Pebble --------------------------------------------------------------------------------


def prove(ca, work, port: int, address: str = "127.0.0.1") -> subprocess.CompletedProcess:
    """06_tls_alpn_challenge.py on ``port`` of ``address``: serve each challenge, answer, poll, stop."""
    result = run_script([sys.executable, str(ROOT / "06_tls_alpn_challenge.py"), "--dir", str(work), "--bind", address,
                         "--tls-port", str(port)], env=ca.step_env(), cwd=work.parent, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Stopped the tls-alpn-01 server" in result.stdout
    return result


def test_pebble_validates_a_name_by_tls_alpn_01(ca, work):
    name = unique("alpn")
    for step, args in ((1, []), (2, []), (3, ["-d", name]),
                       (4, ["--server", "pebble", "--agree-tos"]), (5, [])):
        ca.ok(step, work, *args)
    result = prove(ca, work, ca.ports["tls_port"])
    assert f"showed the challenge certificate for {name} to 127.0.0.1" in result.stdout
    ca.finish(work, [name])


# --- behind nginx (ssl_preread) -----------------------------------------------------------------------


def _nginx_tls_alpn():
    spec = importlib.util.spec_from_file_location("nginx_tls_alpn", ROOT / "tools" / "nginx_tls_alpn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def routed(nginx, tmp_path):
    """nginx on a public port: acme-tls/1 handshakes to the challenge server, the rest to an HTTPS site."""
    cert_file, key_file = _self_signed_files(tmp_path)
    site = nginx.serve_tls(cert_file, key_file)
    challenge_port, public = free_port(), free_port()
    config = _nginx_tls_alpn().stream_block(f"127.0.0.1:{public}", f"127.0.0.1:{challenge_port}", site.target)
    stream = nginx.add_stream(Stream(public, config))
    try:
        yield public, challenge_port, x509.load_pem_x509_certificate(cert_file.read_bytes())
    finally:
        nginx.remove_stream(stream)
        nginx.remove(site)


def test_nginx_sends_acme_tls_1_to_the_challenge_server_and_the_rest_to_its_site(routed):
    public, challenge_port, site_cert = routed
    with tls_alpn.server(challenge_port, "127.0.0.1") as server:
        server.publish([tls_alpn.challenge_certificate(DNS, KEY_AUTHZ)])
        protocol, cert = handshake(public, "example.com", [tls_alpn.ACME_TLS_1])
        assert protocol == "acme-tls/1"
        assert _acme_extension(cert).value.value[2:] == hashlib.sha256(KEY_AUTHZ.encode()).digest()
        # A browser through the same port gets nginx's site, with HTTP on top.
        for alpn in (["h2", "http/1.1"], None):
            protocol, cert = handshake(public, "example.com", alpn)
            assert cert == site_cert
        with socket.create_connection(("127.0.0.1", public), timeout=10) as sock, \
                _context(["http/1.1"]).wrap_socket(sock, server_hostname="example.com") as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := tls.recv(4096):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"ok\n")


def test_pebble_validates_through_nginx(ca, work, nginx, tmp_path):
    """Pebble's tlsPort is nginx's public port; the challenge server sits behind it on a local port."""
    site = nginx.serve_tls(*_self_signed_files(tmp_path))
    challenge_port = free_port()
    config = _nginx_tls_alpn().stream_block(f"127.0.0.1:{ca.ports['tls_port']}", f"127.0.0.1:{challenge_port}",
                                            site.target)
    stream = nginx.add_stream(Stream(ca.ports["tls_port"], config))
    try:
        name = unique("alpn-nginx")
        for step, args in ((1, []), (2, []), (3, ["-d", name]),
                           (4, ["--server", "pebble", "--agree-tos"]), (5, [])):
            ca.ok(step, work, *args)
        result = prove(ca, work, challenge_port)
        assert f"showed the challenge certificate for {name} to 127.0.0.1" in result.stdout  # nginx's connection
        ca.finish(work, [name])
    finally:
        nginx.remove_stream(stream)
        nginx.remove(site)


def _self_signed_files(tmp_path):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    from common.keys import key_to_pem

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "site.example.com")])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("example.com")]), False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "site.pem").write_bytes(cert.public_bytes(Encoding.PEM))
    (tmp_path / "site.key").write_bytes(key_to_pem(key))
    return tmp_path / "site.pem", tmp_path / "site.key"
