#!/usr/bin/env bash
# Installs the `xoauth2-relay` command from this checkout the way a package is installed: the
# build is packed (`npm pack`) and the tarball installed globally, so the command runs from any
# folder, the checkout can go, and no `npx` ever asks the registry for a package of that name.
#
#   sudo bash scripts/install.sh                 # /usr/local/bin/xoauth2-relay (the systemd unit's path)
#   PREFIX=$HOME/.local bash scripts/install.sh  # $HOME/.local/bin/xoauth2-relay
#   SKIP_BUILD=1 ...                             # dist/ is already built (npm run build)
#
# Needs Node.js >= 20.19 and npm >= 10, and `npm ci` run here first (it builds the SQLite addon
# for this machine). The dependencies come from the npm registry (or npm's cache).
set -euo pipefail

PREFIX="${PREFIX:-/usr/local}"
cd "$(dirname "$0")/.."
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
npm install --global --prefix "$PREFIX" --ignore-scripts --prefer-offline --no-fund --no-audit "$work/$tarball"
dest="$PREFIX/lib/node_modules/xoauth2-relay"
mkdir -p "$dest/$(dirname "$addon")"
cp "$addon" "$dest/$addon"
node -e "new (require(process.argv[1]))(':memory:').close()" "$dest/node_modules/better-sqlite3"

echo "installed: $PREFIX/bin/xoauth2-relay $("$PREFIX/bin/xoauth2-relay" --version)"
