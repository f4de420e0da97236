"""The work directory: every file a step reads or writes, and which step makes it.

Steps hand each other files, not memory, so each one can run alone (and be re-run).
Writes are atomic (a crash never leaves half a file) and private keys are mode 0600.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UsageError
from .keys import PrivateKey, key_from_pem, key_to_pem

if TYPE_CHECKING:
    from cryptography import x509

ACCOUNT_KEY = "account.key"
CERT_KEY = "cert.key"
CSR = "cert.csr"
ACCOUNT = "account.json"
ORDER = "order.json"
SESSION = "session.json"  # cached directory and the latest Replay-Nonce
CERT = "cert.pem"
CHAIN = "chain.pem"
FULLCHAIN = "fullchain.pem"
PFX = "certificate.pfx"

# Which script writes each file, so a missing file can name the step to run.
MADE_BY = {
    ACCOUNT_KEY: "01_create_account_key.py",
    CERT_KEY: "02_create_cert_key.py",
    CSR: "03_create_csr.py",
    ACCOUNT: "04_new_account.py",
    ORDER: "05_new_order.py",
    CERT: "08_get_certificate.py",
    CHAIN: "08_get_certificate.py",
    FULLCHAIN: "08_get_certificate.py",
}

PRIVATE = 0o600
PUBLIC = 0o644


def atomic_write(path: Path, data: bytes, mode: int = PUBLIC, *, replace: bool = True) -> None:
    """Write ``data`` to ``path`` all at once, with ``mode`` set before any byte lands.

    With ``replace=False`` an existing file is never clobbered, even by a racing writer.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, mode)  # mkstemp makes it 0600 already; widen only for public files
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if path exists: no-clobber in one system call
            except FileExistsError:
                raise UsageError(f"{path} already exists; use --force to replace it") from None
            os.unlink(tmp)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class WorkDir:
    """The directory that holds one certificate's files (``--dir``, default ``./acme-work``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str) -> Path:
        return self.root / name

    def exists(self, name: str) -> bool:
        return self.path(name).exists()

    def _require(self, name: str) -> Path:
        path = self.path(name)
        if not path.exists():
            step = MADE_BY.get(name)
            hint = f": run {step} first" if step else ""
            raise UsageError(f"{path} not found{hint}")
        return path

    def read_bytes(self, name: str) -> bytes:
        return self._require(name).read_bytes()

    def write_bytes(self, name: str, data: bytes, *, private: bool = False, replace: bool = True) -> Path:
        """Atomic write; ``replace=False`` refuses (UsageError) to clobber an existing file."""
        if not replace and self.exists(name):
            raise UsageError(f"{self.path(name)} already exists; keep it, or pass --force to replace it")
        atomic_write(self.path(name), data, PRIVATE if private else PUBLIC, replace=replace)
        return self.path(name)

    def read_json(self, name: str) -> dict[str, Any]:
        try:
            return json.loads(self.read_bytes(name))
        except json.JSONDecodeError as exc:
            step = MADE_BY.get(name, "its step")
            raise UsageError(f"{self.path(name)} is not valid JSON ({exc}); run {step} again") from None

    def write_json(self, name: str, value: dict[str, Any]) -> Path:
        return self.write_bytes(name, (json.dumps(value, indent=2) + "\n").encode("utf-8"))

    def read_key(self, name: str) -> PrivateKey:
        return key_from_pem(self.read_bytes(name), str(self.path(name)))

    def read_csr(self) -> x509.CertificateSigningRequest:
        from .certs import load_csr  # x509 costs start-up time the key steps don't need

        return load_csr(self.read_bytes(CSR), str(self.path(CSR)))

    def write_key(self, name: str, key: PrivateKey, *, force: bool) -> bool:
        """Save a private key 0600. Refuse to replace one unless ``force``; True if one was replaced."""
        existed = self.exists(name)
        self.write_bytes(name, key_to_pem(key), private=True, replace=force)
        return existed


class SessionCache:
    """The directory object and the latest Replay-Nonce, kept between steps.

    Saving them lets the next step skip a directory GET and a newNonce HEAD (RFC 8555 §7.2);
    a stale nonce costs only a badNonce retry.
    """

    def __init__(self, work: WorkDir, directory_url: str) -> None:
        self.work = work
        self.directory_url = directory_url
        try:
            data = json.loads(work.path(SESSION).read_bytes()) if work.exists(SESSION) else {}
        except json.JSONDecodeError:
            data = {}
        self._data = data if data.get("directory_url") == directory_url else {"directory_url": directory_url}

    @property
    def directory(self) -> dict[str, Any] | None:
        return self._data.get("directory")

    @property
    def nonce(self) -> str | None:
        return self._data.get("nonce")

    def remember_directory(self, directory: dict[str, Any]) -> None:
        self._data["directory"] = directory
        self.work.write_json(SESSION, self._data)

    def remember_nonce(self, nonce: str) -> None:
        self._data["nonce"] = nonce
        self.work.write_json(SESSION, self._data)
