#!/usr/bin/env python3
"""Step 13: replace the account key, keeping the account (key rollover, RFC 8555 §7.3.5).

One POST to the CA's keyChange URL carries two signatures. The inner JWS is signed by the NEW
key, with its "jwk" and no nonce, over {"account": account URL, "oldKey": old key's JWK}: it
proves the new key's holder wants it. The outer JWS is signed by the OLD key as usual ("kid",
nonce) with the inner one as its payload: it proves the account's holder asks. Once the CA
answers 200 it accepts only the new key; the account, its orders and its certificates stay.

The new key is generated (--key-type) or read from --new-key FILE, which must be neither the
current account key nor the certificate key. The files change in an order that survives a
crash at any point (see common/rollover.py): the new key goes to account.key.new before the
request; only after the CA's 200 is the old key kept as account.key.old (0600), account.json
given the new thumbprint and account.key replaced, in one rename. If a run is interrupted,
account.key.new remains: run this step again and it asks the CA which key it knows
(onlyReturnExisting with the new key, §7.3.1) and finishes the change. Never delete
account.key.new by hand: it may be the only key the CA still accepts.

Reads:  account.json, account.key, session.json; --new-key FILE; cert.key (to refuse it)
Writes: account.key.new (while the change is under way), account.key.old (the old key),
        account.key (the new key, 0600), account.json (the new key's thumbprint)
"""

from pathlib import Path

from common import account, cli, jws, keys, rfc8555, rollover, workdir
from common.cli import log
from common.errors import UsageError


def main(args):
    work = cli.work_dir(args)
    recorded = work.read_account()
    account.refuse_deactivated(recorded)
    client = cli.connect(args, work, account=recorded)
    if not client.kid:
        raise UsageError(f"account.json is for {recorded['directory_url']}, not {client.directory_url}: "
                         "run 13 with the account's own server")
    old_key = client.key
    new_key = rollover.pending_key(work)
    resuming = new_key is not None
    if resuming:
        log.info("Finishing the key change an earlier run began (%s)", work.path(rollover.NEW_ACCOUNT_KEY))
        if args.new_key and not keys.same_public_key(_read_key(args.new_key), new_key):
            raise UsageError(f"{work.path(rollover.NEW_ACCOUNT_KEY)} holds another new key: run without --new-key "
                             "to finish that change first")
    else:
        new_key = _read_key(args.new_key) if args.new_key else keys.generate_key(args.key_type)
        _refuse_known_key(work, new_key, old_key)
    log.info("Account: %s", client.kid)
    log.info("  old key: %s, thumbprint %s", keys.describe_key(old_key), jws.key_thumbprint(old_key))
    log.info("  new key: %s, thumbprint %s", keys.describe_key(new_key), jws.key_thumbprint(new_key))

    if recorded.get("key_thumbprint") == jws.key_thumbprint(new_key):
        log.info("account.json already names the new key: the CA took it; only account.key is left to replace")
    elif recorded.get("key_thumbprint") not in (None, jws.key_thumbprint(old_key)):
        raise UsageError("account.key is not the key account.json was registered with: run 04_new_account.py")
    else:
        owner = None
        if resuming or args.new_key:  # a key from a file, or from an interrupted run, may be known to the CA already
            log.info("Asking the CA whose account the new key is (newAccount with onlyReturnExisting)...")
            owner = rollover.key_owner(client, new_key)
        if owner == client.kid:
            log.info("The CA already has the new key for this account (the interrupted run got that far)")
        elif owner:
            raise UsageError(f"the new key already belongs to another account at this CA ({owner}): use another key")
        else:
            if not resuming:
                rollover.save_new_key(work, new_key)  # on disk before the CA hears of it
            log.info("Rolling the account over to the new key (keyChange, signed by both keys)...")
            rfc8555.change_key(client, new_key)
            log.info("The CA accepted the new key; the old one no longer works")
        rollover.record_new_key(work, old_key, new_key, recorded)
    rollover.install_new_key(work)
    log.info("Wrote %s (the new key), %s (the old one, for the record) and %s",
             *(work.path(n) for n in (workdir.ACCOUNT_KEY, workdir.OLD_ACCOUNT_KEY, workdir.ACCOUNT)))
    log.info("Next: 10_account_info.py shows the account, now signed with the new key")


def _read_key(path):
    try:
        return keys.key_from_pem(Path(path).read_bytes(), str(path))
    except OSError as exc:
        raise UsageError(f"cannot read --new-key {path}: {exc.strerror}") from None


def _refuse_known_key(work, new_key, old_key):
    """The new key must be new: not the account key itself, not the certificate's key (step 02 explains why)."""
    if keys.same_public_key(new_key, old_key):
        raise UsageError("the new key is the current account key: give another --new-key, or none to generate one")
    if work.exists(workdir.CERT_KEY) and keys.same_public_key(new_key, work.read_key(workdir.CERT_KEY)):
        raise UsageError("the new key is cert.key, the certificate's key: an account key must be a key of its own")


if __name__ == "__main__":
    p = cli.parser(__doc__, network=True)
    new = p.add_mutually_exclusive_group()
    new.add_argument("--key-type", choices=keys.KEY_TYPES, default="ec256",
                     help="generate the new key of this type (default: %(default)s)")
    new.add_argument("--new-key", type=Path, metavar="FILE", help="use this PEM private key instead of a new one")
    cli.run(main, p)
