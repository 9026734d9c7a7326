"""[normalization] (or [lrn]): local response normalisation across channels; [l2norm]: each pixel's channel
vector divided by its L2 norm."""
import numpy as np
from ...kernels import backward
from ...kernels.normalization import l2_normalize, local_response_norm
from .base import Layer


class Normalization(Layer):
    type = "normalization"
    names = ("normalization", "lrn")

    def __init__(self, section, in_shape, net, index):
        self.section, self.index = section, index
        s = section
        self.alpha = float(np.float32(s.float("alpha", 0.0001)))
        self.beta = float(np.float32(s.float("beta", 0.75)))
        self.kappa = float(np.float32(s.float("kappa", 1.0)))
        self.size = s.int("size", 5)
        if self.size < 1:
            raise self.error(f"size={self.size} must be positive", "size")
        super().__init__(section, in_shape, net, index)

    def setup(self, in_shape, net):
        self.in_shape = self.out_shape = tuple(in_shape)
        self.need_image_input()

    def describe(self):
        c, h, w = self.in_shape
        return f"Local Response Normalization Layer: {w} x {h} x {c} image, {self.size} size"

    def forward(self, x, net):
        out = self.output_buffer(x.shape[0])
        local_response_norm(x, self.size, np.float32(self.alpha), np.float32(self.beta), np.float32(self.kappa),
                            out)
        return out

    def backward(self, net):
        """darknet's approximation: delta times norm^-beta, as if the norm did not depend on the input."""
        prev = self.prev_delta(net)
        if prev is not None:
            backward.lrn_backward(self.prev_input(net), self.size, np.float32(self.alpha), np.float32(self.beta),
                                  np.float32(self.kappa), self.delta, prev)


class L2norm(Layer):
    type = "l2norm"
    names = ("l2norm",)

    def __init__(self, section, in_shape, net, index):
        self.section, self.index = section, index
        super().__init__(section, in_shape, net, index)

    def setup(self, in_shape, net):
        self.in_shape = self.out_shape = tuple(in_shape)
        self.inputs = int(np.prod(self.in_shape))

    def describe(self):
        return f"l2norm                                         {self.inputs:4d}"

    def forward(self, x, net):
        batch = x.shape[0]
        c, h, w = self.in_shape
        out = self.output_buffer(batch)
        self.scales = np.empty_like(out)
        l2_normalize(x.reshape(batch, c, h * w), out.reshape(batch, c, h * w), self.scales.reshape(batch, c, h * w))
        return out

    def backward(self, net):
        """darknet passes the delta through unchanged (its CPU backward ignores the normalisation)."""
        self.add_delta_to_previous(net)
