#!/usr/bin/env bash
# Packs what scripts/device/run-gpu-bench.sh needs on a lent GPU machine (no registries there):
# Node 24's binary, the npm `webgpu` package (Dawn) with only its linux-x64 build, and the built
# package (dist/, wasm included), as xz archives under .device-pack/ (git-ignored through
# .git/info/exclude; name it in the device tool's `carry`). Run here, from the repo root, after
# `bash scripts/build.sh` (or the TypeScript-only build); the archives stay well under the
# tool's 64 MiB for the working tree.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/toolchain.sh
out=.device-pack
node_bin="$LOWBIT_NODE_BIN/node"
[ -x "$node_bin" ] || node_bin="$(command -v node)"
[ "$("$node_bin" -p 'process.versions.node.split(".")[0]')" -ge 20 ] || { echo "need Node >= 20 to pack, found $("$node_bin" --version)" >&2; exit 1; }
[ -f dist/index.js ] && [ -d dist/wasm/pkg ] || { echo 'dist/ is not built: run bash scripts/build.sh first' >&2; exit 1; }
[ -f node_modules/webgpu/dist/linux-x64/dawn.node ] || { echo 'node_modules/webgpu has no linux-x64 dawn.node: run scripts/setup-webgpu.sh' >&2; exit 1; }
exclude="$(git rev-parse --git-common-dir)/info/exclude"
grep -qx '/.device-pack/' "$exclude" 2>/dev/null || echo '/.device-pack/' >> "$exclude"
rm -rf "$out" && mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/node/bin" && cp "$node_bin" "$tmp/node/bin/node"
tar -C "$tmp" -cJf "$out/node.tar.xz" node
# the webgpu package without the other platforms' builds
mkdir -p "$tmp/webgpu/dist"
cp node_modules/webgpu/package.json node_modules/webgpu/index.js node_modules/webgpu/LICENSE.md "$tmp/webgpu/"
cp -r node_modules/webgpu/dist/linux-x64 "$tmp/webgpu/dist/"
tar -C "$tmp" -cJf "$out/webgpu.tar.xz" webgpu
tar -cJf "$out/dist.tar.xz" dist
# the package's runtime dependencies dist imports (tokenizers, jinja), small
deps=$(node -e "const p=require('./package.json');console.log(Object.keys(p.dependencies||{}).join(' '))")
if [ -n "$deps" ]; then (cd node_modules && tar -cJf "$OLDPWD/$out/deps.tar.xz" $deps); fi
du -ch "$out"/* | sed 's/^/  /'
