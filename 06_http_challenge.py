#!/usr/bin/env python3
"""Step 6 (http-01): prove control of every name with a file on its web server (RFC 8555 §8.3).

For each authorization of the order: fetch it; skip it if it is already valid (CAs reuse
recent authorizations); else take its http-01 challenge and serve the key authorization
  http://<name>/.well-known/acme-challenge/<token>  ->  token "." account-key-thumbprint
(an IP address is proven the same way, RFC 8738 §4: http://192.0.2.10/..., http://[2001:db8::1]/...)
either as a file in the document root of the web server you run (--webroot DIR), or from a
small HTTP server this step runs itself while validation lasts (--standalone). Each name that
resolves from here is fetched once first, as the CA will fetch it (--no-self-check skips
that). Then every challenge is answered with POST {} (§7.5.1) and the order is polled until
it is ready (§7.1.6). The files are removed, or the server stopped, whether validation worked
or not.

The CA fetches port 80 of every name from the Internet, often from several places, and
follows redirects: the web server must be reachable from outside for each name. http-01
cannot prove a wildcard (*.example.com); 06_dns_challenge.py can.

Reads:  order.json, account.json, account.key, session.json
Writes: order.json (the order, now ready); with --webroot, DIR/.well-known/acme-challenge/<token>
        while the CA validates
"""

from pathlib import Path

from common import acme_servers, challenges, cli, http01, jws, names, rfc8555, validation
from common.cli import log
from common.errors import UsageError

STEP = "06_http_challenge.py"


def main(args):
    work = cli.work_dir(args)
    saved = work.read_order()
    if validation.already_proven(saved):
        return
    validation.refuse_wildcards(saved, "http-01", "a web server answers for one name only")

    # The server or the webroot is set up first: a port in use fails before any request.
    with site_from_args(args) as site:
        client = cli.connect_account(args, work)
        thumbprint = jws.key_thumbprint(client.key)
        log.debug("Account key thumbprint (RFC 7638): %s", thumbprint)

        urls = saved["order"]["authorizations"]
        log.info("Fetching the order's %s...", names.count(len(urls), "authorization"))
        tasks = []
        for url in urls:
            authz = rfc8555.get_authorization(client, url)
            task = validation.to_prove(saved, url, authz, challenges.HTTP01)  # None: valid already
            if task:
                tasks.append(task)

        key_authzs = {}
        for task in tasks:
            token = task.challenge["token"]
            key_authzs[token] = challenges.key_authorization(token, thumbprint)
            log.debug("  %s: file contents, the key authorization (token \".\" thumbprint): %s",
                      task.label, key_authzs[token])
        if tasks:
            site.publish(key_authzs)
        if args.self_check:
            port = acme_servers.challenge_port(client.directory_url, "http-01")  # 80; a test CA may use another
            for task in tasks:
                token = task.challenge["token"]
                http01.self_check(task.domain, token, key_authzs[token], port=port)

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


def site_from_args(args):
    """--webroot DIR, or --standalone on --http-port of --bind."""
    if args.webroot:
        if args.http_port is not None or args.bind is not None:
            raise UsageError("--http-port and --bind go with --standalone, not --webroot")
        return http01.webroot(args.webroot, follow_links=args.follow_webroot_links)
    if args.follow_webroot_links:
        raise UsageError("--follow-webroot-links goes with --webroot")
    return http01.standalone(args.http_port or http01.HTTP_PORT, args.bind)


if __name__ == "__main__":
    p = cli.parser(__doc__, network=True)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--webroot", type=Path, metavar="DIR",
                      help="write the files under DIR, the document root your web server serves on port 80")
    mode.add_argument("--standalone", action="store_true",
                      help="serve the files from this step itself; nothing else may listen on the port")
    p.add_argument("--http-port", type=cli.port, metavar="PORT",
                   help="with --standalone: the port to listen on (default: 80, where the CA comes; another one "
                        "only behind a port forward from 80)")
    p.add_argument("--bind", metavar="ADDR", help="with --standalone: listen on this address only (default: all)")
    p.add_argument("--follow-webroot-links", action="store_true",
                   help="with --webroot: write even where DIR/.well-known or its acme-challenge is a link (a "
                        "challenge directory shared between sites on purpose); refused without this")
    p.add_argument("--no-self-check", dest="self_check", action="store_false",
                   help="answer the challenges without first fetching each URL as the CA will")
    cli.add_poll_options(p, first_wait=0.25)
    cli.run(main, p)
