"""Bilinear/bicubic upsampling's numerics, gradients and opcheck on CUDA: the CPU suite's grid on
the GPU (against F.interpolate on the CPU) through every kernel path (the upsample_path fixture),
agreement with tconv's CPU kernels, memory formats, all four dtypes, gradcheck, opcheck, the
device-table cache, CUDA graphs and outputs of more than 2^31 elements. Errors, NaN/Inf, empty
tensors and determinism are in test_robustness_cuda.py; compile, export, autocast and DDP in
test_ecosystem.py; every autograd mode in test_autograd_modes.py. Every test is skipped without a
GPU."""
import pytest
import torch
import torch.nn.functional as F

import tconv
from _support import (MODES, UPSAMPLE_GRADCHECK, UPSAMPLE_GRID, UPSAMPLE_TOL, adjoint_of_pytorch_forward,
                      cpu_and_cuda_images, pytorch_backward_is_not_its_forwards_gradient, pytorch_forward)

# upsample_path (conftest.py): each kernel path of csrc/cuda/separable_resample.cuh in turn.
pytestmark = pytest.mark.cuda
ops = torch.ops.tconv


def _check_cuda(x_cpu, x_gpu, tol=None, **kw):
    """CUDA forward (values, shape, dtype, memory format) and input gradient equal PyTorch's on the
    CPU (or the adjoint of PyTorch's forward where PyTorch's backward is not its gradient)."""
    rtol, atol = tol or UPSAMPLE_TOL[x_cpu.dtype]
    ref_leaf = x_cpu.detach().clone().requires_grad_()
    leaf = x_gpu.detach().requires_grad_()
    ours = tconv.interpolate(leaf, **kw)
    ref = F.interpolate(ref_leaf, **kw)
    assert ours.device.type == "cuda"
    assert ours.is_contiguous(memory_format=torch.channels_last) == \
        ref.is_contiguous(memory_format=torch.channels_last)
    ref = pytorch_forward(ref_leaf, kw, ref)
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    torch.testing.assert_close(ours.cpu(), ref, rtol=rtol, atol=atol)
    if ref.numel() == 0:
        return
    go = torch.randn_like(ref)
    (g_ours,) = torch.autograd.grad(ours, leaf, go.cuda())
    if pytorch_backward_is_not_its_forwards_gradient(x_cpu, ref.shape[2:], kw):
        g_ref = adjoint_of_pytorch_forward(x_cpu, go, kw)
    else:
        (g_ref,) = torch.autograd.grad(ref, ref_leaf, go)
    assert g_ours.device.type == "cuda" and g_ours.shape == x_cpu.shape
    torch.testing.assert_close(g_ours.cpu(), g_ref, rtol=rtol * 10, atol=atol * 10)


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cfg", UPSAMPLE_GRID, ids=lambda c: f"{c[0]}-{c[1]}".replace(" ", ""))
def test_grid_matches_pytorch_cpu(cfg, mode, align_corners, antialias, upsample_path):
    hw, kw = cfg
    _check_cuda(*cpu_and_cuda_images("contiguous", 2, 3, hw, torch.float64), mode=mode,
                align_corners=align_corners, antialias=antialias, **kw)


@pytest.mark.parametrize("layout", ["channels_last", "noncontiguous", "sliced"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kw", [dict(scale_factor=2), dict(scale_factor=0.4, antialias=True),
                                dict(size=(7, 13), align_corners=True),
                                dict(scale_factor=(2.3, 0.6), antialias=True)])
def test_memory_formats_match_pytorch_cpu(kw, mode, dtype, layout, upsample_path):
    _check_cuda(*cpu_and_cuda_images(layout, 2, 5, (6, 9), dtype), mode=mode, **kw)


# Shapes with many tiles per plane (and, channels_last with C > 64, several channel blocks) under
# the default tile sizes; float64 against tconv's CPU kernels, forward and backward ops.
TILE_CASES = [
    # n, c, hw, output size
    (2, 3, (37, 300), (93, 750)),      # x2.5: several tiles along H and W
    (1, 2, (200, 150), (61, 47)),      # downsampling
    (1, 70, (9, 11), (20, 31)),        # channels_last: two channel blocks
    (1, 1, (300, 3), (1000, 7)),       # tall and narrow
    (1, 2, (5, 600), (3, 1999)),       # short and wide
    (1, 3, (512, 8), (16, 8)),         # heavy downsampling along H: large tap counts
]


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", TILE_CASES, ids=str)
def test_cuda_agrees_with_tconv_cpu(case, mode, channels_last, antialias, upsample_path):
    n, c, hw, size = case
    fwd = getattr(ops, f"upsample_{mode}2d")
    bwd = getattr(ops, f"upsample_{mode}2d_backward")
    x = torch.randn(n, c, *hw, dtype=torch.float64)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    for align_corners, scales in [(False, (None, None)), (True, (None, None)), (False, (2.6, 2.4))]:
        args = (list(size), align_corners, antialias, *scales)
        y_cpu, y_gpu = fwd(x, *args), fwd(x.cuda(), *args)
        assert y_gpu.is_contiguous(memory_format=torch.channels_last) == channels_last
        torch.testing.assert_close(y_gpu.cpu(), y_cpu, rtol=1e-12, atol=1e-12)
        go = torch.randn_like(y_cpu)
        bargs = (list(hw), align_corners, antialias, *scales)
        g_cpu, g_gpu = bwd(go, *bargs), bwd(go.cuda(), *bargs)
        assert g_gpu.is_contiguous(memory_format=torch.channels_last) == channels_last
        torch.testing.assert_close(g_gpu.cpu(), g_cpu, rtol=1e-12, atol=1e-12)


# Both index widths (csrc/cuda/launch.cuh, Note [index width]) through every kernel path and
# layout: the tiled kernel's two layout instantiations (channels_last tiles with C above and below
# one channel block, one channel per tile) and the direct kernel.
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "noncontiguous", "sliced"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", [((6, 9), 5, dict(scale_factor=2)),
                                  ((37, 20), 70, dict(size=(50, 9))),
                                  ((12, 40), 3, dict(scale_factor=0.4, antialias=True))], ids=str)
def test_both_index_widths_match_pytorch_cpu(case, mode, layout, path, index_bits):
    hw, c, kw = case
    _check_cuda(*cpu_and_cuda_images(layout, 2, c, hw, torch.float64), mode=mode, **kw)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_index_widths_bitwise_equal(mode, channels_last, path, monkeypatch):
    fwd, bwd = getattr(ops, f"upsample_{mode}2d"), getattr(ops, f"upsample_{mode}2d_backward")
    x = torch.randn(2, 5, 23, 31, device="cuda")
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    go = torch.randn(2, 5, 50, 17, device="cuda")

    def run():
        return [fwd(x, [50, 17], False, False, None, None), bwd(go, [23, 31], True, False, None, None)]

    monkeypatch.delenv("TCONV_CUDA_INDEX_BITS", raising=False)
    narrow = run()
    monkeypatch.setenv("TCONV_CUDA_INDEX_BITS", "64")
    for a, e in zip(narrow, run()):
        assert torch.equal(a, e)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kw", [dict(scale_factor=2), dict(scale_factor=0.5, antialias=True),
                                dict(size=(13, 5), align_corners=True)])
def test_half_precision_against_float32(kw, mode, layout, dtype, upsample_path):
    """Half precision sums in float32 and rounds once: within a couple of ulps of float32."""
    x, _ = cpu_and_cuda_images(layout, 2, 6, (7, 9), torch.float32)
    xh = x.to("cuda", dtype).requires_grad_()
    xr = xh.detach().cpu().float().requires_grad_()
    out, ref = tconv.interpolate(xh, mode=mode, **kw), F.interpolate(xr, mode=mode, **kw)
    assert out.dtype == dtype
    assert out.is_contiguous(memory_format=torch.channels_last) == (layout == "channels_last")
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(out.float().cpu(), ref.to(dtype).float(), rtol=2 * eps,
                               atol=2 * eps * ref.abs().max().item())
    go = torch.randn_like(ref).to(dtype)
    (g,) = torch.autograd.grad(out, xh, go.cuda())
    (gr,) = torch.autograd.grad(ref, xr, go.float())
    assert g.dtype == dtype
    torch.testing.assert_close(g.float().cpu(), gr.to(dtype).float(), rtol=4 * eps,
                               atol=4 * eps * gr.abs().max().item())


def test_expanded_grad_output():
    """Autograd hands the backward a stride-0 gradient for .sum(): it is made dense first."""
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    for mode in MODES:
        a, b = x.clone().requires_grad_(), x.cuda().requires_grad_()
        F.interpolate(a, scale_factor=2.5, mode=mode).sum().backward()
        tconv.interpolate(b, scale_factor=2.5, mode=mode).sum().backward()
        torch.testing.assert_close(b.grad.cpu(), a.grad, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kw", UPSAMPLE_GRADCHECK)
def test_gradcheck_and_gradgradcheck_cuda(kw, mode, channels_last):
    x = torch.randn(2, 2, 4, 5, dtype=torch.float64, device="cuda")
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    x.requires_grad_()
    fn = lambda x: tconv.interpolate(x, mode=mode, **kw)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def _opcheck_samples():
    x = torch.randn(2, 3, 5, 6, device="cuda")
    for mode in MODES:
        fwd, bwd = getattr(ops, f"upsample_{mode}2d"), getattr(ops, f"upsample_{mode}2d_backward")
        yield fwd, (x, [9, 13], False, False, None, None)
        yield fwd, (x.to(memory_format=torch.channels_last), [3, 4], True, True, None, None)
        yield fwd, (x, [11, 8], False, False, 2.2, 1.4)
        yield bwd, (torch.randn(2, 3, 9, 13, device="cuda"), [5, 6], False, False, None, None)
        yield bwd, (torch.randn(2, 3, 3, 4, device="cuda").to(memory_format=torch.channels_last), [5, 6],
                    False, True, 0.6, 0.7)


@pytest.mark.parametrize("index", range(10))
def test_opcheck_cuda(index):
    op, args = list(_opcheck_samples())[index]
    args = tuple(a.clone().requires_grad_() if isinstance(a, torch.Tensor) else a for a in args)
    torch.library.opcheck(op, args)


def test_runs_on_the_tensors_device():
    """A tensor on a non-current device runs there (CUDAGuard), output on the same device."""
    last = torch.device("cuda", torch.cuda.device_count() - 1)
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, device=last)
    y = tconv.interpolate(x, scale_factor=2, mode="bicubic")
    assert y.device == last
    torch.testing.assert_close(y.cpu(), F.interpolate(x.cpu(), scale_factor=2, mode="bicubic"))


# ---- more than 2^31 elements: 64-bit indexing --------------------------------------------------------

# bfloat16, 2 channels, x2: output 2 x 32768 x 32800 = 2^31 + 4,194,304 elements (4.3 GB).
BIG = dict(n=1, c=2, h=16384, w=16400)
CORNER = 8  # input pixels per side of a checked corner


@pytest.mark.slow
@pytest.mark.cuda_memory(24)
@pytest.mark.parametrize("upsample_path", ["auto", "direct"], indirect=True)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("mode", MODES)
def test_output_beyond_int32_indexing(mode, layout, upsample_path):
    """x2 with the scale given: an output pixel near the far (near) border depends only on input
    pixels near that border, with the same weights in a crop of the input's corner. So the
    corners of the huge output (the last ones lie past element 2^31) are checked against the
    CPU op on the input's corners; the backward likewise on grad_output's corners."""
    n, c, h, w = BIG["n"], BIG["c"], BIG["h"], BIG["w"]
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(n, c, h, w, device="cuda", dtype=torch.bfloat16, generator=gen).contiguous(memory_format=fmt)
    fwd, bwd = getattr(ops, f"upsample_{mode}2d"), getattr(ops, f"upsample_{mode}2d_backward")
    y = fwd(x, [2 * h, 2 * w], False, False, 2.0, 2.0)
    assert y.numel() > 2 ** 31
    assert y.is_contiguous(memory_format=fmt)
    # Outputs within `margin` of a crop's inner edges see the crop's own border: not compared.
    k, margin = CORNER, 4
    corners = [  # input crop, matching output crop, compared part of the output crop / of the input crop
        (slice(-k, None), slice(-2 * k, None), slice(margin, None), slice(margin, None)),
        (slice(0, k), slice(0, 2 * k), slice(0, 2 * k - margin), slice(0, k - margin)),
    ]
    for inp, out, out_keep, _ in corners:
        ref = fwd(x[:, :, inp, inp].float().cpu(), [2 * k, 2 * k], False, False, 2.0, 2.0)
        got = y[:, :, out, out][:, :, out_keep, out_keep].float().cpu()
        torch.testing.assert_close(got, ref[:, :, out_keep, out_keep].to(torch.bfloat16).float(),
                                   rtol=0.02, atol=0.02)
    del x
    grad_input = bwd(y, [h, w], False, False, 2.0, 2.0)
    assert grad_input.shape == (n, c, h, w) and grad_input.is_contiguous(memory_format=fmt)
    for inp, out, _, in_keep in corners:
        ref = bwd(y[:, :, out, out].float().cpu(), [k, k], False, False, 2.0, 2.0)[:, :, in_keep, in_keep]
        got = grad_input[:, :, inp, inp][:, :, in_keep, in_keep].float().cpu()
        torch.testing.assert_close(got, ref.to(torch.bfloat16).float(), rtol=0.02,
                                   atol=0.02 * ref.abs().max().item())


# ---- the device-table cache (csrc/cuda/upsample_device_tables.h) ----------------------------------

def _table_cache_stats():
    return tconv._C._cuda_table_cache_stats()


def test_table_cache_hits_and_misses():
    """One upload per key; every field the tables depend on is in the key."""
    x = torch.randn(2, 3, 7, 13, device="cuda")
    calls = [  # (input, kwargs): each a new key
        (x, dict(size=(29, 31), mode="bilinear", align_corners=False)),
        (x, dict(size=(29, 31), mode="bilinear", align_corners=True)),
        (x, dict(size=(29, 31), mode="bicubic", align_corners=False)),
        (x, dict(size=(29, 30), mode="bilinear", align_corners=False)),
        (x, dict(scale_factor=(2.3, 2.4), mode="bilinear", align_corners=False)),
        (x, dict(scale_factor=(2.3, 2.5), mode="bilinear", align_corners=False)),
        (x, dict(size=(3, 5), mode="bilinear", align_corners=False, antialias=True)),
        (x.double(), dict(size=(29, 31), mode="bilinear", align_corners=False)),  # float64 tables
    ]
    before = _table_cache_stats()
    for t, kw in calls:
        tconv.interpolate(t, **kw)
    mid = _table_cache_stats()
    assert mid["misses"] - before["misses"] == len(calls)
    assert mid["entries"] - before["entries"] == len(calls)
    for t, kw in calls:  # the same keys again: no upload, the same results as PyTorch's
        torch.testing.assert_close(tconv.interpolate(t, **kw).cpu(), F.interpolate(t.cpu(), **kw),
                                   rtol=1e-5, atol=1e-5)
    tconv.interpolate(x.half(), **calls[0][1])  # float16 uses the float32 tables
    after = _table_cache_stats()
    assert after["hits"] - mid["hits"] == len(calls) + 1
    assert after["misses"] == mid["misses"]
    # the backward has its own (transposed) tables
    xg = x.clone().requires_grad_()
    tconv.interpolate(xg, **calls[0][1]).sum().backward()
    assert _table_cache_stats()["misses"] == after["misses"] + 1


@pytest.mark.parametrize("warm", [True, False], ids=["tables-cached", "tables-uploaded-in-capture"])
def test_cuda_graph_replay(warm):
    """Captured forward and backward replay correctly on new data: with the tables cached before
    capture (no copy in the graph) and with a key first seen during capture (a copy from a pinned
    buffer the cache keeps for the graph's replays)."""
    size = (37, 41) if warm else (43, 47)  # keys no other test uses
    static_x = torch.randn(2, 3, 11, 9, device="cuda", requires_grad=True)
    kw = dict(size=size, mode="bicubic", align_corners=False)

    def step(**kw):
        out = tconv.interpolate(static_x, **kw)
        (grad,) = torch.autograd.grad(out, static_x, torch.ones_like(out))
        return out, grad

    # Warm-up on a side stream, as torch.cuda.graph asks; cold: another size, so the captured
    # size's tables are still to upload.
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        step(**(kw if warm else dict(kw, size=(5, 6))))
    torch.cuda.current_stream().wait_stream(s)
    before = _table_cache_stats()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out, static_grad = step(**kw)
    during = _table_cache_stats()
    if warm:
        assert during["misses"] == before["misses"] and during["captured_entries"] == before["captured_entries"]
    else:
        assert during["captured_entries"] == before["captured_entries"] + 2  # forward and backward
    for _ in range(3):
        new = torch.randn(2, 3, 11, 9, device="cuda")
        with torch.no_grad():
            static_x.copy_(new)
        torch.cuda.synchronize()
        torch.empty(1 << 20, pin_memory=True).fill_(7)  # reuse freed pinned blocks, if any
        graph.replay()
        torch.cuda.synchronize()
        xr = new.cpu().requires_grad_()
        ref = F.interpolate(xr, **kw)
        (ref_grad,) = torch.autograd.grad(ref, xr, torch.ones_like(ref))
        torch.testing.assert_close(static_out.cpu(), ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(static_grad.cpu(), ref_grad, rtol=1e-5, atol=1e-4)
    # eagerly afterwards: the captured copies are not used (their buffers fill only at replay)
    torch.testing.assert_close(tconv.interpolate(static_x.detach(), **kw).cpu(),
                               F.interpolate(static_x.detach().cpu(), **kw), rtol=1e-5, atol=1e-5)
