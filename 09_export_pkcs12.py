#!/usr/bin/env python3
"""Step 9: bundle key and certificate as PKCS#12 (.pfx, RFC 7292) for Windows and IIS.

IIS, Azure and many Windows tools import a certificate only together with its key, as one
password-protected .pfx. The default encryption (AES-256, SHA-256 MAC) needs Windows
Server 2019 / Windows 10 1709 or later; --legacy uses 3DES with a SHA-1 MAC for Windows
Server 2016 and older. The password comes from --password-file, --password-env or a prompt,
never from the command line, and is never printed.

Next to the .pfx goes install-iis.ps1, a PowerShell script for the Windows server: it imports
the .pfx into Cert:\\LocalMachine\\WebHosting and gives every name of the certificate an HTTPS
binding with SNI in IIS (or, with -CentralCertStore, fills IIS's Central Certificate Store);
every IP address of the certificate (RFC 8738) a binding on that address, without SNI.
-v shows the algorithms the written .pfx really uses, read back from the file.

Reads:  cert.key, cert.pem, chain.pem
Writes: certificate.pfx (mode 0600: it holds the private key; kept unless --force),
        install-iis.ps1 (0644; written again with every new .pfx)
"""

from common import acme_servers, certs, cli, iis, keys, names, pkcs12, workdir
from common.cli import log
from common.errors import UsageError


def main(args):
    work = cli.work_dir(args)
    key = work.read_key(workdir.CERT_KEY)
    leaf = work.read_certificates(workdir.CERT)[0]
    chain = work.read_certificates(workdir.CHAIN)
    if not keys.same_public_key(leaf, key):
        raise UsageError("cert.pem is not for cert.key: run 08_get_certificate.py again")
    if not args.force:
        work.refuse_existing(workdir.PFX)
    script = iis.install_script(leaf, site=args.iis_site, legacy=args.legacy, pfx_name=workdir.PFX)
    password = pkcs12.read_password(args.password_file, args.password_env)

    identifiers = certs.san_identifiers(leaf)  # the names, then or among them IP addresses (RFC 8738)
    name = args.name or f"{identifiers[0]} {leaf.not_valid_after_utc:%Y-%m-%d}"
    kind = "legacy 3DES-SHA1, SHA-1 MAC" if args.legacy else "AES-256-CBC, SHA-256 MAC"
    log.info("Exporting key, certificate and %d intermediate(s) as PKCS#12 (%s)...", len(chain), kind)
    data = pkcs12.pfx_bytes(key, leaf, chain, password, legacy=args.legacy, friendly_name=name)
    path = work.write_bytes(workdir.PFX, data, private=True, replace=args.force)
    log.info("Wrote %s (friendly name %r)", path, name)
    log.debug("Algorithms in %s, as read back from the file:", workdir.PFX)
    for part, algorithm in pkcs12.algorithms(path.read_bytes()):
        log.debug("  %-13s %s", part + ":", algorithm)

    script_path = work.write_bytes(iis.SCRIPT, iis.script_bytes(script))
    log.info("Wrote %s for %s", script_path, names.describe_names(identifiers))
    log.info("  certificate thumbprint (SHA-1, as Windows shows it): %s", certs.fingerprint(leaf, "sha1", separator=""))
    log.info("Next: copy %s and %s to one folder on the Windows server and run, as Administrator:",
             workdir.PFX, iis.SCRIPT)
    log.info("  powershell -ExecutionPolicy Bypass -File .\\%s", iis.SCRIPT)
    log.info("  It imports the .pfx into Cert:\\LocalMachine\\WebHosting and binds every name (SNI, port 443) in "
             "IIS site %r;\n  -Site NAME for another site, -CentralCertStore DIR for IIS's Central Certificate Store.",
             args.iis_site)
    if certs.ip_sans(leaf):
        log.info("  Each IP address gets a binding on that address, port 443, without SNI: clients that connect to "
                 "an address send no server name (RFC 6066 §3).")
    if _from_local_ca(work):  # Pebble's certificates are for trying the steps out: no server on the Internet has one
        log.info("This certificate comes from the local test CA, which nothing trusts: install it only to try the "
                 "steps out. With a real CA's certificate in place, 21_check_endpoint.py NAME checks what the "
                 "server sends.")
    else:
        log.info("Then check what the server sends: 21_check_endpoint.py %s", identifiers[0].removeprefix("*."))


def _from_local_ca(work):
    """True if account.json says the certificate came from the local test CA."""
    try:
        return work.exists(workdir.ACCOUNT) and acme_servers.is_local_ca(work.read_account().get("directory_url"))
    except UsageError:  # a damaged account.json: the certificate is judged real
        return False


if __name__ == "__main__":
    p = cli.parser(__doc__)
    p.add_argument("--legacy", action="store_true", help="3DES-SHA1 for Windows Server 2016 and older")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--password-file", metavar="FILE", help="read the password from the file's first line")
    source.add_argument("--password-env", metavar="VAR", help="read the password from this environment variable")
    p.add_argument("--name", help="friendly name shown in the Windows certificate store (default: name and expiry)")
    p.add_argument("--iis-site", default="Default Web Site",
                   help="IIS site install-iis.ps1 adds missing bindings to (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="replace an existing certificate.pfx")
    cli.run(main, p)
