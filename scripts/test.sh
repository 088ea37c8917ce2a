#!/usr/bin/env bash
# The whole test suite on a fresh machine: system packages some tests drive for real
# (installed only when missing; needs root or sudo), then the npm install and the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f scripts/test-deps.sh ]; then bash scripts/test-deps.sh; fi
# npm ci rebuilds the SQLite addon (minutes). npm itself records what it installed in
# node_modules/.package-lock.json; when that matches package-lock.json's packages, node_modules is
# what `npm ci` would make it, and it is not run again (README's first command was `npm ci`).
if node scripts/node-modules-current.cjs; then
  echo "node_modules matches package-lock.json: npm ci skipped"
else
  npm ci
fi
npm test
