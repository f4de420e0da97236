"""Fixtures that run the real thing: Pebble CAs started by tools/local_ca.py, the scripted CA, BIND and nginx.

Each Pebble configuration the tests need (default nonce rejection, 90% nonce rejection,
100% authorization reuse, ...) is its own instance on its own ports, started once per session.
What tests share besides fixtures lives in helpers.py.
"""

from __future__ import annotations

import importlib.util

import pytest
from helpers import LOCAL_CA, start_ca

# Real BIND 9 and nginx, started once per session (tests/servers.py).
pytest_plugins = ["servers"]


@pytest.fixture(scope="session")
def ca(tmp_path_factory):
    """Pebble as Let's Encrypt ships it for client tests: 5% of good nonces rejected, authz reuse 50%."""
    ca = start_ca(tmp_path_factory, "default", {})
    yield ca
    ca.stop()


@pytest.fixture(scope="session")
def ca_nonce90(tmp_path_factory):
    """Pebble rejecting 90% of good nonces: only a client that retries badNonce gets through."""
    ca = start_ca(tmp_path_factory, "nonce90", {"PEBBLE_WFE_NONCEREJECT": "90"})
    yield ca
    ca.stop()


@pytest.fixture(scope="session")
def ca_reuse(tmp_path_factory):
    """Pebble reusing every valid authorization, as Let's Encrypt does for 30 days."""
    ca = start_ca(tmp_path_factory, "reuse", {"PEBBLE_AUTHZREUSE": "100", "PEBBLE_WFE_NONCEREJECT": "0"})
    yield ca
    ca.stop()


@pytest.fixture(scope="session")
def ca_chains(tmp_path_factory):
    """Pebble with two intermediates per chain and two alternate roots, as CAs in a root change have."""
    ca = start_ca(tmp_path_factory, "chains", {"PEBBLE_CHAIN_LENGTH": "4", "PEBBLE_ALTERNATE_ROOTS": "2"})
    yield ca
    ca.stop()


@pytest.fixture(scope="session")
def ca_eab(tmp_path_factory):
    """Pebble requiring External Account Binding, as ZeroSSL and Google do; ``ca.eab`` is its (kid, HMAC key)."""
    import base64
    import secrets

    kid, key = "test-eab-kid", base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    ca = start_ca(tmp_path_factory, "eab", {"PEBBLE_WFE_NONCEREJECT": "0"}, ["--eab", f"{kid}={key}"])
    ca.eab = (kid, key)
    yield ca
    ca.stop()


@pytest.fixture(scope="session")
def ca_profiles(tmp_path_factory):
    """Pebble offering Let's Encrypt's three profiles (default 90 days, tlsserver 45, shortlived 6)."""
    ca = start_ca(tmp_path_factory, "profiles", {}, ["--profiles"])
    yield ca
    ca.stop()


@pytest.fixture(scope="session")
def ca_bind(tmp_path_factory, bind):
    """Pebble validating DNS challenges against the real BIND of tests/servers.py, not challtestsrv."""
    ca = start_ca(tmp_path_factory, "bind", {"PEBBLE_WFE_NONCEREJECT": "0"},
                  ["--pebble-dns", f"{bind.address}:{bind.port}"])
    yield ca
    ca.stop()


@pytest.fixture(scope="session")
def hostile(tmp_path_factory):
    """The scriptable misbehaving CA (tests/hostile_ca.py), with a TLS certificate made as Pebble's is."""
    from hostile_ca import HostileCA

    spec = importlib.util.spec_from_file_location("local_ca", LOCAL_CA)
    local_ca = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(local_ca)
    tls = tmp_path_factory.mktemp("hostile-tls")
    local_ca.ensure_tls(tls)
    server = HostileCA(tls)
    yield server
    server.server.shutdown()


@pytest.fixture
def work(tmp_path):
    return tmp_path / "acme-work"
