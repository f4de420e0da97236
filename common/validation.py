"""Proving control of the order's names (RFC 8555 §7.5): what every challenge step shares.

Fetch the order's authorizations and keep the pending ones, answer their challenges, then wait
for the order to turn ``ready``. How a challenge is met (a TXT record, a file on a web server)
is the step's own business; the CA's side of it is the same for all of them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from . import resources, rfc8555
from .errors import AcmeError, StepTimeoutError
from .transport import Client
from .workdir import ORDER, WorkDir

log = logging.getLogger("acme")

# After the step's --timeout, this much longer to fetch the authorizations that explain why.
EXPLAIN_GRACE = 30.0


@dataclass
class Task:
    """One name still to prove: its authorization and the challenge picked for it."""

    label: str  # the name as the order lists it: *.example.com for a wildcard's authorization
    authz: dict[str, Any]
    challenge: dict[str, Any]


def already_proven(saved: dict[str, Any]) -> bool:
    """True, saying what comes next, when order.json's order needs no more proving."""
    status = saved["order"]["status"]
    if status in ("ready", "valid"):
        log.info("Order is already %s. Next: %s", status,
                 "07_finalize.py" if status == "ready" else "08_get_certificate.py")
    return status in ("ready", "valid")


def open_tasks(client: Client, saved: dict[str, Any], challenge_type: str) -> list[Task]:
    """The order's pending authorizations, each with its ``challenge_type`` challenge.

    Every authorization must be for a name of the order: a CA that slips in another name
    must not get a record published for it or a name reported as proven.
    """
    ordered = {ident["value"] for ident in saved["order"]["identifiers"]}
    answered = set(saved.get("answered", []))
    tasks = []
    for url in saved["order"]["authorizations"]:
        authz = rfc8555.get_authorization(client, url)
        label = resources.identifier_label(authz)
        if label not in ordered:
            raise AcmeError(f"the CA's authorization {url} is for {label}, which this order does not name "
                            f"({', '.join(sorted(ordered))}): refusing to prove it")
        if authz["status"] == "valid":
            mine = any(c["url"] in answered for c in authz["challenges"])
            log.info("%s: already valid (%s)", label,
                     "proven by an earlier run of this step" if mine else "the CA reused an earlier authorization")
            continue
        if authz["status"] != "pending":
            raise AcmeError(f"the authorization for {label} is {authz['status']}: run 05_new_order.py for a new order")
        tasks.append(Task(label, authz, rfc8555.find_challenge(authz, challenge_type)))
    return tasks


def answer(client: Client, work: WorkDir, saved: dict[str, Any], tasks: list[Task], first_wait: float) -> float:
    """Answer every task's challenge (§7.5.1); returns how long to wait before the first poll.

    order.json notes the challenges first, so a later run can tell this order's own valid
    authorizations from ones the CA reused. A challenge the CA already calls invalid in its
    answer stops the step at once, with the CA's error: waiting would only end in a timeout.
    """
    saved["answered"] = saved.get("answered", []) + [task.challenge["url"] for task in tasks]
    work.write_json(ORDER, saved)
    for task in tasks:
        challenge, retry_after = rfc8555.answer_challenge(client, task.challenge["url"])
        if challenge["status"] == "invalid":
            raise AcmeError(f"the CA says the {challenge['type']} challenge for {task.label} is invalid",
                            challenge.get("error"))
        log.info("Answered %s for %s", challenge["type"], task.label)
        first_wait = max(first_wait, retry_after or 0.0)
    return first_wait


def wait_until_ready(client: Client, saved: dict[str, Any], first_wait: float, step: str) -> dict[str, Any]:
    """Poll the order until no authorization is pending; on a timeout, say where each one stands.

    Some CAs leave an order ``pending`` after a failed challenge, or put the challenge back to
    ``pending`` without an error: only the authorizations themselves tell what happened.
    """
    try:
        return rfc8555.wait_for_order(client, saved["url"], ("pending",), status=saved["order"]["status"],
                                      first_wait=first_wait,
                                      hint=f"run {step} again to keep waiting, or raise --timeout")
    except StepTimeoutError as exc:
        client.allow_more(EXPLAIN_GRACE)
        raise AcmeError(str(exc), {"type": "about:blank", "detail": "where each authorization stands",
                                   "subproblems": rfc8555.failed_authorizations(client, saved["order"])}) from None


def complete(client: Client, work: WorkDir, saved: dict[str, Any], tasks: list[Task], first_wait: float,
             step: str) -> dict[str, Any]:
    """Answer the tasks' challenges and wait for the order to be ready; with no tasks (every
    authorization already valid), only look at the order."""
    if not tasks:
        return wait_until_ready(client, saved, 0.0, step)
    first_wait = answer(client, work, saved, tasks, first_wait)
    log.info("Waiting for the CA to validate...")
    return wait_until_ready(client, saved, first_wait, step)


def finish(client: Client, work: WorkDir, saved: dict[str, Any], order: dict[str, Any]) -> None:
    """Save the order; one that is not ready says why, name by name (§7.1.6)."""
    work.write_json(ORDER, {**saved, "order": order})
    if order["status"] not in ("ready", "valid"):
        raise rfc8555.order_failure(client, order)
    log.info("Order is %s: every name is proven. Next: 07_finalize.py", order["status"])
