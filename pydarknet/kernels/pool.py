"""Pooling: darknet's max pool (with its offset padding rule) and global average pool."""
import numpy as np
from numba import njit, prange

FLT_MAX = np.float32(3.4028234663852886e38)


@njit(cache=True, parallel=True)
def maxpool(x, size, stride, pad, out, argmax, keep_argmax):
    """x (n, c, h, w) -> out (n, c, oh, ow); with keep_argmax, argmax gets the flat index (within x[b]) each
    maximum came from (training needs it, inference does not).

    The window starts pad//2 pixels up and left of the stride grid; pixels outside count as -FLT_MAX,
    so a window entirely outside gives -FLT_MAX, as in darknet. Ties keep the first maximum.
    """
    n, c, h, w = x.shape
    oh, ow = out.shape[2], out.shape[3]
    offset = -(pad // 2)
    for k in prange(n * c):
        b = k // c
        ch = k % c
        plane = x[b, ch]
        for i in range(oh):
            orow = out[b, ch, i]
            y0 = offset + i * stride
            orow[:] = -FLT_MAX
            if keep_argmax:
                arow = argmax[b, ch, i]
                arow[:] = -1
            for dy in range(size):
                y = y0 + dy
                if y < 0 or y >= h:
                    continue
                irow = plane[y]
                for dx in range(size):
                    # output columns j whose input column offset + j*stride + dx is inside [0, w)
                    j0 = min(ow, max(0, -((offset + dx) // stride)))
                    j1 = max(j0, min(ow, (w - 1 - offset - dx) // stride + 1))
                    first = offset + dx
                    if keep_argmax:
                        for j in range(j0, j1):
                            v = irow[first + j * stride]
                            if v > orow[j]:
                                orow[j] = v
                                arow[j] = (ch * h + y) * w + first + j * stride
                    else:
                        for j in range(j0, j1):
                            v = irow[first + j * stride]
                            orow[j] = v if v > orow[j] else orow[j]


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
