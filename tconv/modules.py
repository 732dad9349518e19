"""nn.Modules backed by tconv's kernels; drop-ins for their torch.nn counterparts."""
from torch import nn

from . import functional as F


class _PaddingModes:
    """The constructor of tconv's ConvTranspose1d/2d/3d: PyTorch's (which accepts only padding_mode
    'zeros') with 'zeros', then the mode tconv computes ('reflect', 'replicate' or 'circular': the
    adjoint of the padded convolution, see ``tconv.conv_transpose2d``); the state_dict does not
    change."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0,
                 groups=1, bias=True, dilation=1, padding_mode="zeros", device=None, dtype=None):
        F._check_padding_mode(padding_mode)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, output_padding, groups,
                         bias, dilation, "zeros", device, dtype)
        self.padding_mode = padding_mode


class ConvTranspose2d(_PaddingModes, nn.ConvTranspose2d):
    """``torch.nn.ConvTranspose2d`` with tconv's kernels: same constructor, parameters,
    initialisation and state_dict; ``forward(input, output_size=None)`` with PyTorch's rules.
    ``padding_mode`` may also be 'reflect', 'replicate' or 'circular' (PyTorch's accepts only
    'zeros'): the adjoint of the padded conv2d, see ``tconv.conv_transpose2d``; the state_dict
    does not change."""

    def forward(self, input, output_size=None):
        output_padding = self._output_padding(input, output_size, self.stride, self.padding,
                                              self.kernel_size, 2, self.dilation)
        return F.conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding,
                                  output_padding, self.groups, self.dilation, self.padding_mode)


def _conv_transpose_nd_forward(module, input, output_size, dims, conv_transpose):
    """forward of ConvTranspose1d/3d: PyTorch's output_size rule, and tconv's padding modes."""
    output_padding = module._output_padding(input, output_size, module.stride, module.padding,
                                            module.kernel_size, dims, module.dilation)
    return conv_transpose(input, module.weight, module.bias, module.stride, module.padding, output_padding,
                          module.groups, module.dilation, module.padding_mode)


class ConvTranspose1d(_PaddingModes, nn.ConvTranspose1d):
    """``torch.nn.ConvTranspose1d`` with tconv's kernels (``tconv.conv_transpose1d``): same
    constructor, parameters, initialisation and state_dict; ``forward(input, output_size=None)``.
    ``padding_mode`` may also be 'reflect', 'replicate' or 'circular', as for ConvTranspose2d."""

    def forward(self, input, output_size=None):
        return _conv_transpose_nd_forward(self, input, output_size, 1, F.conv_transpose1d)


class ConvTranspose3d(_PaddingModes, nn.ConvTranspose3d):
    """``torch.nn.ConvTranspose3d`` with tconv's kernels (``tconv.conv_transpose3d``): same
    constructor, parameters, initialisation and state_dict; ``forward(input, output_size=None)``.
    ``padding_mode`` may also be 'reflect', 'replicate' or 'circular', as for ConvTranspose2d."""

    def forward(self, input, output_size=None):
        return _conv_transpose_nd_forward(self, input, output_size, 3, F.conv_transpose3d)


class Upsample(nn.Upsample):
    """``torch.nn.Upsample`` for modes 'bilinear' (the default here; PyTorch's is 'nearest'),
    'bicubic' (4-D input), 'linear' (3-D) and 'trilinear' (5-D), with tconv's kernels. Same
    constructor arguments and attributes."""

    def __init__(self, size=None, scale_factor=None, mode="bilinear", align_corners=None,
                 recompute_scale_factor=None):
        if mode not in F._INTERPOLATE_MODES:
            raise ValueError("tconv.Upsample supports mode 'bilinear', 'bicubic', 'linear' or "
                             f"'trilinear', got mode={mode!r}")
        super().__init__(size, scale_factor, mode, align_corners, recompute_scale_factor)

    def forward(self, input):
        return F.interpolate(input, self.size, self.scale_factor, self.mode, self.align_corners,
                             recompute_scale_factor=self.recompute_scale_factor)


class UpsamplingBilinear2d(Upsample):
    """``torch.nn.UpsamplingBilinear2d``: bilinear with align_corners=True."""

    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, mode="bilinear", align_corners=True)

class UpsampleConv2d(nn.Conv2d):
    """Upsampling then ``nn.Conv2d``, fused: ``tconv.upsample_conv2d`` (by an integer factor, then
    a stride-1 conv: nearest as one transposed convolution, bilinear / bicubic with the channel
    mixing first; other settings run the unfused pair). A subclass of ``nn.Conv2d``: same constructor arguments (plus ``scale_factor`` and
    ``mode`` after ``kernel_size``), parameters, initialisation and state_dict keys, so a Conv2d
    state_dict loads into it and back, and ``isinstance(m, nn.Conv2d)`` holds (weight-init code
    keyed on it treats it as the conv it is). Tools that recompute a Conv2d's output from its
    attributes (FLOP counters) do not see the upsampling."""

    def __init__(self, in_channels, out_channels, kernel_size, scale_factor=2, mode="nearest", stride=1,
                 padding=0, dilation=1, groups=1, bias=True, padding_mode="zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device, dtype)
        self.scale_factor = scale_factor
        self.mode = mode

    def forward(self, input):
        return F.upsample_conv2d(input, self.weight, self.bias, self.scale_factor, self.mode, self.stride,
                                 self.padding, self.dilation, self.groups, self.padding_mode)

    def extra_repr(self):
        return f"{super().extra_repr()}, scale_factor={self.scale_factor}, mode={self.mode!r}"


class GramMatrix(nn.Module):
    """``tconv.gram_matrix`` as a module: (N, C, H, W) -> (N, C, C), (C, H, W) or (C, L) -> (C, C)."""

    def __init__(self, normalize=True):
        super().__init__()
        self.normalize = normalize

    def forward(self, input):
        return F.gram_matrix(input, self.normalize)

    def extra_repr(self):
        return f"normalize={self.normalize}"
