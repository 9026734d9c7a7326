"""Building a network from its cfg: the [net] section's options, then one layer per section, each shape checked
as it goes; and which darknet's arithmetic a cfg asks for (`darknet_of`)."""
import math

from ..files.config import CfgError
from .layers import LAYER_TYPES

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


def net_options(net, s):
    """The [net] section `s`'s options onto the network, as darknet's parse_net_options reads them."""
    net.batch = s.int("batch", 1)
    net.subdivisions = s.int("subdivisions", 1)
    net.time_steps = s.int("time_steps", 1)
    # darknet: `batch` images per update, run `subdivisions` chunks at a time; net.batch is one chunk
    net.cfg_batch = net.batch
    net.learning_rate = s.float("learning_rate", 0.001)
    net.momentum = s.float("momentum", 0.9)
    net.decay = s.float("decay", 0.0001)
    net.adam = s.int("adam", 0)
    net.B1, net.B2, net.eps = s.float("B1", 0.9), s.float("B2", 0.999), s.float("eps", 1e-7)
    net.h = s.int("height", 0)
    net.w = s.int("width", 0)
    net.c = s.int("channels", 0)
    net.inputs = s.int("inputs", net.h * net.w * net.c)
    net.max_crop = s.int("max_crop", net.w * 2)
    net.min_crop = s.int("min_crop", net.w)
    net.max_ratio = s.float("max_ratio", net.max_crop / net.w if net.w else 0)
    net.min_ratio = s.float("min_ratio", net.min_crop / net.w if net.w else 0)
    net.center = s.int("center", 0)
    net.clip = s.float("clip", 0)
    net.angle = s.float("angle", 0)
    net.aspect = s.float("aspect", 1)
    net.saturation = s.float("saturation", 1)
    net.exposure = s.float("exposure", 1)
    net.hue = s.float("hue", 0)
    net.random = s.int("random", 0)
    net.policy = s.str("policy", "constant")
    net.burn_in = s.int("burn_in", 0)
    net.power = s.float("power", 4)
    net.step = s.int("step", 1)
    net.scale = s.float("scale", 1)
    net.steps = s.ints("steps", [])
    net.scales = s.floats("scales", [])
    net.gamma = s.float("gamma", 1)
    net.max_batches = s.int("max_batches", 0)
    net.letter_box = s.int("letter_box", 0)
    # the AlexeyAB fork's training options (its data pipeline: train/data_ab.py; its training loop: ema_alpha)
    net.flip = s.int("flip", 1)
    net.blur = s.int("blur", 0)
    net.gaussian_noise = s.int("gaussian_noise", 0)
    net.mosaic = s.int("mosaic", 0)
    net.mosaic_bound = s.int("mosaic_bound", 0)
    net.cutmix = s.int("cutmix", 0)    # read so that training can refuse them (data_ab.DetectionDatasetAB)
    net.mixup = s.int("mixup", 0)
    net.track = s.int("track", 0)
    net.ema_alpha = s.float("ema_alpha", 0)
    net.resize_step = s.int("resize_step", 32)   # the fork's random=1 sizes are multiples of this
    if net.batch < 1 or net.subdivisions < 1:
        raise s.error("batch and subdivisions must be positive", "batch")
    if net.time_steps < 1:
        raise s.error(f"time_steps={net.time_steps} must be positive", "time_steps")
    net.batch = max(1, net.batch // net.subdivisions) * net.time_steps
    if net.h < 0 or net.w < 0 or net.c < 0:
        raise s.error("width, height and channels must not be negative", "width")
    if not (net.h and net.w and net.c):
        if not net.inputs:
            raise s.error("no input size: give width=, height= and channels= (or inputs=)")
        net.h, net.w, net.c = 1, 1, net.inputs
    if 4 * net.h * net.w * net.c > MEMORY_LIMIT:
        raise s.error(f"input {net.w}x{net.h}x{net.c} alone needs "
                      f"{4 * net.h * net.w * net.c / (1 << 30):.1f} GiB", "width")


def build_layers(net, sections):
    """The layers of `sections` (those after [net]), in order, each built on the previous one's output shape."""
    net.layers = []
    shape = (net.c, net.h, net.w)
    total = 0
    for index, section in enumerate(sections):
        cls = LAYER_TYPES.get(section.type)
        if cls is None:
            raise CfgError(f"{section.where()}: unknown layer type [{section.type}]")
        try:
            layer = cls(section, shape, net, index)
        except MemoryError as e:   # layers.base.zeros' limit, or this machine's memory
            raise CfgError(f"{section.where()}: [{section.type}] layer {index}: its parameters do not fit "
                           f"in memory ({e}): check the layer's sizes in {net.cfg_path}") from None
        for key, kind in COMMON_OPTIONS.items():
            read = section.int if kind is int else section.float
            setattr(layer, key, read(key, 1 if key == "learning_rate" else 0))
        net.layers.append(layer)
        shape = layer.out_shape
        total += 4 * math.prod(shape)   # Python ints: a huge shape must not wrap around
        if total > MEMORY_LIMIT:
            raise CfgError(f"{section.where()}: the network's outputs up to layer {index} need "
                           f"{total / (1 << 30):.1f} GiB per image (limit {MEMORY_LIMIT >> 30} GiB): "
                           f"check width/height/filters in {net.cfg_path}")
    if not net.layers:
        raise CfgError(f"{net.cfg_path}: the network has no layers after [net]")
