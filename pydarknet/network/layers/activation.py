"""[activation]: an activation function on its own (default linear), and [logistic]: the logistic function
(darknet's logistic cross-entropy layer, whose loss only matters in training)."""
import numpy as np

from ...files.config import DarknetError
from ...kernels import backward, loss
from ...kernels.activations import CODE as ACTIVATIONS, activate_array
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
        if isinstance(self, Logistic) and net.train and net.truth is not None:
            self.loss_forward(out, net)
        return out

    def backward(self, net):
        """The activation's gradient, then the delta added to the previous layer's (darknet copies it over)."""
        backward.gradient_array32(self.output.reshape(-1), ACTIVATIONS[self.activation], self.delta.reshape(-1))
        self.add_delta_to_previous(net)


class Logistic(Activation):
    type = "logistic"
    names = ("logistic",)

    def __init__(self, section, in_shape, net, index):
        self.section, self.index = section, index
        self.activation = "logistic"
        Layer.__init__(self, section, in_shape, net, index)

    def describe(self):
        return f"logistic x entropy                             {self.inputs:4d}"

    def loss_forward(self, out, net):
        """darknet's logistic_x_ent_cpu against net.truth: delta = truth - p (minus the gradient of the binary
        cross-entropy with respect to the logistic's input), cost = sum of the cross-entropies."""
        batch = out.shape[0]
        truth = np.ascontiguousarray(net.truth.reshape(batch, -1))
        if truth.shape[1] != self.inputs:
            raise DarknetError(f"layer {self.index} ([logistic], {self.inputs} inputs): the truth has "
                               f"{truth.shape[1]} values per image")
        errors = np.empty(out.size, np.float32)
        self.cost = np.float32(loss.logistic_cross_entropy(out.reshape(-1), truth.reshape(-1), self.delta.reshape(-1),
                                                           errors))

    def backward(self, net):
        """The delta is already with respect to the input: added to the previous layer's."""
        self.add_delta_to_previous(net)
