"""[route]: the outputs of earlier layers, concatenated along channels (one layer: just passed through).

The AlexeyAB fork's `groups=N group_id=K` takes only part K of N of each input (its channels
K*c/N .. (K+1)*c/N - 1): the CSP blocks of yolov4-tiny split a feature map this way."""
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
        self.groups = section.int("groups", 1)
        self.group_id = section.int("group_id", 0)
        if self.groups < 1:
            raise self.error(f"groups={self.groups} must be positive", "groups")
        if not 0 <= self.group_id < self.groups:
            raise self.error(f"group_id={self.group_id} must be in 0..{self.groups - 1}", "group_id")
        super().__init__(section, in_shape, net, index)

    def setup(self, in_shape, net):
        self.in_shape = tuple(in_shape)
        shapes = [net.layers[i].out_shape for i in self.reads_layers]
        for i, s in zip(self.reads_layers, shapes):
            if s[0] % self.groups:
                raise self.error(f"groups={self.groups} does not divide the {s[0]} channels of layer {i}",
                                 "groups")
        c, h, w = shapes[0]
        if all(s[1:] == (h, w) for s in shapes):
            self.out_shape = (sum(s[0] for s in shapes) // self.groups, h, w)
        else:  # darknet concatenates the flat outputs and reports no image shape
            self.out_shape = (sum(int(np.prod(s)) for s in shapes) // self.groups, 1, 1)

    def describe(self):
        layers = "route " + "".join(f" {i}" for i in self.reads_layers)
        if self.groups == 1:
            return layers
        c, h, w = self.out_shape
        return f"{layers:<28s}{self.group_id}/{self.groups} -> {w:4d} x{h:4d} x{c:4d}"

    def source_parts(self, net, batch, what):
        """The part this layer takes of each source layer's `what` ("output" or "delta"), flat per image."""
        parts = []
        for i in self.reads_layers:
            flat = getattr(net.layers[i], what).reshape(batch, -1)
            size = flat.shape[1] // self.groups
            parts.append(flat[:, size * self.group_id:size * (self.group_id + 1)])
        return parts

    def forward(self, x, net):
        batch = x.shape[0]
        parts = self.source_parts(net, batch, "output")
        if len(parts) == 1 and (self.groups == 1 or parts[0].flags.c_contiguous):
            # one source (or one image's group of its channels, which lie side by side): a view, not a copy
            return parts[0].reshape((batch,) + self.out_shape)
        out = self.output_buffer(batch)
        np.concatenate(parts, axis=1, out=out.reshape(batch, -1))
        return out

    def backward(self, net):
        """Each source layer's slice of the delta, added to that layer's delta (its part of it)."""
        batch = self.delta.shape[0]
        flat = self.delta.reshape(batch, -1)
        offset = 0
        for part in self.source_parts(net, batch, "delta"):
            part += flat[:, offset:offset + part.shape[1]]
            offset += part.shape[1]
