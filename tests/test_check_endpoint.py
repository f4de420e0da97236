"""Step 21 against a real nginx serving real certificates from Pebble: the new fullchain, the leaf
alone, an older certificate, nothing listening, plain HTTP, bad input, and --wait across a reload.
"""

from __future__ import annotations

import datetime
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from helpers import ROOT, free_port, read_until, run_script

from common import served_chain
from common.errors import UsageError

STEP = ROOT / "21_check_endpoint.py"


def check(work, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACME_")}
    return run_script([sys.executable, str(STEP), "--dir", str(work), *args], env={**env, "PYTHONUTF8": "1"},
                      timeout=timeout)


def shown(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def fails(result: subprocess.CompletedProcess, status: int, *words: str) -> list[str]:
    """Exit ``status``, no traceback, every word on stderr; returns stderr's lines."""
    assert result.returncode == status, shown(result)
    assert "Traceback" not in result.stderr, shown(result)
    for word in words:
        assert word in result.stderr, f"{word!r} not in stderr\n{shown(result)}"
    return result.stderr.strip().splitlines()


@pytest.fixture(scope="module")
def issued(ca, tmp_path_factory):
    """A work dir whose certificate was renewed once: old.pem / old-fullchain.pem keep the first one."""
    name = f"check.t{uuid.uuid4().hex[:10]}.example.com"
    work = tmp_path_factory.mktemp("endpoint") / "acme-work"
    ca.issue(work, [name])
    shutil.copy(work / "cert.pem", work.parent / "old.pem")
    shutil.copy(work / "fullchain.pem", work.parent / "old-fullchain.pem")
    ca.order(work)  # the renewal: same key, a new certificate
    root = work.parent / "pebble-root.pem"
    root.write_text(ca.management("/roots/0").text)
    return work, name, root


@pytest.fixture(scope="module")
def sites(nginx, issued):
    """One nginx site per way of serving, set up once: each test only connects."""
    work, _, root = issued
    key = work / "cert.key"
    leaf_then_root = work.parent / "leaf-root-intermediate.pem"
    leaf_then_root.write_bytes((work / "cert.pem").read_bytes() + root.read_bytes() + (work / "chain.pem").read_bytes())
    return {
        "fullchain": nginx.serve_tls(work / "fullchain.pem", key),
        "leaf": nginx.serve_tls(work / "cert.pem", key),
        "old": nginx.serve_tls(work.parent / "old-fullchain.pem", key),
        "misordered": nginx.serve_tls(leaf_then_root, key),
    }


def load(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


# --- against nginx ---


def test_new_fullchain_passes(issued, sites):
    work, name, root = issued
    result = check(work, sites["fullchain"].target, "--servername", name, "--ca-bundle", str(root))
    assert result.returncode == 0, shown(result)
    assert result.stderr == ""
    leaf = load(work / "cert.pem")
    assert f"serial {leaf.serial_number:x}" in result.stdout
    assert "serves cert.pem and its 1 intermediate, trusted by the system's roots and " in result.stdout
    assert "days left" in result.stdout


def test_ip_address_target_asks_for_cert_pems_name(issued, sites):
    work, name, root = issued
    result = check(work, sites["fullchain"].target, "--ca-bundle", str(root))
    assert result.returncode == 0, shown(result)
    assert f"(SNI {name})" in result.stdout


def test_private_root_is_not_trusted_without_ca_bundle(issued, sites):
    work, name, _ = issued
    lines = fails(check(work, sites["fullchain"].target, "--servername", name), 1,
                  "not trusted: no path from what it sends to the system's roots", "pass its root with --ca-bundle")
    assert len(lines) == 2, lines
    assert check(work, sites["fullchain"].target, "--servername", name, "--no-verify").returncode == 0


def test_leaf_alone_is_a_missing_intermediate(issued, sites):
    work, name, root = issued
    lines = fails(check(work, sites["leaf"].target, "--servername", name, "--ca-bundle", str(root)), 1,
                  "does not serve the new certificate correctly", "missing intermediate", "fullchain.pem")
    intermediate = load(work / "chain.pem")
    assert any("missing intermediate" in line and intermediate.subject.rfc4514_string() in line for line in lines)
    # Without its intermediate no client can reach the root either: one line each.
    assert len(lines) == 3 and "not trusted" in lines[2], lines


def test_older_certificate_shows_its_serial_and_expiry(issued, sites):
    work, name, root = issued
    old = load(work.parent / "old.pem")
    lines = fails(check(work, sites["old"].target, "--servername", name, "--ca-bundle", str(root)), 1,
                  "serves an older certificate (", f"serial {old.serial_number:x}",
                  f"expires {old.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    assert len(lines) == 2, lines  # the one finding: its chain is complete and trusted


def test_intermediate_must_follow_the_leaf(issued, sites):
    work, name, root = issued
    lines = fails(check(work, sites["misordered"].target, "--servername", name, "--ca-bundle", str(root)), 1,
                  "intermediates out of order")
    assert len(lines) == 2, lines


def test_name_not_covered(issued, sites):
    work, name, root = issued
    lines = fails(check(work, sites["fullchain"].target, "--servername", "other.example.org", "--ca-bundle",
                        str(root)), 1, f"does not cover other.example.org (its names: {name})")
    assert len(lines) == 2, lines


def test_nothing_listening(issued):
    work, name, _ = issued
    port = free_port()
    lines = fails(check(work, f"127.0.0.1:{port}", "--servername", name), 1,
                  f"127.0.0.1:{port}: connection refused")
    assert len(lines) == 1


def test_plain_http_port_is_not_tls(issued, nginx, tmp_path):
    work, name, _ = issued
    site = nginx.serve_webroot(tmp_path)
    lines = fails(check(work, site.target, "--servername", name), 1, "TLS handshake", "is this a TLS port?")
    assert len(lines) == 1


def test_silent_port_times_out(issued):
    """A port that takes the connection and never answers the ClientHello: --timeout ends it, one line."""
    work, name, _ = issued
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel completes the TCP handshake; nobody ever reads
        port = silent.getsockname()[1]
        started = time.monotonic()
        lines = fails(check(work, f"127.0.0.1:{port}", "--servername", name, "--timeout", "1"), 1,
                      "no TLS handshake within 1 s")
    assert len(lines) == 1 and time.monotonic() - started < 30  # not the default timeout of minutes


@pytest.mark.parametrize("target", ["https://example.com/", "example.com:0", "example.com:99999", "example.com:https",
                                    "bad_host!.example", "[::1]:x", ""])
def test_bad_target_is_usage_error(issued, target):
    work, _, _ = issued
    lines = fails(check(work, target), 2)
    assert len(lines) == 1


def test_missing_work_files(tmp_path):
    lines = fails(check(tmp_path / "acme-work", "127.0.0.1:1"), 2, "cert.pem not found", "08_get_certificate.py")
    assert len(lines) == 1


def test_wait_sees_the_switch_after_a_reload(issued, nginx):
    """The server is reloaded with the new certificate while 21 waits: it ends well, before --wait runs out."""
    work, name, root = issued
    site = nginx.serve_tls(work.parent / "old-fullchain.pem", work / "cert.key")
    started = time.monotonic()
    step = subprocess.Popen([sys.executable, str(STEP), "--dir", str(work), site.target, "--servername", name,
                             "--ca-bundle", str(root), "--wait", "40"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        seen = read_until(step, "up to 40 s ..")  # two attempts saw the old certificate
        nginx.change(site, cert=work / "fullchain.pem")
        stdout, stderr = step.communicate(timeout=60)
        stdout = seen + stdout
    finally:
        step.kill()
    elapsed = time.monotonic() - started
    assert step.returncode == 0, f"{stdout}\n{stderr}"
    assert "not cert.pem yet; asking every 2 s for up to 40 s .." in stdout and "OK: " in stdout
    assert elapsed < 35  # it saw the switch; it did not wait out the 40 s


def test_wait_gives_up_cleanly(issued, sites):
    work, name, root = issued
    started = time.monotonic()
    lines = fails(check(work, sites["old"].target, "--servername", name, "--ca-bundle", str(root), "--wait", "3"),
                  1, "serves an older certificate")
    assert 3 <= time.monotonic() - started < 40  # it waited the 3 s, and not much more
    assert len(lines) == 2


# --- the comparison's pieces ---


@pytest.mark.parametrize(("names", "host", "expected"), [
    (["example.com"], "example.com", True),
    (["EXAMPLE.com."], "example.COM", True),
    (["*.example.com"], "www.example.com", True),
    (["*.example.com"], "example.com", False),  # a wildcard needs a label
    (["*.example.com"], "a.b.example.com", False),  # and stands for exactly one
    (["*.example.com"], ".example.com", False),
    (["w*.example.com"], "www.example.com", False),  # partial wildcards: not honoured
    (["www.*.com"], "www.example.com", False),
    (["a.example.com", "*.example.net"], "x.example.net", True),
])
def test_covers_follows_rfc_6125(names, host, expected):
    assert served_chain.covers(names, host) is expected


@pytest.mark.parametrize(("text", "host", "port"), [
    ("example.com", "example.com", 443),
    ("Example.COM.:8443", "example.com", 8443),
    ("bücher.example", "xn--bcher-kva.example", 443),
    ("localhost:8443", "localhost", 8443),
    ("192.0.2.7:444", "192.0.2.7", 444),
    ("[2001:db8::1]:8443", "2001:db8::1", 8443),
    ("2001:db8::1", "2001:db8::1", 443),
])
def test_parse_target(text, host, port):
    assert served_chain.parse_target(text) == served_chain.Target(host, port)


def test_servername_is_never_an_ip_address():
    leaf = self_signed("*.example.test", "www.example.test")
    with pytest.raises(UsageError):
        served_chain.server_name("192.0.2.1", served_chain.Target("192.0.2.1", 443), leaf)
    assert served_chain.server_name(None, served_chain.Target("192.0.2.1", 443), leaf) == "www.example.test"


def test_expired_leaf_is_a_finding():
    leaf = self_signed("www.example.test")
    later = leaf.not_valid_after_utc + datetime.timedelta(days=1)
    problems = served_chain.findings([leaf], leaf, [], "www.example.test", None, later)
    assert problems == [f"the certificate it serves expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"]



def self_signed(*names: str) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .sign(key, hashes.SHA256()))
