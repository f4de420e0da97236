"""install-iis.ps1, the script 09 writes for IIS, checked as text; and what 09 -v shows.

No Windows here to run the script, so it is checked for what it must say (the thumbprint
computed here from the certificate's DER, every name with its Central Certificate Store file,
the paths, the site), for what it must not hold (the password), and for being PowerShell that
parses: brackets and quotes balanced by a small lexer, and no errors from tree-sitter's
PowerShell grammar, an independent parser. 09 -v is compared with `openssl pkcs12 -info`.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from helpers import fails, unique

from common import pkcs12

PASSWORD = "iis-test-Pa55word"
PW = {"PFX_PW": PASSWORD}
RUN_LINE = r"powershell -ExecutionPolicy Bypass -File .\install-iis.ps1"


@pytest.fixture(scope="module")
def issued(ca, tmp_path_factory):
    """One certificate for a name, its wildcard and an IDN below it; each test works on a copy."""
    work = tmp_path_factory.mktemp("iis") / "acme-work"
    name = unique("iis")
    ca.issue(work, [name, f"*.{name}", f"bücher.{name}"])
    return work


@pytest.fixture
def copy(issued, work):
    shutil.copytree(issued, work)
    return work


def export(ca, work, *args):
    return ca.ok(9, work, "--password-env", "PFX_PW", *args, env=PW)


def read_script(work: Path) -> str:
    """install-iis.ps1 as PowerShell reads it: UTF-8 after a BOM, CRLF line ends."""
    data = (work / "install-iis.ps1").read_bytes()
    assert data.startswith(b"\xef\xbb\xbf"), "no UTF-8 BOM: Windows PowerShell 5.1 would read it as ANSI"
    text = data[3:].decode("utf-8")
    assert "\n" not in text.replace("\r\n", ""), "not CRLF throughout"
    return text.replace("\r\n", "\n")


def leaf(work: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate((work / "cert.pem").read_bytes())


def sha1_thumbprint(work: Path) -> str:
    """SHA-1 over the certificate's DER, taken from the PEM by hand: Windows's thumbprint."""
    pem = (work / "cert.pem").read_text()
    body = pem.split("-----BEGIN CERTIFICATE-----")[1].split("-----END CERTIFICATE-----")[0]
    return hashlib.sha1(base64.b64decode("".join(body.split()))).hexdigest().upper()


def constant(text: str, name: str) -> str:
    """The value of a `$Name = '...'` line (single-quoted, '' for a quote)."""
    match = re.search(rf"^\${name}\s*=\s*'((?:[^']|'')*)'", text, re.M)
    assert match, f"${name} not found"
    return match.group(1).replace("''", "'")


def names_table(text: str) -> dict[str, str]:
    """The `$Names = [ordered]@{ 'name' = 'file.pfx' ... }` table, in order."""
    block = re.search(r"^\$Names = \[ordered\]@\{\n(.*?)^\}", text, re.M | re.S)
    assert block, "$Names table not found"
    return dict(re.findall(r"^\s+'([^']+)'\s+=\s+'([^']+)'", block.group(1), re.M))


# --- 09 writes the script ----------------------------------------------------------------------


def test_script_next_to_pfx_with_next_hint(ca, copy):
    result = export(ca, copy)
    script, pfx = copy / "install-iis.ps1", copy / "certificate.pfx"
    assert script.stat().st_mode & 0o777 == 0o644
    assert pfx.stat().st_mode & 0o777 == 0o600
    assert f"Wrote {script}" in result.stdout
    assert RUN_LINE in result.stdout
    assert "Next: copy certificate.pfx and install-iis.ps1 to one folder on the Windows server" in result.stdout
    assert sha1_thumbprint(copy) in result.stdout
    assert "21_check_endpoint.py" in result.stdout
    assert PASSWORD not in result.stdout + result.stderr


def test_thumbprint_names_expiry_and_ccs_files(ca, copy):
    export(ca, copy)
    text = read_script(copy)
    cert = leaf(copy)
    thumbprint = sha1_thumbprint(copy)
    assert constant(text, "Thumbprint") == thumbprint
    assert f"thumbprint  {thumbprint}" in text  # the help block says it too
    assert constant(text, "NotAfter") == f"{cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}"

    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = san.get_values_for_type(x509.DNSName)
    base = next(n for n in dns if not n.startswith(("*.", "xn--")))
    idn = f"xn--bcher-kva.{base}"
    assert sorted(dns) == sorted([base, f"*.{base}", idn])
    # Every name, in the certificate's order, with the file name IIS's Central Certificate Store
    # looks for: the host name, and '_' for the wildcard's '*'.
    assert names_table(text) == {n: f"_.{base}.pfx" if n.startswith("*.") else f"{n}.pfx" for n in dns}
    assert list(names_table(text)) == dns
    assert f"# bücher.{base}" in text  # the IDN as people write it, next to its A-label


def test_paths_stores_and_bindings(ca, copy):
    export(ca, copy)
    text = read_script(copy)
    assert constant(text, "PfxName") == "certificate.pfx"
    assert "Join-Path $PSScriptRoot $PfxName" in text  # default: the .pfx next to the script
    assert "Import-PfxCertificate @import" in text
    assert "CertStoreLocation = 'Cert:\\LocalMachine\\WebHosting'" in text
    assert "X509Store('CA', 'LocalMachine')" in text  # intermediates, for the chain IIS sends
    assert '"*:443:$name"' in text and "SslFlags]::Sni" in text
    assert "$new.CertificateStoreName = 'WebHosting'" in text and "$manager.CommitChanges()" in text
    assert "Export-PfxCertificate @export" in text and "ChainOption = 'PfxDataOnly'" in text
    assert text.startswith("#Requires -Version 5.1\n#Requires -PSEdition Desktop\n#Requires -RunAsAdministrator\n")
    assert "\n$ErrorActionPreference = 'Stop'" in text
    assert "$iisMajor -lt 10" in text  # wildcard bindings only where IIS can have them


def test_checks_come_before_changes(ca, copy):
    """A wrong password or another certificate's .pfx stops the script before IIS is touched."""
    export(ca, copy)
    text = read_script(copy)
    order = ["Import-Module IISAdministration", "Get-PfxData -FilePath $PfxPath -Password $Password",
             "$leaf.Thumbprint -ne $Thumbprint", "$caStore.Add($cert)", "Import-PfxCertificate @import",
             "$item.Site.Bindings.Remove($old)", "$manager.CommitChanges()"]
    positions = [text.index(step) for step in order]
    assert positions == sorted(positions)
    assert text.count("$manager.CommitChanges()") == 1  # the bindings change all at once, or not at all


def test_default_site_and_iis_site_option(ca, copy):
    result = export(ca, copy)
    assert "IIS site 'Default Web Site'" in result.stdout
    text = read_script(copy)
    assert re.search(r"^\s+\[string\]\$Site = 'Default Web Site',$", text, re.M)
    # A quote in the name, ASCII or typographic, cannot end PowerShell's string early.
    export(ca, copy, "--force", "--iis-site", "Bob's \u2019site\u2019")
    text = read_script(copy)
    assert "[string]$Site = 'Bob''s \u2019\u2019site\u2019\u2019'," in text
    assert powershell_problems(text) == []
    assert tree_sitter_errors(text) == []


def test_site_name_with_control_character_refused_before_anything_is_written(ca, copy):
    result = ca.run(9, copy, "--password-env", "PFX_PW", "--iis-site", "bad\nsite", env=PW)
    fails(result, 2, "--iis-site")
    assert not (copy / "certificate.pfx").exists() and not (copy / "install-iis.ps1").exists()


def test_no_password_in_the_script(ca, copy):
    export(ca, copy)
    data = (copy / "install-iis.ps1").read_bytes()
    for encoding in ("utf-8", "utf-16-le"):
        assert PASSWORD.encode(encoding) not in data
    text = read_script(copy)
    # Only a SecureString parameter, asked for without echo when missing; no plain-text variant.
    assert re.findall(r"\[(\w+)\]\$(\w*Password)\b", text) == [("SecureString", "Password"),
                                                                ("SecureString", "CcsPassword")]
    assert "Read-Host -AsSecureString" in text


def test_legacy_pfx_runs_on_older_windows(ca, copy):
    export(ca, copy)
    assert re.search(r"^\$FirstBuild\s+= 16299\b", read_script(copy), re.M)
    export(ca, copy, "--force", "--legacy")
    text = read_script(copy)
    assert re.search(r"^\$FirstBuild\s+= 0\b", text, re.M)
    assert constant(text, "PfxEncryption") == "3DES-SHA1 with a SHA-1 MAC"


def test_rewritten_with_the_pfx_and_only_then(ca, copy):
    export(ca, copy)
    script = copy / "install-iis.ps1"
    script.write_text("stale\n")
    # 09 refuses to replace the .pfx without --force: the script is left alone too.
    again = ca.run(9, copy, "--password-env", "PFX_PW", "--iis-site", "Other", env=PW)
    fails(again, 2, "--force")
    assert script.read_text() == "stale\n"
    export(ca, copy, "--force", "--iis-site", "Other")
    text = read_script(copy)
    assert "[string]$Site = 'Other'," in text
    assert constant(text, "Thumbprint") == sha1_thumbprint(copy)
    assert script.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("legacy", [False, True], ids=["aes", "legacy"])
def test_script_parses_as_powershell(ca, copy, legacy):
    export(ca, copy, *(["--legacy"] if legacy else []))
    text = read_script(copy)
    assert powershell_problems(text) == []
    assert tree_sitter_errors(text) == []


# --- 09 -v: the PKCS#12 algorithms, read back --------------------------------------------------


def openssl_info(pfx: Path, *options: str) -> str:
    """`openssl pkcs12 -info`, the password passed in the environment, never on a command line."""
    return subprocess.run(["openssl", "pkcs12", "-info", "-noout", "-in", str(pfx), "-passin", "env:PFX_PW", *options],
                          capture_output=True, text=True, check=True, env={"PFX_PW": PASSWORD, "PATH": "/usr/bin:/bin"}
                          ).stderr


def assert_matches_openssl(shown: dict[str, str], info: str) -> None:
    """Our names for the algorithms against OpenSSL's, part by part."""
    mac = re.search(r"^MAC: (\w+), Iteration (\d+)", info, re.M)
    assert shown["MAC"] == f"HMAC-{mac.group(1).upper()}, {mac.group(2)} iterations"
    for part, label in (("certificates", "PKCS7 Encrypted data"), ("private key", "Shrouded Keybag")):
        theirs = re.search(rf"^{label}: (.*)$", info, re.M).group(1)
        iterations = re.search(r"Iteration (\d+)", theirs).group(1)
        assert f"{iterations} iterations" in shown[part], (part, shown[part], theirs)
        if theirs.startswith("PBES2"):  # "PBES2, PBKDF2, AES-256-CBC, Iteration 20000, PRF hmacWithSHA256"
            _, kdf, cipher, _, prf = (t.strip() for t in theirs.split(","))
            assert shown[part] == f"PBES2: {kdf} with {prf.removeprefix('PRF ')}, {iterations} iterations, {cipher}"
        else:  # "pbeWithSHA1And3-KeyTripleDES-CBC, Iteration 2048"
            assert shown[part] == f"{theirs.split(',')[0]}, {iterations} iterations"


@pytest.mark.parametrize("legacy", [False, True], ids=["aes", "legacy"])
def test_verbose_shows_the_algorithms_read_back_not_the_password(ca, copy, legacy):
    result = export(ca, copy, "-v", *(["--legacy"] if legacy else []))
    out = result.stdout + result.stderr
    assert PASSWORD not in out
    assert "as read back from the file" in out
    shown = dict(re.findall(r"^  (certificates|private key|MAC):\s+(.*)$", result.stdout, re.M))
    assert set(shown) == {"certificates", "private key", "MAC"}, result.stdout
    assert_matches_openssl(shown, openssl_info(copy / "certificate.pfx"))
    if legacy:
        assert "pbeWithSHA1And3-KeyTripleDES-CBC" in shown["private key"] and shown["MAC"].startswith("HMAC-SHA1,")
    else:
        assert "AES-256-CBC" in shown["private key"] and shown["MAC"].startswith("HMAC-SHA256,")


def test_without_verbose_no_algorithm_lines(ca, copy):
    result = export(ca, copy)
    assert "read back" not in result.stdout and "Shrouded" not in result.stdout


@pytest.mark.parametrize("options", [
    [],
    ["-keypbe", "PBE-SHA1-3DES", "-certpbe", "PBE-SHA1-3DES", "-macalg", "SHA1"],
    ["-legacy"],  # RC2-40 for the certificates, as OpenSSL 1.x wrote by default
    ["-nomac", "-keypbe", "NONE", "-certpbe", "NONE"],
], ids=["openssl3", "3des", "openssl-legacy", "unprotected"])
def test_algorithms_of_files_openssl_wrote(issued, tmp_path, options):
    """The reader against .pfx files from another implementation, OpenSSL's `pkcs12 -export`."""
    pfx = tmp_path / "other.pfx"
    subprocess.run(["openssl", "pkcs12", "-export", "-inkey", str(issued / "cert.key"), "-in", str(issued / "cert.pem"),
                    "-certfile", str(issued / "chain.pem"), "-passout", "env:PFX_PW", "-out", str(pfx), *options],
                   check=True, capture_output=True, env={"PFX_PW": PASSWORD, "PATH": "/usr/bin:/bin"})
    shown = dict(pkcs12.algorithms(pfx.read_bytes()))
    if "-nomac" in options:
        assert shown == {"certificates": "not encrypted", "private key": "not encrypted",
                         "MAC": "none: the file's integrity is not protected"}
    else:
        assert_matches_openssl(shown, openssl_info(pfx, *[o for o in options if o == "-legacy"]))


@pytest.mark.parametrize("data", [b"", b"\x30", b"\x30\x03\x02\x01\x03", b"\x30\x80\x00\x00", b"not der at all"])
def test_algorithms_of_damaged_files(data):
    with pytest.raises(ValueError, match="not a PKCS#12 file"):
        pkcs12.algorithms(data)


# --- The syntax checks, and proof that they catch mistakes ------------------------------------

OPEN = {"(": ")", "{": "}", "[": "]"}
SCOPES = {"env", "global", "script", "local", "private", "using", "variable", "function"}
SINGLE_QUOTES = "'\u2018\u2019\u201a\u201b"


def powershell_problems(text: str) -> list[str]:
    """Unbalanced brackets, unterminated strings or comments, and "$name:" in an expandable string.

    A small PowerShell lexer: comments (# and <# #>), single-quoted strings ('' inside), double-
    quoted strings (` escapes, "" inside, $( ) subexpressions holding code again). "$name:" in a
    double-quoted string is a parse error in PowerShell (it reads a drive or scope qualifier),
    which is easy to write by accident: "${name}:" is the way.
    """
    problems: list[str] = []
    stack: list[tuple[str, int]] = []  # open brackets, and '"' for a string a $( ) sits in
    i, line = 0, 1

    def at(offset: int = 0) -> str:
        return text[i + offset] if i + offset < len(text) else ""

    if "@'" in text or '@"' in text:
        problems.append("here-strings are not checked by this lexer")
    while i < len(text):
        c = at()
        in_string = bool(stack) and stack[-1][0] == '"'
        if c == "\n":
            line += 1
        if in_string:
            if c == "`":
                i += 2
                continue
            if c == '"' and at(1) == '"':
                i += 2
                continue
            if c == '"':
                stack.pop()
            elif c == "$" and at(1) == "(":
                stack.append(("(", line))
                i += 2
                continue
            elif c == "$":
                name = re.match(r"\$([A-Za-z_]\w*):", text[i:])
                if name and name.group(1).lower() not in SCOPES:
                    problems.append(f"line {line}: ${name.group(1)}: in a double-quoted string (write ${{...}}:)")
            i += 1
            continue
        if c == "<" and at(1) == "#":
            end = text.find("#>", i + 2)
            if end < 0:
                problems.append(f"line {line}: <# never closed")
                break
            line += text.count("\n", i, end)
            i = end + 2
            continue
        if c == "#" and (i == 0 or text[i - 1] in " \t\n;({"):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        if c in SINGLE_QUOTES:
            j = i + 1
            while True:
                if j >= len(text):
                    problems.append(f"line {line}: single-quoted string never closed")
                    return problems
                if text[j] in SINGLE_QUOTES:
                    if j + 1 < len(text) and text[j + 1] in SINGLE_QUOTES:
                        j += 2
                        continue
                    break
                j += 1
            line += text.count("\n", i, j)
            i = j + 1
            continue
        if c == '"':
            stack.append(('"', line))
        elif c in OPEN:
            stack.append((c, line))
        elif c in OPEN.values():
            if not stack or OPEN.get(stack[-1][0]) != c:
                problems.append(f"line {line}: {c!r} closes {stack[-1][0] if stack else 'nothing'}")
                return problems
            stack.pop()
        elif c == "`":
            i += 1
        i += 1
    problems += [f"line {opened}: {what!r} never closed" for what, opened in stack]
    return problems


def tree_sitter_errors(text: str) -> list[str]:
    """Syntax errors tree-sitter's PowerShell grammar finds (ERROR and MISSING nodes)."""
    import tree_sitter_powershell
    from tree_sitter import Language, Parser

    source = text.encode("utf-8")
    tree = Parser(Language(tree_sitter_powershell.language())).parse(source)
    errors, todo = [], [tree.root_node]
    while todo:
        node = todo.pop()
        if node.type == "ERROR" or node.is_missing:
            errors.append(f"line {node.start_point[0] + 1}: {source[node.start_byte:node.end_byte][:60]!r}")
        todo.extend(node.children)
    return errors


GOOD = """\
# a comment with ( and "
<# a block comment with { #>
$x = @{ 'a' = "b $($y.Name) c"; 'd''e' = "`"" }
if ($x) { Write-Host "${name}: $env:PATH ""quoted"" [" }
"""


@pytest.mark.parametrize(("bad", "problem"), [
    (GOOD.replace("}\n", "\n", 1), "never closed"),
    (GOOD.replace("'d''e'", "'d'e'"), "never closed"),
    (GOOD.replace("${name}:", "$name:"), "$name: in a double-quoted string"),
    (GOOD.replace("$($y.Name)", "$($y.Name"), "never closed"),
    (GOOD.replace("#>", "#"), "<# never closed"),
    (GOOD.replace("if ($x)", "if ($x]"), "closes"),
])
def test_the_lexer_finds_mistakes(bad, problem):
    assert powershell_problems(GOOD) == []
    assert any(problem in p for p in powershell_problems(bad)), powershell_problems(bad)


def test_tree_sitter_finds_mistakes():
    assert tree_sitter_errors(GOOD) == []
    assert tree_sitter_errors(GOOD.replace("}\n", "\n", 1))
    assert tree_sitter_errors("try { Write-Host 'x' } finaly { }\n")
