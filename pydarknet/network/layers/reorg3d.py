"""[reorg3d]: the AlexeyAB fork's reorg (its reorg_layer.c; [reorg] keeps pjreddie's): space to depth, each
stride x stride block of pixels into stride^2 channels. Output channel q*c + k at pixel (j, i) is input
channel k at (j*stride + q // stride, i*stride + q % stride)."""
import numpy as np

from ...kernels.reorg import reorg
from .base import Layer


class Reorg3d(Layer):
    type = "reorg3d"
    names = ("reorg3d",)

    def __init__(self, section, in_shape, net, index):
        self.section, self.index = section, index
        self.stride = section.int("stride", 1)
        if self.stride < 1:
            raise self.error(f"stride={self.stride}: must be at least 1", "stride")
        if section.int("reverse", 0):   # the fork's reverse pass indexes past the end of its arrays
            raise self.error("reverse=1 is not supported", "reverse")
        super().__init__(section, in_shape, net, index)

    def setup(self, in_shape, net):
        c, h, w = self.in_shape = tuple(in_shape)
        self.need_image_input()
        s = self.stride
        if h % s or w % s:
            raise self.error(f"stride={s} needs an input size divisible by {s}, the input is {w} x {h}", "stride")
        self.out_shape = (c * s * s, h // s, w // s)

    def describe(self):
        c, h, w = self.in_shape
        oc, oh, ow = self.out_shape
        return f"reorg                    /{self.stride:2d} {w:4d} x{h:4d} x{c:4d} -> {ow:4d} x{oh:4d} x{oc:4d}"

    def forward(self, x, net):
        out = self.output_buffer(x.shape[0])
        oc, oh, ow = self.out_shape
        # reorg's gather, on the output's c x h x w: each output value fetched from its input pixel
        reorg(x.reshape(-1), ow, oh, oc, x.shape[0], self.stride, 0, out.reshape(-1))
        return out

    def backward(self, net):
        """Every delta back to the input pixel its value came from (the shuffle's inverse), added."""
        prev = self.prev_delta(net)
        if prev is None:
            return
        oc, oh, ow = self.out_shape
        back = np.empty(prev.shape, np.float32)   # every element is written: the shuffle is one to one
        reorg(self.delta.reshape(-1), ow, oh, oc, self.delta.shape[0], self.stride, 1, back.reshape(-1))
        prev += back
