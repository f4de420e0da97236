"""Identifier validation (RFC 8555 §7.5, §8): the bookkeeping around step 06's requests.

Step 06 makes the requests itself: it fetches each authorization of the order
(``rfc8555.get_authorization``), answers the chosen challenge of the pending ones
(``rfc8555.answer_challenge``) and polls the order until it is ready
(``rfc8555.wait_for_order``). What it does with their answers lives here: which
authorizations still need proving, and whether they are for a name of the order; which
challenges this work dir answered (noted in order.json); a challenge the CA already calls
invalid; and, when the order does not turn ready, where each authorization stands. How a
challenge is met (a TXT record, a file on a web server) is each step's own business.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from . import resources, rfc8555
from .errors import AcmeError, StepTimeoutError, UsageError
from .transport import Client
from .workdir import ORDER, WorkDir

log = logging.getLogger("acme")

# After the step's --timeout, this much longer to fetch the authorizations that explain why.
EXPLAIN_GRACE = 30.0


@dataclass
class Task:
    """One name (or IP address) still to prove: its authorization and the challenge picked for it."""

    label: str  # the name as the order lists it: *.example.com for a wildcard's authorization
    authz: dict[str, Any]
    challenge: dict[str, Any]

    @property
    def domain(self) -> str:
        """The name (or address) the challenge is about: example.com for *.example.com (§7.1.3 ``wildcard``)."""
        return str(self.authz["identifier"]["value"])


def already_proven(saved: dict[str, Any]) -> bool:
    """True, saying what comes next, when order.json's order needs no more proving."""
    status = saved["order"]["status"]
    if status in ("ready", "valid"):
        log.info("Order is already %s. Next: %s", status,
                 "07_finalize.py" if status == "ready" else "08_get_certificate.py")
    return status in ("ready", "valid")


def to_prove(saved: dict[str, Any], url: str, authz: dict[str, Any], challenge_type: str) -> Task | None:
    """What to do about one fetched authorization, said in one line: prove it (a Task), or nothing (None).

    Every authorization must be for a name of the order: a CA that slips in another name
    must not get a record published for it or a name reported as proven. A valid one needs
    nothing (CAs reuse recent authorizations); one that is neither valid nor pending ends
    the order.
    """
    ordered = {ident["value"] for ident in saved["order"]["identifiers"]}
    label = resources.identifier_label(authz)
    wanted = {rfc8555.canonical_identifier(ident) for ident in saved["order"]["identifiers"]}
    if rfc8555.canonical_identifier({**authz["identifier"], "value": label}) not in wanted:
        raise AcmeError(f"the CA's authorization {url} is for {label}, which this order does not name "
                        f"({', '.join(sorted(ordered))}): refusing to prove it")
    if authz["status"] == "valid":
        mine = any(c["url"] in saved.get("answered", []) for c in authz["challenges"])
        log.info("  %s: already valid (%s)", label,
                 "proven by an earlier run of this step" if mine else "the CA reused an earlier authorization")
        return None
    if authz["status"] != "pending":
        raise AcmeError(f"the authorization for {label} is {authz['status']}: run 05_new_order.py for a new order")
    challenge = rfc8555.find_challenge(authz, challenge_type)
    log.info("  %s: pending, to prove with %s", label, challenge_type)
    return Task(label, authz, challenge)


def refuse_wildcards(saved: dict[str, Any], challenge_type: str, why: str) -> None:
    """A UsageError naming order.json's wildcards (*.example.com), if any: only a DNS challenge proves them."""
    wildcards = [i["value"] for i in saved["order"]["identifiers"] if i["value"].startswith("*.")]
    if wildcards:
        raise UsageError(f"{challenge_type} cannot prove a wildcard ({', '.join(wildcards)}): {why}. "
                         "Use 06_dns_challenge.py for this order")


def addresses(saved: dict[str, Any]) -> list[str]:
    """The IP addresses of order.json's order (RFC 8738): DNS cannot prove them (§7)."""
    return [i["value"] for i in saved["order"]["identifiers"] if i["type"] == "ip"]


def note_answered(work: WorkDir, saved: dict[str, Any], tasks: list[Task]) -> None:
    """Note in order.json the challenges about to be answered, before answering them.

    A later run then tells this order's own valid authorizations from ones the CA reused.
    """
    if tasks:
        saved["answered"] = saved.get("answered", []) + [task.challenge["url"] for task in tasks]
        work.write_json(ORDER, saved)


def check_answer(task: Task, challenge: dict[str, Any]) -> None:
    """Stop at once if the CA already calls the answered challenge invalid (§7.5.1), with its error:
    waiting for the order would only end in a timeout."""
    if challenge["status"] == "invalid":
        raise AcmeError(f"the CA says the {challenge['type']} challenge for {task.label} is invalid",
                        challenge.get("error"))


@contextmanager
def explaining_timeouts(client: Client, saved: dict[str, Any]) -> Iterator[None]:
    """Turn the step's timeout while polling the order into an error saying where each authorization stands.

    Some CAs leave an order ``pending`` after a failed challenge, or put the challenge back to
    ``pending`` without an error: only the authorizations themselves tell what happened.
    """
    try:
        yield
    except StepTimeoutError as exc:
        client.allow_more(EXPLAIN_GRACE)
        raise AcmeError(str(exc), {"type": "about:blank", "detail": "where each authorization stands",
                                   "subproblems": rfc8555.failed_authorizations(client, saved["order"])}) from None


def finish(client: Client, work: WorkDir, saved: dict[str, Any], order: dict[str, Any]) -> None:
    """Save the order; one that is not ready says why, name by name (§7.1.6)."""
    work.write_json(ORDER, {**saved, "order": order})
    if order["status"] not in ("ready", "valid"):
        raise rfc8555.order_failure(client, order)
    log.info("Order is %s: every name is proven. Next: 07_finalize.py", order["status"])
