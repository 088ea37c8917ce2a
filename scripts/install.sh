#!/usr/bin/env bash
# Installs the `xoauth2-relay` command from this checkout the way a package is installed: the
# build is packed (`npm pack`) and the tarball installed globally, so the command runs from any
# folder, the checkout can go, and no `npx` ever asks the registry for a package of that name.
#
#   sudo bash scripts/install.sh                 # /usr/local/bin/xoauth2-relay (the systemd unit's path)
#   sudo bash scripts/install.sh --system        # that, and the service: user, folders, config, env file, unit
#   PREFIX=$HOME/.local bash scripts/install.sh  # $HOME/.local/bin/xoauth2-relay
#   SKIP_BUILD=1 ...                             # dist/ is already built (npm run build)
#   ROOT=/some/dir ... --system                  # into another root (an image being built; the tests)
#
# --system (as root) also makes what the systemd unit expects (docs/operations.md, "Running it
# under systemd"), without touching what is already there but its owners and modes:
#   user and group xoauth2-relay (system, no login, home /var/lib/xoauth2-relay)
#   /etc/xoauth2-relay             root:xoauth2-relay 0750
#   /etc/xoauth2-relay/relay.yaml  root:xoauth2-relay 0640 (a starter one if there is none)
#   /etc/xoauth2-relay/env         root:xoauth2-relay 0640 (secrets as variables; empty if none)
#   /var/lib/xoauth2-relay         xoauth2-relay:xoauth2-relay 0700 (the store)
#   /etc/systemd/system/xoauth2-relay.service  0644, ExecStart at $PREFIX/bin/xoauth2-relay
# The service reads its config as its own user: a folder left root:root 0750 makes the file
# unreadable to it (the relay then says "permission denied as user xoauth2-relay").
#
# Needs Node.js >= 20.19 and npm >= 10, and `npm ci` run here first (it builds the SQLite addon
# for this machine). The dependencies come from the npm registry (or npm's cache).
set -euo pipefail

SYSTEM=""
for arg in "$@"; do
  case "$arg" in
    --system) SYSTEM=1 ;;
    *) echo "usage: bash scripts/install.sh [--system]" >&2; exit 1 ;;
  esac
done
PREFIX="${PREFIX:-/usr/local}"
ROOT="${ROOT:-}"
ROOT="${ROOT%/}"
cd "$(dirname "$0")/.."
if [ -n "$SYSTEM" ] && [ "$(id -u)" -ne 0 ]; then
  echo "--system creates a user and sets owners: run it as root (sudo)" >&2
  exit 1
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

addon=node_modules/better-sqlite3/build/Release/better_sqlite3.node
if [ ! -f "$addon" ] || [ ! -d node_modules/typescript ]; then
  echo "run npm ci in $(pwd) first (it builds the SQLite addon and the TypeScript)" >&2
  exit 1
fi
[ -n "${SKIP_BUILD:-}" ] || npm run build --silent
tarball="$(npm pack --ignore-scripts --silent --pack-destination "$work" | tail -n 1)"

# Install scripts are skipped: the only one that matters, better-sqlite3's, would download a
# prebuilt addon or compile one (minutes); the addon npm ci built for this machine is copied in.
npm install --global --prefix "$ROOT$PREFIX" --ignore-scripts --prefer-offline --no-fund --no-audit "$work/$tarball"
dest="$ROOT$PREFIX/lib/node_modules/xoauth2-relay"
mkdir -p "$dest/$(dirname "$addon")"
cp "$addon" "$dest/$addon"
node -e "new (require(process.argv[1]))(':memory:').close()" "$dest/node_modules/better-sqlite3"

echo "installed: $ROOT$PREFIX/bin/xoauth2-relay $("$ROOT$PREFIX/bin/xoauth2-relay" --version)"
[ -n "$SYSTEM" ] || exit 0

# ---- --system ------------------------------------------------------------------------------
user=xoauth2-relay
etc="$ROOT/etc/xoauth2-relay"
state="$ROOT/var/lib/xoauth2-relay"
unit="$ROOT/etc/systemd/system/xoauth2-relay.service"

# In another root the account goes into that root's /etc/passwd (useradd --prefix), and ids are
# read from there: the names need not exist on the machine running this.
if ! grep -q "^$user:" "$ROOT/etc/passwd" 2>/dev/null; then
  useradd ${ROOT:+--prefix "$ROOT"} --system --user-group --home-dir /var/lib/xoauth2-relay --no-create-home --shell /usr/sbin/nologin "$user"
  echo "created user $user"
fi
uid="$(awk -F: -v u="$user" '$1 == u { print $3 }' "$ROOT/etc/passwd")"
gid="$(awk -F: -v u="$user" '$1 == u { print $4 }' "$ROOT/etc/passwd")"

# Owners and modes are set on what exists too: that is the repair of an install made by hand.
mkdir -p "$etc" "$state"
chown 0:"$gid" "$etc" && chmod 0750 "$etc"
chown "$uid:$gid" "$state" && chmod 0700 "$state"

if [ ! -e "$etc/relay.yaml" ]; then
  cat > "$etc/relay.yaml" <<'YAML'
# xoauth2-relay (docs/configuration.md). Written by scripts/install.sh --system; edit, then
# `xoauth2-relay check-config --config /etc/xoauth2-relay/relay.yaml` and
# `systemctl reload xoauth2-relay`. Secrets go in /etc/xoauth2-relay/env as NAME=value and are
# referenced here as ${NAME}.
listen: { host: 127.0.0.1, port: 2525 }
http: { host: 127.0.0.1, port: 9090 }
store: { path: /var/lib/xoauth2-relay/relay.db }
inbound:
  trusted_networks: [127.0.0.0/8, ::1/128]
# Accounts: here, or in the store with `sudo -u xoauth2-relay xoauth2-relay accounts add
# --config /etc/xoauth2-relay/relay.yaml ...` (docs/operations.md).
accounts: []
YAML
  echo "wrote a starter $etc/relay.yaml"
fi
chown 0:"$gid" "$etc/relay.yaml" && chmod 0640 "$etc/relay.yaml"

if [ ! -e "$etc/env" ]; then
  printf '# NAME=value lines, read by systemd (EnvironmentFile=) and referenced in relay.yaml as ${NAME}.\n# XOAUTH2_RELAY_KEY=  (64 hex characters: seals the store; else /var/lib/xoauth2-relay/relay.key)\n' > "$etc/env"
fi
chown 0:"$gid" "$etc/env" && chmod 0640 "$etc/env"

mkdir -p "$(dirname "$unit")"
sed "s#/usr/local/bin/xoauth2-relay#$PREFIX/bin/xoauth2-relay#; s#file:///usr/local/lib/node_modules#file://$PREFIX/lib/node_modules#" packaging/xoauth2-relay.service > "$unit"
chmod 0644 "$unit"
echo "installed the unit: $unit"

if [ -z "$ROOT" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  echo "next: edit $etc/relay.yaml, then: systemctl enable --now xoauth2-relay"
else
  echo "next: edit $etc/relay.yaml; on the target system: systemctl daemon-reload && systemctl enable --now xoauth2-relay"
fi
