#!/usr/bin/env python3
"""Step 5: order a certificate for the names in the CSR (RFC 8555 §7.4).

POSTs the names to newOrder. The CA answers with the order: its status, one authorization
URL per name (each saying how to prove control of that name, §7.5) and the URL to send the
CSR to once every name is proven. The order's own URL comes in the Location header.

Reads:  cert.csr, account.json, account.key, session.json
Writes: order.json (the order's URL and content)
"""

from common import certs, cli, names, rfc8555, state
from common.cli import log


def main(args):
    work = cli.work_dir(args)
    domains = certs.san_names(work.read_csr())
    client = cli.connect_account(args, work)
    url, order = rfc8555.new_order(client, domains)
    work.write_json(state.ORDER, {"url": url, "order": order})
    log.info("Creating order for %s... %s: %s", names.count(len(domains), "name"), order["status"], url)


if __name__ == "__main__":
    cli.run(main, cli.parser(__doc__, network=True))
