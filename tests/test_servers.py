"""The real servers the other tests lean on (tests/servers.py): BIND answers and takes signed updates, nginx serves.

If these fail, the tests built on the fixtures would fail for the wrong reason.
"""

from __future__ import annotations

import datetime
import re
import socket
import ssl
import subprocess

import dns.rcode
import dns.rdatatype
import dns.tsig
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from servers import ZONES, apparmor_confines

DEEP = "_acme-challenge.a.b.c.example.com.cn"


@pytest.mark.parametrize("zone", ZONES)
def test_bind_is_authoritative_and_its_servers_resolve_to_it(bind, zone):
    reply = bind.query(zone, "SOA")
    assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
    mname = reply.answer[0][0].mname.to_text()
    ns = bind.records(zone, "NS")
    assert ns == [mname]
    assert bind.records(mname, "A") == [bind.address]


def test_bind_names_the_zone_for_a_name_several_labels_down(bind):
    """Zone discovery as code under test does it: SOA for a missing name, the zone in the authority."""
    reply = bind.query(DEEP, "SOA")
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert [rrset.name.to_text() for rrset in reply.authority] == ["example.com.cn."]
    assert bind.query("example.org", "SOA").rcode() == dns.rcode.REFUSED  # recursion off, not ours


def test_key_file_has_tsig_keygens_format(bind):
    made = subprocess.run(["tsig-keygen", "-a", "hmac-sha256", bind.key_name], capture_output=True, text=True,
                          check=True, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}).stdout
    ours = bind.key_file.read_text()
    secret = re.compile(r'secret "[A-Za-z0-9+/=]+";')
    assert secret.sub("SECRET", ours) == secret.sub("SECRET", made)
    assert f'secret "{bind.secret}";' in ours


def test_update_signed_with_the_key_adds_and_deletes_txt(bind):
    key = bind.tsig_key()
    update = bind.update(DEEP, key=key)
    update.add(DEEP + ".", 60, "TXT", '"first"')
    assert bind.send(update).rcode() == dns.rcode.NOERROR
    assert bind.txt(DEEP) == ["first"]
    update = bind.update(DEEP, key=key)
    update.delete(DEEP + ".", "TXT")
    assert bind.send(update).rcode() == dns.rcode.NOERROR
    assert bind.txt(DEEP) == []


def test_the_key_may_not_change_other_types(bind):
    update = bind.update("www.example.test", key=bind.tsig_key())
    update.add("www.example.test.", 60, "A", "192.0.2.1")
    assert bind.send(update).rcode() == dns.rcode.REFUSED
    assert bind.records("www.example.test", "A") == []


def test_update_with_a_wrong_secret_is_refused(bind):
    wrong = bind.tsig_key(secret="d3Jvbmcgc2VjcmV0IGZvciB0aGUgbmVnYXRpdmUgdGVzdA==")
    update = bind.update("_acme-challenge.example.test", key=wrong)
    update.add("_acme-challenge.example.test.", 60, "TXT", '"forged"')
    with pytest.raises(dns.tsig.PeerBadSignature):
        bind.send(update)
    assert bind.txt("_acme-challenge.example.test") == []
    assert "BADSIG" in bind.log_file.read_text()


def test_helpers_add_delete_and_cname(bind):
    name = "_acme-challenge.shop.example.test"
    bind.add(name, "TXT", 'a "quoted" value')
    bind.add(name, "TXT", "second")
    assert sorted(bind.txt(name)) == ['a "quoted" value', "second"]
    bind.delete(name, "TXT", "second")
    assert bind.txt(name) == ['a "quoted" value']
    bind.set_cname(name, "shop.acme-delegate.test")
    reply = bind.query(name, "CNAME")
    assert [r.target.to_text() for rrset in reply.answer for r in rrset] == ["shop.acme-delegate.test."]
    bind.delete(name)
    assert bind.query(name, "CNAME").rcode() == dns.rcode.NXDOMAIN
    bind.add("seeded.example.com.cn", "A", "192.0.2.7")  # any type: the helpers' key may pre-seed anything
    assert bind.records("seeded.example.com.cn", "A") == ["192.0.2.7"]


def test_apparmor_check_reads_the_profile_list(tmp_path):
    profiles = tmp_path / "profiles"
    profiles.write_text("/usr/bin/man (enforce)\nnamed (enforce)\n")
    assert apparmor_confines("/usr/sbin/named", profiles)
    profiles.write_text("named (complain)\n")
    assert not apparmor_confines("/usr/sbin/named", profiles)
    assert not apparmor_confines("/usr/sbin/named", tmp_path / "absent")


# --- nginx ---


def test_nginx_serves_challenge_files_from_the_webroot(nginx, tmp_path):
    token = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"
    content = token + ".9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
    challenge = tmp_path / ".well-known" / "acme-challenge"
    challenge.mkdir(parents=True)
    (challenge / token).write_text(content)
    site = nginx.serve_webroot(tmp_path)
    resp = requests.get(f"{site.url}/.well-known/acme-challenge/{token}", timeout=5)
    assert resp.status_code == 200 and resp.content == content.encode()
    assert requests.get(f"{site.url}/.well-known/acme-challenge/missing", timeout=5).status_code == 404
    logged = f'{site.port} 127.0.0.1 "GET /.well-known/acme-challenge/{token} HTTP/1.1" 200'
    assert logged in nginx.access_log.read_text()


def self_signed(tmp_path, name: str) -> tuple:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert, cert_file, key_file


def served_certificate(site, name: str) -> x509.Certificate:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((site.address, site.port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=name) as tls:
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def test_nginx_tls_site_presents_its_certificate_and_switches_on_change(nginx, tmp_path):
    first, first_pem, first_key = self_signed(tmp_path, "first.example.test")
    second, second_pem, second_key = self_signed(tmp_path, "second.example.test")
    site = nginx.serve_tls(first_pem, first_key)
    assert served_certificate(site, "first.example.test") == first
    site = nginx.change(site, cert=second_pem, key=second_key)
    # Live for every connection once change() returns: no old worker is left to answer.
    assert all(served_certificate(site, "first.example.test") == second for _ in range(5))
