"""tests/fake_alibaba.py itself: the fake Alibaba Cloud the other Alibaba tests run against.

Those tests are only as good as the fake, so it is checked here: Alibaba's own SDK can call it,
it refuses what Alibaba refuses (a bad or stale signature, a reused nonce, an unknown AccessKey or
action), and its Alidns, CAS, CDN and API Gateway keep and page state as Alibaba's API metadata says.
"""

from __future__ import annotations

import datetime
import hashlib

import pytest
import requests
from alibabacloud_tea_openapi import models as sdk_models
from alibabacloud_tea_openapi.client import Client as SdkClient
from alibabacloud_tea_openapi.utils import Utils as TeaUtils
from darabonba.runtime import RuntimeOptions
from fake_alibaba import ACCESS_KEY_ID, ACCESS_KEY_SECRET, fake_alibaba, write_certificate_files  # noqa: F401

from common import alibaba

CREDS = alibaba.Credentials(ACCESS_KEY_ID, ACCESS_KEY_SECRET)


@pytest.fixture
def fake(fake_alibaba, monkeypatch):  # noqa: F811 (the imported fixture)
    return fake_alibaba.trusted(monkeypatch)


def dns(fake, action, params=None):
    return alibaba.call(fake.url("alidns"), action, "2015-01-09", params or {}, CREDS)


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
                skew=datetime.timedelta(0), nonce="0123456789abcdef0123456789abcdef", token=None, change=None):
    """A hand-made request, so a test can break one thing in it; ``skew`` moves its x-acs-date off now.

    The date is taken here, when the request is made, never earlier (a date computed when the
    tests are collected is minutes old by the time a slow suite gets here).
    """
    url = fake.url(service)
    query = alibaba.flatten_params(params)
    headers = alibaba.sign_request("POST", url.split("/")[2], f"/{service}", query,
                                   {"x-acs-action": action, "x-acs-version": version}, b"", key_id, secret,
                                   datetime.datetime.now(datetime.timezone.utc) + skew, nonce, token)
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
    ({"skew": -datetime.timedelta(minutes=16)}, 400, "InvalidTimeStamp.Expired"),
    ({"skew": datetime.timedelta(minutes=16)}, 400, "InvalidTimeStamp.Expired"),
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
