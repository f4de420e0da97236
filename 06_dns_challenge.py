#!/usr/bin/env python3
"""Step 6: prove control of every name with a DNS TXT record (RFC 8555 §7.5, §8.4).

For each authorization of the order: fetch it; skip it if it is already valid (CAs reuse
recent authorizations); else take its DNS challenge and compute the record. For dns-01:
  _acme-challenge.<name>  TXT  base64url(SHA-256(token "." account-key-thumbprint))
(--challenge dns-account-01 and dns-persist-01 put other records elsewhere; see docs/real-domains.md).
All records are published first, then checked on every authoritative server of their zone
(one propagation wait for all names), then every challenge is answered with POST {}
(§7.5.1), then the order is polled until it is ready (§7.1.6): one order poll instead of one
per authorization. The records are removed afterwards, whether validation worked or not.

DNS cannot prove an IP address (RFC 8738 §7): for an order with one, use
06_http_challenge.py or 06_tls_alpn_challenge.py.

Reads:  order.json, account.json, account.key, session.json
Writes: order.json (the order, now ready), dns-records.json (while records are published)
"""

from common import cli, dns_providers, dns_records, jws, names, rfc8555, validation
from common.challenges import DNS01, DNS_PERSIST01
from common.cli import log
from common.errors import UsageError

STEP = "06_dns_challenge.py"


def main(args):
    work = cli.work_dir(args)
    if not args.cleanup:  # said before DNS or the CA is asked anything
        refuse_addresses(work.read_order())
    provider = dns_providers.from_args(args)
    if args.cleanup:
        dns_records.remove_leftovers(work, provider)
        log.info("Nothing an earlier run published is left.")
        return
    saved = work.read_order()
    if validation.already_proven(saved):
        return
    client = cli.connect_account(args, work)
    dns_records.remove_leftovers(work, provider)
    thumbprint = jws.key_thumbprint(client.key)
    log.debug("Account key thumbprint (RFC 7638): %s", thumbprint)

    urls = saved["order"]["authorizations"]
    log.info("Fetching the order's %s...", names.count(len(urls), "authorization"))
    tasks = []
    for url in urls:
        authz = rfc8555.get_authorization(client, url)
        task = validation.to_prove(saved, url, authz, args.challenge)  # None: valid already
        if task:
            tasks.append(task)

    records = [dns_records.record_for(args.challenge, task, thumbprint, client.kid) for task in tasks]
    records = dns_records.delegated(provider, records)
    persistent = args.challenge == DNS_PERSIST01
    if persistent and args.propagation_check:  # a standing record from an earlier run serves as it is
        records = dns_records.not_yet_published(provider, records)
    with dns_records.published(work, provider, records, persistent=persistent):
        if args.propagation_check:
            dns_records.wait_until_visible(provider, records, args.propagation_timeout)
        client.restart_clock()  # --timeout counts the CA's part; DNS had --propagation-timeout

        validation.note_answered(work, saved, tasks)
        first_wait = args.first_wait if tasks else 0.0
        for task in tasks:
            challenge, retry_after = rfc8555.answer_challenge(client, task.challenge["url"])
            validation.check_answer(task, challenge)
            log.info("Answered %s for %s: the challenge is %s", challenge["type"], task.label, challenge["status"])
            first_wait = max(first_wait, retry_after or 0.0)

        log.info("Waiting for the CA to validate: polling the order...")
        with validation.explaining_timeouts(client, saved):
            order = rfc8555.wait_for_order(client, saved["url"], ("pending",), status=saved["order"]["status"],
                                           first_wait=first_wait,
                                           hint=f"run {STEP} again to keep waiting, or raise --timeout")
    validation.finish(client, work, saved, order)


def refuse_addresses(saved):
    addresses = validation.addresses(saved)
    if addresses:
        mixed = len(addresses) < len(saved["order"]["identifiers"])
        raise UsageError(f"dns-01 cannot prove an IP address ({', '.join(addresses)}): an address has no DNS name "
                         "for the CA to look a TXT record up under (RFC 8738 §7). Use 06_http_challenge.py (port "
                         "80) or 06_tls_alpn_challenge.py (port 443)"
                         + ("; or order the names and the addresses as two certificates" if mixed else ""))


if __name__ == "__main__":
    p = cli.parser(__doc__, network=True)
    p.add_argument("--challenge", choices=dns_records.DNS_CHALLENGES, default=DNS01,
                   help="which DNS challenge to answer (default: %(default)s)")
    p.add_argument("--cleanup", action="store_true",
                   help="only remove the records an interrupted run left (listed in dns-records.json)")
    p.add_argument("--propagation-timeout", type=cli.seconds, default=300.0, metavar="SECONDS",
                   help="give up waiting for the records to show on every authoritative server after this "
                        "long (default: %(default)s)")
    p.add_argument("--no-propagation-check", dest="propagation_check", action="store_false",
                   help="answer the challenges right after publishing, without checking DNS first")
    cli.add_poll_options(p, first_wait=0.25)
    dns_providers.add_arguments(p)
    cli.run(main, p)
