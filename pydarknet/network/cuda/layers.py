"""How each layer type runs on the device: the counterpart of a pydarknet.network.layers class, reading the layer's own
options and shapes and the engine's device arrays (its outputs, deltas, parameters and scratch).

`DEVICE_LAYERS[type]` is the counterpart, or absent: the engine then runs the layer's own (CPU) code on copies.
`runs(layer, net)` says whether this layer, with its options, in this mode (net.train), runs on the device;
forward returns the layer's device output; backward adds to the previous layer's delta (engine.prev_delta) and
to the device updates (engine.updates).
"""
import numpy as np

from ...kernels.activations import ACROSS_CHANNELS, CODE as ACTIVATIONS, LINEAR, NEEDS_INPUT
from . import kernels as k

F32 = np.float32


def element_wise(code):
    """Whether an activation runs element by element on the device (not normalize_channels*)."""
    return code not in ACROSS_CHANNELS


def inline(code, net):
    """The activation the pass writing the output applies: LINEAR in training for those whose gradient needs
    their input (keep_activation_input applies them after, keeping the input)."""
    return LINEAR if net.train and code in NEEDS_INPUT else code


def keep_activation_input(layer, out, code, e):
    """Where `inline` left the activation out: keep its input for the gradient, then apply it."""
    if e.net.train and code in NEEDS_INPUT:
        kept = e.buffer(layer, "activation_input", (out.size,))
        e.be.launch(k.activate_kept, out.size, out.reshape(-1), code, kept)


def activation_gradient(layer, e, code):
    """delta *= the activation's gradient (from the kept input for the activations that need it)."""
    out, delta = e.outputs[layer.index], e.deltas[layer.index]
    x = e.buffer(layer, "activation_input", (out.size,)) if code in NEEDS_INPUT else out.reshape(-1)
    e.be.launch(k.gradient_array, delta.size, x, out.reshape(-1), code, delta.reshape(-1))


class DeviceLayer:
    trains = False   # whether backward runs on the device (else the engine runs the layer on the CPU in training)

    def runs(self, layer, net):
        return self.trains or not net.train

    def forward(self, layer, x, e):
        raise NotImplementedError

    def backward(self, layer, e):
        raise NotImplementedError


class Convolutional(DeviceLayer):
    """Columns (im2col) times the weights per group, then one pass for batch-norm, bias and activation; in
    training, the batch's statistics (kept for backward) and darknet's backward_convolutional_layer."""
    trains = True

    def runs(self, layer, net):
        return element_wise(ACTIVATIONS[layer.activation])

    def forward(self, layer, x, e):
        net = e.net
        batch = x.shape[0]
        n, oh, ow = layer.out_shape
        code = ACTIVATIONS[layer.activation]
        ab = net.darknet == "ab"
        out = e.buffer(layer, "output", (batch, n, oh * ow))
        if layer.batch_normalize and net.train:
            raw = e.buffer(layer, "bn_x", out.shape)
            self.convolve(layer, x, e, raw, e.param(layer, "weights"))
            mean, variance = e.buffer(layer, "mean", (n,)), e.buffer(layer, "variance", (n,))
            sums, squares = e.buffer(layer, "sums", (n,)), e.buffer(layer, "squares", (n,))
            count = batch * oh * ow
            # the mean (each channel's sum times 1/count), then the squared deviations from it
            e.fill(sums, 0)
            e.be.launch_channels(k.channel_sums, n, raw, raw, sums, k.SUM, F32(1), sums)
            e.fill(mean, 0)
            e.be.launch(k.axpy, n, F32(1.0 / count), sums, mean)
            e.fill(squares, 0)
            e.be.launch_channels(k.channel_sums, n, raw, raw, mean, k.SQUARED_DEVIATION, F32(1), squares)
            e.be.launch(k.batchnorm_statistics, n, squares, count, mean, variance,
                        e.param(layer, "rolling_mean"), e.param(layer, "rolling_variance"))
            x_norm = e.buffer(layer, "x_norm", out.shape)
            e.be.launch(k.batchnorm_train, out.size, raw, mean, variance, e.param(layer, "scales"),
                        e.param(layer, "biases"), x_norm, out, ab, inline(code, net))
            keep_activation_input(layer, out, code, e)
            return out.reshape((batch,) + layer.out_shape)
        if layer.batch_normalize and ab and net.fuse_batchnorm:   # the fork's inference: batch-norm folded in
            weights, biases = layer.fused_parameters(net)
            weights, biases = e.param(layer, "fused_weights", weights), e.param(layer, "fused_biases", biases)
            mean = variance = scales = biases
            mode = k.BIAS
        else:
            weights, biases = e.param(layer, "weights"), e.param(layer, "biases")
            mode = (k.NORM_AB if ab else k.NORM_PJREDDIE) if layer.batch_normalize else k.BIAS
            mean, variance, scales = (e.param(layer, name) for name in ("rolling_mean", "rolling_variance",
                                                                         "scales")) if layer.batch_normalize \
                else (biases, biases, biases)
        self.convolve(layer, x, e, out, weights)
        e.be.launch(k.normalize_activate, out.size, out, mean, variance, scales, biases, mode, inline(code, net))
        keep_activation_input(layer, out, code, e)
        return out.reshape((batch,) + layer.out_shape)

    @staticmethod
    def shapes(layer):
        """(groups, filters per group, channels per group, column rows k, output positions)."""
        c = layer.in_shape[0]
        n, oh, ow = layer.out_shape
        g = layer.groups
        return g, n // g, c // g, c // g * layer.size * layer.size, oh * ow

    def columns(self, layer, x, e, j):
        """Group j's columns of x (batch, k, spatial): the input itself for a plain 1x1 convolution."""
        g, m, cg, kk, spatial = self.shapes(layer)
        batch = x.shape[0]
        if g == 1 and layer.size == 1 and layer.stride == 1 and layer.pad == 0:
            return x.reshape(batch, kk, spatial)
        col = e.scratch("columns", batch * kk * spatial).reshape(batch, kk, spatial)
        e.be.launch(k.im2col, col.size, x, j * cg, layer.size, layer.stride, layer.pad * layer.dilation,
                    layer.dilation, layer.out_shape[2], col)
        return col

    def convolve(self, layer, x, e, out, weights):
        """out (batch, filters, spatial) = the weights times each group's columns."""
        g, m, cg, kk, spatial = self.shapes(layer)
        w3 = weights.reshape(1, g * m, kk)
        for j in range(g):
            e.be.matmul(w3[:, j * m:(j + 1) * m], self.columns(layer, x, e, j), out[:, j * m:(j + 1) * m])

    def backward(self, layer, e):
        net = e.net
        out = e.outputs[layer.index]
        batch = out.shape[0]
        g, m, cg, kk, spatial = self.shapes(layer)
        n = g * m
        delta = e.deltas[layer.index].reshape(batch, n, spatial)
        activation_gradient(layer, e, ACTIVATIONS[layer.activation])
        bias_updates = e.updates(layer, "biases")
        e.be.launch_channels(k.channel_sums, n, delta, delta, bias_updates, k.SUM, F32(1), bias_updates)
        if layer.batch_normalize:
            scale_updates = e.updates(layer, "scales")
            x_norm, raw = e.buffer(layer, "x_norm", delta.shape), e.buffer(layer, "bn_x", delta.shape)
            mean, variance = e.buffer(layer, "mean", (n,)), e.buffer(layer, "variance", (n,))
            e.be.launch_channels(k.channel_sums, n, delta, x_norm, mean, k.PRODUCT, F32(1), scale_updates)
            e.be.launch(k.scale_channels, delta.size, delta, e.param(layer, "scales"))
            mean_delta, variance_delta = e.buffer(layer, "sums", (n,)), e.buffer(layer, "squares", (n,))
            e.fill(mean_delta, 0)
            e.fill(variance_delta, 0)
            e.be.launch_channels(k.channel_sums, n, delta, delta, mean, k.SUM, F32(1), mean_delta)
            e.be.launch_channels(k.channel_sums, n, delta, raw, mean, k.PRODUCT_DEVIATION, F32(1), variance_delta)
            e.be.launch(k.batchnorm_delta, delta.size, delta, raw, mean, variance, mean_delta, variance_delta,
                        net.darknet == "ab")
        x = e.prev_output(layer.index)
        prev = e.prev_delta(layer.index)
        weights = e.param(layer, "weights").reshape(1, n, kk)
        weight_updates = e.updates(layer, "weights").reshape(1, n, kk)
        for j in range(g):
            col = self.columns(layer, x, e, j)
            d = delta[:, j * m:(j + 1) * m]
            e.be.matmul_sum(d, col, weight_updates[:, j * m:(j + 1) * m], trans_b=True)   # image by image, as darknet
            if prev is None:
                continue
            cols = e.scratch("columns", batch * kk * spatial).reshape(batch, kk, spatial)
            e.be.matmul(weights[:, j * m:(j + 1) * m], d, cols, trans_a=True)
            e.be.launch(k.col2im, batch * cg * prev.shape[2] * prev.shape[3], cols, layer.size, layer.stride,
                        layer.pad * layer.dilation, layer.dilation, layer.out_shape[2], prev, j * cg)


class Connected(DeviceLayer):
    """The inputs times the transposed weights, then the bias/batch-norm/activation pass; trains on the device
    without batch-norm (with it, on the CPU)."""
    trains = True

    def runs(self, layer, net):
        return element_wise(ACTIVATIONS[layer.activation]) and not (net.train and layer.batch_normalize)

    def forward(self, layer, x, e):
        batch = x.shape[0]
        out = e.buffer(layer, "output", (batch, layer.outputs, 1))
        weights = e.param(layer, "weights").reshape(1, layer.outputs, layer.inputs)
        e.be.matmul(x.reshape(1, batch, layer.inputs), weights, out.reshape(1, batch, layer.outputs), trans_b=True)
        biases = e.param(layer, "biases")
        if layer.batch_normalize:
            mode = k.NORM_AB if e.net.darknet == "ab" else k.NORM_PJREDDIE
            stats = [e.param(layer, name) for name in ("rolling_mean", "rolling_variance", "scales")]
        else:
            mode, stats = k.BIAS, [biases] * 3
        code = ACTIVATIONS[layer.activation]
        e.be.launch(k.normalize_activate, out.size, out, *stats, biases, mode, inline(code, e.net))
        keep_activation_input(layer, out, code, e)
        return out.reshape((batch,) + layer.out_shape)

    def backward(self, layer, e):
        """darknet's backward_connected_layer: the activation's gradient, the bias's, weight_updates += delta^T x
        and the previous delta += delta W."""
        delta = e.deltas[layer.index]
        batch = delta.shape[0]
        activation_gradient(layer, e, ACTIVATIONS[layer.activation])
        bias_updates = e.updates(layer, "biases")
        e.be.launch_channels(k.channel_sums, layer.outputs, delta.reshape(batch, layer.outputs, 1),
                             delta.reshape(batch, layer.outputs, 1), bias_updates, k.SUM, F32(1), bias_updates)
        rows = delta.reshape(1, batch, layer.outputs)
        e.be.matmul(rows, e.prev_output(layer.index).reshape(1, batch, layer.inputs),
                    e.updates(layer, "weights").reshape(1, layer.outputs, layer.inputs), trans_a=True, beta=1.0)
        prev = e.prev_delta(layer.index)
        if prev is not None:
            e.be.matmul(rows, e.param(layer, "weights").reshape(1, layer.outputs, layer.inputs),
                        prev.reshape(1, batch, layer.inputs), beta=1.0)


class Maxpool(DeviceLayer):
    trains = True

    def runs(self, layer, net):
        return layer.type == "maxpool" and not layer.depth

    def forward(self, layer, x, e):
        batch = x.shape[0]
        out = e.buffer(layer, "output", (batch,) + layer.out_shape)
        argmax = e.buffer(layer, "argmax", out.shape, np.int32) if e.net.train else out
        e.be.launch(k.maxpool, out.size, x, layer.size, layer.stride_y, layer.stride_x, layer.padding, out, argmax,
                    e.net.train)
        return out

    def backward(self, layer, e):
        prev = e.prev_delta(layer.index)
        if prev is not None:
            delta = e.deltas[layer.index]
            batch = delta.shape[0]
            e.be.launch(k.maxpool_backward, delta.size, delta.reshape(batch, -1),
                        e.buffer(layer, "argmax", delta.shape, np.int32).reshape(batch, -1), prev.reshape(batch, -1))


class Route(DeviceLayer):
    trains = True

    def parts(self, layer, e, batch, arrays):
        """(source array (batch, its size), first column taken, count) of each source layer."""
        for i in layer.reads_layers:
            flat = arrays[i].reshape(batch, -1)
            size = flat.shape[1] // layer.groups
            yield flat, size * layer.group_id, size

    def forward(self, layer, x, e):
        batch = x.shape[0]
        if len(layer.reads_layers) == 1 and layer.groups == 1:
            return e.outputs[layer.reads_layers[0]].reshape((batch,) + layer.out_shape)
        out = e.buffer(layer, "output", (batch,) + layer.out_shape)
        flat, offset = out.reshape(batch, -1), 0
        for source, first, count in self.parts(layer, e, batch, e.outputs):
            e.be.launch(k.copy_columns, batch * count, source, first, flat, offset, count, False)
            offset += count
        return out

    def backward(self, layer, e):
        delta = e.deltas[layer.index]
        batch = delta.shape[0]
        offset = 0
        for target, first, count in self.parts(layer, e, batch, e.deltas):
            e.be.launch(k.copy_columns, batch * count, delta.reshape(batch, -1), offset, target, first, count, True)
            offset += count


class Shortcut(DeviceLayer):
    trains = True

    def runs(self, layer, net):
        return not layer.multilayer and element_wise(ACTIVATIONS[layer.activation])

    def forward(self, layer, x, e):
        out = e.buffer(layer, "output", x.shape)
        source = e.outputs[layer.source].reshape((x.shape[0],) + e.net.layers[layer.source].out_shape)
        code = ACTIVATIONS[layer.activation]
        e.be.launch(k.shortcut, out.size, x, source, F32(layer.alpha), F32(layer.beta), inline(code, e.net), out)
        keep_activation_input(layer, out, code, e)
        return out

    def backward(self, layer, e):
        delta = e.deltas[layer.index]
        batch = delta.shape[0]
        activation_gradient(layer, e, ACTIVATIONS[layer.activation])
        prev = e.prev_delta(layer.index)
        if prev is not None:
            e.be.launch(k.axpy, prev.size, F32(layer.alpha), delta.reshape(-1), prev.reshape(-1))
        source = e.deltas[layer.source].reshape((batch,) + e.net.layers[layer.source].out_shape)
        e.be.launch(k.shortcut_backward, source.size, delta, F32(layer.beta), source)


class Upsample(DeviceLayer):
    trains = True

    def runs(self, layer, net):
        return not layer.reverse

    def forward(self, layer, x, e):
        out = e.buffer(layer, "output", (x.shape[0],) + layer.out_shape)
        e.be.launch(k.upsample, out.size, x, layer.stride, F32(layer.scale), out, False)
        return out

    def backward(self, layer, e):
        prev = e.prev_delta(layer.index)
        if prev is not None:
            e.be.launch(k.upsample, prev.size, prev, layer.stride, F32(layer.scale), e.deltas[layer.index], True)


class Avgpool(DeviceLayer):
    trains = True

    def forward(self, layer, x, e):
        batch, c = x.shape[0], layer.in_shape[0]
        out = e.buffer(layer, "output", (batch,) + layer.out_shape)
        e.be.launch(k.avgpool, batch * c, x.reshape(batch, c, -1), out.reshape(batch, c), False)
        return out

    def backward(self, layer, e):
        prev = e.prev_delta(layer.index)
        if prev is not None:
            batch, c = prev.shape[0], layer.in_shape[0]
            e.be.launch(k.avgpool, prev.size, prev.reshape(batch, c, -1),
                        e.deltas[layer.index].reshape(batch, c), True)


class Softmax(DeviceLayer):
    """Inference only (training computes the loss against the truth on the CPU)."""

    def runs(self, layer, net):
        return not net.train and layer.tree is None

    def forward(self, layer, x, e):
        batch = x.shape[0]
        out = e.buffer(layer, "output", (batch,) + layer.out_shape)
        if layer.spatial:
            c, h, w = layer.in_shape
            size, groups, stride, temperature = c, h * w, h * w, 1.0
        else:
            size, groups, stride, temperature = layer.inputs // layer.groups, layer.groups, 1, layer.temperature
        e.be.launch(k.softmax, batch * groups, x.reshape(batch, -1), size, groups, stride, F32(temperature),
                    out.reshape(batch, -1))
        return out


class Yolo(DeviceLayer):
    """Inference only (the loss needs the truth boxes: the CPU computes it, see Engine)."""

    def forward(self, layer, x, e):
        batch = x.shape[0]
        out = e.buffer(layer, "output", (batch,) + layer.out_shape)
        entries = layer.classes + 5
        scale = layer.scale_x_y
        shift = F32(-0.5 * np.float64(scale - F32(1)))
        e.be.launch(k.yolo_activate, out.size, x.reshape(batch, layer.n * entries, -1), entries,
                    not layer.new_coords, F32(scale), shift, out.reshape(batch, layer.n * entries, -1))
        return out


class Passthrough(DeviceLayer):
    """Layers that hand their input on unchanged at inference ([dropout])."""

    def forward(self, layer, x, e):
        return x


DEVICE_LAYERS = {"convolutional": Convolutional(), "connected": Connected(), "maxpool": Maxpool(),
                 "route": Route(), "shortcut": Shortcut(), "upsample": Upsample(), "avgpool": Avgpool(),
                 "softmax": Softmax(), "yolo": Yolo(), "dropout": Passthrough()}
