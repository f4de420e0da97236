"""What renew.sh keeps in each work directory between runs, and the arithmetic of its back-off.

renew.sh (tools/renew.py) runs the numbered steps unattended, for many directories, from a timer.
Each directory it renews holds three more files:

- renew-options.json: how this directory renews (step 06's options, --http, --profile, --new-key,
  the .pfx password's file or variable, the hooks, the fallback CA). Saved by ``renew.sh --dir DIR
  OPTIONS`` (each kind of option given replaces that kind only) and reused by every later run.
  Plain JSON a person can read: it names a password file or an environment variable, never a
  secret's value; private all the same (0600), since hook command lines often carry tokens.
- renew-state.json: what the runs did: the last result, the failures in a row and the time before
  which no new attempt is made (the back-off), a pause the CA asked for, and which CA issued the
  current certificate (ARI and ``replaces`` belong to that CA).
- .renew.lock: held (flock) while a run works on the directory, so two runs never overlap; the
  kernel drops the lock when the process ends, however it ends.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .workdir import CERT, PRIVATE, atomic_write, timestamp

OPTIONS = "renew-options.json"
STATE = "renew-state.json"
LOCK = ".renew.lock"
FALLBACK_WORK = ".fallback-work"  # where an order at the fallback CA is made, inside the directory

# Back-off after a failed renewal: 1 hour, doubling with each failure in a row, at most a day,
# and never so long that the certificate would expire before the next try.
FIRST_BACKOFF = datetime.timedelta(hours=1)
MAX_BACKOFF = datetime.timedelta(hours=24)

DNS_CHALLENGE = "06_dns_challenge.py"
HTTP_CHALLENGE = "06_http_challenge.py"
TLS_ALPN_CHALLENGE = "06_tls_alpn_challenge.py"

# Step-06 options whose value is a path: saved absolute, since a timer runs in another directory.
PATH_OPTIONS = ("--webroot", "--tsig-key-file", "--ca-bundle", "--exec-hook")
# Of those, the ones whose bare name (no /) is a program found on PATH, not a file here.
PROGRAM_OPTIONS = ("--exec-hook",)
HOOK_TIMEOUT = 600  # seconds a hook may run when the directory saved no --hook-timeout


@dataclass
class RenewOptions:
    """How one directory renews: what renew-options.json holds."""

    challenge_step: str = DNS_CHALLENGE
    challenge_options: list[str] = field(default_factory=list)
    profile: str | None = None
    new_key: bool = False
    password_file: str | None = None  # a path, never the password
    password_env: str | None = None  # a variable's name, never its value
    deploy_hook: str | None = None
    on_failure_hook: str | None = None
    hook_timeout: int | None = None  # seconds; None: HOOK_TIMEOUT
    fallback: str | None = None  # a work directory with an account at another CA (01 and 04)

    def password_options(self) -> list[str]:
        if self.password_file:
            return ["--password-file", self.password_file]
        if self.password_env:
            return ["--password-env", self.password_env]
        return []

    def shown(self) -> str:
        """The options as a renew.sh command line would give them (no secret is ever in them)."""
        words = [*self.challenge_options]
        if self.challenge_step == HTTP_CHALLENGE:
            words.insert(0, "--http")
        elif self.challenge_step == TLS_ALPN_CHALLENGE:
            words.insert(0, "--tls-alpn")
        for flag, value in (("--profile", self.profile), ("--password-file", self.password_file),
                            ("--password-env", self.password_env), ("--deploy-hook", self.deploy_hook),
                            ("--on-failure-hook", self.on_failure_hook),
                            ("--hook-timeout", str(self.hook_timeout) if self.hook_timeout else None),
                            ("--fallback", self.fallback)):
            if value:
                words += [flag, value]
        if self.new_key:
            words.append("--new-key")
        import shlex

        return shlex.join(words) or "(none: step 06 with no options)"


def absolute_paths(options: list[str], cwd: Path) -> list[str]:
    """Step-06 options with the values of PATH_OPTIONS made absolute (a bare program name stays as it is)."""
    out = list(options)
    for i, word in enumerate(out):
        name, eq, value = word.partition("=")
        if name not in PATH_OPTIONS:
            continue
        if eq:
            out[i] = f"{name}={_absolute(name, value, cwd)}"
        elif i + 1 < len(out):
            out[i + 1] = _absolute(name, out[i + 1], cwd)
    return out


def _absolute(name: str, value: str, cwd: Path) -> str:
    if os.path.isabs(value) or (name in PROGRAM_OPTIONS and "/" not in value):
        return value
    return os.path.normpath(cwd / value)


def _text_or_none(value: Any) -> bool:
    return value is None or isinstance(value, str)


# What each field of renew-options.json must hold: a hand-edited file is checked before anything runs.
_FIELD_CHECKS: dict[str, tuple[str, Any]] = {
    "challenge_step": ("a step's file name", lambda v: isinstance(v, str) and v.startswith("06_")),
    "challenge_options": ("a list of strings", lambda v: isinstance(v, list) and all(isinstance(w, str) for w in v)),
    "new_key": ("true or false", lambda v: isinstance(v, bool)),
    "hook_timeout": ("a whole number of seconds or null",
                     lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v > 0)),
}


def read_options(work: Path) -> RenewOptions | None:
    """renew-options.json, or None when the directory has none. Raises ValueError, one line saying which file
    and what to do, when it is damaged: not JSON, or a field of the wrong kind (``"profile": 5``)."""
    path = work / OPTIONS
    data = _read_json(path)
    if data is None:
        return None
    known = {f.name for f in fields(RenewOptions)}
    values = {k: v for k, v in data.items() if k in known}
    for name, value in values.items():
        kind, check = _FIELD_CHECKS.get(name, ("a string or null", _text_or_none))
        if not check(value):
            shown = json.dumps(value)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise ValueError(f"{path} is damaged ({name} should be {kind}, not {shown}): fix it, or save the "
                             f"options again with renew.sh --dir {work} --reset OPTIONS")
    return RenewOptions(**values)


def save_options(work: Path, options: RenewOptions) -> Path:
    path = work / OPTIONS
    data = {"about": "how renew.sh renews this directory; renew.sh --dir DIR OPTIONS replaces the kinds given "
                     "(with --reset, all of them)",
            **asdict(options)}
    # Private: hook command lines often carry a webhook's token.
    atomic_write(path, (json.dumps(data, indent=2) + "\n").encode(), PRIVATE)
    return path


def read_state(work: Path) -> dict[str, Any]:
    return _read_json(work / STATE) or {}


def write_state(work: Path, state: dict[str, Any]) -> None:
    atomic_write(work / STATE, (json.dumps(state, indent=2) + "\n").encode(), PRIVATE)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is damaged ({exc}): fix it or delete it") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is damaged (not a JSON object): fix it or delete it")
    return data


# --- the back-off ----------------------------------------------------------------------------------


def backoff(failures: int, time_left: datetime.timedelta) -> datetime.timedelta:
    """How long to wait after ``failures`` failed renewals in a row, ``time_left`` before the certificate expires.

    1 h, 2 h, 4 h ... up to 24 h; but at most half the time left, so there is always another try
    before the certificate expires. Once it has expired, every hour (at most): it is an outage.
    """
    doubling = FIRST_BACKOFF * 2 ** min(max(failures, 1) - 1, 16)
    wait = min(doubling, MAX_BACKOFF)
    if time_left <= datetime.timedelta(0):
        return min(wait, FIRST_BACKOFF)
    return min(wait, time_left / 2)


def record_failure(state: dict[str, Any], now: datetime.datetime, not_after: datetime.datetime,
                   failure: dict[str, Any]) -> dict[str, Any]:
    """``state`` after a failed renewal: the failure, one more in a row, and the next try's time."""
    failures = int(state.get("failures") or 0) + 1
    state.update(failures=failures, next_try=text(now + backoff(failures, not_after - now)),
                 last_failure={"at": text(now), **failure})
    if failure.get("unpause_url"):
        state["paused"] = {"at": text(now), "unpause_url": failure["unpause_url"]}
    else:
        state.pop("paused", None)  # a forced try got past the pause, to fail otherwise
    return state


def record_success(state: dict[str, Any], issued_by: dict[str, Any]) -> dict[str, Any]:
    for key in ("failures", "next_try", "paused"):
        state.pop(key, None)
    state["issued_by"] = issued_by
    return state


def text(when: datetime.datetime) -> str:
    return timestamp(when)  # RFC 3339, checked to read back


def parse_time(value: Any) -> datetime.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return None


# --- what a failed step said ------------------------------------------------------------------------

_PROBLEM = re.compile(r"urn:ietf:params:acme:error:([A-Za-z]+)")
_URL = re.compile(r"https?://[^\s\"'<>)]+")


def problem_type(stderr: str) -> str | None:
    """The ACME problem type a step printed (its error's second line), e.g. ``rateLimited``."""
    match = _PROBLEM.search(stderr)
    return match.group(1) if match else None


def error_line(stderr: str, status: int) -> str:
    """One line for the summary and the hooks: the step's error, with the CA's problem if it sent one."""
    lines = stderr.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("error: "):
            out = line.removeprefix("error: ").strip()
            if i + 1 < len(lines) and _PROBLEM.search(lines[i + 1]):
                out += f" ({lines[i + 1].strip()})"
            return out[:500]
    return f"exit status {status}"


def unpause_url(stderr: str) -> str | None:
    """The link a CA sends with ``rateLimited`` when it paused the account for a name (Let's Encrypt's
    "Please visit: https://portal.letsencrypt.org/sfe/v1/unpause?jwt=..."); None for other limits."""
    if problem_type(stderr) != "rateLimited":
        return None
    return next((url for url in _URL.findall(stderr) if "unpause" in url.lower()), None)


# --- locks and directories ----------------------------------------------------------------------------


class Lock:
    """flock on DIR/.renew.lock, taken without waiting. The kernel releases it when the process ends."""

    def __init__(self, work: Path) -> None:
        self.path = work / LOCK
        self.fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, PRIVATE)  # not inherited by the steps (PEP 446)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the lock; the file stays, harmless
            self.fd = None


def find_work_dirs(root: Path) -> list[Path]:
    """Every directory under ``root`` (itself included) holding a cert.pem, except the copies in previous/
    and the fallback's scratch directories."""
    found = []
    for here, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "previous" and not d.startswith("."))
        if CERT in filenames:
            found.append(Path(here))
    return found
