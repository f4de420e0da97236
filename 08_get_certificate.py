#!/usr/bin/env python3
"""Step 8: download the certificate chain (RFC 8555 §7.4.2).

POST-as-GET the order's certificate URL asking for application/pem-certificate-chain: the
leaf first, then the intermediates. A CA may offer chains to other roots in
"Link: rel=alternate" headers; --preferred-chain picks one by its root's name.

Before saving, check what came back: the leaf must hold cert.key's public key and exactly
the CSR's names, be valid now and not be a CA, and each certificate must be signed by the
next. Nothing is written unless all of that holds.

Reads:  order.json, cert.key, cert.csr, account.json, account.key, session.json
Writes: cert.pem (the leaf), chain.pem (the intermediates), fullchain.pem (both, for servers)
"""

import sys

from common import certs, cli, rfc8555, workdir
from common.cli import log
from common.errors import UsageError


def main(args):
    work = cli.work_dir(args)
    url = work.read_order()["order"].get("certificate")
    if not url:
        raise UsageError("order.json has no certificate URL yet: run 07_finalize.py first")
    key = work.read_key(workdir.CERT_KEY)
    domains = certs.san_identifiers(work.read_csr())
    client = cli.connect_account(args, work)

    log.info("Downloading certificate...")
    pem, alternates = rfc8555.download_certificate(client, url)
    chain = certs.split_pem_chain(pem)
    if args.preferred_chain:
        chain = _preferred(client, chain, alternates, args.preferred_chain)
    elif alternates:
        log.info("  The CA also offers %d alternate chain(s): %s", len(alternates), " ".join(alternates))
    leaf, *intermediates = chain
    certs.check_certificate(leaf, key, domains)
    certs.check_chain(chain)
    work.write_bytes(workdir.CERT, certs.certs_to_pem([leaf]))
    work.write_bytes(workdir.CHAIN, certs.certs_to_pem(intermediates))
    work.write_bytes(workdir.FULLCHAIN, certs.certs_to_pem(chain))
    for line in certs.describe_certificate(leaf):
        log.info("  %s", line)
    log.info("Wrote %s, %s, %s", *(work.path(n) for n in (workdir.CERT, workdir.CHAIN, workdir.FULLCHAIN)))
    if sys.stdin.isatty():
        log.info("Next: 09_export_pkcs12.py for Windows/IIS (it asks for the .pfx password), "
                 "or install fullchain.pem and cert.key on your server")
    else:  # 09 would have no terminal to ask for the password on
        log.info("Next: 09_export_pkcs12.py --password-file FILE for Windows/IIS (the .pfx password on FILE's first "
                 "line, or --password-env VAR), or install fullchain.pem and cert.key on your server")


def _preferred(client, chain, alternates, issuer):
    """--preferred-chain: the chain up to ``issuer`` if the CA offers one, else the default, saying so."""
    chosen = rfc8555.preferred_chain(client, chain, alternates, issuer)
    if chosen is None:
        log.info("  No chain leads to %r; keeping the default one, up to %r", issuer, certs.top_issuer(chain))
        return chain
    log.info("  Chose the chain up to %r", issuer)
    return chosen

if __name__ == "__main__":
    p = cli.parser(__doc__, network=True)
    p.add_argument("--preferred-chain", metavar="ISSUER",
                   help="prefer the chain (default or alternate) whose topmost certificate is issued by this "
                        "common name, e.g. \"ISRG Root X1\"; else keep the default")
    cli.run(main, p)
