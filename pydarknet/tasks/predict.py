"""Load a network once, then detect or classify images: the Python API behind `detect` and `classify`.

    detector = Detector("cfg/yolov3-tiny.cfg", "yolov3-tiny.weights")   # names: `detect`'s (COCO)
    result = detector.detect("dog.jpg")          # result.detections: boxes, classes, probabilities
    result = detector.detect(cv2.imread("dog.jpg"))   # a frame: the same pixels give the same numbers

    classifier = Classifier("cfg/tiny.cfg", "tiny.weights")             # names: `classify`'s (ImageNet)
    result = classifier.classify("dog.jpg", top=5)

An image is a path, a uint8 (h, w, 3) array in OpenCV's BGR order (cv2.imread's, VideoCapture.read's; RGB when
the Detector or Classifier is made with rgb=True), or darknet's float32 (3, h, w) RGB image, values 0..1.
`detect_batch` and `classify_batch` run several images through the network in one forward pass, with the
same results as one at a time (`detect` and `classify` are their batch of one). `prepare` does an image's
part before the network (loading, resizing): a caller may run it ahead, in another thread, and pass the
prepared images on.
"""
from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ..results.boxes import Detections
from ..results.classifications import network_hierarchy, top_k
from ..files.config import DarknetError, default_data, load_names
from ..results.detections import network_detections, network_nms
from ..files.image import (center_crop_image, check_given, draw_detections, from_bgr8, letterbox_image, load_image,
                           resize_image, resize_min)
from ..kernels.threads import cores
from ..network.network import Network
from ..results.predictions import ClassifyResult, Detection, DetectionResult, pixel
from ..results.heatmap import HEAT_THRESH
from ..results.tiles import Tiles, cut, detect_tiles
from ..results.track import Tracker
from ..results.tree import hierarchy_predictions
from .engines import engine_name, use_engine
from .options import NetworkOptions, Preprocessing, Thresholds, class_set, given

# What the API takes as an image: a path, a uint8 (h, w, 3) BGR (or RGB) array, darknet's float32 (3, h, w) image.
Image = str | os.PathLike | np.ndarray

# Layers whose parameters fix the input size: a network with one of these cannot be resized.
FIXED_SIZE_LAYERS = {"connected", "local", "detection", "crop"}

# Each darknet's detection threshold when none is given: the fork's `detector test` and pjreddie's `detect`.
DEFAULT_THRESH = {"ab": 0.25, "pjreddie": 0.5}


@dataclass
class PreparedImage:
    """An image made ready for the network: its name, its size and the network's input made from it."""
    image: str
    width: int
    height: int
    input: np.ndarray   # float32 (c, h, w); None when cut into tiles
    tiles: list = None  # Detector(tiles=...): the tiles.Tile parts of the image, each with its input


def skipped_classes(value, classes):
    """Detector's skip_classes as a frozenset: class numbers, or a string as -skipclasses takes it ("2,5-8"); each
    must be one of the network's `classes`."""
    numbers = class_set(value)
    outside = sorted(c for c in numbers if not 0 <= c < classes)
    if outside:
        raise DarknetError(f"-skipclasses: class {outside[0]} is not one of the network's {classes} classes (0 to "
                           f"{classes - 1})")
    return numbers


def class_name(names, index):
    return names[index] if names and 0 <= index < len(names) else str(index)


def as_image(image, decoder, rgb=False):
    """(name, float32 (3, h, w) image) of a path, or of an array ("<array>"): a uint8 (h, w, 3) image, BGR as
    cv2.imread and VideoCapture.read give it (RGB when `rgb`), or darknet's float32 (3, h, w) image. None (a failed
    cv2.imread) is a ValueError saying so."""
    if isinstance(check_given(image), np.ndarray):
        if image.dtype == np.uint8:
            return "<array>", from_bgr8(image, rgb)
        return "<array>", np.asarray(image, np.float32)
    return str(image), load_image(image, decoder)


def default_names(data_name, classes):
    """The class names the commands use when given no .data file (`detect`: cfg/coco.data's, `classify`:
    cfg/imagenet1k.data's); None (class numbers) for a network with more classes than that list names."""
    names, _ = load_names(default_data(data_name), 0, None)
    return names if len(names) >= classes else None


class NetworkPool:
    """The networks of one Detector or Classifier that threads call at once (a web application's one model): a call
    takes a free one, else a replica of the first (Network.replica: the parameters shared, buffers of its own)
    while there are fewer than the cores, else waits for one; on a GPU, the one network by turns. Measured with 4
    threads each detecting the four sample photos in turn on 2 cores of an Intel Xeon (AVX-512), a lock around one
    network against a network per thread: yolov4-tiny 13.7-14.0 against 16.2-16.7 images/s, shapes-v4tiny
    114-127 against 142-154 (one thread alone 14.9 and 88-91): two forwards at once fill the gaps one leaves in
    the cores (Python between kernels, the layers that run on one thread). A replica costs its layers' outputs
    and derived weights, not its parameters: 81 MB for yolov4-tiny."""

    def __init__(self, net):
        self.first = net
        self.limit = 1 if net.engine is not None else cores()
        self.free, self.count = [net], 1
        self.turn = threading.Condition()

    @contextmanager
    def network(self):
        """A network for this thread alone until the block ends."""
        with self.turn:
            while not self.free and self.count >= self.limit:
                self.turn.wait()
            net = self.free.pop() if self.free else None
            if net is None:
                self.count += 1   # a replica, made outside the turn
        try:
            if net is None:
                net = self.first.replica()
            with net.lock:
                yield net
        finally:
            with self.turn:
                if net is None:   # the replica failed
                    self.count -= 1
                else:
                    self.free.append(net)
                self.turn.notify()


def timed_forward(net, prepared):
    """The network's output for a list of PreparedImages of one size, and each one's share of the seconds.

    A pass during which Numba compiled kernels (the first run on a CPU) or loaded them from a cache (a first run
    with nothing recorded to load ahead: preload) is not the network's time: it is then run again, warm, and that
    second pass is timed."""
    from numba.core import event

    from ..kernels.shipped import loads_so_far
    batch = np.stack([p.input for p in prepared])
    loads = loads_so_far()
    with event.install_recorder("numba:compile") as compiles:
        start = time.perf_counter()
        output = net.forward(batch)
        seconds = time.perf_counter() - start
    if compiles.buffer or loads_so_far() != loads:
        start = time.perf_counter()
        output = net.forward(batch)
        seconds = time.perf_counter() - start
    return output, seconds / len(prepared)


def products_name(fast):
    """The backend that `fast` names: False darknet's exact products, True the fast ones (fused multiply-add,
    Winograd; within 1e-3 of darknet's numbers, not bit-exact), "bf16" those with the convolutions in bfloat16
    (--bf16: kernels.products.bf16_engine), "int16" in 12-bit integers with VNNI (--int16). kernels.products'
    products_for and set_backend make the fast products of the last two, with a warning, where the CPU's
    instructions would not pay."""
    from ..kernels.products import REDUCED
    return "darknet" if not fast else fast if fast in REDUCED else "fast"


def use_fast(fast):
    """The process's products (every network without its own: a command's --fast, --bf16, --int16, as
    PYDARKNET_PRODUCTS), as products_name names them; nothing for a false `fast`."""
    if fast:
        from ..kernels.products import set_backend
        set_backend(products_name(fast))


DETECTION_LAYERS = ("yolo", "region", "detection")


def check_role(net, role):
    """Refuse a classifier given to a detector's command and a detector given to a classifier's (before the
    weights are read): one line naming the cfg and the command it needs."""
    found = next((layer.type for layer in net.layers if layer.type in DETECTION_LAYERS), None)
    if role == "detector" and found is None:
        raise DarknetError(f"{net.cfg_path}: a classifier (no [yolo], [region] or [detection] layer), not a detector: "
                           f"use `pydarknet classify {net.cfg_path} WEIGHTS IMAGE`")
    if role == "classifier" and found is not None:
        raise DarknetError(f"{net.cfg_path}: a detector (its [{found}] layer), not a classifier: use "
                           f"`pydarknet detect {net.cfg_path} WEIGHTS IMAGE`")


def network_from_files(cfg, weights, darknet=None, options=None, role=None, built=None, urls=False):
    """The network of `cfg` with the parameters of `weights`: the one way the commands, the Detector and Classifier,
    the evaluations and a Dask worker load one. `darknet`: whose arithmetic to follow (Network's; None: from the
    files). `options`: a NetworkOptions (None: its defaults): `strict`, Network's; `device`, where pydarknet's own
    kernels run it (the network moves there before its weights are read); another `engine` runs it once loaded
    (tasks.engines.use_engine, with the process's products). `role`: "detector" or "classifier", checked before
    the weights are read (check_role). `built(net)`: called once the network is built, before its weights are read
    (the commands show darknet's layer table there, as darknet does). `urls`: cfg and weights may be URLs (the
    commands' arguments), each read through fsspec into a temporary copy, the weights once the cfg has built."""
    from ..files.resources import local_copy
    chosen = options or NetworkOptions()
    own = chosen.engine == "numba"
    net = Network(local_copy(cfg) if urls else cfg, darknet=darknet, strict=chosen.strict,
                  device=chosen.device if own else None)
    check_role(net, role)
    if built is not None:
        built(net)
    net.load(local_copy(weights) if urls else weights)
    if not own:
        use_engine(net, chosen.engine, None, chosen.device)
    return net


def loaded_network(cfg, weights, network, darknet, fast, role, device=None, strict=False, engine=None):
    """The network a Detector or Classifier (`role`) runs: `network` as given, else network_from_files's of cfg
    (`strict`: see Network) and weights; with the products `fast` names (products_name) as its own, unless `fast` is
    None; moved to `device` ("cuda:0"; None: where it is) when given; run by `engine` (tasks.engines.use_engine;
    None: as it is)."""
    if network is None:
        network = network_from_files(cfg, weights, darknet, NetworkOptions(strict=strict), role)
    check_role(network, role)
    if fast is not None:
        from ..kernels.products import products_for
        network.products = products_for(products_name(fast))
    if engine not in (None, "numba"):
        return use_engine(network, engine, fast, device)
    if engine_name(network) != "numba":
        return network   # (loaded on its engine already: programs.images.load_network)
    if device is not None:
        network = network.to(device)
    network.prepare()   # before the first pass is timed
    return network


class Detector:
    """`darknet`: "ab" or "pjreddie" forces whose arithmetic and defaults to follow (None: from the files).
    `fast`: the products of this Detector's network alone (products_name: False exact, True --fast's, "bf16",
    "int16"; None: the process's, PYDARKNET_PRODUCTS or a command's flag): Detectors of two modes live side by side.
    `device`: "cuda:0" runs the network on that GPU (pydarknet.network.cuda), None where it is. `strict`: a cfg
    option no layer reads is an error (Network's). `engine`: "onnxruntime" or "openvino" runs the network's ONNX
    graph in that runtime (tasks.engines; `fast` then picks OpenVINO's precision), None or "numba" pydarknet's
    kernels. None of these changes any other Detector or Network.
    `preprocessing`: an options.Preprocessing (letterbox, decoder, rgb, tiles; None: its defaults); `letterbox`,
    `decoder`, `rgb`, `tiles` given (not None) take the place of its. `letterbox` None is the network's darknet's
    default: pjreddie letterboxes, the fork resizes unless the cfg's [net] has letter_box=1 (the `letterbox`
    attribute holds the choice made). `names`: None for those `detect` prints (cfg/coco.data's; class numbers for a
    network of more classes). `skip_classes`: class numbers (or a string as -skipclasses takes it, "2,5-8") never
    reported: not in the results, so neither drawn, tracked nor counted. `heatmaps`: each result keeps the
    candidates of its heat maps (DetectionResult.heatmap, pydarknet.results.heatmap)."""

    def __init__(self, cfg: str | os.PathLike, weights: str | os.PathLike, names: Sequence[str] | None = None,
                 letterbox: bool | None = None, decoder: str | None = None, network: Network | None = None,
                 darknet: str | None = None, fast: bool | str | None = None, device: str | None = None,
                 rgb: bool | None = None, tiles: bool | Tiles | None = None, skip_classes: str | Iterable[int] = (),
                 heatmaps: bool = False, preprocessing: Preprocessing | None = None, strict: bool = False,
                 engine: str | None = None):
        self.net = loaded_network(cfg, weights, network, darknet, fast, "detector", device, strict, engine)
        self.networks = NetworkPool(self.net)   # for threads calling at once: each call its own network
        self.names = default_names("coco.data", self.classes) if names is None else names
        chosen = given(Preprocessing, preprocessing, letterbox=letterbox, decoder=decoder, rgb=rgb, tiles=tiles)
        if chosen.letterbox is None:
            chosen = given(Preprocessing, chosen, letterbox=bool(self.net.letter_box) if self.net.darknet == "ab"
                           else True)
        self.preprocessing = chosen
        self.skip_classes = skipped_classes(skip_classes, self.classes)
        self.heatmaps = heatmaps

    @property
    def engine(self):
        return engine_name(self.net)

    @property
    def letterbox(self):
        return self.preprocessing.letterbox

    @property
    def decoder(self):
        return self.preprocessing.decoder

    @property
    def rgb(self):
        return self.preprocessing.rgb

    @property
    def tiles(self):
        return self.preprocessing.tiles

    @property
    def default_thresh(self):
        return DEFAULT_THRESH[self.net.darknet]

    @property
    def classes(self):
        return next((layer.classes for layer in reversed(self.net.layers) if hasattr(layer, "detections")), 0)

    def prepare(self, image):
        """An image (see as_image: a path, a uint8 (h, w, 3) BGR array [RGB with `rgb`], a float (3, h, w) one),
        resized or letterboxed to the network: a PreparedImage (which is returned as it is)."""
        if isinstance(image, PreparedImage):
            return image
        name, im = as_image(image, self.decoder, self.rgb)
        _, h, w = im.shape
        if self.tiles is not None:
            return PreparedImage(name, w, h, None, cut(im, self.net.w, self.net.h, self.tiles, self.sized))
        return PreparedImage(name, w, h, self.sized(im))

    def sized(self, im):
        """A float (3, h, w) image letterboxed or resized to the network, as the Detector's `letterbox` says."""
        net = self.net
        return letterbox_image(im, net.w, net.h) if self.letterbox else resize_image(im, net.w, net.h)

    def detect(self, image: Image, thresh: float | None = None, hier_thresh: float | None = None,
               nms: float | None = None, thresholds: Thresholds | None = None) -> DetectionResult:
        """Boxes over `thresh` (None: the darknet's default, see DEFAULT_THRESH) after the NMS of the
        network's darknet (and, for the fork, of its last [yolo]'s nms_kind) at IoU `nms` (0: none).
        `thresholds`: an options.Thresholds (None: its defaults, thresh None, hier_thresh .5, nms .45), whose
        values `thresh`, `hier_thresh`, `nms` take the place of when given (not None). A DarknetError for a
        value outside [0, 1]."""
        return self.detect_batch([image], thresh, hier_thresh, nms, thresholds)[0]

    def detect_batch(self, images: Iterable[Image], thresh: float | None = None, hier_thresh: float | None = None,
                     nms: float | None = None, thresholds: Thresholds | None = None) -> list[DetectionResult]:
        """`detect` for a list of images (paths, arrays or PreparedImages) in one forward pass: their
        DetectionResults, in order, the same as one at a time."""
        chosen = given(Thresholds, thresholds, thresh=thresh, hier_thresh=hier_thresh, nms=nms)
        if not check_given(images, "images"):
            return []
        thresh, hier_thresh, nms = chosen.threshold(self.default_thresh), chosen.hier_thresh, chosen.nms
        prepared = [self.prepare(image) for image in images]   # decoded and sized in the caller's thread
        if self.tiles is not None:
            return [self._tiled_result(p, thresh, hier_thresh, nms) for p in prepared]
        with self.networks.network() as net:
            _, seconds = timed_forward(net, prepared)
            found = [self._found(net, p.width, p.height, index, thresh, hier_thresh, nms)
                     for index, p in enumerate(prepared)]
        return [self._result(p, *boxes, seconds, thresh) for p, boxes in zip(prepared, found)]

    def _found(self, net, w, h, index, thresh, hier_thresh, nms):
        """(boxes after NMS, heat map candidates or None) of image `index` (w x h pixels) of `net`'s last forward
        pass, relative to it."""
        dets = network_detections(net, w, h, thresh, hier_thresh, relative=True, letterbox=self.letterbox,
                                  batch_index=index)
        heat = None
        if self.heatmaps:
            heat = network_detections(net, w, h, HEAT_THRESH, hier_thresh, relative=True, letterbox=self.letterbox,
                                      batch_index=index)
        return (network_nms(net, dets, nms) if nms else dets), heat

    def _tiled_result(self, prepared, thresh, hier_thresh, nms):
        """The detections of an image cut into tiles (pydarknet.results.tiles), TILE_BATCH tiles per forward pass."""
        def run(tiles):
            with self.networks.network() as net:
                _, seconds = timed_forward(net, tiles)
                found = [self._found(net, t.w, t.h, index, thresh, hier_thresh, nms) for index, t in enumerate(tiles)]
            return found, seconds * len(tiles)
        dets, heat, seconds = detect_tiles(prepared.tiles, run, prepared.width, prepared.height, self.net, nms)
        return self._result(prepared, dets, heat, seconds, thresh)

    def _result(self, prepared, dets, heat, seconds, thresh):
        """The DetectionResult of `prepared`'s boxes `dets` (after NMS) and heat map candidates `heat` (or None),
        both relative to the image: each box's classes over `thresh`, but the skipped classes."""
        w, h = prepared.width, prepared.height
        result = DetectionResult(prepared.image, w, h, seconds)
        if heat is not None:
            prob = heat.prob.copy()
            prob[:, sorted(self.skip_classes)] = 0
            result.heat = Detections(heat.bbox, heat.objectness, prob)
        fw, fh = np.float32(w), np.float32(h)
        for i in range(len(dets)):
            classes = [j for j in range(dets.prob.shape[1])
                       if dets.prob[i, j] > np.float32(thresh) and j not in self.skip_classes]
            if not classes:
                continue
            bx, by, bw, bh = (np.float32(v) for v in dets.bbox[i])
            with np.errstate(over="ignore", invalid="ignore"):   # inf and NaN boxes come out as darknet's
                pixels = (pixel((bx - bw / 2) * fw), pixel((by - bh / 2) * fh), pixel(bw * fw), pixel(bh * fh))
            box = (float(bx), float(by), float(bw), float(bh))
            result.boxes.append((box, [(j, float(dets.prob[i, j])) for j in classes]))
            for j in classes:
                result.detections.append(Detection(j, class_name(self.names, j), float(dets.prob[i, j]),
                                                   float(dets.objectness[i]), box, pixels))
        return result

    def draw(self, canvas: np.ndarray, result: DetectionResult) -> np.ndarray:
        """Draw `result`'s boxes and labels on `canvas`, a uint8 BGR (h, w, 3) image of the detected image's
        size, as darknet's detect draws them; boxes with an inf or NaN coordinate are left out. Returns
        `canvas`."""
        check_given(canvas, "canvas")
        ids = result.track_ids or [None] * len(result.boxes)
        drawn = [(box, scored, track_id) for (box, scored), track_id in zip(result.boxes, ids)
                 if all(math.isfinite(v) for v in box)]
        # darknet's line width is int(h * .006): no outline at all under 167 pixels; we draw at least 1
        return draw_detections(canvas, [box for box, _, _ in drawn], [[c for c, _ in s] for _, s, _ in drawn],
                               self.names, self.classes, width=max(1, int(result.height * .006)),
                               tags=[f"#{t}" if t is not None else "" for _, _, t in drawn])

    def track(self, frames: Iterable[Image], tracker: Tracker | None = None, thresh: float | None = None,
              hier_thresh: float | None = None, nms: float | None = None,
              thresholds: Thresholds | None = None) -> Iterator[DetectionResult]:
        """`detect` each of `frames` (paths, arrays or PreparedImages, in the video's order; the thresholds as
        detect's) and follow the objects from frame to frame with `tracker` (a track.Tracker [a new one with its
        defaults]): their DetectionResults, one at a time, with track ids (DetectionResult.track_ids,
        Detection.track_id)."""
        tracker = Tracker() if tracker is None else tracker
        chosen = given(Thresholds, thresholds, thresh=thresh, hier_thresh=hier_thresh, nms=nms)
        for frame in check_given(frames, "frames"):
            yield tracker.update(self.detect(frame, thresholds=chosen))


class Classifier:
    """`darknet`, `fast`, `device`, `strict` and `engine` as for Detector. `preprocess`: "resize_min" (darknet's
    published results: the short side to the network width, the network resized to the image; a fixed-size network
    takes a centre crop), "letterbox" or "resize" (options.Preprocessing.classifier_resize names them). `names`:
    None for those `classify` prints (cfg/imagenet1k.data's; class numbers for a network of more outputs). `rgb` as
    for Detector."""

    def __init__(self, cfg: str | os.PathLike, weights: str | os.PathLike, names: Sequence[str] | None = None,
                 preprocess: str = "resize_min", decoder: str = "darknet", network: Network | None = None,
                 darknet: str | None = None, fast: bool | str | None = None, device: str | None = None,
                 rgb: bool = False, strict: bool = False, engine: str | None = None):
        self.net = loaded_network(cfg, weights, network, darknet, fast, "classifier", device, strict, engine)
        self.networks = NetworkPool(self.net)   # for threads calling at once: each call its own network (and size)
        self.names = default_names("imagenet1k.data", self.classes) if names is None else names
        self.preprocess = preprocess
        self.decoder = decoder
        self.rgb = rgb
        self.size = (self.net.w, self.net.h)
        self.resizable = not any(layer.type in FIXED_SIZE_LAYERS for layer in self.net.layers)

    @property
    def classes(self):
        """The network's outputs: one probability a class."""
        return int(np.prod(self.net.output_layer.out_shape))

    @property
    def engine(self):
        return engine_name(self.net)

    def prepare(self, image):
        """An image (as Detector.prepare takes it) made ready for the network as `preprocess` says: a
        PreparedImage (which is returned as it is). With "resize_min" its input has the image's own proportions."""
        if isinstance(image, PreparedImage):
            return image
        name, im = as_image(image, self.decoder, self.rgb)
        w, h = self.size
        if self.preprocess == "letterbox":
            sized = letterbox_image(im, w, h)
        elif self.preprocess == "resize":
            sized = resize_image(im, w, h)
        else:
            sized = resize_min(im, w)
            if not self.resizable:
                sized = center_crop_image(sized, w, h)
        return PreparedImage(name, im.shape[2], im.shape[1], sized)

    def classify(self, image: Image, top: int = 5) -> ClassifyResult:
        return self.classify_batch([image], top)[0]

    def classify_batch(self, images: Iterable[Image], top: int = 5) -> list[ClassifyResult]:
        """`classify` for a list of images (paths, arrays or PreparedImages): their ClassifyResults in order,
        the same as one at a time. The images whose inputs have one size share a forward pass, the network
        resized to that size (with "resize_min" that is one pass per distinct image shape)."""
        prepared = [self.prepare(image) for image in check_given(images, "images")]
        by_size = {}
        for index, p in enumerate(prepared):
            by_size.setdefault(p.input.shape, []).append(index)
        results = [None] * len(prepared)
        with self.networks.network() as net:
            for (_, h, w), indices in by_size.items():
                net.resize(w, h)
                output, seconds = timed_forward(net, [prepared[i] for i in indices])
                for row, i in enumerate(indices):
                    results[i] = self._result(net, prepared[i].image, output[row], seconds, top)
        return results

    def _result(self, net, name, output, seconds, top):
        probs = output.reshape(-1).copy()
        tree = network_hierarchy(net)
        if tree is not None:  # a word-tree softmax: absolute probabilities, leaves only, as darknet's classifier
            hierarchy_predictions(probs, tree, only_leaves=True)
        best = top_k(probs, min(top, probs.size))
        return ClassifyResult(name, seconds, [(int(i), class_name(self.names, int(i)), float(p)) for i, p in best],
                              probs)
