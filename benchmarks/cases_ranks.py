"""Benchmark cases of the 1-D and 3-D ops (issue 18; CPU, float32): conv_transpose3d and
conv_transpose1d (conv_transpose3d on its own CPU kernels where they serve, cpu/conv_transpose3d.cpp;
else, and conv_transpose1d, the composites over the 2-D kernels, csrc/conv_transpose_nd.cpp), trilinear and
linear interpolation (the volume kernel, cpu/resample_volume.h, for contiguous CPU input; else over the
bilinear kernel, csrc/upsample_nd.cpp), against PyTorch's ops.

Targets (issue 18): conv_transpose3d k2 s2 >= 4x PyTorch, the other 3-D cases >= 1.0x,
conv_transpose1d >= 1.5x, trilinear x2 >= 5x and within 1.5x of the copy floor (the interpolation
rows' "x floor": tconv's time over a copy of the op's bytes in the same run), linear x2 >= 2x."""
import torch
import torch.nn.functional as F

import tconv
from .harness import Case


def _conv_case(rank, n, cin, cout, size, k, s, p, channels_last=False):
    fn, ref = ((tconv.conv_transpose1d, F.conv_transpose1d) if rank == 1 else
               (tconv.conv_transpose3d, F.conv_transpose3d))
    spatial = (size,) * rank

    def make_inputs(requires_grad):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n, cin, *spatial, generator=g)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        w = torch.randn(cin, cout, *(k,) * rank, generator=g) * 0.1
        b = torch.randn(cout, generator=g)
        return tuple(t.requires_grad_(requires_grad) for t in (x, w, b))

    out = (size - 1) * s - 2 * p + k
    pixels, out_pixels = size ** rank, out ** rank
    name = (f"conv_transpose{rank}d {cin}->{cout} k{k} s{s}" + (f" p{p}" if p else "")
            + (" channels_last_3d" if channels_last else "") + f", {n}x{'x'.join(map(str, spatial))}")
    return Case("ranks", name, make_inputs,
                tconv=lambda x, w, b: fn(x, w, b, s, p),
                reference=lambda x, w, b: ref(x, w, b, s, p),
                flops=2.0 * n * cin * cout * k ** rank * pixels,
                bytes_moved=4.0 * (n * cin * pixels + n * cout * out_pixels),
                rtol=2e-4, atol=1e-4, devices=("cpu",))


def _interp_case(mode, shape, backward):
    def make_inputs(requires_grad):
        g = torch.Generator().manual_seed(0)
        return (torch.randn(shape, generator=g).requires_grad_(requires_grad),)

    numel = 1
    for v in shape:
        numel *= v
    out_numel = numel * 2 ** (len(shape) - 2)
    return Case("ranks", f"{mode} x2, {'x'.join(map(str, shape))}", make_inputs,
                tconv=lambda x: tconv.interpolate(x, scale_factor=2, mode=mode),
                reference=lambda x: F.interpolate(x, scale_factor=2, mode=mode),
                bytes_moved=4.0 * (numel + out_numel), backward=backward, backward_alone=backward,
                copy_floor=True, rtol=1e-5, atol=1e-5, devices=("cpu",))


CASES = [
    _conv_case(3, 2, 128, 64, 16, 2, 2, 0),
    _conv_case(3, 2, 64, 32, 16, 4, 2, 1),
    _conv_case(3, 2, 32, 32, 32, 3, 1, 1),
    _conv_case(3, 2, 128, 64, 16, 2, 2, 0, channels_last=True),
    _conv_case(3, 2, 64, 32, 16, 4, 2, 1, channels_last=True),
    _conv_case(3, 2, 32, 32, 32, 3, 1, 1, channels_last=True),
    _conv_case(1, 4, 512, 256, 1000, 16, 8, 4),
    _conv_case(1, 4, 256, 128, 8000, 4, 2, 1),
    _interp_case("trilinear", (2, 32, 32, 64, 64), backward=True),
    _interp_case("linear", (8, 64, 16000), backward=False),
]
