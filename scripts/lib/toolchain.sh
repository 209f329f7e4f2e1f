# Shared helpers for setup.sh / build.sh / test.sh (sourced, not run).
export PATH="$HOME/.cargo/bin:$PATH"

# Node: the tests and benchmarks run on Node 24 (current LTS). setup.sh installs it from the npm
# registry (package node-<os>-<arch>) into .cache/node when the system's node is older; it then
# comes first on PATH for everything these scripts start (npm, npx, vitest, the wasm test
# runner). LOWBIT_SYSTEM_NODE keeps the system's own node for test.sh's older-engine check.
LOWBIT_NODE_MAJOR=24
node_major() { "${1:-node}" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
node_package() {
  local arch
  case "$(uname -m)" in x86_64) arch=x64 ;; aarch64 | arm64) arch=arm64 ;; *) arch=$(uname -m) ;; esac
  echo "node-$(uname -s | tr '[:upper:]' '[:lower:]')-$arch"
}
LOWBIT_NODE_BIN="$PWD/.cache/node/node_modules/$(node_package)/bin"
if [ -z "${LOWBIT_SYSTEM_NODE+x}" ]; then export LOWBIT_SYSTEM_NODE="$(command -v node || true)"; fi
use_current_node() {
  if [ -x "$LOWBIT_NODE_BIN/node" ] && [ "$(node_major)" -lt "$LOWBIT_NODE_MAJOR" ]; then export PATH="$LOWBIT_NODE_BIN:$PATH"; fi
}
use_current_node

# The wasm-bindgen crate version pinned in Cargo.toml ("=0.2.130" -> 0.2.130).
wasm_bindgen_version() {
  sed -n 's/^wasm-bindgen = "=\([0-9.]*\)".*/\1/p' Cargo.toml
}

wasm_target_installed() {
  if command -v rustup >/dev/null && rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$'; then
    return 0
  fi
  [ -x /usr/bin/rustc ] && [ -d /usr/lib/rustlib/src/rust ] && ls /usr/lib/llvm-*/bin/wasm-ld >/dev/null 2>&1
}

rustup_wasm_target() {
  command -v rustup >/dev/null && rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$'
}

# Runs cargo for the wasm32 target: rustup's target when it is there, otherwise Debian's
# rustc-web with build-std (../shared/TOOLCHAIN.md).
cargo_wasm() {
  if rustup_wasm_target; then
    cargo "$@" --target wasm32-unknown-unknown
  else
    local wasm_ld
    wasm_ld=$(ls /usr/lib/llvm-*/bin/wasm-ld | sort -V | tail -n 1)
    RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc \
      CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER="$wasm_ld" \
      /usr/bin/cargo "$@" --target wasm32-unknown-unknown -Z build-std=std,panic_abort
  fi
}

# wasm-pack, pinned; setup.sh installs it from crates.io. It finds the wasm-bindgen CLI of the
# crate's version on PATH (setup.sh installs that too) and downloads nothing: `--mode no-install`,
# and wasm-opt is run by build.sh itself (`--no-opt`; npm's binaryen).
LOWBIT_WASM_PACK_VERSION=0.15.1
# wasm_pack build|test ARGS...: with rustup's wasm32 target as is; with Debian's rustc-web, the
# same build-std settings as cargo_wasm (wasm-pack's target check only knows sysroots with a
# prebuilt wasm32 std, so `build --mode force` skips it there; `test --mode no-install` has none).
wasm_pack() {
  local cmd=$1
  shift
  if rustup_wasm_target; then
    wasm-pack "$cmd" --mode no-install "$@"
  else
    local wasm_ld mode=no-install
    wasm_ld=$(ls /usr/lib/llvm-*/bin/wasm-ld | sort -V | tail -n 1)
    if [ "$cmd" = build ]; then mode=force; fi
    PATH="/usr/bin:$PATH" RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc \
      CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER="$wasm_ld" \
      wasm-pack "$cmd" --mode "$mode" "$@" -- -Z build-std=std,panic_abort
  fi
}

# The second wasm build: SIMD128 + relaxed SIMD (ts/runtime/wasm.ts picks one of the two at
# init()). Its own target dir keeps both builds cached (different rustflags rebuild everything).
RELAXED_TARGET_DIR="$PWD/target/relaxed"
RELAXED_RUSTFLAGS="-C target-feature=+simd128,+relaxed-simd"
cargo_wasm_relaxed() {
  CARGO_TARGET_DIR="$RELAXED_TARGET_DIR" CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="$RELAXED_RUSTFLAGS" \
    cargo_wasm "$@"
}
wasm_pack_relaxed() {
  CARGO_TARGET_DIR="$RELAXED_TARGET_DIR" CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="$RELAXED_RUSTFLAGS" \
    wasm_pack "$@"
}
