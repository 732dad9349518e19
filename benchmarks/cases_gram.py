"""Benchmark cases of the Gram matrix: the VGG-19 style layers of a 256x256 image (D2L 13.12 style
transfer). CPU (float32): batch 1 and 4, against torch.bmm(X, X^T) / (C*H*W) and a BLAS SYRK.
CUDA (`--device cuda`): batches that fill an H200, float32 (full precision on both
sides) and float16 / bfloat16, against torch.bmm(X, X^T) (cuBLAS) in the same run."""
import math

import torch

import tconv
from .harness import Case, Peer

try:
    from scipy.linalg.blas import ssyrk
except ImportError:  # the SYRK column is shown only with SciPy
    ssyrk = None

# (C, H*W) of conv1_1, conv2_1, conv3_1, conv4_1 (256x256 input) and conv5_1.
STYLE_LAYERS = [(64, 256 * 256), (128, 128 * 128), (256, 64 * 64), (512, 32 * 32), (512, 16 * 16)]


def _syrk_peer(c, hw):
    scale = 1.0 / (c * hw)

    def prepare(inputs):
        # X^T of each batch item as a Fortran-ordered (HW, C) array (a view: no copy), so
        # trans=1 gives X X^T without SciPy copying the input.
        return [x.reshape(c, hw).numpy().T for x in inputs[0].detach()]

    def run(xts):
        return [ssyrk(scale, xt, trans=1) for xt in xts]  # upper triangle only

    return Peer("SciPy ssyrk", prepare, run)


def _case(n, c, hw):
    side = math.isqrt(hw)

    def make_inputs(requires_grad):
        g = torch.Generator().manual_seed(0)
        return (torch.randn(n, c, side, side, generator=g).requires_grad_(requires_grad),)

    def bmm_gram(x):
        xf = x.flatten(2)
        return torch.bmm(xf, xf.mT) / (c * hw)

    return Case("gram", f"VGG style C={c} HW={side}x{side}, N={n}", make_inputs,
                tconv=lambda x: tconv.gram_matrix(x), reference=bmm_gram,
                # The FLOPs of bmm (2 N C^2 HW), not of the half tconv computes, so the GFLOP/s of
                # both sides compare directly: tconv's figure is "bmm-equivalent" GFLOP/s.
                flops=2.0 * n * c * c * hw,
                peer=_syrk_peer(c, hw) if ssyrk is not None else None,
                rtol=1e-5, devices=("cpu",))


CASES = [_case(n, c, hw) for c, hw in STYLE_LAYERS for n in (1, 4)]


def _cuda_case(n, c, hw, dtype):
    side = math.isqrt(hw)
    half = dtype in (torch.float16, torch.bfloat16)

    def make_inputs(requires_grad):
        g = torch.Generator(device="cuda").manual_seed(0)
        x = torch.randn(n, c, side, side, generator=g, device="cuda")
        # 16-bit: entries ~ 1 / sqrt(HW), so bmm's raw sums (~1) stay inside float16's range.
        x = (x / math.sqrt(hw)).to(dtype) if half else x
        return (x.requires_grad_(requires_grad),)

    if half:  # the raw Gram: tconv against a plain cuBLAS GEMM, nothing else in the timing
        def tconv_gram(x):
            return tconv.gram_matrix(x, normalize=False)

        def bmm_gram(x):
            xf = x.flatten(2)
            return torch.bmm(xf, xf.mT)
    else:
        def tconv_gram(x):
            return tconv.gram_matrix(x)

        def bmm_gram(x):
            xf = x.flatten(2)
            return torch.bmm(xf, xf.mT) / (c * hw)

    name = str(dtype).replace("torch.", "")
    return Case("gram", f"VGG style C={c} HW={side}x{side}, N={n}, {name}", make_inputs,
                tconv=tconv_gram, reference=bmm_gram, flops=2.0 * n * c * c * hw,  # bmm-equivalent
                rtol=1e-2 if half else 1e-5, devices=("cuda",))


CASES += [_cuda_case(n, c, hw, dtype)
              for dtype, n in ((torch.float32, 32), (torch.float16, 64), (torch.bfloat16, 64))
              for c, hw in STYLE_LAYERS]
