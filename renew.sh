#!/usr/bin/env bash
# Keep a certificate alive: renew it when the CA says it is time (ARI, RFC 9773), for cron or a
# systemd timer. Runs 11 --check; if renewal is due (or --force), runs 03 (the same names as the
# current certificate), 05 --replaces, 06, 07, 08, 09 (with a password option), then the deploy hook.
#
#   ./renew.sh --dir DIR [--provider P ...06 options...] [--http ...06_http_challenge options...]
#              [--profile NAME] [--new-key] [--password-file FILE | --password-env VAR]
#              [--deploy-hook CMD] [--force] [-v]
#
# Options it does not know go to step 06. The previous files are copied to DIR/previous/ first; if
# a step fails they are put back, so the directory never holds a new key next to an old
# certificate. Exit status: 0 renewed or not due, 1 a step failed (one line per failure, for the
# cron mail), 2 bad usage.
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
py="${PYTHON:-}"
if [ -z "$py" ]; then
  if [ -x "$here/.venv/bin/python" ]; then py="$here/.venv/bin/python"; else py=python3; fi
fi

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }

dir="${ACME_DIR:-}" force=0 new_key=0 deploy_hook="" challenge=06_dns_challenge.py
pfx=() order=() challenge_options=() verbose=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir="${2:?--dir needs a directory}"; shift 2 ;;
    --force) force=1; shift ;;
    --new-key) new_key=1; shift ;;
    --deploy-hook) deploy_hook="${2:?--deploy-hook needs a command}"; shift 2 ;;
    --password-file|--password-env) pfx+=("$1" "${2:?$1 needs a value}"); shift 2 ;;
    --profile) order+=("$1" "${2:?--profile needs a name}"); shift 2 ;;
    --http) challenge=06_http_challenge.py; shift ;;
    -v|--verbose) verbose=(-v); shift ;;
    -h|--help) usage; exit 0 ;;
    *) challenge_options+=("$1"); shift ;;
  esac
done
if [ -z "$dir" ]; then
  echo "renew: error: give the work directory with --dir DIR (or set ACME_DIR)" >&2; exit 2
fi
if [ ! -f "$dir/cert.pem" ]; then
  echo "renew: error: $dir/cert.pem not found: get the first certificate with steps 01 to 08" >&2; exit 2
fi

step() {  # step SCRIPT ARGS...: run one numbered step on the work dir; say so when it fails
  "$py" "$here/$1" --dir "$dir" "${verbose[@]}" "${@:2}"
  local status=$?
  [ "$status" -eq 0 ] || echo "renew: $1 failed (exit status $status)" >&2
  return "$status"
}

echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) renew $dir"
"$py" "$here/11_renewal_info.py" --dir "$dir" --check "${verbose[@]}"
case $? in
  0) ;;
  3) if [ "$force" -eq 0 ]; then echo "Not due yet: nothing to do."; exit 0; fi
     echo "Not due yet, renewing anyway (--force)." ;;
  *) echo "renew: 11_renewal_info.py failed" >&2; exit 1 ;;
esac

# The files a renewal replaces, kept until the new ones are written, and put back on failure.
kept=(cert.key cert.csr cert.pem chain.pem fullchain.pem certificate.pfx install-iis.ps1)
mkdir -p "$dir/previous" && chmod 700 "$dir/previous"
for f in "${kept[@]}"; do
  if [ -e "$dir/$f" ]; then cp -p "$dir/$f" "$dir/previous/$f"; else rm -f "$dir/previous/$f"; fi
done
restore() {
  for f in "${kept[@]}"; do
    if [ -e "$dir/previous/$f" ]; then cp -p "$dir/previous/$f" "$dir/$f"; else rm -f "$dir/$f"; fi
  done
  echo "renew: failed; the previous certificate files are back in place in $dir" >&2
  exit 1
}

if [ "$new_key" -eq 1 ]; then step 02_create_cert_key.py --force || restore; fi
step 03_create_csr.py --names-from-cert "$dir/previous/cert.pem" || restore
if ! step 05_new_order.py --replaces "$dir/previous/cert.pem" "${order[@]}" 2>"$dir/.renew-05.err"; then
  # The certificate was already replaced by an order an earlier run finalized: order afresh.
  if grep -q alreadyReplaced "$dir/.renew-05.err"; then
    echo "renew: the CA says an earlier order already replaces this certificate; ordering without --replaces"
    step 05_new_order.py "${order[@]}" || { rm -f "$dir/.renew-05.err"; restore; }
  else
    cat "$dir/.renew-05.err" >&2; rm -f "$dir/.renew-05.err"; restore
  fi
fi
rm -f "$dir/.renew-05.err"
step "$challenge" "${challenge_options[@]}" || restore
step 07_finalize.py || restore
step 08_get_certificate.py || restore
if [ ${#pfx[@]} -gt 0 ]; then step 09_export_pkcs12.py --force "${pfx[@]}" || restore; fi
rm -f "$dir/renewal.json"  # about the old certificate; the next run asks about the new one
echo "Renewed: $dir/cert.pem (the previous files are in $dir/previous/)"

if [ -n "$deploy_hook" ]; then
  echo "Running the deploy hook..."
  if ! ACME_DIR="$dir" sh -c "$deploy_hook"; then
    echo "renew: the deploy hook failed: the new certificate is in $dir but may not be in use" >&2
    exit 1
  fi
fi
exit 0
