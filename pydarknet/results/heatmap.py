"""Heatmaps (`-heatmaps`, as the Hank.ai fork's): where the network's [yolo] and [region] layers see each class.

Every candidate box of the output layers (each cell's prediction for each of its anchors) whose probability of a
class (objectness x class probability) is at least HEAT_THRESH, as the fork's create_yolo_heatmaps takes them,
adds that probability to each pixel of its box, mapped onto the image as the detections are (letterbox or
resize). A class's heat at a pixel is thus the summed probability of the boxes that cover it; the map of all
classes sums over them. Written as JPEGs: the map scaled to its own maximum (an empty map stays 0) through
OpenCV's JET colour map, as the fork's visualize_heatmap shows them: dark blue for nothing, red for the most.
"""
import cv2
import numpy as np

from ..files.image import save_image
from ..kernels.heatmap import paint_boxes
from .output import file_label

# The fork's threshold: a candidate's probability of a class counts from this on.
HEAT_THRESH = 0.1


def heat_map(heat, width, height, class_id=None):
    """float32 (height, width): the heat of class `class_id` (None: all classes, summed) of `heat`, the candidate
    boxes (boxes.Detections relative to the image, their probabilities under HEAT_THRESH zeroed)."""
    values = heat.prob.sum(1) if class_id is None else heat.prob[:, class_id]
    scale = np.float32([width, height, width, height])
    x, y, w, h = heat.bbox.T
    with np.errstate(invalid="ignore", over="ignore"):
        corners = np.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], 1) * scale
    finite = np.isfinite(corners).all(1)
    corners = np.round(np.clip(corners[finite], -1, scale + 1)).astype(np.int32)
    return paint_boxes(np.zeros((height, width), np.float32), corners,
                       np.ascontiguousarray(values[finite], np.float32))


def heat_image(values):
    """A heat map as a uint8 BGR image: scaled to its maximum, through the JET colour map."""
    top = float(values.max(initial=0))
    scaled = np.zeros(values.shape, np.uint8) if top <= 0 else np.round(values * (255 / top)).astype(np.uint8)
    return cv2.applyColorMap(scaled, cv2.COLORMAP_JET)


def save_heatmaps(result, names, base, skip=()):
    """Write `result`'s heat maps beside the drawing named `base` (predictions, predictions_2, ...):
    BASE_heatmap.jpg for all classes and BASE_heatmap_<class name>.jpg for each class not in `skip`. Returns the
    paths written."""
    classes = result.heat.prob.shape[1]
    paths = [save_image(heat_image(result.heatmap()), f"{base}_heatmap.jpg")]
    for c in range(classes):
        if c not in skip:
            name = names[c] if names and c < len(names) else str(c)
            paths.append(save_image(heat_image(result.heatmap(c)), f"{base}_heatmap_{file_label(name)}.jpg"))
    return paths
