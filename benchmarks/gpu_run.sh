#!/usr/bin/env bash
# Everything a GPU session checks, in one call: on a machine with an NVIDIA GPU, a CUDA build of
# torch (2.11+ with CUDA 13), nvcc, and no network:
#
#   OUT=/some/dir benchmarks/gpu_run.sh
#
# 1. builds tconv with its CUDA kernels (pip install -e, no deps, no build isolation; falls back
#    to setup.py build_ext --inplace), for TORCH_CUDA_ARCH_LIST=9.0 (an H200; GPU_RUN_ARCH to change it),
# 2. checks that every conv_transpose2d, upsample and gram op has a CUDA kernel registered,
# 3. runs the CUDA tests only (tests/test_conv_transpose2d_cuda.py, tests/test_upsample_cuda.py,
#    tests/test_gram_cuda.py, the > 2^31-element cases included; tests/test_robustness_cuda.py:
#    errors, NaN/Inf, empty tensors, determinism and mixed devices on CUDA); the CPU suite runs on
#    CPU machines, not in the GPU machine's time,
# 4. runs the CUDA benchmark table with --quick (tconv vs PyTorch/cuDNN/cuBLAS, float32 without
#    TF32; the conv also in float16/bfloat16; upsampling also in float16, beside a device-to-device
#    copy of the same bytes; the Gram also in float16 / bfloat16 against torch.bmm).
# The whole run is sized for one ~8-minute call: GPU_RUN_DEADLINE_S (default 480) seconds from the
# start, the benchmark gets what is left (at least 60 s) and is stopped there, so the logs of the
# earlier steps always come back.
# Logs and results go to $OUT (default build/gpu-run); the exit status is non-zero if any step
# failed, and summary.txt lists each step's status.
set -uo pipefail

START_S=$SECONDS
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
OUT="${OUT:-$REPO/build/gpu-run}"
mkdir -p "$OUT"
PY="${PYTHON:-python}"
# Only sm_90 (an H200), whatever the machine exports: each extra arch multiplies the build time.
export TORCH_CUDA_ARCH_LIST="${GPU_RUN_ARCH:-9.0}"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
export CUBLAS_WORKSPACE_CONFIG="${CUBLAS_WORKSPACE_CONFIG:-:4096:8}"  # deterministic cuBLAS
if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then export CUDA_HOME=/usr/local/cuda; fi

status=0
: > "$OUT/summary.txt"
record() {  # record NAME RC
  echo "$1: $([ "$2" -eq 0 ] && echo ok || echo "FAILED (exit $2)")" | tee -a "$OUT/summary.txt"
  [ "$2" -eq 0 ] || status=1
}

{
  nvidia-smi || true
  "$PY" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, "available", torch.cuda.is_available()); print(torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU")'
  echo "CUDA_HOME=${CUDA_HOME:-} TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST"
} > "$OUT/environment.txt" 2>&1
cat "$OUT/environment.txt"

# GPU_RUN_STEPS picks steps, so a session whose commands are time-limited can split the run
# (the build stays in the tree between calls): "build tests bench" (default), or any subset.
STEPS=" ${GPU_RUN_STEPS:-build tests bench} "
want() { [[ "$STEPS" == *" $1 "* ]]; }

if want build; then
echo "==== build"
FORCE_CUDA=1 "$PY" -m pip install --no-build-isolation --no-deps -e . > "$OUT/build.log" 2>&1
rc=$?
if [ $rc -ne 0 ]; then
  echo "pip install -e failed (exit $rc); falling back to setup.py build_ext --inplace" | tee -a "$OUT/build.log"
  FORCE_CUDA=1 "$PY" setup.py build_ext --inplace >> "$OUT/build.log" 2>&1
  rc=$?
fi
tail -3 "$OUT/build.log"
record build $rc
if [ $rc -ne 0 ]; then
  echo "the build failed: see $OUT/build.log"
  exit 1
fi
fi

echo "==== CUDA kernel registrations"
"$PY" scripts/check_cuda_kernels.py 2>&1 | tee "$OUT/registrations.txt"
record registrations "${PIPESTATUS[0]}"

if want tests; then
  # Only the CUDA files: the CPU tests do not need this machine.
  echo "==== CUDA tests"
  "$PY" -m pytest -q -rs -p no:cacheprovider tests/test_conv_transpose2d_cuda.py tests/test_upsample_cuda.py \
    tests/test_gram_cuda.py tests/test_robustness_cuda.py --junitxml="$OUT/tests_cuda.xml" 2>&1 | tee "$OUT/tests_cuda.log"
  record tests_cuda "${PIPESTATUS[0]}"
fi

if want bench; then
  left=$(( ${GPU_RUN_DEADLINE_S:-480} - (SECONDS - START_S) ))
  [ "$left" -ge 60 ] || left=60
  echo "==== CUDA benchmark (--quick, stopped after ${left} s)"
  timeout --signal=INT --kill-after=15 "$left" \
    "$PY" -m benchmarks.table --device cuda --quick --json "$OUT/results_cuda.json" 2>&1 | tee "$OUT/bench_cuda.txt"
  record bench_cuda "${PIPESTATUS[0]}"
fi

echo
cat "$OUT/summary.txt"
exit $status
