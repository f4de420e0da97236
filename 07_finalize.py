#!/usr/bin/env python3
"""Step 7: finalize the order by sending the CSR (RFC 8555 §7.4).

Once the order is ready, POST the CSR (DER, base64url) to the order's finalize URL. The CA
checks that the CSR names exactly the order's names, then issues: the order goes from
processing to valid and gains a "certificate" URL. Polling honours Retry-After (§7.4, §8.2):
seconds or an HTTP date.

Reads:  order.json, cert.csr, account.json, account.key, session.json
Writes: order.json (the order, now valid, with its certificate URL)
"""

from common import certs, cli, rfc8555, workdir
from common.cli import log
from common.errors import AcmeError, UsageError

# Order states (RFC 8555 §7.1.6) in which finalizing cannot work yet, and what to do instead.
NOT_YET = {
    "pending": "prove the names first with 06_dns_challenge.py, 06_http_challenge.py or 06_tls_alpn_challenge.py",
    "invalid": "it cannot be finalized; start a new order with 05_new_order.py",
}
RESUME = ("order.json keeps the order as processing: run 07_finalize.py again to keep waiting "
          "(it polls the order; the CSR is not sent twice)")


def main(args):
    work = cli.work_dir(args)
    saved = work.read_order()
    status = saved["order"]["status"]
    if status == "valid":
        log.info("Order already finalized. Next: 08_get_certificate.py")
        return
    if status in NOT_YET:
        raise UsageError(f"the order is {status}: {NOT_YET[status]}")
    csr = work.read_csr()
    client = cli.connect_account(args, work)
    first_wait = args.first_wait
    if status == "ready":
        log.info("Finalizing order with %s...", work.path(workdir.CSR))
        order, retry_after = rfc8555.finalize(client, saved["order"]["finalize"], certs.csr_der(csr))
        work.write_json(workdir.ORDER, {**saved, "order": order})  # a re-run now polls instead of finalizing again
        first_wait = max(first_wait, retry_after or 0.0)
    else:  # "processing": finalized by an earlier run that stopped before the end
        order = saved["order"]
        log.info("Order is processing (finalized by an earlier run); waiting for the certificate...")
    if order["status"] == "processing":
        order = rfc8555.wait_for_order(client, saved["url"], ("processing",), status="processing",
                                       first_wait=first_wait, hint=RESUME)
        work.write_json(workdir.ORDER, {**saved, "order": order})
    if order["status"] != "valid":
        raise AcmeError(f"the order is {order['status']}, not valid", order.get("error"))
    log.info("Order is valid; certificate at %s. Next: 08_get_certificate.py", order["certificate"])

if __name__ == "__main__":
    p = cli.parser(__doc__, network=True)
    cli.add_poll_options(p, first_wait=0.5)
    cli.run(main, p)
