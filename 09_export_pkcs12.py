#!/usr/bin/env python3
"""Step 9: bundle key and certificate as PKCS#12 (.pfx, RFC 7292) for Windows and IIS.

IIS, Azure and many Windows tools import a certificate only together with its key, as one
password-protected .pfx. The default encryption (AES-256, SHA-256 MAC) needs Windows
Server 2019 / Windows 10 1709 or later; --legacy uses 3DES with a SHA-1 MAC for Windows
Server 2016 and older. The password comes from --password-file, --password-env or a prompt,
never from the command line, and is never printed.

Reads:  cert.key, cert.pem, chain.pem
Writes: certificate.pfx (mode 0600: it holds the private key). Kept unless --force.
"""

from common import certs, cli, keys, pkcs12, state
from common.cli import log
from common.errors import UsageError


def main(args):
    work = cli.work_dir(args)
    key = work.read_key(state.CERT_KEY)
    leaf = work.read_certificates(state.CERT)[0]
    chain = work.read_certificates(state.CHAIN)
    if not keys.same_public_key(leaf, key):
        raise UsageError("cert.pem is not for cert.key: run 08_get_certificate.py again")
    if not args.force:
        work.refuse_existing(state.PFX)
    password = pkcs12.read_password(args.password_file, args.password_env)

    host = certs.san_names(leaf)[0]
    name = args.name or f"{host} {leaf.not_valid_after_utc:%Y-%m-%d}"
    kind = "legacy 3DES-SHA1, SHA-1 MAC" if args.legacy else "AES-256-CBC, SHA-256 MAC"
    log.info("Exporting key, certificate and %d intermediate(s) as PKCS#12 (%s)...", len(chain), kind)
    data = pkcs12.pfx_bytes(key, leaf, chain, password, legacy=args.legacy, friendly_name=name)
    path = work.write_bytes(state.PFX, data, private=True, replace=args.force)
    log.info("Wrote %s (friendly name %r)", path, name)
    log.info("\nOn the Windows server, in an elevated PowerShell:")
    for line in pkcs12.powershell_commands(state.PFX, leaf, host.removeprefix("*."), args.iis_site):
        log.info("  %s", line)


if __name__ == "__main__":
    p = cli.parser(__doc__)
    p.add_argument("--legacy", action="store_true", help="3DES-SHA1 for Windows Server 2016 and older")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--password-file", metavar="FILE", help="read the password from the file's first line")
    source.add_argument("--password-env", metavar="VAR", help="read the password from this environment variable")
    p.add_argument("--name", help="friendly name shown in the Windows certificate store (default: name and expiry)")
    p.add_argument("--iis-site", default="Default Web Site",
                   help="IIS site for the printed binding commands (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="replace an existing certificate.pfx")
    cli.run(main, p)
