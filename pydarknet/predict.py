"""Load a network once, then detect or classify images: the Python API behind `detect` and `classify`.

    detector = Detector("cfg/yolov3-tiny.cfg", "yolov3-tiny.weights", names=read_names("data/coco.names"))
    result = detector.detect("dog.jpg")          # result.detections: boxes, classes, probabilities

    classifier = Classifier("cfg/tiny.cfg", "tiny.weights", names=...)
    result = classifier.classify("dog.jpg", top=5)

`detect_batch` and `classify_batch` run several images through the network in one forward pass, with the
same results as one at a time (`detect` and `classify` are their batch of one). `prepare` does an image's
part before the network (loading, resizing): a caller may run it ahead, in another thread, and pass the
prepared images on.
"""
import math
import time
from dataclasses import dataclass, field

import numpy as np

from .classify import network_hierarchy, top_k
from .config import DarknetError, check_fractions
from .detect import network_detections, network_nms
from .image import center_crop_image, draw_detections, letterbox_image, load_image, resize_image, resize_min
from .network import Network
from .output import strict_json
from .track import Tracker
from .tree import hierarchy_predictions

# Layers whose parameters fix the input size: a network with one of these cannot be resized.
FIXED_SIZE_LAYERS = {"connected", "local", "detection", "crop"}

# Each darknet's detection threshold when none is given: the fork's `detector test` and pjreddie's `detect`.
DEFAULT_THRESH = {"ab": 0.25, "pjreddie": 0.5}


def c_round(v):
    """C's round(): halves away from zero."""
    return math.copysign(math.floor(abs(v) + 0.5), v)


def pixel(v):
    """A pixel coordinate rounded as C's round(), an int; inf or NaN (an untrained network's box) stays a float."""
    return int(c_round(v)) if math.isfinite(v) else float(v)




@dataclass
class Detection:
    class_id: int
    name: str
    prob: float
    objectness: float
    box: tuple          # centre x, y, width, height, relative to the image (0..1)
    pixels: tuple       # left, top, width, height in pixels, rounded as AlexeyAB's -ext_output prints them
    track_id: int = None   # the object's id across frames (track.Tracker), None when not tracked

    def as_json(self):
        """A dict for JSON; a coordinate that is not finite is None; "track_id" only when tracked."""
        x, y, w, h = self.box
        left, top, width, height = self.pixels
        doc = {"class_id": self.class_id, "name": self.name, "prob": self.prob, "objectness": self.objectness,
               "box": {"x": x, "y": y, "w": w, "h": h},
               "pixels": {"left": left, "top": top, "width": width, "height": height}}
        if self.track_id is not None:
            doc["track_id"] = self.track_id
        return strict_json(doc)


@dataclass
class DetectionResult:
    image: str
    width: int
    height: int
    seconds: float                                   # the image's share of its batch's forward pass
    detections: list = field(default_factory=list)   # one Detection per (box, class) over the threshold
    boxes: list = field(default_factory=list)        # per box: (relative box, [(class id, prob)]) in darknet's order
    track_ids: list = None                           # per box: its track's id or None (track.Tracker); None: untracked

    def finite_boxes(self):
        """`boxes` without those having an inf or NaN coordinate (an untrained network's), which cannot be drawn
        or written as labels."""
        return [(box, scored) for box, scored in self.boxes if all(math.isfinite(v) for v in box)]

    def fork_order(self):
        """The detections in the order the fork's draw_detections_v3 prints them: the boxes that have a best
        class (the likeliest, first of equals, whose name does not start with "dont_show"), by left edge (a
        stable sort); for each, its best class, then its other classes in class order."""
        grouped, start = [], 0
        for _, scored in self.boxes:          # self.detections holds each box's classes in a row
            grouped.append(self.detections[start:start + len(scored)])
            start += len(scored)
        shown = []
        for dets in grouped:
            best = None
            for d in dets:
                if not d.name.startswith("dont_show") and (best is None or d.prob > best.prob):
                    best = d
            if best is not None:
                shown.append([best] + [d for d in dets if d is not best])
        shown.sort(key=lambda dets: left_edge(dets[0].box))
        return [d for dets in shown for d in dets]

    def as_json(self):
        return {"image": self.image, "seconds": self.seconds, "width": self.width, "height": self.height,
                "detections": [d.as_json() for d in self.detections]}


@dataclass
class ClassifyResult:
    image: str
    seconds: float      # the image's share of its forward pass
    predictions: list   # (class_id, name, prob), best first

    def as_json(self):
        return strict_json({"image": self.image, "seconds": self.seconds,
                            "predictions": [{"class_id": i, "name": n, "prob": p} for i, n, p in self.predictions]})


@dataclass
class PreparedImage:
    """An image made ready for the network: its name, its size and the network's input made from it."""
    image: str
    width: int
    height: int
    input: np.ndarray   # float32 (c, h, w)


def class_name(names, index):
    return names[index] if names and 0 <= index < len(names) else str(index)


def as_image(image, decoder):
    """(name, float32 (3, h, w) image) of a path or of an image array ("<array>")."""
    if isinstance(image, np.ndarray):
        return "<array>", np.asarray(image, np.float32)
    return str(image), load_image(image, decoder)


def timed_forward(net, prepared):
    """The network's output for a list of PreparedImages of one size, and each one's share of the seconds.

    A pass during which Numba compiled kernels (the first run on a CPU) is not the network's time: it is then
    run again, warm, and that second pass is timed."""
    from numba.core import event
    batch = np.stack([p.input for p in prepared])
    with event.install_recorder("numba:compile") as compiles:
        start = time.perf_counter()
        output = net.forward(batch)
        seconds = time.perf_counter() - start
    if compiles.buffer:
        start = time.perf_counter()
        output = net.forward(batch)
        seconds = time.perf_counter() - start
    return output, seconds / len(prepared)


def left_edge(box):
    """x - w/2 in float32, the key of the fork's compare_by_lefts."""
    x, _, w, _ = box
    return np.float32(x) - np.float32(w) / np.float32(2)


def use_fast(fast):
    """`fast=True`: the fast products (fused multiply-add, Winograd; within 1e-3 of darknet's numbers, not bit-exact)
    for every network of the process, as PYDARKNET_PRODUCTS=fast or the CLI's --fast; `fast="bf16"`: those with
    the convolutions in bfloat16 on the CPU's AMX tiles (--bf16; the fast products where the CPU has none)."""
    if fast:
        from .kernels.products import set_backend
        set_backend("bf16" if fast == "bf16" else "fast")


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


def loaded_network(cfg, weights, network, darknet, fast, role, device=None):
    """The network a Detector or Classifier (`role`) runs: `network` as given, else built from cfg and weights;
    moved to `device` ("cuda:0"; None: where it is) when given."""
    use_fast(fast)
    if network is None:
        network = Network(cfg, darknet=darknet)
        check_role(network, role)
        network.load(weights)
    check_role(network, role)
    return network if device is None else network.to(device)


class Detector:
    """`darknet`: "ab" or "pjreddie" forces whose arithmetic and defaults to follow (None: from the files).
    `fast`: see use_fast. `device`: "cuda:0" runs the network on that GPU (pydarknet.cuda), None where it is.
    `letterbox`: None for the network's darknet's default: pjreddie letterboxes, the fork resizes unless the
    cfg's [net] has letter_box=1."""

    def __init__(self, cfg, weights, names=None, letterbox=None, decoder="darknet", network=None, darknet=None,
                 fast=False, device=None):
        self.net = loaded_network(cfg, weights, network, darknet, fast, "detector", device)
        self.names = names
        if letterbox is None:
            letterbox = bool(self.net.letter_box) if self.net.darknet == "ab" else True
        self.letterbox = letterbox
        self.decoder = decoder

    @property
    def default_thresh(self):
        return DEFAULT_THRESH[self.net.darknet]

    @property
    def classes(self):
        return next((layer.classes for layer in reversed(self.net.layers) if hasattr(layer, "detections")), 0)

    def prepare(self, image):
        """A path or a float (3, h, w) image, resized or letterboxed to the network: a PreparedImage (which is
        returned as it is)."""
        if isinstance(image, PreparedImage):
            return image
        name, im = as_image(image, self.decoder)
        _, h, w = im.shape
        net = self.net
        sized = letterbox_image(im, net.w, net.h) if self.letterbox else resize_image(im, net.w, net.h)
        return PreparedImage(name, w, h, sized)

    def detect(self, image, thresh=None, hier_thresh=0.5, nms=0.45):
        """Boxes over `thresh` (None: the darknet's default, see DEFAULT_THRESH) after the NMS of the
        network's darknet (and, for the fork, of its last [yolo]'s nms_kind) at IoU `nms` (0: none)."""
        return self.detect_batch([image], thresh, hier_thresh, nms)[0]

    def detect_batch(self, images, thresh=None, hier_thresh=0.5, nms=0.45):
        """`detect` for a list of images (paths, arrays or PreparedImages) in one forward pass: their
        DetectionResults, in order, the same as one at a time."""
        check_fractions(thresh=thresh, hier=hier_thresh, nms=nms)
        if not images:
            return []
        if thresh is None:
            thresh = self.default_thresh
        prepared = [self.prepare(image) for image in images]
        _, seconds = timed_forward(self.net, prepared)
        return [self._result(p, index, seconds, thresh, hier_thresh, nms) for index, p in enumerate(prepared)]

    def _result(self, prepared, index, seconds, thresh, hier_thresh, nms):
        """The detections of image `index` of the last forward pass."""
        net, w, h = self.net, prepared.width, prepared.height
        dets = network_detections(net, w, h, thresh, hier_thresh, relative=True, letterbox=self.letterbox,
                                  batch_index=index)
        if nms:
            dets = network_nms(net, dets, nms)
        result = DetectionResult(prepared.image, w, h, seconds)
        fw, fh = np.float32(w), np.float32(h)
        for i in range(len(dets)):
            classes = [j for j in range(dets.prob.shape[1]) if dets.prob[i, j] > np.float32(thresh)]
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

    def draw(self, canvas, result):
        """Draw `result`'s boxes and labels on `canvas`, a uint8 BGR (h, w, 3) image of the detected image's
        size, as darknet's detect draws them; boxes with an inf or NaN coordinate are left out. Returns
        `canvas`."""
        ids = result.track_ids or [None] * len(result.boxes)
        drawn = [(box, scored, track_id) for (box, scored), track_id in zip(result.boxes, ids)
                 if all(math.isfinite(v) for v in box)]
        # darknet's line width is int(h * .006): no outline at all under 167 pixels; we draw at least 1
        return draw_detections(canvas, [box for box, _, _ in drawn], [[c for c, _ in s] for _, s, _ in drawn],
                               self.names, self.classes, width=max(1, int(result.height * .006)),
                               tags=[f"#{t}" if t is not None else "" for _, _, t in drawn])

    def track(self, frames, tracker=None, thresh=None, hier_thresh=0.5, nms=0.45):
        """`detect` each of `frames` (paths, arrays or PreparedImages, in the video's order) and follow the objects
        from frame to frame with `tracker` (a track.Tracker [a new one with its defaults]): their DetectionResults,
        one at a time, with track ids (DetectionResult.track_ids, Detection.track_id)."""
        tracker = Tracker() if tracker is None else tracker
        for frame in frames:
            yield tracker.update(self.detect(frame, thresh, hier_thresh, nms))


class Classifier:
    """`darknet`, `fast` and `device` as for Detector. `preprocess`: "resize_min" (darknet's published results: the short
    side to the network width, the network resized to the image; a fixed-size network takes a centre crop),
    "letterbox" or "resize"."""

    def __init__(self, cfg, weights, names=None, preprocess="resize_min", decoder="darknet", network=None,
                 darknet=None, fast=False, device=None):
        self.net = loaded_network(cfg, weights, network, darknet, fast, "classifier", device)
        self.names = names
        self.preprocess = preprocess
        self.decoder = decoder
        self.size = (self.net.w, self.net.h)
        self.resizable = not any(layer.type in FIXED_SIZE_LAYERS for layer in self.net.layers)

    def prepare(self, image):
        """A path or a float (3, h, w) image made ready for the network as `preprocess` says: a PreparedImage
        (which is returned as it is). With "resize_min" its input has the image's own proportions."""
        if isinstance(image, PreparedImage):
            return image
        name, im = as_image(image, self.decoder)
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

    def classify(self, image, top=5):
        return self.classify_batch([image], top)[0]

    def classify_batch(self, images, top=5):
        """`classify` for a list of images (paths, arrays or PreparedImages): their ClassifyResults in order,
        the same as one at a time. The images whose inputs have one size share a forward pass, the network
        resized to that size (with "resize_min" that is one pass per distinct image shape)."""
        prepared = [self.prepare(image) for image in images]
        by_size = {}
        for index, p in enumerate(prepared):
            by_size.setdefault(p.input.shape, []).append(index)
        results = [None] * len(prepared)
        for (_, h, w), indices in by_size.items():
            self.net.resize(w, h)
            output, seconds = timed_forward(self.net, [prepared[i] for i in indices])
            for row, i in enumerate(indices):
                results[i] = self._result(prepared[i].image, output[row], seconds, top)
        return results

    def _result(self, name, output, seconds, top):
        probs = output.reshape(-1).copy()
        tree = network_hierarchy(self.net)
        if tree is not None:  # a word-tree softmax: absolute probabilities, leaves only, as darknet's classifier
            hierarchy_predictions(probs, tree, only_leaves=True)
        best = top_k(probs, min(top, probs.size))
        return ClassifyResult(name, seconds, [(int(i), class_name(self.names, int(i)), float(p)) for i, p in best])
