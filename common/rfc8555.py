"""One function per ACME endpoint, in the order a certificate needs them (RFC 8555 §7.3-7.4).

Each takes a :class:`common.http.Client` and returns what the CA said; the numbered steps
decide what to do with it.
"""

from __future__ import annotations

from typing import Any

from .encoding import b64url
from .errors import AcmeError
from .http import PEM_CHAIN, Client, Response


def terms_of_service(client: Client) -> str | None:
    """The terms-of-service URL the CA asks new accounts to agree to (§7.1.1 ``meta``)."""
    return (client.directory.get("meta") or {}).get("termsOfService")


def new_account(client: Client, contact: list[str], *, agree_tos: bool) -> tuple[Response, bool]:
    """Create the account, or find the one this key already has (§7.3, §7.3.1).

    Signed with ``jwk`` since no account URL exists yet. Returns the response and whether
    the account is new: 201 Created, versus 200 OK for a key the CA already knows.
    """
    payload: dict[str, Any] = {"termsOfServiceAgreed": agree_tos}
    if contact:
        payload["contact"] = contact
    resp = client.post(client.endpoint("newAccount"), payload, use_jwk=True)
    if not resp.location:
        raise AcmeError("the CA's newAccount response has no Location header (the account URL)")
    client.kid = resp.location  # from now on requests name the account instead of carrying the key
    return resp, resp.status == 201


def update_account(client: Client, changes: dict[str, Any]) -> dict[str, Any]:
    """Change the account, e.g. its contacts: POST the new fields to the account URL (§7.3.2)."""
    if not client.kid:
        raise AcmeError("internal error: no account URL to update")
    return client.post(client.kid, changes).body


def new_order(client: Client, names: list[str]) -> Response:
    """Ask for a certificate for ``names`` (§7.4); the order URL comes back in Location."""
    identifiers = [{"type": "dns", "value": name} for name in names]
    resp = client.post(client.endpoint("newOrder"), {"identifiers": identifiers})
    if not resp.location:
        raise AcmeError("the CA's newOrder response has no Location header (the order URL)")
    return resp


def get_authorization(client: Client, url: str) -> dict[str, Any]:
    """Fetch one authorization with its challenges (§7.5)."""
    return client.post_as_get(url).body


def answer_challenge(client: Client, url: str) -> Response:
    """Tell the CA the challenge is ready to be checked: POST ``{}`` to it (§7.5.1).

    The response may carry a Retry-After saying when the result is worth asking for.
    """
    return client.post(url, {})


def wait_for_order(
    client: Client, order_url: str, waiting: tuple[str, ...], *, timeout: float, first_wait: float | None = None
) -> dict[str, Any]:
    """Poll the order until its status leaves ``waiting`` (§7.1.6, §7.4).

    One order poll replaces a poll per authorization: the order turns ``ready`` only once
    every authorization is valid.
    """
    return client.poll(order_url, waiting, timeout=timeout, first_wait=first_wait).body


def finalize(client: Client, finalize_url: str, csr_der: bytes) -> Response:
    """Send the CSR once the order is ready (§7.4): the body is the DER CSR in base64url."""
    return client.post(finalize_url, {"csr": b64url(csr_der)})


def download_certificate(client: Client, url: str) -> Response:
    """Fetch the PEM chain, leaf first (§7.4.2); ``Link: rel=alternate`` names other chains."""
    resp = client.post_as_get(url, accept=PEM_CHAIN)
    if not isinstance(resp.body, str) or "BEGIN CERTIFICATE" not in resp.body:
        raise AcmeError(f"the CA sent no PEM certificate chain from {url} (Content-Type {resp.content_type!r})")
    return resp


def order_failure(client: Client, order: dict[str, Any]) -> AcmeError:
    """Why an order went invalid: the CA's problem, with one subproblem per failed name (§7.1.3).

    When the order's error lists no subproblems, each failed authorization is fetched for
    its challenge's error, so every name says what went wrong.
    """
    problem = dict(order.get("error") or {})
    if not problem.get("subproblems"):
        problem["subproblems"] = failed_authorizations(client, order)
    return AcmeError(f"the order is {order.get('status')}: the CA could not validate every name", problem)


def failed_authorizations(client: Client, order: dict[str, Any]) -> list[dict[str, Any]]:
    """Subproblems for every invalid authorization of an order, fetched to explain a failure."""
    subproblems = []
    for url in order.get("authorizations", []):
        authz = get_authorization(client, url)
        if authz.get("status") == "valid":
            continue
        for challenge in authz.get("challenges", []):
            if challenge.get("error"):
                subproblems.append({**challenge["error"], "identifier": authz.get("identifier")})
    return subproblems


def find_challenge(authz: dict[str, Any], challenge_type: str) -> dict[str, Any]:
    """The challenge of ``challenge_type`` in an authorization, or an AcmeError listing the offers."""
    for challenge in authz.get("challenges", []):
        if challenge.get("type") == challenge_type:
            return challenge
    offered = ", ".join(c.get("type", "?") for c in authz.get("challenges", [])) or "none"
    name = (authz.get("identifier") or {}).get("value", "?")
    raise AcmeError(f"the CA offers no {challenge_type} challenge for {name} (offered: {offered})")
