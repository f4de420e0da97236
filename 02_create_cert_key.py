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


def main(args):
    work = cli.work_dir(args)
    log.info("Creating %s certificate key...", args.key_type)
    key = keys.generate_key(args.key_type)
    if work.write_key(state.CERT_KEY, key, force=args.force):
        log.warning("warning: replaced the old cert.key; certificates issued for it need it, so they are now unusable")
    log.info("Wrote %s (%s)", work.path(state.CERT_KEY), keys.describe_key(key))


if __name__ == "__main__":
    p = cli.parser(__doc__)
    p.add_argument("--key-type", choices=keys.KEY_TYPES, default="rsa2048",
                   help="default rsa2048, for the widest compatibility (IIS on older Windows, gateways)")
    p.add_argument("--force", action="store_true", help="replace an existing cert.key")
    cli.run(main, p)
