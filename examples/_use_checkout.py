"""Imported first by every example: `python examples/x.py` puts examples/ (not the repository
root) on sys.path, so a tconv built in place (`python setup.py build_ext --inplace`) would be
shadowed by whatever tconv is installed. Prefer the checkout's copy when its kernels are built."""
import glob
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if glob.glob(os.path.join(REPO_ROOT, "tconv", "_C*")) and REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)
