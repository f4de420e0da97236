#!/usr/bin/env bash
# Keep certificates alive, unattended: renew every work directory when its CA says it is time
# (ARI, RFC 9773), each with the options saved in it, from cron or a systemd timer (systemd/).
#
#   ./renew.sh --dir DIR [--provider P ...06 options...] [--http | --tls-alpn] [--profile NAME] [--new-key]
#              [--password-file FILE | --password-env VAR] [--deploy-hook CMD] [--on-failure-hook CMD]
#              [--hook-timeout SECONDS] [--fallback DIR2] [--reset] [--force] [-v]
#              (the options are saved in DIR for later runs: each kind given replaces only its saved
#              one; --reset replaces them all)
#   ./renew.sh --all ROOT [--force] [-v]               (every directory under ROOT with a cert.pem)
#   ./renew.sh --status [--all ROOT | --dir DIR]       (asks no CA anything)
#
# The program is tools/renew.py (./renew.sh --help says everything); it runs the numbered steps,
# each as its own process. Exit status: 0 nothing failed, 1 a directory failed, 2 bad usage.
here="$(cd "$(dirname "$0")" && pwd)"
py="${PYTHON:-}"
if [ -z "$py" ]; then
  if [ -x "$here/.venv/bin/python" ]; then py="$here/.venv/bin/python"; else py=python3; fi
fi
exec "$py" "$here/tools/renew.py" "$@"
