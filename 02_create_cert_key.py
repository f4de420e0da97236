#!/usr/bin/env python3
"""Step 2: create the certificate key (the key in the CSR, RFC 8555 §7.4 and §11.1).

This key goes into the certificate and onto your server; the CA never sees it, only the
CSR it signs (step 3). It must not be the account key (§11.1): a server compromise would then
hand over your ACME account too. RSA 2048 is the default because IIS on older Windows and
many cloud gateways accept nothing else.

Reads:  nothing (a fresh key, so never the account key; step 3 checks files put here by hand)
Writes: cert.key (PEM, mode 0600). An existing key is kept unless --force.
"""

from common import cli, workdir

REPLACED = ("Certificates issued for the old key need it: they are unusable without it. "
            "Run 03_create_csr.py again so the next order uses the new key.")


def main(args):
    cli.create_key(args, workdir.CERT_KEY, REPLACED)
    cli.log.info("Next: 03_create_csr.py -d NAME (repeat -d for more names)")


if __name__ == "__main__":
    p = cli.parser(__doc__)
    cli.add_key_options(p, default="rsa2048", file=workdir.CERT_KEY,
                        why="the widest compatibility (IIS on older Windows, cloud gateways)")
    cli.run(main, p)
