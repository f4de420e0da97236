#!/usr/bin/env python3
"""Step 4: register the account key with the CA (RFC 8555 §7.3).

Fetches the CA's directory (§7.1.1), the index of its endpoints, then a nonce (§7.2),
then POSTs to newAccount a JWS signed with the account key and carrying its public JWK.
The CA answers 201 with the account URL in Location; for a key it already knows it answers
200 with the same URL (§7.3.1), so running this again is harmless (new --email addresses
are then sent as an account update, §7.3.2). From here on requests carry that URL as "kid"
instead of the key.

You must agree to the CA's terms of service: without --agree-tos this prints their URL.

Reads:  account.key; account.json from an earlier run, if any (its server and CA bundle)
Writes: account.json (server, CA bundle, account URL: what later steps need),
        session.json (the cached directory and the next nonce)
"""

import os

from common import cli, jws, names, rfc8555, state
from common.cli import log
from common.errors import UsageError


def main(args):
    work = cli.work_dir(args)
    contacts = [names.contact_uri(e) for e in args.email]
    client = cli.connect(args, work, account=_earlier_account(work))

    log.info("Server: %s", client.directory_url)
    tos = rfc8555.terms_of_service(client)
    if not args.agree_tos:
        where = f"at {tos}" if tos else "(the CA publishes none in its directory)"
        raise UsageError(f"read the CA's terms of service {where}, then run again with --agree-tos")

    log.info("Registering account%s...", f" for {', '.join(args.email)}" if args.email else "")
    account_url, account, created = rfc8555.new_account(client, contacts, agree_tos=True)
    log.info("%s: %s", "Account created" if created else "Account already exists for this key", account_url)
    if not created and contacts and sorted(contacts) != sorted(account.get("contact") or []):
        log.info("Updating its contacts to %s...", ", ".join(args.email))
        account = rfc8555.update_account(client, {"contact": contacts})

    work.write_json(state.ACCOUNT, {
        "directory_url": client.directory_url,
        "ca_bundle": os.path.abspath(client.ca_bundle) if client.ca_bundle else None,
        "account_url": account_url,
        "key_thumbprint": jws.key_thumbprint(client.key),  # later steps check account.key still matches
        "status": account.get("status"),
        "contact": account.get("contact", []),
        "terms_of_service": tos,
    })
    log.info("Wrote %s", work.path(state.ACCOUNT))


def _earlier_account(work):
    """account.json from an earlier run, for its server and CA bundle; a damaged one gets replaced."""
    if not work.exists(state.ACCOUNT):
        return None
    try:
        return work.read_account()
    except UsageError:
        log.warning("warning: %s is damaged; this run writes a new one", work.path(state.ACCOUNT))
        return None


if __name__ == "__main__":
    p = cli.parser(__doc__)
    cli.add_server_options(p)
    p.add_argument("--agree-tos", action="store_true", help="agree to the CA's terms of service")
    p.add_argument("--email", action="append", default=[], metavar="ADDR",
                   help="contact address for expiry and policy notices; repeat for more")
    cli.run(main, p)
