"""The CPU output cache: tconv's CPU kernels put outputs of 2 MiB and more on huge pages, and a
freed output's buffer is kept for the next output of the same size (no page faults, no zeroing),
like PyTorch's CUDA caching allocator. The cache holds at most TCONV_CPU_CACHE_MB MiB (read once at
import; default min(1 GiB, RAM / 16); 0 disables it)."""
from . import _C


def empty_cache():
    """Frees every cached CPU output buffer; returns the number of bytes released."""
    return _C._empty_cache()


def cached_bytes():
    """Bytes of freed CPU outputs the cache holds now."""
    return _C._cached_bytes()
