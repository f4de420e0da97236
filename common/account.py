"""The account after registration: what account.json records, External Account Binding, deactivation.

The CA knows an account by its key (RFC 8555 §7.3); account.json is this side's record of it:
the server, the account URL, the key's thumbprint and the status and contacts last seen.
Some CAs make that record the only one that matters: ZeroSSL and Sectigo answer a repeated
newAccount with External Account Binding (§7.3.4) by opening a second account instead of
returning the first, so a client must not register again what it already recorded.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from . import acme_servers, jws, secret_input
from .errors import AFTER_DEACTIVATION, AcmeError, UsageError

if TYPE_CHECKING:
    from .transport import Client

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


def records_this_key(recorded: dict[str, Any] | None, client: Client) -> bool:
    """True if account.json holds an account on ``client``'s server for ``client``'s key."""
    return bool(recorded) and recorded.get("directory_url") == client.directory_url \
        and recorded.get("key_thumbprint") == jws.key_thumbprint(client.key)


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

