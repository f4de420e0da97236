"""Files in common/ that promise to work when copied alone into another project, checked by doing it.

Each case copies one file into an empty temporary directory and runs ``python -I`` there:
isolated mode ignores PYTHONPATH, the current directory and the user's site-packages, so the
project is not importable (the subprocess asserts that). Only that directory is put on
sys.path. The subprocess imports the file, notes which packages outside the standard library
the import loaded, runs the case's code and prints JSON; the test checks the result with an
independent implementation (jwcrypto) or a published value.

To add a file, append a :class:`CopyAlone` to CASES.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto import jws as jwcrypto_jws

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class CopyAlone:
    """One file, what to run with it once copied alone, and how to check what that printed."""

    file: str  # relative to the project root
    code: str  # runs after ``import <module>``; must set ``result`` to something json.dumps accepts
    check: Callable[[Any], None]  # asserts that ``result`` is right
    third_party: frozenset[str] = frozenset()  # top-level packages outside the stdlib the import may load

    @property
    def module(self) -> str:
        return Path(self.file).stem


_PRELUDE = """\
import importlib.util, json, sys
sys.path.insert(0, {directory!r})
assert importlib.util.find_spec("common") is None, "the project is importable: the copy is not alone"
_before = set(sys.modules)
import {module}
_loaded = sorted({{name.partition(".")[0] for name in set(sys.modules) - _before}}
                 - set(sys.stdlib_module_names) - {{{module!r}}})
"""
_EPILOGUE = """
print(json.dumps({"loaded": _loaded, "result": result}))
"""


def run_alone(source: Path, code: str, directory: Path) -> subprocess.CompletedProcess:
    """Copy ``source`` into the empty ``directory`` and run ``code`` against it with ``python -I``."""
    assert not any(directory.iterdir()), "the directory must start empty"
    shutil.copy(source, directory / source.name)
    program = _PRELUDE.format(directory=str(directory), module=source.stem) + textwrap.dedent(code) + _EPILOGUE
    return subprocess.run([sys.executable, "-I", "-c", program], cwd=directory, capture_output=True, text=True,
                          timeout=120)


# --- common/jws.py ---------------------------------------------------------------------------

_EAB_KEY = bytes(range(32))

_JWS_CODE = """
from cryptography.hazmat.primitives.asymmetric import ec
key = ec.generate_private_key(ec.SECP256R1())
public = jws.jwk(key)
url = "https://ca.example/acme/new-account"
eab = jws.eab_jws(public, "kid-1", jws.decode_hmac_key("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"), url)
protected = {"alg": jws.algorithm(key), "jwk": public, "nonce": "bm9uY2U", "url": url}
payload = {"termsOfServiceAgreed": True, "externalAccountBinding": eab}
result = {"jwk": public, "thumbprint": jws.key_thumbprint(key), "jws": jws.flattened_jws(key, protected, payload)}
"""


def _verify(flat: dict, key: jwcrypto_jwk.JWK) -> jwcrypto_jws.JWS:
    token = jwcrypto_jws.JWS()
    token.deserialize(json.dumps(flat))
    token.verify(key)
    return token


def _check_jws(result: dict) -> None:
    account_key = jwcrypto_jwk.JWK(**result["jwk"])
    token = _verify(result["jws"], account_key)  # raises InvalidJWSSignature unless it verifies
    assert token.jose_header["alg"] == "ES256"
    assert token.jose_header["jwk"] == result["jwk"]
    assert result["thumbprint"] == account_key.thumbprint()
    payload = json.loads(token.payload)
    assert payload["termsOfServiceAgreed"] is True
    binding = _verify(payload["externalAccountBinding"], jwcrypto_jwk.JWK(kty="oct", k=_b64url(_EAB_KEY)))
    assert json.loads(binding.payload) == result["jwk"]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# --- common/challenges.py --------------------------------------------------------------------

_CHALLENGES_CODE = """
result = challenges.dns01_txt_value(
    "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI")
"""


def _check_challenges(result: str) -> None:
    # RFC 8555 §8.3's key authorization, hashed as dns-01 (§8.4) asks; the value Boulder's tests use.
    assert result == "LPsIwTo7o8BoG0-vjCyGQGBWSVIPxI-i_X336eUOQZo"


# What ``import cryptography`` itself loads: the package, cffi's backend and its compiled OpenSSL bindings.
CRYPTOGRAPHY = frozenset({"cryptography", "_cffi_backend", "_openssl"})

CASES = [
    CopyAlone("common/jws.py", _JWS_CODE, _check_jws, third_party=CRYPTOGRAPHY),
    CopyAlone("common/challenges.py", _CHALLENGES_CODE, _check_challenges),
]


@pytest.mark.parametrize("case", CASES, ids=[case.file for case in CASES])
def test_file_works_when_copied_alone(case: CopyAlone, tmp_path: Path):
    done = run_alone(ROOT / case.file, case.code, tmp_path)
    assert done.returncode == 0, f"{case.file} copied alone failed:\n{done.stderr}"
    output = json.loads(done.stdout)
    assert set(output["loaded"]) <= case.third_party, f"{case.file} imports {output['loaded']}"
    case.check(output["result"])


# --- the check itself can fail ---------------------------------------------------------------


def test_a_file_that_needs_its_package_fails_alone(tmp_path: Path):
    source = tmp_path / "src" / "leaning.py"
    source.parent.mkdir()
    source.write_text("from .encoding import b64url\n")
    (tmp_path / "alone").mkdir()
    done = run_alone(source, "result = None", tmp_path / "alone")
    assert done.returncode != 0
    assert "ImportError" in done.stderr


def test_a_file_that_loads_another_package_is_reported(tmp_path: Path):
    source = tmp_path / "src" / "heavy.py"
    source.parent.mkdir()
    source.write_text("import json\nimport jwcrypto.jwk\n")
    (tmp_path / "alone").mkdir()
    done = run_alone(source, "result = 1", tmp_path / "alone")
    assert done.returncode == 0, done.stderr
    output = json.loads(done.stdout)
    assert "jwcrypto" in output["loaded"] and "json" not in output["loaded"]
    assert output["result"] == 1


def test_the_project_is_not_importable_in_the_copy(tmp_path: Path):
    source = tmp_path / "src" / "probe.py"
    source.parent.mkdir()
    source.write_text("import sys\n")
    (tmp_path / "alone").mkdir()
    code = "import os\nresult = {'path': sys.path, 'cwd': os.getcwd()}"
    done = run_alone(source, code, tmp_path / "alone")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)["result"]
    assert str(ROOT) not in result["path"] and "" not in result["path"]
    assert result["path"][0] == str(tmp_path / "alone")
