"""Shared mechanics for the numbered ACME steps.

Each module holds one concern. The pieces a reader is most likely to take work when copied
alone into another project: ``jws``, ``challenges`` and ``alibaba``.

The protocol (RFC 8555):
- ``jws``          base64url, JWK, thumbprint, JWS signing, EAB and key-change JWS (RFC 7515, 7638); copy it alone
- ``transport``    the transport: nonces, signed POSTs, retries, polling, deadlines, URL checks (§6)
- ``deadline``     a total time limit on one network exchange (the CA's and Alibaba Cloud's)
- ``wire``         what crosses the wire, shown with -vv: request and status lines, headers, bodies
- ``resources``    the CA's objects, checked before use (§7.1)
- ``rfc8555``      one function per ACME endpoint (§7), ARI's renewalInfo (RFC 9773)
- ``challenges``   key authorizations and each challenge type's record or file (§8, drafts); copy it alone
- ``validation``   what the challenge steps share: open authorizations, answers, the wait
- ``errors``       the ways a step ends early: bad input, the CA said no, a timeout, a signal

Proving names (step 06):
- ``dns_providers`` where TXT records go: challtestsrv, manual, rfc2136, exec, alidns (the provider classes)
- ``alidns``        Alibaba Cloud DNS's actions and the account's zones, for the alidns provider
- ``dns_records``   the records of an order: computed, listed in dns-records.json, published, removed
- ``dns_lookup``    CNAMEs, zones, authoritative servers, the propagation check (dnspython)
- ``http01``        the http-01 webroot and standalone server
- ``listener``      what the http-01 and tls-alpn-01 servers share: --bind's socket address, clients' addresses
- ``tls_alpn``      the tls-alpn-01 challenge certificate and the server that answers acme-tls/1 (RFC 8737, 8738)

Keys, certificates and the account:
- ``keys``         generating, loading and saving keys
- ``names``        domain-name, host-name and IP-address checks (RFC 8738, 5952), IDN conversion both ways
- ``certs``        the CSR, the issued chain and its checks, fingerprints, one-line summaries, the ARI certID
- ``account``      account.json's record, External Account Binding, deactivation
- ``rollover``     a key change that survives interruption (step 13)
- ``revocation``   revocation reasons and who may revoke (step 12)
- ``renewal``      when to renew: ARI or the lifetime (step 11)
- ``renewal_runs`` renew.sh's bookkeeping: saved options, last result and back-off, the lock, the walk
- ``pkcs12``       the .pfx bundle for Windows, its password
- ``iis``          the install-iis.ps1 script step 09 writes
- ``secret_input`` passwords and HMAC keys from a file or the environment, never the command line

Putting it to work:
- ``alibaba``        the Alibaba Cloud V3 (ACS3-HMAC-SHA256) request signer; copy it alone
- ``alibaba_api``    calling Alibaba Cloud APIs: endpoints, error hints, paging (for alidns and step 20)
- ``alibaba_deploy`` CAS, CDN and API Gateway calls (step 20)
- ``served_chain``   the chain a TLS server sends, checked against the work dir (step 21, pyOpenSSL)

The command line and the work directory:
- ``acme_servers`` named ACME servers, the local test CA, TLS trust
- ``workdir``      the work directory: which file each step reads and writes, atomic writes
- ``cli``          the command-line contract every step shares
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
