#!/usr/bin/env python3
"""Step 1: create the account key (RFC 8555 §6.2).

ACME has no passwords: the account *is* a key pair. Every request to the CA is signed with
this key, and whoever holds it can order and revoke certificates for your domains. Keep it
safe and keep it: losing it means a new account.

Reads:  nothing
Writes: account.key (PEM, mode 0600). An existing key is kept unless --force.
"""

from common import cli, workdir

REPLACED = ("The CA still knows the old account; certificates ordered with it can no longer "
            "be revoked or managed with this key. Run 04_new_account.py for the new key.")


def main(args):
    cli.create_key(args, workdir.ACCOUNT_KEY, REPLACED)
    cli.log.info("Next: 02_create_cert_key.py")


if __name__ == "__main__":
    p = cli.parser(__doc__)
    cli.add_key_options(p, default="ec256", file=workdir.ACCOUNT_KEY,
                        why="ec256 signs as ES256, ec384 as ES384, rsa* as RS256")
    cli.run(main, p)
