"""common/alibaba.py: the ACS3-HMAC-SHA256 signer and call().

Oracles: Alibaba's published worked example (byte for byte), Alibaba's own SDK
(``alibabacloud_openapi_util`` and ``alibabacloud_tea_openapi``, test-only dependencies), and the
fake's signature check, which is that SDK code too. The fake itself is tested in test_fake_alibaba.py.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
from alibabacloud_openapi_util.client import Client as OpenApiUtil
from alibabacloud_tea_openapi.utils import Utils as TeaUtils
from fake_alibaba import ACCESS_KEY_ID, ACCESS_KEY_SECRET, fake_alibaba, write_certificate_files  # noqa: F401

from common import alibaba

ROOT = Path(__file__).resolve().parent.parent

# --- Alibaba's published example ----------------------------------------------------------
# "Request syntax and signature method V3" ("V3 request structure and signature"), section
# "Signature examples" / "Fixed parameter values":
# https://www.alibabacloud.com/help/en/sdk/product-overview/v3-request-structure-and-signature
# (The page's header table shows another date and nonce next to the same signature; the worked
# example, reproduced here, is the consistent one.)
EXAMPLE = {
    "method": "POST", "host": "ecs.cn-shanghai.aliyuncs.com", "path": "/",
    "query": [("ImageId", "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd"), ("RegionId", "cn-shanghai")],
    "headers": {"x-acs-action": "RunInstances", "x-acs-version": "2014-05-26"}, "body": b"",
    "access_key_id": "YourAccessKeyId", "access_key_secret": "YourAccessKeySecret",
    "date": "2023-10-26T10:22:32Z", "nonce": "3156853299f313e23d1673dc12e1703d",
}
EXAMPLE_CANONICAL_REQUEST = (
    "POST\n"
    "/\n"
    "ImageId=win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd&RegionId=cn-shanghai\n"
    "host:ecs.cn-shanghai.aliyuncs.com\n"
    "x-acs-action:RunInstances\n"
    "x-acs-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
    "x-acs-date:2023-10-26T10:22:32Z\n"
    "x-acs-signature-nonce:3156853299f313e23d1673dc12e1703d\n"
    "x-acs-version:2014-05-26\n"
    "\n"
    "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version\n"
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)
EXAMPLE_HASHED_CANONICAL_REQUEST = "7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
EXAMPLE_SIGNATURE = "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
EXAMPLE_AUTHORIZATION = (
    "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,"
    "SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,"
    f"Signature={EXAMPLE_SIGNATURE}"
)


def test_published_example_step_by_step():
    headers = {**EXAMPLE["headers"], "host": EXAMPLE["host"], "x-acs-date": EXAMPLE["date"],
               "x-acs-signature-nonce": EXAMPLE["nonce"], "x-acs-content-sha256": alibaba.hashed_payload(b"")}
    canonical, signed_headers = alibaba.canonical_request("POST", "/", EXAMPLE["query"], headers,
                                                          headers["x-acs-content-sha256"])
    assert canonical == EXAMPLE_CANONICAL_REQUEST
    assert hashlib.sha256(canonical.encode()).hexdigest() == EXAMPLE_HASHED_CANONICAL_REQUEST
    to_sign = alibaba.string_to_sign(canonical)
    assert to_sign == f"ACS3-HMAC-SHA256\n{EXAMPLE_HASHED_CANONICAL_REQUEST}"
    assert alibaba.signature("YourAccessKeySecret", to_sign) == EXAMPLE_SIGNATURE
    assert alibaba.authorization("YourAccessKeyId", signed_headers, EXAMPLE_SIGNATURE) == EXAMPLE_AUTHORIZATION


def test_published_example_through_sign_request():
    headers = alibaba.sign_request(**EXAMPLE)
    assert headers["authorization"] == EXAMPLE_AUTHORIZATION
    assert headers["x-acs-date"] == "2023-10-26T10:22:32Z"
    assert headers["x-acs-content-sha256"] == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    # a datetime gives the same date string
    when = datetime.datetime(2023, 10, 26, 10, 22, 32, tzinfo=datetime.timezone.utc)
    assert alibaba.sign_request(**{**EXAMPLE, "date": when})["authorization"] == EXAMPLE_AUTHORIZATION


def test_copied_alone_into_another_project(tmp_path):
    """The module works from an empty directory with nothing of the project importable."""
    alone = tmp_path / "elsewhere"
    alone.mkdir()
    shutil.copy(ROOT / "common" / "alibaba.py", alone / "alibaba.py")
    script = textwrap.dedent(f"""
        import importlib.util, sys
        sys.path.insert(0, {str(alone)!r})
        assert importlib.util.find_spec("common") is None, "the project is importable"
        import alibaba
        assert alibaba.__file__.startswith({str(alone)!r})
        headers = alibaba.sign_request(**{EXAMPLE!r})
        print(headers["authorization"])
    """)
    result = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, cwd=alone,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == EXAMPLE_AUTHORIZATION


# --- the encoding rules ---------------------------------------------------------------------


@pytest.mark.parametrize("text, encoded", [
    ("a b", "a%20b"), ("*", "%2A"), ("~", "~"), ("-_.", "-_."), ("+", "%2B"), ("/", "%2F"), ("=&", "%3D%26"),
    ("例", "%E4%BE%8B"), ("ü", "%C3%BC"), ("", ""),
])
def test_percent_encode_rfc3986(text, encoded):
    assert alibaba.percent_encode(text) == encoded


def test_canonical_query_sorts_encoded_names_and_keeps_empty_values():
    params = [("b", "2"), ("a", ""), ("A", "x y"), ("a.1", "*")]
    assert alibaba.canonical_query_string(params) == "A=x%20y&a=&a.1=%2A&b=2"
    assert alibaba.canonical_query_string([]) == ""


def test_canonical_headers_take_host_content_type_and_x_acs_only():
    lines, names = alibaba.canonical_headers({"Host": "h", "X-Acs-Date": " d ", "User-Agent": "u",
                                              "Content-Type": "t", "Accept": "a", "x-acs-b": "b"})
    assert lines == "content-type:t\nhost:h\nx-acs-b:b\nx-acs-date:d\n"
    assert names == "content-type;host;x-acs-b;x-acs-date"


# --- Alibaba's SDK as the oracle --------------------------------------------------------------

SDK_CASES = [
    pytest.param({"DomainName": "example.com", "RR": "_acme-challenge", "Type": "TXT", "Value": "abc"}, {},
                 id="plain"),
    pytest.param({"Value": "例子.测试 ü", "RR": "中文"}, {}, id="unicode"),
    pytest.param({"Value": "a b  c", "Lead": " x "}, {}, id="spaces"),
    pytest.param({"Value": "*.example.com", "Tilde": "~user", "Plus": "1+1=2", "Slash": "a/b?c#d&e"}, {},
                 id="star-tilde-reserved"),
    pytest.param({"Empty": "", "Zero": 0, "Flag": True}, {}, id="empty-and-typed"),
    pytest.param({"Tag": [{"Key": "k1", "Value": "v1"}, {"Key": "k2", "Value": ""}], "Ids": [1, 2, 3]}, {},
                 id="repeated-lists"),
    pytest.param({"Cert": "-----BEGIN CERTIFICATE-----\nMIIB+/=\n-----END CERTIFICATE-----\n"}, {}, id="pem"),
    pytest.param({"Action": "x"}, {"token": "CAIS-sts+token/==?"}, id="sts-token"),
    pytest.param({"Q": "1"}, {"form": {"Body": "form value *~", "N": 5}}, id="form-body"),
    pytest.param({"Q": "1"}, {"path": "/alidns"}, id="path-prefix"),
]


@pytest.mark.parametrize("params, extra", SDK_CASES)
def test_signature_matches_alibabas_sdk(params, extra):
    query = alibaba.flatten_params(params)
    assert dict(query) == TeaUtils.query(params) | {k: "true" for k, v in params.items() if v is True}
    body, headers = b"", {"x-acs-action": "AddDomainRecord", "x-acs-version": "2015-01-09"}
    if "form" in extra:
        body = TeaUtils.to_form(extra["form"]).encode()
        headers["content-type"] = "application/x-www-form-urlencoded"
    signed = alibaba.sign_request("POST", "alidns.aliyuncs.com", extra.get("path", "/"), query, headers, body,
                                  "LTAI5tOracleKey", "oracle-secret", datetime.datetime.now(datetime.timezone.utc),
                                  "c0ffee" * 5, extra.get("token"))
    if "token" in extra:
        assert signed["x-acs-security-token"] == extra["token"]
        assert "x-acs-security-token" in signed["authorization"].split("SignedHeaders=")[1]
    request = types.SimpleNamespace(method="POST", pathname=extra.get("path", "/"), query=dict(query),
                                    headers={k: v for k, v in signed.items() if k != "authorization"})
    for sdk in (OpenApiUtil, TeaUtils):  # the two copies of Alibaba's signer
        expected = sdk.get_authorization(request, "ACS3-HMAC-SHA256", hashlib.sha256(body).hexdigest(),
                                         "LTAI5tOracleKey", "oracle-secret")
        assert signed["authorization"] == expected


def test_sdk_signs_the_published_example_too():
    """The oracle agrees with the page: the SDK's signer on the example's inputs gives its signature."""
    headers = alibaba.sign_request(**EXAMPLE)
    request = types.SimpleNamespace(method="POST", pathname="/", query=dict(EXAMPLE["query"]),
                                    headers={k: v for k, v in headers.items() if k != "authorization"})
    assert OpenApiUtil.get_authorization(request, "ACS3-HMAC-SHA256", headers["x-acs-content-sha256"],
                                         "YourAccessKeyId", "YourAccessKeySecret") == EXAMPLE_AUTHORIZATION


# --- credentials ----------------------------------------------------------------------------


def test_credentials_from_the_environment_only():
    env = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAIid", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "s3cret-value",
           "ALIBABA_CLOUD_SECURITY_TOKEN": "t0ken-value"}
    creds = alibaba.credentials_from_env(env)
    assert (creds.access_key_id, creds.access_key_secret, creds.security_token) == ("LTAIid", "s3cret-value",
                                                                                    "t0ken-value")
    assert "s3cret-value" not in repr(creds) and "t0ken-value" not in repr(creds) and "LTAIid" in repr(creds)
    assert alibaba.credentials_from_env({**env, "ALIBABA_CLOUD_SECURITY_TOKEN": ""}).security_token is None
    with pytest.raises(alibaba.MissingCredentialsError, match="ALIBABA_CLOUD_ACCESS_KEY_SECRET not set"):
        alibaba.credentials_from_env({"ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAIid"})
    with pytest.raises(alibaba.MissingCredentialsError) as info:
        alibaba.credentials_from_env({})
    assert "ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET not set" in str(info.value)


# --- call() against the fake ------------------------------------------------------------------

CREDS = alibaba.Credentials(ACCESS_KEY_ID, ACCESS_KEY_SECRET)


@pytest.fixture
def fake(fake_alibaba, monkeypatch):  # noqa: F811 (the imported fixture)
    return fake_alibaba.trusted(monkeypatch)


def dns(fake, action, params=None, creds=CREDS, **kw):
    return alibaba.call(fake.url("alidns"), action, "2015-01-09", params or {}, creds, **kw)


def test_call_sends_what_the_sdk_sends(fake):
    answer = dns(fake, "AddDomainRecord", {"DomainName": "example.com", "RR": "_acme-challenge", "Type": "TXT",
                                           "Value": "v a*l~ue+例"})
    assert answer["RecordId"].isdigit() and answer["RequestId"]
    call = fake.calls[-1]
    assert (call.service, call.action) == ("alidns", "AddDomainRecord")
    assert call.params["Value"] == "v a*l~ue+例"
    assert call.headers["x-acs-content-sha256"] == hashlib.sha256(b"").hexdigest()  # all in the query
    assert "content-type" not in call.headers or "form" not in call.headers["content-type"]
    assert fake.dns.records("example.com")[0]["Value"] == "v a*l~ue+例"


def test_every_call_has_a_fresh_nonce(fake):
    for _ in range(5):
        dns(fake, "DescribeDomains")
    assert len({c.headers["x-acs-signature-nonce"] for c in fake.calls}) == 5
    assert all(len(c.headers["x-acs-signature-nonce"]) == 32 for c in fake.calls)


def test_form_parameters_go_in_a_signed_body(fake):
    answer = dns(fake, "DescribeDomains", {"PageNumber": 2}, form={"PageSize": 3})
    assert (answer["PageNumber"], answer["PageSize"], len(answer["Domains"]["Domain"])) == (2, 3, 3)
    assert fake.calls[-1].headers["content-type"] == "application/x-www-form-urlencoded"


def test_sts_token_is_sent_and_signed(fake):
    fake.add_access_key("STS.key", "sts-secret", "sts-token")
    dns(fake, "DescribeDomains", creds=alibaba.Credentials("STS.key", "sts-secret", "sts-token"))
    assert fake.calls[-1].headers["x-acs-security-token"] == "sts-token"
    with pytest.raises(alibaba.AlibabaError) as info:
        dns(fake, "DescribeDomains", creds=alibaba.Credentials("STS.key", "sts-secret", "another-token"))
    assert info.value.code == "InvalidSecurityToken.MismatchWithAccessKey"


def test_alibabas_error_answer_becomes_alibaba_error(fake):
    params = {"DomainName": "example.com", "RR": "www", "Type": "A", "Value": "192.0.2.1"}
    dns(fake, "AddDomainRecord", params)
    with pytest.raises(alibaba.AlibabaError) as info:
        dns(fake, "AddDomainRecord", params)
    error = info.value
    assert (error.code, error.message, error.status) == ("DomainRecordDuplicate", "The DNS record already exists.",
                                                         400)
    assert error.request_id and error.request_id in str(error)
    assert str(error).startswith("DomainRecordDuplicate: The DNS record already exists. (RequestId ")


@pytest.mark.parametrize("offset, seconds, words", [(datetime.timedelta(hours=1), 3600, "behind Alibaba's"),
                                                    (-datetime.timedelta(minutes=20), 1200, "ahead of Alibaba's")])
def test_clock_skew_says_by_how_much(fake, offset, seconds, words):
    fake.clock_offset = offset
    with pytest.raises(alibaba.AlibabaError) as info:
        dns(fake, "DescribeDomains")
    assert info.value.code == "InvalidTimeStamp.Expired"
    message = info.value.message
    assert message.startswith("Specified time stamp or date value is expired. This machine's clock is off: ")
    said = re.search(r"it is about (\d+) seconds (behind|ahead of) Alibaba's", message)
    assert said and abs(int(said.group(1)) - seconds) <= 2 and words in message  # the Date header has 1 s steps
    assert "Set the clock (NTP)" in message


def test_clock_advice_without_a_date_header():
    assert "15 minutes" in alibaba.clock_advice(None) and "15 minutes" in alibaba.clock_advice("garbage")


def test_https_only():
    with pytest.raises(ValueError, match="must be an https:// URL"):
        alibaba.call("http://alidns.aliyuncs.com", "DescribeDomains", "2015-01-09", {}, CREDS)


def test_network_error_names_the_host_not_the_parameters():
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(alibaba.AlibabaError) as info:
        alibaba.call(f"https://127.0.0.1:{port}/cas", "UploadUserCertificate", "2020-04-07",
                     {"Key": "-----BEGIN EC PRIVATE KEY-----\nSECRETKEYDATA\n"}, CREDS)
    assert info.value.code == "NetworkError" and info.value.status is None
    assert "cannot reach 127.0.0.1 (ConnectionError)" in str(info.value)
    assert "SECRETKEYDATA" not in str(info.value) and info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_untrusted_tls_is_a_clear_network_error(fake, monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with pytest.raises(alibaba.AlibabaError, match="TLS failed"):
        dns(fake, "DescribeDomains")


def test_response_size_is_capped(fake):
    with pytest.raises(alibaba.AlibabaError) as info:
        dns(fake, "DescribeDomains", {"PageSize": 100}, max_response_bytes=1000)
    assert info.value.code == "ResponseTooLarge"


def test_trace_redacts_secrets(fake, caplog):
    fake.add_access_key("STS.trace", "trace-secret-value", "trace-token-value")
    creds = alibaba.Credentials("STS.trace", "trace-secret-value", "trace-token-value")
    work = Path(fake.directory) / "trace-pair"  # upload a pair through call(), then read it back with its Key
    write_certificate_files(work, ["trace.example.com"])
    key_pem = (work / "cert.key").read_text()
    with caplog.at_level(logging.DEBUG, logger="acme.alibaba"):
        answer = alibaba.call(fake.url("cas"), "UploadUserCertificate", "2020-04-07",
                              {"Name": "trace", "Cert": (work / "cert.pem").read_text(), "Key": key_pem}, creds)
        alibaba.call(fake.url("cas"), "GetUserCertificateDetail", "2020-04-07", {"CertId": answer["CertId"]}, creds)
    assert fake.cas.certificates[answer["CertId"]].key == key_pem
    text = caplog.text
    key_body = [line for line in key_pem.splitlines() if "-----" not in line]
    for secret in ["trace-secret-value", "trace-token-value", *key_body]:
        assert secret not in text
    assert f"Key = <redacted, {len(key_pem)} characters>" in text
    assert '"Key": "<redacted,' in text  # in GetUserCertificateDetail's answer
    assert "Signature=<redacted>" in text and "x-acs-security-token: <redacted>" in text
    assert "Credential=STS.trace" in text and "UploadUserCertificate (API 2020-04-07)" in text
    assert "Cert = '-----BEGIN CERTIFICATE-----" in text and "characters)" in text  # shortened, not hidden


def test_secret_parameter_names_are_explicit():
    assert {"Key", "SSLPri", "CertificatePrivateKey", "AccessKeySecret", "SecurityToken"} <= alibaba.SECRET_PARAMS
    assert alibaba.redact_value("SSLPri", "abc") == "<redacted, 3 characters>"
    assert alibaba.redact_value("Key.1", "abc") == "<redacted, 3 characters>"
    assert alibaba.redact_value("Value", "abc") == "'abc'"
    redacted = alibaba.redact_headers({"authorization": EXAMPLE_AUTHORIZATION, "x-acs-security-token": "t"})
    assert EXAMPLE_SIGNATURE not in str(redacted) and "t" not in redacted.values()
