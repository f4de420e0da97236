"""Alibaba Cloud DNS (Alidns, API 2015-01-09): the actions step 06's alidns provider needs, and the zones.

One method per action, each naming it; requests are signed by :mod:`common.alibaba`, and the
endpoint rule, the error hints and the paging come from :mod:`common.alibaba_api`. A record
goes into the account's zone that holds its name: the longest one, on a label boundary (a zone
is not "the last two labels": ``example.com.cn``, and an account may hold ``example.com`` and
``sub.example.com`` both). What to publish and remove is :mod:`common.dns_providers`' business.
"""

from __future__ import annotations

import logging

import requests

from . import alibaba, alibaba_api
from .errors import AcmeError, bounded

log = logging.getLogger("acme")

VERSION = "2015-01-09"
DEFAULT_ENDPOINT = "https://alidns.aliyuncs.com"  # the one endpoint, for China and international accounts
PAGE_SIZE = 100  # the most DescribeDomains and DescribeSubDomainRecords return per page
MAX_PAGES = 100  # 10,000 zones, or records at one name: a broken answer must not page forever
MAX_NAME_LENGTH = 253  # a DNS name's most, in text (RFC 1035 §2.3.4)


class AlidnsError(alibaba_api.AlibabaApiError):
    """Alibaba Cloud DNS, or the network to it, said no: exit status 1. ``code`` is Alibaba's error code.

    One line, hint included: step 06 says what went wrong in one line, and a failed cleanup is
    logged as one warning line.
    """

    one_line = True


class Alidns:
    """The Alidns API as one AccessKey sees it, at ``endpoint``; the account's zones are listed once."""

    def __init__(self, credentials: alibaba.Credentials, endpoint: str = DEFAULT_ENDPOINT, *,
                 exchange_timeout: float | None = None) -> None:
        self.credentials, self.endpoint = credentials, endpoint
        self.exchange_timeout = exchange_timeout  # None: alibaba_api's EXCHANGE_DEADLINE for each call
        self.session = requests.Session()
        self._zones: dict[str, str] | None = None  # the account's zones: lower-case ASCII name -> DomainName

    # -- zones and records --

    def find(self, name: str) -> tuple[str, str] | None:
        """(DomainName, RR) for ``name``: the account's zone that holds it and the name relative to that zone."""
        zones = self.zones()
        zone = longest_zone(name, list(zones))
        return (zones[zone], relative_name(name, zone)) if zone else None

    def locate(self, name: str) -> tuple[str, str]:
        """As :meth:`find`, but a name in no zone of the account is an error that lists a few of its zones."""
        place = self.find(name)
        if place is None:
            raise AcmeError(f"{name} is in none of the zones of this Alibaba Cloud account "
                            f"({bounded(some_zones(name, list(self.zones().values())))}): add its domain in the "
                            "Alibaba Cloud DNS console, or CNAME its _acme-challenge to a name in one of them")
        return place

    def zones(self) -> dict[str, str]:
        """Every domain of the account (all pages of DescribeDomains), fetched once."""
        if self._zones is None:
            zones: dict[str, str] = {}
            what = "Alibaba Cloud DNS DescribeDomains"
            for domain in alibaba_api.paged(self.describe_domains, ("Domains", "Domain"), PAGE_SIZE, MAX_PAGES,
                                            what):
                shown = alibaba_api.text_field(domain, "DomainName", what, required=False)
                ascii_name = (alibaba_api.text_field(domain, "PunyCode", what, required=False)
                              or shown).rstrip(".").lower()
                if max(len(shown), len(ascii_name)) > MAX_NAME_LENGTH:  # it goes into messages and requests
                    raise alibaba_api.malformed(what, "a zone name longer than a DNS name can be", shown)
                if shown and ascii_name:
                    zones[ascii_name] = shown
            log.debug("  the account has %d zones", len(zones))
            self._zones = zones
        return self._zones

    def txt_records(self, domain: str, rr: str, name: str) -> list[dict[str, str]]:
        """The TXT records at ``name`` in ``domain`` (every page), checked to really be at ``rr``."""
        what = f"Alibaba Cloud DNS DescribeSubDomainRecords (TXT records at {name})"
        entries = alibaba_api.paged(lambda page: self.describe_sub_domain_records(domain, name, page),
                                    ("DomainRecords", "Record"), PAGE_SIZE, MAX_PAGES, what)
        found = []
        for entry in entries:
            fields = {key: alibaba_api.text_field(entry, key, what, required=False)
                      for key in ("RecordId", "Value", "Type", "RR")}
            if fields["Type"].upper() == "TXT" and fields["RR"].lower() == rr.lower() and fields["RecordId"]:
                found.append({"RecordId": fields["RecordId"], "Value": fields["Value"]})
        return found

    # -- the Alidns actions, one method each --

    def call(self, action: str, params: dict[str, str | int], about: str) -> dict:
        """One Alidns action; a refusal becomes an AlidnsError naming the action and ``about``."""
        return alibaba_api.call(self.endpoint, action, VERSION, params, self.credentials, session=self.session,
                                what=f"Alibaba Cloud DNS {action} ({about})", error=AlidnsError,
                                timeout=self.exchange_timeout)

    def describe_domains(self, page: int) -> dict:
        """Alidns DescribeDomains (API 2015-01-09): one page of the account's domains (zones), newest first."""
        return self.call("DescribeDomains", {"PageNumber": page, "PageSize": PAGE_SIZE},
                         f"listing the account's zones, page {page}")

    def add_domain_record(self, domain: str, rr: str, value: str, ttl: int) -> str:
        """Alidns AddDomainRecord (API 2015-01-09): one TXT record; returns its RecordId.

        An identical record (same RR, type, value and line) is refused with DomainRecordDuplicate.
        """
        what = f"Alibaba Cloud DNS AddDomainRecord ({rr} TXT in {domain})"
        answer = self.call("AddDomainRecord", {"DomainName": domain, "RR": rr, "Type": "TXT", "Value": value,
                                               "TTL": ttl}, f"{rr} TXT in {domain}")
        record_id = alibaba_api.text_field(answer, "RecordId", what)
        if not record_id:
            raise alibaba_api.malformed(what, "an answer with an empty RecordId")
        return record_id

    def delete_domain_record(self, record_id: str, about: str) -> None:
        """Alidns DeleteDomainRecord (API 2015-01-09): delete one record by its RecordId.

        A record already gone is refused with DomainRecordNotBelongToUser: that is done too.
        """
        try:
            self.call("DeleteDomainRecord", {"RecordId": record_id}, f"RecordId {bounded(record_id)}, {about}")
        except AlidnsError as exc:
            if exc.code != "DomainRecordNotBelongToUser":
                raise

    def describe_sub_domain_records(self, domain: str, name: str, page: int) -> dict:
        """Alidns DescribeSubDomainRecords (API 2015-01-09): one page of the TXT records at ``name``.

        DomainName is given so that Alibaba does not guess the zone from the name.
        """
        return self.call("DescribeSubDomainRecords", {"SubDomain": name, "DomainName": domain, "Type": "TXT",
                                                      "PageNumber": page, "PageSize": PAGE_SIZE},
                         f"TXT records at {name}")


def longest_zone(name: str, zones: list[str]) -> str | None:
    """The longest of ``zones`` that ``name`` is in, on a label boundary, or None.

    ``_acme-challenge.a.b.example.com.cn`` is in ``example.com.cn``, not in ``com.cn`` nor in
    ``b.example.com`` (a zone is not "the last two labels"); an account may hold both
    ``example.com`` and ``sub.example.com``, and then ``x.sub.example.com`` is in the second.
    """
    name = name.rstrip(".").lower()
    inside = [zone for zone in zones if name == zone or name.endswith("." + zone)]
    return max(inside, key=len) if inside else None


def relative_name(name: str, zone: str) -> str:
    """The RR of ``name`` in ``zone``: the labels before it, or "@" for the zone's apex."""
    name = name.rstrip(".")
    return "@" if name.lower() == zone else name[: -len(zone) - 1]


def some_zones(name: str, zones: list[str], shown: int = 5) -> str:
    """A few of the account's zones, those sharing the most trailing labels with ``name`` first."""
    if not zones:
        return "it has none"
    labels = name.lower().split(".")

    def shared(zone: str) -> int:
        count = 0
        for a, b in zip(reversed(labels), reversed(zone.lower().split(".")), strict=False):
            if a != b:
                break
            count += 1
        return count

    chosen = sorted(zones, key=lambda z: (-shared(z), z))[:shown]
    more = f" and {len(zones) - shown} more" if len(zones) > shown else ""
    return "it has " + ", ".join(chosen) + more
