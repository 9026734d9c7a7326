"""Darknet's do_nms_sort and do_nms_obj as glibc runs them, and the AlexeyAB fork's do_nms_sort and
diounms_sort (same loop, other overlap measures: see `nms_sort`).

The sort is glibc's qsort, which in every released glibc is a top-down merge sort when it can allocate its
buffer (an introsort replaced it during the 2.39 development cycle and was reverted before that release;
2.39+ falls back to heapsort, older versions to quicksort, only when the allocation fails): sort the first
n//2, then the rest, then merge, taking the left element unless the comparator says it comes after. With
darknet's comparator that is a stable sort by descending probability, except that NaN compares equal to
everything, which only this exact merge order reproduces.
"""
import math

import numpy as np
from numba import njit


@njit(cache=True, inline="always")
def _overlap(x1, w1, x2, w2):
    two = np.float32(2.0)
    l1 = x1 - w1 / two
    l2 = x2 - w2 / two
    left = l1 if l1 > l2 else l2
    r1 = x1 + w1 / two
    r2 = x2 + w2 / two
    right = r1 if r1 < r2 else r2
    return right - left


@njit(cache=True, inline="always")
def _intersection_union(a, b):
    w = _overlap(a[0], a[2], b[0], b[2])
    h = _overlap(a[1], a[3], b[1], b[3])
    inter = np.float32(0.0) if (w < 0 or h < 0) else w * h
    return inter, a[2] * a[3] + b[2] * b[3] - inter


@njit(cache=True, error_model="numpy")
def box_iou(a, b):
    """Darknet's box_iou on centre-size float32 boxes, step by step as box.c does (its comparisons decide
    where NaN and inf go; 0/0 is NaN and x/0 inf, as in C)."""
    inter, union = _intersection_union(a, b)
    return inter / union


# How nms_sort measures the overlap of two boxes: pjreddie's box_iou; the fork's box_iou (0 when the
# intersection or the union is 0); the fork's DIoU, IoU - (centre distance^2 / enclosing diagonal^2)^beta.
PJREDDIE_IOU, FORK_IOU, FORK_DIOU = range(3)


@njit(cache=True, inline="always")
def _fmin(a, b):
    """C's fmin: the other argument when one is NaN."""
    if a != a:
        return b
    if b != b:
        return a
    return a if a < b else b


@njit(cache=True, inline="always")
def _fmax(a, b):
    if a != a:
        return b
    if b != b:
        return a
    return a if a > b else b


@njit(cache=True, error_model="numpy", inline="always")
def fork_box_iou(a, b):
    """The fork's box_iou: as pjreddie's, but 0 when the intersection or the union is 0."""
    inter, union = _intersection_union(a, b)
    if inter == 0 or union == 0:
        return np.float32(0.0)
    return inter / union


@njit(cache=True, error_model="numpy", inline="always")
def fork_box_diou(a, b, beta):
    """The fork's box_diounms (box_diou is the same with beta .6), in its float32 steps; pow in double."""
    two = np.float32(2.0)
    top = _fmin(a[1] - a[3] / two, b[1] - b[3] / two)
    bottom = _fmax(a[1] + a[3] / two, b[1] + b[3] / two)
    left = _fmin(a[0] - a[2] / two, b[0] - b[2] / two)
    right = _fmax(a[0] + a[2] / two, b[0] + b[2] / two)
    w = right - left
    h = bottom - top
    diagonal = w * w + h * h
    iou = fork_box_iou(a, b)
    if diagonal == 0:
        return iou
    distance = (a[0] - b[0]) * (a[0] - b[0]) + (a[1] - b[1]) * (a[1] - b[1])
    penalty = np.float32(math.pow(np.float64(distance / diagonal), np.float64(beta)))
    return iou - penalty


@njit(cache=True, inline="always")
def _suppresses(a, b, measure, beta, thresh):
    """Whether a kept box `a` suppresses `b`: their overlap by `measure` is over thresh. DIoU is never above
    IoU (its penalty is >= 0), so the costly DIoU is only worked out for pairs whose IoU is over thresh."""
    if measure == PJREDDIE_IOU:
        return box_iou(a, b) > thresh
    iou = fork_box_iou(a, b)
    if measure == FORK_IOU or not iou > thresh:
        return iou > thresh
    return fork_box_diou(a, b, beta) > thresh


@njit(cache=True, inline="always")
def _after(a, b):
    """nms_comparator(a, b) > 0: darknet's float difference, NaN counting as equal."""
    return (a - b) < 0


@njit(cache=True, inline="always")
def _merge(key, order, tmp, lo, n1, n):
    """Merge the sorted runs order[lo:lo+n1] and order[lo+n1:lo+n] as glibc's msort does."""
    i, j, t = lo, lo + n1, 0
    end1, end2 = lo + n1, lo + n
    while i < end1 and j < end2:
        if _after(key[order[i]], key[order[j]]):
            tmp[t] = order[j]
            j += 1
        else:
            tmp[t] = order[i]
            i += 1
        t += 1
    while i < end1:
        tmp[t] = order[i]
        i += 1
        t += 1
    for k in range(t):
        order[lo + k] = tmp[k]


@njit(cache=True)
def glibc_sort_desc(key, order):
    """Reorder `order` (indices into key) in place as glibc's qsort with darknet's nms_comparator would:
    sort the first n//2, then the rest, then merge; written with an explicit stack (Numba's cache cannot
    reload recursive functions)."""
    tmp = np.empty(order.size, np.int64)
    los = np.empty(130, np.int64)
    ns = np.empty(130, np.int64)
    stage = np.empty(130, np.int64)
    los[0], ns[0], stage[0] = 0, order.size, 0
    top = 0
    while top >= 0:
        lo, n = los[top], ns[top]
        if n <= 1:
            top -= 1
        elif stage[top] == 0:
            stage[top] = 1
            top += 1
            los[top], ns[top], stage[top] = lo, n // 2, 0
        elif stage[top] == 1:
            stage[top] = 2
            top += 1
            los[top], ns[top], stage[top] = lo + n // 2, n - n // 2, 0
        else:
            _merge(key, order, tmp, lo, n // 2, n)
            top -= 1


@njit(cache=True, inline="always")
def _objectness_first(objectness):
    """The start of do_nms_sort and do_nms_obj: zero-objectness detections swapped to the end by darknet's loop
    (which also fixes their order). Returns (order, number of detections before them)."""
    n = objectness.size
    order = np.arange(n)
    k = n - 1
    i = 0
    while i <= k:
        if objectness[order[i]] == 0:
            s = order[i]
            order[i] = order[k]
            order[k] = s
            k -= 1
        else:
            i += 1
    return order, k + 1


@njit(cache=True, error_model="numpy")
def nms_sort(bbox, objectness, prob, thresh, measure, beta):
    """do_nms_sort (and the fork's diounms_sort): returns the final order of the detections; zeroes suppressed
    probabilities in place. `measure`: PJREDDIE_IOU (pjreddie's do_nms_sort), FORK_IOU (the fork's
    do_nms_sort, and its diounms_sort with CORNERS_NMS) or FORK_DIOU (diounms_sort with GREEDY_NMS, beta .6,
    or DIOU_NMS, beta = beta_nms).

    Zero-objectness detections go to the end (_objectness_first) and take no further part. Then for each class
    in turn the others are sorted by that class's probability (starting from the previous class's order) and
    each one with a nonzero probability zeroes that class for every later one whose overlap with it is over
    thresh."""
    order, total = _objectness_first(objectness)
    live = order[:total]
    for c in range(prob.shape[1]):
        glibc_sort_desc(prob[:, c], live)
        for a in range(total):
            if prob[live[a], c] == 0:
                continue
            for b in range(a + 1, total):
                if _suppresses(bbox[live[a]], bbox[live[b]], measure, beta, thresh):
                    prob[live[b], c] = 0
    return order


@njit(cache=True, error_model="numpy")
def nms_obj(bbox, objectness, prob, thresh):
    """do_nms_obj: returns the final order of the detections; zeroes suppressed objectness and probabilities
    in place.

    Zero-objectness detections go to the end (_objectness_first); the others are sorted by objectness, and
    each one with a nonzero objectness zeroes the objectness and every probability of each later one (with a
    nonzero objectness) overlapping it by more than thresh."""
    order, total = _objectness_first(objectness)
    live = order[:total]
    glibc_sort_desc(objectness, live)
    for a in range(total):
        if objectness[live[a]] == 0:
            continue
        for b in range(a + 1, total):
            if objectness[live[b]] == 0:
                continue
            if box_iou(bbox[live[a]], bbox[live[b]]) > thresh:
                objectness[live[b]] = 0
                for c in range(prob.shape[1]):
                    prob[live[b], c] = 0
    return order
