"""Tracking's association: which box of this frame continues which track (pydarknet/results/track.py)."""
import numpy as np
from numba import njit


@njit(cache=True)
def match_boxes(tracks, boxes, allowed, min_iou):
    """Greedy one-to-one matching of `tracks` (n, 4) to `boxes` (m, 4), both centre x, y, width, height: the
    pair of highest IoU first, then the highest among those left, never a pair under `min_iou` (> 0) nor one that
    `allowed` (n, m) forbids. Returns, for each track, the index of its box, or -1."""
    n, m = tracks.shape[0], boxes.shape[0]
    iou = np.zeros((n, m), np.float32)
    for i in range(n):
        for j in range(m):
            if not allowed[i, j]:
                continue
            a, b = tracks[i], boxes[j]
            w = min(a[0] + a[2] / 2, b[0] + b[2] / 2) - max(a[0] - a[2] / 2, b[0] - b[2] / 2)
            h = min(a[1] + a[3] / 2, b[1] + b[3] / 2) - max(a[1] - a[3] / 2, b[1] - b[3] / 2)
            if w > 0 and h > 0:
                union = a[2] * a[3] + b[2] * b[3] - w * h
                if union > 0:
                    iou[i, j] = w * h / union
    match = np.full(n, -1, np.int64)
    taken = np.zeros(m, np.bool_)
    while True:
        best, best_i, best_j = np.float32(0), -1, -1
        for i in range(n):
            if match[i] >= 0:
                continue
            for j in range(m):
                if not taken[j] and iou[i, j] >= min_iou and (best_i < 0 or iou[i, j] > best):
                    best, best_i, best_j = iou[i, j], i, j
        if best_i < 0:
            return match
        match[best_i] = best_j
        taken[best_j] = True
