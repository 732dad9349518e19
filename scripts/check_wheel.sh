#!/usr/bin/env bash
# Builds a wheel of tconv (pip wheel --no-build-isolation: against the torch installed here),
# installs it into a fresh virtual environment with torch==2.13.0 and runs a smoke subset of the
# tests from the installed wheel (not from the checkout).
#
#   scripts/check_wheel.sh
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
fail() { echo "check_wheel: FAIL: $*" >&2; exit 1; }

echo "== building the wheel"
# A copy of the tree (tracked and untracked, not ignored files), so the checkout's build is untouched.
mkdir -p "$WORK/src"
(cd "$REPO" && git ls-files --cached --others --exclude-standard -z | xargs -0 cp --parents -t "$WORK/src")
(cd "$WORK/src" && MAX_JOBS="${MAX_JOBS:-$(nproc)}" pip wheel --no-build-isolation --no-deps . -w "$WORK/dist" > "$WORK/wheel.log" 2>&1) \
  || { tail -30 "$WORK/wheel.log"; fail "pip wheel failed"; }
WHEEL="$(ls "$WORK"/dist/tconv-*.whl)"
echo "   $(basename "$WHEEL")"

echo "== installing it into a fresh venv with torch==2.13.0"
python -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install -q torch==2.13.0 numpy pytest hypothesis "$WHEEL" > "$WORK/install.log" 2>&1 \
  || { tail -30 "$WORK/install.log"; fail "the wheel does not install"; }

echo "== smoke tests from the installed wheel"
cp -r "$REPO/tests" "$WORK/tests"  # tests/_support.py and conftest.py come with them
mkdir -p "$WORK/docs" && cp "$REPO/docs/errors.md" "$WORK/docs/"  # the table test_robustness.py checks
cd "$WORK"
"$WORK/venv/bin/python" - <<'PYEOF' || fail "tconv is not imported from the wheel"
import os, tconv
assert "site-packages" in tconv.__file__, tconv.__file__
print("   tconv from", os.path.dirname(tconv.__file__), "| CPU kernels:", tconv.cpu_capability())
PYEOF
# Two op files and every autograd mode; every op's errors, NaN/Inf, empty tensors and determinism;
# torch.compile and deepcopy of the conv and Gram modules.
"$WORK/venv/bin/python" -m pytest -q -p no:cacheprovider "$WORK/tests/test_autograd_modes.py" \
  "$WORK/tests/test_conv_transpose2d.py" "$WORK/tests/test_gram.py" "$WORK/tests/test_robustness.py" \
  "$WORK/tests/test_ecosystem.py::test_compile_fullgraph_conv_transpose2d_modules" \
  "$WORK/tests/test_ecosystem.py::test_compile_fullgraph_gram_and_style_loss" \
  "$WORK/tests/test_ecosystem.py::test_deepcopy_conv_transpose2d_layer" -k "not hypothesis" \
  || fail "smoke tests failed"
echo "check_wheel: PASS"
