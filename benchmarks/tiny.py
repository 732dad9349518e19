"""Per-call time of every op on tiny inputs (1x8x8x8), tconv vs PyTorch in the same run, at each
thread count: the fixed cost of a call (Python wrapper, dispatcher, autograd, parallel region),
which dominates small layers and per-sample loops. Target: tconv <= PyTorch + 2 us.

    python -m benchmarks.tiny [--threads 1 2] [--samples 31] [--json FILE]
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

import tconv


def _cases():
    """(name, tconv fn, torch fn, make_inputs(requires_grad))."""
    def image(requires_grad, *shape):
        g = torch.Generator().manual_seed(0)
        return torch.randn(*shape, generator=g).requires_grad_(requires_grad)

    def one_image(requires_grad):
        return (image(requires_grad, 1, 8, 8, 8),)

    def image_and_weight(requires_grad):
        return (image(requires_grad, 1, 8, 8, 8), image(requires_grad, 8, 8, 4, 4), image(requires_grad, 8))

    def conv_inputs(requires_grad):
        return (image(requires_grad, 1, 8, 8, 8), image(requires_grad, 8, 8, 3, 3), image(requires_grad, 8))

    def gram_reference(x):
        f = x.flatten(2)
        return f @ f.mT / (f.shape[1] * f.shape[2])

    yield ("conv_transpose2d 8->8 k4 s2", lambda x, w, b: tconv.conv_transpose2d(x, w, b, 2, 1),
           lambda x, w, b: F.conv_transpose2d(x, w, b, 2, 1), image_and_weight)
    for mode in ("bilinear", "bicubic"):
        yield (f"{mode} x2", lambda x, m=mode: tconv.interpolate(x, scale_factor=2, mode=m),
               lambda x, m=mode: F.interpolate(x, scale_factor=2, mode=m), one_image)
    yield ("bilinear x0.5 antialias",
           lambda x: tconv.interpolate(x, scale_factor=0.5, mode="bilinear", antialias=True),
           lambda x: F.interpolate(x, scale_factor=0.5, mode="bilinear", antialias=True), one_image)
    yield "gram", tconv.gram_matrix, gram_reference, one_image
    yield ("upsample_conv2d nearest x2 8->8 k3",
           lambda x, w, b: tconv.upsample_conv2d(x, w, b, scale_factor=2, padding=1),
           lambda x, w, b: F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), w, b, padding=1),
           conv_inputs)

    # the 1-D / 3-D composites (issue 18): 1x8x64 and 1x8x4x4x4
    def signal_and_weight(requires_grad):
        return (image(requires_grad, 1, 8, 64), image(requires_grad, 8, 8, 4), image(requires_grad, 8))

    def volume_and_weight(requires_grad):
        return (image(requires_grad, 1, 8, 4, 4, 4), image(requires_grad, 8, 8, 2, 2, 2), image(requires_grad, 8))

    yield ("conv_transpose1d 8->8 k4 s2", lambda x, w, b: tconv.conv_transpose1d(x, w, b, 2, 1),
           lambda x, w, b: F.conv_transpose1d(x, w, b, 2, 1), signal_and_weight)
    yield ("conv_transpose3d 8->8 k2 s2", lambda x, w, b: tconv.conv_transpose3d(x, w, b, 2),
           lambda x, w, b: F.conv_transpose3d(x, w, b, 2), volume_and_weight)
    yield ("linear x2", lambda x: tconv.interpolate(x, scale_factor=2, mode="linear"),
           lambda x: F.interpolate(x, scale_factor=2, mode="linear"),
           lambda requires_grad: (image(requires_grad, 1, 8, 64),))
    yield ("trilinear x2", lambda x: tconv.interpolate(x, scale_factor=2, mode="trilinear"),
           lambda x: F.interpolate(x, scale_factor=2, mode="trilinear"),
           lambda requires_grad: (image(requires_grad, 1, 8, 4, 4, 4),))


def _per_call(fn, calls):
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def time_pair(fns, samples, calls=200):
    """Median per-call seconds of each fn; the fns alternate sample by sample."""
    for fn in fns:
        _per_call(fn, calls)  # warm-up
    times = [[] for _ in fns]
    for _ in range(samples):
        for fn, ts in zip(fns, times):
            ts.append(_per_call(fn, calls))
    return [statistics.median(ts) for ts in times]


def run(threads, samples):
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    rows = []
    try:
        for name, ours, theirs, make in _cases():
            inputs = make(False)
            grad_inputs = make(True)
            leaves = [t for t in grad_inputs if t.requires_grad]
            grad_out = torch.randn_like(theirs(*inputs))

            def fwd_bwd(fn):
                return lambda: torch.autograd.grad(fn(*grad_inputs), leaves, grad_out)

            for pass_, pair in (("fwd", (lambda: theirs(*inputs), lambda: ours(*inputs))),
                                ("fwd+bwd", (fwd_bwd(theirs), fwd_bwd(ours)))):
                t_torch, t_tconv = time_pair(pair, samples)
                rows.append(dict(group="tiny", case=name, pass_=pass_, threads=threads,
                                 torch_us=t_torch * 1e6, tconv_us=t_tconv * 1e6,
                                 over_us=(t_tconv - t_torch) * 1e6))
    finally:
        torch.set_num_threads(old)
    return rows


def format_rows(rows):
    lines = ["| case (1x8x8x8) | pass | threads | torch us | tconv us | tconv - torch us |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['pass_']} | {r['threads']} | {r['torch_us']:.1f} | "
                     f"{r['tconv_us']:.1f} | {r['over_us']:+.1f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--samples", type=int, default=31)
    parser.add_argument("--json", default="")
    args = parser.parse_args(argv)
    rows = [r for t in args.threads for r in run(t, args.samples)]
    print(f"torch {torch.__version__}, per call, median of {args.samples} samples of 200 calls")
    print(format_rows(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
