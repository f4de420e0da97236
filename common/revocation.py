"""Revoking a certificate (RFC 8555 §7.6): the reasons a subscriber may give, and who may ask.

The CA accepts a revokeCert request signed by the account that ordered the certificate (``kid``)
or by the certificate's own private key (``jwk``): holding the key proves the right to revoke,
which is how a certificate is revoked when its account is lost or its key has leaked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import workdir
from .errors import UsageError
from .keys import PrivateKey, key_from_pem, same_public_key

if TYPE_CHECKING:
    from pathlib import Path

    from cryptography import x509

# RFC 5280 §5.3.1 CRLReason codes: the four Let's Encrypt asks subscribers to choose from (it
# refuses the others, which are for CAs: cACompromise, privilegeWithdrawn ...).
REASONS = {
    "unspecified": 0,  # none of the below applies
    "keyCompromise": 1,  # someone else may hold the certificate's private key
    "superseded": 4,  # replaced by a new certificate
    "cessationOfOperation": 5,  # the names are no longer yours, or the site is gone
}


def certificate_key(work: workdir.WorkDir, path: Path | None, cert: x509.Certificate) -> PrivateKey:
    """The certificate's private key, from ``path`` or the work dir's cert.key, checked to match ``cert``."""
    if path is None:
        key, source = work.read_key(workdir.CERT_KEY), work.path(workdir.CERT_KEY)
    else:
        try:
            key, source = key_from_pem(path.read_bytes(), str(path)), path
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    if not same_public_key(key, cert):
        raise UsageError(f"{source} is not the key of this certificate: give its key with --with-cert-key FILE")
    return key


def is_work_dir_certificate(work: workdir.WorkDir, cert: x509.Certificate) -> bool:
    """True if ``cert`` is the work dir's cert.pem, whose renewal decision a revocation makes stale."""
    return work.exists(workdir.CERT) and work.read_certificates(workdir.CERT)[0] == cert
