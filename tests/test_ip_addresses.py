"""IP address certificates (RFC 8738) and 06_tls_alpn_challenge.py (RFC 8737), end to end.

Pebble validates an IP identifier by connecting to the address itself, on its configured
httpPort (http-01) or tlsPort (tls-alpn-01): the steps listen on those ports. Pebble rewrites
the identifiers it receives and picks a profile at random when none is sent, so what the steps
*send* is read from their -vv wire view (the JWS payload, decoded here), not from Pebble's order.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import re
import signal
import socket
import ssl
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from helpers import ROOT, fails, free_port, hostile_account, plain_env, run_plain, run_script, unique, wait_for_line
from hostile_ca import Reply, token

from common import certs, names, rfc8555, served_chain, tls_alpn
from common.errors import UsageError

TLS_ALPN_STEP = ROOT / "06_tls_alpn_challenge.py"
HTTP_STEP = ROOT / "06_http_challenge.py"


# --- unit: names and the CSR ------------------------------------------------------------------------


@pytest.mark.parametrize("given, canonical", [
    ("192.0.2.10", "192.0.2.10"),
    (" 192.0.2.10 ", "192.0.2.10"),
    # RFC 5952 §4: lower case, no leading zeros, the longest run of zero groups as ::, the first if tied,
    # and a single zero group not shortened.
    ("2001:DB8::1", "2001:db8::1"),
    ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
    ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
    ("2001:0:0:1:0:0:0:1", "2001:0:0:1::1"),
    ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
    ("[2001:db8::1]", "2001:db8::1"),
    ("0:0:0:0:0:0:0:1", "::1"),
])
def test_addresses_take_their_canonical_text(given, canonical):
    assert names.normalize_identifier(given) == canonical
    assert names.identifier(canonical) == {"type": "ip", "value": canonical}


@pytest.mark.parametrize("given, words", [
    ("::ffff:192.0.2.10", ["IPv4-mapped", "192.0.2.10"]),
    ("fe80::1%eth0", ["zone"]),
    ("192.0.2.300", ["not an IP address"]),
    ("192.0.2", ["not an IP address"]),
    ("010.0.2.1", ["not an IP address"]),
    ("2001:db8::g", ["not an IP address"]),
    ("example.com:443", ["no URL or port"]),
])
def test_what_is_neither_a_name_nor_an_address_is_refused(given, words):
    with pytest.raises(UsageError) as caught:
        names.normalize_identifier(given)
    for word in words:
        assert word in str(caught.value)


def test_names_stay_names():
    assert names.normalize_names(["WWW.Example.com", "192.0.2.10", "www.example.com", "2001:db8::1"]) == [
        "www.example.com", "192.0.2.10", "2001:db8::1"]
    assert names.identifier("www.example.com") == {"type": "dns", "value": "www.example.com"}
    assert names.describe_count(["a.example", "192.0.2.1", "::1"]) == "1 name and 2 addresses"


def _sans(csr):
    return csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def test_csr_puts_addresses_in_ip_address_entries_and_never_in_the_common_name():
    key = ec.generate_private_key(ec.SECP256R1())
    csr = certs.build_csr(key, ["192.0.2.10", "www.example.com", "2001:db8::1"])
    san = _sans(csr)
    assert san.get_values_for_type(x509.DNSName) == ["www.example.com"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("192.0.2.10"),
                                                      ipaddress.ip_address("2001:db8::1")]
    assert [a.value for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == ["www.example.com"]
    assert certs.san_identifiers(csr) == ["192.0.2.10", "www.example.com", "2001:db8::1"]
    # Four and sixteen bytes, as RFC 5280 §4.2.1.6 says an iPAddress is encoded.
    der = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.public_bytes()
    assert bytes([0x87, 4, 192, 0, 2, 10]) in der
    assert bytes([0x87, 16]) + ipaddress.ip_address("2001:db8::1").packed in der

    only = certs.build_csr(key, ["192.0.2.10"])
    assert only.subject == x509.Name([])  # no common name at all
    assert _sans(only).get_values_for_type(x509.DNSName) == []


def test_order_identifiers_compare_as_addresses():
    assert rfc8555.canonical_identifier({"type": "ip", "value": "2001:DB8:0:0::1"}) == ("ip", "2001:db8::1")
    assert rfc8555.canonical_identifier({"type": "dns", "value": "WWW.example.com"}) == ("dns", "www.example.com")


def test_step_03_writes_ip_address_entries(tmp_path):
    work = tmp_path / "acme-work"
    env = plain_env()
    assert run_plain(2, "--dir", str(work), env=env, cwd=tmp_path).returncode == 0
    result = run_plain(3, "--dir", str(work), "-d", "2001:DB8:0::1", "-d", "www.example.com", "-d", "192.0.2.10",
                       "-v", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    csr = x509.load_pem_x509_csr((work / "cert.csr").read_bytes())
    assert certs.san_identifiers(csr) == ["2001:db8::1", "www.example.com", "192.0.2.10"]
    assert "1 name and 2 addresses" in result.stdout
    assert "2001:db8::1 (IP address)" in result.stdout
    # Documentation addresses are no public ones: a public CA would refuse them, which 03 says, and goes on.
    assert "192.0.2.10 is not a public address" in result.stderr


# --- against Pebble ---------------------------------------------------------------------------------


def sent_payloads(output: str, path: str) -> list[dict]:
    """The decoded JWS payloads of the requests to URLs ending in ``path``, from a step's -vv wire view."""
    found, current = [], None
    for line in output.splitlines():
        request = re.match(r"> POST (\S+) HTTP", line)
        if request:
            current = request.group(1)
        elif current and current.endswith(path) and line.startswith("> {"):
            payload = json.loads(line[2:])["payload"]
            found.append(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)) or "null"))
            current = None
    return found


def account(ca, work) -> None:
    ca.ok(1, work, "--key-type", "ec256")
    ca.ok(2, work)
    ca.ok(4, work, "--server", "pebble", "--agree-tos")


def order(ca, work, identifiers: list[str], *args: str) -> dict:
    """Steps 03 and 05 for ``identifiers``; returns the newOrder payload 05 sent."""
    ca.ok(3, work, *[a for i in identifiers for a in ("-d", i)])
    result = ca.ok(5, work, "-vv", *args)
    sent = sent_payloads(result.stdout + result.stderr, "/order-plz")
    # Pebble rejects some nonces (badNonce): the step then sends the same request again.
    assert sent and all(payload == sent[0] for payload in sent), result.stdout
    return sent[0] | {"_stdout": result.stdout}


def http06(ca, work, *args: str) -> subprocess.CompletedProcess:
    return _ok(ca, HTTP_STEP, work, "--standalone", "--http-port", str(ca.ports["http_port"]), *args)


def alpn06(ca, work, *args: str) -> subprocess.CompletedProcess:
    return _ok(ca, TLS_ALPN_STEP, work, "--tls-port", str(ca.ports["tls_port"]), *args)


def _ok(ca, step, work, *args: str) -> subprocess.CompletedProcess:
    result = run_script([sys.executable, str(step), "--dir", str(work), *args], env=ca.step_env(), cwd=work.parent,
                        timeout=120)
    assert result.returncode == 0, f"{step.name} {args}:\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result


def issued(ca, work) -> x509.Certificate:
    ca.ok(7, work)
    shown = ca.ok(8, work).stdout
    leaf = x509.load_pem_x509_certificate((work / "cert.pem").read_bytes())
    for value in certs.san_identifiers(leaf):  # 08 shows every name and address
        assert (f"{value} (IP address)" if names.is_ip(value) else value) in shown
    return leaf


def leaf_sans(leaf: x509.Certificate) -> tuple[list[str], list[str]]:
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.DNSName), [str(a) for a in san.get_values_for_type(x509.IPAddress)]


def test_ipv4_by_http01(ca, work):
    account(ca, work)
    sent = order(ca, work, ["127.0.0.1"])
    assert sent["identifiers"] == [{"type": "ip", "value": "127.0.0.1"}]
    assert "profile" not in sent  # this CA offers no shortlived profile: nothing picked
    assert "--http-port" in sent["_stdout"] and "dns-01 cannot prove an IP address" in sent["_stdout"]
    result = http06(ca, work)
    # The self-check fetches the address as the CA does, on the port the CA uses.
    assert f"Self-check: http://127.0.0.1:{ca.ports['http_port']}/.well-known/acme-challenge/" in result.stdout
    assert "127.0.0.1: pending, to prove with http-01" in result.stdout
    leaf = issued(ca, work)
    assert leaf_sans(leaf) == ([], ["127.0.0.1"])
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME) == []


def test_ipv6_by_http01_sends_the_canonical_text(ca, work):
    account(ca, work)
    sent = order(ca, work, ["0:0:0:0:0:0:0:1"])
    assert sent["identifiers"] == [{"type": "ip", "value": "::1"}]
    result = http06(ca, work)
    assert f"Self-check: http://[::1]:{ca.ports['http_port']}/" in result.stdout
    assert leaf_sans(issued(ca, work)) == ([], ["::1"])


def test_ipv4_by_tls_alpn01(ca, work):
    account(ca, work)
    order(ca, work, ["127.0.0.1"])
    result = alpn06(ca, work, "-v")
    # -v shows what the challenge certificate holds, and the reverse name the CA asks for (RFC 8738 §6).
    assert "challenge certificate for 127.0.0.1 (SNI 1.0.0.127.in-addr.arpa)" in result.stdout
    assert "subjectAltName: iPAddress 127.0.0.1 (the only entry)" in result.stdout
    assert re.search(r"acmeIdentifier 1\.3\.6\.1\.5\.5\.7\.1\.31 \(critical\): [0-9a-f]{64}", result.stdout)
    assert "SHA-256 of the key authorization" in result.stdout
    assert "showed the challenge certificate for 127.0.0.1 to 127.0.0.1" in result.stdout
    assert "Stopped the tls-alpn-01 server" in result.stdout
    assert leaf_sans(issued(ca, work)) == ([], ["127.0.0.1"])


def test_ipv6_by_tls_alpn01(ca, work):
    account(ca, work)
    order(ca, work, ["::1"])
    result = alpn06(ca, work)
    assert f"::1 (SNI {ipaddress.ip_address('::1').reverse_pointer})" in result.stdout
    assert leaf_sans(issued(ca, work)) == ([], ["::1"])


def test_renew_sh_renews_an_address_certificate_by_tls_alpn01(ca, work):
    """renew.sh --tls-alpn saves the choice and runs 06_tls_alpn_challenge.py with its options."""
    account(ca, work)
    order(ca, work, ["127.0.0.1"])
    alpn06(ca, work)
    old = issued(ca, work)
    while old.serial_number.bit_length() % 8 == 0:  # Pebble cannot match such a serial in replaces
        order(ca, work, ["127.0.0.1"])
        alpn06(ca, work)
        old = issued(ca, work)
    command = ["bash", str(ROOT / "renew.sh"), "--dir", str(work), "--tls-alpn", "--tls-port",
               str(ca.ports["tls_port"]), "--force"]
    result = subprocess.run(command, capture_output=True, text=True, env={**ca.step_env(), "PYTHON": sys.executable},
                            cwd=work.parent, timeout=240)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert f"-> 06_tls_alpn_challenge.py --dir {work} --tls-port {ca.ports['tls_port']}" in result.stdout
    # Pebble reuses half of the valid authorizations: then there is nothing left to serve, or no order to prove.
    assert re.search(r"127\.0\.0\.1: (pending, to prove with tls-alpn-01|already valid)|Order is already ready",
                     result.stdout), result.stdout
    new = x509.load_pem_x509_certificate((work / "cert.pem").read_bytes())
    assert new.serial_number != old.serial_number and leaf_sans(new) == ([], ["127.0.0.1"])
    saved = json.loads((work / "renew-options.json").read_text())
    assert saved["challenge_step"] == "06_tls_alpn_challenge.py"


def test_a_name_and_an_address_in_one_order(ca, work):
    account(ca, work)
    name = unique("mixed")
    sent = order(ca, work, [name, "127.0.0.1"])
    assert sent["identifiers"] == [{"type": "dns", "value": name}, {"type": "ip", "value": "127.0.0.1"}]
    result = http06(ca, work)
    assert f"Self-check of {name} skipped" in result.stdout  # the name does not resolve from here
    leaf = issued(ca, work)
    assert leaf_sans(leaf) == ([name], ["127.0.0.1"])
    assert [a.value for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] in ([name], [])


def test_a_name_by_tls_alpn01(ca, work):
    account(ca, work)
    name = unique("alpn")
    order(ca, work, [name])
    result = alpn06(ca, work, "--bind", "127.0.0.1")
    assert f"showed the challenge certificate for {name} to 127.0.0.1" in result.stdout
    assert leaf_sans(issued(ca, work)) == ([name], [])


def test_shortlived_is_picked_for_an_address_when_the_ca_offers_it(ca_profiles, tmp_path):
    work = tmp_path / "acme-work"
    account(ca_profiles, work)
    sent = order(ca_profiles, work, ["127.0.0.1"])
    assert sent["profile"] == "shortlived"
    assert "Asking for profile shortlived: the order holds an IP address" in sent["_stdout"]
    http06(ca_profiles, work)
    leaf = issued(ca_profiles, work)
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc < datetime.timedelta(days=7)
    # 11 handles a 6-day certificate: ARI's window, or half its life without ARI.
    result = ca_profiles.ok(11, work)
    assert "Renewal time chosen" in result.stdout

    # An explicit --profile wins; an order of names only gets no profile from this rule.
    sent = order(ca_profiles, work, ["127.0.0.1"], "--profile", "default")
    assert sent["profile"] == "default" and "Asking for profile" not in sent["_stdout"]
    sent = order(ca_profiles, work, [unique("names-only")])
    assert "profile" not in sent and "Asking for profile" not in sent["_stdout"]


def test_dns01_refuses_an_address_before_touching_dns_or_the_ca(ca, work, tmp_path):
    account(ca, work)
    order(ca, work, [unique("dns"), "127.0.0.1"])
    requests_made = tmp_path / "requests.log"
    result = ca.run(6, work, "--provider", "challtestsrv", env={"ACME_REQUEST_LOG": str(requests_made)})
    fails(result, 2, "dns-01 cannot prove an IP address (127.0.0.1)", "RFC 8738 §7", "06_http_challenge.py",
          "06_tls_alpn_challenge.py")
    assert not requests_made.exists()
    assert not (work / "dns-records.json").exists()


def test_tls_alpn_refuses_a_wildcard_with_the_step_that_can(ca, work):
    account(ca, work)
    name = unique("wild")
    ca.ok(3, work, "-d", f"*.{name}")
    ca.ok(5, work)
    result = run_script([sys.executable, str(TLS_ALPN_STEP), "--dir", str(work), "--tls-port", str(free_port())],
                        env=ca.step_env(), cwd=work.parent, timeout=60)
    fails(result, 2, "cannot prove a wildcard", "06_dns_challenge.py")


def test_a_port_in_use_fails_before_any_request(ca, work, tmp_path):
    account(ca, work)
    ca.ok(3, work, "-d", unique("busy"))
    ca.ok(5, work)
    requests_made = tmp_path / "requests.log"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_script([sys.executable, str(TLS_ALPN_STEP), "--dir", str(work), "--bind", "127.0.0.1",
                             "--tls-port", str(port)], env=ca.step_env({"ACME_REQUEST_LOG": str(requests_made)}),
                            cwd=work.parent, timeout=60)
    fails(result, 2, f"127.0.0.1:{port}", "already does")
    assert not requests_made.exists()


# --- while the step serves: the CA's handshake only -------------------------------------------------


def _handshake(port: int, server_name: str | None, alpn: list[str] | None) -> tuple[str | None, x509.Certificate]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    if alpn is not None:
        context.set_alpn_protocols(alpn)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock, \
            context.wrap_socket(sock, server_hostname=server_name) as tls:
        return tls.selected_alpn_protocol(), x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def test_only_acme_tls_1_handshakes_are_answered_while_the_step_serves_and_sigterm_stops_it(hostile, tmp_path):
    """A CA (the scripted one) that leaves the order pending: the step keeps serving until SIGTERM."""
    hostile.reset()
    work = tmp_path / "acme-work"
    name = "alpn.example.com"
    hostile_account(hostile, work, [name])
    assert run_plain(5, "--dir", str(work), env=plain_env(), cwd=tmp_path).returncode == 0
    hostile.answer("POST", "/authz/0", Reply(200, {
        "status": "pending", "identifier": {"type": "dns", "value": name},
        "challenges": [{"type": "tls-alpn-01", "url": hostile.url("/chall/0"), "token": token(0),
                        "status": "pending"}],
    }))
    hostile.answer("POST", "/order/1", lambda req: Reply(200, hostile.order_body("pending")))
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(TLS_ALPN_STEP), "--dir", str(work), "--bind", "127.0.0.1",
                             "--tls-port", str(port), "--timeout", "120"], env=plain_env(), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_line(proc, "Waiting for the CA to validate")
        for alpn in (["h2", "http/1.1"], None):  # a browser's handshake, and one with no ALPN at all
            with pytest.raises((ssl.SSLError, ConnectionError)):
                _handshake(port, name, alpn)
        protocol, cert = _handshake(port, name, ["acme-tls/1"])
        assert protocol == "acme-tls/1"
        assert cert.extensions.get_extension_for_oid(tls_alpn.ID_PE_ACME_IDENTIFIER).critical
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0 and "Traceback" not in err
    assert "Stopped the tls-alpn-01 server" in out
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


# --- 21 against an address --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ip_certificate(ca, tmp_path_factory):
    work = tmp_path_factory.mktemp("ip-endpoint") / "acme-work"
    account(ca, work)
    order(ca, work, ["127.0.0.1", "::1"])
    http06(ca, work)
    issued(ca, work)
    root = work.parent / "pebble-root.pem"
    root.write_text(ca.management("/roots/0").text)
    return work, root


def _check(work, *args: str) -> subprocess.CompletedProcess:
    return run_script([sys.executable, str(ROOT / "21_check_endpoint.py"), "--dir", str(work), *args],
                      env=plain_env(), timeout=60)


def test_21_checks_an_ipv4_address_without_sni(ip_certificate, nginx):
    work, root = ip_certificate
    site = nginx.serve_tls(work / "fullchain.pem", work / "cert.key")
    try:
        result = _check(work, site.target, "--ca-bundle", str(root))
    finally:
        nginx.remove(site)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(SNI none: an IP address)" in result.stdout
    assert "OK: 127.0.0.1:" in result.stdout


def test_21_checks_an_ipv6_address_without_sni(ip_certificate):
    """A TLS server on [::1] that records the SNI it is asked for (none, for an address)."""
    import threading

    work, root = ip_certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(work / "fullchain.pem", work / "cert.key")
    asked: list[str | None] = []
    context.sni_callback = lambda sslobj, name, ctx: asked.append(name)
    listener = socket.create_server(("::1", 0), family=socket.AF_INET6)
    port = listener.getsockname()[1]

    def serve():
        conn, _ = listener.accept()
        with conn, context.wrap_socket(conn, server_side=True) as tls:
            tls.recv(1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        result = _check(work, f"[::1]:{port}", "--ca-bundle", str(root))
    finally:
        listener.close()
    assert result.returncode == 0, result.stdout + result.stderr
    assert asked == [None]
    assert f"OK: [::1]:{port}" in result.stdout


def test_21_says_when_the_served_leaf_lacks_the_address(ip_certificate):
    work, _ = ip_certificate
    leaf = x509.load_pem_x509_certificate((work / "cert.pem").read_bytes())
    problems = served_chain.findings([leaf], leaf, [], "192.0.2.10", None, leaf.not_valid_before_utc)
    assert any("does not cover 192.0.2.10" in p and "127.0.0.1" in p for p in problems)
    assert served_chain.server_name(None, served_chain.parse_target("127.0.0.1:443"), leaf) is None


def test_09_exports_an_ip_certificate_and_install_iis_binds_it_by_address(ip_certificate, tmp_path):
    import shutil

    from test_iis import powershell_problems, read_script, tree_sitter_errors

    work = tmp_path / "acme-work"
    shutil.copytree(ip_certificate[0], work)
    result = run_plain(9, "--dir", str(work), "--password-env", "PFX_PW", env=plain_env({"PFX_PW": "a-Pa55word"}),
                       cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "2 addresses: 127.0.0.1, ::1" in result.stdout and "without SNI" in result.stdout
    text = read_script(work)
    assert "$Addresses = @('127.0.0.1', '::1')" in text
    assert "$Names = [ordered]@{\n\n}" in text  # no DNS name: nothing bound by SNI
    assert '"${bindAddress}:443:"' in text and "SslFlags]::None" in text
    assert "Find-AddressBinding $address" in text
    assert tree_sitter_errors(text) == [] and powershell_problems(text) == []
