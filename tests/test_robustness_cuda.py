"""test_robustness.py on CUDA tensors, every op: every tensor row of docs/errors.md, inputs on two
devices, NaN/Inf positions against PyTorch (or the definition) in every dtype and upsampling kernel
path, empty tensors, bitwise determinism of forward and backward, and deterministic mode
(torch.use_deterministic_algorithms). Every test is skipped without a GPU."""
import pytest
import torch
import torch.nn.functional as F

import tconv
from _support import (ALL_TYPES, CONV_NAN_CFGS, ERROR_CASES, EXCEPTIONS, GRAM_TOL, HALF_TYPES,
                      MODES, all_ops_run, assert_input_weight_grads, conv_grads, conv_nan_case,
                      cpu_and_cuda_images, direct_conv_transpose2d, error_rows, make_conv, poison,
                      same_specials, specials_equal)

pytestmark = [pytest.mark.cuda, pytest.mark.usefixtures("full_precision_float32")]
ops = torch.ops.tconv
ERROR_ROWS = error_rows()


def _cuda(*tensors):
    return [t.cuda() if t is not None else None for t in tensors]


# ---- invalid arguments: the rows of docs/errors.md, with CUDA tensors ----------------------------------

# Rows that never hand a tensor to a kernel (module constructors, mode names): nothing device-specific.
NOT_ABOUT_TENSORS = {"conv: module padding_mode", "conv: module groups not dividing",
                     "interp: Upsample unsupported mode"}
TENSOR_ROWS = [r for r in ERROR_ROWS if r[0] not in NOT_ABOUT_TENSORS]


@pytest.mark.parametrize("row", TENSOR_ROWS, ids=[r[0] for r in TENSOR_ROWS])
def test_invalid_argument_raises_as_documented_on_cuda(row):
    name, _op, _arg, exc_name, excerpt = row
    ours, _theirs = ERROR_CASES[name]
    exc = EXCEPTIONS[exc_name]
    with torch.device("cuda"):  # every tensor the case creates is a CUDA tensor
        with pytest.raises(exc) as got:
            ours()
    assert excerpt.replace("\\|", "|") in str(got.value), str(got.value)


def test_cases_really_run_on_cuda():
    with torch.device("cuda"):
        assert torch.randn(2).is_cuda and tconv.ConvTranspose2d(2, 2, 3).weight.is_cuda


# ---- tensors on two devices ----------------------------------------------------------------------------

def _conv_call(x_dev, w_dev, b_dev=None):
    def call():
        b = torch.randn(3, device=b_dev) if b_dev is not None else None
        return tconv.conv_transpose2d(torch.randn(1, 2, 5, 5, device=x_dev),
                                      torch.randn(2, 3, 3, 3, device=w_dev), b, stride=2)
    return call


MIXED = {
    "conv: CUDA input, CPU weight": _conv_call("cuda", "cpu"),
    "conv: CPU input, CUDA weight": _conv_call("cpu", "cuda"),
    "conv: CUDA input and weight, CPU bias": _conv_call("cuda", "cuda", "cpu"),
    "conv: CPU input and weight, CUDA bias": _conv_call("cpu", "cpu", "cuda"),
    "conv backward_input: CUDA grad_output, CPU weight": lambda: ops.conv_transpose2d_backward_input(
        torch.randn(1, 3, 11, 11, device="cuda"), torch.randn(2, 3, 3, 3), [2, 2], [0, 0], 1, [1, 1], [5, 5]),
    "conv backward_weight: CUDA grad_output, CPU input": lambda: ops.conv_transpose2d_backward_weight(
        torch.randn(1, 3, 11, 11, device="cuda"), torch.randn(1, 2, 5, 5), [3, 3], [2, 2], [0, 0], 1, [1, 1]),
    "conv backward_weight: CPU grad_output, CUDA input": lambda: ops.conv_transpose2d_backward_weight(
        torch.randn(1, 3, 11, 11), torch.randn(1, 2, 5, 5, device="cuda"), [3, 3], [2, 2], [0, 0], 1, [1, 1]),
    "gram backward: CUDA grad_gram, CPU features": lambda: ops.gram_matrix_backward(
        torch.randn(1, 2, 2, device="cuda"), torch.randn(1, 2, 3), True),
    "gram backward: CPU grad_gram, CUDA features": lambda: ops.gram_matrix_backward(
        torch.randn(1, 2, 2), torch.randn(1, 2, 3, device="cuda"), True),
}


@pytest.mark.parametrize("name", list(MIXED))
def test_tensors_on_two_devices_raise(name):
    with pytest.raises(RuntimeError, match="should be on the same device"):
        MIXED[name]()
    torch.cuda.synchronize()  # nothing was launched on bad pointers: the context is still sound


def test_module_on_cpu_with_cuda_input_raises():
    m = tconv.ConvTranspose2d(2, 3, 3, stride=2)
    with pytest.raises(RuntimeError, match="should be on the same device"):
        m(torch.randn(1, 2, 5, 5, device="cuda"))


def test_conv_transpose2d_mixed_devices_raise():
    x, w, b = make_conv(1, 4, 4, (3, 3), (3, 3), 1, torch.float32)
    with pytest.raises(RuntimeError, match="same device"):
        tconv.conv_transpose2d(x.cuda(), w, b.cuda())
    with pytest.raises(RuntimeError, match="same device"):
        tconv.conv_transpose2d(x.cuda(), w.cuda(), b)


# ---- NaN and Inf ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("where", ["input", "weight", "bias"])
@pytest.mark.parametrize("cfg", CONV_NAN_CFGS, ids=str)
def test_conv_transpose2d_nan_inf_like_pytorch(cfg, where, layout, dtype):
    """Forward: the cell GEMM meets 0 * Inf in its zero taps; the epilogue recomputes those outputs."""
    x, w, b, _go, kw = conv_nan_case(cfg, where, seed=1)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    want = F.conv_transpose2d(x, w, b, **kw)  # float64: PyTorch's CPU forward is the definition
    x, w, b = (t.to(dtype) for t in (x, w, b))  # (its float32 forward is not, at holes)
    got = tconv.conv_transpose2d(*_cuda(x, w, b), **kw).cpu()
    if dtype == torch.float64:
        same_specials(got, want)
    else:
        specials_equal(got, want.float())
        torch.testing.assert_close(got, want.float(), equal_nan=True, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("where", ["input", "weight", "grad_output"])
@pytest.mark.parametrize("cfg", CONV_NAN_CFGS, ids=str)
def test_conv_transpose2d_backward_nan_inf_like_the_definition(cfg, where, layout):
    """grad_input and grad_weight: the patch GEMMs meet 0 * Inf at taps outside grad_output; the
    write epilogues recompute those elements. The reference is the definition (equal to PyTorch's
    CPU backward where only grad_output holds NaN/Inf; see test_direct_reference_is_pytorchs_definition)."""
    x, w, b, go, kw = conv_nan_case(cfg, where, seed=2)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    got = conv_grads(tconv.conv_transpose2d, *_cuda(x, w, b, go), **kw)
    want = conv_grads(direct_conv_transpose2d, x, w, b, go, **kw)
    for a, e in zip(got, want):
        assert a.is_cuda
        same_specials(a.cpu(), e)
    if where == "grad_output":  # here PyTorch's own backward is the definition too
        for a, e in zip(got[1:], conv_grads(F.conv_transpose2d, x, w, b, go, **kw)[1:]):
            same_specials(a.cpu(), e)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_conv_transpose2d_half_nan_inf_like_float32(dtype):
    """Half precision: the recompute runs in float32 and rounds once, like the GEMM path."""
    x, w, b, go, kw = conv_nan_case(CONV_NAN_CFGS[1], "input", seed=3)
    x, w, b, go = (t.to(dtype) for t in (x, w, b, go))
    got = conv_grads(tconv.conv_transpose2d, *_cuda(x, w, b, go), **kw)
    want = conv_grads(direct_conv_transpose2d, *(t.float() for t in (x, w, b, go)), **kw)
    for a, e in zip(got, want):
        specials_equal(a.cpu().float(), e.to(dtype).float())


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("kw", [dict(scale_factor=2), dict(size=(9, 10), align_corners=True),
                                dict(scale_factor=0.5), dict(scale_factor=0.4, antialias=True),
                                dict(size=(1, 1))], ids=str)
def test_interpolate_nan_inf_like_pytorch(kw, mode):
    gen = torch.Generator().manual_seed(3)
    x = poison(torch.randn(2, 3, 6, 7, dtype=torch.float64, generator=gen), gen, 0.08)
    same_specials(tconv.interpolate(x.cuda(), mode=mode, **kw).cpu(), F.interpolate(x, mode=mode, **kw))


@pytest.mark.parametrize("shape", [(2, 5, 4, 6), (1, 70, 9, 9)], ids=str)
def test_gram_nan_inf_like_matmul(shape):
    gen = torch.Generator().manual_seed(4)
    x = poison(torch.randn(*shape, dtype=torch.float64, generator=gen), gen,
                0.002 if shape[1] > 10 else 0.03)
    f = x.flatten(2)
    same_specials(tconv.gram_matrix(x.cuda()).cpu(), f @ f.mT / f[0].numel())


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kw", [dict(scale_factor=2), dict(scale_factor=2, align_corners=True),
                                dict(size=(7, 11)), dict(size=(9, 10), align_corners=True),
                                dict(scale_factor=0.5), dict(scale_factor=0.4, antialias=True),
                                dict(size=(1, 1)), dict(scale_factor=1.0)],
                         ids=str)
def test_interpolate_nan_inf_like_pytorch_every_path(kw, mode, layout, upsample_path):
    """NaN, +Inf and -Inf land exactly where PyTorch's (CPU) kernels put them."""
    gen = torch.Generator().manual_seed(3)
    x = poison(torch.randn(2, 3, 6, 7, dtype=torch.float64, generator=gen), gen, 0.08)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    same_specials(tconv.interpolate(x.cuda(), mode=mode, **kw).cpu(), F.interpolate(x, mode=mode, **kw))


@pytest.mark.parametrize("dtype", ALL_TYPES, ids=str)
@pytest.mark.parametrize("shape", [(2, 5, 4, 6), (1, 70, 9, 9), (2, 130, 40, 40), (1, 8, 128, 128)], ids=str)
def test_gram_nan_inf_like_matmul_every_dtype(shape, dtype):
    """Inf / NaN land where a matmul puts them (float32's 3xTF32 tiles that meet one are
    recomputed directly); the finite values stay close."""
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(*shape, generator=gen)
    mask = torch.rand(x.shape, generator=gen) < (0.03 if x.numel() < 1000 else 5 / x.numel())
    specials = torch.tensor([float("nan"), float("inf"), -float("inf")])
    x = torch.where(mask, specials[torch.randint(0, 3, x.shape, generator=gen)], x).to(dtype)
    f = x.double().flatten(2)
    want = f @ f.mT / f[0].numel()
    got = tconv.gram_matrix(x.cuda()).cpu().double()
    assert torch.equal(torch.isnan(got), torch.isnan(want)), "NaN positions differ"
    assert torch.equal(torch.isposinf(got), torch.isposinf(want)), "+inf positions differ"
    assert torch.equal(torch.isneginf(got), torch.isneginf(want)), "-inf positions differ"
    finite = torch.isfinite(want)
    assert finite.any()
    tol = 4 * torch.finfo(dtype).eps if dtype in HALF_TYPES else GRAM_TOL[dtype][0]
    torch.testing.assert_close(got[finite], want[finite], rtol=tol, atol=tol * want[finite].abs().max().item())


# ---- empty tensors -------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,wshape,groups", [((0, 4, 5, 5), (4, 3, 3, 3), 1),
                                                  ((2, 0, 5, 5), (0, 3, 3, 3), 1),
                                                  ((0, 4, 5, 5), (4, 1, 3, 3), 4),
                                                  ((2, 4, 5, 5), (4, 0, 3, 3), 1)], ids=str)
def test_conv_transpose2d_empty(shape, wshape, groups):
    x = torch.randn(*shape, device="cuda", requires_grad=True)
    w = torch.randn(*wshape, device="cuda", requires_grad=True)
    try:
        want = F.conv_transpose2d(x.detach().to("meta"), w.detach().to("meta"), stride=2, groups=groups)
    except RuntimeError:  # an argument error (zero input channels): tconv must reject it too
        with pytest.raises(RuntimeError):
            tconv.conv_transpose2d(x, w, stride=2, groups=groups)
        return
    got = tconv.conv_transpose2d(x, w, stride=2, groups=groups)
    assert got.shape == want.shape and got.is_cuda
    assert_input_weight_grads(got, x, w)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_interpolate_empty_batch(mode):
    x = torch.randn(0, 3, 4, 5, device="cuda", requires_grad=True)
    y = tconv.interpolate(x, scale_factor=2, mode=mode)
    assert y.shape == (0, 3, 8, 10) and y.is_cuda
    (g,) = torch.autograd.grad(y.sum(), x)
    assert g.shape == x.shape


@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (2, 0, 4, 4), (2, 3, 0, 4), (0, 5), (3, 0)], ids=str)
def test_gram_empty(shape):
    x = torch.randn(*shape, device="cuda", requires_grad=True)
    g = tconv.gram_matrix(x)
    c = shape[1] if len(shape) == 4 else shape[0]
    assert g.shape == ((shape[0], c, c) if len(shape) == 4 else (c, c))
    assert not g.any()
    (dx,) = torch.autograd.grad(g.sum(), x)
    assert dx.shape == x.shape and not dx.any()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_interpolate_empty_tensors(mode, layout):
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = torch.randn(0, 3, 4, 5, device="cuda").contiguous(memory_format=fmt).requires_grad_()
    y = tconv.interpolate(x, scale_factor=2, mode=mode)
    assert y.shape == (0, 3, 8, 10) and y.device.type == "cuda"
    (g,) = torch.autograd.grad(y, x, torch.randn_like(y))
    assert g.shape == x.shape
    bwd = getattr(ops, f"upsample_{mode}2d_backward")
    assert bwd(torch.randn(2, 0, 8, 10, device="cuda"), [4, 5], False, False, None, None).shape == (2, 0, 4, 5)


def test_gram_empty_every_dtype():
    for shape in [(0, 3, 4), (2, 0, 4), (2, 3, 0)]:
        for dtype in ALL_TYPES:
            x = torch.randn(shape, device="cuda").to(dtype)
            g = ops.gram_matrix(x, True)
            assert g.shape == (shape[0], shape[1], shape[1]) and g.device.type == "cuda"
            assert torch.equal(g, torch.zeros_like(g))  # no positions: zeros, not 0 / 0
            dx = ops.gram_matrix_backward(torch.randn(g.shape, device="cuda").to(dtype), x, True)
            assert dx.shape == x.shape
    x = torch.randn(2, 3, 0, 4, device="cuda", requires_grad=True)
    tconv.gram_matrix(x).sum().backward()
    assert x.grad.shape == x.shape


# ---- bitwise determinism, deterministic mode -----------------------------------------------------------

def _all_ops_run_cuda(seed=0, poisoned=False):
    return all_ops_run(seed, device="cuda", poisoned=poisoned)


def _bitwise_equal(run, first):
    assert len(run) == len(first)
    for a, e in zip(run, first):
        # NaN != NaN: compare the bits
        assert a.dtype == e.dtype and a.shape == e.shape
        assert torch.equal(a.view(torch.int32), e.view(torch.int32))


@pytest.mark.parametrize("poisoned", [False, True])
def test_bitwise_deterministic_every_op(poisoned):
    first = _all_ops_run_cuda(poisoned=poisoned)
    for _ in range(2):
        _bitwise_equal(_all_ops_run_cuda(poisoned=poisoned), first)


def test_every_op_under_deterministic_algorithms():
    """torch.use_deterministic_algorithms(True) refuses nondeterministic kernels and fills
    torch.empty with NaN: every op runs and writes every element, bitwise as in normal mode."""
    normal = _all_ops_run_cuda(seed=7)
    old, old_fill = torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True)
    torch.utils.deterministic.fill_uninitialized_memory = True
    try:
        strict = _all_ops_run_cuda(seed=7)
    finally:
        torch.use_deterministic_algorithms(old)
        torch.utils.deterministic.fill_uninitialized_memory = old_fill
    _bitwise_equal(strict, normal)
    assert all(t.isfinite().all() for t in strict)


CONV_DETERMINISM = [
    # n, cin, cout, hw, k, stride, padding, groups, channels_last
    (4, 16, 8, (9, 9), (4, 4), 2, 1, 1, False),
    (4, 16, 8, (9, 9), (4, 4), 2, 1, 1, True),
    (2, 16, 16, (12, 12), (3, 3), 1, 1, 2, False),
    (4, 16, 16, (9, 9), (4, 4), 2, 1, 16, False),  # depthwise
    (2, 21, 21, (10, 15), (64, 64), 32, 16, 1, False),  # FCN head: large reductions
]


def _conv_run_all(x, w, b, **kw):
    out = tconv.conv_transpose2d(x, w, b, **kw)
    return [out] + list(torch.autograd.grad(out, (x, w, b), torch.ones_like(out)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("cfg", CONV_DETERMINISM, ids=lambda c: "x".join(map(str, c[:5])) + ("-cl" if c[-1] else ""))
def test_conv_transpose2d_bitwise_deterministic(cfg, dtype):
    n, cin, cout, hw, k, s, p, g, cl = cfg
    x, w, b = make_conv(n, cin, cout, hw, k, g, torch.float32, channels_last=cl)
    x, w, b = (t.to("cuda", dtype).requires_grad_() for t in (x, w, b))
    first, second = _conv_run_all(x, w, b, stride=s, padding=p, groups=g), _conv_run_all(x, w, b, stride=s, padding=p, groups=g)
    for a, c in zip(first, second):
        assert torch.equal(a, c)


@pytest.mark.parametrize("cfg", CONV_DETERMINISM[:4], ids=lambda c: "x".join(map(str, c[:5])) + ("-cl" if c[-1] else ""))
def test_conv_transpose2d_runs_under_deterministic_algorithms(cfg):
    n, cin, cout, hw, k, s, p, g, cl = cfg
    x, w, b = make_conv(n, cin, cout, hw, k, g, torch.float32, channels_last=cl)
    x, w, b = (t.cuda().requires_grad_() for t in (x, w, b))
    expected = _conv_run_all(x, w, b, stride=s, padding=p, groups=g)
    old = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        got = _conv_run_all(x, w, b, stride=s, padding=p, groups=g)
    finally:
        torch.use_deterministic_algorithms(old)
    for a, c in zip(got, expected):
        assert torch.equal(a, c)


UPSAMPLE_DETERMINISM = [
    # n, c, hw, interpolate arguments
    (4, 16, (33, 47), dict(scale_factor=(2.5, 3))),
    (2, 8, (64, 64), dict(scale_factor=4, align_corners=True)),
    (2, 8, (96, 80), dict(scale_factor=0.3, antialias=True)),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cfg", UPSAMPLE_DETERMINISM, ids=lambda c: f"{c[2]}-{c[3]}".replace(" ", ""))
def test_interpolate_bitwise_deterministic(cfg, mode, layout, dtype):
    n, c, hw, kw = cfg
    x, _ = cpu_and_cuda_images(layout, n, c, hw, torch.float32)
    x = x.to("cuda", dtype).requires_grad_()
    go = torch.randn_like(tconv.interpolate(x, mode=mode, **kw))
    runs = []
    for _ in range(2):
        y = tconv.interpolate(x, mode=mode, **kw)
        runs.append((y, torch.autograd.grad(y, x, go)[0]))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("mode", MODES)
def test_interpolate_runs_under_deterministic_algorithms(mode, layout):
    """tconv's backward is a gather: allowed (and identical) in deterministic mode, where PyTorch's
    own CUDA backward (atomicAdd) raises."""
    x, _ = cpu_and_cuda_images(layout, 2, 8, (17, 23), torch.float32)
    x = x.cuda().requires_grad_()
    kw = dict(scale_factor=(2.5, 3), mode=mode)
    go = torch.randn_like(tconv.interpolate(x, **kw))
    expected = torch.autograd.grad(tconv.interpolate(x, **kw), x, go)[0]
    old = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        got = torch.autograd.grad(tconv.interpolate(x, **kw), x, go)[0]
        with pytest.raises(RuntimeError, match="deterministic"):
            torch.autograd.grad(F.interpolate(x, **kw), x, go)
    finally:
        torch.use_deterministic_algorithms(old)
    assert torch.equal(got, expected)


GRAM_DETERMINISM = [(1, 64, 65536), (4, 300, 1000), (2, 512, 4096), (1, 3, 100000)]


def _gram_run_all(x, go):
    g = tconv.gram_matrix(x)
    return [g] + list(torch.autograd.grad(g, x, go))


@pytest.mark.parametrize("dtype", ALL_TYPES, ids=str)
@pytest.mark.parametrize("shape", GRAM_DETERMINISM, ids=lambda s: "x".join(map(str, s)))
def test_gram_bitwise_deterministic(shape, dtype):
    x = torch.randn(*shape, 1, device="cuda").to(dtype).requires_grad_()
    go = torch.randn(shape[0], shape[1], shape[1], device="cuda").to(dtype)
    first, second = _gram_run_all(x, go), _gram_run_all(x, go)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("shape", GRAM_DETERMINISM[:3], ids=lambda s: "x".join(map(str, s)))
def test_gram_runs_under_deterministic_algorithms(shape, dtype):
    x = torch.randn(*shape, 1, device="cuda").to(dtype).requires_grad_()
    go = torch.randn(shape[0], shape[1], shape[1], device="cuda").to(dtype)
    expected = _gram_run_all(x, go)
    old = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)  # also fills torch.empty with NaN: every element written
    try:
        got = _gram_run_all(x, go)
    finally:
        torch.use_deterministic_algorithms(old)
    for a, b in zip(got, expected):
        assert torch.equal(a, b)
