#!/usr/bin/env python3
"""Step 6: prove control of every name with a DNS TXT record (RFC 8555 §7.5, §8.4).

For each authorization of the order: fetch it; skip it if the CA already holds a valid one
(CAs reuse recent authorizations); else pick its dns-01 challenge and compute the record
  _acme-challenge.<name>  TXT  base64url(SHA-256(token "." account-key-thumbprint))
All records are published first (one propagation wait for all names), then every challenge
is answered with POST {} (§7.5.1), then the order is polled until it is ready (§7.1.6): one
order poll instead of one per authorization. The records are removed afterwards, whether
validation worked or not.

Reads:  order.json, account.json, account.key, session.json
Writes: order.json (the order, now ready)
"""

from common import challenges, cli, jws, names, rfc8555, state, validation
from common.cli import log
from common.dns_providers import PROVIDERS, TxtRecord, remove_quietly

STEP = "06_dns_challenge.py"


def main(args):
    work = cli.work_dir(args)
    saved = work.read_order()
    status = saved["order"]["status"]
    if status in ("ready", "valid"):
        after = "07_finalize.py" if status == "ready" else "08_get_certificate.py"
        log.info("Order is already %s. Next: %s", status, after)
        return
    client = cli.connect_account(args, work)
    provider = PROVIDERS[args.provider].from_args(args)
    thumbprint = jws.key_thumbprint(client.key)

    tasks = validation.open_tasks(client, saved, challenges.DNS01)
    records = []
    for task in tasks:
        key_authz = challenges.key_authorization(task.challenge["token"], thumbprint)
        name = task.authz["identifier"]["value"]
        records.append(TxtRecord(challenges.dns01_record_name(name), challenges.dns01_txt_value(key_authz)))

    first_wait = args.first_wait
    if tasks:
        log.info("Publishing %s with %s...", names.count(len(records), "TXT record"), provider.name)
        for record in records:
            log.info("  %s TXT %s", record.name, record.value)
        try:
            provider.publish(records)
            provider.wait_until_visible(records, timeout=args.timeout)
            saved["answered"] = saved.get("answered", []) + [task.challenge["url"] for task in tasks]
            work.write_json(state.ORDER, saved)  # so a re-run knows these were this order's own
            first_wait = validation.answer(client, tasks, first_wait)
            log.info("Waiting for the CA to validate...")
            order = validation.wait_until_ready(client, saved, first_wait, STEP)
        finally:
            log.info("Removing TXT records...")
            remove_quietly(provider, records)
    else:  # every authorization was reused: the order should be ready already
        order = validation.wait_until_ready(client, saved, 0.0, STEP)

    work.write_json(state.ORDER, {**saved, "order": order})
    if order["status"] not in ("ready", "valid"):
        raise rfc8555.order_failure(client, order)
    log.info("Order is %s: every name is proven. Next: 07_finalize.py", order["status"])

if __name__ == "__main__":
    p = cli.parser(__doc__, network=True)
    p.add_argument("--provider", choices=sorted(PROVIDERS), required=True,
                   help="; ".join(f"{name}: {cls.help}" for name, cls in sorted(PROVIDERS.items())))
    cli.add_poll_options(p, first_wait=0.25)
    for provider_class in PROVIDERS.values():
        provider_class.add_arguments(p)
    cli.run(main, p)
