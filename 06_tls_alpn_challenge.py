#!/usr/bin/env python3
"""Step 6 (tls-alpn-01): prove control of every name or address with a TLS handshake on port 443 (RFC 8737).

For each authorization of the order: fetch it; skip it if it is already valid (CAs reuse
recent authorizations); else take its tls-alpn-01 challenge and make a challenge certificate:
self-signed, its one subjectAltName the name (or the IP address, RFC 8738 §6), and the
critical acmeIdentifier extension (1.3.6.1.5.5.7.1.31) holding
  SHA-256(token "." account-key-thumbprint)
This step then answers, on port 443, the TLS handshakes that offer ALPN "acme-tls/1" (which
only an ACME CA sends) with the certificate for the name in their SNI (for an address, its
reverse name: 10.2.0.192.in-addr.arpa for 192.0.2.10), and refuses every other handshake before any
certificate is sent. Then every challenge is answered with POST {} (§7.5.1) and the order is
polled until it is ready (§7.1.6). The server stops whether validation worked or not.

The CA connects to port 443 of every name from the Internet, often from several places at
once: nothing else may listen there during the run, or a web server already on 443 must pass
the acme-tls/1 handshakes on to this step (--bind 127.0.0.1 --tls-port 10443; for nginx see
docs/real-domains.md or tools/nginx_tls_alpn.py). tls-alpn-01 cannot prove a wildcard
(*.example.com); 06_dns_challenge.py can. -v shows what each challenge certificate holds.

Reads:  order.json, account.json, account.key, session.json
Writes: order.json (the order, now ready)
"""

from common import challenges, cli, jws, names, rfc8555, tls_alpn, validation
from common.cli import log

STEP = "06_tls_alpn_challenge.py"


def main(args):
    work = cli.work_dir(args)
    saved = work.read_order()
    if validation.already_proven(saved):
        return
    validation.refuse_wildcards(saved, "tls-alpn-01", "the CA would have to connect to it (RFC 8737 §3)")

    # The server listens first: a port in use fails before any request.
    with tls_alpn.server(args.tls_port, args.bind) as server:
        client = cli.connect_account(args, work)
        thumbprint = jws.key_thumbprint(client.key)
        log.debug("Account key thumbprint (RFC 7638): %s", thumbprint)

        urls = saved["order"]["authorizations"]
        log.info("Fetching the order's %s...", names.count(len(urls), "authorization"))
        tasks = []
        for url in urls:
            authz = rfc8555.get_authorization(client, url)
            task = validation.to_prove(saved, url, authz, tls_alpn.TLS_ALPN01)  # None: valid already
            if task:
                tasks.append(task)

        certificates = []
        for task in tasks:
            key_authz = challenges.key_authorization(task.challenge["token"], thumbprint)
            certificate = tls_alpn.challenge_certificate(task.authz["identifier"], key_authz)
            for line in certificate.describe():
                log.debug("  %s", line)
            certificates.append(certificate)
        if tasks:
            server.publish(certificates)

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


if __name__ == "__main__":
    p = cli.parser(__doc__, network=True)
    p.add_argument("--tls-port", type=cli.port, default=tls_alpn.TLS_PORT, metavar="PORT",
                   help="the port to listen on (default: %(default)s, where the CA comes; another one only behind "
                        "a web server or port forward that passes acme-tls/1 handshakes on from 443)")
    p.add_argument("--bind", metavar="ADDR", help="listen on this address only (default: all)")
    cli.add_poll_options(p, first_wait=0.25)
    cli.run(main, p)
