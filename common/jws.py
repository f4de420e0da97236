"""JSON Web Keys, thumbprints and JWS signatures, as ACME uses them.

ACME sends every request as a flattened JWS (RFC 8555 §6.2): the protected header carries
``alg``, ``nonce``, ``url`` and either ``jwk`` (newAccount) or ``kid`` (everything after).
Two requests carry a second JWS inside the payload: newAccount with External Account
Binding (§7.3.4, :func:`eab_jws`) and keyChange (§7.3.5, :func:`key_change_jws`).

This file stands alone: it imports only the standard library and ``cryptography``, so it can
be copied into another project as it is.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

# The account key types ACME accepts (RFC 8555 §6.2 defers to RFC 7518).
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

# alg, hash and coordinate size per curve: RFC 7518 §3.4.
_EC_PARAMS = {
    "secp256r1": ("ES256", hashes.SHA256(), "P-256", 32),
    "secp384r1": ("ES384", hashes.SHA384(), "P-384", 48),
}

_B64URL_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


# --- encodings -------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    """base64url without padding (RFC 7515 §2): ACME rejects '=' padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Inverse of :func:`b64url`; restores the padding Python insists on."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def int_to_bytes(value: int, length: int | None = None) -> bytes:
    """Big-endian unsigned bytes, left-padded to ``length`` when given."""
    if length is None:
        length = max(1, (value.bit_length() + 7) // 8)
    return value.to_bytes(length, "big")


def compact_json(value: Any) -> bytes:
    """JSON with no spaces, as signed in JWS payloads and protected headers."""
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


# --- keys ------------------------------------------------------------------------------------


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


# --- signatures ------------------------------------------------------------------------------


def sign(key: PrivateKey, signing_input: bytes) -> bytes:
    """The raw JWS signature over ``signing_input`` (RFC 7515 §5.1, RFC 7518 §3.3-3.4).

    ECDSA: JOSE wants R || S, each left-padded to the curve size: 64 bytes for P-256 (ES256),
    96 for P-384 (ES384) (RFC 7518 §3.4). ``cryptography`` returns DER instead, which is
    variable-length: a SEQUENCE of two INTEGERs, each minimal, with a 00 byte in front when
    its top bit is set. A P-256 signature from cryptography looks like::

        30 45                      SEQUENCE, 69 bytes
           02 20 <32 bytes of R>   R, top bit clear: no 00
           02 21 00 <32 bytes S>   S, top bit set: 00 in front

    and is 70, 71 or 72 bytes long, or shorter when R or S happens to start with a zero byte
    (about 1 signature in 128). The JOSE form of the same signature is R and S as 32-byte
    big-endian numbers, back to back: always 64 bytes. Verifiers split the bytes in the middle,
    so a short R or S that is not padded back to 32 bytes fails about once in 128 requests.
    """
    if isinstance(key, ec.EllipticCurvePrivateKey):
        _, digest, _, size = _EC_PARAMS[key.curve.name]
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(digest)))
        return int_to_bytes(r, size) + int_to_bytes(s, size)
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    raise TypeError(f"unsupported key type {type(key).__name__}")


def _encode(protected: dict[str, Any], payload: Any | None) -> tuple[str, str, bytes]:
    """The two encoded parts and the signing input ``protected || '.' || payload`` (RFC 7515 §5.1)."""
    protected_b64 = b64url(compact_json(protected))
    payload_b64 = "" if payload is None else b64url(compact_json(payload))
    return protected_b64, payload_b64, f"{protected_b64}.{payload_b64}".encode("ascii")


def flattened_jws(key: PrivateKey, protected: dict[str, Any], payload: Any | None) -> dict[str, str]:
    """A flattened JSON JWS (RFC 7515 §7.2.2) as the body of an ACME POST.

    ``payload=None`` makes a POST-as-GET: the payload is the empty string (RFC 8555 §6.3).
    """
    protected_b64, payload_b64, signing_input = _encode(protected, payload)
    signature = sign(key, signing_input)
    return {"protected": protected_b64, "payload": payload_b64, "signature": b64url(signature)}


# --- account lifecycle: External Account Binding and key rollover ----------------------------


def decode_hmac_key(text: str) -> bytes:
    """The EAB MAC key from the base64url text a CA hands out (RFC 8555 §7.3.4).

    CAs show it with or without '=' padding; both are accepted, and surrounding whitespace
    from copy and paste is ignored. Anything else raises ValueError with a message that says
    what is wrong but never repeats the key, since error messages end up in logs.
    """
    if not isinstance(text, str):
        raise TypeError("decode_hmac_key() takes the key as the text the CA showed (str)")
    stripped = text.strip()
    body = stripped.rstrip("=")
    if not body:
        raise ValueError("the EAB HMAC key is empty: paste the key your CA gave you (base64url text)")
    for position, char in enumerate(body, start=1):
        if char not in _B64URL_ALPHABET:
            raise ValueError(
                f"the EAB HMAC key is not base64url: character {position} of {len(stripped)} is not one of "
                "A-Z a-z 0-9 - _ (check for a missing or extra character, or a standard-base64 '+' or '/')"
            )
    if len(body) % 4 == 1:
        raise ValueError(f"the EAB HMAC key has {len(body)} characters, a length base64 never produces: "
                         "it was probably cut short when copied")
    padding_chars = len(stripped) - len(body)
    if padding_chars and padding_chars != -len(body) % 4:
        raise ValueError(f"the EAB HMAC key ends in {padding_chars} '=' but its length allows "
                         f"{-len(body) % 4}: check that it was copied whole")
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


def eab_jws(account_jwk: dict[str, str], eab_kid: str, hmac_key: bytes, url: str) -> dict[str, str]:
    """The ``externalAccountBinding`` member of a newAccount payload (RFC 8555 §7.3.4).

    A flattened JWS whose payload is the account's public JWK, MACed with HMAC-SHA256 under the
    key the CA issued with ``eab_kid``: it proves that whoever holds that CA account also holds
    this ACME account key. Protected header {"alg": "HS256", "kid", "url"}; "url" is the
    newAccount URL (the outer JWS's url), and there is no "nonce": the outer JWS carries it.
    ``hmac_key`` is the decoded key (:func:`decode_hmac_key`), not the base64url text.
    """
    if not isinstance(hmac_key, bytes):
        raise TypeError("hmac_key must be the decoded key bytes: pass the CA's text through decode_hmac_key()")
    protected_b64, payload_b64, signing_input = _encode({"alg": "HS256", "kid": eab_kid, "url": url}, account_jwk)
    mac = hmac.new(hmac_key, signing_input, hashlib.sha256).digest()  # HS256: RFC 7518 §3.2
    return {"protected": protected_b64, "payload": payload_b64, "signature": b64url(mac)}


def key_change_jws(new_key: PrivateKey, old_key: PrivateKey, account_url: str, url: str) -> dict[str, str]:
    """The inner JWS of an account key rollover (RFC 8555 §7.3.5), signed by the NEW key.

    Protected header {"alg", "jwk": new key's JWK, "url": keyChange URL}, with no "nonce" and
    no "kid"; payload {"account": account URL, "oldKey": old key's JWK}. The new key's
    signature proves the account holder has it; the outer JWS, which the transport signs with
    the OLD key (kid = account URL, nonce, the same url) and whose payload is this object,
    proves the holder of the old key asked for the change.
    """
    protected = {"alg": algorithm(new_key), "jwk": jwk(new_key), "url": url}
    return flattened_jws(new_key, protected, {"account": account_url, "oldKey": jwk(old_key)})
