"""[lstm]: darknet's long short-term memory layer, eight linear [connected] gates (w* on the previous output h,
u* on the input; with the layer's batch_normalize) for `output=` values per step:

    f = logistic(wf h + uf x)   i = logistic(wi h + ui x)   o = logistic(wo h + uo x)   g = tanh(wg h + ug x)
    c = f * c + i * g           h = o * tanh(c)             (h is the output)

h and c survive every call, training included (see recurrent.py for the rows of a sequence batch).

Darknet's CPU build never wires up its backward_lstm_layer (training crashes); pydarknet runs that function
as written, which is what the golden training case does: at step 0 it takes step 0's own output and cell as
the "previous" ones (step 1's previous, left in its buffers), its running cell gradient starts each call
with what the previous call left, and it leaves h and c at step 0's values, where the next call starts.
"""

from ...kernels.activations import LOGISTIC, TANH, activate_array
from ...kernels import backward
from .base import zeros
from .recurrent import Recurrent, start_steps, step_backward, step_forward, step_rows


def activated(a, b, code):
    """activation(a + b) as a new flat array."""
    out = (a + b).reshape(-1)
    activate_array(out, code)
    return out


class LSTM(Recurrent):
    type = "lstm"
    names = ("lstm",)

    def __init__(self, section, in_shape, net, index):
        self.section, self.index = section, index
        (self.uf, self.ui, self.ug, self.uo), (self.wf, self.wi, self.wg, self.wo) = self.linear_gates(in_shape, net, 4)
        self.gates = (self.wi, self.wf, self.wo, self.wg, self.ui, self.uf, self.uo, self.ug)  # darknet's file order
        self.h = self.c = None
        super().__init__(section, in_shape, net, index)

    def forward(self, x, net):
        batch = step_rows(self, x)
        x = x.reshape(self.steps, batch, self.inputs)
        for gate in self.gates:
            start_steps(gate, self.steps, batch)
        if self.h is None or self.h.shape[0] != batch:
            self.h, self.c = zeros(batch, self.outputs), zeros(batch, self.outputs)
            self.prev_h, self.prev_c, self.dc = (zeros(batch, self.outputs) for _ in range(3))
        out = self.output_buffer(self.steps * batch).reshape(self.steps, batch, self.outputs)
        self.cells = zeros(self.steps, batch, self.outputs)
        self.fiog = zeros(4, self.steps, batch, self.outputs)   # the activated gates, for the backward
        for t in range(self.steps):
            w = [step_forward(gate, self.h, net, t) for gate in (self.wf, self.wi, self.wg, self.wo)]
            u = [step_forward(gate, x[t], net, t) for gate in (self.uf, self.ui, self.ug, self.uo)]
            f = activated(w[0], u[0], LOGISTIC)
            i = activated(w[1], u[1], LOGISTIC)
            g = activated(w[2], u[2], TANH)
            o = activated(w[3], u[3], LOGISTIC)
            c = self.c.reshape(-1)
            c *= f
            c += i * g
            h = c.copy()
            activate_array(h, TANH)
            h *= o
            self.h[...] = h.reshape(self.h.shape)
            self.cells[t], out[t] = self.c, self.h
            for k, value in enumerate((f, i, o, g)):
                self.fiog[k, t] = value.reshape(self.h.shape)
        return out.reshape((self.steps * batch,) + self.out_shape)

    def backward(self, net):
        batch = self.delta.shape[0] // self.steps
        out = self.output.reshape(self.steps, batch, self.outputs)
        delta = self.delta.reshape(self.steps, batch, self.outputs)

        def gate_pair(w, u, t, grad, x, prev_delta, dh):
            w.deltas_t[t] = grad.reshape(w.deltas_t[t].shape)
            step_backward(w, t, self.prev_h, dh, net)
            u.deltas_t[t] = grad.reshape(u.deltas_t[t].shape)
            step_backward(u, t, x, prev_delta, net)

        def step(t, x, prev_delta):
            if t:
                self.prev_c[...] = self.cells[t - 1]
                self.prev_h[...] = out[t - 1]
            self.c[...], self.h[...] = self.cells[t], out[t]
            dh = delta[t - 1] if t else None
            f, i, o, g = self.fiog[:, t]
            tanh_c = self.c.copy().reshape(-1)
            activate_array(tanh_c, TANH)
            tanh_c = tanh_c.reshape(self.c.shape)
            dc = delta[t] * o                      # the cell's gradient: through h ...
            backward.gradient_array32(tanh_c.reshape(-1), TANH, dc.reshape(-1))
            dc += self.dc                          # ... and from the step after
            grad = tanh_c * delta[t]
            backward.gradient_array32(o.reshape(-1), LOGISTIC, grad.reshape(-1))
            gate_pair(self.wo, self.uo, t, grad, x, prev_delta, dh)
            grad = dc * i
            backward.gradient_array32(g.reshape(-1), TANH, grad.reshape(-1))
            gate_pair(self.wg, self.ug, t, grad, x, prev_delta, dh)
            grad = dc * g
            backward.gradient_array32(i.reshape(-1), LOGISTIC, grad.reshape(-1))
            gate_pair(self.wi, self.ui, t, grad, x, prev_delta, dh)
            grad = dc * self.prev_c
            backward.gradient_array32(f.reshape(-1), LOGISTIC, grad.reshape(-1))
            gate_pair(self.wf, self.uf, t, grad, x, prev_delta, dh)
            self.dc[...] = dc * f

        self.backward_steps(net, step)
