"""Benchmark cases of bilinear/bicubic upsampling.

CPU (float32): (8, 64, 128, 128) by x2 and x4, contiguous and channels_last, against F.interpolate
and OpenCV's cv2.resize (the peer column); each forward and backward is also measured against a
copy of the same bytes timed in the same interleaved loop (the "x floor" column).
CUDA: (32, 64, 256, 256) by x2 (and an antialiased x0.5), float32 and float16, contiguous and
channels_last, against F.interpolate on the GPU, plus a device-to-device copy of the same bytes
(the bandwidth the forward is measured against)."""
import torch
import torch.nn.functional as F

import tconv
from .harness import Case, Peer

try:
    import cv2
except ImportError:  # the peer column is shown only with opencv-python-headless installed
    cv2 = None

SHAPE = (8, 64, 128, 128)
# cv2 converts an HWC numpy array with more than 128 channels to a 3-D Mat, which resize rejects.
CV2_MAX_CHANNELS = 128


def _opencv_peer(mode, s):
    if cv2 is None:
        return None
    flag = cv2.INTER_LINEAR if mode == "bilinear" else cv2.INTER_CUBIC

    def prepare(inputs):
        x = inputs[0].detach()
        # one HWC image per (image, chunk of channels): OpenCV's native layout
        return [x[n, c:c + CV2_MAX_CHANNELS].permute(1, 2, 0).contiguous().numpy()
                for n in range(x.shape[0]) for c in range(0, x.shape[1], CV2_MAX_CHANNELS)]

    def run(images):
        return [cv2.resize(img, (img.shape[1] * s, img.shape[0] * s), interpolation=flag)
                for img in images]

    return Peer("cv2", prepare, run)


def _case(mode, s, channels_last):
    n, c, h, w = SHAPE
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def make_inputs(requires_grad):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(SHAPE, generator=g).contiguous(memory_format=fmt)
        return (x.requires_grad_(requires_grad),)

    layout = "channels_last" if channels_last else "contiguous"
    return Case("upsample", f"{mode} x{s} {layout}, {n}x{c}x{h}x{w}", make_inputs,
                tconv=lambda x: tconv.interpolate(x, scale_factor=s, mode=mode),
                reference=lambda x: F.interpolate(x, scale_factor=s, mode=mode),
                bytes_moved=4.0 * n * c * h * w * (1 + s * s), peer=_opencv_peer(mode, s),
                backward_alone=True, copy_floor=True, rtol=1e-5, atol=1e-5, devices=("cpu",))


CASES = [_case(mode, s, cl) for mode in ("bilinear", "bicubic") for s in (2, 4) for cl in (False, True)]

# ---- CUDA: big enough to fill an H200 (2 GiB float32 output at x2) -----------------------------------

CUDA_SHAPE = (32, 64, 256, 256)
DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16"}


def _cuda_case(mode, s, channels_last, dtype, antialias=False):
    n, c, h, w = CUDA_SHAPE
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def make_inputs(requires_grad):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(CUDA_SHAPE, generator=g).to(dtype).contiguous(memory_format=fmt)
        return (x.requires_grad_(requires_grad),)

    layout = "channels_last" if channels_last else "contiguous"
    aa = " antialias" if antialias else ""
    ho, wo = int(h * s), int(w * s)
    kw = dict(scale_factor=s, mode=mode, antialias=antialias)
    # float16 rounds each output once (tconv) or sums in half precision atomics (PyTorch's backward).
    tol = 1e-5 if dtype == torch.float32 else 2e-3
    return Case("upsample", f"{mode} x{s}{aa} {layout} {DTYPE_NAMES[dtype]}, {n}x{c}x{h}x{w}", make_inputs,
                tconv=lambda x: tconv.interpolate(x, **kw), reference=lambda x: F.interpolate(x, **kw),
                bytes_moved=float(torch.finfo(dtype).bits // 8) * n * c * (h * w + ho * wo),
                rtol=tol, atol=tol, devices=("cuda",))


def _cuda_copy(s, dtype):
    """A device-to-device copy of the bytes an x`s` upsample of CUDA_SHAPE moves (read + write)."""
    n, c, h, w = CUDA_SHAPE
    elems = n * c * h * w * (1 + s * s) // 2

    def make_inputs(requires_grad):
        return (torch.zeros(elems, dtype=dtype),)

    copy = lambda x: torch.empty_like(x).copy_(x)  # noqa: E731
    return Case("upsample", f"device copy (bytes of x{s} {DTYPE_NAMES[dtype]})", make_inputs, tconv=copy,
                reference=copy, bytes_moved=2.0 * elems * (torch.finfo(dtype).bits // 8), backward=False,
                devices=("cuda",))


CASES += [_cuda_case(mode, 2, cl, dtype) for dtype in (torch.float32, torch.float16)
          for mode in ("bilinear", "bicubic") for cl in (False, True)]
CASES += [_cuda_case(mode, 0.5, False, torch.float32, antialias=True) for mode in ("bilinear", "bicubic")]
CASES += [_cuda_copy(2, torch.float32), _cuda_copy(2, torch.float16)]
