"""PKCS#12 (.pfx) bundles for Windows and IIS: the key, the leaf and its chain in one file.

Windows Server 2019 / Windows 10 1709 and later read AES-256 with a SHA-256 MAC. Windows
Server 2016 and older fail on it with "the password you entered is incorrect"; they need
the legacy 3DES-SHA1 encryption with a SHA-1 MAC.
"""

from __future__ import annotations

import getpass
import os
import warnings
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import PrivateFormat, pkcs12

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
    if password_file:
        password = _first_line(Path(password_file))
        source = f"the first line of {password_file}"
    elif password_env:
        if password_env not in os.environ:
            raise UsageError(f"the environment variable {password_env} is not set: export it, or use --password-file")
        password = os.environ[password_env]
        source = f"${password_env}"
    else:
        password = _ask_twice()
        source = "the prompt"
    if not password:
        raise UsageError(f"the password from {source} is empty; Windows needs one to protect the key")
    if "\0" in password:
        raise UsageError(f"the password from {source} holds a NUL character, which PKCS#12 cannot carry")
    try:
        return password.encode("utf-8")
    except UnicodeEncodeError:  # bytes that were not UTF-8, smuggled in as surrogates
        raise UsageError(f"the password from {source} is not valid UTF-8 text; use a UTF-8 password") from None


def _first_line(path: Path) -> str:
    """The file's first line; UTF-8 with or without a BOM, or UTF-16 with its BOM as PowerShell 5 writes it.

    UTF-16 without a BOM cannot be told apart from UTF-8 reliably, so it is refused, not guessed.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read password file {path}: {exc.strerror}") from None
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        encoding = "utf-16"
    elif b"\0" in data[:2]:
        raise UsageError(f"password file {path} looks like UTF-16 without a byte-order mark: save it as UTF-8 "
                         "(PowerShell: Set-Content -Encoding utf8)")
    else:
        encoding = "utf-8-sig"
    try:
        lines = data.decode(encoding).splitlines()
    except UnicodeDecodeError:
        raise UsageError(f"password file {path} is neither UTF-8 nor UTF-16 text") from None
    return lines[0] if lines else ""


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


def powershell_commands(pfx_name: str, cert: x509.Certificate, host: str, site: str) -> list[str]:
    """What to type on the Windows server to import the .pfx and bind it in IIS (SNI, port 443)."""
    thumbprint = cert.fingerprint(hashes.SHA1()).hex().upper()  # how Windows names certificates
    return [
        f'Import-PfxCertificate -FilePath .\\{pfx_name} -CertStoreLocation Cert:\\LocalMachine\\My '
        '-Password (Read-Host -AsSecureString -Prompt "PFX password")',
        "Import-Module WebAdministration",
        f'New-WebBinding -Name "{site}" -Protocol https -Port 443 -HostHeader "{host}" -SslFlags 1',
        f'(Get-WebBinding -Name "{site}" -Protocol https -HostHeader "{host}").AddSslCertificate("{thumbprint}", "My")',
    ]
