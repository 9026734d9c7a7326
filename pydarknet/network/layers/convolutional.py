"""[convolutional]: filters x (size x size x c/groups) kernels, optional batch-norm, then an activation.

Forward is the product of the weights with the image's columns (kernels.products; with the chain kernel the
columns go straight from the image into the product's packed panels, otherwise through im2col), then one fused
Numba pass for batch-norm, bias and activation. In training, batch-norm uses the batch's statistics; backward is two
products (weight gradient, input gradient) and a col2im.

The batch goes through each step in one call, in chunks of images whose columns fit a scratch budget: one
parallel im2col for the chunk, then one product per image -- or, when an image has few output positions,
one product for the whole chunk, its columns side by side (each output element is still one chain over k:
the same floats as image by image). The weight gradient is summed image by image in darknet's order
(kernels.products.conv_weight_gradient, from im2col's columns or their transpose, whichever its path reads).
The training forward keeps the raw sums in bn_x and writes the activations to the output buffer; the
backward applies the activation's gradient inside batch-norm's backward pass.

In the fast modes' inference a layer's pass is decided once per state of the network (Plan, make_plan): the
products, the fused store (batch-norm, bias, activation and a 2x2 pool applied as the products store), and, on the
AMX tiles, whether the layer hands its output to the next convolution in that one's bf16 layout (hands_over).

The AlexeyAB fork's options: `dilation` (taps that many pixels apart, the padding scaled with them) and its
batch-norm arithmetic when net.darknet is "ab": sqrt(var + .00001) and, at inference with
net.fuse_batchnorm, the batch-norm folded into the weights and biases as its fuse_conv_batchnorm does.
"""
import math
from typing import NamedTuple

import numpy as np

from ...kernels import backward
from ...kernels.aligned import aligned_zeros
from ...kernels.activations import (ACROSS_CHANNELS, CODE as ACTIVATIONS, LINEAR, NEEDS_INPUT, activate_array,
                                    activate_channels, fork_scalar)
from ...kernels.conv import (col2im_batch, depthwise_convolution, im2col_batch, im2col_t, normalize_activate_maxpool,
                             normalize_scale_bias_activate, pad_images)
from ...kernels.epilogue import (ACTIVATIONS as STORED_ACTIVATIONS, NO_POOL, NO_RESIDUAL_PLANES, NONE, Store,
                                 affine_table, apply, with_factors)
from ...kernels.int16 import conv_int16_winograd, quantize_weights, quantize_winograd_weights
from ...kernels.pool import tiles_2x2
from ...kernels.products import (backend, bf16_convolution, bf16_kernel, blocked_input, conv_image,
                                 conv_weight_gradient, conv_weight_gradient_image, gemm_nn, gemm_tn, image_convolution,
                                 int16_convolution, int16_kernel, pack_bf16, pack_winograd, packs_images,
                                 pointwise_convolution, weight_gradient_from_image, weight_gradient_transposed,
                                 winograd_convolution, winograd_rows, winograd_tile)
from ...kernels.winograd import transform_weights
from .base import Layer, fast_inference, read_by_image, zeros

CHUNK_FLOATS = 1 << 21  # im2col columns per chunk of images (8 MiB; a single image may take more)
WIDE_BELOW = 1024       # output positions per image under which a chunk's images share one product
# the products whose store adds a [shortcut]'s residual: every form with a fused store but the AMX tiles and depthwise
RESIDUAL_FORMS = ("pointwise", "winograd", "int16_winograd", "image", "int16")


def share_products(batch, spatial):
    """Whether a chunk's images go through one product (their columns side by side): for images with few
    output positions, and only with the chain kernel (exact or fast), where it changes no bit. BLAS would round
    such a product differently from image-by-image ones (its blocking depends on the shape); that is no less
    accurate, but the BLAS golden-training tolerances were measured image by image, and one of those runs
    (tiny_train) flips a discrete choice after 3 steps with the other rounding."""
    return batch > 1 and spatial < WIDE_BELOW and backend() != "blas"


def chunk_images(batch, per_image):
    """Images per chunk: as many as keep the chunk's columns within CHUNK_FLOATS (at least one)."""
    return max(1, min(batch, CHUNK_FLOATS // max(1, per_image)))


def scratch(net, key, size):
    """A scratch array of the network's kept between calls (grown on demand, like net.workspace), by name."""
    buffers = net.__dict__.setdefault("_conv_scratch", {})
    array = buffers.get(key)
    if array is None or array.size < size:
        array = buffers[key] = np.empty(size, np.float32)
    return array[:size]


def aligned_scratch(net, key, shape, dtype):
    """A scratch array of the network's as `scratch`, of any dtype and at an address that is a multiple of 64
    (the AMX tiles' rows load at a third of the speed across cache lines)."""
    buffers = net.__dict__.setdefault("_aligned_scratch", {})
    size = math.prod(shape)
    array = buffers.get((key, dtype))
    if array is None or array.size < size:
        array = buffers[(key, dtype)] = aligned_zeros((size,), dtype)
    return array[:size].reshape(shape)


def kept_scratch(net):
    """A plan's scratch(name, shape, dtype): aligned_scratch's arrays, each asked for once and then kept by name,
    shape and dtype for the plan's passes (asking took longer than the products of small layers). One the network's
    scratch later outgrows stays the plan's."""
    arrays = {}

    def scratch(name, shape, dtype):
        key = (name, shape, dtype)
        array = arrays.get(key)
        if array is None:
            array = arrays[key] = aligned_scratch(net, name, shape, dtype)
        return array
    return scratch


def batchnorm_forward_train(layer, out, activation, net):
    """Batch-norm with the batch's statistics, then `activation`, on out (batch, channels, spatial) in place;
    keeps what the backward pass needs on the layer: bn_x (the input), x_norm, mean, variance."""
    shape = out.shape
    layer.bn_x, layer.x_norm = batchnorm_buffers(layer, shape)
    layer.mean = np.empty(shape[1], np.float32)
    layer.variance = np.empty(shape[1], np.float32)
    backward.batchnorm_train_forward(out, layer.scales, layer.biases, layer.rolling_mean, layer.rolling_variance,
                                     layer.mean, layer.variance, layer.bn_x, layer.x_norm, ACTIVATIONS[activation],
                                     net.darknet == "ab")


def batchnorm_buffers(layer, shape):
    """(bn_x, x_norm) of the given shape, kept on the layer from call to call."""
    bufs = layer.__dict__.get("_bn")
    if bufs is None or bufs[0].shape != shape:
        bufs = layer._bn = (np.empty(shape, np.float32), np.empty(shape, np.float32))
    return bufs


def batchnorm_backward_layer(layer, delta, ab=False):
    """darknet's backward_batchnorm_layer on delta (batch, channels, spatial) in place (`ab`: the fork's)."""
    backward.batchnorm_backward(delta, layer.bn_x, layer.x_norm, layer.mean, layer.variance, layer.scales,
                                layer.bias_updates, layer.scale_updates, ab)


def parse_activation(layer, default, allowed=()):
    """The section's activation name. Those computed from the input (swish, mish, hard_mish) or across
    channels (normalize_channels*) only where a layer has them in `allowed` (the fork computes them only in
    some layers, and 0 for them elsewhere)."""
    name = layer.section.str("activation", default)
    if name not in ACTIVATIONS:
        raise layer.error(f"unknown activation '{name}' (known: {', '.join(ACTIVATIONS)})", "activation")
    code = ACTIVATIONS[name]
    if (code in NEEDS_INPUT or code in ACROSS_CHANNELS) and name not in allowed:
        raise layer.error(f"activation={name} is not available in [{layer.section.type}]", "activation")
    return name


def inline_activation(code, train):
    """The activation an element-wise pass may apply as it writes the output: LINEAR for those applied after
    it by finish_activation (across channels; in training, those whose gradient needs their input)."""
    if code in ACROSS_CHANNELS or (train and code in NEEDS_INPUT):
        return LINEAR
    return code


def finish_activation(layer, out, code, train):
    """Complete the activation on out (batch, channels, spatial) in place where inline_activation left it
    to this: keeps the input on the layer (activation_input) for the gradients that need it."""
    if code in ACROSS_CHANNELS:
        activate_channels(out, code, out)
    elif train and code in NEEDS_INPUT:
        kept = layer.__dict__.get("activation_input")
        if kept is None or kept.shape != out.shape:
            kept = layer.activation_input = np.empty_like(out)
        kept[...] = out
        activate_array(out.reshape(-1), code)


def activation_gradient(layer, delta, code):
    """Multiply delta (batch, channels, spatial) by the gradient of the activations the element-wise gradient
    kernels cannot do (from the input, or across channels); returns the activation left for those kernels
    (LINEAR when done here)."""
    if code in NEEDS_INPUT:
        backward.gradient_from_input(layer.activation_input.reshape(-1), layer.output.reshape(-1), code,
                                     delta.reshape(-1))
        return LINEAR
    if code in ACROSS_CHANNELS:
        backward.gradient_channels(layer.output.reshape(delta.shape), code, delta)
        return LINEAR
    return code


# Options of the fork's [convolutional] that pydarknet does not compute: refused when set, not ignored.
UNSUPPORTED_OPTIONS = ("antialiasing", "sway", "rotate", "stretch", "stretch_sway", "binary", "xnor", "bin_output",
                       "assisted_excitation", "cbn", "coordconv", "grad_centr")


def pool_after(layer, net):
    """The layer after `layer` where it is a [maxpool] that a convolution may pool into as it finishes its output
    (Maxpool.pools_in_place), else None."""
    index = layer.index + 1
    following = net.layers[index] if index < len(net.layers) and net.layers[layer.index] is layer else None
    return following if following is not None and following.pools_in_place(net) else None


class Plan(NamedTuple):
    """A convolution's pass as decided for one state of its network (Network.plan_key): made on the first pass and
    kept, so that the passes after it run the products without deciding them again (the deciding took longer than
    the products of the small layers of Tiny Darknet in --bf16, and a fifth of Yolo-Fastest's 1 x 1 layers' time at
    small sizes)."""
    key: tuple
    activation: int        # the layer's activation (its code)
    inline: int            # the activation applied as the output is written (inline_activation's)
    weights: np.ndarray    # what the products multiply: the layer's weights, or the fork's with batch-norm folded
    terms: list | None     # (mean, variance, scales, biases, normalize) of the pass after the products
    store: Store | None    # fused_store's, finishing the products' output as they store it
    stores: tuple          # the store of each image (its own part of the pool's output; for the int16 products its
                           # own factors: epilogue.with_factors), NONE without a store
    form: str | None       # the products: product_form's, or image_products' ("image", "pointwise"), or None
    convolve: object       # convolve(x, out): the pass's products into out, finished by the stores (convolution's)
    pooled_only: bool      # the store pools and the output is left unwritten (may_skip_output)
    pool: Layer | None     # the [maxpool] the store fills, from channel `first` of its input
    first: int
    out: np.ndarray        # the output, (batch, filters, out_h*out_w)
    output: np.ndarray     # the same, (batch, filters, out_h, out_w): what the pass returns, the same array each time
    words_in: np.ndarray | None    # the input in the blocked bf16 kernel's layout, filled by the layer before
    words_out: np.ndarray | None   # the next layer's words_in, filled instead of the output (hands_over)
    residual: int | None   # the layer whose output the products' store adds (the [shortcut] after it: residual_added)


class Convolutional(Layer):
    type = "convolutional"
    names = ("convolutional", "conv")
    trainable = (("biases", "bias_updates", False), ("scales", "scale_updates", False),
                 ("weights", "weight_updates", True))

    def __init__(self, section, in_shape, net, index):
        s = section
        self.section, self.index = section, index
        self.filters = s.int("filters", 1)
        self.size = s.int("size", 1)
        self.stride = s.int("stride", 1)
        for key in ("stride_x", "stride_y"):
            if s.has(key) and s.int(key) != self.stride:
                raise self.error(f"{key}= different from stride={self.stride} is not supported", key)
        for key in UNSUPPORTED_OPTIONS:
            if s.float(key, 0):
                raise self.error(f"{key}= is not supported", key)
        if s.has("share_index"):
            raise self.error("share_index= (weights shared with another layer) is not supported", "share_index")
        for key in ("stream", "wait_stream"):   # the fork's GPU scheduling: nothing to do on the CPU
            s.int(key, 0)
        self.groups = s.int("groups", 1)
        self.dilation = 1 if self.size == 1 else s.int("dilation", 1)
        self.pad = self.size // 2 if s.int("pad", 0) else s.int("padding", 0)
        self.batch_normalize = bool(s.int("batch_normalize", 0))
        self.activation = parse_activation(self, "logistic", ACTIVATIONS)
        if self.filters < 1 or self.size < 1 or self.stride < 1 or self.groups < 1 or self.dilation < 1:
            raise self.error("filters, size, stride, groups and dilation must be positive")
        c = in_shape[0]
        if c % self.groups or self.filters % self.groups:
            raise self.error(f"groups={self.groups} must divide the input channels ({c}) and filters "
                             f"({self.filters})", "groups")
        n = self.filters
        self.biases = zeros(n)
        self.weights = zeros(n, c // self.groups * self.size * self.size)
        if self.batch_normalize:
            self.scales = np.ones(n, np.float32)
            self.rolling_mean = zeros(n)
            self.rolling_variance = zeros(n)
        super().__init__(section, in_shape, net, index)

    def setup(self, in_shape, net):
        c, h, w = self.in_shape = tuple(in_shape)
        self.need_image_input()
        out_h = (h + 2 * self.pad - self.size) // self.stride + 1
        out_w = (w + 2 * self.pad - self.size) // self.stride + 1
        if out_h < 1 or out_w < 1:
            raise self.error(f"a {self.size}x{self.size} kernel does not fit the {w}x{h} input")
        span = self.dilation * (self.size - 1) + 1   # the fork sizes the output without the dilation, its
        taps = ((h + 2 * self.pad * self.dilation - span) // self.stride + 1,   # im2col with it: both must agree
                (w + 2 * self.pad * self.dilation - span) // self.stride + 1)
        if taps != (out_h, out_w):
            raise self.error(f"dilation={self.dilation} with size={self.size} and padding {self.pad}: the dilated "
                             f"kernel gives {taps[1]}x{taps[0]} outputs, the layer {out_w}x{out_h}", "dilation")
        self.out_shape = (self.filters, out_h, out_w)

    def initialize(self, rng):
        """darknet's start: normal weights scaled by sqrt(2 / fan-in), zero biases."""
        scale = np.sqrt(2.0 / self.weights.shape[1])
        self.weights[...] = scale * rng.standard_normal(self.weights.shape)

    def weight_arrays(self, transpose=False, loading=False):
        return [self.biases] + self.batchnorm_arrays(loading) + [self.weights]

    def flops(self):
        _, out_h, out_w = self.out_shape
        return 2.0 * self.weights.size * out_h * out_w

    def describe(self):
        c, h, w = self.in_shape
        n, out_h, out_w = self.out_shape
        s = self.size
        if self.groups == 1 and self.dilation == 1:
            return (f"conv  {n:5d} {s:2d} x{s:2d} /{self.stride:2d}  {w:4d} x{h:4d} x{c:4d}   ->  "
                    f"{out_w:4d} x{out_h:4d} x{n:4d}  {self.flops() / 1e9:5.3f} BFLOPs")
        # the fork's line for its options: filters/groups, and the dilation in brackets
        filters = f"{n:5d}/{self.groups:4d}" if self.groups > 1 else f"{n:5d}     "
        kernel = f"{s:2d} x{s:2d}/{self.stride:2d}" + (f"({self.dilation:1d})" if self.dilation > 1 else "   ")
        return (f"conv  {filters} {kernel}{w:4d} x{h:4d} x{c:4d} -> {out_w:4d} x{out_h:4d} x{n:4d} "
                f"{self.flops() / 1e9:5.3f} BF")

    def folds_batchnorm(self, net):
        """Whether inference folds the batch-norm into the weights (the fork's fuse_conv_batchnorm)."""
        return self.batch_normalize and net.darknet == "ab" and net.fuse_batchnorm and not net.keep_for_backward

    def prepare(self, net):
        """The folded batch-norm, and the weights in the form the products take (a Winograd transform took
        340 ms of yolov4-tiny's first --fast pass)."""
        weights = self.fused_parameters(net)[0] if self.folds_batchnorm(net) else self.weights
        if net.engine is None:   # (the GPU engine keeps its own forms of the weights)
            self.product_form(weights, net)

    def fused_parameters(self, net):
        """(weights, biases) with the batch-norm folded in, as the fork's fuse_conv_batchnorm computes them
        (in double, rounded to float): kept on the layer until net.params_version changes. The layer's own
        parameters stay as loaded, so saving writes the originals."""
        cached = self.__dict__.get("_fused")
        if cached is None or cached[0] != net.params_version:
            root = np.sqrt(self.rolling_variance.astype(np.float64) + .00001)
            scales = self.scales.astype(np.float64)
            biases = (self.biases - scales * self.rolling_mean / root).astype(np.float32)
            weights = (self.weights * (scales / root)[:, None]).astype(np.float32)
            cached = self._fused = (net.params_version, weights, biases)
        return cached[1], cached[2]

    def kept_weights(self, name, weights, form, net, make):
        """make(): `weights` (the layer's or its fused ones) in another form (a Winograd transform, a kernel's
        packing), kept on the layer under `name` until the parameters or the form change."""
        cached = self.__dict__.get(name)
        key = (net.params_version, id(weights), form)
        if cached is None or cached[0] != key:
            cached = (key, make())
            self.__dict__[name] = cached
        return cached[1]

    def product_form(self, weights, net):
        """Which products this layer's convolution runs, and `weights` in the form they take, kept on the layer
        until the parameters or the form change: ("bf16", (packed, kernel)) on the AMX tiles or vdpbf16ps,
        ("int16", (quantized, units)), ("winograd", packed u) for F(tile x tile, 3x3) of the fast products,
        ("depthwise", whether its chains fuse each multiply-add: in the fast modes' inference), or (None, None) for
        the products that read the weights as they are (gemm, conv_direct)."""
        c = self.in_shape[0]
        g, d = self.groups, self.dilation
        cg = c // g
        if g == c == self.out_shape[0]:
            return "depthwise", fast_inference(net)
        kernel = self.bf16_products()
        if kernel:
            return "bf16", (self.kept_weights("_bf16", weights, kernel, net,
                                              lambda: pack_bf16(weights, c, self.size, kernel)), kernel)
        int16 = int16_kernel(cg, self.size, self.stride, d, g, *self.out_shape[1:])
        if int16 == "direct":
            return "int16", self.kept_weights("_int16", weights, int16, net,
                                              lambda: quantize_weights(weights, c, self.size))
        if int16 == "winograd":
            return "int16_winograd", self.kept_weights("_int16", weights, int16, net,
                                                       lambda: quantize_winograd_weights(weights, c))
        tile = winograd_tile(cg, self.filters // g, self.size, self.stride, d, g, *self.out_shape[1:])
        if tile:
            rows = winograd_rows(tile, *self.out_shape[1:])
            return "winograd", self.kept_weights("_winograd", weights, (tile, rows), net,
                                                 lambda: pack_winograd(transform_weights(weights, cg, tile), rows))
        return None, None

    def bf16_products(self):
        """The kernel of the bf16 products this layer takes in the products in force (products.bf16_kernel), or
        None: for other products, and depthwise layers."""
        c, g = self.in_shape[0], self.groups
        if g == c == self.out_shape[0]:
            return None
        return bf16_kernel(c // g, self.filters // g, self.size, self.stride, self.dilation, g, *self.out_shape[1:])

    def image_products(self, batch):
        """Whether convolve's products go image by image with the chain kernel for a whole layer (no groups, no
        products shared by a chunk's images): then "pointwise" where the layer is a matrix product of the image
        (1 x 1, stride 1, no padding), else "image" (conv_image: the columns read straight from the image);
        None for im2col's columns and gemm_nn."""
        n, out_h, out_w = self.out_shape
        if self.groups > 1 or share_products(batch, out_h * out_w) or not packs_images():
            return None
        return "pointwise" if self.size == 1 and self.stride == 1 and self.pad == 0 else "image"

    def convolution(self, net, batch, form, kept, weights, stores, pooled_only, scratch, words, residual):
        """A plan's `convolve(x, out)`: the raw convolution sums of a pass of `batch` images into out (batch,
        filters, out_h*out_w), before bias and batch-norm, with the plan's weights and products: `form` and `kept`,
        its convolution of one image as make_plan prepared it (bf16_, winograd_, int16_, image_, pointwise_ or
        depthwise_convolution's; for "int16_winograd" its weights and units); with its stores, finished by them: by
        the products that store through them, else in a pass after them; `residual`, the layer whose output the
        stores add (None where the pass after the products adds it: residual_added). Decided here, once a plan:
        deciding on every pass took 1.4 of the 8 us of Yolo-Fastest's 1 x 1 layers at small sizes."""
        _, out_h, out_w = self.out_shape
        pad = self.pad * self.dilation
        no_residual = (NO_RESIDUAL_PLANES,) * batch

        def added_planes():
            """Each image's planes for the stores to add, read as the pass runs; none without a residual."""
            return no_residual if residual is None else self.residual_planes(net, residual, batch)
        if form == "depthwise":   # one chain per output straight from the image, no columns, finished as it stores
            def convolve(x, out):
                for b in range(batch):
                    kept(x[b], weights, out[b], stores[b])
                return out
            return convolve
        if form == "bf16":   # the bf16 products (the AMX tiles or vdpbf16ps), as the plan prepared them
            words_in, words_out, words_pad = words

            def convolve(x, out):
                images = x if words_in is None else words_in   # (rounded by the layer before as it stored)
                for b in range(batch):
                    if words_out is None:
                        kept(images[b], out[b], stores[b], pooled_only)
                    else:   # rounded into the next layer's input instead of the output
                        kept(images[b], out[b], stores[b], pooled_only, (words_out[b], words_pad))
                return out
            return convolve
        if form == "int16_winograd":   # F(2x2, 3x3) with the int16 products
            a, units = kept

            def convolve(x, out):
                added = added_planes()
                for b in range(batch):
                    conv_int16_winograd(a, units, x[b], pad, out_h, out_w, out[b], scratch, stores[b], added[b],
                                        pooled_only)
                return out
            return convolve
        if form in ("image", "int16", "winograd", "pointwise"):   # the convolution of one image the plan prepared
            def convolve(x, out):
                added = added_planes()
                for b in range(batch):
                    kept(x[b], out[b], stores[b], pooled_only, added[b])
                return out
            return convolve
        return self.columns_convolution(net, batch, weights, stores, pooled_only)

    def columns_convolution(self, net, batch, weights, stores, pooled_only):
        """convolution's for the layers without a product form of their own (groups, training, the exact products
        and BLAS): im2col's columns (or, with the chain kernel, the image packed straight into its panels) and
        gemm_nn, group by group, in chunks of images."""
        c, h, w = self.in_shape
        n, out_h, out_w = self.out_shape
        L = out_h * out_w
        g = self.groups
        m, cg = n // g, c // g
        k = cg * self.size * self.size
        d = self.dilation
        pad = self.pad * d
        direct = self.size == 1 and self.stride == 1 and self.pad == 0
        wide = share_products(batch, L)
        packed = not wide and packs_images()
        fused = g == 1 and packed   # conv_image and gemm_nn finish an ungrouped layer's rows themselves
        chunk = chunk_images(batch, k * L)

        def convolve(x, out):
            x = np.ascontiguousarray(x)   # (a batch's images may be runs of a route's output: reads_by_image)
            col = None if packed else net.workspace(k * L * chunk)
            for b0 in range(0, batch, chunk):
                b1 = min(batch, b0 + chunk)
                count = b1 - b0
                for j in range(g):
                    group = weights[j * m:(j + 1) * m]
                    if wide:   # the chunk's columns side by side: one product, then each image's block to its place
                        cols = col[:k * count * L].reshape(k, count, L)
                        im2col_batch(x[b0:b1], j * cg, cg, self.size, self.stride, pad, cols, True, d)
                        res = scratch(net, "conv_out", m * count * L).reshape(m, count * L)
                        gemm_nn(group, cols.reshape(k, count * L), res)
                        out[b0:b1, j * m:(j + 1) * m] = res.reshape(m, count, L).transpose(1, 0, 2)
                        continue
                    if not direct and packed:   # each image's columns straight into the product's panels
                        for b in range(b0, b1):
                            conv_image(group, x[b], j * cg, self.size, self.stride, pad, d, out_h, out_w,
                                       out[b, j * m:(j + 1) * m], stores[b] if fused else NONE, pooled_only)
                        continue
                    if not direct:
                        cols = col[:k * count * L].reshape(count, k, L)
                        im2col_batch(x[b0:b1], j * cg, cg, self.size, self.stride, pad, cols, False, d)
                    for b in range(b0, b1):
                        src = x[b, j * cg:(j + 1) * cg].reshape(cg, h * w) if direct else cols[b - b0]
                        gemm_nn(group, src, out[b, j * m:(j + 1) * m], store=stores[b] if fused else NONE,
                                width=out_w)
            if not fused:   # the store's own pass, for the products that do not store through it
                for b in range(batch):
                    apply(out[b], out_w, stores[b])
            return out
        return convolve

    def forward(self, x, net):
        batch = x.shape[0]
        plan = self.plan(net, batch)
        if self.batch_normalize and net.train:
            # the raw sums go to bn_x (which the backward pass keeps), the activations to the output
            out = plan.out
            self.bn_x, self.x_norm = batchnorm_buffers(self, out.shape)
            plan.convolve(x, self.bn_x)
            self.mean = np.empty(out.shape[1], np.float32)
            self.variance = np.empty(out.shape[1], np.float32)
            backward.batchnorm_train(self.bn_x, out, self.scales, self.biases, self.rolling_mean, self.rolling_variance,
                                     self.mean, self.variance, self.x_norm, plan.inline, net.darknet == "ab")
        else:
            out = plan.convolve(x, plan.out)
            if self.batch_normalize and net.keep_for_backward:
                # darknet keeps the raw sums; its backward then uses the rolling statistics
                self.bn_x, self.x_norm = batchnorm_buffers(self, out.shape)
                self.bn_x[...] = out
                self.x_norm.fill(0)
                self.mean, self.variance = self.rolling_mean, self.rolling_variance
            if plan.store is None:
                added = NO_RESIDUAL_PLANES if plan.residual is None else \
                    self.residual_planes(net, plan.residual, batch).reshape(out.shape)
                self.normalize_activate(out, *plan.terms, plan.inline, net, plan.activation, added)
            elif plan.pool is not None:
                plan.pool.pooled_by(plan.first, out)
        finish_activation(self, out, plan.activation, net.train)
        return plan.output

    def plan(self, net, batch):
        """This layer's Plan for a pass of `batch` images, kept in net.plans while net.plan_key stays the same."""
        key = net.pass_key   # (the pass's, taken once: Network.passing)
        if key is None or key[0] != batch:   # outside a pass, or a recurrent layer's steps
            key = net.plan_key(batch)
        plan = net.plans.get(id(self))
        if plan is None or plan.key != key:
            plan = net.plans[id(self)] = self.make_plan(key, net, batch)
            if self.index + 1 < len(net.layers):   # made again after this one: it may read what this hands over
                net.plans.pop(id(net.layers[self.index + 1]), None)
        return plan

    def make_plan(self, key, net, batch):
        """The Plan of a pass of `batch` images in the network's state `key`: what forward would otherwise decide on
        every pass (the products and their weights, the store and its pool, the output arrays)."""
        code = ACTIVATIONS[self.activation]
        inline = inline_activation(code, net.train)
        if net.darknet == "ab":   # the fork's convolution activates element by element with its float activate()
            inline = fork_scalar(inline)
        if self.batch_normalize and net.train:   # the raw sums, then batch-norm with the batch's statistics
            weights, terms, store = self.weights, None, None
        else:
            weights, *terms = self.inference_terms(net)
            store = self.fused_store(net, batch, inline, terms)
        form, kept = self.product_form(weights, net)
        scratch = kept_scratch(net)
        n, out_h, out_w = self.out_shape
        words_in, (words_out, words_pad) = self.handed_over(net, key), self.hands_over(net, batch, form, kept, store)
        if form == "bf16":   # its kernels' layout and scratch decided here, once
            kept = bf16_convolution(*kept, n, self.in_shape, self.size, self.stride, self.pad * self.dilation,
                                    self.dilation, out_h, out_w, scratch, rounded=words_in is not None)
        if form == "winograd":   # the same
            kept = winograd_convolution(kept, self.in_shape[0], n, self.pad, out_h, out_w,
                                        lambda name, size: scratch(name, (size,), np.float32))
        if form == "depthwise":   # its copies made once
            kept = depthwise_convolution(self.in_shape, self.size, self.stride, self.pad * self.dilation,
                                         self.dilation, kept)
        if form == "int16":   # the chain kernel on the image's words, decided once
            kept = int16_convolution(*kept, self.in_shape, self.size, self.stride, self.pad * self.dilation,
                                     self.dilation, out_h, out_w, scratch)
        by_image = self.image_products(batch) if form is None else None
        if by_image == "image":   # the chain kernel's, from the image
            form, kept = "image", image_convolution(weights, self.in_shape, 0, self.size, self.stride,
                                                    self.pad * self.dilation, self.dilation, out_h, out_w)
        elif by_image == "pointwise":
            form, kept = "pointwise", pointwise_convolution(weights, out_w)
        pooled = store is not None and store.pooled.size
        pool, first = self.pool_target(net, batch) if pooled else (None, 0)
        stores = tuple(NONE if store is None else store._replace(pooled=store.pooled[b]) if pooled else store
                       for b in range(batch))
        if form == "int16" and store is not None:   # each image's factors (its sums back to floats) in its store
            stores = tuple(with_factors(image_store) for image_store in stores)
        output = self.output_buffer(batch, by_image=store is not None and self.reads_by_image(net))
        residual = self.residual_added(form, store, code, inline)
        pooled_only = bool(pooled) and self.may_skip_output(net)
        convolve = self.convolution(net, batch, form, kept, weights, stores, pooled_only, scratch,
                                    (words_in, words_out, words_pad), None if store is None else residual)
        return Plan(key, code, inline, weights, terms, store, stores, form, convolve, pooled_only, pool, first,
                    output.reshape(batch, self.filters, -1), output, words_in, words_out, residual)

    def residual_added(self, form, store, code, inline):
        """The layer whose output this layer's pass adds to its own, or None: the residual of a [shortcut] after it
        that adds in place (residual_after: network/outputs.py), where the pass finishes the whole output (no
        activation after it; the shortcut then only hands the sum on; no pool can follow: the shortcut does): by the
        fused store of the products that take it (the register tiles and Winograd's: RESIDUAL_FORMS), or, without a
        store (the exact mode; mish, swish and the logistic), by the pass of batch-norm and activation after the
        products (normalize_activate). The same floats: the shortcut adds the finished output and its residual,
        once, as they do."""
        if code != inline or (store is not None and form not in RESIDUAL_FORMS):
            return None
        return self.residual_after

    def residual_planes(self, net, residual, batch):
        """The output of layer `residual` (the plan's: residual_added's) as (batch, filters, out_h, out_w), read as
        the pass runs (that layer's array of this pass)."""
        return net.layers[residual].output.reshape((batch,) + tuple(self.out_shape))

    def inference_terms(self, net):
        """(weights, mean, variance, scales, biases, normalize) of the inference pass: the fork's batch-norm folded
        into the weights and biases, else darknet's batch-norm at inference, else the biases alone."""
        if self.folds_batchnorm(net):
            weights, biases = self.fused_parameters(net)
            return weights, biases, biases, biases, biases, False
        if self.batch_normalize:
            return self.weights, self.rolling_mean, self.rolling_variance, self.scales, self.biases, True
        return self.weights, self.biases, self.biases, self.biases, self.biases, False

    def pool_target(self, net, batch):
        """(pool, first channel) for the fused store: the [maxpool] that may pool this layer's output as the
        products store it, and where that output starts among the pool's input channels: the next layer's, else
        the pool after the [route] this layer writes its output into (its Slot, in place: for a batch, where
        reads_by_image); (None, 0)."""
        pool = pool_after(self, net)
        if pool is not None:
            return pool, 0
        slot = self.slot
        if slot is None or net.layers[self.index] is not self or (batch != 1 and not self.reads_by_image(net)):
            return None, 0
        pool = pool_after(slot.route, net)
        return (pool, slot.start // (self.out_shape[1] * self.out_shape[2])) if pool is not None else (None, 0)

    def may_skip_output(self, net):
        """Whether the products, where they pool as they store (the fused store's pool), may leave this layer's
        output unwritten: the [maxpool] after it, pooling in place, is the only layer that reads it (no [route] or
        [shortcut] names it: named_by_others), and the network does not keep every output (net.every_output). The
        pool's forward then only hands its own on."""
        return not self.named_by_others(net) and not net.every_output and pool_after(self, net) is not None

    def reads_by_image(self, net):
        """Whether the layers reading this layer's output read it image by image (base.read_by_image), the
        [maxpool] after it too (which the fused store fills): with the fused store, which writes it image by image,
        a batch's output is then hosted by the [route] that concatenates it (make_plan)."""
        return read_by_image(self, net, pool_after(self, net))

    def named_by_others(self, net):
        """Whether a [route] or [shortcut] names this layer (reads its output). Kept on the layer per network
        size (its layers do not change after the build)."""
        named = self.__dict__.get("_named")
        if named is None or named[0] != len(net.layers):
            named = self._named = (len(net.layers), any(self.index in layer.reads_layers for layer in net.layers))
        return named[1]

    def hands_over(self, net, batch, form, kept, store):
        """(words, pad): the next layer's input in the blocked bf16 kernel's layout (batch, ...), padded by `pad`,
        that this layer's blocked kernel fills as it stores, rounded, instead of its output (which is then left
        unwritten), so that the next layer neither reads float32 planes nor rounds them again; (None, 0) unless
        both layers take the blocked kernel, this one's store pools nothing, only the next layer reads its output
        (no [route] or [shortcut] names it) and the network keeps no output (every_output, keep_for_backward)."""
        following = net.layers[self.index + 1] if self.index + 1 < len(net.layers) else None
        if (form != "bf16" or kept[1] != "blocked" or store is None or store.pooled.size or net.every_output
                or net.keep_for_backward or net.layers[self.index] is not self or following is None
                or following.type != "convolutional" or following.bf16_products() != "blocked"
                or self.named_by_others(net)):
            return None, 0
        pad = following.pad * following.dilation
        return blocked_input(batch, following.in_shape, following.size, following.stride, pad,
                             *following.out_shape[1:]), pad

    def handed_over(self, net, key):
        """The input the layer before fills for this one in the blocked kernel's layout (its plan's words_out,
        see hands_over), or None."""
        previous = net.plans.get(id(net.layers[self.index - 1])) if self.index else None
        return previous.words_out if isinstance(previous, Plan) and previous.key == key else None

    def fused_store(self, net, batch, inline, terms):
        """This layer's part of the fused plan in the fast modes' inference (kernels.epilogue.Store): batch-norm,
        bias and the activation applied as the products store each output row, and the [maxpool] after it filled
        from those rows where its windows are 2x2 at stride 2 (the pool's forward then only hands that output on).
        The per-filter terms are computed once per parameters. None where the pass runs apart: darknet's exact and
        training arithmetic, an activation other than linear, leaky or relu, or another pool."""
        if not fast_inference(net) or inline not in STORED_ACTIVATIONS:
            return None
        pool, first = self.pool_target(net, batch)
        pooled = NO_POOL
        if pool is not None:
            n, out_h, out_w = self.out_shape
            _, oh, ow = pool.out_shape
            if not tiles_2x2(out_h, out_w, oh, ow, pool.size, pool.stride_y, pool.stride_x, pool.padding):
                return None
            pooled = pool.output_buffer(batch)[:, first:first + n]
        affine = self.kept_weights("_affine", terms[3], "affine", net,
                                   lambda: affine_table(*terms, net.darknet == "ab"))
        return Store(affine, inline, pooled)

    def normalize_activate(self, out, mean, variance, scales, biases, normalize, inline, net, code,
                           residual=NO_RESIDUAL_PLANES):
        """The inference pass after the product (batch-norm, bias, activation), where the products did not store
        through the fused plan, `residual` (out's shape) added after the activation (residual_added). When the next
        layer is a max pool that can take it (Maxpool.pools_in_place), each channel is pooled in the same pass, while
        it is still in the cache, and that layer's forward only hands its output on (no residual then: a shortcut
        follows the layer where one is given)."""
        ab = net.darknet == "ab"
        fast = fast_inference(net)
        pool = pool_after(self, net)
        if pool is None or code in ACROSS_CHANNELS:   # (see finish_activation)
            normalize_scale_bias_activate(out, mean, variance, scales, biases, inline, normalize, ab, fast, residual)
            return
        pooled = pool.output_buffer(out.shape[0])
        normalize_activate_maxpool(out, mean, variance, scales, biases, inline, normalize, ab, fast, self.out_shape[2],
                                   pool.size, pool.stride_y, pool.stride_x, pool.padding, pooled)
        pool.pooled_by(0, out)

    # -- training ------------------------------------------------------------------------------------------
    def backward(self, net):
        """darknet's backward_convolutional_layer, with the input gradient added to net.delta (darknet's own
        1x1 path overwrites it instead -- the same whenever nothing else has written that delta yet)."""
        batch = self.delta.shape[0]
        c, h, w = self.in_shape
        n, out_h, out_w = self.out_shape
        spatial = out_h * out_w
        g = self.groups
        m, cg = n // g, c // g
        k = cg * self.size * self.size
        delta = self.delta.reshape(batch, n, spatial)
        activation = activation_gradient(self, delta, ACTIVATIONS[self.activation])
        if self.batch_normalize:    # the activation's gradient and batch-norm's backward in one pass
            backward.batchnorm_backward_activation(delta, self.output.reshape(batch, n, spatial), activation,
                                                   self.bn_x, self.x_norm, self.mean, self.variance, self.scales,
                                                   self.bias_updates, self.scale_updates, net.darknet == "ab")
        else:
            backward.gradient_array32(self.output.reshape(-1), activation, self.delta.reshape(-1))
            backward.backward_bias(self.bias_updates, delta)
        x = self.prev_input(net)
        prev = self.prev_delta(net)
        wide = share_products(batch, spatial)
        dilation = self.dilation
        pad = self.pad * dilation
        from_image = weight_gradient_from_image(m, k, spatial, self.stride, out_w) and dilation == 1 and \
            out_h == h + 2 * self.pad - self.size + 1 and out_w == w + 2 * self.pad - self.size + 1
        chunk = chunk_images(batch, k * spatial)
        for b0 in range(0, batch, chunk):
            b1 = min(batch, b0 + chunk)
            count = b1 - b0
            for j in range(g):
                d = delta[b0:b1, j * m:(j + 1) * m]                  # (count, m, spatial)
                if g > 1:   # the weight-gradient kernels take C-contiguous arrays
                    d = np.ascontiguousarray(d)
                updates = self.weight_updates[j * m:(j + 1) * m]
                if from_image:   # read from the padded input: no columns at all
                    hp, wp = h + 2 * self.pad, w + 2 * self.pad
                    xpad = scratch(net, "conv_xpad", count * cg * hp * wp).reshape(count, cg, hp, wp)
                    pad_images(x[b0:b1], j * cg, cg, self.pad, xpad)
                    conv_weight_gradient_image(d, xpad, self.size, updates)
                else:
                    wcols = scratch(net, "conv_wcols", count * spatial * k)
                    if weight_gradient_transposed(m, k, spatial):
                        wcols = wcols.reshape(count, spatial, k)
                        im2col_t(x[b0:b1], j * cg, cg, self.size, self.stride, pad, wcols, dilation)
                    else:
                        wcols = wcols.reshape(count, k, spatial)
                        im2col_batch(x[b0:b1], j * cg, cg, self.size, self.stride, pad, wcols, False, dilation)
                    conv_weight_gradient(d, wcols, updates)
                if prev is None:
                    continue
                weights = self.weights[j * m:(j + 1) * m]
                col = net.workspace(k * count * spatial)
                if wide:   # W^T delta for the whole chunk in one product, the images' deltas side by side
                    dw = scratch(net, "conv_delta", m * count * spatial).reshape(m, count, spatial)
                    dw[...] = d.transpose(1, 0, 2)
                    cols = col.reshape(k, count, spatial)
                    gemm_tn(weights, dw.reshape(m, count * spatial), cols.reshape(k, count * spatial))
                else:
                    cols = col.reshape(count, k, spatial)
                    for b in range(count):
                        gemm_tn(weights, d[b], cols[b])              # W^T delta: (k, spatial)
                col2im_batch(cols, wide, self.size, self.stride, pad, prev[b0:b1], j * cg, dilation)
