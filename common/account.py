"""The account after registration: what account.json records, External Account Binding, deactivation.

The CA knows an account by its key (RFC 8555 §7.3); account.json is this side's record of it:
the server, the account URL, the key's thumbprint and the status and contacts last seen.
Some CAs make that record the only one that matters: ZeroSSL and Sectigo answer a repeated
newAccount with External Account Binding (§7.3.4) by opening a second account instead of
returning the first, so a client must not register again what it already recorded.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from . import acme_servers, jws, secret_input
from .errors import AFTER_DEACTIVATION, AcmeError, UsageError
from .workdir import ACCOUNT, WorkDir

if TYPE_CHECKING:
    from .transport import Client

log = logging.getLogger("acme")

EAB_OPTIONS = "--eab-kid KID with --eab-hmac-key-file FILE or --eab-hmac-key-env VAR"


def record(client: Client, account_url: str, account: dict[str, Any], terms: str | None) -> dict[str, Any]:
    """account.json's content: what later steps need to sign as this account, and what the CA last said."""
    return {
        "directory_url": client.directory_url,
        "ca_bundle": os.path.abspath(client.ca_bundle) if client.ca_bundle else None,
        "account_url": account_url,
        "key_thumbprint": jws.key_thumbprint(client.key),  # later steps check account.key still matches
        "status": account.get("status"),
        "contact": account.get("contact", []),
        "terms_of_service": terms,
    }


def earlier_record(work: WorkDir) -> dict[str, Any] | None:
    """account.json from an earlier run, for its server and CA bundle; None if there is none or it is damaged
    (step 04 then writes a new one)."""
    if not work.exists(ACCOUNT):
        return None
    try:
        return work.read_account()
    except UsageError:
        log.warning("warning: %s is damaged; this run writes a new one", work.path(ACCOUNT))
        return None


def records_this_key(recorded: dict[str, Any] | None, client: Client) -> bool:
    """True if account.json holds an account on ``client``'s server for ``client``'s key."""
    return bool(recorded) and recorded.get("directory_url") == client.directory_url \
        and recorded.get("key_thumbprint") == jws.key_thumbprint(client.key)


def not_registering_again(recorded: dict[str, Any]) -> None:
    """Say why step 04 sends nothing for an account account.json records and EAB was given again."""
    log.info("account.json already records this key's account on this server: %s", recorded["account_url"])
    log.info("Not registering again: a repeated registration with EAB opens a second account at ZeroSSL "
             "and Sectigo. Next: 10_account_info.py shows the account (--email changes its contacts)")


@contextmanager
def unless_forgotten() -> Iterator[None]:
    """Around looking the recorded account up by its key (§7.3.1): a CA that answers accountDoesNotExist
    has forgotten it (a restarted Pebble does), so the step registers the key again instead of failing."""
    try:
        yield
    except AcmeError as exc:
        if not exc.is_type("accountDoesNotExist"):
            raise
        log.warning("warning: the CA no longer knows the account account.json records; registering the key again")


def check_can_register(client: Client, eab: tuple[str, bytes] | None, *, agreed: bool, terms: str | None) -> None:
    """Before newAccount (§7.3): the binding a CA may require (§7.3.4) is given and its terms are agreed to."""
    if external_account_required(client) and not eab:
        raise UsageError(eab_missing(client.directory_url))
    if not agreed:
        where = f"at {terms}" if terms else "(the CA publishes none in its directory)"
        raise UsageError(f"read the CA's terms of service {where}, then run again with --agree-tos")


@contextmanager
def explaining_refusal(client: Client, eab: tuple[str, bytes] | None) -> Iterator[None]:
    """Around newAccount: the CA's refusal of a missing or wrong External Account Binding, explained."""
    try:
        yield
    except AcmeError as exc:
        if exc.is_type("externalAccountRequired"):
            raise AcmeError(f"{exc} ({eab_missing(client.directory_url)})", exc.problem, status=exc.status) from None
        if eab and exc.status == 403 and not exc.deactivated():
            raise AcmeError(f"{exc}: the CA refused the External Account Binding; check that --eab-kid and the "
                            "HMAC key are the pair the CA gave you, and still unused or unexpired", exc.problem,
                            status=exc.status) from None
        raise


# -- deactivation (§7.3.6) ----------------------------------------------------------------------


def refuse_deactivated(recorded: dict[str, Any]) -> None:
    """Stop before sending anything if account.json says the account was deactivated (step 14)."""
    if recorded.get("status") == "deactivated":
        raise AcmeError(f"the account {recorded.get('account_url')} is deactivated (account.json), so the CA "
                        f"refuses every request it signs: {AFTER_DEACTIVATION}")


# -- External Account Binding (§7.3.4) ----------------------------------------------------------


def external_account_required(client: Client) -> bool:
    """True if the directory says new accounts need External Account Binding (§7.1.1 ``meta``)."""
    return (client.directory.get("meta") or {}).get("externalAccountRequired") is True


def eab_missing(directory_url: str) -> str:
    """The error for a CA that requires EAB when none was given: which options, and where to get the values."""
    source = acme_servers.eab_source(directory_url) or "your account at the CA"
    return f"{directory_url} requires External Account Binding: pass {EAB_OPTIONS}, the key id and HMAC key " \
           f"from {source}"


def eab_credentials(kid: str | None, key_file: str | None, key_env: str | None) -> tuple[str, bytes] | None:
    """The (key id, HMAC key) to bind the account with, or None when no EAB option was given.

    The HMAC key comes from a file's first line or an environment variable, never from the
    command line (other users can read a process's arguments), as the base64url text CAs hand
    out. No message here ever repeats the key.
    """
    if not (kid or key_file or key_env):
        return None
    if not kid:
        raise UsageError("an EAB HMAC key needs its key id: pass --eab-kid KID as well")
    given = secret_input.from_file_or_env(key_file, key_env, "EAB HMAC key", file_option="--eab-hmac-key-file")
    if given is None:
        raise UsageError("--eab-kid needs the HMAC key that came with it: pass --eab-hmac-key-file FILE "
                         "or --eab-hmac-key-env VAR (never on the command line)")
    text, source = given
    try:
        return kid, jws.decode_hmac_key(text)
    except ValueError as exc:
        raise UsageError(f"{source}: {exc}") from None

