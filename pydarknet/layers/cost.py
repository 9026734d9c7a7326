"""[cost]: the loss on the previous layer's output against the truth (training only).

At inference darknet's forward returns at once, so this layer's output is never written: it stays zero
(and the network's output is the layer before it)."""
import numpy as np

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
        out[...] = 0  # the loss itself (training) is not computed here yet
        return out
