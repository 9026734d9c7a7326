"""[local]: a locally connected layer, like a convolution whose filters differ at every output location.

Darknet sizes the output as if `pad` were a flag (h - 1 when set, h - size when not), but its im2col pads
by `pad` pixels; the two agree only when 2*pad + 1 == size or pad == 0, and we refuse the other settings
(darknet would read columns of the wrong length there). Weights: (locations, filters, c*size*size), biases:
one per output value (filters, out_h, out_w).
"""
import numpy as np

from ...kernels import backward
from ...kernels.activations import CODE as ACTIVATIONS, activate_array
from ...kernels.conv import col2im_batch, im2col_batch
from ...kernels.local import local_forward
from .base import Layer, zeros
from .convolutional import parse_activation


class Local(Layer):
    type = "local"
    names = ("local",)
    trainable = (("biases", "bias_updates", False), ("weights", "weight_updates", True))

    def __init__(self, section, in_shape, net, index):
        self.section, self.index = section, index
        s = section
        self.filters = s.int("filters", 1)
        self.size = s.int("size", 1)
        self.stride = s.int("stride", 1)
        self.pad = s.int("pad", 0)
        self.activation = parse_activation(self, "logistic")
        if self.filters < 1 or self.size < 1 or self.stride < 1:
            raise self.error("filters, size and stride must be positive")
        if self.pad < 0:
            raise self.error(f"pad={self.pad} must not be negative", "pad")
        self.setup(in_shape, net)
        _, out_h, out_w = self.out_shape
        c = in_shape[0]
        locations = out_h * out_w
        self.biases = zeros(self.filters, out_h, out_w)
        self.weights = zeros(locations, self.filters, c * self.size * self.size)
        super().__init__(section, in_shape, net, index)

    def setup(self, in_shape, net):
        c, h, w = self.in_shape = tuple(in_shape)
        self.need_image_input()
        out_h = (h - (1 if self.pad else self.size)) // self.stride + 1
        out_w = (w - (1 if self.pad else self.size)) // self.stride + 1
        if out_h < 1 or out_w < 1:
            raise self.error(f"a {self.size}x{self.size} window does not fit the {w}x{h} input")
        col_h = (h + 2 * self.pad - self.size) // self.stride + 1
        col_w = (w + 2 * self.pad - self.size) // self.stride + 1
        if (col_h, col_w) != (out_h, out_w):
            raise self.error(f"pad={self.pad} with size={self.size}: darknet's output is {out_w}x{out_h} but its "
                             f"im2col (padding {self.pad} pixels) makes {col_w}x{col_h} windows; use pad=0, or "
                             f"pad=1 with size=3", "pad")
        shape = (self.filters, out_h, out_w)
        if hasattr(self, "weights") and shape != self.biases.shape:
            raise self.error(f"cannot be resized to a {w}x{h} input: its weights are per output location")
        self.out_shape = shape

    def initialize(self, rng):
        """darknet's start, uniform in +-sqrt(2 / (size*size*c)), but for every location (darknet fills only
        the first location's share and leaves the rest 0)."""
        scale = np.sqrt(2.0 / (self.size * self.size * self.in_shape[0]))
        self.weights[...] = scale * rng.uniform(-1, 1, self.weights.shape)

    def weight_arrays(self, transpose=False, loading=False):
        return [self.biases, self.weights]

    def describe(self):
        c, h, w = self.in_shape
        n, out_h, out_w = self.out_shape
        return f"Local Layer: {h} x {w} x {c} image, {n} filters -> {out_h} x {out_w} x {n} image"

    def forward(self, x, net):
        batch = x.shape[0]
        n, out_h, out_w = self.out_shape
        locations = out_h * out_w
        k = self.weights.shape[2]
        out = self.output_buffer(batch)
        col = net.workspace(k * locations).reshape(k, locations)
        biases = self.biases.reshape(n, locations)
        for b in range(batch):
            im2col_batch(x[b:b + 1], 0, x.shape[1], self.size, self.stride, self.pad, col[None], False)
            local_forward(col, self.weights, biases, out[b].reshape(n, locations))
        activate_array(out.reshape(-1), ACTIVATIONS[self.activation])
        return out

    # -- training ------------------------------------------------------------------------------------------
    def backward(self, net):
        """darknet's backward_local_layer: activation gradient, bias_updates += delta, then per image the
        per-location weight gradient and (with a previous layer) the input gradient through col2im (added)."""
        batch = self.delta.shape[0]
        n, out_h, out_w = self.out_shape
        locations = out_h * out_w
        k = self.weights.shape[2]
        backward.gradient_array32(self.output.reshape(-1), ACTIVATIONS[self.activation], self.delta.reshape(-1))
        for b in range(batch):
            self.bias_updates += self.delta[b]
        x = self.prev_input(net)
        prev = self.prev_delta(net)
        col = np.empty((k, locations), np.float32)
        col_delta = np.empty((k, locations), np.float32)
        for b in range(batch):
            im2col_batch(x[b:b + 1], 0, x.shape[1], self.size, self.stride, self.pad, col[None], False)
            backward.local_backward(col, self.delta[b].reshape(n, locations), self.weights, self.weight_updates,
                                    col_delta)
            if prev is not None:
                col2im_batch(col_delta[None], False, self.size, self.stride, self.pad, prev[b:b + 1], 0)
