#!/usr/bin/env python3
"""Step 14: deactivate the account, for good (RFC 8555 §7.3.6).

POSTs {"status": "deactivated"} to the account URL. From then on the CA refuses every request
the account signs (Pebble: 403 "Account has been deactivated"): no orders, no key change, no
revocation with the account. There is no way back; a new account needs a new key (01 --force,
04). Certificates already issued stay valid until they expire; they can still be revoked with
their own keys (12_revoke_certificate.py --with-cert-key). Do it when you stop using the
account, or when its key may have leaked (a key change, step 13, is the other remedy).

It cannot be undone, so this asks first, on a terminal, for a typed "yes"; without a terminal
it refuses unless --yes. account.json records the new status, so the other steps say the
account is deactivated without asking the CA.

Reads:  account.json, account.key, session.json
Writes: account.json (status "deactivated")
"""

from common import cli, rfc8555, workdir
from common.cli import log
from common.errors import AFTER_DEACTIVATION, AcmeError


def main(args):
    work = cli.work_dir(args)
    recorded = work.read_account()
    if recorded.get("status") == "deactivated":
        log.info("The account %s is deactivated already (account.json)", recorded["account_url"])
        return
    client = cli.connect_account(args, work)
    cli.confirm(f"deactivate the account {client.kid} at {client.directory_url}", yes=args.yes)

    log.info("Deactivating the account...")
    try:
        status = rfc8555.deactivate_account(client).get("status", "deactivated")
    except AcmeError as exc:
        if not exc.deactivated():  # an earlier run's answer got lost: it is done all the same
            raise
        status = "deactivated"
    work.write_json(workdir.ACCOUNT, {**recorded, "status": status})
    if status != "deactivated":
        raise AcmeError(f"the CA answered, but the account is {status}, not deactivated")
    log.info("The account is deactivated. Next: %s", AFTER_DEACTIVATION)


if __name__ == "__main__":
    p = cli.parser(__doc__, network=True)
    p.add_argument("--yes", action="store_true", help="deactivate without asking (needed without a terminal)")
    cli.run(main, p)
