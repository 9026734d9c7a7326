"""[rnn]: darknet's vanilla recurrent layer, three [connected] gates (input, self, output; each with the layer's
activation and batch-norm) around a hidden state, for `output=` values per step:

    state_t = input(x_t) + self(state_{t-1})   (+ state_{t-1} with shortcut=1)
    y_t     = output(state_t)

(`hidden=` is not read: darknet's [rnn] sizes the state with output=.) The state survives forward calls
(network_predict after network_predict goes on from it); a training forward starts from zeros and leaves
zeros behind, as darknet's CPU code does (it keeps one state per step there, the first one zeroed).
See recurrent.py for the rows of a sequence batch.

Backward is darknet's CPU backward_rnn_layer, whose arithmetic the gradients follow as written: the output
gate's input is recomputed as input + self (without the shortcut term), and the input gate gets the self
gate's delta *after* the self gate's backward has scaled it in place.
"""
from .base import zeros
from .convolutional import parse_activation
from .recurrent import Recurrent, make_gate, start_steps, step_backward, step_forward, step_rows


class RNN(Recurrent):
    type = "rnn"
    names = ("rnn",)

    def __init__(self, section, in_shape, net, index):
        self.section, self.index = section, index
        self.activation = parse_activation(self, "logistic")
        self.batch_normalize = section.int("batch_normalize", 0)
        self.shortcut = bool(section.int("shortcut", 0))
        self.steps = net.time_steps
        self.inputs = int(in_shape[0] * in_shape[1] * in_shape[2])
        if self.inputs < 1:
            raise self.error("the layer before it has no outputs")
        self.make_gates(in_shape, net)
        self.gates = (self.input_layer, self.self_layer, self.output_layer)
        self.state = None
        super().__init__(section, in_shape, net, index)

    def make_gates(self, in_shape, net):
        self.outputs = self.section.int("output", 1)
        if self.outputs < 1:
            raise self.error(f"output={self.outputs} must be positive", "output")
        options = dict(output=self.outputs, activation=self.activation, batch_normalize=self.batch_normalize)
        self.state_shape = (self.outputs, 1, 1)
        self.input_layer = make_gate(self, "connected", in_shape, net, 1.0, **options)
        self.self_layer = make_gate(self, "connected", self.state_shape, net, 1.0, **options)
        self.output_layer = make_gate(self, "connected", self.state_shape, net, 1.0, **options)

    def setup(self, in_shape, net):
        super().setup(in_shape, net)
        self.out_shape = self.output_layer.out_shape

    def forward(self, x, net):
        batch = step_rows(self, x)
        x = x.reshape((self.steps, batch) + tuple(self.in_shape))
        for gate in self.gates:
            start_steps(gate, self.steps, batch)
        if net.train:   # one state per step, the first zero (and left as the state afterwards)
            self.states = zeros(self.steps + 1, batch, *self.state_shape)
            self.state = self.states[0]
        elif self.state is None or self.state.shape[0] != batch:
            self.state = zeros(batch, *self.state_shape)
        state = self.state
        for t in range(self.steps):
            entering = step_forward(self.input_layer, x[t], net, t)
            carried = step_forward(self.self_layer, state, net, t)
            new = self.states[t + 1] if net.train else state
            if self.shortcut:
                new[...] = state
            else:
                new.fill(0)
            new += entering
            new += carried
            step_forward(self.output_layer, new, net, t)
            state = new
        return self.sequence_output(self.output_layer, self.steps * batch)

    def backward(self, net):
        batch = self.delta.shape[0] // self.steps
        self.output_layer.deltas_t.reshape(-1)[...] = self.delta.reshape(-1)
        inner, outer, recur = self.input_layer, self.output_layer, self.self_layer

        def step(t, x, prev_delta):
            recomputed = self.states[t + 1]
            recomputed[...] = inner.outputs_t[t]
            recomputed += recur.outputs_t[t]
            step_backward(outer, t, recomputed, recur.deltas_t[t], net)
            step_backward(recur, t, self.states[t], recur.deltas_t[t - 1] if t > 0 else None, net)
            inner.deltas_t[t] = recur.deltas_t[t]
            if t > 0 and self.shortcut:
                recur.deltas_t[t - 1] += recur.deltas_t[t]
            step_backward(inner, t, x.reshape((batch,) + tuple(self.in_shape)), prev_delta, net)

        self.backward_steps(net, step)
