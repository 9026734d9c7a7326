"""Heatmaps: boxes' probabilities summed over the pixels they cover (pydarknet/results/heatmap.py)."""
from numba import njit


@njit(cache=True)
def paint_boxes(heat, corners, values):
    """Add values[i] (float32) to every pixel of `heat` (float32 (h, w)) that box i covers: corners int32 (n, 4)
    left, top, right, bottom in pixels, right and bottom excluded, clipped to the image."""
    h, w = heat.shape
    for i in range(corners.shape[0]):
        value = values[i]
        if value == 0:
            continue
        left, top = max(corners[i, 0], 0), max(corners[i, 1], 0)
        right, bottom = min(corners[i, 2], w), min(corners[i, 3], h)
        for y in range(top, bottom):
            for x in range(left, right):
                heat[y, x] += value
    return heat
