"""Renewal: ARI (step 11), profiles and --replaces (step 05), --preferred-chain (step 08) and renew.sh.

Against Pebble 2.10, whose renewalInfo answers a window around two thirds of a certificate's
life with Retry-After 21600, and whose management API can set any other answer.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from helpers import ROOT, fails, hostile_account, past_window, unique

from common import certs, renewal

NOT_DUE = 3


def _cert(serial: int, aki: bytes | None, days: float = 90.0, start: datetime.datetime | None = None):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t.example")])
    start = start or datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(serial).not_valid_before(start).not_valid_after(start + datetime.timedelta(days=days)))
    if aki is not None:
        builder = builder.add_extension(x509.AuthorityKeyIdentifier(aki, None, None), critical=False)
    return builder.sign(key, hashes.SHA256())


# --- offline: the certID and the lifetime rule ---------------------------------------------------


def test_ari_cert_id_rfc9773_example():
    """RFC 9773 §4.1: AKI 69:88:5B:...:D4, serial 00:87:65:43:21 (the DER leading zero is kept)."""
    aki = bytes.fromhex("69885B6B87464041E1B37B847BA0AE2CDE01C8D4")
    assert certs.ari_cert_id(_cert(0x87654321, aki)) == "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"


@pytest.mark.parametrize(("serial", "encoded"), [(0x7F, "fw"), (0x80, "AIA"), (0x1234, "EjQ")])
def test_ari_cert_id_serial_is_der_integer_content(serial, encoded):
    assert certs.ari_cert_id(_cert(serial, b"\x01")).split(".")[1] == encoded


def test_ari_cert_id_needs_an_authority_key_identifier():
    from common.errors import UsageError

    with pytest.raises(UsageError, match="authority key identifier"):
        certs.ari_cert_id(_cert(5, None))


@pytest.mark.parametrize(("days", "left"), [(90, 30), (45, 15), (6, 3), (1, 0.5)])
def test_lifetime_rule_a_third_left_or_half_when_short(days, left):
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    decision = renewal.lifetime_decision(_cert(9, b"\x01", days, start))
    assert decision.renew_at == (start + datetime.timedelta(days=days - left)).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- against Pebble -------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["renew_at", "window_start", "window_end", "ask_again_after"])
def test_a_damaged_time_in_renewal_json_means_deciding_again(tmp_path, field):
    from common.workdir import WorkDir

    cert = _cert(7, b"\x01" * 20)
    good = {"certificate": certs.fingerprint(cert), "source": "ari", "renew_at": "2027-01-02T03:04:05Z",
            "window_start": "2027-01-01T00:00:00Z", "window_end": "2027-01-03T00:00:00Z",
            "ask_again_after": "2026-12-01T00:00:00Z"}
    work = WorkDir(tmp_path)
    (tmp_path / "renewal.json").write_text(json.dumps(good))
    assert renewal.saved_decision(work, cert) is not None
    (tmp_path / "renewal.json").write_text(json.dumps({**good, field: "soon-ish"}))
    assert renewal.saved_decision(work, cert) is None


def ari_friendly(ca, work, names):
    """Issue a certificate for ``names``, again if its serial needs a DER leading zero: Pebble
    2.10 cannot match such a serial in ``replaces`` (it compares hex with the zero kept)."""
    ca.issue(work, names)
    while x509.load_pem_x509_certificate((work / "cert.pem").read_bytes()).serial_number.bit_length() % 8 == 0:
        ca.order(work)


def renewal_json(work) -> dict:
    return json.loads((work / "renewal.json").read_text())


def test_a_new_certificate_is_not_due_and_runs_agree(ca, work, tmp_path):
    ca.issue(work, [unique("ari")])
    log = tmp_path / "requests.log"
    first = ca.run(11, work, "--check", env={"ACME_REQUEST_LOG": str(log)})
    assert first.returncode == NOT_DUE, first.stderr
    assert "The CA suggests renewing between" in first.stdout and "not due yet" in first.stdout
    assert "renewalInfo" in log.read_text()
    saved = renewal_json(work)
    cert = x509.load_pem_x509_certificate((work / "cert.pem").read_bytes())
    start, end = (datetime.datetime.fromisoformat(saved[k].replace("Z", "+00:00")) for k in ("window_start",
                                                                                            "window_end"))
    chosen = datetime.datetime.fromisoformat(saved["renew_at"].replace("Z", "+00:00"))
    assert cert.not_valid_before_utc < start <= chosen <= end < cert.not_valid_after_utc
    log.unlink()
    second = ca.run(11, work, "--check", env={"ACME_REQUEST_LOG": str(log)})
    assert second.returncode == NOT_DUE
    assert not log.exists(), "Retry-After 21600 not honoured: the CA was asked again"
    assert renewal_json(work)["renew_at"] == saved["renew_at"]


def test_a_window_in_the_past_is_due_and_a_moved_window_is_chosen_anew(ca, work):
    ca.issue(work, [unique("due")])
    assert ca.run(11, work, "--check").returncode == NOT_DUE
    # As for a revoked certificate: a window in the past, here even before the certificate was issued.
    issued = x509.load_pem_x509_certificate((work / "cert.pem").read_bytes()).not_valid_before_utc
    start = issued - datetime.timedelta(hours=3)
    past = {"suggestedWindow": {"start": f"{start:%Y-%m-%dT%H:%M:%SZ}",
                                "end": f"{start + datetime.timedelta(hours=1):%Y-%m-%dT%H:%M:%SZ}"},
            "explanationURL": "https://example.com/why"}
    ca.management("/set-renewal-info/", {"Certificate": (work / "cert.pem").read_text(),
                                         "ARIResponse": json.dumps(past)})
    (work / "renewal.json").unlink()  # else 11 waits for the Retry-After, as it should
    result = ca.run(11, work, "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "due now" in result.stdout and "https://example.com/why" in result.stdout
    chosen = datetime.datetime.fromisoformat(renewal_json(work)["renew_at"].replace("Z", "+00:00"))
    assert start <= chosen <= start + datetime.timedelta(hours=1)


def test_a_malformed_renewal_info_is_an_error_and_not_saved(ca, work):
    ca.issue(work, [unique("badari")])
    ca.management("/set-renewal-info/", {"Certificate": (work / "cert.pem").read_text(),
                                         "ARIResponse": '{"suggestedWindow": {"start": "soon"}}'})
    fails(ca.run(11, work, "--check"), 1, "the CA sent a bad renewalInfo")
    assert not (work / "renewal.json").exists()


def test_without_ari_the_lifetime_decides(hostile, tmp_path):
    """The scripted CA has no renewalInfo in its directory: a fresh 90-day certificate is not due."""
    from test_hostile_ca import finalized, run

    hostile.reset()
    work = tmp_path / "acme-work"
    work.parent.mkdir(parents=True, exist_ok=True)
    hostile_account(hostile, work, [unique("noari")])
    (tmp_path / "tmp").mkdir()
    finalized(hostile, work)
    assert run(8, work).returncode == 0
    result = run(11, work, "--check")
    assert result.returncode == NOT_DUE, result.stderr
    assert "no renewal information (ARI)" in result.stdout
    assert renewal_json(work)["source"] == "lifetime"


def test_replaces_is_accepted_and_echoed(ca, work):
    ari_friendly(ca, work, [unique("replace")])
    cert_id = certs.ari_cert_id(x509.load_pem_x509_certificate((work / "cert.pem").read_bytes()))
    result = ca.ok(5, work, "--replaces")
    assert f"replacing the certificate {cert_id}" in result.stdout
    assert json.loads((work / "order.json").read_text())["order"].get("replaces") == cert_id
    assert "is a replacement of" in open(ca.state["pebble_log"]).read()


def test_profiles_listed_chosen_and_refused(ca_profiles, work):
    ca = ca_profiles
    ca.ok(1, work)
    ca.ok(2, work)
    ca.ok(3, work, "-d", unique("profile"))
    ca.ok(4, work, "--server", "pebble", "--agree-tos")
    listed = ca.ok(5, work, "--list-profiles")
    assert "shortlived: Short-lived certificates: 6 days" in listed.stdout and "tlsserver:" in listed.stdout
    assert not (work / "order.json").exists()
    fails(ca.run(5, work, "--profile", "nonesuch"), 2, "no profile 'nonesuch'", "shortlived (Short-lived")
    ca.ok(5, work, "--profile", "shortlived")
    assert json.loads((work / "order.json").read_text())["order"].get("profile") == "shortlived"
    for step in (6, 7, 8):
        ca.ok(step, work, *(["--provider", "challtestsrv"] if step == 6 else []))
    cert = x509.load_pem_x509_certificate((work / "cert.pem").read_bytes())
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= datetime.timedelta(days=6, seconds=1)


def _root_names(ca) -> list[str]:
    names = []
    for index in range(3):
        root = x509.load_pem_x509_certificate(ca.management(f"/roots/{index}").content)
        names.append(root.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
    return names


def test_preferred_chain_picks_an_alternate_root(ca_chains, work):
    ca = ca_chains
    ca.issue(work, [unique("chain")])
    default_top = certs.top_issuer(x509.load_pem_x509_certificates((work / "fullchain.pem").read_bytes()))
    others = [name for name in _root_names(ca) if name != default_top]
    result = ca.ok(8, work, "--preferred-chain", others[-1])
    assert f"Chose the chain up to '{others[-1]}'" in result.stdout
    chain = x509.load_pem_x509_certificates((work / "fullchain.pem").read_bytes())
    assert certs.top_issuer(chain) == others[-1]
    kept = ca.ok(8, work, "--preferred-chain", "No Such Root")
    assert "keeping the default one" in kept.stdout
    assert certs.top_issuer(x509.load_pem_x509_certificates((work / "fullchain.pem").read_bytes())) == default_top


# --- renew.sh ---------------------------------------------------------------------------------------


def renew(ca, work, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "renew.sh"), "--dir", str(work), *args], capture_output=True,
                          text=True, env=ca.step_env(env), timeout=300, cwd=work.parent)


def test_renew_sh_renews_when_due_then_says_not_due(ca, work, tmp_path):
    name = unique("renew")
    ari_friendly(ca, work, [name, f"www.{name}"])
    old = (work / "cert.pem").read_bytes()
    old_key = (work / "cert.key").read_bytes()
    ca.management("/set-renewal-info/", {"Certificate": old.decode(), "ARIResponse": past_window()})
    secret = tmp_path / "pfx.txt"
    secret.write_text("renew-secret\n")
    hook = f"echo deployed $ACME_DIR > {tmp_path / 'hook.out'}"
    provider = ["--provider", "challtestsrv", "--challtestsrv-url", ca.state["challtestsrv_url"]]
    first = renew(ca, work, *provider, "--new-key", "--password-file", str(secret), "--deploy-hook", hook)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Renewed:" in first.stdout and "replacing the certificate" in first.stdout
    new = x509.load_pem_x509_certificate((work / "cert.pem").read_bytes())
    assert (work / "cert.pem").read_bytes() != old and (work / "cert.key").read_bytes() != old_key
    assert sorted(certs.san_names(new)) == sorted([name, f"www.{name}"])
    assert (work / "previous" / "cert.pem").read_bytes() == old
    assert (work / "previous" / "cert.key").read_bytes() == old_key
    assert oct((work / "previous").stat().st_mode & 0o777) == "0o700"
    assert (tmp_path / "hook.out").read_text().strip() == f"deployed {work}"
    assert (work / "certificate.pfx").exists() and "renew-secret" not in first.stdout + first.stderr
    second = renew(ca, work, *provider, "--deploy-hook", hook)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "Not due yet: nothing to do." in second.stdout
    assert (work / "cert.pem").read_bytes() == new.public_bytes(serialization.Encoding.PEM)


def test_renew_sh_failure_puts_the_previous_files_back(ca, work):
    ari_friendly(ca, work, [unique("renewfail")])
    before = {f: (work / f).read_bytes() for f in ("cert.pem", "cert.key", "cert.csr", "fullchain.pem")}
    # A hook that does not exist fails 06 even when the CA reuses every authorization.
    result = renew(ca, work, "--force", "--new-key", "--provider", "exec", "--exec-hook", "/nonexistent/hook")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "renew: 06_dns_challenge.py failed" in result.stderr
    assert "previous certificate files are back" in result.stderr
    for f, data in before.items():
        assert (work / f).read_bytes() == data, f


def test_renew_sh_bad_usage(ca, tmp_path):
    result = subprocess.run(["bash", str(ROOT / "renew.sh")], capture_output=True, text=True,
                            env={k: v for k, v in os.environ.items() if k != "ACME_DIR"}, timeout=30)
    assert result.returncode == 2 and "--dir" in result.stderr
    result = subprocess.run(["bash", str(ROOT / "renew.sh"), "--dir", str(tmp_path)], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2 and "cert.pem not found" in result.stderr


def test_revoking_the_certificate_makes_renewal_due_at_once(ca, work):
    """12 drops the saved decision for the work dir's certificate; 11 then asks the CA, which says: now."""
    ca.issue(work, [unique("revoked")])
    assert ca.run(11, work, "--check").returncode == NOT_DUE
    ca.ok(12, work, "--yes", "--reason", "keyCompromise")
    assert not (work / "renewal.json").exists()
    result = ca.run(11, work, "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "due now" in result.stdout
