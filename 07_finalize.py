#!/usr/bin/env python3
"""Step 7: finalize the order by sending the CSR (RFC 8555 §7.4).

Once the order is ready, POST the CSR (DER, base64url) to the order's finalize URL. The CA
checks that the CSR names exactly the order's names, then issues: the order goes from
processing to valid and gains a "certificate" URL. Polling honours Retry-After.

Reads:  order.json, cert.csr, account.json, account.key, session.json
Writes: order.json (the order, now valid, with its certificate URL)
"""

from common import certs, cli, rfc8555, state
from common.cli import log
from common.errors import AcmeError


def main(args):
    work = cli.work_dir(args)
    saved = work.read_json(state.ORDER)
    if saved["order"].get("status") == "valid":
        log.info("Order already finalized. Next: 08_get_certificate.py")
        return
    csr = work.read_csr()
    client = cli.connect_account(args, work)
    log.info("Finalizing order with %s...", work.path(state.CSR))
    resp = rfc8555.finalize(client, saved["order"]["finalize"], certs.csr_der(csr))
    order = resp.body
    if order.get("status") == "processing":
        order = rfc8555.wait_for_order(client, saved["url"], ("processing",), timeout=args.timeout,
                                       first_wait=args.first_wait if resp.retry_after is None else resp.retry_after)
    work.write_json(state.ORDER, {**saved, "order": order})
    if order.get("status") != "valid":
        raise AcmeError(f"the order is {order.get('status')}, not valid", order.get("error"))
    log.info("Order is valid; certificate at %s. Next: 08_get_certificate.py", order["certificate"])


if __name__ == "__main__":
    p = cli.parser(__doc__, network=True)
    p.add_argument("--timeout", type=float, default=300, metavar="SECONDS",
                   help="give up waiting for issuance after this long (default: %(default)s)")
    p.add_argument("--first-wait", type=float, default=0.5, metavar="SECONDS",
                   help="pause before the first poll when the CA sends no Retry-After (default: %(default)s)")
    cli.run(main, p)
