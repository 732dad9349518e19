"""Outputs of more than 2^31 elements (int64 indexing), checked at sampled positions against
PyTorch on small crops and at the last element. Each needs ~6-10 GiB of RAM; skipped when the
machine has less available."""
import gc

import pytest
import torch
import torch.nn.functional as F

import tconv

pytestmark = pytest.mark.slow
INT32_MAX = 2**31 - 1


def _available_bytes():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _needs(gib):
    return pytest.mark.skipif(_available_bytes() < gib * 2**30,
                              reason=f"needs {gib} GiB of available memory")


def _pattern(h, w, dtype, seed):
    """A non-linear (rank-1 product) image, built without a 4-byte temporary of full size."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.rand(h, generator=gen) + 0.5
    b = torch.randn(w, generator=gen)
    x = torch.empty(1, 1, h, w, dtype=dtype)
    torch.mul(a.to(dtype)[:, None], b.to(dtype)[None, :], out=x[0, 0])
    return x


def _positions(h, w, k, gen, count=6):
    """Crop origins: the corners and a few random interior ones (even, so the crops align)."""
    origins = [(0, 0), (h - k, w - k), (0, w - k), (h - k, 0)]
    for _ in range(count):
        origins.append((int(torch.randint(0, (h - k) // 2, (1,), generator=gen)) * 2,
                        int(torch.randint(0, (w - k) // 2, (1,), generator=gen)) * 2))
    return origins


@_needs(12)
def test_bilinear_bfloat16_output_over_2_31_elements():
    h = w = 32768
    x = _pattern(h, w, torch.bfloat16, seed=0)            # 2 GiB
    y = tconv.interpolate(x, scale_factor=2, mode="bilinear")  # 2^32 elements, 8 GiB
    assert y.shape == (1, 1, 2 * h, 2 * w) and y.numel() > INT32_MAX
    gen = torch.Generator().manual_seed(1)
    k, m = 16, 2  # crop size, margin of the crop's own border handling
    for r0, c0 in _positions(h, w, k, gen):
        crop = x[:, :, r0:r0 + k, c0:c0 + k].float()
        ref = F.interpolate(crop, scale_factor=2, mode="bilinear")
        # rows/cols of the crop output that see the same inputs as in the full image
        rlo = 0 if r0 == 0 else 2 * m
        rhi = 2 * k if r0 + k == h else 2 * k - 2 * m
        clo = 0 if c0 == 0 else 2 * m
        chi = 2 * k if c0 + k == w else 2 * k - 2 * m
        got = y[0, 0, 2 * r0 + rlo:2 * r0 + rhi, 2 * c0 + clo:2 * c0 + chi].float()
        torch.testing.assert_close(got, ref[0, 0, rlo:rhi, clo:chi].bfloat16().float(),
                                   rtol=1e-2, atol=1e-2)
    # the last element: the bottom-right input pixel (border clamp)
    assert y[0, 0, -1, -1].item() == x[0, 0, -1, -1].item()
    del x, y
    gc.collect()


@_needs(8)
def test_conv_transpose2d_output_over_2_31_elements():
    # (1, 2, 23171, 23171) bfloat16 -> (1, 1, 46342, 46342): 2 147 580 964 > 2^31 - 1 outputs,
    # through the cell-GEMM path (two input channels) with stride == kernel.
    h = w = 23171
    gen = torch.Generator().manual_seed(2)
    x = torch.empty(1, 2, h, w, dtype=torch.bfloat16)
    x[0, 0] = _pattern(h, w, torch.bfloat16, seed=3)[0, 0]
    x[0, 1] = _pattern(h, w, torch.bfloat16, seed=4)[0, 0]
    wt = torch.randn(2, 1, 2, 2, generator=gen).bfloat16()
    b = torch.randn(1, generator=gen).bfloat16()
    y = tconv.conv_transpose2d(x, wt, b, stride=2)
    assert y.shape == (1, 1, 2 * h, 2 * w) and y.numel() > INT32_MAX
    k = 8
    for r0, c0 in _positions(h - 1, w - 1, k, gen) + [(h - k, w - k)]:
        crop = x[:, :, r0:r0 + k, c0:c0 + k].float()
        ref = F.conv_transpose2d(crop, wt.float(), b.float(), stride=2)
        got = y[:, :, 2 * r0:2 * r0 + 2 * k, 2 * c0:2 * c0 + 2 * k].float()
        torch.testing.assert_close(got, ref.bfloat16().float(), rtol=1e-2, atol=1e-2)
    last = (x[0, :, -1, -1].float() * wt[:, 0, -1, -1].float()).sum() + b.float()
    torch.testing.assert_close(y[0, 0, -1, -1].float(), last.bfloat16().float()[0],
                               rtol=1e-2, atol=1e-2)
    del x, y
    gc.collect()


def _volume(d, h, w, dtype, seed):
    """A non-linear (rank-1 product) volume (1, 1, d, h, w), built slice by slice."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.rand(d, generator=gen) + 0.5
    plane = _pattern(h, w, torch.float32, seed + 1)[0, 0]
    x = torch.empty(1, 1, d, h, w, dtype=dtype)
    for i in range(d):
        torch.mul(plane, a[i], out=x[0, 0, i])
    return x


@_needs(10)
def test_conv_transpose1d_output_over_2_31_elements():
    # (1, 1, 2^30 + 8) bfloat16, kernel 2 stride 2 -> (1, 1, 2^31 + 16) outputs, through the 2-D
    # op on (N, C, 1, L) (Note [1-D and 3-D ops as composites]).
    length = 2**30 + 8
    x = _pattern(2**15, 2**15, torch.bfloat16, seed=5).reshape(1, 1, -1)
    x = torch.cat([x, x[:, :, :8] * 2], dim=2)
    gen = torch.Generator().manual_seed(6)
    wt = torch.randn(1, 1, 2, generator=gen).bfloat16()
    b = torch.randn(1, generator=gen).bfloat16()
    y = tconv.conv_transpose1d(x, wt, b, stride=2)
    assert y.shape == (1, 1, 2 * length) and y.numel() > INT32_MAX
    k = 64
    starts = [0, length - k] + [int(s) * 2 for s in torch.randint(0, (length - k) // 2, (6,), generator=gen)]
    for s in starts:
        ref = F.conv_transpose1d(x[:, :, s:s + k].float(), wt.float(), b.float(), stride=2)
        torch.testing.assert_close(y[:, :, 2 * s:2 * s + 2 * k].float(), ref.bfloat16().float(),
                                   rtol=1e-2, atol=1e-2)
    assert y[0, 0, -1].item() == (x[0, 0, -1].float() * wt[0, 0, -1].float() + b.float()).bfloat16().item()
    del x, y
    gc.collect()


@_needs(10)
def test_trilinear_output_over_2_31_elements():
    # (1, 1, 512, 725, 725) bfloat16 x2 -> 2 152 960 000 > 2^31 - 1 outputs.
    d, h, w = 512, 725, 725
    x = _volume(d, h, w, torch.bfloat16, seed=7)
    y = tconv.interpolate(x, scale_factor=2, mode="trilinear")
    assert y.shape == (1, 1, 2 * d, 2 * h, 2 * w) and y.numel() > INT32_MAX
    gen = torch.Generator().manual_seed(8)
    k, m = 8, 2
    origins = [(0, 0, 0), (d - k, h - k, w - k), (d - k, 0, w - k)]
    for _ in range(4):
        origins.append(tuple(int(torch.randint(0, (n - k) // 2, (1,), generator=gen)) * 2 for n in (d, h, w)))
    for o in origins:
        crop = x[:, :, o[0]:o[0] + k, o[1]:o[1] + k, o[2]:o[2] + k].float()
        ref = F.interpolate(crop, scale_factor=2, mode="trilinear")
        # per axis, the crop output's part that sees the same inputs as in the full volume
        lo = [0 if o[i] == 0 else 2 * m for i in range(3)]
        hi = [2 * k if o[i] + k == n else 2 * k - 2 * m for i, n in enumerate((d, h, w))]
        got = y[0, 0, 2 * o[0] + lo[0]:2 * o[0] + hi[0], 2 * o[1] + lo[1]:2 * o[1] + hi[1],
                2 * o[2] + lo[2]:2 * o[2] + hi[2]].float()
        want = ref[0, 0, lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].bfloat16().float()
        torch.testing.assert_close(got, want, rtol=1e-2, atol=1e-2)
    assert y[0, 0, -1, -1, -1].item() == x[0, 0, -1, -1, -1].item()  # the border clamp
    del x, y
    gc.collect()


@_needs(14)
def test_conv_transpose3d_output_over_2_31_elements():
    # (1, 2, 512, 725, 725) bfloat16, kernel = stride = 2 -> (1, 1, 1024, 1450, 1450) outputs: each
    # output block of 2x2x2 depends on one input voxel, so crops compare exactly.
    d, h, w = 512, 725, 725
    x = torch.cat([_volume(d, h, w, torch.bfloat16, seed=9), _volume(d, h, w, torch.bfloat16, seed=10)], dim=1)
    gen = torch.Generator().manual_seed(11)
    wt = torch.randn(2, 1, 2, 2, 2, generator=gen).bfloat16()
    b = torch.randn(1, generator=gen).bfloat16()
    y = tconv.conv_transpose3d(x, wt, b, stride=2)
    assert y.shape == (1, 1, 2 * d, 2 * h, 2 * w) and y.numel() > INT32_MAX
    k = 6
    origins = [(0, 0, 0), (d - k, h - k, w - k), (d - k, 0, w - k)]
    for _ in range(4):
        origins.append(tuple(int(torch.randint(0, n - k, (1,), generator=gen)) for n in (d, h, w)))
    for o in origins:
        crop = x[:, :, o[0]:o[0] + k, o[1]:o[1] + k, o[2]:o[2] + k].float()
        ref = F.conv_transpose3d(crop, wt.float(), b.float(), stride=2)
        got = y[:, :, 2 * o[0]:2 * o[0] + 2 * k, 2 * o[1]:2 * o[1] + 2 * k, 2 * o[2]:2 * o[2] + 2 * k].float()
        torch.testing.assert_close(got, ref.bfloat16().float(), rtol=1e-2, atol=1e-2)
    del x, y
    gc.collect()
