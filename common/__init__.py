"""Shared mechanics for the numbered ACME steps.

Each module holds one concern, so a reader can copy one piece without the rest:

- ``encoding``   base64url and JSON as JOSE wants them
- ``keys``       generating, loading and saving account and certificate keys
- ``jws``        JWK, thumbprint and JWS signing (RFC 7515, 7517, 7638)
- ``errors``     the two kinds of failure a step reports (bad input, CA said no)
- ``http``       the ACME transport: nonces, signed POSTs, retries, polling (RFC 8555 §6)
- ``rfc8555``    one function per ACME endpoint (RFC 8555 §7)
- ``names``      domain-name checks and IDN conversion
- ``certs``      the certificate signing request, the issued chain and its checks
- ``challenges`` key authorizations and the dns-01 TXT value (RFC 8555 §8)
- ``dns_providers`` where TXT records get published
- ``pkcs12``     the .pfx bundle for Windows and IIS, its password, the import commands
- ``servers``    named ACME servers, the local test CA and TLS trust
- ``state``      the work directory: which file each step reads and writes
- ``cli``        the command-line contract shared by every step
"""
