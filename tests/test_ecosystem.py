"""tconv where users put it, every op in a model: torch.compile (fullgraph, aot_eager and inductor,
dynamic shapes, no graph break), autocast (CPU and CUDA), torch.save/load, deepcopy, torch.export, and
DistributedDataParallel training on gloo. The op files own each op's numerics, gradients and opcheck."""
import copy
import io
import os
import sys
import tempfile
import time
import traceback
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

import tconv

_HAS_CUDA_KERNELS = torch.cuda.is_available() and all(
    torch._C._dispatch_has_kernel_for_dispatch_key(f"tconv::{op}", "CUDA")
    for op in ("conv_transpose2d", "upsample_bilinear2d", "upsample_bicubic2d", "gram_matrix"))
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not _HAS_CUDA_KERNELS, reason="CUDA not available or tconv built without CUDA kernels"))]


class Decoder(nn.Module):
    """Every tconv module and function: ConvTranspose2d, Upsample, UpsamplingBilinear2d,
    interpolate (bicubic), conv_transpose2d, GramMatrix and the style loss."""

    def __init__(self):
        super().__init__()
        self.up1 = tconv.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1)
        self.up2 = tconv.Upsample(scale_factor=2, mode="bilinear")
        self.dw = tconv.ConvTranspose2d(6, 6, 4, stride=2, padding=1, groups=6)
        self.up3 = tconv.UpsamplingBilinear2d(size=(40, 36))
        self.gram = tconv.GramMatrix()
        self.head_w = nn.Parameter(torch.randn(6, 3, 1, 1) * 0.3)

    def forward(self, x, style_gram):
        y = torch.relu(self.up1(x))
        y = self.up2(y)
        y = self.dw(y)
        y = self.up3(y)
        y = tconv.interpolate(y, size=(30, 30), mode="bicubic", align_corners=False)
        y = tconv.conv_transpose2d(y, self.head_w, stride=1)
        loss = tconv.style_loss(y, style_gram) + (self.gram(y) ** 2).mean()
        return y, loss


class TorchDecoder(nn.Module):
    """Decoder with PyTorch's layers and the same parameters."""

    def __init__(self, ours):
        super().__init__()
        self.up1 = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1)
        self.dw = nn.ConvTranspose2d(6, 6, 4, stride=2, padding=1, groups=6)
        self.head_w = nn.Parameter(torch.empty(6, 3, 1, 1))
        self.load_state_dict(ours.state_dict(), strict=False)

    @staticmethod
    def _gram(y):
        f = y.flatten(2)
        return f @ f.mT / (f.shape[1] * f.shape[2])

    def forward(self, x, style_gram):
        y = torch.relu(self.up1(x))
        y = F.interpolate(y, scale_factor=2, mode="bilinear")
        y = self.dw(y)
        y = F.interpolate(y, size=(40, 36), mode="bilinear", align_corners=True)
        y = F.interpolate(y, size=(30, 30), mode="bicubic", align_corners=False)
        y = F.conv_transpose2d(y, self.head_w, stride=1)
        loss = ((self._gram(y) - style_gram) ** 2).mean() + (self._gram(y) ** 2).mean()
        return y, loss


def _inputs(dtype=torch.float32):
    x = torch.randn(2, 4, 5, 4, dtype=dtype)
    style = torch.randn(2, 3, 3, dtype=dtype) * 0.1
    return x, style


def _grads(model, x, style):
    x = x.detach().clone().requires_grad_()
    y, loss = model(x, style)
    (y.square().mean() + loss).backward()
    grads = {n.removeprefix("_orig_mod."): p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    return y.detach(), loss.detach(), x.grad, grads


def _assert_same_run(a, b, **tol):
    for u, v in zip(a[:3], b[:3]):
        torch.testing.assert_close(u, v, **tol)
    assert a[3].keys() == b[3].keys()
    for name in a[3]:
        torch.testing.assert_close(a[3][name], b[3][name], **tol)


def test_decoder_matches_pytorch_layers():
    """The reference model used below really computes the same thing (sanity of the fixture)."""
    model = Decoder().double()
    ref = TorchDecoder(model).double()
    x, style = _inputs(torch.float64)
    a, b = _grads(model, x, style), _grads(ref, x, style)
    _assert_same_run(a, b, rtol=1e-9, atol=1e-10)


# ---- torch.compile ---------------------------------------------------------------------------------

def test_compile_fullgraph_aot_eager_every_op():
    torch._dynamo.reset()
    model = Decoder()
    x, style = _inputs()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    _assert_same_run(_grads(compiled, x, style), _grads(model, x, style), rtol=1e-5, atol=1e-6)


def test_compile_fullgraph_has_no_graph_break():
    torch._dynamo.reset()
    model = Decoder()
    x, style = _inputs()
    explanation = torch._dynamo.explain(model)(x, style)
    assert explanation.graph_break_count == 0
    assert explanation.graph_count == 1


@pytest.mark.slow
def test_compile_fullgraph_inductor_every_op():
    torch._dynamo.reset()
    model = Decoder()
    x, style = _inputs()
    compiled = torch.compile(model, fullgraph=True)  # default backend: inductor (C++ codegen)
    _assert_same_run(_grads(compiled, x, style), _grads(model, x, style), rtol=1e-4, atol=1e-5)


def test_compile_dynamic_shapes():
    torch._dynamo.reset()
    model = Decoder()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager", dynamic=True)
    for n, h in [(1, 5), (3, 6)]:
        x = torch.randn(n, 4, h, 4)
        style = torch.randn(n, 3, 3) * 0.1
        _assert_same_run(_grads(compiled, x, style), _grads(model, x, style), rtol=1e-5, atol=1e-6)


def test_compile_fullgraph_conv_transpose2d_modules():
    model = nn.Sequential(tconv.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1),
                          nn.ReLU(), tconv.ConvTranspose2d(6, 6, 4, stride=2, padding=1, groups=6))
    x = torch.randn(2, 4, 5, 5, requires_grad=True)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), model(x))
    g1 = torch.autograd.grad(compiled(x).sum(), x)[0]
    g2 = torch.autograd.grad(model(x).sum(), x)[0]
    torch.testing.assert_close(g1, g2)


def test_compile_fullgraph_upsample_modules():
    model = nn.Sequential(tconv.Upsample(scale_factor=2, mode="bicubic"), nn.ReLU(),
                          tconv.UpsamplingBilinear2d(size=(13, 17)))
    x = torch.randn(2, 3, 5, 6, requires_grad=True)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), model(x))
    g1 = torch.autograd.grad(compiled(x).square().sum(), x)[0]
    g2 = torch.autograd.grad(model(x).square().sum(), x)[0]
    torch.testing.assert_close(g1, g2)


def test_compile_fullgraph_gram_and_style_loss():
    target = torch.randn(2, 6, 6)

    def loss_fn(x):
        return tconv.style_loss(torch.relu(x), target) + tconv.gram_matrix(x[0]).sum()

    x = torch.randn(2, 6, 5, 5, requires_grad=True)
    compiled = torch.compile(loss_fn, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), loss_fn(x))
    g1 = torch.autograd.grad(compiled(x), x)[0]
    g2 = torch.autograd.grad(loss_fn(x), x)[0]
    torch.testing.assert_close(g1, g2)


# ---- autocast ----------------------------------------------------------------------------------------

def _autocast_dtypes(device):
    return [torch.bfloat16, torch.float16] if device == "cpu" else [torch.float16, torch.bfloat16]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("in_dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("ac_dtype", [torch.bfloat16, torch.float16])
def test_autocast_conv_transpose2d_casts_like_pytorch(device, in_dtype, ac_dtype):
    x = torch.randn(2, 4, 6, 5, device=device).to(in_dtype)
    w = torch.randn(4, 3, 3, 3, device=device)   # float32 parameters, as in a model
    b = torch.randn(3, device=device)
    with torch.autocast(device, dtype=ac_dtype):
        ours = tconv.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1)
        ref = F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1)
    assert ref.dtype == ac_dtype
    assert ours.dtype == ref.dtype
    torch.testing.assert_close(ours.float(), ref.float(), rtol=2e-2, atol=5e-2)


@pytest.mark.parametrize("device", DEVICES)
def test_autocast_conv_transpose2d_float64_is_left_alone(device):
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, device=device)
    w = torch.randn(2, 3, 3, 3, dtype=torch.float64, device=device)
    with torch.autocast(device, dtype=torch.bfloat16):
        ours = tconv.conv_transpose2d(x, w)
        ref = F.conv_transpose2d(x, w)
    assert ours.dtype == ref.dtype == torch.float64
    torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize("device", DEVICES)
def test_autocast_module_backward_reaches_float32_parameters(device):
    layer = tconv.ConvTranspose2d(4, 3, 3, stride=2).to(device)
    ref = nn.ConvTranspose2d(4, 3, 3, stride=2).to(device)
    ref.load_state_dict(layer.state_dict())
    x = torch.randn(2, 4, 5, 5, device=device)
    with torch.autocast(device, dtype=torch.bfloat16):
        y, y_ref = layer(x), ref(x)
    assert y.dtype == y_ref.dtype == torch.bfloat16
    y.float().sum().backward()
    y_ref.float().sum().backward()
    for p, q in zip(layer.parameters(), ref.parameters()):
        assert p.grad.dtype == q.grad.dtype == torch.float32
        torch.testing.assert_close(p.grad, q.grad, rtol=2e-2, atol=2e-1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("in_dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_autocast_interpolate_keeps_input_dtype_like_pytorch(device, mode, in_dtype):
    x = torch.randn(2, 3, 5, 6, device=device).to(in_dtype)
    with torch.autocast(device, dtype=torch.bfloat16):
        ours = tconv.interpolate(x, scale_factor=2, mode=mode)
        ref = F.interpolate(x, scale_factor=2, mode=mode)
        mod = tconv.Upsample(scale_factor=2, mode=mode)(x)
    assert ours.dtype == ref.dtype == mod.dtype == in_dtype
    tol = dict(rtol=1e-5, atol=1e-5) if in_dtype in (torch.float32, torch.float64) else \
        dict(rtol=2e-2, atol=5e-2)
    torch.testing.assert_close(ours, ref, **tol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("in_dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_autocast_gram_returns_float32(device, in_dtype):
    """Documented policy: under autocast the Gram is computed and returned in float32 (PyTorch's
    fp32-list behaviour for reductions/losses); float64 input stays float64."""
    x = torch.randn(2, 5, 6, 7, device=device).to(in_dtype)
    with torch.autocast(device, dtype=torch.bfloat16):
        g = tconv.gram_matrix(x)
        loss = tconv.style_loss(x, torch.zeros(2, 5, 5, device=device))
        g64 = tconv.gram_matrix(x.double())
    assert g.dtype == torch.float32 and loss.dtype == torch.float32
    assert g64.dtype == torch.float64
    f = x.double().flatten(2)
    torch.testing.assert_close(g.double(), f @ f.mT / f[0].numel(), rtol=1e-5, atol=1e-6)


def test_autocast_decoder_runs_and_backward_works():
    model = Decoder()
    x, style = _inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, loss = model(x, style)
    assert y.dtype == torch.bfloat16 and loss.dtype == torch.float32
    loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())


def test_autocast_under_compile():
    torch._dynamo.reset()
    layer = tconv.ConvTranspose2d(4, 3, 3, stride=2)
    x = torch.randn(2, 4, 5, 5)

    def f(x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return layer(x), tconv.gram_matrix(x.bfloat16())

    eager = f(x)
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")(x)
    assert [t.dtype for t in compiled] == [t.dtype for t in eager] == [torch.bfloat16, torch.float32]
    for a, b in zip(compiled, eager):
        torch.testing.assert_close(a, b)


# ---- save / load / deepcopy / export -----------------------------------------------------------------

def _roundtrip(obj, **load_kw):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, **load_kw)


def test_save_load_state_dict():
    model = Decoder()
    x, style = _inputs()
    other = Decoder()
    other.load_state_dict(_roundtrip(model.state_dict(), weights_only=True))
    _assert_same_run(_grads(other, x, style), _grads(model, x, style), rtol=0, atol=0)


def test_save_load_whole_model():
    model = Decoder()
    x, style = _inputs()
    loaded = _roundtrip(model, weights_only=False)
    assert isinstance(loaded.up1, tconv.ConvTranspose2d) and isinstance(loaded.up2, tconv.Upsample)
    _assert_same_run(_grads(loaded, x, style), _grads(model, x, style), rtol=0, atol=0)


def test_deepcopy_whole_model():
    model = Decoder()
    x, style = _inputs()
    clone = copy.deepcopy(model)
    _assert_same_run(_grads(clone, x, style), _grads(model, x, style), rtol=0, atol=0)
    with torch.no_grad():
        clone.up1.weight.add_(1)
    assert not torch.equal(clone.up1.weight, model.up1.weight)


def test_deepcopy_conv_transpose2d_layer():
    layer = tconv.ConvTranspose2d(3, 2, 3, stride=2)
    x = torch.randn(1, 3, 4, 4)
    torch.testing.assert_close(copy.deepcopy(layer)(x), layer(x))


def test_torch_export_runs_and_matches_eager():
    model = Decoder().eval()
    x, style = _inputs()
    ep = torch.export.export(model, (x, style))
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert any("tconv.conv_transpose2d" in t for t in targets)
    assert any("tconv.upsample_bilinear2d" in t for t in targets)
    assert any("tconv.upsample_bicubic2d" in t for t in targets)
    assert any("tconv.gram_matrix" in t for t in targets)
    for got, want in zip(ep.module()(x, style), model(x, style)):
        torch.testing.assert_close(got, want)
    # the exported program survives torch.export.save / load
    buf = io.BytesIO()
    torch.export.save(ep, buf)
    buf.seek(0)
    ep2 = torch.export.load(buf)
    x2, style2 = _inputs()
    for got, want in zip(ep2.module()(x2, style2), model(x2, style2)):
        torch.testing.assert_close(got, want)


class RanksModel(nn.Module):
    """The 1-D and 3-D ops (composites over the 2-D kernels): ConvTranspose1d, linear,
    ConvTranspose3d, trilinear."""

    def __init__(self):
        super().__init__()
        self.t1 = tconv.ConvTranspose1d(3, 4, 4, stride=2, padding=1)
        self.up1 = tconv.Upsample(scale_factor=2, mode="linear")
        self.t3 = tconv.ConvTranspose3d(4, 2, 2, stride=2)
        self.up3 = tconv.Upsample(scale_factor=(1, 2, 2), mode="trilinear")

    def forward(self, x):
        y = self.up1(self.t1(x))                    # (N, 4, 4L)
        v = y.unflatten(2, (2, 2, -1))              # (N, 4, 2, 2, L)
        return self.up3(self.t3(v))                 # (N, 2, 4, 8, 4L)


def test_torch_export_and_compile_1d_3d_ops():
    model = RanksModel().eval()
    x = torch.randn(2, 3, 6)
    ep = torch.export.export(model, (x,))
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert any("tconv." in t for t in targets)
    torch.testing.assert_close(ep.module()(x), model(x))
    buf = io.BytesIO()
    torch.export.save(ep, buf)
    buf.seek(0)
    x2 = torch.randn(2, 3, 6)
    torch.testing.assert_close(torch.export.load(buf).module()(x2), model(x2))
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x2), model(x2))


def test_torch_export_dynamic_batch():
    model = Decoder().eval()
    x, style = _inputs()
    batch = torch.export.Dim("batch", min=1, max=64)
    ep = torch.export.export(model, (x, style), dynamic_shapes=({0: batch}, {0: batch}))
    x3, style3 = torch.randn(3, 4, 5, 4), torch.randn(3, 3, 3)
    for got, want in zip(ep.module()(x3, style3), model(x3, style3)):
        torch.testing.assert_close(got, want)


# ---- DistributedDataParallel (gloo, 2 processes on loopback): training against PyTorch's layers --------

DDP_WORLD = 2
DDP_STEPS = 4
DDP_TIMEOUT = timedelta(minutes=5)  # any collective or rendezvous; the whole run: DDP_DEADLINE_S
DDP_DEADLINE_S = 900


def _ddp_model(use_tconv):
    import tconv  # noqa: F401  (in the spawned process)

    conv_t = tconv.ConvTranspose2d if use_tconv else nn.ConvTranspose2d
    conv_t1 = tconv.ConvTranspose1d if use_tconv else nn.ConvTranspose1d
    conv_t3 = tconv.ConvTranspose3d if use_tconv else nn.ConvTranspose3d
    up = (lambda: tconv.Upsample(scale_factor=2, mode="bilinear")) if use_tconv else \
        (lambda: nn.Upsample(scale_factor=2, mode="bilinear"))
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),          # encoder
        nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
        conv_t(8, 8, 4, stride=2, padding=1), nn.ReLU(),            # decoder
        up(),
        conv_t(8, 3, 3, stride=1, padding=1),
        nn.Unflatten(1, (3, 1)), conv_t3(3, 3, (1, 3, 3), padding=(0, 1, 1)), nn.Flatten(1, 2),  # the 3-D op
        nn.Flatten(2), conv_t1(3, 3, 3, padding=1), nn.Unflatten(2, (16, 16)),                   # the 1-D op
    )


def _ddp_gram(y, use_tconv):
    import tconv

    if use_tconv:
        return tconv.gram_matrix(y)
    f = y.flatten(2)
    return f @ f.mT / (f.shape[1] * f.shape[2])


def _ddp_train(rank, out_dir):
    """Trains the tconv model, then the PyTorch one, under DDP; saves each one's gradients and
    final parameters to out_dir."""
    for use_tconv in (True, False):
        model = nn.parallel.DistributedDataParallel(_ddp_model(use_tconv).double())
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        gen = torch.Generator().manual_seed(100 + rank)  # each rank its own shard
        grads = []
        for _ in range(DDP_STEPS):
            x = torch.randn(2, 3, 16, 16, dtype=torch.float64, generator=gen)
            y = model(x)
            loss = F.mse_loss(y, x) + (_ddp_gram(y, use_tconv) - _ddp_gram(x, False)).square().mean()
            opt.zero_grad()
            loss.backward()
            grads.append([p.grad.clone() for p in model.parameters()])
            opt.step()
        params = [p.detach().clone() for p in model.parameters()]
        torch.save({"grads": grads, "params": params},
                   os.path.join(out_dir, f"{'tconv' if use_tconv else 'torch'}-{rank}.pt"))


def _ddp_worker(rank, out_dir):
    """One rank, in a spawned process. Note [leaving a DDP worker]: in full-suite runs on a loaded
    machine a worker has died with SIGABRT, "terminate called without an active exception" (a
    joinable std::thread destroyed: the process group's teardown, destroy_process_group or the
    interpreter's exit destroying what is left). Nothing the test checks happens there, so a
    worker does not tear down: once both ranks have saved their results and met at the store (then
    every collective of both has completed: no gloo traffic is in flight), it leaves with os._exit.
    The store is a FileStore in the test's directory: no port to pick (a free port can be taken by
    another process before rank 0 binds it) and no store server living in one rank while the other
    still uses it. An exception is written to error-<rank>.txt for the parent to report."""
    code = 1
    try:
        torch.set_num_threads(1)
        store = dist.FileStore(os.path.join(out_dir, "store"), DDP_WORLD)
        dist.init_process_group("gloo", store=store, rank=rank, world_size=DDP_WORLD, timeout=DDP_TIMEOUT)
        _ddp_train(rank, out_dir)
        store.set(f"trained/{rank}", "1")
        store.wait([f"trained/{r}" for r in range(DDP_WORLD)], DDP_TIMEOUT)
        open(os.path.join(out_dir, f"left-{rank}"), "w").close()
        code = 0
    except BaseException:
        with open(os.path.join(out_dir, f"error-{rank}.txt"), "w") as f:
            f.write(traceback.format_exc())
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _ddp_run(out_dir):
    """Runs the ranks to the end; fails with their tracebacks if one did not finish its work (a
    rank that died after leaving, see Note [leaving a DDP worker], had nothing left to do)."""
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_ddp_worker, args=(rank, out_dir)) for rank in range(DDP_WORLD)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + DDP_DEADLINE_S
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    hung = [rank for rank, p in enumerate(procs) if p.is_alive()]
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    problems = []
    for rank, p in enumerate(procs):
        error = os.path.join(out_dir, f"error-{rank}.txt")
        if os.path.exists(error):
            with open(error) as f:
                problems.append(f"rank {rank} raised:\n{f.read()}")
        elif rank in hung:
            problems.append(f"rank {rank} still running after {DDP_DEADLINE_S} s")
        elif not os.path.exists(os.path.join(out_dir, f"left-{rank}")):
            problems.append(f"rank {rank} died before finishing (exit code {p.exitcode})")
    assert not problems, "\n".join(problems)


@pytest.mark.distributed
def test_ddp_gloo_training_matches_pytorch_layers():
    with tempfile.TemporaryDirectory() as out_dir:
        _ddp_run(out_dir)
        runs = {(kind, r): torch.load(os.path.join(out_dir, f"{kind}-{r}.pt"))
                for kind in ("tconv", "torch") for r in range(DDP_WORLD)}
    for kind in ("tconv", "torch"):
        # DDP all-reduces the gradients: every rank holds the same ones and the same parameters
        for a, b in zip(runs[kind, 0]["params"], runs[kind, 1]["params"]):
            assert torch.equal(a, b)
    for r in range(DDP_WORLD):
        ours, ref = runs["tconv", r], runs["torch", r]
        for step_ours, step_ref in zip(ours["grads"], ref["grads"]):
            for a, b in zip(step_ours, step_ref):
                torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)
        for a, b in zip(ours["params"], ref["params"]):
            torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)
    # training moved the parameters
    start = [p.double() for p in _ddp_model(True).parameters()]
    assert any(not torch.allclose(a, b) for a, b in zip(runs["tconv", 0]["params"], start))
