"""What both augmentation pipelines (data.py, pjreddie's; data_ab.py, the fork's) share: darknet's random draws
on a numpy Generator, the truth boxes' shuffle and correction, a training image loaded (its errors naming it)."""
import numpy as np

from ...files.config import DarknetError
from ...files.image import load_image

__all__ = ["rand_uniform", "rand_scale", "randomize_boxes", "correct_boxes", "load_training_image", "naming",
           "nonzero"]

_F32 = np.float32


def rand_uniform(rng, low, high):
    """darknet's rand_uniform in float32: u * (high - low) + low, the bounds swapped when reversed."""
    low, high = _F32(low), _F32(high)
    if high < low:
        low, high = high, low
    return _F32(_F32(_F32(rng.random()) * _F32(high - low)) + low)


def rand_scale(rng, s):
    """darknet's rand_scale: a factor between 1 and s, or its inverse, with equal chance."""
    scale = rand_uniform(rng, 1, s)
    if rng.integers(2):
        return scale
    return _F32(1.0 / float(scale))


def randomize_boxes(boxes, rng):
    """darknet's randomize_boxes, in place: swap each row i with a random row (not a uniform shuffle)."""
    n = len(boxes)
    for i in range(n):
        j = int(rng.integers(n))
        boxes[[i, j]] = boxes[[j, i]]
    return boxes


def correct_boxes(boxes, dx, dy, sx, sy, flip):
    """darknet's correct_boxes on [x, y, w, h, class] rows: edges scaled by (sx, sy) and shifted by
    (-dx, -dy), mirrored when `flip`, clamped to 0..1, turned back into centre and size (float32)."""
    b = np.array(boxes, dtype=np.float32, copy=True).reshape(-1, 5)
    if not len(b):
        return b
    dx, dy, sx, sy = _F32(dx), _F32(dy), _F32(sx), _F32(sy)
    x, y, w, h = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    half_w, half_h = w / _F32(2), h / _F32(2)
    left = (x - half_w) * sx - dx
    right = (x + half_w) * sx - dx
    top = (y - half_h) * sy - dy
    bottom = (y + half_h) * sy - dy
    if flip:
        left, right = _F32(1) - right, _F32(1) - left
    left, right = np.clip(left, 0, 1), np.clip(right, 0, 1)
    top, bottom = np.clip(top, 0, 1), np.clip(bottom, 0, 1)
    b[:, 0] = (left + right) / _F32(2)
    b[:, 1] = (top + bottom) / _F32(2)
    b[:, 2] = np.clip(right - left, 0, 1)
    b[:, 3] = np.clip(bottom - top, 0, 1)
    return b


def load_training_image(path):
    """load_image, any failure a DarknetError naming the file."""
    try:
        return load_image(path)
    except DarknetError:
        raise
    except Exception as e:  # noqa: BLE001 - name the file whatever went wrong
        raise DarknetError(f"{path}: cannot load image: {type(e).__name__}: {e}") from e


class naming:
    """Context manager: an unexpected error while making one training image is re-raised as a DarknetError
    naming that image."""

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        if error is None or isinstance(error, DarknetError) or not isinstance(error, Exception):
            return False
        raise DarknetError(f"{self.path}: {type(error).__name__}: {error}") from error


def nonzero(value, default=1.0):
    """darknet's load_thread turns a saturation/exposure/aspect of 0 into 1."""
    return default if not value else value
