"""DistributedDataParallel (gloo, 2 processes on loopback) training of an encoder-decoder built
from tconv layers, against the same model with PyTorch's layers trained the same way."""
import os
import socket
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

pytestmark = pytest.mark.distributed

WORLD = 2
STEPS = 4


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model(use_tconv):
    import tconv  # noqa: F401  (in the spawned process)

    conv_t = tconv.ConvTranspose2d if use_tconv else nn.ConvTranspose2d
    up = (lambda: tconv.Upsample(scale_factor=2, mode="bilinear")) if use_tconv else \
        (lambda: nn.Upsample(scale_factor=2, mode="bilinear"))
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),          # encoder
        nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
        conv_t(8, 8, 4, stride=2, padding=1), nn.ReLU(),            # decoder
        up(),
        conv_t(8, 3, 3, stride=1, padding=1),
    )


def _gram(y, use_tconv):
    import tconv

    if use_tconv:
        return tconv.gram_matrix(y)
    f = y.flatten(2)
    return f @ f.mT / (f.shape[1] * f.shape[2])


def _worker(rank, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        for use_tconv in (True, False):
            model = nn.parallel.DistributedDataParallel(_model(use_tconv).double())
            opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
            gen = torch.Generator().manual_seed(100 + rank)  # each rank its own shard
            grads = []
            for _ in range(STEPS):
                x = torch.randn(2, 3, 16, 16, dtype=torch.float64, generator=gen)
                y = model(x)
                loss = F.mse_loss(y, x) + (_gram(y, use_tconv) - _gram(x, False)).square().mean()
                opt.zero_grad()
                loss.backward()
                grads.append([p.grad.clone() for p in model.parameters()])
                opt.step()
            params = [p.detach().clone() for p in model.parameters()]
            torch.save({"grads": grads, "params": params},
                        os.path.join(out_dir, f"{'tconv' if use_tconv else 'torch'}-{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_ddp_gloo_training_matches_pytorch_layers():
    with tempfile.TemporaryDirectory() as out_dir:
        mp.spawn(_worker, args=(_free_port(), out_dir), nprocs=WORLD, join=True)
        runs = {(kind, r): torch.load(os.path.join(out_dir, f"{kind}-{r}.pt"))
                for kind in ("tconv", "torch") for r in range(WORLD)}
    for kind in ("tconv", "torch"):
        # DDP all-reduces the gradients: every rank holds the same ones and the same parameters
        for a, b in zip(runs[kind, 0]["params"], runs[kind, 1]["params"]):
            assert torch.equal(a, b)
    for r in range(WORLD):
        ours, ref = runs["tconv", r], runs["torch", r]
        for step_ours, step_ref in zip(ours["grads"], ref["grads"]):
            for a, b in zip(step_ours, step_ref):
                torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)
        for a, b in zip(ours["params"], ref["params"]):
            torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)
    # training moved the parameters
    start = [p.double() for p in _model(True).parameters()]
    assert any(not torch.allclose(a, b) for a, b in zip(runs["tconv", 0]["params"], start))
