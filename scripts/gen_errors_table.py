"""Prints the rows of docs/errors.md from the cases in tests/_support.py (ERROR_CASES).

    python scripts/gen_errors_table.py > /tmp/rows.md

Each case is run; the row holds the exception type and the start of its message. The op and
argument columns come from the case name ("op: argument"). Review the output before pasting it into
docs/errors.md: tests/test_robustness.py checks every row against the code.
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

from _support import ERROR_CASES  # noqa: E402

OPS = {"conv": "conv_transpose2d / ConvTranspose2d", "interp": "interpolate / Upsample",
       "conv1d": "conv_transpose1d / ConvTranspose1d", "conv3d": "conv_transpose3d / ConvTranspose3d",
       "linear": "interpolate(mode='linear') / Upsample",
       "trilinear": "interpolate(mode='trilinear') / Upsample",
       "gram": "gram_matrix / style_loss", "init": "init.bilinear_"}


def excerpt(message, limit=70):
    first = message.splitlines()[0] if message else ""
    cut = first[:limit]
    return cut[:cut.rfind(" ")] if len(first) > limit and " " in cut else cut


print("| case | op | invalid argument | exception | message excerpt |")
print("|---|---|---|---|---|")
for name, (ours, theirs) in ERROR_CASES.items():
    try:
        ours()
    except Exception as e:  # noqa: BLE001
        group, arg = name.split(": ", 1)
        msg = excerpt(str(e)).replace("|", "\\|")
        print(f"| `{name}` | {OPS[group]} | {arg} | {type(e).__name__} | `{msg}` |")
    else:
        print(f"| `{name}` | ? | ? | NO ERROR | |", file=sys.stderr)
