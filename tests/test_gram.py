"""The Gram matrix's numerics, gradients and opcheck on the CPU: tconv.gram_matrix / style_loss /
GramMatrix against a float64 X @ X^T reference (shapes, layouts, schedules, hypothesis, half
precision), gradcheck in every mode, opcheck and the module. Errors, NaN/Inf, empty tensors and
determinism are in test_robustness.py; compile, export, autocast and DDP in test_ecosystem.py; every
autograd mode in test_autograd_modes.py."""
import pytest
import torch
from hypothesis import given, strategies as st

import tconv
from _support import (GRAM_SHAPES, GRAM_TOL, full_gradcheck, gram_layout, gram_reference,
                      gram_reference_differentiable)

ops = torch.ops.tconv


def _check(x, normalize=True):
    """Forward equals the reference and is exactly symmetric; the gradient equals the reference's."""
    dtype = x.dtype
    rtol, atol = GRAM_TOL[dtype]
    leaf = x.detach().clone().requires_grad_()
    g = tconv.gram_matrix(leaf, normalize)
    ref = gram_reference(x, normalize)
    assert g.shape == ref.shape and g.dtype == dtype
    assert torch.equal(g, g.mT)
    scale = ref.abs().max().item() or 1.0
    torch.testing.assert_close(g.double(), ref, rtol=rtol, atol=atol * scale)
    if x.numel() == 0:
        return
    go = torch.randn_like(ref)
    (dx,) = torch.autograd.grad(g, leaf, go.to(dtype))
    ref_leaf = x.detach().double().requires_grad_()
    (dref,) = torch.autograd.grad(gram_reference_differentiable(ref_leaf, normalize), ref_leaf, go)
    assert dx.shape == x.shape
    torch.testing.assert_close(dx.double(), dref, rtol=rtol * 10,
                               atol=atol * 10 * (dref.abs().max().item() or 1.0))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "noncontiguous"])
@pytest.mark.parametrize("shape", GRAM_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_grid_matches_reference(shape, layout, dtype):
    _check(gram_layout(torch.randn(*shape, dtype=dtype), layout))


@pytest.mark.parametrize("normalize", [True, False])
def test_normalize(normalize):
    _check(torch.randn(2, 20, 6, 5, dtype=torch.float64), normalize)


@pytest.mark.parametrize("shape", [(5, 4, 6), (5, 24), (1, 1), (40, 3)])
def test_unbatched_image_and_feature_matrix(shape):
    x = torch.randn(*shape, dtype=torch.float64)
    assert tconv.gram_matrix(x).shape == (shape[0], shape[0])
    _check(x)


def test_three_dims_mean_one_image():
    """3-D is (C, H, W); a batch of (C, L) matrices goes in as (N, C, L, 1)."""
    x = torch.randn(3, 4, 5, dtype=torch.float64)
    torch.testing.assert_close(tconv.gram_matrix(x), gram_reference(x))  # (3, 3), normalized by 3*4*5
    batched = tconv.gram_matrix(x.unsqueeze(-1))
    assert batched.shape == (3, 4, 4)
    torch.testing.assert_close(batched, x @ x.mT / 20)


def test_large_length_and_large_channels():
    _check(torch.randn(1, 8, 256, 256))   # L split into segments, partial sums added in order
    _check(torch.randn(2, 512, 4, 4))      # many tiles, tiny L
    _check(torch.randn(3, 512, 32, 32))    # short L, up to 2 MiB packed per item: tiles, not segments


# Packed copies of these exceed the kernel's in-cache limit (2 MiB): the segmented schedule.
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "noncontiguous"])
def test_long_length_schedule(layout, dtype):
    _check(gram_layout(torch.randn(2, 5, 200, 200, dtype=dtype), layout))
    _check(gram_layout(torch.randn(1, 33, 130, 170, dtype=dtype), layout))


@st.composite
def gram_inputs(draw):
    n = draw(st.integers(1, 3))
    c = draw(st.integers(1, 40))
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    layout = draw(st.sampled_from(["contiguous", "channels_last", "noncontiguous"]))
    batched = draw(st.booleans())
    return (n, c, h, w) if batched else (c, h, w), layout, draw(st.booleans())


@given(gram_inputs())
def test_hypothesis_matches_reference(cfg):
    shape, layout, normalize = cfg
    x = torch.randn(*shape, dtype=torch.float64)
    _check(gram_layout(x, layout) if x.dim() == 4 else x, normalize)


@pytest.mark.parametrize("shape", [(2, 40, 7, 9), (2, 5, 200, 200)])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_accumulates_in_float32(dtype, shape):
    x = torch.randn(*shape).to(dtype)
    g = tconv.gram_matrix(x)
    assert g.dtype == dtype and torch.equal(g, g.mT)
    ref = gram_reference(x.float()).float().to(dtype)  # exact sums of the rounded inputs, rounded once
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(g.float(), ref.float(), rtol=2 * eps, atol=2 * eps * ref.abs().max().item())
    leaf = x.clone().requires_grad_()
    go = torch.randn(shape[0], shape[1], shape[1]).to(dtype)
    (dx,) = torch.autograd.grad(tconv.gram_matrix(leaf), leaf, go)
    xr = x.double().requires_grad_()
    (dref,) = torch.autograd.grad(gram_reference_differentiable(xr, True), xr, go.double())
    assert dx.dtype == dtype
    torch.testing.assert_close(dx.float(), dref.to(dtype).float(), rtol=4 * eps,
                               atol=4 * eps * dref.abs().max().item())


def test_float16_raw_sums_beyond_65504_do_not_overflow():
    """Values ~30: raw sums of 64 * 64 positions are ~3.7e6, far past float16's 65504; the
    normalized Gram (~225) fits. bmm in float16 overflows to inf (the NaN style-loss bug)."""
    x = torch.full((1, 4, 64, 64), 30.0).add_(torch.rand(1, 4, 64, 64)).half()
    xf = x.flatten(2)
    assert torch.isinf(torch.bmm(xf, xf.mT)).any()
    g = tconv.gram_matrix(x)
    assert torch.isfinite(g).all()
    torch.testing.assert_close(g.float(), gram_reference(x.float()).float(), rtol=2e-3, atol=0)
    loss = tconv.style_loss(x.clone().requires_grad_(), g)
    assert torch.isfinite(loss)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_gradcheck_and_gradgradcheck(layout, normalize):
    x = gram_layout(torch.randn(2, 5, 3, 4, dtype=torch.float64), layout).requires_grad_()
    fn = lambda x: tconv.gram_matrix(x, normalize)
    full_gradcheck(fn, (x,))


def test_backward_op_gradcheck():
    g = torch.randn(2, 5, 5, dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, 5, 7, dtype=torch.float64, requires_grad=True)
    fn = lambda g, x: ops.gram_matrix_backward(g, x, True)
    full_gradcheck(fn, (g, x))


def _opcheck_samples():
    x = torch.randn(2, 19, 30)
    yield ops.gram_matrix, (x, True)
    yield ops.gram_matrix, (x.mT.contiguous().mT, False)  # channels-last feature matrix
    yield ops.gram_matrix, (torch.randn(1, 3, 5, dtype=torch.float64), True)
    yield ops.gram_matrix_backward, (torch.randn(2, 19, 19), x, True)
    yield ops.gram_matrix_backward, (torch.randn(2, 19, 19), x.mT.contiguous().mT, False)


@pytest.mark.parametrize("op,args", list(_opcheck_samples()), ids=lambda v: getattr(v, "__name__", ""))
def test_opcheck(op, args):
    args = tuple(a.clone().requires_grad_() if isinstance(a, torch.Tensor) else a for a in args)
    torch.library.opcheck(op, args)


def test_style_loss_is_the_d2l_loss():
    x = torch.randn(1, 8, 6, 6, dtype=torch.float64, requires_grad=True)
    target = gram_reference(torch.randn(1, 8, 6, 6, dtype=torch.float64)).requires_grad_()
    loss = tconv.style_loss(x, target)
    ref = torch.square(gram_reference_differentiable(x, True) - target.detach()).mean()
    torch.testing.assert_close(loss, ref)
    loss.backward()
    assert target.grad is None  # the style target is a constant, as in D2L
    assert torch.autograd.gradcheck(lambda x: tconv.style_loss(x, target), (x,))


def test_module():
    module = tconv.GramMatrix()
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(module(x), gram_reference(x))
    torch.testing.assert_close(tconv.GramMatrix(normalize=False)(x), gram_reference(x, False))
    assert "normalize=True" in repr(module)
    assert list(module.parameters()) == []


# ---- bad input: RuntimeError, like PyTorch's ops -------------------------------------------------------
