"""JWS and JWK from common/ checked by two independent JOSE implementations (jwcrypto, josepy).

Offline: keys are generated locally and nothing is sent anywhere. jwcrypto and josepy are
test-only oracles; common/ never imports them.
"""

from __future__ import annotations

import json
import os

import josepy
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto import jws as jwcrypto_jws

from common import jws
from common.encoding import b64url, b64url_decode
from common.keys import generate_key

KEY_TYPES = {"ec256": ("ES256", 32), "ec384": ("ES384", 48), "rsa2048": ("RS256", None)}
URL = "https://ca.example/acme/new-order"
KID = "https://ca.example/acme/acct/123"
NONCE = "oFvnlFP1wIhRlYS2jTaXbA"
PAYLOAD = {"identifiers": [{"type": "dns", "value": "example.com"}]}


@pytest.fixture(scope="module", params=list(KEY_TYPES))
def key(request):
    return generate_key(request.param)


def _jwk_header(key) -> dict:
    return {"alg": jws.algorithm(key), "nonce": NONCE, "url": URL, "jwk": jws.jwk(key)}


def _kid_header(key) -> dict:
    return {"alg": jws.algorithm(key), "kid": KID, "nonce": NONCE, "url": URL}


def _jwcrypto_verify(flat: dict, jwk_dict: dict) -> jwcrypto_jws.JWS:
    """Raises jwcrypto's InvalidJWSSignature unless the flattened JWS verifies."""
    token = jwcrypto_jws.JWS()
    token.deserialize(json.dumps(flat))
    token.verify(jwcrypto_jwk.JWK(**jwk_dict))
    return token


def _josepy_verify(flat: dict, jwk_dict: dict) -> josepy.JWS:
    token = josepy.JWS.json_loads(json.dumps(flat))
    assert token.verify(josepy.JWK.from_json(jwk_dict)) is True
    return token


def _jwcrypto_public_members(key) -> dict:
    """jwcrypto's own JWK for a cryptography key, without the kid it adds."""
    members = json.loads(jwcrypto_jwk.JWK.from_pyca(key.public_key()).export_public())
    members.pop("kid", None)
    return members


def _josepy_fails(flat: dict, jwk_dict: dict) -> bool:
    token = josepy.JWS.json_loads(json.dumps(flat))
    return not token.verify(josepy.JWK.from_json(jwk_dict))


def test_algorithm_matches_key_type():
    for key_type, (alg, _) in KEY_TYPES.items():
        assert jws.algorithm(generate_key(key_type)) == alg


@pytest.mark.parametrize("header", [_jwk_header, _kid_header], ids=["jwk", "kid"])
def test_flattened_jws_verifies_with_jwcrypto(key, header):
    protected = header(key)
    flat = jws.flattened_jws(key, protected, PAYLOAD)
    assert set(flat) == {"protected", "payload", "signature"}
    token = _jwcrypto_verify(flat, jws.jwk(key))
    assert json.loads(token.payload) == PAYLOAD
    assert json.loads(b64url_decode(flat["protected"])) == protected
    assert token.jose_header["alg"] == jws.algorithm(key)


@pytest.mark.parametrize("header", [_jwk_header, _kid_header], ids=["jwk", "kid"])
def test_flattened_jws_verifies_with_josepy(key, header):
    flat = jws.flattened_jws(key, header(key), PAYLOAD)
    token = _josepy_verify(flat, jws.jwk(key))
    assert json.loads(token.payload) == PAYLOAD
    assert token.signature.combined.alg.name == jws.algorithm(key)


def test_jwk_header_embeds_verifying_key(key):
    # The newAccount form: a verifier that only has the JWS must be able to use the embedded jwk.
    flat = jws.flattened_jws(key, _jwk_header(key), PAYLOAD)
    embedded = json.loads(b64url_decode(flat["protected"]))["jwk"]
    _jwcrypto_verify(flat, embedded)
    token = josepy.JWS.json_loads(json.dumps(flat))
    assert token.verify() is True  # josepy falls back to the header's jwk


def test_post_as_get_has_empty_payload_and_verifies(key):
    flat = jws.flattened_jws(key, _kid_header(key), None)
    assert flat["payload"] == ""
    assert _jwcrypto_verify(flat, jws.jwk(key)).payload == b""
    assert _josepy_verify(flat, jws.jwk(key)).payload == b""


def test_tampering_is_detected_by_both_oracles(key):
    # The oracles can say no: otherwise the tests above would prove nothing.
    flat = jws.flattened_jws(key, _kid_header(key), PAYLOAD)
    tampered = {**flat, "payload": b64url(json.dumps({**PAYLOAD, "x": 1}).encode())}
    with pytest.raises(jwcrypto_jws.InvalidJWSSignature):
        _jwcrypto_verify(tampered, jws.jwk(key))
    assert _josepy_fails(tampered, jws.jwk(key))
    other = jws.jwk(generate_key("ec256" if jws.algorithm(key) == "ES256" else "rsa2048"))
    if jws.algorithm(key) in ("ES256", "RS256"):
        with pytest.raises(jwcrypto_jws.InvalidJWSSignature):
            _jwcrypto_verify(flat, other)
        assert _josepy_fails(flat, other)


def test_protected_header_and_payload_are_compact_base64url(key):
    flat = jws.flattened_jws(key, _kid_header(key), PAYLOAD)
    for part in (flat["protected"], flat["payload"], flat["signature"]):
        assert "=" not in part and "+" not in part and "/" not in part
    assert b" " not in b64url_decode(flat["protected"])
    assert b" " not in b64url_decode(flat["payload"])


def test_thumbprint_matches_jwcrypto_and_josepy(key):
    jwk_dict = jws.jwk(key)
    ours = jws.thumbprint(jwk_dict)
    assert ours == jws.key_thumbprint(key)
    assert ours == jwcrypto_jwk.JWK(**jwk_dict).thumbprint()
    assert ours == b64url(josepy.JWK.from_json(jwk_dict).thumbprint())


def test_jwk_matches_oracles_public_key(key):
    # jwcrypto builds its JWK straight from the cryptography key: members must agree with ours.
    assert jws.jwk(key) == _jwcrypto_public_members(key)


def test_rsa_jwk_members():
    key = generate_key("rsa2048")
    members = jws.jwk(key)
    assert members["kty"] == "RSA"
    assert members["e"] == "AQAB"
    n = b64url_decode(members["n"])
    assert len(n) == 256 and n[0] != 0  # minimal length, no sign byte (RFC 7518 §6.3.1.1)
    assert int.from_bytes(n, "big") == key.public_key().public_numbers().n


# --- leading zeros -------------------------------------------------------------------------


@pytest.mark.parametrize(("key_type", "size", "tries"), [("ec256", 32, 2000), ("ec384", 48, 2000)])
def test_ec_signature_with_leading_zero_byte_keeps_fixed_length(key_type, size, tries):
    """An R or S below 2**(8*(size-1)) must still be left-padded to ``size`` bytes (RFC 7518 §3.4)."""
    key = generate_key(key_type)
    jwk_dict = jws.jwk(key)
    found = 0
    for _ in range(tries):
        protected = {"alg": jws.algorithm(key), "kid": KID, "nonce": b64url(os.urandom(16)), "url": URL}
        flat = jws.flattened_jws(key, protected, None)
        signature = b64url_decode(flat["signature"])
        assert len(signature) == 2 * size
        if signature[0] == 0 or signature[size] == 0:
            found += 1
            _jwcrypto_verify(flat, jwk_dict)
            _josepy_verify(flat, jwk_dict)
            if found >= 2:
                break
    assert found, f"no signature with a short R or S in {tries} tries (p ~ 1/128 each)"


@pytest.mark.parametrize(("key_type", "size", "tries"), [("ec256", 32, 3000), ("ec384", 48, 3000)])
def test_ec_jwk_coordinates_keep_leading_zeros(key_type, size, tries):
    """x and y are always exactly the curve size (RFC 7518 §6.2.1.2), even when they start with 0x00."""
    for _ in range(tries):
        key = generate_key(key_type)
        numbers = key.public_key().public_numbers()
        members = jws.jwk(key)
        x, y = b64url_decode(members["x"]), b64url_decode(members["y"])
        assert (len(x), len(y)) == (size, size)
        assert (int.from_bytes(x, "big"), int.from_bytes(y, "big")) == (numbers.x, numbers.y)
        if numbers.x.bit_length() <= 8 * (size - 1) or numbers.y.bit_length() <= 8 * (size - 1):
            assert x[0] == 0 or y[0] == 0
            # Independent oracles agree on the thumbprint of such a key.
            assert jws.thumbprint(members) == jwcrypto_jwk.JWK(**members).thumbprint()
            assert jws.thumbprint(members) == b64url(josepy.JWK.from_json(members).thumbprint())
            flat = jws.flattened_jws(key, {"alg": jws.algorithm(key), "jwk": members, "nonce": NONCE, "url": URL},
                                     PAYLOAD)
            _jwcrypto_verify(flat, members)
            _josepy_verify(flat, members)
            return
    pytest.fail(f"no {key_type} key with a short coordinate in {tries} tries (p ~ 1/128 each)")


def test_ec_coordinates_from_fixed_small_point():
    """Deterministic: the first small P-256 scalar whose public x or y starts with a zero byte."""
    # d = 43 gives y = 0x003cccc0...; the scan finds it without trusting that constant.
    for d in range(1, 20000):
        key = ec.derive_private_key(d, ec.SECP256R1())
        numbers = key.public_key().public_numbers()
        if numbers.x < 2**248 or numbers.y < 2**248:
            break
    else:
        pytest.fail("no small scalar with a short coordinate")
    members = jws.jwk(key)
    assert len(b64url_decode(members["x"])) == 32
    assert len(b64url_decode(members["y"])) == 32
    assert members == _jwcrypto_public_members(key)
