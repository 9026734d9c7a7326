"""Darknet's softmax (blas.c `softmax`): runs of n values `stride` apart, each normalised on its own.

Per run: the largest value (starting from -FLT_MAX, strict `>`), then e = exp(x/temp - largest/temp) with
the exponential in double (C's `exp`) rounded to float32; the e's are summed in float32 in index order; finally
each e is scaled by the sum's reciprocal. Darknet's source divides (by temp, by the sum), but its -Ofast build
(-freciprocal-math) multiplies by the float32 reciprocal of these loop-invariant divisors instead: that is what
reproduces its outputs bit for bit (checked on every golden softmax; only temperature 1 is covered there).
"""
import math

import numpy as np
from numba import njit, prange

FLT_MAX = np.float32(3.4028234663852886e38)


@njit(cache=True, inline="always")
def _softmax_run(x, start, n, stride, temp, out):
    largest = -FLT_MAX
    for i in range(n):
        v = x[start + i * stride]
        if v > largest:
            largest = v
    rtemp = np.float32(np.float32(1.0) / temp)
    shift = np.float32(largest * rtemp)
    total = np.float32(0.0)
    for i in range(n):
        k = start + i * stride
        arg = np.float32(np.float32(x[k] * rtemp) - shift)
        e = np.float32(math.exp(np.float64(arg)))
        total = np.float32(total + e)
        out[k] = e
    inv = np.float32(np.float32(1.0) / total)
    for i in range(n):
        k = start + i * stride
        out[k] = np.float32(out[k] * inv)


@njit(cache=True, parallel=True)
def softmax_runs(x, starts, sizes, stride, temp, out):
    """x, out: flat float32 arrays of the same size; run r covers x[starts[r] + i*stride], i < sizes[r]."""
    for r in prange(starts.size):
        _softmax_run(x, starts[r], sizes[r], stride, temp, out)


def run_starts(batch, inputs, offsets):
    """Start of every run for `offsets` (the run starts inside one image) repeated over the batch."""
    offsets = np.asarray(offsets, np.int64)
    return (np.arange(batch, dtype=np.int64)[:, None] * inputs + offsets[None, :]).reshape(-1)
