"""[route]: the outputs of earlier layers, concatenated along channels (one layer: just passed through)."""
import numpy as np

from .base import Layer


class Route(Layer):
    type = "route"
    names = ("route",)

    def __init__(self, section, in_shape, net, index):
        self.section, self.index = section, index
        values = section.ints("layers")
        if not values:
            raise self.error("needs layers=", "layers")
        self.reads_layers = [self.layer_index(v, net, "layers") for v in values]
        super().__init__(section, in_shape, net, index)

    def setup(self, in_shape, net):
        self.in_shape = tuple(in_shape)
        shapes = [net.layers[i].out_shape for i in self.reads_layers]
        c, h, w = shapes[0]
        if all(s[1:] == (h, w) for s in shapes):
            self.out_shape = (sum(s[0] for s in shapes), h, w)
        else:  # darknet concatenates the flat outputs and reports no image shape
            self.out_shape = (sum(int(np.prod(s)) for s in shapes), 1, 1)

    def describe(self):
        return "route " + "".join(f" {i}" for i in self.reads_layers)

    def forward(self, x, net):
        batch = x.shape[0]
        parts = [net.layers[i].output.reshape(batch, -1) for i in self.reads_layers]
        if len(parts) == 1:
            return parts[0].reshape((batch,) + self.out_shape)
        return np.concatenate(parts, axis=1).reshape((batch,) + self.out_shape)

    def backward(self, net):
        """Each source layer's slice of the delta, added to that layer's delta."""
        batch = self.delta.shape[0]
        flat = self.delta.reshape(batch, -1)
        offset = 0
        for i in self.reads_layers:
            source = net.layers[i]
            size = int(np.prod(source.out_shape))
            source.delta.reshape(batch, -1)[...] += flat[:, offset:offset + size]
            offset += size
