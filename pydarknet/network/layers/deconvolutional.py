"""[deconvolutional] (or [deconv]): a transposed convolution, `filters` outputs of size x size kernels every
`stride` pixels, then batch-norm (or bias) and an activation, as darknet's deconvolutional_layer.c.

Output side: (in - 1) * stride + size - 2 * padding (`pad=1` sets padding = size / 2). The weights are stored
(c_in, filters, size, size): each input pixel scatters weights[c] times its value onto the output, which is
W^T x for the columns followed by col2im -- the data-gradient path of a convolution. Backward is the
convolution's forward path on the delta: im2col of the delta, then x times its columns for the weight gradient
and W times them for the input gradient.

Darknet's stock load_weights dies on this layer (it divides by `groups`, which the layer leaves 0); the file
layout is the convolution's: biases, batch-norm scales/mean/variance, weights.
"""
import numpy as np

from ...kernels import backward
from ...kernels.activations import CODE as ACTIVATIONS
from ...kernels.conv import col2im_batch, im2col_batch, im2col_t, normalize_scale_bias_activate
from ...kernels.products import conv_weight_gradient, gemm_nn, gemm_tn, weight_gradient_transposed
from .base import Layer, zeros
from .convolutional import batchnorm_backward_layer, batchnorm_forward_train, parse_activation, scratch


class Deconvolutional(Layer):
    type = "deconvolutional"
    names = ("deconvolutional", "deconv")
    trainable = (("biases", "bias_updates", False), ("scales", "scale_updates", False),
                 ("weights", "weight_updates", True))

    def __init__(self, section, in_shape, net, index):
        s = section
        self.section, self.index = section, index
        self.filters = s.int("filters", 1)
        self.size = s.int("size", 1)
        self.stride = s.int("stride", 1)
        self.activation = parse_activation(self, "logistic")
        self.batch_normalize = bool(s.int("batch_normalize", 0))
        self.pad = self.size // 2 if s.int("pad", 0) else s.int("padding", 0)
        if self.filters < 1 or self.size < 1 or self.stride < 1:
            raise self.error("filters, size and stride must be positive")
        if self.pad < 0:
            raise self.error(f"padding={self.pad} must not be negative", "padding")
        c = in_shape[0]
        n = self.filters
        self.biases = zeros(n)
        self.weights = zeros(c, n * self.size * self.size)
        if self.batch_normalize:
            self.scales = np.ones(n, np.float32)
            self.rolling_mean = zeros(n)
            self.rolling_variance = zeros(n)
        super().__init__(section, in_shape, net, index)

    def setup(self, in_shape, net):
        c, h, w = self.in_shape = tuple(in_shape)
        self.need_image_input()
        out_h = (h - 1) * self.stride + self.size - 2 * self.pad
        out_w = (w - 1) * self.stride + self.size - 2 * self.pad
        if out_h < 1 or out_w < 1:
            raise self.error(f"padding={self.pad} leaves no output for a {w}x{h} input with size={self.size}",
                             "padding")
        self.out_shape = (self.filters, out_h, out_w)

    def initialize(self, rng):
        """darknet's start: normal weights times .02, scaled by the output/input area ratio; zero biases."""
        c, h, w = self.in_shape
        _, out_h, out_w = self.out_shape
        self.weights[...] = 0.02 * rng.standard_normal(self.weights.shape) * (out_h * out_w / (h * w))

    def weight_arrays(self, transpose=False, loading=False):
        return [self.biases] + self.batchnorm_arrays(loading) + [self.weights]

    def flops(self):
        _, h, w = self.in_shape
        return 2.0 * self.weights.size * h * w

    def describe(self):
        c, h, w = self.in_shape
        n, out_h, out_w = self.out_shape
        s = self.size
        return (f"deconv{n:5d} {s:2d} x{s:2d} /{self.stride:2d}  {w:4d} x{h:4d} x{c:4d}   ->  "
                f"{out_w:4d} x{out_h:4d} x{n:4d}")

    def forward(self, x, net):
        batch = x.shape[0]
        c, h, w = self.in_shape
        n, out_h, out_w = self.out_shape
        out = self.output_buffer(batch)
        out.fill(0)
        cols = scratch(net, "deconv_cols", batch * self.weights.shape[1] * h * w).reshape(batch, -1, h * w)
        for b in range(batch):
            gemm_tn(self.weights, x[b].reshape(c, h * w), cols[b])
        col2im_batch(cols, False, self.size, self.stride, self.pad, out, 0)
        rows = out.reshape(batch, n, out_h * out_w)
        code = ACTIVATIONS[self.activation]
        if self.batch_normalize and net.train:
            batchnorm_forward_train(self, rows, self.activation, net)
        elif self.batch_normalize:
            normalize_scale_bias_activate(rows, self.rolling_mean, self.rolling_variance, self.scales, self.biases,
                                          code, True, net.darknet == "ab")
        else:
            normalize_scale_bias_activate(rows, self.biases, self.biases, self.biases, self.biases, code, False)
        return out

    def backward(self, net):
        batch = self.delta.shape[0]
        c, h, w = self.in_shape
        n, out_h, out_w = self.out_shape
        delta = self.delta.reshape(batch, n, out_h * out_w)
        backward.gradient_array32(self.output.reshape(-1), ACTIVATIONS[self.activation], delta.reshape(-1))
        if self.batch_normalize:
            batchnorm_backward_layer(self, delta)
        else:
            backward.backward_bias(self.bias_updates, delta)
        k, spatial = self.weights.shape[1], h * w
        x = self.prev_input(net).reshape(batch, c, spatial)
        if weight_gradient_transposed(c, k, spatial):
            cols = scratch(net, "deconv_wcols", batch * spatial * k).reshape(batch, spatial, k)
            im2col_t(self.delta, 0, n, self.size, self.stride, self.pad, cols)
        else:
            cols = scratch(net, "deconv_wcols", batch * k * spatial).reshape(batch, k, spatial)
            im2col_batch(self.delta, 0, n, self.size, self.stride, self.pad, cols, False)
        conv_weight_gradient(x, cols, self.weight_updates)
        prev = self.prev_delta(net)
        if prev is None:
            return
        if weight_gradient_transposed(c, k, spatial):   # W times the columns wants them (k, spatial)
            cols = scratch(net, "deconv_cols", batch * k * spatial).reshape(batch, k, spatial)
            im2col_batch(self.delta, 0, n, self.size, self.stride, self.pad, cols, False)
        for b in range(batch):
            gemm_nn(self.weights, cols[b], prev[b].reshape(c, spatial), accumulate=True)
