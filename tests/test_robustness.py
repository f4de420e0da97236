"""Robustness: damaged work-dir files, stale keys, re-runs, odd password files, bad input, the environment.

Every failure here must be one line on stderr, with the right exit status and no traceback:
what a user sees when something on their disk or on their command line is not as expected.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12
from helpers import ROOT, STEPS, fails, plain_env, run_plain, unique

CHALLTESTSRV = ["--provider", "challtestsrv"]


def account(ca, work, *, csr: bool = True) -> None:
    """Steps 01-04 (02 and 03 only with ``csr``): an account on the local Pebble, ready to order."""
    ca.ok(1, work)
    if csr:
        ca.ok(2, work, "--key-type", "ec256")
        ca.ok(3, work, "-d", unique("robust"))
    ca.ok(4, work, "--server", "pebble", "--agree-tos")


# --- 1. damaged work-dir files ---------------------------------------------------------------

ORDER_WITHOUT_FINALIZE = {
    "url": "https://127.0.0.1:14000/my-order/abc",
    "order": {
        "status": "ready",
        "expires": "2030-01-01T00:00:00Z",
        "identifiers": [{"type": "dns", "value": "example.com"}],
        "authorizations": ["https://127.0.0.1:14000/authZ/abc"],
    },
}


@pytest.mark.parametrize("step", [6, 7, 8])
@pytest.mark.parametrize("content", ["[]", '{"url": "x"}', json.dumps(ORDER_WITHOUT_FINALIZE)],
                         ids=["list", "no-order", "no-finalize"])
def test_damaged_order_json_names_step_05(ca, work, step, content):
    work.mkdir()
    (work / "order.json").write_text(content)
    result = ca.run(step, work, *(CHALLTESTSRV if step == 6 else []))
    fails(result, 2, "damaged", "05_new_order.py")
    assert (work / "order.json").read_text() == content  # left for the user to look at


@pytest.mark.parametrize("content", ["[]", '{"directory_url": 5}'])
def test_damaged_account_json_names_step_04(ca, work, content):
    ca.ok(2, work, "--key-type", "ec256")
    ca.ok(3, work, "-d", "example.com")
    (work / "account.json").write_text(content)
    fails(ca.run(5, work), 2, "damaged", "04_new_account.py")
    assert not (work / "order.json").exists()


def test_empty_cert_key_names_step_02_force(ca, work):
    work.mkdir()
    (work / "cert.key").write_bytes(b"")
    fails(ca.run(3, work, "-d", "example.com"), 2, "cert.key", "02_create_cert_key.py --force")
    assert not (work / "cert.csr").exists()


@pytest.mark.parametrize("content", [b"not a certificate\n", b"-----BEGIN CERTIFICATE-----\nAAAA\n"
                                     b"-----END CERTIFICATE-----\n"], ids=["text", "bad-pem"])
def test_cert_pem_not_a_certificate_names_step_08(ca, work, content):
    ca.ok(2, work, "--key-type", "ec256")
    (work / "cert.pem").write_bytes(content)
    (work / "chain.pem").write_bytes(b"")
    fails(ca.run(9, work, "--password-env", "PFX_PW", env={"PFX_PW": "pw"}), 2, "cert.pem", "08_get_certificate.py")
    assert not (work / "certificate.pfx").exists()


def test_damaged_session_json_is_ignored(ca, work):
    account(ca, work)
    (work / "session.json").write_text("[]")
    ca.ok(5, work)
    order = json.loads((work / "order.json").read_text())
    assert order["url"].startswith("https://") and order["order"]["status"] == "pending"
    session = json.loads((work / "session.json").read_text())  # and rewritten as a proper cache
    assert isinstance(session, dict) and session["directory_url"] == ca.state["directory_url"]


# --- 2. step 04 replaces a damaged account.json -------------------------------------------------


def test_new_account_repairs_damaged_account_json(ca, work):
    ca.ok(1, work)
    (work / "account.json").write_text("{broken")
    result = ca.ok(4, work, "--server", "pebble", "--agree-tos")
    assert "warning" in result.stderr.lower() and "damaged" in result.stderr
    saved = json.loads((work / "account.json").read_text())
    assert isinstance(saved["account_url"], str) and saved["account_url"].startswith("https://")
    assert saved["directory_url"] == ca.state["directory_url"]


# --- 3. stale CSR, stale account ---------------------------------------------------------------


def test_csr_from_replaced_cert_key_names_step_03(ca, work):
    ca.issue(work, [unique("stale-csr")])
    ca.ok(2, work, "--force", "--key-type", "ec256")
    order_before = (work / "order.json").read_bytes()
    fails(ca.run(5, work), 2, "03_create_csr.py")
    assert (work / "order.json").read_bytes() == order_before  # no new order was made


def test_account_from_replaced_account_key_names_step_04(ca, work):
    account(ca, work)
    ca.ok(1, work, "--force")
    fails(ca.run(5, work), 2, "04_new_account.py")
    assert not (work / "order.json").exists()


# --- 4. order states and re-runs ---------------------------------------------------------------


def test_finalize_pending_order_names_step_06_without_a_request(ca, work, tmp_path):
    account(ca, work)
    requests_made = tmp_path / "requests.log"
    ca.ok(5, work, env={"ACME_REQUEST_LOG": str(requests_made)})
    assert "newOrder" in requests_made.read_text() or "POST" in requests_made.read_text()  # the log works
    requests_made.unlink()
    fails(ca.run(7, work, env={"ACME_REQUEST_LOG": str(requests_made)}), 2, "pending", "06_dns_challenge.py")
    assert not requests_made.exists(), requests_made.read_text()
    assert json.loads((work / "order.json").read_text())["order"]["status"] == "pending"


def test_steps_06_07_08_run_again_after_success(ca, work):
    ca.issue(work, [unique("again")])
    cert = (work / "cert.pem").read_bytes()
    again7 = ca.ok(7, work)
    assert "already finalized" in again7.stdout
    again6 = ca.ok(6, work, *CHALLTESTSRV, "--challtestsrv-url", ca.state["challtestsrv_url"])
    assert "already valid" in again6.stdout or "already ready" in again6.stdout
    assert "Answered" not in again6.stdout
    ca.ok(8, work)
    assert (work / "cert.pem").read_bytes() == cert
    ca.ok(8, work)
    assert (work / "cert.pem").read_bytes() == cert
    assert (work / "fullchain.pem").read_bytes() == cert + (work / "chain.pem").read_bytes()


# --- 5. step 09: empty chain, password files, no terminal ---------------------------------------


@pytest.fixture(scope="module")
def issued(ca, tmp_path_factory):
    """One issued certificate; each test exports from its own copy (09 is offline)."""
    work = tmp_path_factory.mktemp("issued") / "acme-work"
    ca.issue(work, [unique("pfx")])
    return work


@pytest.fixture
def copy(issued, work):
    shutil.copytree(issued, work)
    return work


def test_export_with_empty_chain(ca, copy):
    (copy / "chain.pem").write_bytes(b"")
    result = ca.ok(9, copy, "--password-env", "PFX_PW", env={"PFX_PW": "empty-chain"})
    assert "0 intermediate" in result.stdout
    key, cert, extra = pkcs12.load_key_and_certificates((copy / "certificate.pfx").read_bytes(), b"empty-chain")
    assert key is not None
    assert cert == x509.load_pem_x509_certificate((copy / "cert.pem").read_bytes())
    assert extra == []


@pytest.mark.parametrize(("data", "password"), [
    ("pw-utf16\r\n".encode("utf-16"), "pw-utf16"),  # PowerShell 5: Set-Content -Encoding Unicode, or Out-File
    ("pw-utf16".encode("utf-16"), "pw-utf16"),
    (b"\xfe\xff" + "pw-utf16-be\n".encode("utf-16-be"), "pw-utf16-be"),
    (b"\xef\xbb\xbfpw-utf8-bom\r\n", "pw-utf8-bom"),  # Notepad's and PowerShell 7's "UTF-8 with BOM"
    ("pässwörd\n".encode("utf-8-sig"), "pässwörd"),
], ids=["utf16-crlf", "utf16", "utf16-be", "utf8-bom", "utf8-bom-non-ascii"])
def test_export_password_file_encodings(ca, copy, tmp_path, data, password):
    secret = tmp_path / "pw.txt"
    secret.write_bytes(data)
    result = ca.ok(9, copy, "--password-file", str(secret))
    assert password not in result.stdout + result.stderr
    pfx = (copy / "certificate.pfx").read_bytes()
    key, cert, extra = pkcs12.load_key_and_certificates(pfx, password.encode("utf-8"))
    assert key is not None and cert is not None and len(extra) == 1
    with pytest.raises(ValueError):  # the BOM is not part of the password
        pkcs12.load_key_and_certificates(pfx, ("\ufeff" + password).encode("utf-8"))


def test_export_password_file_neither_utf8_nor_utf16(ca, copy, tmp_path):
    secret = tmp_path / "pw.bin"
    secret.write_bytes(b"\x80\x81\x82")
    fails(ca.run(9, copy, "--password-file", str(secret)), 2, "neither UTF-8 nor UTF-16")
    assert not (copy / "certificate.pfx").exists()


@pytest.mark.parametrize(("data", "words"), [
    ("pw-utf16\n".encode("utf-16-le"), ["UTF-16 without a byte-order mark", "Set-Content -Encoding utf8"]),
    ("pw-utf16\n".encode("utf-16-be"), ["UTF-16 without a byte-order mark"]),
    (b"secret\x00part\n", ["NUL"]),
], ids=["utf16le-no-bom", "utf16be-no-bom", "nul"])
def test_export_password_file_refused_without_echo(ca, copy, tmp_path, data, words):
    secret = tmp_path / "pw.txt"
    secret.write_bytes(data)
    result = ca.run(9, copy, "--password-file", str(secret))
    fails(result, 2, *words)
    for fragment in ("pw-utf16", "p\x00w", "secret", "part"):
        assert fragment not in result.stdout + result.stderr
    assert not (copy / "certificate.pfx").exists()


def test_export_password_env_not_utf8_refused_without_echo(ca, copy):
    env = {**ca.step_env(), "PFX_PW": "unused"}
    env = {k.encode(): v.encode() for k, v in env.items()} | {b"PFX_PW": b"caf\xe9-\xff\xfe-secret"}
    command = [sys.executable, str(ROOT / STEPS[9]), "--dir", str(copy), "--password-env", "PFX_PW"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    fails(result, 2, "$PFX_PW", "not valid UTF-8")
    assert "caf" not in result.stderr and "secret" not in result.stderr
    assert not (copy / "certificate.pfx").exists()


def test_export_password_env_not_set(ca, copy):
    fails(ca.run(9, copy, "--password-env", "NO_SUCH_PFX_PASSWORD"), 2, "NO_SUCH_PFX_PASSWORD", "is not set")


def test_export_without_terminal_or_password_option(ca, copy):
    """No controlling terminal (a scheduled task, a CI job): ask for an option, never read stdin."""
    result = subprocess.run([sys.executable, str(ROOT / STEPS[9]), "--dir", str(copy)], capture_output=True,
                            text=True, env=ca.step_env(), stdin=subprocess.DEVNULL, start_new_session=True,
                            timeout=60)
    fails(result, 2, "--password-file")
    assert not (copy / "certificate.pfx").exists()


# --- 6. --email on an existing account ---------------------------------------------------------


def test_new_account_email_updates_contact(ca, work):
    ca.ok(1, work)
    ca.ok(4, work, "--server", "pebble", "--agree-tos", "--email", "a@example.com")
    assert json.loads((work / "account.json").read_text())["contact"] == ["mailto:a@example.com"]
    again = ca.ok(4, work, "--server", "pebble", "--agree-tos", "--email", "b@example.com")
    assert "already exists" in again.stdout
    assert json.loads((work / "account.json").read_text())["contact"] == ["mailto:b@example.com"]


# --- 7. bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(("step", "args", "words"), [
    (3, ["-d", "192.0.2.256"], ["invalid address", "not an IP address"]),  # a valid one is an IP identifier
    (3, ["-d", "::ffff:192.0.2.1"], ["invalid address", "IPv4-mapped", "192.0.2.1"]),
    (3, ["-d", "https://example.com/"], ["invalid name", "bare domain name"]),
    (3, ["-d", "example.com:443"], ["invalid name", "bare domain name"]),
    (4, ["--server", "pebble", "--agree-tos", "--email", "x@y.com?subject=hi"], ["invalid email"]),
    (4, ["--server", "pebble", "--agree-tos", "--email", "bad"], ["invalid email"]),
    (4, ["--server", "pebble", "--agree-tos", "--ca-bundle", "/nonexistent/ca.pem"], ["cannot read CA bundle"]),
    (4, ["--server", "ftp://x", "--agree-tos"], ["unknown server", "ftp://x"]),
], ids=["ip", "ipv4-mapped", "url", "port", "email-query", "email-bare", "ca-bundle", "ftp"])
def test_bad_input_exits_2(ca, work, step, args, words):
    ca.ok(1, work)
    ca.ok(2, work, "--key-type", "ec256")
    fails(ca.run(step, work, *args), 2, *words)
    assert not (work / "cert.csr").exists() and not (work / "account.json").exists()


@pytest.mark.parametrize("step", [6, 7])
@pytest.mark.parametrize(("option", "value"), [("--first-wait", "-1"), ("--timeout", "abc"),
                                               ("--timeout", "86400"), ("--first-wait", "nan")])
def test_bad_seconds_is_an_argparse_error(ca, work, step, option, value):
    result = ca.run(step, work, *(CHALLTESTSRV if step == 6 else []), option, value)
    fails(result, 2, "usage:", option, one_line=False)
    assert "not a number of seconds" in result.stderr


# --- 8. the environment's defaults ---------------------------------------------------------------


def test_acme_dir_is_the_default_work_dir(tmp_path):
    result = run_plain(1, env=plain_env({"ACME_DIR": str(tmp_path / "from-env")}), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "from-env" / "account.key").exists()
    assert not (tmp_path / "acme-work").exists()


def test_acme_server_and_ca_bundle_from_the_environment(ca, work, tmp_path):
    ca.ok(1, work)
    url, bundle = ca.state["directory_url"], ca.state["ca_bundle"]
    # No local CA to fall back on: server and bundle can only come from ACME_SERVER and ACME_CA_BUNDLE.
    env = {"ACME_SERVER": url, "ACME_CA_BUNDLE": bundle, "ACME_LOCAL_CA_DIR": str(tmp_path / "no-ca")}
    result = ca.ok(4, work, "--agree-tos", env=env)
    assert url in result.stdout
    saved = json.loads((work / "account.json").read_text())
    assert saved["directory_url"] == url
    assert saved["ca_bundle"] == os.path.abspath(bundle)


def test_local_ca_dir_without_a_ca(ca, work, tmp_path):
    ca.ok(1, work)
    result = ca.run(4, work, "--server", "pebble", "--agree-tos", env={"ACME_LOCAL_CA_DIR": str(tmp_path)})
    fails(result, 2, str(tmp_path / "state.json"), "local_ca.py start")


# --- 9. every step's help ------------------------------------------------------------------------


@pytest.mark.parametrize("step", sorted(STEPS))
def test_help_names_rfc_inputs_and_outputs(step, tmp_path):
    result = run_plain(step, "-h", env=plain_env(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    for word in ("RFC", "Reads:", "Writes:", "--dir"):
        assert word in result.stdout, word
    assert not (tmp_path / "acme-work").exists()


# --- 10. -q on a network step ---------------------------------------------------------------------


def test_quiet_network_step_prints_nothing(ca, work):
    ca.ok(1, work)
    created = ca.ok(4, work, "-q", "--server", "pebble", "--agree-tos")
    assert created.stdout == "" and created.stderr == ""
    again = ca.ok(4, work, "-q", "--server", "pebble", "--agree-tos")
    assert again.stdout == "" and again.stderr == ""
    assert json.loads((work / "account.json").read_text())["account_url"].startswith("https://")


# --- 11. -v shows URLs whole ----------------------------------------------------------------------


def test_verbose_shows_full_urls(ca, work):
    account(ca, work)
    saved = json.loads((work / "account.json").read_text())
    result = ca.ok(5, work, "-v")
    out = result.stdout + result.stderr
    order_url = json.loads((work / "order.json").read_text())["url"]
    assert order_url in out
    assert f"Location: {order_url}" in out
    assert saved["directory_url"] in out  # in the Link: rel="index" header
    assert saved["account_url"] in out  # the kid in the protected header
    order = json.loads((work / "order.json").read_text())["order"]
    for url in [order["finalize"], *order["authorizations"]]:
        assert url in out
    # Without the cached directory, 05 fetches it: the request line shows the URL whole.
    (work / "session.json").unlink()
    fresh = ca.ok(5, work, "-v")
    assert f"> GET {saved['directory_url']}\n" in fresh.stdout
    assert json.loads((work / "order.json").read_text())["url"] in fresh.stdout


# --- 12. a damaged local CA state ---------------------------------------------------------------


def test_damaged_local_ca_state(ca, work, tmp_path):
    local = tmp_path / "local-ca"
    local.mkdir()
    (local / "state.json").write_text("[]")
    env = {"ACME_LOCAL_CA_DIR": str(local)}
    helped = ca.run(6, work, "-h", env=env)
    assert helped.returncode == 0 and "Traceback" not in helped.stderr, helped.stderr
    assert "--challtestsrv-url" in helped.stdout
    ca.ok(1, work)
    fails(ca.run(4, work, "--server", "pebble", "--agree-tos", env=env), 2, "damaged", "state.json")
