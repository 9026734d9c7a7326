"""Global average pooling as darknet's -Ofast build computes it.

forward_avgpool_layer adds a channel's pixels one by one in float32 and then divides by h*w; -Ofast
(-freciprocal-math) turns that division into a product with the float32 reciprocal 1/(h*w), which rounds
differently in about a third of the outputs. Both steps are reproduced here (bit-exact on the golden cases).
Each channel's sum is one chain of adds, each waiting for the last: four channels' chains go side by side, so that
the adds of one wait no longer than the others take.
"""
import numpy as np
from numba import njit, prange

CHAINS = 4   # channels summed side by side


@njit(cache=True, parallel=True)
def global_avgpool(x, out):
    """x (n, c, h, w) -> out (n, c)."""
    n, c, h, w = x.shape
    inv = np.float32(np.float32(1.0) / np.float32(h * w))
    channels = n * c
    for group in prange(-(-channels // CHAINS)):
        k = group * CHAINS
        if k + CHAINS > channels:   # the last few, one by one
            for kk in range(k, channels):
                out[kk // c, kk % c] = np.float32(_channel_sum(x, kk // c, kk % c) * inv)
            continue
        b0, c0, b1, c1 = k // c, k % c, (k + 1) // c, (k + 1) % c
        b2, c2, b3, c3 = (k + 2) // c, (k + 2) % c, (k + 3) // c, (k + 3) % c
        t0 = t1 = t2 = t3 = np.float32(0.0)
        for y in range(h):
            for xx in range(w):
                t0 = np.float32(t0 + x[b0, c0, y, xx])
                t1 = np.float32(t1 + x[b1, c1, y, xx])
                t2 = np.float32(t2 + x[b2, c2, y, xx])
                t3 = np.float32(t3 + x[b3, c3, y, xx])
        out[b0, c0] = np.float32(t0 * inv)
        out[b1, c1] = np.float32(t1 * inv)
        out[b2, c2] = np.float32(t2 * inv)
        out[b3, c3] = np.float32(t3 * inv)


@njit(cache=True)
def _channel_sum(x, b, ch):
    total = np.float32(0.0)
    for y in range(x.shape[2]):
        for xx in range(x.shape[3]):
            total = np.float32(total + x[b, ch, y, xx])
    return total
