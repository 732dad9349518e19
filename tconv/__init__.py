"""tconv: hand-written CPU/CUDA kernels for transposed convolution, bilinear/bicubic upsampling
and the Gram matrix, registered as torch.ops.tconv.* with autograd and fake kernels."""
import torch

from . import _C  # noqa: F401  (loads the library: registers the torch.ops.tconv operators)
from . import _register_conv_transpose2d  # noqa: F401
from . import _register_gram  # noqa: F401
from . import _register_upsample  # noqa: F401
from . import init, memory
from .functional import (conv_transpose1d, conv_transpose2d, conv_transpose3d, gram_matrix, interpolate,
                         style_loss, upsample_conv2d)
from .modules import (ConvTranspose1d, ConvTranspose2d, ConvTranspose3d, GramMatrix, Upsample, UpsampleConv2d,
                      UpsamplingBilinear2d)
from .conversion import ConversionReport, convert


def cpu_capability():
    """The build of tconv's CPU kernels that runs: ``'avx512'``, ``'avx2'`` or ``'default'``. It is
    PyTorch's own capability (``torch.backends.cpu.get_cpu_capability()``): the CPU's best, or the
    lower one ``ATEN_CPU_CAPABILITY`` asks for, so both libraries run at the same level."""
    return _C._cpu_capability()

__all__ = ["conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "interpolate", "gram_matrix",
           "style_loss", "upsample_conv2d", "init", "memory", "cpu_capability", "convert", "ConversionReport",
           "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d", "Upsample", "UpsamplingBilinear2d",
           "UpsampleConv2d", "GramMatrix"]
