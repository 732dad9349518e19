"""The benchmark table: every tconv kernel against PyTorch in the same run.

    python -m benchmarks.table [--quick] [--json benchmarks/results.json] [--only SUBSTRING] [--device cuda]
"""
import argparse
import ctypes
import json
import os
import platform
import subprocess
import sys
import tempfile

import torch

import tconv

from . import cases_conv_transpose2d, cases_gram, cases_ranks, cases_upsample, cases_upsample_conv2d, tiny
from .chart import write_chart
from .harness import format_table, geomean, run_case

CASE_MODULES = [cases_conv_transpose2d, cases_upsample, cases_gram, cases_ranks, cases_upsample_conv2d]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "results.json"))
    parser.add_argument("--only", default="", help="run only cases whose op or name contains this")
    parser.add_argument("--quick", action="store_true", help="shorter timing (noisier)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="where both sides run (cuda: float32 without TF32 on both sides)")
    parser.add_argument("--no-kernel-vs-kernel", action="store_true",
                        help="CPU: skip the second and third runs (tconv's output cache off; PyTorch on huge "
                             "pages, then both on a warm heap)")
    args = parser.parse_args(argv)
    if os.environ.get(_WARM_HEAP) and not _warm_the_heap():
        print("no glibc mallopt: the warm-heap run is the default allocator's", flush=True)
    kernel_rows, warm_rows = {}, {}
    if args.device == "cpu" and not args.no_kernel_vs_kernel and not os.environ.get(_KERNEL_RUN):
        child_argv = sys.argv[1:] if argv is None else argv
        kernel_rows = _child_rows(child_argv, "kernel vs kernel (tconv cache off, PyTorch on huge pages)",
                                  TCONV_CPU_CACHE_MB="0", THP_MEM_ALLOC_ENABLE="1")
        warm_rows = _child_rows(child_argv, "warm heap (tconv cache off, glibc keeps freed memory)",
                                TCONV_CPU_CACHE_MB="0", **{_WARM_HEAP: "1"})
    if args.device == "cuda":
        # Full float32 on both sides: cuDNN's default TF32 would compare a different precision.
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False

    rows = []
    for module in CASE_MODULES:
        for case in module.CASES:
            if args.device not in case.devices:
                continue
            if args.only and args.only not in case.group and args.only not in case.name:
                continue
            new_rows = run_case(case, min_time=0.15 if args.quick else 0.5, device=args.device)
            for r in new_rows:
                for key, other in (("kernel_speedup", kernel_rows), ("warm_speedup", warm_rows)):
                    row = other.get((r["group"], r["case"], r["pass_"]))
                    if row is not None:
                        r[key] = row["speedup"]
            rows += new_rows
            print(format_table(rows[-1:]).splitlines()[-1], flush=True)
    print()
    if args.device == "cuda":
        print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, float32 without TF32")
    else:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {_cpu_model()}, "
              f"tconv CPU kernels: {tconv.cpu_capability()}, PyTorch: {torch.backends.cpu.get_cpu_capability()}")
        if kernel_rows:
            print("speedup: steady state (tconv's output cache on, PyTorch's default allocator); "
                  "kernel vs kernel: a second run with the cache off (TCONV_CPU_CACHE_MB=0) and "
                  "PyTorch on huge pages (THP_MEM_ALLOC_ENABLE=1), both paying for fresh outputs; "
                  "warm heap: a third run with the cache off and glibc keeping freed memory "
                  "(mallopt), neither paying page faults for outputs or temporaries, as inside a "
                  "model's training loop")
    print(format_table(rows))
    for group in sorted({r["group"] for r in rows}):
        for pass_ in ("fwd", "fwd+bwd", "bwd"):
            sel = [r["speedup"] for r in rows if r["group"] == group and r["pass_"] == pass_]
            if sel:
                print(f"geomean speedup {group} {pass_}: {geomean(sel):.2f}x over {len(sel)} cases")
            dense = [r["speedup"] for r in rows
                     if r["group"] == group and r["pass_"] == pass_ and r.get("dense", True)]
            if sel and len(dense) < len(sel):
                print(f"geomean speedup {group} {pass_}, dense cases: {geomean(dense):.2f}x over {len(dense)} cases")
    tiny_rows = []
    if args.device == "cpu" and (not args.only or args.only in "tiny") and not os.environ.get(_KERNEL_RUN):
        # The tiny-input group: per-call cost (us), tconv vs PyTorch, at 1 thread and at the run's.
        threads = sorted({1, torch.get_num_threads()})
        tiny_rows = [r for t in threads for r in tiny.run(t, samples=11 if args.quick else 31)]
        print()
        print(tiny.format_rows(tiny_rows))
    results = dict(torch=torch.__version__, threads=torch.get_num_threads(), device=args.device,
                   rows=rows, tiny=tiny_rows)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=1)
    print(f"wrote {args.json}")
    chart = write_chart(results, os.path.splitext(args.json)[0] + ".png") if rows else None
    if chart:
        print(f"wrote {chart}")
    return 0 if all(r["ok"] for r in rows) else 1


_KERNEL_RUN = "TCONV_BENCH_KERNEL_RUN"


def _cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


_WARM_HEAP = "TCONV_BENCH_WARM_HEAP"


def _warm_the_heap():
    """glibc's allocator keeping freed memory for reuse: blocks up to 1 GiB (32 MiB where glibc
    takes no more) come from the heap, which is never trimmed. By default a block of 128 KiB or
    more is mapped afresh, page-faulted and unmapped on each call until glibc's dynamic threshold
    has grown past it: a model's training loop reaches that state, a benchmark loop of one op may
    not. PyTorch's conv_transpose2d 2x64->32 k2 s2 at 64x64 ran 5-6 ms here call after call (3,100
    page faults each) and 0.95 ms on a warm heap, as inside the U-Net model (NOTES, session 20).
    False where there is no glibc."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    if not (mallopt(m_mmap_threshold, 1 << 30) or mallopt(m_mmap_threshold, 32 << 20)):
        return False
    return bool(mallopt(m_trim_threshold, (1 << 31) - 1))


def _child_rows(argv, what, **env_overrides):
    """The same table in a child process under `env_overrides` (read at start-up: tconv's output
    cache, PyTorch's huge pages, glibc's thresholds): (group, case, pass) -> row."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "kernel.json")
        child, skip = [], False
        for a in argv:  # the parent's arguments without its --json
            if skip or a.startswith("--json"):
                skip = a == "--json"
                continue
            child.append(a)
        env = dict(os.environ, **env_overrides, **{_KERNEL_RUN: "1"})
        print(f"== {what}", flush=True)
        subprocess.run([sys.executable, "-m", "benchmarks.table", *child, "--json", path], env=env,
                       check=False, stdout=subprocess.DEVNULL)
        if not os.path.exists(path):
            return {}
        with open(path) as f:
            return {(r["group"], r["case"], r["pass_"]): r for r in json.load(f)["rows"]}


if __name__ == "__main__":
    raise SystemExit(main())
