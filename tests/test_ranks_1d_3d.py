"""The 1-D and 3-D ops on the CPU (issue 18): tconv.conv_transpose1d / conv_transpose3d,
tconv.ConvTranspose1d / ConvTranspose3d, tconv.interpolate with mode='linear' / 'trilinear' and
tconv.Upsample with them, all composites over the 2-D kernels (Note [1-D and 3-D ops as
composites], docs/ARCHITECTURE.md). This file owns their numerics against PyTorch (grids, layouts,
half precision, unbatched and empty batches), gradcheck in every mode, torch.func, opcheck,
torch.compile, NaN/Inf placement, determinism across thread counts and the modules as drop-ins.
Their error cases are rows of docs/errors.md (test_robustness.py), their autograd modes cases of
test_autograd_modes.py."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from torch import nn
from torch.func import jacfwd, vmap

import tconv
from _support import (CONV_TOL, HALF_TYPES, UPSAMPLE_TOL, at_thread_counts, check_same_outputs_and_grads,
                      full_gradcheck, poison, poison_one, same_specials, specials_equal)

ops = torch.ops.tconv
CL3 = torch.channels_last_3d


def _grads_match(ours_fn, ref_fn, tensors, rtol, atol):
    """Forward and the gradient of every tensor argument of ours_fn equal ref_fn's."""
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    ref_leaves = [t.detach().clone().requires_grad_() for t in tensors]
    ours, ref = ours_fn(*leaves), ref_fn(*ref_leaves)
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    torch.testing.assert_close(ours, ref, rtol=rtol, atol=atol)
    if ref.numel() == 0:
        return ours, ref
    go = torch.randn_like(ref)
    for a, e in zip(torch.autograd.grad(ours, leaves, go), torch.autograd.grad(ref, ref_leaves, go)):
        assert a.shape == e.shape
        torch.testing.assert_close(a, e, rtol=rtol * 10, atol=atol * 10)
    return ours, ref


# ---- conv_transpose1d ------------------------------------------------------------------------------

CONV1D_GRID = [
    # n, cin, cout, L, k, stride, padding, output_padding, groups, dilation
    (2, 3, 4, 7, 3, 1, 0, 0, 1, 1),
    (2, 3, 4, 7, 3, 1, 1, 0, 1, 1),
    (2, 4, 6, 5, 4, 2, 1, 1, 2, 1),
    (1, 4, 4, 9, 3, 3, 1, 2, 1, 2),
    (2, 6, 6, 6, 4, 2, 1, 0, 6, 1),      # depthwise
    (2, 4, 2, 11, 16, 8, 4, 0, 1, 1),    # the k16 s8 p4 vocoder shape
    (3, 2, 5, 1, 1, 1, 0, 0, 1, 1),      # one sample, k1
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cfg", CONV1D_GRID, ids=lambda c: "x".join(map(str, c[:5])))
def test_conv_transpose1d_matches_pytorch(cfg, dtype):
    n, cin, cout, length, k, s, p, op, g, d = cfg
    kw = dict(stride=s, padding=p, output_padding=op, groups=g, dilation=d)
    x, w, b = (torch.randn(n, cin, length, dtype=dtype), torch.randn(cin, cout // g, k, dtype=dtype),
               torch.randn(cout, dtype=dtype))
    ours, ref = _grads_match(lambda x, w, b: tconv.conv_transpose1d(x, w, b, **kw),
                             lambda x, w, b: F.conv_transpose1d(x, w, b, **kw), (x, w, b), *CONV_TOL[dtype])
    assert ours.is_contiguous() == ref.is_contiguous()


def test_conv_transpose1d_unbatched_no_bias_and_empty_batch():
    w = torch.randn(3, 4, 3, dtype=torch.float64)
    for x in (torch.randn(3, 6, dtype=torch.float64), torch.randn(0, 3, 6, dtype=torch.float64)):
        _grads_match(lambda x, w: tconv.conv_transpose1d(x, w, stride=2, padding=1),
                     lambda x, w: F.conv_transpose1d(x, w, stride=2, padding=1), (x, w), 1e-10, 1e-10)


@pytest.mark.parametrize("layout", ["ncl", "channels_last_2d"])
@pytest.mark.parametrize("cfg", [(2, 64, 32, 3000, 4, 2, 1, 0, 1), (1, 32, 48, 2500, 3, 1, 1, 0, 2),
                                 (2, 32, 16, 1700, 5, 3, 2, 1, 1)], ids=lambda c: "x".join(map(str, c[:6])))
def test_conv_transpose1d_long_rows_weight_tiles_by_columns(cfg, layout):
    """Rows wider than a weight-tile chunk (~512 KiB of x and the grad_output they reach) are cut
    into runs of columns (weight_chunks; float32 on AVX-512), the forward's and grad_input's NCL
    rows into windows (Note [column windows]): the output and every gradient against float64
    PyTorch, the same bits for 1 and 2 threads."""
    n, cin, cout, length, k, s, p, op, d = cfg
    kw = dict(stride=s, padding=p, output_padding=op, dilation=d)
    gen = torch.Generator().manual_seed(11)
    x, w, b = (torch.randn(n, cin, length, generator=gen), torch.randn(cin, cout, k, generator=gen),
               torch.randn(cout, generator=gen))
    if layout == "ncl":
        ours = lambda x, w, b: tconv.conv_transpose1d(x, w, b, **kw)  # noqa: E731
    else:  # the 2-D op on channels_last (N, C, 1, L): the chunks read in place
        kw2 = dict(stride=(1, s), padding=(0, p), output_padding=(0, op), dilation=(1, d))
        ours = lambda x, w, b: tconv.conv_transpose2d(  # noqa: E731
            x[:, :, None].contiguous(memory_format=torch.channels_last), w[:, :, None], b, **kw2)[:, :, 0]
    gy = torch.randn(F.conv_transpose1d(x, w, b, **kw).shape, generator=gen)

    def outputs_and_grads():
        t = [v.clone().requires_grad_() for v in (x, w, b)]
        y = ours(*t)
        return (y.detach(), *torch.autograd.grad(y, t, gy))

    t64 = [v.double().requires_grad_() for v in (x, w, b)]
    y64 = F.conv_transpose1d(*t64, **kw)
    ref = (y64.detach(), *torch.autograd.grad(y64, t64, gy.double()))
    one, two = at_thread_counts(outputs_and_grads)
    for a, bb, e in zip(one, two, ref):
        assert torch.equal(a, bb)
        torch.testing.assert_close(a.double(), e, rtol=1e-4, atol=1e-4 * e.abs().max().item())


# ---- conv_transpose3d ------------------------------------------------------------------------------

CONV3D_GRID = [
    # n, cin, cout, dhw, k, stride, padding, output_padding, groups, dilation
    (2, 3, 4, (3, 4, 5), (2, 2, 2), 2, 0, 0, 1, 1),             # k2 s2: the fold is a permutation
    (2, 4, 6, (3, 5, 4), (4, 4, 4), 2, 1, 0, 2, 1),             # k4 s2 p1, groups
    (2, 4, 4, (3, 3, 5), (3, 3, 3), 1, 1, 0, 1, 1),             # k3 s1 p1
    (1, 4, 4, (5, 3, 3), (3, 2, 3), (1, 2, 3), (1, 0, 1), (0, 1, 2), 1, 1),
    (2, 2, 4, (4, 3, 3), (3, 3, 3), 3, 1, 2, 1, 2),             # dilation with stride
    (2, 2, 2, (2, 3, 3), (2, 3, 3), 2, 0, 1, 1, 1),             # k2 s2 with output_padding
    (2, 3, 3, (3, 2, 2), (2, 1, 1), 3, 0, 0, 3, 1),             # stride > kernel: depth holes
    (2, 6, 6, (3, 3, 3), (3, 3, 3), 2, 1, 1, 6, 1),             # depthwise
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last_3d", "weight_cl3d"])
@pytest.mark.parametrize("cfg", CONV3D_GRID, ids=lambda c: "x".join(map(str, c[:5])))
def test_conv_transpose3d_matches_pytorch(cfg, layout, dtype):
    n, cin, cout, dhw, k, s, p, op, g, d = cfg
    kw = dict(stride=s, padding=p, output_padding=op, groups=g, dilation=d)
    x, w, b = (torch.randn(n, cin, *dhw, dtype=dtype), torch.randn(cin, cout // g, *k, dtype=dtype),
               torch.randn(cout, dtype=dtype))
    if layout == "channels_last_3d":
        x = x.to(memory_format=CL3)
    elif layout == "weight_cl3d":
        w = w.to(memory_format=CL3)
    ours, ref = _grads_match(lambda x, w, b: tconv.conv_transpose3d(x, w, b, **kw),
                             lambda x, w, b: F.conv_transpose3d(x, w, b, **kw), (x, w, b), *CONV_TOL[dtype])
    # PyTorch's oneDNN rule (its slow paths, taken for some float32 shapes, return contiguous).
    want_cl = layout != "contiguous" and dtype == torch.float32
    assert ours.is_contiguous(memory_format=CL3 if want_cl else torch.contiguous_format)
    if ref.is_contiguous(memory_format=CL3) and not ref.is_contiguous():
        assert want_cl


# Note [3-D depth cells] (csrc/conv_transpose_nd.cpp): outside the k2 s2 layer the depth taps are
# the input channels of one 2-D op per depth phase. A call nothing differentiates fills buffers,
# one autograd records uses functional ops (stack where every phase has Do / sd slices, else a
# cat of slices): both must match PyTorch, including phases of unequal length and phases that
# no tap reaches (the bias alone).
@pytest.mark.parametrize("layout", ["contiguous", "channels_last_3d"])
@pytest.mark.parametrize("cfg", CONV3D_GRID + [
    (2, 3, 4, (4, 3, 3), (4, 3, 3), 2, 1, 1, 1, 1),             # Do = 9: phases of 5 and 4 slices
    (2, 2, 3, (3, 2, 2), (1, 2, 2), 3, 0, 2, 1, 1),             # depth phases 1 and 2 have no tap
], ids=lambda c: "x".join(map(str, c[:6])))
def test_conv_transpose3d_depth_cells_with_and_without_grad(cfg, layout):
    n, cin, cout, dhw, k, s, p, op, g, d = cfg
    kw = dict(stride=s, padding=p, output_padding=op, groups=g, dilation=d)
    for dtype in (torch.float64, torch.float32):
        x, w, b = (torch.randn(n, cin, *dhw, dtype=dtype), torch.randn(cin, cout // g, *k, dtype=dtype),
                   torch.randn(cout, dtype=dtype))
        if layout == "channels_last_3d":
            x = x.to(memory_format=CL3)
        with torch.no_grad():
            ours, ref = tconv.conv_transpose3d(x, w, b, **kw), F.conv_transpose3d(x, w, b, **kw)
        torch.testing.assert_close(ours, ref, rtol=CONV_TOL[dtype][0], atol=CONV_TOL[dtype][1])
        want_cl = layout != "contiguous" and dtype == torch.float32
        assert ours.is_contiguous(memory_format=CL3 if want_cl else torch.contiguous_format)
        _grads_match(lambda x, w, b: tconv.conv_transpose3d(x, w, b, **kw),
                     lambda x, w, b: F.conv_transpose3d(x, w, b, **kw), (x, w, b), *CONV_TOL[dtype])


@pytest.mark.parametrize("layout", ["contiguous", "channels_last_3d"])
def test_conv_transpose3d_backward_of_a_gradient_dense_in_no_layout(layout):
    """A 3-D U-Net's up layer receives a channel slice of torch.cat's gradient (dense in no layout);
    the backward makes it dense once in its kernels' layout. k2 s2 float32 (the 3-D kernels on
    AVX-512): PyTorch's gradients, and those of the gradient made dense."""
    x, w, b = torch.randn(2, 32, 4, 5, 6), torch.randn(32, 16, 2, 2, 2) * 0.2, torch.randn(16)
    if layout == "channels_last_3d":
        x = x.to(memory_format=CL3)
    leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    y = tconv.conv_transpose3d(*leaves, stride=2)
    wide = torch.randn(2, 32, *y.shape[2:])
    if layout == "channels_last_3d":
        wide = wide.to(memory_format=CL3)
    grad = wide[:, 16:]
    assert not grad.is_contiguous() and not grad.is_contiguous(memory_format=CL3)
    got = torch.autograd.grad(y, leaves, grad, retain_graph=True)
    fmt = CL3 if layout == "channels_last_3d" else torch.contiguous_format
    dense = torch.autograd.grad(y, leaves, grad.contiguous(memory_format=fmt))
    ref_leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    ref = torch.autograd.grad(F.conv_transpose3d(*ref_leaves, stride=2), ref_leaves, grad)
    for a, d, e in zip(got, dense, ref):
        torch.testing.assert_close(a, d, rtol=0, atol=0)
        torch.testing.assert_close(a, e, rtol=2e-4, atol=1e-4 * e.abs().max().item())


# Note [3-D transposed convolution] (cpu/conv_transpose3d.cpp): on AVX-512 CPUs a float32 call that
# nothing differentiates runs the 3-D kernels: Winograd with the depth taps as sources (3x3x3
# stride 1, 4x4x4 stride 2; 32+ channels, no groups or dilation) or the direct tiles over the
# taps (kd, kh, kw) (16-channel groups of output channels, at most 64 taps); elsewhere the
# composite. Every case must equal PyTorch whichever path the CPU takes, in the output's memory
# format, with the same bits for any thread count.
NATIVE3D_CASES = [
    # n, cin, cout, dhw, k, stride, padding, output_padding, groups, dilation
    (2, 32, 32, (5, 6, 7), (3, 3, 3), 1, 1, 0, 1, 1),           # Winograd k3 s1: partial blocks
    (1, 48, 32, (4, 5, 3), (3, 3, 3), 1, (0, 2, 1), 0, 1, 1),    # padding 0 grows depth, 2 shrinks rows
    (2, 32, 48, (4, 5, 6), (4, 4, 4), 2, 1, 0, 1, 1),           # Winograd k4 s2 p1: two depth phases
    (1, 40, 32, (3, 4, 3), (4, 4, 4), 2, (0, 1, 2), (1, 0, 1), 1, 1),  # uneven phases, output_padding
    (2, 16, 32, (3, 4, 5), (2, 2, 2), 2, 0, 0, 1, 1),           # direct tiles: k2 s2, one tap each
    (1, 16, 80, (2, 3, 9), (2, 2, 2), 2, 0, 0, 1, 1),           # two blocks of output channels (64 + 16)
    (1, 32, 160, (2, 3, 5), (2, 2, 2), 2, 0, 0, 2, 1),          # groups of 80: a block past the group's start
    (1, 80, 16, (3, 4, 5), (4, 4, 4), 2, 1, 0, 1, 1),           # grad_input: two blocks of 80 inputs, rows shared
    (2, 96, 32, (2, 3, 18), (2, 2, 2), 2, 0, 0, 1, 1),          # k2 s2, rows of 36 outputs
    (1, 24, 16, (3, 5, 4), (3, 3, 3), 2, 1, 1, 1, 1),           # k3 s2 op1: phases of 1-2 taps per axis
    (1, 16, 32, (3, 4, 5), (3, 3, 3), 1, 1, 0, 1, (2, 1, 2)),   # dilation: the direct tiles, not Winograd
    (1, 32, 32, (3, 4, 5), (3, 3, 3), 1, 1, 0, 2, 1),           # groups of 16 output channels
    (2, 8, 16, (3, 4, 5), (2, 3, 3), (1, 2, 1), 1, 0, 1, 1),    # anisotropic kernel and stride
    (1, 16, 16, (4, 4, 4), (3, 2, 2), (2, 2, 2), 0, 0, 1, 1),   # depth kernel 3, stride 2
    (1, 16, 16, (2, 3, 3), (1, 3, 3), (2, 1, 1), 0, (1, 0, 0), 1, 1),  # kD < sd: depth slices with no tap (composite)
    (1, 8, 12, (3, 4, 5), (3, 3, 3), 1, 1, 0, 1, 1),            # 12 output channels (composite)
]


@pytest.mark.parametrize("layout", ["contiguous", "channels_last_3d"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("cfg", NATIVE3D_CASES, ids=lambda c: "x".join(map(str, c[:6])))
def test_conv_transpose3d_kernels_match_pytorch(cfg, bias, layout):
    n, cin, cout, dhw, k, s, p, op, g, d = cfg
    kw = dict(stride=s, padding=p, output_padding=op, groups=g, dilation=d)
    gen = torch.Generator().manual_seed(sum(dhw) + cin)
    x = torch.randn(n, cin, *dhw, dtype=torch.float64, generator=gen)
    w = torch.randn(cin, cout // g, *k, dtype=torch.float64, generator=gen) / (cin * 27) ** 0.5
    b = torch.randn(cout, dtype=torch.float64, generator=gen) if bias else None
    if layout == "channels_last_3d":
        x = x.to(memory_format=CL3)
    ref = F.conv_transpose3d(x, w, b, **kw)
    xf, wf, bf = x.float(), w.float(), None if b is None else b.float()
    ours = tconv.conv_transpose3d(xf, wf, bf, **kw)
    assert ours.shape == ref.shape and ours.dtype == torch.float32
    assert ours.is_contiguous(memory_format=CL3 if layout == "channels_last_3d" else torch.contiguous_format)
    torch.testing.assert_close(ours.double(), ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())
    # A differentiated call takes the same kernels, then grad_input and grad_weight by the kernels
    # where they serve (grad_input: 16-channel groups of input channels), else through the
    # composite's graph.
    leaves = [t.detach().requires_grad_() for t in (xf, wf) + (() if bf is None else (bf,))]
    y = tconv.conv_transpose3d(*leaves[:2], leaves[2] if bias else None, **kw)
    assert torch.equal(y.detach(), ours)
    go = torch.randn(ref.shape, dtype=torch.float64, generator=gen)
    ref_leaves = [t.detach().requires_grad_() for t in (x, w, b) if t is not None]
    ref_grads = torch.autograd.grad(F.conv_transpose3d(*ref_leaves[:2], ref_leaves[2] if bias else None, **kw),
                                    ref_leaves, go)
    grads = torch.autograd.grad(y, leaves, go.float())
    for got, want in zip(grads, ref_grads):
        assert got.shape == want.shape
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5 * want.abs().max().item())
    def one_thread():  # every sum in an order fixed by the shape: the same bits for any thread count
        y1 = tconv.conv_transpose3d(*leaves[:2], leaves[2] if bias else None, **kw)
        return tconv.conv_transpose3d(xf, wf, bf, **kw), torch.autograd.grad(y1, leaves, go.float())

    ((y_one, grads_one),) = at_thread_counts(one_thread, (1,))
    assert torch.equal(y_one, ours)
    for one, two in zip(grads_one, grads):
        assert torch.equal(one, two)


def test_conv_transpose3d_kernels_double_backward_and_graph_rules():
    """The kernels' backward node: create_graph gives differentiable gradients (through the
    composite's graph) equal to PyTorch's second derivatives; a second backward without
    retain_graph and an input modified in place after the forward raise as PyTorch does."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 32, 3, 4, 5, dtype=torch.float64, generator=gen)
    w = torch.randn(32, 32, 3, 3, 3, dtype=torch.float64, generator=gen) / 30
    b = torch.randn(32, dtype=torch.float64, generator=gen)
    go = torch.randn(1, 32, 3, 4, 5, dtype=torch.float64, generator=gen)
    r1, r2 = torch.randn_like(x), torch.randn_like(w)

    def second(fn, dtype):
        leaves = [t.to(dtype).requires_grad_() for t in (x, w, b, go)]
        y = fn(*leaves[:3], padding=1)
        gx, gw = torch.autograd.grad(y, leaves[:2], leaves[3], create_graph=True)
        loss = (gx * r1.to(dtype)).sum() + (gw * r2.to(dtype)).sum()
        return torch.autograd.grad(loss, [leaves[0], leaves[1], leaves[3]])

    for got, want in zip(second(tconv.conv_transpose3d, torch.float32), second(F.conv_transpose3d, torch.float64)):
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4 * want.abs().max().item())
    xf, wf = x.float().requires_grad_(), w.float().requires_grad_()
    y = tconv.conv_transpose3d(xf, wf, padding=1)
    y.sum().backward(retain_graph=True)
    y.sum().backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.sum().backward()
    for n in (0, 2):  # an empty batch too: zero gradients for the weight and the bias
        leaves = [torch.randn(n, 32, 3, 4, 5).requires_grad_(), wf, b.float().requires_grad_()]
        ref_leaves = [t.detach().double().requires_grad_() for t in leaves]
        got = torch.autograd.grad(tconv.conv_transpose3d(*leaves, padding=1).square().sum(), leaves)
        want = torch.autograd.grad(F.conv_transpose3d(*ref_leaves, padding=1).square().sum(), ref_leaves)
        for a, e in zip(got, want):
            torch.testing.assert_close(a.double(), e, rtol=1e-4, atol=1e-4 * max(e.abs().amax().item() if e.numel() else 0, 1))
    if tconv.cpu_capability() not in ("avx512", "avx2"):
        return  # the composite: its graph saves copies of the input, not the input
    assert y.grad_fn.name() == "tconv::ConvTranspose3dBackward"
    xc = x.float().requires_grad_() * 1.0
    y = tconv.conv_transpose3d(xc, wf, padding=1)
    xc.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


@pytest.mark.parametrize("layout", ["contiguous", "channels_last_3d"])
@pytest.mark.parametrize("k, s", [(3, 1), (4, 2), (2, 2)])
def test_conv_transpose3d_kernels_keep_nan_and_inf_in_place(k, s, layout):
    """A NaN or Inf in the input or the weight reaches exactly the outputs whose taps read it, as
    in PyTorch's float64 sum (Winograd's B^T d B would spread one over a block; such calls take
    the composite's direct sums)."""
    gen = torch.Generator().manual_seed(k)
    x = torch.randn(2, 32, 3, 4, 5, dtype=torch.float64, generator=gen)
    w = torch.randn(32, 32, k, k, k, dtype=torch.float64, generator=gen)
    x[0, 3, 1, 0, 4] = float("nan")
    x[1, 7, 2, 3, 2] = float("inf")
    if layout == "channels_last_3d":
        x = x.to(memory_format=CL3)
    p = 0 if k == 2 else 1
    specials_equal(tconv.conv_transpose3d(x.float(), w.float(), stride=s, padding=p),
                   F.conv_transpose3d(x, w, stride=s, padding=p))
    w[5, 2, 0, 1, 1] = float("-inf")
    specials_equal(tconv.conv_transpose3d(x.float(), w.float(), stride=s, padding=p),
                   F.conv_transpose3d(x, w, stride=s, padding=p))


def test_conv_transpose3d_unbatched_no_bias_empty_batch_and_strided_input():
    w = torch.randn(3, 2, 2, 3, 2, dtype=torch.float64)
    big = torch.randn(2, 3, 6, 5, 8, dtype=torch.float64)
    for x in (torch.randn(3, 4, 3, 5, dtype=torch.float64), torch.randn(0, 3, 4, 3, 5, dtype=torch.float64),
              big[:, :, ::2, 1:4, ::2]):
        _grads_match(lambda x, w: tconv.conv_transpose3d(x, w, stride=2, padding=(0, 1, 0)),
                     lambda x, w: F.conv_transpose3d(x, w, stride=2, padding=(0, 1, 0)), (x, w), 1e-10, 1e-10)


@st.composite
def conv3d_configs(draw):
    groups = draw(st.integers(1, 3))
    cin, cout = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    k = tuple(draw(st.integers(1, 4)) for _ in range(3))
    s = tuple(draw(st.integers(1, 3)) for _ in range(3))
    d = tuple(draw(st.integers(1, 2)) for _ in range(3))
    op = tuple(draw(st.integers(0, max(s[i], d[i]) - 1)) for i in range(3))
    size = tuple(draw(st.integers(1, 4)) for _ in range(3))
    p = []
    for i in range(3):  # padding small enough that the output is non-empty
        full = (size[i] - 1) * s[i] + d[i] * (k[i] - 1) + op[i] + 1
        p.append(draw(st.integers(0, max(0, (full - 1) // 2))))
    return (draw(st.integers(0, 2)), cin, cout, size, k, s, tuple(p), op, groups, d,
            draw(st.booleans()), draw(st.booleans()))


@settings(max_examples=40)
@given(conv3d_configs())
def test_conv_transpose3d_and_1d_hypothesis(cfg):
    """Any geometry, both layouts; the depth axis' arguments also as a 1-D convolution."""
    n, cin, cout, size, k, s, p, op, g, d, cl, bias = cfg
    x = torch.randn(n, cin, *size, dtype=D)
    w = torch.randn(cin, cout // g, *k, dtype=D)
    b = torch.randn(cout, dtype=D) if bias else None
    kw = dict(stride=s, padding=p, output_padding=op, groups=g, dilation=d)
    xf = x.to(memory_format=CL3) if cl else x
    torch.testing.assert_close(tconv.conv_transpose3d(xf, w, b, **kw), F.conv_transpose3d(xf, w, b, **kw))
    kw1 = {key: v[0] for key, v in kw.items() if key != "groups"}
    x1, w1 = x[:, :, :, 0, 0], w[:, :, :, 0, 0]
    torch.testing.assert_close(tconv.conv_transpose1d(x1, w1, b, groups=g, **kw1),
                               F.conv_transpose1d(x1, w1, b, groups=g, **kw1))


@pytest.mark.parametrize("dtype", HALF_TYPES)
@pytest.mark.parametrize("rank", [1, 3])
def test_conv_transpose_half_precision_against_float32(rank, dtype):
    """bfloat16/float16 against float32 on the same rounded values, rounded once at the end."""
    shape = (2, 8, 9) if rank == 1 else (2, 8, 3, 4, 5)
    x = torch.randn(*shape)
    w = torch.randn(8, 3, *(4,) * rank)
    b = torch.randn(6)
    fn, ref_fn = ((tconv.conv_transpose1d, F.conv_transpose1d) if rank == 1 else
                  (tconv.conv_transpose3d, F.conv_transpose3d))
    kw = dict(stride=2, padding=1, groups=2)
    xh, wh, bh = (t.to(dtype).requires_grad_() for t in (x, w, b))
    out = fn(xh, wh, bh, **kw)
    assert out.dtype == dtype
    xr, wr, br = (t.detach().float().requires_grad_() for t in (xh, wh, bh))
    ref = ref_fn(xr, wr, br, **kw)
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(out.float(), ref.to(dtype).float(), rtol=4 * eps,
                               atol=4 * eps * ref.abs().max().item())
    go = torch.randn_like(ref).to(dtype)
    for a, e in zip(torch.autograd.grad(out, (xh, wh, bh), go), torch.autograd.grad(ref, (xr, wr, br), go.float())):
        assert a.dtype == dtype
        torch.testing.assert_close(a.float(), e.to(dtype).float(), rtol=8 * eps, atol=8 * eps * e.abs().max().item())


# ---- linear / trilinear ----------------------------------------------------------------------------

LINEAR_GRID = [
    (7, dict(scale_factor=2)),
    (9, dict(scale_factor=0.5)),
    (5, dict(scale_factor=1.7)),
    (6, dict(scale_factor=1.1)),                             # same size, scale used
    (6, dict(size=6)),                                       # identity
    (1, dict(size=5)),                                       # 1-sample input
    (8, dict(size=1)),                                       # 1-sample output
    (9, dict(size=4)),
    (8, dict(scale_factor=2.7, recompute_scale_factor=True)),
    (8, dict(scale_factor=(0.37,), recompute_scale_factor=False)),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("length,kw", LINEAR_GRID, ids=str)
def test_linear_matches_pytorch(length, kw, align_corners, dtype):
    x = torch.randn(2, 3, length, dtype=dtype)
    kw = dict(kw, mode="linear", align_corners=align_corners)
    _grads_match(lambda x: tconv.interpolate(x, **kw), lambda x: F.interpolate(x, **kw), (x,),
                 *UPSAMPLE_TOL[dtype])


TRILINEAR_GRID = [
    ((3, 4, 5), dict(scale_factor=2)),
    ((5, 4, 3), dict(size=(3, 7, 2))),
    ((2, 3, 4), dict(scale_factor=(1.5, 0.7, 2.2))),
    ((4, 4, 4), dict(scale_factor=(1.1, 1.0, 0.5))),          # same-size axes with a scale
    ((1, 1, 1), dict(size=3)),
    ((4, 4, 4), dict(size=(4, 4, 4))),
    ((3, 5, 4), dict(size=(1, 1, 1))),
    ((4, 6, 5), dict(scale_factor=0.6, recompute_scale_factor=True)),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last_3d", "sliced"])
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("dhw,kw", TRILINEAR_GRID, ids=str)
def test_trilinear_matches_pytorch(dhw, kw, align_corners, layout, dtype):
    if layout == "sliced":
        x = torch.randn(2, 3, dhw[0], dhw[1] * 2, dhw[2] + 2, dtype=dtype)[:, :, :, ::2, 1:dhw[2] + 1]
    else:
        x = torch.randn(2, 3, *dhw, dtype=dtype)
        if layout == "channels_last_3d":
            x = x.to(memory_format=CL3)
    kw = dict(kw, mode="trilinear", align_corners=align_corners)
    ours, ref = _grads_match(lambda x: tconv.interpolate(x, **kw), lambda x: F.interpolate(x, **kw), (x,),
                             *UPSAMPLE_TOL[dtype])
    assert ours.is_contiguous(memory_format=CL3) == ref.is_contiguous(memory_format=CL3)


@settings(max_examples=40)
@given(st.lists(st.integers(1, 6), min_size=3, max_size=3), st.integers(0, 2), st.booleans(),
       st.booleans(), st.one_of(st.lists(st.integers(1, 9), min_size=3, max_size=3),
                                st.lists(st.sampled_from([0.5, 1.0, 1.3, 2.0, 2.7]), min_size=3, max_size=3)))
def test_trilinear_and_linear_hypothesis(dhw, n, cl, align_corners, size_or_scale):
    """Any sizes and factors, both layouts; the D axis' also as a linear interpolation."""
    x = torch.randn(n, 2, *dhw, dtype=D)
    key = "size" if isinstance(size_or_scale[0], int) else "scale_factor"
    kw = {key: size_or_scale, "align_corners": align_corners}
    out_d = [size_or_scale[i] if key == "size" else int(dhw[i] * size_or_scale[i]) for i in range(3)]
    if min(out_d) < 1:  # an empty output: an error (test_robustness.py)
        return
    xf = x.to(memory_format=CL3) if cl else x
    torch.testing.assert_close(tconv.interpolate(xf, mode="trilinear", **kw),
                               F.interpolate(xf, mode="trilinear", **kw))
    kw1 = {key: size_or_scale[0], "align_corners": align_corners}
    torch.testing.assert_close(tconv.interpolate(x[:, :, :, 0, 0], mode="linear", **kw1),
                               F.interpolate(x[:, :, :, 0, 0], mode="linear", **kw1))


@pytest.mark.parametrize("dtype", HALF_TYPES)
@pytest.mark.parametrize("mode,shape", [("linear", (2, 8, 37)), ("trilinear", (2, 3, 5, 6, 7))])
def test_interpolate_half_precision(mode, shape, dtype):
    """Each pass rounds to the type once (trilinear: two passes), so two roundings of float32's."""
    x = torch.randn(*shape).to(dtype)
    for kw in (dict(scale_factor=2), dict(scale_factor=0.7, align_corners=True)):
        out = tconv.interpolate(x, mode=mode, **kw)
        ref = F.interpolate(x.float(), mode=mode, **kw)
        eps = torch.finfo(dtype).eps
        assert out.dtype == dtype
        torch.testing.assert_close(out.float(), ref, rtol=2 * eps, atol=2 * eps * ref.abs().max().item())


def test_interpolate_empty_batch_and_upsample_module():
    for shape, mode in (((0, 3, 5), "linear"), ((0, 2, 3, 4, 5), "trilinear")):
        x = torch.randn(shape)
        assert tconv.interpolate(x, scale_factor=2, mode=mode).shape == \
            F.interpolate(x, scale_factor=2, mode=mode).shape
    for mode, x in (("linear", torch.randn(2, 3, 7)), ("trilinear", torch.randn(2, 2, 3, 4, 5))):
        for kw in (dict(scale_factor=2.5), dict(size=(6,) * (x.dim() - 2), align_corners=True)):
            ours, ref = tconv.Upsample(mode=mode, **kw), nn.Upsample(mode=mode, **kw)
            assert isinstance(ours, nn.Upsample)
            torch.testing.assert_close(ours(x), ref(x))


def test_interpolate_volume_kernel_serves_plain_calls_and_large_outputs():
    """Plain eager CPU calls, contiguous or channels_last_3d, run the volume kernel (Note [linear
    resampling of volumes]: its backward node names itself), so the grids above test it; torch.func
    takes the composite. Outputs of 32 MiB and more (non-temporal stores) and slices of several row
    blocks, forward and backward, against PyTorch (float32: both compute the source
    indices in float32, which at hundreds to thousands of samples moves the weights by ~1e-5 to
    1e-4; PyTorch's own float32 result is that far from its float64 one)."""
    node = "tconv::UpsampleLinearNdBackward"
    x1 = torch.randn(2, 3, 9, requires_grad=True)
    x3 = torch.randn(2, 3, 4, 5, 6, requires_grad=True)
    assert tconv.interpolate(x1, scale_factor=2, mode="linear").grad_fn.name() == node
    assert tconv.interpolate(x3, scale_factor=2, mode="trilinear").grad_fn.name() == node
    assert tconv.interpolate(x3[:, :, :, ::2], scale_factor=2, mode="trilinear").grad_fn.name() == node
    cl = x3.detach().to(memory_format=CL3).requires_grad_()
    assert tconv.interpolate(cl, scale_factor=2, mode="trilinear").grad_fn.name() == node
    assert vmap(lambda t: tconv.interpolate(t, scale_factor=2, mode="trilinear"))(x3.detach()[None]).shape[0] == 1
    with torch.no_grad():
        assert tconv.interpolate(x3, scale_factor=2, mode="trilinear").grad_fn is None
    gen = torch.Generator().manual_seed(7)
    # linear: rows of 32806 floats, so some start on 64-byte boundaries (streamed) and some off them
    for mode, shape, kw in (("linear", (4, 64, 16403), dict(scale_factor=2)),
                            ("linear", (2, 8, 3000), dict(size=4999, align_corners=True)),
                            ("trilinear", (1, 16, 32, 64, 64), dict(scale_factor=2)),
                            ("trilinear", (1, 4, 9, 150, 130), dict(size=(5, 301, 67))),
                            ("trilinear_cl", (1, 16, 32, 64, 64), dict(scale_factor=2)),
                            ("trilinear_cl", (2, 3, 7, 9, 11), dict(size=(4, 17, 6), align_corners=True))):
        x, fmt = torch.randn(shape, generator=gen), torch.contiguous_format
        if mode == "trilinear_cl":
            mode, fmt = "trilinear", CL3
            x = x.to(memory_format=CL3)
        x.requires_grad_()
        y = tconv.interpolate(x, mode=mode, **kw)
        g = torch.randn(y.shape, generator=gen)
        (gx,) = torch.autograd.grad(y, x, g)
        xr = x.detach().requires_grad_()
        yr = F.interpolate(xr, mode=mode, **kw)
        (gr,) = torch.autograd.grad(yr, xr, g)
        assert y.grad_fn.name() == node and y.is_contiguous(memory_format=fmt)
        torch.testing.assert_close(y, yr, rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(gx, gr, rtol=1e-5, atol=2e-4)


# ---- NaN / Inf ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("align_corners", [False, True])
def test_interpolate_nan_inf_like_pytorch(align_corners, dtype):
    """The 2-D op's dummy axis (csrc/upsample_nd.cpp) turns no Inf into NaN: every special lands
    where PyTorch's linear/trilinear kernels put it."""
    gen = torch.Generator().manual_seed(4)
    x1 = poison(torch.randn(2, 3, 9, dtype=dtype, generator=gen), gen, 0.15)
    x3 = poison(torch.randn(2, 3, 4, 5, 6, dtype=dtype, generator=gen), gen, 0.05)
    for kw in (dict(scale_factor=2), dict(size=13), dict(scale_factor=0.6), dict(size=9), dict(size=1)):
        same_specials(tconv.interpolate(x1, mode="linear", align_corners=align_corners, **kw),
                      F.interpolate(x1, mode="linear", align_corners=align_corners, **kw), 1e-5)
    for x in (x3, x3.to(memory_format=CL3)):
        for kw in (dict(scale_factor=2), dict(size=(3, 7, 5)), dict(scale_factor=(0.6, 1.5, 1.0)),
                   dict(size=(4, 5, 6))):
            same_specials(tconv.interpolate(x, mode="trilinear", align_corners=align_corners, **kw),
                          F.interpolate(x, mode="trilinear", align_corners=align_corners, **kw), 1e-5)


@pytest.mark.parametrize("where", ["input", "weight", "bias"])
def test_conv_transpose_nan_inf_like_pytorch(where):
    """float64 (PyTorch's float64 paths follow the definition; its float32 oneDNN path does not,
    test_robustness.py)."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 4, 3, 4, 5, dtype=torch.float64, generator=gen)
    w = torch.randn(4, 3, 3, 3, 3, dtype=torch.float64, generator=gen)
    b = torch.randn(3, dtype=torch.float64, generator=gen)
    x, w, b = poison_one(where, gen, dict(input=x, weight=w, bias=b), dict(input=0.03, weight=0.02, bias=0.3)).values()
    for kw in (dict(stride=2, padding=1), dict(stride=1), dict(stride=3, dilation=2, output_padding=1),
               dict(stride=(3, 2, 1))):
        same_specials(tconv.conv_transpose3d(x, w, b, **kw), F.conv_transpose3d(x, w, b, **kw))
    x1, w1 = x[:, :, 0, 0], w[:, :, 0, 0]
    for kw in (dict(stride=2, padding=1), dict(stride=3, dilation=2)):
        same_specials(tconv.conv_transpose1d(x1, w1, b, **kw), F.conv_transpose1d(x1, w1, b, **kw))


# ---- gradients, torch.func, opcheck, compile ------------------------------------------------------------

D = torch.float64
GRADCHECK_CASES = {
    "conv1d": (lambda x, w, b: tconv.conv_transpose1d(x, w, b, stride=2, padding=1, output_padding=1, groups=2),
               [(2, 4, 3), (4, 2, 3), (4,)]),
    "conv3d": (lambda x, w, b: tconv.conv_transpose3d(x, w, b, stride=(2, 1, 2), padding=1, output_padding=(1, 0, 0)),
               [(2, 2, 2, 3, 2), (2, 2, 3, 2, 2), (2,)]),
    "conv3d_k2s2": (lambda x, w, b: tconv.conv_transpose3d(x.to(memory_format=CL3), w, b, stride=2),
                    [(2, 2, 2, 2, 2), (2, 2, 2, 2, 2), (2,)]),
    "linear": (lambda x: tconv.interpolate(x, scale_factor=1.7, mode="linear"), [(2, 2, 5)]),
    "linear_align_corners": (lambda x: tconv.interpolate(x, size=7, mode="linear", align_corners=True),
                             [(2, 2, 5)]),
    "trilinear": (lambda x: tconv.interpolate(x, scale_factor=(1.5, 2, 0.7), mode="trilinear"),
                  [(1, 2, 3, 2, 4)]),
    "trilinear_align_corners": (lambda x: tconv.interpolate(x.to(memory_format=CL3), size=(3, 4, 2),
                                                            mode="trilinear", align_corners=True),
                                [(1, 2, 3, 2, 4)]),
}


@pytest.mark.parametrize("name", list(GRADCHECK_CASES))
def test_gradcheck_every_mode(name):
    fn, shapes = GRADCHECK_CASES[name]
    full_gradcheck(fn, [torch.randn(s, dtype=D, requires_grad=True) for s in shapes])


def test_jacfwd_and_vmap_match_pytorch():
    """torch.func over the composites (their FuncTorchBatched kernels decompose: no per-sample
    fallback, whose warning is an error here)."""
    x, w, b = torch.randn(2, 4, 3, 3, 2, dtype=D), torch.randn(4, 3, 2, 3, 2, dtype=D), torch.randn(3, dtype=D)
    kw = dict(stride=2, padding=(1, 0, 0))
    ours = lambda x, w, b: tconv.conv_transpose3d(x, w, b, **kw)  # noqa: E731
    ref = lambda x, w, b: F.conv_transpose3d(x, w, b, **kw)  # noqa: E731
    lin = lambda x: tconv.interpolate(x, scale_factor=2, mode="linear")  # noqa: E731
    lin_ref = lambda x: F.interpolate(x, scale_factor=2, mode="linear")  # noqa: E731
    with _no_fallback_warning():
        for argnums in (0, 1, 2):
            torch.testing.assert_close(jacfwd(ours, argnums)(x, w, b), jacfwd(ref, argnums)(x, w, b))
        xs, ws = torch.randn(3, *x.shape, dtype=D), torch.randn(3, *w.shape, dtype=D)
        torch.testing.assert_close(vmap(ours, (0, 0, None))(xs, ws, b), vmap(ref, (0, 0, None))(xs, ws, b))
        x1 = torch.randn(3, 2, 4, 6, dtype=D)
        torch.testing.assert_close(vmap(lin, in_dims=2)(x1), vmap(lin_ref, in_dims=2)(x1))
        torch.testing.assert_close(jacfwd(lin)(x1[0]), jacfwd(lin_ref)(x1[0]))


class _no_fallback_warning:
    def __enter__(self):
        import warnings
        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.filterwarnings("error", message=".*performance drop.*")

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


def _opcheck_samples():
    x1, w1, b1 = torch.randn(2, 4, 7), torch.randn(4, 3, 3), torch.randn(6)
    x3, w3, b3 = torch.randn(2, 4, 3, 4, 5), torch.randn(4, 3, 3, 3, 2), torch.randn(6)
    yield ops.conv_transpose1d, (x1, w1, b1, [2], [1], [1], 2, [1])
    yield ops.conv_transpose3d, (x3, w3, b3, [2, 1, 2], [1, 0, 1], [1, 0, 0], 2, [1, 1, 1])
    yield ops.conv_transpose3d, (x3.to(memory_format=CL3), torch.randn(4, 3, 2, 2, 2), None, [2, 2, 2],
                                 [0, 0, 0], [0, 0, 0], 1, [1, 1, 1])
    yield ops.upsample_linear1d, (x1, [13], False, 2.0)
    yield ops.upsample_linear1d, (x1, [5], True, None)
    yield ops.upsample_trilinear3d, (x3, [5, 8, 3], False, None, 2.0, None)
    yield ops.upsample_trilinear3d, (x3.to(memory_format=CL3), [6, 8, 10], True, None, None, None)


@pytest.mark.parametrize("op,args", list(_opcheck_samples()), ids=lambda v: getattr(v, "__name__", ""))
def test_opcheck(op, args):
    args = tuple(a.requires_grad_() if isinstance(a, torch.Tensor) else a for a in args)
    torch.library.opcheck(op, args)


def test_compile_fullgraph_matches_eager():
    def f(mod, x1, w1, b1, x3, w3, b3):
        a = mod.conv_transpose1d(x1, w1, b1, stride=2, padding=1, groups=2)
        b = mod.conv_transpose3d(x3, w3, b3, stride=2, padding=1, output_padding=1, groups=2)
        c = mod.interpolate(a, scale_factor=2, mode="linear")
        d = mod.interpolate(b, size=(5, 6, 7), mode="trilinear", align_corners=True)
        return (c * c).sum() + (d * d).sum()

    args = [torch.randn(2, 4, 7), torch.randn(4, 3, 3), torch.randn(6),
            torch.randn(2, 4, 3, 4, 5), torch.randn(4, 3, 3, 3, 2), torch.randn(6)]
    leaves = [a.clone().requires_grad_() for a in args]
    ref_leaves = [a.clone().requires_grad_() for a in args]
    torch._dynamo.reset()
    out = torch.compile(lambda *a: f(tconv, *a), fullgraph=True)(*leaves)
    ref = f(F, *ref_leaves)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-3)
    for a, e in zip(torch.autograd.grad(out, leaves), torch.autograd.grad(ref, ref_leaves)):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-3)


# ---- determinism ---------------------------------------------------------------------------------------

def _run_all(seed=0):
    gen = torch.Generator().manual_seed(seed)
    x3 = torch.randn(2, 8, 6, 7, 9, generator=gen).requires_grad_()
    w3 = torch.randn(8, 4, 3, 3, 3, generator=gen).requires_grad_()
    x1 = torch.randn(2, 8, 300, generator=gen).requires_grad_()
    w1 = torch.randn(8, 4, 16, generator=gen).requires_grad_()
    outs = [tconv.conv_transpose3d(x3, w3, stride=2, padding=1),
            tconv.conv_transpose3d(x3.to(memory_format=CL3), w3[:, :, :2, :2, :2], stride=2),
            tconv.conv_transpose1d(x1, w1, stride=8, padding=4),
            tconv.interpolate(x1, scale_factor=2.3, mode="linear"),
            tconv.interpolate(x3, scale_factor=2, mode="trilinear"),
            tconv.interpolate(x3.to(memory_format=CL3), size=(5, 9, 4), mode="trilinear", align_corners=True)]
    loss = sum((o * torch.linspace(-1, 1, o.numel()).reshape(o.shape)).sum() for o in outs)
    return [o.detach() for o in outs] + list(torch.autograd.grad(loss, (x3, w3, x1, w1)))


def test_same_bits_for_one_and_two_threads():
    one, two, again = at_thread_counts(_run_all, (1, 2, 2))
    for a, b, c in zip(one, two, again):
        assert torch.equal(a, b) and torch.equal(b, c)


def test_volume_kernel_slice_pairs_same_bits_for_any_thread_count():
    """The contiguous volume kernel combines two destination slices per pass, chunk by chunk (Note
    [linear resampling of volumes]): pairs cut short by a thread's share, a volume's end or an odd
    depth, slices of several chunks, a polyphase W gather after the H pass (the backward: 80 -> 40
    columns). The same bits at 1, 2 and 3 threads, PyTorch's values, and a NaN in the last chunk of
    a source slice lands where PyTorch puts it (the watch checks each chunk of the pair's sources)."""
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(3, 2, 7, 36, 40, dtype=torch.float64, generator=gen).float()

    def run():
        xr = x.clone().requires_grad_()
        y = tconv.interpolate(xr, scale_factor=2, mode="trilinear")
        g = torch.linspace(-1, 1, y.numel()).reshape(y.shape)
        (gx,) = torch.autograd.grad(y, xr, g)
        return y.detach(), gx, tconv.interpolate(x, scale_factor=0.5, mode="trilinear")

    one, two, three = at_thread_counts(run, (1, 2, 3))
    for a, b, c in zip(one, two, three):
        assert torch.equal(a, b) and torch.equal(b, c)
    xr = x.clone().requires_grad_()
    y = F.interpolate(xr, scale_factor=2, mode="trilinear")
    (gr,) = torch.autograd.grad(y, xr, torch.linspace(-1, 1, y.numel()).reshape(y.shape))
    for got, want in zip(one, (y.detach(), gr, F.interpolate(x, scale_factor=0.5, mode="trilinear"))):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    bad = x.clone()
    bad[1, 1, 4, 35, 37] = float("nan")
    bad[2, 0, 5, 34, 1] = float("inf")  # next to the border: PyTorch's zero-weight tap makes NaN
    for kw in (dict(scale_factor=2), dict(scale_factor=0.5), dict(size=(9, 50, 45))):
        same_specials(tconv.interpolate(bad, mode="trilinear", **kw), F.interpolate(bad, mode="trilinear", **kw),
                      1e-5)


@pytest.mark.parametrize("layout", ["ncdhw", "channels_last_3d"])
def test_direct_tiles3d_grad_weight_same_bits_for_any_thread_count(layout):
    """float32 grad_weight of a 64 -> 32 layer (the 3-D direct tiles: 11 blocks of 6 input channels
    per tap, the threads' shares split taps mid-way) against float64, and the same bits at 1, 2 and
    3 threads."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 64, 5, 6, 7, generator=gen)
    w = torch.randn(64, 32, 4, 4, 4, generator=gen)
    if layout == "channels_last_3d":
        x = x.to(memory_format=CL3)
    gy = torch.randn(F.conv_transpose3d(x, w, stride=2, padding=1).shape, generator=gen)

    def grad_weight():
        wl = w.clone().requires_grad_()
        return torch.autograd.grad(tconv.conv_transpose3d(x, wl, stride=2, padding=1), wl, gy)[0]

    w64 = w.double().requires_grad_()
    (ref,) = torch.autograd.grad(F.conv_transpose3d(x.double(), w64, stride=2, padding=1), w64, gy.double())
    runs = at_thread_counts(grad_weight, (1, 2, 3))
    torch.testing.assert_close(runs[0].double(), ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())
    assert all(torch.equal(runs[0], r) for r in runs[1:])


# ---- the modules -----------------------------------------------------------------------------------

@pytest.mark.parametrize("rank", [1, 3])
def test_modules_are_drop_ins(rank):
    theirs_cls, ours_cls = ((nn.ConvTranspose1d, tconv.ConvTranspose1d) if rank == 1 else
                            (nn.ConvTranspose3d, tconv.ConvTranspose3d))

    def build(conv):
        return nn.Sequential(conv(6, 4, 4, stride=2, padding=1), nn.ReLU(),
                             conv(4, 4, 3, stride=2, padding=1, output_padding=1, groups=2, dilation=2),
                             nn.ReLU(), conv(4, 2, 2, stride=2, bias=False))
    ref, ours = build(theirs_cls).double(), build(ours_cls).double()
    ours.load_state_dict(ref.state_dict())
    ref.load_state_dict(ours.state_dict())  # and back
    assert all(isinstance(m, theirs_cls) for m in ours if not isinstance(m, nn.ReLU))
    x = torch.randn(2, 6, *(3,) * rank, dtype=D)
    check_same_outputs_and_grads(ref, ours, x)
    # output_size, batched and unbatched
    mref, m = theirs_cls(4, 3, 3, stride=2).double(), ours_cls(4, 3, 3, stride=2).double()
    m.load_state_dict(mref.state_dict())
    x = torch.randn(2, 4, *(5,) * rank, dtype=D)
    for size in ((12,) * rank, [2, 3] + [11] * rank):
        torch.testing.assert_close(m(x, output_size=size), mref(x, output_size=size))
    torch.testing.assert_close(m(x[0], output_size=(12,) * rank), mref(x[0], output_size=(12,) * rank))


def test_autocast_dtypes_match_pytorch():
    """The 2-D ops' autocast kernels cast inside the composites: the results' dtypes are PyTorch's."""
    x, w, b = torch.randn(2, 4, 3, 4, 5), torch.randn(4, 3, 2, 3, 2), torch.randn(3)
    calls = [(tconv.conv_transpose3d, F.conv_transpose3d, (x, w, b), dict(stride=2)),
             (tconv.conv_transpose3d, F.conv_transpose3d, (x, w, b), dict(stride=2, padding=1)),
             (tconv.conv_transpose1d, F.conv_transpose1d, (x[:, :, 0, 0], w[:, :, 0, 0], b), dict(stride=2)),
             (tconv.interpolate, F.interpolate, (x,), dict(scale_factor=2, mode="trilinear")),
             (tconv.interpolate, F.interpolate, (x[:, :, 0, 0],), dict(scale_factor=2, mode="linear"))]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for ours, theirs, args, kw in calls:
            got, want = ours(*args, **kw), theirs(*args, **kw)
            assert got.dtype == want.dtype
            torch.testing.assert_close(got.float(), want.float(), rtol=2e-2, atol=5e-2)
