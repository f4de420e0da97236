"""Domain names: as a CA will accept them (lowercase A-labels, wildcards only at the left), as a
client may connect to them (host names), and back to the Unicode people write."""

from __future__ import annotations

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
    """'1 name: a.example' or '120 names: a, b, c, d, e and 115 more', for one-line logs."""
    head = ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")
    return f"{count(len(names), 'name')}: {head}"


def count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def normalize_names(raw_names: list[str]) -> list[str]:
    """Normalize every name and drop repeats, keeping the order given."""
    names = list(dict.fromkeys(normalize_name(n) for n in raw_names))
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
