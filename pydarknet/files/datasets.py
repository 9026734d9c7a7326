"""Datasets a user can train on without downloading anything: `pydarknet datasets shapes DIR`.

The shapes set: circles, rectangles ("square") and isosceles triangles in flat colours on a noisy background of
one random colour, with a few thin lines as distractors, in images of 160-224 x 120-160 pixels; 1 to 5 shapes
per image, wholly inside it, free to overlap. Written in darknet's layout: `images/NAME.jpg` with its YOLO label
`images/NAME.txt` beside it (`class cx cy w h`, relative to the image), `train.txt` and `valid.txt` (one image per
line), `shapes.names`, and `shapes.data` naming them all by absolute path, so that the data file works from any
working directory. The same seed gives the same files, byte for byte (with the same OpenCV build).
"""
import os
from pathlib import Path

import cv2
import numpy as np

from .errors import DarknetError
from .weights import atomic_write

SHAPE_NAMES = ("circle", "square", "triangle")
WIDTHS = (160, 192, 224)
HEIGHTS = (120, 144, 160)
NOISE = 18.0          # the background's grain: a normal deviate per pixel and channel, in grey levels
JPEG_QUALITY = 92
SUBPIXEL = 4          # OpenCV's `shift`: shapes are placed to 1/16 pixel
SIZE = (0.12, 0.45)   # a shape's size (a circle's diameter), as a share of the image's shorter side
STRETCH = (0.6, 1.6)  # a rectangle's or triangle's width is its size times this, its height its size over it


def distinct_colour(rng, background):
    """A colour far enough from the background to be seen (sum of channel differences of 150 or more)."""
    while True:
        colour = rng.integers(0, 256, 3)
        if np.abs(colour - background).sum() >= 150:
            return tuple(int(c) for c in colour)


def draw_shape(image, rng, cls, colour):
    """Draw one shape of class `cls` at a random place; its box (x0, y0, x1, y1) in pixels."""
    h, w = image.shape[:2]
    one = 1 << SUBPIXEL
    size = rng.uniform(*SIZE) * min(w, h)
    if cls == 0:
        d = size
        cx, cy = rng.uniform(d / 2, w - d / 2), rng.uniform(d / 2, h - d / 2)
        cv2.circle(image, (round(cx * one), round(cy * one)), round(d / 2 * one), colour, -1, cv2.LINE_AA, SUBPIXEL)
        return cx - d / 2, cy - d / 2, cx + d / 2, cy + d / 2
    stretch = rng.uniform(*STRETCH)
    bw, bh = size * stretch, size / stretch
    x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
    if cls == 1:
        corners = [(x0, y0), (x0 + bw, y0), (x0 + bw, y0 + bh), (x0, y0 + bh)]
    else:
        corners = [(x0 + bw / 2, y0), (x0 + bw, y0 + bh), (x0, y0 + bh)]
    points = np.array([[round(x * one), round(y * one)] for x, y in corners], np.int32)
    cv2.fillPoly(image, [points], colour, cv2.LINE_AA, SUBPIXEL)
    return x0, y0, x0 + bw, y0 + bh


def shapes_image(rng):
    """One image (BGR uint8) and its label lines."""
    w, h = int(rng.choice(WIDTHS)), int(rng.choice(HEIGHTS))
    background = rng.integers(0, 256, 3)
    grain = rng.normal(0, NOISE, (h, w, 3))
    image = np.clip(background + grain, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(0, 4))):
        ends = rng.uniform(0, 1, 4) * (w, h, w, h)
        cv2.line(image, (int(ends[0]), int(ends[1])), (int(ends[2]), int(ends[3])),
                 distinct_colour(rng, background), int(rng.integers(1, 3)), cv2.LINE_AA)
    labels = []
    for _ in range(int(rng.integers(1, 6))):
        cls = int(rng.integers(3))
        x0, y0, x1, y1 = draw_shape(image, rng, cls, distinct_colour(rng, background))
        box = ((x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h)
        labels.append(f"{cls} " + " ".join(f"{v:.6f}" for v in box) + "\n")
    return image, labels


def write_shapes(folder, train=600, valid=150, seed=0):
    """Write the shapes set into `folder` (created if missing); the path of its shapes.data. Any earlier files
    of the same names are replaced."""
    folder = Path(folder).resolve()
    if folder.exists() and not folder.is_dir():
        raise DarknetError(f"{folder}: exists and is not a folder; give a new or empty folder")
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for part, count in (("train", train), ("valid", valid)):
        paths = []
        for i in range(count):
            image, labels = shapes_image(rng)
            path = images / f"{part}_{i:04d}.jpg"
            _, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            path.write_bytes(jpeg.tobytes())   # not atomic (a thousand fsyncs take seconds): the lists come last
            path.with_suffix(".txt").write_text("".join(labels))
            paths.append(f"{path}\n")
        atomic_write(folder / f"{part}.txt", "".join(paths).encode())
    atomic_write(folder / "shapes.names", "".join(f"{name}\n" for name in SHAPE_NAMES).encode())
    data = folder / "shapes.data"
    atomic_write(data, (f"classes={len(SHAPE_NAMES)}\ntrain={folder / 'train.txt'}\nvalid={folder / 'valid.txt'}\n"
                        f"names={folder / 'shapes.names'}\nbackup={folder / 'backup'}{os.sep}\n").encode())
    return data
