"""Pooling: darknet's max pool (with its offset padding rule) and global average pool."""
import numpy as np
from numba import njit, prange

FLT_MAX = np.float32(3.4028234663852886e38)


@njit(cache=True, parallel=True)
def maxpool(x, size, stride, pad, out, argmax):
    """x (n, c, h, w) -> out (n, c, oh, ow); argmax keeps the flat index (within x[b]) each maximum came from.

    The window starts pad//2 pixels up and left of the stride grid; pixels outside count as -FLT_MAX,
    so a window entirely outside gives -FLT_MAX, as in darknet.
    """
    n, c, h, w = x.shape
    oh, ow = out.shape[2], out.shape[3]
    offset = -(pad // 2)
    for k in prange(n * c):
        b = k // c
        ch = k % c
        for i in range(oh):
            for j in range(ow):
                best = -FLT_MAX
                best_i = -1
                for dy in range(size):
                    y = offset + i * stride + dy
                    for dx in range(size):
                        xx = offset + j * stride + dx
                        if 0 <= y < h and 0 <= xx < w:
                            v = x[b, ch, y, xx]
                            if v > best:
                                best = v
                                best_i = (ch * h + y) * w + xx
                out[b, ch, i, j] = best
                argmax[b, ch, i, j] = best_i


@njit(cache=True, parallel=True)
def avgpool(x, out):
    """x (n, c, h, w) -> out (n, c): the mean of each channel, summed in darknet's order, in float32."""
    n, c, h, w = x.shape
    for k in prange(n * c):
        b = k // c
        ch = k % c
        total = np.float32(0.0)
        for y in range(h):
            for xx in range(w):
                total += x[b, ch, y, xx]
        out[b, ch] = total / np.float32(h * w)
