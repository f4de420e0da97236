"""common/alibaba.py: the ACS3-HMAC-SHA256 signer and call(), and the fake Alibaba Cloud the other tests use.

Oracles: Alibaba's published worked example (byte for byte), Alibaba's own SDK
(``alibabacloud_openapi_util`` and ``alibabacloud_tea_openapi``, test-only dependencies), and the
fake's signature check, which is that SDK code too.
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
import requests
from alibabacloud_openapi_util.client import Client as OpenApiUtil
from alibabacloud_tea_openapi import models as sdk_models
from alibabacloud_tea_openapi.client import Client as SdkClient
from alibabacloud_tea_openapi.utils import Utils as TeaUtils
from darabonba.runtime import RuntimeOptions
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
    fake_alibaba.reset()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", fake_alibaba.ca_bundle)
    return fake_alibaba


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


# --- the fake: Alibaba's SDK can call it, and it refuses what Alibaba refuses ------------------


def test_alibabas_own_sdk_can_call_the_fake(fake):
    """The fake's check accepts the real SDK's requests (which sign accept and user-agent too)."""
    client = SdkClient(sdk_models.Config(access_key_id=ACCESS_KEY_ID, access_key_secret=ACCESS_KEY_SECRET,
                                         endpoint=fake.base_url.removeprefix("https://"), protocol="HTTPS"))
    params = sdk_models.Params(action="DescribeDomains", version="2015-01-09", protocol="HTTPS", pathname="/",
                               method="POST", auth_type="AK", style="RPC", req_body_type="formData", body_type="json")
    request = sdk_models.OpenApiRequest(query=TeaUtils.query({"KeyWord": "example.com", "SearchMode": "EXACT"}))
    body = client.call_api(params, request, RuntimeOptions(ca=fake.ca_bundle))["body"]
    assert [d["DomainName"] for d in body["Domains"]["Domain"]] == ["example.com"]
    assert "user-agent" in fake.calls[-1].headers["authorization"]


def signed_post(fake, service, action, version, params, *, key_id=ACCESS_KEY_ID, secret=ACCESS_KEY_SECRET,
                date=None, nonce="0123456789abcdef0123456789abcdef", token=None, change=None):
    """A hand-made request, so a test can break one thing in it."""
    url = fake.url(service)
    query = alibaba.flatten_params(params)
    headers = alibaba.sign_request("POST", url.split("/")[2], f"/{service}", query,
                                   {"x-acs-action": action, "x-acs-version": version}, b"", key_id, secret,
                                   date or datetime.datetime.now(datetime.timezone.utc), nonce, token)
    if change:
        change(headers)
    return requests.post(f"{url}?{alibaba.canonical_query_string(query)}", headers=headers, timeout=10,
                         verify=fake.ca_bundle)


def code_of(resp):
    return resp.status_code, resp.json().get("Code")


def test_fake_accepts_a_good_request_once_then_refuses_the_nonce(fake):
    first = signed_post(fake, "alidns", "DescribeDomains", "2015-01-09", {})
    assert first.status_code == 200 and first.json()["TotalCount"] == 25
    again = signed_post(fake, "alidns", "DescribeDomains", "2015-01-09", {})
    assert code_of(again) == (400, "SignatureNonceUsed")
    body = again.json()
    assert body["Message"] == "Specified signature nonce was used already."
    assert set(body) == {"RequestId", "HostId", "Code", "Message", "Recommend"}
    assert body["HostId"] == "alidns.aliyuncs.com" and again.headers["x-acs-request-id"] == body["RequestId"]


@pytest.mark.parametrize("how, status, code", [
    ({"secret": "wrong-secret"}, 400, "SignatureDoesNotMatch"),
    ({"key_id": "LTAI-unknown"}, 404, "InvalidAccessKeyId.NotFound"),
    ({"date": datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=16)}, 400,
     "InvalidTimeStamp.Expired"),
    ({"date": datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=16)}, 400,
     "InvalidTimeStamp.Expired"),
    ({"change": lambda h: h.update({"x-acs-action": "DescribeDomainRecords"})}, 400, "SignatureDoesNotMatch"),
    ({"change": lambda h: h.update({"authorization": h["authorization"].replace(";x-acs-signature-nonce", "")})},
     400, "IncompleteSignature"),
    ({"change": lambda h: h.update({"x-acs-content-sha256": "0" * 64})}, 400, "SignatureDoesNotMatch"),
    ({"change": lambda h: h.pop("authorization")}, 400, "IncompleteSignature"),
])
def test_fake_refuses_what_alibaba_refuses(fake, how, status, code):
    resp = signed_post(fake, "alidns", "DescribeDomains", "2015-01-09", {"PageSize": 5}, **how)
    assert code_of(resp) == (status, code)
    assert fake.calls[-1].error == code


def test_fake_refuses_a_tampered_parameter(fake):
    resp = signed_post(fake, "alidns", "DescribeDomains", "2015-01-09", {"PageSize": 5})
    assert resp.status_code == 200
    headers = alibaba.sign_request("POST", fake.base_url.split("/")[2], "/alidns", [("PageSize", "5")],
                                   {"x-acs-action": "DescribeDomains", "x-acs-version": "2015-01-09"}, b"",
                                   ACCESS_KEY_ID, ACCESS_KEY_SECRET, datetime.datetime.now(datetime.timezone.utc),
                                   "fedcba9876543210fedcba9876543210")
    resp = requests.post(f"{fake.url('alidns')}?PageSize=6", headers=headers, timeout=10, verify=fake.ca_bundle)
    assert code_of(resp) == (400, "SignatureDoesNotMatch")


def test_fake_refuses_unknown_actions_and_versions(fake):
    assert code_of(signed_post(fake, "alidns", "NoSuchAction", "2015-01-09", {}))[1] == "InvalidAction.NotFound"
    assert code_of(signed_post(fake, "alidns", "DescribeDomains", "2014-05-26", {}, nonce="1" * 32))[1] \
        == "InvalidVersion"


# --- the fake's Alidns ----------------------------------------------------------------------


def test_fake_dns_zones_are_paged(fake):
    pages = [dns(fake, "DescribeDomains", {"PageNumber": n, "PageSize": 10}) for n in (1, 2, 3)]
    names = [d["DomainName"] for p in pages for d in p["Domains"]["Domain"]]
    assert len(names) == 25 == len(set(names)) == pages[0]["TotalCount"]
    assert {"example.com", "example.com.cn"} <= set(names)
    assert dns(fake, "DescribeDomains")["PageSize"] == 20
    with pytest.raises(alibaba.AlibabaError, match="InvalidPageSize"):
        dns(fake, "DescribeDomains", {"PageSize": 101})


def test_fake_dns_records_seed_add_find_delete(fake):
    fake.dns.add_record("example.com.cn", "_acme-challenge.www", "TXT", "foreign value")
    mine = dns(fake, "AddDomainRecord", {"DomainName": "example.com.cn", "RR": "_acme-challenge.www", "Type": "TXT",
                                         "Value": "my value", "TTL": 600})["RecordId"]
    found = dns(fake, "DescribeSubDomainRecords", {"SubDomain": "_acme-challenge.www.example.com.cn", "Type": "TXT"})
    assert found["TotalCount"] == 2
    assert {r["Value"] for r in found["DomainRecords"]["Record"]} == {"foreign value", "my value"}
    assert {r["DomainName"] for r in found["DomainRecords"]["Record"]} == {"example.com.cn"}
    by_keyword = dns(fake, "DescribeDomainRecords", {"DomainName": "example.com.cn", "RRKeyWord": "acme",
                                                     "TypeKeyWord": "TXT", "ValueKeyWord": "MY"})
    assert [r["RecordId"] for r in by_keyword["DomainRecords"]["Record"]] == [mine]
    dns(fake, "DeleteDomainRecord", {"RecordId": mine})
    assert [r["Value"] for r in fake.dns.records("example.com.cn")] == ["foreign value"]
    with pytest.raises(alibaba.AlibabaError, match="DomainRecordNotBelongToUser"):
        dns(fake, "DeleteDomainRecord", {"RecordId": mine})
    with pytest.raises(alibaba.AlibabaError, match="InvalidDomainName.NoExist"):
        dns(fake, "AddDomainRecord", {"DomainName": "com.cn", "RR": "x", "Type": "TXT", "Value": "v"})
    with pytest.raises(alibaba.AlibabaError, match="MissingValue"):
        dns(fake, "AddDomainRecord", {"DomainName": "example.com", "RR": "x", "Type": "TXT"})


def test_fake_dns_apex_and_wildcard_records_are_apart(fake):
    for rr in ("@", "*"):
        dns(fake, "AddDomainRecord", {"DomainName": "example.org", "RR": rr, "Type": "A", "Value": "192.0.2.7"})
    apex = dns(fake, "DescribeSubDomainRecords", {"SubDomain": "example.org"})["DomainRecords"]["Record"]
    assert [r["RR"] for r in apex] == ["@"]
    paged = dns(fake, "DescribeDomainRecords", {"DomainName": "example.org", "PageSize": 1, "PageNumber": 2})
    assert paged["TotalCount"] == 2 and len(paged["DomainRecords"]["Record"]) == 1


# --- the fake's CAS, CDN and API Gateway --------------------------------------------------------


def pair(tmp_path, names=("cas.example.com",)):
    work = tmp_path / names[0]
    write_certificate_files(work, list(names))
    return (work / "cert.pem").read_text() + (work / "chain.pem").read_text(), (work / "cert.key").read_text()


def cas(fake, action, params):
    return alibaba.call(fake.url("cas"), action, "2020-04-07", params, CREDS)


def test_fake_cas_upload_list_and_detail(fake, tmp_path):
    cert, key = pair(tmp_path)
    cert_id = cas(fake, "UploadUserCertificate", {"Name": "n1", "Cert": cert, "Key": key})["CertId"]
    listing = cas(fake, "ListUserCertificateOrder", {"OrderType": "UPLOAD", "Keyword": "cas.example"})
    (entry,) = listing["CertificateOrderList"]
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    der = x509.load_pem_x509_certificate(cert.encode()).public_bytes(serialization.Encoding.DER)
    assert entry["CertificateId"] == cert_id and entry["Name"] == "n1"
    assert entry["Sha2"] == hashlib.sha256(der).hexdigest().upper()
    assert entry["Fingerprint"] == hashlib.sha1(der).hexdigest().upper()  # noqa: S324
    assert entry["Sans"] == "cas.example.com" and entry["Upload"] is True
    assert cas(fake, "ListUserCertificateOrder", {})["TotalCount"] == 0  # OrderType defaults to CPACK
    detail = cas(fake, "GetUserCertificateDetail", {"CertId": cert_id})
    assert detail["Cert"] == cert and detail["Key"] == key and detail["Id"] == cert_id
    assert "Key" not in cas(fake, "GetUserCertificateDetail", {"CertId": cert_id, "CertFilter": True})


def test_fake_cas_refusals(fake, tmp_path):
    cert, key = pair(tmp_path)
    other_cert, other_key = pair(tmp_path, ("other.example.com",))
    cas(fake, "UploadUserCertificate", {"Name": "taken", "Cert": cert, "Key": key})
    for params, code in [({"Name": "taken", "Cert": other_cert, "Key": other_key}, "NameRepeat"),
                         ({"Name": "x" * 64, "Cert": cert, "Key": key}, "InvalidParameter.Name"),
                         ({"Name": "mismatch", "Cert": cert, "Key": other_key}, "Certificate.MissMatch"),
                         ({"Name": "nokey", "Cert": cert}, "MissingKey")]:
        with pytest.raises(alibaba.AlibabaError) as info:
            cas(fake, "UploadUserCertificate", params)
        assert info.value.code == code


def test_fake_cdn_and_api_gateway(fake, tmp_path):
    cert, key = pair(tmp_path)
    cert_id = cas(fake, "UploadUserCertificate", {"Name": "n", "Cert": cert, "Key": key})["CertId"]

    def cdn(params):
        return alibaba.call(fake.url("cdn"), "SetCdnDomainSSLCertificate", "2018-05-10", params, CREDS)

    cdn({"DomainName": "cdn.example.com", "SSLProtocol": "on", "CertType": "cas", "CertId": cert_id})
    assert fake.cdn.domains["cdn.example.com"]["CertId"] == cert_id
    for params, code in [({"DomainName": "nosuch.example.com", "SSLProtocol": "on"}, "InvalidDomain.NotFound"),
                         ({"DomainName": "cdn.example.com", "SSLProtocol": "on", "CertType": "cas", "CertId": 1},
                          "Certificate.NotFind"),
                         ({"DomainName": "cdn.example.com", "SSLProtocol": "yes"},
                          "InvalidSSLProtocol.ValueNotSupported"),
                         ({"DomainName": "cdn.example.com", "SSLProtocol": "on", "CertType": "cas",
                           "CertId": cert_id, "CertRegion": "us-east-1"}, "Abs.CertRegion.ValueNotSupported")]:
        with pytest.raises(alibaba.AlibabaError) as info:
            cdn(params)
        assert info.value.code == code
    assert info.value.status == 400

    def gateway(params):
        return alibaba.call(fake.url("apigateway"), "SetDomainCertificate", "2016-07-14", params, CREDS)

    fake.apigateway.add_domain("g1", "api.example.net")
    gateway({"GroupId": "g1", "DomainName": "api.example.net", "CertificateName": "n", "CertificateBody": cert,
             "CertificatePrivateKey": key})
    assert fake.apigateway.groups["g1"]["api.example.net"]["CertificateName"] == "n"
    for params, code in [({"GroupId": "g2", "DomainName": "api.example.net", "CertificateName": "n"},
                          "NotFoundApiGroup"),
                         ({"GroupId": "g1", "DomainName": "other.example.net", "CertificateName": "n"},
                          "NotFoundDomain"),
                         ({"GroupId": "g1", "DomainName": "api.example.net"}, "MissingCertificateName")]:
        with pytest.raises(alibaba.AlibabaError) as info:
            gateway(params)
        assert info.value.code == code
