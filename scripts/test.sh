#!/usr/bin/env bash
# The test command (README): installs what is missing, builds, then runs
#   1. cargo test            native Rust tests (lowbit-core unit + golden vectors)
#   2. cargo test (wasm32)   the same tests compiled to wasm + SIMD128 and run in Node by
#                            wasm-bindgen-test-runner (what `wasm-pack test --node` runs),
#                            plus the SIMD-vs-scalar equality suite
#   3. vitest                the TypeScript API on the real wasm in Node, plus a Deno script
#                            and a headless Chromium page (test/runtimes.test.ts), and the
#                            WebGPU backend on Dawn (Node) and wgpu (Deno) — required when
#                            setup prepared WebGPU (.cache/webgpu/env sets LOWBIT_WEBGPU_EXPECT=1)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/toolchain.sh

bash scripts/setup.sh --with-browser
bash scripts/build.sh

# The WebGPU driver setup-webgpu.sh prepared (Mesa lavapipe): lowbit-gpu's wgpu tests and the
# Dawn tests use it, and fail instead of skipping when it gives no adapter.
if [ -f .cache/webgpu/env ]; then source .cache/webgpu/env; fi
# Mesa's drivers complain on every start without a runtime dir (headless CI has none).
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then export XDG_RUNTIME_DIR="$(mktemp -d)"; fi

echo "== cargo test (native)"
cargo test --workspace

echo "== cargo test (wasm32 + simd128, Node)"
cargo_wasm test -p lowbit-core

echo "== vitest"
node scripts/check-layers.mjs  # imports follow the layer table of ARCHITECTURE.md
npx vitest run
