"""Asking DNS before asking the CA: CNAME delegation, a name's zone and its servers, and
whether a record is visible on every one of them (dnspython does the wire format).

A recursive resolver caches, so it can say "no record" for minutes after the record exists,
or show an old value. The CA asks the zone's authoritative servers, so this module asks them
too, directly, each of them: only when every one serves every value is it worth answering
the challenges. A CA that looks too early fails the challenge, and a failed authorization
costs a new order.
"""

from __future__ import annotations

import ipaddress
import logging
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.nameserver
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver

from .errors import AcmeError, UsageError

log = logging.getLogger("acme")

QUERY_TIMEOUT = 3.0
LOOKUP_LIFETIME = 10.0
CHECK_INTERVAL = 2.0
MAX_CNAME_HOPS = 8


@dataclass(frozen=True)
class Server:
    """A DNS server to ask: an IP address and a port."""

    address: str
    port: int = 53

    def __str__(self) -> str:
        return f"{self.address}:{self.port}" if self.port != 53 else self.address


def parse_server(text: str, option: str) -> Server:
    """``ADDR``, ``ADDR:PORT`` or ``[V6ADDR]:PORT`` as given to --dns-resolver and the like."""
    host, port = text, "53"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") or "53"
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        ipaddress.ip_address(host)
        number = int(port)
        if not 0 < number < 65536:
            raise ValueError
    except ValueError:
        raise UsageError(f"{option} {text!r}: give an IP address, optionally with :PORT (e.g. 192.0.2.53:53)") from None
    return Server(host, number)


def resolver(servers: Iterable[Server] = ()) -> dns.resolver.Resolver:
    """A resolver asking ``servers``, or the system's (/etc/resolv.conf) when none are given."""
    chosen = list(servers)
    r = dns.resolver.Resolver(configure=not chosen)
    if chosen:
        r.nameservers = [dns.nameserver.Do53Nameserver(s.address, s.port) for s in chosen]
    r.lifetime = LOOKUP_LIFETIME
    return r


def follow_cname(name: str, via: dns.resolver.Resolver) -> str:
    """Where a CNAME chain starting at ``name`` ends (``name`` itself when there is none).

    A ``_acme-challenge`` CNAME delegates validation to another zone, the way to run dns-01
    with credentials for that zone only: the CA follows it, so the record must go at its end.
    """
    current = name
    for _ in range(MAX_CNAME_HOPS):
        try:
            answer = via.resolve(current, "CNAME", raise_on_no_answer=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoNameservers):
            return current
        except dns.exception.DNSException as exc:  # only a hint lost: the propagation check will tell
            log.warning("warning: could not check %s for a CNAME (%s); publishing there", current, _why(exc))
            return current
        if answer.rrset is None:
            return current
        current = answer.rrset[0].target.to_text(omit_final_dot=True)
    raise AcmeError(f"{name}: more than {MAX_CNAME_HOPS} CNAMEs in a row; is there a loop?")


def zone_of(name: str, via: dns.resolver.Resolver) -> str:
    """The zone ``name`` belongs to: the closest enclosing name with an SOA record (RFC 1034 §4.3.2)."""
    try:
        return dns.resolver.zone_for_name(name, resolver=via, lifetime=LOOKUP_LIFETIME).to_text(omit_final_dot=True)
    except dns.exception.DNSException as exc:
        raise AcmeError(f"cannot find the DNS zone of {name}: {_why(exc)}") from None


def primary_of(zone: str, via: dns.resolver.Resolver) -> Server:
    """The zone's primary server, from its SOA MNAME: where dynamic updates go (RFC 2136 §4)."""
    try:
        mname = via.resolve(zone, "SOA")[0].mname.to_text()
    except dns.exception.DNSException as exc:
        raise AcmeError(f"cannot look up the SOA of {zone}: {_why(exc)}") from None
    addresses = _addresses(mname, via)
    if not addresses:
        raise AcmeError(f"the primary server of {zone}, {mname}, has no address")
    return Server(addresses[0])


def authoritative_servers(zone: str, via: dns.resolver.Resolver) -> list[Server]:
    """Every name server of ``zone`` (its NS records), by address: the servers the CA may ask."""
    try:
        names = [ns.target.to_text() for ns in via.resolve(zone, "NS")]
    except dns.exception.DNSException as exc:
        raise AcmeError(f"cannot look up the name servers of {zone}: {_why(exc)}") from None
    servers = [Server(address) for name in names for address in _addresses(name, via)[:1]]
    if not servers:
        raise AcmeError(f"none of the name servers of {zone} ({', '.join(names)}) has an address")
    return servers


def _addresses(host: str, via: dns.resolver.Resolver) -> list[str]:
    """IPv4 addresses first (most networks reach them), IPv6 only when there is nothing else."""
    for rdtype in ("A", "AAAA"):
        try:
            found = [r.address for r in via.resolve(host, rdtype)]
        except dns.exception.DNSException:
            continue
        if found:
            return found
    return []


def txt_values(name: str, server: Server) -> set[str] | None:
    """The TXT values ``server`` itself serves for ``name`` (no recursion), or None if it did not answer."""
    query = dns.message.make_query(name, dns.rdatatype.TXT)
    query.flags &= ~dns.flags.RD  # ask the server what it holds, not what it can find out
    try:
        reply, _ = dns.query.udp_with_fallback(query, server.address, timeout=QUERY_TIMEOUT, port=server.port)
    except (dns.exception.DNSException, OSError):
        return None
    if reply.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        return None
    return {b"".join(rdata.strings).decode("utf-8", "replace")
            for rrset in reply.answer if rrset.rdtype == dns.rdatatype.TXT for rdata in rrset}


def wait_until_visible(expected: dict[str, set[str]], servers: dict[str, list[Server]], timeout: float) -> None:
    """Ask each name's servers until every one serves every expected value, for at most ``timeout`` s.

    ``expected`` maps a name to the TXT values it must hold (others may be there too);
    ``servers`` maps it to the servers to ask. Progress goes on one line.
    """
    started = time.monotonic()
    show = _progress_line()
    while True:
        missing = {name: [s for s in servers[name] if not values <= (txt_values(name, s) or set())]
                   for name, values in expected.items()}
        missing = {name: lacking for name, lacking in missing.items() if lacking}
        elapsed = time.monotonic() - started
        if not missing:
            show(f"DNS: every record is visible on every authoritative server ({elapsed:.0f} s)", done=True)
            return
        waiting = ", ".join(f"{name} (on {', '.join(map(str, lacking))})" for name, lacking in sorted(missing.items()))
        if elapsed + CHECK_INTERVAL > timeout:
            show("", done=True)
            raise AcmeError(f"gave up after {elapsed:.0f} s (--propagation-timeout {timeout:.0f}): not yet visible: "
                            f"{waiting}; check the records, or raise --propagation-timeout")
        show(f"DNS: waiting for {waiting}; {elapsed:.0f} s of {timeout:.0f} s")
        time.sleep(CHECK_INTERVAL)


def _progress_line() -> Callable[..., None]:
    """One line that updates in place on a terminal; a log line now and then elsewhere."""
    last: list[float] = [0.0]
    terminal = sys.stdout.isatty() and log.isEnabledFor(logging.INFO) and not log.isEnabledFor(logging.DEBUG)

    def show(text: str, done: bool = False) -> None:
        if terminal:
            sys.stdout.write("\r\033[K" + text + ("\n" if done and text else ""))
            sys.stdout.flush()
        elif text and (done or time.monotonic() - last[0] >= 10):
            last[0] = time.monotonic()
            log.info("%s", text)

    return show


def _why(exc: dns.exception.DNSException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
