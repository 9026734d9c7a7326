"""Running a network: the inference pass, and training's passes (forward_train, backward; input_gradient for
`nightmare`), on the CPU layer by layer or handed to the GPU engine (pydarknet.network.cuda)."""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from ..files.config import DarknetError
from ..files.image import check_given
from ..kernels.placement import kernel_threads, placed
from ..kernels.products import chosen, using
from .layers import COST_LAYER_TYPES
from .outputs import residuals_in_place, shared_outputs


class Passes:
    """The passes of Network (network.py) through its layers."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Run a batch (n, c, h, w) (or one image (c, h, w)) through every layer; return the network's output (the
        output layer's buffer, rewritten by the next forward). A DarknetError if another thread's forward is
        running (see network.py: hold `lock` to share a network between threads)."""
        if not self.lock.acquire(blocking=False):
            raise DarknetError(f"{self.cfg_path}: a forward pass of this network is already running in another "
                               f"thread: share it between threads by holding its lock around each forward and the "
                               f"reading of its outputs (Detector and Classifier do)")
        try:
            with using(self.products):   # the network's own products, else the process's
                return self._forward(x)
        finally:
            self.lock.release()

    def _forward(self, x):
        x = np.ascontiguousarray(check_given(x, "input"), dtype=np.float32)
        if x.ndim == 3:
            x = x[None]
        if x.shape[1:] != self.input_shape:
            raise DarknetError(f"{self.cfg_path}: input of shape {x.shape[1:]} given, the network takes "
                               f"{self.input_shape}")
        if self.engine is not None:
            return self.engine.forward(x)
        with self.passing(x.shape[0]), placed():   # the kernel threads each on a core of its own
            for layer in self.layers:
                x = layer.forward(x, self)
                layer.output = x
        return self.output_layer.output

    @contextmanager
    def passing(self, batch):
        """A pass of `batch` images through the layers: their outputs' memory shared (share_outputs), and the
        pass's plan_key in pass_key until it ends, taken once for every layer's plan (Convolutional.plan): asked by
        each of Yolo-Fastest's 100 convolutions, the key cost its forward 0.07-0.1 ms of 3.5."""
        self.pass_key = self.share_outputs(batch)
        try:
            yield
        finally:
            self.pass_key = None

    def share_outputs(self, batch):
        """Give the layers their outputs' memory for a pass of `batch` images (outputs.shared_outputs) and the
        residuals added in place (outputs.residuals_in_place), once per state of the network (plan_key: the layers'
        plans hold these arrays and follow these sums). Returns the key."""
        key = self.plan_key(batch)
        if self.plans.get("outputs") != key:
            sums = residuals_in_place(self)
            arrays = shared_outputs(self, batch, sums)
            written = {residual.writer: residual.source for residual in sums.values()}
            for layer in self.layers:
                layer.shared_output = arrays.get(layer.index)
                layer.in_place, layer.residual_after = sums.get(layer.index), written.get(layer.index)
            self.plans["outputs"] = key
        return key

    # training's passes (pydarknet.tasks.train runs them: step.train_network)
    def forward_train(self, x, truth):
        """darknet's forward_network in training mode on one chunk: every delta zeroed, the layers run with
        net.train set and net.truth = truth, then the network cost (the mean of the output layers' costs)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.engine is not None:
            return self.engine.forward_train(x, truth)
        batch = x.shape[0]
        self.train = True
        self.truth = np.ascontiguousarray(truth, dtype=np.float32).reshape(batch, -1)
        self._train_input = x
        with self.passing(batch):   # (no outputs shared in training)
            for i, layer in enumerate(self.layers):
                self.index = i
                layer.start_training(self)
                layer.delta_buffer(batch)
                x = layer.forward(x, self)
                layer.output = x
                if layer.truth:
                    self.truth = x.reshape(batch, -1)
        total, count = np.float32(0), 0
        for layer in self.layers:
            if layer.type in COST_LAYER_TYPES:
                total = np.float32(total + np.float32(getattr(layer, "cost", 0) or 0))
                count += 1
        with np.errstate(invalid="ignore", divide="ignore"):
            self.cost = np.float32(total / np.float32(count))
        return self.cost

    def input_gradient(self, x, seed_delta):
        """darknet's forward_network with net->train = 0, then backward_network into a zeroed delta for the input
        (what `nightmare` does): the inference arithmetic (batch-norm with the rolling statistics, which its
        backward then uses in the batch formula, as darknet's does), every delta zeroed, and what the backward
        needs kept, as darknet's CPU layers always keep it. seed_delta(last layer) fills the last layer's delta.
        Returns the input's delta."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        self.train, self.keep_for_backward, self.truth = False, True, None
        self._train_input = x
        try:
            with self.passing(x.shape[0]):   # (no outputs shared for a backward pass)
                for i, layer in enumerate(self.layers):
                    self.index = i
                    layer.start_training(self)
                    layer.delta_buffer(x.shape[0])
                    x = layer.forward(x, self)
                    layer.output = x
            seed_delta(self.layers[-1])
            delta = np.zeros_like(self._train_input)
            self.backward(delta)
        finally:
            self.keep_for_backward = False
        return delta

    def backward(self, input_delta=None):
        """darknet's backward_network: each layer, last to first (stopping at a `stopbackward=1` layer), adds
        its input gradient to the previous layer's delta and accumulates its updates. The first layer passes
        nothing on (darknet has no delta for the network input) unless `input_delta` is given: an array shaped
        like the input, which then gets the input's delta added."""
        if self.engine is not None:
            if input_delta is not None:
                raise DarknetError("the input's delta is not available on the GPU: run this on the CPU")
            return self.engine.backward()
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            if layer.stopbackward:
                break
            if i == 0:
                self.input, self.delta = self._train_input, input_delta
            else:
                prev = self.layers[i - 1]
                self.input, self.delta = prev.output, prev.delta
            self.index = i
            layer.backward(self)
        self.input = self.delta = None

    def workspace(self, size):
        """A shared scratch array (im2col's columns), grown on demand and kept, like darknet's net.workspace."""
        if getattr(self, "_workspace", None) is None or self._workspace.size < size:
            self._workspace = np.empty(size, np.float32)
        return self._workspace[:size]

    def plan_key(self, batch):
        """What the layers' plans of a pass of `batch` images depend on besides the layers themselves (see
        layers.convolutional.Plan): the input size, the parameters' version, the products in force and the kernel
        threads they split their work among (kernels.placement.kernel_threads: the plans' scratch has a part for each),
        training or inference and what the network keeps. A plan is remade when it changes."""
        return (batch, self.input_shape, self.params_version, chosen(), kernel_threads(), self.train,
                self.keep_for_backward, self.every_output, self.fuse_batchnorm, self.darknet)

    @property
    def output_layer(self):
        """The last layer that is not a [cost] layer, as darknet's get_network_output_layer."""
        for layer in reversed(self.layers):
            if layer.type != "cost":
                return layer
        return self.layers[-1]
