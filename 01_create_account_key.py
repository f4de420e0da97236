#!/usr/bin/env python3
"""Step 1: create the account key.

ACME has no passwords: the account *is* a key pair. Every request to the CA is signed with
this key (RFC 8555 §6.2), and whoever holds it can order and revoke certificates for your
domains. Keep it safe and keep it: losing it means a new account.

Reads:  nothing
Writes: account.key (PEM, mode 0600). An existing key is kept unless --force.
"""

from common import cli, keys, state
from common.cli import log

REPLACED = ("The CA still knows the old account; certificates ordered with it can no longer "
            "be revoked or managed with this key.")


def main(args):
    work = cli.work_dir(args)
    log.info("Creating %s account key...", args.key_type)
    key = keys.generate_key(args.key_type)
    cli.save_new_key(work, state.ACCOUNT_KEY, key, force=args.force, replaced_warning=REPLACED)


if __name__ == "__main__":
    p = cli.parser(__doc__)
    cli.add_key_options(p, default="ec256", file=state.ACCOUNT_KEY,
                        why="ec256 signs as ES256, ec384 as ES384, rsa* as RS256")
    cli.run(main, p)
