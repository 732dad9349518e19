// Every tconv operator schema, declared once. Kernels register per device under csrc/cpu and
// csrc/cuda; autograd (reverse and forward mode) in csrc/autograd.cpp; fake (meta) kernels and
// batching rules (vmap) from Python (tconv/_register_*.py).
#include <torch/library.h>

TORCH_LIBRARY(tconv, m) {
  // ---- transposed convolution --------------------------------------------------------------
  // y = conv_transpose2d(x, w) + b, x: (N, Cin, H, W), w: (Cin, Cout/groups, kH, kW).
  m.def("conv_transpose2d(Tensor input, Tensor weight, Tensor? bias, int[2] stride, int[2] padding, "
        "int[2] output_padding, int groups, int[2] dilation) -> Tensor");
  // d/dx: a plain strided convolution of grad_output with the same weight.
  m.def("conv_transpose2d_backward_input(Tensor grad_output, Tensor weight, int[2] stride, "
        "int[2] padding, int groups, int[2] dilation, int[2] input_hw) -> Tensor");
  // d/dw: correlation of input with grad_output; kernel_hw gives the weight's spatial size.
  m.def("conv_transpose2d_backward_weight(Tensor grad_output, Tensor input, int[2] kernel_hw, "
        "int[2] stride, int[2] padding, int groups, int[2] dilation) -> Tensor");
  // d/db: per-channel sum of grad_output over batch and space.
  m.def("conv_transpose2d_backward_bias(Tensor grad_output) -> Tensor");
  // 1-D and 3-D: x (N, Cin, L) / (N, Cin, D, H, W), w (Cin, Cout/groups, k...). Composite
  // kernels over conv_transpose2d (csrc/conv_transpose_nd.cpp): their derivatives, fake tensors
  // and batching come from the 2-D op.
  m.def("conv_transpose1d(Tensor input, Tensor weight, Tensor? bias, int[1] stride, int[1] padding, "
        "int[1] output_padding, int groups, int[1] dilation) -> Tensor");
  // The adjoint of F.pad(y, pad, mode) for mode 'reflect', 'replicate' or 'circular' (pad: left,
  // right, top, bottom, as F.pad's): input (N, C, Hp, Wp), the padded shape, -> y's shape (N, C,
  // Hp - top - bottom, Wp - left - right), each border element summed onto the element it copies.
  // padding_mode of the transposed convolution is this op on its padding-0 (full) output.
  // Backward: F.pad(grad, pad, mode) (csrc/autograd.cpp).
  m.def("pad_fold2d(Tensor input, int[4] pad, str mode) -> Tensor");
  // conv_transpose2d with padding_mode 'reflect' / 'replicate' / 'circular' in one call: the same
  // as pad_fold2d of the padding-0 output plus the bias (the strips and pad_fold2d_frame_'s inference
  // path in one). CPU only, for the plain eager call without gradients (tconv/functional.py); on
  // the direct tiles' path the frame is folded inside the tiles (Note [folded frame]).
  m.def("_conv_transpose2d_padded(Tensor input, Tensor weight, Tensor? bias, int[2] stride, int[2] padding, "
        "int[2] output_padding, int groups, int[2] dilation, str padding_mode) -> Tensor");
  // pad_fold2d of the padded tensor given in pieces: its interior `center` (N, C, H, W) and its
  // frame, top (N, C, pad top, Wp) and bottom (N, C, pad bottom, Wp) over the whole padded width
  // Wp = left + W + right, left (N, C, H, pad left) and right (N, C, H, pad right) beside the
  // interior rows. padding_mode's inference path: the zeros-mode output and four thin strips.
  m.def("pad_fold2d_frame(Tensor center, Tensor top, Tensor bottom, Tensor left, Tensor right, int[4] pad, "
        "str mode) -> Tensor");
  // The same, in place on center (float32 / float64, contiguous or channels_last): the plain eager
  // call without gradients (tconv/functional.py), where center is the fresh zeros-mode output. No
  // autograd kernel: never called on tensors that need one.
  m.def("pad_fold2d_frame_(Tensor(a!) center, Tensor top, Tensor bottom, Tensor left, Tensor right, int[4] pad, "
        "str mode) -> ()");
  m.def("conv_transpose3d(Tensor input, Tensor weight, Tensor? bias, int[3] stride, int[3] padding, "
        "int[3] output_padding, int groups, int[3] dilation) -> Tensor");

  // ---- upsampling ----------------------------------------------------------------------------
  // y = F.interpolate(x, output_size, mode='bilinear' / 'bicubic', align_corners, antialias) on a
  // 4-D (N, C, H, W) input. scale_h / scale_w: the user's scale factors, which PyTorch uses in the
  // source-index computation when given (None: derived from the sizes).
  m.def("upsample_bilinear2d(Tensor input, int[2] output_size, bool align_corners, bool antialias, "
        "float? scale_h, float? scale_w) -> Tensor");
  m.def("upsample_bicubic2d(Tensor input, int[2] output_size, bool align_corners, bool antialias, "
        "float? scale_h, float? scale_w) -> Tensor");
  // d/dx: the adjoint resampling of grad_output (N, C, Ho, Wo) back to input_size (H, W).
  m.def("upsample_bilinear2d_backward(Tensor grad_output, int[2] input_size, bool align_corners, "
        "bool antialias, float? scale_h, float? scale_w) -> Tensor");
  m.def("upsample_bicubic2d_backward(Tensor grad_output, int[2] input_size, bool align_corners, "
        "bool antialias, float? scale_h, float? scale_w) -> Tensor");
  // The resize-convolution's second half (Note [mix first], common/upsample_taps.h): taps
  // (N, kh * kw, C, H, W) holds W_a x for each kernel tap a = (ah, aw) (row-major); y (N, C, Ho, Wo) =
  // bias + sum_a shift_a(interpolate(taps[:, a], scale_factor=scale, mode)), i.e.
  // conv2d(interpolate(x, scale, mode), w, bias, padding) for mode 'bilinear' / 'bicubic'
  // (align_corners False), or "nearest" (integer factors). padding: top, bottom, left, right (zeros).
  // channels_last: the output's memory format (the input's, in tconv.upsample_conv2d).
  m.def("upsample_taps2d(Tensor taps, Tensor? bias, int[2] kernel_size, int[2] scale, int[4] padding, "
        "str mode, bool channels_last=False) -> Tensor");
  // Its adjoint in taps: grad_output (N, C, Ho, Wo), any strides -> (N, kh * kw, C, input_hw).
  m.def("upsample_taps2d_backward(Tensor grad_output, int[2] kernel_size, int[2] scale, int[4] padding, "
        "str mode, int[2] input_hw) -> Tensor");
  // The same pair computed whole, without the taps tensor (conv2d(interpolate(input, scale, mode),
  // weight, bias, padding), groups 1): the CPU kernel of eager float32/float64 calls
  // (tconv/functional.py). Its autograd kernel's backward is the op below, or under create_graph
  // the differentiable composite (csrc/autograd.cpp).
  m.def("_upsample_conv2d_mixed(Tensor input, Tensor weight, Tensor? bias, int[2] scale, int[4] padding, "
        "str mode) -> Tensor");
  // Its gradients in input and weight (output_mask: which; an unwanted one is an empty tensor),
  // without the taps' gradient (Note [banded backward], cpu/upsample_taps2d.cpp). The bias's
  // gradient is grad_output's sum over (N, Ho, Wo).
  m.def("_upsample_conv2d_mixed_backward(Tensor grad_output, Tensor input, Tensor weight, int[2] scale, "
        "int[4] padding, str mode, bool[2] output_mask) -> (Tensor, Tensor)");
  // F.interpolate(mode='linear') on (N, C, L) and mode='trilinear' on (N, C, D, H, W); scale*:
  // the user's scale factors, as above. Composite kernels over upsample_bilinear2d
  // (csrc/upsample_nd.cpp).
  m.def("upsample_linear1d(Tensor input, int[1] output_size, bool align_corners, float? scale) "
        "-> Tensor");
  m.def("upsample_trilinear3d(Tensor input, int[3] output_size, bool align_corners, "
        "float? scale_d, float? scale_h, float? scale_w) -> Tensor");
  // ---- Gram matrix -------------------------------------------------------------------------
  // G = s * X X^T per batch, features X: (N, C, L) -> (N, C, C); s = 1 / (C * L) when normalize
  // (the style-transfer convention), else 1. Exactly symmetric.
  m.def("gram_matrix(Tensor features, bool normalize) -> Tensor");
  // d/dX: s * (grad_gram + grad_gram^T) X, (N, C, L), contiguous.
  m.def("gram_matrix_backward(Tensor grad_gram, Tensor features, bool normalize) -> Tensor");
}
