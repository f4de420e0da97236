"""Which ACME server to talk to, and which CAs to trust for its TLS."""

from __future__ import annotations

import atexit
import json
import os
import socket
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from .errors import UsageError

STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
PRODUCTION = "https://acme-v02.api.letsencrypt.org/directory"
DEFAULT_SERVER = "staging"

# The servers --server knows by name ("pebble", the local test CA, is resolved at run time).
# The second value says where a CA that needs External Account Binding (RFC 8555 §7.3.4) hands
# out the key id and HMAC key that 04_new_account.py --eab-kid ... binds the account to; None
# for CAs that need none.
NAMED_SERVERS: dict[str, tuple[str, str | None]] = {
    "staging": (STAGING, None),
    "production": (PRODUCTION, None),
    "zerossl": ("https://acme.zerossl.com/v2/DV90", "the ZeroSSL dashboard, Developer section"),
    "google": ("https://dv.acme-v02.api.pki.goog/directory",
               "'gcloud publicca external-account-keys create' (use them within 7 days)"),
    "google-staging": ("https://dv.acme-v02.test-api.pki.goog/directory",
                       "'gcloud publicca external-account-keys create' with the API endpoint "
                       "preprod-publicca.googleapis.com (staging keys)"),
}
SERVER_NAMES = ("pebble", *NAMED_SERVERS)
EAB_SERVERS = tuple(name for name, (_, eab) in NAMED_SERVERS.items() if eab)


def eab_source(directory_url: str) -> str | None:
    """Where a named server that needs External Account Binding gives out its key id and HMAC key."""
    return next((eab for url, eab in NAMED_SERVERS.values() if url == directory_url), None)


# The local test CA (tools/local_ca.py) writes its directory URL and TLS bundle here.
LOCAL_CA_DIR_ENV = "ACME_LOCAL_CA_DIR"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def local_ca_dir() -> Path:
    return Path(os.environ.get(LOCAL_CA_DIR_ENV) or PROJECT_ROOT / ".local-ca")


def local_ca_state() -> dict[str, str]:
    """What the running local test CA published: directory URL, TLS bundle, management URLs."""
    path = local_ca_dir() / "state.json"
    start = "run .venv/bin/python tools/local_ca.py start"
    if not path.exists():
        raise UsageError(f"the local test CA is not set up ({path} is missing): {start}")
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state = None
    keys = ("directory_url", "ca_bundle", "challtestsrv_url")
    if not isinstance(state, dict) or not all(isinstance(state.get(k), str) for k in keys):
        raise UsageError(f"{path} is damaged: {start} again")
    return state


def is_local_ca(directory_url: str | None) -> bool:
    """True if ``directory_url`` is the local test CA's, as its state.json says (whether it runs or not)."""
    try:
        return bool(directory_url) and local_ca_state()["directory_url"] == directory_url
    except UsageError:
        return False


# Where a CA connects to validate (RFC 8555 §8.3, RFC 8737 §3), and the local test CA's state.json key for its own.
CHALLENGE_PORTS = {"http-01": (80, "http01_port"), "tls-alpn-01": (443, "tls_alpn01_port")}


def challenge_port(directory_url: str | None, challenge_type: str) -> int:
    """The port the CA connects to for ``challenge_type`` (http-01: 80, tls-alpn-01: 443).

    Real CAs always use those; the local test CA's Pebble uses the ports its configuration
    names (httpPort, tlsPort), which its state.json lists.
    """
    default, key = CHALLENGE_PORTS[challenge_type]
    if is_local_ca(directory_url):
        value = local_ca_state().get(key)
        if isinstance(value, int):
            return value
    return default


def local_ca_running() -> bool:
    """True if the local test CA is set up and its ACME port takes a connection (a quick local check)."""
    try:
        url = urlsplit(local_ca_state()["directory_url"])
        with socket.create_connection((url.hostname or "localhost", url.port or 443), timeout=1):
            return True
    except (UsageError, OSError, ValueError):
        return False


def first_server_option() -> str:
    """The --server a first 04_new_account.py needs to reach the CA the user works with, for a "Next:" line.

    None when $ACME_SERVER names it; ``pebble`` while the local test CA runs (without it the step
    would go to Let's Encrypt staging); else the default, staging, spelt out.
    """
    if os.environ.get("ACME_SERVER"):
        return ""
    return "--server pebble" if local_ca_running() else f"--server {DEFAULT_SERVER}"


def resolve_server(server: str) -> tuple[str, str | None]:
    """A directory URL and the CA bundle it needs, from a name in SERVER_NAMES or a URL."""
    if server == "pebble":
        state = local_ca_state()
        return state["directory_url"], state["ca_bundle"]
    if server in NAMED_SERVERS:
        return NAMED_SERVERS[server][0], None
    if server.startswith("https://"):
        return server, None
    raise UsageError(f"unknown server {server!r}: use {', '.join(SERVER_NAMES)} or an https:// directory URL")


def tls_verify(extra_bundle: str | None) -> str | bool:
    """What to pass as requests' ``verify``: the usual roots, plus ``extra_bundle`` when given.

    requests takes one bundle file, so the extra CA is appended to a copy of the default one
    (REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE if set, else certifi's) that lives as long as the step.
    """
    if not extra_bundle:
        return True
    extra = Path(extra_bundle)
    try:
        extra_pem = extra.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read CA bundle {extra}: {exc.strerror}") from None
    if b"-----BEGIN CERTIFICATE-----" not in extra_pem:
        raise UsageError(f"{extra} holds no PEM certificate: --ca-bundle wants the CA certificate(s) in PEM")
    import certifi  # requests' own dependency

    base = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()
    try:
        base_pem = Path(base).read_bytes()
    except OSError:
        base_pem = b""
    fd, combined = tempfile.mkstemp(prefix="acme-ca-", suffix=".pem")
    with os.fdopen(fd, "wb") as f:
        f.write(base_pem + b"\n" + extra_pem)
    atexit.register(lambda: os.path.exists(combined) and os.unlink(combined))
    return combined


def unreachable_hint(directory_url: str) -> str:
    """What to do when the server cannot be reached: start the local test CA, or check the network."""
    try:
        local = local_ca_state()["directory_url"] == directory_url
    except UsageError:
        local = "localhost" in directory_url or "127.0.0.1" in directory_url
    if local:
        where = f" --state-dir {local_ca_dir()}" if os.environ.get(LOCAL_CA_DIR_ENV) else ""
        return f"is the local test CA running? Start it with: .venv/bin/python tools/local_ca.py start{where}"
    return "check the network connection, and the proxy settings (HTTPS_PROXY) if you need one"
