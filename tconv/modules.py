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


class GramMatrix(nn.Module):
    """``tconv.gram_matrix`` as a module: (N, C, H, W) -> (N, C, C), (C, H, W) or (C, L) -> (C, C)."""

    def __init__(self, normalize=True):
        super().__init__()
        self.normalize = normalize

    def forward(self, input):
        return F.gram_matrix(input, self.normalize)

    def extra_repr(self):
        return f"normalize={self.normalize}"
