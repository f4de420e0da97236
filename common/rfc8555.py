"""One function per ACME endpoint, in the order a certificate needs them (RFC 8555 §7.3-7.4).

Each takes a :class:`common.transport.Client` and returns what the CA said, checked (see
:mod:`common.resources`); the numbered steps decide what to do with it.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from . import jws, resources
from .errors import AcmeError
from .jws import b64url
from .keys import PrivateKey
from .names import identifier
from .transport import PEM_CHAIN, Client, Response


def terms_of_service(client: Client) -> str | None:
    """The terms-of-service URL the CA asks new accounts to agree to (§7.1.1 ``meta``)."""
    return (client.directory.get("meta") or {}).get("termsOfService")


def profiles(client: Client) -> dict[str, str]:
    """The certificate profiles the CA offers, name -> description (draft-ietf-acme-profiles §3)."""
    return (client.directory.get("meta") or {}).get("profiles") or {}


def new_account(client: Client, contact: list[str], *, agree_tos: bool,
                eab: tuple[str, bytes] | None = None) -> tuple[str, dict[str, Any], bool]:
    """Create the account, or find the one this key already has (§7.3, §7.3.1).

    Signed with ``jwk`` since no account URL exists yet. ``eab`` is the (key id, HMAC key) of an
    External Account Binding (§7.3.4), for CAs that require one. Returns the account URL, the
    account and whether it is new: 201 Created, versus 200 OK for a key the CA already knows.
    """
    url = client.endpoint("newAccount")
    payload: dict[str, Any] = {"termsOfServiceAgreed": agree_tos}
    if contact:
        payload["contact"] = contact
    if eab:
        payload["externalAccountBinding"] = jws.eab_jws(jws.jwk(client.key), eab[0], eab[1], url)
    return _account_response(client, client.post(url, payload, use_jwk=True))


def find_account(client: Client) -> tuple[str, dict[str, Any]]:
    """Look the account up by its key alone, creating nothing (§7.3.1 ``onlyReturnExisting``).

    The way back to an account whose URL was lost: the key is the account. A key the CA does
    not know gets accountDoesNotExist.
    """
    url, account, _ = _account_response(client, client.post(client.endpoint("newAccount"),
                                                             {"onlyReturnExisting": True}, use_jwk=True))
    return url, account


def _account_response(client: Client, resp: Response) -> tuple[str, dict[str, Any], bool]:
    if not resp.location:
        raise AcmeError("the CA's newAccount response has no Location header (the account URL)")
    account = client.checked(resources.account, resp, "account")
    client.kid = resp.location  # from now on requests name the account instead of carrying the key
    return resp.location, account, resp.status == 201


def get_account(client: Client) -> dict[str, Any]:
    """The account object as the CA holds it: POST-as-GET to the account URL (§7.3.3 note, §6.3)."""
    return client.checked(resources.account, client.post_as_get(_account_url(client)), "account")


def update_account(client: Client, changes: dict[str, Any]) -> dict[str, Any]:
    """Change the account, e.g. its contacts: POST the new fields to the account URL (§7.3.2)."""
    return client.checked(resources.account, client.post(_account_url(client), changes), "account")


def deactivate_account(client: Client) -> dict[str, Any]:
    """Deactivate the account for good (§7.3.6): the CA refuses every request it signs afterwards."""
    return update_account(client, {"status": "deactivated"})


def change_key(client: Client, new_key: PrivateKey) -> None:
    """Roll the account over to ``new_key`` (§7.3.5): a JWS signed by the new key, inside one signed by the old.

    The inner JWS proves possession of the new key, the outer one (sent as usual, with the old
    key and the account URL) that the account's holder asks for it. Afterwards the client signs
    with the new key.
    """
    url = client.endpoint("keyChange")
    inner = jws.key_change_jws(new_key, client.key, _account_url(client), url)
    client.post(url, inner)
    client.key = new_key


def revoke_certificate(client: Client, cert_der: bytes, reason: int, *, cert_key: PrivateKey | None = None) -> None:
    """Revoke a certificate (§7.6) with an RFC 5280 §5.3.1 reason code.

    Signed by the account (``kid``), or, with ``cert_key``, by the certificate's own key with its
    ``jwk``: the way to revoke when the account is lost, since holding the key proves the right to.
    """
    client.post(client.endpoint("revokeCert"), {"certificate": b64url(cert_der), "reason": reason}, key=cert_key)


def renewal_info(client: Client, cert_id: str) -> tuple[dict[str, Any], float | None]:
    """The CA's suggested renewal window for a certificate (RFC 9773 §4.2): a plain GET, no JWS.

    ``cert_id`` is the certificate's ARI identifier (common.certs.ari_cert_id). Returns the
    renewalInfo object and the Retry-After saying when to ask again.
    """
    resp = client.get(client.endpoint("renewalInfo").rstrip("/") + "/" + cert_id)
    return client.checked(resources.renewal_info, resp, "renewalInfo"), resp.retry_after


def _account_url(client: Client) -> str:
    if not client.kid:
        raise AcmeError("internal error: no account URL")
    return client.kid


def new_order(client: Client, names: list[str], *, profile: str | None = None,
              replaces: str | None = None) -> tuple[str, dict[str, Any]]:
    """Ask for a certificate for ``names`` (§7.4); returns the order URL (Location) and the order.

    A name is a ``dns`` identifier, an IP address (canonical text, RFC 5952 for IPv6) an ``ip``
    one (RFC 8738 §3). ``profile`` names one of the directory's ``meta.profiles``
    (draft-ietf-acme-profiles §3);
    ``replaces`` is the ARI certID of the certificate this one renews (RFC 9773 §5), so the CA
    can link the two. The order must be for exactly the names asked: everything later (which
    records step 06 publishes) trusts its identifiers.
    """
    payload: dict[str, Any] = {"identifiers": [identifier(name) for name in names]}
    if profile:
        payload["profile"] = profile
    if replaces:
        payload["replaces"] = replaces
    resp = client.post(client.endpoint("newOrder"), payload)
    if not resp.location:
        raise AcmeError("the CA's newOrder response has no Location header (the order URL)")
    order = client.checked(resources.order, resp, "order")
    got = sorted(canonical_identifier(i) for i in order["identifiers"])
    if got != sorted(canonical_identifier(identifier(name)) for name in names):
        raise AcmeError(f"the CA's order is for other names than asked: {[v for _, v in got]} instead of {names}")
    return resp.location, order


def canonical_identifier(identifier: dict[str, Any]) -> tuple[str, str]:
    """(type, value) to compare identifiers by: names in lower case, addresses in canonical text (RFC 8738 §3).

    A CA may write an address its own way (2001:db8:0:0::1); it is still the one asked for.
    """
    kind, value = str(identifier["type"]), str(identifier["value"])
    if kind == "ip":
        try:
            return kind, str(ipaddress.ip_address(value))
        except ValueError:
            return kind, value
    return kind, value.lower()


def get_authorization(client: Client, url: str) -> dict[str, Any]:
    """Fetch one authorization with its challenges (§7.5)."""
    return client.checked(resources.authorization, client.post_as_get(url), "authorization")


def find_challenge(authz: dict[str, Any], challenge_type: str) -> dict[str, Any]:
    """The challenge of ``challenge_type`` in an authorization, or an AcmeError listing the offers."""
    for challenge in authz["challenges"]:
        if challenge["type"] == challenge_type:
            return challenge
    offered = ", ".join(c["type"] for c in authz["challenges"]) or "none"
    raise AcmeError(f"the CA offers no {challenge_type} challenge for {resources.identifier_label(authz)} "
                    f"(offered: {offered})")


def answer_challenge(client: Client, url: str) -> tuple[dict[str, Any], float | None]:
    """Tell the CA the challenge is ready to be checked: POST ``{}`` to it (§7.5.1).

    Returns the challenge as it now stands and the response's Retry-After, which says when
    the result is worth asking for.
    """
    resp = client.post(url, {})
    return client.checked(resources.challenge, resp, "challenge"), resp.retry_after


def wait_for_order(client: Client, order_url: str, waiting: tuple[str, ...], *, status: str, hint: str,
                   first_wait: float | None = None) -> dict[str, Any]:
    """Poll the order until its status leaves ``waiting`` (§7.1.6, §7.4).

    One order poll replaces a poll per authorization: the order turns ``ready`` only once
    every authorization is valid. ``hint`` says what to do if the step's timeout runs out.
    """
    return client.poll(order_url, waiting, check=lambda resp: client.checked(resources.order, resp, "order"),
                       status=status, hint=hint, first_wait=first_wait)


def finalize(client: Client, finalize_url: str, csr_der: bytes) -> tuple[dict[str, Any], float | None]:
    """Send the CSR once the order is ready (§7.4): the body is the DER CSR in base64url.

    Returns the order as it now stands (usually ``processing``) and the response's Retry-After.
    """
    resp = client.post(finalize_url, {"csr": b64url(csr_der)})
    return client.checked(resources.order, resp, "order"), resp.retry_after


def download_certificate(client: Client, url: str) -> tuple[str, list[str]]:
    """Fetch the PEM chain, leaf first (§7.4.2), and the URLs of the alternate chains the CA
    offers in ``Link: rel="alternate"`` headers (the same leaf, other intermediates and roots)."""
    resp = client.post_as_get(url, accept=PEM_CHAIN)
    if not isinstance(resp.body, str) or "BEGIN CERTIFICATE" not in resp.body:
        raise AcmeError(f"the CA sent no PEM certificate chain from {url} (Content-Type {resp.content_type!r})")
    return resp.body, [client.check_url(link, "alternate chain") for link in resp.links("alternate")]


def preferred_chain(client: Client, chain: list[Any], alternates: list[str], issuer: str) -> list[Any] | None:
    """The first chain, the default one and then each alternate, whose topmost certificate is
    issued by ``issuer`` (a common name: certbot's --preferred-chain), or None."""
    from .certs import split_pem_chain, top_issuer

    if top_issuer(chain) == issuer:
        return chain
    for url in alternates:
        candidate = split_pem_chain(download_certificate(client, url)[0])
        if top_issuer(candidate) == issuer:
            return candidate
    return None


def order_failure(client: Client, order: dict[str, Any]) -> AcmeError:
    """Why an order went invalid: the CA's problem, with one subproblem per failed name (§7.1.3).

    Each failed authorization is fetched for its challenge's error as well, so every name says
    what went wrong even when the CA's subproblems leave some out.
    """
    problem = order.get("error") if isinstance(order.get("error"), dict) else {}
    listed = problem.get("subproblems") if isinstance(problem.get("subproblems"), list) else []
    shown = {_subproblem_key(sub) for sub in listed}
    extra = [sub for sub in failed_authorizations(client, order) if _subproblem_key(sub) not in shown]
    return AcmeError(f"the order is {order['status']}: the CA could not validate every name",
                     {**problem, "subproblems": listed + extra})


def failed_authorizations(client: Client, order: dict[str, Any]) -> list[dict[str, Any]]:
    """Subproblems for every authorization of an order that is not valid, fetched to explain a failure."""
    subproblems = []
    for url in order["authorizations"]:
        authz = get_authorization(client, url)
        if authz["status"] == "valid":
            continue
        errors = [c["error"] for c in authz["challenges"] if c.get("error")]
        for error in errors or [{"detail": f"the authorization is {authz['status']}, with no challenge error"}]:
            error = error if isinstance(error, dict) else {"detail": error}
            subproblems.append({**error, "identifier": authz["identifier"]})
    return subproblems


def _subproblem_key(subproblem: Any) -> tuple[str, str, str]:
    """A subproblem's name, type and detail: what makes it say something another does not."""
    fields = subproblem if isinstance(subproblem, dict) else {}
    return _identifier_value(subproblem), str(fields.get("type")), str(fields.get("detail"))


def _identifier_value(subproblem: Any) -> str:
    ident = subproblem.get("identifier") if isinstance(subproblem, dict) else None
    return str(ident.get("value") if isinstance(ident, dict) else ident)
