"""Convolution around the matrix product: im2col before it, the fused batch-norm/bias/activation after it."""
import math

import numpy as np
from numba import njit, prange

from .activations import activate


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
        for y in range(out_h):
            iy = ky + y * stride - pad
            base = y * out_w
            if iy < 0 or iy >= h:
                for x in range(out_w):
                    col[row, base + x] = 0.0
                continue
            for x in range(out_w):
                ix = kx + x * stride - pad
                col[row, base + x] = im[ch, iy, ix] if 0 <= ix < w else 0.0


@njit(cache=True, parallel=True)
def col2im(col, size, stride, pad, im):
    """The adjoint of im2col: add every column entry back onto the pixel it came from (im is accumulated)."""
    c, h, w = im.shape
    out_h = (h + 2 * pad - size) // stride + 1
    out_w = (w + 2 * pad - size) // stride + 1
    for ch in prange(c):  # rows of one channel only touch that channel: no two threads write one pixel
        for k in range(size * size):
            row = ch * size * size + k
            kx = k % size
            ky = k // size
            for y in range(out_h):
                iy = ky + y * stride - pad
                if iy < 0 or iy >= h:
                    continue
                for x in range(out_w):
                    ix = kx + x * stride - pad
                    if 0 <= ix < w:
                        im[ch, iy, ix] += col[row, y * out_w + x]


@njit(cache=True, parallel=True)
def normalize_scale_bias_activate(x, mean, variance, scales, biases, activation, normalize):
    """x (n, c, spatial) in place: darknet's batch-norm at inference, then bias, then the activation.

    Each step rounds to float32 exactly where darknet stores to its float arrays, so the result is the
    one darknet computes from the same convolution sums.
    """
    n, c, spatial = x.shape
    for k in prange(n * c):
        b = k // c
        f = k % c
        if normalize:
            denom = math.sqrt(np.float64(variance[f])) + np.float64(np.float32(0.000001))
            m = mean[f]
            s = scales[f]
        bias = biases[f]
        for i in range(spatial):
            v = x[b, f, i]
            if normalize:
                v = np.float32(np.float64(v - m) / denom)
                v = np.float32(v * s)
            v = np.float32(v + bias)
            x[b, f, i] = activate(v, activation)
