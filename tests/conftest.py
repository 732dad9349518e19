import os

# cuBLAS is deterministic only with a fixed workspace configuration, and PyTorch refuses cuBLAS
# under torch.use_deterministic_algorithms(True) without it: set for every CUDA suite here, before
# any test module starts CUDA.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

import tconv  # noqa: E402,F401  (registers torch.ops.tconv)

# CI runs the same examples every time; locally HYPOTHESIS_PROFILE=dev draws more.
settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def full_precision_float32():
    """TF32 off for the test (the CUDA test modules use it): TF32 (~1e-3 relative) would blur the
    float32 comparisons, and tconv's float32 GEMMs follow torch.backends.cuda.matmul.allow_tf32
    like every cuBLAS call in PyTorch."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@pytest.fixture(params=["auto", "64"])
def index_bits(request, monkeypatch):
    """The CUDA kernels' index width (csrc/cuda/launch.cuh, Note [index width]): "auto" takes
    32-bit indices whenever a launch fits them, "64" forces the 64-bit path that tensors of more
    than 2^31 elements take, so both paths are checked on small tensors."""
    if request.param == "64":
        monkeypatch.setenv("TCONV_CUDA_INDEX_BITS", "64")
    else:
        monkeypatch.delenv("TCONV_CUDA_INDEX_BITS", raising=False)
    return request.param


def full_gradcheck(fn, args):
    """float64 gradcheck and gradgradcheck in every autograd mode: reverse, forward (jvp),
    batched reverse and batched forward (vmap over the backward / the tangents), and for the
    second order reverse-over-reverse and forward-over-reverse."""
    assert torch.autograd.gradcheck(fn, args, check_forward_ad=True, check_backward_ad=True,
                                    check_batched_grad=True, check_batched_forward_grad=True)
    assert torch.autograd.gradgradcheck(fn, args, check_fwd_over_rev=True, check_rev_over_rev=True,
                                        check_batched_grad=True)
