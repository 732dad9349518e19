"""conv_transpose2d's numerics, gradients and opcheck on the CPU: tconv.conv_transpose2d /
tconv.ConvTranspose2d against torch.nn.functional.conv_transpose2d (the grid, hypothesis, half
precision, both forward formulations, the batched backward), gradcheck in every mode, opcheck, and
the module as a drop-in for nn.ConvTranspose2d. Errors, NaN/Inf, empty tensors and determinism are
in test_robustness.py; compile, export, autocast and DDP in test_ecosystem.py; every autograd mode
in test_autograd_modes.py."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, strategies as st
from torch import nn

import tconv
from _support import (CONV_GRADCHECK, CONV_GRID, CONV_TOL, check_same_outputs_and_grads, conv_grid_case,
                      at_thread_counts, draw_conv_geometry, full_gradcheck, make_conv, run_in_python_threads)

ops = torch.ops.tconv


def _check(x, w, b, dtype, **kw):
    """Forward, memory format and every gradient equal PyTorch's."""
    rtol, atol = CONV_TOL[dtype]
    leaves = [t.detach().clone().requires_grad_() for t in (x, w) + ((b,) if b is not None else ())]
    ours = tconv.conv_transpose2d(leaves[0], leaves[1], leaves[2] if b is not None else None, **kw)
    ref_leaves = [t.detach().clone().requires_grad_() for t in leaves]
    ref = F.conv_transpose2d(ref_leaves[0], ref_leaves[1], ref_leaves[2] if b is not None else None, **kw)
    assert ours.shape == ref.shape
    assert ours.dtype == ref.dtype
    torch.testing.assert_close(ours, ref, rtol=rtol, atol=atol)
    if ref.dim() == 4:
        assert ours.is_contiguous(memory_format=torch.channels_last) == \
            ref.is_contiguous(memory_format=torch.channels_last)
    if ref.numel() == 0:
        return
    go = torch.randn_like(ref)
    g_ours = torch.autograd.grad(ours, leaves, go)
    # The gradients against float64 ones of the same values: PyTorch's own float32 backward is not
    # always right (oneDNN's grad_weight of a 1x1 stride-3 channels_last layer on AMD Zen 3 / AVX2
    # loses output channel 0's sums).
    ref64_leaves = [t.detach().double().requires_grad_() for t in leaves]
    ref64 = F.conv_transpose2d(ref64_leaves[0], ref64_leaves[1], ref64_leaves[2] if b is not None else None, **kw)
    g_ref = torch.autograd.grad(ref64, ref64_leaves, go.double())
    for a, e in zip(g_ours, g_ref):
        assert a.shape == e.shape and a.dtype == dtype
        torch.testing.assert_close(a.double(), e, rtol=rtol * 10, atol=atol * 10)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "noncontiguous"])
@pytest.mark.parametrize("cfg", CONV_GRID, ids=lambda c: "x".join(map(str, c[:5])))
def test_grid_matches_pytorch(cfg, layout, dtype):
    x, w, b, kw = conv_grid_case(cfg, layout, dtype)
    _check(x, w, b, dtype, **kw)


def test_without_bias_and_unbatched():
    x, w, _ = make_conv(1, 3, 4, (5, 5), (3, 3), 1, torch.float64)
    _check(x[0], w, None, torch.float64, stride=2, padding=1)
    _check(x, w, None, torch.float64, stride=2, padding=1, output_padding=1)


def test_channels_last_weight_gives_channels_last_output():
    x, w, b = make_conv(2, 4, 6, (5, 5), (3, 3), 1, torch.float64)
    _check(x, w.to(memory_format=torch.channels_last), b, torch.float64, stride=2)


@st.composite
def conv_configs(draw):
    groups = draw(st.integers(1, 3))
    cin = groups * draw(st.integers(1, 3))
    cout = groups * draw(st.integers(1, 3))
    k, s, d, op, hw, p = draw_conv_geometry(draw, st)
    n = draw(st.integers(0, 2))
    layout = draw(st.sampled_from(["contiguous", "channels_last", "noncontiguous"]))
    bias = draw(st.booleans())
    return n, cin, cout, hw, k, s, p, op, groups, d, layout, bias


@given(conv_configs())
def test_hypothesis_matches_pytorch(cfg):
    n, cin, cout, hw, k, s, p, op, g, d, layout, bias = cfg
    x, w, b = make_conv(n, cin, cout, hw, k, g, torch.float64, bias=bias,
                        channels_last=layout == "channels_last", transpose_view=layout == "noncontiguous")
    _check(x, w, b, torch.float64, stride=s, padding=p, output_padding=op, groups=g, dilation=d)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("cfg", [(2, 8, 8, (6, 6), (4, 4), 2, 1, 0, 1, 1),
                                 (2, 8, 8, (6, 6), (4, 4), 2, 1, 0, 8, 1),
                                 (1, 16, 8, (5, 7), (3, 3), 1, 1, 0, 2, 1),
                                 (9, 24, 40, (3, 3), (4, 4), 2, 1, 0, 1, 1)])
@pytest.mark.parametrize("path", ["tap", "cell", None])
def test_half_precision_against_float32(cfg, dtype, path, monkeypatch):
    if path is not None:
        monkeypatch.setenv("TCONV_CONV_FORWARD", path)
    n, cin, cout, hw, k, s, p, op, g, d = cfg
    x, w, b = make_conv(n, cin, cout, hw, k, g, torch.float32)
    xh, wh, bh = (t.to(dtype).requires_grad_() for t in (x, w, b))
    out = tconv.conv_transpose2d(xh, wh, bh, s, p, op, g, d)
    assert out.dtype == dtype
    # reference: float32 on the same (rounded) values, rounded once at the end
    xr, wr, br = (t.detach().float().requires_grad_() for t in (xh, wh, bh))
    ref = F.conv_transpose2d(xr, wr, br, s, p, op, g, d)
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(out.float(), ref.to(dtype).float(), rtol=2 * eps, atol=2 * eps * ref.abs().max().item())
    go = torch.randn_like(ref).to(dtype)
    grads = torch.autograd.grad(out, (xh, wh, bh), go)
    refs = torch.autograd.grad(ref, (xr, wr, br), go.float())
    for a, e in zip(grads, refs):
        assert a.dtype == dtype
        torch.testing.assert_close(a.float(), e.to(dtype).float(), rtol=4 * eps, atol=4 * eps * e.abs().max().item())


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("kw", CONV_GRADCHECK)
def test_gradcheck_and_gradgradcheck(kw, channels_last):
    x, w, b = make_conv(2, 4, 4, (3, 4), (3, 3), kw["groups"], torch.float64, channels_last=channels_last)
    args = [t.requires_grad_() for t in (x, w, b)]
    fn = lambda x, w, b: tconv.conv_transpose2d(x, w, b, **kw)
    full_gradcheck(fn, args)


def _opcheck_samples():
    x, w, b = make_conv(2, 4, 6, (4, 5), (3, 3), 2, torch.float32)
    yield ops.conv_transpose2d, (x, w, b, [2, 2], [1, 1], [1, 0], 2, [1, 1])
    yield ops.conv_transpose2d, (x.to(memory_format=torch.channels_last), w, None, [1, 2], [0, 1], [0, 1], 2, [2, 1])
    y = F.conv_transpose2d(x, w, b, 2, 1, (1, 0), 2)
    yield ops.conv_transpose2d_backward_input, (torch.randn_like(y), w, [2, 2], [1, 1], 2, [1, 1], [4, 5])
    yield ops.conv_transpose2d_backward_weight, (torch.randn_like(y), x, [3, 3], [2, 2], [1, 1], 2, [1, 1])
    yield ops.conv_transpose2d_backward_bias, (torch.randn_like(y),)


@pytest.mark.parametrize("op,args", list(_opcheck_samples()), ids=lambda v: getattr(v, "__name__", ""))
def test_opcheck(op, args):
    args = tuple(a.requires_grad_() if isinstance(a, torch.Tensor) else a for a in args)
    torch.library.opcheck(op, args)


def test_seed_worked_example():
    """D2L 13.10: X = K = [[0, 1], [2, 3]], stride 1, no bias."""
    X = torch.tensor([[0.0, 1.0], [2.0, 3.0]]).reshape(1, 1, 2, 2)
    K = X.clone()
    expected = torch.tensor([[0.0, 0.0, 1.0], [0.0, 4.0, 6.0], [4.0, 12.0, 9.0]]).reshape(1, 1, 3, 3)
    assert torch.equal(tconv.conv_transpose2d(X, K), expected)
    layer = tconv.ConvTranspose2d(1, 1, kernel_size=2, bias=False)
    layer.weight.data = K
    assert torch.equal(layer(X), expected)


def test_module_is_a_drop_in():
    def build(conv):
        return nn.Sequential(conv(8, 6, 4, stride=2, padding=1), nn.ReLU(),
                             conv(6, 6, 3, stride=2, padding=1, output_padding=1, groups=3, dilation=2),
                             nn.ReLU(), conv(6, 3, 2, stride=2, bias=False))
    ref = build(nn.ConvTranspose2d).double()
    ours = build(tconv.ConvTranspose2d).double()
    ours.load_state_dict(ref.state_dict())
    assert all(isinstance(m, nn.ConvTranspose2d) for m in ours if not isinstance(m, nn.ReLU))
    ref.load_state_dict(ours.state_dict())  # and back
    x = torch.randn(2, 8, 5, 5, dtype=torch.float64)
    check_same_outputs_and_grads(ref, ours, x)


def test_module_initialisation_matches_pytorch():
    torch.manual_seed(3)
    ref = nn.ConvTranspose2d(8, 4, 3, groups=2)
    torch.manual_seed(3)
    ours = tconv.ConvTranspose2d(8, 4, 3, groups=2)
    assert torch.equal(ref.weight, ours.weight) and torch.equal(ref.bias, ours.bias)
    assert ours.weight.shape == (8, 2, 3, 3)
    ours = tconv.ConvTranspose2d(2, 3, 1, dtype=torch.float64)
    assert ours.weight.dtype == torch.float64


@pytest.mark.parametrize("output_size", [(11, 11), (12, 12), [2, 3, 12, 11], torch.Size([11, 12])])
def test_module_output_size(output_size):
    ref = nn.ConvTranspose2d(4, 3, 3, stride=2).double()
    ours = tconv.ConvTranspose2d(4, 3, 3, stride=2).double()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(ours(x, output_size=output_size), ref(x, output_size=output_size))


# ---- bad input: the same exception type as PyTorch ---------------------------------------------------

# The dense forward has two formulations (cpu/conv_transpose2d.cpp): the cell GEMM and the tap GEMM
# (what each input pixel sends through each tap, then summed per output). The shape picks one;
# TCONV_CONV_FORWARD forces either, so both are checked on every dense case of the grid.
DENSE_GRID = [c for c in CONV_GRID if c[1] // c[8] > 1]


@pytest.mark.parametrize("path", ["tap", "cell"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("cfg", DENSE_GRID + [
    (3, 8, 6, (1, 1), (4, 4), 1, 0, 0, 1, 1),       # DCGAN's first layer: a 1x1 latent
    (70, 5, 3, (2, 2), (4, 4), 2, 1, 0, 1, 1),      # several image blocks, a partial last one
    (2, 8, 300, (2, 3), (4, 4), 2, 1, 0, 1, 1),     # several output-channel blocks
], ids=lambda c: "x".join(map(str, c[:5])))
def test_forward_paths_match_pytorch(cfg, layout, path, monkeypatch):
    monkeypatch.setenv("TCONV_CONV_FORWARD", path)
    n, cin, cout, hw, k, s, p, op, g, d = cfg
    for dtype in (torch.float64, torch.float32):
        x, w, b = make_conv(n, cin, cout, hw, k, g, dtype, channels_last=layout == "channels_last")
        kw = dict(stride=s, padding=p, output_padding=op, groups=g, dilation=d)
        ours = tconv.conv_transpose2d(x, w, b, **kw)
        ref = F.conv_transpose2d(x, w, b, **kw)
        torch.testing.assert_close(ours, ref, rtol=CONV_TOL[dtype][0], atol=CONV_TOL[dtype][1])
        assert ours.stride() == ref.stride()


def _forward_matches_pytorch_in_every_type(cfg, channels_last):
    """The forward of a CONV_GRID-style cfg against PyTorch's in float64 and float32, and in
    bfloat16 against PyTorch's float32 result on the same bfloat16 values, rounded once."""
    n, cin, cout, hw, k, s, p, op, g, d = cfg
    kw = dict(stride=s, padding=p, output_padding=op, groups=g, dilation=d)
    for dtype in (torch.float64, torch.float32):
        x, w, b = make_conv(n, cin, cout, hw, k, g, dtype, channels_last=channels_last)
        torch.testing.assert_close(tconv.conv_transpose2d(x, w, b, **kw), F.conv_transpose2d(x, w, b, **kw),
                                   rtol=CONV_TOL[dtype][0], atol=CONV_TOL[dtype][1])
    x, w, b = make_conv(n, cin, cout, hw, k, g, torch.float32, channels_last=channels_last)
    xh, wh, bh = (t.bfloat16() for t in (x, w, b))
    ref = F.conv_transpose2d(xh.float(), wh.float(), bh.float(), **kw)
    eps = torch.finfo(torch.bfloat16).eps
    torch.testing.assert_close(tconv.conv_transpose2d(xh, wh, bh, **kw).float(), ref.bfloat16().float(),
                               rtol=2 * eps, atol=2 * eps * ref.abs().max().item())


# The plane-major tap GEMM (NCHW, rows of 16 pixels or more) sums each output row's taps in
# registers where its phase runs have at most 64 cells and sw <= 2 (Note [register runs],
# cpu/conv_transpose2d.cpp: two or four registers a phase, the two phases interleaved from
# registers or, where they do not alternate, through memory); otherwise each plane's taps all at
# once, tap plane by tap plane, or one output row at a time (a plane whose runs exceed 32 KiB).
# All sum in the same order, so all match PyTorch the same way.
@pytest.mark.parametrize("cfg", [
    (3, 6, 5, (16, 16), (4, 4), 2, 1, 0, 1, 1),     # registers: 2 x 17 cells, alternating phases
    (2, 3, 4, (18, 40), (2, 2), 2, 0, 0, 1, 1),     # registers: 2 x 40 cells (four registers)
    (2, 4, 3, (17, 20), (3, 3), 1, 1, 0, 1, 1),     # registers: one phase
    (2, 3, 4, (9, 24), (3, 3), 2, 1, 0, 1, 2),      # registers: dilation 2, phases that do not alternate
    (2, 3, 4, (7, 18), (5, 4), (3, 2), 1, 0, 1, 1),  # registers: row stride 3
    (2, 3, 5, (20, 70), (4, 4), 2, 1, 0, 1, 1),     # whole plane: 40 rows x 2 x 71 cells
    (2, 3, 5, (60, 100), (4, 4), 2, 1, 0, 1, 1),    # row by row: 120 rows x 2 x 101 cells
    (2, 4, 6, (20, 33), (3, 3), 2, 1, 1, 2, 1),     # odd kernel, output_padding, groups
    (2, 3, 4, (5, 30), (5, 5), 3, 2, 2, 1, 1),      # stride 3: runs through memory
], ids=lambda c: "x".join(map(str, c[:6])))
def test_plane_major_tap_sums_match_pytorch(cfg, monkeypatch):
    monkeypatch.setenv("TCONV_CONV_FORWARD", "tap")
    _forward_matches_pytorch_in_every_type(cfg, channels_last=False)


# The pixel-major tap GEMM multiplies, per class of kernel rows, only the input rows those rows
# send inside the output (Note [tap row classes], cpu/conv_transpose2d.cpp). Shapes where the
# classes differ: rows of no use at all, in-place and copied operands, several blocks.
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("cfg", [
    (3, 6, 5, (1, 1), (4, 4), 2, 1, 0, 1, 1),       # 1x1 input: kernel rows 0 and 3 send nothing inside
    (40, 8, 130, (4, 4), (4, 4), 2, 1, 0, 1, 1),    # DCGAN 4x4: image and output-channel blocks
    (1, 8, 6, (4, 3), (4, 4), 2, 1, 0, 2, 1),       # one image, groups: an in-place partial class
    (5, 6, 4, (3, 5), (3, 3), 2, 2, 1, 1, 2),       # dilation, output_padding
    (4, 5, 7, (2, 6), (5, 5), 3, 3, 2, 1, 1),       # stride 3, output_padding 2
], ids=lambda c: "x".join(map(str, c[:5])))
def test_tap_row_classes_match_pytorch(cfg, layout, monkeypatch):
    monkeypatch.setenv("TCONV_CONV_FORWARD", "tap")
    _forward_matches_pytorch_in_every_type(cfg, channels_last=layout == "channels_last")


# grad_input multiplies, per class of kernel rows, only the input rows those rows send inside the
# output (Note [tap row classes]): whole-image blocks split by input channel (few blocks) or
# not (many), row blocks of one image that cut the classes, groups, dilation; float64, float32
# and bfloat16. grad_weight is checked on the same shapes.
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("cfg", [
    (3, 6, 5, (4, 4), (4, 4), 2, 1, 0, 1, 1),       # DCGAN 4x4, one block: output-channel split
    (64, 8, 6, (8, 8), (4, 4), 2, 1, 0, 1, 1),      # DCGAN 8x8: eight blocks, partial sums
    (2, 4, 6, (8, 100), (4, 4), 2, 1, 0, 2, 1),     # row blocks of 4 rows, groups
    (5, 6, 4, (3, 5), (3, 3), 2, 2, 1, 1, 2),       # dilation, output_padding
    (3, 4, 5, (1, 1), (4, 4), 2, 1, 0, 1, 1),       # 1x1 input: kernel rows that reach nothing
], ids=lambda c: "x".join(map(str, c[:5])))
def test_backward_row_classes_match_pytorch(cfg, layout):
    n, cin, cout, hw, k, s, p, op, g, d = cfg
    kw = dict(stride=s, padding=p, output_padding=op, groups=g, dilation=d)
    for dtype in (torch.float64, torch.float32):
        x, w, b = make_conv(n, cin, cout, hw, k, g, dtype, channels_last=layout == "channels_last")
        x.requires_grad_()
        w.requires_grad_()
        ours, ref = tconv.conv_transpose2d(x, w, None, **kw), F.conv_transpose2d(x, w, None, **kw)
        go = torch.randn_like(ref)
        for a, e in zip(torch.autograd.grad(ours, (x, w), go), torch.autograd.grad(ref, (x, w), go)):
            torch.testing.assert_close(a, e, rtol=10 * CONV_TOL[dtype][0], atol=10 * CONV_TOL[dtype][1])
    x, w, _ = make_conv(n, cin, cout, hw, k, g, torch.float32, channels_last=layout == "channels_last")
    go = torch.randn_like(F.conv_transpose2d(x, w, None, **kw))
    xh, wh, goh = (t.bfloat16().requires_grad_(t is not go) for t in (x, w, go))
    xd, wd = (t.detach().double().requires_grad_() for t in (xh, wh))
    grads = torch.autograd.grad(tconv.conv_transpose2d(xh, wh, None, **kw), (xh, wh), goh)
    refs = torch.autograd.grad(F.conv_transpose2d(xd, wd, None, **kw), (xd, wd), goh.double())
    eps = torch.finfo(torch.bfloat16).eps
    for a, e in zip(grads, refs):  # float32 sums of exact bfloat16 products, rounded once
        torch.testing.assert_close(a.double(), e, rtol=4 * eps, atol=4 * eps * e.abs().max().item())


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("cfg", [
    (70, 5, 3, (2, 2), (4, 4), 2, 1, 0, 1, 1),      # many whole images per patch block, partial last
    (9, 12, 8, (4, 4), (3, 3), 2, 1, 1, 2, 1),      # groups, output_padding
    (5, 8, 6, (1, 1), (4, 4), 1, 0, 0, 1, 1),       # 1x1 latent
], ids=lambda c: "x".join(map(str, c[:5])))
def test_small_images_batched_backward_matches_pytorch(cfg, layout):
    n, cin, cout, hw, k, s, p, op, g, d = cfg
    x, w, b = make_conv(n, cin, cout, hw, k, g, torch.float64, channels_last=layout == "channels_last")
    _check(x, w, b, torch.float64, stride=s, padding=p, output_padding=op, groups=g, dilation=d)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("needed", ["all", "input_weight", "weight_bias", "input"])
def test_backward_of_a_gradient_dense_in_no_layout(layout, needed):
    """The gradient a layer receives through torch.cat (a channel slice: a U-Net up layer's) or
    from sum() (expanded) is dense in no layout; the backward makes it dense once for its kernels.
    Every subset of the gradients: the same bits as for the gradient made dense in the input's
    layout (the kernels' choice), and PyTorch's values."""
    x, w, b = make_conv(2, 6, 4, (5, 7), (2, 2), 1, torch.float64, channels_last=layout == "channels_last")
    which = {"all": (True, True, True), "input_weight": (True, True, False),
             "weight_bias": (False, True, True), "input": (True, False, False)}[needed]
    leaves = [t.detach().clone().requires_grad_(r) for t, r in zip((x, w, b), which)]
    y = tconv.conv_transpose2d(*leaves, stride=2)
    wide = torch.randn(2, 2 * y.size(1), *y.shape[2:], dtype=torch.float64)
    if layout == "channels_last":
        wide = wide.contiguous(memory_format=torch.channels_last)
    sliced = wide[:, y.size(1):]  # a channel slice, as torch.cat's backward gives
    expanded = torch.tensor(0.5, dtype=torch.float64).expand(y.shape)  # as sum()'s backward gives
    wanted = [t for t in leaves if t.requires_grad]
    for grad in (sliced, expanded):
        assert not grad.is_contiguous() and not grad.is_contiguous(memory_format=torch.channels_last)
        got = torch.autograd.grad(y, wanted, grad, retain_graph=True)
        fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        dense = torch.autograd.grad(y, wanted, grad.contiguous(memory_format=fmt), retain_graph=True)
        ref_leaves = [t.detach().clone().requires_grad_(t.requires_grad) for t in leaves]
        ref = torch.autograd.grad(F.conv_transpose2d(*ref_leaves, stride=2), [t for t in ref_leaves if t.requires_grad],
                                  grad)
        for a, d, e in zip(got, dense, ref):
            assert torch.equal(a, d)
            torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


def test_dense_kernels_from_several_python_threads(monkeypatch):
    """The dense forward's and backward's blocks and packed weights are per-thread scratch kept
    between calls (cpu/scratch.h): concurrent calls of different shapes from several Python
    threads each get their own, forward and every gradient."""
    monkeypatch.setenv("TCONV_CONV_FORWARD", "tap")
    cases = [make_conv(n, cin, cout, hw, (4, 4), 1, torch.float32) for n, cin, cout, hw in
             [(12, 16, 70, (4, 4)), (3, 8, 24, (9, 16)), (5, 24, 40, (8, 5))]]
    for x, w, b in cases:
        for t in (x, w, b):
            t.requires_grad_()
    go = [torch.randn_like(F.conv_transpose2d(x, w, b, 2, 1)) for x, w, b in cases]
    want = [(F.conv_transpose2d(x, w, b, 2, 1),) + torch.autograd.grad(F.conv_transpose2d(x, w, b, 2, 1), (x, w, b), g)
            for (x, w, b), g in zip(cases, go)]
    errors = []

    def run(i):
        (x, w, b), g = cases[i % 3], go[i % 3]
        for _ in range(4):
            out = tconv.conv_transpose2d(x, w, b, 2, 1)
            got = (out,) + torch.autograd.grad(out, (x, w, b), g)
            if not all(torch.allclose(a, e, rtol=1e-4, atol=1e-4) for a, e in zip(got, want[i % 3])):
                errors.append(i)

    run_in_python_threads(run, 6)
    assert not errors


# Note [direct tiles] (cpu/direct_tiles.h): float32 on AVX-512 and AVX2 CPUs with whole 16-channel
# vectors of outputs runs a register-tiled direct convolution for the forward (output channels) and
# grad_input (input channels), its tiles along a row (one phase's outputs, border tiles through a
# zero-padded patch) or along images (one position in several images), and for grad_weight (tiles
# of 6 input x 64 output channels of one tap, summed over chunks of pixels in a fixed order).
# TCONV_CONV_FORWARD / TCONV_CONV_BACKWARD force either order; elsewhere (other CPUs, float64)
# the same cases check the GEMM paths.
def _pair(v):
    return list(v) if isinstance(v, (tuple, list)) else [v, v]


DIRECT_TILE_CASES = [
    # n, cin, cout, hw, k, stride, padding, output_padding, groups, dilation
    (3, 24, 64, (7, 17), (3, 3), 1, 1, 0, 1, 1),      # 6-wide tiles and a remainder, patches both ends
    (7, 32, 80, (5, 6), (4, 4), 2, 1, 0, 1, 1),       # DCGAN-like, 64 + 16 channel blocks
    (2, 16, 48, (6, 20), (3, 3), 2, 1, 1, 1, 1),      # output_padding, 48-wide (8-row) tiles
    (5, 20, 32, (6, 11), (3, 5), (1, 2), (2, 1), 0, 1, (2, 1)),  # dilation, uneven everything
    (13, 32, 64, (4, 4), (4, 4), 1, 0, 0, 2, 1),      # groups: 32 in, 32 out per group
    (2, 16, 16, (5, 9), (3, 3), 2, 0, 1, 1, 2),       # odd output columns get no tap: bias only
    (1, 48, 32, (6, 40), (5, 5), 1, 4, 0, 1, 1),      # padding: few rows, taps of every row cut
    (3, 16, 32, (6, 7), (3, 3), 1, 0, 0, 1, 2),       # dilation 2: NCHW rows revisited out of order
    (40, 16, 16, (3, 3), (4, 4), 2, 1, 0, 1, 1),      # grad_weight: many small images per chunk
    (1, 256, 32, (12, 40), (3, 3), 1, 1, 0, 1, 1),    # grad_weight: an image in several chunks of rows
    (3, 32, 48, (5, 7), (2, 3), (2, 3), 0, 0, 1, 1),  # one tap per phase (the U-Net k2 s2): a GEMM per pass
    (2, 136, 80, (3, 23), (3, 3), 1, 1, 0, 1, 1),     # AVX2: 16-channel parts of 64 + 16 channel blocks
    (3, 96, 96, (2, 4), (4, 4), 2, 1, 0, 1, 1),       # rows of border tiles only
    (2, 48, 32, (6, 5), (2, 2), 2, 1, 1, 1, 1),       # one tap per phase, padding and output_padding
    (2, 64, 32, (5, 9), (3, 3), 1, 1, 0, 1, 1),       # grad_weight: 11 blocks of 6 channels, threads split mid-tap
]


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("order", ["rows", "images", None])
@pytest.mark.parametrize("cfg", DIRECT_TILE_CASES, ids=lambda c: "x".join(map(str, c[:5])))
def test_direct_tiles_match_pytorch(cfg, order, layout, monkeypatch):
    if order is not None:
        monkeypatch.setenv("TCONV_CONV_FORWARD", order)
        monkeypatch.setenv("TCONV_CONV_BACKWARD", order)
    n, cin, cout, hw, k, s, p, op, g, d = cfg
    kw = dict(stride=s, padding=p, output_padding=op, groups=g, dilation=d)
    channels_last = layout == "channels_last"
    x, w, b = make_conv(n, cin, cout, hw, k, g, torch.float64, channels_last=channels_last)
    ref = F.conv_transpose2d(x, w, b, **kw)
    go = torch.randn_like(ref)
    ref_gi = torch.ops.aten.convolution_backward(go, x, w, None, _pair(s), _pair(p), _pair(d), True, _pair(op), g,
                                                 [True, False, False])[0]
    xf, wf, bf, gof = (t.float() for t in (x, w, b, go))
    ours = tconv.conv_transpose2d(xf, wf, bf, **kw)
    assert ours.stride() == ref.stride()
    scale = ref.abs().max().item()
    torch.testing.assert_close(ours.double(), ref, rtol=1e-5, atol=1e-5 * scale)
    gi = ops.conv_transpose2d_backward_input(gof, wf, _pair(s), _pair(p), g, _pair(d), list(hw))
    assert gi.stride() == ref_gi.stride()
    ref_gw = torch.ops.aten.convolution_backward(go, x, w, None, _pair(s), _pair(p), _pair(d), True, _pair(op), g,
                                                 [False, True, False])[1]
    gw = ops.conv_transpose2d_backward_weight(gof, xf, list(w.shape[2:]), _pair(s), _pair(p), g, _pair(d))
    torch.testing.assert_close(gw.double(), ref_gw, rtol=1e-5, atol=1e-5 * ref_gw.abs().max().item())
    torch.testing.assert_close(gi.double(), ref_gi, rtol=1e-5, atol=1e-5 * ref_gi.abs().max().item())
    # Each output is summed by one tile in one order: bitwise the same for any thread count.
    (one_thread,) = at_thread_counts(lambda: (
        tconv.conv_transpose2d(xf, wf, bf, **kw),
        ops.conv_transpose2d_backward_input(gof, wf, _pair(s), _pair(p), g, _pair(d), list(hw)),
        ops.conv_transpose2d_backward_weight(gof, xf, list(w.shape[2:]), _pair(s), _pair(p), g, _pair(d))), (1,))
    for a, b in zip(one_thread, (ours, gi, gw)):
        assert torch.equal(a, b)


# Note [column windows] (cpu/direct_tiles.h): NCHW rows wider than ~1 MiB of staging (the 1-D
# layers' whole signals) go through the direct tiles' row paths in windows of columns. Each output
# is still summed by one tile in one order: the same bits as the channels_last call (one window,
# read in place) and for any thread count.
COLUMN_WINDOW_CASES = [
    # n, cin, cout, hw, k, stride, padding, output_padding, groups, dilation
    (1, 32, 32, (3, 3000), (3, 3), 1, 1, 0, 1, 1),                 # rows revisited across windows
    (2, 48, 32, (2, 2600), (3, 5), (1, 2), (1, 2), (0, 1), 1, (1, 2)),  # dilation, output_padding
    (1, 64, 64, (1, 4000), (1, 4), (1, 2), (0, 1), 0, 2, 1),       # groups: the 1-D DCGAN-like layer
    (1, 16, 16, (2, 9000), (2, 7), (1, 3), (0, 5), (0, 2), 1, 1),  # stride 3, padding past a tap
]


@pytest.mark.parametrize("cfg", COLUMN_WINDOW_CASES, ids=lambda c: "x".join(map(str, c[:5])))
def test_direct_tiles_column_windows(cfg, monkeypatch):
    monkeypatch.setenv("TCONV_CONV_FORWARD", "rows")
    monkeypatch.setenv("TCONV_CONV_BACKWARD", "rows")
    n, cin, cout, hw, k, s, p, op, g, d = cfg
    kw = dict(stride=s, padding=p, output_padding=op, groups=g, dilation=d)
    x, w, b = make_conv(n, cin, cout, hw, k, g, torch.float64)
    ref = F.conv_transpose2d(x, w, b, **kw)
    go = torch.randn_like(ref)
    ref_gi = torch.ops.aten.convolution_backward(go, x, w, None, _pair(s), _pair(p), _pair(d), True, _pair(op), g,
                                                 [True, False, False])[0]
    xf, wf, bf, gof = (t.float() for t in (x, w, b, go))
    cl = torch.channels_last

    def passes(x, go):
        return (tconv.conv_transpose2d(x, wf, bf, **kw),
                ops.conv_transpose2d_backward_input(go, wf, _pair(s), _pair(p), g, _pair(d), list(hw)))

    (y1, gi1), (y2, gi2) = at_thread_counts(lambda: passes(xf, gof))
    y_cl, gi_cl = passes(xf.contiguous(memory_format=cl), gof.contiguous(memory_format=cl))
    assert y1.is_contiguous() and gi1.is_contiguous()
    for ours, other, cl_result, want in ((y1, y2, y_cl, ref), (gi1, gi2, gi_cl, ref_gi)):
        torch.testing.assert_close(ours.double(), want, rtol=1e-5, atol=1e-5 * want.abs().max().item())
        assert torch.equal(ours, other)
        if tconv.cpu_capability() in ("avx512", "avx2"):  # elsewhere the layouts take GEMM paths of their own
            assert torch.equal(ours, cl_result)
        else:
            torch.testing.assert_close(cl_result.double(), want, rtol=1e-5, atol=1e-5 * want.abs().max().item())


# Note [Winograd] (cpu/winograd.h): on AVX-512 and AVX2 CPUs, float32 layers with 32 channels or
# more and no groups or dilation run 3x3 stride 1 and 4x4 stride 2 (the forward: F(2x2, 2x2) per
# output phase; grad_input over grad_output's polyphase components) through Winograd's minimal
# filtering. TCONV_CONV_FORWARD / TCONV_CONV_BACKWARD=winograd take it wherever it can run, so
# every case checks it (elsewhere, the default build, the same cases check the other paths). Its rounding differs from a direct sum's by a few units in the
# last place of the outputs' scale.
WINOGRAD_CASES = [
    # n, cin, cout, (h, w), k, stride, padding, output_padding
    (2, 32, 32, (5, 7), 3, 1, 1, 0),          # odd sizes: partial 2x2 blocks at the bottom and the right
    (1, 40, 48, (6, 9), 3, 1, 0, 0),          # 40 summed channels (a masked vector); padding 0 grows the output
    (3, 64, 80, (4, 4), 3, 1, 2, 0),          # padding 2 shrinks it; 64 + 16 channel blocks
    (1, 256, 32, (3, 50), 3, 1, (1, 0), 0),   # many blocks per task across rows, uneven padding
    (5, 48, 64, (9, 4), 3, 1, (0, 2), 0),     # blocks of a task across images
    (3, 32, 48, (5, 7), 4, 2, 1, 0),          # DCGAN's 4x4 s2 p1: four phase grids of 5 x 7 or 6 x 8
    (2, 48, 32, (4, 6), 4, 2, (0, 3), (1, 0)),  # phase grids a row or column apart; output_padding
    (1, 40, 32, (1, 1), 4, 2, 0, 0),          # a 1x1 input: each phase grid one output
]


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("cfg", WINOGRAD_CASES, ids=lambda c: "x".join(map(str, c[:6])))
def test_winograd_matches_pytorch(cfg, bias, layout, monkeypatch):
    monkeypatch.setenv("TCONV_CONV_FORWARD", "winograd")
    monkeypatch.setenv("TCONV_CONV_BACKWARD", "winograd")
    n, cin, cout, hw, k, s, p, op = cfg
    kw = dict(stride=s, padding=p, output_padding=op)
    x, w, b = make_conv(n, cin, cout, hw, (k, k), 1, torch.float64, bias=bias,
                        channels_last=layout == "channels_last")
    ref = F.conv_transpose2d(x, w, b, **kw)
    go = torch.randn_like(ref)
    ref_gi = torch.ops.aten.convolution_backward(go, x, w, None, _pair(s), _pair(p), [1, 1], True, _pair(op), 1,
                                                 [True, False, False])[0]
    xf, wf, gof = x.float(), w.float(), go.float()
    bf = None if b is None else b.float()
    ours = tconv.conv_transpose2d(xf, wf, bf, **kw)
    assert ours.shape == ref.shape and ours.stride() == ref.stride()
    torch.testing.assert_close(ours.double(), ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())
    gi = ops.conv_transpose2d_backward_input(gof, wf, _pair(s), _pair(p), 1, [1, 1], list(hw))
    assert gi.stride() == ref_gi.stride()
    torch.testing.assert_close(gi.double(), ref_gi, rtol=1e-5, atol=1e-5 * ref_gi.abs().max().item())
    # Through autograd: the module's gradient of the input is the same op.
    xr = xf.detach().requires_grad_()
    (gx,) = torch.autograd.grad(tconv.conv_transpose2d(xr, wf, bf, **kw), xr, gof)
    assert torch.equal(gx, gi)
    # every sum in an order fixed by the shape: the same bits for any thread count
    (one_thread,) = at_thread_counts(lambda: (
        tconv.conv_transpose2d(xf, wf, bf, **kw),
        ops.conv_transpose2d_backward_input(gof, wf, _pair(s), _pair(p), 1, [1, 1], list(hw))), (1,))
    for a, b in zip(one_thread, (ours, gi)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("k, s", [(3, 1), (4, 2)])
def test_winograd_keeps_nan_and_inf_in_place(k, s, layout):
    """A NaN or Inf in the input (forward) or grad_output (grad_input) reaches exactly the outputs
    whose taps read it, as in PyTorch: such calls take the direct sums (B^T d B would spread it
    over a block)."""
    x, w, b = make_conv(2, 32, 32, (6, 7), (k, k), 1, torch.float64, channels_last=layout == "channels_last")
    x[0, 3, 0, 5] = float("nan")
    x[1, 7, 4, 2] = float("inf")
    ref = F.conv_transpose2d(x, w, b, stride=s, padding=1)
    ours = tconv.conv_transpose2d(x.float(), w.float(), b.float(), stride=s, padding=1)
    go = torch.randn_like(ref)
    go[0, 3, 0, 5] = float("nan")
    go[1, 7, 4, 2] = float("-inf")
    ref_gi = torch.ops.aten.convolution_backward(go, x, w, None, [s, s], [1, 1], [1, 1], True, [0, 0], 1,
                                                 [True, False, False])[0]
    gi = ops.conv_transpose2d_backward_input(go.float(), w.float(), [s, s], [1, 1], 1, [1, 1], [6, 7])
    for got, want in ((ours, ref), (gi, ref_gi)):
        assert torch.equal(got.isnan(), want.isnan()) and torch.equal(got.isinf(), want.isinf())
        finite = want.isfinite()
        torch.testing.assert_close(got.double()[finite], want[finite], rtol=1e-5, atol=1e-4)


# Note [Winograd rows] (cpu/winograd.h): on AVX-512 and AVX2 CPUs the float32 forward and
# grad_input of a 1 x 2s layer of stride (1, s) (the 1-D vocoder layers through the 2-D op) with
# enough channels (use_winograd_rows) run F(3, 2) over blocks of 3 cells: the forward every
# phase's GEMMs on one transform of the inputs, grad_input over grad_output's s polyphase
# components stacked; grad_weight (NCHW) F(2, 3) with x as the filter (Note [Winograd rows'
# grad_weight], cpu/conv_transpose2d_backward.cpp). The tests force them (=winograd: wherever
# they can run; channels_last grad_weight takes its own paths).
WINOGRAD_ROWS_CASES = [
    # n, cin, cout, (h, w), s, padding, output_padding
    (2, 256, 128, (1, 37), 8, 4, 0),     # the k16 s8 p4 vocoder layer; a partial last block
    (1, 256, 128, (1, 700), 2, 1, 0),    # k4 s2 p1, three tasks along the row
    (2, 128, 64, (3, 50), 3, 2, 1),      # rows of a 2-D image (channels_last forward), output_padding
    (1, 512, 256, (1, 29), 8, 0, 7),     # output_padding past padding: the last outputs read no input
    (3, 256, 128, (1, 1), 2, 0, 1),      # one sample
    (1, 256, 144, (1, 40), 4, 9, 2),     # padding past a stride; a 16-wide channel block
    (1, 264, 128, (1, 50), 2, 1, 0),     # forward: 264 summed channels, a masked vector
    (1, 256, 136, (2, 30), 4, 2, 0),     # grad_input: 136 channels per component, masked
    (2, 64, 64, (3, 4000), 8, 4, 0),     # grad_weight: five chunks of blocks, across rows and images
]


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("cfg", WINOGRAD_ROWS_CASES, ids=lambda c: "x".join(map(str, c[:5])))
def test_winograd_rows_matches_pytorch(cfg, bias, layout, monkeypatch):
    monkeypatch.setenv("TCONV_CONV_FORWARD", "winograd")
    monkeypatch.setenv("TCONV_CONV_BACKWARD", "winograd")
    n, cin, cout, hw, s, p, op = cfg
    kw = dict(stride=(1, s), padding=(0, p), output_padding=(0, op))
    x, w, b = make_conv(n, cin, cout, hw, (1, 2 * s), 1, torch.float64, bias=bias,
                        channels_last=layout == "channels_last")
    ref = F.conv_transpose2d(x, w, b, **kw)
    go = torch.randn_like(ref)
    ref_gi, ref_gw = torch.ops.aten.convolution_backward(go, x, w, None, [1, s], [0, p], [1, 1], True, [0, op], 1,
                                                         [True, True, False])[:2]
    xf, wf, gof = x.float(), w.float(), go.float()
    bf = None if b is None else b.float()

    def passes():
        return (tconv.conv_transpose2d(xf, wf, bf, **kw),
                ops.conv_transpose2d_backward_input(gof, wf, [1, s], [0, p], 1, [1, 1], list(hw)),
                ops.conv_transpose2d_backward_weight(gof, xf, [1, 2 * s], [1, s], [0, p], 1, [1, 1]))

    (y, gi, gw), again = at_thread_counts(passes)
    assert y.shape == ref.shape and y.stride() == ref.stride() and gi.stride() == ref_gi.stride()
    assert gw.shape == ref_gw.shape and gw.is_contiguous()
    for got, want in ((y, ref), (gi, ref_gi), (gw, ref_gw)):
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5 * want.abs().max().item())
    for a, b in zip(again, (y, gi, gw)):
        assert torch.equal(a, b)  # the same bits for any thread count


def test_winograd_rows_serve_conv_transpose1d():
    """The 1-D op (NCL as the 2-D op's (N, C, 1, L)) on the path, with every gradient."""
    gen = torch.Generator().manual_seed(5)
    x, w, b = (torch.randn(2, 512, 300, generator=gen, dtype=torch.float64),
               torch.randn(512, 128, 16, generator=gen, dtype=torch.float64),
               torch.randn(128, generator=gen, dtype=torch.float64))
    t32 = [v.float().requires_grad_() for v in (x, w, b)]
    t64 = [v.clone().requires_grad_() for v in (x, w, b)]
    y, ref = tconv.conv_transpose1d(*t32, stride=8, padding=4), F.conv_transpose1d(*t64, stride=8, padding=4)
    assert y.shape == ref.shape and y.is_contiguous()
    torch.testing.assert_close(y.double(), ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())
    go = torch.randn(ref.shape, generator=gen, dtype=torch.float64)
    for a, e in zip(torch.autograd.grad(y, t32, go.float()), torch.autograd.grad(ref, t64, go)):
        torch.testing.assert_close(a.double(), e, rtol=1e-5, atol=1e-5 * e.abs().max().item())


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_winograd_rows_keep_nan_and_inf_in_place(layout):
    """Such inputs (forward, grad_weight) or grad_outputs (grad_input, grad_weight) take the direct
    sums: B^T d would spread a NaN or Inf over a block of 3 cells."""
    x, w, b = make_conv(1, 512, 128, (1, 20), (1, 4), 1, torch.float64, channels_last=layout == "channels_last")
    x[0, 3, 0, 5] = float("nan")
    x[0, 7, 0, 11] = float("inf")
    kw = dict(stride=(1, 2), padding=(0, 1))
    ref = F.conv_transpose2d(x, w, b, **kw)
    ours = tconv.conv_transpose2d(x.float(), w.float(), b.float(), **kw)
    go = torch.randn_like(ref)
    go[0, 3, 0, 5] = float("nan")
    go[0, 9, 0, 20] = float("-inf")
    ref_gi = torch.ops.aten.convolution_backward(go, x, w, None, [1, 2], [0, 1], [1, 1], True, [0, 0], 1,
                                                 [True, False, False])[0]
    gi = ops.conv_transpose2d_backward_input(go.float(), w.float(), [1, 2], [0, 1], 1, [1, 1], [1, 20])
    # grad_weight: x's NaN and grad_output's -Inf (NCHW: Winograd rows' grad_weight by default here)
    ref_gw = torch.ops.aten.convolution_backward(go, x, w, None, [1, 2], [0, 1], [1, 1], True, [0, 0], 1,
                                                 [False, True, False])[1]
    gw = ops.conv_transpose2d_backward_weight(go.float(), x.float(), [1, 4], [1, 2], [0, 1], 1, [1, 1])
    for got, want in ((ours, ref), (gi, ref_gi), (gw, ref_gw)):
        assert torch.equal(got.isnan(), want.isnan()) and torch.equal(got.isinf(), want.isinf())
        finite = want.isfinite()
        torch.testing.assert_close(got.double()[finite], want[finite], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("where", ["x", "grad_output"])
@pytest.mark.parametrize("cfg", [WINOGRAD_ROWS_CASES[1], WINOGRAD_ROWS_CASES[-1]], ids=["3tasks", "5chunks"])
def test_winograd_rows_find_nan_and_inf_as_they_read(cfg, where, monkeypatch):
    """NCHW rows check x / grad_output window by window (grad_weight: row segment by segment) as
    they read them, with no scan first: one special deep in a long row, in the last image (a later
    task, a later chunk of grad_weight's blocks), still sends every pass it reaches to the direct
    sums, and lands where PyTorch puts it."""
    monkeypatch.setenv("TCONV_CONV_FORWARD", "winograd")
    monkeypatch.setenv("TCONV_CONV_BACKWARD", "winograd")
    n, cin, cout, hw, s, p, op = cfg
    kw = dict(stride=(1, s), padding=(0, p), output_padding=(0, op))
    x, w, b = make_conv(n, cin, cout, hw, (1, 2 * s), 1, torch.float64)
    go = torch.randn_like(F.conv_transpose2d(x, w, b, **kw))
    if where == "x":
        x[-1, cin // 2, -1, hw[1] - 3] = float("nan")
        x[-1, 1, -1, hw[1] // 2 + 1] = float("inf")
    else:
        go[-1, cout // 2, -1, go.shape[-1] - 5] = float("-inf")
        go[-1, 3, -1, go.shape[-1] // 2 + 1] = float("nan")
    ref = F.conv_transpose2d(x, w, b, **kw)
    ref_gi, ref_gw = torch.ops.aten.convolution_backward(go, x, w, None, [1, s], [0, p], [1, 1], True, [0, op], 1,
                                                         [True, True, False])[:2]
    y = tconv.conv_transpose2d(x.float(), w.float(), b.float(), **kw)
    gi = ops.conv_transpose2d_backward_input(go.float(), w.float(), [1, s], [0, p], 1, [1, 1], list(hw))
    gw = ops.conv_transpose2d_backward_weight(go.float(), x.float(), [1, 2 * s], [1, s], [0, p], 1, [1, 1])
    specials = 0
    for got, want in ((y, ref), (gi, ref_gi), (gw, ref_gw)):
        assert torch.equal(got.isnan(), want.isnan()) and torch.equal(got.isinf(), want.isinf())
        specials += int((~want.isfinite()).sum())
        finite = want.isfinite()
        torch.testing.assert_close(got.double()[finite], want[finite], rtol=1e-5, atol=1e-4 * want[finite].abs().max().item())
    assert specials > 0


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_direct_tiles_keep_nan_and_inf_in_place(layout):
    """grad_output's NaN/Inf reach exactly the inputs whose taps read them (the patch's zeros
    multiply finite weights only)."""
    x, w, b = make_conv(2, 16, 32, (6, 7), (4, 4), 1, torch.float64, channels_last=layout == "channels_last")
    kw = dict(stride=2, padding=1)
    go = torch.randn_like(F.conv_transpose2d(x, w, b, **kw))
    go[0, 3, 0, 5] = float("nan")
    go[1, 7, 11, 13] = float("inf")
    ref = torch.ops.aten.convolution_backward(go, x, w, None, [2, 2], [1, 1], [1, 1], True, [0, 0], 1,
                                              [True, False, False])[0]
    gi = ops.conv_transpose2d_backward_input(go.float(), w.float(), [2, 2], [1, 1], 1, [1, 1], [6, 7])
    assert torch.equal(gi.isnan(), ref.isnan())
    assert torch.equal(gi.isinf(), ref.isinf())
    finite = ref.isfinite()
    torch.testing.assert_close(gi.double()[finite], ref[finite], rtol=1e-5, atol=1e-4)
