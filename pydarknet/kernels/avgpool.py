"""Global average pooling as darknet's -Ofast build computes it.

forward_avgpool_layer adds a channel's pixels one by one in float32 and then divides by h*w; -Ofast
(-freciprocal-math) turns that division into a product with the float32 reciprocal 1/(h*w), which rounds
differently in about a third of the outputs. Both steps are reproduced here (bit-exact on the golden cases).
"""
import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def global_avgpool(x, out):
    """x (n, c, h, w) -> out (n, c)."""
    n, c, h, w = x.shape
    inv = np.float32(np.float32(1.0) / np.float32(h * w))
    for k in prange(n * c):
        b = k // c
        ch = k % c
        total = np.float32(0.0)
        for y in range(h):
            for xx in range(w):
                total = np.float32(total + x[b, ch, y, xx])
        out[b, ch] = np.float32(total * inv)
