"""Convolution around the matrix product: im2col before it, the fused batch-norm/bias/activation after it."""
import math

import numpy as np
from numba import njit, prange

from .activations import activate_row


@njit(cache=True, parallel=True)
def im2col(im, size, stride, pad, col):
    """im (c, h, w) -> col (c*size*size, out_h*out_w): each column is one receptive field, zero outside."""
    c, h, w = im.shape
    out_h = (h + 2 * pad - size) // stride + 1
    out_w = (w + 2 * pad - size) // stride + 1
    for row in prange(c * size * size):
        kx = row % size
        ky = (row // size) % size
        ch = row // (size * size)
        # output columns x whose input column kx + x*stride - pad falls inside [0, w)
        x0 = min(out_w, max(0, -((kx - pad) // stride)))
        x1 = max(x0, min(out_w, (w - 1 + pad - kx) // stride + 1))
        for y in range(out_h):
            dst = col[row, y * out_w:(y + 1) * out_w]
            iy = ky + y * stride - pad
            if iy < 0 or iy >= h:
                dst[:] = 0.0
                continue
            dst[:x0] = 0.0
            dst[x1:] = 0.0
            src = im[ch, iy]
            first = kx + x0 * stride - pad
            if stride == 1:
                dst[x0:x1] = src[first:first + x1 - x0]
            else:
                for x in range(x0, x1):
                    dst[x] = src[first + (x - x0) * stride]


@njit(cache=True, parallel=True)
def col2im(col, size, stride, pad, im):
    """The adjoint of im2col: add every column entry back onto the pixel it came from (im is accumulated).
    Each pixel receives its terms in darknet's col2im_cpu order (rows, then output positions)."""
    c, h, w = im.shape
    out_h = (h + 2 * pad - size) // stride + 1
    out_w = (w + 2 * pad - size) // stride + 1
    for ch in prange(c):  # rows of one channel only touch that channel: no two threads write one pixel
        for k in range(size * size):
            row = ch * size * size + k
            kx = k % size
            ky = k // size
            # output columns x whose input column kx + x*stride - pad falls inside [0, w)
            x0 = min(out_w, max(0, -((kx - pad) // stride)))
            x1 = max(x0, min(out_w, (w - 1 + pad - kx) // stride + 1))
            n = x1 - x0
            src_row = col[row]
            for y in range(out_h):
                iy = ky + y * stride - pad
                if iy < 0 or iy >= h:
                    continue
                dst = im[ch, iy]
                first = kx + x0 * stride - pad
                s0 = y * out_w + x0
                if stride == 1:  # contiguous on both sides: a loop that vectorizes
                    d = dst[first:first + n]
                    src = src_row[s0:s0 + n]
                    for x in range(n):
                        d[x] += src[x]
                else:
                    for x in range(n):
                        dst[first + x * stride] += src_row[s0 + x]


@njit(cache=True, parallel=True)
def normalize_scale_bias_activate(x, mean, variance, scales, biases, activation, normalize):
    """x (n, c, spatial) in place: darknet's batch-norm at inference, then bias, then the activation.

    Darknet divides by (sqrt(var) + .000001f) in double and rounds to float; multiplying by the double
    reciprocal rounds to the same float (the double error is far below float's). Scale and bias are
    applied in float32 as darknet stores them.
    """
    n, c, spatial = x.shape
    for k in prange(n * c):
        f = k % c
        row = x[k // c, f]
        bias = biases[f]
        if normalize:
            inv = 1.0 / (math.sqrt(np.float64(variance[f])) + np.float64(np.float32(0.000001)))
            m = mean[f]
            s = scales[f]
            for i in range(spatial):
                v = np.float32(np.float64(row[i] - m) * inv)
                row[i] = np.float32(v * s) + bias
        else:
            for i in range(spatial):
                row[i] += bias
        activate_row(row, activation)
