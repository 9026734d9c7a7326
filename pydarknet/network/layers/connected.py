"""[connected] (or [conn]): a fully connected layer, outputs = W x + b, optional batch-norm, then an activation.

The input is taken flat, whatever its shape (darknet's `inputs`); the output is flat too, (outputs, 1, 1).
The product sums in darknet's own order (kernels/dense.py), so outputs match darknet's bit for bit.
"""
import numpy as np

from ...kernels import backward
from ...kernels.activations import CODE as ACTIVATIONS
from ...kernels.conv import normalize_scale_bias_activate
from ...kernels.dense import dense_nt
from .base import Layer, zeros
from ...kernels.products import gemm_nn, gemm_tn
from .convolutional import batchnorm_backward_layer, batchnorm_forward_train, parse_activation


class Connected(Layer):
    type = "connected"
    names = ("connected", "conn")
    trainable = (("biases", "bias_updates", False), ("scales", "scale_updates", False),
                 ("weights", "weight_updates", True))

    def __init__(self, section, in_shape, net, index):
        self.section, self.index = section, index
        self.outputs = section.int("output", 1)
        self.activation = parse_activation(self, "logistic")
        self.batch_normalize = bool(section.int("batch_normalize", 0))
        if self.outputs < 1:
            raise self.error(f"output={self.outputs} must be positive", "output")
        self.inputs = int(np.prod(in_shape))
        if self.inputs < 1:
            raise self.error("the layer before it has no outputs")
        n = self.outputs
        self.biases = zeros(n)
        self.weights = zeros(n, self.inputs)  # one row of input weights per output, as darknet stores them
        if self.batch_normalize:
            self.scales = np.ones(n, np.float32)
            self.rolling_mean = zeros(n)
            self.rolling_variance = zeros(n)
        super().__init__(section, in_shape, net, index)

    def setup(self, in_shape, net):
        self.in_shape = tuple(in_shape)
        inputs = int(np.prod(self.in_shape))
        if inputs != self.inputs:
            raise self.error(f"cannot take {inputs} inputs: its weights were made for {self.inputs} "
                             "(a network with [connected] layers cannot be resized)")
        self.out_shape = (self.outputs, 1, 1)

    def initialize(self, rng):
        """darknet's start: uniform weights in +-sqrt(2 / inputs), zero biases."""
        scale = np.sqrt(2.0 / self.weights.shape[1])
        self.weights[...] = scale * rng.uniform(-1, 1, self.weights.shape)

    def weight_arrays(self, transpose=False, loading=False):
        # Files whose version major or minor exceeds 1000 store the matrix as (inputs, outputs).
        return [self.biases, self.weights.T if transpose else self.weights] + self.batchnorm_arrays(loading)

    def describe(self):
        return f"connected                            {self.inputs:4d}  ->  {self.outputs:4d}"

    def forward(self, x, net):
        batch = x.shape[0]
        out = self.output_buffer(batch)
        flat = out.reshape(batch, self.outputs)
        dense_nt(x.reshape(batch, self.inputs), self.weights, flat)
        rows = flat.reshape(batch, self.outputs, 1)
        if self.batch_normalize and net.train:
            batchnorm_forward_train(self, rows, self.activation, net)
        elif self.batch_normalize:
            normalize_scale_bias_activate(rows, self.rolling_mean, self.rolling_variance, self.scales,
                                          self.biases, ACTIVATIONS[self.activation], True, net.darknet == "ab")
        else:
            normalize_scale_bias_activate(rows, self.biases, self.biases, self.biases, self.biases,
                                          ACTIVATIONS[self.activation], False)
        return out

    # -- training ------------------------------------------------------------------------------------------
    def backward(self, net):
        """darknet's backward_connected_layer: activation gradient, batch-norm or bias, then
        weight_updates += delta^T x and (when there is a previous layer) its delta += delta W."""
        batch = self.delta.shape[0]
        delta = self.delta.reshape(batch, self.outputs)
        backward.gradient_array32(self.output.reshape(-1), ACTIVATIONS[self.activation], delta.reshape(-1))
        if self.batch_normalize:
            batchnorm_backward_layer(self, delta.reshape(batch, self.outputs, 1))
        else:
            backward.backward_bias(self.bias_updates, delta.reshape(batch, self.outputs, 1))
        x = net.input.reshape(batch, self.inputs)
        gemm_tn(delta, x, self.weight_updates, accumulate=True)
        if net.delta is not None:
            gemm_nn(delta, self.weights, net.delta.reshape(batch, self.inputs), accumulate=True)
