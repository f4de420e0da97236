"""When to renew: the CA's suggestion (ARI, RFC 9773), else the certificate's own lifetime.

A fixed rule such as "30 days before expiry" breaks as lifetimes shrink (90 days, 45, 6) and
sends every client to the CA at the same moment. ARI lets the CA say when: it answers a
window, and each client picks a random time inside it (§4.2), which spreads the load and lets
the CA pull renewals forward (a revoked certificate gets a window in the past). The choice is
kept in renewal.json, so runs from cron agree with each other and the CA is asked again only
once its Retry-After has passed.
"""

from __future__ import annotations

import datetime
import logging
import math
import random
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509

from . import certs, resources
from .errors import UsageError, bounded
from .workdir import RENEWAL, WorkDir, timestamp

log = logging.getLogger("acme")

# RFC 9773 §4.3: honour Retry-After, but ask at least daily and not more than once a minute.
MIN_RECHECK = datetime.timedelta(minutes=1)
MAX_RECHECK = datetime.timedelta(days=1)
DEFAULT_RECHECK = datetime.timedelta(hours=6)
SHORT_LIVED = datetime.timedelta(days=10)
# How far a window may lie outside the certificate's lifetime (clock skew, a CA's rounding). A window
# before notBefore is how a CA asks for a revoked or mis-issued certificate to be replaced now (§4.2:
# "in the past"; Pebble answers one an hour ago); one much earlier, or one that ends after the
# certificate has expired, is about another certificate or from a broken CA: no answer at all.
SLACK = datetime.timedelta(days=1)
# The explanationURL is a page for people: a link of ordinary length, printed and saved as it is.
MAX_URL = 2000


class UnusableWindowError(ValueError):
    """A renewalInfo answer whose window cannot be used: the lifetime rule decides instead."""


@dataclass
class Decision:
    """What renewal.json holds for one certificate."""

    certificate: str  # SHA-256 fingerprint of the certificate decided about
    source: str  # "ari" or "lifetime"
    renew_at: str  # RFC 3339
    window_start: str | None = None
    window_end: str | None = None
    explanation_url: str | None = None
    ask_again_after: str | None = None  # not before this time (the CA's Retry-After)

    def due(self, now: datetime.datetime) -> bool:
        return now >= _time(self.renew_at)


def saved_decision(work: WorkDir, cert: x509.Certificate) -> Decision | None:
    """renewal.json's decision if it is about this certificate and well formed; else None (decide anew)."""
    if not work.exists(RENEWAL):
        return None
    try:
        data: Any = work.read_json(RENEWAL)
        decision = Decision(**data)
        _time(decision.renew_at)
        for value in (decision.window_start, decision.window_end, decision.ask_again_after):
            if value is not None:
                _time(value)  # every time in it must read back: a damaged one means deciding again
        if not isinstance(decision.certificate, str) or decision.source not in ("ari", "lifetime"):
            raise ValueError("not a decision this step wrote")
        if decision.explanation_url is not None and not _sane_url(decision.explanation_url):
            decision.explanation_url = None  # saved by an older version that kept whatever the CA sent
    except (UsageError, TypeError, ValueError) as exc:  # damaged: only a lost decision, made again
        log.debug("  ignoring renewal.json: %s", exc)
        return None
    return decision if decision.certificate == certs.fingerprint(cert) else None


def asked_recently(saved: Decision | None, now: datetime.datetime) -> bool:
    """True while the CA's Retry-After from the last renewalInfo answer has not passed (RFC 9773 §4.3).

    A saved time further ahead than the longest wait (a file edited by hand) does not count: ask.
    """
    if not (saved and saved.source == "ari" and saved.ask_again_after):
        return False
    return now < _time(saved.ask_again_after) <= now + MAX_RECHECK


def ari_decision(cert: x509.Certificate, info: dict[str, Any], retry_after: float | None, saved: Decision | None,
                 now: datetime.datetime) -> Decision:
    """A time in the window of the CA's renewalInfo answer (RFC 9773 §4.2): the same one as before if
    the window has not moved, else a new one, uniformly at random; and when to ask again.

    Raises UnusableWindowError, saying why, for a window that ends before it starts, lies far outside the
    certificate's lifetime or cannot be written down: nothing of such an answer is kept.
    """
    window = info["suggestedWindow"]
    start, end = _window_time(window["start"], "start"), _window_time(window["end"], "end")
    if end < start:
        raise UnusableWindowError(f"the CA's renewal window ends ({_text(end)}) before it starts ({_text(start)})")
    if end > cert.not_valid_after_utc + SLACK:
        raise UnusableWindowError(f"the CA's renewal window ends {_text(end)}, after the certificate has expired "
                          f"({_text(cert.not_valid_after_utc)})")
    if start < cert.not_valid_before_utc - SLACK:
        raise UnusableWindowError(f"the CA's renewal window starts {_text(start)}, long before the certificate was "
                          f"issued ({_text(cert.not_valid_before_utc)})")
    if saved and saved.window_start == _text(start) and saved.window_end == _text(end):
        renew_at = _time(saved.renew_at)
    else:
        renew_at = start + (end - start) * random.random()  # §4.2: uniform in the window
    return Decision(certs.fingerprint(cert), "ari", _text(renew_at), _text(start), _text(end),
                    explanation_url(info.get("explanationURL")), _text(now + _recheck(retry_after)))


def _sane_url(value: Any) -> bool:
    return (isinstance(value, str) and len(value) <= MAX_URL and value.isprintable() and " " not in value
            and urlsplit(value).scheme == "https" and bool(urlsplit(value).hostname))


def _window_time(value: str, what: str) -> datetime.datetime:
    """A suggestedWindow time as UTC, if it can be written down again (resources.renewal_info parsed it)."""
    when = resources.rfc3339(value)
    assert when is not None
    try:
        timestamp(when)
    except ValueError:
        raise UnusableWindowError(f"the CA's renewal window {what} {bounded(value, 40)} is not a time that can be "
                          "used") from None
    return when.astimezone(datetime.timezone.utc)


def _recheck(retry_after: float | None) -> datetime.timedelta:
    """How long until the CA is asked again: its Retry-After, kept between a minute and a day (§4.3)."""
    if retry_after is None or not math.isfinite(retry_after):
        return DEFAULT_RECHECK
    return min(max(datetime.timedelta(seconds=min(retry_after, MAX_RECHECK.total_seconds())), MIN_RECHECK),
               MAX_RECHECK)


def explanation_url(value: Any) -> str | None:
    """The CA's explanationURL if it is an https link of ordinary length, printable; None (and one
    line saying so) otherwise: it is printed and saved, so a megabyte of it must not be."""
    if value is None:
        return None
    if _sane_url(value):
        return value
    log.warning("warning: dropped the CA's explanationURL, which is not an https link of at most %d "
                "characters: %s", MAX_URL, bounded(value, 80))
    return None


def lifetime_decision(cert: x509.Certificate) -> Decision:
    """Without ARI: renew when a third of the lifetime is left, half for certificates under 10 days."""
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    lifetime = end - start
    left = lifetime / 2 if lifetime < SHORT_LIVED else lifetime / 3
    return Decision(certs.fingerprint(cert), "lifetime", _text(end - left))


def forget(work: WorkDir) -> None:
    """Drop the saved decision: a revoked certificate must be replaced now, not when it was planned."""
    work.path(RENEWAL).unlink(missing_ok=True)


def save(work: WorkDir, decision: Decision) -> None:
    """Keep the decision in renewal.json, so later runs (from cron) agree with this one."""
    work.write_json(RENEWAL, asdict(decision))


def _time(text: str) -> datetime.datetime:
    value = resources.rfc3339(text)
    if value is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    return value


def _text(when: datetime.datetime) -> str:
    return timestamp(when)
