"""What no user input may break, every op on the CPU (test_robustness_cuda.py: the same on CUDA):
- invalid arguments: every row of docs/errors.md, the same exception type as PyTorch op by op, tensors
  on another device;
- NaN and Inf: in the positions PyTorch (or the definition, _support.direct_conv_transpose2d) puts them;
- empty tensors: batch, channels or planes of size 0, forward and backward;
- determinism: bitwise the same results for 1 and 2 threads, forward and every gradient.
The op files own the numerics, gradients and opcheck; test_memory.py the output cache and threads."""
import re

import pytest
import torch
import torch.nn.functional as F

import tconv
from _support import (CONV_NAN_CFGS, ERROR_CASES, EXCEPTIONS, MODES, all_ops_run, at_thread_counts,
                      assert_input_weight_grads, check_interpolate, conv_grads, conv_nan_case,
                      direct_conv_transpose2d, error_rows, make_conv, make_image, poison, poison_one,
                      same_specials)

ops = torch.ops.tconv
ERROR_ROWS = error_rows()


# ---- invalid arguments: the table in docs/errors.md ----------------------------------------------------

def test_every_case_has_a_row_and_every_row_a_case():
    names = [r[0] for r in ERROR_ROWS]
    assert len(names) == len(set(names)), "duplicate rows in docs/errors.md"
    assert set(names) == set(ERROR_CASES), (set(names) ^ set(ERROR_CASES))


@pytest.mark.parametrize("row", ERROR_ROWS, ids=[r[0] for r in ERROR_ROWS])
def test_invalid_argument_raises_as_documented(row):
    name, _op, _arg, exc_name, excerpt = row
    ours, theirs = ERROR_CASES[name]
    exc = EXCEPTIONS[exc_name]
    with pytest.raises(exc) as got:
        ours()
    assert type(got.value) is exc or issubclass(type(got.value), exc)
    assert excerpt.replace("\\|", "|") in str(got.value), str(got.value)
    if theirs is not None:  # PyTorch rejects it with the same exception type
        with pytest.raises(Exception) as expected:
            theirs()
        assert isinstance(got.value, type(expected.value)) or \
            isinstance(expected.value, type(got.value)), (type(got.value), type(expected.value))


# ---- invalid arguments: the same exception type as PyTorch, op by op -----------------------------------

def _conv_x():
    return torch.randn(2, 4, 5, 5)


def _conv_w():
    return torch.randn(4, 3, 3, 3)


CONV_BAD_CALLS = {
    "5-D input": lambda f: f(_conv_x()[None], _conv_w()),
    "2-D input": lambda f: f(_conv_x()[0, 0], _conv_w()),
    "channel mismatch": lambda f: f(torch.randn(2, 5, 5, 5), _conv_w()),
    "groups not dividing": lambda f: f(_conv_x(), _conv_w(), groups=3),
    "zero groups": lambda f: f(_conv_x(), _conv_w(), groups=0),
    "zero stride": lambda f: f(_conv_x(), _conv_w(), stride=0),
    "negative stride": lambda f: f(_conv_x(), _conv_w(), stride=(1, -1)),
    "negative padding": lambda f: f(_conv_x(), _conv_w(), padding=-1),
    "output_padding >= stride and dilation": lambda f: f(_conv_x(), _conv_w(), stride=2, output_padding=2),
    "negative output_padding": lambda f: f(_conv_x(), _conv_w(), stride=2, output_padding=-1),
    "weight dtype": lambda f: f(_conv_x(), _conv_w().double()),
    "bias dtype": lambda f: f(_conv_x(), _conv_w(), torch.randn(3).double()),
    "bias size": lambda f: f(_conv_x(), _conv_w(), torch.randn(4)),
    "negative output size": lambda f: f(torch.randn(1, 4, 1, 1), _conv_w(), padding=5),
    "three strides": lambda f: f(_conv_x(), _conv_w(), stride=(1, 2, 3)),
    "empty spatial input": lambda f: f(torch.randn(2, 4, 0, 5), _conv_w()),
    "zero input channels": lambda f: f(torch.randn(2, 0, 5, 5), torch.randn(0, 3, 3, 3)),
}


@pytest.mark.parametrize("name", list(CONV_BAD_CALLS))
def test_conv_transpose2d_bad_input_raises_like_pytorch(name):
    call = CONV_BAD_CALLS[name]
    with pytest.raises(Exception) as expected:
        call(F.conv_transpose2d)
    with pytest.raises(expected.type) as got:
        call(tconv.conv_transpose2d)
    assert str(got.value)  # a message, not an empty error


def test_conv_transpose2d_non_positive_dilation_is_rejected():
    with pytest.raises(RuntimeError, match="dilation"):
        tconv.conv_transpose2d(_conv_x(), _conv_w(), dilation=0)


def test_conv_transpose2d_integer_input_is_rejected():
    with pytest.raises(RuntimeError, match="not implemented for 'Long'"):
        tconv.conv_transpose2d(_conv_x().long(), _conv_w().long())


@pytest.mark.parametrize("output_size", [(20, 20), (11, 11, 11)])
def test_conv_transpose2d_module_bad_output_size_raises_value_error(output_size):
    layer = tconv.ConvTranspose2d(4, 3, 3, stride=2)
    with pytest.raises(ValueError):
        layer(_conv_x(), output_size=output_size)


def test_conv_transpose2d_module_constructor_errors_like_pytorch():
    with pytest.raises(ValueError):
        tconv.ConvTranspose2d(4, 3, 3, padding_mode="bogus")
    with pytest.raises(ValueError):
        tconv.ConvTranspose2d(4, 3, 3, groups=2)


def _image(*shape):
    return torch.randn(*(shape or (2, 3, 5, 5)))


INTERPOLATE_BAD_CALLS = {
    "size and scale_factor": lambda f: f(_image(), size=4, scale_factor=2, mode="bilinear"),
    "neither size nor scale_factor": lambda f: f(_image(), mode="bicubic"),
    "size of wrong length": lambda f: f(_image(), size=(4, 4, 4), mode="bilinear"),
    "scale_factor of wrong length": lambda f: f(_image(), scale_factor=(2,), mode="bilinear"),
    "float size": lambda f: f(_image(), size=(4.5, 4), mode="bilinear"),
    "recompute with size": lambda f: f(_image(), size=4, recompute_scale_factor=True, mode="bilinear"),
    "3-D input": lambda f: f(_image(2, 3, 5), scale_factor=2, mode="bilinear"),
    "5-D input": lambda f: f(_image(1, 2, 3, 5, 5), scale_factor=2, mode="bicubic"),
    "2-D input": lambda f: f(_image(5, 5), size=3, mode="bilinear"),
    "3-D antialias": lambda f: f(_image(2, 3, 5), scale_factor=0.5, mode="bilinear", antialias=True),
    "zero output size": lambda f: f(_image(), size=(0, 4), mode="bilinear"),
    "negative output size": lambda f: f(_image(), size=(-2, 4), mode="bicubic"),
    "scale truncating to zero": lambda f: f(_image(), scale_factor=0.1, mode="bilinear"),
    "negative scale": lambda f: f(_image(), scale_factor=-2.0, mode="bicubic"),
    "empty spatial input": lambda f: f(_image(2, 3, 0, 5), size=4, mode="bilinear"),
    "zero channels": lambda f: f(_image(2, 0, 5, 5), size=4, mode="bilinear"),
    "integer input": lambda f: f(_image().long(), size=4, mode="bilinear"),
    "align_corners with nearest": lambda f: f(_image(), scale_factor=2, mode="nearest", align_corners=True),
    "align_corners with area": lambda f: f(_image(), size=3, mode="area", align_corners=False),
}


@pytest.mark.parametrize("name", list(INTERPOLATE_BAD_CALLS))
def test_interpolate_bad_input_raises_like_pytorch(name):
    call = INTERPOLATE_BAD_CALLS[name]
    with pytest.raises(Exception) as expected:
        call(F.interpolate)
    with pytest.raises(expected.type) as got:
        call(tconv.interpolate)
    assert str(got.value)


@pytest.mark.parametrize("mode", ["nearest", "area", "nearest-exact", "lanczos", "foo"])
def test_interpolate_other_modes_raise_value_error_naming_the_supported_ones(mode):
    with pytest.raises(ValueError, match="'bilinear', 'bicubic', 'linear' or 'trilinear'"):
        tconv.interpolate(_image(), scale_factor=2, mode=mode)


@pytest.mark.parametrize("mode", ["linear", "trilinear"])
def test_interpolate_linear_modes_on_4d_input_raise_like_pytorch(mode):
    with pytest.raises(NotImplementedError, match=f"{mode} mode needs"):
        tconv.interpolate(_image(), scale_factor=2, mode=mode)
    with pytest.raises(NotImplementedError):
        F.interpolate(_image(), scale_factor=2, mode=mode)


def test_upsample_module_rejects_other_modes():
    with pytest.raises(ValueError, match="bilinear.*bicubic"):
        tconv.Upsample(scale_factor=2, mode="nearest")


@pytest.mark.parametrize("x", [torch.randn(5), torch.randn(1, 2, 3, 4, 5), torch.tensor(1.0)],
                         ids=["1-D", "5-D", "0-D"])
def test_gram_bad_ndim_raises_runtime_error(x):
    with pytest.raises(RuntimeError, match="gram_matrix"):
        tconv.gram_matrix(x)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.complex64])
def test_gram_non_floating_dtype_raises_runtime_error(dtype):
    x = torch.ones(2, 3, 4, 4, dtype=dtype)
    with pytest.raises(RuntimeError, match="not implemented for"):
        tconv.gram_matrix(x)


def test_gram_op_argument_errors():
    x = torch.randn(2, 3, 5)
    with pytest.raises(RuntimeError, match=r"\(N, C, L\)"):
        ops.gram_matrix(torch.randn(3, 5), True)
    with pytest.raises(RuntimeError, match="grad_gram of size"):
        ops.gram_matrix_backward(torch.randn(2, 3, 4), x, True)
    with pytest.raises(RuntimeError, match="should be the same"):
        ops.gram_matrix_backward(torch.randn(2, 3, 3, dtype=torch.float64), x, True)


def test_style_loss_shape_mismatch_raises_like_pytorch():
    with pytest.raises(RuntimeError):
        tconv.style_loss(torch.randn(1, 4, 3, 3), torch.randn(1, 5, 5))


# ---- mixed devices: the CPU kernels' shared argument checks ----------------------------------------------

_CPU_KEYS = torch._C.DispatchKeySet(torch._C.DispatchKey.CPU)

MIXED_DEVICE_CALLS = {  # name -> (op, arguments builder for (device of the first, of the second))
    "conv weight": (ops.conv_transpose2d.default,
                    lambda a, b: (torch.randn(1, 2, 3, 3, device=a), torch.randn(2, 2, 3, 3, device=b),
                                  None, [1, 1], [0, 0], [0, 0], 1, [1, 1])),
    "conv bias": (ops.conv_transpose2d.default,
                  lambda a, b: (torch.randn(1, 2, 3, 3, device=a), torch.randn(2, 2, 3, 3, device=a),
                                torch.randn(2, device=b), [1, 1], [0, 0], [0, 0], 1, [1, 1])),
    "conv backward_input": (ops.conv_transpose2d_backward_input.default,
                            lambda a, b: (torch.randn(1, 2, 5, 5, device=a), torch.randn(2, 2, 3, 3, device=b),
                                          [1, 1], [0, 0], 1, [1, 1], [3, 3])),
    "conv backward_weight": (ops.conv_transpose2d_backward_weight.default,
                             lambda a, b: (torch.randn(1, 2, 5, 5, device=a), torch.randn(1, 2, 3, 3, device=b),
                                           [3, 3], [1, 1], [0, 0], 1, [1, 1])),
    "gram backward": (ops.gram_matrix_backward.default,
                      lambda a, b: (torch.randn(1, 2, 2, device=a), torch.randn(1, 2, 3, device=b), True)),
}


@pytest.mark.parametrize("name", list(MIXED_DEVICE_CALLS))
def test_cpu_kernels_reject_tensors_of_another_device(name):
    """The dispatcher sends a CPU/meta mix to the meta kernel; called directly, the CPU kernel
    itself must refuse the meta tensor with a clear error (the same check guards the CUDA kernels
    against a CPU tensor)."""
    op, make = MIXED_DEVICE_CALLS[name]
    with pytest.raises(RuntimeError, match="should be on the same device"):
        op.redispatch(_CPU_KEYS, *make("cpu", "meta"))


# ---- NaN and Inf ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("where", ["input", "weight", "bias"])
@pytest.mark.parametrize("cfg", CONV_NAN_CFGS, ids=str)
def test_conv_transpose2d_nan_inf_like_pytorch(cfg, where, layout):
    cin, cout, hw, k, s, p, op, g, d = cfg
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, cin, *hw, dtype=torch.float64, generator=gen)
    w = torch.randn(cin, cout // g, *k, dtype=torch.float64, generator=gen)
    b = torch.randn(cout, dtype=torch.float64, generator=gen)
    x, w, b = poison_one(where, gen, dict(input=x, weight=w, bias=b), dict(input=0.15, weight=0.05, bias=0.3)).values()
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    kw = dict(stride=s, padding=p, output_padding=op, groups=g, dilation=d)
    same_specials(tconv.conv_transpose2d(x, w, b, **kw), F.conv_transpose2d(x, w, b, **kw))


# Wide strides (stride_h * stride_w >= 16) take the backward's cell view, whose zero-padded taps
# would meet the specials: those must take the patch path, like the forward's direct fallback.
@pytest.mark.parametrize("k,stride,padding", [(3, 2, 0), (4, 4, 0), (10, 5, 2), (8, 4, 2)], ids=str)
def test_conv_transpose2d_backward_nan_inf_like_pytorch(k, stride, padding):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64, generator=gen)
    w = torch.randn(4, 3, k, k, dtype=torch.float64, generator=gen)
    ho = (5 - 1) * stride - 2 * padding + k
    go = poison(torch.randn(2, 3, ho, ho, dtype=torch.float64, generator=gen), gen, 0.02)
    res = []
    for fn in (tconv.conv_transpose2d, F.conv_transpose2d):
        xl, wl = x.clone().requires_grad_(), w.clone().requires_grad_()
        out = fn(xl, wl, stride=stride, padding=padding)
        res.append(torch.autograd.grad(out, (xl, wl), go))
    for a, e in zip(*res):
        same_specials(a, e)


@pytest.mark.parametrize("where", ["input", "weight", "bias", "grad_output"])
@pytest.mark.parametrize("cfg", CONV_NAN_CFGS, ids=str)
def test_direct_reference_is_pytorchs_definition(cfg, where):
    """The direct reference equals PyTorch's forward, NaN/Inf included, and PyTorch's backward
    where only grad_output holds them. With a non-finite input or weight PyTorch's CPU backward
    is no reference: its im2col paths (float64; float32 with groups or dilation) multiply padded
    zeros, its oneDNN path (other float32 shapes) does not."""
    x, w, b, go, kw = conv_nan_case(cfg, where, seed=6)
    ref = conv_grads(direct_conv_transpose2d, x, w, b, go, **kw)
    theirs = conv_grads(F.conv_transpose2d, x, w, b, go, **kw)
    same_specials(ref[0], theirs[0])
    if where != "input" and where != "weight":
        for a, e in zip(ref[1:], theirs[1:]):
            same_specials(a, e)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("kw", [dict(scale_factor=2), dict(scale_factor=2, align_corners=True),
                                dict(size=(7, 11)), dict(size=(9, 10), align_corners=True),
                                dict(scale_factor=0.5), dict(scale_factor=0.4, antialias=True),
                                dict(size=(1, 1)), dict(scale_factor=1.0)],
                         ids=str)
def test_interpolate_nan_inf_like_pytorch(kw, mode, layout):
    gen = torch.Generator().manual_seed(3)
    x = poison(torch.randn(2, 3, 6, 7, dtype=torch.float64, generator=gen), gen, 0.08)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    same_specials(tconv.interpolate(x, mode=mode, **kw), F.interpolate(x, mode=mode, **kw))


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("sf", [(2.0, 2.0), (2.0, 0.5), (0.25, 0.25)], ids=str)
@pytest.mark.parametrize("where", ["one row", "last element", "spread"])
def test_interpolate_float32_nan_inf_found_by_every_path(where, sf, mode, layout):
    """The forward finds Inf/NaN while its kernels read the source rows (no separate scan): each
    memory format's orders (rows first, W first / columns first) and vector gathers must see a
    lone special anywhere, including the last element."""
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 16, 24, 40, generator=gen)
    if where == "one row":
        x[1, 7, 13, 5] = float("inf")
    elif where == "last element":
        x[-1, -1, -1, -1] = float("-inf")
    else:
        x = poison(x, gen, 0.01)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    same_specials(tconv.interpolate(x, scale_factor=sf, mode=mode),
                   F.interpolate(x, scale_factor=sf, mode=mode), tol=1e-5)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("shape", [(2, 5, 4, 6), (1, 70, 9, 9)], ids=str)
def test_gram_nan_inf_like_matmul(shape, layout):
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(*shape, dtype=torch.float64, generator=gen)
    x = poison(x, gen, 0.002 if shape[1] > 10 else 0.03)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    f = x.flatten(2)
    want = f @ f.mT / f[0].numel()
    same_specials(tconv.gram_matrix(x), want)


# ---- empty tensors -------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,wshape,groups", [((0, 4, 5, 5), (4, 3, 3, 3), 1),
                                                  ((2, 0, 5, 5), (0, 3, 3, 3), 1),
                                                  ((0, 4, 5, 5), (4, 1, 3, 3), 4),
                                                  ((2, 4, 5, 5), (4, 0, 3, 3), 1)], ids=str)
def test_conv_transpose2d_empty_like_pytorch(shape, wshape, groups):
    """Batch 0, zero input channels, zero output channels: an empty result of PyTorch's shape
    (from the meta device: PyTorch's oneDNN CPU path itself fails on zero output channels) and
    all-zero gradients of the right shapes."""
    x = torch.randn(*shape, requires_grad=True)
    w = torch.randn(*wshape, requires_grad=True)
    try:
        want = F.conv_transpose2d(x, w, stride=2, groups=groups)
    except RuntimeError as e:
        if "primitive descriptor" in str(e):  # oneDNN's failure, not an argument error
            want = F.conv_transpose2d(x.to("meta"), w.to("meta"), stride=2, groups=groups)
        else:  # an argument error: tconv must reject it too
            with pytest.raises(RuntimeError, match=re.escape(str(e).splitlines()[0][:40])):
                tconv.conv_transpose2d(x, w, stride=2, groups=groups)
            return
    got = tconv.conv_transpose2d(x, w, stride=2, groups=groups)
    assert got.shape == want.shape and got.dtype == want.dtype
    if got.numel():
        torch.testing.assert_close(got, F.conv_transpose2d(x, w, stride=2, groups=groups))
    assert_input_weight_grads(got, x, w)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("padding,output_size", [((1, 0), (0, 3, 0, 4)), ((0, 2), (0, 3, 2, 0)),
                                                  ((1, 1), (0, 3, 0, 2)), ((2, 0), None)], ids=str)
def test_conv_transpose2d_empty_batch_with_empty_output_plane(padding, output_size, channels_last):
    """An empty batch may give an output plane of size 0, as in PyTorch (a non-empty batch may
    not); a negative size is a RuntimeError either way."""
    x = torch.randn(0, 2, 2, 3, requires_grad=True)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    w = torch.randn(2, 3, 1, 2, requires_grad=True)
    if output_size is None:
        with pytest.raises(RuntimeError):
            F.conv_transpose2d(x, w, padding=padding)
        with pytest.raises(RuntimeError, match="too small"):
            tconv.conv_transpose2d(x, w, padding=padding)
        return
    want = F.conv_transpose2d(x, w, padding=padding)
    got = tconv.conv_transpose2d(x, w, padding=padding)
    assert tuple(want.shape) == output_size and got.shape == want.shape
    assert_input_weight_grads(got, x, w)
    with pytest.raises(RuntimeError, match="too small"):  # the same with one image
        tconv.conv_transpose2d(torch.randn(1, 2, 2, 3), w, padding=padding)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_interpolate_empty_batch_backward(mode):
    x = torch.randn(0, 3, 4, 5, requires_grad=True)
    y = tconv.interpolate(x, scale_factor=2, mode=mode)
    assert y.shape == F.interpolate(x, scale_factor=2, mode=mode).shape
    (g,) = torch.autograd.grad(y.sum(), x)
    assert g.shape == x.shape


@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (2, 0, 4, 4), (2, 3, 0, 4), (0, 5), (3, 0)], ids=str)
def test_gram_empty(shape):
    x = torch.randn(*shape, requires_grad=True)
    g = tconv.gram_matrix(x)
    c = shape[1] if len(shape) == 4 else shape[0]
    assert g.shape == ((shape[0], c, c) if len(shape) == 4 else (c, c))
    assert not g.any()
    (dx,) = torch.autograd.grad(g.sum(), x)
    assert dx.shape == x.shape


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_interpolate_empty_batch_like_pytorch(mode, layout):
    check_interpolate(make_image(0, 3, (4, 5), layout=layout), mode=mode, scale_factor=2)


def test_gram_empty_shapes_and_zeros():
    assert tconv.gram_matrix(torch.randn(0, 3, 4, 4)).shape == (0, 3, 3)
    assert tconv.gram_matrix(torch.randn(2, 0, 4, 4)).shape == (2, 0, 0)
    g = tconv.gram_matrix(torch.randn(2, 3, 0, 4))  # no positions: zeros, not 0 / 0
    assert torch.equal(g, torch.zeros(2, 3, 3))
    x = torch.randn(2, 3, 0, 4, requires_grad=True)
    tconv.gram_matrix(x).sum().backward()
    assert x.grad.shape == x.shape


# ---- bitwise determinism across thread counts (1 vs 2), forward and backward --------------------------

def test_bitwise_deterministic_across_thread_counts_every_op():
    runs = at_thread_counts(all_ops_run, (1, 2, 1, 2))
    for run in runs[1:]:
        for a, e in zip(run, runs[0]):
            assert torch.equal(a, e)


# Shapes that make a BLAS split its work: few channels over a long N*H*W (the weight gradient's
# reduction), K in the thousands (many input channels), a DCGAN first layer (1x1 input), and the
# case that differed on an Intel Xeon (MKL's sgemm splits K by its own thread count;
# csrc/cpu/gemm.h, Note [single-threaded BLAS]).
BLAS_SPLIT_CASES = [
    ((2, 8, 40, 36), (8, 6, 4, 4), dict(stride=2, padding=1)),
    ((1, 8, 4, 2048), (8, 4, 2, 2), dict(stride=1)),
    ((4, 2, 96, 96), (2, 3, 3, 3), dict(stride=1, padding=1)),
    ((2, 1024, 4, 4), (1024, 8, 4, 4), dict(stride=2, padding=1)),
    ((16, 100, 1, 1), (100, 64, 4, 4), dict()),
    # blocks of >= 2^23 multiply-adds, which go to oneDNN (Note [float32 GEMM engine])
    ((16, 128, 8, 8), (128, 64, 4, 4), dict(stride=2, padding=1)),
    ((2, 64, 32, 32), (64, 64, 3, 3), dict(stride=1, padding=1)),
]


@pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN")  # torch's flags() says it
@pytest.mark.parametrize("channels_last", [False, True])
def test_conv_transpose2d_float32_gemm_engines_agree(channels_last):
    """oneDNN and MKL (torch.backends.mkldnn off) give the same float32 results to rounding, with
    the forward forced through each path."""
    gen = torch.Generator().manual_seed(4)
    for x_shape, w_shape, kw in BLAS_SPLIT_CASES[-2:]:
        x = torch.randn(x_shape, generator=gen)
        if channels_last:
            x = x.to(memory_format=torch.channels_last)
        w, b = torch.randn(w_shape, generator=gen) / w_shape[0] ** 0.5, torch.randn(w_shape[1], generator=gen)
        x, w, b = (t.requires_grad_() for t in (x, w, b))
        go = torch.randn(F.conv_transpose2d(x, w, b, **kw).shape, generator=gen)
        runs = []
        for enabled in (True, False):
            with torch.backends.mkldnn.flags(enabled=enabled):
                y = tconv.conv_transpose2d(x, w, b, **kw)
                runs.append([y, *torch.autograd.grad(y, (x, w, b), go)])
        for a, e in zip(*runs):
            torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-4)


def _blas_split_run(channels_last):
    gen = torch.Generator().manual_seed(3)
    results = []
    for x_shape, w_shape, kw in BLAS_SPLIT_CASES:
        x = torch.randn(x_shape, generator=gen)
        if channels_last:
            x = x.to(memory_format=torch.channels_last)
        x, w, b = (t.requires_grad_() for t in (x, torch.randn(w_shape, generator=gen),
                                                 torch.randn(w_shape[1], generator=gen)))
        y = tconv.conv_transpose2d(x, w, b, **kw)
        results += [y.detach(), *torch.autograd.grad(y, (x, w, b), torch.randn(y.shape, generator=gen))]
    # Gram: many channels; few channels, long L; AVX2's 3-tile blocks in the long-L schedule and
    # thread ranges of tiles across batch items
    for shape in ((1, 1024, 8, 8), (2, 4, 160, 160), (1, 40, 128, 128), (3, 200, 16, 16)):
        x = torch.randn(shape, generator=gen).requires_grad_()
        g = tconv.gram_matrix(x)
        results += [g.detach(), *torch.autograd.grad(g, x, torch.randn(g.shape, generator=gen))]
    return results


@pytest.mark.parametrize("channels_last", [False, True])
def test_bitwise_deterministic_across_thread_counts_blas_shapes(channels_last):
    runs = at_thread_counts(lambda: _blas_split_run(channels_last))
    for a, e in zip(runs[1], runs[0]):
        assert torch.equal(a, e)


@pytest.mark.parametrize("threads", [1, 2])
def test_conv_transpose2d_bitwise_deterministic(threads):
    x, w, b = make_conv(4, 16, 8, (9, 9), (4, 4), 1, torch.float32)
    x.requires_grad_(); w.requires_grad_(); b.requires_grad_()

    def run():
        out = tconv.conv_transpose2d(x, w, b, stride=2, padding=1)
        return (out,) + torch.autograd.grad(out, (x, w, b), torch.ones_like(out))

    runs = at_thread_counts(run, (threads, threads))
    for a, c in zip(*runs):
        assert torch.equal(a, c)


@pytest.mark.parametrize("path", ["tap", "cell"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_conv_transpose2d_forward_paths_same_bits_for_any_thread_count(path, channels_last, monkeypatch):
    monkeypatch.setenv("TCONV_CONV_FORWARD", path)
    x, w, b = make_conv(70, 16, 72, (3, 3), (4, 4), 1, torch.float32, channels_last=channels_last)
    x.requires_grad_(); w.requires_grad_(); b.requires_grad_()
    go = torch.randn(70, 72, 6, 6)

    def run():
        out = tconv.conv_transpose2d(x, w, b, stride=2, padding=1)
        return (out,) + torch.autograd.grad(out, (x, w, b), go)

    runs = at_thread_counts(run)
    for a, c in zip(*runs):
        assert torch.equal(a, c)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("mode", MODES)
def test_interpolate_bitwise_deterministic_backward(mode, layout, threads):
    x = make_image(4, 8, (17, 23), torch.float32, layout).requires_grad_()
    kw = dict(scale_factor=(2.5, 3), mode=mode)
    go = torch.randn_like(F.interpolate(x, **kw))
    # twice with this count, once with the other
    grads = at_thread_counts(lambda: torch.autograd.grad(tconv.interpolate(x, **kw), x, go)[0],
                             (threads, threads, 3 - threads))
    assert torch.equal(grads[0], grads[1]) and torch.equal(grads[0], grads[2])


@pytest.mark.parametrize("shape", [(1, 300, 7, 9), (1, 24, 64, 80), (1, 24, 160, 160)])
def test_gram_bitwise_deterministic_across_thread_counts(shape):
    x = torch.randn(*shape, requires_grad=True)
    go = torch.randn(shape[0], shape[1], shape[1])

    def forward_backward():
        g = tconv.gram_matrix(x)
        return (g,) + torch.autograd.grad(g, x, go)

    runs = at_thread_counts(forward_backward, (1, 2, 1))
    for run in runs[1:]:
        for a, b in zip(run, runs[0]):
            assert torch.equal(a, b)
