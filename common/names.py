"""Domain names and IP addresses: as a CA will accept them (lowercase A-labels, wildcards only at
the left; addresses in canonical text, RFC 8738 §3), as a client may connect to them (host
names), and back to the Unicode people write."""

from __future__ import annotations

import ipaddress
import re

import idna

from .errors import UsageError

LETSENCRYPT_MAX_NAMES = 100
MAX_NAME_LENGTH = 253  # characters in a name without its trailing dot (RFC 1035 §2.3.4)

# Letters, digits and hyphens (LDH), 1 to 63 characters, no hyphen at either end.
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def to_ascii(name: str) -> str:
    """A name's A-labels (IDNA 2008 with UTS #46 mapping, as browsers do): bücher.example -> xn--bcher-kva.example.

    idna.IDNAError if it cannot be one.
    """
    return idna.encode(name, uts46=True).decode("ascii")


def to_unicode(name: str) -> str:
    """A name's internationalized labels as people write them (xn--bcher-kva -> bücher); as it is if not valid."""
    try:
        return ".".join(idna.decode(label) if label.startswith("xn--") else label for label in name.split("."))
    except idna.IDNAError:
        return name


def _well_formed(name: str) -> bool:
    """Not too long, and every label LDH."""
    return len(name) <= MAX_NAME_LENGTH and all(_LABEL.match(label) for label in name.split("."))


def normalize_name(raw: str) -> str:
    """One name as the CA will see it, or UsageError saying what is wrong with it.

    IDNs become A-labels (IDNA 2008 with UTS #46 mapping, as browsers do), so
    ``bücher.example`` is ``xn--bcher-kva.example``.
    """
    name = raw.strip().lower()
    name = name[:-1] if name.endswith(".") else name  # one trailing dot: the DNS root
    if not name:
        raise UsageError("an empty name was given: pass -d NAME with a domain such as example.com")
    wildcard = name.startswith("*.")
    base = name[2:] if wildcard else name
    if not base or "*" in base:
        raise UsageError(f"invalid name {raw!r}: a wildcard must be the whole leftmost label, as in *.example.com")
    if any(c in base for c in ":/@[]"):
        raise UsageError(f"invalid name {raw!r}: give a bare domain name such as example.com, no URL or port")
    if "_" in base:
        raise UsageError(f"invalid name {raw!r}: it holds an underscore, which host names in certificates cannot: "
                         "only letters, digits and hyphens (LDH, RFC 5280 §4.2.1.6 and the CA/B Forum rules)")
    try:
        base = to_ascii(base)
    except idna.IDNAError as exc:
        raise UsageError(f"invalid name {raw!r}: {_idna_problem(base, exc)}") from None
    labels = base.split(".")
    if len(labels) < 2:
        raise UsageError(f"invalid name {raw!r}: a public CA needs a full domain name such as example.com")
    if not _well_formed(base):
        raise UsageError(f"invalid name {raw!r}: use letters, digits and hyphens, labels of 1-63 characters")
    if labels[-1].isdigit():  # 192.0.2.1 is an IP address: dns identifiers cannot hold one (RFC 8738)
        raise UsageError(f"invalid name {raw!r}: an IP address is not a DNS name")
    return f"*.{base}" if wildcard else base


def ip_address(raw: str) -> str | None:
    """The canonical text of an IP address (RFC 8738 §3), or None when ``raw`` is not one; UsageError for
    an address no certificate can hold.

    IPv4 in dotted decimal; IPv6 in any textual form (brackets too), given back in RFC 5952's
    form: lower case, longest run of zeros as ``::`` (``2001:DB8:0:0::1`` -> ``2001:db8::1``).
    Refused: an IPv4-mapped IPv6 address (``::ffff:192.0.2.1``: clients connect to the IPv4
    address, and a certificate holding the IPv6 form would not match it), and a zone
    (``fe80::1%eth0``: it means something on this machine only).
    """
    text = raw.strip()
    text = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    ipv4 = re.fullmatch(r"[0-9.]+", text)
    ipv6 = text.count(":") >= 2 and re.fullmatch(r"[0-9A-Za-z:.]+(%.+)?", text)  # name:port has one colon
    if not (ipv4 or ipv6):
        return None  # a name (or nothing): example.com:443 is told apart by normalize_name
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        example = "192.0.2.10 (four numbers 0-255, no leading zeros)" if ipv4 else "2001:db8::1"
        raise UsageError(f"invalid address {raw!r}: not an IP address such as {example}") from None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            raise UsageError(f"invalid address {raw!r}: a zone (%{address.scope_id}) names an interface of this "
                             "machine only; a certificate holds the address without it")
        if address.ipv4_mapped is not None:
            raise UsageError(f"invalid address {raw!r}: an IPv4-mapped IPv6 address; give the IPv4 address "
                             f"{address.ipv4_mapped} itself, which is what clients connect to")
    return str(address)  # Python's text for an IPv6 address is RFC 5952's


def is_ip(value: str) -> bool:
    """True for an identifier value that is an IP address (as :func:`normalize_identifier` gives them)."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def identifier(value: str) -> dict[str, str]:
    """The ACME identifier for a normalized value: ``{"type": "ip", ...}`` for an address (RFC 8738 §3), else dns."""
    return {"type": "ip" if is_ip(value) else "dns", "value": value}


def normalize_identifier(raw: str) -> str:
    """A name (see :func:`normalize_name`) or an IP address in canonical text (see :func:`ip_address`)."""
    address = ip_address(raw)
    return address if address is not None else normalize_name(raw)


def host_name(raw: str, shown: str | None = None) -> str:
    """A DNS host name to connect to, as A-labels in lower case, or UsageError naming ``shown`` (else ``raw``).

    The same label rules as :func:`normalize_name`, but a single label (``localhost``) is fine here.
    """
    name = raw.strip().lower().removesuffix(".")
    try:
        name = to_ascii(name) if name else name
    except idna.IDNAError as exc:
        raise UsageError(f"{shown or raw!r} is not a valid host name: {exc}") from None
    if not name or not _well_formed(name):
        raise UsageError(f"{shown or raw!r} is not a valid host name: use letters, digits and hyphens")
    return name


def _idna_problem(name: str, exc: Exception) -> str:
    """The idna library's complaint in plain words: which character, and why it cannot be in a name."""
    match = re.search(r"Codepoint (U\+[0-9A-F]+)", str(exc))
    if match:
        char = chr(int(match.group(1)[2:], 16))
        shown = f"{char!r} ({match.group(1)})" if char.isprintable() else match.group(1)
        return f"the character {shown} cannot be part of a domain name, not even an internationalized one"
    if "Empty Label" in str(exc) or ".." in name:
        return "it has an empty label (two dots in a row)"
    return f"it is not a valid (internationalized) domain name ({exc})"


def describe_names(names: list[str], shown: int = 5) -> str:
    """'1 name: a.example' or '120 names: a, b, c, d, e and 115 more', for one-line logs.

    IP addresses among them are counted as such: '2 names and 1 address: ...'.
    """
    head = ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")
    return f"{describe_count(names)}: {head}"


def describe_count(values: list[str]) -> str:
    """'3 names', '1 address', '2 names and 1 address': what a list of identifier values holds."""
    addresses = sum(1 for v in values if is_ip(v))
    if not addresses:
        return count(len(values), "name")
    if addresses == len(values):
        return count(addresses, "address")
    return f"{count(len(values) - addresses, 'name')} and {count(addresses, 'address')}"


def count(n: int, noun: str) -> str:
    """'1 name', '2 names', '2 addresses'."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}{'es' if noun.endswith('s') else 's'}"


def normalize_names(raw_names: list[str]) -> list[str]:
    """Normalize every name (or IP address, RFC 8738) and drop repeats, keeping the order given."""
    names = list(dict.fromkeys(normalize_identifier(n) for n in raw_names))
    if not names:
        raise UsageError("give at least one name with -d NAME")
    return names


def contact_uri(email: str) -> str:
    """A ``mailto:`` contact for newAccount (RFC 8555 §7.3), after a basic syntax check.

    ASCII only, no URI extras (?subject=, several addresses): CAs reject those (§7.3).
    """
    email = email.strip().removeprefix("mailto:")
    if not re.fullmatch(r"[A-Za-z0-9.!#$%&'*+/=^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+", email):
        raise UsageError(f"invalid email address {email!r}: give one address per --email, like admin@example.com")
    return f"mailto:{email}"
