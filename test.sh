#!/usr/bin/env bash
# Set everything up (virtualenv, test tools, servers; the tests start their own Pebble CAs) and run
# the whole test suite. Extra arguments go to pytest, e.g. ./test.sh -k wildcard -x
set -euo pipefail
cd "$(dirname "$0")"
tools/install_test_servers.sh  # BIND 9 and nginx from Debian, which the tests start (tests/servers.py)
. tools/bootstrap.sh requirements-dev.txt
echo "ruff check ..."
ruff check .
exec python -m pytest "$@"
