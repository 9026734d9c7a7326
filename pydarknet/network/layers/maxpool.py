"""[maxpool]: the maximum over size x size windows every `stride` pixels (darknet's padding rule).

The AlexeyAB fork adds `stride_x`/`stride_y` (default: stride), `maxpool_depth=1` (the maximum across
channels instead: `out_channels` groups of every out_channels-th channel, size and stride unused), and
[local_avgpool]: the same windows averaged (over the pixels inside the image)."""
import numpy as np
from ...kernels import backward
from ...kernels.pool import local_avgpool, maxpool, maxpool_depth
from .base import Layer, same_memory

NO_ARGMAX = np.empty((0, 0, 0, 0), np.int32)


class Maxpool(Layer):
    type = "maxpool"
    names = ("maxpool", "max")

    def __init__(self, section, in_shape, net, index):
        self.section, self.index = section, index
        self.stride = section.int("stride", 1)
        self.stride_x = section.int("stride_x", self.stride)
        self.stride_y = section.int("stride_y", self.stride)
        self.size = section.int("size", self.stride)
        self.padding = section.int("padding", self.size - 1)
        self.depth = False
        if self.type == "maxpool":   # options [local_avgpool] does not have
            self.depth = bool(section.int("maxpool_depth", 0))
            for key in ("antialiasing", "maxpool_zero_nonmax"):
                if section.int(key, 0):
                    raise self.error(f"{key}= is not supported", key)
        self.out_channels = section.int("out_channels", 1) if self.depth else 0
        if self.size < 1 or self.stride_x < 1 or self.stride_y < 1:
            raise self.error("size and stride must be positive")
        if self.depth and self.out_channels < 1:
            raise self.error(f"out_channels={self.out_channels} must be positive", "out_channels")
        super().__init__(section, in_shape, net, index)

    def setup(self, in_shape, net):
        c, h, w = self.in_shape = tuple(in_shape)
        self.need_image_input()
        if self.depth:
            self.out_shape = (self.out_channels, h, w)
            return
        out_h = (h + self.padding - self.size) // self.stride_y + 1
        out_w = (w + self.padding - self.size) // self.stride_x + 1
        self.out_shape = (c, out_h, out_w)

    def describe(self):
        c, h, w = self.in_shape
        oc, oh, ow = self.out_shape
        s = self.size
        if not self.depth and self.stride_x == self.stride_y and self.type == "maxpool":
            return f"max          {s} x {s} / {self.stride}  {w:4d} x{h:4d} x{c:4d}   ->  {ow:4d} x{oh:4d} x{c:4d}"
        # the fork's line
        name = "max-depth" if self.depth else ("max" if self.type == "maxpool" else "avg")
        square = self.stride_x == self.stride_y
        strides = f"{self.stride_x:2d}   " if square else f"{self.stride_x:2d}x{self.stride_y:2d}"
        flops = s * s * c * oh * ow / 1e9
        return f"{name:<17s}{s:2d}x{s:2d}/{strides} {w:4d} x{h:4d} x{c:4d} -> {ow:4d} x{oh:4d} x{oc:4d} {flops:5.3f} BF"

    pooled_from = ()   # (first channel, output) of each convolution that pooled into ours this pass (pools_in_place)

    def pools_in_place(self, net):
        """Whether the convolutions that make this layer's input may pool into its output in their own last pass
        (inference, a plain max pool): the layer before, or in the fast modes' fused store the parts of the
        [route] before that are written in place; forward then only checks that they made its whole input."""
        return not (net.train or net.keep_for_backward) and self.type == "maxpool" and not self.depth

    def pooled_by(self, first, output):
        """A convolution pooled its `output`, channels `first`.. of this layer's input, into this layer's output."""
        self.pooled_from += ((first, output),)

    def made_of(self, x, parts, net):
        """Whether `parts` (pooled_by's, this pass) are x's channels, its very memory, whole (made_of). The answer is
        kept as the layer's plan in net.plans for the same arrays, which the convolutions' plans hand over pass
        after pass: looking at the memory took longer than some layers' products."""
        kept = net.plans.get(id(self))
        if kept is not None and kept[0] is x and len(kept[1]) == len(parts) and all(
                first == other and array is theirs for (first, array), (other, theirs) in zip(kept[1], parts)):
            return True
        if not made_of(x, sorted(parts, key=lambda part: part[0])):
            return False
        net.plans[id(self)] = (x, parts)
        return True

    def forward(self, x, net):
        out = self.output_buffer(x.shape[0])
        done, self.pooled_from = self.pooled_from, ()
        if done and not net.train and self.made_of(x, done, net):
            return out
        if net.train or net.keep_for_backward:   # where each maximum came from (int32, reused like the output)
            argmax = self.__dict__.get("_argmax")
            if argmax is None or argmax.shape != out.shape:
                argmax = self._argmax = np.empty(out.shape, np.int32)
        else:
            argmax = NO_ARGMAX
        self.argmax = argmax
        if self.depth:
            maxpool_depth(x, out, argmax, argmax is not NO_ARGMAX)
        else:
            maxpool(x, self.size, self.stride_y, self.stride_x, self.padding, out, argmax, argmax is not NO_ARGMAX)
        return out

    def backward(self, net):
        """Each output's delta goes to the input pixel its maximum came from (added)."""
        prev = self.prev_delta(net)
        if prev is not None:
            backward.maxpool_backward(self.delta, self.argmax, prev)


class LocalAvgpool(Maxpool):
    type = "local_avgpool"
    names = ("local_avgpool",)

    def forward(self, x, net):
        out = self.output_buffer(x.shape[0])
        local_avgpool(x, self.size, self.stride_y, self.stride_x, self.padding, out)
        return out

    def backward(self, net):
        prev = self.prev_delta(net)
        if prev is not None:
            backward.local_avgpool_backward(self.delta, self.size, self.stride_y, self.stride_x, self.padding, prev)


def made_of(x, parts):
    """Whether the arrays of `parts` ((first channel, array), by channel) are x's channels, its very memory, whole."""
    batch, channels = x.shape[0], x.shape[1]
    per_channel = x[0, 0].size
    flat = x.reshape(batch, -1)
    at = 0
    for first, part in parts:
        size = part.size // batch
        if first != at or not same_memory(part.reshape(batch, size), flat[:, at * per_channel:at * per_channel + size]):
            return False
        at += size // per_channel
    return at == channels
