"""benchmarks/chart.py turns a results dict (as benchmarks/table.py saves it) into a readable PNG."""
import pytest
from PIL import Image

from benchmarks import chart

RESULTS = dict(torch="2.13.0", threads=2, rows=[
    dict(group="conv_transpose2d", case="unet 64->32", pass_="fwd", speedup=1.8),
    dict(group="conv_transpose2d", case="unet 64->32", pass_="fwd+bwd", speedup=1.3),
    dict(group="upsample", case="bicubic x2", pass_="fwd", speedup=0.7),  # slower than PyTorch, no bwd row
    dict(group="gram", case="vgg block1", pass_="fwd+bwd", speedup=2.5),
])


def _check_png(path):
    with Image.open(path) as image:
        image.load()
        assert image.width > 200 and image.height > 50


def test_write_chart(tmp_path):
    path = chart.write_chart(RESULTS, str(tmp_path / "results.png"))
    _check_png(path)


def test_pillow_fallback(tmp_path):
    chart._with_pillow(chart._cases(RESULTS["rows"]), str(tmp_path / "results.png"), "title")
    _check_png(tmp_path / "results.png")


def test_cases_pairs_fwd_and_backward():
    assert chart._cases(RESULTS["rows"])[0] == ("conv_transpose2d: unet 64->32", 1.8, 1.3)
    assert chart._cases(RESULTS["rows"])[1][2] is None
