"""Account key rollover on disk: the files step 13 writes, in an order that survives a crash.

The CA switches keys the moment it answers keyChange (RFC 8555 §7.3.5) with 200; the files
follow in this order, each write atomic:

1. account.key.new  the new key (0600), written before anything is sent
2. POST keyChange   the CA now knows the new key only, if it answers 200
3. account.key.old  the old key (0600), kept for the record; the CA no longer accepts it
4. account.json     key_thumbprint of the new key
5. account.key      replaced by renaming account.key.new over it (one rename)

While account.key.new exists a key change is unfinished, and running step 13 again finishes
it. Which key does the CA know? Before step 4, ask it: onlyReturnExisting signed with the new
key (§7.3.1) finds the account only if step 2 went through (even if its answer was lost). From
step 4 on, account.json already names the new key, so only the rename is left. At no point is
the only copy of the key the CA knows anywhere but account.key or account.key.new.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from . import jws, rfc8555, workdir
from .errors import AcmeError, UsageError
from .keys import PrivateKey, key_to_pem

if TYPE_CHECKING:
    from .transport import Client

NEW_ACCOUNT_KEY = "account.key.new"  # the new key until account.key is replaced: never delete it by hand
INTERRUPTED = ("a key change was interrupted (account.key.new exists, and the CA may know only that key): "
               "run 13_change_account_key.py again to finish it")


def pending_key(work: workdir.WorkDir) -> PrivateKey | None:
    """The new key of an unfinished key change, or None."""
    return work.read_key(NEW_ACCOUNT_KEY) if work.exists(NEW_ACCOUNT_KEY) else None


def save_new_key(work: workdir.WorkDir, key: PrivateKey) -> None:
    """Step 1: the new key on disk (0600) before the CA hears of it."""
    work.write_bytes(NEW_ACCOUNT_KEY, key_to_pem(key), private=True, replace=False)


def key_owner(client: Client, key: PrivateKey) -> str | None:
    """The URL of the account ``key`` belongs to at this CA, or None if it has none (§7.3.1).

    Sends onlyReturnExisting signed with ``key``, then puts the client back as it was.
    """
    saved = client.key, client.kid
    client.key = key
    try:
        url, _ = rfc8555.find_account(client)
        return url
    except AcmeError as exc:
        if exc.is_type("accountDoesNotExist"):
            return None
        if exc.deactivated():
            raise UsageError("the new key belongs to a deactivated account at this CA: use another key") from None
        raise
    finally:
        client.key, client.kid = saved


def record_new_key(work: workdir.WorkDir, old_key: PrivateKey, new_key: PrivateKey, recorded: dict[str, Any]) -> None:
    """Steps 3 and 4, once the CA has the new key: keep the old key, point account.json at the new one."""
    work.write_bytes(workdir.OLD_ACCOUNT_KEY, key_to_pem(old_key), private=True)
    work.write_json(workdir.ACCOUNT, {**recorded, "key_thumbprint": jws.key_thumbprint(new_key)})


def install_new_key(work: workdir.WorkDir) -> None:
    """Step 5: account.key.new becomes account.key in one rename, so account.key is never half written."""
    os.chmod(work.path(NEW_ACCOUNT_KEY), workdir.PRIVATE)  # whatever made the file, the key ends up 0600
    os.replace(work.path(NEW_ACCOUNT_KEY), work.path(workdir.ACCOUNT_KEY))
