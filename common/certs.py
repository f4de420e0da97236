"""The CSR that asks for a certificate, the checks on the certificate that comes back, and how to name one.

Naming a certificate: its fingerprints (SHA-256, and the SHA-1 "thumbprint" Windows and CAS use),
its ARI certID, a one-line summary and a field-by-field description.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from .errors import AcmeError, UsageError, printable
from .jws import b64url
from .keys import PrivateKey, same_public_key

# A leaf that starts a few minutes in the future is a clock difference, not a broken certificate.
CLOCK_SKEW = datetime.timedelta(minutes=5)
# X.520 upper bound for a common name; longer names can only live in the SAN.
MAX_CN_LENGTH = 64
# What cryptography raises when it first reads a part of a certificate it loaded lazily.
PARSE_ERRORS = (ValueError, TypeError, UnsupportedAlgorithm, x509.DuplicateExtension, x509.UnsupportedGeneralNameType)


def build_csr(key: PrivateKey, names: list[str]) -> x509.CertificateSigningRequest:
    """A CSR for ``names`` (normalized names and IP addresses), signed by the certificate key (RFC 2986; RFC 8555 §7.4).

    The names go in subjectAltName, which is what CAs check: a name as a dNSName, an IP
    address as an iPAddress (RFC 5280 §4.2.1.6; RFC 8738 §3), never the other way round.
    The first DNS name also becomes the common name for old software that still reads it,
    when it fits; an address never does (the CA/B Forum rules forbid it there, and Let's
    Encrypt's IP certificates have no common name).
    """
    first = next((n for n in names if not _is_address(n)), None)
    cn = [x509.NameAttribute(NameOID.COMMON_NAME, first)] if first and len(first) <= MAX_CN_LENGTH else []
    subject = x509.Name(cn)
    san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(n)) if _is_address(n) else x509.DNSName(n)
                                       for n in names])
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(san, critical=False)
        .sign(key, hashes.SHA256())
    )


def csr_pem(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.PEM)


def load_csr(pem: bytes, source: str) -> x509.CertificateSigningRequest:
    try:
        csr = x509.load_pem_x509_csr(pem)
    except ValueError as exc:
        raise UsageError(f"{source} is not a PEM CSR ({exc}); run 03_create_csr.py again") from None
    if not csr.is_signature_valid:
        raise UsageError(f"{source} has a bad signature; run 03_create_csr.py again")
    return csr


def san_names(item: x509.CertificateSigningRequest | x509.Certificate) -> list[str]:
    """The DNS names in a CSR's or certificate's subjectAltName, in order."""
    san = _san(item)
    return san.get_values_for_type(x509.DNSName) if san else []


def ip_sans(item: x509.CertificateSigningRequest | x509.Certificate) -> list[str]:
    """The IP addresses in a CSR's or certificate's subjectAltName, in order, as text."""
    san = _san(item)
    return [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] if san else []


def san_identifiers(item: x509.CertificateSigningRequest | x509.Certificate) -> list[str]:
    """The DNS names and IP addresses (as canonical text) in a CSR's or certificate's subjectAltName, in order:
    what an order for it names (RFC 8555 §7.4, RFC 8738)."""
    san = _san(item)
    found: list[str] = []
    for entry in san or []:
        if isinstance(entry, x509.DNSName):
            found.append(entry.value)
        elif isinstance(entry, x509.IPAddress):
            found.append(str(entry.value))
    return found


def _is_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _san(item: x509.CertificateSigningRequest | x509.Certificate) -> x509.SubjectAlternativeName | None:
    try:
        return item.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def csr_der(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.DER)


def parse_pem_certificates(pem: bytes) -> list[x509.Certificate]:
    """Every certificate in PEM text, in order; empty text is an empty list. ValueError if damaged."""
    if not pem.strip():
        return []
    return x509.load_pem_x509_certificates(pem)


def read_pem_file(path: Path, what: str) -> list[x509.Certificate]:
    """The certificates in a PEM file the user named (``what`` is how errors call it), at least one."""
    try:
        certs = parse_pem_certificates(path.read_bytes())
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"{what} {path} is damaged ({exc}): it should hold PEM certificates") from None
    if not certs:
        raise UsageError(f"{what} {path} holds no PEM certificate")
    return certs


def split_pem_chain(pem: str) -> list[x509.Certificate]:
    """Parse the chain the CA sent, leaf first (RFC 8555 §7.4.2), every part of every certificate."""
    try:
        certs = parse_pem_certificates(pem.encode("utf-8"))
    except ValueError as exc:
        raise AcmeError(f"the CA sent a certificate chain that does not parse ({exc})") from None
    if not certs:
        raise AcmeError("the CA sent an empty certificate chain")
    unreadable = unreadable_certificates(certs)
    if unreadable:
        raise AcmeError(f"the CA sent a certificate chain that does not parse: {'; '.join(unreadable)}; "
                        "do not install it")
    return certs


def unreadable_certificates(chain: list[x509.Certificate]) -> list[str]:
    """Which certificates of a chain from outside (a CA's, a server's) cannot be read in full, and why.

    cryptography loads a certificate lazily: a repeated extension, a malformed name or an
    unknown key type raises only when that part is first read, deep inside some later check.
    So a chain from outside is read in full once, as it arrives, and what fails is reported
    as the peer's fault: ``certificate 1 (the leaf): Duplicate 2.5.29.17 extension found``.
    """
    problems = []
    for position, cert in enumerate(chain, start=1):
        why = unreadable(cert)
        if why is not None:
            role = "the leaf" if position == 1 else "an intermediate"
            problems.append(f"certificate {position} ({role}): {why}")
    return problems


def unreadable(cert: x509.Certificate) -> str | None:
    """Why ``cert`` cannot be read in full (short and printable), or None if every part parses."""
    try:
        cert.extensions  # noqa: B018  (each property parses its part on first use)
        cert.subject.rfc4514_string()
        cert.issuer.rfc4514_string()
        cert.public_key()
        cert.not_valid_before_utc, cert.not_valid_after_utc  # noqa: B018
    except PARSE_ERRORS as exc:
        return printable(_short(str(exc) or type(exc).__name__))
    return None


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def certs_to_pem(certs: list[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def check_certificate(cert: x509.Certificate, key: PrivateKey, names: list[str]) -> None:
    """The certificate must be for our key and exactly the names (and addresses) we asked for."""
    if not same_public_key(cert, key):
        raise AcmeError("the certificate's public key is not cert.key's: do not install it")
    if sorted(san_identifiers(cert)) != sorted(names):
        raise AcmeError(f"the certificate names {san_identifiers(cert)} differ from the CSR's {names}")


def check_chain(chain: list[x509.Certificate], now: datetime.datetime | None = None) -> None:
    """The chain must hold together before it is saved: a leaf that is not a CA and is valid now,
    each certificate signed by the next one (RFC 5280 §6.1, reduced to what a client can check
    without knowing the roots)."""
    leaf = chain[0]
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if _is_ca(leaf):
        raise AcmeError("the CA sent a CA certificate where the leaf belongs: do not install it")
    if now + CLOCK_SKEW < leaf.not_valid_before_utc:
        raise AcmeError(f"the certificate is not valid before {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC "
                        "(is this machine's clock right?)")
    if now > leaf.not_valid_after_utc:
        raise AcmeError(f"the certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    for position, (cert, issuer) in enumerate(zip(chain, chain[1:], strict=False), start=1):
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm) as exc:
            raise AcmeError(f"certificate {position} of the chain is not signed by certificate {position + 1} "
                            f"({exc or type(exc).__name__}): the CA sent a broken chain") from None
        if not _is_ca(issuer):
            raise AcmeError(f"certificate {position + 1} of the chain signs another but is not a CA certificate")


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


FINGERPRINT_HASHES = {"sha256": hashes.SHA256, "sha1": hashes.SHA1}


def fingerprint(cert: x509.Certificate, algorithm: str = "sha256", separator: str = ":") -> str:
    """The certificate's fingerprint: the hash of its DER in upper-case hex, bytes joined by ``separator``.

    The default, SHA-256 as AB:CD:..., is what browsers and openssl show. Others name a
    certificate by another form of it: Windows by its "thumbprint", ``fingerprint(cert, "sha1", "")``;
    Alibaba's CAS by ``Sha2``, ``fingerprint(cert, separator="")``, and ``Fingerprint`` (SHA-1, no separator).
    """
    digest = cert.fingerprint(FINGERPRINT_HASHES[algorithm]())
    return (digest.hex(separator) if separator else digest.hex()).upper()


def ari_cert_id(cert: x509.Certificate) -> str:
    """The certificate's ARI identifier (RFC 9773 §4.1): base64url(AKI keyIdentifier) "." base64url(serial).

    The serial is its DER INTEGER content: big-endian two's complement, so a leading 00 byte
    comes first when the top bit is set (0x87654321 -> 00 87 65 43 21).
    """
    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except x509.ExtensionNotFound:
        aki = None
    if not aki:
        raise UsageError("the certificate has no authority key identifier, so ARI cannot name it")
    serial = cert.serial_number.to_bytes(cert.serial_number.bit_length() // 8 + 1, "big")
    return f"{b64url(aki)}.{b64url(serial)}"


def top_issuer(chain: list[x509.Certificate]) -> str:
    """The common name of the issuer of a chain's topmost certificate: the root it leads to."""
    names = chain[-1].issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else chain[-1].issuer.rfc4514_string()


def describe_csr(csr: x509.CertificateSigningRequest) -> list[str]:
    """The CSR decoded, one field per line (what ``openssl req -text`` would show that matters)."""
    from .keys import describe_key

    return [
        f"subject:   {csr.subject.rfc4514_string() or '(empty)'}",
        f"names:     {_listed(csr)} (subjectAltName: what the CA checks)",
        f"key:       {describe_key(csr.public_key())}",
        f"signature: {csr.signature_hash_algorithm.name if csr.signature_hash_algorithm else '?'} by that key "
        "(proves possession, RFC 2986)",
    ]


def _listed(item: x509.CertificateSigningRequest | x509.Certificate) -> str:
    """'www.example.com, 192.0.2.10 (IP address)': each subjectAltName entry, addresses marked as such."""
    return ", ".join(f"{v} (IP address)" if _is_address(v) else v for v in san_identifiers(item))


def summary(cert: x509.Certificate, now: datetime.datetime | None = None) -> str:
    """'serial 4f1c..., expires 2027-02-25 13:40 UTC', and with ``now`` ' (89 days left)' or ' (EXPIRED)'.

    How a step names one certificate in a line of output.
    """
    expires = cert.not_valid_after_utc
    text = f"serial {cert.serial_number:x}, expires {expires:%Y-%m-%d %H:%M} UTC"
    if now is None:
        return text
    return f"{text} ({(expires - now).days} days left)" if expires > now else f"{text} (EXPIRED)"


def describe_certificate(cert: x509.Certificate) -> list[str]:
    """Subject, names, issuer, validity and serial, one per line, for the user to check."""
    return [
        f"subject: {cert.subject.rfc4514_string() or '(empty)'}",
        f"names:   {_listed(cert)}",
        f"issuer:  {cert.issuer.rfc4514_string()}",
        f"valid:   {cert.not_valid_before_utc:%Y-%m-%d %H:%M} to {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC",
        f"serial:  {cert.serial_number:x}",
    ]
