"""What [rnn], [gru], [lstm] and [crnn] share: darknet builds each of them from ordinary [connected] (or 3x3
[convolutional]) layers, its gates, and runs a whole sequence in one forward.

The network's batch is then time_steps blocks of `batch` sequences: row t*batch + s is sequence s at step t
(net.batch counts all the rows, as darknet's does). Each gate keeps its buffers for every step, as darknet
allocates them batch*steps rows long and walks a pointer along them: `step_forward` runs a gate on one step
and keeps its output (and, in training, its batch-norm input and normalised values); `step_backward` runs its
backward on one step's buffers. A gate keeps one batch-norm mean and variance, like darknet's: those of the
last step run, which the backward of every step then uses (darknet's arithmetic, kept).
"""
import numpy as np

from ...files.config import Section
from .base import Layer, zeros
from .connected import Connected
from .convolutional import Convolutional


def make_gate(parent, kind, in_shape, net, learning_rate, **options):
    """A [connected] or [convolutional] layer built from `options` as darknet's make_*_layer call inside the
    parent's does. `learning_rate`: the gate's rate scale (darknet's make_connected_layer sets 1,
    make_convolutional_layer leaves 0: a [crnn]'s gates never change)."""
    section = Section(kind, parent.section.path, parent.section.line)
    section.options = {key: (str(value), parent.section.line) for key, value in options.items()}
    cls = Connected if kind == "connected" else Convolutional
    gate = cls(section, in_shape, net, parent.index)
    gate.learning_rate, gate.dontloadscales = learning_rate, 0
    gate.outputs_t = gate.deltas_t = None
    return gate


def step_rows(layer, x):
    """The batch of sequences (rows per step) in the forward input x of time_steps * batch rows."""
    if x.shape[0] % layer.steps:
        raise layer.error(f"{x.shape[0]} input rows do not split into time_steps={layer.steps} steps")
    return x.shape[0] // layer.steps


def start_steps(gate, steps, batch):
    """Zero the gate's per-step outputs and deltas (darknet zeroes the deltas at every forward)."""
    shape = (steps, batch) + tuple(gate.out_shape)
    if gate.outputs_t is None or gate.outputs_t.shape != shape:
        gate.outputs_t, gate.deltas_t = zeros(*shape), zeros(*shape)
        gate.bn_t = None
    gate.deltas_t.fill(0)


def step_forward(gate, x, net, t):
    """Run the gate on step t's input x (batch, ...); returns its output for that step (kept)."""
    out = gate.forward(x, net)
    gate.outputs_t[t] = out.reshape(gate.outputs_t.shape[1:])
    if net.train and gate.batch_normalize:
        if gate.bn_t is None or gate.bn_t[0].shape[1:] != gate.bn_x.shape:
            gate.bn_t = (zeros(len(gate.outputs_t), *gate.bn_x.shape), zeros(len(gate.outputs_t), *gate.bn_x.shape))
        gate.bn_t[0][t], gate.bn_t[1][t] = gate.bn_x, gate.x_norm
    return gate.outputs_t[t]


def step_backward(gate, t, x, prev_delta, net):
    """The gate's backward on step t: its delta there becomes the input gradient added to prev_delta (None: no
    input gradient) and its parameter updates; x is the input it had at that step."""
    gate.output, gate.delta = gate.outputs_t[t], gate.deltas_t[t]
    if gate.batch_normalize:
        gate.bn_x, gate.x_norm = gate.bn_t[0][t], gate.bn_t[1][t]
    net.input, net.delta = x, prev_delta
    gate.backward(net)


class Recurrent(Layer):
    """A layer made of gates (`gates`, in the order darknet saves them)."""
    gates = ()
    keeps_output = False   # its output holds every time step: its size depends on the steps run

    def linear_gates(self, in_shape, net, count):
        """`count` [connected] gates on the input, then `count` on the state, each of output= units, linear,
        batch-normalised as the layer is: what darknet's gru and lstm make (in that order: the rand() draws of
        their starting weights follow it). Reads output=, batch_normalize= and the sizes first."""
        self.outputs = self.section.int("output", 1)
        self.batch_normalize = self.section.int("batch_normalize", 0)
        if self.outputs < 1:
            raise self.error(f"output={self.outputs} must be positive", "output")
        self.steps = net.time_steps
        self.inputs = int(np.prod(in_shape))
        if self.inputs < 1:
            raise self.error("the layer before it has no outputs")
        options = dict(output=self.outputs, activation="linear", batch_normalize=self.batch_normalize)
        on_input = tuple(make_gate(self, "connected", in_shape, net, 1.0, **options) for _ in range(count))
        on_state = tuple(make_gate(self, "connected", (self.outputs, 1, 1), net, 1.0, **options) for _ in range(count))
        return on_input, on_state

    def setup(self, in_shape, net):
        if int(np.prod(in_shape)) != self.inputs:
            raise self.error(f"cannot take {int(np.prod(in_shape))} inputs: it was made for {self.inputs} "
                             "(a network with recurrent layers cannot be resized)")
        self.in_shape = tuple(in_shape)
        self.out_shape = (self.outputs, 1, 1)

    def describe(self):
        return f"{type(self).__name__} Layer: {self.inputs} inputs, {self.outputs} outputs"

    def weight_arrays(self, transpose=False, loading=False):
        return [a for gate in self.gates for a in gate.weight_arrays(transpose, loading)]

    def start_training(self, net):
        for gate in self.gates:
            gate.start_training(net)

    def update(self, args):
        for gate in self.gates:
            gate.update(args)

    def flops(self):
        return sum(gate.flops() for gate in self.gates)

    def initialize(self, rng):
        for gate in self.gates:
            gate.initialize(rng)

    def sequence_output(self, gate, rows):
        """The layer's output (rows, ...) filled from the gate's per-step outputs."""
        out = self.output_buffer(rows)
        out.reshape(-1)[...] = gate.outputs_t.reshape(-1)
        return out

    def backward_steps(self, net, step):
        """Run step(t, x_t, prev_delta_t) for t = last..0 with the layer input and the previous layer's delta
        cut into steps; net.input / net.delta are restored afterwards."""
        rows = self.delta.shape[0]
        batch = rows // self.steps
        x = net.input.reshape(self.steps, batch, -1)
        prev = None if net.delta is None else net.delta.reshape(self.steps, batch, -1)
        saved = net.input, net.delta
        try:
            for t in range(self.steps - 1, -1, -1):
                step(t, x[t], None if prev is None else prev[t])
        finally:
            net.input, net.delta = saved
