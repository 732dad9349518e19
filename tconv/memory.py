"""The CPU output cache (csrc/cpu/output_alloc.h, Note [output cache policy]).

tconv's CPU kernels put outputs of 2 MiB and more on transparent huge pages, and a freed output's
buffer may be kept for the next output of the same size (no page faults, no zeroing), like
PyTorch's CUDA caching allocator. PyTorch's own CPU allocator keeps nothing: every freed tensor
goes back to malloc (large blocks to the OS). The cache is small and lets go:

- at most ``TCONV_CPU_CACHE_MB`` MiB (read at import; default min(256 MiB, RAM / 16); 0 disables
  it), changed at run time with :func:`set_cache_limit`; least recently freed buffers go first;
- a buffer unused for ``TCONV_CPU_CACHE_IDLE_S`` seconds (default 10) is released at the next
  allocation or free of a large output;
- nothing is kept while the machine's available memory is below 1/8 of its RAM;
- :func:`empty_cache` releases everything; :func:`stats` shows what it does.

Each process has its own cache (each DataLoader worker, each DDP rank).
"""
from . import _C


def empty_cache():
    """Frees every cached CPU output buffer; returns the number of bytes released."""
    return _C._empty_cache()


def cached_bytes():
    """Bytes of freed CPU outputs the cache holds now."""
    return _C._cached_bytes()


def set_cache_limit(mb):
    """Caps the cache at ``mb`` MiB (0 disables it and releases what it holds)."""
    if mb < 0:
        raise ValueError(f"set_cache_limit: expected a limit >= 0 MiB, got {mb}")
    _C._set_cache_limit(int(mb * 2**20))


def stats():
    """The cache's counters: ``cached_bytes`` (held now), ``peak_cached_bytes`` (most held since
    start or :func:`reset_peak_stats`), ``limit_bytes``, ``hits`` / ``misses`` (large outputs
    that reused a buffer / needed a new one) and ``evictions`` (buffers released by the cap,
    idleness or memory pressure; :func:`empty_cache` not counted)."""
    return _C._cache_stats()


def reset_peak_stats():
    """Restarts ``peak_cached_bytes`` from the bytes held now."""
    _C._reset_peak()
