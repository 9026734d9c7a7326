"""Detections: boxes decoded from the output layers and darknet's letterbox correction (NMS: detect.py).

A Detections holds N candidate boxes as arrays: `bbox` (N, 4) centre x, y, width, height (relative to the
image unless decoded otherwise), `objectness` (N,), `prob` (N, classes) with sub-threshold entries zeroed.
"""
import numpy as np

from ..kernels.nms import box_iou  # noqa: F401  (darknet's box_iou, the one implementation)


class Detections:
    def __init__(self, bbox, objectness, prob):
        self.bbox = np.asarray(bbox, np.float32).reshape(-1, 4)
        self.objectness = np.asarray(objectness, np.float32).reshape(-1)
        self.prob = np.asarray(prob, np.float32)
        if self.prob.ndim != 2 or len(self.prob) != len(self.objectness):
            raise ValueError(f"prob must be (N, classes) for N = {len(self.objectness)} boxes, got {self.prob.shape}")

    def __len__(self):
        return len(self.objectness)

    def take(self, order):
        return Detections(self.bbox[order], self.objectness[order], self.prob[order])

    @staticmethod
    def concatenate(parts, classes):
        if not parts:
            return Detections(np.zeros((0, 4)), np.zeros(0), np.zeros((0, classes)))
        if len(parts) == 1:
            return parts[0]
        return Detections(np.concatenate([p.bbox for p in parts]), np.concatenate([p.objectness for p in parts]),
                          np.concatenate([p.prob for p in parts]))

    def listing(self, thresh):
        """(index, class, prob) for every box and class over thresh, in darknet's print order."""
        rows, cols = np.nonzero(self.prob > thresh)
        return [(int(i), int(j), float(self.prob[i, j])) for i, j in zip(rows, cols)]


def letterbox_size(w, h, netw, neth):
    """The size darknet's letterbox_image scales a w x h image to inside netw x neth."""
    if np.float32(netw) / np.float32(w) < np.float32(neth) / np.float32(h):
        return netw, (h * netw) // w
    return (w * neth) // h, neth


def correct_boxes(bbox, w, h, netw, neth, relative=True, letterbox=True, darknet="pjreddie"):
    """Map boxes from network coordinates back onto the w x h image (darknet's correct_*_boxes), in place.
    The fork scales widths by 1 / (new_w / netw), pjreddie by netw / new_w: an ulp apart at times."""
    if letterbox:
        new_w, new_h = letterbox_size(w, h, netw, neth)
    else:
        new_w, new_h = netw, neth
    sx = np.float64(np.float32(new_w) / np.float32(netw))
    sy = np.float64(np.float32(new_h) / np.float32(neth))
    bbox[:, 0] = ((bbox[:, 0].astype(np.float64) - (netw - new_w) / 2.0 / netw) / sx).astype(np.float32)
    bbox[:, 1] = ((bbox[:, 1].astype(np.float64) - (neth - new_h) / 2.0 / neth) / sy).astype(np.float32)
    if darknet == "ab":
        bbox[:, 2] *= np.float32(1) / (np.float32(new_w) / np.float32(netw))
        bbox[:, 3] *= np.float32(1) / (np.float32(new_h) / np.float32(neth))
    else:
        bbox[:, 2] *= np.float32(netw) / np.float32(new_w)
        bbox[:, 3] *= np.float32(neth) / np.float32(new_h)
    if not relative:
        bbox[:, 0::2] *= np.float32(w)
        bbox[:, 1::2] *= np.float32(h)
    return bbox
