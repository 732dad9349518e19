"""The benchmark runner (`python -m benchmarks.table`) works: its case lists are well formed, the
harness times and checks a case, and the table runs end to end, on a small made-up case."""
import ctypes
import json
import os
import subprocess
import sys
import types

import pytest
import torch
import torch.nn.functional as F

import tconv
from benchmarks import (cases_conv_transpose2d, cases_gram, cases_ranks, cases_upsample, cases_upsample_conv2d, harness,
                        table)

CASE_MODULES = [cases_conv_transpose2d, cases_upsample, cases_gram, cases_ranks, cases_upsample_conv2d]


def _small_case(name="small bilinear x2"):
    def make_inputs(requires_grad):
        g = torch.Generator().manual_seed(0)
        return (torch.randn(1, 2, 8, 8, generator=g).requires_grad_(requires_grad),)

    return harness.Case("upsample", name, make_inputs,
                        tconv=lambda x: tconv.interpolate(x, scale_factor=2, mode="bilinear"),
                        reference=lambda x: F.interpolate(x, scale_factor=2, mode="bilinear"),
                        flops=1.0, bytes_moved=4.0 * 2 * (8 * 8 + 16 * 16), backward_alone=True,
                        copy_floor=True, devices=("cpu",),
                        peer=harness.Peer("numpy", lambda inputs: inputs[0].detach().numpy(), lambda a: a * 2))


def test_case_lists_are_well_formed():
    assert table.CASE_MODULES == CASE_MODULES
    for module in CASE_MODULES:
        names = [c.name for c in module.CASES]
        assert len(names) == len(set(names)), module.__name__
        group = module.__name__.rsplit("cases_", 1)[1]
        for case in module.CASES:
            assert case.group == group, case.name
            assert set(case.devices) <= {"cpu", "cuda"} and case.devices, case.name
            assert callable(case.tconv) and callable(case.reference), case.name
            assert not case.copy_floor or case.bytes_moved > 0, case.name
            assert not case.backward_alone or case.backward, case.name


def test_run_case_rows():
    rows = harness.run_case(_small_case(), min_time=0.001)
    assert [r["pass_"] for r in rows] == ["fwd", "fwd+bwd", "bwd"]
    assert all(r["ok"] for r in rows)
    fwd, _, bwd = rows
    for key in ("torch_ms", "tconv_ms", "speedup", "gflops", "gbps", "floor_ms", "x_floor", "peer_ms"):
        assert key in fwd, key
    for key in ("read_ms", "max_speedup", "floor_ms", "gbps"):
        assert key in bwd, key
    lines = harness.format_table(rows).splitlines()
    assert len(lines) == 2 + len(rows) and "small bilinear x2" in lines[2]


def test_table_runs_end_to_end(tmp_path, monkeypatch, capsys):
    pytest.importorskip("PIL")  # the chart: matplotlib or, failing it, Pillow
    monkeypatch.setattr(table, "CASE_MODULES", [types.SimpleNamespace(CASES=[_small_case()])])
    path = tmp_path / "results.json"
    rc = table.main(["--quick", "--no-kernel-vs-kernel", "--only", "small bilinear", "--json", str(path)])
    assert rc == 0
    results = json.loads(path.read_text())
    assert [r["pass_"] for r in results["rows"]] == ["fwd", "fwd+bwd", "bwd"]
    assert results["tiny"] == []  # --only left the tiny-input group out
    assert (tmp_path / "results.png").exists()
    assert "small bilinear x2" in capsys.readouterr().out


_FAULTS_OF_REUSED_BLOCKS = """
import resource, sys, torch
from benchmarks.table import _warm_the_heap
if sys.argv[1] == "warm":
    assert _warm_the_heap()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    t = torch.empty(16 << 20)  # 64 MiB, freed at the next assignment
    t.fill_(1.0)
    del t
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_warm_heap_reuses_freed_blocks():
    """The warm-heap run (table.py's third): glibc reuses a freed 64 MiB block instead of mapping
    and page-faulting it afresh each time, as the default allocator does."""
    try:
        ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        pytest.skip("no glibc mallopt")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    faults = {how: int(subprocess.run([sys.executable, "-c", _FAULTS_OF_REUSED_BLOCKS, how], env=env, cwd=root,
                                      check=True, capture_output=True, text=True).stdout)
              for how in ("default", "warm")}
    pages = (64 << 20) // 4096
    assert faults["default"] > 10 * pages  # a fresh mapping on most of the 20 calls (all 20 here)
    assert faults["warm"] < faults["default"] / 2  # the first call's pages, then mostly reuse (1-7x pages here)
