"""The steps against peers other than the CA that misbehave on purpose: a TLS server, Alibaba Cloud, a webroot.

The scripted CA has tests/test_hostile_ca.py. Here: a TLS server (a Python ssl server in a
thread) that sends certificates the parser refuses or names meant to flood or drive the
terminal, for step 21; the fake of Alibaba Cloud (tests/fake_alibaba.py) made to trickle, to
send megabytes, and to answer in the wrong shape, for step 20 and the alidns provider; and a
document root with links planted in it, for 06_http_challenge.py --webroot. Each checks the
exit status (1: the peer misbehaved, 2: local), that no traceback was printed, and that
nothing was written where it should not be.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fake_alibaba import Misbehaviour, fake_alibaba, write_certificate_files  # noqa: F401
from helpers import ROOT, fails, plain_env
from hostile_certs import repeat_extension

from common import alibaba, certs, dns_providers, http01
from common.dns_providers import AlidnsProvider, TxtRecord
from common.errors import AcmeError, UsageError

NOW = datetime.datetime.now(datetime.timezone.utc)
# No line of output may be longer: a field from a peer shows at most 500 characters, each escaped
# in at most 4 (\x07), and a line shows a few fields.
LONG_LINE = 4000


def no_flood(result: subprocess.CompletedProcess) -> None:
    """No raw control character reached the terminal, and no line is longer than LONG_LINE."""
    out = result.stdout + result.stderr
    assert "\x1b" not in out and "\u202e" not in out, out[:2000]
    assert max(len(line) for line in out.splitlines()) < LONG_LINE, out[:2000]


# --- a TLS server that sends what the test says (step 21) -----------------------------------------


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, text)])


def _builder(subject: x509.Name, issuer: x509.Name, key, *, ca: bool, names: list[str] = ()):
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(NOW - datetime.timedelta(days=1))
               .not_valid_after(NOW + datetime.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    return builder


class TlsServer:
    """Serves, on 127.0.0.1, whatever chain and key ``serve`` was last given; handshakes only."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.context: ssl.SSLContext | None = None
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.running = True
        self.thread = threading.Thread(target=self._loop, name="hostile-tls", daemon=True)
        self.thread.start()

    def serve(self, chain: list[x509.Certificate], key) -> None:
        (self.directory / "chain.pem").write_bytes(certs.certs_to_pem(chain))
        (self.directory / "key.pem").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.directory / "chain.pem", self.directory / "key.pem")
        self.context = context

    def _loop(self) -> None:
        while self.running:
            try:
                conn, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            conn.settimeout(5)
            try:
                assert self.context is not None
                with self.context.wrap_socket(conn, server_side=True):
                    pass
            except (OSError, ssl.SSLError):
                pass
            finally:
                conn.close()

    def stop(self) -> None:
        self.running = False
        self.thread.join(2)
        self.listener.close()


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    server = TlsServer(tmp_path_factory.mktemp("hostile-tls"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def issuer():
    """A CA key and name for the served certificates."""
    return ec.generate_private_key(ec.SECP256R1()), _name("Hostile TLS test CA")


@pytest.fixture
def work(tmp_path):
    """A work dir whose cert.pem and chain.pem step 21 compares with what is served."""
    work = tmp_path / "acme-work"
    write_certificate_files(work, ["www.example.com"])
    return work


def check_endpoint(work: Path, server: TlsServer) -> subprocess.CompletedProcess:
    command = [sys.executable, str(ROOT / "21_check_endpoint.py"), "--dir", str(work), "--no-verify",
               "--timeout", "5", f"127.0.0.1:{server.port}"]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=work.parent, env=plain_env())


@pytest.mark.parametrize("broken", ["leaf", "intermediate"])
def test_a_served_certificate_that_repeats_an_extension_is_a_finding(tls_server, issuer, work, broken):
    ca_key, ca_name = issuer
    key = ec.generate_private_key(ec.SECP256R1())
    inter_key = ec.generate_private_key(ec.SECP256R1())
    inter_name = _name("Hostile TLS intermediate")
    leaf_builder = _builder(_name("leaf"), inter_name, key, ca=False, names=["www.example.com"])
    inter_builder = _builder(inter_name, ca_name, inter_key, ca=True)
    leaf = repeat_extension(leaf_builder, inter_key) if broken == "leaf" else leaf_builder.sign(inter_key,
                                                                                               hashes.SHA256())
    inter = (repeat_extension(inter_builder, ca_key) if broken == "intermediate"
             else inter_builder.sign(ca_key, hashes.SHA256()))
    tls_server.serve([leaf, inter], key)
    which = "certificate 1 (the leaf)" if broken == "leaf" else "certificate 2 (an intermediate)"
    fails(check_endpoint(work, tls_server), 1, "sends a certificate that does not parse", which, "Duplicate",
          one_line=False)


def test_names_a_server_sends_are_cut_and_escaped(tls_server, issuer, work):
    ca_key, ca_name = issuer
    key = ec.generate_private_key(ec.SECP256R1())
    names = [f"n{i}-{'a' * 60}\x1b[2J.example.com" for i in range(60)]  # 4,000 characters of names
    subject = _name("evil\nerror: forged line\u202e" + "o" * 3000)
    leaf = _builder(subject, ca_name, key, ca=False, names=names).sign(ca_key, hashes.SHA256())
    inter = _builder(ca_name, ca_name, ca_key, ca=True).sign(ca_key, hashes.SHA256())
    tls_server.serve([leaf, inter], key)
    result = check_endpoint(work, tls_server)
    fails(result, 1, "does not serve the new certificate correctly", "\\x1b[2J", one_line=False)
    no_flood(result)
    assert "\nerror: forged line" not in result.stderr + result.stdout


# --- Alibaba Cloud that misbehaves (step 20, the alidns provider) ----------------------------------


@pytest.fixture
def fake(fake_alibaba, monkeypatch):  # noqa: F811 (the imported fixture)
    """The fake with this process holding its AccessKey; reset again afterwards, which ends a trickle."""
    yield fake_alibaba.with_keys(monkeypatch)
    fake_alibaba.reset()


def deploy(fake, work: Path, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    command = [sys.executable, str(ROOT / "20_deploy_alibaba.py"), "--dir", str(work),
               *fake.endpoint_overrides(), "--cdn-domain", "cdn.example.com", *args]
    began = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, env=fake.env(), timeout=120, cwd=work.parent)
    return result, time.monotonic() - began


def sha256_of(work: Path) -> str:
    return certs.fingerprint(x509.load_pem_x509_certificate((work / "cert.pem").read_bytes()), separator="")


def test_a_trickling_cloud_answer_is_cut_off_at_the_timeout(fake, work):
    fake.cdn.add_domain("cdn.example.com")
    fake.misbehave("ListUserCertificateOrder", Misbehaviour(trickle=0.3))
    result, seconds = deploy(fake, work, "--timeout", "2")
    fails(result, 1, "CAS ListUserCertificateOrder failed: NetworkError: no complete answer within 2 s",
          "--timeout 2")
    assert seconds < 15
    assert "UploadUserCertificate" not in fake.actions()


def test_the_cloud_timeout_counts_every_call_together(fake, work):
    fake.cdn.add_domain("cdn.example.com")
    fake.misbehave("SetCdnDomainSSLCertificate", Misbehaviour(trickle=0.3))
    result, seconds = deploy(fake, work, "--timeout", "3")
    fails(result, 1, "CDN SetCdnDomainSSLCertificate for cdn.example.com failed: NetworkError", one_line=False)
    assert seconds < 15 and fake.actions()[:2] == ["ListUserCertificateOrder", "UploadUserCertificate"]


def test_a_cloud_answer_of_megabytes_is_refused(fake, work):
    fake.misbehave("ListUserCertificateOrder", Misbehaviour(raw=b" " * (5 * 1024 * 1024)))
    result, _ = deploy(fake, work)
    fails(result, 1, "ResponseTooLarge", f"more than {alibaba.MAX_RESPONSE_BYTES} bytes")


def test_a_cloud_error_of_megabytes_with_control_characters_is_cut_and_escaped(fake, work):
    error = {"Code": "Evil\x1b[2J" + "C" * 5000, "Message": "line\nerror: forged line\u202e" + "m" * 1_000_000,
             "RequestId": "R\x07" * 3000}
    fake.misbehave("ListUserCertificateOrder", Misbehaviour(status=400, change=lambda answer: error))
    result, _ = deploy(fake, work)
    fails(result, 1, "CAS ListUserCertificateOrder failed: Evil\\x1b[2J", "\\u202e")
    no_flood(result)
    assert len(result.stderr) < 2 * LONG_LINE


@pytest.mark.parametrize(("change", "words"), [
    (lambda a: {**a, "CertificateOrderList": "abc"}, "Alibaba Cloud sent a CertificateOrderList that is not a list"),
    (lambda a: {**a, "CertificateOrderList": [1, 2]}, "a CertificateOrderList entry that is not an object: 1"),
    (lambda a: {**a, "CertificateOrderList": [{"CertificateId": 1, "Sha2": "00"}], "TotalCount": "many"},
     'a TotalCount that is not a number of items: "many"'),
    (lambda a: {**a, "CertificateOrderList": [{"CertificateId": 1, "Sha2": {"x": 1}}], "TotalCount": 1},
     "a Sha2 that is not a string"),
], ids=["list-a-string", "entries-not-objects", "total-count-a-string", "sha2-an-object"])
def test_a_cas_listing_of_the_wrong_shape_is_alibabas_fault(fake, work, change, words):
    fake.misbehave("ListUserCertificateOrder", Misbehaviour(change=change))
    result, _ = deploy(fake, work)
    fails(result, 1, words, "(CAS ListUserCertificateOrder")
    assert "UploadUserCertificate" not in fake.actions()


def test_a_certificate_id_that_is_no_number_is_alibabas_fault(fake, work):
    sha = sha256_of(work)
    fake.misbehave("ListUserCertificateOrder", Misbehaviour(change=lambda a: {
        **a, "CertificateOrderList": [{"CertificateId": "²", "Sha2": sha, "Name": "x"}], "TotalCount": 1}))
    result, _ = deploy(fake, work)
    fails(result, 1, 'Alibaba Cloud sent a CertificateId that is not a number: "²"')


def test_an_upload_answer_without_a_number_is_alibabas_fault(fake, work):
    fake.misbehave("UploadUserCertificate", Misbehaviour(change=lambda a: {**a, "CertId": "12"}))
    result, _ = deploy(fake, work)
    fails(result, 1, "Alibaba Cloud sent no CertId (a number) in its answer", "(CAS UploadUserCertificate)")
    assert "SetCdnDomainSSLCertificate" not in fake.actions()


def test_a_cas_name_is_cut_and_escaped_when_shown(fake, work):
    fake.cdn.add_domain("cdn.example.com")
    sha = sha256_of(work)
    name = "evil\x1b]0;owned\x07\nCAS: forged line\u202e" + "n" * 100_000
    fake.misbehave("ListUserCertificateOrder", Misbehaviour(change=lambda a: {
        **a, "CertificateOrderList": [{"CertificateId": 7, "Sha2": sha, "Name": name}], "TotalCount": 1}))
    result, _ = deploy(fake, work)  # the CDN call then names CertId 7, which the fake's CAS does not hold
    assert "Traceback" not in result.stderr
    assert "already there as evil\\x1b]0;owned\\x07\\nCAS: forged line\\u202e" in result.stdout
    no_flood(result)


def alidns_provider(fake, timeout: float | None = None) -> AlidnsProvider:
    import argparse

    parser = argparse.ArgumentParser()
    dns_providers.add_arguments(parser)
    args = parser.parse_args(["--provider", "alidns", "--alidns-endpoint", fake.url("alidns")])
    built = dns_providers.from_args(args)
    assert isinstance(built, AlidnsProvider)
    if timeout is not None:
        built.client.exchange_timeout = timeout
    return built


RECORD = TxtRecord("_acme-challenge.example.com", "v" * 43)


def test_a_trickling_alidns_answer_is_cut_off(fake):
    fake.misbehave("DescribeDomains", Misbehaviour(trickle=0.3))
    began = time.monotonic()
    with pytest.raises(AcmeError, match=r"DescribeDomains .* failed: NetworkError: no complete answer within 1 s"):
        alidns_provider(fake, timeout=1.0).publish([RECORD])
    assert time.monotonic() - began < 5


@pytest.mark.parametrize(("action", "change", "words"), [
    ("DescribeDomains", lambda a: {**a, "Domains": {"Domain": "example.com"}},
     "Alibaba Cloud sent a Domains.Domain that is not a list"),
    ("DescribeDomains", lambda a: {**a, "Domains": [1]}, "a Domains that is not an object"),
    ("DescribeDomains", lambda a: {**a, "TotalCount": "25"}, "a TotalCount that is not a number of items"),
    ("DescribeDomains", lambda a: {**a, "Domains": {"Domain": [{"DomainName": {"x": 1}}]}},
     "a DomainName that is not a string"),
    ("DescribeDomains", lambda a: {**a, "Domains": {"Domain": [{"DomainName": "x" * 300 + ".com"}]}},
     "a zone name longer than a DNS name can be"),
    ("AddDomainRecord", lambda a: {k: v for k, v in a.items() if k != "RecordId"}, "an answer without a RecordId"),
    ("AddDomainRecord", lambda a: {**a, "RecordId": ["1"]}, "a RecordId that is not a string"),
], ids=["domain-a-string", "domains-a-list", "total-count-a-string", "domain-name-an-object", "zone-name-too-long",
        "no-record-id", "record-id-a-list"])
def test_an_alidns_answer_of_the_wrong_shape_is_alibabas_fault(fake, action, change, words):
    fake.misbehave(action, Misbehaviour(change=change))
    with pytest.raises(AcmeError, match="^Alibaba Cloud sent ") as caught:
        alidns_provider(fake).publish([RECORD])
    assert words in str(caught.value)


def test_alidns_records_of_the_wrong_shape_are_alibabas_fault_on_cleanup(fake):
    provider = alidns_provider(fake)
    provider.publish([RECORD])
    fake.misbehave("DescribeSubDomainRecords", Misbehaviour(change=lambda a: {
        **a, "DomainRecords": {"Record": [{"RecordId": {"id": 1}, "Type": "TXT", "RR": "_acme-challenge",
                                           "Value": RECORD.value}]}}))
    with pytest.raises(AcmeError, match="Alibaba Cloud sent a RecordId that is not a string"):
        provider.remove([RECORD])


# --- a document root with links planted in it (06_http_challenge.py --webroot) ------------------------


TOKEN = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"
KEY_AUTHZ = f"{TOKEN}.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"


@pytest.mark.parametrize("linked", [".well-known", ".well-known/acme-challenge"])
def test_the_webroot_does_not_write_through_a_planted_link(tmp_path, linked):
    root, outside = tmp_path / "www", tmp_path / "outside"
    (root / ".well-known").mkdir(parents=True)
    outside.mkdir()
    if linked == ".well-known":
        (root / ".well-known").rmdir()
        (outside / "acme-challenge").mkdir()
    (root / linked).symlink_to(outside, target_is_directory=True)
    with pytest.raises(UsageError, match=f"{root / linked} is a link .*--follow-webroot-links"), \
            http01.webroot(root) as site:
        site.publish({TOKEN: KEY_AUTHZ})
    assert [p for p in outside.rglob("*") if p.is_file()] == []
    assert (root / linked).is_symlink()  # left as it was

    with http01.webroot(root, follow_links=True) as site:  # said deliberately: a shared challenge directory
        (written,) = site.publish({TOKEN: KEY_AUTHZ})
        assert written.read_text() == KEY_AUTHZ
        assert [p.name for p in outside.rglob("*") if p.is_file()] == [TOKEN]
    assert [p for p in outside.rglob("*") if p.is_file()] == []


def test_a_link_planted_as_the_token_file_is_replaced_not_followed(tmp_path):
    root, victim = tmp_path / "www", tmp_path / "victim"
    (root / ".well-known" / "acme-challenge").mkdir(parents=True)
    victim.write_text("precious")
    (root / ".well-known" / "acme-challenge" / TOKEN).symlink_to(victim)
    with http01.webroot(root) as site:
        (written,) = site.publish({TOKEN: KEY_AUTHZ})
        assert not written.is_symlink() and written.read_text() == KEY_AUTHZ
    assert victim.read_text() == "precious" and not os.path.lexists(written)


def test_follow_webroot_links_goes_with_webroot_only(tmp_path):
    command = [sys.executable, str(ROOT / "06_http_challenge.py"), "--dir", str(tmp_path / "acme-work"),
               "--standalone", "--follow-webroot-links"]
    work = tmp_path / "acme-work"
    work.mkdir()
    (work / "order.json").write_text(json.dumps({"url": "https://ca.example/order/1", "order": {
        "status": "pending", "identifiers": [{"type": "dns", "value": "a.example"}],
        "authorizations": ["https://ca.example/authz/1"], "finalize": "https://ca.example/finalize/1"}}))
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path, env=plain_env())
    fails(result, 2, "--follow-webroot-links goes with --webroot")
