#!/usr/bin/env bash
# On a lent GPU machine (see /work/.library/device/ in this workplace: an NVIDIA H100 / H200 with
# CUDA and PyTorch, no package registries), from the repo root, with .device-pack/ carried
# (scripts/device/pack.sh made it):
#   bash scripts/device/run-gpu-bench.sh [--quick]
# 1. probes the GPU and whether Dawn (npm `webgpu`) finds it through Vulkan, and says why not;
# 2. unpacks Node + webgpu + dist into /tmp/lowbit-device (nothing is installed system-wide);
# 3. runs `bench/run.mjs webgpu` (GEMV bandwidth next to a copy in the same run, decode with the
#    per-token dispatches / submits / readback / host encode time), weights generated there by
#    scripts/make-random-checkpoint.mjs, on the SmolLM2-135M shape and, without --quick,
#    TinyLlama-1.1B;
# 4. with PyTorch + bitsandbytes there (a bitsandbytes wheel carried in .whl/ and installed as
#    the device README says), bnb.matmul_4bit at batch 1 on the same GEMV shape, same run.
# Everything it prints also goes to $OUT/gpu-bench.log (the tool brings $OUT back).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-/tmp/lowbit-device-out}"
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-bench.log") 2>&1
quick=0
[ "${1:-}" = "--quick" ] && quick=1
root=/tmp/lowbit-device
step() { echo; echo "== $*"; }

step "machine"
uname -m; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || echo "nvidia-smi failed"

step "Vulkan (Dawn needs a Vulkan loader and NVIDIA's ICD)"
ldconfig -p | grep -E 'libvulkan\.so' || echo "no libvulkan in ldconfig: carry the loader debs (.gl, device README) and unpack them first"
icd=""
for f in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json; do
  [ -f "$f" ] && icd="$f" && break
done
if [ -n "$icd" ]; then echo "NVIDIA ICD: $icd"; export VK_ICD_FILENAMES="$icd" VK_DRIVER_FILES="$icd"; else echo "no NVIDIA Vulkan ICD json found"; fi

step "unpacking Node, webgpu and dist into $root"
[ -d .device-pack ] || { echo ".device-pack/ is missing: run scripts/device/pack.sh here first and name .device-pack in carry"; exit 2; }
rm -rf "$root" && mkdir -p "$root/node_modules"
tar -C "$root" -xJf .device-pack/node.tar.xz
tar -C "$root/node_modules" -xJf .device-pack/webgpu.tar.xz
[ -f .device-pack/deps.tar.xz ] && tar -C "$root/node_modules" -xJf .device-pack/deps.tar.xz
tar -xJf .device-pack/dist.tar.xz   # dist/ in the repo root, where bench/ imports it
rm -rf node_modules && ln -s "$root/node_modules" node_modules
# .cache travels as a link to this workplace's folder (dangling there): the bench writes its
# random checkpoints under a real one
[ -L .cache ] && rm .cache
mkdir -p .cache/models
export PATH="$root/node/bin:$PATH"
node --version

step "does Dawn find the GPU?"
export XDG_RUNTIME_DIR="$(mktemp -d)"
node --input-type=module -e "
import { create } from 'webgpu';
const gpu = create(['enable-dawn-features=vulkan_enable_f16_on_nvidia']);
const a = await gpu.requestAdapter({ powerPreference: 'high-performance' });
if (!a) { console.log('NO ADAPTER: Dawn found no Vulkan device (see the ICD lines above)'); process.exit(3); }
console.log(JSON.stringify({ vendor: a.info.vendor, architecture: a.info.architecture, description: a.info.description, features: [...a.features].sort(), maxStorageBufferBindingSize: a.limits.maxStorageBufferBindingSize, maxStorageBuffersPerShaderStage: a.limits.maxStorageBuffersPerShaderStage }));
" ; probe=$?
if [ $probe -ne 0 ]; then
  echo "Dawn has no adapter here (exit $probe): the WebGPU figures cannot be taken; crates/lowbit-gpu (wgpu-native) would need a Rust toolchain carried to build there."
  exit $probe
fi

step "bench webgpu: SmolLM2-135M shape (nf4, nf4-dq, int8, f16; greedy and sampled decode)"
node bench/run.mjs webgpu --json --quants nf4,nf4-dq,int8,f16 --decode 32 --trials 3 --sampled | tee "$OUT/webgpu-smollm2.jsonl"
if [ $quick -eq 0 ]; then
  step "bench webgpu: TinyLlama-1.1B shape (nf4, f16)"
  node bench/run.mjs webgpu --json --shape tinyllama --quants nf4,f16 --decode 32 --trials 3 | tee "$OUT/webgpu-tinyllama.jsonl"
fi

step "bitsandbytes CUDA NF4 GEMV (batch 1), the same shape, for the ratio"
python3 - <<'PY' 2>&1 | tee "$OUT/bnb.json"
import json
try:
    import torch, bitsandbytes as bnb
    from bitsandbytes.functional import quantize_4bit
except Exception as e:  # no wheel carried
    print(json.dumps({"skip": f"bitsandbytes unavailable: {e}"})); raise SystemExit
N, K = 5632, 2048
w = torch.randn(N, K, dtype=torch.float16, device="cuda")
x = torch.randn(1, K, dtype=torch.float16, device="cuda")
q, st = quantize_4bit(w, quant_type="nf4")
for _ in range(10): bnb.matmul_4bit(x, q.t(), quant_state=st)
torch.cuda.synchronize()
s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
s.record()
for _ in range(200): bnb.matmul_4bit(x, q.t(), quant_state=st)
e.record(); torch.cuda.synchronize()
t = s.elapsed_time(e) / 200 / 1e3
weight_bytes = N * K // 2 + (N * K // 64) * 4
src = torch.empty(1 << 28, dtype=torch.uint8, device="cuda"); dst = torch.empty_like(src)
for _ in range(3): dst.copy_(src)
torch.cuda.synchronize(); s.record()
for _ in range(20): dst.copy_(src)
e.record(); torch.cuda.synchronize()
copy = 2 * src.numel() / (s.elapsed_time(e) / 20 / 1e3) / 1e9
print(json.dumps({"bnb_matmul_4bit_nf4": f"{N}x{K}", "seconds": t, "effective_GBps": weight_bytes / t / 1e9, "copy_GBps": copy}))
PY
step "done: logs in $OUT"
