"""Each example runs end to end on tiny inputs: it trains a few steps, its loss falls, and it
writes a readable PNG. Imports the scripts from examples/ (they are scripts, not a package)."""
import os
import sys

import pytest
import torch
from PIL import Image

EXAMPLES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


@pytest.fixture
def examples(monkeypatch):
    monkeypatch.syspath_prepend(EXAMPLES_DIR)
    # These tiny runs are all overhead: one thread avoids OpenMP spinning on a busy CI machine
    # (14 s instead of 2 s for the FCN test on 2 loaded cores).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield __import__
    torch.set_num_threads(threads)


def _check_png(path, min_width, min_height):
    with Image.open(path) as image:
        image.load()
        assert image.width >= min_width and image.height >= min_height


def test_fcn(examples, tmp_path):
    result = examples("fcn").main(["--size", "32", "--train", "16", "--test", "4", "--batch", "8",
                                   "--epochs", "4", "--lr", "1e-2", "--out", str(tmp_path), "--quiet"])
    assert result["epoch_losses"][-1] < result["epoch_losses"][0]
    assert 0 < result["baseline_accuracy"] <= 1 and len(result["history"]) == 4
    _check_png(result["figure"], 3 * 32, 4 * 32)


def test_fcn_rejects_size_not_multiple_of_32(examples):
    with pytest.raises(SystemExit):
        examples("fcn").main(["--size", "48"])


def test_style_transfer(examples, tmp_path):
    result = examples("style_transfer").main(["--size", "32", "--steps", "4", "--out", str(tmp_path), "--quiet"])
    assert result["losses"][-1] < result["losses"][0]
    _check_png(result["figure"], 3 * 32, 32)


def test_style_transfer_loads_torchvision_state_dict(examples, tmp_path):
    module = examples("style_transfer")
    source = module.VGG19Features()
    # torchvision's vgg19 state_dict: features.* plus classifier.* (which must be ignored).
    state = {f"features.{k}": v for k, v in source.features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "vgg19.pth")
    target = module.VGG19Features()
    module.load_vgg19_weights(target, str(tmp_path / "vgg19.pth"))
    assert torch.equal(target.features[28].weight, source.features[28].weight)
    assert module.vgg19_layer_names()["block5_conv2"] == 31  # the ReLU after features.30


def test_super_resolution(examples, tmp_path):
    result = examples("super_resolution").main(["--size", "32", "--train", "32", "--test", "4", "--steps", "30",
                                                "--batch", "8", "--lr", "3e-3", "--out", str(tmp_path), "--quiet"])
    losses = result["losses"]
    assert sum(losses[-5:]) < sum(losses[:5])
    assert result["psnr_network"] > 0 and result["psnr_bicubic"] > 0
    _check_png(result["figure"], 4 * 32, 3 * 32)
