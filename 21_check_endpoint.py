#!/usr/bin/env python3
"""Step 21: check that a server really serves the new certificate, with its whole chain.

Connects to HOST[:PORT] (default 443) with TLS, sending the name in SNI (RFC 6066 §3), and
takes the chain the server actually sends. HOST may be an IP address (192.0.2.10:8443,
[2001:db8::1]:8443): for a certificate holding that address no SNI is sent, as clients that
connect to an address send none, and the leaf must hold the address. Then compares it with the work dir:
  - the leaf must be cert.pem (same SHA-256 fingerprint); if not, it says what is served instead,
  - the leaf's names must cover the name asked for (a wildcard stands for one label, RFC 6125),
  - every intermediate of chain.pem must be sent, in order, after the leaf: a missing one works
    in a browser that has it cached and fails in most API clients,
  - the chain must lead to a trusted root (--ca-bundle for a private CA, --no-verify to skip),
and shows the days left. --wait asks again until the new certificate shows up (CDNs take minutes).
No ACME request is made.

Reads:  cert.pem, chain.pem
Writes: nothing
"""

import datetime
import functools

from common import certs, cli, names, served_chain, workdir
from common.cli import log


def main(args):
    work = cli.work_dir(args, lock=False)
    leaf = work.read_certificates(workdir.CERT)[0]
    chain = work.read_certificates(workdir.CHAIN)
    target = served_chain.parse_target(args.target)
    name = served_chain.server_name(args.servername, target, leaf)
    roots = None if args.no_verify else served_chain.load_roots(args.ca_bundle)
    fetch = functools.partial(served_chain.fetch_chain, target, name, args.timeout)

    log.info("Connecting to %s (SNI %s)...", target, name or "none: an IP address")
    if args.wait:
        served = served_chain.wait_for(leaf, fetch, args.wait, show=not args.quiet)
    else:
        served = fetch()
    now = datetime.datetime.now(datetime.timezone.utc)
    for line in served_chain.describe_chain(served, now):
        log.info("  %s", line)
    log.debug("  SHA-256 of the leaf sent: %s; of cert.pem: %s", certs.fingerprint(served[0]),
              certs.fingerprint(leaf))

    problems = served_chain.findings(served, leaf, chain, name or target.host, roots, now)
    if problems:
        raise served_chain.EndpointError(f"{target} does not serve the new certificate correctly:", problems)
    trust = f"trusted by {roots.label}" if roots else "not verified (--no-verify)"
    log.info("OK: %s serves cert.pem and its %s, %s", target, names.count(len(chain), "intermediate"), trust)


if __name__ == "__main__":
    p = cli.parser(__doc__, verbose="also show the fingerprints compared")
    p.add_argument("target", metavar="HOST[:PORT]",
                   help="the server to check, e.g. example.com, 192.0.2.7:8443 or [2001:db8::1]:8443")
    p.add_argument("--servername", metavar="NAME",
                   help="the name to ask for in SNI (default: HOST; for an IP address, none if cert.pem holds it, "
                        "else cert.pem's first name)")
    trust = p.add_mutually_exclusive_group()
    trust.add_argument("--ca-bundle", metavar="FILE", help="also trust these root certificates (PEM), e.g. a test CA's")
    trust.add_argument("--no-verify", action="store_true", help="only compare with the work dir; do not verify")
    p.add_argument("--timeout", type=cli.seconds, default=10.0, metavar="SECONDS",
                   help="give up on each connection after this long (default: %(default)s)")
    p.add_argument("--wait", type=cli.seconds, default=0.0, metavar="SECONDS",
                   help="ask again every few seconds, up to this long, until the server sends cert.pem "
                        "(default: %(default)s, ask once)")
    cli.run(main, p)
