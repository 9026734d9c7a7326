"""[activation]: an activation function on its own (default linear), and [logistic]: the logistic function
(darknet's logistic cross-entropy layer, whose loss only matters in training)."""
import numpy as np

from ..kernels.activations import CODE as ACTIVATIONS, LOGISTIC, activate_array
from .base import Layer
from .convolutional import parse_activation


class Activation(Layer):
    type = "activation"
    names = ("activation",)

    def __init__(self, section, in_shape, net, index):
        self.section, self.index = section, index
        self.activation = parse_activation(self, "linear")
        super().__init__(section, in_shape, net, index)

    def setup(self, in_shape, net):
        self.in_shape = self.out_shape = tuple(in_shape)
        self.inputs = int(np.prod(self.in_shape))

    def describe(self):
        return f"Activation Layer: {self.inputs} inputs"

    def forward(self, x, net):
        out = self.output_buffer(x.shape[0])
        out[...] = x
        activate_array(out.reshape(-1), ACTIVATIONS[self.activation])
        return out


class Logistic(Activation):
    type = "logistic"
    names = ("logistic",)

    def __init__(self, section, in_shape, net, index):
        self.section, self.index = section, index
        self.activation = "logistic"
        Layer.__init__(self, section, in_shape, net, index)

    def describe(self):
        return f"logistic x entropy                             {self.inputs:4d}"
