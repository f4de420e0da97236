#!/usr/bin/env bash
# Set everything up (virtualenv, test tools, servers; the tests start their own Pebble CAs) and run
# the whole test suite. Extra arguments go to pytest, e.g. ./test.sh -k wildcard -x,
# ./test.sh tests/test_flow.py, or ./test.sh -n 0 to run in one process (for --pdb, say).
set -euo pipefail
cd "$(dirname "$0")"
tools/install_test_servers.sh  # BIND 9 and nginx from Debian, which the tests start (tests/servers.py)
. tools/bootstrap.sh requirements-dev.txt
echo "ruff check ..."
ruff check .
python tools/local_ca.py install  # Pebble, once, before the parallel workers each start their CAs
# The tests run in parallel processes (pytest-xdist), each starting the servers its tests need. A test
# spends most of its time waiting for a CA, so there are twice as many as CPUs (at most 8).
workers=$(python -c 'import os; print(min(2 * (os.cpu_count() or 1), 8))')
exec python -m pytest -n "$workers" "$@"
