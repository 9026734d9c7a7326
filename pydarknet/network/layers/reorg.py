"""[reorg]: YOLOv2's passthrough shuffle, moving stride x stride blocks of pixels into channels.

This follows pjreddie's darknet exactly, including its well-known quirk: the non-reversed layer (the one
every YOLOv2 cfg uses) runs reorg_cpu in its *backward* direction on the input's c x h x w, i.e. it reads
the input as if it were a (c/s^2) x (h*s) x (w*s) tensor and gathers it into c x h x w order. The result
has the advertised (c*s^2) x (h/s) x (w/s) size but is not the textbook space-to-depth. The weights of
YOLOv2 were trained through this mapping, so it is what must be reproduced (the yolov2 golden case
checks it). `reverse=1` runs the forward direction, `flatten=1` only transposes planes to interleaved
channels (and back with reverse), `extra=N` copies the input and appends N zeros.
"""
import numpy as np

from ...kernels.reorg import flatten, reorg
from .base import Layer


class Reorg(Layer):
    type = "reorg"
    names = ("reorg",)

    def __init__(self, section, in_shape, net, index):
        self.section, self.index = section, index
        self.stride = section.int("stride", 1)
        self.reverse = section.int("reverse", 0)
        self.flatten = section.int("flatten", 0)
        self.extra = section.int("extra", 0)
        if self.stride < 1:
            raise self.error(f"stride={self.stride}: must be at least 1", "stride")
        if self.extra < 0:
            raise self.error(f"extra={self.extra}: must not be negative", "extra")
        if self.flatten and self.extra:
            raise self.error("flatten=1 and extra= together: darknet would copy past the end of the input",
                             "extra")
        super().__init__(section, in_shape, net, index)

    def setup(self, in_shape, net):
        c, h, w = self.in_shape = tuple(in_shape)
        self.need_image_input()
        s = self.stride
        self.inputs = c * h * w
        if self.extra:
            self.outputs = self.inputs + self.extra
            self.out_shape = (self.outputs, 1, 1)
            return
        if self.reverse:
            if c % (s * s):
                raise self.error(f"reverse=1 with stride={s} needs a multiple of {s * s} channels, "
                                 f"the input has {c}", "stride")
            self.out_shape = (c // (s * s), h * s, w * s)
        else:
            if h % s or w % s:
                raise self.error(f"stride={s} needs an input size divisible by {s}, the input is "
                                 f"{w} x {h}", "stride")
            if not self.flatten and c % (s * s):
                raise self.error(f"stride={s} needs a multiple of {s * s} channels (darknet's index "
                                 f"mapping is not one to one otherwise), the input has {c}", "stride")
            self.out_shape = (c * s * s, h // s, w // s)
        self.outputs = self.inputs

    def describe(self):
        if self.extra:
            return f"reorg              {self.inputs:4d}   ->  {self.outputs:4d}"
        c, h, w = self.in_shape
        oc, oh, ow = self.out_shape
        return f"reorg              /{self.stride:2d}  {w:4d} x{h:4d} x{c:4d}   ->  {ow:4d} x{oh:4d} x{oc:4d}"

    def forward(self, x, net):
        batch = x.shape[0]
        out = self.output_buffer(batch)
        src, dst = x.reshape(-1), out.reshape(-1)
        c, h, w = self.in_shape
        if self.flatten:
            flatten(src, h * w, c, batch, 0 if self.reverse else 1, dst)
        elif self.extra:
            flat = out.reshape(batch, -1)
            flat[:, :self.inputs] = x.reshape(batch, -1)
            flat[:, self.inputs:] = 0
        else:
            # pjreddie: forward=1 when reversed, forward=0 (the gather) when not
            reorg(src, w, h, c, batch, self.stride, 1 if self.reverse else 0, dst)
        return out

    def backward(self, net):
        """The adjoint of the shuffle (its inverse: every value goes back where it came from), added to the
        previous layer's delta; extra=: the first inputs' deltas only."""
        prev = self.prev_delta(net)
        if prev is None:
            return
        batch = self.delta.shape[0]
        c, h, w = self.in_shape
        if self.extra:
            prev.reshape(batch, -1)[...] += self.delta.reshape(batch, -1)[:, :self.inputs]
            return
        back = np.empty(prev.size, np.float32)
        src = self.delta.reshape(-1)
        if self.flatten:
            flatten(src, h * w, c, batch, 1 if self.reverse else 0, back)
        else:
            reorg(src, w, h, c, batch, self.stride, 0 if self.reverse else 1, back)
        prev.reshape(-1)[...] += back
