"""A model as the server serves it: a Detector or Classifier loaded once, what a request may ask of it (its
options, parsed from query strings or v2 parameters), its images made ready off the event loop, a batch of them
run in the model's worker thread, and its answers as `detect --json` / `classify --json` objects and as tensors."""
import json
import threading
from dataclasses import dataclass, field

import numpy as np

from ...files.config import DarknetError
from ...files.image import decode_image
from ...results.output import strict_json
from ..options import Preprocessing, Thresholds, given
from ..predict import DETECTION_LAYERS, Classifier, Detector


class BadRequest(DarknetError):
    """A request the server refuses with 400, its text the one line the client reads."""


@dataclass(frozen=True)
class RequestOptions:
    """What one request asks of a model: the detector's thresholds and letterboxing (None: the model's), the
    classifier's number of classes answered (None: the model's)."""
    thresholds: Thresholds = field(default_factory=Thresholds)
    letterbox: bool = None
    top: int = None


def _boolean(name, value):
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("1", "true", "yes"):
        return True
    if str(value).lower() in ("0", "false", "no"):
        return False
    raise BadRequest(f"parameter {name}={value!r}: give true or false (1 or 0)")


def _number(name, value):
    if isinstance(value, bool):
        raise BadRequest(f"parameter {name}={value!r}: give a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise BadRequest(f"parameter {name}={value!r}: give a number") from None


def _count(name, value):
    number = _number(name, value)
    if number != int(number) or number < 1:
        raise BadRequest(f"parameter {name}={value!r}: give a whole number from 1")
    return int(number)


# Each kind's request parameters: the names `detect`'s options and the fork's darknet.py use, with their parsers.
PARAMETERS = {"detector": {"thresh": _number, "hier_thresh": _number, "nms": _number, "letter_box": _boolean},
              "classifier": {"top": _count}}
# Triton's own request parameters, which its clients send: accepted and not acted on ("binary_data_output" is
# read by v2.py; "timeout" and "priority" are Triton's scheduler's, whose queue here is first come, first served).
TRITON_PARAMETERS = {"binary_data_output", "timeout", "priority"}


class ServedModel:
    """`predictor`: a loaded Detector or Classifier; `name`: its name in the routes; `default_top`: the classes a
    classifier answers when the request does not say (the data file's top=, as `classify`)."""

    def __init__(self, name, predictor, default_top=1):
        self.name = name
        self.predictor = predictor
        self.kind = "detector" if isinstance(predictor, Detector) else "classifier"
        self.default_top = default_top
        self._letterboxed = {predictor.letterbox: predictor} if self.kind == "detector" else {}
        self._making = threading.Lock()

    def options(self, given):
        """The RequestOptions of a request's parameters (a mapping of name to a string or JSON value); a BadRequest
        for one this kind does not take, or a bad value."""
        accepted = PARAMETERS[self.kind]
        values = {}
        for key, value in given.items():
            if key in TRITON_PARAMETERS:
                continue
            if key not in accepted:
                raise BadRequest(f"unknown parameter {key!r}: a {self.kind} takes {', '.join(accepted)}")
            values[key] = accepted[key](key, value)
        try:
            thresholds = Thresholds(**{key: values[key] for key in ("thresh", "hier_thresh", "nms") if key in values})
        except DarknetError as e:
            raise BadRequest(str(e)) from None
        return RequestOptions(thresholds, values.get("letter_box"), values.get("top"))

    def _detector(self, letterbox):
        """The Detector that letterboxes as asked: the model's, or one sharing its network (made once)."""
        letterbox = self.predictor.letterbox if letterbox is None else letterbox
        with self._making:
            if letterbox not in self._letterboxed:
                p = self.predictor
                self._letterboxed[letterbox] = Detector(
                    None, None, names=p.names, network=p.net, skip_classes=p.skip_classes,
                    preprocessing=given(Preprocessing, p.preprocessing, letterbox=letterbox))
            return self._letterboxed[letterbox]

    def prepare(self, data, name, options):
        """An image's bytes decoded as `detect` decodes them (darknet's JPEG pixels) and sized for the network: a
        PreparedImage named `name`. Runs in the server's decoding threads; an ImageError for bad bytes."""
        predictor = self._detector(options.letterbox) if self.kind == "detector" else self.predictor
        prepared = predictor.prepare(decode_image(data, name, predictor.decoder))
        prepared.image = name
        return prepared

    def run(self, prepared, options):
        """The results of a batch of PreparedImages, each with its RequestOptions, in order: those asking the same
        share a forward pass (a batched image gets what it gets alone). Runs in the model's worker thread."""
        groups = {}
        for index, each in enumerate(options):
            groups.setdefault(each, []).append(index)
        results = [None] * len(prepared)
        for each, indices in groups.items():
            images = [prepared[i] for i in indices]
            if self.kind == "detector":
                found = self._detector(each.letterbox).detect_batch(images, thresholds=each.thresholds)
            else:
                found = self.predictor.classify_batch(images, each.top or self.default_top)
            for i, result in zip(indices, found):
                results[i] = result
        return results

    def forwards(self, options):
        """How many forward passes `run` makes of a batch with these options."""
        return len(set(options))

    @staticmethod
    def answer(result):
        """A result as `detect --json` or `classify --json` writes it."""
        return strict_json(result.as_json())

    def outputs(self):
        """The v2 outputs, {name: (datatype, shape)}: -1 where the size varies (n, the images of the request; m,
        the most detections of one of them)."""
        if self.kind == "detector":
            return {"detections": ("BYTES", [-1]), "boxes": ("FP32", [-1, -1, 4]), "scores": ("FP32", [-1, -1]),
                    "classes": ("INT32", [-1, -1]), "counts": ("INT32", [-1])}
        return {"classifications": ("BYTES", [-1]), "probabilities": ("FP32", [-1, self.classes])}

    @property
    def classes(self):
        return self.predictor.classes

    def tensors(self, results):
        """The v2 outputs of a request's results (see `outputs`): a detector's `detections`, each image's `detect
        --json` object; `boxes` [n, m, 4], each detection's left, top, width, height in pixels (as the object's
        "pixels"); `scores` [n, m]; `classes` [n, m] (-1 past an image's `counts`, where boxes and scores are 0).
        A classifier's `classifications` and `probabilities` [n, classes], every class's."""
        texts = np.array([json.dumps(self.answer(r), allow_nan=False).encode() for r in results], dtype=object)
        if self.kind == "classifier":
            return {"classifications": texts, "probabilities": np.stack([r.probabilities for r in results])}
        most = max(len(r.detections) for r in results)
        boxes = np.zeros((len(results), most, 4), np.float32)
        scores = np.zeros((len(results), most), np.float32)
        classes = np.full((len(results), most), -1, np.int32)
        for row, result in enumerate(results):
            for column, d in enumerate(result.detections):
                boxes[row, column] = d.pixels
                scores[row, column] = d.prob
                classes[row, column] = d.class_id
        return {"detections": texts, "boxes": boxes, "scores": scores, "classes": classes,
                "counts": np.array([len(r.detections) for r in results], np.int32)}

    def warm(self, batch):
        """Run a blank image through the model alone and `batch` at a time, so that every kernel a request meets is
        compiled (or loaded from Numba's cache) and every buffer sized before the server says it is ready."""
        import cv2
        _, jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), 128, np.uint8))
        prepared = self.prepare(jpeg.tobytes(), "warm-up", RequestOptions())
        for size in sorted({1, batch}):
            self.run([prepared] * size, [RequestOptions()] * size)


def served_model(name, network, names, fast=None, default_top=1):
    """A ServedModel of a loaded `network`, of its cfg's kind (a detector when it has a [yolo], [region] or
    [detection] layer), with class `names` and the products `fast` names (predict.products_name; None: the
    process's)."""
    detects = any(layer.type in DETECTION_LAYERS for layer in network.layers)
    predictor = (Detector if detects else Classifier)(None, None, names=names, network=network, fast=fast)
    return ServedModel(name, predictor, default_top)
