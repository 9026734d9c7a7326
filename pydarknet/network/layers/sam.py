"""[sam]: the AlexeyAB fork's spatial attention (YOLOv4's modified SAM): the input times an earlier layer's
output, element by element (both the same shape), then an activation."""
import numpy as np

from ...kernels import backward
from ...kernels.activations import CODE as ACTIVATIONS, activate_array
from .base import Layer
from .convolutional import parse_activation


class Sam(Layer):
    type = "sam"
    names = ("sam",)

    def __init__(self, section, in_shape, net, index):
        self.section, self.index = section, index
        self.source = self.from_layer(net)
        self.activation = parse_activation(self, "linear")
        super().__init__(section, in_shape, net, index)

    def setup(self, in_shape, net):
        self.in_shape = tuple(in_shape)
        self.need_image_input()
        self.out_shape = net.layers[self.source].out_shape
        if self.out_shape != self.in_shape:
            raise self.error(f"layer {self.source} outputs {self.out_shape}, the input is {self.in_shape}: "
                             "they must be the same shape", "from")

    def describe(self):
        c, h, w = self.out_shape
        return f"scale Layer: {self.source}  (sam)   {w:4d} x{h:4d} x{c:4d}"

    def forward(self, x, net):
        out = self.output_buffer(x.shape[0])
        np.multiply(x, net.layers[self.source].output, out=out)
        activate_array(out.reshape(-1), ACTIVATIONS[self.activation])
        return out

    def backward(self, net):
        """delta * the other factor to each factor's delta (added to both, as the fork's GPU code)."""
        backward.gradient_array32(self.output.reshape(-1), ACTIVATIONS[self.activation], self.delta.reshape(-1))
        source = net.layers[self.source]
        prev = self.prev_delta(net)
        if prev is not None:
            prev += self.delta * source.output
        source.delta.reshape(self.delta.shape)[...] += self.prev_input(net) * self.delta
