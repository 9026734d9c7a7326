"""[crop]: darknet's forward_crop_layer, reading the batch as one flat array exactly as its index arithmetic does."""
import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def crop(x, dh, dw, flip, scale, trans, out):
    """x (n, c, h, w) -> out (n, c, oh, ow): out = x[row, col] * scale + trans with row = i + dh and
    col = j + dw (or w - dw - j - 1 when flipped).

    Darknet computes the flat index col + w*(row + h*(channel + c*image)) without checking row and col, so an
    offset window spills into neighbouring rows, channels and images of the batch; an index outside the whole
    batch reads memory that is not the input at all (the values are undefined there: taken as 0 here)."""
    n, c, h, w = x.shape
    oh, ow = out.shape[2], out.shape[3]
    flat = x.reshape(-1)
    size = flat.size
    for k in prange(n * c):
        b = k // c
        ch = k % c
        for i in range(oh):
            row = i + dh
            base = w * (row + h * (ch + c * b))
            for j in range(ow):
                col = (w - dw - j - 1) if flip else (j + dw)
                index = col + base
                v = flat[index] if 0 <= index < size else np.float32(0.0)
                out[b, ch, i, j] = np.float32(np.float32(v * scale) + trans)
