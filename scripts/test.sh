#!/usr/bin/env bash
# The test command (README): installs what is missing, builds, then runs
#   1. cargo test            native Rust tests (lowbit-core unit + golden vectors)
#   2. wasm-pack test --node the same tests compiled to wasm + SIMD128 and run in Node by
#                            wasm-bindgen-test-runner,
#                            plus the SIMD-vs-scalar equality suite; then again for the
#                            SIMD128 + relaxed-SIMD build (its own target dir, target/relaxed)
#   3. vitest                the TypeScript API on the real wasm in Node 24 (init() picks the
#                            relaxed-SIMD build there), plus a Deno script and a headless
#                            Chromium page (test/runtimes.test.ts), and the WebGPU backend on
#                            Dawn (Node) and wgpu (Deno) — required when setup prepared WebGPU
#                            (.cache/webgpu/env sets LOWBIT_WEBGPU_EXPECT=1); then the CPU
#                            backend suites again on the SIMD128 build (LOWBIT_WASM_BUILD)
#   4. the SIMD128 build on the system's older Node (20) when there is one: a smoke test
#   (and before vitest: the layer check and the API reference build, `npm run docs`)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/toolchain.sh

bash scripts/setup.sh --with-browser
use_current_node   # setup may just have installed Node 24
bash scripts/build.sh

# The WebGPU driver setup-webgpu.sh prepared (Mesa lavapipe): lowbit-gpu's wgpu tests and the
# Dawn tests use it, and fail instead of skipping when it gives no adapter.
if [ -f .cache/webgpu/env ]; then source .cache/webgpu/env; fi
# Mesa's drivers complain on every start without a runtime dir (headless CI has none).
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then export XDG_RUNTIME_DIR="$(mktemp -d)"; fi

echo "== cargo test (native)"
cargo test --workspace

echo "== wasm-pack test --node (wasm32 + simd128, Node $(node --version))"
wasm_pack test --node crates/lowbit-core

echo "== wasm-pack test --node (wasm32 + simd128 + relaxed-simd, Node $(node --version))"
wasm_pack_relaxed test --node crates/lowbit-core

echo "== vitest (Node $(node --version))"
node scripts/check-layers.mjs  # imports follow the layer table of ARCHITECTURE.md
# The API reference (typedoc.json): fails on a public signature naming a type that is not
# exported, or a broken {@link}; `npm run docs:gaps` lists what has no doc comment yet.
npm run --silent docs
npx vitest run

echo "== vitest: the CPU backend on the SIMD128 build"
LOWBIT_WASM_BUILD=simd128 npx vitest run test/wasm-build.test.ts test/cpu-backend.test.ts test/parity.test.ts test/cpu-threads.test.ts test/kernel-cases.test.ts

# The SIMD128 build must keep working on engines without relaxed SIMD (Node 20, Safari).
if [ -n "$LOWBIT_SYSTEM_NODE" ] && [ "$(node_major "$LOWBIT_SYSTEM_NODE")" -lt 21 ]; then
  echo "== SIMD128 build on the system's Node $("$LOWBIT_SYSTEM_NODE" --version)"
  "$LOWBIT_SYSTEM_NODE" test/runtimes/node-simd128-smoke.mjs
fi
