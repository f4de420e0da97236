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
from common.errors import AcmeError, UsageError


def main(args):
    work = cli.work_dir(args)
    if work.exists(rollover.NEW_ACCOUNT_KEY):  # registering account.key now could open a second account
        raise UsageError(rollover.INTERRUPTED)
    contacts = [names.contact_uri(e) for e in args.email]
    eab = account.eab_credentials(args.eab_kid, args.eab_hmac_key_file, args.eab_hmac_key_env)
    earlier = _earlier_account(work)
    client = cli.connect(args, work, account=earlier)
    log.info("Server: %s", client.directory_url)
    tos = rfc8555.terms_of_service(client)

    found = None
    if account.records_this_key(earlier, client):
        account.refuse_deactivated(earlier)
        if eab:  # ZeroSSL and Sectigo would open a second account: account.json is the record that counts
            log.info("account.json already records this key's account on this server: %s", earlier["account_url"])
            log.info("Not registering again: a repeated registration with EAB opens a second account at ZeroSSL "
                     "and Sectigo. Next: 10_account_info.py shows the account (--email changes its contacts)")
            return
        found = _look_up(client)  # by the key alone: needs neither the terms nor the binding again
    if found:
        account_url, acct = found
        log.info("Account already exists for this key: %s", account_url)
    else:
        account_url, acct = _register(args, client, contacts, eab, tos)

    if contacts and sorted(contacts) != sorted(acct.get("contact") or []):
        log.info("Updating its contacts to %s...", ", ".join(args.email))
        acct = rfc8555.update_account(client, {"contact": contacts})

    work.write_json(workdir.ACCOUNT, account.record(client, account_url, acct, tos))
    log.info("Wrote %s. Next: 05_new_order.py", work.path(workdir.ACCOUNT))


def _earlier_account(work):
    """account.json from an earlier run, for its server and CA bundle; a damaged one gets replaced."""
    if not work.exists(workdir.ACCOUNT):
        return None
    try:
        return work.read_account()
    except UsageError:
        log.warning("warning: %s is damaged; this run writes a new one", work.path(workdir.ACCOUNT))
        return None


def _look_up(client):
    """The recorded account, found by its key alone (§7.3.1); None if the CA has forgotten it (a new Pebble)."""
    try:
        return rfc8555.find_account(client)
    except AcmeError as exc:
        if not exc.is_type("accountDoesNotExist"):
            raise
    log.warning("warning: the CA no longer knows the account account.json records; registering the key again")
    return None


def _register(args, client, contacts, eab, tos):
    """newAccount (§7.3), once the terms are agreed to and any binding the CA requires is given."""
    if account.external_account_required(client) and not eab:
        raise UsageError(account.eab_missing(client.directory_url))
    if not args.agree_tos:
        where = f"at {tos}" if tos else "(the CA publishes none in its directory)"
        raise UsageError(f"read the CA's terms of service {where}, then run again with --agree-tos")
    log.info("Registering account%s%s...", f" for {', '.join(args.email)}" if args.email else "",
             f" bound to external account {eab[0]}" if eab else "")
    try:
        account_url, acct, created = rfc8555.new_account(client, contacts, agree_tos=True, eab=eab)
    except AcmeError as exc:  # the CA's refusal of a missing or wrong binding, explained
        if exc.is_type("externalAccountRequired"):
            raise AcmeError(f"{exc} ({account.eab_missing(client.directory_url)})", exc.problem,
                            status=exc.status) from None
        if eab and exc.status == 403 and not exc.deactivated():
            raise AcmeError(f"{exc}: the CA refused the External Account Binding; check that --eab-kid and the "
                            "HMAC key are the pair the CA gave you, and still unused or unexpired", exc.problem,
                            status=exc.status) from None
        raise
    log.info("%s: %s", "Account created" if created else "Account already exists for this key", account_url)
    return account_url, acct


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
