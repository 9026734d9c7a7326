"""[avgpool] (or [avg]): the mean of each channel over the whole image, out (c, 1, 1)."""
from ...kernels import backward
from ...kernels.avgpool import global_avgpool
from .base import Layer


class Avgpool(Layer):
    type = "avgpool"
    names = ("avgpool", "avg")

    def __init__(self, section, in_shape, net, index):
        self.section, self.index = section, index
        super().__init__(section, in_shape, net, index)

    def setup(self, in_shape, net):
        c, h, w = self.in_shape = tuple(in_shape)
        self.need_image_input()
        self.out_shape = (c, 1, 1)

    def describe(self):
        c, h, w = self.in_shape
        return f"avg                     {w:4d} x{h:4d} x{c:4d}   ->  {c:4d}"

    def forward(self, x, net):
        out = self.output_buffer(x.shape[0])
        global_avgpool(x, out.reshape(x.shape[0], -1))
        return out

    def backward(self, net):
        """Every pixel of a channel gets the channel's delta / (h*w), added."""
        prev = self.prev_delta(net)
        if prev is not None:
            backward.avgpool_backward(self.delta.reshape(self.delta.shape[0], -1), prev)
