"""YOLOv2's output layer: the [region] squashing (its softmax is darknet's one softmax, kernels/softmax.py) and
class-tree decoding.

All arrays are flat float32 unless said otherwise. Arithmetic follows darknet's C: float32 everywhere except
exp(), which C evaluates in double before the result is stored back to float.
"""
import numpy as np
from numba import njit, prange

from .activations import LOGISTIC, activate
from .softmax import softmax_groups, softmax_run  # noqa: F401  (layers/detection.py imports softmax_groups here)


@njit(cache=True, parallel=True, error_model="numpy")
def region_forward(x, out, boxes, entries, wh, coords, classes, background, use_softmax, tree_offsets,
                   tree_sizes):
    """forward_region_layer at inference on `boxes` = batch x anchors blocks of `entries` x wh values
    (x, y, w, h, [coords-4 mask values,] objectness, classes), `out` holding a copy of `x`:
    logistic on x, y and objectness (unless `background`), then the classes: logistic, softmax over
    classes (+ background) at stride wh, or one softmax per class-tree group (tree_sizes non-empty)."""
    temp = np.float32(1.0)
    for bn in prange(boxes):
        base = bn * entries * wh
        for i in range(2 * wh):
            out[base + i] = activate(out[base + i], LOGISTIC)
        if not background:
            for i in range(wh):
                k = base + coords * wh + i
                out[k] = activate(out[k], LOGISTIC)
        if tree_sizes.size > 0:
            for s in range(wh):
                for g in range(tree_sizes.size):
                    softmax_run(x, base + (coords + 1 + tree_offsets[g]) * wh + s, tree_sizes[g], wh, temp, out)
        elif use_softmax:
            first = coords if background else coords + 1
            for s in range(wh):
                softmax_run(x, base + first * wh + s, classes + background, wh, temp, out)
        else:
            for i in range((coords + 1) * wh, (coords + 1 + classes) * wh):
                out[base + i] = activate(out[base + i], LOGISTIC)


@njit(cache=True)
def hierarchy_predictions(p, start, n, parent, leaf, only_leaves, stride):
    """Darknet's hierarchy_predictions: each class's probability times its parent's (already absolute)."""
    for j in range(n):
        if parent[j] >= 0:
            p[start + j * stride] *= p[start + parent[j] * stride]
    if only_leaves:
        for j in range(n):
            if not leaf[j]:
                p[start + j * stride] = 0


@njit(cache=True)
def hierarchy_top_prediction(p, start, parent, child, group_size, group_offset, thresh, stride):
    """Darknet's hierarchy_top_prediction: walk down the tree through the likeliest child while the
    running product of probabilities stays over thresh; the deepest class reached."""
    prob = np.float32(1.0)
    group = 0
    while True:
        best = np.float32(0.0)
        best_i = 0
        for i in range(group_size[group]):
            index = i + group_offset[group]
            v = p[start + index * stride]
            if v > best:
                best_i = index
                best = v
        if prob * best > thresh:
            prob = prob * best
            group = child[best_i]
            if child[best_i] < 0:
                return best_i
        elif group == 0:
            return best_i
        else:
            return parent[group_offset[group]]


@njit(cache=True)
def region_tree_probs(p, anchors, entries, wh, coords, classes, background, parent, child, group_size,
                      group_offset, leaf, class_map, scale, thresh, tree_thresh, prob):
    """The class-tree part of get_region_detections, for detection index a*wh + i (anchor a, cell i):
    make every class probability absolute (in place in p), then either the mapped classes times
    `scale` (class_map non-empty) or only the deepest confident class, with probability `scale`."""
    for a in range(anchors):
        for i in range(wh):
            d = a * wh + i
            start = a * entries * wh + (coords + (0 if background else 1)) * wh + i
            hierarchy_predictions(p, start, classes, parent, leaf, False, wh)
            if class_map.size > 0:
                for j in range(class_map.size):
                    v = scale[d] * p[a * entries * wh + (coords + 1 + class_map[j]) * wh + i]
                    prob[d, j] = v if v > thresh else 0
            else:
                j = hierarchy_top_prediction(p, start, parent, child, group_size, group_offset, tree_thresh, wh)
                prob[d, j] = scale[d] if scale[d] > thresh else 0
