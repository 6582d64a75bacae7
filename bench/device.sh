#!/usr/bin/env bash
# The GPU check on a machine with an NVIDIA GPU and no Rust toolchain: run from
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
# and, for the burn training step on both paths (conr-burn's `paths` example):
#   cargo build --release -p conr-burn --example paths && cp target/release/examples/paths .gl/bin/burn-paths
# and, for the official PyTorch baseline, a checkout of github.com/BorealisAI/ConR
# in .gl/ConR (or CONR_OFFICIAL=DIR), which bench/torch_conr.py loads;
# and, for the torch op on CUDA tensors (bench/torch_op.py), the Python
# package's wheel in .gl/wheels (the machine has python3 with PyTorch):
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
SIZES=${SIZES:-256x512,1024x512,4096x512,8192x512,16384x512,32768x512,65536x512}
REPS=${REPS:-3}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/nvidia-smi.csv" 2>&1
.gl/bin/conr info > "$OUT/info.json" 2> "$OUT/info.err"
echo "== mixed-precision GPU tests"
CONR_REQUIRE_GPU=1 timeout 120 .gl/bin/gpu-tests mixed:: --test-threads 1 --nocapture > "$OUT/gpu-mixed-tests.log" 2>&1
echo "mixed tests exit $?" | tee -a "$OUT/gpu-mixed-tests.log"
if [ -z "${SKIP_F32_TESTS:-}" ]; then
    echo "== f32 GPU tests"
    CONR_REQUIRE_GPU=1 timeout 120 .gl/bin/gpu-tests compute:: device_plan:: --test-threads 1 > "$OUT/gpu-tests.log" 2>&1
    echo "gpu tests exit $?" | tee -a "$OUT/gpu-tests.log"
    echo "== record-path GPU tests (the band built on the device)"
    CONR_REQUIRE_GPU=1 timeout 120 .gl/bin/gpu-tests record:: --test-threads 1 > "$OUT/gpu-record-tests.log" 2>&1
    echo "gpu record tests exit $?" | tee -a "$OUT/gpu-record-tests.log"
fi
# "precision plan" pairs. Each row also times the record path (record_s), with
# the plan it took (record_plan: the band built on the device) and its tiles.
for run in ${RUNS:-mixed:band mixed:dense f32:band f32:dense}; do
    precision=${run%%:*} plan=${run##*:}
    echo "== conr bench --backend gpu --precision $precision --plan $plan"
    timeout 200 .gl/bin/conr bench --backend gpu --precision "$precision" --plan "$plan" --sizes "$SIZES" --reps "$REPS" --warmup 1 --json \
        > "$OUT/bench-gpu-$precision-$plan.jsonl" 2> "$OUT/bench-gpu-$precision-$plan.err"
    echo "bench $precision $plan exit $?"
done
# The batches people train with (AgeDB-DIR: 128×2048; IMDB-WIKI-DIR: up to
# 512 rows): at these sizes a call is fixed cost, not arithmetic, so each
# engine and the official code run them once more, next to cuBLAS's GEMM.
TRAIN_SIZES=${TRAIN_SIZES:-128x2048,256x2048,512x2048,1024x512}
echo "== conr bench --backend gpu on the training batch sizes"
timeout 120 .gl/bin/conr bench --backend gpu --sizes "$TRAIN_SIZES" --reps "$REPS" --warmup 2 --json \
    > "$OUT/bench-gpu-train.jsonl" 2> "$OUT/bench-gpu-train.err"
echo "bench train exit $?"
# Where that fixed cost goes: each kernel's device time (timestamp queries)
# and workgroups, and the host's steps, per call, in f32 and mixed, both plans.
echo "== conr bench --backend gpu --profile on the training batch sizes"
for run in ${PROFILE_RUNS:-f32:auto f32:dense mixed:auto}; do
    precision=${run%%:*} plan=${run##*:}
    timeout 120 .gl/bin/conr bench --backend gpu --profile --precision "$precision" --plan "$plan" \
        --sizes "$TRAIN_SIZES,8192x512" --reps "$REPS" --warmup 2 \
        > "$OUT/profile-gpu-$precision-$plan.txt" 2> "$OUT/profile-gpu-$precision-$plan.err"
    echo "profile $precision $plan exit $?"
done
echo "== profile tests"
CONR_REQUIRE_GPU=1 timeout 60 .gl/bin/gpu-tests profile:: --test-threads 1 > "$OUT/gpu-profile-tests.log" 2>&1
echo "gpu profile tests exit $?" | tee -a "$OUT/gpu-profile-tests.log"
if [ -z "${SKIP_BURN:-}" ] && [ -x .gl/bin/burn-paths ]; then
    # One burn training step with ConR, in place on burn's wgpu buffers (band and
    # dense) and through the host.
    for rows in ${BURN_ROWS:-256 4096 16384}; do
        echo "== burn step, M = $rows, D = 512"
        timeout 150 .gl/bin/burn-paths --rows "$rows" --dim 512 --reps "$REPS" > "$OUT/burn-paths-$rows.txt" 2>&1
        echo "burn paths $rows exit $?"
    done
fi
official=${CONR_OFFICIAL:-.gl/ConR}
if [ -z "${SKIP_TORCH:-}" ] && [ -d "$official" ]; then
    echo "== torch (official AgeDB ConR, from $official) and cuBLAS GEMM"
    timeout 150 python3 bench/torch_conr.py --official "$official" --device cuda --sizes "$SIZES" --reps "$REPS" > "$OUT/bench-torch.jsonl" 2> "$OUT/bench-torch.err"
    echo "torch exit $?"
    timeout 100 python3 bench/torch_conr.py --official "$official" --device cuda --sizes "$TRAIN_SIZES" --reps "$REPS" > "$OUT/bench-torch-train.jsonl" 2> "$OUT/bench-torch-train.err"
    echo "torch train exit $?"
fi
if [ -z "${SKIP_TORCH_OP:-}" ] && ls .gl/wheels/conr-*.whl >/dev/null 2>&1; then
    echo "== the torch op on CUDA tensors (bench/torch_op.py)"
    python3 -m pip install -q --no-deps --no-index --target /tmp/conr-py .gl/wheels/conr-*.whl
    official_arg=()
    [ -d "$official" ] && official_arg=(--official "$official")
    PYTHONPATH=/tmp/conr-py timeout 200 python3 bench/torch_op.py "${official_arg[@]}" --sizes 128x2048,1024x512 \
        --peak "" --reps "$REPS" > "$OUT/bench-torch-op.jsonl" 2> "$OUT/bench-torch-op.err"
    echo "torch op exit $?"
fi
grep -h "mixed precision\|test result" "$OUT"/gpu-*tests.log
cat "$OUT"/bench-*.jsonl
cat "$OUT"/burn-paths-*.txt 2>/dev/null
cat "$OUT"/profile-gpu-*.txt 2>/dev/null
