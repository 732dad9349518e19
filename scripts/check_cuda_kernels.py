"""Asserts that every tconv operator with a CPU kernel also has a CUDA kernel registered.

Run it with a CUDA build of torch and a CUDA build of tconv importable from the current directory
(scripts/check_cuda_build.sh does both). No GPU is needed: registration is a property of the
loaded library, visible to the dispatcher without a device.

Ops whose CUDA kernels are not written yet are allowed to miss theirs by pattern (fnmatch, on the
name without the "tconv::" prefix):
    TCONV_CUDA_ALLOW_MISSING="upsample_*,gram*"   only these may miss a CUDA kernel
    TCONV_CUDA_ALLOW_MISSING=""                   strict: every op needs one
    (unset)                                       every op except REQUIRED_BY_DEFAULT may miss one
or --allow-missing PATTERN (repeatable), which takes precedence over the variable.
"""
import argparse
import fnmatch
import os
import sys

# Ops that already have CUDA kernels on this branch: they must keep them.
REQUIRED_BY_DEFAULT = ["conv_transpose2d*", "upsample_*", "gram*", "pad_fold2d*"]


def tconv_ops(torch):
    names = sorted({n for n in torch._C._dispatch_get_all_op_names() if n.startswith("tconv::")})
    return [n.split(".")[0] for n in names]  # no overloads in tconv; drop ".default" if any


def allowed_missing(name, patterns):
    short = name[len("tconv::"):]
    if patterns is None:  # the default rule
        return not any(fnmatch.fnmatch(short, p) for p in REQUIRED_BY_DEFAULT)
    return any(fnmatch.fnmatch(short, p) for p in patterns)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--allow-missing", action="append", metavar="PATTERN",
                        help="op name pattern allowed to lack a CUDA kernel (repeatable)")
    args = parser.parse_args(argv)
    if args.allow_missing is not None:
        patterns = [p for arg in args.allow_missing for p in arg.split(",") if p.strip()]
    elif "TCONV_CUDA_ALLOW_MISSING" in os.environ:
        patterns = [p.strip() for p in os.environ["TCONV_CUDA_ALLOW_MISSING"].split(",") if p.strip()]
    else:
        patterns = None

    import torch
    if torch.version.cuda is None:
        print(f"FAIL: torch {torch.__version__} has no CUDA; run under a CUDA build of torch")
        return 1
    import tconv  # noqa: F401  (loads tconv._C: registers the kernels)
    so = tconv._C.__file__
    print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), tconv._C from {so}")

    ops = tconv_ops(torch)
    if not ops:
        print("FAIL: no tconv:: operators are registered")
        return 1
    has = torch._C._dispatch_has_kernel_for_dispatch_key
    failures, waived, ok = [], [], []
    width = max(len(n) for n in ops)
    print(f"{'operator'.ljust(width)}  CPU  CUDA")
    for name in ops:
        cpu, cuda = has(name, "CPU"), has(name, "CUDA")
        if not cpu:
            status = "(no CPU kernel: not checked)"
        elif cuda:
            status = "ok"
            ok.append(name)
        elif allowed_missing(name, patterns):
            status = "MISSING (allowed: not ported yet)"
            waived.append(name)
        else:
            status = "MISSING"
            failures.append(name)
        print(f"{name.ljust(width)}  {'yes' if cpu else 'no ':3}  {'yes ' if cuda else 'no  '}  {status}")

    rule = (f"default: only {', '.join(REQUIRED_BY_DEFAULT)} required" if patterns is None
            else f"allowed to miss: {patterns or 'none (strict)'}")
    print(f"\n{len(ok)} ops with CUDA kernels, {len(waived)} allowed missing, "
          f"{len(failures)} missing ({rule})")
    if waived:
        print("not ported yet: " + ", ".join(waived))
    if failures:
        print("FAIL: CUDA kernel missing for " + ", ".join(failures))
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
