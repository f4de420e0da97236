#!/usr/bin/env python3
"""Step 10: look the account up by its key, show it, change its contacts (RFC 8555 §7.3.1-7.3.3).

The key is the account: a POST to newAccount with {"onlyReturnExisting": true}, signed with
the key's own JWK, returns the account URL in Location and creates nothing (§7.3.1). A key
the CA does not know gets accountDoesNotExist. That is the way back to an account whose
account.json was lost: this step then writes a new one. Then a POST-as-GET of the account
URL (§6.3) shows what the CA holds: the status (valid, deactivated or revoked, §7.1.2), the
contacts and the URL of the account's orders list.

--email ADDR (repeatable) replaces the contacts and --no-email removes them all: a POST of
{"contact": [...]} to the account URL (§7.3.2). The terms of service were agreed to when the
account was created and need no second agreement.

Reads:  account.key; account.json if there is one (its server, CA bundle and account URL)
Writes: account.json (created if missing; status and contacts refreshed),
        session.json (the cached directory and the next nonce)
"""

from common import account, cli, jws, keys, names, rfc8555, workdir
from common.cli import log


def main(args):
    work = cli.work_dir(args)
    contacts = [names.contact_uri(e) for e in args.email]
    recorded = work.read_account() if work.exists(workdir.ACCOUNT) else None
    client = cli.connect(args, work, account=recorded)
    ours = client.kid is not None  # account.json is about this server: check it, and keep it up to date
    if ours:
        cli.check_account(work, recorded, client)
    log.info("Server: %s", client.directory_url)

    log.info("Looking up the account of %s by its key (onlyReturnExisting)...", work.path(workdir.ACCOUNT_KEY))
    account_url, _ = rfc8555.find_account(client)
    log.info("Account: %s", account_url)
    if ours and account_url != recorded["account_url"]:
        log.warning("warning: account.json recorded %s; this key's account is the one above", recorded["account_url"])

    if contacts or args.no_email:
        change = f"Replacing its contacts with {', '.join(args.email)}" if contacts else "Removing its contacts"
        log.info("%s...", change)
        acct = rfc8555.update_account(client, {"contact": contacts})
    else:
        acct = rfc8555.get_account(client)  # POST-as-GET: reading an account needs its key too
    log.info("  status:   %s", acct.get("status", "(not given)"))
    log.info("  contact:  %s", ", ".join(acct.get("contact") or []) or "none")
    log.info("  orders:   %s", acct.get("orders", "(not given)"))
    log.info("  key:      %s, thumbprint %s", keys.describe_key(client.key), jws.key_thumbprint(client.key))

    if recorded and not ours:
        log.warning("warning: account.json is about %s, so it was left as it is", recorded["directory_url"])
        return
    terms = recorded.get("terms_of_service") if recorded else rfc8555.terms_of_service(client)
    work.write_json(workdir.ACCOUNT, account.record(client, account_url, acct, terms))
    log.info("%s %s. Next: 05_new_order.py to order a certificate",
             "Updated" if recorded else "Wrote", work.path(workdir.ACCOUNT))


if __name__ == "__main__":
    p = cli.parser(__doc__, network=True)
    contact = p.add_mutually_exclusive_group()
    contact.add_argument("--email", action="append", default=[], metavar="ADDR",
                         help="replace the account's contacts with this address; repeat for more")
    contact.add_argument("--no-email", action="store_true", help="remove every contact from the account")
    cli.run(main, p)
