#!/usr/bin/env python3
"""Step 4: register the account key with the CA (RFC 8555 §7.3).

Fetches the CA's directory (§7.1.1), the index of its endpoints, then a nonce (§7.2),
then POSTs to newAccount a JWS signed with the account key and carrying its public JWK.
The CA answers 201 with the account URL in Location; for a key it already knows it answers
200 with the same URL (§7.3.1). From here on requests carry that URL as "kid" instead of
the key.

You must agree to the CA's terms of service: without --agree-tos this prints their URL.

CAs such as ZeroSSL and Google Trust Services only take accounts bound to an account you
hold with them (External Account Binding, §7.3.4): their directory says
"externalAccountRequired", and they give you a key id and an HMAC key. Pass them with
--eab-kid KID and --eab-hmac-key-file FILE (or --eab-hmac-key-env VAR): the HMAC key never
goes on the command line, where other users can read it. The binding is a second JWS inside
the payload, MACed (HS256) with that key over the account's public key.

Running this again for the account account.json records (same server, same key) registers
nothing: it looks the account up by its key (onlyReturnExisting, §7.3.1), with no need to
agree to the terms again, and new --email addresses become an account update (§7.3.2). With
EAB it sends nothing at all: ZeroSSL and Sectigo answer a repeated EAB registration with a
second account, so account.json is the record that counts (10_account_info.py shows it).

Reads:  account.key; account.json from an earlier run, if any (its server, CA bundle, account)
Writes: account.json (server, CA bundle, account URL: what later steps need),
        session.json (the cached directory and the next nonce)
"""

from common import account, cli, names, rfc8555, rollover, workdir
from common.cli import log
from common.errors import UsageError


def main(args):
    work = cli.work_dir(args)
    if work.exists(rollover.NEW_ACCOUNT_KEY):  # registering account.key now could open a second account
        raise UsageError(rollover.INTERRUPTED)
    contacts = [names.contact_uri(e) for e in args.email]
    eab = account.eab_credentials(args.eab_kid, args.eab_hmac_key_file, args.eab_hmac_key_env)
    earlier = account.earlier_record(work)  # account.json from an earlier run: its server, CA bundle, account

    client = cli.connect(args, work, account=earlier)
    log.info("Server: %s", client.directory_url)
    tos = rfc8555.terms_of_service(client)  # the directory's "meta" (§7.1.1): the directory is fetched here

    found = None
    if account.records_this_key(earlier, client):  # an earlier run registered this key on this server
        account.refuse_deactivated(earlier)
        if eab:  # ZeroSSL and Sectigo would open a second account: account.json is the record that counts
            account.not_registering_again(earlier)
            return
        log.info("Looking the account up by its key (newAccount with onlyReturnExisting)...")
        with account.unless_forgotten():  # needs neither the terms nor the binding again
            found = rfc8555.find_account(client)
    if found:
        account_url, acct = found
        log.info("Account already exists for this key: %s", account_url)
    else:
        account.check_can_register(client, eab, agreed=args.agree_tos, terms=tos)
        log.info("Registering account%s%s...", f" for {', '.join(args.email)}" if args.email else "",
                 f" bound to external account {eab[0]}" if eab else "")
        with account.explaining_refusal(client, eab):
            account_url, acct, created = rfc8555.new_account(client, contacts, agree_tos=True, eab=eab)
        log.info("%s: %s", "Account created" if created else "Account already exists for this key", account_url)

    if contacts and sorted(contacts) != sorted(acct.get("contact") or []):
        log.info("Updating its contacts to %s...", ", ".join(args.email))
        acct = rfc8555.update_account(client, {"contact": contacts})

    work.write_json(workdir.ACCOUNT, account.record(client, account_url, acct, tos))
    log.info("Wrote %s. Next: 05_new_order.py", work.path(workdir.ACCOUNT))


if __name__ == "__main__":
    p = cli.parser(__doc__, network=True)
    p.add_argument("--agree-tos", action="store_true", help="agree to the CA's terms of service")
    p.add_argument("--email", action="append", default=[], metavar="ADDR",
                   help="contact address for expiry and policy notices; repeat for more")
    eab = p.add_argument_group("External Account Binding (RFC 8555 §7.3.4), for CAs that require it")
    eab.add_argument("--eab-kid", metavar="KID", help="the key id the CA gave you with the HMAC key")
    key = eab.add_mutually_exclusive_group()
    key.add_argument("--eab-hmac-key-file", metavar="FILE",
                     help="file whose first line is the HMAC key, base64url as the CA shows it")
    key.add_argument("--eab-hmac-key-env", metavar="VAR",
                     help="environment variable holding the HMAC key (never put the key itself on the command line)")
    cli.run(main, p)
