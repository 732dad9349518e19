"""Benchmark cases of the transposed convolution (CPU, float32), the shapes users run."""

import torch
import torch.nn.functional as F
from torch import nn

import tconv
from .harness import Case


def _pytorch_pad_fold(full, p, mode):
    """PyTorch's adjoint of F.pad(full's interior, p, mode) on all four sides: its padding backward
    ops (reflect, replicate), or slices (circular)."""
    n, c, h, w = full.shape
    if mode == "reflect":
        return torch.ops.aten.reflection_pad2d_backward(full, full.new_empty(n, c, h - 2 * p, w - 2 * p), [p] * 4)
    if mode == "replicate":
        return torch.ops.aten.replication_pad2d_backward(full, full.new_empty(n, c, h - 2 * p, w - 2 * p), [p] * 4)
    for dim in (2, 3):
        m = full.size(dim) - 2 * p
        mid, first, last = full.narrow(dim, p, m), full.narrow(dim, 0, p), full.narrow(dim, p + m, p)
        zeros = list(full.shape)
        zeros[dim] = m - p
        full = (mid + torch.cat([last, full.new_zeros(zeros)], dim)
                + torch.cat([full.new_zeros(zeros), first], dim))
    return full


def _padded_reference(x, wt, b, s, p, output_padding, groups, padding_mode):
    """PyTorch's way to the padding_mode result: the adjoint of conv2d(F.pad(y, p, mode), w) is the
    padding-0 transposed convolution, then the adjoint of F.pad, then the bias."""
    full = F.conv_transpose2d(x, wt, None, s, 0, output_padding, groups=groups)
    return _pytorch_pad_fold(full, p, padding_mode) + b.view(-1, 1, 1)


def _case(name, n, cin, cout, hw, k, s, p, groups=1, dense=True, output_padding=0, channels_last=False,
          dtype=torch.float32, devices=None, padding_mode="zeros"):
    h, w = hw

    def make_inputs(requires_grad):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n, cin, h, w, generator=g).to(dtype)
        if channels_last:
            x = x.to(memory_format=torch.channels_last)
        wt = (torch.randn(cin, cout // groups, k, k, generator=g) * 0.1).to(dtype)
        b = torch.randn(cout, generator=g).to(dtype)
        return tuple(t.requires_grad_(requires_grad) for t in (x, wt, b))

    ho, wo = (h - 1) * s - 2 * p + k + output_padding, (w - 1) * s - 2 * p + k + output_padding
    flops = 2.0 * n * cin * (cout // groups) * k * k * h * w
    size = torch.finfo(dtype).bits / 8
    low = dtype != torch.float32
    if padding_mode == "zeros":
        reference = lambda x, wt, b: F.conv_transpose2d(x, wt, b, s, p, output_padding, groups=groups)
    else:
        reference = lambda x, wt, b: _padded_reference(x, wt, b, s, p, output_padding, groups, padding_mode)
    case = Case("conv_transpose2d", name, make_inputs,
                tconv=lambda x, wt, b: tconv.conv_transpose2d(x, wt, b, s, p, output_padding, groups=groups,
                                                              padding_mode=padding_mode),
                reference=reference,
                flops=flops, bytes_moved=size * (n * cin * h * w + n * cout * ho * wo),
                rtol=3e-2 if low else 2e-4, atol=3e-2 if low else 1e-4, dense=dense,
                backward=not low or devices == ("cuda",),
                devices=devices or (("cpu",) if low else ("cpu", "cuda")))
    return case


def _dcgan_generator(nz=100, ngf=64, nc=3):
    """The generator of pytorch/examples dcgan/main.py."""
    return nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
        nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())


class _UNet(nn.Module):
    """A U-Net (Pytorch-UNet's layout: double 3x3 convolutions, 2x2 max-pool down, 2x2 s2
    transposed convolution up, skip concatenation), base width `c`."""

    def __init__(self, c=32, depth=4, cin=3, classes=2):
        super().__init__()

        def double(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(True),
                                 nn.Conv2d(o, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(True))
        widths = [c * 2 ** i for i in range(depth + 1)]
        self.inc = double(cin, widths[0])
        self.down = nn.ModuleList(double(widths[i], widths[i + 1]) for i in range(depth))
        self.up = nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, 2) for i in reversed(range(depth)))
        self.conv = nn.ModuleList(double(2 * widths[i], widths[i]) for i in reversed(range(depth)))
        self.out = nn.Conv2d(widths[0], classes, 1)

    def forward(self, x):
        skips = [self.inc(x)]
        for d in self.down:
            skips.append(d(F.max_pool2d(skips[-1], 2)))
        y = skips.pop()
        for up, conv in zip(self.up, self.conv):
            y = conv(torch.cat([skips.pop(), up(y)], 1))
        return self.out(y)


def _model_case(name, make_model, input_shape, flops):
    """A whole model, PyTorch's layers against the same model converted by ``tconv.convert``:
    inference (fwd) and a training step (fwd+bwd: gradients of the input and of every parameter)."""
    torch.manual_seed(0)
    ref = make_model()
    ours, report = tconv.convert(ref, report=True)  # a deep copy with tconv's layers
    assert report.converted and not report.skipped, report
    names = [n for n, _ in ref.named_parameters()]

    def make_inputs(requires_grad):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(*input_shape, generator=g).requires_grad_(requires_grad)
        params = [p.detach().clone().requires_grad_(requires_grad) for _, p in ref.named_parameters()]
        return (x, *params)

    def runner(model):
        model.train()  # batch statistics: both sides compute the same function of their inputs
        return lambda x, *params: torch.func.functional_call(model, dict(zip(names, params)), (x,))

    # A training step through BatchNorm (batch statistics) and ReLU is ill-conditioned: PyTorch's
    # own float32 gradients of the DCGAN generator differ from its float64 ones by up to 1.3e-2 of
    # a tensor's largest element (the BatchNorm weights), and any other order of the convolutions'
    # sums moves them as much; the layers themselves agree to ~1e-6 (tests/test_conv_transpose2d.py).
    return Case("conv_transpose2d", name, make_inputs, tconv=runner(ours), reference=runner(ref),
                flops=flops, rtol=1e-2, atol=1e-2, devices=("cpu",))


def _dcgan_flops(n):
    layers = [(100, 512, 1), (512, 256, 4), (256, 128, 8), (128, 64, 16), (64, 3, 32)]
    return sum(2.0 * n * ci * co * 16 * hw * hw for ci, co, hw in layers)


CASES = [
    # FCN-32s head of the seed (D2L 13.11): 21 classes, kernel 64, stride 32, 320x480 images
    _case("FCN-32s head 21->21 k64 s32 p16, 8x10x15", 8, 21, 21, (10, 15), 64, 32, 16),
    _case("U-Net up 512->256 k2 s2, 8x32x32", 8, 512, 256, (32, 32), 2, 2, 0),
    _case("DCGAN 256->128 k4 s2 p1, 16x16x16", 16, 256, 128, (16, 16), 4, 2, 1),
    _case("64->64 k3 s1 p1, 8x64x64", 8, 64, 64, (64, 64), 3, 1, 1),
    _case("depthwise 64 k4 s2 p1, 8x64x64", 8, 64, 64, (64, 64), 4, 2, 1, groups=64, dense=False),
    # The DCGAN generator of pytorch/examples (batch 64, nz 100, ngf 64), layer by layer.
    _case("DCGAN G1 100->512 k4 s1 p0, 64x1x1", 64, 100, 512, (1, 1), 4, 1, 0),
    _case("DCGAN G2 512->256 k4 s2 p1, 64x4x4", 64, 512, 256, (4, 4), 4, 2, 1),
    _case("DCGAN G3 256->128 k4 s2 p1, 64x8x8", 64, 256, 128, (8, 8), 4, 2, 1),
    _case("DCGAN G4 128->64 k4 s2 p1, 64x16x16", 64, 128, 64, (16, 16), 4, 2, 1),
    _case("DCGAN G5 64->3 k4 s2 p1, 64x32x32", 64, 64, 3, (32, 32), 4, 2, 1),
    # The U-Net up-path (Pytorch-UNet, batch 2).
    _case("U-Net up 1024->512 k2 s2, 2x16x16", 2, 1024, 512, (16, 16), 2, 2, 0),
    _case("U-Net up 512->256 k2 s2, 2x32x32", 2, 512, 256, (32, 32), 2, 2, 0),
    _case("U-Net up 256->128 k2 s2, 2x64x64", 2, 256, 128, (64, 64), 2, 2, 0),
    _case("U-Net up 128->64 k2 s2, 2x128x128", 2, 128, 64, (128, 128), 2, 2, 0),
    _case("decoder 256->128 k3 s2 p1 op1, 8x32x32", 8, 256, 128, (32, 32), 3, 2, 1, output_padding=1),
    _case("DCGAN 256->128 k4 s2 p1, 16x16x16, channels_last", 16, 256, 128, (16, 16), 4, 2, 1, channels_last=True),
    _case("64->64 k3 s1 p1, 8x64x64, channels_last", 8, 64, 64, (64, 64), 3, 1, 1, channels_last=True),
    # padding_mode (not in PyTorch: its reference is the padding-0 F.conv_transpose2d, then the
    # adjoint of F.pad); the cost over 'zeros' is the rows above with the same shape.
    *(_case(f"DCGAN 256->128 k4 s2 p1, 16x16x16, {m}", 16, 256, 128, (16, 16), 4, 2, 1, padding_mode=m, devices=("cpu",))
      for m in ("reflect", "replicate", "circular")),
    *(_case(f"64->64 k3 s1 p1, 8x64x64, {m}", 8, 64, 64, (64, 64), 3, 1, 1, padding_mode=m, devices=("cpu",))
      for m in ("reflect", "replicate", "circular")),
    # 16-bit forward (PyTorch runs bfloat16 through oneDNN where the CPU has AVX512-BF16 or AMX).
    _case("DCGAN 256->128 k4 s2 p1, 8x16x16, bfloat16", 8, 256, 128, (16, 16), 4, 2, 1, dtype=torch.bfloat16),
    _case("DCGAN G2 512->256 k4 s2 p1, 64x4x4, bfloat16", 64, 512, 256, (4, 4), 4, 2, 1, dtype=torch.bfloat16),
    _case("64->64 k3 s1 p1, 8x64x64, bfloat16", 8, 64, 64, (64, 64), 3, 1, 1, dtype=torch.bfloat16),
    _case("DCGAN 256->128 k4 s2 p1, 8x16x16, float16", 8, 256, 128, (16, 16), 4, 2, 1, dtype=torch.float16),
    _case("64->64 k3 s1 p1, 8x64x64, float16", 8, 64, 64, (64, 64), 3, 1, 1, dtype=torch.float16),
    # 16-bit on CUDA, forward and backward (tensor-core GEMMs against cuDNN), sized for an H200.
    _case("DCGAN 256->128 k4 s2 p1, 64x16x16, bfloat16", 64, 256, 128, (16, 16), 4, 2, 1,
          dtype=torch.bfloat16, devices=("cuda",)),
    _case("U-Net up 512->256 k2 s2, 16x32x32, bfloat16", 16, 512, 256, (32, 32), 2, 2, 0,
          dtype=torch.bfloat16, devices=("cuda",)),
    _case("decoder 256->128 k3 s2 p1 op1, 32x32x32, bfloat16", 32, 256, 128, (32, 32), 3, 2, 1, output_padding=1,
          dtype=torch.bfloat16, devices=("cuda",)),
    _case("DCGAN 256->128 k4 s2 p1, 64x16x16, float16", 64, 256, 128, (16, 16), 4, 2, 1,
          dtype=torch.float16, devices=("cuda",)),
    _case("64->64 k3 s1 p1, 32x64x64, float16", 32, 64, 64, (64, 64), 3, 1, 1,
          dtype=torch.float16, devices=("cuda",)),
    _case("DCGAN 256->128 k4 s2 p1, 64x16x16, float16, channels_last", 64, 256, 128, (16, 16), 4, 2, 1,
          channels_last=True, dtype=torch.float16, devices=("cuda",)),
    # Whole models, nn layers against the same model with tconv's transposed convolutions.
    _model_case("model: DCGAN generator, batch 64", _dcgan_generator, (64, 100, 1, 1), _dcgan_flops(64)),
    _model_case("model: U-Net (base 32, depth 4), 2x3x128x128", _UNet, (2, 3, 128, 128), 0.0),
]
