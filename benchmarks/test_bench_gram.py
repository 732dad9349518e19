"""pytest-benchmark of tconv.gram_matrix (forward) over the cases of the benchmark table.

    python -m pytest benchmarks/test_bench_gram.py --benchmark-only
"""
import pytest
import torch

from .cases_gram import CASES

CPU_CASES = [c for c in CASES if "cpu" in c.devices]  # these benchmarks run on the CPU


@pytest.mark.parametrize("case", CPU_CASES, ids=[c.name for c in CPU_CASES])
def test_gram_forward(benchmark, case):
    (x,) = case.make_inputs(False)
    with torch.no_grad():
        out = benchmark(case.tconv, x)
        torch.testing.assert_close(out, case.torch(x), rtol=case.rtol, atol=1e-6)
