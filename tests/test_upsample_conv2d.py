"""tconv.upsample_conv2d and tconv.UpsampleConv2d (tconv/functional.py, tconv/modules.py): the fused
resize-convolution equals PyTorch's pair F.conv2d(F.interpolate(x, mode='nearest'), ...) to float
rounding over a grid of kernels, paddings, factors, groups, sizes and layouts, in every dtype; its
gradients in every autograd mode (float64 gradcheck / gradgradcheck); the weight fold; the unfused
fallbacks (bilinear, non-integer factors, strides, padding modes) and the errors they raise; the
module's Conv2d state_dict and torch.compile. Conversion of models into it is test_convert.py's."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tconv
from tconv.functional import fold_upsample_weight

from _support import check_compile_and_export, full_gradcheck


def pair_reference(x, w, b, scale_factor, padding=0, groups=1, mode="nearest", stride=1, dilation=1):
    """PyTorch's unfused pair (3-D input as one image, like tconv)."""
    unbatched = x.dim() == 3
    up = F.interpolate(x.unsqueeze(0) if unbatched else x, scale_factor=scale_factor, mode=mode)
    out = F.conv2d(up, w, b, stride, padding, dilation, groups)
    return out.squeeze(0) if unbatched else out


def _data(n, cin, cout, hw, k, groups, dtype, bias=True):
    kh, kw = (k, k) if isinstance(k, int) else k
    x = torch.randn(n, cin, *hw, dtype=torch.float64).to(dtype)
    w = torch.randn(cout, cin // groups, kh, kw, dtype=torch.float64).to(dtype)
    b = torch.randn(cout, dtype=torch.float64).to(dtype) if bias else None
    return x, w, b


# ---- numerics against the pair ------------------------------------------------------------------------

GRID = [(k, p, s) for k in range(1, 6) for p in range(0, k + 1) for s in (1, 2, 3)]


@pytest.mark.parametrize("k,p,s", GRID, ids=[f"k{k}p{p}s{s}" for k, p, s in GRID])
def test_grid_float64(k, p, s):
    for groups, hw in ((1, (5, 7)), (2, (4, 3)), (4, (1, 2))):
        if s * min(hw) + 2 * p - k + 1 < 1:
            continue  # an empty output: the pair's error (test_errors_are_the_pairs)
        x, w, b = _data(2, 4, 8, hw, k, groups, torch.float64)
        got = tconv.upsample_conv2d(x, w, b, scale_factor=s, padding=p, groups=groups)
        want = pair_reference(x, w, b, s, p, groups)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("padding", ["same", "valid", (0, 2), (3, 1)])
@pytest.mark.parametrize("k,s", [((2, 4), (2, 3)), ((3, 2), 2), ((4, 1), (1, 2)), (5, (3, 1))])
def test_rectangular_kernels_factors_and_string_paddings(k, s, padding):
    x, w, b = _data(2, 3, 5, (6, 5), k, 1, torch.float64)
    got = tconv.upsample_conv2d(x, w, b, scale_factor=s, padding=padding)
    torch.testing.assert_close(got, pair_reference(x, w, b, s, padding), rtol=1e-12, atol=1e-12)


def test_fold_is_the_stride_s_transposed_convolution():
    """s=2, k=3, p=1: a 4x4 stride-2 padding-1 transposed convolution with the folded weight."""
    x, w, b = _data(2, 3, 4, (6, 5), 3, 1, torch.float64)
    folded = fold_upsample_weight(w, (2, 2))
    assert folded.shape == (3, 4, 4, 4)
    # one axis by hand: W[kk] = v[kk-1] + v[kk], v the flipped kernel
    v = w.flip((2, 3))
    row = torch.stack([v[:, :, 0], v[:, :, 0] + v[:, :, 1], v[:, :, 1] + v[:, :, 2], v[:, :, 2]], 2)
    col = torch.stack([row[..., 0], row[..., 0] + row[..., 1], row[..., 1] + row[..., 2], row[..., 2]], 3)
    torch.testing.assert_close(folded, col.transpose(0, 1), rtol=0, atol=1e-15)
    got = F.conv_transpose2d(x, folded, b, stride=2, padding=1)
    torch.testing.assert_close(got, pair_reference(x, w, b, 2, 1), rtol=0, atol=1e-13)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2), (torch.float16, 3e-3)])
@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
def test_dtypes_and_layouts(dtype, tol, channels_last):
    for k, p, s, groups in ((3, 1, 2, 1), (4, 2, 2, 2), (5, 2, 3, 1), (1, 0, 2, 4)):
        x, w, b = _data(3, 8, 8, (9, 6), k, groups, dtype)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        got = tconv.upsample_conv2d(x, w, b, scale_factor=s, padding=p, groups=groups)
        want = pair_reference(x.double(), w.double(), b.double(), s, p, groups)
        assert got.dtype == dtype
        if channels_last:
            assert got.is_contiguous(memory_format=torch.channels_last)
        scale = want.abs().max()
        torch.testing.assert_close(got.double() / scale, want / scale, rtol=0, atol=tol)


def test_unbatched_no_bias_and_nearest_exact():
    x, w, _ = _data(1, 4, 6, (5, 4), 3, 2, torch.float64)
    got = tconv.upsample_conv2d(x[0], w, None, scale_factor=2, padding=1, groups=2)
    torch.testing.assert_close(got, pair_reference(x, w, None, 2, 1, 2)[0], rtol=1e-12, atol=1e-12)
    got = tconv.upsample_conv2d(x, w, None, scale_factor=3.0, mode="nearest-exact", padding=1, groups=2)
    torch.testing.assert_close(got, pair_reference(x, w, None, 3, 1, 2, mode="nearest-exact"),
                               rtol=1e-12, atol=1e-12)


def test_empty_batch():
    x, w, b = _data(0, 2, 3, (4, 4), 3, 1, torch.float32)
    assert tconv.upsample_conv2d(x, w, b, padding=1).shape == (0, 3, 8, 8)


# ---- the unfused fallbacks -----------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [dict(scale_factor=1.5), dict(stride=2, padding=1), dict(dilation=2, padding=2),
                                    dict(scale_factor=2, mode="bicubic", padding=1),
                                    dict(scale_factor=(2, 1.5), padding=1)],
                         ids=["non_integer", "stride", "dilation", "bicubic", "mixed_factors"])
def test_fallbacks_equal_the_pair(kwargs):
    x, w, b = _data(2, 3, 4, (5, 6), 3, 1, torch.float64)
    kw = dict(kwargs)
    s, mode = kw.pop("scale_factor", 2), kw.pop("mode", "nearest")
    got = tconv.upsample_conv2d(x, w, b, scale_factor=s, mode=mode, **kw)
    want = pair_reference(x, w, b, s, mode=mode, **kw)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_bilinear_runs_tconv_interpolate_then_conv():
    x, w, b = _data(2, 3, 4, (5, 6), 3, 1, torch.float64)
    got = tconv.upsample_conv2d(x, w, b, scale_factor=2, mode="bilinear", padding=1)
    torch.testing.assert_close(got, pair_reference(x, w, b, 2, 1, mode="bilinear"), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("padding_mode", ["reflect", "replicate", "circular"])
def test_module_padding_modes_fall_back_like_conv2d(padding_mode):
    layer = tconv.UpsampleConv2d(3, 4, 3, padding=1, padding_mode=padding_mode).double()
    conv = nn.Conv2d(3, 4, 3, padding=1, padding_mode=padding_mode).double()
    conv.load_state_dict(layer.state_dict())
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64)
    torch.testing.assert_close(layer(x), conv(F.interpolate(x, scale_factor=2)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("args", [
    ((2, 5, 4, 4), (4, 3, 3, 3), 1, 0),    # channels do not match the weight
    ((2, 3, 1, 1), (4, 3, 5, 5), 1, 0),    # output would be empty
    ((2, 6, 4, 4), (5, 3, 3, 3), 2, 1),    # out_channels not divisible by groups
])
def test_errors_are_the_pairs(args):
    xs, ws, groups, padding = args
    x, w = torch.randn(xs), torch.randn(ws)
    with pytest.raises(RuntimeError) as want:
        pair_reference(x, w, None, 2, padding, groups)
    with pytest.raises(RuntimeError) as got:
        tconv.upsample_conv2d(x, w, None, scale_factor=2, padding=padding, groups=groups)
    assert str(got.value) == str(want.value)


# ---- gradients ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("k,p,s,groups", [(3, 1, 2, 1), (2, 0, 3, 2), (4, 4, 2, 1), (3, "same", (1, 2), 1)])
def test_gradcheck_every_mode(k, p, s, groups):
    x, w, b = _data(1, 2, 2, (3, 2), k, groups, torch.float64)
    args = (x.requires_grad_(), w.requires_grad_(), b.requires_grad_())
    full_gradcheck(lambda x, w, b: tconv.upsample_conv2d(x, w, b, scale_factor=s, padding=p, groups=groups), args)


def test_gradients_match_the_pair_float32():
    x, w, b = _data(2, 4, 6, (7, 5), 3, 2, torch.float32)
    gout = torch.randn(2, 6, 14, 10)
    got = torch.autograd.grad(tconv.upsample_conv2d(x.requires_grad_(), w.requires_grad_(), b.requires_grad_(),
                                                    padding=1, groups=2), (x, w, b), gout)
    want = torch.autograd.grad(pair_reference(x, w, b, 2, 1, 2), (x, w, b), gout)
    for a, c in zip(got, want):
        torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-4)


# ---- the module -----------------------------------------------------------------------------------------

def test_module_is_a_conv2d_with_its_state_dict():
    torch.manual_seed(1)
    layer = tconv.UpsampleConv2d(4, 6, 3, scale_factor=2, padding=1, groups=2)
    torch.manual_seed(1)
    conv = nn.Conv2d(4, 6, 3, padding=1, groups=2)
    assert isinstance(layer, nn.Conv2d)
    assert list(layer.state_dict()) == list(conv.state_dict())
    for a, c in zip(layer.state_dict().values(), conv.state_dict().values()):
        assert torch.equal(a, c)  # Conv2d's initialisation, same RNG draws
    other = nn.Conv2d(4, 6, 3, padding=1, groups=2)
    layer.load_state_dict(other.state_dict())
    conv.load_state_dict(layer.state_dict())
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(layer(x), other(F.interpolate(x, scale_factor=2)), rtol=1e-5, atol=1e-5)
    assert "scale_factor=2, mode='nearest'" in repr(layer)


def test_module_compiles_and_exports():
    layer = tconv.UpsampleConv2d(4, 4, 3, padding=1)
    x = torch.randn(2, 4, 6, 6, requires_grad=True)
    check_compile_and_export(layer, x)

