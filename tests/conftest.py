"""Fixtures, markers and hooks of the whole suite: the CUBLAS_WORKSPACE_CONFIG preamble, the hypothesis
profiles, the seed, the `cuda` and `cuda_memory(gib)` markers (skipped without a GPU / without that much
free GPU memory), full_precision_float32 and upsample_path. Shared helpers are in _support.py."""
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


# ---- markers -------------------------------------------------------------------------------------------

def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU (skipped without one)")
    config.addinivalue_line("markers", "cuda_memory(gib): needs a CUDA GPU with gib GiB of free memory "
                                       "(skipped otherwise)")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    no_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if item.get_closest_marker("cuda") or item.get_closest_marker("cuda_memory"):
            item.add_marker(no_gpu)


def pytest_runtest_setup(item):
    marker = item.get_closest_marker("cuda_memory")
    if marker is not None and torch.cuda.is_available():
        gib = marker.args[0]
        free, _ = torch.cuda.mem_get_info()
        if free < gib << 30:
            pytest.skip(f"needs {gib} GiB free GPU memory, {free >> 30} GiB free")


# ---- fixtures ------------------------------------------------------------------------------------------

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


# The CUDA upsampling kernel paths (csrc/cuda/separable_resample.cuh): auto = tiled where a tile fits
# in shared memory, else direct; small_tiles puts tile boundaries everywhere on small shapes.
UPSAMPLE_PATHS = ["auto", "direct", "small_tiles"]


@pytest.fixture(params=UPSAMPLE_PATHS)
def upsample_path(request, monkeypatch):
    """Each CUDA upsampling kernel path in turn (TCONV_CUDA_UPSAMPLE_PATH)."""
    monkeypatch.setenv("TCONV_CUDA_UPSAMPLE_PATH", request.param)
    return request.param


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
