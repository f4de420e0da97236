"""The two ways a step can fail, mapped to exit statuses by :mod:`common.cli`."""

from __future__ import annotations

from typing import Any

# What to do about the problem types a step's user can fix (RFC 8555 §6.7).
HINTS = {
    "accountDoesNotExist": "the CA does not know this account key (a restarted test CA?): run 04_new_account.py",
    "orderNotReady": "the order is not ready: run 06_dns_challenge.py first, or 05_new_order.py for a new order",
    "badCSR": "the CSR does not match the order: run 03_create_csr.py and 05_new_order.py again",
    "rateLimited": "wait as the detail says; test against staging, whose limits are higher",
    "userActionRequired": "the CA needs you to do something, e.g. accept new terms: see the detail",
}


class UsageError(Exception):
    """Bad input or a missing earlier step: exit status 2, one line saying what to do."""


class AcmeError(Exception):
    """The CA or the network said no: exit status 1.

    ``problem`` is the RFC 7807 problem document the CA sent (RFC 8555 §6.7), if any.
    """

    def __init__(self, message: str, problem: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.problem = problem or {}

    @property
    def type(self) -> str:
        return str(self.problem.get("type", ""))

    def lines(self) -> list[str]:
        """The message, the problem type and detail, then each subproblem (§6.7.1)."""
        out = [str(self)]
        if self.problem.get("type") or self.problem.get("detail"):
            out.append(f"  {self.problem.get('type', 'about:blank')}: {self.problem.get('detail', '')}")
        hint = HINTS.get(self.type.rsplit(":", 1)[-1])
        if hint:
            out.append(f"  ({hint})")
        for sub in self.problem.get("subproblems", []) or []:
            ident = sub.get("identifier") or {}
            who = f"{ident.get('type', '?')}:{ident.get('value', '?')}" if ident else "-"
            out.append(f"    {who}: {sub.get('type', '')}: {sub.get('detail', '')}")
        return out
