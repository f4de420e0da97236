"""Account and certificate keys: generate, save as PEM, load back.

ACME accepts EC P-256/P-384 and RSA account keys (RFC 8555 §6.2 defers to RFC 7518);
Let's Encrypt signs certificates for the same key types.
"""

from __future__ import annotations

from typing import Any, Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .errors import UsageError

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

KEY_TYPES = ("ec256", "ec384", "rsa2048", "rsa3072", "rsa4096")

_CURVES = {"ec256": ec.SECP256R1(), "ec384": ec.SECP384R1()}


def generate_key(key_type: str) -> PrivateKey:
    """A new private key of one of :data:`KEY_TYPES`."""
    if key_type in _CURVES:
        return ec.generate_private_key(_CURVES[key_type])
    if key_type.startswith("rsa") and key_type in KEY_TYPES:
        # 65537 is the only public exponent CAs and Windows reliably accept.
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[3:]))
    raise UsageError(f"unknown key type {key_type!r}: choose one of {', '.join(KEY_TYPES)}")


def describe_key(key: Any) -> str:
    """'EC P-256' or 'RSA 2048' for a private or public key, for log lines."""
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return {"secp256r1": "EC P-256", "secp384r1": "EC P-384"}.get(key.curve.name, key.curve.name)
    return f"RSA {key.key_size}"


def key_to_pem(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM: the file's 0600 mode is what protects it."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def key_from_pem(data: bytes, source: str, remedy: str = "") -> PrivateKey:
    """Load a PEM private key, accepting only the types ACME can use; ``remedy`` says how to fix it."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{source} is not an unencrypted PEM private key ({exc}){remedy}") from None
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in ("secp256r1", "secp384r1"):
        return key
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 2048:
        return key
    raise UsageError(f"{source} holds a key type ACME cannot use: use EC P-256, P-384 or RSA >= 2048{remedy}")


class HasPublicKey(Protocol):
    """A private key, a CSR or a certificate: anything that carries a public key."""

    def public_key(self) -> Any: ...


def same_public_key(a: HasPublicKey, b: HasPublicKey) -> bool:
    """True when two keys, CSRs or certificates hold the same public key.

    Compared as SubjectPublicKeyInfo DER, the one form in which equal keys are equal bytes.
    """
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return a.public_key().public_bytes(*spki) == b.public_key().public_bytes(*spki)
