"""tconv.interpolate / tconv.Upsample against torch.nn.functional.interpolate (bilinear, bicubic)."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from torch import nn

import tconv
from conftest import full_gradcheck

ops = torch.ops.tconv
MODES = ["bilinear", "bicubic"]
TOL = {torch.float64: (1e-10, 1e-10), torch.float32: (1e-5, 1e-5)}


def _make(n, c, hw, dtype=torch.float64, layout="contiguous"):
    x = torch.randn(n, c, *hw, dtype=dtype)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    elif layout == "noncontiguous":  # same values, transposed strides
        x = x.transpose(2, 3).contiguous().transpose(2, 3)
    elif layout == "sliced":  # a strided view into a bigger tensor
        x = torch.randn(n, c, hw[0] * 2, hw[1] + 3, dtype=dtype)[:, :, ::2, 1:hw[1] + 1]
    return x


def _check(x, **kw):
    """Forward values, shape, dtype, memory format and the input gradient equal PyTorch's."""
    rtol, atol = TOL[x.dtype]
    leaf = x.detach().clone().requires_grad_()
    ref_leaf = x.detach().clone().requires_grad_()
    ours = tconv.interpolate(leaf, **kw)
    ref = F.interpolate(ref_leaf, **kw)
    assert ours.is_contiguous(memory_format=torch.channels_last) == \
        ref.is_contiguous(memory_format=torch.channels_last)
    ref = _pytorch_forward(ref_leaf, kw, ref)
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    torch.testing.assert_close(ours, ref, rtol=rtol, atol=atol)
    if ref.numel() == 0:
        return
    go = torch.randn_like(ref)
    (g_ours,) = torch.autograd.grad(ours, leaf, go)
    if _pytorch_backward_is_not_its_forwards_gradient(x, ref.shape[2:], kw):
        g_ref = _adjoint_of_pytorch_forward(x, go, kw)
    else:
        (g_ref,) = torch.autograd.grad(ref, ref_leaf, go)
    torch.testing.assert_close(g_ours, g_ref, rtol=rtol * 10, atol=atol * 10)


def _pytorch_forward(x, kw, out):
    """F.interpolate's result `out` on x, or a correct reference where PyTorch is wrong."""
    if kw.get("antialias") and out.shape[3] == 1:
        return _transposed(F.interpolate, x, kw)
    return out


def _transposed(fn, x, kw):
    """fn on x with H and W swapped. PyTorch's antialiased CPU kernel is wrong for width-1 outputs
    (every output row equals the first: F.interpolate(x (1,1,4,1), size=(3,1), mode='bilinear',
    antialias=True)); height-1 outputs are right, so the reference swaps the axes."""
    swap = lambda v: v[::-1] if isinstance(v, (list, tuple)) else v
    kw = dict(kw, **{k: swap(kw[k]) for k in ("size", "scale_factor") if kw.get(k) is not None})
    return fn(x.transpose(2, 3), **kw).transpose(2, 3)


def _pytorch_backward_is_not_its_forwards_gradient(x, out_hw, kw):
    """Two cases where PyTorch's backward and forward disagree when a scale_factor is given but
    an axis keeps its size (F.interpolate's own gradcheck fails there):
    - antialias: the forward copies such an axis, the backward resamples it with the scale;
    - bicubic with both axes unchanged: the forward resamples with the scale, the backward copies.
    tconv's gradient is the true one; compare it with the adjoint of PyTorch's forward."""
    if kw.get("scale_factor") is None or kw.get("recompute_scale_factor"):
        return False
    same = [out_hw[i] == x.shape[2 + i] for i in range(2)]
    if kw.get("antialias"):
        return any(same)
    return kw.get("mode") == "bicubic" and not kw.get("align_corners") and all(same)


def _adjoint_of_pytorch_forward(x, go, kw):
    """A^T go, with A read off PyTorch's forward applied to every basis image."""
    n, c, h, w = x.shape
    basis = torch.eye(h * w, dtype=x.dtype).reshape(h * w, 1, h, w)
    a = _pytorch_forward(basis, kw, F.interpolate(basis, **kw)).reshape(h * w, -1)
    return (go.reshape(n * c, -1) @ a.T).reshape(x.shape)


# A deliberate grid: up and down, integer and fractional factors, per-axis factors, 1-pixel axes.
GRID = [
    # hw, size / scale_factor arguments
    ((5, 7), dict(scale_factor=2)),
    ((5, 7), dict(scale_factor=4)),
    ((6, 6), dict(scale_factor=1.5)),
    ((7, 5), dict(scale_factor=(2.3, 0.6))),
    ((9, 11), dict(scale_factor=0.5)),
    ((16, 13), dict(scale_factor=0.3)),
    ((5, 5), dict(scale_factor=1.1)),                       # same size, scale used: not a copy for bicubic
    ((5, 7), dict(size=(11, 3))),
    ((5, 7), dict(size=(5, 7))),                            # identity size
    ((1, 1), dict(size=(4, 3))),                            # 1-pixel input
    ((6, 4), dict(size=(1, 1))),                            # 1-pixel output
    ((1, 6), dict(size=(3, 12))),
    ((8, 8), dict(scale_factor=2.7, recompute_scale_factor=True)),
    ((8, 8), dict(scale_factor=0.37, recompute_scale_factor=False)),
    ((3, 4), dict(size=17)),
]


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cfg", GRID, ids=lambda c: f"{c[0]}-{c[1]}".replace(" ", ""))
def test_grid_matches_pytorch(cfg, mode, align_corners, antialias):
    hw, kw = cfg
    _check(_make(2, 3, hw), mode=mode, align_corners=align_corners, antialias=antialias, **kw)


@pytest.mark.parametrize("layout", ["channels_last", "noncontiguous", "sliced"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kw", [dict(scale_factor=2), dict(scale_factor=0.4, antialias=True),
                                dict(size=(7, 13), align_corners=True)])
def test_memory_formats_match_pytorch(kw, mode, dtype, layout):
    _check(_make(2, 5, (6, 9), dtype, layout), mode=mode, **kw)


# float32 takes vectorised paths of its own (csrc/cpu/gather_*.h: 16-, 8- or 4-lane source
# windows chosen by the scale, polyphase for integer factors, 16-row transposes; non-temporal
# stores for outputs of 32 MiB or more): widths leave ragged vector tails, factors select each
# path and the scalar fallback (0.12).
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("w,sf", [(1, 3.0), (5, 2.0), (17, 1.7), (40, 4.0), (33, 0.5), (100, 0.3),
                                  (100, 0.26), (64, 0.2), (129, 0.7), (300, 0.12),
                                  # integer factors: polyphase W pass (the backward of x2 / x4,
                                  # the forward of x0.5 / x0.25), interior from 32 outputs on
                                  (37, 2.0), (48, 2.0), (83, 4.0), (150, 0.5), (301, 0.25)])
def test_float32_vector_paths_match_pytorch(w, sf, mode, layout):
    # both compute indices and weights in float32, like PyTorch: a float64 reference differs by the
    # float32 rounding of the source index (~2e-5 at a 0.3 downsampling of 100 pixels)
    _check(_make(2, 16, (7, w), torch.float32, layout), scale_factor=(1.5, sf), mode=mode)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sf", [(2.0, 2.0), (0.5, 0.5), (2.0, 0.5)])  # (2, 0.5): W first
def test_float32_outputs_over_32_mib_match_pytorch(sf, mode, layout):
    # rows of 602 floats start off 64-byte boundaries: the streaming stores' edges are exercised
    x = _make(2, 16, (int(600 / sf[0]), int(602 / sf[1])), torch.float32, layout)
    ours = tconv.interpolate(x, scale_factor=sf, mode=mode)
    assert ours.nbytes >= 32 * 2**20 and ours.shape[2:] == (600, 602)
    torch.testing.assert_close(ours, F.interpolate(x, scale_factor=sf, mode=mode), rtol=1e-5, atol=1e-5)
    assert ours.is_contiguous(memory_format=torch.channels_last) == (layout == "channels_last")


# The backward of an x4 upsampling in channels_last with wide rows: th.taps source rows of
# Ws * C floats outgrow 256 KiB, so the kernel resamples each grad_output row along W once into a
# ring and combines ring rows (W first, register accumulators); C = 24 leaves a masked vector tail
# per pixel, and the 2 MB grad_input is written with ordinary stores.
@pytest.mark.parametrize("mode", MODES)
def test_float32_channels_last_ring_backward_matches_pytorch(mode):
    _check(_make(1, 24, (20, 100), torch.float32, "channels_last"), scale_factor=4, mode=mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_empty_batch(mode, layout):
    _check(_make(0, 3, (4, 5), layout=layout), mode=mode, scale_factor=2)


@st.composite
def interpolate_configs(draw):
    hw = (draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    if draw(st.booleans()):
        sizing = dict(size=(draw(st.integers(1, 20)), draw(st.integers(1, 20))))
    else:
        factors = st.floats(0.15, 4.0)
        # at least one output pixel per axis: factor >= 1 / size
        sf = tuple(max(draw(factors), 1.0 / h + 1e-3) for h in hw)
        sizing = dict(scale_factor=sf if draw(st.booleans()) else max(sf),
                      recompute_scale_factor=draw(st.sampled_from([None, False, True])))
    return dict(
        n=draw(st.integers(0, 2)), c=draw(st.integers(1, 4)), hw=hw,
        layout=draw(st.sampled_from(["contiguous", "channels_last", "noncontiguous"])),
        mode=draw(st.sampled_from(MODES)), align_corners=draw(st.booleans()),
        antialias=draw(st.booleans()), sizing=sizing)


@settings(max_examples=80)
@given(interpolate_configs())
def test_hypothesis_matches_pytorch(cfg):
    x = _make(cfg["n"], cfg["c"], cfg["hw"], layout=cfg["layout"])
    try:
        F.interpolate(x, mode=cfg["mode"], **cfg["sizing"])
    except RuntimeError:  # e.g. a scale factor that truncates an axis to 0: both must refuse
        with pytest.raises(RuntimeError):
            tconv.interpolate(x, mode=cfg["mode"], **cfg["sizing"])
        return
    _check(x, mode=cfg["mode"], align_corners=cfg["align_corners"], antialias=cfg["antialias"],
           **cfg["sizing"])


def test_seed_bicubic_table():
    x = torch.tensor([[10.0, 20.0], [30.0, 40.0]]).reshape(1, 1, 2, 2)
    y = tconv.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
    expected = torch.tensor([[7, 10, 16, 19], [13, 17, 22, 26], [24, 28, 33, 37], [31, 34, 40, 43]])
    assert torch.equal(y.round().long()[0, 0], expected)


@pytest.mark.parametrize("s", [2, 4, 32])
def test_fcn_bilinear_kernel_equals_interpolate(s):
    """D2L 13.11: a transposed conv with the bilinear kernel is bilinear upsampling (inside)."""
    c = 3
    layer = tconv.ConvTranspose2d(c, c, kernel_size=2 * s, stride=s, padding=s // 2, bias=False)
    layer = layer.double()
    tconv.init.bilinear_(layer.weight)
    x = torch.randn(2, c, 5, 6, dtype=torch.float64)
    conv = layer(x)
    up = tconv.interpolate(x, scale_factor=s, mode="bilinear")
    assert conv.shape == up.shape
    inner = (slice(None), slice(None), slice(s, -s), slice(s, -s))
    torch.testing.assert_close(conv[inner], up[inner], rtol=0, atol=1e-14)


def test_bilinear_init_shapes():
    w = torch.empty(4, 4, 4, 4)
    tconv.init.bilinear_(w)
    assert torch.equal(w[0, 1], torch.zeros(4, 4)) and w[2, 2].sum() > 0
    torch.testing.assert_close(w[1, 1], torch.tensor([0.25, 0.75, 0.75, 0.25]).outer(
        torch.tensor([0.25, 0.75, 0.75, 0.25])))
    w = torch.empty(3, 1, 3, 4)  # depthwise, non-square
    tconv.init.bilinear_(w)
    assert torch.equal(w[:, 0], w[:1, 0].expand(3, 3, 4)) and w[0, 0, 1, 1] > 0
    w = torch.empty(2, 5, 2, 2)  # more outputs than inputs: extra outputs stay zero
    tconv.init.bilinear_(w)
    assert w[:, 2:].abs().sum() == 0 and w[1, 1].sum() > 0
    with pytest.raises(ValueError):
        tconv.init.bilinear_(torch.empty(3, 3, 3))


# ---- gradients, ops, compile ------------------------------------------------------------------------

GRADCHECK = [
    dict(scale_factor=2, align_corners=False),
    dict(size=(5, 3), align_corners=True),
    dict(scale_factor=(0.5, 0.7), antialias=True),
    dict(scale_factor=1.6, antialias=True, align_corners=True),
]


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kw", GRADCHECK)
def test_gradcheck_and_gradgradcheck(kw, mode, channels_last):
    x = _make(2, 2, (4, 5), layout="channels_last" if channels_last else "contiguous").requires_grad_()
    fn = lambda x: tconv.interpolate(x, mode=mode, **kw)
    full_gradcheck(fn, (x,))


def _opcheck_samples():
    x = torch.randn(2, 3, 5, 6)
    for mode in MODES:
        fwd, bwd = getattr(ops, f"upsample_{mode}2d"), getattr(ops, f"upsample_{mode}2d_backward")
        yield fwd, (x, [9, 13], False, False, None, None)
        yield fwd, (x.to(memory_format=torch.channels_last), [3, 4], True, True, None, None)
        yield fwd, (x, [11, 8], False, False, 2.2, 1.4)
        yield bwd, (torch.randn(2, 3, 9, 13), [5, 6], False, False, None, None)
        yield bwd, (torch.randn(2, 3, 3, 4).to(memory_format=torch.channels_last), [5, 6], False, True,
                    0.6, 0.7)


@pytest.mark.parametrize("op,args", list(_opcheck_samples()), ids=lambda v: getattr(v, "__name__", ""))
def test_opcheck(op, args):
    args = tuple(a.clone().requires_grad_() if isinstance(a, torch.Tensor) else a for a in args)
    torch.library.opcheck(op, args)


def test_torch_compile_fullgraph():
    model = nn.Sequential(tconv.Upsample(scale_factor=2, mode="bicubic"), nn.ReLU(),
                          tconv.UpsamplingBilinear2d(size=(13, 17)))
    x = torch.randn(2, 3, 5, 6, requires_grad=True)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), model(x))
    g1 = torch.autograd.grad(compiled(x).square().sum(), x)[0]
    g2 = torch.autograd.grad(model(x).square().sum(), x)[0]
    torch.testing.assert_close(g1, g2)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("mode", MODES)
def test_bitwise_deterministic_backward(mode, layout, threads):
    x = _make(4, 8, (17, 23), torch.float32, layout).requires_grad_()
    kw = dict(scale_factor=(2.5, 3), mode=mode)
    go = torch.randn_like(F.interpolate(x, **kw))
    old = torch.get_num_threads()
    try:
        grads = []
        for t in (threads, threads, 3 - threads):  # twice with this count, once with the other
            torch.set_num_threads(t)
            grads.append(torch.autograd.grad(tconv.interpolate(x, **kw), x, go)[0])
    finally:
        torch.set_num_threads(old)
    assert torch.equal(grads[0], grads[1]) and torch.equal(grads[0], grads[2])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kw", [dict(scale_factor=2), dict(scale_factor=0.5, antialias=True)])
def test_half_precision_against_float32(kw, mode, layout, dtype):
    xh = _make(2, 6, (7, 9), torch.float32, layout).to(dtype).requires_grad_()
    xr = xh.detach().float().requires_grad_()
    out, ref = tconv.interpolate(xh, mode=mode, **kw), F.interpolate(xr, mode=mode, **kw)
    assert out.dtype == dtype
    eps = torch.finfo(dtype).eps
    scale = ref.abs().max().item()
    torch.testing.assert_close(out.float(), ref.to(dtype).float(), rtol=2 * eps, atol=2 * eps * scale)
    go = torch.randn_like(ref).to(dtype)
    (g,) = torch.autograd.grad(out, xh, go)
    (gr,) = torch.autograd.grad(ref, xr, go.float())
    assert g.dtype == dtype
    torch.testing.assert_close(g.float(), gr.to(dtype).float(), rtol=4 * eps,
                               atol=4 * eps * gr.abs().max().item())


# ---- modules ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [dict(scale_factor=2, mode="bilinear"),
                                dict(size=(7, 9), mode="bicubic", align_corners=True),
                                dict(scale_factor=1.7, mode="bicubic", recompute_scale_factor=True)])
def test_upsample_module_matches_pytorch(kw):
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    ours, ref = tconv.Upsample(**kw), nn.Upsample(**kw)
    assert isinstance(ours, nn.Upsample)
    torch.testing.assert_close(ours(x), ref(x))
    assert repr(ours).endswith(repr(ref)[len("Upsample"):])


def test_upsampling_bilinear2d_matches_pytorch():
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    torch.testing.assert_close(tconv.UpsamplingBilinear2d(scale_factor=3)(x),
                               nn.UpsamplingBilinear2d(scale_factor=3)(x))
    torch.testing.assert_close(tconv.UpsamplingBilinear2d(size=(4, 11))(x),
                               nn.UpsamplingBilinear2d(size=(4, 11))(x))


def test_upsample_module_rejects_other_modes():
    with pytest.raises(ValueError, match="bilinear.*bicubic"):
        tconv.Upsample(scale_factor=2, mode="nearest")


# ---- bad input: the same exception type as PyTorch ---------------------------------------------------

def _x(*shape):
    return torch.randn(*(shape or (2, 3, 5, 5)))


BAD_CALLS = {
    "size and scale_factor": lambda f: f(_x(), size=4, scale_factor=2, mode="bilinear"),
    "neither size nor scale_factor": lambda f: f(_x(), mode="bicubic"),
    "size of wrong length": lambda f: f(_x(), size=(4, 4, 4), mode="bilinear"),
    "scale_factor of wrong length": lambda f: f(_x(), scale_factor=(2,), mode="bilinear"),
    "float size": lambda f: f(_x(), size=(4.5, 4), mode="bilinear"),
    "recompute with size": lambda f: f(_x(), size=4, recompute_scale_factor=True, mode="bilinear"),
    "3-D input": lambda f: f(_x(2, 3, 5), scale_factor=2, mode="bilinear"),
    "5-D input": lambda f: f(_x(1, 2, 3, 5, 5), scale_factor=2, mode="bicubic"),
    "2-D input": lambda f: f(_x(5, 5), size=3, mode="bilinear"),
    "3-D antialias": lambda f: f(_x(2, 3, 5), scale_factor=0.5, mode="bilinear", antialias=True),
    "zero output size": lambda f: f(_x(), size=(0, 4), mode="bilinear"),
    "negative output size": lambda f: f(_x(), size=(-2, 4), mode="bicubic"),
    "scale truncating to zero": lambda f: f(_x(), scale_factor=0.1, mode="bilinear"),
    "negative scale": lambda f: f(_x(), scale_factor=-2.0, mode="bicubic"),
    "empty spatial input": lambda f: f(_x(2, 3, 0, 5), size=4, mode="bilinear"),
    "zero channels": lambda f: f(_x(2, 0, 5, 5), size=4, mode="bilinear"),
    "integer input": lambda f: f(_x().long(), size=4, mode="bilinear"),
    "align_corners with nearest": lambda f: f(_x(), scale_factor=2, mode="nearest", align_corners=True),
    "align_corners with area": lambda f: f(_x(), size=3, mode="area", align_corners=False),
}


@pytest.mark.parametrize("name", list(BAD_CALLS))
def test_bad_input_raises_like_pytorch(name):
    call = BAD_CALLS[name]
    with pytest.raises(Exception) as expected:
        call(F.interpolate)
    with pytest.raises(expected.type) as got:
        call(tconv.interpolate)
    assert str(got.value)


@pytest.mark.parametrize("mode", ["nearest", "area", "nearest-exact", "linear", "trilinear", "lanczos", "foo"])
def test_other_modes_raise_value_error_naming_the_supported_ones(mode):
    with pytest.raises(ValueError, match="'bilinear' or 'bicubic'"):
        tconv.interpolate(_x(), scale_factor=2, mode=mode)
