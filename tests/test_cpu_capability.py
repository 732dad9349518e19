"""The CPU kernels are built once per instruction set (baseline, AVX2, AVX-512) and chosen at run
time like PyTorch's own (csrc/cpu/dispatch.cpp): tconv.cpu_capability() follows
ATEN_CPU_CAPABILITY, a capability the CPU lacks falls back cleanly, and every path computes the
same results to float rounding."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import tconv

CAPABILITIES = ["default", "avx2", "avx512"]

# Every op forward and backward on fixed inputs; saved for the parent process to compare.
_RUN_EVERY_OP = textwrap.dedent("""
    import sys, torch, tconv
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, 21, 19, generator=gen)
    w = torch.randn(16, 8, 4, 4, generator=gen)
    b = torch.randn(8, generator=gen)
    wd = torch.randn(16, 1, 3, 3, generator=gen)
    results = {}
    def record(name, fn, *inputs):
        inputs = [t.clone().requires_grad_() for t in inputs]
        out = fn(*inputs)
        grads = torch.autograd.grad(out, inputs, torch.linspace(-1, 1, out.numel()).reshape(out.shape))
        results[name] = [out.detach(), *grads]
    for fmt in (torch.contiguous_format, torch.channels_last):
        xf = x.contiguous(memory_format=fmt)
        tag = str(fmt)
        record("conv " + tag, lambda x, w, b: tconv.conv_transpose2d(x, w, b, stride=2, padding=1), xf, w, b)
        record("conv wide " + tag, lambda x, w: tconv.conv_transpose2d(x, w, stride=4, dilation=2), xf, w)
        record("depthwise " + tag, lambda x, w: tconv.conv_transpose2d(x, w, stride=2, groups=16), xf, wd)
        for mode in ("bilinear", "bicubic"):
            record(mode + " x2 " + tag, lambda x: tconv.interpolate(x, scale_factor=2, mode=mode), xf)
            record(mode + " x4 " + tag, lambda x: tconv.interpolate(x, scale_factor=4, mode=mode), xf)
            record(mode + " 1.7 " + tag, lambda x: tconv.interpolate(x, scale_factor=1.7, mode=mode, align_corners=True), xf)
            record(mode + " aa " + tag, lambda x: tconv.interpolate(x, scale_factor=0.45, mode=mode, antialias=True), xf)
            # rows wide enough for the float32 vector paths' interiors (polyphase from 32 outputs
            # on, uniform lane windows) with ragged tails of 8 and 16 lanes
            xw = torch.randn(1, 3, 9, 153, generator=gen).contiguous(memory_format=fmt)
            for s in (2, 4, 0.5, 0.25, 1.3):
                record(f"{mode} wide x{s} {tag}", lambda x: tconv.interpolate(x, scale_factor=s, mode=mode), xw)
        record("gram " + tag, tconv.gram_matrix, xf)
        record("gram long " + tag, tconv.gram_matrix, torch.randn(1, 24, 96, 96, generator=gen).contiguous(memory_format=fmt))
    torch.save(dict(capability=tconv.cpu_capability(), aten=torch.backends.cpu.get_cpu_capability(),
                    results=results), sys.argv[1])
""")


def _run_with(capability, path):
    env = dict(os.environ, ATEN_CPU_CAPABILITY=capability)
    proc = subprocess.run([sys.executable, "-c", _RUN_EVERY_OP, str(path)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]  # an illegal instruction would be -4 (SIGILL)
    return torch.load(path)


@pytest.fixture(scope="module")
def every_path(tmp_path_factory):
    folder = tmp_path_factory.mktemp("capabilities")
    return {c: _run_with(c, folder / f"{c}.pt") for c in CAPABILITIES}


def test_capability_is_pytorchs(every_path):
    """tconv runs at PyTorch's level: ATEN_CPU_CAPABILITY, capped at what the CPU has (a forced
    capability the CPU lacks falls back, and the process runs every op without a fault). torch
    2.13 reports a forced "avx512" as AVX512 even on an AVX2-only CPU; tconv stays at the CPU's."""
    best = every_path["avx512"]["capability"]  # the CPU's best (this process may run lower)

    def capped(aten):
        aten = aten.lower()
        return aten if CAPABILITIES.index(aten) <= CAPABILITIES.index(best) else best

    assert tconv.cpu_capability() == capped(torch.backends.cpu.get_cpu_capability())
    for forced, run in every_path.items():
        assert run["capability"] == capped(run["aten"])
        if CAPABILITIES.index(forced) <= CAPABILITIES.index(best):
            assert run["capability"] == forced
        else:
            assert run["capability"] == best


def test_every_path_agrees_to_float_rounding(every_path):
    reference = every_path["default"]["results"]
    for capability in ("avx2", "avx512"):
        results = every_path[capability]["results"]
        assert results.keys() == reference.keys()
        for name, tensors in results.items():
            for got, want in zip(tensors, reference[name]):
                torch.testing.assert_close(got, want, rtol=2e-5, atol=2e-5 * want.abs().max().item(),
                                           msg=f"{capability}: {name}")


def test_kernels_are_built_for_each_path():
    """On x86-64 the extension holds the AVX-512 build (zmm registers) besides the others."""
    import platform
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("only x86-64 has several builds")
    so = tconv._C.__file__
    disassembly = subprocess.run(["objdump", "-d", "--no-show-raw-insn", so], capture_output=True,
                                 text=True)
    if disassembly.returncode != 0:
        pytest.skip("objdump not available")
    assert "zmm" in disassembly.stdout and "ymm" in disassembly.stdout
