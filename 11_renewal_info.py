#!/usr/bin/env python3
"""Step 11: ask the CA when to renew the certificate (ARI, RFC 9773).

Computes the certificate's ARI identifier from its authority key identifier and serial
number (§4.1), GETs renewalInfo/<certID> (§4.2: a plain GET with no JWS, since anyone may
ask) and shows the window the CA suggests, with its explanation URL if it gives one. A time
is picked at random inside the window (§4.2) and kept in renewal.json, so later runs agree;
the CA is asked again only after its Retry-After. A CA without renewalInfo in its directory
leaves the client to decide: renew when a third of the lifetime is left (half, for
certificates shorter than 10 days).

With --check the exit status says it, for scripts: 0 renewal is due now, 3 not yet (errors
are still 1 and 2). renew.sh runs this first.

Reads:  cert.pem (or --cert FILE), account.json (the server), session.json, renewal.json
Writes: renewal.json (the decision: window, chosen time, when to ask again)
"""

import datetime
from pathlib import Path

from common import certs, cli, renewal, rfc8555, workdir
from common.cli import log
from common.errors import AcmeError

NOT_DUE = 3


def main(args):
    work = cli.work_dir(args)
    cert = work.read_leaf(args.cert)
    account = work.read_account() if work.exists(workdir.ACCOUNT) else None
    client = cli.connect(args, work, account=account, signing=False)
    now = datetime.datetime.now(datetime.timezone.utc)
    saved = renewal.saved_decision(work, cert)  # renewal.json, if it is about this certificate

    if not client.directory.get("renewalInfo"):
        log.info("The CA offers no renewal information (ARI) in its directory")
        decision = renewal.lifetime_decision(cert)
    elif renewal.asked_recently(saved, now):
        log.info("Asked the CA already; asking again after %s (its Retry-After)", saved.ask_again_after)
        decision = saved
    else:
        cert_id = certs.ari_cert_id(cert)
        log.info("Asking the CA for the renewal window of %s...", cert_id)
        try:
            info, retry_after = rfc8555.renewal_info(client, cert_id)
        except AcmeError as exc:
            if exc.status != 404:  # 404: a certificate the CA keeps no renewal information for
                raise
            log.warning("warning: the CA has no renewal information for this certificate; going by its lifetime")
            decision = renewal.lifetime_decision(cert)
        else:
            try:
                decision = renewal.ari_decision(cert, info, retry_after, saved, now)  # a random time in the window
            except renewal.UnusableWindowError as exc:  # a window that is no answer: nothing of it is kept
                log.warning("warning: %s; going by the certificate's lifetime", exc)
                decision = renewal.lifetime_decision(cert)
    renewal.save(work, decision)  # later runs, from cron, keep to the same time

    if decision.source == "ari":
        log.info("The CA suggests renewing between %s and %s", decision.window_start, decision.window_end)
        if decision.explanation_url:
            log.info("  why: %s", decision.explanation_url)
    else:
        log.info("Going by the certificate's lifetime: renew when a third of it is left (half, if it is "
                 "shorter than 10 days)")
    due = decision.due(now)
    log.info("Renewal time chosen: %s (%s)", decision.renew_at, "due now" if due else "not due yet")
    if due:
        log.info("Next: renew with 03_create_csr.py --names-from-cert, 05_new_order.py --replaces, 06, 07, 08 "
                 "(or renew.sh)")
        return 0
    log.info("Next: nothing until then; let cron or a systemd timer run renew.sh, which asks again")
    return NOT_DUE if args.check else 0


if __name__ == "__main__":
    p = cli.parser(__doc__, network=True)
    p.add_argument("--cert", type=Path, metavar="FILE", help="the certificate to ask about (default: cert.pem)")
    p.add_argument("--check", action="store_true", help="exit 0 if renewal is due now, 3 if not yet")
    cli.run(main, p)
