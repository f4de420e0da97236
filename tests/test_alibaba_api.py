"""common/alibaba_api.py: what the Alidns client (step 06) and the deploy calls (step 20) share.

One endpoint rule, one error-hint table, one error wrapper and one pager. The pager and the
endpoint rule are checked alone; the wrapper and the pager are also driven through both
clients against the fake of Alibaba Cloud (tests/fake_alibaba.py), with a spy on the shared
function, so a client that grew its own copy again would fail here.
"""

from __future__ import annotations

import pytest
import requests
from fake_alibaba import ACCESS_KEY_ID, ACCESS_KEY_SECRET, fake_alibaba, write_certificate_files  # noqa: F401

from common import alibaba, alibaba_api, alibaba_deploy, alidns, workdir
from common.errors import AcmeError, UsageError

CREDS = alibaba.Credentials(ACCESS_KEY_ID, ACCESS_KEY_SECRET)
WRONG_SECRET = alibaba.Credentials(ACCESS_KEY_ID, "not-the-secret-Vb71")


@pytest.fixture
def fake(fake_alibaba, monkeypatch):  # noqa: F811 (the imported fixture)
    return fake_alibaba.trusted(monkeypatch)


@pytest.fixture
def spy(monkeypatch):
    """Record each use of the shared call and pager, as both clients make it."""
    used: dict[str, list] = {"call": [], "paged": []}
    real_call, real_paged = alibaba_api.call, alibaba_api.paged

    def call(*args, **kw):
        used["call"].append(args[1])  # the action
        return real_call(*args, **kw)

    def paged(fetch, path, page_size, max_pages, *args, **kw):
        pages: list[int] = []
        used["paged"].append((path, pages))
        yield from real_paged(lambda page: pages.append(page) or fetch(page), path, page_size, max_pages, *args, **kw)

    monkeypatch.setattr(alibaba_api, "call", call)
    monkeypatch.setattr(alibaba_api, "paged", paged)
    return used


def deploy_api(fake, credentials=CREDS) -> alibaba_deploy.Api:
    return alibaba_deploy.Api(credentials, {s: fake.url(s) for s in alibaba_deploy.SERVICE_NAMES}, requests.Session())


def bundle_in(path) -> alibaba_deploy.Bundle:
    write_certificate_files(path, ["www.example.com"])
    return alibaba_deploy.read_bundle(workdir.WorkDir(path))


# --- the pieces alone ---------------------------------------------------------------------------


def test_pager_stops_at_total_count_at_an_empty_page_and_at_its_bound():
    def listing(total, per_page, last_page=None):
        asked = []

        def fetch(page):
            asked.append(page)
            full = last_page is None or page <= last_page
            return {"TotalCount": total, "List": {"Item": [{"n": (page, i)} for i in range(per_page)] if full else []}}
        return fetch, asked

    fetch, asked = listing(total=5, per_page=2)
    assert [item["n"] for item in alibaba_api.paged(fetch, ("List", "Item"), 2, 10)] == [
        (1, 0), (1, 1), (2, 0), (2, 1), (3, 0), (3, 1)]
    assert asked == [1, 2, 3]  # 3 pages of 2 cover 5
    fetch, asked = listing(total=None, per_page=2)  # no TotalCount: no more pages
    assert len(list(alibaba_api.paged(fetch, ("List", "Item"), 2, 10))) == 2 and asked == [1]
    fetch, asked = listing(total=10**9, per_page=2, last_page=2)  # claims more than it has
    assert len(list(alibaba_api.paged(fetch, ("List", "Item"), 2, 10))) == 4 and asked == [1, 2, 3]
    fetch, asked = listing(total=10**9, per_page=2)  # a broken answer must not page forever
    assert len(list(alibaba_api.paged(fetch, ("List", "Item"), 2, 7))) == 14 and asked == list(range(1, 8))


NOT_A_COUNT = "a TotalCount that is not a number of items"


def test_pager_takes_the_objects_at_the_path_and_refuses_other_shapes():
    def fetch(page):
        return {"TotalCount": 4, "CertificateOrderList": [{"a": 1}, {"b": 2}]}

    assert list(alibaba_api.paged(fetch, ("CertificateOrderList",), 50, 3)) == [{"a": 1}, {"b": 2}]
    for answer in ({}, {"Domains": None}, {"Domains": {}}, {"Domains": {"Domain": None}}):
        assert alibaba_api.listed_items(answer, ("Domains", "Domain")) == []  # nothing listed
    for answer, words in [({"Domains": {"Domain": {"not": "a list"}}}, "a Domains.Domain that is not a list"),
                          ({"Domains": "x"}, "a Domains that is not an object"),
                          ({"Domains": {"Domain": [{"a": 1}, "text"]}}, "a Domains.Domain entry that is not an object"),
                          ({"Domains": {"Domain": [{}]}, "TotalCount": "4"}, NOT_A_COUNT),
                          ({"Domains": {"Domain": [{}]}, "TotalCount": -1}, NOT_A_COUNT),
                          ({"Domains": {"Domain": [{}]}, "TotalCount": True}, NOT_A_COUNT)]:
        with pytest.raises(AcmeError, match=f"^Alibaba Cloud sent {words}: .* \\(the zones, page 1\\)$"):
            list(alibaba_api.paged(lambda page, answer=answer: answer, ("Domains", "Domain"), 2, 3, "the zones"))


@pytest.mark.parametrize("text, expected", [
    ("https://alidns.aliyuncs.com", "https://alidns.aliyuncs.com"),
    ("https://alidns.aliyuncs.com/", "https://alidns.aliyuncs.com"),
    ("https://127.0.0.1:8443/cas", "https://127.0.0.1:8443/cas"),
    ("http://alidns.aliyuncs.com", None), ("alidns.aliyuncs.com", None), ("https://", None),
    ("https://host/path?query", None), ("https://host name", None),
])
def test_one_endpoint_rule(text, expected):
    assert alibaba_api.endpoint_url(text) == expected


def test_credentials_missing_is_a_usage_error(monkeypatch):
    monkeypatch.delenv("ALIBABA_CLOUD_ACCESS_KEY_ID", raising=False)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "s")
    with pytest.raises(UsageError, match="^--provider alidns: ALIBABA_CLOUD_ACCESS_KEY_ID not set"):
        alibaba_api.credentials("--provider alidns")
    with pytest.raises(UsageError, match="^ALIBABA_CLOUD_ACCESS_KEY_ID not set"):
        alibaba_api.credentials()


# --- through both clients -------------------------------------------------------------------------


def test_alidns_and_cas_listings_go_through_the_one_pager(fake, spy, tmp_path):
    for n in range(110):  # 135 zones: two pages of 100
        fake.dns.add_zone(f"zone-{n:03d}.example")
    zones = alidns.Alidns(CREDS, fake.url("alidns")).zones()
    assert len(zones) == 135 and "example.com.cn" in zones

    bundle = bundle_in(tmp_path / "mine")
    mine = fake.cas.upload("mine", (tmp_path / "mine" / "cert.pem").read_text(),
                           (tmp_path / "mine" / "cert.key").read_text())
    other = tmp_path / "other"
    write_certificate_files(other, ["www.example.com"])
    for n in range(55):  # newer ones with the same keyword come first: the match is on page 2 of 50
        fake.cas.upload(f"other-{n}", (other / "cert.pem").read_text(), (other / "cert.key").read_text())
    found = alibaba_deploy.find_uploaded(deploy_api(fake), bundle)
    assert found is not None and found["CertificateId"] == mine

    assert spy["paged"] == [(("Domains", "Domain"), [1, 2]), (("CertificateOrderList",), [1, 2])]
    assert spy["call"] == ["DescribeDomains"] * 2 + ["ListUserCertificateOrder"] * 2
    assert [c.params["PageSize"] for c in fake.calls_of("DescribeDomains")] == [str(alidns.PAGE_SIZE)] * 2
    assert [c.params["ShowSize"] for c in fake.calls_of("ListUserCertificateOrder")] == ["50", "50"]


def test_alidns_and_deploy_errors_come_from_the_one_wrapper_with_the_one_hint(fake, spy, tmp_path):
    hint = alibaba_api.HINTS["SignatureDoesNotMatch"]
    with pytest.raises(alidns.AlidnsError) as dns_error:
        alidns.Alidns(WRONG_SECRET, fake.url("alidns")).zones()
    with pytest.raises(alibaba_api.AlibabaApiError) as deploy_error:
        alibaba_deploy.find_uploaded(deploy_api(fake, WRONG_SECRET), bundle_in(tmp_path / "work"))
    assert spy["call"] == ["DescribeDomains", "ListUserCertificateOrder"]
    for error in (dns_error.value, deploy_error.value):
        assert isinstance(error, alibaba_api.AlibabaApiError) and isinstance(error, AcmeError)  # exit status 1
        assert error.code == "SignatureDoesNotMatch"
        assert "not-the-secret-Vb71" not in "\n".join(error.lines())

    # Step 06 says it in one line (a failed cleanup is one warning line); step 20 puts the hint below.
    message = str(dns_error.value)
    assert message.startswith("Alibaba Cloud DNS DescribeDomains (listing the account's zones, page 1) failed: "
                              "SignatureDoesNotMatch: ")
    assert message.endswith(f") ({hint})") and "(RequestId " in message
    assert dns_error.value.lines() == [message]
    first, second = deploy_error.value.lines()
    assert first.startswith("CAS ListUserCertificateOrder failed: SignatureDoesNotMatch: ") and hint not in first
    assert second == f"  ({hint})"


def test_the_network_error_is_wrapped_alike(fake):
    dead = "https://127.0.0.1:9"  # the discard port: nothing listens
    with pytest.raises(alidns.AlidnsError, match=r"DescribeDomains .* failed: NetworkError: cannot reach 127\.0\.0\.1"):
        alidns.Alidns(CREDS, f"{dead}/alidns").zones()
    api = alibaba_deploy.Api(CREDS, {"cdn": f"{dead}/cdn"}, requests.Session())
    with pytest.raises(alibaba_api.AlibabaApiError, match=r"^CDN SetCdnDomainSSLCertificate for cdn\.example\.com "
                                                          r"failed: NetworkError: cannot reach 127\.0\.0\.1"):
        alibaba_deploy.set_cdn_domain_ssl_certificate(api, "cdn.example.com", 1, "cn-hangzhou")
