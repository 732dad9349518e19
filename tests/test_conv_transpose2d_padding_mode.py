"""padding_mode of the transposed convolution ('reflect', 'replicate', 'circular'; tconv/functional.py,
tconv.ConvTranspose2d): the result is the adjoint of y -> conv2d(F.pad(y, padding, mode), w, ...), i.e.
the input-gradient of PyTorch's padded conv2d at grad_output = input (plus the bias), for every mode
and argument; gradients in every autograd mode (float64 gradcheck / gradgradcheck); circular mode is
periodic; the module's state_dict; compile; NaN/Inf and determinism over thread counts. The op it is built
on, tconv::pad_fold2d (the adjoint of F.pad): numerics, layouts, dtypes, gradients and opcheck. Its
error rows are in docs/errors.md (test_robustness.py)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tconv

from _support import at_thread_counts, check_compile_and_export, full_gradcheck, poison, same_specials

MODES = ["reflect", "replicate", "circular"]


def adjoint_reference(x, w, b, stride, padding, output_padding, groups, dilation, mode):
    """The input-gradient of conv2d(F.pad(y, padding, mode), w, stride, dilation, groups) at
    grad_output = x, plus the bias: y has the zeros-mode transposed convolution's output size."""
    unbatched = x.dim() == 3
    x4 = x.unsqueeze(0) if unbatched else x
    shape = F.conv_transpose2d(x4, w, None, stride, padding, output_padding, groups, dilation).shape
    y = torch.zeros(shape, dtype=x.dtype, requires_grad=True)
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    z = F.conv2d(F.pad(y, (pw, pw, ph, ph), mode=mode), w, None, stride, 0, dilation, groups)
    out, = torch.autograd.grad(z, y, x4)
    if b is not None:
        out = out + b.view(-1, 1, 1)
    return out.squeeze(0) if unbatched else out


# (H, W, kernel, stride, padding, output_padding, groups, dilation)
ARGS = [
    (5, 6, 3, 1, 1, 0, 1, 1),
    (4, 5, 4, 2, 1, 0, 1, 1),          # the DCGAN layer
    (4, 5, 4, 2, 2, 1, 2, 1),
    (3, 4, 3, 2, (1, 2), (1, 0), 1, 2),
    (6, 3, 5, 3, 2, 2, 1, 1),
    (5, 5, 2, 1, 1, 0, 1, 1),
    (4, 4, (3, 5), (2, 1), (2, 1), 0, 4, 1),
    (3, 3, 3, 2, 0, 1, 1, 1),          # padding 0: the zeros result
    (3, 3, 4, 2, 2, 0, 1, 1),          # wide borders: 2 + 2 around a 4-row output
    (2, 2, 4, 2, 2, 0, 1, 1),          # 2 + 2 around 2 rows: reflect refuses (F.pad's error)
    (3, 3, 1, 3, 1, 2, 1, 1),          # the bottom strip is output_padding: reached by no tap
    (5, 5, 3, 1, 2, 0, 1, 2),          # dilation 2, the border as wide as the dilated reach
    (4, 4, 3, 1, 3, 0, 1, 2),          # 3 + 3 around 2 rows: only replicate
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("args", ARGS, ids=[f"case{i}" for i in range(len(ARGS))])
def test_adjoint_of_padded_conv2d_float64(mode, args):
    h, w_, k, s, p, op, g, d = args
    kh, kw = (k, k) if isinstance(k, int) else k
    x = torch.randn(2, 4, h, w_, dtype=torch.float64)
    w = torch.randn(4, 8 // g, kh, kw, dtype=torch.float64)
    b = torch.randn(8 // g * g, dtype=torch.float64)
    want_shape = F.conv_transpose2d(x, w, None, s, p, op, g, d).shape
    try:
        want = adjoint_reference(x, w, b, s, p, op, g, d, mode)
    except RuntimeError as e:  # F.pad rejects this padding of this size: so must tconv
        with pytest.raises(RuntimeError, match="Padding"):
            tconv.conv_transpose2d(x, w, b, s, p, op, g, d, padding_mode=mode)
        assert "Padding" in str(e)
        return
    got = tconv.conv_transpose2d(x, w, b, s, p, op, g, d, padding_mode=mode)
    assert got.shape == want_shape
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    got = tconv.conv_transpose2d(x[0], w, None, s, p, op, g, d, padding_mode=mode)  # unbatched, no bias
    torch.testing.assert_close(got, adjoint_reference(x[0], w, None, s, p, op, g, d, mode), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
def test_float32_and_layouts(mode, channels_last):
    x = torch.randn(3, 8, 9, 7)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(8, 6, 4, 4), torch.randn(6)
    got = tconv.conv_transpose2d(x, w, b, 2, 1, padding_mode=mode)
    want = adjoint_reference(x.double(), w.double(), b.double(), 2, 1, 0, 1, 1, mode)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
    if channels_last:
        assert got.is_contiguous(memory_format=torch.channels_last)


def test_deterministic():
    x, w = torch.randn(2, 8, 9, 7), torch.randn(8, 6, 4, 4)
    a = tconv.conv_transpose2d(x, w, None, 2, 2, padding_mode="replicate")
    b = tconv.conv_transpose2d(x, w, None, 2, 2, padding_mode="replicate")
    assert torch.equal(a, b)


@pytest.mark.parametrize("mode", MODES)
def test_gradcheck_every_mode(mode):
    x = torch.randn(1, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(1, dtype=torch.float64, requires_grad=True)
    full_gradcheck(lambda x, w, b: tconv.conv_transpose2d(x, w, b, 2, 1, 1, padding_mode=mode), (x, w, b))


def test_circular_is_periodic():
    """Shifting the input by one position (circularly) shifts the output by one stride."""
    s = 2
    x, w = torch.randn(1, 3, 5, 6, dtype=torch.float64), torch.randn(3, 2, 4, 4, dtype=torch.float64)
    out = tconv.conv_transpose2d(x, w, None, s, 1, padding_mode="circular")
    for dims in ((2,), (3,), (2, 3)):
        shifted = tconv.conv_transpose2d(x.roll([1] * len(dims), dims), w, None, s, 1, padding_mode="circular")
        torch.testing.assert_close(shifted, out.roll([s] * len(dims), dims), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_module(mode):
    layer = tconv.ConvTranspose2d(4, 3, 4, stride=2, padding=1, padding_mode=mode)
    assert layer.padding_mode == mode
    plain = nn.ConvTranspose2d(4, 3, 4, stride=2, padding=1)
    assert list(layer.state_dict()) == list(plain.state_dict())
    layer.load_state_dict(plain.state_dict())
    x = torch.randn(2, 4, 5, 5)
    want = adjoint_reference(x.double(), layer.weight.double(), layer.bias.double(), 2, 1, 0, 1, 1, mode)
    torch.testing.assert_close(layer(x).double(), want, rtol=1e-5, atol=1e-5)
    assert layer(x, output_size=(11, 11)).shape == (2, 3, 11, 11)
    assert f"padding_mode={mode}" in repr(layer)


def test_compile_and_export():
    layer = tconv.ConvTranspose2d(3, 2, 4, stride=2, padding=1, padding_mode="reflect")
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    check_compile_and_export(layer, x)


def pad_fold_reference(full, pad, mode):
    """The adjoint of F.pad(y, pad, mode) at `full`, by PyTorch's autograd of F.pad."""
    left, right, top, bottom = pad
    n, c, h, w = full.shape
    y = torch.zeros(n, c, h - top - bottom, w - left - right, dtype=full.dtype, requires_grad=True)
    out, = torch.autograd.grad(F.pad(y, pad, mode=mode), y, full)
    return out


def fold_case(mode, shape, channels_last, fold):
    """A random float64 `full` of FOLD_SHAPES' shape, its pad and the reference fold; where F.pad
    rejects the pad for the output's size, checks that fold(full, pad) raises too and gives None."""
    hp, wp, pad = shape
    full = torch.randn(2, 3, hp, wp, dtype=torch.float64)
    if channels_last:
        full = full.contiguous(memory_format=torch.channels_last)
    try:
        want = pad_fold_reference(full, pad, mode)
    except (RuntimeError, NotImplementedError):
        with pytest.raises(RuntimeError):
            fold(full, pad)
        return full, pad, None
    return full, pad, want


# (padded H, padded W, (left, right, top, bottom))
FOLD_SHAPES = [
    (7, 9, (1, 1, 1, 1)),
    (8, 6, (2, 1, 0, 3)),
    (6, 6, (2, 2, 2, 2)),        # reflect: the borders as wide as the output less one
    (5, 9, (0, 0, 2, 2)),        # one output row: replicate only; circular wraps onto it
    (10, 12, (3, 4, 3, 3)),
    (4, 5, (0, 0, 0, 0)),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", FOLD_SHAPES, ids=[f"shape{i}" for i in range(len(FOLD_SHAPES))])
@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
def test_pad_fold2d_is_the_adjoint_of_pad(mode, shape, channels_last):
    full, pad, want = fold_case(mode, shape, channels_last, lambda full, pad: torch.ops.tconv.pad_fold2d(full, list(pad), mode))
    if want is None:
        return
    got = torch.ops.tconv.pad_fold2d(full, list(pad), mode)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    if channels_last:
        assert got.is_contiguous(memory_format=torch.channels_last)
    # strided (non-contiguous) input, and 16-bit types (float32 sums, rounded once)
    torch.testing.assert_close(torch.ops.tconv.pad_fold2d(full.transpose(2, 3).contiguous().transpose(2, 3),
                                                          list(pad), mode), want, rtol=1e-12, atol=1e-12)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        got = torch.ops.tconv.pad_fold2d(full.to(dtype), list(pad), mode)
        assert got.dtype == dtype
        torch.testing.assert_close(got.double(), want.to(dtype).double(), rtol=1e-2, atol=2e-2)


@pytest.mark.parametrize("mode", MODES)
def test_pad_fold2d_gradcheck_every_mode(mode):
    full = torch.randn(2, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    full_gradcheck(lambda t: torch.ops.tconv.pad_fold2d(t, [2, 1, 1, 2], mode), (full,))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
def test_pad_fold2d_opcheck(mode, channels_last):
    full = torch.randn(2, 3, 8, 9)
    if channels_last:
        full = full.contiguous(memory_format=torch.channels_last)
    torch.library.opcheck(torch.ops.tconv.pad_fold2d, (full.requires_grad_(), [1, 2, 2, 1], mode))


def test_pad_fold2d_errors():
    full = torch.randn(1, 2, 4, 4)
    with pytest.raises(ValueError, match="mode"):
        torch.ops.tconv.pad_fold2d(full, [1, 1, 1, 1], "zeros")
    with pytest.raises(RuntimeError, match="Padding size should be less"):
        torch.ops.tconv.pad_fold2d(full, [0, 0, 2, 0], "reflect")  # 2 output rows: reflect needs pad < 2
    with pytest.raises(RuntimeError, match="no output"):
        torch.ops.tconv.pad_fold2d(full, [2, 2, 0, 0], "replicate")


@pytest.mark.parametrize("mode", MODES)
def test_nan_inf_where_the_padded_conv2d_puts_them(mode):
    gen = torch.Generator().manual_seed(0)
    for which in ("x", "w"):
        x, w = torch.randn(2, 4, 5, 6, dtype=torch.float64), torch.randn(4, 3, 4, 4, dtype=torch.float64)
        if which == "x":
            x = poison(x, gen, 0.1)
        else:
            w = poison(w, gen, 0.1)
        got = tconv.conv_transpose2d(x, w, None, 2, 1, padding_mode=mode)
        same_specials(got, adjoint_reference(x, w, None, 2, 1, 0, 1, 1, mode))


@pytest.mark.parametrize("mode", MODES)
def test_same_bits_for_any_thread_count(mode):
    x, w = torch.randn(4, 16, 13, 11), torch.randn(16, 8, 4, 4)
    one, many = at_thread_counts(lambda: tconv.conv_transpose2d(x, w, None, 2, 1, padding_mode=mode),
                                 (1, max(torch.get_num_threads(), 2)))
    assert torch.equal(one, many)


def frame_pieces(full, pad):
    """full's interior and the four strips of its frame, as pad_fold2d_frame takes them."""
    left, right, top, bottom = pad
    h, w = full.size(2) - top - bottom, full.size(3) - left - right
    rows = full.narrow(2, top, h)
    return (rows.narrow(3, left, w), full.narrow(2, 0, top), full.narrow(2, top + h, bottom),
            rows.narrow(3, 0, left), rows.narrow(3, left + w, right))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", FOLD_SHAPES, ids=[f"shape{i}" for i in range(len(FOLD_SHAPES))])
@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
def test_pad_fold2d_frame_is_pad_fold2d_of_the_pieces(mode, shape, channels_last):
    full, pad, want = fold_case(mode, shape, channels_last,
                                lambda full, pad: torch.ops.tconv.pad_fold2d_frame(*frame_pieces(full, pad), list(pad), mode))
    if want is None:
        return
    pieces = [p.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
              for p in frame_pieces(full, pad)]
    got = torch.ops.tconv.pad_fold2d_frame(*pieces, list(pad), mode)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got, torch.ops.tconv.pad_fold2d(full, list(pad), mode), rtol=1e-14, atol=1e-14)
    assert torch.equal(got, torch.ops.tconv.pad_fold2d_frame(*frame_pieces(full, pad), list(pad), mode))  # views
    for dtype in (torch.float32, torch.bfloat16):
        got = torch.ops.tconv.pad_fold2d_frame(*(p.to(dtype) for p in pieces), list(pad), mode)
        torch.testing.assert_close(got.double(), want.to(dtype).double(), rtol=1e-2, atol=2e-2)


@pytest.mark.parametrize("mode", MODES)
def test_pad_fold2d_frame_gradcheck_every_mode(mode):
    pad = [2, 1, 1, 2]
    pieces = tuple(p.clone().requires_grad_() for p in frame_pieces(torch.randn(2, 2, 6, 7, dtype=torch.float64), pad))
    full_gradcheck(lambda *p: torch.ops.tconv.pad_fold2d_frame(*p, pad, mode), pieces)


@pytest.mark.parametrize("mode", MODES)
def test_pad_fold2d_frame_opcheck(mode):
    pieces = tuple(p.contiguous().requires_grad_() for p in frame_pieces(torch.randn(2, 3, 8, 9), [1, 2, 2, 1]))
    torch.library.opcheck(torch.ops.tconv.pad_fold2d_frame, (*pieces, [1, 2, 2, 1], mode))


def test_pad_fold2d_frame_errors():
    pieces = list(frame_pieces(torch.randn(1, 2, 6, 6), [1, 1, 1, 1]))
    pieces[1] = pieces[1][:, :, :, :5]
    with pytest.raises(RuntimeError, match="expected top of size"):
        torch.ops.tconv.pad_fold2d_frame(*pieces, [1, 1, 1, 1], "reflect")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("args", ARGS, ids=[f"case{i}" for i in range(len(ARGS))])
@pytest.mark.parametrize("form", ["frame_inplace", "frame", "full"])
def test_both_forms_without_gradients(mode, args, form, monkeypatch):
    """Nothing to differentiate: the full output folded by pad_fold2d, or the zeros output and the
    frame strips folded by pad_fold2d_frame (in place on a plain eager call: pad_fold2d_frame_)
    (tconv/functional.py picks by cost): each the adjoint, and as the form taken with gradients."""
    monkeypatch.setattr(tconv.functional, "_full_costs_no_more", lambda *a: form == "full")
    if form == "frame":
        monkeypatch.setattr(tconv.functional, "_plain_eager", lambda *a: False)
    h, w_, k, s, p, op, g, d = args
    kh, kw = (k, k) if isinstance(k, int) else k
    x, w = torch.randn(2, 4, h, w_, dtype=torch.float64), torch.randn(4, 8 // g, kh, kw, dtype=torch.float64)
    b = torch.randn(8 // g * g, dtype=torch.float64)
    try:
        want = adjoint_reference(x, w, b, s, p, op, g, d, mode)
    except RuntimeError:
        return
    plain = tconv.conv_transpose2d(x, w, b, s, p, op, g, d, padding_mode=mode)
    torch.testing.assert_close(plain, want, rtol=1e-12, atol=1e-12)
    graph = tconv.conv_transpose2d(x, w.requires_grad_(), b, s, p, op, g, d, padding_mode=mode)
    assert graph.grad_fn is not None
    torch.testing.assert_close(plain, graph.detach(), rtol=1e-12, atol=1e-12)
    cl = tconv.conv_transpose2d(x.contiguous(memory_format=torch.channels_last), w.detach(), b, s, p, op, g, d,
                                padding_mode=mode)
    torch.testing.assert_close(cl, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_frame_form_under_vmap_and_forward_ad(mode):
    """Stride 1 without gradients takes the frame form: under vmap and forward AD the functional
    pad_fold2d_frame (its batching rule, its tangent), never the in-place one."""
    x, w = torch.randn(3, 2, 4, 5, 6, dtype=torch.float64), torch.randn(4, 3, 3, 3, dtype=torch.float64)
    got = torch.vmap(lambda t: tconv.conv_transpose2d(t, w, None, 1, 1, padding_mode=mode))(x)
    want = torch.stack([adjoint_reference(t, w, None, 1, 1, 0, 1, 1, mode) for t in x])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    dx = torch.randn_like(x[0])
    out, tangent = torch.func.jvp(lambda t: tconv.conv_transpose2d(t, w, None, 1, 1, padding_mode=mode), (x[0],), (dx,))
    torch.testing.assert_close(out, want[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(tangent, adjoint_reference(dx, w, None, 1, 1, 0, 1, 1, mode), rtol=1e-12, atol=1e-12)
    import torch.autograd.forward_ad as fwAD
    with fwAD.dual_level():
        dual = fwAD.make_dual(x[0], dx)
        res = tconv.conv_transpose2d(dual, w, None, 1, 1, padding_mode=mode)
        torch.testing.assert_close(fwAD.unpack_dual(res).tangent, tangent, rtol=1e-12, atol=1e-12)


def test_frame_form_compiles():
    layer = tconv.ConvTranspose2d(3, 2, 3, stride=1, padding=1, padding_mode="circular")
    x = torch.randn(2, 3, 5, 5)
    with torch.no_grad():
        want = layer(x)
        got = torch.compile(layer, backend="aot_eager", fullgraph=True)(x)
    torch.testing.assert_close(got, want)


# ---- 1-D and 3-D: ConvTranspose1d / ConvTranspose3d ------------------------------------------------------

def adjoint_reference_nd(x, w, b, stride, padding, output_padding, groups, dilation, mode):
    """The input-gradient of convNd(F.pad(y, padding, mode), w, ...) at grad_output = x, plus the bias
    (N = 1 or 3; batched input)."""
    nd = x.dim() - 2
    conv_t = F.conv_transpose1d if nd == 1 else F.conv_transpose3d
    conv = F.conv1d if nd == 1 else F.conv3d
    shape = conv_t(x, w, None, stride, padding, output_padding, groups, dilation).shape
    y = torch.zeros(shape, dtype=x.dtype, requires_grad=True)
    p = [padding] * nd if isinstance(padding, int) else list(padding)
    pads = [v for q in reversed(p) for v in (q, q)]
    z = conv(F.pad(y, pads, mode=mode), w, None, stride, 0, dilation, groups)
    out, = torch.autograd.grad(z, y, x)
    return out if b is None else out + b.view(-1, *([1] * nd))


# (length, kernel, stride, padding, output_padding, groups, dilation)
ARGS_1D = [(9, 3, 1, 1, 0, 1, 1), (8, 16, 8, 4, 0, 1, 1), (7, 4, 2, 1, 1, 2, 1), (6, 3, 2, 2, 0, 1, 2),
           (5, 4, 2, 3, 0, 1, 1)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("args", ARGS_1D, ids=[f"case{i}" for i in range(len(ARGS_1D))])
def test_conv_transpose1d_adjoint_of_padded_conv1d(mode, args):
    length, k, s, p, op, g, d = args
    x = torch.randn(2, 4, length, dtype=torch.float64)
    w = torch.randn(4, 6 // g, k, dtype=torch.float64)
    b = torch.randn(6 // g * g, dtype=torch.float64)
    try:
        want = adjoint_reference_nd(x, w, b, s, p, op, g, d, mode)
    except RuntimeError as e:  # F.pad refuses the padding: so must tconv, with the same error
        with pytest.raises(RuntimeError, match="Padding size"):
            tconv.conv_transpose1d(x, w, b, s, p, op, g, d, padding_mode=mode)
        assert "Padding size" in str(e)
        return
    got = tconv.conv_transpose1d(x, w, b, s, p, op, g, d, padding_mode=mode)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    unbatched = tconv.conv_transpose1d(x[0], w, b, s, p, op, g, d, padding_mode=mode)
    torch.testing.assert_close(unbatched, want[0], rtol=1e-12, atol=1e-12)


# (D, H, W, kernel, stride, padding, output_padding, groups, dilation)
ARGS_3D = [(3, 4, 5, 3, 1, 1, 0, 1, 1), (3, 3, 4, 4, 2, 1, 0, 1, 1), (2, 3, 3, 3, 2, (1, 0, 2), 1, 2, 1),
           (3, 3, 3, 2, 1, (0, 1, 1), 0, 1, 2)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("args", ARGS_3D, ids=[f"case{i}" for i in range(len(ARGS_3D))])
def test_conv_transpose3d_adjoint_of_padded_conv3d(mode, args):
    dd, h, w_, k, s, p, op, g, d = args
    x = torch.randn(2, 4, dd, h, w_, dtype=torch.float64)
    w = torch.randn(4, 6 // g, k, k, k, dtype=torch.float64)
    b = torch.randn(6 // g * g, dtype=torch.float64)
    try:
        want = adjoint_reference_nd(x, w, b, s, p, op, g, d, mode)
    except RuntimeError:
        with pytest.raises(RuntimeError, match="Padding size"):
            tconv.conv_transpose3d(x, w, b, s, p, op, g, d, padding_mode=mode)
        return
    got = tconv.conv_transpose3d(x, w, b, s, p, op, g, d, padding_mode=mode)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    last = tconv.conv_transpose3d(x.contiguous(memory_format=torch.channels_last_3d), w, b, s, p, op, g, d,
                                  padding_mode=mode)
    assert last.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(last, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(tconv.conv_transpose3d(x[0], w, b, s, p, op, g, d, padding_mode=mode), want[0],
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_nd_gradcheck_every_mode(mode):
    x1 = torch.randn(1, 2, 3, dtype=torch.float64, requires_grad=True)
    w1 = torch.randn(2, 1, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(1, dtype=torch.float64, requires_grad=True)
    full_gradcheck(lambda x, w, b: tconv.conv_transpose1d(x, w, b, 2, 1, 1, padding_mode=mode), (x1, w1, b))
    x3 = torch.randn(1, 2, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    w3 = torch.randn(2, 1, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    full_gradcheck(lambda x, w, b: tconv.conv_transpose3d(x, w, b, 2, 1, 1, padding_mode=mode), (x3, w3, b))


def test_nd_circular_is_periodic():
    x, w = torch.randn(1, 3, 7, dtype=torch.float64), torch.randn(3, 2, 4, dtype=torch.float64)
    out = tconv.conv_transpose1d(x, w, None, 2, 1, padding_mode="circular")
    shifted = tconv.conv_transpose1d(x.roll(1, 2), w, None, 2, 1, padding_mode="circular")
    torch.testing.assert_close(shifted, out.roll(2, 2), rtol=1e-12, atol=1e-12)
    x, w = torch.randn(1, 2, 3, 4, 3, dtype=torch.float64), torch.randn(2, 2, 4, 4, 4, dtype=torch.float64)
    out = tconv.conv_transpose3d(x, w, None, 2, 1, padding_mode="circular")
    shifted = tconv.conv_transpose3d(x.roll(1, 2), w, None, 2, 1, padding_mode="circular")
    torch.testing.assert_close(shifted, out.roll(2, 2), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dims", [1, 3])
def test_nd_module(mode, dims):
    cls, plain_cls = (tconv.ConvTranspose1d, nn.ConvTranspose1d) if dims == 1 else (tconv.ConvTranspose3d,
                                                                                      nn.ConvTranspose3d)
    layer = cls(4, 3, 4, stride=2, padding=1, padding_mode=mode)
    assert layer.padding_mode == mode and f"padding_mode={mode}" in repr(layer)
    plain = plain_cls(4, 3, 4, stride=2, padding=1)
    assert list(layer.state_dict()) == list(plain.state_dict())
    layer.load_state_dict(plain.state_dict())
    x = torch.randn(2, 4, *([5] * dims))
    want = adjoint_reference_nd(x.double(), layer.weight.double(), layer.bias.double(), 2, 1, 0, 1, 1, mode)
    torch.testing.assert_close(layer(x).double(), want, rtol=1e-5, atol=1e-5)
    assert layer(x, output_size=[11] * dims).shape == (2, 3, *([11] * dims))
    converted = tconv.convert(nn.Sequential(plain))
    plain.padding_mode = mode  # set after construction: PyTorch's forward raises, tconv computes it
    converted = tconv.convert(nn.Sequential(plain))
    assert type(converted[0]) is cls
    torch.testing.assert_close(converted[0](x).double(), want, rtol=1e-5, atol=1e-5)


# Where Winograd serves the forward (3x3 stride 1, 4x4 stride 2; 32 channels or more, Note
# [Winograd]) the padded op computes the full output's blocks with it, y's pixels in
# place and the frame's aside, then folds the frame onto y (WinogradFrame, cpu/winograd.h).
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cfg", [
    (32, 32, (7, 9), 3, 1, 1, 0),        # odd sizes: the frame's blocks partly inside y
    (40, 48, (6, 5), 3, 1, (2, 1), 0),   # wider frame rows than columns; a masked channel vector
    (32, 32, (5, 6), 4, 2, 1, 0),        # DCGAN's 4x4 s2 p1: every phase grid reaches the frame
    (48, 32, (4, 7), 4, 2, (2, 1), (1, 0)),  # padding 2 and output_padding
], ids=lambda c: "x".join(map(str, c[:5])))
@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
def test_padded_op_folds_the_frame_in_winograd(mode, cfg, channels_last):
    cin, cout, hw, k, s, p, op = cfg
    s2, p2, op2 = ([v, v] if isinstance(v, int) else list(v) for v in (s, p, op))
    x = torch.randn(3, cin, *hw, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(cin, cout, k, k, dtype=torch.float64)
    b = torch.randn(cout, dtype=torch.float64)
    want = adjoint_reference(x, w, b, s, p, op, 1, 1, mode)
    got = torch.ops.tconv._conv_transpose2d_padded(x.float(), w.float(), b.float(), s2, p2, op2, 1, [1, 1], mode)
    assert got.shape == want.shape
    assert got.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5 * want.abs().max().item())
    plain = tconv.conv_transpose2d(x.float(), w.float(), b.float(), s, p, op, padding_mode=mode)
    torch.testing.assert_close(plain, got, rtol=1e-5, atol=1e-5 * want.abs().max().item())
    # the frame folded in a fixed order: the same bits for any thread count
    (one,) = at_thread_counts(lambda: torch.ops.tconv._conv_transpose2d_padded(x.float(), w.float(), b.float(), s2,
                                                                               p2, op2, 1, [1, 1], mode), (1,))
    assert torch.equal(one, got)


# tconv::_conv_transpose2d_padded: the no-gradient float32 call in one op. On AVX-512 or AVX2 with whole
# 16-channel vectors of outputs per group the frame is folded inside the direct tiles (Note [folded
# frame], cpu/conv_transpose2d.cpp); elsewhere (other CPUs, other shapes, non-finite data) the op
# computes the definition. Both against the adjoint, in both layouts, errors as F.pad's.
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("args", ARGS, ids=[f"case{i}" for i in range(len(ARGS))])
@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("order", ["rows", "images"])
def test_padded_op_folds_the_frame_in_its_tiles(mode, args, channels_last, order, monkeypatch):
    monkeypatch.setenv("TCONV_CONV_FORWARD", order)  # the tiles along rows or along images
    h, w_, k, s, p, op, g, d = args
    kh, kw = (k, k) if isinstance(k, int) else k
    s2, p2, op2, d2 = ([v, v] if isinstance(v, int) else list(v) for v in (s, p, op, d))
    x = torch.randn(3, 16, h + 1, w_ + 2, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(16, 32 // g, kh, kw, dtype=torch.float64)
    b = torch.randn(32 // g * g, dtype=torch.float64)
    try:
        want = adjoint_reference(x, w, b, s, p, op, g, d, mode)
    except RuntimeError:  # F.pad rejects this padding of this size: so must the op
        with pytest.raises(RuntimeError, match="Padding"):
            torch.ops.tconv._conv_transpose2d_padded(x.float(), w.float(), b.float(), s2, p2, op2, g, d2, mode)
        return
    got = torch.ops.tconv._conv_transpose2d_padded(x.float(), w.float(), b.float(), s2, p2, op2, g, d2, mode)
    assert got.shape == want.shape
    assert got.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5 * want.abs().max().item())
    # the public call without gradients takes it where it folds in its tiles (the same bits)
    plain = tconv.conv_transpose2d(x.float(), w.float(), b.float(), s, p, op, g, d, padding_mode=mode)
    if tconv.functional._folds_in_tiles(x.float(), w.float(), b.float()):
        assert torch.equal(plain, got)
    torch.testing.assert_close(plain, got)
    (one,) = at_thread_counts(lambda: torch.ops.tconv._conv_transpose2d_padded(x.float(), w.float(), b.float(), s2,
                                                                               p2, op2, g, d2, mode), (1,))
    assert torch.equal(one, got)


@pytest.mark.parametrize("mode", MODES)
def test_padded_op_nan_inf_and_opcheck(mode):
    x, w, b = torch.randn(2, 16, 6, 7), torch.randn(16, 32, 3, 3), torch.randn(32)
    torch.library.opcheck(torch.ops.tconv._conv_transpose2d_padded, (x, w, b, [1, 1], [1, 1], [0, 0], 1, [1, 1], mode),
                          test_utils=("test_schema", "test_faketensor"))
    x[0, 3, 0, 0] = float("nan")
    x[1, 5, 3, 6] = float("inf")
    got = torch.ops.tconv._conv_transpose2d_padded(x, w, b, [1, 1], [1, 1], [0, 0], 1, [1, 1], mode)
    want = adjoint_reference(x.double(), w.double(), b.double(), 1, 1, 0, 1, 1, mode)
    same_specials(got.double(), want, tol=1e-4)
