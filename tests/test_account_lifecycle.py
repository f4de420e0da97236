"""After issuance, against a real Pebble: account info and contacts (10), revocation (12), key rollover (13),
deactivation (14), and External Account Binding in step 04.

What the CA holds is checked through the CA itself: step 10's POST-as-GET, Pebble's management API for
revocations (/cert-status-by-serial/), and requests that Pebble must refuse (old key, deactivated account).
"""

from __future__ import annotations

import base64
import json
import shutil
import sys

import pytest
from cryptography import x509
from helpers import ROOT, STEPS, fails, plain_env, run_plain, unique
from test_interactive import _run_on_terminal

from common import account, acme_servers, jws, keys, revocation, rfc8555, rollover
from common.transport import Client


def registered(ca, work, *options: str) -> dict:
    """Steps 01 and 04: an account on the local Pebble; returns account.json."""
    ca.ok(1, work)
    ca.ok(4, work, "--server", "pebble", "--agree-tos", *options)
    return read_json(work / "account.json")


def read_json(path):
    return json.loads(path.read_text())


def shown(result, field: str) -> str:
    """The value step 10 printed for ``field`` (status, contact, orders, key)."""
    for line in result.stdout.splitlines():
        if line.strip().startswith(f"{field}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"10 printed no {field}:\n{result.stdout}")


def thumbprint(path) -> str:
    return jws.key_thumbprint(keys.key_from_pem(path.read_bytes(), str(path)))


def pebble_client(ca, key, kid=None) -> Client:
    """An in-process client, to put the CA into states a crashed step would leave behind."""
    return Client(ca.state["directory_url"], verify=ca.state["ca_bundle"], key=key, kid=kid)


# --- 10: account info and contacts ---------------------------------------------------------------


def test_account_info_with_and_without_account_json(ca, work):
    saved = registered(ca, work, "--email", "info@example.com")
    info = ca.ok(10, work)
    assert saved["account_url"] in info.stdout and "onlyReturnExisting" in info.stdout
    assert shown(info, "status") == "valid"
    assert shown(info, "contact") == "mailto:info@example.com"
    assert shown(info, "orders").startswith("https://")
    assert saved["key_thumbprint"] in shown(info, "key")
    # Lost account.json: the key alone finds the account again, and the record is written anew.
    (work / "account.json").unlink()
    again = ca.ok(10, work, "--server", "pebble")
    assert saved["account_url"] in again.stdout and "Wrote" in again.stdout
    rebuilt = read_json(work / "account.json")
    assert {k: rebuilt[k] for k in ("directory_url", "account_url", "key_thumbprint", "status", "contact")} == \
        {k: saved[k] for k in ("directory_url", "account_url", "key_thumbprint", "status", "contact")}
    ca.ok(10, work)  # and the new record works for the account steps


def test_account_info_for_an_unknown_key_creates_nothing(ca, work):
    ca.ok(1, work)
    result = ca.run(10, work, "--server", "pebble")
    fails(result, 1, "accountDoesNotExist", "04_new_account.py", one_line=False)
    assert not (work / "account.json").exists()


def test_contacts_replaced_and_removed_without_agreeing_again(ca, work):
    registered(ca, work, "--email", "first@example.com")
    ca.ok(10, work, "--email", "a@example.com", "--email", "b@example.com")
    assert shown(ca.ok(10, work), "contact") == "mailto:a@example.com, mailto:b@example.com"  # the CA's view
    assert read_json(work / "account.json")["contact"] == ["mailto:a@example.com", "mailto:b@example.com"]
    ca.ok(10, work, "--no-email")
    assert shown(ca.ok(10, work), "contact") == "none"
    assert read_json(work / "account.json")["contact"] == []
    # Step 04 on the recorded account: no --agree-tos needed for a contact change (issue 8, item 17).
    result = ca.ok(4, work, "--email", "c@example.com")
    assert "already exists" in result.stdout
    assert shown(ca.ok(10, work), "contact") == "mailto:c@example.com"
    fails(ca.run(10, work, "--email", "x@example.com", "--no-email"), 2, "not allowed", one_line=False)


# --- 13: key rollover ---------------------------------------------------------------------------


def test_rollover_then_new_key_works_and_old_key_is_refused(ca, work, tmp_path):
    saved = registered(ca, work)
    ca.ok(2, work, "--key-type", "ec256")
    ca.ok(3, work, "-d", unique("rollover"))
    old_thumbprint = thumbprint(work / "account.key")
    result = ca.ok(13, work, "-v", "--key-type", "ec384")
    key_change_url = read_json(work / "session.json")["directory"]["keyChange"]
    assert f"> POST {key_change_url}" in result.stdout  # the -v wire trace
    assert "BEGIN" not in result.stdout + result.stderr  # no private key shown, even with -v
    new_thumbprint = thumbprint(work / "account.key")
    assert new_thumbprint != old_thumbprint and thumbprint(work / "account.key.old") == old_thumbprint
    assert read_json(work / "account.json")["key_thumbprint"] == new_thumbprint
    assert read_json(work / "account.json")["account_url"] == saved["account_url"]
    for name in ("account.key", "account.key.old"):
        assert (work / name).stat().st_mode & 0o777 == 0o600, name
    assert not (work / rollover.NEW_ACCOUNT_KEY).exists()
    # The new key signs a new order, and the CA still sees the same account.
    ca.ok(5, work)
    assert saved["account_url"] in ca.ok(10, work).stdout
    # The old key is refused by the CA (so the check in account.json is bypassed here on purpose).
    old = tmp_path / "old"
    shutil.copytree(work, old)
    shutil.copy(work / "account.key.old", old / "account.key")
    record = read_json(old / "account.json")
    del record["key_thumbprint"]
    (old / "account.json").write_text(json.dumps(record))
    fails(ca.run(5, old), 1, "HTTP 400", one_line=False)
    (old / "account.json").unlink()
    fails(ca.run(10, old, "--server", "pebble"), 1, "accountDoesNotExist", one_line=False)


def test_rollover_refuses_the_current_key_and_the_certificate_key(ca, work, tmp_path):
    registered(ca, work)
    ca.ok(2, work, "--key-type", "ec256")
    before = (work / "account.key").read_bytes()
    fails(ca.run(13, work, "--new-key", str(work / "account.key")), 2, "current account key")
    fails(ca.run(13, work, "--new-key", str(work / "cert.key")), 2, "cert.key")
    # A key that is already another account's: Pebble would take it, so the step asks the CA first.
    other = tmp_path / "other"
    registered(ca, other)
    fails(ca.run(13, work, "--new-key", str(other / "account.key")), 2, "another account")
    assert (work / "account.key").read_bytes() == before and not (work / rollover.NEW_ACCOUNT_KEY).exists()
    assert not (work / "account.key.old").exists()
    # A key from a file that nobody uses is fine.
    spare = tmp_path / "spare.key"
    spare.write_bytes(keys.key_to_pem(keys.generate_key("rsa2048")))
    ca.ok(13, work, "--new-key", str(spare))
    assert (work / "account.key").read_bytes() == spare.read_bytes()
    ca.ok(10, work)


@pytest.mark.parametrize("crash", ["before-post", "after-post", "after-account-json"])
def test_interrupted_rollover_is_finished_by_running_13_again(ca, work, crash):
    """Each point where 13 can die leaves files from which a re-run gets to the key the CA knows."""
    saved = registered(ca, work)
    old_key = keys.key_from_pem((work / "account.key").read_bytes(), "account.key")
    new_key = keys.generate_key("ec256")
    (work / rollover.NEW_ACCOUNT_KEY).write_bytes(keys.key_to_pem(new_key))
    if crash != "before-post":  # the CA took the new key; the step died before touching account.key
        rfc8555.change_key(pebble_client(ca, old_key, saved["account_url"]), new_key)
    if crash == "after-account-json":
        (work / "account.key.old").write_bytes(keys.key_to_pem(old_key))
        (work / "account.json").write_text(json.dumps({**saved, "key_thumbprint": jws.key_thumbprint(new_key)}))
        fails(ca.run(10, work), 2, "13_change_account_key.py")  # the others say what to do
    elif crash == "after-post":
        stuck = ca.run(10, work)  # signed with the old key, which the CA no longer takes
        assert stuck.returncode == 1 and "13_change_account_key.py" in stuck.stderr, stuck.stderr
    # 04 would register account.key as a second account: it refuses until 13 has finished.
    fails(ca.run(4, work, "--agree-tos"), 2, "13_change_account_key.py")
    finished = ca.ok(13, work, "--key-type", "rsa2048")  # the pending key wins over a new --key-type
    assert "Finishing" in finished.stdout
    if crash == "after-post":
        assert "already has the new key" in finished.stdout
    assert thumbprint(work / "account.key") == jws.key_thumbprint(new_key)
    assert (work / "account.key").stat().st_mode & 0o777 == 0o600  # however account.key.new was made
    assert thumbprint(work / "account.key.old") == jws.key_thumbprint(old_key)
    assert read_json(work / "account.json")["key_thumbprint"] == jws.key_thumbprint(new_key)
    assert not (work / rollover.NEW_ACCOUNT_KEY).exists()
    assert saved["account_url"] in ca.ok(10, work).stdout  # the CA knows account.key as this account


def test_pending_rollover_refuses_another_new_key(ca, work, tmp_path):
    registered(ca, work)
    (work / rollover.NEW_ACCOUNT_KEY).write_bytes(keys.key_to_pem(keys.generate_key("ec256")))
    other = tmp_path / "other.key"
    other.write_bytes(keys.key_to_pem(keys.generate_key("ec256")))
    fails(ca.run(13, work, "--new-key", str(other)), 2, "account.key.new", "without --new-key")


# --- 14: deactivation ---------------------------------------------------------------------------


def test_deactivation_then_every_request_is_refused(ca, work, tmp_path):
    name = unique("deactivate")
    ca.issue(work, [name])
    saved = read_json(work / "account.json")
    fails(ca.run(14, work, input=""), 2, "--yes", "no terminal")  # no terminal, no --yes: nothing happens
    assert shown(ca.ok(10, work), "status") == "valid"

    ca.ok(14, work, "--yes")
    assert read_json(work / "account.json")["status"] == "deactivated"
    for step, options in ((5, ()), (10, ()), (13, ()), (12, ("--yes",))):
        fails(ca.run(step, work, *options), 1, "deactivated", "01_create_account_key.py --force")
    assert "already" in ca.ok(14, work, "--yes").stdout
    # The CA says so too, when account.json does not know (deactivated from another copy of the key).
    record = {**saved, "status": "valid"}
    (work / "account.json").write_text(json.dumps(record))
    for step in (5, 10):
        result = ca.run(step, work)
        fails(result, 1, "HTTP 403", "deactivated", "01_create_account_key.py --force", one_line=False)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    shutil.copy(work / "account.key", fresh / "account.key")
    fails(ca.run(4, fresh, "--server", "pebble", "--agree-tos"), 1, "deactivated", one_line=False)
    # Its certificate can still be revoked with the certificate's own key.
    ca.ok(12, work, "--with-cert-key", "--yes")
    serial = x509.load_pem_x509_certificate((work / "cert.pem").read_bytes()).serial_number
    assert ca.management(f"/cert-status-by-serial/{serial:x}").json()["Status"] == "Revoked"


def test_deactivation_asks_on_a_terminal(ca, work):
    registered(ca, work)
    command = [sys.executable, str(ROOT / STEPS[14]), "--dir", str(work)]
    status, screen = _run_on_terminal(command, ca.step_env(), ["no"])
    assert status == 2 and "Type yes" in screen and "nothing was changed" in screen, screen
    assert read_json(work / "account.json")["status"] == "valid"
    status, screen = _run_on_terminal(command, ca.step_env(), ["yes"])
    assert status == 0 and "deactivated" in screen, screen
    assert read_json(work / "account.json")["status"] == "deactivated"


# --- 12: revocation -----------------------------------------------------------------------------


def cert_status(ca, work) -> dict:
    serial = x509.load_pem_x509_certificate((work / "cert.pem").read_bytes()).serial_number
    return ca.management(f"/cert-status-by-serial/{serial:x}").json()


@pytest.mark.parametrize(("reason", "signer"), [
    ("unspecified", "account"),
    ("keyCompromise", "cert-key"),
    ("superseded", "account"),
    ("cessationOfOperation", "cert-key-without-account"),
])
def test_revoke_by_reason_and_signer(ca, work, reason, signer):
    ca.issue(work, [unique("revoke")])
    (work / "renewal.json").write_text("{}")  # 11's saved decision, which revoking must drop
    options = ["--reason", reason, "--yes"]
    if signer != "account":
        (work / "account.key").unlink()  # the account is lost: the certificate's key proves the right
        options.append("--with-cert-key")
    if signer == "cert-key-without-account":
        (work / "account.json").unlink()
        options += ["--server", "pebble"]
    result = ca.ok(12, work, *options)
    assert ("(jwk)" if signer != "account" else "(kid)") in result.stdout
    status = cert_status(ca, work)
    assert status["Status"] == "Revoked" and status["Reason"] == revocation.REASONS[reason]
    assert not (work / "renewal.json").exists() and "Next: replace" in result.stdout
    assert "alreadyRevoked" not in result.stdout + result.stderr
    again = ca.ok(12, work, *options)  # a second run is not an error: the job is done
    assert "revoked already" in again.stdout


def test_revoked_certificate_is_due_for_renewal_at_once(ca, work, tmp_path):
    ca.issue(work, [unique("due")])
    assert ca.run(11, work, "--check").returncode == 3  # a fresh certificate is not due
    assert (work / "renewal.json").exists()
    # Nothing happens without a confirmation off a terminal, or with a key that is not the certificate's.
    fails(ca.run(12, work, "--reason", "keyCompromise", input=""), 2, "--yes", "no terminal")
    wrong = tmp_path / "wrong.key"
    wrong.write_bytes(keys.key_to_pem(keys.generate_key("rsa2048")))
    fails(ca.run(12, work, "--with-cert-key", str(wrong), "--yes"), 2, "not the key of this certificate")
    assert cert_status(ca, work)["Status"] == "Valid" and (work / "renewal.json").exists()

    ca.ok(12, work, "--reason", "superseded", "--yes")
    assert not (work / "renewal.json").exists()
    assert ca.run(11, work, "--check").returncode == 0


def test_revoking_an_older_certificate_keeps_the_renewal_decision(ca, work, tmp_path):
    """--cert names a certificate that is not cert.pem (the one a renewal replaced): cert.pem's plan stands."""
    ca.issue(work, [unique("older")])
    older = tmp_path / "older.pem"
    shutil.copy(work / "cert.pem", older)
    ca.order(work)  # the renewal: a new cert.pem for the same names
    (work / "renewal.json").write_text("{}")
    result = ca.ok(12, work, "--cert", str(older), "--reason", "superseded", "--yes")
    assert "Next: replace" not in result.stdout and (work / "renewal.json").exists()
    serial = x509.load_pem_x509_certificate(older.read_bytes()).serial_number
    status = ca.management(f"/cert-status-by-serial/{serial:x}").json()
    assert status["Status"] == "Revoked" and status["Reason"] == revocation.REASONS["superseded"]
    assert cert_status(ca, work)["Status"] == "Valid"


# --- 04: External Account Binding ---------------------------------------------------------------


def test_eab_required_names_the_options(ca_eab, work):
    ca_eab.ok(1, work)
    result = ca_eab.run(4, work, "--server", "pebble", "--agree-tos")
    fails(result, 2, "External Account Binding", "--eab-kid", "--eab-hmac-key-file", "--eab-hmac-key-env")
    assert not (work / "account.json").exists()
    # Past that check (the directory cached without its flag), the CA's own refusal says the same.
    session = read_json(work / "session.json")
    del session["directory"]["meta"]["externalAccountRequired"]
    (work / "session.json").write_text(json.dumps(session))
    result = ca_eab.run(4, work, "--server", "pebble", "--agree-tos")
    fails(result, 1, "externalAccountRequired", "--eab-kid", "--eab-hmac-key-file", one_line=False)


def test_eab_wrong_hmac_refused_right_one_registers_once(ca_eab, work, tmp_path):
    kid, hmac_key = ca_eab.eab
    secrets = (hmac_key, base64.b64encode(jws.b64url_decode(hmac_key)).decode())  # as given, and standard base64
    ca_eab.ok(1, work)
    wrong = base64.urlsafe_b64encode(bytes(32)).rstrip(b"=").decode()
    runs = [ca_eab.run(4, work, "-v", "--server", "pebble", "--agree-tos", "--eab-kid", kid,
                       "--eab-hmac-key-env", "EAB_KEY", env={"EAB_KEY": wrong})]
    fails(runs[-1], 1, "HTTP 403", "External Account Binding", one_line=False)
    assert not (work / "account.json").exists()

    key_file = tmp_path / "eab.txt"
    key_file.write_text(hmac_key + "\n")
    runs.append(ca_eab.ok(4, work, "-v", "--server", "pebble", "--agree-tos", "--email", "eab@example.com",
                          "--eab-kid", kid, "--eab-hmac-key-file", str(key_file)))
    assert "Account created" in runs[-1].stdout and "bound to external account" in runs[-1].stdout
    saved = read_json(work / "account.json")

    # Again with the binding: nothing is sent to newAccount (ZeroSSL would open a second account).
    request_log = tmp_path / "requests.log"
    runs.append(ca_eab.ok(4, work, "-v", "--eab-kid", kid, "--eab-hmac-key-env", "EAB_KEY",
                          env={"EAB_KEY": hmac_key, "ACME_REQUEST_LOG": str(request_log)}))
    assert "10_account_info.py" in runs[-1].stdout and "second account" in runs[-1].stdout
    new_account = read_json(work / "session.json")["directory"]["newAccount"]
    assert new_account not in (request_log.read_text() if request_log.exists() else "")
    assert read_json(work / "account.json") == saved
    # Without it, the recorded account is looked up by its key: the CA needs no binding for that.
    runs.append(ca_eab.ok(4, work, "-v"))
    assert saved["account_url"] in runs[-1].stdout
    runs.append(ca_eab.ok(10, work, "-v"))
    for result in runs:
        for secret in secrets:
            assert secret not in result.stdout + result.stderr


@pytest.mark.parametrize(("options", "env", "words"), [
    (["--eab-kid", "k"], {}, ["--eab-hmac-key-file", "--eab-hmac-key-env"]),
    (["--eab-hmac-key-env", "EAB_KEY"], {"EAB_KEY": "AAAA"}, ["--eab-kid"]),
    (["--eab-kid", "k", "--eab-hmac-key-env", "NOT_SET"], {}, ["NOT_SET", "not set"]),
    (["--eab-kid", "k", "--eab-hmac-key-env", "EAB_KEY"], {"EAB_KEY": "s3cr+t/key"}, ["not base64url"]),
], ids=["kid-alone", "key-alone", "env-unset", "not-base64url"])
def test_eab_bad_options_exit_2_without_showing_the_key(ca_eab, work, options, env, words):
    ca_eab.ok(1, work)
    result = ca_eab.run(4, work, "--server", "pebble", "--agree-tos", *options, env=env)
    fails(result, 2, *words)
    assert not any(value in result.stderr for value in env.values())
    assert not (work / "account.json").exists()


def test_named_eab_servers_in_help_and_error(tmp_path):
    help_text = run_plain(4, "--help", env=plain_env(), cwd=tmp_path).stdout
    for word in ("zerossl", "google", "google-staging", "--eab-kid", "--eab-hmac-key-file", "--eab-hmac-key-env"):
        assert word in help_text, word
    assert "External Account" in " ".join(help_text.split())
    assert acme_servers.EAB_SERVERS == ("zerossl", "google", "google-staging")
    for name in acme_servers.EAB_SERVERS:
        url, _ = acme_servers.resolve_server(name)
        message = account.eab_missing(url)
        assert acme_servers.eab_source(url) in message and "--eab-kid" in message and "--eab-hmac-key-env" in message
    assert acme_servers.resolve_server("zerossl")[0] == "https://acme.zerossl.com/v2/DV90"
    assert acme_servers.resolve_server("google")[0] == "https://dv.acme-v02.api.pki.goog/directory"
    assert acme_servers.resolve_server("google-staging")[0] == "https://dv.acme-v02.test-api.pki.goog/directory"
    assert acme_servers.eab_source(acme_servers.STAGING) is None


def test_private_keys_never_printed_by_the_new_steps(ca, work):
    ca.issue(work, [unique("quiet")])
    pems = [(work / n).read_text() for n in ("account.key", "cert.key")]
    runs = [ca.ok(10, work, "-v"), ca.ok(13, work, "-v"), ca.ok(12, work, "-v", "--yes", "--with-cert-key"),
            ca.ok(14, work, "-v", "--yes")]
    for result in runs:
        for pem in pems:
            secret_part = "".join(pem.splitlines()[1:-1])[60:100]  # past the fixed ASN.1 header
            assert secret_part not in result.stdout + result.stderr
        assert "PRIVATE KEY" not in result.stdout + result.stderr
