"""What every layer shares: its place in the network, its shapes, and the default no-op behaviours.

A layer is built from its cfg section and the shape of its input (c, h, w). It computes
`forward(x, net) -> output` on a batch (n, c, h, w) of float32, keeps that output in `self.output` for the
layers that read it later (route, shortcut) and for training, and lists its parameters in the order darknet
stores them in a .weights file (`weight_arrays`).

Training (see train/step.py's train_network): forward runs with net.train set and net.truth holding the
batch's truth; `delta` has the output's shape; `backward(net)` passes the gradient on and accumulates
parameter updates; `update(args)` applies them.
"""
import math

import numpy as np

from ...files.config import CfgError, DarknetError
from ...kernels import backward
from ...kernels.aligned import aligned_zeros
from ...kernels.products import FUSED, backend
from .update import update_layer


class Layer:
    type = "layer"          # darknet's name for the layer type (as `get_layer_string` spells it)
    reads_layers = ()       # indices of earlier layers whose output this layer reads besides its input
    slot = None             # its part of a concatenating route's output, where it writes (route.Slot)
    shared_output = None    # its output array in memory it shares with others' in inference (network/outputs.py)
    hands_input_on = False  # in inference its output is its input's array, untouched (a dropout)
    in_place = None         # in inference, a [shortcut] adding to its input's array: its outputs.Residual
    residual_after = None   # in inference, the layer whose output a [shortcut] after it adds to its output
    keeps_output = True     # its forward writes its output to output_buffer, not a view or copy of its input

    def __init__(self, section, in_shape, net, index):
        self.section = section
        self.index = index
        self.output = None
        self.setup(in_shape, net)

    def setup(self, in_shape, net):
        """Compute shapes from the input shape: at build time and again when the network is resized."""
        self.in_shape = tuple(in_shape)
        self.out_shape = self.in_shape

    # -- inference ------------------------------------------------------------------------------------------
    def forward(self, x, net):
        return x

    def prepare(self, net):
        """Once per parameters, what the first inference pass would otherwise do on the way (Network.prepare)."""

    def residual_in_place(self):
        """The layer whose output this layer could add to its input's array in place, handing that array on as its
        output, where nothing else reads the input (network/outputs.py): a plain residual [shortcut]; else None."""
        return None

    def pools_in_place(self, net):
        """Whether the convolution before this layer may compute its output for it (a max pool: see Maxpool)."""
        return False

    def output_buffer(self, batch, shape=None, dtype=np.float32, by_image=False):
        """This layer's output array, reused from call to call as darknet reuses l.output: fresh memory
        costs a page fault per 4 KiB on first touch, which made big layers 2x slower. For one image, or for a
        batch where the layer writes its output image by image and its readers read it so (`by_image`: the
        caller's promise, see Convolutional.reads_by_image), a layer that a concatenating route hosts writes in its
        part of the route's output instead (route.Slot); in an inference pass, many layers' outputs share memory
        (shared_output: network/outputs.py)."""
        shared = self.shared_output
        if shared is not None and shape is None and dtype == np.float32 and shared.shape[0] == batch:
            return shared
        shape = (batch,) + tuple(self.out_shape if shape is None else shape)
        if self.slot is not None and (batch == 1 or by_image):
            hosted = self.slot.array(shape, dtype)
            if hosted is not None:
                return hosted
        buffers = self.__dict__.setdefault("_buffers", {})
        key = (shape, np.dtype(dtype).str)
        if key not in buffers:
            buffers.clear()
            buffers[key] = aligned_zeros(shape, dtype)
        return buffers[key]

    # -- training -------------------------------------------------------------------------------------------
    # (parameter, its accumulated update, whether weight decay applies) by attribute name; the update arrays
    # are darknet's *_updates: the negative gradient summed over the images since the last update.
    trainable = ()
    delta = None

    def delta_buffer(self, batch):
        """This layer's delta (darknet's l.delta: minus the loss gradient with respect to its output), zeroed,
        reused from call to call like the output."""
        shape = (batch,) + tuple(self.out_shape)
        if self.delta is None or self.delta.shape != shape:
            self.delta = np.zeros(shape, np.float32)
        else:
            self.delta.fill(0)
        return self.delta

    def start_training(self, net):
        """Allocate the update arrays (zero) the first time, or again after a shape change."""
        for param, update, _ in self.trainable:
            value = getattr(self, param, None)
            if value is None:
                continue
            current = getattr(self, update, None)
            if current is None or current.shape != value.shape:
                setattr(self, update, np.zeros_like(value))

    def backward(self, net):
        """Add the gradient of this layer's inputs to net.delta (the previous layer's delta, None for the first
        layer) or to the layers it reads, and accumulate its parameters' updates. Runs after forward in
        training mode: self.output and self.delta hold this batch's values."""
        raise DarknetError(f"layer {self.index}: training through a [{self.type}] layer is not supported")

    def update(self, args):
        """Apply the accumulated updates to the parameters (darknet's update_*_layer; layers/update.py)."""
        if self.trainable:
            update_layer(self, args)

    def prev_delta(self, net):
        """net.delta viewed with this layer's input shape (None when there is no earlier layer to pass to)."""
        if net.delta is None:
            return None
        return net.delta.reshape((net.delta.shape[0],) + tuple(self.in_shape))

    def add_delta_to_previous(self, net):
        """Add this layer's delta, as it is, to the previous layer's (darknet's axpy of l.delta into net.delta)."""
        prev = self.prev_delta(net)
        if prev is not None:
            backward.axpy(np.float32(1), self.delta.reshape(-1), prev.reshape(-1))

    def prev_input(self, net):
        return net.input.reshape((net.input.shape[0],) + tuple(self.in_shape))

    # -- parameters -----------------------------------------------------------------------------------------
    def initialize(self, rng):
        """Random starting parameters for training from scratch (layers without parameters have none)."""

    def weight_arrays(self, transpose=False, loading=False):
        """Arrays in .weights file order (views: reading into them sets the layer's parameters).

        `transpose`: the file stores connected weights transposed; `loading`: honour `dontloadscales`."""
        return []

    def batchnorm_arrays(self, loading):
        """A batch-normalised layer's scales and rolling statistics in file order (none when it has no batch-norm,
        or when loading with `dontloadscales=1`)."""
        if self.batch_normalize and not (loading and self.dontloadscales):
            return [self.scales, self.rolling_mean, self.rolling_variance]
        return []

    # -- description ----------------------------------------------------------------------------------------
    def flops(self):
        return 0

    def describe(self):
        """The line darknet prints for this layer at load time (after the index)."""
        return self.type

    # -- helpers --------------------------------------------------------------------------------------------
    def error(self, message, key=None):
        return CfgError(f"{self.section.where(key)}: [{self.section.type}] layer {self.index}: {message}")

    def need_image_input(self):
        c, h, w = self.in_shape
        if not (c and h and w):
            raise self.error("the layer before it must output an image (c x h x w)")

    def from_layer(self, net):
        """The one earlier layer `from=` names (required), which this layer then reads besides its input."""
        if not self.section.has("from"):
            raise self.error("needs from=", "from")
        index = self.layer_index(self.section.int("from"), net, "from")
        self.reads_layers = [index]
        return index

    def layer_index(self, value, net, key):
        """Resolve a `layers=`/`from=` index as darknet does: negative counts back from this layer."""
        index = self.index + value if value < 0 else value
        if not 0 <= index < self.index:
            raise self.error(f"{key}={value} refers to layer {index}, but only layers 0..{self.index - 1} "
                             "come before it", key)
        return index


# One parameter array past this is a cfg's typo (size=33333), not a network: darknet's largest, VGG-16's first
# [connected], holds 0.4 GiB. Refused before numpy is asked, whose allocation could succeed (the kernel overcommits)
# and the loading of the weights then run out of memory.
PARAMETERS_LIMIT = 4 << 30


def fast_inference(net):
    """Whether the layers run the fast products' inference arithmetic (--fast, --int16, --bf16): not in training,
    and not where darknet's own arithmetic is kept for a backward pass (net.keep_for_backward: nightmare)."""
    return backend() in FUSED and not net.train and not net.keep_for_backward


def _parameter_shape(shape):
    size = 4 * math.prod(shape)
    if size > PARAMETERS_LIMIT:
        raise MemoryError(f"a parameter array of {size / (1 << 30):.3g} GiB (limit {PARAMETERS_LIMIT >> 30} GiB)")
    return shape


def zeros(*shape):
    """A float32 array of zeros (a layer's parameters or state); a MemoryError past PARAMETERS_LIMIT, which Network
    reports as the cfg's layer whose parameters do not fit."""
    return np.zeros(_parameter_shape(shape), dtype=np.float32)


def full(value, *shape):
    """A float32 parameter array filled with `value`, as zeros checked."""
    return np.full(_parameter_shape(shape), value, dtype=np.float32)


# -- what the loss layers ([yolo], [region], [detection]) report -----------------------------------------------
def delta_cost(delta):
    """darknet's cost of a loss layer: the squared magnitude of its delta (the magnitude kept in float32)."""
    magnitude = np.float32(np.sqrt(np.float64(backward.sum_squares(delta.reshape(-1)))))
    return np.float32(np.float64(magnitude) ** 2)


def ratio(total, count):
    """float32 total / count; 0/0 gives NaN as darknet's float division does."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.float32(np.float32(total) / np.float32(count))


def printf_f(value):
    """C's printf %f: glibc prints a NaN from 0/0 (sign bit set on x86) as -nan."""
    value = float(value)
    if value != value:
        return "-nan"
    return f"{value:f}"


def read_by_image(layer, net, also=None):
    """Whether every layer that reads `layer`'s output reads it image by image (or is `also`), so that the output
    of a batch may be a view whose images are runs of a larger array, each contiguous, not the whole (route.Slot):
    a convolution (its products take an image at a time), a [route] that concatenates or takes a group (it
    copies what is not in place); not the network's output, which the caller reads. Kept on the layer per network
    size (its layers do not change after the build)."""
    kept = layer.__dict__.get("_read_by_image")
    if kept is not None and kept[:2] == (len(net.layers), also):
        return kept[2]
    following = net.layers[layer.index + 1] if layer.index + 1 < len(net.layers) else None
    readers = [other for other in net.layers if layer.index in other.reads_layers]
    if following is not None and following.type != "route":   # (a route reads the layers it names)
        readers.append(following)
    found = layer is not net.output_layer and all(other.type == "convolutional" or other is also or
                (other.type == "route" and (len(other.reads_layers) > 1 or other.groups != 1)) for other in readers)
    layer._read_by_image = (len(net.layers), also, found)
    return found


def same_memory(a, b):
    """Whether arrays a and b (of one shape) are the same elements of memory."""
    return a.__array_interface__["data"][0] == b.__array_interface__["data"][0] and steps(a) == steps(b)


def steps(array):
    """The array's steps in bytes along its axes of more than one element (a step along the others is none)."""
    return [step for size, step in zip(array.shape, array.strides) if size > 1]
