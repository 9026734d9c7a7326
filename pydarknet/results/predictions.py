"""What a Detector or Classifier answers for an image: its detections (boxes, classes, probabilities, pixels) or
its classes, as the commands print them and write them as JSON."""
import math
from dataclasses import dataclass, field

import numpy as np

from ..files.config import DarknetError
from .heatmap import heat_map
from .output import strict_json


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
    box: tuple[float, float, float, float]   # centre x, y, width, height, relative to the image (0..1)
    pixels: tuple   # left, top, width, height in pixels (ints; inf or NaN floats), as AlexeyAB's -ext_output prints
    track_id: int | None = None   # the object's id across frames (track.Tracker), None when not tracked
    crop: str | None = None       # the file it was cut out into (output.write_crops), None when not

    def as_json(self) -> dict:
        """A dict for JSON; a coordinate that is not finite is None; "track_id" only when tracked, "crop" only
        when cut out."""
        x, y, w, h = self.box
        left, top, width, height = self.pixels
        doc = {"class_id": self.class_id, "name": self.name, "prob": self.prob, "objectness": self.objectness,
               "box": {"x": x, "y": y, "w": w, "h": h},
               "pixels": {"left": left, "top": top, "width": width, "height": height}}
        if self.track_id is not None:
            doc["track_id"] = self.track_id
        if self.crop is not None:
            doc["crop"] = self.crop
        return strict_json(doc)


@dataclass
class DetectionResult:
    image: str
    width: int
    height: int
    seconds: float                                   # the image's share of its batch's forward pass
    detections: list[Detection] = field(default_factory=list)   # one per (box, class) over the threshold
    boxes: list = field(default_factory=list)        # per box: (relative box, [(class id, prob)]) in darknet's order
    track_ids: list | None = None                    # per box: its track's id or None (track.Tracker); None: untracked
    heat: object = None                              # Detector(heatmaps=True): the candidates of the heat maps

    def heatmap(self, class_id: int | None = None) -> np.ndarray:
        """float32 (height, width): the heat map of class `class_id` (None: all classes) over the image (see
        pydarknet.results.heatmap); the result of a Detector made with heatmaps=True."""
        if self.heat is None:
            raise DarknetError("no heat map: detect with Detector(..., heatmaps=True)")
        return heat_map(self.heat, self.width, self.height, class_id)

    def finite_boxes(self) -> list:
        """`boxes` without those having an inf or NaN coordinate (an untrained network's), which cannot be drawn
        or written as labels."""
        return [(box, scored) for box, scored in self.boxes if all(math.isfinite(v) for v in box)]

    def fork_order(self) -> list[Detection]:
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

    def as_json(self) -> dict:
        return {"image": self.image, "seconds": self.seconds, "width": self.width, "height": self.height,
                "detections": [d.as_json() for d in self.detections]}


@dataclass
class ClassifyResult:
    image: str
    seconds: float      # the image's share of its forward pass
    predictions: list[tuple[int, str, float]]   # (class_id, name, prob), best first
    probabilities: np.ndarray | None = field(default=None, compare=False, repr=False)   # float32: every class's

    def as_json(self):
        return strict_json({"image": self.image, "seconds": self.seconds,
                            "predictions": [{"class_id": i, "name": n, "prob": p} for i, n, p in self.predictions]})


def left_edge(box):
    """x - w/2 in float32, the key of the fork's compare_by_lefts."""
    x, _, w, _ = box
    return np.float32(x) - np.float32(w) / np.float32(2)
