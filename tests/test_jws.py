"""JWS and JWK from common/ checked by two independent JOSE implementations (jwcrypto, josepy).

Offline: keys are generated locally and nothing is sent anywhere. jwcrypto and josepy are
test-only oracles; common/ never imports them.
"""

from __future__ import annotations

import base64
import json
import os

import josepy
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto import jws as jwcrypto_jws

from common import jws
from common.jws import b64url, b64url_decode
from common.keys import generate_key

KEY_TYPES = {"ec256": ("ES256", 32), "ec384": ("ES384", 48), "rsa2048": ("RS256", None)}
URL = "https://ca.example/acme/new-order"
KID = "https://ca.example/acme/acct/123"
NONCE = "oFvnlFP1wIhRlYS2jTaXbA"
PAYLOAD = {"identifiers": [{"type": "dns", "value": "example.com"}]}
NEW_ACCOUNT_URL = "https://ca.example/acme/new-account"
KEY_CHANGE_URL = "https://ca.example/acme/key-change"
EAB_KID = "kid-1"
# One of the EAB keys in Pebble's example config (test/config/pebble-config-external-account-bindings.json).
PEBBLE_EAB_KEY = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"
_HASHES = {"ec256": hashes.SHA256(), "ec384": hashes.SHA384()}
_KEY_TYPE_OF_ALG = {alg: key_type for key_type, (alg, _) in KEY_TYPES.items()}


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


@pytest.mark.parametrize(("key_type", "signature_length", "tries"), [("ec256", 64, 2000), ("ec384", 96, 2000)])
def test_ec_signature_with_leading_zero_byte_keeps_fixed_length(key_type, signature_length, tries):
    """ES256 signatures are 64 bytes, ES384 96, even when R or S starts with a zero byte (RFC 7518 §3.4).

    cryptography's own DER form of the same signature is variable-length; sending that, or
    R || S with a short R or S not padded back, fails verification about once in 128.
    """
    size = signature_length // 2
    key = generate_key(key_type)
    jwk_dict = jws.jwk(key)
    found = 0
    for _ in range(tries):
        protected = {"alg": jws.algorithm(key), "kid": KID, "nonce": b64url(os.urandom(16)), "url": URL}
        flat = jws.flattened_jws(key, protected, None)
        signature = b64url_decode(flat["signature"])
        assert len(signature) == signature_length
        if signature[0] == 0 or signature[size] == 0:
            found += 1
            _jwcrypto_verify(flat, jwk_dict)
            _josepy_verify(flat, jwk_dict)
            # The DER encoding of the same (R, S) is what cryptography produces and verifies: another length.
            der = encode_dss_signature(int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big"))
            assert len(der) != signature_length
            key.public_key().verify(der, f"{flat['protected']}.".encode("ascii"), ec.ECDSA(_HASHES[key_type]))
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
            assert len(b64url_decode(flat["signature"])) == 2 * size  # 64 for ES256, 96 for ES384
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
    # Such a key signs like any other: 64 bytes, accepted by both oracles from its own JWK.
    flat = jws.flattened_jws(key, {"alg": "ES256", "jwk": members, "nonce": NONCE, "url": URL}, PAYLOAD)
    assert len(b64url_decode(flat["signature"])) == 64
    _jwcrypto_verify(flat, members)
    _josepy_verify(flat, members)


# --- External Account Binding (RFC 8555 §7.3.4) ----------------------------------------------


def _protected(flat: dict) -> dict:
    return json.loads(b64url_decode(flat["protected"]))


def _eab_oracle_keys(hmac_key: bytes) -> tuple[jwcrypto_jwk.JWK, josepy.JWKOct]:
    return jwcrypto_jwk.JWK(kty="oct", k=b64url(hmac_key)), josepy.JWKOct(key=hmac_key)


def test_eab_jws_verifies_with_both_oracles(key):
    hmac_key = jws.decode_hmac_key(PEBBLE_EAB_KEY)
    flat = jws.eab_jws(jws.jwk(key), EAB_KID, hmac_key, NEW_ACCOUNT_URL)
    assert set(flat) == {"protected", "payload", "signature"}
    jwcrypto_key, josepy_key = _eab_oracle_keys(hmac_key)
    token = jwcrypto_jws.JWS()
    token.deserialize(json.dumps(flat))
    token.verify(jwcrypto_key, alg="HS256")
    assert json.loads(token.payload) == jws.jwk(key)  # the payload is the account's public JWK
    assert josepy.JWS.json_loads(json.dumps(flat)).verify(josepy_key) is True


def test_eab_jws_header_is_exactly_rfc8555_7_3_4(key):
    # alg a MAC algorithm, kid from the CA, url = the outer JWS's url; no nonce, no jwk.
    flat = jws.eab_jws(jws.jwk(key), EAB_KID, os.urandom(32), NEW_ACCOUNT_URL)
    assert _protected(flat) == {"alg": "HS256", "kid": EAB_KID, "url": NEW_ACCOUNT_URL}
    assert len(b64url_decode(flat["signature"])) == 32  # HMAC-SHA256


def test_eab_jws_with_other_mac_key_is_rejected_by_both_oracles(key):
    flat = jws.eab_jws(jws.jwk(key), EAB_KID, os.urandom(32), NEW_ACCOUNT_URL)
    jwcrypto_key, josepy_key = _eab_oracle_keys(os.urandom(32))
    token = jwcrypto_jws.JWS()
    token.deserialize(json.dumps(flat))
    with pytest.raises(jwcrypto_jws.InvalidJWSSignature):
        token.verify(jwcrypto_key, alg="HS256")
    assert josepy.JWS.json_loads(json.dumps(flat)).verify(josepy_key) is False


def test_eab_jws_inside_new_account_request(key):
    # The whole newAccount body as a CA sees it: outer JWS by the account key, EAB inside its payload.
    hmac_key = os.urandom(32)
    binding = jws.eab_jws(jws.jwk(key), EAB_KID, hmac_key, NEW_ACCOUNT_URL)
    outer = jws.flattened_jws(key, {"alg": jws.algorithm(key), "jwk": jws.jwk(key), "nonce": NONCE,
                                    "url": NEW_ACCOUNT_URL},
                              {"termsOfServiceAgreed": True, "externalAccountBinding": binding})
    payload = json.loads(_jwcrypto_verify(outer, jws.jwk(key)).payload)
    inner = payload["externalAccountBinding"]
    assert _protected(inner)["url"] == _protected(outer)["url"]
    token = jwcrypto_jws.JWS()
    token.deserialize(json.dumps(inner))
    token.verify(_eab_oracle_keys(hmac_key)[0], alg="HS256")
    assert json.loads(token.payload) == _protected(outer)["jwk"]


def test_eab_jws_refuses_the_key_as_text():
    with pytest.raises(TypeError, match="decode_hmac_key"):
        jws.eab_jws(jws.jwk(generate_key("ec256")), EAB_KID, PEBBLE_EAB_KEY, NEW_ACCOUNT_URL)  # type: ignore[arg-type]


@pytest.mark.parametrize("length", [16, 32, 33, 34, 48, 64])
def test_decode_hmac_key_with_and_without_padding(length):
    raw = os.urandom(length)
    padded = base64.urlsafe_b64encode(raw).decode("ascii")
    for text in (padded, padded.rstrip("="), f"  {padded}\n"):
        assert jws.decode_hmac_key(text) == raw


def test_decode_hmac_key_pebble_example():
    assert jws.decode_hmac_key(PEBBLE_EAB_KEY) == base64.urlsafe_b64decode(PEBBLE_EAB_KEY)
    assert len(jws.decode_hmac_key(PEBBLE_EAB_KEY)) == 48


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "empty"),
        ("  \n", "empty"),
        ("===", "empty"),
        (PEBBLE_EAB_KEY[:20] + "+" + PEBBLE_EAB_KEY[21:], "character 21 of 64"),
        (PEBBLE_EAB_KEY[:20] + "/" + PEBBLE_EAB_KEY[21:], "not base64url"),
        (PEBBLE_EAB_KEY[:30] + "=" + PEBBLE_EAB_KEY[31:], "not base64url"),
        (PEBBLE_EAB_KEY[:30] + " " + PEBBLE_EAB_KEY[31:], "not base64url"),
        (PEBBLE_EAB_KEY[:-3], "cut short"),  # 61 characters: 61 % 4 == 1
        (PEBBLE_EAB_KEY + "=", "copied whole"),  # 64 characters need no padding
        (PEBBLE_EAB_KEY[:-1] + "==", "copied whole"),  # 63 need one '='
    ],
)
def test_decode_hmac_key_says_what_is_wrong_without_the_key(text, complaint):
    with pytest.raises(ValueError, match=complaint) as error:
        jws.decode_hmac_key(text)
    message = str(error.value)
    assert "EAB HMAC key" in message
    for start in range(0, len(PEBBLE_EAB_KEY) - 8):
        assert PEBBLE_EAB_KEY[start:start + 8] not in message


# --- key rollover (RFC 8555 §7.3.5) ----------------------------------------------------------


def _other_key_like(key):
    return generate_key(_KEY_TYPE_OF_ALG[jws.algorithm(key)])


def test_key_change_inner_jws_verifies_with_new_key(key):
    new_key, old_key = key, _other_key_like(key)
    inner = jws.key_change_jws(new_key, old_key, KID, KEY_CHANGE_URL)
    # §7.3.5: alg, jwk = the new key, url = keyChange URL; no nonce, no kid.
    assert _protected(inner) == {"alg": jws.algorithm(new_key), "jwk": jws.jwk(new_key), "url": KEY_CHANGE_URL}
    expected_payload = {"account": KID, "oldKey": jws.jwk(old_key)}
    assert json.loads(_jwcrypto_verify(inner, jws.jwk(new_key)).payload) == expected_payload
    assert json.loads(_josepy_verify(inner, jws.jwk(new_key)).payload) == expected_payload
    assert josepy.JWS.json_loads(json.dumps(inner)).verify() is True  # with the jwk in its own header


def test_key_change_inner_jws_is_not_signed_by_old_key(key):
    new_key, old_key = key, _other_key_like(key)
    inner = jws.key_change_jws(new_key, old_key, KID, KEY_CHANGE_URL)
    with pytest.raises(jwcrypto_jws.InvalidJWSSignature):
        _jwcrypto_verify(inner, jws.jwk(old_key))
    assert _josepy_fails(inner, jws.jwk(old_key))


def test_key_change_nested_in_outer_jws_signed_by_old_key(key):
    # What the CA checks (§7.3.5): the outer JWS verifies with the account's current (old) key,
    # the inner with the key in its own header, both name the same url, and oldKey is the outer key.
    new_key, old_key = _other_key_like(key), key
    inner = jws.key_change_jws(new_key, old_key, KID, KEY_CHANGE_URL)
    outer = jws.flattened_jws(old_key, {"alg": jws.algorithm(old_key), "kid": KID, "nonce": NONCE,
                                        "url": KEY_CHANGE_URL}, inner)
    carried = json.loads(_jwcrypto_verify(outer, jws.jwk(old_key)).payload)
    assert carried == inner
    inner_header = _protected(carried)
    inner_payload = json.loads(_jwcrypto_verify(carried, inner_header["jwk"]).payload)
    assert inner_header["url"] == _protected(outer)["url"]
    assert inner_payload == {"account": _protected(outer)["kid"], "oldKey": jws.jwk(old_key)}
    assert inner_header["jwk"] == jws.jwk(new_key) != inner_payload["oldKey"]
