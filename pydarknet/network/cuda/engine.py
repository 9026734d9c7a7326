"""A network's run on the device: the layers in order, each output left on the device for the next one (and for
the route/shortcut layers that read it), the same calls Network makes on the CPU: forward, forward_train,
backward, update.

A layer whose type or options have no device counterpart (layers.DEVICE_LAYERS, `runs`) runs its own CPU code
on copies: its input (and the outputs it reads) brought to the host, its output (and, in training, its delta)
sent back. That is how the loss layers train ([yolo]'s loss needs the truth boxes): their delta comes back to
the device, and the rest of backward runs there. Parameters go to the device on first use and again whenever
net.params_version changes; after each device update they come back into the layer's arrays, so saving the
weights or switching back to the CPU sees them.

An inference pass whose every layer runs on the device is recorded as one CUDA graph the first time it meets an
input shape (after one pass made launch by launch, which compiles the kernels and allocates every array the graph
then writes) and replayed whole after that, until the shape or the parameters change or another pass replaces an
array it uses: at batch 1 a pass is some 150 kernels and products of microseconds each, and launching each from
Python cost more than running it.
"""
from dataclasses import dataclass

import numpy as np

from ..layers import COST_LAYER_TYPES
from . import kernels as k
from .layers import DEVICE_LAYERS

# Layers whose outputs the host reads after a forward pass (detections, class scores): copied back each time.
HOST_READS = frozenset({"yolo", "region", "detection", "softmax", "logistic", "cost"})
# The layer arrays the device may hold and change (training updates them, batch-norm's rolling statistics).
PARAMETERS = ("biases", "scales", "rolling_mean", "rolling_variance", "weights")


@dataclass(frozen=True)
class Recording:
    """An inference pass as recorded: for this input shape and params_version, its backend.Graph (None: made
    launch by launch), the device arrays that graph reads (input) and writes (each layer's output), and the
    engine's count of replaced arrays then (a pass of another shape since, training's at another batch say, has
    freed arrays the graph writes: it is recorded again)."""
    key: tuple
    graph: object
    input: object
    outputs: list
    replaced: int


class Engine:
    def __init__(self, net, backend):
        self.net, self.be = net, backend
        self.outputs = [None] * len(net.layers)
        self.deltas = [None] * len(net.layers)
        self.input = None
        self._buffers = {}     # (layer index, name) -> device array
        self._params = {}      # (layer index, name) -> (params_version, device array)
        self._scratch = {}     # name -> device array shared by the layers (im2col's columns)
        self.graphs = backend.records   # whether inference passes are recorded and replayed (where they can be)
        self._recording = None   # the Recording of the last inference pass
        self.replaced = 0        # how many kept device arrays were replaced by larger or other-shaped ones

    @property
    def device(self):
        return f"cuda:{self.be.index}"

    # -- device memory ---------------------------------------------------------------------------------------
    def buffer(self, layer, name, shape, dtype=np.float32):
        """A device array of this layer's, kept from call to call (reallocated when the shape changes)."""
        key = (layer.index, name)
        array = self._buffers.get(key)
        if array is None or array.shape != tuple(shape) or array.dtype != np.dtype(dtype):
            self.replaced += array is not None
            array = self._buffers[key] = self.be.empty(shape, dtype)
        return array

    def scratch(self, name, size):
        """A flat device array shared by the layers, grown on demand (darknet's net.workspace)."""
        array = self._scratch.get(name)
        if array is None or array.size < size:
            self.replaced += array is not None
            array = self._scratch[name] = self.be.empty((size,))
        return array[:size]

    def fill(self, array, value):
        self.be.launch(k.fill, array.size, array.reshape(-1), np.float32(value))

    def param(self, layer, name, host=None):
        """The device copy of the layer's array `name` (or of `host`, a derived array such as the fused
        weights), sent again whenever the network's parameters changed."""
        key = (layer.index, name)
        cached = self._params.get(key)
        if cached is None or cached[0] != self.net.params_version:
            array = getattr(layer, name) if host is None else host
            cached = self._params[key] = (self.net.params_version, self.be.to_device(array))
        return cached[1]

    def updates(self, layer, name):
        """The device array accumulating the updates of the layer's parameter `name` (zero at first)."""
        key = (layer.index, "updates:" + name)
        array = self._buffers.get(key)
        if array is None or array.shape != getattr(layer, name).shape:
            array = self._buffers[key] = self.be.zeros(getattr(layer, name).shape)
        return array

    def prev_output(self, index):
        x = self.input if index == 0 else self.outputs[index - 1]
        return x.reshape((x.shape[0],) + self.net.layers[index].in_shape)

    def prev_delta(self, index):
        if index == 0:
            return None
        d = self.deltas[index - 1]
        return d.reshape((d.shape[0],) + self.net.layers[index].in_shape)

    def host_output(self, index):
        """Layer `index`'s output of the last pass, copied to the host."""
        return self.be.to_host(self.outputs[index])

    # -- running ---------------------------------------------------------------------------------------------
    def on_device(self, layer):
        counterpart = DEVICE_LAYERS.get(layer.type)
        return counterpart is not None and counterpart.runs(layer, self.net)

    def _layer_forward(self, layer, x):
        if self.on_device(layer):
            return DEVICE_LAYERS[layer.type].forward(layer, x, self)
        net = self.net
        for i in layer.reads_layers:
            net.layers[i].output = self.host_output(i)
        out = layer.forward(self.be.to_host(x), net)
        layer.output = out
        if net.train and layer.delta is not None:   # the loss layers' delta, to go on backward on the device
            self.deltas[layer.index] = self.be.to_device(layer.delta)
        return self.be.to_device(out)

    def forward(self, x, every_layer=False):
        with self.be.active():
            return self._forward(x, every_layer)

    def _forward(self, x, every_layer):
        """net.forward on the device: x (n, c, h, w) on the host; returns the output layer's output (host).
        The outputs the host reads (HOST_READS; with every_layer, all) are copied into layer.output."""
        net = self.net
        x = self._replayed(x) if self.graphs and not net.train else self._launched(x)
        for layer in net.layers:
            if every_layer or layer.type in HOST_READS or layer is net.output_layer:
                layer.output = self.host_output(layer.index).reshape((x.shape[0],) + layer.out_shape)
        return net.output_layer.output

    def _launched(self, x):
        """Every layer's forward from the host input x, launch by launch; returns the last output (device)."""
        self.input = self.be.to_device(x)
        return self._layer_walk(self.input)

    def _replayed(self, x):
        """_launched's pass, replayed from its graph: recorded on the first pass with this input shape and these
        parameters (again once an array it uses was replaced), where every layer runs on the device (a layer run
        on the host copies, which a graph cannot hold: such networks are launched pass by pass)."""
        key = (x.shape, self.net.params_version)
        recording = self._recording
        if recording is None or recording.key != key or recording.replaced != self.replaced:
            self._recording = None   # the old graph writes arrays that this pass may reallocate
            out = self._launched(x)
            graph = None
            if all(self.on_device(layer) for layer in self.net.layers):
                start = self.input
                graph = self.be.record(lambda: self._layer_walk(start))
            self._recording = Recording(key, graph, self.input, list(self.outputs), self.replaced)
            return out
        if recording.graph is None:
            return self._launched(x)
        # the arrays the graph reads and writes (a training pass in between may have put others in their places)
        self.input, self.outputs[:] = recording.input, recording.outputs
        self.be.copy_in(self.input, x)
        recording.graph.launch()
        return self.outputs[-1]

    def _layer_walk(self, x):
        """Each layer's forward in turn from the device input x; returns the last output."""
        for layer in self.net.layers:
            x = self.outputs[layer.index] = self._layer_forward(layer, x)
        return x

    def forward_train(self, x, truth):
        with self.be.active():
            return self._forward_train(x, truth)

    def _forward_train(self, x, truth):
        """net.forward_train on the device: every delta zeroed, each layer run in training mode (the loss layers
        on the host with net.truth), then the network cost as Network.forward_train computes it."""
        net = self.net
        batch = x.shape[0]
        net.train = True
        net.truth = np.ascontiguousarray(truth, dtype=np.float32).reshape(batch, -1)
        self.input = x = self.be.to_device(x)
        for i, layer in enumerate(net.layers):
            net.index = i
            layer.start_training(net)
            if self.on_device(layer):
                self.deltas[i] = self.buffer(layer, "delta", (batch,) + layer.out_shape)
                self.fill(self.deltas[i], 0)
            else:
                layer.delta_buffer(batch)
            x = self.outputs[i] = self._layer_forward(layer, x)
            if layer.truth:
                net.truth = self.host_output(i).reshape(batch, -1)
        total, count = np.float32(0), 0
        for layer in net.layers:
            if layer.type in COST_LAYER_TYPES:
                total = np.float32(total + np.float32(getattr(layer, "cost", 0) or 0))
                count += 1
        with np.errstate(invalid="ignore", divide="ignore"):
            net.cost = np.float32(total / np.float32(count))
        return net.cost

    def backward(self):
        with self.be.active():
            self._backward()

    def _backward(self):
        """net.backward on the device, last layer to first (stopping at stopbackward=1)."""
        net = self.net
        for i in range(len(net.layers) - 1, -1, -1):
            layer = net.layers[i]
            if layer.stopbackward:
                break
            net.index = i
            if self.on_device(layer):
                DEVICE_LAYERS[layer.type].backward(layer, self)
                continue
            # the CPU's backward on copies; the previous delta, and those of the layers it reads (a [shortcut]
            # of several inputs or with weights), come back with this layer's gradient added
            layer.delta = self.be.to_host(self.deltas[i])
            layer.output = self.host_output(i)
            net.input = self.be.to_host(self.prev_output(i))
            prev = self.prev_delta(i)
            net.delta = None if prev is None else self.be.to_host(prev)
            sources = [net.layers[s] for s in layer.reads_layers if s != i - 1]   # i - 1's delta is net.delta
            for source in sources:
                source.output = self.host_output(source.index)
                source.delta = self.be.to_host(self.deltas[source.index])
            if i > 0 and i - 1 in layer.reads_layers:
                net.layers[i - 1].output = net.input.reshape(self.outputs[i - 1].shape)   # (copied above)
                net.layers[i - 1].delta = net.delta
            layer.backward(net)
            if prev is not None:
                self.be.copy_in(prev, net.delta.reshape(prev.shape))
            for source in sources:
                self.be.copy_in(self.deltas[source.index], source.delta)
            net.input = net.delta = None

    def update(self, args):
        with self.be.active():
            self._update(args)

    def _update(self, args):
        """net.update with training's UpdateArgs: SGD on the device for the layers trained there, the CPU's
        update (SGD or Adam) for the others; then every parameter the device holds is copied back into the
        layer's arrays."""
        net = self.net
        on_device = [layer for layer in net.layers if layer.trainable and self.on_device(layer) and not args.adam]
        for layer in on_device:
            rate = np.float32(np.float32(args.learning_rate) * np.float32(layer.learning_rate))
            for param, _, decayed in layer.trainable:
                if getattr(layer, param, None) is None:
                    continue
                weights, updates = self.param(layer, param), self.updates(layer, param)
                decay = np.float32(-args.decay * np.float32(args.batch)) if decayed else np.float32(0)
                self.be.launch(k.sgd, weights.size, weights.reshape(-1), updates.reshape(-1), decay,
                               np.float32(rate / np.float32(args.batch)), np.float32(args.momentum))
        self._download_parameters()
        for layer in net.layers:
            if layer.trainable and layer not in on_device:
                self._host_update(layer, args)
        net.params_version += 1
        for layer in on_device:   # what the device holds is the new version: no need to send it again
            for name in PARAMETERS:
                key = (layer.index, name)
                if key in self._params:
                    self._params[key] = (net.params_version, self._params[key][1])

    def host_updates(self, layer):
        """{update array name (bias_updates, ...): host array} of what the layer accumulated: a copy of the
        device's for a layer trained there, the layer's own arrays for one trained on the CPU."""
        values = {}
        for param, update, _ in layer.trainable:
            key = (layer.index, "updates:" + param)
            if key in self._buffers:
                with self.be.active():
                    values[update] = self.be.to_host(self._buffers[key])
            elif getattr(layer, update, None) is not None:
                values[update] = getattr(layer, update)
        return values

    def set_updates(self, layer, values):
        for param, update, _ in layer.trainable:
            key = (layer.index, "updates:" + param)
            if update not in values:
                continue
            if key in self._buffers:
                with self.be.active():
                    self.be.copy_in(self._buffers[key], values[update])
            else:
                getattr(layer, update)[...] = values[update]

    def sync_to_host(self):
        with self.be.active():
            self._download_parameters()

    def _download_parameters(self):
        """Every current device copy of a layer's parameter (rolling statistics included) into its array."""
        for (index, name), (version, array) in self._params.items():
            if name in PARAMETERS and version == self.net.params_version:
                self.be.to_host(array, out=getattr(self.net.layers[index], name))

    def _host_update(self, layer, args):
        """The CPU's update of one layer, with the updates the device accumulated for it."""
        for param, update, _ in layer.trainable:
            key = (layer.index, "updates:" + param)
            if key in self._buffers:
                setattr(layer, update, self.be.to_host(self._buffers[key]))
        layer.update(args)
        for param, update, _ in layer.trainable:
            key = (layer.index, "updates:" + param)
            if key in self._buffers:
                self.be.copy_in(self._buffers[key], getattr(layer, update))
