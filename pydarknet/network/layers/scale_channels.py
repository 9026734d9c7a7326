"""[scale_channels]: the AlexeyAB fork's squeeze-and-excitation scaling: an earlier layer's output with each
channel multiplied by the input's value for that channel (the input is c x 1 x 1), then an activation.
`scale_wh=1` scales each pixel instead: the input is 1 x h x w, one factor per pixel for every channel."""
import numpy as np

from ...kernels import backward
from ...kernels.activations import CODE as ACTIVATIONS, activate_array
from .base import Layer
from .convolutional import parse_activation


class ScaleChannels(Layer):
    type = "scale_channels"
    names = ("scale_channels",)

    def __init__(self, section, in_shape, net, index):
        self.section, self.index = section, index
        self.source = self.from_layer(net)
        self.scale_wh = bool(section.int("scale_wh", 0))
        self.activation = parse_activation(self, "linear")
        super().__init__(section, in_shape, net, index)

    def setup(self, in_shape, net):
        c, h, w = self.in_shape = tuple(in_shape)
        self.out_shape = oc, oh, ow = net.layers[self.source].out_shape
        if self.scale_wh and (c, h, w) != (1, oh, ow):
            raise self.error(f"scale_wh=1 needs a 1 x {ow} x {oh} input (one factor per pixel of layer "
                             f"{self.source}), the input is {c} x {w} x {h}", "scale_wh")
        if not self.scale_wh and (c, h, w) != (oc, 1, 1):
            raise self.error(f"needs a {oc} x 1 x 1 input (one factor per channel of layer {self.source}), "
                             f"the input is {c} x {w} x {h}", "from")

    def describe(self):
        c, h, w = self.out_shape
        return f"scale Layer: {self.source}  ({'wh' if self.scale_wh else 'channels'})   {w:4d} x{h:4d} x{c:4d}"

    def forward(self, x, net):
        out = self.output_buffer(x.shape[0])
        np.multiply(net.layers[self.source].output, x, out=out)   # x broadcasts over pixels or channels
        activate_array(out.reshape(-1), ACTIVATIONS[self.activation])
        return out

    def backward(self, net):
        """Each factor's delta gathers delta * the value it scaled; the scaled layer's delta gets delta times
        its factor (both added)."""
        backward.gradient_array32(self.output.reshape(-1), ACTIVATIONS[self.activation], self.delta.reshape(-1))
        source = net.layers[self.source]
        n, c, h, w = self.delta.shape
        factors = self.prev_input(net).reshape(n, -1, 1) if not self.scale_wh else \
            self.prev_input(net).reshape(n, 1, h * w)
        prev = self.prev_delta(net)
        # without a previous delta (the first layer), the factors' sums go to scratch
        factors_delta = np.zeros_like(factors) if prev is None else prev.reshape(factors.shape)
        backward.scale_channels_backward(self.delta.reshape(n, c, h * w), source.output.reshape(n, c, h * w), factors,
                                         factors_delta, source.delta.reshape(n, c, h * w), self.scale_wh)
