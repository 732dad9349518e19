"""Benchmark cases of the fused resize-convolution, tconv.upsample_conv2d (x2 upsampling then a 3x3
conv, padding 1), against PyTorch's pair F.conv2d(F.interpolate(x, scale_factor=2, mode=mode), w, b,
padding=1), float32 on CPU:

    128->128 at 64x64 -> 128x128, batch 1;  64->64, batch 4 of 64x64;  256->256 at 32x32, batch 1;

contiguous and channels_last, mode 'nearest' (one stride-2 4x4 transposed convolution: 16/36 of the
pair's multiply-adds) and 'bilinear' (channel mixing first, Note [mix first]: 1/4 of them). The
GFLOP/s column counts the pair's multiply-adds, so it is the rate the pair would need to match tconv.

Peak memory (not in the table): ``python -m benchmarks.cases_upsample_conv2d`` measures, per case
and pass, the process's peak resident memory above its resident memory before the call (Linux:
the peak is reset through /proc/self/clear_refs and read as VmHWM), with tconv's output cache off
and glibc's mmap threshold fixed (MALLOC_MMAP_THRESHOLD_, set by re-executing itself), so freed
blocks go back to the OS and the high-water mark counts every byte either side touches: PyTorch's
allocator, tconv's allocations, oneDNN's scratch.
"""
import os
import sys

import torch
import torch.nn.functional as F

import tconv
from .harness import Case

SHAPES = [  # (N, Cin, Cout, H, W) of the input, 3x3 kernel, nearest x2
    (1, 128, 128, 64, 64),
    (4, 64, 64, 64, 64),
    (1, 256, 256, 32, 32),
]


def _make(shape, channels_last):
    n, cin, cout, h, w = shape
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def make_inputs(requires_grad):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n, cin, h, w, generator=g).contiguous(memory_format=fmt)
        weight = torch.randn(cout, cin, 3, 3, generator=g) / (3 * cin ** 0.5)
        bias = torch.randn(cout, generator=g)
        return tuple(t.requires_grad_(requires_grad) for t in (x, weight, bias))

    return make_inputs


def _sides(mode):
    def fused(x, w, b):
        return tconv.upsample_conv2d(x, w, b, scale_factor=2, mode=mode, padding=1)

    def pair(x, w, b):
        return F.conv2d(F.interpolate(x, scale_factor=2, mode=mode), w, b, padding=1)

    return fused, pair


def _name(shape, channels_last, mode):
    n, cin, cout, h, w = shape
    layout = "channels_last" if channels_last else "contiguous"
    return f"{mode} x2 + 3x3 {cin}->{cout} {layout}, {n}x{cin}x{h}x{w}"


def _case(shape, channels_last, mode):
    n, cin, cout, h, w = shape
    fused, pair = _sides(mode)
    return Case("upsample_conv2d", _name(shape, channels_last, mode), _make(shape, channels_last),
                tconv=fused, reference=pair, flops=2.0 * n * cout * cin * 9 * (2 * h) * (2 * w),
                devices=("cpu",))


CASES = [_case(shape, cl, mode) for mode in ("nearest", "bilinear") for shape in SHAPES for cl in (False, True)]


# ---- peak memory ----------------------------------------------------------------------------------------

def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_bytes(fn):
    """Peak resident bytes above the resident bytes before fn() (fn's results freed before return)."""
    import gc
    gc.collect()
    before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    out = fn()
    peak = _status_kib("VmHWM")
    del out
    return (peak - before) * 1024


def _passes(case):
    x, w, b = case.make_inputs(True)
    gout = torch.randn_like(case.reference(x, w, b))

    def fwd(fn):
        def run():
            with torch.no_grad():
                return fn(x, w, b)
        return run

    def fwd_bwd(fn):
        return lambda: torch.autograd.grad(fn(x, w, b), (x, w, b), gout)

    return x, [("fwd", fwd), ("fwd+bwd", fwd_bwd)]


def memory_rows(repeats=3):
    tconv.memory.set_cache_limit(0)
    tconv.memory.empty_cache()
    rows = []
    for case in CASES:
        x, passes = _passes(case)
        n, c, h, w = x.shape
        intermediate = 4 * n * c * 2 * h * 2 * w
        for pass_, wrap in passes:
            sides = {"torch": wrap(case.reference), "tconv": wrap(case.tconv)}
            for fn in sides.values():
                fn()  # warm-up: one-off workspaces and caches
            peaks = {k: min(peak_bytes(fn) for _ in range(repeats)) for k, fn in sides.items()}
            rows.append(dict(case=case.name, pass_=pass_, torch_mib=peaks["torch"] / 2**20,
                             tconv_mib=peaks["tconv"] / 2**20, saved_mib=(peaks["torch"] - peaks["tconv"]) / 2**20,
                             intermediate_mib=intermediate / 2**20))
    return rows


def main():
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") is None:  # glibc reads it at start-up: re-execute
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", TCONV_CPU_CACHE_MB="0")
        os.execve(sys.executable, [sys.executable, "-m", "benchmarks.cases_upsample_conv2d"], env)
    print("peak resident memory above the start of the call (MiB; VmHWM after a reset, min of 3)")
    print("| case | pass | torch MiB | tconv MiB | saved MiB | intermediate MiB |")
    print("|---|---|---|---|---|---|")
    for r in memory_rows():
        print(f"| {r['case']} | {r['pass_']} | {r['torch_mib']:.1f} | {r['tconv_mib']:.1f} | "
              f"{r['saved_mib']:.1f} | {r['intermediate_mib']:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
