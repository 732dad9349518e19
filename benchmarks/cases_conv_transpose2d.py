"""Benchmark cases of the transposed convolution (CPU, float32), the shapes users run."""
import torch
import torch.nn.functional as F

import tconv
from .harness import Case


def _case(name, n, cin, cout, hw, k, s, p, groups=1, dense=True):
    h, w = hw

    def make_inputs(requires_grad):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n, cin, h, w, generator=g).requires_grad_(requires_grad)
        wt = (torch.randn(cin, cout // groups, k, k, generator=g) * 0.1).requires_grad_(requires_grad)
        b = torch.randn(cout, generator=g).requires_grad_(requires_grad)
        return x, wt, b

    ho, wo = (h - 1) * s - 2 * p + k, (w - 1) * s - 2 * p + k
    flops = 2.0 * n * cin * (cout // groups) * k * k * h * w
    case = Case("conv_transpose2d", name, make_inputs,
                tconv=lambda x, wt, b: tconv.conv_transpose2d(x, wt, b, s, p, groups=groups),
                torch=lambda x, wt, b: F.conv_transpose2d(x, wt, b, s, p, groups=groups),
                flops=flops, bytes=4.0 * n * cin * h * w + 4.0 * n * cout * ho * wo,
                rtol=2e-4, dense=dense)
    return case


CASES = [
    # FCN-32s head of the seed (D2L 13.11): 21 classes, kernel 64, stride 32, 320x480 images
    _case("FCN-32s head 21->21 k64 s32 p16, 8x10x15", 8, 21, 21, (10, 15), 64, 32, 16),
    _case("U-Net up 512->256 k2 s2, 8x32x32", 8, 512, 256, (32, 32), 2, 2, 0),
    _case("DCGAN 256->128 k4 s2 p1, 16x16x16", 16, 256, 128, (16, 16), 4, 2, 1),
    _case("64->64 k3 s1 p1, 8x64x64", 8, 64, 64, (64, 64), 3, 1, 1),
    _case("depthwise 64 k4 s2 p1, 8x64x64", 8, 64, 64, (64, 64), 4, 2, 1, groups=64, dense=False),
]
