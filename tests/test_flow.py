"""End to end: the nine steps as subprocesses against a real Pebble, as a user runs them."""

from __future__ import annotations

import json
import re
import subprocess
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.verification import PolicyBuilder, Store
from helpers import fails

from common.jws import b64url, int_to_bytes


def unique(label: str) -> str:
    """A name no earlier order used, so Pebble cannot reuse an authorization unless told to."""
    return f"{label}.t{uuid.uuid4().hex[:10]}.example.com"


def load_chain(work):
    leaf = x509.load_pem_x509_certificate((work / "cert.pem").read_bytes())
    chain = x509.load_pem_x509_certificates((work / "chain.pem").read_bytes())
    return leaf, chain


def assert_verifies(ca, work, name):
    """The leaf chains to Pebble's root (from its management API) for ``name``."""
    root = x509.load_pem_x509_certificate(ca.management("/roots/0").content)
    leaf, chain = load_chain(work)
    verifier = PolicyBuilder().store(Store([root])).build_server_verifier(x509.DNSName(name))
    verified = verifier.verify(leaf, chain)
    assert verified[-1] == root


def san(cert):
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)


def test_one_name(ca, work):
    name = unique("one")
    ca.issue(work, [name])
    leaf, chain = load_chain(work)
    key = serialization.load_pem_private_key((work / "cert.key").read_bytes(), None)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert leaf.public_key().public_bytes(serialization.Encoding.DER, spki) == \
        key.public_key().public_bytes(serialization.Encoding.DER, spki)
    assert san(leaf) == [name]
    assert (work / "fullchain.pem").read_bytes() == (work / "cert.pem").read_bytes() + (work / "chain.pem").read_bytes()
    assert_verifies(ca, work, name)
    order = json.loads((work / "order.json").read_text())
    assert order["order"]["status"] == "valid"
    assert ca.txt(f"_acme-challenge.{name}") == []  # 06 cleaned up after itself


def test_wildcard_apex_and_idn(ca, work):
    base = unique("multi")
    names = [base.upper(), f"*.{base}", f"bücher-{base}"]
    runs = ca.issue(work, names, key_type="rsa2048")
    leaf, _ = load_chain(work)
    idn = [n for n in san(leaf) if n.startswith("xn--")]
    assert len(idn) == 1 and idn[0].encode("ascii").decode("idna") == f"bücher-{base}"
    assert sorted(san(leaf)) == sorted([base, f"*.{base}", idn[0]])
    # The wildcard and its apex share one TXT name and needed two values there at once.
    answered = runs[5].stdout
    assert answered.count(f"_acme-challenge.{base} TXT") == 2
    assert_verifies(ca, work, f"www.{base}")
    assert_verifies(ca, work, base)


def test_nonce_rejection_90_percent(ca_nonce90, work):
    name = unique("nonce")
    runs = ca_nonce90.issue(work, [name], v=True, key_type="ec384")
    assert "badNonce" in "".join(r.stdout for r in runs), "Pebble should have rejected some nonces"
    assert_verifies(ca_nonce90, work, name)


def test_second_order_reuses_authorizations(ca_reuse, work):
    name, other = unique("reuse"), unique("fresh")
    ca_reuse.issue(work, [name])
    first_serial = load_chain(work)[0].serial_number
    # Same names again: every authorization is reused, the new order is ready at once.
    runs = ca_reuse.order(work)
    assert "... ready:" in runs[0].stdout
    assert "already ready" in runs[1].stdout and "Answered" not in runs[1].stdout
    assert load_chain(work)[0].serial_number != first_serial
    # One known name and one new one: only the new one is proven.
    ca_reuse.ok(3, work, "-d", name, "-d", other)
    runs = ca_reuse.order(work)
    assert f"{name}: already valid" in runs[1].stdout
    assert f"Answered dns-01 for {other}" in runs[1].stdout and f"Answered dns-01 for {name}" not in runs[1].stdout
    assert sorted(san(load_chain(work)[0])) == sorted([name, other])


def test_failed_challenge_reports_ca_detail(ca, work):
    name = unique("fail")
    ca.ok(1, work)
    ca.ok(2, work)
    ca.ok(3, work, "-d", name, "-d", f"ok-{name}")
    ca.ok(4, work, "--server", "pebble", "--agree-tos")
    ca.ok(5, work)
    ca.challtestsrv("/set-servfail", {"host": f"_acme-challenge.{name}."})
    # The propagation check would see the SERVFAIL and never answer; this test is about the CA's verdict.
    result = ca.run(6, work, "--provider", "challtestsrv", "--challtestsrv-url", ca.state["challtestsrv_url"],
                    "--first-wait", "0.2", "--no-propagation-check")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "urn:ietf:params:acme:error:" in result.stderr
    assert f"dns:{name}: urn:ietf:params:acme:error:" in result.stderr  # a subproblem per failed name
    assert f"_acme-challenge.{name}" in result.stderr and "TXT" in result.stderr  # the CA's own detail
    assert "Removing TXT records" in result.stdout
    assert ca.txt(f"_acme-challenge.ok-{name}") == []  # removed on failure too


def test_records_the_dns_does_not_serve_stop_06_before_the_ca_is_asked(ca, work, tmp_path):
    name = unique("unseen")
    ca.ok(1, work)
    ca.ok(2, work)
    ca.ok(3, work, "-d", name)
    ca.ok(4, work, "--server", "pebble", "--agree-tos")
    ca.ok(5, work)
    ca.challtestsrv("/set-servfail", {"host": f"_acme-challenge.{name}."})
    requests_made = tmp_path / "requests.log"
    result = ca.run(6, work, "--provider", "challtestsrv", "--challtestsrv-url", ca.state["challtestsrv_url"],
                    "--propagation-timeout", "3", env={"ACME_REQUEST_LOG": str(requests_made)})
    fails(result, 1, "not yet visible", f"_acme-challenge.{name}", "--propagation-timeout")
    assert "chal" not in requests_made.read_text().lower()  # no challenge was answered
    assert "Removing TXT records" in result.stdout and not (work / "dns-records.json").exists()
    ca.challtestsrv("/clear-servfail", {"host": f"_acme-challenge.{name}."})
    assert ca.txt(f"_acme-challenge.{name}") == []


@pytest.mark.parametrize(("step", "args", "needs"), [
    (3, ["-d", "example.com"], "02_create_cert_key.py"),
    (4, ["--server", "pebble", "--agree-tos"], "01_create_account_key.py"),
    (5, [], "03_create_csr.py"),
    (6, ["--provider", "challtestsrv"], "05_new_order.py"),
    (7, [], "05_new_order.py"),
    (8, [], "05_new_order.py"),
    (9, [], "02_create_cert_key.py"),
])
def test_missing_earlier_step_exits_2_naming_it(ca, work, step, args, needs):
    result = ca.run(step, work, *args)
    assert result.returncode == 2, result.stderr
    assert needs in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_step_order_checks_after_csr(ca, work):
    ca.ok(1, work)
    ca.ok(2, work)
    ca.ok(3, work, "-d", unique("order"))
    result = ca.run(5, work)
    assert result.returncode == 2 and "04_new_account.py" in result.stderr


def test_account_key_kept_without_force(ca, work):
    ca.ok(1, work)
    before = (work / "account.key").read_bytes()
    result = ca.run(1, work)
    assert result.returncode == 2 and "--force" in result.stderr
    assert (work / "account.key").read_bytes() == before
    forced = ca.ok(1, work, "--force", "--key-type", "ec384")
    assert "warning" in forced.stderr.lower()
    assert (work / "account.key").read_bytes() != before
    assert (work / "account.key").stat().st_mode & 0o777 == 0o600


def test_invalid_name_exits_2(ca, work):
    ca.ok(2, work)
    for bad in ("exa mple.com", "*.*.example.com", "-x.example.com", "example"):
        result = ca.run(3, work, f"--domain={bad}")
        assert result.returncode == 2, bad
        assert "invalid name" in result.stderr and "Traceback" not in result.stderr
    assert not (work / "cert.csr").exists()


def test_terms_of_service_needed(ca, work):
    ca.ok(1, work)
    result = ca.run(4, work, "--server", "pebble")
    assert result.returncode == 2
    assert "Do%20what%20thou%20wilt" in result.stderr and "--agree-tos" in result.stderr


def test_new_account_twice_reports_existing(ca, work):
    ca.ok(1, work)
    first = ca.ok(4, work, "--server", "pebble", "--agree-tos")
    again = ca.ok(4, work, "--server", "pebble", "--agree-tos")
    url = re.search(r"https://\S+", first.stdout.split("Account created:")[1]).group(0)
    assert "already exists" in again.stdout and url in again.stdout


def test_explicit_directory_url_and_ca_bundle(ca, work):
    """--server URL with --ca-bundle instead of the 'pebble' shortcut; without the bundle TLS fails."""
    ca.ok(1, work)
    url, bundle = ca.state["directory_url"], ca.state["ca_bundle"]
    result = ca.run(4, work, "--server", url, "--agree-tos")
    assert result.returncode == 1 and "--ca-bundle" in result.stderr and "Traceback" not in result.stderr
    ca.ok(4, work, "--server", url, "--ca-bundle", bundle, "--agree-tos")
    # Later steps find server and bundle in account.json, even with REQUESTS_CA_BUNDLE pointing elsewhere.
    ca.ok(2, work)
    ca.ok(3, work, "-d", unique("bundle"))
    ca.ok(5, work, env={"REQUESTS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt"})


def test_ca_error_prints_problem_and_exits_1(ca, work):
    """A name Pebble refuses (its blocklist) comes back as a problem document with subproblems."""
    ca.ok(1, work)
    ca.ok(2, work)
    ca.ok(3, work, "-d", "blocked-domain.example")
    ca.ok(4, work, "--server", "pebble", "--agree-tos")
    result = ca.run(5, work)
    assert result.returncode == 1
    assert "urn:ietf:params:acme:error:rejectedIdentifier" in result.stderr
    assert "Traceback" not in result.stderr


def _openssl_info(path, password):
    return subprocess.run(["openssl", "pkcs12", "-info", "-noout", "-in", str(path), "-passin", f"pass:{password}"],
                          capture_output=True, text=True, check=True).stderr


@pytest.mark.parametrize(("legacy", "expected"), [
    (False, ["MAC: sha256", "PBES2, PBKDF2, AES-256-CBC"]),
    (True, ["MAC: sha1", "pbeWithSHA1And3-KeyTripleDES-CBC"]),
])
def test_pkcs12_export(ca, work, legacy, expected):
    name = unique("pfx")
    ca.issue(work, [name])
    password = "correct horse battery staple"
    args = ["--password-env", "PFX_PW"] + (["--legacy"] if legacy else [])
    result = ca.ok(9, work, *args, env={"PFX_PW": password})
    assert password not in result.stdout + result.stderr
    assert "install-iis.ps1" in result.stdout and "Next:" in result.stdout
    pfx = work / "certificate.pfx"
    assert pfx.stat().st_mode & 0o777 == 0o600
    key, cert, extra = pkcs12.load_key_and_certificates(pfx.read_bytes(), password.encode())
    leaf, chain = load_chain(work)
    assert cert == leaf and extra == chain
    assert key.private_numbers() == serialization.load_pem_private_key((work / "cert.key").read_bytes(), None) \
        .private_numbers()
    info = _openssl_info(pfx, password)
    for text in expected:
        assert text in info, info
    # Never replaced without --force; the wrong password does not open it.
    again = ca.run(9, work, *args, env={"PFX_PW": password})
    assert again.returncode == 2 and "--force" in again.stderr
    with pytest.raises(ValueError):
        pkcs12.load_key_and_certificates(pfx.read_bytes(), b"wrong")


def test_pkcs12_password_from_file_and_prompt_rules(ca, work, tmp_path):
    ca.issue(work, [unique("pw")])
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    result = ca.run(9, work, "--password-file", str(empty))
    assert result.returncode == 2 and "empty" in result.stderr
    secret = tmp_path / "pw.txt"
    secret.write_text("s3cret-from-file\n")
    ca.ok(9, work, "--password-file", str(secret))
    pkcs12.load_key_and_certificates((work / "certificate.pfx").read_bytes(), b"s3cret-from-file")


def test_verbose_shows_the_wire_but_no_key_material(ca, work):
    name = unique("verbose")
    runs = ca.issue(work, [name], v=True)
    out = "".join(r.stdout + r.stderr for r in runs)
    for marker in ("> POST", "protected:", "payload:", "Replay-Nonce:", "Location:", '"identifiers"', "< 201"):
        assert marker in out, marker
    assert "PRIVATE KEY" not in out
    account = serialization.load_pem_private_key((work / "account.key").read_bytes(), None)
    cert_key = serialization.load_pem_private_key((work / "cert.key").read_bytes(), None)
    secrets = [b64url(int_to_bytes(account.private_numbers().private_value, 32)),
               b64url(int_to_bytes(cert_key.private_numbers().d))]
    for secret in secrets:
        assert secret not in out and secret[:24] not in out
    # The CSR and the certificate are abbreviated, not dumped.
    csr = x509.load_pem_x509_csr((work / "cert.csr").read_bytes())
    assert b64url(csr.public_bytes(serialization.Encoding.DER))[60:120] not in out
    assert (work / "cert.pem").read_text().splitlines()[3] not in out


def test_quiet_prints_nothing_on_success(ca, work):
    result = ca.ok(1, work, "-q")
    assert result.stdout == "" and result.stderr == ""


def test_published_records_are_visible_then_gone(ca):
    """The provider's records really reach the DNS the CA asks, two values on one name included."""
    from common.dns_lookup import Server
    from common.dns_providers import ChalltestsrvProvider, TxtRecord

    name = f"_acme-challenge.{unique('dns')}"
    host, port = ca.state["dns_server"].rsplit(":", 1)
    provider = ChalltestsrvProvider(ca.state["challtestsrv_url"], Server(host, int(port)))
    records = [TxtRecord(name, "first-value"), TxtRecord(name, "second-value")]
    provider.publish(records)
    assert sorted(ca.txt(name)) == ["first-value", "second-value"]
    provider.remove(records)
    assert ca.txt(name) == []


def test_unusable_work_dir_exits_2(ca, tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    result = ca.run(1, not_a_dir)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert str(not_a_dir) in result.stderr


def test_longer_chain_and_alternate_roots(ca_chains, work):
    """Two intermediates and alternate chains: every intermediate is kept, in order, and exported."""
    name = unique("chain")
    runs = ca_chains.issue(work, [name])
    leaf, chain = load_chain(work)
    assert len(chain) >= 2
    for child, parent in zip([leaf, *chain[:-1]], chain, strict=True):
        assert child.issuer == parent.subject
    assert "alternate chain" in runs[-1].stdout
    assert_verifies(ca_chains, work, name)
    ca_chains.ok(9, work, "--password-env", "PW", env={"PW": "chain-test"})
    _, _, extra = pkcs12.load_key_and_certificates((work / "certificate.pfx").read_bytes(), b"chain-test")
    assert extra == chain
