"""[upsample]: nearest-neighbour upsampling by `stride` (a negative stride sums blocks down instead)."""
import numpy as np

from ...kernels import backward
from ...kernels.resample import downsample, upsample
from .base import Layer


class Upsample(Layer):
    type = "upsample"
    names = ("upsample",)

    def __init__(self, section, in_shape, net, index):
        self.section, self.index = section, index
        stride = section.int("stride", 2)
        if stride == 0:
            raise self.error("stride must not be 0", "stride")
        self.reverse = stride < 0
        self.stride = abs(stride)
        self.scale = section.float("scale", 1.0)
        super().__init__(section, in_shape, net, index)

    def setup(self, in_shape, net):
        c, h, w = self.in_shape = tuple(in_shape)
        self.need_image_input()
        if self.reverse:
            self.out_shape = (c, h // self.stride, w // self.stride)
        else:
            self.out_shape = (c, h * self.stride, w * self.stride)

    def describe(self):
        c, h, w = self.in_shape
        _, oh, ow = self.out_shape
        word = "downsample" if self.reverse else "upsample  "
        return f"{word}         {self.stride:2d}x  {w:4d} x{h:4d} x{c:4d}   ->  {ow:4d} x{oh:4d} x{c:4d}"

    def forward(self, x, net):
        out = self.output_buffer(x.shape[0])
        (downsample if self.reverse else upsample)(x, self.stride, np.float32(self.scale), out)
        return out

    def backward(self, net):
        """Upsampling: each input pixel gets scale times the sum of its block's deltas; the block sum (negative
        stride): every pixel of a block gets scale times the block's delta. Added to the previous delta."""
        prev = self.prev_delta(net)
        if prev is None:
            return
        if self.reverse:
            backward.downsample_backward(self.delta, self.stride, np.float32(self.scale), prev)
        else:
            backward.upsample_backward(self.delta, self.stride, np.float32(self.scale), prev)
