"""base64url and JSON in the forms JOSE and ACME require."""

from __future__ import annotations

import base64
import json
from typing import Any


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
