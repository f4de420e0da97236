"""Listening for the CA's validation connections (http-01 on port 80, tls-alpn-01 on port 443).

What the http-01 standalone server (:mod:`common.http01`) and the tls-alpn-01 server
(:mod:`common.tls_alpn`) share: the socket address ``--bind`` names (every address by
default, IPv6 and IPv4 on one socket), how to write an address with a port, and a client's
address as people know it.
"""

from __future__ import annotations

import ipaddress
import socket
from types import TracebackType
from typing import TypeVar

from .errors import UsageError, despite_interrupts


def listen_address(address: str | None, port: int) -> tuple[int, tuple, bool]:
    """(address family, socket address, dual stack?) for ``--bind address`` (None: every address)."""
    if not address:
        if socket.has_dualstack_ipv6():
            return socket.AF_INET6, ("::", port), True
        return socket.AF_INET, ("0.0.0.0", port), False
    try:
        found = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise UsageError(f"--bind {address}: not an address of this machine ({exc})") from None
    family, _, _, _, sockaddr = found[0]
    return family, sockaddr, False


def where(address: str | None, port: int) -> str:
    """'port 80 (every address)', '127.0.0.1:5002' or '[::1]:5002', for log lines and errors."""
    if not address:
        return f"port {port} (every address)"
    return f"{url_host(address)}:{port}"


def url_host(host: str) -> str:
    """A host as a URL (or ``host:port``) writes it: an IPv6 address in brackets (RFC 3986 §3.2.2)."""
    return f"[{host}]" if ":" in host else host


def client_address(address: str) -> str:
    """127.0.0.1 rather than ::ffff:127.0.0.1, as a dual-stack socket reports IPv4 clients."""
    try:
        mapped = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return address
    return str(mapped.ipv4_mapped) if getattr(mapped, "ipv4_mapped", None) else address


_S = TypeVar("_S", bound="Server")


class Server:
    """What the http-01 and tls-alpn-01 servers share: where they listen, and that leaving a
    ``with`` block stops them, even when Ctrl-C or SIGTERM arrives meanwhile."""

    address: str | None
    port: int

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    @property
    def where(self) -> str:
        return where(self.address, self.port)

    def __enter__(self: _S) -> _S:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        despite_interrupts(self.stop)
