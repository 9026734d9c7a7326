"""[softmax] (or [soft]): darknet's softmax over `groups` equal slices of the flat input, over the groups of a
word tree (`tree=`, hierarchical softmax), or over the channels of each pixel (`spatial=1`).

The output is flat, (inputs, 1, 1), like darknet's (which gives the next layer no image shape).
"""
import numpy as np

from ...files.config import DarknetError
from ...kernels import loss
from ...kernels.softmax import run_starts, softmax_runs
from ...results.tree import read_option_file, read_tree
from .base import Layer


class Softmax(Layer):
    type = "softmax"
    names = ("softmax", "soft")

    def __init__(self, section, in_shape, net, index):
        self.section, self.index = section, index
        s = section
        self.groups = s.int("groups", 1)
        self.temperature = float(np.float32(s.float("temperature", 1.0)))
        self.spatial = s.float("spatial", 0.0) != 0
        self.noloss = s.int("noloss", 0)
        if self.groups < 1:
            raise self.error(f"groups={self.groups} must be positive", "groups")
        if self.temperature == 0:
            raise self.error("temperature must not be 0", "temperature")
        self.tree = None
        if s.has("tree"):
            self.tree = read_option_file(s, "tree", read_tree, self.error)
        super().__init__(section, in_shape, net, index)

    def setup(self, in_shape, net):
        self.in_shape = tuple(in_shape)
        self.inputs = int(np.prod(self.in_shape))
        self.out_shape = (self.inputs, 1, 1)
        if self.tree is not None:
            if self.tree.n != self.inputs:
                raise self.error(f"the tree has {self.tree.n} nodes but the layer gets {self.inputs} inputs",
                                 "tree")
        elif self.spatial:
            self.need_image_input()
        elif self.inputs % self.groups:
            raise self.error(f"groups={self.groups} must divide the {self.inputs} inputs", "groups")

    def describe(self):
        return f"softmax                                        {self.inputs:4d}"

    def runs(self, batch):
        """(starts, sizes, stride, temperature) of every softmax run over the flat batch, kept on the layer for
        the batch and input size last asked about."""
        kept = self.__dict__.get("_runs")
        if kept is None or kept[0] != (batch, self.in_shape, self.temperature):
            kept = self._runs = ((batch, self.in_shape, self.temperature), self.find_runs(batch))
        return kept[1]

    def find_runs(self, batch):
        if self.tree is not None:
            t = self.tree
            return run_starts(batch, self.inputs, t.group_offset), np.tile(t.group_size, batch), 1, self.temperature
        if self.spatial:
            # darknet's GPU path (the only one that honours spatial=; its CPU path ignores it): a softmax
            # across the channels of each pixel, without the temperature
            c, h, w = self.in_shape
            starts = run_starts(batch, self.inputs, np.arange(h * w))
            return starts, np.full(starts.size, c, np.int64), h * w, 1.0
        n = self.inputs // self.groups
        starts = run_starts(batch, self.inputs, np.arange(self.groups) * n)
        return starts, np.full(starts.size, n, np.int64), 1, self.temperature

    def forward(self, x, net):
        batch = x.shape[0]
        out = self.output_buffer(batch)
        starts, sizes, stride, temp = self.runs(batch)
        softmax_runs(x.reshape(-1), starts, sizes, stride, np.float32(temp), out.reshape(-1), net.softmax_lanes)
        if net.train and net.truth is not None and not self.noloss:
            self.loss_forward(out, net)
        return out

    # -- training ------------------------------------------------------------------------------------------
    def loss_forward(self, out, net):
        """darknet's softmax_x_ent_cpu against net.truth: delta = truth - p (minus the gradient of the cross-entropy
        with respect to the softmax's input, for one-hot truths), cost = sum of -log p where truth is nonzero."""
        batch = out.shape[0]
        truth = net.truth.reshape(batch, -1)
        if truth.shape[1] != self.inputs:
            raise DarknetError(f"layer {self.index} ([softmax], {self.inputs} inputs): the truth has "
                               f"{truth.shape[1]} values per image")
        errors = np.empty(out.size, np.float32)
        self.cost = np.float32(loss.softmax_cross_entropy(out.reshape(-1), np.ascontiguousarray(truth).reshape(-1),
                                                          self.delta.reshape(-1), errors))

    def backward(self, net):
        """The delta (already with respect to the input, see loss_forward) added to the previous layer's."""
        self.add_delta_to_previous(net)
