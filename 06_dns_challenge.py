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

from common import challenges, cli, jws, names, rfc8555, state
from common.cli import log
from common.dns_providers import PROVIDERS, TxtRecord, remove_quietly
from common.errors import AcmeError


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

    todo = []  # (name, challenge, record) for every authorization still to prove
    for url in saved["order"]["authorizations"]:
        authz = rfc8555.get_authorization(client, url)
        name = authz["identifier"]["value"]
        label = f"*.{name}" if authz.get("wildcard") else name
        if authz["status"] == "valid":
            log.info("%s: already valid (the CA reused an earlier authorization)", label)
            continue
        if authz["status"] != "pending":
            raise AcmeError(f"the authorization for {label} is {authz['status']}: run 05_new_order.py for a new order")
        challenge = rfc8555.find_challenge(authz, challenges.DNS01)
        key_authz = challenges.key_authorization(challenge["token"], thumbprint)
        record = TxtRecord(challenges.dns01_record_name(name), challenges.dns01_txt_value(key_authz))
        todo.append((label, challenge, record))

    order = saved["order"]
    if todo:
        records = [record for _, _, record in todo]
        log.info("Publishing %s with %s...", names.count(len(records), "TXT record"), provider.name)
        try:
            provider.publish(records)
            provider.wait_until_visible(records, timeout=args.timeout)
            first_wait = args.first_wait
            for label, challenge, record in todo:
                resp = rfc8555.answer_challenge(client, challenge["url"])
                first_wait = max(first_wait, resp.retry_after or 0)
                log.info("Answered dns-01 for %s (%s TXT %s)", label, record.name, record.value)
            log.info("Waiting for the CA to validate...")
            order = rfc8555.wait_for_order(client, saved["url"], ("pending",), timeout=args.timeout,
                                           first_wait=first_wait)
        finally:
            log.info("Removing TXT records...")
            remove_quietly(provider, records)
    else:  # every authorization was reused: the order should be ready already
        order = rfc8555.wait_for_order(client, saved["url"], ("pending",), timeout=args.timeout)

    work.write_json(state.ORDER, {**saved, "order": order})
    if order.get("status") not in ("ready", "valid"):
        raise rfc8555.order_failure(client, order)
    log.info("Order is %s: every name is proven. Next: 07_finalize.py", order["status"])


if __name__ == "__main__":
    p = cli.parser(__doc__, network=True)
    p.add_argument("--provider", choices=sorted(PROVIDERS), required=True,
                   help="; ".join(f"{name}: {cls.help}" for name, cls in sorted(PROVIDERS.items())))
    cli.add_poll_options(p, waiting_for="DNS and validation (each)", first_wait=0.25)
    for provider_class in PROVIDERS.values():
        provider_class.add_arguments(p)
    cli.run(main, p)
