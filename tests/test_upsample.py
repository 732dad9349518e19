"""Bilinear/bicubic upsampling's numerics, gradients and opcheck on the CPU: tconv.interpolate /
tconv.Upsample against torch.nn.functional.interpolate (the grid, memory formats, the float32 vector
paths, hypothesis, half precision), gradcheck in every mode, opcheck, the modules and
init.bilinear_. Errors, NaN/Inf, empty tensors and determinism are in test_robustness.py; compile,
export, autocast and DDP in test_ecosystem.py; every autograd mode in test_autograd_modes.py."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from torch import nn

import tconv
from _support import (MODES, UPSAMPLE_GRADCHECK, UPSAMPLE_GRID, check_interpolate, full_gradcheck,
                      make_image)

ops = torch.ops.tconv


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cfg", UPSAMPLE_GRID, ids=lambda c: f"{c[0]}-{c[1]}".replace(" ", ""))
def test_grid_matches_pytorch(cfg, mode, align_corners, antialias):
    hw, kw = cfg
    check_interpolate(make_image(2, 3, hw), mode=mode, align_corners=align_corners, antialias=antialias, **kw)


@pytest.mark.parametrize("layout", ["channels_last", "noncontiguous", "sliced"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kw", [dict(scale_factor=2), dict(scale_factor=0.4, antialias=True),
                                dict(size=(7, 13), align_corners=True)])
def test_memory_formats_match_pytorch(kw, mode, dtype, layout):
    check_interpolate(make_image(2, 5, (6, 9), dtype, layout), mode=mode, **kw)


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
    check_interpolate(make_image(2, 16, (7, w), torch.float32, layout), scale_factor=(1.5, sf), mode=mode)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sf", [(2.0, 2.0), (0.5, 0.5), (2.0, 0.5)])  # (2, 0.5): W first
def test_float32_outputs_over_32_mib_match_pytorch(sf, mode, layout):
    # rows of 602 floats start off 64-byte boundaries: the streaming stores' edges are exercised
    x = make_image(2, 16, (int(600 / sf[0]), int(602 / sf[1])), torch.float32, layout)
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
    check_interpolate(make_image(1, 24, (20, 100), torch.float32, "channels_last"), scale_factor=4, mode=mode)


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
    x = make_image(cfg["n"], cfg["c"], cfg["hw"], layout=cfg["layout"])
    try:
        F.interpolate(x, mode=cfg["mode"], **cfg["sizing"])
    except RuntimeError:  # e.g. a scale factor that truncates an axis to 0: both must refuse
        with pytest.raises(RuntimeError):
            tconv.interpolate(x, mode=cfg["mode"], **cfg["sizing"])
        return
    check_interpolate(x, mode=cfg["mode"], align_corners=cfg["align_corners"], antialias=cfg["antialias"],
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

@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kw", UPSAMPLE_GRADCHECK)
def test_gradcheck_and_gradgradcheck(kw, mode, channels_last):
    x = make_image(2, 2, (4, 5), layout="channels_last" if channels_last else "contiguous").requires_grad_()
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


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kw", [dict(scale_factor=2), dict(scale_factor=0.5, antialias=True)])
def test_half_precision_against_float32(kw, mode, layout, dtype):
    xh = make_image(2, 6, (7, 9), torch.float32, layout).to(dtype).requires_grad_()
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


# ---- bad input: the same exception type as PyTorch ---------------------------------------------------
