#!/usr/bin/env python3
"""Step 3: create the certificate signing request (CSR).

The CSR names the domains the certificate is for and carries the certificate key's public
half, signed with its private half to prove possession (RFC 2986). The CA reads the names
from it at finalization (RFC 8555 §7.4), and step 5 orders exactly those names.

Names are lowercased and de-duplicated; internationalized names become A-labels
(bücher.example -> xn--bcher-kva.example); *.example.com asks for a wildcard. An IP address
(-d 192.0.2.10, -d 2001:db8::1) goes in as an iPAddress entry (RFC 8738), IPv6 in its
canonical RFC 5952 text; never as a DNS name, and never as the common name.

Reads:  cert.key; cert.pem with --names-from-cert (a renewal asks for the same names)
Writes: cert.csr (PEM)
"""

import ipaddress

from common import acme_servers, certs, cli, keys, names, workdir
from common.cli import log
from common.errors import UsageError


def main(args):
    work = cli.work_dir(args)
    if args.names_from_cert is not None:  # a renewal: the names of the certificate it replaces
        args.domains = certs.san_identifiers(work.read_leaf(args.names_from_cert))
    domains = names.normalize_names(args.domains)
    key = work.read_key(workdir.CERT_KEY)
    if work.exists(workdir.ACCOUNT_KEY) and keys.same_public_key(key, work.read_key(workdir.ACCOUNT_KEY)):
        raise UsageError("cert.key is the account key: run 02_create_cert_key.py --force for a separate key")
    log.info("Creating CSR for %s", names.describe_names(domains))
    for address in (d for d in domains if names.is_ip(d) and not ipaddress.ip_address(d).is_global):
        log.warning("warning: %s is not a public address: public CAs issue certificates for public ones only", address)
    if len(domains) > names.LETSENCRYPT_MAX_NAMES:
        log.warning("warning: Let's Encrypt takes at most %d names per certificate", names.LETSENCRYPT_MAX_NAMES)
    csr = certs.build_csr(key, domains)
    work.write_bytes(workdir.CSR, certs.csr_pem(csr))
    for line in certs.describe_csr(csr):
        log.debug("  %s", line)
    log.info("Wrote %s", work.path(workdir.CSR))
    if work.exists(workdir.ACCOUNT):  # the account, and the server it is on, are known already
        log.info("Next: 05_new_order.py")
        return
    server = acme_servers.first_server_option()  # the local test CA while it runs, else staging unless chosen
    log.info("Next: %s", " ".join(filter(None, ("04_new_account.py", server, "--agree-tos"))))
    if server == f"--server {acme_servers.DEFAULT_SERVER}":
        log.info("  (staging is Let's Encrypt's test CA; --server production for trusted certificates, "
                 "--server pebble for the local test CA)")


if __name__ == "__main__":
    p = cli.parser(__doc__)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("-d", "--domain", dest="domains", action="append", metavar="NAME",
                       help="a name or IP address for the certificate; repeat for more (the first name becomes the "
                            "common name)")
    which.add_argument("--names-from-cert", nargs="?", const="", metavar="CERT",
                       help="the names of an existing certificate, for a renewal (default: the work dir's cert.pem)")
    cli.run(main, p)
