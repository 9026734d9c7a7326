"""[maxpool]: the maximum over size x size windows every `stride` pixels (darknet's padding rule)."""
import numpy as np

from ..kernels.backward import maxpool_backward
from ..kernels.pool import maxpool
from .base import Layer

NO_ARGMAX = np.empty((0, 0, 0, 0), np.int32)


class Maxpool(Layer):
    type = "maxpool"
    names = ("maxpool", "max")

    def __init__(self, section, in_shape, net, index):
        self.stride = section.int("stride", 1)
        self.size = section.int("size", self.stride)
        self.padding = section.int("padding", self.size - 1)
        self.section, self.index = section, index
        if self.size < 1 or self.stride < 1:
            raise self.error("size and stride must be positive")
        super().__init__(section, in_shape, net, index)

    def setup(self, in_shape, net):
        c, h, w = self.in_shape = tuple(in_shape)
        self.need_image_input()
        out_h = (h + self.padding - self.size) // self.stride + 1
        out_w = (w + self.padding - self.size) // self.stride + 1
        self.out_shape = (c, out_h, out_w)

    def describe(self):
        c, h, w = self.in_shape
        _, oh, ow = self.out_shape
        s = self.size
        return f"max          {s} x {s} / {self.stride}  {w:4d} x{h:4d} x{c:4d}   ->  {ow:4d} x{oh:4d} x{c:4d}"

    def forward(self, x, net):
        out = self.output_buffer(x.shape[0])
        if net.train:   # where each maximum came from (int32, reused from call to call like the output)
            argmax = self.__dict__.get("_argmax")
            if argmax is None or argmax.shape != out.shape:
                argmax = self._argmax = np.empty(out.shape, np.int32)
        else:
            argmax = NO_ARGMAX
        self.argmax = argmax
        maxpool(x, self.size, self.stride, self.padding, out, argmax, net.train)
        return out

    def backward(self, net):
        """Each output's delta goes to the input pixel its maximum came from (added)."""
        prev = self.prev_delta(net)
        if prev is not None:
            maxpool_backward(self.delta, self.argmax, prev)
