#!/usr/bin/env python3
"""Step 2: create the certificate key.

This key goes into the certificate and onto your server; the CA never sees it, only the
CSR it signs (step 3). It must not be the account key: a server compromise would then hand
over your ACME account too. RSA 2048 is the default because IIS on older Windows and many
cloud gateways accept nothing else.

Reads:  nothing (a fresh key, so never the account key; step 3 checks files put here by hand)
Writes: cert.key (PEM, mode 0600). An existing key is kept unless --force.
"""

from common import cli, keys, state
from common.cli import log

REPLACED = "Certificates issued for the old key need it: they are unusable without it."


def main(args):
    work = cli.work_dir(args)
    log.info("Creating %s certificate key...", args.key_type)
    key = keys.generate_key(args.key_type)
    cli.save_new_key(work, state.CERT_KEY, key, force=args.force, replaced_warning=REPLACED)


if __name__ == "__main__":
    p = cli.parser(__doc__)
    cli.add_key_options(p, default="rsa2048", file=state.CERT_KEY,
                        why="the widest compatibility (IIS on older Windows, cloud gateways)")
    cli.run(main, p)
