"""`pydarknet datasets show DATA`: what a set holds, in words and in a picture.

The words: images, boxes, images without boxes, boxes per class. The picture (-out, labels.jpg): a grid of
random images of the train= list (valid= when there is none), each with its boxes and class names drawn where
the labels put them, so a person sees at a glance whether the labels sit on the objects; beside it a panel of
every box's width and height relative to its image (what `anchors` clusters), one dot a box in its class's
colour.
"""
import math
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from ...files.config import DarknetError, read_data_cfg, read_names
from ...files.image import class_color, load_image, to_bgr8
from ...files.labels import label_path, read_labels
from ...files.resources import find_file
from ...files.weights import atomic_write
from .check import set_lists

TILE = 256     # each image of the grid fits a TILE x TILE square
PANEL = 512    # the sizes panel's side (then padded to the grid's height)
FONT = cv2.FONT_HERSHEY_SIMPLEX
LEGEND, LINE = 20, 18   # the panel's legend: at most 20 names, 18 pixels a line


def colour(cls, classes):
    return tuple(int(255 * c) for c in reversed(class_color(cls, classes)))   # OpenCV's BGR


def tile(path, boxes, names):
    """One image fitted into a TILE square, its boxes and names drawn."""
    image = to_bgr8(load_image(path))
    h, w = image.shape[:2]
    scale = TILE / max(w, h)
    image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    h, w = image.shape[:2]
    square = np.full((TILE, TILE, 3), 40, np.uint8)
    square[:h, :w] = image
    for x, y, bw, bh, cls in boxes:
        cls = int(cls)
        left, top = round((x - bw / 2) * w), round((y - bh / 2) * h)
        right, bottom = round((x + bw / 2) * w), round((y + bh / 2) * h)
        cv2.rectangle(square, (left, top), (right, bottom), colour(cls, len(names)), 2)
        name = names[cls] if cls < len(names) else str(cls)
        cv2.putText(square, name, (left + 2, max(top - 3, 10)), FONT, 0.4, colour(cls, len(names)), 1, cv2.LINE_AA)
    cv2.putText(square, Path(path).name[:36], (3, TILE - 5), FONT, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
    return square


def sizes_panel(rows, names, height):
    """Each box's (w, h) relative to its image, one dot a box, on a PANEL square over the legend (the first LEGEND
    names in their colours), padded to `height`."""
    panel = np.full((max(height, PANEL + LINE * min(len(names), LEGEND)), PANEL, 3), 255, np.uint8)
    margin, side = 40, PANEL - 60
    cv2.rectangle(panel, (margin, 20), (margin + side, 20 + side), (0, 0, 0), 1)
    for _x, _y, w, h, cls in rows:
        centre = (margin + round(w * side), 20 + side - round(h * side))
        cv2.circle(panel, centre, 2, colour(int(cls), len(names)), -1, cv2.LINE_AA)
    cv2.putText(panel, "box width (0..1 of the image)", (margin, 20 + side + 25), FONT, 0.45, (0, 0, 0), 1,
                cv2.LINE_AA)
    cv2.putText(panel, "height", (3, 15), FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for k, name in enumerate(names[:LEGEND]):
        cv2.putText(panel, name, (margin, PANEL + LINE * k + 8), FONT, 0.45, colour(k, len(names)), 1, cv2.LINE_AA)
    return panel


def show_set(data_file, out="labels.jpg", count=16, seed=0):
    """Write the picture of DATA to `out`; the text's lines."""
    data = read_data_cfg(data_file)
    if not data.has("names"):
        raise DarknetError(f"{data_file}: no names= to name the classes with")
    names = read_names(find_file(data.str("names"), beside=data_file, what="names file"))
    _, lists = set_lists(data_file)
    paths = list(dict.fromkeys(lists.get("train") or lists.get("valid") or []))
    if not paths:
        raise DarknetError(f"{data_file}: its image lists are empty: nothing to show")
    labels = {path: read_labels(label_path(path), len(names), set()) for path in paths}
    rows = np.concatenate(list(labels.values()) + [np.zeros((0, 5), np.float32)])
    per_class = Counter(int(c) for c in rows[:, 4])
    picked = np.random.default_rng(seed).permutation(len(paths))[:count]
    columns = math.ceil(math.sqrt(len(picked)))
    tiles = [tile(paths[i], labels[paths[i]], names) for i in picked]
    tiles += [np.full((TILE, TILE, 3), 40, np.uint8)] * (-len(tiles) % columns)
    grid = np.vstack([np.hstack(tiles[r:r + columns]) for r in range(0, len(tiles), columns)])
    panel = sizes_panel(rows, names, grid.shape[0])
    grid = np.vstack([grid, np.full((panel.shape[0] - grid.shape[0], grid.shape[1], 3), 40, np.uint8)])
    ok, encoded = cv2.imencode(Path(out).suffix or ".jpg", np.hstack([grid, panel]))
    if not ok:
        raise DarknetError(f"{out}: OpenCV cannot write this kind of picture: give a .jpg or .png name")
    atomic_write(out, encoded.tobytes())
    lines = [f"{len(paths)} images, {len(rows)} boxes, {sum(not len(b) for b in labels.values())} images without "
             f"boxes"]
    lines += [f"  {name}: {per_class[k]}" for k, name in enumerate(names)]
    return lines + [f"{out}: {len(picked)} images and the boxes' sizes"]
