"""Certificates that cryptography refuses to build, for the tests of what parses certificates from outside.

cryptography's builder will not repeat an extension, but a CA or a server can send a
certificate that does (RFC 5280 §4.2 forbids it). :func:`repeat_extension` builds one anyway:
it adds two private extensions whose OIDs differ in the last arc only, edits the second OID
into the first in the DER of the signed certificate, and signs the edited TBSCertificate again.
The private OID is one OpenSSL does not check for repeats, so a TLS server will still serve it.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

# Private arcs (an unregistered enterprise number): 1.3.6.1.4.1.55555.1.1 and .2.
REPEATED = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1.1")
_PLACEHOLDER = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1.2")
_NULL = b"\x05\x00"  # DER NULL, the extensions' value


def repeat_extension(builder: x509.CertificateBuilder, signer: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
                     ) -> x509.Certificate:
    """The certificate ``builder`` makes, signed by ``signer``, with one extension in it twice."""
    built = (builder.add_extension(x509.UnrecognizedExtension(REPEATED, _NULL), critical=False)
             .add_extension(x509.UnrecognizedExtension(_PLACEHOLDER, _NULL), critical=False)
             .sign(signer, hashes.SHA256()))
    der = built.public_bytes(Encoding.DER)
    old, new = _oid_der(_PLACEHOLDER), _oid_der(REPEATED)
    assert der.count(old) == 1 and len(old) == len(new)
    return x509.load_der_x509_certificate(_resign(der.replace(old, new), signer))


def _resign(der: bytes, signer: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    """Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature BIT STRING }: a new signature."""
    tbs_start, _ = _header(der, 0)
    tbs_end = _end(der, tbs_start)
    tbs, algorithm = der[tbs_start:tbs_end], der[tbs_end:_end(der, tbs_end)]
    if isinstance(signer, rsa.RSAPrivateKey):
        signature = signer.sign(tbs, padding.PKCS1v15(), hashes.SHA256())
    else:
        signature = signer.sign(tbs, ec.ECDSA(hashes.SHA256()))
    return _tlv(0x30, tbs + algorithm + _tlv(0x03, b"\x00" + signature))


def _header(der: bytes, at: int) -> tuple[int, int]:
    """(where the content of the TLV at ``at`` starts, its length)."""
    first = der[at + 1]
    if first < 0x80:
        return at + 2, first
    size = first & 0x7F
    return at + 2 + size, int.from_bytes(der[at + 2:at + 2 + size], "big")


def _end(der: bytes, at: int) -> int:
    start, length = _header(der, at)
    return start + length


def _tlv(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        return bytes([tag, length]) + content
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + content


def _oid_der(oid: x509.ObjectIdentifier) -> bytes:
    arcs = [int(arc) for arc in oid.dotted_string.split(".")]
    body = bytes([arcs[0] * 40 + arcs[1]])
    for arc in arcs[2:]:
        groups = [arc & 0x7F]
        arc >>= 7
        while arc:
            groups.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(groups))
    return bytes([0x06, len(body)]) + body
