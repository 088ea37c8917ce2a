#!/usr/bin/env bash
# The whole test suite on a fresh machine: system packages some tests drive for real
# (installed only when missing; needs root or sudo), then the npm install and the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f scripts/test-deps.sh ]; then bash scripts/test-deps.sh; fi
npm ci
npm test
