#!/usr/bin/env bash
# The GPU check on a machine with an NVIDIA GPU and no Rust toolchain: run from
# the repository root with the release `conr` binary and the GPU test binary in
# .gl/bin, and in .gl the Debian packages libvulkan1, libglvnd0, libegl1 and
# libgles2 (`apt-get download` them on the build machine). On these machines
# NVIDIA's Vulkan driver failed to initialise (VK_ERROR_INITIALIZATION_FAILED)
# with libvulkan1 alone, and again with libglvnd0 added; with glvnd's EGL and
# GLES libraries as well it worked. Writes every log under $OUT.
set -u
OUT=${OUT:-/tmp/conr-device}
mkdir -p "$OUT"
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
# Vulkan by default; WGPU_BACKEND=gl uses EGL where the Vulkan driver cannot start.
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json WGPU_BACKEND=${WGPU_BACKEND:-vulkan}
export XDG_RUNTIME_DIR=/tmp/xdg
mkdir -p -m 700 "$XDG_RUNTIME_DIR"
# The test binary finds its fixtures at the path it was built in.
built_in=${CONR_BUILT_IN:-/work/main}
if [ ! -e "$built_in" ]; then mkdir -p "$(dirname "$built_in")" && ln -s "$PWD" "$built_in"; fi
SIZES=${SIZES:-256x512,1024x512,4096x512,8192x512,16384x512,65536x512}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/nvidia-smi.csv" 2>&1
.gl/bin/conr info > "$OUT/info.json" 2> "$OUT/info.err"
echo "== GPU tests" && CONR_REQUIRE_GPU=1 timeout 150 .gl/bin/gpu-tests --test-threads 1 > "$OUT/gpu-tests.log" 2>&1
echo "gpu tests exit $?" | tee -a "$OUT/gpu-tests.log"
echo "== conr bench --backend gpu"
timeout 200 .gl/bin/conr bench --backend gpu --sizes "$SIZES" --reps 5 --warmup 1 --json > "$OUT/bench-gpu.jsonl" 2> "$OUT/bench-gpu.err"
echo "bench exit $?"
# Peak device memory of the ConR step alone at the largest size, sampled by nvidia-smi.
echo "== torch (official AgeDB ConR) and cuBLAS GEMM"
timeout 200 python3 bench/torch_conr.py --device cuda --sizes "$SIZES" --reps 5 > "$OUT/bench-torch.jsonl" 2> "$OUT/bench-torch.err"
echo "torch exit $?"
tail -n 3 "$OUT/gpu-tests.log"; cat "$OUT/bench-gpu.jsonl" "$OUT/bench-torch.jsonl"
