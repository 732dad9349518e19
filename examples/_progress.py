"""A progress bar for the examples' training loops: tqdm when installed, else a plain counter."""
import sys

try:
    from tqdm import tqdm as _tqdm
except ImportError:  # tqdm is an optional extra; the examples must still run without it
    _tqdm = None


class _PlainBar:
    """Prints 'desc: i/total postfix' in place, often enough to show life, not on every step."""

    def __init__(self, iterable, total, desc, disable):
        self.iterable, self.total, self.desc, self.disable, self.postfix = iterable, total, desc, disable, ""

    def __iter__(self):
        if self.disable:
            yield from self.iterable
            return
        every = max(1, self.total // 20)
        for i, item in enumerate(self.iterable, 1):
            yield item
            if i % every == 0 or i == self.total:
                end = "\n" if i == self.total else ""
                print(f"\r{self.desc}: {i}/{self.total} {self.postfix}", end=end, file=sys.stderr, flush=True)

    def set_postfix_str(self, text):
        self.postfix = text


def progress(iterable, desc, total=None, disable=False):
    """Wraps ``iterable`` in a progress bar; ``set_postfix_str`` works on both kinds."""
    total = len(iterable) if total is None else total
    if _tqdm is not None:
        return _tqdm(iterable, total=total, desc=desc, disable=disable, leave=False)
    return _PlainBar(iterable, total, desc, disable)
