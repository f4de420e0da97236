"""Step 20 against the local fake of Alibaba's CAS, CDN and API Gateway APIs (tests/fake_alibaba.py).

The fake checks every signature with Alibaba's own SDK code, so a run that gets through was
signed right. The work dir holds a certificate from a small CA made with ``cryptography``
(``write_certificate_files``: faster than Pebble, and the step only reads the files).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fake_alibaba import ACCESS_KEY_SECRET, DEFAULT_GROUP, fake_alibaba  # noqa: F401
from fake_alibaba import write_certificate_files as issue

ROOT = Path(__file__).resolve().parent.parent
STEP = ROOT / "20_deploy_alibaba.py"
NAMES = ["www.example.com", "example.com"]


def run(fake, work: Path, *args: str, env: dict[str, str] | None = None, overrides: bool = True
        ) -> subprocess.CompletedProcess:
    command = [sys.executable, str(STEP), "--dir", str(work), *(fake.endpoint_overrides() if overrides else []), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env or fake.env(), timeout=120,
                          cwd=work.parent)


def ok(fake, work: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    result = run(fake, work, *args, **kw)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result


def leaf_of(work: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate((work / "cert.pem").read_bytes())


@pytest.fixture
def fake(fake_alibaba):  # noqa: F811 (the imported fixture)
    fake_alibaba.reset()
    return fake_alibaba


@pytest.fixture
def work(tmp_path):
    work = tmp_path / "acme-work"
    issue(work, NAMES)
    return work


# --- what gets called, with what ------------------------------------------------------------


def test_upload_then_bind_cdn_domains_and_api_gateway(fake, work):
    result = ok(fake, work, "--cdn-domain", "cdn.example.com", "--cdn-domain", "static.example.com",
                "--api-gateway-group", DEFAULT_GROUP, "--api-gateway-domain", "api.example.com",
                "--region", "cn-hangzhou")
    assert fake.actions() == ["ListUserCertificateOrder", "UploadUserCertificate", "SetCdnDomainSSLCertificate",
                              "SetCdnDomainSSLCertificate", "SetDomainCertificate"]
    listing, upload, *cdn, gateway = fake.calls
    leaf = leaf_of(work)
    fullchain = (work / "cert.pem").read_text() + (work / "chain.pem").read_text()
    key = serialization.load_pem_private_key((work / "cert.key").read_bytes(), None)

    assert listing.service == "cas"
    assert listing.params == {"OrderType": "UPLOAD", "Keyword": "www.example.com", "CurrentPage": "1",
                              "ShowSize": "50"}
    assert upload.service == "cas" and upload.params.keys() == {"Name", "Cert", "Key"}
    name = upload.params["Name"]
    assert name.startswith(f"www.example.com-{leaf.not_valid_after_utc:%Y%m%d}-") and len(name) <= 63
    assert upload.params["Cert"] == fullchain
    uploaded_key = serialization.load_pem_private_key(upload.params["Key"].encode(), None)
    assert uploaded_key.private_numbers() == key.private_numbers()
    assert upload.params["Key"].startswith("-----BEGIN EC PRIVATE KEY-----")  # the traditional form
    (cert_id,) = fake.cas.certificates

    assert [c.service for c in cdn] == ["cdn", "cdn"]
    assert [c.params for c in cdn] == [
        {"DomainName": d, "SSLProtocol": "on", "CertType": "cas", "CertId": str(cert_id), "CertRegion": "cn-hangzhou"}
        for d in ("cdn.example.com", "static.example.com")]
    assert fake.cdn.domains["cdn.example.com"] == {"SSLProtocol": "on", "CertType": "cas", "CertId": cert_id,
                                                   "CertRegion": "cn-hangzhou", "CertName": None}

    assert gateway.service == "apigateway"
    assert gateway.params["GroupId"] == DEFAULT_GROUP and gateway.params["DomainName"] == "api.example.com"
    assert gateway.params["CertificateName"] == name
    assert gateway.params["CertificateBody"] == fullchain
    assert fake.apigateway.groups[DEFAULT_GROUP]["api.example.com"]["serial"] == leaf.serial_number

    lines = result.stdout.splitlines()
    about = f"serial {leaf.serial_number:x}, expires {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    assert lines == [
        f"CAS: uploaded {name} as CertId {cert_id} ({about})",
        f"CDN: cdn.example.com now serves CertId {cert_id} ({about})",
        f"CDN: static.example.com now serves CertId {cert_id} ({about})",
        f"API Gateway: api.example.com (group {DEFAULT_GROUP}) now serves {name} ({about})",
        "Next: 21_check_endpoint.py cdn.example.com --wait 900 (a CDN takes minutes to serve it everywhere)",
    ]
    for call in fake.calls:  # every call signed the way the SDK signs, headers included
        signed = call.headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
        assert {"host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce",
                "x-acs-content-sha256"} <= set(signed)
    assert len({c.headers["x-acs-signature-nonce"] for c in fake.calls}) == len(fake.calls)


def test_an_uploaded_certificate_is_reused_not_uploaded_again(fake, work):
    first = ok(fake, work, "--cdn-domain", "cdn.example.com")
    (cert_id,) = fake.cas.certificates
    fake.calls.clear()
    second = ok(fake, work, "--cdn-domain", "cdn.example.com")
    assert fake.actions() == ["ListUserCertificateOrder", "SetCdnDomainSSLCertificate"]
    assert fake.calls[-1].params["CertId"] == str(cert_id)
    assert list(fake.cas.certificates) == [cert_id]
    name = fake.cas.certificates[cert_id].name
    assert f"CAS: uploaded {name} as CertId {cert_id}" in first.stdout
    assert f"CAS: already there as {name}, CertId {cert_id}: reusing it" in second.stdout


def test_reuse_finds_the_certificate_by_fingerprint_among_others(fake, work, tmp_path):
    """Uploaded earlier under another name (in the console, say): page 2 of the listing, newest first."""
    console_id = fake.cas.upload("uploaded-by-hand", (work / "cert.pem").read_text(), (work / "cert.key").read_text())
    other = tmp_path / "other"
    for n in range(60):  # more than a page of 50 for the keyword, all newer
        issue(other, NAMES)
        fake.cas.upload(f"newer-{n}", (other / "cert.pem").read_text() + (other / "chain.pem").read_text(),
                        (other / "cert.key").read_text())
    result = ok(fake, work, "--cdn-domain", "cdn.example.com")
    assert fake.actions() == ["ListUserCertificateOrder", "ListUserCertificateOrder", "SetCdnDomainSSLCertificate"]
    assert [c.params["CurrentPage"] for c in fake.calls_of("ListUserCertificateOrder")] == ["1", "2"]
    assert fake.calls[-1].params["CertId"] == str(console_id)
    assert f"already there as uploaded-by-hand, CertId {console_id}" in result.stdout


def test_cert_name_option_and_its_limit(fake, work):
    ok(fake, work, "--cert-name", "my-cert")
    assert fake.calls_of("UploadUserCertificate")[0].params["Name"] == "my-cert"
    result = run(fake, work, "--cert-name", "x" * 64)
    assert result.returncode == 2 and "--cert-name must have 1 to 63 characters" in result.stderr


def test_a_long_wildcard_name_gives_a_name_of_63_characters(fake, tmp_path):
    work = tmp_path / "acme-work"
    long_name = "a-very-long-label-for-testing-the-name-limit.sub.example.com"
    issue(work, [f"*.{long_name}", long_name])
    ok(fake, work)
    name = fake.calls_of("UploadUserCertificate")[0].params["Name"]
    assert len(name) == 63 and name.startswith("wildcard.a-very-long-label")
    assert fake.calls_of("ListUserCertificateOrder")[0].params["Keyword"] == long_name


def test_same_name_with_another_certificate_is_alibabas_error(fake, work, tmp_path):
    other = tmp_path / "other"
    issue(other, NAMES)
    fake.cas.upload("taken", (other / "cert.pem").read_text(), (other / "cert.key").read_text())
    result = run(fake, work, "--cert-name", "taken", "--cdn-domain", "cdn.example.com")
    assert result.returncode == 1, result.stderr
    assert "CAS UploadUserCertificate for taken failed: NameRepeat: The certificate name already exists." \
        in result.stderr
    assert "SetCdnDomainSSLCertificate" not in fake.actions()


def test_international_account_uses_ap_southeast_1(fake, work):
    ok(fake, work, "--cdn-domain", "cdn.example.com", "--cert-region", "ap-southeast-1")
    assert fake.calls_of("SetCdnDomainSSLCertificate")[0].params["CertRegion"] == "ap-southeast-1"


def test_rsa_key_is_sent_in_pkcs1_form(fake, tmp_path):
    work = tmp_path / "acme-work"
    issue(work, NAMES, rsa_key=True)
    ok(fake, work)
    assert fake.calls_of("UploadUserCertificate")[0].params["Key"].startswith("-----BEGIN RSA PRIVATE KEY-----")


# --- failures -------------------------------------------------------------------------------


def test_unknown_cdn_domain_is_exit_1_with_alibabas_code_and_the_others_still_done(fake, work):
    result = run(fake, work, "--cdn-domain", "nosuch.example.com", "--cdn-domain", "cdn.example.com")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert ("error: CDN SetCdnDomainSSLCertificate for nosuch.example.com failed: InvalidDomain.NotFound: "
            "The domain provided does not exist in our records. (RequestId ") in result.stderr
    assert "(no CDN domain of that name in this account: check --cdn-domain)" in result.stderr
    assert fake.cdn.domains["cdn.example.com"]["SSLProtocol"] == "on"
    assert "CDN: cdn.example.com now serves CertId" in result.stdout


def test_unknown_api_gateway_group_is_exit_1(fake, work):
    result = run(fake, work, "--api-gateway-group", "0" * 32, "--api-gateway-domain", "api.example.com",
                 "--region", "cn-hangzhou")
    assert result.returncode == 1
    assert "API Gateway SetDomainCertificate for api.example.com (group 000" in result.stderr
    assert "NotFoundApiGroup" in result.stderr


@pytest.mark.parametrize("drop", ["ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET"])
def test_missing_credentials_is_exit_2_naming_the_variables(fake, work, drop):
    env = fake.env()
    del env[drop]
    result = run(fake, work, "--cdn-domain", "cdn.example.com", env=env)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {drop} not set: export ALIBABA_CLOUD_ACCESS_KEY_ID and "
                                    "ALIBABA_CLOUD_ACCESS_KEY_SECRET")
    assert len(result.stderr.splitlines()) == 1
    assert fake.calls == []


def test_wrong_secret_and_unknown_key_are_exit_1_with_a_hint(fake, work):
    result = run(fake, work, env=fake.env(ALIBABA_CLOUD_ACCESS_KEY_SECRET="not-the-secret"))
    assert result.returncode == 1
    assert "SignatureDoesNotMatch" in result.stderr and "check ALIBABA_CLOUD_ACCESS_KEY_SECRET" in result.stderr
    result = run(fake, work, env=fake.env(ALIBABA_CLOUD_ACCESS_KEY_ID="LTAI-unknown"))
    assert result.returncode == 1
    assert "InvalidAccessKeyId.NotFound" in result.stderr


@pytest.mark.parametrize("missing, step", [("cert.pem", "08_get_certificate.py"),
                                           ("cert.key", "02_create_cert_key.py")])
def test_missing_files_are_exit_2_naming_the_step(fake, work, missing, step):
    (work / missing).unlink()
    result = run(fake, work, "--cdn-domain", "cdn.example.com")
    assert result.returncode == 2
    assert f"{missing} not found: run {step} first" in result.stderr
    assert fake.calls == []


def test_key_of_another_certificate_is_exit_2(fake, work, tmp_path):
    issue(tmp_path / "other", NAMES)
    (work / "cert.key").write_bytes((tmp_path / "other" / "cert.key").read_bytes())
    result = run(fake, work)
    assert result.returncode == 2 and "cert.pem is not for" in result.stderr
    assert fake.calls == []


def test_expired_certificate_is_exit_2(fake, tmp_path):
    work = tmp_path / "acme-work"
    issue(work, NAMES, expired=True)
    result = run(fake, work)
    assert result.returncode == 2 and "expired on" in result.stderr


@pytest.mark.parametrize("args, words", [
    (["--endpoint-override", "alidns=https://127.0.0.1:1/alidns"], "the service must be one of cas, cdn, apigateway"),
    (["--endpoint-override", "cdn=http://127.0.0.1:1/cdn"], "the URL must start with https://"),
    (["--api-gateway-group", "abc"], "--api-gateway-group and --api-gateway-domain go together"),
    (["--api-gateway-group", "abc", "--api-gateway-domain", "api.example.com"], "needs --region"),
])
def test_bad_options_are_exit_2(fake, work, args, words):
    result = run(fake, work, *args, overrides=False)
    assert result.returncode == 2
    assert words in result.stderr and len(result.stderr.splitlines()) == 1
    assert fake.calls == []


def test_network_failure_is_exit_1_without_the_parameters(fake, work):
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run(fake, work, "--endpoint-override", f"cas=https://127.0.0.1:{port}/cas", overrides=False)
    assert result.returncode == 1
    assert "NetworkError: cannot reach 127.0.0.1 (ConnectionError): connection failed" in result.stderr
    assert "Keyword" not in result.stderr and "Traceback" not in result.stderr


# --- secrets ----------------------------------------------------------------------------------


def test_no_secret_in_any_output_even_with_v(fake, work):
    token = "sts-token-0f3e9d8c7b6a5948-do-not-print"
    fake.add_access_key("STS.FakeTemporaryKeyId", "sts-secret-7Yh2Kq9Lp4Rm-do-not-print", token)
    env = fake.env(ALIBABA_CLOUD_ACCESS_KEY_ID="STS.FakeTemporaryKeyId",
                   ALIBABA_CLOUD_ACCESS_KEY_SECRET="sts-secret-7Yh2Kq9Lp4Rm-do-not-print",
                   ALIBABA_CLOUD_SECURITY_TOKEN=token)
    args = ["--cdn-domain", "cdn.example.com", "--api-gateway-group", DEFAULT_GROUP,
            "--api-gateway-domain", "api.example.com", "--region", "cn-hangzhou"]
    results = [ok(fake, work, "-v", *args, env=env), ok(fake, work, *args, env=env),
               run(fake, work, "-v", "--cdn-domain", "nosuch.example.com", env=env)]
    assert results[2].returncode == 1
    key_pem = (work / "cert.key").read_text()
    uploaded_key = fake.cas.certificates[next(iter(fake.cas.certificates))].key
    secrets = ["sts-secret-7Yh2Kq9Lp4Rm-do-not-print", token, ACCESS_KEY_SECRET]
    secrets += [line for pem in (key_pem, uploaded_key) for line in pem.splitlines() if "-----" not in line]
    for result in results:
        for secret in secrets:
            assert secret not in result.stdout and secret not in result.stderr
    verbose = results[0].stdout + results[0].stderr
    assert "UploadUserCertificate" in verbose and "SetDomainCertificate" in verbose
    assert "Key = <redacted," in verbose and "CertificatePrivateKey = <redacted," in verbose
    assert "Signature=<redacted>" in verbose and "x-acs-security-token: <redacted>" in verbose
    assert "PRIVATE KEY" not in verbose
    # the token went to Alibaba, signed
    assert all(c.headers.get("x-acs-security-token") == token for c in fake.calls)
    assert "x-acs-security-token" in fake.calls[0].headers["authorization"]


def test_help_names_the_apis_and_files(tmp_path):
    result = subprocess.run([sys.executable, str(STEP), "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0
    for words in ("UploadUserCertificate", "SetCdnDomainSSLCertificate", "SetDomainCertificate", "Reads:",
                  "cert.pem", "ALIBABA_CLOUD_ACCESS_KEY_ID", "--endpoint-override"):
        assert words in result.stdout
