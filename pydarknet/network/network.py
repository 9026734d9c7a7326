"""A network: the [net] options and a list of layers, walked in order.

`Network(cfg)` builds the layers from a .cfg (checking every shape as it goes), `load(weights)` fills
their parameters, `forward(x)` runs a batch (n, c, h, w) through them and returns the last output.
"""
import math
import sys

import numpy as np

from ..files.config import CfgError, DarknetError, read_cfg
from .cuda import default_device
from .layers import COST_LAYER_TYPES, LAYER_TYPES

# Refuse networks whose activations alone would need more than this for one image.
MEMORY_LIMIT = 4 << 30

# What only the AlexeyAB fork's cfgs use: a section of one of these types, or one of these options in a section
# of that type (an activation name counts as an option value), makes a network the fork's (see `darknet_of`).
AB_SECTIONS = frozenset({"sam", "scale_channels", "reorg3d", "local_avgpool", "gaussian_yolo", "implicit_add",
                         "implicit_mul", "conv_lstm", "contrastive", "empty", "silence"})
AB_OPTIONS = {
    "net": {"letter_box", "mosaic", "cutmix", "mixup", "blur", "gaussian_noise", "ema_alpha", "flip",
            "track", "resize_step", "adversarial_lr", "label_smooth_eps", "max_chart_loss", "sequential_subdivisions"},
    "route": {"groups", "group_id"},
    "shortcut": {"weights_type", "weights_normalization"},
    "convolutional": {"dilation", "antialiasing", "stride_x", "stride_y", "share_index", "deform", "cbn"},
    "maxpool": {"stride_x", "stride_y", "maxpool_depth", "out_channels", "antialiasing", "maxpool_zero_nonmax"},
    "yolo": {"scale_x_y", "new_coords", "nms_kind", "beta_nms", "iou_loss", "iou_normalizer", "cls_normalizer",
             "obj_normalizer", "max_delta", "iou_thresh", "objectness_smooth", "label_smooth_eps", "resize",
             "focal_loss", "uc_normalizer", "track_history_size"},
}
AB_ACTIVATIONS = frozenset({"mish", "hard_mish", "swish", "relu6", "gelu", "revleaky", "normalize_channels",
                            "normalize_channels_softmax", "normalize_channels_softmax_maxval"})
DARKNETS = ("ab", "pjreddie")


def darknet_of(sections):
    """"ab" when the cfg uses anything only the AlexeyAB fork has, else "pjreddie"; with the option (or
    section) that decided it, for the summary."""
    aliases = {"conv": "convolutional", "max": "maxpool", "network": "net"}
    for section in sections:
        kind = aliases.get(section.type, section.type)
        if kind in AB_SECTIONS:
            return "ab", f"[{section.type}]"
        for key in section.options:
            if key in AB_OPTIONS.get(kind, ()):
                return "ab", f"[{section.type}] {key}"
        if section.options.get("activation", ("",))[0] in AB_ACTIVATIONS:
            return "ab", f"activation={section.options['activation'][0]}"
        if kind == "shortcut" and "," in section.options.get("from", ("",))[0]:
            return "ab", "[shortcut] from= with several layers"
    return "pjreddie", None


# Options darknet reads from every layer section, whatever its type.
COMMON_OPTIONS = {"truth": int, "onlyforward": int, "stopbackward": int, "dontsave": int, "dontload": int,
                  "numload": int, "dontloadscales": int, "learning_rate": float, "smooth": float}


class Network:
    """`darknet`: whose arithmetic and defaults to follow, "ab" (the AlexeyAB fork: batch-norm over
    sqrt(var + .00001), fused into the convolutions for inference; its detect defaults) or "pjreddie";
    None chooses from the cfg (`darknet_of`) and, at load, from the weights (the fork writes revision 5)."""

    def __init__(self, cfg_path, quiet_unused=False, darknet=None):
        self.cfg_path = str(cfg_path)
        sections = read_cfg(self.cfg_path)
        if darknet not in (None,) + DARKNETS:
            raise DarknetError(f"darknet must be one of {', '.join(DARKNETS)}, not {darknet!r}")
        self.darknet_forced = darknet is not None
        self.darknet, self.darknet_reason = (darknet, "forced") if darknet else darknet_of(sections)
        self.fuse_batchnorm = True   # the fork's inference folds batch-norm into the convolution weights
        # [softmax] as gcc 12's -Ofast build of pjreddie's darknet vectorises it (kernels/softmax.py; the build of
        # the recurrent golden cases and of `rnn generate`'s); False: the scalar loop of golden/forward's build
        self.softmax_lanes = False
        self.params_version = 0      # bumped whenever parameters change (load, update): derived caches check it
        self.options = sections[0]
        self._parse_net_options(self.options)
        self.seen = 0
        self.train = False
        self.keep_for_backward = False   # inference arithmetic, but keep what backward needs (see input_gradient)
        self.t = 0              # updates done (Adam's step counter, darknet's net->t)
        self.cost = np.float32(0)
        self.truth = None       # the truth of the batch being trained on (darknet's net.truth)
        self.input = None       # during backward: the current layer's input and the delta to add its gradient
        self.delta = None       # to (darknet's net.input / net.delta); delta is None for the first layer
        self.index = 0          # the layer being run (darknet's net.index)
        self.quiet = False      # True: output layers print no training statistics
        self.rng = None         # a numpy Generator for policy=random (Python's `random` when None)
        self.weights_version = (0, 2, 0)
        self.engine = None      # the GPU engine when the network runs on a GPU (see `to`)
        self.layers = []
        shape = (self.c, self.h, self.w)
        total = 0
        for index, section in enumerate(sections[1:]):
            cls = LAYER_TYPES.get(section.type)
            if cls is None:
                raise CfgError(f"{section.where()}: unknown layer type [{section.type}]")
            try:
                layer = cls(section, shape, self, index)
            except MemoryError as e:   # layers.base.zeros' limit, or this machine's memory
                raise CfgError(f"{section.where()}: [{section.type}] layer {index}: its parameters do not fit "
                               f"in memory ({e}): check the layer's sizes in {self.cfg_path}") from None
            for key, kind in COMMON_OPTIONS.items():
                setattr(layer, key, (section.int if kind is int else section.float)(key, 1 if key == "learning_rate" else 0))
            self.layers.append(layer)
            shape = layer.out_shape
            total += 4 * math.prod(shape)   # Python ints: a huge shape must not wrap around
            if total > MEMORY_LIMIT:
                raise CfgError(f"{section.where()}: the network's outputs up to layer {index} need "
                               f"{total / (1 << 30):.1f} GiB per image (limit {MEMORY_LIMIT >> 30} GiB): "
                               f"check width/height/filters in {self.cfg_path}")
        if not self.layers:
            raise CfgError(f"{self.cfg_path}: the network has no layers after [net]")
        if not quiet_unused:
            for section in sections:
                section.warn_unused()
        if default_device() is not None:   # -gpus on the command line
            self.to(default_device())

    def _parse_net_options(self, s):
        self.batch = s.int("batch", 1)
        self.subdivisions = s.int("subdivisions", 1)
        self.time_steps = s.int("time_steps", 1)
        # darknet: `batch` images per update, run `subdivisions` chunks at a time; net.batch is one chunk
        self.cfg_batch = self.batch
        self.learning_rate = s.float("learning_rate", 0.001)
        self.momentum = s.float("momentum", 0.9)
        self.decay = s.float("decay", 0.0001)
        self.adam = s.int("adam", 0)
        self.B1, self.B2, self.eps = s.float("B1", 0.9), s.float("B2", 0.999), s.float("eps", 1e-7)
        self.h = s.int("height", 0)
        self.w = s.int("width", 0)
        self.c = s.int("channels", 0)
        self.inputs = s.int("inputs", self.h * self.w * self.c)
        self.max_crop = s.int("max_crop", self.w * 2)
        self.min_crop = s.int("min_crop", self.w)
        self.max_ratio = s.float("max_ratio", self.max_crop / self.w if self.w else 0)
        self.min_ratio = s.float("min_ratio", self.min_crop / self.w if self.w else 0)
        self.center = s.int("center", 0)
        self.clip = s.float("clip", 0)
        self.angle = s.float("angle", 0)
        self.aspect = s.float("aspect", 1)
        self.saturation = s.float("saturation", 1)
        self.exposure = s.float("exposure", 1)
        self.hue = s.float("hue", 0)
        self.random = s.int("random", 0)
        self.policy = s.str("policy", "constant")
        self.burn_in = s.int("burn_in", 0)
        self.power = s.float("power", 4)
        self.step = s.int("step", 1)
        self.scale = s.float("scale", 1)
        self.steps = s.ints("steps", [])
        self.scales = s.floats("scales", [])
        self.gamma = s.float("gamma", 1)
        self.max_batches = s.int("max_batches", 0)
        self.letter_box = s.int("letter_box", 0)
        # the AlexeyAB fork's training options (its data pipeline: train/data_ab.py; its training loop: ema_alpha)
        self.flip = s.int("flip", 1)
        self.blur = s.int("blur", 0)
        self.gaussian_noise = s.int("gaussian_noise", 0)
        self.mosaic = s.int("mosaic", 0)
        self.mosaic_bound = s.int("mosaic_bound", 0)
        self.cutmix = s.int("cutmix", 0)    # read so that training can refuse them (data_ab.DetectionDatasetAB)
        self.mixup = s.int("mixup", 0)
        self.track = s.int("track", 0)
        self.ema_alpha = s.float("ema_alpha", 0)
        self.resize_step = s.int("resize_step", 32)   # the fork's random=1 sizes are multiples of this
        if self.batch < 1 or self.subdivisions < 1:
            raise s.error("batch and subdivisions must be positive", "batch")
        if self.time_steps < 1:
            raise s.error(f"time_steps={self.time_steps} must be positive", "time_steps")
        self.batch = max(1, self.batch // self.subdivisions) * self.time_steps
        if self.h < 0 or self.w < 0 or self.c < 0:
            raise s.error("width, height and channels must not be negative", "width")
        if not (self.h and self.w and self.c):
            if not self.inputs:
                raise s.error("no input size: give width=, height= and channels= (or inputs=)")
            self.h, self.w, self.c = 1, 1, self.inputs
        if 4 * self.h * self.w * self.c > MEMORY_LIMIT:
            raise s.error(f"input {self.w}x{self.h}x{self.c} alone needs "
                          f"{4 * self.h * self.w * self.c / (1 << 30):.1f} GiB", "width")

    # -- running ---------------------------------------------------------------------------------------------
    @property
    def input_shape(self):
        return (self.c, self.h, self.w)

    def to(self, device):
        """Run on `device` from now on: "cpu", or "cuda:N" (the GPU engine, pydarknet.network.cuda; DarknetError "no
        CUDA GPU found: ..." without one). Returns the network."""
        from .cuda import engine_for, parse_device
        index = parse_device(device)
        self.engine = None if index is None else engine_for(self, index)
        return self

    def sync_parameters(self):
        """Bring the parameters the GPU changed (training) back into the layers' arrays (nothing on the CPU)."""
        if self.engine is not None:
            self.engine.sync_to_host()

    @property
    def device(self):
        return "cpu" if self.engine is None else f"cuda:{self.engine.be.index}"

    def forward(self, x):
        """Run a batch (n, c, h, w) (or one image (c, h, w)) through every layer; return the network's output."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim == 3:
            x = x[None]
        if x.shape[1:] != self.input_shape:
            raise DarknetError(f"{self.cfg_path}: input of shape {x.shape[1:]} given, the network takes "
                               f"{self.input_shape}")
        if self.engine is not None:
            return self.engine.forward(x)
        for layer in self.layers:
            x = layer.forward(x, self)
            layer.output = x
        return self.output_layer.output

    # -- training's passes (pydarknet.tasks.train runs them: step.train_network) --------------------------------------
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

    def initialize(self, seed=0):
        """Random starting weights, as darknet's make_*_layer sets them, for training from scratch."""
        rng = np.random.default_rng(seed)
        for layer in self.layers:
            layer.initialize(rng)
        return self

    def prepare(self):
        """Do now what the first inference pass would do once on the way (the fork's batch-norm folded into each
        convolution's weights, the weights in the form the products take, the layers' outputs for one image
        first touched), so that a timed pass times the pass alone. The operating system's first touch of fresh
        memory took 10-20 ms of yolov3-tiny's first pass (33 MB of outputs) on a Zen 3 EPYC."""
        for layer in self.layers:
            layer.prepare(self)
            if self.engine is None and layer.keeps_output:
                layer.output_buffer(1).fill(0)

    def workspace(self, size):
        """A shared scratch array (im2col's columns), grown on demand and kept, like darknet's net.workspace."""
        if getattr(self, "_workspace", None) is None or self._workspace.size < size:
            self._workspace = np.empty(size, np.float32)
        return self._workspace[:size]

    @property
    def output_layer(self):
        """The last layer that is not a [cost] layer, as darknet's get_network_output_layer."""
        for layer in reversed(self.layers):
            if layer.type != "cost":
                return layer
        return self.layers[-1]

    def resize(self, w, h):
        """Change the input size of a fully convolutional network (darknet's resize_network)."""
        if (w, h) == (self.w, self.h):
            return
        self.w, self.h = w, h
        shape = self.input_shape
        for layer in self.layers:
            layer.setup(shape, self)
            shape = layer.out_shape

    # -- loading ---------------------------------------------------------------------------------------------
    def save(self, weights_path, upto=None):
        """darknet's save_weights (the first `upto` layers' when given), written atomically."""
        from ..files.weights import save_weights
        save_weights(self, weights_path, upto)

    def load(self, weights_path, upto=None):
        from ..files.weights import load_weights
        load_weights(self, weights_path, upto)
        self.params_version += 1
        if not self.darknet_forced and self.weights_version[2] == 5 and self.darknet != "ab":
            self.darknet, self.darknet_reason = "ab", "weights revision 5"
        return self

    def summary(self, totals=False):
        """Darknet's layer table as lines of text; `totals`: then the BFLOPs, the parameter count and the darknet
        followed (the `summary` command)."""
        lines = ["layer     filters    size              input                output"]
        lines += [f"{layer.index:5d} {layer.describe()}" for layer in self.layers]
        if totals:
            lines += [f"Total BFLOPS {sum(layer.flops() for layer in self.layers) / 1e9:.3f}",
                      f"Parameters {sum(a.size for layer in self.layers for a in layer.weight_arrays())}",
                      self.darknet_line()]
        return lines

    def darknet_line(self):
        """Which darknet's arithmetic this network follows, and why."""
        name = "AlexeyAB" if self.darknet == "ab" else "pjreddie"
        return f"darknet: {name} ({self.darknet_reason or 'no AlexeyAB-only option in the cfg'})"

    def print_summary(self, file=sys.stderr):
        print("\n".join(self.summary()), file=file)
