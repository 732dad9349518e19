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

from _support import at_thread_counts, check_compile_and_export, full_gradcheck, run_in_python_threads


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
def test_grid_float64(k, p, s, monkeypatch):
    monkeypatch.setattr(tconv.functional, "_upsample_then_conv", None)  # the fused path must run
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


def test_bilinear_non_integer_factor_runs_tconv_interpolate_then_conv():
    x, w, b = _data(2, 3, 4, (5, 6), 3, 1, torch.float64)
    got = tconv.upsample_conv2d(x, w, b, scale_factor=1.5, mode="bilinear", padding=1)
    torch.testing.assert_close(got, pair_reference(x, w, b, 1.5, 1, mode="bilinear"), rtol=1e-12, atol=1e-12)


# ---- bilinear / bicubic: channel mixing first (tconv::upsample_taps2d) ------------------------------------

MIXED_GRID = [(mode, k, p, s) for mode in ("bilinear", "bicubic") for k in (1, 2, 3, 5) for p in range(0, k + 1)
              for s in (1, 2, 3)]


@pytest.mark.parametrize("path", ["inference", "autograd"])
@pytest.mark.parametrize("mode,k,p,s", MIXED_GRID, ids=[f"{m}-k{k}p{p}s{s}" for m, k, p, s in MIXED_GRID])
def test_mixed_grid_float64(mode, k, p, s, path, monkeypatch):
    """Every edge case of the clamped source indices: images of 1 and 2 pixels, kernels wider than
    the upsampled image with large paddings, groups. Both paths: the inference kernel (nothing to
    differentiate, groups 1) and the GEMM + tconv::upsample_taps2d composite."""
    monkeypatch.setattr(tconv.functional, "_upsample_then_conv", None)  # the fused path must run
    for groups, hw in ((1, (5, 7)), (2, (4, 3)), (4, (1, 2)), (1, (2, 1))):
        if s * min(hw) + 2 * p - k + 1 < 1:
            continue
        x, w, b = _data(2, 4, 8, hw, k, groups, torch.float64)
        x.requires_grad_(path == "autograd")
        got = tconv.upsample_conv2d(x, w, b, scale_factor=s, mode=mode, padding=p, groups=groups)
        want = pair_reference(x, w, b, s, p, groups, mode=mode)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("padding", ["same", "valid", (0, 2), (3, 1)])
@pytest.mark.parametrize("k,s", [((2, 4), (2, 3)), ((3, 2), 2), ((4, 1), (1, 2))])
def test_mixed_rectangular_kernels_factors_and_string_paddings(k, s, padding, mode):
    x, w, b = _data(2, 3, 5, (6, 5), k, 1, torch.float64)
    got = tconv.upsample_conv2d(x, w, b, scale_factor=s, mode=mode, padding=padding)
    torch.testing.assert_close(got, pair_reference(x, w, b, s, padding, mode=mode), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.bfloat16, 5e-2), (torch.float16, 5e-3)])
@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
def test_mixed_dtypes_and_layouts(dtype, tol, channels_last):
    for mode, k, p, s, groups in (("bilinear", 3, 1, 2, 1), ("bicubic", 3, 1, 2, 2), ("bilinear", 4, 2, 3, 1)):
        x, w, b = _data(3, 8, 8, (9, 6), k, groups, dtype)
        w = w / (k * 8 ** 0.5)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        got = tconv.upsample_conv2d(x, w, b, scale_factor=s, mode=mode, padding=p, groups=groups)
        want = pair_reference(x.double(), w.double(), b.double(), s, p, groups, mode=mode)
        assert got.dtype == dtype and got.shape == want.shape
        assert got.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("mode,k,p,s,hw", [("bilinear", 3, 1, 2, (43, 64)), ("bicubic", 5, 2, 2, (47, 40)),
                                           ("bilinear", 2, 0, 3, (150, 9)), ("bicubic", 3, 3, 1, (30, 70))])
def test_mixed_inference_window_over_many_bands(mode, k, p, s, hw, channels_last):
    """Tall images: the inference kernel's sliding window of tap rows is refilled and shifted many
    times (bands of at least ceil(512 / W) input rows: 3 to 6 bands here), with 1, 2 and 3 channel
    blocks, and one block of 48 channels (a batch of 4, either layout)."""
    for n, cout in ((2, 8), (2, 40), (2, 136), (4, 48)):
        x, w, b = _data(n, 6, cout, hw, k, 1, torch.float64)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            got = tconv.upsample_conv2d(x, w, b, scale_factor=s, mode=mode, padding=p)
        torch.testing.assert_close(got, pair_reference(x, w, b, s, p, mode=mode), rtol=1e-12, atol=1e-12)
        assert got.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
def test_mixed_inference_float32_bands_sized_for_onednn(channels_last):
    """float32 bands are also sized so that each GEMM has oneDNN's minimum work (kOneDnnMinWork):
    32 -> 64 channels on 100x16 images give bands of 29 rows, 4 per image, in one block of 64
    channels (a batch of 4). Against the float64 pair, and the same bits for 1 and 2 threads."""
    x, w, b = _data(4, 32, 64, (100, 16), 3, 1, torch.float64)
    w = w / 17
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    want = pair_reference(x, w, b, 2, 1, mode="nearest")

    def run():
        with torch.no_grad():
            return tconv.upsample_conv2d(x.float(), w.float(), b.float(), scale_factor=2, mode="nearest", padding=1)

    one, two = at_thread_counts(run)
    assert torch.equal(one, two)
    torch.testing.assert_close(one.double(), want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


def test_mixed_inference_opcheck():
    x, w, b = _data(2, 3, 4, (5, 6), 3, 1, torch.float64)
    for args in ((x, w, b, [2, 2], [1, 1, 1, 1], "bilinear"), (x, w, None, [2, 3], [0, 2, 1, 0], "bicubic")):
        torch.library.opcheck(torch.ops.tconv._upsample_conv2d_mixed, args,
                              test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))


def test_mixed_unbatched_no_bias_and_empty_batch():
    x, w, _ = _data(1, 3, 4, (5, 4), 3, 1, torch.float64)
    got = tconv.upsample_conv2d(x[0], w, None, scale_factor=2, mode="bilinear", padding=1)
    torch.testing.assert_close(got, pair_reference(x, w, None, 2, 1, mode="bilinear")[0], rtol=1e-12, atol=1e-12)
    empty = tconv.upsample_conv2d(x[:0], w, None, scale_factor=2, mode="bilinear", padding=1)
    assert empty.shape == (0, 4, 10, 8)


@pytest.mark.parametrize("mode,k,p,s,groups", [("bilinear", 3, 1, 2, 1), ("bicubic", 2, 0, 3, 2),
                                               ("bilinear", 4, 4, 2, 1), ("bicubic", 3, "same", (1, 2), 1)])
def test_mixed_gradcheck_every_mode(mode, k, p, s, groups):
    x, w, b = _data(1, 2, 2, (3, 2), k, groups, torch.float64)
    args = (x.requires_grad_(), w.requires_grad_(), b.requires_grad_())
    full_gradcheck(lambda x, w, b: tconv.upsample_conv2d(x, w, b, scale_factor=s, mode=mode, padding=p,
                                                         groups=groups), args)


def test_mixed_gradients_match_the_pair_float32():
    x, w, b = _data(2, 4, 6, (7, 5), 3, 2, torch.float32)
    gout = torch.randn(2, 6, 14, 10)
    got = torch.autograd.grad(tconv.upsample_conv2d(x.requires_grad_(), w.requires_grad_(), b.requires_grad_(),
                                                    mode="bilinear", padding=1, groups=2), (x, w, b), gout)
    want = torch.autograd.grad(pair_reference(x, w, b, 2, 1, 2, mode="bilinear"), (x, w, b), gout)
    for a, c in zip(got, want):
        torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", ["nearest", "bilinear", "bicubic"])
def test_mixed_channels_last_gradients_match_the_pair(mode):
    """A channels_last input runs the composite in pixel-major taps end to end."""
    x, w, b = _data(2, 6, 5, (7, 6), 3, 1, torch.float64)
    x = x.contiguous(memory_format=torch.channels_last)
    gout = torch.randn(2, 5, 14, 12, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    got = tconv.upsample_conv2d(*leaves, mode=mode, padding=1)
    assert got.is_contiguous(memory_format=torch.channels_last)
    grads = torch.autograd.grad(got, leaves, gout)
    ref = [t.clone().requires_grad_() for t in (x, w, b)]
    want = pair_reference(*ref, 2, 1, mode=mode)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    for a, c in zip(grads, torch.autograd.grad(want, ref, gout)):
        torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-12)
    small = (x[:1, :2, :4, :3].contiguous(memory_format=torch.channels_last), w[:2, :2].clone(), b[:2].clone())
    full_gradcheck(lambda x, w, b: tconv.upsample_conv2d(x, w, b, mode=mode, padding=1),
                   tuple(t.requires_grad_() for t in small))


@pytest.mark.parametrize("mode", ["nearest", "bilinear", "bicubic"])
def test_mixed_float32_channels_last_channel_blocks(mode):
    """float32 channels_last: the stencils sum blocks of 16 to 64 channels in vector registers
    (sum_lanes; on AVX-512 up to four registers per entry) and the rest lane by lane: channel counts
    of one to three blocks with remainders, forward (inference and autograd) and every gradient
    against the float64 pair, and the same bits for 1 and 2 threads."""
    for cout in (16, 40, 64, 100, 136):
        x, w, b = _data(2, 24, cout, (9, 7), 3, 1, torch.float64)
        w = w / 15
        x = x.contiguous(memory_format=torch.channels_last)
        gout = torch.randn(2, cout, 18, 14, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
        ref = [t.clone().requires_grad_() for t in (x, w, b)]
        want = pair_reference(*ref, 2, 1, mode=mode)
        want_grads = torch.autograd.grad(want, ref, gout)

        def run():
            leaves = [t.float().requires_grad_() for t in (x, w, b)]
            y = tconv.upsample_conv2d(*leaves, mode=mode, padding=1)
            with torch.no_grad():
                inference = tconv.upsample_conv2d(*(t.detach() for t in leaves), mode=mode, padding=1)
            return (y.detach(), inference, *torch.autograd.grad(y, leaves, gout.float()))

        one, two = at_thread_counts(run)
        for a, c, e in zip(one, two, (want.detach(), want.detach(), *want_grads)):
            assert torch.equal(a, c)
            torch.testing.assert_close(a.double(), e, rtol=1e-4, atol=1e-4 * e.abs().max().item())


def _taps_args(mode="bilinear"):
    g = torch.Generator().manual_seed(3)
    taps = torch.randn(2, 6, 3, 4, 5, generator=g, dtype=torch.float64)
    return taps, torch.randn(3, generator=g, dtype=torch.float64), [2, 3], [2, 3], [1, 0, 2, 1], mode


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_upsample_taps2d_opcheck(mode):
    taps, bias, kernel, scale, pad, mode = _taps_args(mode)
    torch.library.opcheck(torch.ops.tconv.upsample_taps2d, (taps.requires_grad_(), bias, kernel, scale, pad, mode))
    torch.library.opcheck(torch.ops.tconv.upsample_taps2d, (taps, None, kernel, scale, pad, mode))
    out = torch.ops.tconv.upsample_taps2d(taps, None, kernel, scale, pad, mode)
    torch.library.opcheck(torch.ops.tconv.upsample_taps2d_backward,
                          (torch.randn_like(out).requires_grad_(), kernel, scale, pad, mode, [4, 5]))


def test_upsample_taps2d_channels_last_output_and_strided_gradients():
    """channels_last=True changes the output's memory format only; the backward reads its gradient
    through its strides (channels_last, expanded, a slice) with the same result."""
    taps, bias, kernel, scale, pad, mode = _taps_args("bicubic")
    op = torch.ops.tconv.upsample_taps2d
    planar = op(taps, bias, kernel, scale, pad, mode)
    last = op(taps, bias, kernel, scale, pad, mode, True)
    assert planar.is_contiguous() and last.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(planar, last)
    torch.library.opcheck(op, (taps.requires_grad_(), bias, kernel, scale, pad, mode, True))
    back = torch.ops.tconv.upsample_taps2d_backward
    g = torch.randn(planar.shape, dtype=torch.float64)
    want = back(g, kernel, scale, pad, mode, [4, 5])
    wide = torch.randn(*planar.shape[:3], planar.shape[3] * 2, dtype=torch.float64)
    wide[..., ::2] = g
    # a channels_last gradient: pixel-major taps (N, H, W, kh kw, C) seen as (N, kh kw, C, H, W)
    pixel = back(g.contiguous(memory_format=torch.channels_last), kernel, scale, pad, mode, [4, 5])
    assert pixel.permute(0, 3, 4, 1, 2).is_contiguous() and pixel.shape == want.shape
    torch.testing.assert_close(pixel, want, rtol=1e-14, atol=1e-14)
    torch.library.opcheck(back, (g.contiguous(memory_format=torch.channels_last).requires_grad_(), kernel, scale,
                                 pad, mode, [4, 5]))
    # pixel-major taps and a channels_last output: the same values
    last_px = op(pixel.detach(), bias.detach(), kernel, [1, 1], [1, 1, 1, 1], "bilinear", True)
    planar_px = op(pixel.detach().contiguous(), bias.detach(), kernel, [1, 1], [1, 1, 1, 1], "bilinear")
    assert last_px.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(last_px, planar_px, rtol=1e-14, atol=1e-14)
    assert torch.equal(back(wide[..., ::2], kernel, scale, pad, mode, [4, 5]), want)
    expanded = g[:1].expand(2, *g.shape[1:])
    assert torch.equal(back(expanded, kernel, scale, pad, mode, [4, 5]),
                       back(expanded.contiguous(), kernel, scale, pad, mode, [4, 5]))


def test_upsample_taps2d_vmap_and_batched_bias():
    taps, bias, kernel, scale, pad, mode = _taps_args()
    tb, bb = torch.stack([taps, 2 * taps]), torch.stack([bias, -bias])
    op = torch.ops.tconv.upsample_taps2d
    got = torch.func.vmap(lambda t, b: op(t, b, kernel, scale, pad, mode))(tb, bb)
    for i in range(2):  # a per-sample bias is added after the call: the last bit may differ
        torch.testing.assert_close(got[i], op(tb[i], bb[i], kernel, scale, pad, mode), rtol=1e-14, atol=1e-14)
    got = torch.func.vmap(lambda b: op(taps, b, kernel, scale, pad, mode))(bb)
    torch.testing.assert_close(got[1], op(taps, bb[1], kernel, scale, pad, mode), rtol=1e-14, atol=1e-14)
    got = torch.func.vmap(lambda t: op(t, bias, kernel, scale, pad, mode))(tb)
    torch.testing.assert_close(got[1], op(tb[1], bias, kernel, scale, pad, mode), rtol=0, atol=0)


@pytest.mark.parametrize("cout,hw,channels_last", [(16, (24, 20), False), (136, (24, 70), False),
                                                    (136, (24, 70), True)])
def test_mixed_is_deterministic_for_any_thread_count(cout, hw, channels_last):
    """Forward and the banded backward (136 channels: 4 bands of 6 rows per image) give the same
    bits for 1, 2 and 3 threads."""
    x, w, b = _data(3, 16, cout, hw, 3, 1, torch.float32)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    gout = torch.randn(3, cout, 2 * hw[0], 2 * hw[1])
    def run():
        xs, ws = x.clone().requires_grad_(), w.clone().requires_grad_()
        y = tconv.upsample_conv2d(xs, ws, b, mode="bilinear", padding=1)
        with torch.no_grad():
            inference = tconv.upsample_conv2d(x, w, b, mode="bilinear", padding=1)
        return (y, inference, *torch.autograd.grad(y, (xs, ws), gout))

    results = at_thread_counts(run, (1, 2, 3))
    for other in results[1:]:
        for a, c in zip(results[0], other):
            assert torch.equal(a, c)


@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("mode,k,p,s,hw", [("bilinear", 3, 1, 2, (23, 64)), ("bicubic", 5, 2, 2, (19, 40)),
                                           ("nearest", 2, 0, 3, (30, 9)), ("bicubic", 3, 3, 1, (12, 70)),
                                           ("bilinear", 4, 1, 2, (1, 3))])
def test_mixed_banded_backward_matches_the_pair(mode, k, p, s, hw, channels_last):
    """The banded backward (Note [banded backward]): tall images cut into many bands of input rows
    (bands of about 2 MiB of the taps' gradient: 136 channels give bands of 1-3 rows), one band,
    every gradient wanted or only some (the op's output_mask)."""
    for cout in (8, 136):
        x, w, b = _data(2, 6, cout, hw, k, 1, torch.float64)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out_shape = pair_reference(x, w, b, s, p, mode=mode).shape
        gout = torch.randn(out_shape, dtype=torch.float64)
        if channels_last:
            gout = gout.contiguous(memory_format=torch.channels_last)
        for wanted in ((True, True, True), (True, False, False), (False, True, False), (False, False, True)):
            leaves = [t.clone().requires_grad_(r) for t, r in zip((x, w, b), wanted)]
            y = tconv.upsample_conv2d(*leaves, scale_factor=s, mode=mode, padding=p)
            assert y.grad_fn.name() == "tconv::UpsampleConv2dMixedBackward"
            need = [t for t in leaves if t.requires_grad]
            got = torch.autograd.grad(y, need, gout)
            ref = [t.clone().requires_grad_(r) for t, r in zip((x, w, b), wanted)]
            want = torch.autograd.grad(pair_reference(*ref, s, p, mode=mode), [t for t in ref if t.requires_grad],
                                       gout)
            for a, c in zip(got, want):
                assert a.shape == c.shape
                torch.testing.assert_close(a, c, rtol=1e-11, atol=1e-11)
            if wanted[0]:
                assert got[0].is_contiguous(memory_format=torch.channels_last if channels_last
                                            else torch.contiguous_format)


def test_mixed_backward_double_backward_and_mixed_layouts():
    """create_graph takes the differentiable composite (second derivatives against the pair's); a
    gradient in the other layout than the input's is read correctly."""
    x, w, b = _data(2, 3, 4, (5, 6), 3, 1, torch.float64)
    leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    ref = [t.clone().requires_grad_() for t in (x, w, b)]
    y, want_y = tconv.upsample_conv2d(*leaves, mode="bicubic", padding=1), pair_reference(*ref, 2, 1, mode="bicubic")
    gout = torch.randn(y.shape, dtype=torch.float64)
    got = torch.autograd.grad((y * y).sum(), leaves, create_graph=True)
    want = torch.autograd.grad((want_y * want_y).sum(), ref, create_graph=True)
    for a, c in zip(got, want):
        torch.testing.assert_close(a, c, rtol=1e-11, atol=1e-11)
    second = torch.autograd.grad(sum((g * g).sum() for g in got), leaves)
    second_want = torch.autograd.grad(sum((g * g).sum() for g in want), ref)
    for a, c in zip(second, second_want):
        torch.testing.assert_close(a, c, rtol=1e-10, atol=1e-10)
    wide = torch.randn(*gout.shape[:3], 2 * gout.shape[3], dtype=torch.float64)
    for gl in (gout.contiguous(memory_format=torch.channels_last), wide[..., ::2]):
        got = torch.autograd.grad(tconv.upsample_conv2d(*leaves, mode="bicubic", padding=1), leaves, gl)
        want = torch.autograd.grad(pair_reference(*ref, 2, 1, mode="bicubic"), ref, gl)
        for a, c in zip(got, want):
            torch.testing.assert_close(a, c, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("mode,channels_last", [("bilinear", False), ("bicubic", True), ("nearest", False)])
def test_mixed_op_autograd_kernel_every_mode(mode, channels_last):
    """The op's own C++ autograd kernel, called directly: float64 gradcheck / gradgradcheck in
    every mode (its tangent formula; batched and second-order gradients take the composite's
    ops), and opcheck with gradients."""
    x, w, b = _data(1, 2, 3, (3, 4), 3, 1, torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    op = torch.ops.tconv._upsample_conv2d_mixed
    args = tuple(t.requires_grad_() for t in (x, w, b))
    full_gradcheck(lambda x, w, b: op(x, w, b, [2, 2], [1, 1, 1, 1], mode), args)
    torch.library.opcheck(op, (*args, [2, 2], [1, 1, 1, 1], mode))


def test_mixed_backward_opcheck_and_errors():
    x, w, _ = _data(2, 3, 4, (5, 6), 3, 1, torch.float64)
    op = torch.ops.tconv._upsample_conv2d_mixed_backward
    gout = torch.randn(2, 4, 10, 12, dtype=torch.float64)
    for mask in ([True, True], [True, False], [False, True]):
        torch.library.opcheck(op, (gout, x, w, [2, 2], [1, 1, 1, 1], "bilinear", mask))
    gx, gw = op(gout, x, w, [2, 2], [1, 1, 1, 1], "bilinear", [False, True])
    assert gx.numel() == 0 and gw.shape == w.shape
    gx, gw = op(gout[:0], x[:0], w, [2, 2], [1, 1, 1, 1], "bilinear", [True, True])
    assert gx.shape == (0, 3, 5, 6) and torch.equal(gw, torch.zeros_like(w))
    with pytest.raises(RuntimeError, match="grad_output must be"):
        op(gout[:, :, :9], x, w, [2, 2], [1, 1, 1, 1], "bilinear", [True, True])
    with pytest.raises(RuntimeError, match="float32 or float64"):
        op(gout.float(), x.float(), w, [2, 2], [1, 1, 1, 1], "bilinear", [True, True])


@pytest.mark.parametrize("args,message", [
    (((2, 5, 3, 4, 4), None, [2, 3], [2, 2], [0, 0, 0, 0], "bilinear"), "planes per channel"),
    (((2, 6, 3, 4, 4), None, [2, 3], [2, 2], [0, 0, 0, 0], "area"), "mode must be"),
    (((2, 6, 3, 4, 4), None, [2, 3], [2, 0], [0, 0, 0, 0], "bilinear"), "must be positive"),
    (((2, 6, 3, 4), None, [2, 3], [2, 2], [0, 0, 0, 0], "bilinear"), "taps must be"),
    (((2, 6, 3, 1, 1), None, [2, 3], [1, 1], [0, 0, 0, 0], "bilinear"), "larger than"),
    (((2, 6, 3, 4, 4), (4,), [2, 3], [2, 2], [0, 0, 0, 0], "bilinear"), "bias must"),
])
def test_upsample_taps2d_errors(args, message):
    shape, bias_shape, *rest = args
    bias = torch.randn(bias_shape) if bias_shape else None
    with pytest.raises(RuntimeError, match=message):
        torch.ops.tconv.upsample_taps2d(torch.randn(shape), bias, *rest)


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


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_module_compiles_and_exports(mode):
    layer = tconv.UpsampleConv2d(4, 4, 3, mode=mode, padding=1)
    x = torch.randn(2, 4, 6, 6, requires_grad=True)
    check_compile_and_export(layer, x)



# ---- CUDA (skipped without a GPU) ------------------------------------------------------------------------

@pytest.mark.cuda
@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("k,p,s,groups", [(3, 1, 2, 1), (2, 0, 3, 2), (5, 2, 2, 1)])
def test_mixed_cuda_matches_the_pair_on_the_cpu(mode, k, p, s, groups):
    x, w, b = _data(2, 4, 6, (9, 7), k, groups, torch.float64)
    gout = torch.randn(2, 6, s * 9 + 2 * p - k + 1, s * 7 + 2 * p - k + 1, dtype=torch.float64)
    leaves = [t.cuda().requires_grad_() for t in (x, w, b)]
    got = tconv.upsample_conv2d(*leaves, scale_factor=s, mode=mode, padding=p, groups=groups)
    assert got.device.type == "cuda"
    grads = torch.autograd.grad(got, leaves, gout.cuda())
    ref_leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    want = pair_reference(*ref_leaves, s, p, groups, mode=mode)
    want_grads = torch.autograd.grad(want, ref_leaves, gout)
    torch.testing.assert_close(got.cpu(), want, rtol=1e-10, atol=1e-10)
    for a, c in zip(grads, want_grads):
        torch.testing.assert_close(a.cpu(), c, rtol=1e-10, atol=1e-10)


@pytest.mark.cuda
def test_upsample_taps2d_opcheck_and_gradcheck_cuda():
    taps, bias, kernel, scale, pad, mode = _taps_args()
    taps, bias = taps.cuda().requires_grad_(), bias.cuda().requires_grad_()
    torch.library.opcheck(torch.ops.tconv.upsample_taps2d, (taps, bias, kernel, scale, pad, mode))
    full_gradcheck(lambda t, b: torch.ops.tconv.upsample_taps2d(t, b, kernel, scale, pad, mode),
                   (taps[:1, :, :2].detach().requires_grad_(), bias[:2].detach().requires_grad_()))


def test_mixed_inference_from_several_python_threads():
    """The inference kernel's window and packed weight are per-thread scratch kept between calls:
    concurrent calls from several Python threads, of different shapes, each get their own."""
    cases = [_data(2, 6, c, (9 + c % 5, 70), 3, 1, torch.float32) for c in (8, 40, 72)]
    with torch.no_grad():
        want = [pair_reference(x, w, b, 2, 1, mode="bilinear") for x, w, b in cases]
    errors = []

    def run(i):
        x, w, b = cases[i % 3]
        for _ in range(5):
            with torch.no_grad():
                got = tconv.upsample_conv2d(x, w, b, mode="bilinear", padding=1)
            if not torch.allclose(got, want[i % 3], rtol=1e-4, atol=1e-4):
                errors.append(i)

    run_in_python_threads(run, 6)
    assert not errors


def test_module_inference_takes_the_inference_kernel():
    """A module's weight and bias are nn.Parameters: with and without gradients they take the
    kernel (tconv::_upsample_conv2d_mixed) and its banded backward, not the autograd composite."""
    layer = tconv.UpsampleConv2d(4, 6, 3, mode="bilinear", padding=1)
    x = torch.randn(2, 4, 5, 7)
    assert tconv.functional._eager_cpu_float(x, layer.weight, layer.bias)
    with torch.no_grad():
        got = layer(x)
    torch.testing.assert_close(got, F.conv2d(F.interpolate(x, scale_factor=2, mode="bilinear"), layer.weight,
                                             layer.bias, padding=1), rtol=1e-5, atol=1e-5)
    assert layer(x).grad_fn.name() == "tconv::UpsampleConv2dMixedBackward"
    with torch.autocast("cpu", dtype=torch.bfloat16):  # conv2d's lower precision, as the pair's
        assert not tconv.functional._eager_cpu_float(x, layer.weight, layer.bias)
        assert layer(x).dtype == torch.bfloat16
