#!/usr/bin/env bash
# Builds the two wasm modules (Rust -> wasm32 -> wasm-bindgen glue) and the TypeScript package
# into dist/. Run scripts/setup.sh first on a fresh machine.
#   ts/wasm/pkg/lowbit_wasm_bg.wasm          SIMD128 (every current engine; Node 20, Safari)
#   ts/wasm/pkg/lowbit_wasm_relaxed_bg.wasm  SIMD128 + relaxed SIMD (Chrome 114+, Firefox 145+,
#                                            Node 21+, Deno); init() picks one (ts/runtime/wasm.ts)
# Both share one JS glue: build.sh checks that wasm-bindgen generates the same for each.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/toolchain.sh

# wasm-pack build = cargo build --release for wasm32 + wasm-bindgen --target web (the CLI of the
# crate's version; --no-pack: no package.json of its own, the package is the repository's).
rm -rf ts/wasm/pkg
wasm_pack build crates/lowbit-wasm --release --target web --no-pack --no-opt \
  --out-dir "$PWD/ts/wasm/pkg" --out-name lowbit_wasm
relaxed_pkg=$(mktemp -d)
trap 'rm -rf "$relaxed_pkg"' EXIT
wasm_pack_relaxed build crates/lowbit-wasm --release --target web --no-pack --no-opt \
  --out-dir "$relaxed_pkg" --out-name lowbit_wasm
for f in lowbit_wasm.js lowbit_wasm.d.ts lowbit_wasm_bg.wasm.d.ts; do
  if ! cmp -s "ts/wasm/pkg/$f" "$relaxed_pkg/$f"; then
    echo "[build] the relaxed-SIMD build's $f differs from the SIMD128 build's: both builds must export the same functions (cfg only inside them)" >&2
    diff "ts/wasm/pkg/$f" "$relaxed_pkg/$f" | head -20 >&2
    exit 1
  fi
done
cp "$relaxed_pkg/lowbit_wasm_bg.wasm" ts/wasm/pkg/lowbit_wasm_relaxed_bg.wasm
# wasm-pack writes a `.gitignore` of `*` into its out dir; copied into dist/ it would make
# `npm pack` leave the glue out of the package (test/package.test.ts caught it).
rm -f ts/wasm/pkg/.gitignore
# wasm-bindgen declares `[Symbol.dispose]()` on every class, which only type-checks with the
# esnext (disposable) lib: an app on target es2022 would fail strict tsc on our types. The JS keeps
# the method; the declarations drop it (lowbit's API is dispose() / free()).
sed -i '/\[Symbol\.dispose\]()/d' ts/wasm/pkg/lowbit_wasm.d.ts
node scripts/gen-shaders.mjs   # shaders/*.wgsl -> ts/backends/webgpu/shaders.generated.ts
rm -rf dist
npx tsc -p tsconfig.json
mkdir -p dist/wasm
cp -r ts/wasm/pkg dist/wasm/pkg
echo "[build] dist/ ready ($(du -h dist/wasm/pkg/lowbit_wasm_bg.wasm | cut -f1) SIMD128 wasm, $(du -h dist/wasm/pkg/lowbit_wasm_relaxed_bg.wasm | cut -f1) relaxed-SIMD wasm)"
