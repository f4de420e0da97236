"""Where dns-01 TXT records get published (RFC 8555 §8.4).

A provider publishes every record of an order at once and removes them all afterwards,
because DNS changes are slow to propagate: one wait for n names, not n waits. To add one
(Alibaba Cloud DNS, RFC 2136, an exec hook), subclass :class:`DnsProvider`, give it a
``name``, its own options, and decorate it with :func:`register`.
"""

from __future__ import annotations

import argparse
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import requests

from . import servers
from .errors import AcmeError, UsageError

DEFAULT_CHALLTESTSRV = "http://localhost:8055"
log = logging.getLogger("acme")


@dataclass(frozen=True)
class TxtRecord:
    """One TXT record: ``name`` is fully qualified without the trailing dot."""

    name: str
    value: str


class DnsProvider(ABC):
    """Publishes and removes the TXT records that answer dns-01 challenges."""

    name: ClassVar[str]
    help: ClassVar[str]

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
        """Delete the records again; called on failure too, so it must tolerate partial publishes."""

    def wait_until_visible(self, records: list[TxtRecord], timeout: float) -> None:
        """Return once the CA's resolvers can see every record (a propagation check).

        Providers whose changes are visible at once keep this default; providers behind
        authoritative servers that update lazily override it to query those servers.
        """
        return None


def remove_quietly(provider: DnsProvider, records: list[TxtRecord]) -> None:
    """Remove the records, warning instead of raising: cleanup must not hide the error before it."""
    try:
        provider.remove(records)
    except AcmeError as exc:
        log.warning("warning: could not remove the TXT records: %s", exc)


PROVIDERS: dict[str, type[DnsProvider]] = {}


def register(cls: type[DnsProvider]) -> type[DnsProvider]:
    PROVIDERS[cls.name] = cls
    return cls


def default_challtestsrv_url() -> str:
    """The local test CA's challtestsrv if it is set up, else challtestsrv's usual port."""
    try:
        return servers.local_ca_state()["challtestsrv_url"]
    except UsageError:
        return DEFAULT_CHALLTESTSRV


@register
class ChalltestsrvProvider(DnsProvider):
    """Pebble's mock DNS server, for the local test CA: records go in over its HTTP API."""

    name = "challtestsrv"
    help = "the local test CA's mock DNS (pebble-challtestsrv)"

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url.rstrip("/")

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--challtestsrv-url", metavar="URL",
                            help=f"challtestsrv's management API (default: the local test CA's, else "
                                 f"{DEFAULT_CHALLTESTSRV})")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DnsProvider:
        return cls(args.challtestsrv_url or default_challtestsrv_url())

    def _call(self, path: str, body: dict[str, str]) -> None:
        url = f"{self.api_url}/{path}"
        try:
            resp = requests.post(url, json=body, timeout=10)
        except requests.RequestException as exc:
            raise AcmeError(f"cannot reach challtestsrv at {url} ({type(exc).__name__}): "
                            "is the local test CA running?") from None
        if resp.status_code != 200:
            raise AcmeError(f"challtestsrv refused {path}: HTTP {resp.status_code} {resp.text.strip()}")

    def publish(self, records: list[TxtRecord]) -> None:
        # A second value for the same host is added, not replaced: what wildcard + apex need.
        for record in records:
            self._call("set-txt", {"host": record.name + ".", "value": record.value})

    def remove(self, records: list[TxtRecord]) -> None:
        for name in dict.fromkeys(r.name for r in records):
            self._call("clear-txt", {"host": name + "."})


@register
class ManualProvider(DnsProvider):
    """You create the records in your DNS provider's console; the step waits for Enter."""

    name = "manual"
    help = "print the records, wait while you create them by hand"

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DnsProvider:
        return cls()

    def publish(self, records: list[TxtRecord]) -> None:
        print("Create these DNS TXT records (one name may hold several values; keep them all):")
        for record in records:
            print(f"  {record.name}.  TXT  \"{record.value}\"")
        try:
            input("Press Enter once they are published... ")
        except EOFError:
            raise UsageError("the manual provider waits for Enter: run 06_dns_challenge.py in a terminal") from None

    def remove(self, records: list[TxtRecord]) -> None:
        print("You can now delete these TXT records:")
        for record in records:
            print(f"  {record.name}.  TXT  \"{record.value}\"")
