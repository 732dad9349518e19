"""pytest-benchmark of tconv's upsampling forward over the benchmark table's cases:

    python -m pytest benchmarks/test_bench_upsample.py --benchmark-only
"""
import pytest
import torch

from .cases_upsample import CASES


CPU_CASES = [c for c in CASES if "cpu" in c.devices]  # these benchmarks run on the CPU


@pytest.mark.parametrize("case", CPU_CASES, ids=lambda c: c.name)
def test_upsample_forward(benchmark, case):
    inputs = case.make_inputs(False)
    with torch.no_grad():
        benchmark(case.tconv, *inputs)
