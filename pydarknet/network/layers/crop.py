"""[crop]: a crop_width x crop_height window of the input, rescaled from [0, 1] to [-1, 1] (out = 2*in - 1)
unless noadjust=1. At inference the window is centred and never flipped; in training darknet picks a random
offset and flips half the batches (angle, saturation, exposure and shift only act in its GPU path)."""
import numpy as np

from ...files.config import warn
from ...kernels.crop import crop
from .base import Layer


class Crop(Layer):
    type = "crop"
    names = ("crop",)

    def __init__(self, section, in_shape, net, index):
        self.section, self.index = section, index
        s = section
        self.crop_height = s.int("crop_height", 1)
        self.crop_width = s.int("crop_width", 1)
        self.flip = s.int("flip", 0)
        self.angle = s.float("angle", 0.0)
        self.saturation = s.float("saturation", 1.0)
        self.exposure = s.float("exposure", 1.0)
        self.shift = s.float("shift", 0.0)
        self.noadjust = s.int("noadjust", 0)
        for key in ("crop_height", "crop_width"):
            if getattr(self, key) < 1:
                raise self.error(f"{key}={getattr(self, key)} must be positive", key)
        c, h, w = in_shape
        # darknet keeps the height ratio to size the crop when the network is resized (for both sides)
        self.scale = np.float32(np.float32(self.crop_height) / np.float32(h)) if h else np.float32(0)
        super().__init__(section, in_shape, net, index)
        if self.crop_height > h or self.crop_width > w:
            warn(f"{section.where('crop_height')}: [crop] layer {index}: the {self.crop_width}x{self.crop_height} "
                 f"crop is larger than its {w}x{h} input: darknet then reads outside the image (neighbouring "
                 "channels, then memory that is not the input); pixels outside the whole input are taken as 0")

    def setup(self, in_shape, net):
        first = not hasattr(self, "out_shape")
        c, h, w = self.in_shape = tuple(in_shape)
        self.need_image_input()
        if first:
            self.out_shape = (c, self.crop_height, self.crop_width)
        else:  # darknet's resize_crop_layer
            out_h, out_w = int(np.float32(self.scale * np.float32(h))), int(np.float32(self.scale * np.float32(w)))
            if out_h < 1 or out_w < 1:
                raise self.error(f"resized to {w}x{h}, the crop would be {out_w}x{out_h}")
            self.out_shape = (c, out_h, out_w)

    def describe(self):
        c, h, w = self.in_shape
        _, out_h, out_w = self.out_shape
        return f"Crop Layer: {h} x {w} -> {out_h} x {out_w} x {c} image"

    def forward(self, x, net):
        c, h, w = self.in_shape
        _, out_h, out_w = self.out_shape
        scale, trans = (1.0, 0.0) if self.noadjust else (2.0, -1.0)
        if net.train:
            flip = bool(self.flip and np.random.randint(2))
            # C's rand() % m with m < 0 (crop larger than the input) takes the remainder of |m|
            dh = int(np.random.randint(abs(h - out_h + 1))) if h - out_h + 1 else 0
            dw = int(np.random.randint(abs(w - out_w + 1))) if w - out_w + 1 else 0
        else:
            flip = False
            dh = int((h - out_h) / 2)  # C's division truncates toward zero
            dw = int((w - out_w) / 2)
        out = self.output_buffer(x.shape[0])
        crop(x, dh, dw, flip, np.float32(scale), np.float32(trans), out)
        return out

    def backward(self, net):
        """No gradient flows through a crop (darknet's backward_crop_layer is empty)."""
