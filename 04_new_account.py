#!/usr/bin/env python3
"""Step 4: register the account key with the CA (RFC 8555 §7.3).

Fetches the CA's directory (§7.1.1), the index of its endpoints, then a nonce (§7.2),
then POSTs to newAccount a JWS signed with the account key and carrying its public JWK.
The CA answers 201 with the account URL in Location; for a key it already knows it answers
200 with the same URL (§7.3.1), so running this again is harmless. From here on requests
carry that URL as "kid" instead of the key.

You must agree to the CA's terms of service: without --agree-tos this prints their URL.

Reads:  account.key
Writes: account.json (server, CA bundle, account URL: what later steps need),
        session.json (the cached directory and the next nonce)
"""

import os

from common import cli, names, rfc8555, state
from common.cli import log
from common.errors import UsageError


def main(args):
    work = cli.work_dir(args)
    recorded = work.read_json(state.ACCOUNT) if work.exists(state.ACCOUNT) else None
    client = cli.connect(args, work, account=recorded)
    contacts = [names.contact_uri(e) for e in args.email]

    log.info("Fetching directory %s...", client.directory_url)
    tos = rfc8555.terms_of_service(client)
    if not args.agree_tos:
        where = f"at {tos}" if tos else "(the CA publishes none in its directory)"
        raise UsageError(f"read the CA's terms of service {where}, then run again with --agree-tos")

    log.info("Registering account%s...", f" for {', '.join(args.email)}" if args.email else "")
    resp, created = rfc8555.new_account(client, contacts, agree_tos=True)
    account = {
        "directory_url": client.directory_url,
        "ca_bundle": os.path.abspath(client.ca_bundle) if client.ca_bundle else None,
        "account_url": resp.location,
        "status": resp.body.get("status"),
        "contact": resp.body.get("contact", []),
        "terms_of_service": tos,
    }
    work.write_json(state.ACCOUNT, account)
    log.info("%s: %s", "Account created" if created else "Account already exists for this key", resp.location)
    log.info("Wrote %s", work.path(state.ACCOUNT))


if __name__ == "__main__":
    p = cli.parser(__doc__)
    cli.add_server_options(p, default=None)
    p.add_argument("--agree-tos", action="store_true", help="agree to the CA's terms of service")
    p.add_argument("--email", action="append", default=[], metavar="ADDR",
                   help="contact address for expiry and policy notices; repeat for more")
    cli.run(main, p)
