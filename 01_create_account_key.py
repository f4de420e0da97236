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


def main(args):
    work = cli.work_dir(args)
    log.info("Creating %s account key...", args.key_type)
    key = keys.generate_key(args.key_type)
    if work.write_key(state.ACCOUNT_KEY, key, force=args.force):
        log.warning("warning: replaced the old account key. The CA still knows the old account; "
                    "certificates ordered with it can no longer be revoked or managed with this key.")
    log.info("Wrote %s (%s)", work.path(state.ACCOUNT_KEY), keys.describe_key(key))


if __name__ == "__main__":
    p = cli.parser(__doc__)
    p.add_argument("--key-type", choices=keys.KEY_TYPES, default="ec256",
                   help="ec256 signs as ES256 (default), ec384 as ES384, rsa* as RS256")
    p.add_argument("--force", action="store_true", help="replace an existing account.key")
    cli.run(main, p)
