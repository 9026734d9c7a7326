"""[dropout]: at inference, the input passed on untouched (darknet makes this layer's output the previous
layer's output array). In training, each input is zeroed with `probability`, the others scaled by 1/(1-p)."""
import numpy as np
from ...kernels import backward
from .base import Layer


class Dropout(Layer):
    type = "dropout"
    names = ("dropout",)
    keeps_output = False   # hands its input on (changed in place while training)
    hands_input_on = True

    def __init__(self, section, in_shape, net, index):
        self.section, self.index = section, index
        # the AlexeyAB fork's default is .2, pjreddie's .5
        default = 0.2 if net.darknet == "ab" else 0.5
        self.probability = float(np.float32(section.float("probability", default)))
        for key in ("dropblock", "dropblock_size_rel", "dropblock_size_abs"):   # the fork's DropBlock
            if section.float(key, 0):
                raise self.error(f"{key}= (DropBlock) is not supported", key)
        if not 0 <= self.probability < 1:
            raise self.error(f"probability={self.probability} must be in [0, 1)", "probability")
        self.scale = np.float32(1.0 / (1.0 - self.probability))
        self.rand = None
        super().__init__(section, in_shape, net, index)

    def setup(self, in_shape, net):
        self.in_shape = self.out_shape = tuple(in_shape)
        self.inputs = int(np.prod(self.in_shape))

    def describe(self):
        return f"dropout       p = {self.probability:.2f}               {self.inputs:4d}  ->  {self.inputs:4d}"

    def forward(self, x, net):
        if not net.train:
            return x
        # darknet draws one uniform number per input and changes its input in place
        self.rand = np.random.random_sample(x.shape).astype(np.float32)
        drop = self.rand < np.float32(self.probability)
        x *= self.scale
        x[drop] = 0
        return x

    def backward(self, net):
        """Kept inputs pass their delta on times 1/(1-p), dropped ones nothing (added to the previous delta;
        darknet's dropout shares the previous layer's delta array and scales it in place)."""
        if net.delta is None:
            return
        backward.dropout_backward(self.delta.reshape(-1), self.rand.reshape(-1), np.float32(self.probability),
                                  self.scale, net.delta.reshape(-1))
