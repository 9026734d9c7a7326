"""Load a network once, then detect or classify images: the Python API behind `detect` and `classify`.

    detector = Detector("cfg/yolov3-tiny.cfg", "yolov3-tiny.weights", names=read_names("data/coco.names"))
    result = detector.detect("dog.jpg")          # result.detections: boxes, classes, probabilities

    classifier = Classifier("cfg/tiny.cfg", "tiny.weights", names=...)
    result = classifier.classify("dog.jpg", top=5)
"""
import math
import time
from dataclasses import dataclass, field

import numpy as np

from .classify import network_hierarchy, top_k
from .detect import network_detections, network_nms
from .image import center_crop_image, letterbox_image, load_image, resize_image, resize_min
from .network import Network
from .tree import hierarchy_predictions

# Layers whose parameters fix the input size: a network with one of these cannot be resized.
FIXED_SIZE_LAYERS = {"connected", "local", "detection", "crop"}

# Each darknet's detection threshold when none is given: the fork's `detector test` and pjreddie's `detect`.
DEFAULT_THRESH = {"ab": 0.25, "pjreddie": 0.5}


def c_round(v):
    """C's round(): halves away from zero."""
    return math.copysign(math.floor(abs(v) + 0.5), v)


@dataclass
class Detection:
    class_id: int
    name: str
    prob: float
    objectness: float
    box: tuple          # centre x, y, width, height, relative to the image (0..1)
    pixels: tuple       # left, top, width, height in pixels, rounded as AlexeyAB's -ext_output prints them

    def as_json(self):
        x, y, w, h = self.box
        left, top, width, height = self.pixels
        return {"class_id": self.class_id, "name": self.name, "prob": self.prob, "objectness": self.objectness,
                "box": {"x": x, "y": y, "w": w, "h": h},
                "pixels": {"left": left, "top": top, "width": width, "height": height}}


@dataclass
class DetectionResult:
    image: str
    width: int
    height: int
    seconds: float
    detections: list = field(default_factory=list)   # one Detection per (box, class) over the threshold
    boxes: list = field(default_factory=list)        # per box: (relative box, [(class id, prob)]) in darknet's order

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
    seconds: float
    predictions: list   # (class_id, name, prob), best first

    def as_json(self):
        return {"image": self.image, "seconds": self.seconds,
                "predictions": [{"class_id": i, "name": n, "prob": p} for i, n, p in self.predictions]}


def class_name(names, index):
    return names[index] if names and 0 <= index < len(names) else str(index)


def as_image(image, decoder):
    """(path or None, float32 (3, h, w) image)."""
    if isinstance(image, np.ndarray):
        return None, np.asarray(image, np.float32)
    return str(image), load_image(image, decoder)


def left_edge(box):
    """x - w/2 in float32, the key of the fork's compare_by_lefts."""
    x, _, w, _ = box
    return np.float32(x) - np.float32(w) / np.float32(2)


class Detector:
    """`darknet`: "ab" or "pjreddie" forces whose arithmetic and defaults to follow (None: from the files).
    `letterbox`: None for the network's darknet's default: pjreddie letterboxes, the fork resizes unless the
    cfg's [net] has letter_box=1."""

    def __init__(self, cfg, weights, names=None, letterbox=None, decoder="darknet", network=None, darknet=None):
        self.net = network or Network(cfg, darknet=darknet)
        if network is None:
            self.net.load(weights)
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

    def detect(self, image, thresh=None, hier_thresh=0.5, nms=0.45):
        """Boxes over `thresh` (None: the darknet's default, see DEFAULT_THRESH) after the NMS of the
        network's darknet (and, for the fork, of its last [yolo]'s nms_kind) at IoU `nms` (0: none)."""
        if thresh is None:
            thresh = self.default_thresh
        path, im = as_image(image, self.decoder)
        net = self.net
        _, h, w = im.shape
        sized = letterbox_image(im, net.w, net.h) if self.letterbox else resize_image(im, net.w, net.h)
        start = time.perf_counter()
        net.forward(sized[None])
        seconds = time.perf_counter() - start
        dets = network_detections(net, w, h, thresh, hier_thresh, relative=True, letterbox=self.letterbox)
        if nms:
            dets = network_nms(net, dets, nms)
        result = DetectionResult(path or "<array>", w, h, seconds)
        fw, fh = np.float32(w), np.float32(h)
        for i in range(len(dets)):
            classes = [j for j in range(dets.prob.shape[1]) if dets.prob[i, j] > np.float32(thresh)]
            if not classes:
                continue
            bx, by, bw, bh = (np.float32(v) for v in dets.bbox[i])
            pixels = (int(c_round((bx - bw / 2) * fw)), int(c_round((by - bh / 2) * fh)),
                      int(c_round(bw * fw)), int(c_round(bh * fh)))
            box = (float(bx), float(by), float(bw), float(bh))
            result.boxes.append((box, [(j, float(dets.prob[i, j])) for j in classes]))
            for j in classes:
                result.detections.append(Detection(j, class_name(self.names, j), float(dets.prob[i, j]),
                                                   float(dets.objectness[i]), box, pixels))
        return result


class Classifier:
    """`darknet` as for Detector. `preprocess`: "resize_min" (darknet's published results: the short side to the network width, the
    network resized to the image; a fixed-size network takes a centre crop), "letterbox" or "resize"."""

    def __init__(self, cfg, weights, names=None, preprocess="resize_min", decoder="darknet", network=None,
                 darknet=None):
        self.net = network or Network(cfg, darknet=darknet)
        if network is None:
            self.net.load(weights)
        self.names = names
        self.preprocess = preprocess
        self.decoder = decoder
        self.size = (self.net.w, self.net.h)
        self.resizable = not any(layer.type in FIXED_SIZE_LAYERS for layer in self.net.layers)

    def prepare(self, im):
        w, h = self.size
        if self.preprocess == "letterbox":
            self.net.resize(w, h)
            return letterbox_image(im, w, h)
        if self.preprocess == "resize":
            self.net.resize(w, h)
            return resize_image(im, w, h)
        sized = resize_min(im, w)
        if self.resizable:
            self.net.resize(sized.shape[2], sized.shape[1])
            return sized
        return center_crop_image(sized, w, h)

    def classify(self, image, top=5):
        path, im = as_image(image, self.decoder)
        x = self.prepare(im)
        start = time.perf_counter()
        output = self.net.forward(x[None])
        seconds = time.perf_counter() - start
        probs = output[0].reshape(-1).copy()
        tree = network_hierarchy(self.net)
        if tree is not None:  # a word-tree softmax: absolute probabilities, leaves only, as darknet's classifier
            hierarchy_predictions(probs, tree, only_leaves=True)
        best = top_k(probs, min(top, probs.size))
        return ClassifyResult(path or "<array>", seconds,
                              [(int(i), class_name(self.names, int(i)), float(p)) for i, p in best])
