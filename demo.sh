#!/usr/bin/env bash
# Set everything up (./setup.sh: the virtualenv and the local Pebble test CA) and run steps 01 to
# 09 against it for a demo name. Each run uses a fresh work directory under demo-work/ (or
# $DEMO_WORK), so nothing from an earlier run is overwritten.
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh
python=.venv/bin/python

mkdir -p "${DEMO_WORK:-demo-work}"
export ACME_DIR="$(mktemp -d "${DEMO_WORK:-demo-work}/$(date +%Y%m%d-%H%M%S)-XXXX")"
# A random .pfx password in a 0600 file: never on a command line, never printed.
( umask 077 && "$python" -c 'import secrets; print(secrets.token_urlsafe(18))' > "$ACME_DIR/pfx-password.txt" )

step() { echo; echo "== $*"; "$python" "$@"; }
step 01_create_account_key.py
step 02_create_cert_key.py
step 03_create_csr.py -d demo.example.com -d www.demo.example.com
step 04_new_account.py --server pebble --agree-tos --email admin@demo.example.com
step 05_new_order.py
step 06_dns_challenge.py --provider challtestsrv
step 07_finalize.py
step 08_get_certificate.py
step 09_export_pkcs12.py --password-file "$ACME_DIR/pfx-password.txt"

echo
echo "Done. In $ACME_DIR:"
echo "  certificate  $ACME_DIR/cert.pem"
echo "  chain        $ACME_DIR/chain.pem"
echo "  full chain   $ACME_DIR/fullchain.pem"
echo "  .pfx         $ACME_DIR/certificate.pfx (password in $ACME_DIR/pfx-password.txt)"
echo "The local test CA is still running; stop it with: .venv/bin/python tools/local_ca.py stop"
