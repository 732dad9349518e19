#!/usr/bin/env bash
# Proves that tconv's CPU and shared sources compile for aarch64 (ARM: only the DEFAULT build of
# the kernels, csrc/cpu/capability/*_default.cpp; the x86 builds compile to nothing there), by
# cross-compiling every C++ source of the CPU extension against this torch's headers with Debian's
# g++-aarch64-linux-gnu. Compile only, no link (no aarch64 torch here), like check_cuda_build.sh.
#
#   scripts/check_aarch64_build.sh        (installs g++-aarch64-linux-gnu with apt-get when missing)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CXX="${TCONV_AARCH64_CXX:-aarch64-linux-gnu-g++}"
fail() { echo "check_aarch64_build: FAIL: $*" >&2; exit 1; }

if ! command -v "$CXX" > /dev/null; then
  echo "== installing g++-aarch64-linux-gnu"
  { apt-get update -qq && apt-get install -y -qq g++-aarch64-linux-gnu; } > /dev/null \
    || fail "could not install g++-aarch64-linux-gnu (set TCONV_AARCH64_CXX to a cross compiler)"
fi

TORCH_INCLUDE="$(python -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "include"))')"
PY_INCLUDE="$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

cd "$REPO"
sources=(csrc/*.cpp csrc/cpu/dispatch.cpp csrc/cpu/capability/*.cpp)
echo "== cross-compiling ${#sources[@]} sources with $("$CXX" --version | head -1)"
for src in "${sources[@]}"; do
  "$CXX" -std=c++17 -O1 -fopenmp -fPIC -c "$src" -o "$OUT/$(basename "$src").o" \
    -I csrc -I "$TORCH_INCLUDE" -I "$TORCH_INCLUDE/torch/csrc/api/include" -I "$PY_INCLUDE" \
    -DTORCH_API_INCLUDE_EXTENSION_H -DTORCH_EXTENSION_NAME=_C > "$OUT/log" 2>&1 \
    || { grep -A5 "error" "$OUT/log" | head -40; fail "$src does not compile for aarch64"; }
done
file "$OUT/dispatch.cpp.o" | grep -q "ARM aarch64" || fail "the objects are not aarch64 code"
echo "check_aarch64_build: PASS (${#sources[@]} sources)"
