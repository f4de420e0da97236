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
import random
from dataclasses import asdict, dataclass
from typing import Any

from cryptography import x509

from . import certs, resources
from .errors import UsageError
from .workdir import RENEWAL, WorkDir

log = logging.getLogger("acme")

# RFC 9773 §4.3: honour Retry-After, but ask at least daily and not more than once a minute.
MIN_RECHECK = datetime.timedelta(minutes=1)
MAX_RECHECK = datetime.timedelta(days=1)
DEFAULT_RECHECK = datetime.timedelta(hours=6)
SHORT_LIVED = datetime.timedelta(days=10)


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
    except (UsageError, TypeError, ValueError) as exc:  # damaged: only a lost decision, made again
        log.debug("  ignoring renewal.json: %s", exc)
        return None
    return decision if decision.certificate == certs.fingerprint(cert) else None


def asked_recently(saved: Decision | None, now: datetime.datetime) -> bool:
    """True while the CA's Retry-After from the last renewalInfo answer has not passed (RFC 9773 §4.3)."""
    return bool(saved and saved.source == "ari" and saved.ask_again_after and now < _time(saved.ask_again_after))


def ari_decision(cert: x509.Certificate, info: dict[str, Any], retry_after: float | None, saved: Decision | None,
                 now: datetime.datetime) -> Decision:
    """A time in the window of the CA's renewalInfo answer (RFC 9773 §4.2): the same one as before if
    the window has not moved, else a new one, uniformly at random; and when to ask again."""
    window = info["suggestedWindow"]
    start, end = resources.rfc3339(window["start"]), resources.rfc3339(window["end"])
    assert start is not None and end is not None  # resources.renewal_info checked them
    if saved and saved.window_start == _text(start) and saved.window_end == _text(end):
        renew_at = _time(saved.renew_at)
    else:
        renew_at = start + (end - start) * random.random()  # §4.2: uniform in the window
    recheck = datetime.timedelta(seconds=retry_after) if retry_after is not None else DEFAULT_RECHECK
    recheck = min(max(recheck, MIN_RECHECK), MAX_RECHECK)
    return Decision(certs.fingerprint(cert), "ari", _text(renew_at), _text(start), _text(end),
                    info.get("explanationURL"), _text(now + recheck))


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
    return when.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
