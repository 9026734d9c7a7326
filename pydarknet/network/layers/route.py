"""[route]: the outputs of earlier layers, concatenated along channels (one layer: just passed through).

The AlexeyAB fork's `groups=N group_id=K` takes only part K of N of each input (its channels
K*c/N .. (K+1)*c/N - 1): the CSP blocks of yolov4-tiny split a feature map this way.

A concatenation's sources write their outputs straight into their parts of the route's output (a Slot each,
given at setup to the layers no earlier route hosts), so that the route copies only what is not in place
already: yolov4-tiny's concatenations copied 1.6 ms of a 37 ms forward on a Zen 3 EPYC. For one image every
source may; for a batch, where a source's part is a run per image, only the convolutions whose fused store writes
them image by image and whose readers read them so (Convolutional.reads_by_image): yolov4-tiny's concatenations
copied 19.7 ms of a 189 ms forward of 8 images. Not while training, where a layer may change its input in place
(dropout) and the sources' outputs must stay their own."""
import math

import numpy as np

from .base import Layer, read_by_image, same_memory


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
        self.host_sources(net)

    def host_sources(self, net):
        """Give each source layer that no earlier route hosts its Slot in this route's output (a concatenation
        of whole outputs only); take back the slots of an earlier setup (a resize)."""
        sources = [net.layers[i] for i in self.reads_layers]
        for source in sources:
            if source.slot is not None and source.slot.route is self:
                source.slot = None
        if self.groups != 1 or len(sources) < 2:
            return
        start = 0
        for source in sources:
            size = math.prod(source.out_shape)
            if source.slot is None:
                source.slot = Slot(self, start, size, net)
            start += size

    @property
    def keeps_output(self):
        """One source (or a group of its channels where forward finds it may) is handed on as a view."""
        return len(self.reads_layers) > 1

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
        if len(parts) == 1 and (self.groups == 1 or parts[0].flags.c_contiguous or (
                not (net.train or net.keep_for_backward) and read_by_image(self, net))):
            # one source, or a group of its channels: a view, not a copy, where each image's group lies in one run
            # (one image) or, in inference, the readers read one image at a time (backward passes take the batch)
            return parts[0].reshape((batch,) + self.out_shape)
        out = self.output_buffer(batch)
        flat = out.reshape(batch, -1)
        start = 0
        for part in parts:
            place = flat[:, start:start + part.shape[1]]
            if not same_memory(part, place):   # not written in place through its Slot
                place[...] = part
            start += part.shape[1]
        return out

    def backward(self, net):
        """Each source layer's slice of the delta, added to that layer's delta (its part of it)."""
        batch = self.delta.shape[0]
        flat = self.delta.reshape(batch, -1)
        offset = 0
        for part in self.source_parts(net, batch, "delta"):
            part += flat[:, offset:offset + part.shape[1]]
            offset += part.shape[1]


class Slot:
    """A source layer's part of a route's output: elements start .. start + size of each image's."""

    def __init__(self, route, start, size, net):
        self.route, self.start, self.size, self.net = route, start, size, net

    def array(self, shape, dtype):
        """The part as an array of `shape` (batch, ...): for a batch, a view whose images are runs of the route's
        output, each contiguous, not the whole; None where the layer keeps an output of its own: while training,
        for another dtype or another size (a layer's scratch)."""
        batch = shape[0]
        if self.net.train or np.dtype(dtype) != np.float32 or math.prod(shape[1:]) != self.size:
            return None
        images = self.route.output_buffer(batch).reshape(batch, -1)
        return images[:, self.start:self.start + self.size].reshape(shape)
