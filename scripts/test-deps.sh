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
# Sentinel for the failover test (fleet.test.ts: a primary, a replica and three sentinels, run by
# the test itself on free ports).
installed redis-sentinel || missing+=(redis-sentinel)
# Dovecot's submission service as an independently written XOAUTH2 provider
# (test/interop/dovecot.test.ts); the test runs its own instance, never the system service.
installed dovecot-core || missing+=(dovecot-core)
installed dovecot-submissiond || missing+=(dovecot-submissiond)
# Exim's libraries: its binary comes unpacked from its package below, not installed.
# (exim4-daemon-light's library Depends in Debian 12; most come with any system, not all.)
for lib in libidn12 libidn2-0 libgnutls30 libgnutls-dane0 libdb5.3 libnsl2 libpcre2-8-0 libcrypt1; do
  installed "$lib" || missing+=("$lib")
done
# Debian's Chromium, driven headless by puppeteer-core (which downloads no browser), for the
# status page test (test/browser/status-page.test.ts).
[ -x /usr/bin/chromium ] || missing+=(chromium)
# promtool checks packaging/prometheus-alerts.yml (test/integration/packaging.test.ts).
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# HAProxy in mode tcp with send-proxy / send-proxy-v2 in front of the relay's PROXY protocol
# listener (test/integration/proxy-protocol.test.ts); the test runs its own, never the service.
[ -x /usr/sbin/haproxy ] || missing+=(haproxy)
# systemd-analyze verifies the installed unit (test/integration/system-install.test.ts); the
# package's units (sysinit.target, ...) are what verify resolves the unit's dependencies against.
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)

if [ "${#missing[@]}" -gt 0 ]; then
  $SUDO apt-get update
  # Postfix's debconf questions are answered "No configuration": the test writes its own
  # config into a temporary directory and never touches /etc/postfix's instance.
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}"
  # Where the package started its service (a machine with an init system), stop it: nothing
  # here uses port 6379, and a test box should not keep a Redis listening.
  if [[ " ${missing[*]} " == *" redis-server "* ]]; then
    $SUDO service redis-server stop >/dev/null 2>&1 || true
  fi
  if [[ " ${missing[*]} " == *" redis-sentinel "* ]]; then
    $SUDO service redis-sentinel stop >/dev/null 2>&1 || true
  fi
  if [[ " ${missing[*]} " == *" dovecot-core "* ]]; then
    $SUDO service dovecot stop >/dev/null 2>&1 || true
  fi
  # Likewise Prometheus itself (port 9090, the relay's default HTTP port): only promtool is wanted.
  if [[ " ${missing[*]} " == *" prometheus "* ]]; then
    $SUDO service prometheus stop >/dev/null 2>&1 || true
  fi
  if [[ " ${missing[*]} " == *" haproxy "* ]]; then
    $SUDO service haproxy stop >/dev/null 2>&1 || true
  fi
fi

# Exim as a second MTA in front of the relay (test/interop/exim.test.ts). Debian allows one MTA
# package at a time and Postfix is installed above, so Exim's packages are downloaded and unpacked
# into a cache directory (test/helpers/exim.ts runs the binary from there with its own config).
EXIM_ROOT="${XOAUTH2_RELAY_EXIM_ROOT:-/var/cache/xoauth2-relay-test/exim4}"
if [ ! -x "$EXIM_ROOT/usr/sbin/exim4" ]; then
  work="$(mktemp -d)"
  # apt-get download runs as _apt where it can; a world-writable scratch directory lets it.
  chmod 0777 "$work"
  # Package lists may be missing or stale on a fresh machine: refresh them once if the download fails.
  (cd "$work" && { apt-get download exim4-daemon-light exim4-base exim4-config || { $SUDO apt-get update && apt-get download exim4-daemon-light exim4-base exim4-config; }; })
  $SUDO mkdir -p "$EXIM_ROOT"
  for deb in "$work"/*.deb; do $SUDO dpkg-deb -x "$deb" "$EXIM_ROOT"; done
  rm -rf "$work"
fi
# Exim looks its compiled-in user up before it reads any config; exim4-base's postinst would
# create it, and the unpacked binary needs it just the same.
getent passwd Debian-exim >/dev/null || $SUDO useradd --system --user-group --no-create-home \
  --home-dir /nonexistent --shell /usr/sbin/nologin Debian-exim
