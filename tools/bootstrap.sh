# Sourced by demo.sh and test.sh: make .venv with the project's requirements, once.
# Usage: . tools/bootstrap.sh requirements.txt|requirements-dev.txt
set -euo pipefail
_req="${1:-requirements.txt}"
_py="${PYTHON:-python3}"
if ! "$_py" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "error: Python 3.10 or newer is needed (set PYTHON=/path/to/python3.x)" >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  echo "Creating virtualenv .venv ..."
  "$_py" -m venv .venv
fi
# Reinstall only when a requirements file changed since the last install.
_stamp=".venv/.installed-$(cat requirements*.txt | sha256sum | cut -c1-16)-$(basename "$_req")"
if [ ! -e "$_stamp" ]; then
  echo "Installing $_req into .venv ..."
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$_req"
  touch "$_stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"
