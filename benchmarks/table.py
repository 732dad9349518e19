"""The benchmark table: every tconv kernel against PyTorch in the same run.

    python -m benchmarks.table [--quick] [--json benchmarks/results.json] [--only SUBSTRING] [--device cuda]
"""
import argparse
import json
import os
import platform

import torch

from . import cases_conv_transpose2d, cases_gram, cases_upsample, tiny
from .chart import write_chart
from .harness import format_table, geomean, run_case

CASE_MODULES = [cases_conv_transpose2d, cases_upsample, cases_gram]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "results.json"))
    parser.add_argument("--only", default="", help="run only cases whose op or name contains this")
    parser.add_argument("--quick", action="store_true", help="shorter timing (noisier)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="where both sides run (cuda: float32 without TF32 on both sides)")
    args = parser.parse_args(argv)
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
            rows += run_case(case, min_time=0.15 if args.quick else 0.5, device=args.device)
            print(format_table(rows[-2:]).splitlines()[-1 if case.backward else -1], flush=True)
    print()
    if args.device == "cuda":
        print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, float32 without TF32")
    else:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
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
    if args.device == "cpu" and (not args.only or args.only in "tiny"):
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


if __name__ == "__main__":
    raise SystemExit(main())
