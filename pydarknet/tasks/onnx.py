"""Export a darknet network to ONNX (`pydarknet export onnx`, `export(net, path)`), and `postprocess`: the NMS
left to do after a graph exported with `decode=True`.

Each layer becomes the nodes its exporter below builds (`export_<type>`, found through EXPORTERS), named
`layer_<index>_<type>` like the tensor they produce (helper nodes inside a layer: `layer_<index>_<type>/<op>_<k>`).
Every layer's tensor has pydarknet's shape for it, (batch,) + layer.out_shape, so a graph output can be compared
with `layer.output` directly. Batch-norm is folded into the convolution (or connected) weights as the network's
darknet computes it: pjreddie (x - mean) / (sqrt(var) + .000001), the AlexeyAB fork (x - mean) / sqrt(var + .00001).

The graph's outputs are the [yolo], [region] and [detection] layers' outputs (else the network's output layer,
a classifier's softmax), as darknet computes them: logistic and softmax applied where darknet applies them.
With `decode=True` they are decoded instead into `boxes` (batch, candidates, 4: centre x, y, width, height relative
to the image) and `scores` (batch, candidates, classes: objectness x class probability), candidates in darknet's
order; a network that letterboxes its input then takes a second input, `image_size` (batch, 2: width, height of
the original images), to map the boxes back onto the images as darknet does.

`onnx` is imported only when exporting (the `onnx` extra): the core install does not need it.
"""
import copy
import json

import numpy as np

from ..files.config import DarknetError
from ..files.errors import install_hint
from ..files.weights import atomic_write

DEFAULT_OPSET = 17
MIN_OPSET = 13      # Softmax over one axis, ReduceSum's axes as an input, Split's sizes as an input
OUTPUT_TYPES = ("yolo", "region", "detection")


class Graph:
    """The nodes and constants of the graph being built. `dtype`: the float type of the layer being exported
    (float16 for --fp16 after the first layer); `prefix`: the name of that layer (its nodes are named after it)."""

    def __init__(self, opset, dtype, batch):
        from onnx import helper
        self.helper = helper
        self.opset = opset
        self.dtype = dtype
        self.batch = batch       # an int, or None for a dynamic batch
        self.tensors = {}        # layer index -> its output tensor
        self.nodes = []
        self.initializers = []
        self.prefix = "input"
        self.count = 0

    @property
    def tensor_type(self):
        from onnx import TensorProto
        return TensorProto.FLOAT16 if self.dtype == np.float16 else TensorProto.FLOAT

    def name(self, op):
        self.count += 1
        return f"{self.prefix}/{op}_{self.count}"

    def const(self, value, dtype=None):
        """A constant tensor: floats in the graph's float type (or `dtype`), integers as int64."""
        from onnx import numpy_helper
        value = np.asarray(value)
        kind = np.int64 if value.dtype.kind in "iub" else (dtype or self.dtype)
        name = self.name("const")
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value, kind), name))
        return name

    def op(self, op_type, *inputs, outputs=1, **attrs):
        """One node; its output name (a list of names when outputs > 1)."""
        names = [self.name(op_type) for _ in range(outputs)]
        self.nodes.append(self.helper.make_node(op_type, list(inputs), names, name=names[0], **attrs))
        return names[0] if outputs == 1 else names

    def finish_layer(self, tensor):
        """Name the layer's output tensor, and the node making it, after the layer (through an Identity when the
        layer passes on a tensor it did not make)."""
        node = next((n for n in reversed(self.nodes) if tensor in n.output), None)
        if node is None or not node.name.startswith(self.prefix + "/"):
            node = self.helper.make_node("Identity", [tensor], [self.prefix])
            self.nodes.append(node)
        else:
            node.output[list(node.output).index(tensor)] = self.prefix
        node.name = self.prefix
        return self.prefix

    def rename(self, old, new):
        """Rename a tensor wherever nodes make or read it."""
        for node in self.nodes:
            for names in (node.input, node.output):
                for i, name in enumerate(names):
                    if name == old:
                        names[i] = new

    # -- shorthands -------------------------------------------------------------------------------------------
    def add(self, x, y):
        return self.op("Add", x, y if isinstance(y, str) else self.const(y))

    def mul(self, x, y):
        return self.op("Mul", x, y if isinstance(y, str) else self.const(y))

    def reshape(self, x, shape):
        """x reshaped to (batch,) + shape."""
        return self.op("Reshape", x, self.const([-1] + list(shape)))

    def slice(self, x, axis, start, end, step=1):
        return self.op("Slice", x, self.const([start]), self.const([end]), self.const([axis]), self.const([step]))

    def clip(self, x, low, high):
        return self.op("Clip", x, self.const(np.float32(low)), self.const(np.float32(high)))

    def reduce(self, op_type, x, axes):
        """A Reduce* op keeping its dimensions: the axes are an input from opset 18 (ReduceSum: 13) on."""
        if self.opset >= (13 if op_type == "ReduceSum" else 18):
            return self.op(op_type, x, self.const(axes), keepdims=1)
        return self.op(op_type, x, axes=axes, keepdims=1)

    def pad(self, x, before, after, value=0.0):
        """Pad the last len(before) dimensions of a 4-d tensor with `value`; nothing when the pads are 0."""
        if not any(before) and not any(after):
            return x
        lead = [0] * (4 - len(before))
        return self.op("Pad", x, self.const(lead + list(before) + lead + list(after)),
                       self.const(np.asarray(value, self.dtype)))


# -- activations (kernels/activations.py) ----------------------------------------------------------------------
def stair(g, x):
    """floor(x/2), plus x - floor(x) where floor(x) is odd."""
    n = g.op("Floor", x)
    odd = g.op("Sub", n, g.mul(g.op("Floor", g.mul(n, np.float32(0.5))), np.float32(2)))
    return g.add(g.op("Floor", g.mul(x, np.float32(0.5))), g.op("Mul", odd, g.op("Sub", x, n)))


def normalize_channels(g, x, exponent, less_max):
    """The fork's normalize_channels(_softmax(_maxval)): each pixel's positive parts (or exponentials, less the
    pixel's maximum first with _maxval) over their sum across the channels plus .0001."""
    if exponent:
        terms = g.op("Exp", g.op("Sub", x, g.reduce("ReduceMax", x, [1])) if less_max else x)
    else:
        terms = g.op("Relu", x)
    return g.op("Div", terms, g.add(g.reduce("ReduceSum", terms, [1]), np.float32(0.0001)))


def leaky(slope):
    return lambda g, x: g.op("LeakyRelu", x, alpha=slope)


ACTIVATIONS = {
    "linear": lambda g, x: x,
    "logistic": lambda g, x: g.op("Sigmoid", x),
    "relu": lambda g, x: g.op("Relu", x),
    "relie": leaky(0.01),
    "ramp": lambda g, x: g.op("Add", g.op("Relu", x), g.mul(x, np.float32(0.1))),
    "tanh": lambda g, x: g.op("Tanh", x),
    # .125x + .5 inside [-4, 4], slope .01 outside
    "plse": lambda g, x: g.add(g.add(g.mul(g.clip(x, -4, 4), np.float32(0.125)), np.float32(0.5)),
                               g.mul(g.op("Sub", x, g.clip(x, -4, 4)), np.float32(0.01))),
    "leaky": leaky(0.1),
    "elu": lambda g, x: g.op("Elu", x, alpha=1.0),
    "loggy": lambda g, x: g.add(g.mul(g.op("Sigmoid", x), np.float32(2)), np.float32(-1)),
    "stair": stair,
    "hardtan": lambda g, x: g.clip(x, -1, 1),
    # x inside [0, 1], slope .001 outside
    "lhtan": lambda g, x: g.add(g.clip(x, 0, 1), g.mul(g.op("Sub", x, g.clip(x, 0, 1)), np.float32(0.001))),
    "selu": lambda g, x: g.op("Selu", x, alpha=1.6732, gamma=1.0507),
    "relu6": lambda g, x: g.clip(x, 0, 6),
    "gelu": lambda g, x: g.mul(g.op("Mul", x, g.add(g.op("Tanh", g.op(
        "Mul", x, g.add(g.mul(g.op("Mul", x, x), np.float32(0.035677)), np.float32(0.797885)))), np.float32(1))),
        np.float32(0.5)),
    "revleaky": leaky(0.1),   # the fork computes it as leaky
    "swish": lambda g, x: g.op("Mul", x, g.op("Sigmoid", x)),
    # darknet's softplus thresholds (x beyond +-20) change nothing at float precision: tanh(softplus) is 1 above
    "mish": lambda g, x: g.op("Mul", x, g.op("Tanh", g.op("Softplus", x))),
    # x above 0, x^2/2 + x above -2, else 0
    "hard_mish": lambda g, x: g.op("Mul", x, g.clip(g.add(g.mul(x, np.float32(0.5)), np.float32(1)), 0, 1)),
    "normalize_channels": lambda g, x: normalize_channels(g, x, False, False),
    "normalize_channels_softmax": lambda g, x: normalize_channels(g, x, True, False),
    "normalize_channels_softmax_maxval": lambda g, x: normalize_channels(g, x, True, True),
}


def activate(g, x, name):
    return ACTIVATIONS[name](g, x)


# -- layers ----------------------------------------------------------------------------------------------------
def batchnorm_factors(layer, net):
    """(factor, shift) per channel with batch-norm = x * factor + shift, in double as each darknet divides:
    pjreddie by sqrt(var) + .000001, the fork by sqrt(var + .00001)."""
    variance = layer.rolling_variance.astype(np.float64)
    root = np.sqrt(variance + .00001) if net.darknet == "ab" else np.sqrt(variance) + .000001
    factor = layer.scales / root
    return factor, layer.biases - layer.rolling_mean * factor


def folded(layer, net):
    """(weights, biases) of a convolutional or connected layer with its batch-norm folded in."""
    if not layer.batch_normalize:
        return layer.weights, layer.biases
    factor, shift = batchnorm_factors(layer, net)
    return layer.weights * factor[:, None], shift


def export_convolutional(g, layer, x, net):
    weights, biases = folded(layer, net)
    size, pad = layer.size, layer.pad * layer.dilation
    y = g.op("Conv", x, g.const(weights.reshape(layer.filters, -1, size, size)), g.const(biases),
             kernel_shape=[size, size], strides=[layer.stride] * 2, pads=[pad] * 4,
             dilations=[layer.dilation] * 2, group=layer.groups)
    return activate(g, y, layer.activation)


def export_connected(g, layer, x, net):
    weights, biases = folded(layer, net)
    y = g.op("Gemm", g.op("Flatten", x, axis=1), g.const(weights), g.const(biases), transB=1)
    return g.reshape(activate(g, y, layer.activation), layer.out_shape)


def export_batchnorm(g, layer, x, net):
    factor, shift = batchnorm_factors(layer, net)
    return g.add(g.mul(x, factor.reshape(1, -1, 1, 1)), shift.reshape(1, -1, 1, 1))


def window_pads(layer):
    """(before, after) pads (rows, columns) that give darknet's pooling windows: they start padding//2 pixels up
    and left, and the last one may run past the bottom or right edge."""
    _, h, w = layer.in_shape
    _, oh, ow = layer.out_shape
    top = left = layer.padding // 2
    bottom = max(0, (oh - 1) * layer.stride_y + layer.size - top - h)
    right = max(0, (ow - 1) * layer.stride_x + layer.size - left - w)
    return [top, left], [bottom, right]


def export_maxpool(g, layer, x, net):
    """Padded explicitly with darknet's -FLT_MAX (ONNX's MaxPool pads by another rule): a window wholly outside
    the image gives it too. maxpool_depth: the maximum over channels k, k + out_channels, ..."""
    lowest = np.finfo(g.dtype).min
    if layer.depth:
        c, h, w = layer.in_shape
        groups = layer.out_channels
        x = g.pad(x, [0, 0, 0], [-c % groups, 0, 0], lowest)
        y = g.reduce("ReduceMax", g.reshape(x, (-(-c // groups), groups, h, w)), [1])
        return g.reshape(y, layer.out_shape)
    before, after = window_pads(layer)
    return g.op("MaxPool", g.pad(x, before, after, lowest), kernel_shape=[layer.size] * 2,
                strides=[layer.stride_y, layer.stride_x])


def export_local_avgpool(g, layer, x, net):
    """The mean over each window's pixels inside the image: the window's sum over zero padding, times
    size^2 / (the count of pixels inside), a constant per output position."""
    _, h, w = layer.in_shape
    _, oh, ow = layer.out_shape
    before, after = window_pads(layer)
    rows = np.clip(np.arange(oh)[:, None] * layer.stride_y - before[0] + np.arange(layer.size), -1, h)
    cols = np.clip(np.arange(ow)[:, None] * layer.stride_x - before[1] + np.arange(layer.size), -1, w)
    counts = ((rows >= 0) & (rows < h)).sum(1)[:, None] * ((cols >= 0) & (cols < w)).sum(1)[None, :]
    with np.errstate(divide="ignore"):
        factor = np.where(counts > 0, layer.size ** 2 / np.maximum(counts, 1), np.nan)
    mean = g.op("AveragePool", g.pad(x, before, after), kernel_shape=[layer.size] * 2,
                strides=[layer.stride_y, layer.stride_x])
    return g.mul(mean, factor.reshape(1, 1, oh, ow).astype(np.float32))


def export_avgpool(g, layer, x, net):
    return g.op("GlobalAveragePool", x)


def export_route(g, layer, x, net):
    """The sources' outputs (part group_id of groups of each) concatenated along channels, or flat when their
    sizes differ (darknet then concatenates the flat outputs)."""
    sources = [(g.tensors[i], net.layers[i].out_shape) for i in layer.reads_layers]
    k, n = layer.group_id, layer.groups
    if len({shape[1:] for _, shape in sources}) == 1:
        parts = [g.slice(t, 1, k * shape[0] // n, (k + 1) * shape[0] // n) if n > 1 else t for t, shape in sources]
        return parts[0] if len(parts) == 1 else g.op("Concat", *parts, axis=1)
    parts = []
    for t, shape in sources:
        size = int(np.prod(shape)) // n
        parts.append(g.slice(g.op("Flatten", t, axis=1), 1, k * size, (k + 1) * size))
    return g.reshape(g.op("Concat", *parts, axis=1), layer.out_shape)


def export_shortcut(g, layer, x, net):
    y = weighted_sum(g, layer, x, net) if layer.multilayer else residual(g, layer, x, net)
    return activate(g, y, layer.activation)


def weighted_sum(g, layer, x, net):
    """The fork's form: w0 x + sum of w_i from_i, each source on the channels it shares with x."""
    c = layer.in_shape[0]
    weights = layer.current_weights(net)
    per_channel = layer.weights_type == "per_channel"

    def scaled(t, i, channels):
        if weights is None:
            return t
        w = weights[i][:channels] if per_channel else weights[i][:1]
        return g.mul(t, w.reshape(1, -1, 1, 1))

    y = scaled(x, 0, c)
    for i, source in enumerate(layer.sources):
        sc = net.layers[source].out_shape[0]
        add = g.tensors[source]
        if sc > c:
            add = g.slice(add, 1, 0, c)
        add = scaled(add, i + 1, min(c, sc))
        y = g.op("Add", y, g.pad(add, [0, 0, 0], [c - min(c, sc), 0, 0]))
    return y


def residual(g, layer, x, net):
    """pjreddie's form: alpha x + beta from where they overlap. A larger `from` layer is read every `stride`
    pixels; a smaller one is added every `sample` pixels (darknet's shortcut_cpu)."""
    c, h, w = layer.in_shape
    c1, h1, w1 = net.layers[layer.source].out_shape
    stride, sample = max(w1 // w, 1), max(w // w1, 1)
    minc, minh, minw = min(c, c1), min(h, h1), min(w, w1)
    add = g.tensors[layer.source]
    if (c1, h1, w1) != (minc, minh * stride, minw * stride) or stride > 1:
        add = g.op("Slice", add, g.const([0, 0, 0]), g.const([minc, minh * stride, minw * stride]),
                   g.const([1, 2, 3]), g.const([1, stride, stride]))
    if layer.beta != 1:
        add = g.mul(add, np.float32(layer.beta))
    if sample > 1:   # zeros between the added pixels: (.., minh, 1, minw, 1) padded to (.., minh, sample, minw, sample)
        add = g.op("Reshape", add, g.const([-1, minc, minh, 1, minw, 1]))
        add = g.op("Pad", add, g.const([0] * 6 + [0, 0, 0, sample - 1, 0, sample - 1]))
        add = g.reshape(add, (minc, minh * sample, minw * sample))
    add = g.slice(g.slice(add, 2, 0, h), 3, 0, w)
    span_h, span_w = min(h, minh * sample), min(w, minw * sample)
    add = g.pad(add, [0, 0, 0], [c - minc, h - span_h, w - span_w])
    if layer.alpha != 1:
        mask = np.ones(layer.in_shape, np.float32)
        mask[:minc, 0:minh * sample:sample, 0:minw * sample:sample] = layer.alpha
        x = g.mul(x, mask[None])
    return g.op("Add", x, add)


def export_upsample(g, layer, x, net):
    """Nearest-neighbour upsampling; a negative stride sums stride x stride blocks (average times stride^2)."""
    s = layer.stride
    if layer.reverse:
        return g.mul(g.op("AveragePool", x, kernel_shape=[s, s], strides=[s, s]), np.float32(s * s * layer.scale))
    y = g.op("Resize", x, "", g.const(np.array([1, 1, s, s], np.float32), np.float32), mode="nearest",
             coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    return y if layer.scale == 1 else g.mul(y, np.float32(layer.scale))


def export_reorg3d(g, layer, x, net):
    """The fork's reorg is ONNX's SpaceToDepth: output channel q*c + k at (j, i) is channel k at
    (j*s + q // s, i*s + q % s) (tests/test_onnx.py checks it against pydarknet)."""
    return g.op("SpaceToDepth", x, blocksize=layer.stride)


def export_reorg(g, layer, x, net):
    """pjreddie's reorg gathers its input, read as (c/s^2, h*s, w*s), into (c, h, w): SpaceToDepth of that view,
    then the advertised shape. Its other modes (reverse, flatten) are a fixed permutation of each image's values,
    taken from the layer itself; extra= appends zeros."""
    c, h, w = layer.in_shape
    s = layer.stride
    if layer.extra:
        return g.reshape(g.pad(g.reshape(x, (1, 1, c * h * w)), [0], [layer.extra]), layer.out_shape)
    if not layer.reverse and not layer.flatten:
        y = g.op("SpaceToDepth", g.reshape(x, (c // (s * s), h * s, w * s)), blocksize=s)
        return g.reshape(y, layer.out_shape)
    if layer.inputs >= 1 << 24:
        raise layer.error("reverse=/flatten= on more than 2^24 values per image cannot be exported")
    probe = copy.copy(layer)
    probe._buffers = {}   # its own output buffer: the layer's keeps its last output
    order = probe.forward(np.arange(layer.inputs, dtype=np.float32).reshape((1,) + layer.in_shape), net)
    return g.reshape(g.op("Gather", g.op("Flatten", x, axis=1), g.const(order.reshape(-1).astype(np.int64)),
                          axis=1), layer.out_shape)


def export_sam(g, layer, x, net):
    return activate(g, g.op("Mul", x, g.tensors[layer.source]), layer.activation)


def export_scale_channels(g, layer, x, net):
    return activate(g, g.op("Mul", g.tensors[layer.source], x), layer.activation)


def tree_softmax(g, x, axis, tree, temperature=1.0):
    """One softmax per group of a class tree along `axis` (a tree's groups are consecutive runs of nodes)."""
    sizes = [int(size) for size in tree.group_size if size]
    parts = g.op("Split", x, g.const(sizes), axis=axis, outputs=len(sizes))
    parts = [parts] if isinstance(parts, str) else parts
    return g.op("Concat", *[softmax(g, p, axis, temperature) for p in parts], axis=axis)


def softmax(g, x, axis, temperature=1.0):
    if temperature != 1:
        x = g.mul(x, np.float32(np.float32(1) / np.float32(temperature)))
    return g.op("Softmax", x, axis=axis)


def export_softmax(g, layer, x, net):
    """darknet's softmax over `groups` equal slices of the flat input (with its temperature), over the groups of
    a tree, or with spatial=1 across the channels of each pixel."""
    if layer.spatial:
        return g.reshape(g.op("Softmax", x, axis=1), layer.out_shape)
    if layer.tree is not None:
        y = tree_softmax(g, g.op("Flatten", x, axis=1), 1, layer.tree, layer.temperature)
    else:
        y = softmax(g, g.reshape(x, (layer.groups, layer.inputs // layer.groups)), 2, layer.temperature)
    return g.reshape(y, layer.out_shape)


def export_region(g, layer, x, net):
    """YOLOv2: per anchor, logistic on x, y and objectness (not with background=1), then the classes: logistic,
    a softmax (over the background slot too with background=1) or one softmax per class-tree group."""
    _, h, w = layer.in_shape
    coords, e = layer.coords, layer.entries
    y = g.reshape(x, (layer.n, e, h * w))
    parts = [g.op("Sigmoid", g.slice(y, 2, 0, 2))]
    if coords > 2:
        parts.append(g.slice(y, 2, 2, coords))
    objectness, classes = g.slice(y, 2, coords, coords + 1), g.slice(y, 2, coords + 1, e)
    if layer.tree is None and layer.softmax and layer.background:
        parts.append(g.op("Softmax", g.slice(y, 2, coords, e), axis=2))
    else:
        parts.append(objectness if layer.background else g.op("Sigmoid", objectness))
        if layer.tree is not None:
            parts.append(tree_softmax(g, classes, 2, layer.tree))
        else:
            parts.append(g.op("Softmax", classes, axis=2) if layer.softmax else g.op("Sigmoid", classes))
    return g.reshape(g.op("Concat", *parts, axis=2), layer.out_shape)


def export_yolo(g, layer, x, net):
    """YOLOv3: logistic on x, y, objectness and classes (not with new_coords=1: the convolution did it), then
    x, y stretched by scale_x_y about the cell centre: s*x - (s - 1)/2."""
    if layer.new_coords and layer.scale_x_y == 1:
        return x
    _, h, w = layer.in_shape
    y = g.reshape(x, (layer.n, layer.classes + 5, h * w))
    xy, wh, rest = g.slice(y, 2, 0, 2), g.slice(y, 2, 2, 4), g.slice(y, 2, 4, layer.classes + 5)
    if not layer.new_coords:
        xy, rest = g.op("Sigmoid", xy), g.op("Sigmoid", rest)
    if layer.scale_x_y != 1:
        xy = g.add(g.mul(xy, layer.scale_x_y), np.float32(-0.5 * np.float64(layer.scale_x_y - np.float32(1))))
    return g.reshape(g.op("Concat", xy, wh, rest, axis=2), layer.out_shape)


def export_detection(g, layer, x, net):
    """YOLOv1: with softmax=1 a softmax over each cell's class scores (the first side*side*classes values)."""
    if not layer.softmax:
        return x
    cells = layer.side * layer.side
    flat = g.op("Flatten", x, axis=1)
    classes = g.op("Softmax", g.op("Reshape", g.slice(flat, 1, 0, cells * layer.classes),
                                   g.const([-1, cells, layer.classes])), axis=2)
    rest = g.slice(flat, 1, cells * layer.classes, layer.inputs)
    return g.reshape(g.op("Concat", g.op("Flatten", classes, axis=1), rest, axis=1), layer.out_shape)


def export_dropout(g, layer, x, net):
    return x


def export_cost(g, layer, x, net):
    """At inference a [cost] layer outputs zeros."""
    return g.op("ConstantOfShape", g.op("Shape", x), value=g.helper.make_tensor("zero", g.tensor_type, [1], [0]))


def export_activation(g, layer, x, net):
    return activate(g, x, layer.activation)


def export_normalization(g, layer, x, net):
    """x * (kappa + alpha * the sum of squares over channels c - (size-1)//2 .. c + size//2)^-beta, the window sum
    as a convolution along the channels (ONNX Runtime's LRN takes odd sizes only). Darknet's running sum starts
    from channels 0 .. size/2 - 1 and never adds channel size/2, so every channel's sum lacks that one's square."""
    c, h, w = layer.in_shape
    size = layer.size
    squares = g.reshape(g.op("Mul", x, x), (1, c, h * w))
    window = g.op("Conv", squares, g.const(np.ones((1, 1, size, 1), np.float32)), kernel_shape=[size, 1],
                  pads=[(size - 1) // 2, 0, size // 2, 0])
    if size // 2 < c:
        window = g.op("Sub", window, g.slice(squares, 2, size // 2, size // 2 + 1))
    norm = g.add(g.mul(window, np.float32(layer.alpha)), np.float32(layer.kappa))
    return g.op("Mul", x, g.reshape(g.op("Pow", norm, g.const(np.float32(-layer.beta))), (c, h, w)))


def export_l2norm(g, layer, x, net):
    return g.op("Div", x, g.op("Sqrt", g.reduce("ReduceSumSquare", x, [1])))


def export_local(g, layer, x, net):
    """Each output location's own filters: the input's columns (darknet's im2col, as a grouped convolution with
    one-hot kernels), one matrix product per location, then the biases (one per output value)."""
    c, _, _ = layer.in_shape
    n, oh, ow = layer.out_shape
    size, taps = layer.size, layer.size * layer.size
    picks = np.zeros((c * taps, 1, size, size), np.float32)
    picks.reshape(c, taps, taps)[:, np.arange(taps), np.arange(taps)] = 1
    cols = g.op("Conv", x, g.const(picks), kernel_shape=[size, size], strides=[layer.stride] * 2,
                pads=[layer.pad] * 4, group=c)
    cols = g.op("Transpose", g.reshape(cols, (c * taps, oh * ow)), perm=[2, 0, 1])     # (locations, batch, k)
    y = g.op("MatMul", cols, g.const(layer.weights.transpose(0, 2, 1)))                  # (locations, batch, n)
    y = g.reshape(g.op("Transpose", y, perm=[1, 2, 0]), (n, oh, ow))
    return activate(g, g.add(y, layer.biases[None]), layer.activation)


def export_crop(g, layer, x, net):
    """The centred window, times 2 minus 1 unless noadjust=1. A window larger than the input reads on into the
    next rows, channels and images as darknet's flat indexing does (zeros past the batch): a constant gather over
    the whole batch, which needs a fixed batch size."""
    c, h, w = layer.in_shape
    _, oh, ow = layer.out_shape
    dh, dw = int((h - oh) / 2), int((w - ow) / 2)
    if 0 <= dh and 0 <= dw:
        y = g.slice(g.slice(x, 2, dh, dh + oh), 3, dw, dw + ow)
    elif g.batch is None:
        raise layer.error("a crop larger than its input reads past it (darknet's flat indexing): export it "
                          "with a fixed --batch", "crop_height")
    else:
        flat = g.op("Concat", g.op("Reshape", x, g.const([-1])), g.const(np.zeros(1, np.float32)), axis=0)
        b, ch, i, j = np.meshgrid(*map(np.arange, (g.batch, c, oh, ow)), indexing="ij")
        index = j + dw + w * (i + dh + h * (ch + c * b))
        index[(index < 0) | (index >= g.batch * c * h * w)] = g.batch * c * h * w
        y = g.op("Gather", flat, g.const(index))
    if layer.noadjust:
        return y
    return g.add(g.mul(y, np.float32(2)), np.float32(-1))


EXPORTERS = {
    "convolutional": export_convolutional, "connected": export_connected, "batchnorm": export_batchnorm,
    "maxpool": export_maxpool, "local_avgpool": export_local_avgpool, "avgpool": export_avgpool,
    "route": export_route, "shortcut": export_shortcut, "upsample": export_upsample, "reorg": export_reorg,
    "reorg3d": export_reorg3d, "sam": export_sam, "scale_channels": export_scale_channels,
    "softmax": export_softmax, "region": export_region, "yolo": export_yolo, "detection": export_detection,
    "dropout": export_dropout, "cost": export_cost, "activation": export_activation, "logistic": export_activation,
    "normalization": export_normalization, "l2norm": export_l2norm, "local": export_local, "crop": export_crop,
}


# -- decoding (--decode) ---------------------------------------------------------------------------------------
def grid_boxes(g, p, cells, width, height, size, anchors):
    """Boxes (batch, candidates, 4) relative to the network input from predictions p (batch, candidates, entries):
    x = (column + p0) / width, y = (row + p1) / height, w and h = size(p2, anchor width), size(p3, anchor height),
    the anchors (candidates, 2) relative to the input."""
    column = (cells % width).astype(np.float32)[:, None]
    row = (cells // width).astype(np.float32)[:, None]
    x = g.op("Div", g.add(g.slice(p, 2, 0, 1), column), g.const(np.float32(width)))
    y = g.op("Div", g.add(g.slice(p, 2, 1, 2), row), g.const(np.float32(height)))
    w = size(g.slice(p, 2, 2, 3), anchors[:, :1])
    h = size(g.slice(p, 2, 3, 4), anchors[:, 1:])
    return g.op("Concat", x, y, w, h, axis=2)


def exp_times(g, t, anchor):
    """exp(t) * anchor as exp(t + log(anchor)): infinite only where darknet's (exp in double) is."""
    return g.op("Exp", g.add(t, np.log(anchor.astype(np.float64))))


def decode_yolo(g, layer, y, net):
    """Candidates cell by cell, anchor by anchor (darknet's order); w, h = exp(t) (new_coords: (2t)^2) times the
    anchor in network pixels."""
    _, h, w = layer.out_shape
    entries = layer.classes + 5
    p = g.op("Transpose", g.reshape(y, (layer.n, entries, h * w)), perm=[0, 3, 1, 2])
    p = g.reshape(p, (h * w * layer.n, entries))
    mask = np.tile(layer.mask, h * w)
    anchors = np.stack([layer.biases[2 * mask] / net.w, layer.biases[2 * mask + 1] / net.h], 1)

    def size(t, anchor):
        return g.mul(g.op("Mul", t, t), 4 * anchor) if layer.new_coords else exp_times(g, t, anchor)

    boxes = grid_boxes(g, p, np.repeat(np.arange(h * w), layer.n), w, h, size, anchors)
    return boxes, g.op("Mul", g.slice(p, 2, 4, 5), g.slice(p, 2, 5, entries))


def decode_region(g, layer, y, net):
    """Candidates anchor by anchor, cell by cell; w, h = exp(t) times the anchor in cells; class probabilities
    times the objectness (not with background=1)."""
    if layer.tree is not None:
        raise layer.error("--decode of a class tree (tree=) is not supported: export without --decode", "tree")
    _, h, w = layer.out_shape
    e, coords = layer.entries, layer.coords
    p = g.reshape(g.op("Transpose", g.reshape(y, (layer.n, e, h * w)), perm=[0, 1, 3, 2]), (layer.n * h * w, e))
    anchor = np.repeat(np.arange(layer.n), h * w)
    anchors = np.stack([layer.biases[2 * anchor] / w, layer.biases[2 * anchor + 1] / h], 1)
    boxes = grid_boxes(g, p, np.tile(np.arange(h * w), layer.n), w, h, lambda t, anchor: exp_times(g, t, anchor),
                       anchors)
    scores = g.slice(p, 2, coords + 1, e)
    if not layer.background:
        scores = g.op("Mul", g.slice(p, 2, coords, coords + 1), scores)
    return boxes, scores


def decode_detection(g, layer, y, net):
    """YOLOv1: per cell, every class score then every box's confidence then every box; candidates cell by cell,
    box by box; w, h squared with sqrt=1. No letterbox correction (YOLOv1 stretches the image)."""
    cells, n, classes = layer.side * layer.side, layer.n, layer.classes
    flat = g.op("Flatten", y, axis=1)
    cls = g.op("Reshape", g.slice(flat, 1, 0, cells * classes), g.const([-1, cells, 1, classes]))
    conf = g.op("Reshape", g.slice(flat, 1, cells * classes, cells * (classes + n)), g.const([-1, cells, n, 1]))
    p = g.op("Reshape", g.slice(flat, 1, cells * (classes + n), cells * (classes + 5 * n)), g.const([-1, cells * n, 4]))
    size = (lambda t, _: g.op("Mul", t, t)) if layer.sqrt else (lambda t, _: t)
    boxes = grid_boxes(g, p, np.repeat(np.arange(cells), n), layer.side, layer.side, size, np.ones((cells * n, 2)))
    return boxes, g.op("Reshape", g.op("Mul", conf, cls), g.const([-1, cells * n, classes]))


DECODERS = {"yolo": decode_yolo, "region": decode_region, "detection": decode_detection}


def letterbox_correction(g, boxes, net):
    """darknet's correct_*_boxes for a letterboxed input: boxes relative to the network input mapped onto the
    image of size image_size (batch, 2: width, height), which letterbox_image scaled to new_w x new_h."""
    netw, neth = np.float32(net.w), np.float32(net.h)
    size = g.op("Unsqueeze", "image_size", g.const([1]))                        # (batch, 1, 2)
    iw, ih = g.slice(size, 2, 0, 1), g.slice(size, 2, 1, 2)
    wide = g.op("Less", g.op("Div", g.const(netw), iw), g.op("Div", g.const(neth), ih))

    def scaled(a, b, net_a):   # (a * net_b) // b in integers, as darknet's letterbox_size
        product = g.op("Mul", g.op("Cast", a, to=7), g.const(np.int64(net_a)))
        return g.op("Cast", g.op("Div", product, g.op("Cast", b, to=7)), to=1)

    new_w = g.op("Where", wide, g.const(netw), scaled(iw, ih, net.h))
    new_h = g.op("Where", wide, scaled(ih, iw, net.w), g.const(neth))
    sx, sy = g.op("Div", new_w, g.const(netw)), g.op("Div", new_h, g.const(neth))
    x = g.op("Div", g.op("Sub", g.slice(boxes, 2, 0, 1), g.op("Div", g.op("Sub", g.const(netw), new_w),
                                                                   g.const(2 * netw))), sx)
    y = g.op("Div", g.op("Sub", g.slice(boxes, 2, 1, 2), g.op("Div", g.op("Sub", g.const(neth), new_h),
                                                                   g.const(2 * neth))), sy)
    return g.op("Concat", x, y, g.op("Div", g.slice(boxes, 2, 2, 3), sx), g.op("Div", g.slice(boxes, 2, 3, 4), sy),
                axis=2)


# -- the whole network -----------------------------------------------------------------------------------------
def layer_name(layer):
    """The name of a layer's nodes and output tensor."""
    return f"layer_{layer.index}_{layer.type}"


def output_layers(net):
    """The layers whose outputs the graph gives: every [yolo], [region] and [detection], else the network's
    output layer (a classifier's softmax)."""
    return [layer for layer in net.layers if layer.type in OUTPUT_TYPES] or [net.output_layer]


def letterboxes(net):
    """Whether the network's detector letterboxes its input (pjreddie's always, the fork's with letter_box=1)."""
    return net.darknet != "ab" or bool(net.letter_box)


def metadata(net, outputs, decode, names):
    """The model's metadata_props: what the inputs and outputs are, and what decoding and NMS need."""
    heads = [layer for layer in outputs if layer.type in OUTPUT_TYPES]
    last = heads[-1] if heads else None
    meta = {
        "darknet": net.darknet,
        "input": f"input: float32 (batch, {net.c}, {net.h}, {net.w}), the image's RGB in [0, 1] "
                 f"{'letterboxed' if letterboxes(net) else 'resized'} to {net.w}x{net.h} as darknet does",
        "letterbox": letterboxes(net),
        "outputs": ([{"name": "boxes", "what": "(batch, candidates, 4): centre x, y, width, height relative to the "
                      "image"}, {"name": "scores", "what": "(batch, candidates, classes): objectness x class "
                                 "probability; NMS left to do (pydarknet.tasks.onnx.postprocess)"}] if decode else
                    [{"name": layer_name(layer), "layer": layer.index, "type": layer.type,
                      "shape": ["batch", *layer.out_shape]} for layer in outputs]),
        "classes": getattr(last, "classes", None) if last else int(np.prod(net.output_layer.out_shape)),
        "anchors": {layer_name(layer): layer.biases.reshape(-1, 2).tolist() for layer in heads
                    if layer.type != "detection"},
        "masks": {layer_name(layer): list(layer.mask) for layer in heads if layer.type == "yolo"},
        "nms_kind": getattr(last, "nms_kind", "default"),
        "beta_nms": round(float(getattr(last, "beta_nms", 0.6)), 6),
    }
    if names is not None:
        meta["names"] = list(names)
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in meta.items()}


def onnx_package():
    """The onnx package, or one line saying how to install it (checked before any weights are read)."""
    try:
        import onnx
    except ImportError:
        raise DarknetError(f"export onnx needs the onnx package: {install_hint('onnx')}") from None
    return onnx


def export(net, path=None, opset=DEFAULT_OPSET, batch=1, decode=False, fp16=False, names=None, layers=None):
    """The ONNX model (onnx.ModelProto) of a loaded network, checked, and saved to `path` if given.

    batch: the batch size, or None for a dynamic one. decode: outputs `boxes` and `scores` (see the module's
    notes) instead of the raw output layers'. fp16: float16 weights and arithmetic from the second layer on
    (the inputs, the first layer and the outputs stay float32). names: class names for the metadata. layers:
    indices of the layers whose outputs to give instead of the network's outputs (to check a graph layer by
    layer)."""
    onnx = onnx_package()
    from onnx import TensorProto, helper
    if not MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise DarknetError(f"opset {opset}: the export needs {MIN_OPSET} to {onnx.defs.onnx_opset_version()}")
    if decode and layers is not None:
        raise DarknetError("decode and layers= exclude each other")
    g = Graph(opset, np.float32, batch)
    dims = [batch or "batch"]
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims + list(net.input_shape))]
    x = "input"
    for layer in net.layers:
        exporter = EXPORTERS.get(layer.type)
        if exporter is None:
            raise layer.error(f"[{layer.type}] layers cannot be exported to ONNX")
        g.prefix, g.count = layer_name(layer), 0
        y = exporter(g, layer, x, net)
        # --fp16 from the second layer on. The first layer has the fewest weights and reads the float32 image,
        # and its folded batch-norm can cancel large sums (yolov3-tiny: convolution sums near 40 shifted to about
        # .5, beyond float16's precision): in float16 it left yolov3-tiny's outputs 0.7-1.1e-2 from pydarknet's,
        # in float32 3.8-5.7e-3.
        if fp16 and layer.index == 0:
            g.dtype = np.float16
            y = g.op("Cast", y, to=g.tensor_type)
        x = g.tensors[layer.index] = g.finish_layer(y)
    outputs = output_layers(net) if layers is None else [net.layers[i] for i in layers]
    if fp16:   # the float32 outputs keep the layers' names, their float16 tensors get another
        for layer in outputs:
            name = g.tensors[layer.index]
            g.rename(name, name + "/float16")
            g.nodes.append(helper.make_node("Cast", [name + "/float16"], [name], name=name + "/float32",
                                            to=TensorProto.FLOAT))
    shapes = {g.tensors[layer.index]: dims + list(layer.out_shape) for layer in outputs}
    if decode:
        shapes = decoded(g, net, outputs, inputs, dims)
    graph = helper.make_graph(g.nodes, "darknet", inputs,
                              [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
                               for name, shape in shapes.items()], g.initializers)
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="pydarknet",
                              doc_string=f"{net.cfg_path}, exported by pydarknet")
    # the least IR version the opset needs, not the onnx package's newest: runtimes refuse an IR version newer
    # than they know (ONNX Runtime 1.31 refused onnx 1.23's 14 on an opset-17 graph)
    model.ir_version = helper.find_min_ir_version_for(opsets)
    helper.set_model_props(model, metadata(net, outputs, decode, names))
    onnx.checker.check_model(model)
    if path is not None:   # whole or not at all, as every file a command writes
        atomic_write(path, model.SerializeToString())
    return model


def decoded(g, net, outputs, inputs, dims):
    """The decoding nodes after the raw outputs, in float32, making "boxes" and "scores": their shapes. Adds the
    image_size input when the network letterboxes."""
    from onnx import TensorProto, helper
    if not any(layer.type in DECODERS for layer in outputs):
        raise DarknetError(f"{net.cfg_path}: --decode needs a [yolo], [region] or [detection] layer")
    g.dtype, g.prefix, g.count = np.float32, "decode", 0
    classes = {layer.classes for layer in outputs}
    if len(classes) > 1:
        raise DarknetError(f"{net.cfg_path}: --decode needs every output layer to have the same classes "
                           f"(they have {sorted(classes)})")
    correct = letterboxes(net) and any(layer.type != "detection" for layer in outputs)
    if correct:
        inputs.append(helper.make_tensor_value_info("image_size", TensorProto.FLOAT, dims + [2]))
    boxes, scores, count = [], [], 0
    for layer in outputs:
        b, s = DECODERS[layer.type](g, layer, g.tensors[layer.index], net)
        boxes.append(letterbox_correction(g, b, net) if correct and layer.type != "detection" else b)
        scores.append(s)
        _, h, w = layer.out_shape
        count += layer.n * (layer.side ** 2 if layer.type == "detection" else h * w)
    g.rename(g.op("Concat", *boxes, axis=1), "boxes")
    g.rename(g.op("Concat", *scores, axis=1), "scores")
    return {"boxes": dims + [count, 4], "scores": dims + [count, classes.pop()]}


# -- after the graph: NMS --------------------------------------------------------------------------------------
def overlaps(box, others, beta_nms=None):
    """IoU of one box (x, y, w, h, centre and size) with each of `others` (n, 4); with beta_nms the fork's DIoU:
    IoU - (centre distance^2 / enclosing box diagonal^2)^beta_nms."""
    lo = np.maximum(box[:2] - box[2:] / 2, others[:, :2] - others[:, 2:] / 2)
    hi = np.minimum(box[:2] + box[2:] / 2, others[:, :2] + others[:, 2:] / 2)
    sides = hi - lo
    inter = np.where((sides >= 0).all(1), sides.prod(1), 0)
    union = box[2] * box[3] + others[:, 2] * others[:, 3] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, 0)
        if beta_nms is None:
            return iou
        outer = (np.maximum(box[:2] + box[2:] / 2, others[:, :2] + others[:, 2:] / 2)
                 - np.minimum(box[:2] - box[2:] / 2, others[:, :2] - others[:, 2:] / 2))
        distance = ((box[:2] - others[:, :2]) ** 2).sum(1) / (outer ** 2).sum(1)
        return iou - np.where(np.isfinite(distance), distance, 0) ** beta_nms


def postprocess(boxes, scores, thresh=0.5, nms=0.45, beta_nms=None):
    """Detections from a --decode graph's outputs, as darknet's detector finds them: per image and class, the
    candidates scoring over `thresh`, likeliest first, each dropped if a likelier one kept overlaps it by more
    than `nms` IoU (0: no NMS). beta_nms: suppress by the fork's DIoU instead (its nms_kind greedynms: .6,
    diounms: the metadata's beta_nms). Returns, per image, (class, score, (x, y, w, h)) tuples, best first."""
    results = []
    for image_boxes, image_scores in zip(np.asarray(boxes, np.float32), np.asarray(scores, np.float32)):
        found = []
        for c in range(image_scores.shape[1]):
            candidates = np.flatnonzero(image_scores[:, c] > thresh)
            kept = []
            for i in candidates[np.argsort(-image_scores[candidates, c], kind="stable")]:
                if not kept or nms <= 0 or overlaps(image_boxes[i], image_boxes[kept], beta_nms).max() <= nms:
                    kept.append(i)
            found += [(c, float(image_scores[i, c]), tuple(float(v) for v in image_boxes[i])) for i in kept]
        results.append(sorted(found, key=lambda d: -d[1]))
    return results
