"""[shortcut]: add earlier layers' outputs to the input (ResNet's residual), then an activation.

pjreddie's form (one `from=`, `alpha`/`beta`): out = act(alpha*x + beta*from) where the shapes overlap, the
`from` layer sampled or strided when its size differs. The AlexeyAB fork's form (several `from=` layers,
`weights_type=per_feature|per_channel`, `weights_normalization=none|relu|softmax`): out = act(w0*x +
sum_i w_i*from_i), each from_i added to the channels it shares with x (same width and height); the weights
are one per input (per_feature) or per input and channel (per_channel), stored in the .weights file, and
normalised over the inputs (relu: positive parts over their sum, softmax: exponentials over theirs; both
with .0001 added to the sum).
"""
import numpy as np

from ...kernels import backward
from ...kernels.activations import CODE as ACTIVATIONS, LINEAR, activate_array, expf_array, fork_scalar
from ...kernels.resample import shortcut
from .base import Layer
from .convolutional import Convolutional, activation_gradient, finish_activation, inline_activation, parse_activation

WEIGHTS_TYPES = {"none": "none", "per_feature": "per_feature", "per_layer": "per_feature",
                 "per_channel": "per_channel"}
NORMALIZATIONS = {"none": "none", "relu": "relu", "avg_relu": "relu", "softmax": "softmax"}
EPS = np.float32(0.0001)


def normalization_terms(weights, normalization, floor):
    """The fork's normalisation of the weights (inputs, step) over the inputs, as (terms, total) in float32:
    relu's terms max(w, floor) (floor 0 in the fork's CPU forward, .001 in its GPU code and its
    fuse_conv_batchnorm), softmax's expf(w - max); their sum from .0001, input after input."""
    if normalization == "relu":
        terms = np.where(weights > floor, weights, np.float32(floor)).astype(np.float32)
    else:
        terms = expf_array(np.ascontiguousarray(weights - weights.max(axis=0)))
    total = np.full(weights.shape[1], EPS, np.float32)
    for row in terms:    # the fork's sum, input after input
        total += row
    return terms, total


def normalized_weights(weights, normalization, floor):
    """The weights (inputs, step) normalised over the inputs in float32 as the fork computes them."""
    if normalization == "none":
        return weights
    terms, total = normalization_terms(weights, normalization, floor)
    return (terms / total).astype(np.float32)


class Shortcut(Layer):
    type = "shortcut"
    names = ("shortcut",)
    trainable = (("weights", "weight_updates", False),)   # the fork updates them without decay

    def __init__(self, section, in_shape, net, index):
        self.section, self.index = section, index
        if not section.has("from"):
            raise self.error("needs from=", "from")
        self.sources = [self.layer_index(v, net, "from") for v in section.ints("from")]
        self.reads_layers = self.sources
        self.source = self.sources[0]
        self.activation = parse_activation(self, "linear", ("swish", "mish"))
        weights_type = section.str("weights_type", "none")
        normalization = section.str("weights_normalization", "none")
        if weights_type not in WEIGHTS_TYPES:
            raise self.error(f"weights_type={weights_type}: use none, per_feature or per_channel", "weights_type")
        if normalization not in NORMALIZATIONS:
            raise self.error(f"weights_normalization={normalization}: use none, relu or softmax",
                             "weights_normalization")
        self.weights_type = WEIGHTS_TYPES[weights_type]
        self.normalization = NORMALIZATIONS[normalization] if self.weights_type != "none" else "none"
        # the fork's form whenever one of its options is used; pjreddie's (alpha, beta) otherwise
        self.multilayer = len(self.sources) > 1 or self.weights_type != "none"
        if self.multilayer:
            for key in ("alpha", "beta"):
                if section.has(key):
                    raise self.error(f"{key}= (pjreddie's) cannot go with several from= layers or weights_type=",
                                     key)
        self.alpha = section.float("alpha", 1.0)
        self.beta = section.float("beta", 1.0)
        self.weights = None
        if self.weights_type != "none":
            step = 1 if self.weights_type == "per_feature" else in_shape[0]
            self.weights = np.ones((len(self.sources) + 1, step), np.float32)   # the fork's starting weights
        super().__init__(section, in_shape, net, index)

    def setup(self, in_shape, net):
        c, h, w = self.in_shape = self.out_shape = tuple(in_shape)
        self.need_image_input()
        self.source_shape = net.layers[self.source].out_shape
        if self.weights is not None and self.weights_type == "per_channel" and self.weights.shape[1] != c:
            raise self.error(f"cannot take {c} channels: its per_channel weights were made for "
                             f"{self.weights.shape[1]}")
        if self.multilayer:
            for i in self.sources:
                if net.layers[i].out_shape[1:] != (h, w):
                    _, h2, w2 = net.layers[i].out_shape
                    raise self.error(f"layer {i} is {w2} x {h2}, the input {w} x {h}: several from= layers or "
                                     "weights need the same width and height", "from")

    def residual_in_place(self):
        """The `from` layer of a plain residual, out = x + from (one from= layer of the input's shape, alpha and beta
        1, linear: darknet's arithmetic gives that sum's floats), which may be added to x in place, or by the
        convolution before as it stores x (network/outputs.py); else None."""
        plain = (not self.multilayer and self.alpha == 1 and self.beta == 1 and self.activation == "linear"
                 and self.source_shape == self.out_shape)
        return self.source if plain else None

    def weight_arrays(self, transpose=False, loading=False):
        return [] if self.weights is None else [self.weights]

    def describe(self):
        c, h, w = self.out_shape
        if not self.multilayer:
            c2, h2, w2 = self.in_shape
            return f"res  {self.source:3d}                {w2:4d} x{h2:4d} x{c2:4d}   ->  {w:4d} x{h:4d} x{c:4d}"
        weights = "" if self.weights is None else f", wt = {self.weights_type}, wn = {self.normalization}"
        sources = ", ".join(str(i) for i in self.sources)
        return f"Shortcut Layer: {sources}{weights}, outputs: {w:4d} x{h:4d} x{c:4d}"

    def current_weights(self, net):
        """The input's and each source's weight per channel group (inputs, step), normalised; None without
        weights. The fork's unfused CPU inference floors relu at 0, its GPU training and fused inference
        at .001 (fuse_conv_batchnorm normalises these weights too)."""
        if self.weights is None:
            return None
        return normalized_weights(self.weights, self.normalization, self.relu_floor(net))

    def relu_floor(self, net):
        return 0.001 if (net.train or (net.darknet == "ab" and net.fuse_batchnorm)) else 0.0

    def add_sources(self, out, net):
        """out += each source's output times its weight, in the order the fork's -Ofast build multiplies them:
        with a normalisation the weight is term * (1/total), softmax's applied as (source * (1/total)) * term,
        relu's as (source * term) * (1/total)."""
        per_channel = self.weights_type == "per_channel"
        if self.weights is not None and self.normalization != "none":
            terms, total = normalization_terms(self.weights, self.normalization, self.relu_floor(net))
            inverse = np.float32(1.0) / total
        for i, index in enumerate(self.sources):
            source = net.layers[index].output
            common = min(out.shape[1], source.shape[1])

            def scale(values, common=common):   # a source's weights over its channels (per_channel), or one number
                return values[:common, None, None] if per_channel else values[0]
            add = source[:, :common]
            if self.weights is None:
                pass
            elif self.normalization == "softmax":
                add = (add * scale(inverse)) * scale(terms[i + 1])
            elif self.normalization == "relu":
                add = (add * scale(terms[i + 1])) * scale(inverse)
            else:
                add = add * scale(self.weights[i + 1])
            out[:, :common] += add

    def forward(self, x, net):
        if self.in_place is not None:   # x: its writer's own array, read by this layer alone (network/outputs.py)
            writer = net.layers[self.in_place.writer]
            if not (isinstance(writer, Convolutional) and writer.plan(net, x.shape[0]).residual is not None):
                shortcut(x, net.layers[self.source].output, np.float32(1), np.float32(1), LINEAR, x)
            return x
        out = self.output_buffer(x.shape[0])
        code = ACTIVATIONS[self.activation]
        inline = inline_activation(code, net.train)
        if net.darknet == "ab":   # the fork activates element by element with its float activate()
            inline = fork_scalar(inline)
        if not self.multilayer:
            shortcut(x, net.layers[self.source].output, np.float32(self.alpha), np.float32(self.beta), inline, out)
        else:
            self.normalized = weights = self.current_weights(net)
            out[...] = x if weights is None else x * weights[0][:, None, None]
            self.add_sources(out, net)
            activate_array(out.reshape(-1), inline)
        batch, c, h, w = out.shape
        finish_activation(self, out.reshape(batch, c, h * w), code, net.train)
        return out

    def backward(self, net):
        """The activation's gradient, then the delta passed to every input. pjreddie's form: alpha * delta to the
        input's delta (over the whole output, as darknet, though the forward scales only the overlap by alpha)
        and beta * delta to the `from` layer's where the shapes overlap. The fork's: each input gets delta times
        its weight, and each weight's update gathers delta * input * (w for relu, w(1 - w) for softmax,
        1 without normalisation), as the fork's GPU code (which the AlexeyAB training goldens follow)."""
        batch, c, h, w = self.delta.shape
        activation = activation_gradient(self, self.delta.reshape(batch, c, h * w), ACTIVATIONS[self.activation])
        backward.gradient_array32(self.output.reshape(-1), activation, self.delta.reshape(-1))
        prev = self.prev_delta(net)
        if not self.multilayer:
            if prev is not None:
                backward.axpy(np.float32(self.alpha), self.delta.reshape(-1), prev.reshape(-1))
            source = net.layers[self.source]
            backward.shortcut_backward(self.delta, np.float32(self.beta),
                                       source.delta.reshape((batch,) + source.out_shape))
            return
        inputs = [self.prev_input(net)] + [net.layers[i].output for i in self.sources]
        deltas = [prev] + [net.layers[i].delta.reshape((batch,) + net.layers[i].out_shape) for i in self.sources]
        weights = self.normalized
        for i, (value, delta) in enumerate(zip(inputs, deltas)):
            common = min(c, value.shape[1])
            d = self.delta[:, :common]
            if weights is None:
                if delta is not None:
                    delta[:, :common] += d
                continue
            wi = weights[i][:common] if self.weights_type == "per_channel" else weights[i]
            if delta is not None:
                delta[:, :common] += d * wi[:, None, None]
            if self.normalization == "softmax":
                grad = wi * (np.float32(1) - wi)
            elif self.normalization == "relu":
                grad = wi
            else:
                grad = np.ones_like(wi)
            terms = (d * value[:, :common]).sum(axis=(0, 2, 3), dtype=np.float32)
            if self.weights_type == "per_feature":
                terms = terms.sum(dtype=np.float32, keepdims=True)
            self.weight_updates[i, :terms.size] += terms * grad

    def update(self, args):
        """The fork's GPU update of these weights: the accumulated updates clipped to [-1, 1] first."""
        if self.weights is not None:
            np.clip(self.weight_updates, -1, 1, out=self.weight_updates)
        super().update(args)
