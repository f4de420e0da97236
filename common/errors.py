"""The ways a step can end early, mapped to exit statuses by :mod:`common.cli`."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from typing import Any

# RFC 8555 §6.7: every ACME problem type is this prefix and a name.
ACME_ERROR_PREFIX = "urn:ietf:params:acme:error:"

# What to do about the problem types a step's user can fix (RFC 8555 §6.7).
HINTS = {
    "accountDoesNotExist": "the CA does not know this account key (a restarted test CA?): run 04_new_account.py",
    "orderNotReady": "the order is not ready: prove the names first (06_dns_challenge.py, 06_http_challenge.py or "
                     "06_tls_alpn_challenge.py), "
                     "or run 05_new_order.py for a new order",
    "badCSR": "the CSR does not match the order: run 03_create_csr.py and 05_new_order.py again",
    "rateLimited": "wait as the detail says; test against staging, whose limits are higher",
    "userActionRequired": "the CA needs you to do something, e.g. accept new terms: see the detail",
}

# What an account closed with step 14 leaves a user to do.
AFTER_DEACTIVATION = ("for a new account run 01_create_account_key.py --force, then 04_new_account.py --agree-tos; "
                      "its certificates can still be revoked with their own keys: 12_revoke_certificate.py "
                      "--with-cert-key")

# A CA's detail is for people, but a hostile one could send a megabyte; show this much of each field.
MAX_FIELD = 500
MAX_SUBPROBLEMS = 50


class UsageError(Exception):
    """Bad input or a missing earlier step: exit status 2, one line saying what to do."""


class AcmeError(Exception):
    """The CA or the network said no: exit status 1.

    ``problem`` is the RFC 7807 problem document the CA sent (RFC 8555 §6.7), if any; it is
    shown as sent, whatever its shape, since a broken CA is exactly when the user needs it.
    ``status`` and ``retry_after`` come from the HTTP response, when there was one.
    """

    def __init__(self, message: str, problem: Any = None, *, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.problem: dict[str, Any] = problem if isinstance(problem, dict) else {}
        self.status = status
        self.retry_after = retry_after

    @property
    def type(self) -> str:
        return bounded(self.problem.get("type", ""))

    def is_type(self, name: str) -> bool:
        """Whether the CA sent the ACME problem type ``name``, e.g. ``"badNonce"`` (RFC 8555 §6.7).

        Only the ACME namespace counts: a CA's own ``urn:example:badNonce`` is another problem.
        """
        return self.type == ACME_ERROR_PREFIX + name

    def deactivated(self) -> bool:
        """The CA's answer to a request from a deactivated account: 403 unauthorized, saying so (§7.3.6).

        Pebble says "Account has been deactivated", Boulder 'Account is not valid, has status "deactivated"'.
        """
        detail = str(self.problem.get("detail", "")).lower()
        return self.status == 403 and self.is_type("unauthorized") and "deactivated" in detail

    def hint(self) -> str | None:
        """What the user can do about this problem, when there is something."""
        if self.deactivated():
            return f"this account is deactivated, for good: {AFTER_DEACTIVATION}"
        return HINTS.get(self.type.removeprefix(ACME_ERROR_PREFIX))

    def lines(self) -> list[str]:
        """The message, the problem type and detail, then each subproblem (§6.7.1)."""
        out = [str(self)]
        if self.problem.get("type") or self.problem.get("detail"):
            out.append(f"  {bounded(self.problem.get('type') or 'about:blank')}: {bounded(self.problem.get('detail'))}")
        hint = self.hint()
        if hint:
            out.append(f"  ({hint})")
        subproblems = self.problem.get("subproblems")
        if isinstance(subproblems, list):
            out += [f"    {_subproblem(sub)}" for sub in subproblems[:MAX_SUBPROBLEMS]]
            if len(subproblems) > MAX_SUBPROBLEMS:
                out.append(f"    ... and {len(subproblems) - MAX_SUBPROBLEMS} more")
        elif subproblems is not None:
            out.append(f"    (subproblems that are not a list: {bounded(subproblems)})")
        return out


class StepTimeoutError(AcmeError):
    """The step's --timeout ran out while waiting for the CA."""


class Interrupted(BaseException):
    """SIGTERM or SIGHUP, raised like KeyboardInterrupt so every ``finally`` cleans up (exit 128+N)."""

    def __init__(self, signum: int, name: str) -> None:
        super().__init__(name)
        self.signum = signum


def despite_interrupts(cleanup: Callable[[], None]) -> None:
    """Run ``cleanup`` to the end even if Ctrl-C or a signal arrives meanwhile, then re-raise that.

    ``cleanup`` must be safe to run again: it is restarted after each interruption.
    """
    pending: BaseException | None = None
    while True:
        try:
            cleanup()
            break
        except (KeyboardInterrupt, Interrupted) as exc:
            pending = exc
    if pending is not None:
        raise pending


def _subproblem(sub: Any) -> str:
    """'dns:example.com: urn:...:dns: detail' for a well-formed subproblem, the raw text otherwise."""
    if not isinstance(sub, dict):
        return bounded(sub)
    ident = sub.get("identifier")
    if isinstance(ident, dict):
        who = f"{bounded(ident.get('type', '?'))}:{bounded(ident.get('value', '?'))}"
    else:
        who = bounded(ident) if ident else "-"
    return f"{who}: {bounded(sub.get('type', ''))}: {bounded(sub.get('detail', ''))}"


def bounded(value: Any, limit: int = MAX_FIELD) -> str:
    """Any JSON value from outside (a CA, a cloud API) as bounded, printable text: what may be shown or stored."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return printable(text[:limit] + ("..." if len(text) > limit else ""))



def printable(text: str) -> str:
    """``text`` with control characters escaped, so a CA's string cannot break lines or drive the terminal.

    Newlines, ESC and the other C0/C1 controls, Unicode line separators and bidi overrides
    become ``\\n``, ``\\x1b``, ``\\u2028`` ...; everything else is left as it is.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else _escape(c) for c in text)


def _escape(c: str) -> str:
    if unicodedata.category(c) == "Zs":  # a no-break or other space: harmless
        return c
    return c.encode("unicode_escape").decode("ascii")
