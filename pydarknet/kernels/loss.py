"""Losses of the output layers in training mode: the delta they start the backward pass with, and the cost.

Float semantics follow darknet's C code (float32 where it computes in float, double where C promotes).
"""
import math

import numpy as np
from numba import njit

from .backward import sum4

F32 = np.float32


@njit(cache=True, inline="always")
def _iou(ax, ay, aw, ah, bx, by, bw, bh):
    """darknet's box_iou on centre-size boxes, in float32 (w/2 is w*0.5 exactly)."""
    half = F32(0.5)
    iw = min(ax + aw * half, bx + bw * half) - max(ax - aw * half, bx - bw * half)
    ih = min(ay + ah * half, by + bh * half) - max(ay - ah * half, by - bh * half)
    inter = F32(0.0) if (iw < 0 or ih < 0) else iw * ih
    return inter / (aw * ah + bw * bh - inter)


@njit(cache=True, inline="always")
def _pred_box(p, b, a, i, j, anchor, biases, netw, neth):
    """darknet's get_yolo_box for cell (i, j) of anchor slot a, with the size of anchor `anchor`."""
    lh, lw = p.shape[3], p.shape[4]
    x = (F32(i) + p[b, a, 0, j, i]) / F32(lw)
    y = (F32(j) + p[b, a, 1, j, i]) / F32(lh)
    w = F32(math.exp(np.float64(p[b, a, 2, j, i])) * np.float64(biases[2 * anchor]) / netw)
    h = F32(math.exp(np.float64(p[b, a, 3, j, i])) * np.float64(biases[2 * anchor + 1]) / neth)
    return x, y, w, h


@njit(cache=True, inline="always")
def _delta_box(p, delta, b, a, i, j, anchor, truth, biases, netw, neth):
    """darknet's delta_yolo_box: coordinate deltas (target - prediction) times 2 - w*h; returns the IoU."""
    lh, lw = p.shape[3], p.shape[4]
    tx0, ty0, tw0, th0 = truth[0], truth[1], truth[2], truth[3]
    px, py, pw, ph = _pred_box(p, b, a, i, j, anchor, biases, netw, neth)
    iou = _iou(px, py, pw, ph, tx0, ty0, tw0, th0)
    scale = F32(2.0) - tw0 * th0
    tx = tx0 * F32(lw) - F32(i)
    ty = ty0 * F32(lh) - F32(j)
    tw = F32(math.log(np.float64(tw0 * F32(netw) / biases[2 * anchor])))
    th = F32(math.log(np.float64(th0 * F32(neth) / biases[2 * anchor + 1])))
    delta[b, a, 0, j, i] = scale * (tx - p[b, a, 0, j, i])
    delta[b, a, 1, j, i] = scale * (ty - p[b, a, 1, j, i])
    delta[b, a, 2, j, i] = scale * (tw - p[b, a, 2, j, i])
    delta[b, a, 3, j, i] = scale * (th - p[b, a, 3, j, i])
    return iou


@njit(cache=True, inline="always")
def _delta_class(p, delta, b, a, i, j, cls, classes):
    """darknet's delta_yolo_class: independent logistic targets; when the cell already has a class delta (an
    earlier truth matched the same anchor and cell) only this class's entry is set. Returns the predicted
    probability of `cls`."""
    if delta[b, a, 5, j, i] != 0:
        delta[b, a, 5 + cls, j, i] = F32(1.0) - p[b, a, 5 + cls, j, i]
        return p[b, a, 5 + cls, j, i]
    for k in range(classes):
        delta[b, a, 5 + k, j, i] = (F32(1.0) if k == cls else F32(0.0)) - p[b, a, 5 + k, j, i]
    return p[b, a, 5 + cls, j, i]


@njit(cache=True)
def yolo_delta(p, truth, biases, mask, netw, neth, ignore_thresh, truth_thresh, delta):
    """darknet's forward_yolo_layer in training mode, after the logistic.

    p: the layer's output viewed (batch, anchors, 5 + classes, h, w); truth (batch, boxes, 5) rows x y w h
    class, ending at the first x == 0; delta: like p, zero on entry. Returns the statistics darknet prints:
    (sum IoU, sum class prob, sum obj, sum obj over all predictions, count IoU>.5, count IoU>.75, count).
    """
    batch, n, _, lh, lw = p.shape
    classes = p.shape[2] - 5
    total = biases.size // 2
    avg_iou = F32(0.0)
    recall = F32(0.0)
    recall75 = F32(0.0)
    avg_cat = F32(0.0)
    avg_obj = F32(0.0)
    avg_anyobj = F32(0.0)
    count = 0
    for b in range(batch):
        for j in range(lh):
            for i in range(lw):
                for a in range(n):
                    px, py, pw, ph = _pred_box(p, b, a, i, j, mask[a], biases, netw, neth)
                    best_iou = F32(0.0)
                    best_t = 0
                    for t in range(truth.shape[1]):
                        if truth[b, t, 0] == 0:
                            break
                        iou = _iou(px, py, pw, ph, truth[b, t, 0], truth[b, t, 1], truth[b, t, 2], truth[b, t, 3])
                        if iou > best_iou:
                            best_iou = iou
                            best_t = t
                    obj = p[b, a, 4, j, i]
                    avg_anyobj += obj
                    delta[b, a, 4, j, i] = F32(0.0) - obj
                    if best_iou > ignore_thresh:
                        delta[b, a, 4, j, i] = 0
                    if best_iou > truth_thresh:
                        delta[b, a, 4, j, i] = F32(1.0) - obj
                        cls = int(truth[b, best_t, 4])
                        _delta_class(p, delta, b, a, i, j, cls, classes)
                        _delta_box(p, delta, b, a, i, j, mask[a], truth[b, best_t], biases, netw, neth)
        for t in range(truth.shape[1]):
            if truth[b, t, 0] == 0:
                break
            tw, th = truth[b, t, 2], truth[b, t, 3]
            i = min(int(truth[b, t, 0] * F32(lw)), lw - 1)
            j = min(int(truth[b, t, 1] * F32(lh)), lh - 1)
            best_iou = F32(0.0)
            best_n = 0
            for k in range(total):
                aw = biases[2 * k] / F32(netw)
                ah = biases[2 * k + 1] / F32(neth)
                iou = _iou(F32(0.0), F32(0.0), aw, ah, F32(0.0), F32(0.0), tw, th)
                if iou > best_iou:
                    best_iou = iou
                    best_n = k
            a = -1
            for k in range(n):
                if mask[k] == best_n:
                    a = k
                    break
            if a < 0:
                continue
            iou = _delta_box(p, delta, b, a, i, j, best_n, truth[b, t], biases, netw, neth)
            avg_obj += p[b, a, 4, j, i]
            delta[b, a, 4, j, i] = F32(1.0) - p[b, a, 4, j, i]
            avg_cat += _delta_class(p, delta, b, a, i, j, int(truth[b, t, 4]), classes)
            count += 1
            if iou > 0.5:
                recall += 1
            if iou > 0.75:
                recall75 += 1
            avg_iou += iou
    return avg_iou, avg_cat, avg_obj, avg_anyobj, recall, recall75, count


@njit(cache=True)
def softmax_cross_entropy(pred, truth, delta, loss):
    """darknet's softmax_x_ent_cpu on flat arrays: delta = truth - pred, loss = -log(pred) where truth is
    nonzero (not weighted by it), 0 elsewhere. Returns their sum as darknet's sum_array makes it."""
    for i in range(pred.size):
        t = truth[i]
        q = pred[i]
        loss[i] = F32(-math.log(np.float64(q))) if t != 0 else F32(0.0)
        delta[i] = t - q
    return sum4(loss, 0, loss.size, F32(0.0))


@njit(cache=True)
def logistic_cross_entropy(pred, truth, delta, loss):
    """darknet's logistic_x_ent_cpu: loss = -t log p - (1-t) log(1-p), delta = t - p; returns the sum."""
    for i in range(pred.size):
        t = truth[i]
        q = pred[i]
        loss[i] = F32(np.float64(-t) * math.log(np.float64(q))
                      - np.float64(F32(1.0) - t) * math.log(np.float64(F32(1.0) - q)))
        delta[i] = truth[i] - pred[i]
    return sum4(loss, 0, loss.size, F32(0.0))


SECRET_NUM = np.float32(-1234)


@njit(cache=True)
def cost_l2(pred, truth, delta, error):
    """darknet's l2_cpu: delta = truth - pred, error = delta^2; returns the float32 sum of the errors."""
    for i in range(pred.size):
        diff = truth[i] - pred[i]
        error[i] = diff * diff
        delta[i] = diff
    return sum4(error, 0, error.size, F32(0.0))


@njit(cache=True)
def cost_l1(pred, truth, delta, error):
    """darknet's l1_cpu: error = |truth - pred|, delta = its sign (-1 at 0)."""
    for i in range(pred.size):
        diff = truth[i] - pred[i]
        error[i] = abs(diff)
        delta[i] = F32(1.0) if diff > 0 else F32(-1.0)
    return sum4(error, 0, error.size, F32(0.0))


@njit(cache=True)
def cost_smooth_l1(pred, truth, delta, error):
    """darknet's smooth_l1_cpu, as written: inside |diff| < 1 error = diff^2 and delta = diff; outside
    error = 2|diff| - 1 but delta = 1 for diff < 0 and -1 for diff > 0 -- the sign opposite to the inside
    (pjreddie's code pushes large errors the wrong way; reproduced)."""
    for i in range(pred.size):
        diff = truth[i] - pred[i]
        a = abs(diff)
        if a < 1:
            error[i] = diff * diff
            delta[i] = diff
        else:
            error[i] = F32(2.0) * a - F32(1.0)
            delta[i] = F32(1.0) if diff < 0 else F32(-1.0)
    return sum4(error, 0, error.size, F32(0.0))
