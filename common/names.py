"""Domain names as a CA will accept them: lowercase A-labels, wildcards only at the left."""

from __future__ import annotations

import re

import idna

from .errors import UsageError

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


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
    try:
        base = idna.encode(base, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise UsageError(f"invalid name {raw!r}: {exc}") from None
    labels = base.split(".")
    if len(labels) < 2:
        raise UsageError(f"invalid name {raw!r}: a public CA needs a full domain name such as example.com")
    if len(base) > 253 or not all(_LABEL.match(label) for label in labels):
        raise UsageError(f"invalid name {raw!r}: use letters, digits and hyphens, labels of 1-63 characters")
    return f"*.{base}" if wildcard else base


def normalize_names(raw_names: list[str]) -> list[str]:
    """Normalize every name and drop repeats, keeping the order given."""
    names = list(dict.fromkeys(normalize_name(n) for n in raw_names))
    if not names:
        raise UsageError("give at least one name with -d NAME")
    return names


def contact_uri(email: str) -> str:
    """A ``mailto:`` contact for newAccount (RFC 8555 §7.3), after a basic syntax check."""
    email = email.strip().removeprefix("mailto:")
    if not re.fullmatch(r"[^@\s,]+@[^@\s,]+\.[^@\s,]+", email):
        raise UsageError(f"invalid email address {email!r}: give one address per --email, like admin@example.com")
    return f"mailto:{email}"
