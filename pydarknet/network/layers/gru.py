"""[gru]: darknet's gated recurrent unit, six linear [connected] gates (u* on the input, w* on the state; with
the layer's batch_normalize) for `output=` values per step:

    z = logistic(uz x + wz s)      r = logistic(ur x + wr s)
    c = logistic(uh x + wh (r * s))   (tanh with tanh=1)
    s = z * s + (1 - z) * c        (the output, and the new state)

The state survives every call, training included (see recurrent.py for the rows of a sequence batch).
Darknet's CPU backward for [gru] is empty: in training its gates get no gradient (their weights only shrink
by the decay, through momentum), and nothing is passed to the layer before. That is what this layer does.
"""
import numpy as np

from ...kernels.activations import LOGISTIC, TANH, activate_array
from .base import zeros
from .recurrent import Recurrent, start_steps, step_forward, step_rows

ONE = np.float32(1)


class GRU(Recurrent):
    type = "gru"
    names = ("gru",)

    def __init__(self, section, in_shape, net, index):
        self.section, self.index = section, index
        self.tanh = bool(section.int("tanh", 0))
        (self.uz, self.ur, self.uh), (self.wz, self.wr, self.wh) = self.linear_gates(in_shape, net, 3)
        self.gates = (self.wz, self.wr, self.wh, self.uz, self.ur, self.uh)   # darknet's file order
        self.state = None
        super().__init__(section, in_shape, net, index)

    def forward(self, x, net):
        batch = step_rows(self, x)
        x = x.reshape(self.steps, batch, self.inputs)
        for gate in self.gates:
            start_steps(gate, self.steps, batch)
        if self.state is None or self.state.shape[0] != batch:
            self.state = zeros(batch, self.outputs)
        out = self.output_buffer(self.steps * batch).reshape(self.steps, batch, self.outputs)
        activation = TANH if self.tanh else LOGISTIC
        s = self.state
        for t in range(self.steps):
            wz = step_forward(self.wz, s, net, t)
            wr = step_forward(self.wr, s, net, t)
            uz = step_forward(self.uz, x[t], net, t)
            ur = step_forward(self.ur, x[t], net, t)
            uh = step_forward(self.uh, x[t], net, t)
            z = (uz + wz).reshape(-1)
            r = (ur + wr).reshape(-1)
            activate_array(z, LOGISTIC)
            activate_array(r, LOGISTIC)
            forgotten = s * r.reshape(s.shape)
            wh = step_forward(self.wh, forgotten, net, t)
            c = (uh + wh).reshape(-1)
            activate_array(c, activation)
            z, c = z.reshape(s.shape), c.reshape(s.shape)
            out[t] = z * s + (ONE - z) * c
            s[...] = out[t]
        return out.reshape((self.steps * batch,) + self.out_shape)

    def backward(self, net):
        """Nothing: darknet's CPU backward_gru_layer is empty."""
