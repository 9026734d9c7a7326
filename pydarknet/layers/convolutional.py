"""[convolutional]: filters x (size x size x c/groups) kernels, optional batch-norm, then an activation.

Forward is im2col (Numba) + one sgemm per image and group (kernels.products: numpy's BLAS by default), then
one fused Numba pass for batch-norm, bias and activation. In training, batch-norm uses the batch's statistics; backward is per
image and group two matrix products (weight gradient, input gradient) and a col2im.
"""
import numpy as np

from ..kernels.activations import CODE as ACTIVATIONS
from ..kernels.backward import backward_bias, batchnorm_backward, batchnorm_train_forward, gradient_array32
from ..kernels.conv import col2im, im2col, normalize_scale_bias_activate
from ..kernels.products import gemm_nn, gemm_nt, gemm_tn
from .base import Layer, zeros


def batchnorm_forward_train(layer, out, activation):
    """Batch-norm with the batch's statistics, then `activation`, on out (batch, channels, spatial) in place;
    keeps what the backward pass needs on the layer: bn_x (the input), x_norm, mean, variance."""
    shape = out.shape
    bufs = layer.__dict__.get("_bn")
    if bufs is None or bufs[0].shape != shape:
        bufs = layer._bn = (np.empty(shape, np.float32), np.empty(shape, np.float32))
    layer.bn_x, layer.x_norm = bufs
    layer.mean = np.empty(shape[1], np.float32)
    layer.variance = np.empty(shape[1], np.float32)
    batchnorm_train_forward(out, layer.scales, layer.biases, layer.rolling_mean, layer.rolling_variance,
                            layer.mean, layer.variance, layer.bn_x, layer.x_norm, ACTIVATIONS[activation])


def batchnorm_backward_layer(layer, delta):
    """darknet's backward_batchnorm_layer on delta (batch, channels, spatial) in place."""
    batchnorm_backward(delta, layer.bn_x, layer.x_norm, layer.mean, layer.variance, layer.scales,
                       layer.bias_updates, layer.scale_updates)




def parse_activation(layer, default):
    name = layer.section.str("activation", default)
    if name not in ACTIVATIONS:
        raise layer.error(f"unknown activation '{name}' (known: {', '.join(ACTIVATIONS)})", "activation")
    return name


class Convolutional(Layer):
    type = "convolutional"
    names = ("convolutional", "conv")
    trainable = (("biases", "bias_updates", False), ("scales", "scale_updates", False),
                 ("weights", "weight_updates", True))

    def __init__(self, section, in_shape, net, index):
        s = section
        self.section, self.index = section, index
        self.filters = s.int("filters", 1)
        self.size = s.int("size", 1)
        self.stride = s.int("stride", 1)
        self.groups = s.int("groups", 1)
        self.pad = self.size // 2 if s.int("pad", 0) else s.int("padding", 0)
        self.batch_normalize = bool(s.int("batch_normalize", 0))
        self.activation = parse_activation(self, "logistic")
        if self.filters < 1 or self.size < 1 or self.stride < 1 or self.groups < 1:
            raise self.error("filters, size, stride and groups must be positive")
        c = in_shape[0]
        if c % self.groups or self.filters % self.groups:
            raise self.error(f"groups={self.groups} must divide the input channels ({c}) and filters "
                             f"({self.filters})", "groups")
        n = self.filters
        self.biases = zeros(n)
        self.weights = zeros(n, c // self.groups * self.size * self.size)
        if self.batch_normalize:
            self.scales = np.ones(n, np.float32)
            self.rolling_mean = zeros(n)
            self.rolling_variance = zeros(n)
        super().__init__(section, in_shape, net, index)

    def setup(self, in_shape, net):
        c, h, w = self.in_shape = tuple(in_shape)
        self.need_image_input()
        out_h = (h + 2 * self.pad - self.size) // self.stride + 1
        out_w = (w + 2 * self.pad - self.size) // self.stride + 1
        if out_h < 1 or out_w < 1:
            raise self.error(f"a {self.size}x{self.size} kernel does not fit the {w}x{h} input")
        self.out_shape = (self.filters, out_h, out_w)

    def initialize(self, rng):
        """darknet's start: normal weights scaled by sqrt(2 / fan-in), zero biases."""
        scale = np.sqrt(2.0 / self.weights.shape[1])
        self.weights[...] = scale * rng.standard_normal(self.weights.shape)

    def weight_arrays(self, transpose=False, loading=False):
        arrays = [self.biases]
        if self.batch_normalize and not (loading and self.dontloadscales):
            arrays += [self.scales, self.rolling_mean, self.rolling_variance]
        return arrays + [self.weights]

    def flops(self):
        _, out_h, out_w = self.out_shape
        return 2.0 * self.weights.size * out_h * out_w

    def describe(self):
        c, h, w = self.in_shape
        n, out_h, out_w = self.out_shape
        return (f"conv  {n:5d} {self.size:2d} x{self.size:2d} /{self.stride:2d}  {w:4d} x{h:4d} x{c:4d}   ->  "
                f"{out_w:4d} x{out_h:4d} x{n:4d}  {self.flops() / 1e9:5.3f} BFLOPs")

    def convolve(self, x, net):
        """The raw convolution sums (n, filters, out_h*out_w), before bias and batch-norm."""
        batch = x.shape[0]
        c, h, w = self.in_shape
        n, out_h, out_w = self.out_shape
        g = self.groups
        m, cg = n // g, c // g
        out = self.output_buffer(batch, (n, out_h * out_w))
        direct = self.size == 1 and self.stride == 1 and self.pad == 0
        k = cg * self.size * self.size
        col = None if direct else net.workspace(k * out_h * out_w).reshape(k, out_h * out_w)
        for b in range(batch):
            for j in range(g):
                im = x[b, j * cg:(j + 1) * cg]
                if direct:
                    col = im.reshape(cg, h * w)
                else:
                    im2col(im, self.size, self.stride, self.pad, col)
                gemm_nn(self.weights[j * m:(j + 1) * m], col, out[b, j * m:(j + 1) * m])
        return out

    def forward(self, x, net):
        out = self.convolve(x, net)
        if self.batch_normalize and net.train:
            batchnorm_forward_train(self, out, self.activation)
        elif self.batch_normalize:
            normalize_scale_bias_activate(out, self.rolling_mean, self.rolling_variance, self.scales,
                                          self.biases, ACTIVATIONS[self.activation], True)
        else:
            normalize_scale_bias_activate(out, self.biases, self.biases, self.biases, self.biases,
                                          ACTIVATIONS[self.activation], False)
        return out.reshape((x.shape[0],) + self.out_shape)

    # -- training ------------------------------------------------------------------------------------------
    def backward(self, net):
        """darknet's backward_convolutional_layer, with the input gradient added to net.delta (darknet's own
        1x1 path overwrites it instead -- the same whenever nothing else has written that delta yet)."""
        batch = self.delta.shape[0]
        c, h, w = self.in_shape
        n, out_h, out_w = self.out_shape
        spatial = out_h * out_w
        g = self.groups
        m, cg = n // g, c // g
        k = cg * self.size * self.size
        delta = self.delta.reshape(batch, n, spatial)
        gradient_array32(self.output.reshape(-1), ACTIVATIONS[self.activation], self.delta.reshape(-1))
        if self.batch_normalize:
            batchnorm_backward_layer(self, delta)
        else:
            backward_bias(self.bias_updates, delta)
        x = self.prev_input(net)
        prev = self.prev_delta(net)
        direct = self.size == 1 and self.stride == 1 and self.pad == 0
        col = net.workspace(k * spatial).reshape(k, spatial)
        grad = np.empty((m, k), np.float32)
        for b in range(batch):
            for j in range(g):
                d = delta[b, j * m:(j + 1) * m]                       # (m, spatial)
                im = x[b, j * cg:(j + 1) * cg]
                if direct:
                    cols = im.reshape(cg, h * w)
                else:
                    im2col(im, self.size, self.stride, self.pad, col)
                    cols = col
                gemm_nt(d, cols, grad)                                # weight gradient of this image
                self.weight_updates[j * m:(j + 1) * m] += grad
                if prev is None:
                    continue
                target = prev[b, j * cg:(j + 1) * cg]
                gemm_tn(self.weights[j * m:(j + 1) * m], d, col)      # W^T delta: (k, spatial)
                if direct:
                    target.reshape(cg, h * w)[...] += col
                else:
                    col2im(col, self.size, self.stride, self.pad, target)
