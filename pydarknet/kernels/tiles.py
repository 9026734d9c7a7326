"""Tiles' join: which boxes of neighbouring tiles are one object cut by a tile's edge (pydarknet/results/tiles.py)."""
import numpy as np
from numba import njit


@njit(cache=True, inline="always")
def _root(group, i):
    while group[i] != i:
        group[i] = group[group[i]]
        i = group[i]
    return i


@njit(cache=True, inline="always")
def _across(corners, cuts, margins, i, j):
    """Whether a side of box i cut by its tile's edge lies across box j: j spans that edge's line (within i's
    tile's margin: a cut object's box may stop short of the edge or pass it), and the two share at least half the
    shorter one's extent along it."""
    for side in range(4):
        line = cuts[i, side]
        if line != line:   # NaN: this side is not cut
            continue
        axis = side % 2                   # 0: a vertical edge (left, right), 1: a horizontal one (top, bottom)
        other = 1 - axis
        margin = margins[i, axis]
        if not (corners[j, axis] < line + margin and line - margin < corners[j, axis + 2]):
            continue
        shared = min(corners[i, other + 2], corners[j, other + 2]) - max(corners[i, other], corners[j, other])
        shorter = min(corners[i, other + 2] - corners[i, other], corners[j, other + 2] - corners[j, other])
        if shared >= np.float32(0.5) * shorter:
            return True
    return False


@njit(cache=True)
def join_cut_boxes(corners, cuts, margins, tile, best):
    """The group of each box (int32 (n,)): boxes of one best class from different tiles are one object when a side
    of one that its tile's edge cut lies across the other (see _across), transitively.

    corners: float32 (n, 4) left, top, right, bottom in the image's pixels; cuts: float32 (n, 4) the line (x for
    left and right, y for top and bottom) of the tile edge that cuts each side, NaN where none does; margins:
    float32 (n, 2) how near (x, y) to an edge a box's side counts as cut in its tile (tiles.CUT_MARGIN); tile: int32
    (n,) each box's tile; best: int32 (n,) each box's likeliest class."""
    n = corners.shape[0]
    group = np.arange(n).astype(np.int32)
    for i in range(n):
        for j in range(n):
            if tile[i] != tile[j] and best[i] == best[j] and _across(corners, cuts, margins, i, j):
                a, b = _root(group, i), _root(group, j)
                if a != b:
                    group[max(a, b)] = min(a, b)
    for i in range(n):
        group[i] = _root(group, i)
    return group
