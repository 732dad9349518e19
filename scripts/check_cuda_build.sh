#!/usr/bin/env bash
# Proves, on a machine without a GPU, that tconv's CUDA kernels compile, link, import and are
# registered for every tconv operator that has a CPU kernel (see scripts/check_cuda_kernels.py).
#
#   scripts/check_cuda_build.sh
#
# 1. creates (or reuses) a virtual environment with the CUDA build of torch (the registry's plain
#    torch wheel is CUDA 13.0; ~4.7 GB with its nvidia-* packages, downloaded once),
# 2. copies the working tree (tracked and untracked, not ignored files) to a build directory and
#    builds the extension there with FORCE_CUDA=1, so the CPU build in the checkout is untouched,
# 3. imports it under the venv's python and checks the CUDA kernel registrations.
#
# Environment:
#   TCONV_CUDA_VENV       venv path                    (default: $HOME/.cache/tconv-cuda-venv)
#   TCONV_CUDA_BUILD_DIR  build directory              (default: <repo>/build/cuda-check)
#   TCONV_CUDA_TORCH      torch requirement            (default: torch==2.13.0)
#   CUDA_HOME             CUDA toolkit with nvcc       (default: /usr/local/cuda)
#   MAX_JOBS              parallel compile jobs        (default: number of cores)
#   TCONV_CUDA_ALLOW_MISSING  ops allowed to lack a CUDA kernel (see check_cuda_kernels.py)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TCONV_CUDA_VENV:-$HOME/.cache/tconv-cuda-venv}"
BUILD_DIR="${TCONV_CUDA_BUILD_DIR:-$REPO/build/cuda-check}"
TORCH_REQ="${TCONV_CUDA_TORCH:-torch==2.13.0}"
export CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"

fail() { echo "check_cuda_build: FAIL: $*" >&2; exit 1; }
step() { echo; echo "==== $*"; }

[ -x "$CUDA_HOME/bin/nvcc" ] || fail "no nvcc at $CUDA_HOME/bin/nvcc (set CUDA_HOME to the CUDA toolkit)"
export PATH="$CUDA_HOME/bin:$PATH"

# ---- 1. the venv with a CUDA build of torch ------------------------------------------------------
PY="$VENV/bin/python"
venv_ready() {
  [ -x "$PY" ] && "$PY" - <<'PYEOF' 2>/dev/null
import sys, torch, setuptools, ninja  # noqa: F401
sys.exit(0 if torch.version.cuda else 1)
PYEOF
}
step "venv $VENV"
if venv_ready; then
  echo "reusing: $("$PY" -c 'import torch; print(torch.__version__)')"
else
  [ -x "$PY" ] || python3 -m venv "$VENV" || fail "could not create the venv at $VENV"
  echo "installing $TORCH_REQ (CUDA build, several GB: the first run takes a while)"
  # --isolated: ignore pip configuration that points at the CPU-only wheel index.
  if ! "$VENV/bin/pip" --isolated install --progress-bar off "$TORCH_REQ" numpy ninja setuptools; then
    fail "pip could not install $TORCH_REQ into $VENV (network? disk space? see the pip output above)"
  fi
  venv_ready || fail "$TORCH_REQ in $VENV is not a CUDA build of torch (torch.version.cuda is None): remove $VENV and rerun"
fi
"$PY" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)'

# The toolkit's own include folder lacks headers torch's CUDA headers use (cuBLAS, cuSPARSE, ...):
# take them from the wheel's nvidia/cu13 package.
NV_INCLUDE="$("$PY" - <<'PYEOF'
import glob, os, sysconfig
roots = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
found = sorted(p for r in roots for p in glob.glob(os.path.join(r, "nvidia", "cu*", "include")))
print(":".join(found))
PYEOF
)"
[ -n "$NV_INCLUDE" ] || fail "no nvidia/cu*/include folder in $VENV (is torch's nvidia-* package installed?)"
export CPATH="$NV_INCLUDE${CPATH:+:$CPATH}"
echo "CUDA_HOME=$CUDA_HOME  CPATH=$CPATH"

# ---- 2. build a copy of the working tree ----------------------------------------------------------
step "build (FORCE_CUDA=1) in $BUILD_DIR"
SRC="$BUILD_DIR/src"
rm -rf "$SRC" && mkdir -p "$SRC" "$BUILD_DIR/temp"
# tar keeps modification times, so ninja in the build/temp folder recompiles only what changed.
(cd "$REPO" && git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf -) | tar -xf - -C "$SRC"
(cd "$SRC" && FORCE_CUDA=1 "$PY" setup.py build_ext --inplace --build-temp "$BUILD_DIR/temp") \
  || fail "the CUDA build failed (compiler output above)"
ls "$SRC"/tconv/_C*.so >/dev/null 2>&1 || fail "the build produced no tconv/_C*.so"

# ---- 3. import and check the registrations ---------------------------------------------------------
step "import and CUDA kernel registrations"
(cd "$SRC" && PYTHONPATH="$SRC" "$PY" "$REPO/scripts/check_cuda_kernels.py" "$@") || fail "kernel registration check failed"
echo
echo "check_cuda_build: PASS"
