"""The TXT records the DNS challenges need, and their life: computed, listed, published, checked, removed.

The records are listed in the work dir (``dns-records.json``) before they are published, so a
run that is interrupted or killed can always be cleaned up: by the next run of step 06, which
removes what an earlier one left before publishing its own, or by ``06_dns_challenge.py --cleanup``.
dns-persist-01 records are the exception: they are meant to stay, so they are never listed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from . import challenges, dns_lookup, names
from .dns_providers import DnsProvider, TxtRecord, remove_quietly
from .errors import AcmeError, Interrupted, UsageError, despite_interrupts
from .validation import Task
from .workdir import DNS_RECORDS, WorkDir

log = logging.getLogger("acme")

DNS_CHALLENGES = (challenges.DNS01, challenges.DNS_ACCOUNT01, challenges.DNS_PERSIST01)


def record_for(challenge_type: str, task: Task, thumbprint: str, account_url: str) -> TxtRecord:
    """The TXT record that answers ``task``'s challenge of ``challenge_type`` (see common/challenges.py)."""
    domain = task.authz["identifier"]["value"]
    if challenge_type == challenges.DNS_PERSIST01:
        try:
            name, value = challenges.dns_persist01_record(domain, task.challenge, account_url,
                                                          wildcard=bool(task.authz.get("wildcard")))
        except ValueError as exc:
            raise AcmeError(f"the CA's dns-persist-01 challenge for {task.label} cannot be used: {exc}") from None
        return TxtRecord(name, value)
    key_authz = challenges.key_authorization(task.challenge["token"], thumbprint)
    value = challenges.dns01_txt_value(key_authz)
    # -v shows what the value hashes: nothing secret, since token and thumbprint are both public.
    log.debug("  %s: key authorization (token \".\" thumbprint) %s", task.label, key_authz)
    log.debug("  %s: TXT value base64url(SHA-256(key authorization)) %s", task.label, value)
    if challenge_type == challenges.DNS_ACCOUNT01:
        return TxtRecord(challenges.dns_account01_record_name(domain, account_url), value)
    return TxtRecord(challenges.dns01_record_name(domain), value)


def delegated(provider: DnsProvider, records: list[TxtRecord]) -> list[TxtRecord]:
    """The records moved to where their CNAME chains end: a delegated ``_acme-challenge`` is
    answered in the zone it points to, through the same provider, as the CA will look there."""
    moved = []
    for record in records:
        target = dns_lookup.follow_cname(record.name, provider.resolver)
        if target != record.name:
            log.info("%s is a CNAME for %s: the record goes there", record.name, target)
        moved.append(TxtRecord(target, record.value))
    return moved


@contextmanager
def published(work: WorkDir, provider: DnsProvider, records: list[TxtRecord], *, persistent: bool) -> Iterator[None]:
    """Publish ``records`` for the block, and remove them when it ends, however it ends.

    They are listed in dns-records.json first, so an interrupted run leaves a trail; the list
    goes once they are removed. ``persistent`` records (dns-persist-01) stay published.
    """
    if not records:  # nothing to do: every name was valid already, or its dns-persist-01 record in place
        yield
        return
    if not persistent:
        work.write_json(DNS_RECORDS, {"provider": provider.name, "records": _listed(records)})
    log.info("Publishing %s with %s...", names.count(len(records), "TXT record"), provider.name)
    for record in records:
        log.info("  %s TXT %s", record.name, record.value)
    interrupted = False
    try:
        provider.publish(records)
        yield
    except (KeyboardInterrupt, Interrupted):
        interrupted = True
        raise
    finally:
        if persistent:
            log.info("The dns-persist-01 records stay published: later orders by this account reuse them")
        else:
            log.info("Removing TXT records...")
            outcome: list[bool] = []
            despite_interrupts(lambda: outcome.append(remove_quietly(provider, records)))
            removed = outcome[-1]
            if removed:
                work.path(DNS_RECORDS).unlink(missing_ok=True)
            if interrupted:
                log.warning("Interrupted: %s. Run 06_dns_challenge.py again to finish proving the names.",
                            "some TXT records may be left; they are listed in dns-records.json, which the next "
                            "run (or 06_dns_challenge.py --cleanup) removes" if not removed else
                            "the TXT records were removed" if provider.removes_records else
                            "delete the TXT records shown above if you created any")


def wait_until_visible(provider: DnsProvider, records: list[TxtRecord], timeout: float) -> None:
    """Return once every server the CA may ask serves every value (see common/dns_lookup.py)."""
    if not records:
        return
    expected: dict[str, set[str]] = {}
    for record in records:
        expected.setdefault(record.name, set()).add(record.value)
    log.info("Checking that the records are visible on the authoritative servers...")
    servers = {name: provider.servers_for(name) for name in expected}
    dns_lookup.wait_until_visible(expected, servers, timeout)


def not_yet_published(provider: DnsProvider, records: list[TxtRecord]) -> list[TxtRecord]:
    """The records some authoritative server does not serve yet. A dns-persist-01 record is
    published once and proves every later order of the account: it is not published again."""
    missing = []
    for record in records:
        if all(record.value in (dns_lookup.txt_values(record.name, server) or set())
               for server in provider.servers_for(record.name)):
            log.info("%s TXT %s is already published", record.name, record.value)
        else:
            missing.append(record)
    return missing


def remove_leftovers(work: WorkDir, provider: DnsProvider) -> None:
    """Remove the records an earlier, interrupted run listed in dns-records.json, if any."""
    if not work.exists(DNS_RECORDS):
        return
    listed = work.read_json(DNS_RECORDS, _records_file)
    if listed["provider"] != provider.name:
        raise UsageError(f"{work.path(DNS_RECORDS)} lists records an earlier run published with "
                         f"{listed['provider']}: run 06_dns_challenge.py --cleanup --provider {listed['provider']} "
                         "first (or delete the file if you removed them by hand)")
    records = [TxtRecord(r["name"], r["value"]) for r in listed["records"]]
    log.info("Removing %s an earlier run left...", names.count(len(records), "TXT record"))
    provider.remove(records)
    work.path(DNS_RECORDS).unlink()


def _listed(records: list[TxtRecord]) -> list[dict[str, str]]:
    return [{"name": r.name, "value": r.value} for r in records]


def _records_file(data: Any) -> None:
    from .resources import ShapeError

    ok = (isinstance(data, dict) and isinstance(data.get("provider"), str) and isinstance(data.get("records"), list)
          and all(isinstance(r, dict) and isinstance(r.get("name"), str) and isinstance(r.get("value"), str)
                  for r in data["records"]))
    if not ok:
        raise ShapeError("it is not a provider name and a list of records")
