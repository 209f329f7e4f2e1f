# Shared helpers for setup.sh / build.sh / test.sh (sourced, not run).
export PATH="$HOME/.cargo/bin:$PATH"

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

# Runs cargo for the wasm32 target: rustup's target when it is there, otherwise Debian's
# rustc-web with build-std (../shared/TOOLCHAIN.md).
cargo_wasm() {
  if command -v rustup >/dev/null && rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$'; then
    cargo "$@" --target wasm32-unknown-unknown
  else
    local wasm_ld
    wasm_ld=$(ls /usr/lib/llvm-*/bin/wasm-ld | sort -V | tail -n 1)
    RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc \
      CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER="$wasm_ld" \
      /usr/bin/cargo "$@" --target wasm32-unknown-unknown -Z build-std=std,panic_abort
  fi
}
