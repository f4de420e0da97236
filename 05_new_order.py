#!/usr/bin/env python3
"""Step 5: order a certificate for the names in the CSR (RFC 8555 §7.4).

POSTs the names to newOrder. The CA answers with the order: its status, one authorization
URL per name (each saying how to prove control of that name, §7.5) and the URL to send the
CSR to once every name is proven. The order's own URL comes in the Location header.

Two optional members shape the order. "profile" picks one of the certificate profiles the
CA lists in its directory (draft-ietf-acme-profiles), e.g. Let's Encrypt's 6-day
"shortlived"; --list-profiles shows them. An order with an IP address (RFC 8738) and no
--profile gets "shortlived" when the CA offers it: Let's Encrypt issues address certificates
under that profile only. "replaces" names the certificate this order renews
by its ARI identifier (RFC 9773 §5), so the CA can link the two (Let's Encrypt then exempts
the renewal from rate limits).

Reads:  cert.csr, account.json, account.key, session.json; cert.pem with --replaces
Writes: order.json (the order's URL and content)
"""

from common import acme_servers, certs, cli, dns_providers, names, rfc8555, workdir
from common.cli import log
from common.errors import UsageError

SHORTLIVED = "shortlived"  # Let's Encrypt's 6-day profile, the only one it issues IP address certificates under


def main(args):
    work = cli.work_dir(args)
    if args.list_profiles:
        return _list_profiles(cli.connect_account(args, work))
    domains = certs.san_identifiers(work.read_csr())  # local files first: a missing one costs no request
    replaced = work.read_leaf(args.replaces) if args.replaces is not None else None  # alone: cert.pem
    client = cli.connect_account(args, work)
    offered = rfc8555.profiles(client)
    if args.profile and args.profile not in offered:
        listed = "; ".join(f"{name} ({description})" for name, description in offered.items()) or "none"
        raise UsageError(f"this CA offers no profile {args.profile!r}; it offers: {listed}")
    profile = args.profile
    addresses = [d for d in domains if names.is_ip(d)]
    if addresses and not profile and SHORTLIVED in offered:
        profile = SHORTLIVED
        log.info("Asking for profile %s: the order holds an IP address, and Let's Encrypt issues address "
                 "certificates (6 days) under that profile only (--profile NAME to choose another)", profile)
    replaces = None
    if replaced is not None and not client.directory.get("renewalInfo"):
        log.warning("warning: this CA has no renewalInfo (ARI), so the order does not say what it replaces")
    elif replaced is not None:  # only a CA with ARI needs the identifier (and the certificate's AKI)
        replaces = certs.ari_cert_id(replaced)
    url, order = rfc8555.new_order(client, domains, profile=profile, replaces=replaces)
    work.write_json(workdir.ORDER, {"url": url, "order": order})
    log.info("Creating order for %s%s... %s: %s", names.describe_count(domains),
             f" with profile {profile}" if profile else "", order["status"], url)
    if replaces:
        log.info("  replacing the certificate %s", replaces)
    if order["status"] == "ready":  # every authorization reused: nothing left to prove
        log.info("Next: 07_finalize.py (the CA reused earlier authorizations for every name)")
    elif addresses and acme_servers.is_local_ca(client.directory_url):  # it validates on ports of its own
        log.info("Next: 06_http_challenge.py --standalone --http-port %d, or 06_tls_alpn_challenge.py --tls-port %d "
                 "(dns-01 cannot prove an IP address)", acme_servers.challenge_port(client.directory_url, "http-01"),
                 acme_servers.challenge_port(client.directory_url, "tls-alpn-01"))
    elif addresses:  # DNS cannot prove an address (RFC 8738 §7)
        log.info("Next: 06_http_challenge.py --webroot DIR (or --standalone) for a web server on port 80, or "
                 "06_tls_alpn_challenge.py on port 443; dns-01 cannot prove an IP address")
    elif acme_servers.is_local_ca(client.directory_url):  # its mock DNS is where Pebble looks
        log.info("Next: 06_dns_challenge.py --provider challtestsrv")
    else:
        providers = ", ".join(sorted(set(dns_providers.PROVIDERS) - {"challtestsrv"}))  # the local CA's only
        log.info("Next: 06_dns_challenge.py --provider NAME, NAME saying where your DNS is (%s); "
                 "or 06_http_challenge.py --webroot DIR (or --standalone) for a web server on port 80", providers)


def _list_profiles(client):
    offered = rfc8555.profiles(client)
    for name, description in offered.items():
        print(f"{name}: {description}")
    log.info("%s offered by %s", names.count(len(offered), "profile"), client.directory_url)

if __name__ == "__main__":
    p = cli.parser(__doc__, network=True)
    p.add_argument("--profile", metavar="NAME", help="the certificate profile to ask for (see --list-profiles)")
    p.add_argument("--list-profiles", action="store_true", help="list the CA's profiles and exit")
    p.add_argument("--replaces", nargs="?", const="", metavar="CERT",
                   help="this order renews CERT (default: the work dir's cert.pem); sends its ARI identifier")
    cli.run(main, p)
