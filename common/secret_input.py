"""Secrets a user hands to a step (the .pfx password, an EAB HMAC key): from a file's first line
or an environment variable, never from the command line, where other users can read a process's
arguments. Errors say where a secret came from and what is wrong with it, never what it is.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UsageError


def from_file_or_env(path: str | None, env: str | None, what: str, *, file_option: str) -> tuple[str, str] | None:
    """(the secret, where it came from) from ``path``'s first line or the variable ``env``; None if neither is given."""
    if path:
        return first_line(Path(path), what), f"the first line of {path}"
    if env:
        if env not in os.environ:
            raise UsageError(f"the environment variable {env} is not set: export it, or use {file_option}")
        return os.environ[env], f"${env}"
    return None


def first_line(path: Path, what: str) -> str:
    """The file's first line; UTF-8 with or without a BOM, or UTF-16 with its BOM as PowerShell 5 writes it.

    UTF-16 without a BOM cannot be told apart from UTF-8 reliably, so it is refused, not guessed.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {what} file {path}: {exc.strerror}") from None
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        encoding = "utf-16"
    elif b"\0" in data[:2]:
        raise UsageError(f"{what} file {path} looks like UTF-16 without a byte-order mark: save it as UTF-8 "
                         "(PowerShell: Set-Content -Encoding utf8)")
    else:
        encoding = "utf-8-sig"
    try:
        lines = data.decode(encoding).splitlines()
    except UnicodeDecodeError:
        raise UsageError(f"{what} file {path} is neither UTF-8 nor UTF-16 text") from None
    return lines[0] if lines else ""
