#!/usr/bin/env bash
# The GPU check on a machine with an NVIDIA GPU and no Rust toolchain, in one
# call of at most 8 minutes: run from
# the repository root with the release `conr` binary and the GPU test binaries
# in .gl/bin, and in .gl the Debian packages libvulkan1, libglvnd0, libegl1 and
# libgles2 (`apt-get download` them on the build machine). On these machines
# NVIDIA's Vulkan driver failed to initialise (VK_ERROR_INITIALIZATION_FAILED)
# with libvulkan1 alone, and again with libglvnd0 added; with glvnd's EGL and
# GLES libraries as well it worked. Writes every log under $OUT.
#
# Build what it carries (on the build machine, from the repository root):
#   cargo build --release -p conr-cli && cargo test -p conr-tests --test gpu --no-run
#   mkdir -p .gl/bin && cp target/release/conr .gl/bin/ \
#     && cp "$(ls -t target/debug/deps/gpu-* | grep -v '\.d$' | head -1)" .gl/bin/gpu-tests
# and, for the burn training step on both paths (conr-burn's `paths` example,
# with RUN_BURN=1, outside the 8 minutes):
#   cargo build --release -p conr-burn --example paths && cp target/release/examples/paths .gl/bin/burn-paths
# and, for the official PyTorch baseline, a checkout of github.com/BorealisAI/ConR
# in .gl/ConR (or CONR_OFFICIAL=DIR), which bench/torch_conr.py loads;
# and, for the torch op on CUDA tensors (bench/torch_op.py) and the training
# step (bench/train_step.py), the Python package's wheel in .gl/wheels (the
# machine has python3 with PyTorch):
#   maturin build --release -m adapters/python/Cargo.toml -o .gl/wheels
set -u
OUT=${OUT:-/tmp/conr-device}
mkdir -p "$OUT"
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
# Vulkan by default; WGPU_BACKEND=gl uses EGL where the Vulkan driver cannot start.
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json WGPU_BACKEND=${WGPU_BACKEND:-vulkan}
export XDG_RUNTIME_DIR=/tmp/xdg
mkdir -p -m 700 "$XDG_RUNTIME_DIR"
# The test binaries find their fixtures at the path they were built in.
built_in=${CONR_BUILT_IN:-/work/main}
if [ ! -e "$built_in" ]; then mkdir -p "$(dirname "$built_in")" && ln -s "$PWD" "$built_in"; fi
# The batches people train with (AgeDB-DIR: 128×2048; IMDB-WIKI-DIR: up to
# 512 rows), and two large ones. Every step has a timeout; together they stay
# under 8 minutes (one device call; the machine's start is not in it).
SIZES=${SIZES:-128x2048,256x2048,512x2048,1024x512,8192x512,65536x512}
TRAIN_SIZES=${TRAIN_SIZES:-128x2048,256x2048,512x2048,1024x512}
REPS=${REPS:-3}
start=$(date +%s)
step() { echo "== $1 ($(($(date +%s) - start)) s in)"; }

nvidia-smi --query-gpu=name,driver_version,memory.total,pci.bus_id --format=csv > "$OUT/nvidia-smi.csv" 2>&1
.gl/bin/conr info > "$OUT/info.json" 2> "$OUT/info.err"
if [ -z "${SKIP_TESTS:-}" ]; then
    step "GPU tests: f32 (compute, device plan, record, adapters by PCI address, profile), then mixed"
    CONR_REQUIRE_GPU=1 timeout 60 .gl/bin/gpu-tests compute:: device_plan:: record:: adapters:: profile:: --test-threads 1 > "$OUT/gpu-tests.log" 2>&1
    echo "gpu tests exit $?" | tee -a "$OUT/gpu-tests.log"
    CONR_REQUIRE_GPU=1 timeout 30 .gl/bin/gpu-tests mixed:: --test-threads 1 > "$OUT/gpu-mixed-tests.log" 2>&1
    echo "mixed tests exit $?" | tee -a "$OUT/gpu-mixed-tests.log"
fi
# conr's GPU engine alone, each row with its compute time, its record time
# (record_s: caller buffers, the band built on the device) and cuBLAS-free
# GEMM-equivalents from conr's own GEMM; "precision:plan" pairs.
for run in ${RUNS:-f32:auto f32:dense mixed:auto}; do
    precision=${run%%:*} plan=${run##*:}
    step "conr bench --backend gpu --precision $precision --plan $plan"
    timeout 50 .gl/bin/conr bench --backend gpu --precision "$precision" --plan "$plan" --sizes "$SIZES" --reps "$REPS" --warmup 1 --json \
        > "$OUT/bench-gpu-$precision-$plan.jsonl" 2> "$OUT/bench-gpu-$precision-$plan.err"
    echo "bench $precision $plan exit $?"
done
# Where a training batch's call goes: each kernel's device time (timestamp
# queries) and workgroups, and the host's steps, per call.
step "conr bench --backend gpu --profile"
timeout 40 .gl/bin/conr bench --backend gpu --profile --sizes "$TRAIN_SIZES,8192x512" --reps "$REPS" --warmup 2 \
    > "$OUT/profile-gpu-f32-auto.txt" 2> "$OUT/profile-gpu-f32-auto.err"
echo "profile exit $?"
official=${CONR_OFFICIAL:-.gl/ConR}
if [ -z "${SKIP_TORCH:-}" ] && [ -d "$official" ]; then
    # The official code on CUDA, next to cuBLAS's GEMM of each batch.
    step "torch: the official AgeDB ConR (from $official) and cuBLAS GEMM"
    timeout 60 python3 bench/torch_conr.py --official "$official" --device cuda --sizes "$SIZES" --reps "$REPS" > "$OUT/bench-torch.jsonl" 2> "$OUT/bench-torch.err"
    echo "torch exit $?"
fi
if [ -z "${SKIP_TORCH_OP:-}" ] && ls .gl/wheels/conr-*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-deps --no-index --target /tmp/conr-py .gl/wheels/conr-*.whl
    official_arg=()
    [ -d "$official" ] && official_arg=(--official "$official")
    # The op on CUDA tensors with each engine (fast, gpu, auto), the bare
    # round trip, and the official code, by turns.
    step "the torch op on CUDA tensors (bench/torch_op.py)"
    PYTHONPATH=/tmp/conr-py timeout 60 python3 bench/torch_op.py "${official_arg[@]}" --sizes 128x2048 \
        --cuda-sizes "$SIZES" --peak "" --reps "$REPS" > "$OUT/bench-torch-op.jsonl" 2> "$OUT/bench-torch-op.err"
    echo "torch op exit $?"
    # One training step of a ResNet-18 on 64 × 2 views of 112² images: L1
    # alone, with the official loss, with conr's (auto, fast, gpu).
    step "a training step (bench/train_step.py)"
    PYTHONPATH=/tmp/conr-py timeout 60 python3 bench/train_step.py --device cuda "${official_arg[@]}" \
        --engines auto,fast,gpu --reps 10 > "$OUT/train-step.jsonl" 2> "$OUT/train-step.err"
    echo "train step exit $?"
fi
if [ -n "${RUN_BURN:-}" ] && [ -x .gl/bin/burn-paths ]; then
    # One burn training step with ConR, in place on burn's wgpu buffers (band
    # and dense) and through the host; outside the 8 minutes.
    for rows in ${BURN_ROWS:-256 4096}; do
        step "burn step, M = $rows, D = 512"
        timeout 60 .gl/bin/burn-paths --rows "$rows" --dim 512 --reps "$REPS" > "$OUT/burn-paths-$rows.txt" 2>&1
        echo "burn paths $rows exit $?"
    done
fi
step "done"
grep -h "mixed precision\|test result" "$OUT"/gpu-*tests.log
cat "$OUT"/bench-*.jsonl "$OUT"/train-step.jsonl 2>/dev/null
cat "$OUT"/burn-paths-*.txt 2>/dev/null
cat "$OUT"/profile-gpu-*.txt 2>/dev/null
