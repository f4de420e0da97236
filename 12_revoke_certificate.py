#!/usr/bin/env python3
"""Step 12: revoke a certificate (RFC 8555 §7.6).

POSTs the certificate (DER, base64url) and a reason code (RFC 5280 §5.3.1) to the CA's
revokeCert URL. Who may ask: the account that ordered it, signing with its key and "kid" as
usual; or whoever holds the certificate's private key, signing with that key and its "jwk"
(--with-cert-key). The second way works when the account is lost, or when the key leaked and
someone else's account ordered a certificate for it. The CA answers 200 with an empty body
and lists the certificate as revoked in its CRL from then on.

Revocation cannot be undone, so this asks first, on a terminal; without one it refuses
unless --yes. Browsers and clients stop trusting a revoked certificate, so it must be
replaced at once: revoking the work dir's cert.pem deletes its saved renewal decision
(renewal.json), and 11_renewal_info.py --check then asks the CA again and finds it due.

Reasons (--reason): unspecified (0, the default), keyCompromise (1: someone else may have
the key; get a new cert.key too), superseded (4: replaced by a new certificate) and
cessationOfOperation (5: the names are no longer yours, or the site is gone).

Reads:  cert.pem (or --cert FILE); account.json and account.key, or cert.key (or FILE) with
        --with-cert-key; session.json
Writes: nothing but session.json; deletes renewal.json when cert.pem is the one revoked
"""

from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from common import certs, cli, names, renewal, revocation, rfc8555, workdir
from common.cli import log
from common.errors import AcmeError


def main(args):
    work = cli.work_dir(args)
    cert = work.read_leaf(args.cert)
    reason = revocation.REASONS[args.reason]
    if args.with_cert_key:
        cert_key = revocation.certificate_key(work, None if args.with_cert_key is True else args.with_cert_key, cert)
        recorded = work.read_account() if work.exists(workdir.ACCOUNT) else None  # only for its server
        client = cli.connect(args, work, account=recorded, signing=False)
    else:
        cert_key = None
        client = cli.connect_account(args, work)

    log.info("Certificate %s:", args.cert or work.path(workdir.CERT))
    for line in certs.describe_certificate(cert):
        log.info("  %s", line)
    cli.confirm(f"revoke the certificate for {names.describe_names(certs.san_identifiers(cert))} "
                f"(serial {cert.serial_number:x}) as {args.reason}", yes=args.yes)
    signer = "the certificate's key (jwk)" if cert_key else "the account (kid)"
    log.info("Revoking it as %s (reason code %d), signed by %s...", args.reason, reason, signer)
    try:
        rfc8555.revoke_certificate(client, cert.public_bytes(Encoding.DER), reason, cert_key=cert_key)
        log.info("Revoked.")
    except AcmeError as exc:
        if not exc.is_type("alreadyRevoked"):
            raise
        log.info("The CA says it was revoked already.")

    if revocation.is_work_dir_certificate(work, cert):
        renewal.forget(work)  # the saved plan to renew later no longer holds: a revoked certificate is due now
        # renew.sh keeps the options it saved for the directory and adds --new-key to them; with none saved
        # yet, step 06's options are given with it.
        options = "" if work.exists("renew-options.json") else " and step 06's options"
        if args.reason == "keyCompromise":  # the new certificate needs a new key as well
            steps = f"--force --new-key{options} (or 02_create_cert_key.py --force, 03_create_csr.py, then 05 to 08)"
        else:
            steps = f"--force{options} (or 05_new_order.py to 08_get_certificate.py)"
        account = ("" if work.exists(workdir.ACCOUNT)
                   else "01_create_account_key.py --force and 04_new_account.py, then ")
        log.info("Next: replace %s now: %s./renew.sh --dir %s %s", work.path(workdir.CERT), account, work.root, steps)


if __name__ == "__main__":
    p = cli.parser(__doc__, network=True)
    p.add_argument("--cert", type=Path, metavar="FILE", help="the certificate to revoke (default: cert.pem)")
    p.add_argument("--reason", choices=revocation.REASONS, default="unspecified",
                   help="why, as RFC 5280 reason codes say it (default: %(default)s)")
    p.add_argument("--with-cert-key", nargs="?", const=True, type=Path, metavar="FILE",
                   help="sign with the certificate's own key (cert.key, or FILE) instead of the account: "
                        "for when the account is lost")
    p.add_argument("--yes", action="store_true", help="revoke without asking (needed without a terminal)")
    cli.run(main, p)
