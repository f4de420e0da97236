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

from . import certs, resources, rfc8555
from .errors import AcmeError, UsageError
from .transport import Client
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


def decide(client: Client, work: WorkDir, cert: x509.Certificate, now: datetime.datetime | None = None) -> Decision:
    """The renewal decision for ``cert``: the saved one while it stands, else a new one, saved."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    saved = _saved(work, cert)
    if not client.directory.get("renewalInfo"):
        decision = saved if saved and saved.source == "lifetime" else lifetime_decision(cert)
    elif saved and saved.source == "ari" and saved.ask_again_after and now < _time(saved.ask_again_after):
        log.info("Asked the CA already; asking again after %s (its Retry-After)", saved.ask_again_after)
        return saved
    else:
        decision = ari_decision(client, cert, saved, now)
    work.write_json(RENEWAL, asdict(decision))
    return decision


def ari_decision(client: Client, cert: x509.Certificate, saved: Decision | None,
                 now: datetime.datetime) -> Decision:
    """Ask the CA (RFC 9773 §4.2) and pick a time in its window: the same one as before if the
    window has not moved, else a new one, uniformly at random."""
    cert_id = certs.ari_cert_id(cert)
    log.info("Asking the CA for the renewal window of %s...", cert_id)
    try:
        info, retry_after = rfc8555.renewal_info(client, cert_id)
    except AcmeError as exc:
        if exc.status != 404:
            raise
        log.warning("warning: the CA has no renewal information for this certificate; going by its lifetime")
        return lifetime_decision(cert)
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


def _saved(work: WorkDir, cert: x509.Certificate) -> Decision | None:
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


def _time(text: str) -> datetime.datetime:
    value = resources.rfc3339(text)
    if value is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    return value


def _text(when: datetime.datetime) -> str:
    return when.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def describe(decision: Decision, now: datetime.datetime) -> list[str]:
    """What to tell the user, one line each."""
    lines = []
    if decision.source == "ari":
        lines.append(f"The CA suggests renewing between {decision.window_start} and {decision.window_end}")
        if decision.explanation_url:
            lines.append(f"  why: {decision.explanation_url}")
    else:
        lines.append("The CA offers no renewal information (ARI): going by the certificate's lifetime")
    state = "due now" if decision.due(now) else "not due yet"
    lines.append(f"Renewal time chosen: {decision.renew_at} ({state})")
    return lines
