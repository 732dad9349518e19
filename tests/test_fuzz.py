"""Property-based fuzzing (hypothesis), 500 drawn cases per op, each against PyTorch:
shapes, every argument, dtypes, memory formats and strided/expanded views.

    conv_transpose2d  vs F.conv_transpose2d   (forward and every gradient)
    interpolate       vs F.interpolate         (forward and the input gradient)
    gram_matrix       vs X @ X.mT / (C*H*W) in float64

Low-precision cases are compared with the float64 result on the same (rounded) values, with a
tolerance proportional to the magnitudes that enter each output. Tensors are small so that the
3 x 500 cases run in about a minute on 2 cores (CI)."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings, strategies as st

import tconv
from _support import adjoint_of_pytorch_forward, draw_conv_geometry, pytorch_backward_is_not_its_forwards_gradient, pytorch_forward

pytestmark = pytest.mark.fuzz

FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]
LAYOUTS = ["contiguous", "channels_last", "transposed", "sliced", "expanded"]
# relative tolerance of a result computed in dtype (accumulation in float32 for the half types)
RTOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 4e-3}


def _tensor(draw, shape, dtype, gen):
    """A tensor with the given logical shape and values, in one of LAYOUTS."""
    layout = draw(st.sampled_from(LAYOUTS))
    n, c, h, w = shape
    if layout == "sliced":  # a strided view into a bigger buffer (steps on H and C, offset on W)
        base = torch.randn(n, 2 * c, 2 * h, w + 3, dtype=torch.float64, generator=gen)
        x = base[:, ::2, ::2, 2:w + 2]
    elif layout == "expanded" and n > 1:  # batch stride 0
        x = torch.randn(1, c, h, w, dtype=torch.float64, generator=gen).expand(n, c, h, w)
    else:
        x = torch.randn(n, c, h, w, dtype=torch.float64, generator=gen)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "transposed":
        x = x.transpose(2, 3).contiguous().transpose(2, 3)
    x = x.to(dtype)
    if layout in ("sliced", "expanded") and dtype != torch.float64:
        # .to() copied the view; rebuild an equal strided view of the low-precision values
        big = torch.zeros(x.shape[0], x.shape[1], x.shape[2], x.shape[3] + 2, dtype=dtype)
        big[..., 1:-1] = x
        x = big[..., 1:-1]
    return x


# ---- conv_transpose2d ----------------------------------------------------------------------------------

@st.composite
def conv_cases(draw):
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    groups = draw(st.integers(1, 3))
    cin = groups * draw(st.integers(0, 3) if draw(st.integers(0, 19)) == 0 else st.integers(1, 3))
    cout_g = draw(st.integers(1, 3))
    k, s, d, op, hw, p = draw_conv_geometry(draw, st)
    n = draw(st.integers(0, 3))
    dtype = draw(st.sampled_from(DTYPES))
    x = _tensor(draw, (n, cin, *hw), dtype, gen)
    w = torch.randn(cin, cout_g, *k, dtype=torch.float64, generator=gen).to(dtype)
    if draw(st.booleans()):
        w = w.contiguous(memory_format=torch.channels_last)
    b = torch.randn(cout_g * groups, dtype=torch.float64, generator=gen).to(dtype) \
        if draw(st.booleans()) else None
    unbatched = n == 1 and draw(st.booleans())
    kw = dict(stride=s if draw(st.booleans()) or s[0] != s[1] else s[0], padding=tuple(p),
              output_padding=op, groups=groups, dilation=d)
    return (x[0] if unbatched else x), w, b, kw


@FUZZ
@given(conv_cases())
def test_fuzz_conv_transpose2d(case):
    x, w, b, kw = case
    dtype = x.dtype
    try:
        F.conv_transpose2d(x.double(), w.double(), None if b is None else b.double(), **kw)
    except RuntimeError:  # e.g. zero input channels: PyTorch rejects, so must tconv
        with pytest.raises(RuntimeError):
            tconv.conv_transpose2d(x, w, b, **kw)
        return
    leaves = [x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()]
    if b is not None:
        leaves.append(b.detach().clone().requires_grad_())
    ours = tconv.conv_transpose2d(leaves[0], leaves[1], leaves[2] if b is not None else None, **kw)

    ref_leaves = [t.detach().double().requires_grad_() for t in leaves]
    ref = F.conv_transpose2d(ref_leaves[0], ref_leaves[1], ref_leaves[2] if b is not None else None, **kw)
    assert ours.shape == ref.shape and ours.dtype == dtype
    if dtype in (torch.float64, torch.float32) and x.dim() == 4 and min(x.shape) > 1 \
            and min(ours.shape) > 1:  # memory format is ambiguous with size-0/1 dims
        want = F.conv_transpose2d(x, w, b, **kw)
        assert ours.is_contiguous(memory_format=torch.channels_last) == \
            want.is_contiguous(memory_format=torch.channels_last)
    # magnitude of what enters each output: |x| (*) |w| + |b|
    mag = F.conv_transpose2d(ref_leaves[0].detach().abs(), ref_leaves[1].detach().abs(),
                             ref_leaves[2].detach().abs() if b is not None else None, **kw)
    rtol = RTOL[dtype]
    assert ((ours.double() - ref).abs() <= rtol * (mag + 1e-3) * 4).all()
    if ref.numel() == 0 or dtype != torch.float64:
        return
    go = torch.randn_like(ref)
    for a, e in zip(torch.autograd.grad(ours, leaves, go), torch.autograd.grad(ref, ref_leaves, go)):
        assert a.shape == e.shape
        torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-9)


# ---- interpolate ---------------------------------------------------------------------------------------

@st.composite
def interpolate_cases(draw):
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    hw = (draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    if draw(st.booleans()):
        size = (draw(st.integers(1, 20)), draw(st.integers(1, 20)))
        sizing = dict(size=size if draw(st.booleans()) or size[0] != size[1] else size[0])
    else:
        factors = st.floats(0.15, 4.0, allow_nan=False)
        sf = tuple(max(draw(factors), 1.0 / h + 1e-3) for h in hw)
        sizing = dict(scale_factor=sf if draw(st.booleans()) else max(sf),
                      recompute_scale_factor=draw(st.sampled_from([None, False, True])))
    dtype = draw(st.sampled_from(DTYPES))
    x = _tensor(draw, (draw(st.integers(0, 3)), draw(st.integers(1, 4)), *hw), dtype, gen)
    return x, dict(mode=draw(st.sampled_from(["bilinear", "bicubic"])),
                   align_corners=draw(st.sampled_from([None, False, True])),
                   antialias=draw(st.booleans()), **sizing)


@FUZZ
@given(interpolate_cases())
def test_fuzz_interpolate(case):
    x, kw = case
    dtype = x.dtype
    x64 = x.detach().double()
    try:
        ref = pytorch_forward(x64, kw, F.interpolate(x64, **kw))
    except (RuntimeError, ValueError) as e:  # e.g. a factor that truncates an axis to 0
        with pytest.raises(type(e)):
            tconv.interpolate(x, **kw)
        return
    leaf = x.detach().clone().requires_grad_()
    ours = tconv.interpolate(leaf, **kw)
    assert ours.shape == ref.shape and ours.dtype == dtype
    if dtype in (torch.float64, torch.float32) and min(x.shape) > 1 and min(ours.shape) > 1:
        want = F.interpolate(x, **kw)
        assert ours.is_contiguous(memory_format=torch.channels_last) == \
            want.is_contiguous(memory_format=torch.channels_last)
    # bicubic weights reach 1.25 in absolute sum (and antialias filters stay below)
    scale = (x64.abs().amax().item() if x64.numel() else 0.0) * 1.5 + 1e-3
    assert ((ours.double() - ref).abs() <= RTOL[dtype] * scale * 4).all()
    if ref.numel() == 0 or dtype != torch.float64:
        return
    go = torch.randn_like(ref)
    (g_ours,) = torch.autograd.grad(ours, leaf, go)
    if pytorch_backward_is_not_its_forwards_gradient(x64, ref.shape[2:], kw):
        g_ref = adjoint_of_pytorch_forward(x64, go, kw)
    else:
        ref_leaf = x64.clone().requires_grad_()
        (g_ref,) = torch.autograd.grad(F.interpolate(ref_leaf, **kw), ref_leaf, go)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-9, atol=1e-9)


# ---- gram_matrix -----------------------------------------------------------------------------------------

@st.composite
def gram_cases(draw):
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    dtype = draw(st.sampled_from(DTYPES))
    shape = (draw(st.integers(0, 3)), draw(st.integers(0, 40)), draw(st.integers(0, 12)),
             draw(st.integers(0, 12)))
    x = _tensor(draw, shape, dtype, gen)
    form = draw(st.sampled_from(["4d", "3d", "2d"]))
    if form == "3d" and shape[0] >= 1:
        x = x[0]
    elif form == "2d" and shape[0] >= 1:
        x = x[0].flatten(1) if draw(st.booleans()) or shape[2] == 0 else x[0, :, 0]  # or a strided (C, W)
    return x, draw(st.booleans())


@FUZZ
@given(gram_cases())
def test_fuzz_gram_matrix(case):
    x, normalize = case
    dtype = x.dtype
    leaf = x.detach().clone().requires_grad_()
    g = tconv.gram_matrix(leaf, normalize)
    f = x.detach().double()
    f = f.flatten(-2) if f.dim() >= 3 else f
    count = f.shape[-2] * f.shape[-1]
    s = 1.0 / count if normalize and count else 1.0
    ref = f @ f.mT * s
    assert g.shape == ref.shape and g.dtype == dtype
    assert torch.equal(g, g.mT)
    mag = f.abs() @ f.abs().mT * s
    assert ((g.double() - ref).abs() <= RTOL[dtype] * (mag + 1e-6) * 4).all()
    if dtype != torch.float64 or x.numel() == 0:
        return
    go = torch.randn_like(ref)
    (dx,) = torch.autograd.grad(g, leaf, go)
    ref_leaf = x.detach().clone().requires_grad_()
    rf = ref_leaf.flatten(-2) if ref_leaf.dim() >= 3 else ref_leaf
    (dref,) = torch.autograd.grad(rf @ rf.mT * s, ref_leaf, go)
    torch.testing.assert_close(dx, dref, rtol=1e-9, atol=1e-9)
