#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer run of tconv's CPU kernels.
#
# Copies the repository (tracked and untracked source, no build outputs) to a temporary
# directory, builds the extension there with -fsanitize=address,undefined -O1 -g, and runs a
# representative subset of the tests against that build with libasan preloaded (python itself is
# not instrumented; detect_leaks=0 because the interpreter leaks by design). The shared
# environment and the working tree are not touched.
#
#   scripts/sanitize.sh                 # default subset
#   scripts/sanitize.sh -k gram         # extra pytest arguments
#
# Exit status: pytest's (a sanitizer report aborts the process: non-zero).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/tconv-asan.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

cd "$ROOT"
git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} cp --parents {} "$WORK"
cd "$WORK"

echo "== building with -fsanitize=address,undefined -fno-omit-frame-pointer -O1 -g in $WORK"
# TCONV_SANITIZE=1 makes setup.py compile with these flags instead of -O3. Every capability's build
# of the kernels is instrumented; the one the tests run is the CPU's best (ATEN_CPU_CAPABILITY
# picks another), so on an AVX-512 CPU the AVX-512 paths (vector gathers, streaming stores, Gram
# tiles) are the ones checked.
TCONV_SANITIZE=1 MAX_JOBS="${MAX_JOBS:-2}" python setup.py build_ext --inplace > build.log 2>&1 \
  || { tail -40 build.log; exit 1; }
nm -D tconv/_C*.so | grep __asan_ > /dev/null || { echo "extension is not instrumented"; exit 1; }  # no grep -q: SIGPIPE + pipefail

LIBASAN="$(gcc -print-file-name=libasan.so)"
LIBUBSAN="$(gcc -print-file-name=libubsan.so)"
echo "== running tests with LD_PRELOAD=$LIBASAN"
# The tests must import this instrumented build (cwd first on sys.path), not an installed tconv.
LD_PRELOAD="$LIBASAN $LIBUBSAN" ASAN_OPTIONS=detect_leaks=0 python -c "
import os, sys, tconv
path = os.path.realpath(tconv._C.__file__)
print('== tconv._C loaded from', path)
sys.exit(0 if path.startswith(os.path.realpath('$WORK')) else 1)" || { echo "wrong tconv imported"; exit 1; }
# Subset: every op forward/backward across dtypes and layouts, errors, NaN/Inf, empty tensors,
# threads. Hypothesis-heavy and compile tests are left out (slow under ASan, no new kernel paths).
set +e
LD_PRELOAD="$LIBASAN $LIBUBSAN" \
ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:allocator_may_return_null=1" \
UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
OMP_NUM_THREADS=2 python -m pytest -q -p no:cacheprovider \
  tests/test_conv_transpose2d.py tests/test_upsample.py tests/test_gram.py \
  tests/test_robustness.py tests/test_memory.py \
  -k "not hypothesis and not compile and not opcheck and not memory_growth" "$@" 2>&1 | tee asan.log
status=${PIPESTATUS[0]}
set -e
if grep -q "ERROR: AddressSanitizer\|runtime error:" asan.log; then
  echo "== SANITIZER REPORTS FOUND"; status=1
else
  echo "== no AddressSanitizer / UBSan reports"
fi
exit "$status"
