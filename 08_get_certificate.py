#!/usr/bin/env python3
"""Step 8: download the certificate chain (RFC 8555 §7.4.2).

POST-as-GET the order's certificate URL asking for application/pem-certificate-chain: the
leaf first, then the intermediates. Before saving, check what came back: the leaf must hold
cert.key's public key and exactly the CSR's names, be valid now and not be a CA, and each
certificate must be signed by the next. Nothing is written unless all of that holds.

Reads:  order.json, cert.key, cert.csr, account.json, account.key, session.json
Writes: cert.pem (the leaf), chain.pem (the intermediates), fullchain.pem (both, for servers)
"""

from common import certs, cli, rfc8555, state
from common.cli import log
from common.errors import UsageError


def main(args):
    work = cli.work_dir(args)
    url = work.read_order()["order"].get("certificate")
    if not url:
        raise UsageError("order.json has no certificate URL yet: run 07_finalize.py first")
    key = work.read_key(state.CERT_KEY)
    domains = certs.san_names(work.read_csr())
    client = cli.connect_account(args, work)

    log.info("Downloading certificate...")
    resp = rfc8555.download_certificate(client, url)
    leaf, *intermediates = chain = certs.split_pem_chain(resp.body)
    certs.check_certificate(leaf, key, domains)
    certs.check_chain(chain)
    work.write_bytes(state.CERT, certs.certs_to_pem([leaf]))
    work.write_bytes(state.CHAIN, certs.certs_to_pem(intermediates))
    work.write_bytes(state.FULLCHAIN, certs.certs_to_pem([leaf, *intermediates]))
    for line in certs.describe_certificate(leaf):
        log.info("  %s", line)
    alternates = resp.links("alternate")
    if alternates:
        log.info("  The CA also offers %d alternate chain(s): %s", len(alternates), " ".join(alternates))
    log.info("Wrote %s, %s, %s", *(work.path(n) for n in (state.CERT, state.CHAIN, state.FULLCHAIN)))


if __name__ == "__main__":
    cli.run(main, cli.parser(__doc__, network=True))
