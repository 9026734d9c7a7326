"""[cost]: the loss on the previous layer's output against the truth (training only).

At inference darknet's forward returns at once, so this layer's output is never written: it stays zero
(and the network's output is the layer before it)."""
import numpy as np

from ...files.config import DarknetError
from ...kernels import backward, loss
from .base import Layer

COST_TYPES = ("seg", "sse", "masked", "smooth", "L1", "wgan")


class Cost(Layer):
    type = "cost"
    names = ("cost",)

    def __init__(self, section, in_shape, net, index):
        self.section, self.index = section, index
        s = section
        self.cost_type = s.str("type", "sse")
        if self.cost_type not in COST_TYPES:
            raise self.error(f"unknown cost type '{self.cost_type}' (known: {', '.join(COST_TYPES)})", "type")
        self.scale = s.float("scale", 1.0)
        self.ratio = s.float("ratio", 0.0)
        self.noobject_scale = s.float("noobj", 1.0)
        self.thresh = s.float("thresh", 0.0)
        self.cost = 0.0
        super().__init__(section, in_shape, net, index)

    def setup(self, in_shape, net):
        self.in_shape = tuple(in_shape)
        self.inputs = int(np.prod(self.in_shape))
        self.out_shape = (self.inputs, 1, 1)

    def describe(self):
        return f"cost                                           {self.inputs:4d}"

    def forward(self, x, net):
        out = self.output_buffer(x.shape[0])
        if net.train and net.truth is not None:
            self.loss_forward(x, out, net)
            return out
        out[...] = 0
        return out

    # -- training ------------------------------------------------------------------------------------------
    def loss_forward(self, x, out, net):
        """darknet's forward_cost_layer (CPU): the output is the per-value error, delta = truth - input for
        sse (and seg, masked, wgan: all L2 on the CPU), the sign for L1, darknet's smooth L1; cost = sum of
        the errors. masked: where the truth is -1234 the input is set to it (in place, as darknet), no error."""
        batch = x.shape[0]
        truth = np.ascontiguousarray(net.truth.reshape(batch, -1))
        if truth.shape[1] != self.inputs:
            raise DarknetError(f"layer {self.index} ([cost], {self.inputs} inputs): the truth has "
                               f"{truth.shape[1]} values per image")
        pred = x.reshape(-1)
        if self.cost_type == "masked":
            pred[truth.reshape(-1) == loss.SECRET_NUM] = loss.SECRET_NUM
        kernel = {"smooth": loss.cost_smooth_l1, "L1": loss.cost_l1}.get(self.cost_type, loss.cost_l2)
        self.cost = np.float32(kernel(pred, truth.reshape(-1), self.delta.reshape(-1), out.reshape(-1)))

    def backward(self, net):
        """scale * delta added to the previous layer's delta."""
        prev = self.prev_delta(net)
        if prev is not None:
            backward.axpy(np.float32(self.scale), self.delta.reshape(-1), prev.reshape(-1))
