#!/usr/bin/env bash
# WebGPU for the tests on a machine without a GPU (recipe: ../shared/WEBGPU-ON-CPU.md):
#   1. libvulkan1 + mesa-vulkan-drivers from the system's apt (lavapipe; Deno's wgpu runs on it,
#      and it pulls the LLVM runtime the newer lavapipe below needs too);
#   2. Mesa 25's mesa-vulkan-drivers from bookworm-backports, DOWNLOADED (not installed) into
#      .cache/webgpu/ with a private apt state, and an ICD json pointing at its lavapipe —
#      Dawn (npm `webgpu`) finds no adapter on Debian 12's Mesa 22 lavapipe;
#   3. the npm package `webgpu` (Dawn for Node; a devDependency here, an optional peer dependency
#      for users), if it is missing.
# On success it writes .cache/webgpu/env (VK_ICD_FILENAMES=... and LOWBIT_WEBGPU_EXPECT=1);
# scripts/test.sh sources it, which makes the WebGPU tests fail instead of skip when no adapter
# comes. Idempotent and quiet: every step is skipped when its result is there. Any step that
# cannot be done (no apt, not root, no network) leaves the env file out and exits 0: the WebGPU
# tests then skip with a message, and everything else works.
set -uo pipefail
cd "$(dirname "$0")/.."

mkdir -p .cache/webgpu
DIR=$(cd .cache/webgpu && pwd -P)
ICD="$DIR/lvp_icd.json"
ENV_FILE="$DIR/env"
WEBGPU_VERSION=0.6.2
log() { printf '\033[1m[setup-webgpu]\033[0m %s\n' "$*"; }
give_up() { log "$* — WebGPU tests will skip"; rm -f "$ENV_FILE"; exit 0; }

[ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] || give_up "only set up on Linux x86_64"

as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then as_root=(sudo -n); else as_root=(false); fi
fi

# 1. system lavapipe + loader
if ! dpkg -s libvulkan1 mesa-vulkan-drivers >/dev/null 2>&1; then
  command -v apt-get >/dev/null || give_up "no apt-get to install libvulkan1 mesa-vulkan-drivers"
  log "apt-get install libvulkan1 mesa-vulkan-drivers"
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libvulkan1 mesa-vulkan-drivers >"$DIR/apt-install.log" 2>&1 \
    || give_up "apt-get install libvulkan1 mesa-vulkan-drivers failed"
fi

# 2. Mesa 25 lavapipe from bookworm-backports, extracted under .cache/webgpu/mesa
lvp=$(ls "$DIR"/mesa/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so 2>/dev/null | head -n 1)
if [ -z "$lvp" ]; then
  src=/etc/apt/sources.list.d/debian.sources
  [ -f "$src" ] || give_up "no $src to take the Debian mirror from"
  # The first Debian (non-security) mirror and its keyring, with suite bookworm-backports.
  uri=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' "$src")
  key=$(awk '/^Signed-By:/ {print $2; exit}' "$src")
  [ -n "$uri" ] || give_up "no mirror URI in $src"
  apt_dir="$DIR/apt"
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/parts" "$apt_dir/debs"
  printf 'deb [signed-by=%s] %s bookworm-backports main\n' "${key:-/usr/share/keyrings/debian-archive-keyring.gpg}" "$uri" >"$apt_dir/sources.list"
  opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=$apt_dir/parts"
        -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o "Debug::NoLocking=1")
  log "downloading mesa-vulkan-drivers from bookworm-backports"
  apt-get "${opts[@]}" -qq update >/dev/null 2>&1 || give_up "apt-get update of bookworm-backports failed"
  (cd "$apt_dir/debs" && apt-get "${opts[@]}" -qq download mesa-vulkan-drivers/bookworm-backports >/dev/null 2>&1) \
    || give_up "apt-get download mesa-vulkan-drivers (bookworm-backports) failed"
  deb=$(ls "$apt_dir"/debs/mesa-vulkan-drivers_*.deb | head -n 1)
  rm -rf "$DIR/mesa" && mkdir -p "$DIR/mesa" && dpkg-deb -x "$deb" "$DIR/mesa" || give_up "dpkg-deb -x $deb failed"
  lvp=$(ls "$DIR"/mesa/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so 2>/dev/null | head -n 1)
  [ -n "$lvp" ] || give_up "$deb has no libvulkan_lvp.so"
fi
# The package's own ICD json with library_path made absolute.
sed "s|\"library_path\": *\"[^\"]*\"|\"library_path\": \"$lvp\"|" "$DIR"/mesa/usr/share/vulkan/icd.d/lvp_icd.json >"$ICD.tmp" 2>/dev/null || give_up "no lvp_icd json in the backports package"
mv "$ICD.tmp" "$ICD"

# 3. npm `webgpu` (a devDependency: setup.sh's `npm install` normally brings it)
if [ ! -f node_modules/webgpu/package.json ]; then
  log "npm install --no-save webgpu@$WEBGPU_VERSION"
  npm install --no-save --no-audit --no-fund "webgpu@$WEBGPU_VERSION" >/dev/null 2>&1 || give_up "npm install webgpu@$WEBGPU_VERSION failed"
fi

mkdir -p "$DIR/xdg-runtime" && chmod 700 "$DIR/xdg-runtime"
cat >"$ENV_FILE" <<EOF
# written by scripts/setup-webgpu.sh; sourced by scripts/test.sh
export VK_ICD_FILENAMES=$ICD
export LOWBIT_WEBGPU_EXPECT=1
EOF
log "ready: VK_ICD_FILENAMES=$ICD ($(basename "$(ls "$DIR"/apt/debs/*.deb 2>/dev/null | head -n 1)"))"
