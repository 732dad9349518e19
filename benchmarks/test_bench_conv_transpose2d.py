"""pytest-benchmark over the transposed-convolution cases of the table:
    python -m pytest benchmarks/test_bench_conv_transpose2d.py --benchmark-only
"""
import pytest
import torch

from .cases_conv_transpose2d import CASES

CPU_CASES = [c for c in CASES if "cpu" in c.devices]  # these benchmarks run on the CPU


@pytest.mark.parametrize("impl", ["tconv", "torch"])
@pytest.mark.parametrize("case", CPU_CASES, ids=[c.name for c in CPU_CASES])
def test_forward(benchmark, case, impl):
    inputs = case.make_inputs(False)
    fn = case.tconv if impl == "tconv" else case.torch
    with torch.no_grad():
        out = benchmark(fn, *inputs)
        torch.testing.assert_close(out, case.torch(*inputs), rtol=case.rtol, atol=case.atol)


@pytest.mark.parametrize("impl", ["tconv", "torch"])
@pytest.mark.parametrize("case", CPU_CASES, ids=[c.name for c in CPU_CASES])
def test_forward_backward(benchmark, case, impl):
    if not case.backward:
        pytest.skip("forward-only case")
    inputs = case.make_inputs(True)
    fn = case.tconv if impl == "tconv" else case.torch
    leaves = [t for t in inputs if t.requires_grad]

    def step():
        out = fn(*inputs)
        return torch.autograd.grad(out, leaves, torch.ones_like(out))

    benchmark(step)
