"""Published test vectors (RFC 7638, RFC 7515 Appendix A, RFC 8555 §8, the ACME drafts) against common/.

Offline: no CA, no network. Every expected value is published, never computed by the code
under test: from the RFCs, except the dns-01 TXT value for RFC 8555 §8.3's key authorization,
which the RFC does not print in full; it is the value Let's Encrypt's Boulder test suite uses.
The dns-account-01 and dns-persist-01 values are the drafts' own examples, plus values the
tests compute step by step with hashlib and base64.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from common import challenges, jws
from common.jws import b64url, b64url_decode


def _int(b64: str) -> int:
    return int.from_bytes(b64url_decode(b64), "big")


# --- RFC 7638 §3.1 -------------------------------------------------------------------------

RFC7638_JWK = {
    "kty": "RSA",
    "n": (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiF"
        "V4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9"
        "c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1"
        "jF44-csFCur-kEgU8awapJzKnqDKgw"
    ),
    "e": "AQAB",
}
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_rfc7638_thumbprint():
    assert jws.thumbprint(RFC7638_JWK) == RFC7638_THUMBPRINT


def test_rfc7638_thumbprint_ignores_optional_members():
    # RFC 7638 §3.1 example JWK carries "alg" and "kid"; §3.2 says only required members count.
    with_extras = {**RFC7638_JWK, "alg": "RS256", "kid": "2011-04-29", "use": "sig"}
    assert jws.thumbprint(with_extras) == RFC7638_THUMBPRINT


def test_rfc7638_thumbprint_member_order_irrelevant():
    reordered = {"n": RFC7638_JWK["n"], "e": RFC7638_JWK["e"], "kty": "RSA"}
    assert jws.thumbprint(reordered) == RFC7638_THUMBPRINT


# --- RFC 7515 Appendix A (shared payload) -------------------------------------------------

# {"iss":"joe",\r\n "exp":1300819380,\r\n "http://example.com/is_root":true}
RFC7515_PAYLOAD_B64 = "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"


def test_rfc7515_payload_decodes_to_published_claims():
    # Guards the copied constant itself.
    assert b64url_decode(RFC7515_PAYLOAD_B64) == (
        b'{"iss":"joe",\r\n "exp":1300819380,\r\n "http://example.com/is_root":true}'
    )


# --- RFC 7515 Appendix A.2: RS256 ----------------------------------------------------------

A2_PROTECTED_B64 = "eyJhbGciOiJSUzI1NiJ9"  # {"alg":"RS256"}
A2_JWK = {
    "kty": "RSA",
    "n": (
        "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SF"
        "d2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo"
        "7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs"
        "91kzk2PAcDTW9gb54h4FRWyuXpoQ"
    ),
    "e": "AQAB",
    "d": (
        "Eq5xpGnNCivDflJsRQBXHx1hdR1k6Ulwe2JZD50LpXyWPEAeP88vLNO97IjlA7_GQ5sLKMgvfTeXZx9SE-7YwVol2NXOoAJe46sui395"
        "IW_GO-pWJ1O0BkTGoVEn2bKVRUCgu-GjBVaYLU6f3l9kJfFNS3E0QbVdxzubSu3Mkqzjkn439X0M_V51gfpRLI9JYanrC4D4qAdGcopV"
        "_0ZHHzQlBjudU2QvXt4ehNYTCBr6XCLQUShb1juUO1ZdiYoFaFQT5Tw8bGUl_x_jTj3ccPDVZFD9pIuhLhBOneufuBiB4cS98l2SR_RQ"
        "yGWSeWjnczT0QU91p1DhOVRuOopznQ"
    ),
    "p": (
        "4BzEEOtIpmVdVEZNCqS7baC4crd0pqnRH_5IB3jw3bcxGn6QLvnEtfdUdiYrqBdss1l58BQ3KhooKeQTa9AB0Hw_Py5PJdTJNPY8cQn7"
        "ouZ2KKDcmnPGBY5t7yLc1QlQ5xHdwW1VhvKn-nXqhJTBgIPgtldC-KDV5z-y2XDwGUc"
    ),
    "q": (
        "uQPEfgmVtjL0Uyyx88GZFF1fOunH3-7cepKmtH4pxhtCoHqpWmT8YAmZxaewHgHAjLYsp1ZSe7zFYHj7C6ul7TjeLQeZD_YwD66t62wD"
        "mpe_HlB-TnBA-njbglfIsRLtXlnDzQkv5dTltRJ11BKBBypeeF6689rjcJIDEz9RWdc"
    ),
    "dp": (
        "BwKfV3Akq5_MFZDFZCnW-wzl-CCo83WoZvnLQwCTeDv8uzluRSnm71I3QCLdhrqE2e9YkxvuxdBfpT_PI7Yz-FOKnu1R6HsJeDCjn12S"
        "k3vmAktV2zb34MCdy7cpdTh_YVr7tss2u6vneTwrA86rZtu5Mbr1C1XsmvkxHQAdYo0"
    ),
    "dq": (
        "h_96-mK1R_7glhsum81dZxjTnYynPbZpHziZjeeHcXYsXaaMwkOlODsWa7I9xXDoRwbKgB719rrmI2oKr6N3Do9U0ajaHF-NKJnwgjMd"
        "2w9cjz3_-kyNlxAr2v4IKhGNpmM5iIgOS1VZnOZ68m6_pbLBSp3nssTdlqvd0tIiTHU"
    ),
    "qi": (
        "IYd7DHOhrWvxkwPQsRM2tOgrjbcrfvtQJipd-DlcxyVuuM9sQLdgjVk2oy26F0EmpScGLq2MowX7fhd_QJQ3ydy5cY7YIBi87w93IKLE"
        "dfnbJtoOPLUW0ITrJReOgo1cq9SbsxYawBgfp_gh6A5603k2-ZQwVK0JKSHuLFkuQ3U"
    ),
}
A2_SIGNATURE_B64 = (
    "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CU"
    "Ar7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_d"
    "O--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0ig"
    "cN_IoypGlUPQGe77Rw"
)
A2_SIGNING_INPUT = f"{A2_PROTECTED_B64}.{RFC7515_PAYLOAD_B64}".encode("ascii")


def _a2_private_key() -> rsa.RSAPrivateKey:
    public = rsa.RSAPublicNumbers(_int(A2_JWK["e"]), _int(A2_JWK["n"]))
    numbers = rsa.RSAPrivateNumbers(
        p=_int(A2_JWK["p"]),
        q=_int(A2_JWK["q"]),
        d=_int(A2_JWK["d"]),
        dmp1=_int(A2_JWK["dp"]),
        dmq1=_int(A2_JWK["dq"]),
        iqmp=_int(A2_JWK["qi"]),
        public_numbers=public,
    )
    return numbers.private_key()  # cryptography rejects inconsistent CRT values: a copy error fails here


def test_rfc7515_a2_published_signature_verifies_with_published_key():
    # Checks the copied constants with cryptography alone, independent of common/.
    public = rsa.RSAPublicNumbers(_int(A2_JWK["e"]), _int(A2_JWK["n"])).public_key()
    signature = b64url_decode(A2_SIGNATURE_B64)
    assert len(signature) == 256
    public.verify(signature, A2_SIGNING_INPUT, padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(InvalidSignature):
        public.verify(signature, A2_SIGNING_INPUT + b"x", padding.PKCS1v15(), hashes.SHA256())


def test_rfc7515_a2_sign_matches_published_signature():
    key = _a2_private_key()
    signature = jws.sign(key, A2_SIGNING_INPUT)
    assert signature == b64url_decode(A2_SIGNATURE_B64)
    assert b64url(signature) == A2_SIGNATURE_B64


def test_rfc7515_a2_jwk_and_alg():
    key = _a2_private_key()
    assert jws.algorithm(key) == "RS256"
    assert jws.jwk(key) == {"e": A2_JWK["e"], "kty": "RSA", "n": A2_JWK["n"]}


def test_rfc7515_a2_flattened_jws_signature_matches():
    # flattened_jws must encode {"alg":"RS256"} exactly as the RFC does (compact JSON), and sign
    # "<protected>." for POST-as-GET.
    key = _a2_private_key()
    flat = jws.flattened_jws(key, {"alg": "RS256"}, None)
    assert flat["protected"] == A2_PROTECTED_B64
    assert flat["payload"] == ""
    public = key.public_key()
    public.verify(b64url_decode(flat["signature"]), f"{A2_PROTECTED_B64}.".encode("ascii"),
                  padding.PKCS1v15(), hashes.SHA256())


# --- RFC 7515 Appendix A.3: ES256 ----------------------------------------------------------

A3_PROTECTED_B64 = "eyJhbGciOiJFUzI1NiJ9"  # {"alg":"ES256"}
A3_JWK = {
    "kty": "EC",
    "crv": "P-256",
    "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
    "d": "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI",
}
A3_SIGNATURE_B64 = "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q"
A3_SIGNING_INPUT = f"{A3_PROTECTED_B64}.{RFC7515_PAYLOAD_B64}".encode("ascii")


def _a3_public_key() -> ec.EllipticCurvePublicKey:
    return ec.EllipticCurvePublicNumbers(_int(A3_JWK["x"]), _int(A3_JWK["y"]), ec.SECP256R1()).public_key()


def _verify_raw_es256(public: ec.EllipticCurvePublicKey, raw: bytes, message: bytes) -> None:
    """JOSE ES256 verification: raw R || S, 32 bytes each (RFC 7518 §3.4)."""
    assert len(raw) == 64
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public.verify(der, message, ec.ECDSA(hashes.SHA256()))


def test_rfc7515_a3_published_signature_verifies():
    public = _a3_public_key()
    signature = b64url_decode(A3_SIGNATURE_B64)
    _verify_raw_es256(public, signature, A3_SIGNING_INPUT)
    with pytest.raises(InvalidSignature):
        _verify_raw_es256(public, signature, A3_SIGNING_INPUT + b"x")


def test_rfc7515_a3_private_key_matches_published_public_key():
    key = ec.derive_private_key(_int(A3_JWK["d"]), ec.SECP256R1())
    assert jws.jwk(key) == {"crv": "P-256", "kty": "EC", "x": A3_JWK["x"], "y": A3_JWK["y"]}
    assert jws.algorithm(key) == "ES256"


def test_rfc7515_a3_sign_verifies_as_raw_r_s():
    key = ec.derive_private_key(_int(A3_JWK["d"]), ec.SECP256R1())
    public = _a3_public_key()
    for _ in range(5):  # randomised: several signatures, each must verify
        signature = jws.sign(key, A3_SIGNING_INPUT)
        _verify_raw_es256(public, signature, A3_SIGNING_INPUT)
        with pytest.raises(InvalidSignature):
            _verify_raw_es256(public, signature, A3_SIGNING_INPUT[:-1])


# --- RFC 8555 §8.1, §8.3, §8.4: key authorization and dns-01 --------------------------------

RFC8555_TOKEN = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"
RFC8555_THUMBPRINT = "9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
RFC8555_KEY_AUTHZ = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
RFC8555_TXT = "LPsIwTo7o8BoG0-vjCyGQGBWSVIPxI-i_X336eUOQZo"


def test_key_authorization_joins_token_and_thumbprint():
    assert challenges.key_authorization(RFC8555_TOKEN, RFC8555_THUMBPRINT) == RFC8555_KEY_AUTHZ


def test_dns01_txt_value():
    assert challenges.dns01_txt_value(RFC8555_KEY_AUTHZ) == RFC8555_TXT


def test_dns01_txt_value_is_sha256_base64url_unpadded():
    # Independent of the constant: hashlib + base64url without '=' (§8.4).
    value = challenges.dns01_txt_value(RFC8555_KEY_AUTHZ)
    assert "=" not in value and len(value) == 43
    assert b64url_decode(value) == hashlib.sha256(RFC8555_KEY_AUTHZ.encode("ascii")).digest()


@pytest.mark.parametrize(
    ("identifier", "expected"),
    [
        ("example.com", "_acme-challenge.example.com"),
        ("*.example.com", "_acme-challenge.example.com"),
        ("www.example.org", "_acme-challenge.www.example.org"),
    ],
)
def test_dns01_record_name(identifier, expected):
    assert challenges.dns01_record_name(identifier) == expected


# --- RFC 8555 §8.1, §8.3: tokens and http-01 ----------------------------------------------------


def test_http01_path_rfc8555_8_3_example():
    # §8.3's example request: GET /.well-known/acme-challenge/LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0
    expected = "/.well-known/acme-challenge/LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"
    assert challenges.http01_path(RFC8555_TOKEN) == expected
    assert challenges.HTTP01 == "http-01"


@pytest.mark.parametrize("token", [RFC8555_TOKEN, "A-_z09" * 4, "ODE4OWY4NTktYjhmYS00YmY1LTk5MDgtZTFjYTZmNjZlYTUx",
                                   "a" * 22, "a" * 128])
def test_valid_token_accepts_base64url(token):
    assert challenges.valid_token(token)


# §8.1: at least 128 bits (22 characters); more than 128 characters is no token a CA needs.
PADDING = "A" * 22


@pytest.mark.parametrize(
    "token",
    ["", ".", "..", "../etc/passwd", "/", "a/b", "a\\b", "abc=", "ab+c", "a b", "abc\n", "\u0430bc", "ab%2e",
     None, 123, b"abc", "a", "A-_z09", "a" * 21, "a" * 129, "A" * 10240,
     *(PADDING + bad for bad in ("=", "/x", ".x", "\n", " "))],
)
def test_valid_token_refuses_everything_else(token):
    assert not challenges.valid_token(token)
    if isinstance(token, str):
        with pytest.raises(ValueError, match="base64url"):
            challenges.http01_path(token)


# --- draft-ietf-acme-dns-account-label: dns-account-01 -----------------------------------------

# The draft's own example (-00 to -03, "Challenge Fulfillment"): account URL -> record name.
DNS_ACCOUNT_EXAMPLE_URL = "https://example.com/acme/acct/ExampleAccount"
DNS_ACCOUNT_EXAMPLE_NAME = "_ujmmovf2vn55tgye._acme-challenge.example.org"


def test_dns_account01_draft_example():
    assert challenges.dns_account01_record_name("example.org", DNS_ACCOUNT_EXAMPLE_URL) == DNS_ACCOUNT_EXAMPLE_NAME
    assert challenges.DNS_ACCOUNT01 == "dns-account-01"


@pytest.mark.parametrize("account_url", [DNS_ACCOUNT_EXAMPLE_URL, "https://localhost:14000/my-account/1",
                                         "https://acme-staging-v02.api.letsencrypt.org/acme/acct/123456789"])
def test_dns_account01_label_computed_step_by_step(account_url):
    digest = hashlib.sha256(account_url.encode("ascii")).digest()  # SHA-256 of the Location URL
    first_ten = digest[0:10]  # bytes 0 through 9
    encoded = base64.b32encode(first_ten).decode("ascii")  # RFC 4648 base32, upper case
    assert len(encoded) == 16 and "=" not in encoded  # 80 bits: no padding
    label = "_" + encoded.lower()  # lower case, as Pebble 2.10 compares it
    expected = f"{label}._acme-challenge.www.example.com"
    assert challenges.dns_account01_record_name("www.example.com", account_url) == expected
    # A wildcard validates its base domain, as dns-01 does.
    assert challenges.dns_account01_record_name("*.www.example.com", account_url) == expected


def test_dns_account01_label_depends_on_the_exact_account_url():
    # The URL is hashed byte for byte: a trailing slash or another host is another account label.
    names = {challenges.dns_account01_record_name("example.org", url).split(".")[0]
             for url in (DNS_ACCOUNT_EXAMPLE_URL, DNS_ACCOUNT_EXAMPLE_URL + "/",
                         DNS_ACCOUNT_EXAMPLE_URL.replace("example.com", "127.0.0.1"))}
    assert len(names) == 3


def test_dns_account01_value_is_dns01_value():
    # Same value as dns-01 (the draft: base64url of the SHA-256 of the key authorization); only the name differs.
    assert challenges.dns01_txt_value(RFC8555_KEY_AUTHZ) == RFC8555_TXT


# --- draft-ietf-acme-dns-persist: dns-persist-01 -----------------------------------------------

# draft-ietf-acme-dns-persist-01 §3.1 example challenge, and the records of §4.1 and §10 for it.
PERSIST_CHALLENGE = {
    "type": "dns-persist-01",
    "url": "https://ca.example/acme/authz/1234/0",
    "status": "pending",
    "issuer-domain-names": ["authority.example", "ca.example.net"],
}
PERSIST_ACCOUNT = "https://ca.example/acct/123"


def _txt(*character_strings: str) -> str:
    """A TXT record's value as a resolver joins its character-strings (RFC 1035 §3.3.14)."""
    return "".join(character_strings)


def test_dns_persist01_draft_basic_example():
    # _validation-persist.example.com. IN TXT ("authority.example;" " accounturi=https://ca.example/acct/123")
    assert challenges.dns_persist01_record("example.com", PERSIST_CHALLENGE, PERSIST_ACCOUNT) == (
        "_validation-persist.example.com",
        _txt("authority.example;", " accounturi=https://ca.example/acct/123"),
    )
    assert challenges.DNS_PERSIST01 == "dns-persist-01"


def test_dns_persist01_draft_wildcard_example():
    expected = ("_validation-persist.example.com",
                _txt("authority.example;", " accounturi=https://ca.example/acct/123;", " policy=wildcard"))
    assert challenges.dns_persist01_record("*.example.com", PERSIST_CHALLENGE, PERSIST_ACCOUNT) == expected
    # The authorization object's form: base domain plus "wildcard": true.
    assert challenges.dns_persist01_record("example.com", PERSIST_CHALLENGE, PERSIST_ACCOUNT, wildcard=True) == expected


def test_dns_persist01_draft_persist_until_examples():
    assert challenges.dns_persist01_record("example.com", PERSIST_CHALLENGE, PERSIST_ACCOUNT,
                                           persist_until=1721952000)[1] == _txt(
        "authority.example;", " accounturi=https://ca.example/acct/123;", " persistUntil=1721952000")
    assert challenges.dns_persist01_record("*.example.com", PERSIST_CHALLENGE, PERSIST_ACCOUNT,
                                           persist_until=1721952000)[1] == _txt(
        "authority.example;", " accounturi=https://ca.example/acct/123;", " policy=wildcard;",
        " persistUntil=1721952000")


def test_dns_persist01_issuer_choice_is_stable_and_from_the_list():
    reordered = {**PERSIST_CHALLENGE, "issuer-domain-names": ["ca.example.net", "authority.example"]}
    assert challenges.dns_persist01_record("example.com", reordered, PERSIST_ACCOUNT)[1].startswith(
        "authority.example; ")
    pebble = {"type": "dns-persist-01", "issuer-domain-names": ["pebble.letsencrypt.org"]}  # Pebble's default
    assert challenges.dns_persist01_record("example.com", pebble, PERSIST_ACCOUNT)[1] == (
        "pebble.letsencrypt.org; accounturi=https://ca.example/acct/123")
    # Draft -02's spelling of the field.
    renamed = {"type": "dns-persist-01", "issuerDomainNames": ["authority.example"]}
    assert challenges.dns_persist01_record("example.com", renamed, PERSIST_ACCOUNT)[1].startswith("authority.example;")


def test_dns_persist01_uses_the_challenges_accounturi_when_given():
    # draft -01 §3.1: the challenge's accounturi is "the URI the CA expects in the DNS record" (Pebble 2.10.1 sends it).
    challenge = {**PERSIST_CHALLENGE, "accounturi": "https://ca.example/acct/123-alias"}
    assert challenges.dns_persist01_record("example.com", challenge, PERSIST_ACCOUNT)[1] == (
        "authority.example; accounturi=https://ca.example/acct/123-alias")


@pytest.mark.parametrize(
    "names", [[], ["a.example"] * 11, None, "authority.example", [";"], ["bad name"], ["-x.example"]],
)
def test_dns_persist01_malformed_issuer_list_is_refused(names):
    challenge = {"type": "dns-persist-01"} if names is None else {"type": "dns-persist-01",
                                                                   "issuer-domain-names": names}
    with pytest.raises(ValueError, match="malformed dns-persist-01 challenge"):
        challenges.dns_persist01_record("example.com", challenge, PERSIST_ACCOUNT)


@pytest.mark.parametrize("uri", ["", "https://ca.example/acct/1;policy=wildcard", "https://ca.example/a b",
                                 "https://ca.example/\u00e4"])
def test_dns_persist01_account_uri_must_fit_rfc8659_value(uri):
    with pytest.raises(ValueError, match="RFC 8659"):
        challenges.dns_persist01_record("example.com", PERSIST_CHALLENGE, uri)


@pytest.mark.parametrize("until", [-1, True, 1.5, "1721952000"])
def test_dns_persist01_persist_until_is_whole_seconds(until):
    with pytest.raises(ValueError, match="persistUntil"):
        challenges.dns_persist01_record("example.com", PERSIST_CHALLENGE, PERSIST_ACCOUNT, persist_until=until)
