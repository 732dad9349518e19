"""nn.Modules backed by tconv's kernels; drop-ins for their torch.nn counterparts."""
from torch import nn

from . import functional as F


class ConvTranspose2d(nn.ConvTranspose2d):
    """``torch.nn.ConvTranspose2d`` with tconv's kernels: same constructor, parameters,
    initialisation and state_dict; ``forward(input, output_size=None)`` with PyTorch's rules."""

    def forward(self, input, output_size=None):
        if self.padding_mode != "zeros":
            raise ValueError('Only "zeros" padding mode is supported for ConvTranspose2d')
        output_padding = self._output_padding(input, output_size, self.stride, self.padding,
                                              self.kernel_size, 2, self.dilation)
        return F.conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding,
                                  output_padding, self.groups, self.dilation)


class ConvTranspose1d(nn.ConvTranspose1d):
    """``torch.nn.ConvTranspose1d`` with tconv's kernels (``tconv.conv_transpose1d``): same
    constructor, parameters, initialisation and state_dict; ``forward(input, output_size=None)``."""

    def forward(self, input, output_size=None):
        if self.padding_mode != "zeros":
            raise ValueError('Only "zeros" padding mode is supported for ConvTranspose1d')
        output_padding = self._output_padding(input, output_size, self.stride, self.padding,
                                              self.kernel_size, 1, self.dilation)
        return F.conv_transpose1d(input, self.weight, self.bias, self.stride, self.padding,
                                  output_padding, self.groups, self.dilation)


class ConvTranspose3d(nn.ConvTranspose3d):
    """``torch.nn.ConvTranspose3d`` with tconv's kernels (``tconv.conv_transpose3d``): same
    constructor, parameters, initialisation and state_dict; ``forward(input, output_size=None)``."""

    def forward(self, input, output_size=None):
        if self.padding_mode != "zeros":
            raise ValueError('Only "zeros" padding mode is supported for ConvTranspose3d')
        output_padding = self._output_padding(input, output_size, self.stride, self.padding,
                                              self.kernel_size, 3, self.dilation)
        return F.conv_transpose3d(input, self.weight, self.bias, self.stride, self.padding,
                                  output_padding, self.groups, self.dilation)


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

class GramMatrix(nn.Module):
    """``tconv.gram_matrix`` as a module: (N, C, H, W) -> (N, C, C), (C, H, W) or (C, L) -> (C, C)."""

    def __init__(self, normalize=True):
        super().__init__()
        self.normalize = normalize

    def forward(self, input):
        return F.gram_matrix(input, self.normalize)

    def extra_repr(self):
        return f"normalize={self.normalize}"
