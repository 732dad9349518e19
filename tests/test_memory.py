"""Memory and threads: the CPU output cache (tconv.memory, csrc/cpu/output_alloc.h) and what reusing
its buffers or calling from several Python threads must never change. Freed outputs poisoned with NaN
and handed to the next call of their size: every element rewritten, every call bit-identical to the
first (1 and 2 threads); ops from several Python threads; no memory growth over thousands of calls;
the cache's reuse, limits (runtime and TCONV_CPU_CACHE_MB), stats and idle release."""
import gc
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import tconv
from _support import ROOT, all_ops_run, at_thread_counts, run_in_python_threads

ops = torch.ops.tconv


# ---- repeated calls: stale output buffers, threads ----------------------------------------------------

def _stress_ops():
    """(name, call) for every op, on shapes whose outputs come from the output cache (>= 2 MiB),
    in both layouts, with paddings and strides that leave output pixels no tap reaches."""
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(8, 24, 64, 48, generator=gen)
    w, b = torch.randn(24, 12, 4, 4, generator=gen), torch.randn(12, generator=gen)
    wd = torch.randn(24, 1, 3, 3, generator=gen)
    y = F.conv_transpose2d(x, w, b, stride=2, padding=1)
    gy = torch.randn(y.shape, generator=gen)
    yd = F.conv_transpose2d(x, wd, None, stride=3, padding=0, output_padding=2, groups=24)
    for fmt in (torch.contiguous_format, torch.channels_last):
        xf, gyf = x.contiguous(memory_format=fmt), gy.contiguous(memory_format=fmt)
        tag = "cl" if fmt == torch.channels_last else "contig"
        yield f"conv {tag}", lambda xf=xf: tconv.conv_transpose2d(xf, w, b, stride=2, padding=1)
        yield f"conv wide stride {tag}", lambda xf=xf: tconv.conv_transpose2d(xf, w, None, stride=5, padding=1, output_padding=3)
        yield f"conv depthwise {tag}", lambda xf=xf: tconv.conv_transpose2d(xf, wd, None, stride=3, output_padding=2, groups=24)
        yield f"conv backward_input {tag}", lambda g=gyf: ops.conv_transpose2d_backward_input(g, w, [2, 2], [1, 1], 1, [1, 1], [64, 48])
        yield f"conv backward_weight {tag}", lambda g=gyf, xf=xf: ops.conv_transpose2d_backward_weight(g, xf, [4, 4], [2, 2], [1, 1], 1, [1, 1])
        yield f"conv backward_bias {tag}", lambda g=gyf: ops.conv_transpose2d_backward_bias(g)
        yield f"depthwise backward_input {tag}", lambda g=torch.randn(yd.shape, generator=gen).contiguous(memory_format=fmt): \
            ops.conv_transpose2d_backward_input(g, wd, [3, 3], [0, 0], 24, [1, 1], [64, 48])
        for mode in ("bilinear", "bicubic"):
            yield f"{mode} x2.5 {tag}", lambda xf=xf, m=mode: tconv.interpolate(xf, scale_factor=2.5, mode=m)
            yield f"{mode} x0.4 antialias {tag}", lambda xf=xf, m=mode: tconv.interpolate(xf, scale_factor=0.4, mode=m, antialias=True)
            op = getattr(ops, f"upsample_{mode}2d_backward")
            yield f"{mode} backward {tag}", lambda g=gyf, op=op: op(g, [40, 37], True, False, None, None)
        yield f"gram {tag}", lambda xf=xf: tconv.gram_matrix(xf)
        yield f"gram backward {tag}", lambda xf=xf: ops.gram_matrix_backward(
            torch.ones(8, 24, 24), xf.flatten(2), True)

    # the 1-D / 3-D composites: their intermediates and results are cached buffers filled in place
    # (csrc/composite_buffers.h), so an element they leave unwritten shows here too
    x3 = x[:2].unflatten(2, (8, 8))
    w3, w3k2, w1 = (torch.randn(24, 12, *k, generator=gen) for k in ((3, 3, 3), (2, 2, 2), (16,)))
    for fmt in (torch.contiguous_format, torch.channels_last_3d):
        x3f = x3.contiguous(memory_format=fmt)
        tag = "cl3d" if fmt == torch.channels_last_3d else "contig"
        yield f"conv3d {tag}", lambda x3f=x3f: tconv.conv_transpose3d(x3f, w3, b, stride=2, padding=1)
        yield f"conv3d k2s2 {tag}", lambda x3f=x3f: tconv.conv_transpose3d(x3f, w3k2, b, stride=2)
        yield f"trilinear {tag}", lambda x3f=x3f: tconv.interpolate(x3f, scale_factor=1.6, mode="trilinear")
    yield "conv1d", lambda: tconv.conv_transpose1d(x.flatten(2), w1, b, stride=8, padding=4)
    for ac in (False, True):
        yield f"linear align_corners={ac}", lambda ac=ac: tconv.interpolate(x.flatten(2), scale_factor=2.5, mode="linear", align_corners=ac)


STRESS_OPS = list(_stress_ops())


@pytest.mark.parametrize("threads", [1, 2])
def test_repeated_calls_bitwise_equal_with_poisoned_reused_buffers(threads):
    """Each op called again and again, between calls the freed outputs of the same size filled
    with NaN (so a reused buffer holds garbage: any element a kernel reads before writing, or
    leaves unwritten, shows) and other allocations interleaved: every call bit-identical to the
    first, at 1 and 2 threads."""
    def every_op():
        for name, call in STRESS_OPS:
            want = call().clone()
            for rep in range(3):
                # An empty cache, so freeing the poisoned buffers can only add to it: otherwise
                # buffers of earlier ops idle for TCONV_CPU_CACHE_IDLE_S (10 s; a loaded machine
                # gets there) are evicted by the same free and the held bytes can go down.
                tconv.memory.empty_cache()
                poison = [call() for _ in range(2)]  # buffers of this output's size
                for p in poison:
                    p.fill_(float("nan"))
                if want.nbytes >= 2 << 20 and "gram" not in name:  # recycled (cpu/output_alloc.h)
                    cached = tconv._C._cached_bytes()
                    del p
                    poison.clear()
                    assert tconv._C._cached_bytes() > cached, name
                other = torch.empty(int(want.numel() * (1.5 + rep)))
                del poison  # back to the cache, NaN-filled
                got = call()
                assert torch.equal(got, want), name
                del other, got

    at_thread_counts(every_op, (threads,))


# ---- thread safety ---------------------------------------------------------------------------------------

def test_ops_from_several_python_threads():
    expected = all_ops_run(seed=5)
    errors, results = [], []

    def work(_):
        try:
            for _ in range(5):
                results.append(all_ops_run(seed=5))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    run_in_python_threads(work, 4)
    assert not errors, errors
    assert len(results) == 20
    for run in results:
        for a, e in zip(run, expected):
            assert torch.equal(a, e)


# ---- memory: no growth over thousands of calls -------------------------------------------------------------

def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc")
def test_no_memory_growth_over_thousands_of_calls():
    x = torch.randn(1, 4, 12, 12, requires_grad=True)
    w = torch.randn(4, 4, 3, 3, requires_grad=True)
    big = torch.randn(1, 2, 300, 300)  # outputs > 2 MiB take the huge-page allocator

    def step(big_too):
        y = tconv.conv_transpose2d(x, w, stride=2)
        y = tconv.interpolate(y, scale_factor=1.5, mode="bicubic")
        loss = tconv.gram_matrix(y).sum() + y.sum()
        loss.backward()
        if big_too:
            tconv.interpolate(big, scale_factor=2, mode="bilinear")
            tconv.conv_transpose2d(big, torch.randn(2, 2, 2, 2), stride=2)
        for bad in (lambda: tconv.conv_transpose2d(x, w, stride=0),
                    lambda: tconv.interpolate(x, size=(0, 3)),
                    lambda: ops.gram_matrix(x, True)):
            try:
                bad()
            except (RuntimeError, ValueError):
                pass

    for i in range(100):  # warm-up: allocator caches, autograd, dispatcher
        step(big_too=True)
    gc.collect()
    before = _rss_bytes()
    for i in range(2000):  # 2000 steps of ~10 op calls each (forward, backward, errors)
        step(big_too=i % 10 == 0)
    gc.collect()
    growth = _rss_bytes() - before
    assert growth < 16 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB over 2000 steps"


# ---- the CPU output cache (tconv.memory): reuse, limits, release ------------------------------------------

def _reuse_cases():
    x = torch.randn(4, 16, 64, 64)
    xl = x.to(memory_format=torch.channels_last)
    w, wd = torch.randn(16, 16, 4, 4), torch.randn(16, 1, 4, 4)
    go = torch.randn(8, 16, 130, 130)
    up = torch.randn(2, 16, 128, 128)
    return {
        "conv": (lambda: tconv.conv_transpose2d(x, w, stride=2),
                 lambda: F.conv_transpose2d(x, w, stride=2)),
        "conv channels_last": (lambda: tconv.conv_transpose2d(xl, w, stride=2, padding=1),
                               lambda: F.conv_transpose2d(xl, w, stride=2, padding=1)),
        "conv depthwise": (lambda: tconv.conv_transpose2d(x, wd, stride=2, groups=16),
                           lambda: F.conv_transpose2d(x, wd, stride=2, groups=16)),
        "conv backward input": (
            lambda: ops.conv_transpose2d_backward_input(go, w, [2, 2], [0, 0], 1, [1, 1], [64, 64]),
            lambda: F.conv2d(go, w, stride=2)),  # d/dx of a transposed conv: the plain conv
        "bilinear": (lambda: tconv.interpolate(up, scale_factor=2, mode="bilinear"),
                     lambda: F.interpolate(up, scale_factor=2, mode="bilinear")),
        "bicubic channels_last": (
            lambda: tconv.interpolate(up.to(memory_format=torch.channels_last), scale_factor=2, mode="bicubic"),
            lambda: F.interpolate(up.to(memory_format=torch.channels_last), scale_factor=2, mode="bicubic")),
    }


@pytest.mark.parametrize("name", list(_reuse_cases()))
def test_reused_output_buffers_are_fully_overwritten(name):
    """A freed output's buffer (poisoned with NaN here) is handed to the next output of its size:
    every kernel must write every element, none may rely on fresh zeroed pages."""
    ours, ref = _reuse_cases()[name]
    first = ours()
    assert first.nbytes >= 2 * 2**20  # large enough for the huge-page allocator and its cache
    ptr = first.data_ptr()
    first.fill_(float("nan"))
    del first
    again = ours()
    assert again.data_ptr() == ptr, "the freed buffer was not reused"
    torch.testing.assert_close(again, ref(), rtol=1e-4, atol=1e-4)


def test_output_cache_holds_freed_buffers_until_emptied():
    tconv.memory.empty_cache()
    y = tconv.interpolate(torch.randn(1, 8, 128, 128), scale_factor=2)  # 2 MiB: cached size
    assert tconv.memory.cached_bytes() == 0
    del y
    assert tconv.memory.cached_bytes() == 2 * 2**20
    assert tconv.memory.empty_cache() == 2 * 2**20
    assert tconv.memory.cached_bytes() == 0


def test_output_cache_stats_and_runtime_limit():
    tconv.memory.empty_cache()
    before = tconv.memory.stats()
    assert before["limit_bytes"] <= 256 * 2**20  # the default cap (TCONV_CPU_CACHE_MB unset)
    x = torch.randn(1, 8, 128, 128)
    first = tconv.interpolate(x, scale_factor=2)  # 2 MiB output
    del first
    y = tconv.interpolate(x, scale_factor=2)  # reuses it
    after = tconv.memory.stats()
    assert after["hits"] == before["hits"] + 1 and after["cached_bytes"] == 0
    del y
    assert tconv.memory.stats()["peak_cached_bytes"] >= 2 * 2**20
    old = after["limit_bytes"] / 2**20
    try:
        tconv.memory.set_cache_limit(0)  # disables the cache and releases it
        stats = tconv.memory.stats()
        assert stats["cached_bytes"] == 0 and stats["limit_bytes"] == 0
        z = tconv.interpolate(x, scale_factor=2)
        del z
        assert tconv.memory.cached_bytes() == 0
    finally:
        tconv.memory.set_cache_limit(old)
    tconv.memory.reset_peak_stats()
    assert tconv.memory.stats()["peak_cached_bytes"] == tconv.memory.cached_bytes()
    with pytest.raises(ValueError):
        tconv.memory.set_cache_limit(-1)


def test_output_cache_releases_idle_buffers():
    """A buffer unused for TCONV_CPU_CACHE_IDLE_S seconds goes at the next large allocation."""
    import subprocess
    import sys
    code = (
        "import time, torch, tconv\n"
        "y = tconv.interpolate(torch.randn(1, 8, 128, 128), scale_factor=2); del y\n"
        "held = tconv.memory.cached_bytes()\n"
        "time.sleep(1.5)\n"
        "z = tconv.interpolate(torch.randn(1, 8, 128, 256), scale_factor=2)\n"
        "s = tconv.memory.stats()\n"
        "print(held, s['cached_bytes'], s['evictions'])\n")
    env = dict(os.environ, TCONV_CPU_CACHE_IDLE_S="1", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, cwd=ROOT)
    held, cached, evictions = map(int, out.stdout.split())
    assert held == 2 * 2**20 and cached == 0 and evictions == 1


def test_reused_buffers_from_several_python_threads():
    """Python threads (the GIL released in the kernels) calling ops whose outputs share the
    cache's sizes, each poisoning its freed outputs: every result bit-identical to a lone call."""
    cases = [c for c in STRESS_OPS if "gram" not in c[0]][:6]
    want = {name: call().clone() for name, call in cases}
    errors = []

    def work(offset):
        try:
            for rep in range(3):
                for name, call in cases[offset:] + cases[:offset]:
                    poison = call()
                    poison.fill_(float("nan"))
                    del poison
                    got = call()
                    if not torch.equal(got, want[name]):
                        errors.append(name)
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    run_in_python_threads(work, 3)
    assert not errors


@pytest.mark.parametrize("limit_mb,expected", [("0", 0), ("5", 4 * 2**20), ("1024", 6 * 2**20)])
def test_output_cache_limit_from_the_environment(limit_mb, expected):
    """TCONV_CPU_CACHE_MB caps the cache (0 disables it); least recently freed buffers go first."""
    import subprocess
    import sys
    code = (
        "import torch, tconv\n"
        "ys = [tconv.interpolate(torch.randn(1, 8, 128, 128), scale_factor=2) for _ in range(3)]\n"
        "del ys\n"
        "print(tconv.memory.cached_bytes())\n")
    env = dict(os.environ, TCONV_CPU_CACHE_MB=limit_mb, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert int(out.stdout.strip()) == expected
