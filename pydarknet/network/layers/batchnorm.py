"""[batchnorm]: batch normalisation on its own (no activation): (x - mean) / (sqrt(var) + .000001), times
scales, plus biases, with the rolling statistics at inference (the AlexeyAB fork: / sqrt(var + .00001)).

Darknet's .weights hold only scales, rolling_mean and rolling_variance for this layer: its biases are never
saved or loaded (they stay 0 after loading)."""
import numpy as np

from ...kernels.activations import LINEAR
from ...kernels.conv import normalize_scale_bias_activate
from .base import Layer, zeros


class Batchnorm(Layer):
    type = "batchnorm"
    names = ("batchnorm",)

    def __init__(self, section, in_shape, net, index):
        self.section, self.index = section, index
        c = in_shape[0]
        self.scales = np.ones(c, np.float32)
        self.biases = zeros(c)
        self.rolling_mean = zeros(c)
        self.rolling_variance = zeros(c)
        super().__init__(section, in_shape, net, index)

    def setup(self, in_shape, net):
        c, h, w = self.in_shape = self.out_shape = tuple(in_shape)
        self.need_image_input()
        if c != self.scales.size:
            raise self.error(f"cannot take {c} channels: it was made for {self.scales.size}")

    def weight_arrays(self, transpose=False, loading=False):
        return [self.scales, self.rolling_mean, self.rolling_variance]

    def describe(self):
        c, h, w = self.in_shape
        return f"Batch Normalization Layer: {w} x {h} x {c} image"

    def forward(self, x, net):
        batch = x.shape[0]
        c, h, w = self.in_shape
        out = self.output_buffer(batch)
        out[...] = x
        if net.train:
            from .convolutional import batchnorm_forward_train
            batchnorm_forward_train(self, out.reshape(batch, c, h * w), "linear", net)
            return out
        normalize_scale_bias_activate(out.reshape(batch, c, h * w), self.rolling_mean, self.rolling_variance,
                                      self.scales, self.biases, LINEAR, True, net.darknet == "ab")
        return out

    # -- training ------------------------------------------------------------------------------------------
    # darknet gives this layer a backward pass but no update: its scales and biases never change in training
    # (the updates are accumulated and left unused), which is reproduced.
    def start_training(self, net):
        for name in ("scale_updates", "bias_updates"):
            if getattr(self, name, None) is None:
                setattr(self, name, np.zeros_like(self.scales))

    def backward(self, net):
        from .convolutional import batchnorm_backward_layer
        batch = self.delta.shape[0]
        c, h, w = self.in_shape
        batchnorm_backward_layer(self, self.delta.reshape(batch, c, h * w))
        self.add_delta_to_previous(net)
