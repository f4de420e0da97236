"""PKCS#12 (.pfx) bundles for Windows and IIS: the key, the leaf and its chain in one file.

Windows Server 2019 / Windows 10 1709 and later read AES-256 with a SHA-256 MAC. Windows
Server 2016 and older fail on it with "the password you entered is incorrect"; they need
the legacy 3DES-SHA1 encryption with a SHA-1 MAC. ``algorithms`` reads back from a written
file which algorithms it really uses (no password needed: a .pfx names them in the clear).
"""

from __future__ import annotations

import getpass
import warnings

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import PrivateFormat, pkcs12

from . import secret_input
from .errors import UsageError
from .keys import PrivateKey

# PBKDF2 iterations for the key and certificate encryption (the MAC keeps cryptography's own
# count). OpenSSL 3 uses 2048; more makes guessing costlier, and Windows imports either quickly.
MODERN_ROUNDS = 20000
LEGACY_ROUNDS = 2048


def pfx_bytes(key: PrivateKey, cert: x509.Certificate, chain: list[x509.Certificate], password: bytes,
              *, legacy: bool, friendly_name: str) -> bytes:
    """The encrypted PKCS#12 file (RFC 7292) holding key, leaf and intermediates."""
    builder = PrivateFormat.PKCS12.encryption_builder()
    if legacy:
        builder = (builder.kdf_rounds(LEGACY_ROUNDS)
                   .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC).hmac_hash(hashes.SHA1()))
    else:
        builder = (builder.kdf_rounds(MODERN_ROUNDS)
                   .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC).hmac_hash(hashes.SHA256()))
    return pkcs12.serialize_key_and_certificates(
        friendly_name.encode("utf-8"), key, cert, chain or None, builder.build(password)
    )


def read_password(password_file: str | None, password_env: str | None) -> bytes:
    """The export password from a file's first line, an environment variable, or asked twice.

    Never from the command line itself: other users can read a process's arguments. The
    password is UTF-8 encoded, as Windows and OpenSSL 3 expect; text that is not valid
    Unicode, or holds a NUL, is refused without showing any of it.
    """
    given = secret_input.from_file_or_env(password_file, password_env, "password", file_option="--password-file")
    password, source = given or (_ask_twice(), "the prompt")
    if not password:
        raise UsageError(f"the password from {source} is empty; Windows needs one to protect the key")
    if "\0" in password:
        raise UsageError(f"the password from {source} holds a NUL character, which PKCS#12 cannot carry")
    try:
        return password.encode("utf-8")
    except UnicodeEncodeError:  # bytes that were not UTF-8, smuggled in as surrogates
        raise UsageError(f"the password from {source} is not valid UTF-8 text; use a UTF-8 password") from None


def _ask_twice() -> str:
    """Ask on the terminal, twice, without echo; refuse to read a password from a pipe."""
    no_terminal = "no terminal to ask for the password on: use --password-file FILE or --password-env VAR"
    with warnings.catch_warnings():
        warnings.simplefilter("error", getpass.GetPassWarning)  # it would read stdin, echoing
        try:
            password = getpass.getpass("Password for the .pfx: ")
            again = getpass.getpass("Same password again: ")
        except (getpass.GetPassWarning, EOFError):
            raise UsageError(no_terminal) from None
    if again != password:
        raise UsageError("the two passwords differ; run again")
    return password


# --- Reading the algorithms back from a .pfx (for -v) ------------------------------------------
# A .pfx names its algorithms in the clear: only the bags' contents are encrypted, so no password
# is needed to list them. The few OIDs a PKCS#12 file from this step (or OpenSSL, or Windows) uses:
_OIDS = {
    "1.2.840.113549.1.7.1": "data",
    "1.2.840.113549.1.7.6": "encryptedData",
    "1.2.840.113549.1.12.10.1.1": "keyBag",
    "1.2.840.113549.1.12.10.1.2": "pkcs8ShroudedKeyBag",
    "1.2.840.113549.1.12.10.1.3": "certBag",
    "1.2.840.113549.1.5.13": "PBES2",
    "1.2.840.113549.1.5.12": "PBKDF2",
    "1.2.840.113549.2.7": "hmacWithSHA1",
    "1.2.840.113549.2.9": "hmacWithSHA256",
    "1.2.840.113549.2.10": "hmacWithSHA384",
    "1.2.840.113549.2.11": "hmacWithSHA512",
    "2.16.840.1.101.3.4.1.2": "AES-128-CBC",
    "2.16.840.1.101.3.4.1.22": "AES-192-CBC",
    "2.16.840.1.101.3.4.1.42": "AES-256-CBC",
    "1.2.840.113549.1.12.1.1": "pbeWithSHA1And128BitRC4",
    "1.2.840.113549.1.12.1.3": "pbeWithSHA1And3-KeyTripleDES-CBC",
    "1.2.840.113549.1.12.1.6": "pbeWithSHA1And40BitRC2-CBC",
    "1.3.14.3.2.26": "SHA1",
    "2.16.840.1.101.3.4.2.1": "SHA256",
    "2.16.840.1.101.3.4.2.2": "SHA384",
    "2.16.840.1.101.3.4.2.3": "SHA512",
}
_SEQUENCE, _OCTETS, _OID, _INTEGER, _EXPLICIT_0, _IMPLICIT_0 = 0x30, 0x04, 0x06, 0x02, 0xA0, 0x80


def algorithms(pfx: bytes) -> list[tuple[str, str]]:
    """What protects each part of a .pfx, as (part, algorithm) pairs: certificates, private key, MAC.

    Read from the file itself (RFC 7292 §4-5; PBES2 and PBKDF2 from RFC 8018), so it shows what
    was written, not what was asked for. ValueError if the file is not PKCS#12 as DER.
    """
    try:
        return _algorithms(pfx)
    except (IndexError, KeyError, ValueError) as exc:
        raise ValueError(f"not a PKCS#12 file this step can read ({exc or type(exc).__name__})") from None


def _algorithms(pfx: bytes) -> list[tuple[str, str]]:
    _version, auth_safe, *mac_data = _items(_only(pfx, _SEQUENCE))
    content_type, content = _items(_expect(auth_safe, _SEQUENCE))
    if _name(content_type) != "data":
        raise ValueError("the file is signed, not password-protected")
    found = []
    # AuthenticatedSafe: ContentInfos, each either plain data (bags inside: the key, shrouded on its
    # own) or encryptedData (the certificates, all encrypted together).
    for info in _items(_only(_only(_expect(content, _EXPLICIT_0), _OCTETS), _SEQUENCE)):
        kind, body = _items(_expect(info, _SEQUENCE))
        body = _expect(body, _EXPLICIT_0)[1]
        if _name(kind) == "encryptedData":
            _, encrypted = _items(_only(body, _SEQUENCE))
            _, algorithm, *_ = _items(_expect(encrypted, _SEQUENCE))
            found.append(("certificates", _cipher(algorithm)))
        elif _name(kind) == "data":
            for bag in _items(_only(_only(body, _OCTETS), _SEQUENCE)):
                bag_id, value, *_ = _items(_expect(bag, _SEQUENCE))
                if _name(bag_id) == "pkcs8ShroudedKeyBag":
                    algorithm, _ = _items(_only(_expect(value, _EXPLICIT_0)[1], _SEQUENCE))
                    found.append(("private key", _cipher(algorithm)))
                elif _name(bag_id) == "keyBag":
                    found.append(("private key", "not encrypted"))
                elif _name(bag_id) == "certBag" and ("certificates", "not encrypted") not in found:
                    found.append(("certificates", "not encrypted"))
    if mac_data:
        digest_info, _salt, *count = _items(_expect(mac_data[0], _SEQUENCE))
        digest, _ = _items(_expect(digest_info, _SEQUENCE))
        iterations = _integer(count[0]) if count else 1  # DEFAULT 1 (RFC 7292 §4)
        found.append(("MAC", f"HMAC-{_name(_items(_expect(digest, _SEQUENCE))[0])}, {iterations} iterations"))
    else:
        found.append(("MAC", "none: the file's integrity is not protected"))
    return found


def _cipher(algorithm: tuple[int, bytes]) -> str:
    """An AlgorithmIdentifier of a password-based cipher, in words."""
    oid, params = _items(_expect(algorithm, _SEQUENCE))
    scheme = _name(oid)
    if scheme == "PBES2":  # RFC 8018 §6.2: a key derivation function, then a cipher
        kdf, cipher = _items(_expect(params, _SEQUENCE))
        kdf_oid, kdf_params = _items(_expect(kdf, _SEQUENCE))
        _salt, count, *rest = _items(_expect(kdf_params, _SEQUENCE))
        prfs = [r for r in rest if r[0] == _SEQUENCE]
        prf = _name(_items(prfs[0])[0]) if prfs else "hmacWithSHA1"  # PBKDF2-params DEFAULT (RFC 8018 A.2)
        cipher_name = _name(_items(_expect(cipher, _SEQUENCE))[0])
        return f"PBES2: {_name(kdf_oid)} with {prf}, {_integer(count)} iterations, {cipher_name}"
    _salt, count = _items(_expect(params, _SEQUENCE))  # RFC 7292 Appendix C: pkcs-12PbeParams
    return f"{scheme}, {_integer(count)} iterations"


def _read(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """One DER element at ``pos``: its tag, its content, and where the next element starts."""
    tag, length, pos = data[pos], data[pos + 1], pos + 2
    if length & 0x80:  # long form: the next (length & 0x7f) bytes hold the length
        size = length & 0x7F
        if not 1 <= size <= 4:
            raise ValueError("indefinite or oversized length (BER, not DER)")
        length, pos = int.from_bytes(data[pos:pos + size], "big"), pos + size
    if pos + length > len(data):
        raise ValueError("truncated")
    return tag, data[pos:pos + length], pos + length


def _items(element: tuple[int, bytes]) -> list[tuple[int, bytes]]:
    """The elements inside a constructed element (a SEQUENCE, or an explicit tag)."""
    content, items, pos = element[1], [], 0
    while pos < len(content):
        tag, value, pos = _read(content, pos)
        items.append((tag, value))
    return items


def _only(data: bytes | tuple[int, bytes], tag: int) -> tuple[int, bytes]:
    """``data`` (bytes, or an element's content) as exactly one element with ``tag``."""
    content = data[1] if isinstance(data, tuple) else data
    found, value, end = _read(content, 0)
    if found != tag or end != len(content):
        raise ValueError(f"expected tag {tag:#04x}, found {found:#04x}")
    return found, value


def _expect(element: tuple[int, bytes], tag: int) -> tuple[int, bytes]:
    if element[0] != tag:
        raise ValueError(f"expected tag {tag:#04x}, found {element[0]:#04x}")
    return element


def _integer(element: tuple[int, bytes]) -> int:
    return int.from_bytes(_expect(element, _INTEGER)[1], "big", signed=True)


def _name(element: tuple[int, bytes]) -> str:
    """An OBJECT IDENTIFIER by its usual name, else in dotted form."""
    content = _expect(element, _OID)[1]
    arcs, value = [], 0
    for byte in content:  # base 128, high bit = more bytes follow (X.690 §8.19)
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    dotted = ".".join(str(a) for a in [first, arcs[0] - 40 * first, *arcs[1:]])
    return _OIDS.get(dotted, dotted)
