#!/usr/bin/env bash
# Set up, run nothing: the virtualenv .venv with the packages the steps need, and the local test
# CA (Pebble and its mock DNS) started. Use it before running the steps by hand; ./demo.sh does
# the same and then runs steps 01 to 09 for you. With --no-ca, only the virtualenv (for a real CA).
set -euo pipefail
cd "$(dirname "$0")"
. tools/bootstrap.sh requirements.txt
if [ "${1:-}" != "--no-ca" ]; then
  python tools/local_ca.py start
fi
echo "Ready. Run the steps with .venv/bin/python, or first activate the virtualenv: . .venv/bin/activate"
if [ "${1:-}" != "--no-ca" ]; then
  echo "Stop the local test CA with: .venv/bin/python tools/local_ca.py stop"
fi
