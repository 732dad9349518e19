"""tconv: hand-written CPU/CUDA kernels for transposed convolution, bilinear/bicubic upsampling
and the Gram matrix, registered as torch.ops.tconv.* with autograd and fake kernels."""
import torch

from . import _C  # noqa: F401  (loads the library: registers the torch.ops.tconv operators)
from . import _register_conv_transpose2d  # noqa: F401
from . import _register_gram  # noqa: F401
from . import _register_upsample  # noqa: F401
from . import init, memory
from .functional import conv_transpose2d, gram_matrix, interpolate, style_loss
from .modules import ConvTranspose2d, GramMatrix, Upsample, UpsamplingBilinear2d

__all__ = ["conv_transpose2d", "interpolate", "gram_matrix", "style_loss", "init",
           "memory", "ConvTranspose2d", "Upsample", "UpsamplingBilinear2d", "GramMatrix"]
