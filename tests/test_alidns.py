"""Step 06's alidns provider against the local fake of Alibaba Cloud DNS (tests/fake_alibaba.py).

The fake checks every request's V3 signature with Alibaba's own SDK code, keeps 25 zones
(example.com, example.com.cn, ...) and pages DescribeDomains, so what gets through here was
signed right and found its zone the way it must on the real service. Provider-level tests
call the class in this process; the end-to-end ones run steps 03, 05 and 06 as a user would,
against the scripted CA of tests/hostile_ca.py (it accepts any challenge), with BIND as the
resolver step 06 asks for CNAMEs (it is authoritative for example.com.cn).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import secrets
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from fake_alibaba import ACCESS_KEY_SECRET, ApiError, fake_alibaba  # noqa: F401
from helpers import ROOT, STEPS, fails, hostile_account

from common import dns_providers
from common.alidns import longest_zone
from common.dns_providers import AlidnsProvider, TxtRecord
from common.errors import AcmeError, UsageError

ZONE = "example.com.cn"
DEEP = "deep.a.b.example.com.cn"  # several labels below its zone, under a "second-level" public suffix
DEEP_RR = "_acme-challenge.deep.a.b"
STS_KEY_ID, STS_SECRET, STS_TOKEN = "STS.NUfakeStsKeyId", "sts-secret-Hq8Zt3Lw6Vb1", "sts-token-Pk4Yr7Ue2Jc9Xs5"


def value() -> str:
    """A value shaped like a dns-01 one (43 base64url characters), different every time."""
    return secrets.token_urlsafe(32)[:43]


def txt(fake, zone: str, rr: str | None = None) -> list[tuple[str, str]]:
    """(RR, value) of the zone's TXT records, in creation order; only those at ``rr`` if given."""
    return [(r["RR"], r["Value"]) for r in fake.dns.records(zone) if r["Type"] == "TXT" and rr in (None, r["RR"])]


@pytest.fixture
def fake(fake_alibaba, monkeypatch):  # noqa: F811 (the imported fixture)
    return fake_alibaba.with_keys(monkeypatch)


def provider(fake, *options: str) -> AlidnsProvider:
    """The provider as step 06 builds it from its options."""
    parser = argparse.ArgumentParser()
    dns_providers.add_arguments(parser)
    args = parser.parse_args(["--provider", "alidns", "--alidns-endpoint", fake.url("alidns"), *options])
    built = dns_providers.from_args(args)
    assert isinstance(built, AlidnsProvider)
    return built


# --- zones ------------------------------------------------------------------------------------


def test_longest_zone_on_label_boundaries():
    zones = ["example.com", "com.cn", "example.com.cn", "sub.example.com", "ample.com", "b.example.com"]
    assert longest_zone("_acme-challenge.a.b.example.com.cn", zones) == "example.com.cn"
    assert longest_zone("_acme-challenge.x.sub.example.com", zones) == "sub.example.com"
    assert longest_zone("_acme-challenge.sub.example.com", zones) == "sub.example.com"
    assert longest_zone("_acme-challenge.example.com", zones) == "example.com"  # not ample.com
    assert longest_zone("_acme-challenge.EXAMPLE.com.", zones) == "example.com"
    assert longest_zone("example.com", zones) == "example.com"
    assert longest_zone("_acme-challenge.example.org", zones) is None
    assert longest_zone("notexample.com", zones) is None  # a suffix, but not on a label boundary


def test_zone_found_on_a_later_page_of_describe_domains(fake):
    for n in range(110):  # 137 zones: two pages of 100; newer ones come first, so example.com.cn is on page 2
        fake.dns.add_zone(f"zone-{n:03d}.example")
    fake.dns.add_zone("b.example.com")  # what "the last labels" logic might pick for a .com.cn name
    fake.dns.add_zone("sub.example.com")
    p = provider(fake)
    records = [TxtRecord(f"_acme-challenge.{DEEP}", value()), TxtRecord("_acme-challenge.x.sub.example.com", value())]
    p.publish(records)
    assert [c.params["PageNumber"] for c in fake.calls_of("DescribeDomains")] == ["1", "2"]
    assert all(c.params["PageSize"] == "100" for c in fake.calls_of("DescribeDomains"))
    added = [(c.params["DomainName"], c.params["RR"], c.params["Type"], c.params["TTL"])
             for c in fake.calls_of("AddDomainRecord")]
    assert added == [(ZONE, DEEP_RR, "TXT", "600"), ("sub.example.com", "_acme-challenge.x", "TXT", "600")]
    assert txt(fake, ZONE) == [(DEEP_RR, records[0].value)]
    assert txt(fake, "sub.example.com") == [("_acme-challenge.x", records[1].value)]
    p.remove(records)
    assert txt(fake, ZONE) == [] and txt(fake, "sub.example.com") == []
    assert len(fake.calls_of("DescribeDomains")) == 2  # listed once, then cached


def test_ttl_option(fake):
    p = provider(fake, "--ttl", "3600")
    p.publish([TxtRecord("_acme-challenge.example.com", value())])
    assert fake.calls_of("AddDomainRecord")[0].params["TTL"] == "3600"


def test_a_name_in_no_zone_changes_nothing_and_says_which_zones_there_are(fake):
    p = provider(fake)
    records = [TxtRecord(f"_acme-challenge.{DEEP}", value()), TxtRecord("_acme-challenge.www.example.io", value())]
    with pytest.raises(AcmeError) as info:
        p.publish(records)
    message = str(info.value)
    assert "_acme-challenge.www.example.io is in none of the zones of this Alibaba Cloud account" in message
    assert "example.com" in message and "and 20 more" in message  # a few of the 25, not all
    assert fake.calls_of("AddDomainRecord") == []  # every zone is found before the first change
    p.remove(records)
    assert fake.actions() == ["DescribeDomains"]  # nothing looked up, nothing deleted


# --- publishing and removing -----------------------------------------------------------------


def test_apex_and_wildcard_are_two_records_under_one_rr(fake):
    p = provider(fake)
    apex, wildcard = TxtRecord(f"_acme-challenge.{DEEP}", value()), TxtRecord(f"_acme-challenge.{DEEP}", value())
    p.publish([apex, wildcard])
    assert txt(fake, ZONE) == [(DEEP_RR, apex.value), (DEEP_RR, wildcard.value)]
    assert len(fake.calls_of("AddDomainRecord")) == 2
    p.remove([apex, wildcard])
    assert txt(fake, ZONE) == []
    assert len(fake.calls_of("DescribeSubDomainRecords")) == 1  # one look at the shared name
    sub = fake.calls_of("DescribeSubDomainRecords")[0].params
    assert (sub["SubDomain"], sub["DomainName"], sub["Type"]) == (f"_acme-challenge.{DEEP}", ZONE, "TXT")


def test_removing_one_of_two_values_leaves_the_other(fake):
    """The wildcard's record cleaned up alone must not take the apex's with it (no deletion by RR)."""
    p = provider(fake)
    apex, wildcard = TxtRecord(f"_acme-challenge.{DEEP}", value()), TxtRecord(f"_acme-challenge.{DEEP}", value())
    p.publish([apex, wildcard])
    p.remove([wildcard])
    assert txt(fake, ZONE) == [(DEEP_RR, apex.value)]


def test_duplicate_counts_as_done_and_is_removed_afterwards(fake):
    record = TxtRecord("_acme-challenge.www.example.com", value())
    earlier = fake.dns.add_record("example.com", "_acme-challenge.www", "TXT", record.value)  # an earlier attempt's
    p = provider(fake)
    p.publish([record])
    assert [c.error for c in fake.calls if c.action == "AddDomainRecord"] == ["DomainRecordDuplicate"]
    assert txt(fake, "example.com") == [("_acme-challenge.www", record.value)]
    p.remove([record])
    assert txt(fake, "example.com") == []
    assert [c.params["RecordId"] for c in fake.calls_of("DeleteDomainRecord")] == [earlier]


def test_cleanup_leaves_foreign_records_in_place(fake):
    name = f"_acme-challenge.{DEEP}"
    ours = TxtRecord(name, value())
    fake.dns.add_record(ZONE, DEEP_RR, "TXT", "another client's value")
    fake.dns.add_record(ZONE, DEEP_RR, "CNAME", "elsewhere.example.net")
    fake.dns.add_record(ZONE, "_acme-challenge.other", "TXT", ours.value)  # our value, another name
    p = provider(fake)
    p.publish([ours])
    p.remove([ours])
    assert [(r["RR"], r["Type"], r["Value"]) for r in fake.dns.records(ZONE)] == [
        (DEEP_RR, "TXT", "another client's value"), (DEEP_RR, "CNAME", "elsewhere.example.net"),
        ("_acme-challenge.other", "TXT", ours.value)]
    assert len(fake.calls_of("DeleteDomainRecord")) == 1


def test_a_record_changed_since_it_was_added_is_left_alone(fake):
    """Deletion by RecordId happens only while the record still has the name and value it was given."""
    ours = TxtRecord("_acme-challenge.example.net", value())
    p = provider(fake)
    p.publish([ours])
    (record_id,) = [r["RecordId"] for r in fake.dns.records("example.net")]
    fake.dns._records[record_id].value = "edited in the console since"
    p.remove([ours])
    assert txt(fake, "example.net") == [("_acme-challenge", "edited in the console since")]
    assert fake.calls_of("DeleteDomainRecord") == []


def test_records_this_provider_added_go_by_record_id(fake):
    """A copy of our value on another line, made by someone else, is not the record this provider added."""
    ours = TxtRecord(f"_acme-challenge.{DEEP}", value())
    p = provider(fake)
    p.publish([ours])
    (added,) = [r["RecordId"] for r in fake.dns.records(ZONE)]
    copy = fake.dns.add_record(ZONE, DEEP_RR, "TXT", ours.value, line="telecom")
    p.remove([ours])
    assert [r["RecordId"] for r in fake.dns.records(ZONE)] == [copy]
    assert [c.params["RecordId"] for c in fake.calls_of("DeleteDomainRecord")] == [added]


def test_a_fresh_provider_finds_an_earlier_runs_records_by_exact_value(fake):
    """06 --cleanup, or a run after an interrupted one: no RecordIds known, only names and values."""
    name = f"_acme-challenge.{DEEP}"
    left = [TxtRecord(name, value()), TxtRecord(name, value())]
    for record in left:
        fake.dns.add_record(ZONE, DEEP_RR, "TXT", record.value)
    near_misses = [left[0].value + "x", left[0].value[:-1], left[0].value.upper(), " " + left[0].value]
    for near in near_misses:
        fake.dns.add_record(ZONE, DEEP_RR, "TXT", near)
    fake.dns.add_record(ZONE, "_acme-challenge.deep.a", "TXT", left[1].value)  # the value, one label up
    provider(fake).remove(left)
    assert txt(fake, ZONE) == [(DEEP_RR, near) for near in near_misses] + [("_acme-challenge.deep.a", left[1].value)]
    assert fake.calls_of("AddDomainRecord") == []


def test_a_refused_add_is_an_error_and_what_was_added_goes_again(fake):
    """The zone of the second record disappears after the zones were listed: AddDomainRecord fails."""
    records = [TxtRecord(f"_acme-challenge.{DEEP}", value()), TxtRecord("_acme-challenge.example.net", value())]
    p = provider(fake)
    real_add = fake.dns.AddDomainRecord

    def add_then_lose_a_zone(params):
        answer = real_add(params)
        fake.dns.zones.pop("example.net", None)
        return answer

    fake.dns.AddDomainRecord = add_then_lose_a_zone
    with pytest.raises(AcmeError) as info:
        p.publish(records)
    assert "Alibaba Cloud DNS AddDomainRecord (_acme-challenge TXT in example.net) failed: " \
           "InvalidDomainName.NoExist" in str(info.value)
    assert "RequestId" in str(info.value)
    p.remove(records)
    assert txt(fake, ZONE) == []


def test_a_bad_secret_is_alibabas_code(fake, monkeypatch):
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "not-the-secret-Zx81")
    with pytest.raises(AcmeError) as info:
        provider(fake).publish([TxtRecord(f"_acme-challenge.{DEEP}", value())])
    message = str(info.value)
    assert message.startswith("Alibaba Cloud DNS DescribeDomains (listing the account's zones, page 1) failed: "
                              "SignatureDoesNotMatch: ")
    assert "(RequestId " in message and "check ALIBABA_CLOUD_ACCESS_KEY_SECRET" in message
    assert "not-the-secret-Zx81" not in message
    assert txt(fake, ZONE) == []


def test_an_unknown_access_key(fake, monkeypatch):
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI5tNoSuchKey")
    with pytest.raises(AcmeError, match="InvalidAccessKeyId.NotFound: .*check ALIBABA_CLOUD_ACCESS_KEY_ID"):
        provider(fake).publish([TxtRecord("_acme-challenge.example.com", value())])


@pytest.mark.parametrize(("offset", "words"), [(3600, "behind"), (-1200, "ahead of")])
def test_a_clock_that_is_off_is_named(fake, offset, words):
    fake.clock_offset = datetime.timedelta(seconds=offset)
    with pytest.raises(AcmeError) as info:
        provider(fake).publish([TxtRecord("_acme-challenge.example.com", value())])
    message = str(info.value)
    assert "InvalidTimeStamp.Expired" in message
    assert "This machine's clock is off: it is about" in message and f"seconds {words} Alibaba's" in message


def test_sts_credentials(fake, monkeypatch):
    fake.add_access_key(STS_KEY_ID, STS_SECRET, STS_TOKEN)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", STS_KEY_ID)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", STS_SECRET)
    monkeypatch.setenv("ALIBABA_CLOUD_SECURITY_TOKEN", STS_TOKEN)
    record = TxtRecord("_acme-challenge.example.org", value())
    p = provider(fake)
    p.publish([record])
    p.remove([record])
    assert fake.actions() == ["DescribeDomains", "AddDomainRecord", "DescribeSubDomainRecords", "DeleteDomainRecord"]
    assert all(c.headers["x-acs-security-token"] == STS_TOKEN for c in fake.calls)


def test_network_failure_is_an_acme_error(fake):
    p = provider(fake)
    p.client.endpoint = "https://127.0.0.1:9/alidns"  # the discard port: nothing listens
    with pytest.raises(AcmeError, match=r"DescribeDomains .* failed: NetworkError: cannot reach 127\.0\.0\.1"):
        p.publish([TxtRecord("_acme-challenge.example.com", value())])


def test_options_checked_before_any_request(fake, monkeypatch):
    with pytest.raises(UsageError, match="--alidns-endpoint 'http://alidns.aliyuncs.com': give an https:// URL"):
        provider(fake, "--alidns-endpoint", "http://alidns.aliyuncs.com")
    monkeypatch.delenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
    with pytest.raises(UsageError, match="ALIBABA_CLOUD_ACCESS_KEY_SECRET not set"):
        provider(fake)
    assert fake.calls == []


# --- end to end: step 06 as a subprocess -------------------------------------------------------


@pytest.fixture(scope="module")
def account(hostile, tmp_path_factory):
    """Keys and an account on the scripted CA, made once; each test orders its own names on a copy."""
    work = tmp_path_factory.mktemp("alidns-account") / "acme-work"
    work.parent.mkdir(parents=True, exist_ok=True)
    hostile_account(hostile, work)
    return work


@pytest.fixture
def work(hostile, account, tmp_path):
    hostile.reset()
    copy = tmp_path / "acme-work"
    shutil.copytree(account, copy)
    return copy


def run(step: int, work: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [sys.executable, str(ROOT / STEPS[step]), "--dir", str(work), *args]
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ACME_", "ALIBABA_CLOUD_"))}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=work.parent,
                          env={**base, "PYTHONUTF8": "1", **env})


def order(work: Path, fake, *names: str) -> None:
    """Steps 03 and 05 for ``names``: an order on the scripted CA, waiting for step 06."""
    for step, args in ((3, [a for n in names for a in ("-d", n)]), (5, [])):
        result = run(step, work, *args, env=fake.env())
        assert result.returncode == 0, result.stderr


def step06(work: Path, fake, bind, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return run(6, work, "--provider", "alidns", "--alidns-endpoint", fake.url("alidns"), "--no-propagation-check",
               "--dns-resolver", bind.address, *extra, env=fake.env() if env is None else env)


def seen_when_answered(hostile, fake, zone: str) -> list[list[tuple[str, str]]]:
    """Make the CA note the zone's TXT records each time a challenge is answered; returns the notes."""
    notes: list[list[tuple[str, str]]] = []

    def note(req):
        notes.append(txt(fake, zone))
        return hostile.honest(req)

    for index in range(len(hostile.names)):
        hostile.answer("POST", f"/chall/{index}", note)
    return notes


def test_wildcard_and_apex_several_labels_deep_end_to_end(hostile, fake, bind, work):
    foreign = fake.dns.add_record(ZONE, DEEP_RR, "TXT", "another client's value")
    order(work, fake, f"*.{DEEP}", DEEP)
    notes = seen_when_answered(hostile, fake, ZONE)
    result = step06(work, fake, bind)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and result.stderr == ""
    values = [c.params["Value"] for c in fake.calls_of("AddDomainRecord")]
    assert len(set(values)) == 2
    assert [(c.params["DomainName"], c.params["RR"]) for c in fake.calls_of("AddDomainRecord")] == [(ZONE, DEEP_RR)] * 2
    assert notes == [[(DEEP_RR, "another client's value"), (DEEP_RR, values[0]), (DEEP_RR, values[1])]] * 2
    assert json.loads((work / "order.json").read_text())["order"]["status"] == "ready"
    assert [r["RecordId"] for r in fake.dns.records(ZONE)] == [foreign]  # ours gone, the foreign one kept
    assert not (work / "dns-records.json").exists()
    assert "Publishing 2 TXT records with alidns" in result.stdout
    assert f"_acme-challenge.{DEEP} TXT {values[0]}" in result.stdout
    assert "Order is ready" in result.stdout


def test_verbose_shows_the_calls_with_secrets_redacted(hostile, fake, bind, work):
    fake.add_access_key(STS_KEY_ID, STS_SECRET, STS_TOKEN)
    env = fake.env(ALIBABA_CLOUD_ACCESS_KEY_ID=STS_KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET=STS_SECRET,
                   ALIBABA_CLOUD_SECURITY_TOKEN=STS_TOKEN)
    order(work, fake, DEEP)
    result = step06(work, fake, bind, "-v", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout + result.stderr
    for action in ("DescribeDomains", "AddDomainRecord", "DescribeSubDomainRecords", "DeleteDomainRecord"):
        assert f"{action} (API 2015-01-09)" in out
    assert f"Credential={STS_KEY_ID},SignedHeaders=" in out and "Signature=<redacted>" in out
    assert "[x-acs-security-token: <redacted>]" in out
    assert STS_SECRET not in out and STS_TOKEN not in out
    signatures = [c.headers["authorization"].rsplit("Signature=", 1)[1] for c in fake.calls]
    assert signatures and not any(s in out for s in signatures)
    assert f"RR = '{DEEP_RR}'" in out
    assert fake.dns.records(ZONE) == []


def test_missing_credentials_stop_before_the_ca_is_asked(hostile, fake, bind, work):
    order(work, fake, DEEP)
    hostile.requests.clear()
    env = {k: v for k, v in fake.env().items() if not k.startswith("ALIBABA_CLOUD_")}
    result = step06(work, fake, bind, env=env)
    fails(result, 2, "ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET not set")
    assert hostile.requests == [] and fake.calls == []


def test_a_name_in_no_zone_fails_in_one_line_and_leaves_nothing(hostile, fake, bind, work):
    order(work, fake, DEEP, "www.not-in-this-account.test")
    result = step06(work, fake, bind)
    fails(result, 1, "_acme-challenge.www.not-in-this-account.test is in none of the zones", "example.com.cn")
    assert fake.dns.records(ZONE) == [] and fake.calls_of("AddDomainRecord") == []
    assert not (work / "dns-records.json").exists()
    assert hostile.hits("POST", "/chall/0") == 0 and hostile.hits("POST", "/chall/1") == 0


def test_a_refused_add_domain_record_fails_in_one_line_and_leaves_nothing(hostile, fake, bind, work):
    """A RAM policy that covers example.com.cn only: the second name's AddDomainRecord is refused."""
    real_add = fake.dns.AddDomainRecord

    def only_example_com_cn(params):
        if params.get("DomainName") != ZONE:
            raise ApiError(403, "Forbidden.RAM", "User not authorized to operate on the specified resource.")
        return real_add(params)

    fake.dns.AddDomainRecord = only_example_com_cn
    order(work, fake, DEEP, "www.example.net")
    result = step06(work, fake, bind)
    fails(result, 1, "Alibaba Cloud DNS AddDomainRecord (_acme-challenge.www TXT in example.net) failed: "
                     "Forbidden.RAM", "attach the policy")
    assert [c.params["DomainName"] for c in fake.calls if c.action == "AddDomainRecord"] == [ZONE, "example.net"]
    assert len(fake.calls_of("DeleteDomainRecord")) == 1  # the first name's record, added, then removed
    assert fake.dns.records(ZONE) == [] and fake.dns.records("example.net") == []
    assert not (work / "dns-records.json").exists()
    assert hostile.hits("POST", "/chall/0") == 0


def test_cname_delegation_publishes_in_the_target_zone(hostile, fake, bind, work):
    """_acme-challenge.<name> is a CNAME (in BIND) into a zone the account holds: the record goes there."""
    label = f"d{uuid.uuid4().hex[:8]}"
    bind.set_cname(f"_acme-challenge.{label}.{ZONE}", f"_acme-challenge.{label}.acme-delegate.test")
    fake.dns.add_zone("acme-delegate.test")
    order(work, fake, f"{label}.{ZONE}")
    notes = seen_when_answered(hostile, fake, "acme-delegate.test")
    result = step06(work, fake, bind)
    assert result.returncode == 0, result.stdout + result.stderr
    (added,) = fake.calls_of("AddDomainRecord")
    assert (added.params["DomainName"], added.params["RR"]) == ("acme-delegate.test", f"_acme-challenge.{label}")
    assert notes == [[(f"_acme-challenge.{label}", added.params["Value"])]]
    assert fake.dns.records("acme-delegate.test") == [] and fake.dns.records(ZONE) == []


def write_records_file(work: Path, records: list[TxtRecord]) -> None:
    """dns-records.json as step 06 writes it before publishing, then a kill left it behind."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "dns-records.json").write_text(json.dumps(
        {"provider": "alidns", "records": [{"name": r.name, "value": r.value} for r in records]}))


def test_cleanup_removes_what_a_killed_run_listed(fake, tmp_path):
    work = tmp_path / "acme-work"
    name = f"_acme-challenge.{DEEP}"
    left = [TxtRecord(name, value()), TxtRecord(name, value())]
    for record in left:
        fake.dns.add_record(ZONE, DEEP_RR, "TXT", record.value)
    foreign = fake.dns.add_record(ZONE, DEEP_RR, "TXT", value())
    write_records_file(work, left)
    result = run(6, work, "--cleanup", "--provider", "alidns", "--alidns-endpoint", fake.url("alidns"),
                 env=fake.env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Removing 2 TXT records an earlier run left" in result.stdout
    assert [r["RecordId"] for r in fake.dns.records(ZONE)] == [foreign]
    assert not (work / "dns-records.json").exists()
    again = run(6, work, "--cleanup", "--provider", "alidns", "--alidns-endpoint", fake.url("alidns"), env=fake.env())
    assert again.returncode == 0 and "Nothing an earlier run published is left" in again.stdout


def test_a_later_run_removes_an_interrupted_runs_records_first(hostile, fake, bind, work):
    stale = TxtRecord(f"_acme-challenge.{DEEP}", value())
    fake.dns.add_record(ZONE, DEEP_RR, "TXT", stale.value)
    order(work, fake, DEEP)
    write_records_file(work, [stale])
    result = step06(work, fake, bind)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Removing 1 TXT record an earlier run left" in result.stdout
    assert fake.dns.records(ZONE) == [] and not (work / "dns-records.json").exists()
