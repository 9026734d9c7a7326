"""Pooling: darknet's max pool (with its offset padding rule). The global average pool is kernels/avgpool.py."""
import numpy as np
from numba import njit, prange

FLT_MAX = np.float32(3.4028234663852886e38)


@njit(cache=True, parallel=True)
def maxpool(x, size, stride, pad, out, argmax, keep_argmax):
    """x (n, c, h, w) -> out (n, c, oh, ow); with keep_argmax, argmax (int32, out's shape) gets the flat index
    (within x[b]) each maximum came from (training needs it, inference does not).

    The window starts pad//2 pixels up and left of the stride grid; pixels outside count as -FLT_MAX,
    so a window entirely outside gives -FLT_MAX (and argmax -1), as in darknet. Ties keep the first maximum
    in darknet's window order (row by row).
    """
    if keep_argmax:
        _maxpool_argmax(x, size, stride, pad, out, argmax)
        return
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
                    for j in range(j0, j1):
                        v = irow[first + j * stride]
                        orow[j] = v if v > orow[j] else orow[j]


@njit(cache=True, parallel=True)
def _maxpool_argmax(x, size, stride, pad, out, argmax):
    """The training path: one output window at a time, the window's loops innermost (darknet's order);
    2x2 windows at stride 2 that lie inside the image take a branch-free path."""
    n, c, h, w = x.shape
    oh, ow = out.shape[2], out.shape[3]
    offset = -(pad // 2)
    for k in prange(n * c):
        b = k // c
        ch = k % c
        plane = x[b, ch]
        base = ch * h * w
        for i in range(oh):
            orow = out[b, ch, i]
            arow = argmax[b, ch, i]
            y0 = offset + i * stride
            # output columns whose whole window is inside the image: j0 <= j < j1
            j0 = min(ow, (stride - 1 - offset) // stride)
            j1 = max(j0, min(ow, (w - size - offset) // stride + 1))
            if size == 2 and stride == 2 and y0 >= 0 and y0 + 1 < h:
                r0 = plane[y0]
                r1 = plane[y0 + 1]
                i0 = base + y0 * w + offset
                i1 = i0 + w
                for j in range(j0, j1):
                    x0 = 2 * j
                    best = -FLT_MAX
                    at = np.int32(-1)
                    v = r0[x0 + offset]
                    if v > best:
                        best = v
                        at = np.int32(i0 + x0)
                    v = r0[x0 + offset + 1]
                    if v > best:
                        best = v
                        at = np.int32(i0 + x0 + 1)
                    v = r1[x0 + offset]
                    if v > best:
                        best = v
                        at = np.int32(i1 + x0)
                    v = r1[x0 + offset + 1]
                    if v > best:
                        best = v
                        at = np.int32(i1 + x0 + 1)
                    orow[j] = best
                    arow[j] = at
                lo, hi = j0, j1
            else:
                lo, hi = 0, 0
            for j in range(ow):
                if lo <= j < hi:
                    continue
                xs = offset + j * stride
                best = -FLT_MAX
                at = np.int32(-1)
                for dy in range(size):
                    y = y0 + dy
                    if y < 0 or y >= h:
                        continue
                    irow = plane[y]
                    for dx in range(size):
                        xx = xs + dx
                        if xx < 0 or xx >= w:
                            continue
                        v = irow[xx]
                        if v > best:
                            best = v
                            at = np.int32(base + y * w + xx)
                orow[j] = best
                arow[j] = at
