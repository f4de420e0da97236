#!/usr/bin/env bash
# Install the real servers the tests start (tests/servers.py): BIND 9 and nginx (with its stream
# module) from Debian, and systemd-analyze (package systemd), which checks the units in systemd/.
# (bind9 brings bind9-utils and tsig-keygen.)
#
# The tests run their own named and nginx from temporary directories on loopback addresses, so
# the packages must not start the system services (named on port 53, nginx on port 80). Debian's
# maintainer scripts start services through invoke-rc.d (deb-systemd-invoke under systemd), which
# ask /usr/sbin/policy-rc.d first: exit status 101 means "do not start". For the install, such a
# file takes the place of whatever is there (often nothing on a VM); the original comes back after.
#
# Usage: tools/install_test_servers.sh   (as root; does nothing when all are installed)
set -euo pipefail

packages=()
command -v named >/dev/null 2>&1 || [ -x /usr/sbin/named ] || packages+=(bind9)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || packages+=(nginx)
# nginx's stream module (ssl_preread, for the tls-alpn-01 route) is a separate package in Debian.
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || packages+=(libnginx-mod-stream)
command -v systemd-analyze >/dev/null 2>&1 || packages+=(systemd)  # tests check the units in systemd/
if [ ${#packages[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "error: the tests need ${packages[*]}: run as root, or apt-get install ${packages[*]}" >&2
  exit 2
fi

policy=/usr/sbin/policy-rc.d
saved="$policy.before-test-servers"
if [ -e "$policy" ]; then
  mv "$policy" "$saved"
  trap 'mv -f "$saved" "$policy"' EXIT
else
  trap 'rm -f "$policy"' EXIT
fi
printf '#!/bin/sh\n# Temporary, from %s: no service starts during this install.\nexit 101\n' "$0" >"$policy"
chmod 755 "$policy"

echo "Installing ${packages[*]} for the tests ..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 "${packages[@]}" >/dev/null
