"""tconv's functional API: PyTorch's signatures, tconv's kernels (torch.ops.tconv.*)."""
import torch

from ._pair import pair


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """Drop-in for ``torch.nn.functional.conv_transpose2d`` (batched 4-D or unbatched 3-D input)."""
    if input.dim() not in (3, 4):
        raise RuntimeError("Expected 3D (unbatched) or 4D (batched) input to conv_transpose2d, "
                           f"but got input of size: {list(input.shape)}")
    unbatched = input.dim() == 3
    out = torch.ops.tconv.conv_transpose2d(
        input.unsqueeze(0) if unbatched else input, weight, bias, pair(stride, "stride"),
        pair(padding, "padding"), pair(output_padding, "output_padding"), groups,
        pair(dilation, "dilation"))
    return out.squeeze(0) if unbatched else out
