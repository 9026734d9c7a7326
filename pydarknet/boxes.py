"""Detections: boxes decoded from the output layers, darknet's letterbox correction, and its NMS.

A Detections holds N candidate boxes as arrays: `bbox` (N, 4) centre x, y, width, height (relative to the
image unless decoded otherwise), `objectness` (N,), `prob` (N, classes) with sub-threshold entries zeroed.
"""
import numpy as np
from numba import njit


class Detections:
    def __init__(self, bbox, objectness, prob):
        self.bbox = np.asarray(bbox, np.float32).reshape(-1, 4)
        self.objectness = np.asarray(objectness, np.float32).reshape(-1)
        self.prob = np.asarray(prob, np.float32).reshape(len(self.objectness), -1)

    def __len__(self):
        return len(self.objectness)

    def take(self, order):
        return Detections(self.bbox[order], self.objectness[order], self.prob[order])

    @staticmethod
    def concatenate(parts, classes):
        if not parts:
            return Detections(np.zeros((0, 4)), np.zeros(0), np.zeros((0, classes)))
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


def correct_boxes(bbox, w, h, netw, neth, relative=True, letterbox=True):
    """Map boxes from network coordinates back onto the w x h image (darknet's correct_*_boxes), in place."""
    if letterbox:
        new_w, new_h = letterbox_size(w, h, netw, neth)
    else:
        new_w, new_h = netw, neth
    sx = np.float64(np.float32(new_w) / np.float32(netw))
    sy = np.float64(np.float32(new_h) / np.float32(neth))
    bbox[:, 0] = ((bbox[:, 0].astype(np.float64) - (netw - new_w) / 2.0 / netw) / sx).astype(np.float32)
    bbox[:, 1] = ((bbox[:, 1].astype(np.float64) - (neth - new_h) / 2.0 / neth) / sy).astype(np.float32)
    bbox[:, 2] *= np.float32(netw) / np.float32(new_w)
    bbox[:, 3] *= np.float32(neth) / np.float32(new_h)
    if not relative:
        bbox[:, 0::2] *= np.float32(w)
        bbox[:, 1::2] *= np.float32(h)
    return bbox


@njit(cache=True)
def box_iou(a, b):
    """IoU of two centre-size boxes, in float32 as darknet's box_iou (x/2 == x*0.5 exactly)."""
    half = np.float32(0.5)
    iw = min(a[0] + a[2] * half, b[0] + b[2] * half) - max(a[0] - a[2] * half, b[0] - b[2] * half)
    ih = min(a[1] + a[3] * half, b[1] + b[3] * half) - max(a[1] - a[3] * half, b[1] - b[3] * half)
    inter = np.float32(0.0) if (iw < 0 or ih < 0) else iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union


@njit(cache=True)
def _suppress(bbox, prob, k, thresh):
    n = bbox.shape[0]
    for i in range(n):
        if prob[i, k] == 0:
            continue
        for j in range(i + 1, n):
            if box_iou(bbox[i], bbox[j]) > thresh:
                prob[j, k] = 0


def do_nms_sort(dets, thresh):
    """Darknet's do_nms_sort, returning the reordered Detections (probabilities zeroed in place).

    Boxes with zero objectness move to the end (darknet's swap loop, which also decides their order) and
    take no part; then per class, boxes sorted by that class's probability (stable, like glibc's merge
    sort) zero the same-class probability of every later box overlapping them by more than `thresh`.
    """
    order = list(range(len(dets)))
    k = len(order) - 1
    i = 0
    while i <= k:
        if dets.objectness[order[i]] == 0:
            order[i], order[k] = order[k], order[i]
            k -= 1
        else:
            i += 1
    dets = dets.take(np.array(order, dtype=np.int64))
    total = k + 1
    live = dets.take(np.arange(total))
    for c in range(dets.prob.shape[1]):
        perm = np.argsort(-live.prob[:, c], kind="stable")
        live = live.take(perm)
        _suppress(live.bbox, live.prob, c, np.float32(thresh))
    rest = dets.take(np.arange(total, len(dets)))
    return Detections.concatenate([live, rest], dets.prob.shape[1])
