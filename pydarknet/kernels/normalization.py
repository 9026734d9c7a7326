"""Normalisations across channels: darknet's local response normalisation and l2normalize_cpu."""
import math

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def local_response_norm(x, size, alpha, beta, kappa, out):
    """x, out (n, c, h, w); darknet's forward_normalization_layer.

    norms[0] = kappa + alpha*sq[0] + ... (the first size/2 channels), then each next channel's norm is the
    previous one minus alpha*sq[leaving] plus alpha*sq[entering] (float32, in that order); out = x * norm^-beta
    with the power in double (C's pow), rounded to float32 before the product."""
    n, c, h, w = x.shape
    for k in prange(n * h):
        b = k // h
        y = k % h
        for xx in range(w):
            norm = np.float32(kappa)
            for ch in range(size // 2):
                if ch < c:
                    v = x[b, ch, y, xx]
                    norm = np.float32(norm + np.float32(alpha * np.float32(v * v)))
            out[b, 0, y, xx] = np.float32(math.pow(np.float64(norm), -np.float64(beta))) * x[b, 0, y, xx]
            for ch in range(1, c):
                prev = ch - (size - 1) // 2 - 1
                nxt = ch + size // 2
                if prev >= 0:
                    v = x[b, prev, y, xx]
                    norm = np.float32(norm + np.float32(-alpha * np.float32(v * v)))
                if nxt < c:
                    v = x[b, nxt, y, xx]
                    norm = np.float32(norm + np.float32(alpha * np.float32(v * v)))
                out[b, ch, y, xx] = np.float32(math.pow(np.float64(norm), -np.float64(beta))) * x[b, ch, y, xx]


@njit(cache=True, parallel=True)
def l2_normalize(x, out, scales):
    """x, out, scales (n, c, spatial): each pixel's channel vector divided by its L2 norm (float32 sum of
    squares in channel order, sqrtf); scales gets darknet's (1 - out) / norm."""
    n, c, spatial = x.shape
    for k in prange(n * spatial):
        b = k // spatial
        i = k % spatial
        total = np.float32(0.0)
        for f in range(c):
            v = x[b, f, i]
            total = np.float32(total + np.float32(v * v))
        norm = np.float32(math.sqrt(total))
        for f in range(c):
            v = np.float32(x[b, f, i] / norm)
            out[b, f, i] = v
            scales[b, f, i] = np.float32(np.float32(1.0 - v) / norm)
