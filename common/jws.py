"""JSON Web Keys, thumbprints and JWS signatures, as ACME uses them.

ACME sends every request as a flattened JWS (RFC 8555 §6.2): the protected header carries
``alg``, ``nonce``, ``url`` and either ``jwk`` (newAccount) or ``kid`` (everything after).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from .encoding import b64url, compact_json, int_to_bytes
from .keys import PrivateKey

# alg, hash and coordinate size per curve: RFC 7518 §3.4.
_EC_PARAMS = {
    "secp256r1": ("ES256", hashes.SHA256(), "P-256", 32),
    "secp384r1": ("ES384", hashes.SHA384(), "P-384", 48),
}


def jwk(key: PrivateKey) -> dict[str, str]:
    """The public JWK of a private key (RFC 7517 §4, RFC 7518 §6)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        _, _, crv, size = _EC_PARAMS[key.curve.name]
        numbers = key.public_key().public_numbers()
        # Coordinates are fixed-length, leading zeros kept: RFC 7518 §6.2.1.2.
        return {
            "crv": crv,
            "kty": "EC",
            "x": b64url(int_to_bytes(numbers.x, size)),
            "y": b64url(int_to_bytes(numbers.y, size)),
        }
    numbers = key.public_key().public_numbers()
    # n and e are minimal-length big-endian: RFC 7518 §6.3.1.
    return {"e": b64url(int_to_bytes(numbers.e)), "kty": "RSA", "n": b64url(int_to_bytes(numbers.n))}


def thumbprint(jwk_members: dict[str, str]) -> str:
    """RFC 7638 thumbprint: SHA-256 over the required members only, sorted, no spaces (§3.3)."""
    required = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}[jwk_members["kty"]]
    canonical = json.dumps({k: jwk_members[k] for k in required}, sort_keys=True, separators=(",", ":"))
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def key_thumbprint(key: PrivateKey) -> str:
    """The account key's thumbprint, the second half of every key authorization."""
    return thumbprint(jwk(key))


def algorithm(key: PrivateKey) -> str:
    """The JWS ``alg`` for a key: ES256, ES384 or RS256."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return _EC_PARAMS[key.curve.name][0]
    return "RS256"


def sign(key: PrivateKey, signing_input: bytes) -> bytes:
    """The raw JWS signature over ``signing_input``.

    ECDSA signatures are R || S, each left-padded to the curve size (RFC 7518 §3.4): the
    DER form that cryptography returns is not what JOSE verifiers accept.
    """
    if isinstance(key, ec.EllipticCurvePrivateKey):
        _, digest, _, size = _EC_PARAMS[key.curve.name]
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(digest)))
        return int_to_bytes(r, size) + int_to_bytes(s, size)
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    raise TypeError(f"unsupported key type {type(key).__name__}")


def flattened_jws(key: PrivateKey, protected: dict[str, Any], payload: Any | None) -> dict[str, str]:
    """A flattened JSON JWS (RFC 7515 §7.2.2) as the body of an ACME POST.

    ``payload=None`` makes a POST-as-GET: the payload is the empty string (RFC 8555 §6.3).
    """
    protected_b64 = b64url(compact_json(protected))
    payload_b64 = "" if payload is None else b64url(compact_json(payload))
    signature = sign(key, f"{protected_b64}.{payload_b64}".encode("ascii"))
    return {"protected": protected_b64, "payload": payload_b64, "signature": b64url(signature)}
