"""Detection on an image larger than the network, tile by tile (`-tiles`, `Detector(..., tiles=True)`).

The image is cut into tiles of the network's size in the image's own pixels (nothing is shrunk), neighbours
overlapping by at least `overlap` of a tile's side, spread evenly from edge to edge. Each tile is detected as an
image of its own (the detector's letterbox or resize, threshold and NMS); its boxes are mapped back onto the whole
image. A box that a tile's inner edge cuts (a side within CUT_MARGIN of that edge) is joined with the boxes of its
class in the other tiles that lie across that edge: the object becomes one box, their union, with the highest
objectness and probabilities. The network's NMS then removes the objects found whole in two overlapping tiles.
`whole=True` adds the whole image, resized to the network as without tiles, for the objects larger than a tile;
the tiles' boxes that are pieces of its boxes go (parts_of_whole), the rest join as above. An image no larger
than the network is detected as it is, in one pass.
"""
import math
from dataclasses import dataclass

import numpy as np

from ..files.config import DarknetError
from ..kernels.tiles import join_cut_boxes
from .boxes import Detections
from .detections import network_nms

# A side of a box this close to a tile's inner edge (a share of the tile's side) was cut by it.
CUT_MARGIN = 0.03
# A tile's box this much inside a box found in the whole image (-tile_whole) is a piece of it (see parts_of_whole).
WITHIN_WHOLE = 0.5
# Tiles per forward pass.
TILE_BATCH = 8


@dataclass(frozen=True)
class Tiles:
    """How Detector cuts an image larger than the network: `overlap`, the share of a tile's side that its
    neighbour covers too (at least; 0 to .75); `whole`: detect the whole image too."""
    overlap: float = 0.25
    whole: bool = False

    def __post_init__(self):
        if not 0 <= self.overlap <= 0.75:
            raise DarknetError(f"-tile_overlap {self.overlap:g}: give a share of the tile from 0 to .75")


@dataclass
class Tile:
    """A part of the image: its place and size in the image's pixels, the network's input made from it, and which
    of its sides (left, top, right, bottom) lie inside the image."""
    x: int
    y: int
    w: int
    h: int
    input: np.ndarray
    inner: tuple = (False, False, False, False)


def origins(size, tile, overlap):
    """Where tiles of `tile` pixels start along an image side of `size`: the first at 0, the last at size - tile,
    evenly spread so that neighbours share at least overlap * tile pixels."""
    if size <= tile:
        return [0]
    count = math.ceil((size - tile) / (tile * (1 - overlap))) + 1
    return [round(i * (size - tile) / (count - 1)) for i in range(count)]


def cut(im, tile_w, tile_h, tiles, sized):
    """The Tiles of `im` (float32 (3, h, w)), each one's input made by sized(pixels): tile_w x tile_h pixels each
    (less on a side the image is shorter), the whole image first when tiles.whole; an image no larger than a tile
    is one Tile, the whole image."""
    _, h, w = im.shape
    whole = Tile(0, 0, w, h, sized(im))
    if w <= tile_w and h <= tile_h:
        return [whole]
    tw, th = min(tile_w, w), min(tile_h, h)
    parts = [whole] if tiles.whole else []
    for y in origins(h, th, tiles.overlap):
        for x in origins(w, tw, tiles.overlap):
            pixels = np.ascontiguousarray(im[:, y:y + th, x:x + tw])
            parts.append(Tile(x, y, tw, th, sized(pixels), (x > 0, y > 0, x + tw < w, y + th < h)))
    return parts


def to_image(dets, tile, width, height):
    """`dets` relative to `tile` as Detections relative to the whole image (`width` x `height` pixels)."""
    bbox = dets.bbox * np.float32([tile.w, tile.h, tile.w, tile.h])
    bbox[:, 0] += np.float32(tile.x)
    bbox[:, 1] += np.float32(tile.y)
    return Detections(bbox / np.float32([width, height, width, height]), dets.objectness, dets.prob)


def margin(tile):
    """float32 (2,): how near (x, y) to an edge of `tile` a box's side counts as cut by it."""
    return np.float32(CUT_MARGIN) * np.float32([tile.w, tile.h])


def cut_sides(corners, tile):
    """float32 (n, 4): for each box's sides (left, top, right, bottom, in pixels), the line of the tile's inner
    edge that cuts it (the side within `margin` of it or past it), NaN where none does."""
    edges = np.float32([tile.x, tile.y, tile.x + tile.w, tile.y + tile.h])
    near = np.concatenate([corners[:, :2] <= edges[:2] + margin(tile), corners[:, 2:] >= edges[2:] - margin(tile)], 1)
    return np.where(near & np.array(tile.inner), edges, np.float32(np.nan)).astype(np.float32)


def parts_of_whole(corners, cuts, best, whole):
    """bool (n,): the tiles' boxes (not `whole`) that lie at least WITHIN_WHOLE inside a box found in the whole
    image (`whole`) of their class, or of any class when a tile's edge cuts them: pieces of an object larger than
    a tile (an object of its own that a tile cuts lies whole in its neighbour, which the overlap makes sure of)."""
    small, big = corners[~whole], corners[whole]
    w = np.minimum(small[:, None, 2], big[None, :, 2]) - np.maximum(small[:, None, 0], big[None, :, 0])
    h = np.minimum(small[:, None, 3], big[None, :, 3]) - np.maximum(small[:, None, 1], big[None, :, 1])
    area = (small[:, 2] - small[:, 0]) * (small[:, 3] - small[:, 1])
    inside = (w > 0) & (h > 0) & (w * h >= WITHIN_WHOLE * area[:, None])
    cut = ~np.isnan(cuts[~whole]).all(1)
    pieces = np.zeros(len(corners), bool)
    pieces[~whole] = (inside & ((best[~whole][:, None] == best[whole][None, :]) | cut[:, None])).any(1)
    return pieces


def join(parts, width, height, net, nms):
    """One Detections relative to the whole image from `parts`, [(Tile, Detections relative to it)]: each tile's
    boxes over the threshold, those cut by a tile's edge joined across it (kernels.tiles.join_cut_boxes) into their
    union, then the network's NMS at `nms` (0: none)."""
    if len(parts) == 1 and not any(parts[0][0].inner):
        return parts[0][1]   # the whole image alone: as detected
    classes = parts[0][1].prob.shape[1]
    kept = [(tile, dets.take(np.flatnonzero(dets.prob.max(1, initial=0) > 0))) for tile, dets in parts]
    dets = Detections.concatenate([to_image(d, tile, width, height) for tile, d in kept], classes)
    if not len(dets):
        return dets
    scale = np.float32([width, height, width, height])
    x, y, w, h = (dets.bbox * scale).T
    corners = np.ascontiguousarray(np.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], 1), np.float32)
    cuts, margins, start = np.empty_like(corners), np.empty((len(corners), 2), np.float32), 0
    for tile, d in kept:
        cuts[start:start + len(d)] = cut_sides(corners[start:start + len(d)], tile)
        margins[start:start + len(d)] = margin(tile)
        start += len(d)
    tile_of = np.repeat(np.arange(len(kept), dtype=np.int32), [len(d) for _, d in kept])
    best = dets.prob.argmax(1).astype(np.int32)
    if not any(kept[0][0].inner):   # the whole image's pass: the tiles' pieces of its objects go
        keep = ~parts_of_whole(corners, cuts, best, tile_of == 0)
        dets = dets.take(keep)
        corners, cuts, margins, tile_of, best = (a[keep] for a in (corners, cuts, margins, tile_of, best))
    group = join_cut_boxes(corners, cuts, margins, tile_of, best)
    firsts, group = np.unique(group, return_inverse=True)
    joined = np.zeros((len(firsts), 4), np.float32)
    joined[:, :2], joined[:, 2:] = np.inf, -np.inf
    np.minimum.at(joined[:, :2], group, corners[:, :2])
    np.maximum.at(joined[:, 2:], group, corners[:, 2:])
    objectness = np.zeros(len(firsts), np.float32)
    np.maximum.at(objectness, group, dets.objectness)
    prob = np.zeros((len(firsts), classes), np.float32)
    np.maximum.at(prob, group, dets.prob)
    bbox = np.concatenate([(joined[:, :2] + joined[:, 2:]) / 2, joined[:, 2:] - joined[:, :2]], 1) / scale
    dets = Detections(bbox, objectness, prob)
    return network_nms(net, dets, nms) if nms else dets


def detect_tiles(tiles, run, width, height, net, nms):
    """(Detections relative to the whole image, heat Detections relative to it or None, seconds) of an image cut
    into `tiles` (cut's), TILE_BATCH at a time through run(tiles) -> ([(Detections, heat Detections or None)
    relative to each tile], seconds)."""
    found, heat, seconds = [], [], 0.0
    for start in range(0, len(tiles), TILE_BATCH):
        group = tiles[start:start + TILE_BATCH]
        results, spent = run(group)
        seconds += spent
        for tile, (dets, hot) in zip(group, results):
            found.append((tile, dets))
            if hot is not None:
                heat.append(to_image(hot, tile, width, height))
    classes = found[0][1].prob.shape[1]
    return join(found, width, height, net, nms), Detections.concatenate(heat, classes) if heat else None, seconds
