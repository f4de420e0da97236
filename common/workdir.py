"""The work directory: every file a step reads or writes, and which step makes it.

Steps hand each other files, not memory, so each one can run alone (and be re-run).
Writes are atomic (a crash never leaves half a file) and private keys are mode 0600.
One step at a time changes a directory: it holds a lock on it (``.lock``) while it runs.
"""

from __future__ import annotations

import atexit
import datetime
import errno
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import resources
from .errors import UsageError, printable
from .keys import PrivateKey, key_from_pem, key_to_pem, same_public_key

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from cryptography import x509

ACCOUNT_KEY = "account.key"
CERT_KEY = "cert.key"
CSR = "cert.csr"
ACCOUNT = "account.json"
ORDER = "order.json"
SESSION = "session.json"  # cached directory and the latest Replay-Nonce
DNS_RECORDS = "dns-records.json"  # TXT records step 06 published and has yet to remove
RENEWAL = "renewal.json"  # step 11's renewal decision for cert.pem (ARI window, chosen time)
OLD_ACCOUNT_KEY = "account.key.old"  # the key step 13 rolled over from
CERT = "cert.pem"
CHAIN = "chain.pem"
FULLCHAIN = "fullchain.pem"
PFX = "certificate.pfx"
LOCK = ".lock"  # held (flock) by the step changing the directory; names it and its pid


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
    PFX: "09_export_pkcs12.py",
    RENEWAL: "11_renewal_info.py",
    OLD_ACCOUNT_KEY: "13_change_account_key.py",
    DNS_RECORDS: "06_dns_challenge.py",
}

PRIVATE = 0o600
PUBLIC = 0o644
PRIVATE_DIR = 0o700


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
            _link_no_clobber(tmp, path, data, mode)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def already_exists(path: Path) -> UsageError:
    """The one error for 'this file would be lost': nothing is replaced without --force."""
    return UsageError(f"{path} already exists; keep it, or pass --force to replace it")


def _link_no_clobber(tmp: str, path: Path, data: bytes, mode: int) -> None:
    """Put the finished temp file at ``path`` unless something is there already."""
    try:
        os.link(tmp, path)  # fails if path exists: no-clobber in one system call
        return
    except FileExistsError:
        raise already_exists(path) from None
    except OSError:
        pass  # no hard links here (FAT, some network shares): create exclusively instead
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode)
    except FileExistsError:
        raise already_exists(path) from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def timestamp(when: datetime.datetime) -> str:
    """``when`` as state files keep times: RFC 3339 in UTC, to the second (``2026-03-01T08:00:00Z``).

    Every time a state file holds is written here, and must read back as the same time: a time
    from outside (a CA's window) that cannot is refused (ValueError), never saved half-formed.
    """
    try:
        utc = when.astimezone(datetime.timezone.utc).replace(microsecond=0)
    except (OverflowError, ValueError) as exc:  # an offset that pushes it past year 1 or 9999
        raise ValueError(f"{when} cannot be written as a UTC time ({exc})") from None
    text = f"{utc.year:04d}-{utc:%m-%dT%H:%M:%S}Z"  # %Y does not pad years before 1000 on every platform
    if resources.rfc3339(text) != utc:
        raise ValueError(f"{when} does not read back as written ({text})")
    return text


class InUseError(UsageError):
    """Another step is changing the work directory (exit status 2)."""


class WorkDir:
    """The directory that holds one certificate's files (``--dir``, default ``./acme-work``).

    ``lock_as`` (a step's name) makes it hold the directory's lock from now on, or from when
    the directory is created: see :meth:`lock`.
    """

    def __init__(self, root: Path, *, lock_as: str | None = None) -> None:
        self.root = root
        self._lock_as = lock_as
        self._lock_fd: int | None = None
        if lock_as and root.is_dir():
            self.lock()

    def lock(self) -> None:
        """Hold DIR/.lock until the process ends, or raise InUseError naming the step (and pid) that holds it.

        Two steps on one directory would undo each other: a second 06 would take the first one's
        TXT records for leftovers and remove them while the CA validates. The lock is flock(2):
        the kernel drops it when its holder ends, however it ends (even SIGKILL), so a lock file
        left behind never blocks anyone, and whatever an earlier run left (dns-records.json) is
        that of a run no longer alive. A directory this user cannot write is not locked: no step
        of theirs can change it either.
        """
        if self._lock_fd is not None or not self._lock_as:
            return
        try:
            fd = os.open(self.path(LOCK), os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), PRIVATE)
        except (PermissionError, FileNotFoundError):
            return
        except OSError as exc:
            if exc.errno == errno.EROFS:
                return
            raise
        if not _try_lock(fd):
            holder = os.read(fd, 200).decode("utf-8", "replace").strip()
            os.close(fd)
            raise InUseError(f"{self.root} is being changed by {printable(holder) or 'another step'}: wait for it to "
                       "end (one step at a time per work directory)")
        os.ftruncate(fd, 0)
        os.write(fd, f"{self._lock_as} (pid {os.getpid()})\n".encode())
        self._lock_fd = fd  # open until the process ends; not inherited by the programs it starts (PEP 446)

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
        if not replace:
            self.refuse_existing(name)
        self._make_root()
        atomic_write(self.path(name), data, PRIVATE if private else PUBLIC, replace=replace)
        return self.path(name)

    def _make_root(self) -> None:
        """Create the work dir 0700 whatever the umask: it holds private keys. Then lock it, if not yet."""
        if not self.root.is_dir():
            self.root.mkdir(parents=True, mode=PRIVATE_DIR, exist_ok=True)
            os.chmod(self.root, PRIVATE_DIR)  # mkdir's mode is filtered by the umask
        self.lock()

    def refuse_existing(self, name: str) -> None:
        """UsageError if ``name`` exists: check before work that would be wasted (a password prompt)."""
        if self.exists(name):
            raise already_exists(self.path(name))

    def read_json(self, name: str, check: Callable[[Any], Any] | None = None) -> dict[str, Any]:
        """Parse a JSON file and run ``check`` on it (a function raising resources.ShapeError)."""
        step = MADE_BY.get(name, "its step")
        try:
            data = json.loads(self.read_bytes(name))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise UsageError(f"{self.path(name)} is not valid JSON ({exc}); run {step} again") from None
        try:
            (check or _json_object)(data)
        except resources.ShapeError as exc:
            raise UsageError(f"{self.path(name)} is damaged ({exc}); run {step} again") from None
        return data

    def read_account(self) -> dict[str, Any]:
        """account.json: the server and account URL step 04 registered (and what else it recorded)."""
        return self.read_json(ACCOUNT, _account_file)

    def read_order(self) -> dict[str, Any]:
        """order.json: the order's URL and the order as the CA last showed it."""
        return self.read_json(ORDER, _order_file)

    def write_json(self, name: str, value: dict[str, Any]) -> Path:
        return self.write_bytes(name, (json.dumps(value, indent=2) + "\n").encode("utf-8"))

    def read_key(self, name: str) -> PrivateKey:
        remedy = f"; make a new one with {MADE_BY[name]} --force" if name in MADE_BY else ""
        return key_from_pem(self.read_bytes(name), str(self.path(name)), remedy)

    def read_csr(self) -> x509.CertificateSigningRequest:
        """cert.csr, checked against cert.key: a CSR left from an older key would waste an order."""
        from .certs import load_csr  # x509 costs start-up time the key steps don't need

        csr = load_csr(self.read_bytes(CSR), str(self.path(CSR)))
        if self.exists(CERT_KEY) and not same_public_key(csr, self.read_key(CERT_KEY)):
            raise UsageError(f"{self.path(CSR)} was made with another key than cert.key: run 03_create_csr.py again")
        return csr

    def read_certificates(self, name: str) -> list[x509.Certificate]:
        """The PEM certificates in cert.pem, chain.pem or fullchain.pem (chain.pem may be empty)."""
        from .certs import parse_pem_certificates

        try:
            certs = parse_pem_certificates(self.read_bytes(name))
        except ValueError as exc:
            raise UsageError(f"{self.path(name)} is damaged ({exc}); run {MADE_BY[name]} again") from None
        if not certs and name != CHAIN:
            raise UsageError(f"{self.path(name)} holds no certificate; run {MADE_BY[name]} again")
        return certs

    def read_leaf(self, path: str | Path | None = None) -> x509.Certificate:
        """The certificate in ``path`` (the first one, if it holds a chain), else the work dir's cert.pem.

        An empty ``path`` also means cert.pem: what an option like ``--replaces`` given alone stands for.
        """
        if not path:
            return self.read_certificates(CERT)[0]
        from .certs import read_pem_file

        return read_pem_file(Path(path), "the certificate file")[0]

    def write_key(self, name: str, key: PrivateKey, *, force: bool) -> bool:
        """Save a private key 0600. Refuse to replace one unless ``force``; True if one was replaced."""
        existed = self.exists(name)
        self.write_bytes(name, key_to_pem(key), private=True, replace=force)
        return existed


def _try_lock(fd: int) -> bool:
    """Take the lock on ``fd`` without waiting; False if another process holds it."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    import msvcrt  # Windows: lock a byte past the holder's name, which stays readable

    os.lseek(fd, 4096, os.SEEK_SET)
    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        os.lseek(fd, 0, os.SEEK_SET)
        return False
    os.lseek(fd, 0, os.SEEK_SET)
    return True


def _json_object(data: Any) -> None:
    if not isinstance(data, dict):
        raise resources.ShapeError("it is not a JSON object")


def _account_file(data: Any) -> None:
    _json_object(data)
    resources.https_url(data.get("directory_url"), "directory")
    if not data.get("account_url"):
        raise resources.ShapeError("it holds no account URL")
    resources.https_url(data["account_url"], "account")


def _order_file(data: Any) -> None:
    _json_object(data)
    resources.https_url(data.get("url"), "order")
    resources.order(data.get("order"))


class SessionCache:
    """The directory object and the latest Replay-Nonce, kept between steps.

    Saving them lets the next step skip a directory GET and a newNonce HEAD (RFC 8555 §7.2);
    a stale nonce costs only a badNonce retry.
    """

    def __init__(self, work: WorkDir, directory_url: str) -> None:
        self.work = work
        self._data: dict[str, Any] = {"directory_url": directory_url}
        self._dirty = False
        try:
            saved = json.loads(work.path(SESSION).read_bytes()) if work.exists(SESSION) else {}
        except (OSError, ValueError):
            saved = {}  # only a cache: a damaged one costs a directory GET and a newNonce HEAD
        if isinstance(saved, dict) and saved.get("directory_url") == directory_url:
            if isinstance(saved.get("directory"), dict) and isinstance(saved["directory"].get("newNonce"), str):
                self._data["directory"] = saved["directory"]
            if isinstance(saved.get("nonce"), str):
                self._data["nonce"] = saved["nonce"]
        # Written once when the step ends, not after each of possibly hundreds of responses.
        atexit.register(self.save)

    @property
    def directory(self) -> dict[str, Any] | None:
        return self._data.get("directory")

    @property
    def nonce(self) -> str | None:
        return self._data.get("nonce")

    def remember_directory(self, directory: dict[str, Any]) -> None:
        self._data["directory"] = directory
        self._dirty = True

    def remember_nonce(self, nonce: str) -> None:
        self._data["nonce"] = nonce
        self._dirty = True

    def save(self) -> None:
        if self._dirty:
            self._dirty = False
            try:
                self.work.write_json(SESSION, self._data)
            except OSError:
                pass  # a cache that cannot be written only costs the next step two requests
