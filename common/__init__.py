"""Shared mechanics for the numbered ACME steps.

Each module holds one concern, so a reader can copy one piece without the rest:

- ``keys``       generating, loading and saving account and certificate keys
- ``jws``        base64url, JWK, thumbprint and JWS signing (RFC 7515, 7517, 7638); copy it alone
- ``errors``     the ways a step ends early (bad input, CA said no, a signal)
- ``http``       the ACME transport: nonces, signed POSTs, retries, polling, deadlines (RFC 8555 §6)
- ``resources``  the shapes of the CA's objects, checked before use (RFC 8555 §7.1)
- ``rfc8555``    one function per ACME endpoint (RFC 8555 §7)
- ``validation`` what every challenge step shares: open authorizations, answers, the wait
- ``names``      domain-name checks and IDN conversion
- ``certs``      the certificate signing request, the issued chain and its checks
- ``challenges`` key authorizations and every challenge's record or file (RFC 8555 §8); copy it alone
- ``dns_providers`` where TXT records get published
- ``pkcs12``     the .pfx bundle for Windows and IIS, its password, the import commands
- ``servers``    named ACME servers, the local test CA and TLS trust
- ``state``      the work directory: which file each step reads and writes
- ``cli``        the command-line contract shared by every step
"""

import importlib.util
import sys

# A step run by a Python without the project's packages (the virtualenv not activated) would
# otherwise stop on a ModuleNotFoundError traceback, even for --help.
_MISSING = [name for name in ("cryptography", "requests", "idna", "dns") if importlib.util.find_spec(name) is None]
if _MISSING:
    print(f"error: {sys.executable} lacks the packages these steps need ({', '.join(_MISSING)}): run the step "
          "with .venv/bin/python, or activate the virtualenv with '. .venv/bin/activate' (make it with ./setup.sh)",
          file=sys.stderr)
    sys.exit(2)
