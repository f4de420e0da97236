"""Where the TXT records of the DNS challenges get published (RFC 8555 §8.4).

A provider publishes every record of an order at once and removes them all afterwards,
because DNS changes are slow to propagate: one wait for n names, not n waits. Each provider
is one class: a ``name``, its own options, how to build it from them, ``publish`` and
``remove``; :func:`register` makes it a ``--provider`` choice of step 06.

A provider removes only what it published: the exact values, never another record at the
same name (a wildcard and its apex share ``_acme-challenge.<domain>``; so may another client).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import logging
import os
import re
import subprocess
import sys
from abc import ABC, abstractmethod
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import requests

from . import acme_servers, alibaba, alibaba_api, alidns, dns_lookup
from .dns_lookup import Server
from .errors import AcmeError, UsageError, bounded

if TYPE_CHECKING:
    import dns.update

DEFAULT_CHALLTESTSRV = "http://localhost:8055"
log = logging.getLogger("acme")


@dataclass(frozen=True)
class TxtRecord:
    """One TXT record: ``name`` is fully qualified without the trailing dot."""

    name: str
    value: str


class DnsProvider(ABC):
    """Publishes and removes the TXT records that answer DNS challenges."""

    name: ClassVar[str]
    help: ClassVar[str]
    removes_records: ClassVar[bool] = True  # False when ``remove`` only tells the user what to delete

    def __init__(self, resolvers: list[Server] | None = None) -> None:
        # Where CNAMEs, zones and name servers are looked up: --dns-resolver, else the system's.
        self.resolver = dns_lookup.resolver(resolvers or [])

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add this provider's own options (credentials, endpoints) to the step's parser."""
        return None

    @classmethod
    @abstractmethod
    def from_args(cls, args: argparse.Namespace) -> DnsProvider:
        """Build the provider from the parsed options, or raise UsageError naming what is missing."""

    @abstractmethod
    def publish(self, records: list[TxtRecord]) -> None:
        """Create every record; several values under one name must all coexist."""

    @abstractmethod
    def remove(self, records: list[TxtRecord]) -> None:
        """Delete exactly these records again; called on failure too, so it must tolerate partial publishes."""

    def servers_for(self, name: str) -> list[Server]:
        """The servers the CA will ask about ``name``: the authoritative servers of its zone."""
        return dns_lookup.authoritative_servers(dns_lookup.zone_of(name, self.resolver), self.resolver)


def remove_quietly(provider: DnsProvider, records: list[TxtRecord]) -> bool:
    """Remove the records, warning instead of raising: cleanup must not hide the error before it."""
    try:
        provider.remove(records)
        return True
    except (AcmeError, UsageError) as exc:
        log.warning("warning: could not remove the TXT records: %s", exc)
        return False


PROVIDERS: dict[str, type[DnsProvider]] = {}


def register(cls: type[DnsProvider]) -> type[DnsProvider]:
    PROVIDERS[cls.name] = cls
    return cls


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--provider, the options every provider shares, and each provider's own."""
    parser.add_argument("--provider", choices=sorted(PROVIDERS), metavar="NAME",
                        help="; ".join(f"{name}: {cls.help}" for name, cls in sorted(PROVIDERS.items())))
    parser.add_argument("--dns-resolver", action="append", default=[], metavar="ADDR[:PORT]",
                        help="resolver for finding zones, their servers and CNAMEs (repeatable; default: the "
                             "system's), e.g. for split-horizon DNS")
    parser.add_argument("--ttl", type=int, metavar="SECONDS",
                        help="rfc2136 and alidns: TTL of the published records (default: 60 and 600, alidns' "
                             "free edition minimum)")
    for cls in PROVIDERS.values():
        cls.add_arguments(parser)


def from_args(args: argparse.Namespace) -> DnsProvider:
    if not args.provider:
        raise UsageError("choose where the TXT records go with --provider: challtestsrv for the local test CA, "
                         f"or one of {', '.join(sorted(set(PROVIDERS) - {'challtestsrv'}))} for a real domain")
    args.dns_resolver = [dns_lookup.parse_server(text, "--dns-resolver") for text in args.dns_resolver]
    return PROVIDERS[args.provider].from_args(args)


# -- the local test CA -----------------------------------------------------------------------------


def default_challtestsrv_url() -> str:
    """The local test CA's challtestsrv if it is set up, else challtestsrv's usual port."""
    try:
        return acme_servers.local_ca_state()["challtestsrv_url"]
    except UsageError:
        return DEFAULT_CHALLTESTSRV


@register
class ChalltestsrvProvider(DnsProvider):
    """Pebble's mock DNS server, for the local test CA: records go in over its HTTP API.

    It is the only DNS server Pebble asks, so it is also where the records are checked.
    """

    name = "challtestsrv"
    help = "the local test CA's mock DNS (pebble-challtestsrv)"

    def __init__(self, api_url: str, dns_server: Server | None) -> None:
        super().__init__([dns_server] if dns_server else [])
        self.api_url = api_url.rstrip("/")
        self.dns_server = dns_server

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--challtestsrv-url", metavar="URL",
                            help=f"challtestsrv's management API (default: the local test CA's, else "
                                 f"{DEFAULT_CHALLTESTSRV})")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DnsProvider:
        url = args.challtestsrv_url or default_challtestsrv_url()
        dns_server = args.dns_resolver[0] if args.dns_resolver else None
        if dns_server is None:
            try:
                dns_server = dns_lookup.parse_server(acme_servers.local_ca_state()["dns_server"], "dns_server")
            except (UsageError, KeyError):
                dns_server = None
        if dns_server is None and getattr(args, "propagation_check", True):
            raise UsageError("challtestsrv's DNS address is unknown (no local test CA state): give it with "
                             "--dns-resolver ADDR:PORT, or skip the check with --no-propagation-check")
        return cls(url, dns_server)

    def _call(self, path: str, body: dict[str, str]) -> None:
        url = f"{self.api_url}/{path}"
        try:
            resp = requests.post(url, json=body, timeout=10)
        except requests.RequestException as exc:
            raise AcmeError(f"cannot reach challtestsrv at {url} ({type(exc).__name__}): "
                            "is the local test CA running? (.venv/bin/python tools/local_ca.py start)") from None
        if resp.status_code != 200:
            raise AcmeError(f"challtestsrv refused {path}: HTTP {resp.status_code} {resp.text.strip()}")

    def publish(self, records: list[TxtRecord]) -> None:
        # A second value for the same host is added, not replaced: what wildcard + apex need.
        for record in records:
            self._call("set-txt", {"host": record.name + ".", "value": record.value})

    def remove(self, records: list[TxtRecord]) -> None:
        # challtestsrv can only clear a name whole; it holds nothing but what tests put there.
        for name in dict.fromkeys(r.name for r in records):
            self._call("clear-txt", {"host": name + "."})

    def servers_for(self, name: str) -> list[Server]:
        if self.dns_server is None:
            raise UsageError("challtestsrv's DNS address is unknown: start the local test CA, or give --dns-resolver")
        return [self.dns_server]


# -- by hand -----------------------------------------------------------------------------------------


@register
class ManualProvider(DnsProvider):
    """You create the records in your DNS provider's console; the step waits for Enter,
    then checks that the records are visible before the CA is asked to look."""

    name = "manual"
    help = "print the records, wait while you create them by hand"
    removes_records = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DnsProvider:
        if not sys.stdin.isatty():
            raise UsageError("the manual provider waits for you to press Enter: run 06_dns_challenge.py in a "
                             "terminal, or use a provider that publishes by itself")
        return cls(args.dns_resolver)

    def publish(self, records: list[TxtRecord]) -> None:
        print("Create these DNS TXT records (one name may hold several values; keep them all):")
        for record in records:
            print(f"  {record.name}.  TXT  \"{record.value}\"")
        try:
            input("Press Enter once they are published... ")
        except EOFError:
            raise UsageError("the manual provider waits for Enter, but the input ended") from None
        except KeyboardInterrupt:
            print()  # end the prompt's line, so what the cleanup says starts on its own
            raise

    def remove(self, records: list[TxtRecord]) -> None:
        print("You can now delete these TXT records:")
        for record in records:
            print(f"  {record.name}.  TXT  \"{record.value}\"")


# -- RFC 2136 dynamic updates ----------------------------------------------------------------------------

# key "name" { algorithm hmac-sha256; secret "base64"; };  as tsig-keygen and dnssec-keygen write it
_BIND_KEY = re.compile(r'key\s+"?([^"\s{]+)"?\s*\{(.*?)\}\s*;', re.S)
_KEY_FIELD = re.compile(r'(algorithm|secret)\s+"?([^";\s]+)"?\s*;')
# The algorithms tsig-keygen offers, by the name its key files use -> the name dnspython knows them by.
_TSIG_ALGORITHMS = {"hmac-md5": "hmac-md5.sig-alg.reg.int", "hmac-sha1": "hmac-sha1", "hmac-sha224": "hmac-sha224",
                    "hmac-sha256": "hmac-sha256", "hmac-sha384": "hmac-sha384", "hmac-sha512": "hmac-sha512"}


@dataclass(frozen=True)
class TsigKey:
    name: str
    algorithm: str
    secret: str  # base64, as in the key file

    def __repr__(self) -> str:  # never show the secret, even in a traceback
        return f"TsigKey({self.name!r}, {self.algorithm!r})"


def read_tsig_key(path: Path) -> TsigKey:
    """The first key in a BIND key file (``tsig-keygen NAME > FILE``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read TSIG key file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    match = _BIND_KEY.search(text)
    fields = dict(_KEY_FIELD.findall(match.group(2))) if match else {}
    if not match or "secret" not in fields:
        raise UsageError(f'{path} is not a BIND key file: expected key "NAME" {{ algorithm ...; secret "..."; }};'
                         " as tsig-keygen writes it")
    algorithm = fields.get("algorithm", "hmac-sha256").lower()
    if algorithm not in _TSIG_ALGORITHMS:
        raise UsageError(f"{path}: unknown TSIG algorithm {algorithm!r}; tsig-keygen's are "
                         f"{', '.join(_TSIG_ALGORITHMS)} (hmac-sha256 is its default)")
    try:
        base64.b64decode(fields["secret"], validate=True)
    except binascii.Error:
        raise UsageError(f"{path}: the key's secret is not base64; use the file as tsig-keygen wrote it") from None
    return TsigKey(match.group(1), _TSIG_ALGORITHMS[algorithm], fields["secret"])


@register
class Rfc2136Provider(DnsProvider):
    """Dynamic DNS UPDATE signed with TSIG (RFC 2136, RFC 8945): BIND, Knot, PowerDNS, Windows DNS.

    The zone of each record is found with SOA queries; the update goes to --rfc2136-server or,
    by default, to the zone's primary server (its SOA MNAME), which is where RFC 2136 §4 sends it.
    """

    name = "rfc2136"
    help = "dynamic DNS updates with a TSIG key (BIND, Knot, PowerDNS, Windows DNS)"
    DEFAULT_TTL = 60

    def __init__(self, key: TsigKey, server: Server | None, resolvers: list[Server], ttl: int) -> None:
        super().__init__(resolvers)
        self.key, self.server, self.ttl = key, server, ttl
        self._zones: dict[str, str] = {}
        self._sent: set[TxtRecord] | None = None  # what an update may have added; None: publish never ran

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--tsig-key-file", type=Path, metavar="FILE",
                            help="rfc2136: the TSIG key, in the format tsig-keygen writes")
        parser.add_argument("--rfc2136-server", metavar="HOST[:PORT]",
                            help="rfc2136: where to send updates (default: the zone's primary, its SOA MNAME)")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DnsProvider:
        if not args.tsig_key_file:
            raise UsageError("--provider rfc2136 needs --tsig-key-file FILE (make one with: tsig-keygen acme > FILE)")
        server = dns_lookup.parse_server(args.rfc2136_server, "--rfc2136-server") if args.rfc2136_server else None
        return cls(read_tsig_key(args.tsig_key_file), server, args.dns_resolver, args.ttl or cls.DEFAULT_TTL)

    def publish(self, records: list[TxtRecord]) -> None:
        self._sent = set() if self._sent is None else self._sent
        self._update(records, add=True)

    def remove(self, records: list[TxtRecord]) -> None:
        # After a publish, only what an update may have added can be there; a later run's object tries them all.
        records = [r for r in records if self._sent is None or r in self._sent]
        if records:
            self._update(records, add=False)

    def _zone(self, name: str) -> str:
        if name not in self._zones:
            self._zones[name] = dns_lookup.zone_of(name, self.resolver)
        return self._zones[name]

    def _update(self, records: list[TxtRecord], *, add: bool) -> None:
        """One UPDATE message per zone, adding or deleting exactly these values (RFC 2136 §2.5)."""
        import dns.name
        import dns.tsigkeyring
        import dns.update

        keyring = dns.tsigkeyring.from_text({self.key.name: (self.key.algorithm, self.key.secret)})
        by_zone: dict[str, list[TxtRecord]] = defaultdict(list)
        for record in records:
            by_zone[self._zone(record.name)].append(record)
        for zone, zone_records in by_zone.items():
            update = dns.update.UpdateMessage(zone, keyring=keyring, keyname=self.key.name,
                                              keyalgorithm=self.key.algorithm)
            for record in zone_records:
                name = dns.name.from_text(record.name)
                rdata = '"' + record.value + '"'
                if add:
                    update.add(name, self.ttl, "TXT", rdata)
                else:
                    update.delete(name, "TXT", rdata)
            server = self.server or dns_lookup.primary_of(zone, self.resolver)
            if add and self._sent is not None:
                self._sent.update(zone_records)  # before sending: an update whose answer is lost may still apply
            refusal = self._send(update, server, zone)
            if refusal:
                if add and self._sent is not None:
                    self._sent.difference_update(zone_records)  # a refused update changes nothing (RFC 2136 §3)
                raise AcmeError(refusal)

    def _send(self, update: dns.update.UpdateMessage, server: Server, zone: str) -> str | None:
        """Send one UPDATE: None once applied, or why the server refused it (it then changed nothing).

        With no answer the update may or may not have been applied: that raises AcmeError instead.
        """
        import dns.query
        import dns.rcode
        import dns.tsig

        try:
            reply = dns.query.tcp(update, server.address, port=server.port, timeout=dns_lookup.LOOKUP_LIFETIME)
        except dns.tsig.PeerError as exc:  # the server checked the signature and said no
            return f"the DNS server {server} refused the update of {zone}: {_tsig_problem(exc)}"
        except ConnectionRefusedError:
            return f"cannot reach the DNS server {server} for {zone}: connection refused"
        except dns.exception.DNSException as exc:
            raise AcmeError(f"the update of {zone} on the DNS server {server} failed: {_tsig_problem(exc)}") from None
        except OSError as exc:
            raise AcmeError(f"cannot reach the DNS server {server} for {zone}: {exc.strerror or exc}") from None
        if reply.rcode() != dns.rcode.NOERROR:
            return (f"the DNS server {server} refused the update of {zone}: "
                    f"{dns.rcode.to_text(reply.rcode())} ({_RCODES.get(reply.rcode(), 'see its log')})")
        return None


_RCODES = {5: "the key may not update this zone", 9: "the server is not authoritative for the zone, or the key "
           "is wrong", 3: "the zone does not exist", 2: "the server failed"}


def _tsig_problem(exc: Exception) -> str:
    name = type(exc).__name__
    if "BadSignature" in name or "BadKey" in name:
        return f"{name}: the TSIG key name or secret is not the one the server has"
    return " ".join(str(exc).split()) or name


# -- a program of the user's -------------------------------------------------------------------


@register
class ExecProvider(DnsProvider):
    """Runs ``HOOK present FQDN. VALUE`` and ``HOOK cleanup FQDN. VALUE``, lego's exec convention,
    so a hook written for lego works unchanged. No shell: the arguments are passed as a list."""

    name = "exec"
    help = "run a program of yours: HOOK present|cleanup FQDN. VALUE (lego's convention)"
    TIMEOUT = 300.0

    def __init__(self, hook: str, resolvers: list[Server]) -> None:
        super().__init__(resolvers)
        self.hook = hook

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--exec-hook", metavar="PROGRAM", help="exec: the program to run")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DnsProvider:
        if not args.exec_hook:
            raise UsageError("--provider exec needs --exec-hook PROGRAM")
        hook = args.exec_hook if os.sep in args.exec_hook else (_which(args.exec_hook) or args.exec_hook)
        if not (os.path.isfile(hook) and os.access(hook, os.X_OK)):
            raise UsageError(f"--exec-hook {args.exec_hook}: not an executable file (chmod +x it, or give its path)")
        return cls(hook, args.dns_resolver)

    def publish(self, records: list[TxtRecord]) -> None:
        for record in records:
            self._run("present", record)

    def remove(self, records: list[TxtRecord]) -> None:
        for record in records:
            self._run("cleanup", record)

    def _run(self, action: str, record: TxtRecord) -> None:
        command = [self.hook, action, record.name + ".", record.value]
        log.debug("  running %s", " ".join(command))
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=self.TIMEOUT,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise AcmeError(f"the hook {self.hook} {action} {record.name}. did not finish within "
                            f"{self.TIMEOUT:.0f} s") from None
        except OSError as exc:
            raise AcmeError(f"cannot run the hook {self.hook}: {exc.strerror or exc}") from None
        if done.returncode != 0:
            said = " | ".join(done.stderr.strip().splitlines()[-5:]) or "(nothing on stderr)"
            raise AcmeError(f"the hook {self.hook} {action} {record.name}. failed with exit status "
                            f"{done.returncode}: {said}")


def _which(program: str) -> str | None:
    import shutil

    return shutil.which(program)


# -- Alibaba Cloud DNS -------------------------------------------------------------------------


@register
class AlidnsProvider(DnsProvider):
    """Alibaba Cloud DNS (Alidns, API 2015-01-09), called over HTTPS with V3-signed requests (common/alidns.py).

    Each record goes into the account's zone that holds its name (the longest one, from
    DescribeDomains), one AddDomainRecord per value. Removal deletes only what this provider
    added, by RecordId, once the record is seen to still hold that name and value; records of an
    earlier run (this object knows no ids then) are looked up at their name and deleted only on
    an exact value. The CA asks the zone's real name servers, so the propagation check does too.
    """

    name = "alidns"
    help = f"Alibaba Cloud DNS, AccessKey in ${alibaba.ENV_ACCESS_KEY_ID} and ${alibaba.ENV_ACCESS_KEY_SECRET}"
    DEFAULT_TTL = 600  # the free edition's minimum; paid editions allow less

    def __init__(self, client: alidns.Alidns, resolvers: list[Server], ttl: int) -> None:
        super().__init__(resolvers)
        self.client, self.ttl = client, ttl
        self._ids: dict[TxtRecord, str] = {}  # RecordId of each record this object added (or found already there)
        self._tried: set[TxtRecord] | None = None  # what publish sent AddDomainRecord for; None: publish never ran

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--alidns-endpoint", default=alidns.DEFAULT_ENDPOINT, metavar="URL",
                            help="alidns: the Alidns API endpoint (default: %(default)s)")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DnsProvider:
        endpoint = alibaba_api.endpoint_url(args.alidns_endpoint)
        if endpoint is None:
            raise UsageError(f"--alidns-endpoint {args.alidns_endpoint!r}: give an https:// URL, e.g. "
                             f"{alidns.DEFAULT_ENDPOINT}")
        credentials = alibaba_api.credentials("--provider alidns")
        return cls(alidns.Alidns(credentials, endpoint), args.dns_resolver, args.ttl or cls.DEFAULT_TTL)

    def publish(self, records: list[TxtRecord]) -> None:
        self._tried = set() if self._tried is None else self._tried
        # Every zone is found before the first change: a name in no zone changes nothing.
        placed = [(record, *self.client.locate(record.name)) for record in records]
        for record, zone, rr in placed:
            self._tried.add(record)  # before the call: a timeout may still have created the record
            try:
                record_id = self.client.add_domain_record(zone, rr, record.value, self.ttl)
                log.debug("  %s: added %s TXT %s (RecordId %s)", zone, rr, record.value, bounded(record_id))
            except alidns.AlidnsError as exc:
                if exc.code != "DomainRecordDuplicate":
                    raise
                # The value is unique to this challenge, so the record is ours: an earlier attempt made it.
                record_id = next((r["RecordId"] for r in self.client.txt_records(zone, rr, record.name)
                                  if r["Value"] == record.value), None)
                log.info("  %s TXT %s was already there (RecordId %s)", record.name, record.value, bounded(record_id))
            if record_id:
                self._ids[record] = record_id

    def remove(self, records: list[TxtRecord]) -> None:
        by_name: dict[str, list[TxtRecord]] = defaultdict(list)
        for record in dict.fromkeys(records):
            # After a publish, only what it sent can be there; a fresh object (a later run) looks at every record.
            if self._tried is None or record in self._tried:
                by_name[record.name].append(record)
        failures: list[AcmeError] = []
        for name, at_name in by_name.items():  # one failing name must not leave the others behind
            try:
                self._remove_at(name, at_name)
            except AcmeError as exc:
                failures.append(exc)
        if failures:
            raise failures[0]

    def _remove_at(self, name: str, records: list[TxtRecord]) -> None:
        """Delete, among the TXT records at ``name``, exactly those that are ``records``."""
        place = self.client.find(name)
        if place is None:
            return  # in no zone of the account, so never published (publish found no zone either)
        domain, rr = place
        try:
            present = self.client.txt_records(domain, rr, name)
        except alidns.AlidnsError as exc:
            if exc.code == "InvalidDomainName.NoExist":
                return  # the zone is gone, and its records with it
            raise
        for record in records:
            known = self._ids.get(record)
            for entry in present:
                # By RecordId when this object added it; by exact value for an earlier run's.
                if entry["Value"] == record.value and known in (None, entry["RecordId"]):
                    self.client.delete_domain_record(entry["RecordId"], f"{rr} TXT {record.value} in {domain}")
                    log.debug("  %s: deleted %s TXT %s (RecordId %s)", domain, rr, record.value,
                              bounded(entry["RecordId"]))
            self._ids.pop(record, None)
