"""A large image with small shapes at known places, for the tiles tests: shapes drawn as the shapes set draws them
(pydarknet.files.datasets.draw_shape, each in a patch of PATCH pixels then pasted on the canvas) on the set's noisy
background, a grid of them with some across the 160-pixel tiles' edges. data/shapes-tiny.weights (160 x 160) sees
them at their own size in tiles, and shrunk about six times when the whole image is resized to the network."""
import numpy as np

from pydarknet.files.datasets import NOISE, distinct_colour, draw_shape

WIDTH, HEIGHT = 960, 640
PATCH = 110      # shapes of 13 to 50 pixels (the set's 0.12 to 0.45 of it)
COLUMNS, ROWS = 7, 5


def tiled_scene(seed=3):
    """(uint8 BGR (HEIGHT, WIDTH, 3) image, [(class, left, top, right, bottom)] in pixels)."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 256, 3)
    image = np.clip(background + rng.normal(0, NOISE, (HEIGHT, WIDTH, 3)), 0, 255).astype(np.uint8)
    truth = []
    for row in range(ROWS):
        for column in range(COLUMNS):
            x = int(column * (WIDTH - PATCH) / (COLUMNS - 1))
            y = int(row * (HEIGHT - PATCH) / (ROWS - 1))
            cls = (row * COLUMNS + column) % 3
            patch = image[y:y + PATCH, x:x + PATCH].copy()
            x0, y0, x1, y1 = draw_shape(patch, rng, cls, distinct_colour(rng, background))
            image[y:y + PATCH, x:x + PATCH] = patch
            truth.append((cls, x + x0, y + y0, x + x1, y + y1))
    return image, truth


def recall(result, truth, iou=0.5):
    """The share of `truth` that a detection of its class in `result` overlaps by IoU >= `iou`, and the count."""
    found = 0
    for cls, left, top, right, bottom in truth:
        for d in result.detections:
            x, y, w, h = d.box
            bx0, by0 = (x - w / 2) * result.width, (y - h / 2) * result.height
            bx1, by1 = bx0 + w * result.width, by0 + h * result.height
            inter = max(0, min(right, bx1) - max(left, bx0)) * max(0, min(bottom, by1) - max(top, by0))
            union = (right - left) * (bottom - top) + (bx1 - bx0) * (by1 - by0) - inter
            if d.class_id == cls and inter / union >= iou:
                found += 1
                break
    return found / len(truth), found
