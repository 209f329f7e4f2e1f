#!/usr/bin/env bash
# Builds the wasm module (Rust -> wasm32 + SIMD128 -> wasm-bindgen glue) and the TypeScript
# package into dist/. Run scripts/setup.sh first on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/toolchain.sh

cargo_wasm build --release -p lowbit-wasm
rm -rf ts/wasm/pkg
wasm-bindgen --target web --out-dir ts/wasm/pkg --out-name lowbit_wasm \
  target/wasm32-unknown-unknown/release/lowbit_wasm.wasm
node scripts/gen-shaders.mjs   # shaders/*.wgsl -> ts/backends/webgpu/shaders.generated.ts
rm -rf dist
npx tsc -p tsconfig.json
mkdir -p dist/wasm
cp -r ts/wasm/pkg dist/wasm/pkg
echo "[build] dist/ ready ($(du -h dist/wasm/pkg/lowbit_wasm_bg.wasm | cut -f1) wasm)"
