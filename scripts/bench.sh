#!/usr/bin/env bash
# `npm run bench -- <suite> [options]`: bench/run.mjs on the Node the tests use (Node 24 from
# setup.sh when the system's node is older, scripts/lib/toolchain.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/toolchain.sh
exec node bench/run.mjs "$@"
