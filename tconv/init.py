"""Weight initialisers for tconv's layers."""
import torch


def _bilinear_1d(k, dtype):
    """D2L 13.11's 1-D bilinear kernel of length k: a triangle centred in the kernel."""
    factor = (k + 1) // 2
    center = factor - 1 if k % 2 == 1 else factor - 0.5
    og = torch.arange(k, dtype=torch.float64)
    return (1 - (og - center).abs() / factor).to(dtype)


@torch.no_grad()
def bilinear_(weight):
    """Fills a transposed-convolution weight (Cin, Cout_g, kH, kW) in place with the bilinear
    upsampling kernel (D2L 13.11 ``bilinear_kernel``): input channel i feeds output channel i with
    the outer product of two 1-D triangles (kH and kW may differ), every other pair is zero.

    With ``kernel_size = 2s, stride = s, padding = s // 2`` the layer then equals bilinear
    interpolation by s (align_corners=False) away from a border of s pixels.

    Channel layouts: (C, C, k, k) for groups=1 is the identity-per-channel case. With groups
    (Cout_g = weight.shape[1] < Cin), input channel i feeds column ``i % Cout_g`` of its group, which
    is output channel i when out_channels == in_channels (e.g. depthwise (C, 1, k, k)). With
    Cout_g > Cin (groups=1, more outputs than inputs) the extra output channels stay zero.
    Returns ``weight``.
    """
    if weight.dim() != 4:
        raise ValueError(f"bilinear_ expects a 4-D (Cin, Cout/groups, kH, kW) weight, got shape "
                         f"{tuple(weight.shape)}")
    cin, cout_g, kh, kw = weight.shape
    filt = torch.outer(_bilinear_1d(kh, torch.float64), _bilinear_1d(kw, torch.float64))
    weight.zero_()
    channels = torch.arange(cin, device=weight.device)
    weight[channels, channels % cout_g] = filt.to(weight.dtype).to(weight.device)
    return weight
