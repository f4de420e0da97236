"""Each network step shows its own requests, in order, and every "Next:" line works as printed.

A learner reads a step's output next to its file: one line per request, in the order main()
makes them, and with -v the wire exchange of each request between them. The "Next:" line at
the end of a step is meant to be pasted: the flow from step 01 to 09 is followed here by
running each printed command, placeholders filled in, against the local test CA.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys

from helpers import ROOT, hostile_account, plain_env, run_plain, unique

from common import challenges, jws, keys


def in_order(text: str, *needles: str) -> None:
    """Every needle appears in ``text``, each after the one before it."""
    at = 0
    for needle in needles:
        found = text.find(needle, at)
        assert found >= 0, f"{needle!r} not found after position {at} in:\n{text}"
        at = found + len(needle)


def directory(work) -> dict:
    """The CA's directory as the steps cached it (session.json)."""
    return json.loads((work / "session.json").read_text())["directory"]


def wire(text: str) -> str:
    """-v output without the bodies and headers: the step's own lines and the request/response lines."""
    noise = re.compile(r"    |  [{}\]]|  protected: |  payload: |  [A-Z][\w-]*: ")
    return "\n".join(line for line in text.splitlines() if not noise.match(line))


# --- step 04: directory -> terms -> newAccount -> contacts -> write -------------------------------


def test_04_shows_directory_nonce_new_account_then_writes(ca, work):
    ca.ok(1, work)
    first = ca.ok(4, work, "--server", "pebble", "--agree-tos", "--email", "a@example.com", "-v").stdout
    endpoints = directory(work)
    in_order(wire(first), "Server: ", f"> GET {ca.state['directory_url']}", "Registering account for a@example.com...",
             f"> HEAD {endpoints['newNonce']}", f"> POST {endpoints['newAccount']}", "< 201 Created",
             "Account created: ", "Wrote ", "Next: 05_new_order.py")

    again = ca.ok(4, work, "--email", "b@example.com", "-v").stdout
    account_url = json.loads((work / "account.json").read_text())["account_url"]
    in_order(wire(again), "Server: ", "Looking the account up by its key (newAccount with onlyReturnExisting)...",
             f"> POST {endpoints['newAccount']}", f"Account already exists for this key: {account_url}",
             "Updating its contacts to b@example.com...", f"> POST {account_url}", "Wrote ")
    assert "Registering" not in again


# --- step 06: authorizations, publish, answer, poll the order, clean up ---------------------------


def _ordered(ca, work, names: list[str]) -> None:
    ca.ok(1, work)
    ca.ok(2, work)
    ca.ok(3, work, *[a for n in names for a in ("-d", n)])
    ca.ok(4, work, "--server", "pebble", "--agree-tos")
    ca.ok(5, work)


def test_06_dns_shows_each_request_in_order(ca, work):
    names = [unique("lines"), unique("lines2")]
    _ordered(ca, work, names)
    order = json.loads((work / "order.json").read_text())
    out = ca.ok(6, work, "--provider", "challtestsrv").stdout
    in_order(out, "Fetching the order's 2 authorizations...", ": pending, to prove with dns-01",
             ": pending, to prove with dns-01", "Publishing 2 TXT records with challtestsrv...",
             "Checking that the records are visible", "Answered dns-01 for ", "Answered dns-01 for ",
             "Waiting for the CA to validate: polling the order...", "Removing TXT records...",
             "Order is ready: every name is proven. Next: 07_finalize.py")
    assert all(f"  {name}: pending" in out for name in names)
    assert json.loads((work / "order.json").read_text())["order"]["status"] == "ready"
    assert order["url"] not in out  # the normal output names the requests, -v shows their URLs


def test_06_dns_verbose_shows_thumbprint_key_authorization_and_txt_value(ca, work):
    name = unique("verbose")
    _ordered(ca, work, [name])
    order = json.loads((work / "order.json").read_text())
    [authz_url] = order["order"]["authorizations"]
    result = ca.ok(6, work, "--provider", "challtestsrv", "-v", "--first-wait", "0.25")
    out = result.stdout

    thumbprint = jws.key_thumbprint(keys.key_from_pem((work / "account.key").read_bytes(), "account.key"))
    token = re.search(r'"type": "dns-01",\s+"url": "(\S+)",\s+"token": "([^"]+)"', out)
    assert token, out
    challenge_url, token = token.groups()
    key_authz = f"{token}.{thumbprint}"
    txt = challenges.dns01_txt_value(key_authz)
    in_order(wire(out), f"Account key thumbprint (RFC 7638): {thumbprint}", "Fetching the order's 1 authorization...",
             f"> POST {authz_url}", f"  {name}: pending, to prove with dns-01",
             f"  {name}: key authorization (token \".\" thumbprint) {key_authz}",
             f"  {name}: TXT value base64url(SHA-256(key authorization)) {txt}",
             "Publishing 1 TXT record", f"  _acme-challenge.{name} TXT {txt}",
             f"> POST {challenge_url}", f"Answered dns-01 for {name}",
             "Waiting for the CA to validate: polling the order...", "  waiting 0.25 s", f"> POST {order['url']}",
             "Removing TXT records...", "Order is ready")
    assert "PRIVATE KEY" not in out + result.stderr
    private = jws.jwk(keys.key_from_pem((work / "account.key").read_bytes(), "account.key"))
    assert "\"d\":" not in out and private.get("d", "not-shown") not in out


# --- step 11: renewalInfo, the window, the chosen time --------------------------------------------


def test_11_asks_renewal_info_and_shows_window_and_chosen_time(ca, work):
    ca.issue(work, [unique("ari-lines")])
    from cryptography import x509

    from common import certs

    cert_id = certs.ari_cert_id(x509.load_pem_x509_certificate((work / "cert.pem").read_bytes()))
    first = ca.ok(11, work, "-v").stdout
    in_order(wire(first), f"Asking the CA for the renewal window of {cert_id}...",
             f"> GET {directory(work)['renewalInfo'].rstrip('/')}/{cert_id}", "< 200",
             "The CA suggests renewing between ", "Renewal time chosen: ", "Next: ")
    chosen = re.search(r"Renewal time chosen: (\S+)", first).group(1)
    saved = json.loads((work / "renewal.json").read_text())
    assert saved["renew_at"] == chosen and saved["window_start"] <= chosen <= saved["window_end"]

    again = ca.ok(11, work, "-v").stdout  # within the CA's Retry-After: no request, the same time
    assert "> GET" not in again and "asking again after" in again
    assert f"Renewal time chosen: {chosen}" in again


# --- "Next:" lines, pasted ----------------------------------------------------------------------------


def next_command(stdout: str) -> list[str]:
    """The command of the step's last "Next:" line: the words before its explanation."""
    line = [line for line in stdout.splitlines() if "Next: " in line][-1].split("Next: ", 1)[1]
    for end in (" (", ", ", " for ", " to ", "; "):
        line = line.split(end, 1)[0]
    return shlex.split(line)


def paste(command: list[str], env: dict[str, str], cwd, **fill: str) -> subprocess.CompletedProcess:
    """Run a printed command as a user would in ``cwd`` (the default work dir is cwd/acme-work),
    with its placeholders (NAME, FILE ...) filled in, and no terminal."""
    script, *args = command
    assert (ROOT / script).exists(), f"Next names no step: {command}"
    args = [fill.get(arg, arg) for arg in args]
    return subprocess.run([sys.executable, str(ROOT / script), *args], capture_output=True, text=True, env=env,
                          cwd=cwd, stdin=subprocess.DEVNULL, timeout=240)


def test_following_the_next_lines_from_01_to_09_gets_a_certificate(ca, tmp_path):
    """Against the local test CA, each step's Next line, run as printed, is the next step of the flow."""
    env = ca.step_env()
    password = tmp_path / "pw.txt"
    password.write_text("pasted-password\n")
    fill = {"NAME": unique("pasted"), "FILE": str(password)}
    result = run_plain(1, env=env, cwd=tmp_path)
    seen = ["01_create_account_key.py"]
    while True:
        assert result.returncode == 0, f"{seen[-1]}:\n{result.stdout}\n{result.stderr}"
        command = next_command(result.stdout)
        if not command[0].endswith(".py"):
            break
        seen.append(" ".join(command))
        result = paste(command, env, tmp_path, **fill)
    assert seen == ["01_create_account_key.py", "02_create_cert_key.py", "03_create_csr.py -d NAME",
                    "04_new_account.py --server pebble --agree-tos", "05_new_order.py",
                    "06_dns_challenge.py --provider challtestsrv", "07_finalize.py", "08_get_certificate.py",
                    "09_export_pkcs12.py --password-file FILE"], seen
    assert (tmp_path / "acme-work" / "certificate.pfx").exists()
    account = json.loads((tmp_path / "acme-work" / "account.json").read_text())
    assert account["directory_url"] == ca.state["directory_url"]
    # 09 knows the certificate is the local test CA's: no check of a server on the Internet
    assert "21_check_endpoint.py " + fill["NAME"] not in result.stdout and "local test CA" in result.stdout


def test_03_names_the_server_04_needs(ca, tmp_path):
    """With the local test CA running: --server pebble. Without it: staging, spelt out. $ACME_SERVER: no option."""
    work = tmp_path / "acme-work"
    env = ca.step_env()
    for step, args in ((2, []), (3, ["-d", unique("csr")])):
        result = run_plain(step, "--dir", str(work), *args, env=env, cwd=tmp_path)
    assert next_command(result.stdout) == ["04_new_account.py", "--server", "pebble", "--agree-tos"]

    away = plain_env({"ACME_LOCAL_CA_DIR": str(tmp_path / "no-ca")})
    result = run_plain(3, "--dir", str(work), "-d", unique("csr"), env=away, cwd=tmp_path)
    assert next_command(result.stdout) == ["04_new_account.py", "--server", "staging", "--agree-tos"]
    assert "--server production" in result.stdout

    chosen = plain_env({"ACME_LOCAL_CA_DIR": str(tmp_path / "no-ca"), "ACME_SERVER": "zerossl"})
    result = run_plain(3, "--dir", str(work), "-d", unique("csr"), env=chosen, cwd=tmp_path)
    assert next_command(result.stdout) == ["04_new_account.py", "--agree-tos"]


def test_05_on_a_real_ca_names_the_choice_of_provider(hostile, tmp_path):
    """Away from the local test CA, 05 cannot know where the DNS is: it names the choices."""
    hostile.reset()
    work = tmp_path / "acme-work"
    hostile_account(hostile, work, ["www.example.com"])
    result = run_plain(5, "--dir", str(work), env=plain_env(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Next: 06_dns_challenge.py --provider NAME" in result.stdout
    for provider in ("alidns", "exec", "manual", "rfc2136"):
        assert provider in result.stdout
    assert "challtestsrv" not in result.stdout and "06_http_challenge.py --webroot DIR" in result.stdout
