"""tconv.convert (tconv/conversion.py): models written with plain torch.nn, converted to tconv's
layers, give the same outputs and gradients (to float rounding), keep their state_dict keys,
parameters, buffers, hooks and training flags, honour inplace, fuse nearest-upsample + Conv2d pairs
with fuse=True, report what stays PyTorch's, and still compile and export. The models are small
copies of real code: the U-Net of milesial/Pytorch-UNet (both up-paths) and the DCGAN generator of
pytorch/examples. The fused layer's own numerics are tests/test_upsample_conv2d.py's."""
import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tconv

# ---- the models (plain torch.nn) ----------------------------------------------------------------------


class DoubleConv(nn.Module):
    """(convolution => [BN] => ReLU) * 2 (milesial/Pytorch-UNet, unet_parts.py)."""

    def __init__(self, in_channels, out_channels, mid_channels=None):
        super().__init__()
        if not mid_channels:
            mid_channels = out_channels
        self.double_conv = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(mid_channels), nn.ReLU(inplace=True),
            nn.Conv2d(mid_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))

    def forward(self, x):
        return self.double_conv(x)


class Down(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels))

    def forward(self, x):
        return self.maxpool_conv(x)


class Up(nn.Module):
    def __init__(self, in_channels, out_channels, bilinear=True):
        super().__init__()
        if bilinear:
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
            self.conv = DoubleConv(in_channels, out_channels, in_channels // 2)
        else:
            self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
            self.conv = DoubleConv(in_channels, out_channels)

    def forward(self, x1, x2):
        x1 = self.up(x1)
        diff_y = x2.size()[2] - x1.size()[2]
        diff_x = x2.size()[3] - x1.size()[3]
        x1 = F.pad(x1, [diff_x // 2, diff_x - diff_x // 2, diff_y // 2, diff_y - diff_y // 2])
        return self.conv(torch.cat([x2, x1], dim=1))


class UNet(nn.Module):
    """milesial/Pytorch-UNet's UNet with the base width a parameter (64 there) to keep tests fast."""

    def __init__(self, n_channels, n_classes, bilinear=False, width=64):
        super().__init__()
        w = width
        factor = 2 if bilinear else 1
        self.inc = DoubleConv(n_channels, w)
        self.down1, self.down2, self.down3 = Down(w, 2 * w), Down(2 * w, 4 * w), Down(4 * w, 8 * w)
        self.down4 = Down(8 * w, 16 * w // factor)
        self.up1 = Up(16 * w, 8 * w // factor, bilinear)
        self.up2 = Up(8 * w, 4 * w // factor, bilinear)
        self.up3 = Up(4 * w, 2 * w // factor, bilinear)
        self.up4 = Up(2 * w, w, bilinear)
        self.outc = nn.Conv2d(w, n_classes, kernel_size=1)

    def forward(self, x):
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        x = self.up1(x5, x4)
        x = self.up2(x, x3)
        x = self.up3(x, x2)
        x = self.up4(x, x1)
        return self.outc(x)


class Generator(nn.Module):
    """pytorch/examples dcgan/main.py's generator (nz, ngf, nc smaller here)."""

    def __init__(self, nz=8, ngf=4, nc=3):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, input):
        return self.main(input)


def resize_conv_decoder():
    """A resize-convolution decoder (Odena et al. 2016): nearest x2 then a conv, three times."""
    return nn.Sequential(
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(8, 6, 3, padding=1), nn.ReLU(),
        nn.UpsamplingNearest2d(scale_factor=2), nn.Conv2d(6, 4, 5, padding=2), nn.ReLU(),
        nn.Upsample(scale_factor=3.0), nn.Conv2d(4, 3, 3, padding="same"), nn.Tanh())


# ---- helpers --------------------------------------------------------------------------------------------

def _run(model, x):
    """Output, input gradient and parameter gradients of a weighted sum of the output."""
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    out = model(x)
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    (out * weights).sum().backward()
    return [out.detach(), x.grad] + [p.grad for p in model.parameters()]


def _assert_same(model, converted, x, tol=1e-9):
    """In float64: BatchNorm over 2x2 maps amplifies float32 rounding past any useful tolerance."""
    model.double(), converted.double()
    for a, b in zip(_run(converted, x.double()), _run(model, x.double())):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def _types(model):
    return [type(m) for m in model.modules()]


# ---- conversion of real models ----------------------------------------------------------------------

@pytest.mark.parametrize("bilinear", [False, True], ids=["conv_transpose", "bilinear"])
def test_unet_converts_and_matches(bilinear):
    model = UNet(3, 2, bilinear=bilinear, width=4)
    converted, report = tconv.convert(model, report=True)
    want = tconv.Upsample if bilinear else tconv.ConvTranspose2d
    assert sum(isinstance(m, want) for m in converted.modules()) == 4
    assert [name for name, _, _ in report.converted] == [f"up{i}.up" for i in range(1, 5)]
    assert report.skipped == [] and report.fused == []
    assert list(converted.state_dict()) == list(model.state_dict())
    _assert_same(model, converted, torch.randn(2, 3, 35, 37))  # odd sizes: the F.pad path of Up


def test_dcgan_generator_converts_and_matches():
    model = Generator()
    converted = tconv.convert(model)
    assert [type(m) for m in converted.main][::3][:5] == [tconv.ConvTranspose2d] * 5
    assert list(converted.state_dict()) == list(model.state_dict())
    _assert_same(model, converted, torch.randn(4, 8, 1, 1))
    model.eval(), converted.eval()
    _assert_same(model, converted, torch.randn(4, 8, 1, 1))


def test_1d_and_3d_layers_convert_and_match():
    vocoder = nn.Sequential(nn.Conv1d(4, 6, 3, padding=1), nn.ReLU(), nn.ConvTranspose1d(6, 3, 16, stride=8, padding=4),
                            nn.Upsample(scale_factor=2, mode="linear"))
    decoder = nn.Sequential(nn.ConvTranspose3d(4, 3, 2, stride=2), nn.ReLU(),
                            nn.Upsample(scale_factor=2, mode="trilinear"), nn.ConvTranspose3d(3, 2, 3, padding=1))
    for model, x, replaced in ((vocoder.double(), torch.randn(2, 4, 9, dtype=torch.float64), 2),
                               (decoder.double(), torch.randn(2, 4, 3, 4, 5, dtype=torch.float64), 3)):
        converted, report = tconv.convert(model, report=True)
        assert len(report.converted) == replaced and not report.skipped
        assert all(type(m).__module__.startswith("tconv") for m in converted if not isinstance(m, (nn.ReLU, nn.Conv1d)))
        assert list(converted.state_dict()) == list(model.state_dict())
        _assert_same(model, converted, x)


def test_state_dicts_load_both_ways():
    model, other = Generator(), Generator()
    converted = tconv.convert(model)
    converted.load_state_dict(other.state_dict())
    model.load_state_dict(converted.state_dict())
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)


# ---- inplace, parameters, buffers, flags, hooks -----------------------------------------------------

def test_inplace_false_copies_and_leaves_the_model_alone():
    model = Generator()
    before = _types(model)
    converted = tconv.convert(model)
    assert converted is not model and _types(model) == before
    for (name, p), q in zip(model.named_parameters(), converted.parameters()):
        assert p is not q and torch.equal(p, q), name
    for b, c in zip(model.buffers(), converted.buffers()):
        assert b is not c and torch.equal(b, c)


def test_inplace_true_keeps_objects_and_parameters():
    model = Generator()
    params, buffers, layers = list(model.parameters()), list(model.buffers()), list(model.modules())
    converted = tconv.convert(model, inplace=True)
    assert converted is model
    assert all(a is b for a, b in zip(params, model.parameters()))
    assert all(a is b for a, b in zip(buffers, model.buffers()))
    assert all(a is b for a, b in zip(layers, model.modules()))  # the same layer objects
    assert type(model.main[0]) is tconv.ConvTranspose2d


def test_training_flags_and_extra_attributes_are_kept():
    model = Generator()
    model.eval()
    model.main[3].train()
    model.main[3].note = "kept"
    converted = tconv.convert(model)
    assert [m.training for m in converted.modules()] == [m.training for m in model.modules()]
    assert converted.main[3].note == "kept"


class HookedModel(nn.Module):
    """Hooks on converted layers, a nearest upsample (not a tconv op) and a ConvTranspose2d
    subclass with its own forward (left alone)."""

    class ScaledConvTranspose2d(nn.ConvTranspose2d):
        def forward(self, input, output_size=None):
            return 2 * super().forward(input, output_size)

    def __init__(self):
        super().__init__()
        self.up = nn.ConvTranspose2d(4, 4, 4, stride=2, padding=1)
        self.resize = nn.Upsample(scale_factor=2, mode="bicubic")
        self.nearest = nn.Upsample(scale_factor=2, mode="nearest")
        self.scaled = self.ScaledConvTranspose2d(4, 2, 3, padding=1)

    def forward(self, x):
        return self.scaled(self.nearest(self.resize(self.up(x))))


def test_hooks_run_on_converted_layers_and_unsupported_layers_are_reported(caplog):
    model = HookedModel()
    seen = []
    model.up.register_forward_pre_hook(lambda m, args: (args[0] * 0.5,))
    model.up.register_forward_hook(lambda m, args, out: seen.append(type(m).__name__) or out + 1)
    model.resize.register_full_backward_hook(lambda m, gin, gout: seen.append("bwd") or None)
    with caplog.at_level(logging.INFO, logger="tconv.convert"):
        converted, report = tconv.convert(model, report=True)
    assert type(converted.up) is tconv.ConvTranspose2d and type(converted.resize) is tconv.Upsample
    assert type(converted.nearest) is nn.Upsample and type(converted.scaled) is HookedModel.ScaledConvTranspose2d
    skipped = {name: reason for name, _, reason in report.skipped}
    assert set(skipped) == {"nearest", "scaled"}
    assert "'nearest'" in skipped["nearest"] and "subclass" in skipped["scaled"]
    assert "2 converted, 0 fused, 2 left to PyTorch" in caplog.text and "kept nearest" in caplog.text
    x = torch.randn(2, 4, 5, 6)
    _assert_same(model, converted, x)
    assert seen == ["ConvTranspose2d", "bwd", "ConvTranspose2d", "bwd"]  # the original's, then the copy's


def test_unsupported_padding_mode_is_reported_and_kept():
    model = nn.Sequential(nn.ConvTranspose2d(2, 2, 3), nn.ConvTranspose2d(2, 2, 3), nn.ConvTranspose2d(2, 2, 3))
    model[1].padding_mode = "bogus"    # the constructor refuses both; PyTorch's forward raises
    model[2].padding_mode = "reflect"  # tconv computes it (the adjoint of the reflect-padded conv2d)
    converted, report = tconv.convert(model, report=True)
    assert [type(m) for m in converted] == [tconv.ConvTranspose2d, nn.ConvTranspose2d, tconv.ConvTranspose2d]
    assert report.skipped == [("1", "ConvTranspose2d", report.skipped[0][2])]
    assert "padding_mode='bogus'" in report.skipped[0][2]
    assert "kept 1 (ConvTranspose2d)" in str(report)
    converted[2](torch.randn(1, 2, 4, 4))


def test_root_layer_and_shared_layers():
    layer = nn.ConvTranspose2d(3, 3, 2, stride=2)
    assert type(tconv.convert(layer)) is tconv.ConvTranspose2d
    shared = nn.Upsample(scale_factor=2, mode="bilinear")
    model = nn.Sequential(shared, nn.ReLU(), shared)
    converted, report = tconv.convert(model, report=True)
    assert converted[0] is converted[2] and type(converted[0]) is tconv.Upsample
    assert len(report.converted) == 1


def test_already_converted_layers_are_left_alone():
    model = tconv.convert(Generator())
    again, report = tconv.convert(model, report=True)
    assert report.converted == [] and report.skipped == []
    assert _types(again) == _types(model)


# ---- fuse=True ------------------------------------------------------------------------------------------

def test_fuse_resize_conv_decoder():
    model = resize_conv_decoder()
    converted, report = tconv.convert(model, fuse=True, report=True)
    assert report.fused == [("2", "3"), ("5", "6"), ("8", "9")] and report.skipped == []
    assert len(converted) == len(model)
    for i in (2, 5, 8):
        assert type(converted[i]) is nn.Identity
        assert type(converted[i + 1]) is tconv.UpsampleConv2d and isinstance(converted[i + 1], nn.Conv2d)
    assert list(converted.state_dict()) == list(model.state_dict())
    model.load_state_dict(converted.state_dict())  # and back
    _assert_same(model, converted, torch.randn(2, 8, 5, 7))
    # without fuse, nearest upsampling stays PyTorch's and is reported
    plain, report = tconv.convert(model, report=True)
    assert _types(plain) == _types(model) and len(report.skipped) == 3


def test_fuse_inplace_keeps_conv_parameters():
    model = resize_conv_decoder()
    weight = model[3].weight
    tconv.convert(model, inplace=True, fuse=True)
    assert model[3].weight is weight and type(model[3]) is tconv.UpsampleConv2d


def test_fuse_skips_pairs_it_cannot_fuse_exactly():
    model = nn.Sequential(
        nn.Upsample(scale_factor=1.5), nn.Conv2d(2, 2, 3, padding=1),            # non-integer factor
        nn.Upsample(scale_factor=2), nn.Conv2d(2, 2, 3, stride=2, padding=1),    # strided conv
        nn.Upsample(scale_factor=2), nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect"),
        nn.Upsample(scale_factor=2), nn.Conv2d(2, 2, 3, padding=1),              # hooked (below)
        nn.Upsample(size=(40, 40)), nn.Conv2d(2, 2, 1))                          # by size
    model[7].register_forward_hook(lambda m, args, out: out)
    converted, report = tconv.convert(model, fuse=True, report=True)
    assert report.fused == [] and _types(converted) == _types(model)
    assert [name for name, _, _ in report.skipped] == ["0", "2", "4", "6", "8"]
    assert all("not fused" in why for _, _, why in report.skipped)
    _assert_same(model, converted, torch.randn(1, 2, 5, 5))


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_fuse_bilinear_upsample(mode):
    model = nn.Sequential(nn.Upsample(scale_factor=2, mode=mode), nn.Conv2d(3, 4, 3, padding=1)).double()
    converted, report = tconv.convert(model, fuse=True, report=True)
    assert type(converted[0]) is nn.Identity and type(converted[1]) is tconv.UpsampleConv2d
    assert converted[1].mode == mode and len(report.fused) == 1
    _assert_same(model, converted, torch.randn(2, 3, 5, 6, dtype=torch.float64))


def test_fuse_with_align_corners_upsample_converts_without_fusing():
    model = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
                          nn.Conv2d(3, 3, 3, padding=1))
    converted, report = tconv.convert(model, fuse=True, report=True)
    assert type(converted[0]) is tconv.Upsample and type(converted[1]) is nn.Conv2d
    assert report.fused == []


# ---- compile and export after conversion ---------------------------------------------------------------

def test_compile_after_conversion():
    model = UNet(3, 2, bilinear=True, width=2)
    converted = tconv.convert(resize_conv_decoder(), fuse=True)
    for original, conv, x in ((model, tconv.convert(model), torch.randn(1, 3, 32, 32)),
                              (None, converted, torch.randn(1, 8, 6, 6))):
        compiled = torch.compile(conv, fullgraph=True, backend="aot_eager")
        # Compiled, the fused layers run the composite; eager, the CPU kernel and its banded
        # backward: two float32 summation orders of the weight's gradient (6e-5 apart seen).
        for a, b in zip(_run(compiled, x), _run(conv, x)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_export_after_conversion():
    for model, x in ((Generator().eval(), torch.randn(2, 8, 1, 1)),
                     (resize_conv_decoder(), torch.randn(2, 8, 5, 5))):
        converted = tconv.convert(model, fuse=True)
        ep = torch.export.export(converted, (x,))
        targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
        assert any("tconv.conv_transpose2d" in t for t in targets), targets
        torch.testing.assert_close(ep.module()(x), model(x), rtol=1e-5, atol=1e-5)
