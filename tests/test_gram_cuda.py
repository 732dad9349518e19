"""The Gram matrix's numerics, gradients and opcheck on CUDA: the CPU suite's shapes and a ragged C
x L grid on the GPU against a float64 reference, exact symmetry, the float16 overflow case, TF32,
gradcheck, agreement with tconv's CPU kernels, opcheck and features of more than 2^31 elements.
Errors, NaN/Inf, empty tensors and determinism are in test_robustness_cuda.py; compile, export,
autocast and DDP in test_ecosystem.py; every autograd mode in test_autograd_modes.py. Every test is
skipped without a GPU."""
import pytest
import torch

import tconv
from _support import (ALL_TYPES, GRAM_SHAPES, GRAM_TOL, HALF_TYPES, gram_layout, gram_reference,
                      gram_reference_differentiable)

pytestmark = [pytest.mark.cuda, pytest.mark.usefixtures("full_precision_float32")]
ops = torch.ops.tconv


def _assert_gram_close(g, x, normalize=True):
    """g (on the GPU) against the float64 Gram of x's values; float16 / bfloat16 against the exact
    Gram rounded once (what float32 accumulation gives), within two units in the last place."""
    ref = gram_reference(x.cpu(), normalize)
    scale = ref.abs().max().item() or 1.0
    if g.dtype in HALF_TYPES:
        eps = torch.finfo(g.dtype).eps
        rounded = ref.float().to(g.dtype).double()
        torch.testing.assert_close(g.cpu().double(), rounded, rtol=2 * eps, atol=2 * eps * scale)
    else:
        rtol, atol = GRAM_TOL[g.dtype]
        torch.testing.assert_close(g.cpu().double(), ref, rtol=rtol, atol=atol * scale)


def _assert_grad_close(dx, x, go, normalize=True):
    xr = x.detach().cpu().double().requires_grad_()
    (dref,) = torch.autograd.grad(gram_reference_differentiable(xr, normalize), xr, go.cpu().double())
    scale = dref.abs().max().item() or 1.0
    if dx.dtype in HALF_TYPES:
        eps = torch.finfo(dx.dtype).eps
        torch.testing.assert_close(dx.cpu().double(), dref.to(dx.dtype).double(), rtol=4 * eps,
                                   atol=4 * eps * scale)
    else:
        rtol, atol = GRAM_TOL[dx.dtype]
        torch.testing.assert_close(dx.cpu().double(), dref, rtol=rtol * 10, atol=atol * 10 * scale)


def _check_cuda(x, normalize=True):
    """CUDA forward: right values, exactly symmetric; the gradient too (x: a CUDA tensor)."""
    leaf = x.detach().clone().requires_grad_()
    g = tconv.gram_matrix(leaf, normalize)
    assert g.device.type == "cuda" and g.dtype == x.dtype
    assert torch.equal(g, g.mT)
    _assert_gram_close(g, x, normalize)
    if x.numel() == 0:
        return
    go = torch.randn(g.shape, device="cuda").to(x.dtype)
    (dx,) = torch.autograd.grad(g, leaf, go)
    assert dx.shape == x.shape and dx.dtype == x.dtype
    _assert_grad_close(dx, x, go, normalize)


@pytest.mark.parametrize("dtype", ALL_TYPES, ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "noncontiguous"])
@pytest.mark.parametrize("shape", GRAM_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_cpu_suite_shapes(shape, layout, dtype):
    _check_cuda(gram_layout(torch.randn(*shape, device="cuda").to(dtype), layout))


# Ragged C and L: tile edges (C = 64 / 65 / 128 / 129 switch between the 64- and 128-wide tiles and
# their edges), L not a multiple of the 16-byte loads, and long L split into segments.
RAGGED_C = [1, 3, 17, 64, 129, 300]
RAGGED_L = [1, 7, 100, 4097]


@pytest.mark.parametrize("dtype", ALL_TYPES, ids=str)
@pytest.mark.parametrize("length", RAGGED_L)
@pytest.mark.parametrize("channels", RAGGED_C)
def test_ragged_channels_and_length(channels, length, dtype):
    _check_cuda(torch.randn(2, channels, length, 1, device="cuda").to(dtype))


@pytest.mark.parametrize("dtype", ALL_TYPES, ids=str)
@pytest.mark.parametrize("shape", [(1, 65, 1000), (3, 128, 513), (1, 640, 300), (16, 64, 4096)])
def test_tile_sizes_and_segments(shape, dtype):
    """128-wide tiles past one tile, many tiles, and many batch items with few tiles each."""
    _check_cuda(torch.randn(*shape, 1, device="cuda").to(dtype))


# The L segments follow the GPU's resident blocks (occupancy x SMs, cached per device);
# TCONV_CUDA_GRAM_TARGET_BLOCKS overrides that target: one segment, a few, and many on small shapes.
@pytest.mark.parametrize("target", ["1", "7", "5000", "default"])
@pytest.mark.parametrize("dtype", ALL_TYPES, ids=str)
@pytest.mark.parametrize("shape", [(1, 65, 5000), (2, 32, 3001), (1, 200, 2000)], ids=lambda s: "x".join(map(str, s)))
def test_segments_for_any_block_target(shape, dtype, target, monkeypatch):
    if target != "default":
        monkeypatch.setenv("TCONV_CUDA_GRAM_TARGET_BLOCKS", target)
    x = torch.randn(*shape, 1, device="cuda").to(dtype)
    _check_cuda(x)
    assert torch.equal(tconv.gram_matrix(x), tconv.gram_matrix(x))


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("dtype", ALL_TYPES, ids=str)
def test_normalize(normalize, dtype):
    _check_cuda(torch.randn(2, 20, 6, 5, device="cuda").to(dtype), normalize)


@pytest.mark.parametrize("dtype", ALL_TYPES, ids=str)
def test_misaligned_and_strided_features(dtype):
    """A contiguous tensor whose data does not start on 16 bytes (element loads), and strided
    (N, C, L) views (made contiguous first)."""
    n, c, length = 2, 40, 264
    flat = torch.randn(n * c * length + 1, device="cuda").to(dtype)
    misaligned = flat[1:].view(n, c, length)
    assert misaligned.data_ptr() % 16 != 0
    for x in (misaligned, misaligned.mT.contiguous().mT, misaligned[:, ::2, ::3]):
        g = ops.gram_matrix(x, True)
        assert torch.equal(g, g.mT)
        _assert_gram_close(g, x.unsqueeze(-1))
        go = torch.randn(g.shape, device="cuda").to(dtype)
        dx = ops.gram_matrix_backward(go, x, True)
        assert dx.is_contiguous()
        _assert_grad_close(dx.unsqueeze(-1), x.unsqueeze(-1), go)


@pytest.mark.parametrize("shape", [(2, 40, 7, 9), (2, 5, 200, 200), (2, 300, 33, 17)])
@pytest.mark.parametrize("dtype", HALF_TYPES, ids=str)
def test_half_precision_accumulates_in_float32(dtype, shape):
    _check_cuda(torch.randn(*shape, device="cuda").to(dtype))


@pytest.mark.parametrize("shape", [(1, 4, 64, 64), (2, 200, 64, 64)])
def test_float16_raw_sums_beyond_65504_do_not_overflow(shape):
    """Values ~30: raw sums over 4096 positions are ~3.7e6, far past float16's 65504; the
    normalized Gram (~900 / C) fits. bmm in float16 overflows to inf."""
    x = torch.full(shape, 30.0, device="cuda").add_(torch.rand(shape, device="cuda")).half()
    xf = x.flatten(2)
    assert torch.isinf(torch.bmm(xf, xf.mT)).any()
    g = tconv.gram_matrix(x)
    assert torch.isfinite(g).all() and torch.equal(g, g.mT)
    torch.testing.assert_close(g.cpu().float(), gram_reference(x.cpu().float()).float(), rtol=2e-3, atol=0)
    leaf = x.clone().requires_grad_()
    loss = tconv.style_loss(leaf, g)
    assert torch.isfinite(loss)
    (dx,) = torch.autograd.grad(loss, leaf)
    assert torch.isfinite(dx).all()


def test_tf32_when_allowed():
    """With allow_tf32 the float32 Gram may use plain TF32 tensor cores (as cuBLAS does): TF32
    accuracy, still exactly symmetric."""
    x = torch.randn(2, 150, 3000, device="cuda")
    torch.backends.cuda.matmul.allow_tf32 = True
    g = ops.gram_matrix(x, True)
    assert torch.equal(g, g.mT)
    ref = gram_reference(x.cpu().unsqueeze(-1))
    torch.testing.assert_close(g.cpu().double(), ref, rtol=5e-3, atol=5e-3 * ref.abs().max().item())


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_gradcheck_and_gradgradcheck(layout, normalize):
    x = gram_layout(torch.randn(2, 5, 3, 4, dtype=torch.float64, device="cuda"), layout).requires_grad_()
    fn = lambda x: tconv.gram_matrix(x, normalize)
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_backward_op_gradcheck():
    g = torch.randn(2, 5, 5, dtype=torch.float64, device="cuda", requires_grad=True)
    x = torch.randn(2, 5, 7, dtype=torch.float64, device="cuda", requires_grad=True)
    fn = lambda g, x: ops.gram_matrix_backward(g, x, True)
    assert torch.autograd.gradcheck(fn, (g, x))
    assert torch.autograd.gradgradcheck(fn, (g, x))


@pytest.mark.parametrize("shape", [(2, 19, 30), (1, 129, 4097), (3, 300, 100)])
def test_cuda_agrees_with_tconv_cpu(shape):
    """Both devices' kernels, op by op, in float64."""
    x = torch.randn(*shape, dtype=torch.float64)
    go = torch.randn(shape[0], shape[1], shape[1], dtype=torch.float64)
    for normalize in (True, False):
        torch.testing.assert_close(ops.gram_matrix(x.cuda(), normalize).cpu(), ops.gram_matrix(x, normalize),
                                   rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(ops.gram_matrix_backward(go.cuda(), x.cuda(), normalize).cpu(),
                                   ops.gram_matrix_backward(go, x, normalize), rtol=1e-12, atol=1e-12)


def _opcheck_samples():
    x = torch.randn(2, 19, 30, device="cuda")
    yield ops.gram_matrix, (x, True)
    yield ops.gram_matrix, (x.mT.contiguous().mT, False)  # channels-last feature matrix
    yield ops.gram_matrix, (torch.randn(1, 3, 5, dtype=torch.float64, device="cuda"), True)
    yield ops.gram_matrix, (torch.randn(2, 70, 40, device="cuda").half(), True)
    yield ops.gram_matrix_backward, (torch.randn(2, 19, 19, device="cuda"), x, True)
    yield ops.gram_matrix_backward, (torch.randn(2, 19, 19, device="cuda"), x.mT.contiguous().mT, False)


@pytest.mark.parametrize("op,args", list(_opcheck_samples()) if torch.cuda.is_available() else [],
                         ids=lambda v: getattr(v, "__name__", ""))
def test_opcheck(op, args):
    args = tuple(a.clone().requires_grad_() if isinstance(a, torch.Tensor) else a for a in args)
    torch.library.opcheck(op, args)


def _chunked_reference(x, go, chunk=1 << 22):
    """float64 Gram (normalized) and gradient of a huge (1, C, L) on the GPU, L in chunks."""
    c, length = x.shape[1], x.shape[2]
    ref = torch.zeros(c, c, dtype=torch.float64, device="cuda")
    for k in range(0, length, chunk):
        xc = x[0, :, k:k + chunk].double()
        ref += xc @ xc.mT
    scale = 1.0 / (c * length)
    sym = (go[0].double() + go[0].double().mT) * scale
    return ref * scale, sym


@pytest.mark.cuda_memory(40)  # the features, float32 copies in the backward, the reference's chunks
def test_features_over_2_31_elements():
    """64 x (2^25 + 8) bfloat16 features (2^31 + 512 elements): row offsets past 2^31."""
    c, length = 64, (1 << 25) + 8
    x = torch.randn(1, c, length, device="cuda", dtype=torch.bfloat16)
    assert x.numel() > 2**31
    g = ops.gram_matrix(x, True)
    go = torch.randn(1, c, c, device="cuda").to(torch.bfloat16)
    ref, sym = _chunked_reference(x, go)
    assert torch.equal(g, g.mT)
    eps = torch.finfo(torch.bfloat16).eps
    torch.testing.assert_close(g[0].double(), ref.float().to(torch.bfloat16).double(), rtol=2 * eps,
                               atol=2 * eps * ref.abs().max().item())
    dx = ops.gram_matrix_backward(go, x, True)
    del g
    # Spot-check the last positions (the largest offsets) and a block in the middle.
    for k in (length - 4096, length // 2):
        dref = sym @ x[0, :, k:k + 4096].double()
        torch.testing.assert_close(dx[0, :, k:k + 4096].double(), dref.to(torch.bfloat16).double(),
                                   rtol=4 * eps, atol=4 * eps * dref.abs().max().item())
