"""[shortcut]: add an earlier layer's output to the input (ResNet's residual), then an activation."""
import numpy as np

from ..kernels.activations import CODE as ACTIVATIONS
from ..kernels.backward import axpy, gradient_array32, shortcut_backward
from ..kernels.resample import shortcut
from .base import Layer
from .convolutional import parse_activation


class Shortcut(Layer):
    type = "shortcut"
    names = ("shortcut",)

    def __init__(self, section, in_shape, net, index):
        self.section, self.index = section, index
        if not section.has("from"):
            raise self.error("needs from=", "from")
        self.source = self.layer_index(section.int("from"), net, "from")
        self.reads_layers = [self.source]
        self.activation = parse_activation(self, "linear")
        self.alpha = section.float("alpha", 1.0)
        self.beta = section.float("beta", 1.0)
        super().__init__(section, in_shape, net, index)

    def setup(self, in_shape, net):
        self.in_shape = self.out_shape = tuple(in_shape)
        self.need_image_input()

    def describe(self):
        c, h, w = self.out_shape
        c2, h2, w2 = self.in_shape
        return f"res  {self.source:3d}                {w2:4d} x{h2:4d} x{c2:4d}   ->  {w:4d} x{h:4d} x{c:4d}"

    def forward(self, x, net):
        out = self.output_buffer(x.shape[0])
        shortcut(x, net.layers[self.source].output, np.float32(self.alpha), np.float32(self.beta),
                 ACTIVATIONS[self.activation], out)
        return out

    def backward(self, net):
        """darknet's backward_shortcut_layer: the activation's gradient, then alpha * delta added to the input's
        delta (over the whole output, as darknet, though the forward scales only the overlap by alpha) and
        beta * delta to the `from` layer's delta where the shapes overlap."""
        gradient_array32(self.output.reshape(-1), ACTIVATIONS[self.activation], self.delta.reshape(-1))
        prev = self.prev_delta(net)
        if prev is not None:
            axpy(np.float32(self.alpha), self.delta.reshape(-1), prev.reshape(-1))
        source = net.layers[self.source]
        batch = self.delta.shape[0]
        shortcut_backward(self.delta, np.float32(self.beta), source.delta.reshape((batch,) + source.out_shape))
