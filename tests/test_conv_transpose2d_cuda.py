"""conv_transpose2d's numerics, gradients and opcheck on CUDA: the CPU suite's grid on the GPU
(against PyTorch on the CPU), agreement with tconv's CPU kernels, gradcheck, half precision and the
16-bit tensor-core GEMMs, the segmented reductions, opcheck and an output of more than 2^31
elements. Errors, NaN/Inf, empty tensors and determinism are in test_robustness_cuda.py; compile,
export, autocast and DDP in test_ecosystem.py; every autograd mode in test_autograd_modes.py. Every
test is skipped without a GPU."""
import pytest
import torch
import torch.nn.functional as F

import tconv
from _support import CONV_GRADCHECK, CONV_GRID, CONV_TOL, conv_grid_case, make_conv

pytestmark = [pytest.mark.cuda, pytest.mark.usefixtures("full_precision_float32")]
ops = torch.ops.tconv


def _leaves(tensors, device):
    # .to() keeps the strides of dense tensors: channels_last and transposed views stay so on the GPU.
    return [t.detach().to(device).requires_grad_() for t in tensors]


def _forward_and_grads(fn, leaves, bias, grad_out, **kw):
    out = fn(leaves[0], leaves[1], leaves[2] if bias else None, **kw)
    if out.numel() == 0:
        return out, []
    return out, list(torch.autograd.grad(out, leaves, grad_out.to(out.device)))


def _check_cuda(x, w, b, dtype, **kw):
    """CUDA forward, memory format and every gradient equal PyTorch's on the CPU."""
    rtol, atol = CONV_TOL[dtype]
    tensors = (x, w) + ((b,) if b is not None else ())
    ref_leaves, our_leaves = _leaves(tensors, "cpu"), _leaves(tensors, "cuda")
    ref = F.conv_transpose2d(ref_leaves[0], ref_leaves[1], ref_leaves[2] if b is not None else None, **kw)
    grad_out = torch.randn_like(ref)
    ref, ref_grads = _forward_and_grads(F.conv_transpose2d, ref_leaves, b is not None, grad_out, **kw)
    ours, our_grads = _forward_and_grads(tconv.conv_transpose2d, our_leaves, b is not None, grad_out, **kw)
    assert ours.device.type == "cuda" and ours.shape == ref.shape and ours.dtype == ref.dtype
    torch.testing.assert_close(ours.cpu(), ref, rtol=rtol, atol=atol)
    if ref.dim() == 4:
        assert ours.is_contiguous(memory_format=torch.channels_last) == \
            ref.is_contiguous(memory_format=torch.channels_last)
    for a, e in zip(our_grads, ref_grads):
        assert a.shape == e.shape and a.device.type == "cuda"
        torch.testing.assert_close(a.cpu(), e, rtol=rtol * 10, atol=atol * 10)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "noncontiguous"])
@pytest.mark.parametrize("cfg", CONV_GRID, ids=lambda c: "x".join(map(str, c[:5])))
def test_grid_matches_pytorch_cpu(cfg, layout, dtype):
    x, w, b, kw = conv_grid_case(cfg, layout, dtype)
    _check_cuda(x, w, b, dtype, **kw)


def test_without_bias_unbatched_and_channels_last_weight():
    x, w, _ = make_conv(1, 3, 4, (5, 5), (3, 3), 1, torch.float64)
    _check_cuda(x[0], w, None, torch.float64, stride=2, padding=1)
    x, w, b = make_conv(2, 4, 6, (5, 5), (3, 3), 1, torch.float64)
    _check_cuda(x, w.to(memory_format=torch.channels_last), b, torch.float64, stride=2)


@pytest.mark.parametrize("cfg", CONV_GRID, ids=lambda c: "x".join(map(str, c[:5])))
def test_cuda_agrees_with_tconv_cpu(cfg):
    """Both devices' kernels, op by op, in float64."""
    n, cin, cout, hw, k, s, p, op, g, d = cfg
    x, w, b = make_conv(n, cin, cout, hw, k, g, torch.float64)
    args = ([s, s] if isinstance(s, int) else list(s), [p, p] if isinstance(p, int) else list(p),
            [op, op] if isinstance(op, int) else list(op), g, [d, d] if isinstance(d, int) else list(d))
    stride, padding, output_padding, groups, dilation = args
    y_cpu = ops.conv_transpose2d(x, w, b, stride, padding, output_padding, groups, dilation)
    y_gpu = ops.conv_transpose2d(x.cuda(), w.cuda(), b.cuda(), stride, padding, output_padding, groups, dilation)
    torch.testing.assert_close(y_gpu.cpu(), y_cpu, rtol=1e-12, atol=1e-12)
    if y_cpu.numel() == 0:
        return
    go = torch.randn_like(y_cpu)
    pairs = [
        (ops.conv_transpose2d_backward_input, (go, w, stride, padding, groups, dilation, list(hw))),
        (ops.conv_transpose2d_backward_weight, (go, x, list(k), stride, padding, groups, dilation)),
        (ops.conv_transpose2d_backward_bias, (go,)),
    ]
    for op_fn, cpu_args in pairs:
        gpu_args = tuple(a.cuda() if isinstance(a, torch.Tensor) else a for a in cpu_args)
        torch.testing.assert_close(op_fn(*gpu_args).cpu(), op_fn(*cpu_args), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("kw", CONV_GRADCHECK)
def test_gradcheck_and_gradgradcheck_cuda(kw, channels_last):
    x, w, b = make_conv(2, 4, 4, (3, 4), (3, 3), kw["groups"], torch.float64, channels_last=channels_last)
    args = [t.cuda().requires_grad_() for t in (x, w, b)]
    fn = lambda x, w, b: tconv.conv_transpose2d(x, w, b, **kw)
    assert torch.autograd.gradcheck(fn, args)
    assert torch.autograd.gradgradcheck(fn, args)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("cfg", [(2, 8, 8, (6, 6), (4, 4), 2, 1, 0, 1, 1),
                                 (2, 8, 8, (6, 6), (4, 4), 2, 1, 0, 8, 1),
                                 (1, 16, 8, (5, 7), (3, 3), 1, 1, 0, 2, 1),
                                 (2, 8, 4, (5, 5), (2, 2), 2, 0, 0, 1, 1)])
def test_half_precision_against_float32(cfg, channels_last, dtype):
    n, cin, cout, hw, k, s, p, op, g, d = cfg
    x, w, b = make_conv(n, cin, cout, hw, k, g, torch.float32, channels_last=channels_last)
    xh, wh, bh = (t.to("cuda", dtype).requires_grad_() for t in (x, w, b))
    out = tconv.conv_transpose2d(xh, wh, bh, s, p, op, g, d)
    assert out.dtype == dtype and out.is_contiguous(memory_format=torch.channels_last) == channels_last
    # reference: float32 on the CPU on the same (rounded) values, rounded once at the end
    xr, wr, br = (t.detach().cpu().float().requires_grad_() for t in (xh, wh, bh))
    ref = F.conv_transpose2d(xr, wr, br, s, p, op, g, d)
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(out.float().cpu(), ref.to(dtype).float(), rtol=2 * eps,
                               atol=2 * eps * ref.abs().max().item())
    go = torch.randn_like(ref).to(dtype)
    grads = torch.autograd.grad(out, (xh, wh, bh), go.cuda())
    refs = torch.autograd.grad(ref, (xr, wr, br), go.float())
    for a, e in zip(grads, refs):
        assert a.dtype == dtype
        torch.testing.assert_close(a.float().cpu(), e.to(dtype).float(), rtol=4 * eps,
                                   atol=4 * eps * e.abs().max().item())


# Shapes whose GEMMs run on tensor cores (cublasGemmStridedBatchedEx, 16-bit in, float32 sums):
# K and the GEMM widths in the hundreds, odd leading dimensions, groups, channels_last.
GEMM_16BIT = [
    # n, cin, cout, hw, k, stride, padding, output_padding, groups, dilation
    (4, 128, 64, (16, 16), (4, 4), 2, 1, 0, 1, 1),  # DCGAN-like
    (2, 70, 35, (13, 11), (3, 3), 2, 1, 1, 1, 1),  # odd leading dimensions
    (2, 96, 64, (12, 12), (3, 3), 1, 1, 0, 2, 1),  # groups, stride 1
    (8, 256, 3, (8, 8), (4, 4), 2, 1, 0, 1, 1),  # few output channels
]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("cfg", GEMM_16BIT, ids=lambda c: "x".join(map(str, c[:5])))
def test_16bit_gemms_against_float32(cfg, channels_last, dtype):
    """Forward and backward with 16-bit GEMM operands: within one rounding of float32 on the
    same values (float32 accumulation), and bitwise reproducible."""
    n, cin, cout, hw, k, s, p, op, g, d = cfg
    x, w, b = make_conv(n, cin, cout, hw, k, g, torch.float32, channels_last=channels_last)
    xh, wh, bh = (t.to("cuda", dtype).requires_grad_() for t in (x, w, b))
    xr, wr, br = (t.detach().float().requires_grad_() for t in (xh, wh, bh))
    out = tconv.conv_transpose2d(xh, wh, bh, s, p, op, g, d)
    ref = F.conv_transpose2d(xr, wr, br, s, p, op, g, d)  # float32 on the GPU, TF32 off (fixture)
    assert out.dtype == dtype
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(out.float(), ref.to(dtype).float(), rtol=2 * eps,
                               atol=2 * eps * ref.abs().max().item())
    go = torch.randn_like(ref).to(dtype)
    grads = torch.autograd.grad(out, (xh, wh, bh), go)
    refs = torch.autograd.grad(ref, (xr, wr, br), go.float())
    for a, e in zip(grads, refs):
        assert a.dtype == dtype
        torch.testing.assert_close(a.float(), e.to(dtype).float(), rtol=4 * eps,
                                   atol=4 * eps * e.abs().max().item())
    again = torch.autograd.grad(tconv.conv_transpose2d(xh, wh, bh, s, p, op, g, d), (xh, wh, bh), go)
    for a, c in zip(grads, again):
        assert torch.equal(a, c)


# grad_bias and depthwise grad_weight sum over the pixels in several segments (partials added in
# order by a second kernel): shapes with many segments, segments that cross images, tiny images
# (the per-thread pixel step spans several images), every layout.
REDUCTIONS = [
    # n, c, h, w
    (3, 5, 150, 170),  # contiguous: several segments per channel
    (2000, 3, 5, 5),  # tiny images: the step spans images
    (2, 21, 160, 240),  # FCN-like: 21 channels, 77k pixels
    (4, 40, 33, 31),  # channels_last: lanes along C, more than one lane tile
]


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "expanded"])
@pytest.mark.parametrize("shape", REDUCTIONS, ids=lambda s: "x".join(map(str, s)))
def test_grad_bias_segmented_reduction(shape, layout):
    g = torch.Generator().manual_seed(0)
    go = torch.randn(*shape, generator=g, dtype=torch.float64)
    if layout == "expanded":  # what sum().backward() passes: stride 0 on every pixel axis
        go = go[:1, :, :1, :1].expand(shape)
    gpu = go.float().cuda()
    if layout == "channels_last":
        gpu = gpu.to(memory_format=torch.channels_last)
    got = ops.conv_transpose2d_backward_bias(gpu)
    expected = go.float().double().sum((0, 2, 3))
    torch.testing.assert_close(got.double().cpu(), expected, rtol=1e-5, atol=1e-5 * go.abs().sum().item() / shape[1])
    assert torch.equal(got, ops.conv_transpose2d_backward_bias(gpu))
    half = ops.conv_transpose2d_backward_bias(gpu.to(torch.bfloat16))
    expected_half = gpu.to(torch.bfloat16).double().sum((0, 2, 3)).to(torch.bfloat16)
    torch.testing.assert_close(half.cpu(), expected_half.cpu(), rtol=1e-2, atol=1e-2 * go.abs().sum().item() / shape[1])


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("cfg", [(4, 8, 8, (96, 96), (4, 4), 2, 1),  # 36864 pixels per weight
                                 (600, 16, 32, (6, 6), (3, 3), 1, 1),  # tiny images, Cout_g = 2
                                 (2, 64, 64, (64, 80), (4, 4), 2, 1)],  # 64 groups: several lane tiles
                         ids=lambda c: "x".join(map(str, c[:5])))
def test_depthwise_grad_weight_segmented_reduction(cfg, channels_last):
    n, cin, cout, hw, k, s, p = cfg
    x, w, _ = make_conv(n, cin, cout, hw, k, cin, torch.float64, channels_last=channels_last)
    y = F.conv_transpose2d(x, w, None, s, p, groups=cin)
    go = torch.randn_like(y)
    expected = torch.ops.aten.convolution_backward(go, x, w, None, [s, s], [p, p], [1, 1], True, [0, 0],
                                                   cin, [False, True, False])[1]
    args = (go.float().cuda(), x.float().cuda(), list(k), [s, s], [p, p], cin, [1, 1])
    got = ops.conv_transpose2d_backward_weight(*args)
    torch.testing.assert_close(got.double().cpu(), expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
    assert torch.equal(got, ops.conv_transpose2d_backward_weight(*args))


# ---- index widths, tap progressions and operand orders (review findings 2 and 3) ----------------

# Depthwise (and, with groups=1, dense) shapes whose taps per phase need the general progression
# of common/conv_transpose2d_taps.h: gcd(stride, dilation) = 1 with dilation > 1, dilation dividing
# the stride, the stride dividing the dilation, per-axis values, phases with no tap.
TAP_STEPS = [
    # n, cin, cout, hw, k, stride, padding, output_padding, groups, dilation
    (2, 4, 4, (6, 7), (5, 5), 2, 3, 1, 4, 3),
    (2, 4, 8, (5, 6), (4, 3), 3, 2, 0, 4, 2),
    (1, 3, 3, (5, 5), (5, 5), 4, 4, 1, 3, 2),
    (1, 3, 6, (5, 5), (4, 4), 2, 3, 1, 3, 4),
    (2, 2, 2, (4, 6), (3, 5), (3, 2), (2, 3), (2, 1), 2, (2, 3)),
    (1, 2, 2, (3, 3), (2, 2), 5, 0, 4, 2, 1),
]


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "noncontiguous"])
@pytest.mark.parametrize("cfg", CONV_GRID + TAP_STEPS, ids=lambda c: "x".join(map(str, c[:5])))
def test_both_index_widths_match_pytorch_cpu(cfg, layout, index_bits):
    """The 32-bit and the forced 64-bit index paths of every kernel, forward and backward."""
    n, cin, cout, hw, k, s, p, op, g, d = cfg
    x, w, b = make_conv(n, cin, cout, hw, k, g, torch.float64, channels_last=layout == "channels_last",
                    transpose_view=layout == "noncontiguous")
    _check_cuda(x, w, b, torch.float64, stride=s, padding=p, output_padding=op, groups=g, dilation=d)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "noncontiguous"])
@pytest.mark.parametrize("cfg", TAP_STEPS, ids=lambda c: "x".join(map(str, c[:5])))
def test_dense_tap_steps_match_pytorch_cpu(cfg, layout):
    n, cin, cout, hw, k, s, p, op, _, d = cfg
    x, w, b = make_conv(n, cin, cout, hw, k, 1, torch.float64, channels_last=layout == "channels_last",
                    transpose_view=layout == "noncontiguous")
    _check_cuda(x, w, b, torch.float64, stride=s, padding=p, output_padding=op, groups=1, dilation=d)


def _all_ops(x, w, b, go, cfg):
    """Forward and the three backward ops (direct op calls), on x's device."""
    s, p, op, g, d = cfg
    y = ops.conv_transpose2d(x, w, b, s, p, op, g, d)
    return [y,
            ops.conv_transpose2d_backward_input(go, w, s, p, g, d, list(x.shape[2:])),
            ops.conv_transpose2d_backward_weight(go, x, list(w.shape[2:]), s, p, g, d),
            ops.conv_transpose2d_backward_bias(go)]


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("groups", [1, 2, 6], ids=["dense", "grouped", "depthwise"])
def test_index_widths_bitwise_equal(groups, channels_last, monkeypatch):
    """Both index paths do the same arithmetic in the same order: bitwise equal results."""
    x, w, b = make_conv(2, 6, 12, (7, 9), (3, 4), groups, torch.float32, channels_last=channels_last)
    cfg = ([2, 1], [1, 2], [1, 0], groups, [1, 2])
    y = F.conv_transpose2d(x, w, b, cfg[0], cfg[1], cfg[2], groups, cfg[4])
    go = torch.randn_like(y)
    args = [t.cuda() for t in (x, w, b, go)]
    monkeypatch.delenv("TCONV_CUDA_INDEX_BITS", raising=False)
    narrow = _all_ops(*args, cfg)
    monkeypatch.setenv("TCONV_CUDA_INDEX_BITS", "64")
    wide = _all_ops(*args, cfg)
    for a, e in zip(narrow, wide):
        assert torch.equal(a, e)


# The GEMM operands are gathered in an order that follows each tensor's own memory format (input,
# grad_output: channel-fastest or pixel-fastest) and the sums are laid out by the output's format,
# independently: every combination, each op against tconv's CPU kernels (float64, 1e-12).
@pytest.mark.parametrize("w_cl", [False, True], ids=["w", "w_cl"])
@pytest.mark.parametrize("go_cl", [False, True], ids=["go", "go_cl"])
@pytest.mark.parametrize("x_cl", [False, True], ids=["x", "x_cl"])
@pytest.mark.parametrize("groups", [1, 2])
def test_mixed_memory_formats_agree_with_tconv_cpu(groups, x_cl, go_cl, w_cl, index_bits):
    fmt = lambda t, cl: t.contiguous(memory_format=torch.channels_last) if cl else t.contiguous()  # noqa: E731
    x, w, b = make_conv(2, 6, 4, (5, 7), (3, 3), groups, torch.float64)
    cfg = ([2, 2], [1, 1], [1, 0], groups, [1, 1])
    y = ops.conv_transpose2d(x, w, b, *cfg)
    go = torch.randn_like(y)
    cpu = _all_ops(x, w, b, go, cfg)
    gpu = _all_ops(fmt(x.cuda(), x_cl), fmt(w.cuda(), w_cl), b.cuda(), fmt(go.cuda(), go_cl), cfg)
    for a, e in zip(gpu, cpu):
        torch.testing.assert_close(a.cpu(), e, rtol=1e-12, atol=1e-12)


def _opcheck_samples():
    x, w, b = (t.cuda() for t in make_conv(2, 4, 6, (4, 5), (3, 3), 2, torch.float32))
    yield ops.conv_transpose2d, (x, w, b, [2, 2], [1, 1], [1, 0], 2, [1, 1])
    yield ops.conv_transpose2d, (x.to(memory_format=torch.channels_last), w, None, [1, 2], [0, 1], [0, 1], 2, [2, 1])
    y = F.conv_transpose2d(x, w, b, 2, 1, (1, 0), 2)
    yield ops.conv_transpose2d_backward_input, (torch.randn_like(y), w, [2, 2], [1, 1], 2, [1, 1], [4, 5])
    yield ops.conv_transpose2d_backward_weight, (torch.randn_like(y), x, [3, 3], [2, 2], [1, 1], 2, [1, 1])
    yield ops.conv_transpose2d_backward_bias, (torch.randn_like(y),)


@pytest.mark.parametrize("index", range(5))
def test_opcheck_cuda(index):
    op, args = list(_opcheck_samples())[index]
    args = tuple(a.requires_grad_() if isinstance(a, torch.Tensor) else a for a in args)
    torch.library.opcheck(op, args)


# ---- more than 2^31 elements: 64-bit indexing --------------------------------------------------------

# bfloat16, 8 channels, k = s = 2: output 8 x 16384 x 16400 = 2^31 + 2,097,152 elements (4.3 GB).
BIG = dict(n=1, c=8, h=8192, w=8200)


@pytest.mark.slow
@pytest.mark.cuda_memory(24)
@pytest.mark.parametrize("groups", [8, 1], ids=["depthwise", "dense"])
def test_output_beyond_int32_indexing(groups):
    """k = s = 2: output rows 2i, 2i+1 depend on input row i only, so corners of the huge output
    (the last ones lie past element 2^31) are checked against small CPU convolutions of the
    input's corners; gradients likewise, grad_bias against a float32 sum."""
    n, c, h, w_ = BIG["n"], BIG["c"], BIG["h"], BIG["w"]
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(n, c, h, w_, device="cuda", dtype=torch.bfloat16, generator=gen)
    wt = torch.randn(c, c // groups, 2, 2, device="cuda", dtype=torch.bfloat16, generator=gen)
    b = torch.randn(c, device="cuda", dtype=torch.bfloat16, generator=gen)
    y = ops.conv_transpose2d(x, wt, b, [2, 2], [0, 0], [0, 0], groups, [1, 1])
    assert y.numel() > 2 ** 31
    eps = torch.finfo(torch.bfloat16).eps

    def close(got, expected):
        torch.testing.assert_close(got.float().cpu(), expected.to(torch.bfloat16).float(), rtol=2 * eps,
                                   atol=2 * eps * expected.abs().max().item())

    wf, bf = wt.float().cpu(), b.float().cpu()
    for rows, cols in [(slice(0, 2), slice(0, 2)), (slice(-2, None), slice(-2, None))]:
        out_rows = slice(rows.start * 2, None if rows.stop is None else rows.stop * 2)
        out_cols = slice(cols.start * 2, None if cols.stop is None else cols.stop * 2)
        ref = F.conv_transpose2d(x[:, :, rows, cols].float().cpu(), wf, bf, stride=2, groups=groups)
        close(y[:, :, out_rows, out_cols], ref)

    grad_in = ops.conv_transpose2d_backward_input(y, wt, [2, 2], [0, 0], groups, [1, 1], [h, w_])
    go_corner = y[:, :, -4:, -4:].float().cpu()
    ref = ops.conv_transpose2d_backward_input(go_corner, wf, [2, 2], [0, 0], groups, [1, 1], [2, 2])
    close(grad_in[:, :, -2:, -2:], ref)

    grad_bias = ops.conv_transpose2d_backward_bias(y)
    expected = y.sum(dim=(0, 2, 3), dtype=torch.float32)
    scale = y.abs().sum(dim=(0, 2, 3), dtype=torch.float32)
    assert ((grad_bias.float() - expected).abs() <= 1e-3 * scale + 2 * eps * expected.abs()).all()

    grad_w = ops.conv_transpose2d_backward_weight(y, x, [2, 2], [2, 2], [0, 0], groups, [1, 1])
    # grad_weight[ci, co, kh, kw] = sum over pixels of x[ci] * y[co] at (2i + kh, 2j + kw)
    for kh in range(2):
        for kw in range(2):
            yk = y[:, :, kh::2, kw::2].float()
            if groups == 1:
                expected = torch.einsum("nihw,nohw->io", x.float(), yk)
            else:
                expected = (x.float() * yk).sum(dim=(0, 2, 3))[:, None]
            got = grad_w[:, :, kh, kw].float()
            assert (got - expected).abs().max().item() <= 1e-2 * expected.abs().max().item() + 1e-3
