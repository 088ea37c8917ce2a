#!/usr/bin/env bash
# System packages that integration tests drive for real. Idempotent: installs only what is
# missing, so a machine that already has them (a developer's, a re-run of CI) pays nothing.
# Needs root (CI runs as root) or sudo.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
# Postfix as the MTA in front of the relay (test/integration/postfix.test.ts); libsasl2-modules
# gives its SMTP client the PLAIN/LOGIN mechanisms it authenticates to the relay with.
command -v postfix >/dev/null 2>&1 || [ -x /usr/sbin/postfix ] || missing+=(postfix)
# Installed means unpacked and configured: a removed package leaves `dpkg -s` succeeding on its config files.
installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = "installed" ]; }
installed libsasl2-modules || missing+=(libsasl2-modules)
# Redis for the shared store (test/integration/redis-store.test.ts, fleet.test.ts); the tests
# start their own redis-server on a free port, so the system service is not wanted.
[ -x /usr/bin/redis-server ] || missing+=(redis-server)
# promtool checks packaging/prometheus-alerts.yml (test/integration/packaging.test.ts).
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)

if [ "${#missing[@]}" -gt 0 ]; then
  $SUDO apt-get update
  # Postfix's debconf questions are answered "No configuration": the test writes its own
  # config into a temporary directory and never touches /etc/postfix's instance.
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
  # Where the package started its service (a machine with an init system), stop it: nothing
  # here uses port 6379, and a test box should not keep a Redis listening.
  if [[ " ${missing[*]} " == *" redis-server "* ]]; then
    $SUDO service redis-server stop >/dev/null 2>&1 || true
  fi
  # Likewise Prometheus itself (port 9090, the relay's default HTTP port): only promtool is wanted.
  if [[ " ${missing[*]} " == *" prometheus "* ]]; then
    $SUDO service prometheus stop >/dev/null 2>&1 || true
  fi
fi
