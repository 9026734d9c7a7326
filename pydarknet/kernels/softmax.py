"""Darknet's softmax (blas.c `softmax`): runs of n values `stride` apart, each normalised on its own.

Per run: the largest value (starting from -FLT_MAX, strict `>`), then e = exp(x/temp - largest/temp) with
the exponential in double (C's `exp`) rounded to float32; the e's are summed in float32 in index order; finally
each e is scaled by the sum's reciprocal. Darknet's source divides (by temp, by the sum), but its -Ofast build
(-freciprocal-math) multiplies by the float32 reciprocal of these loop-invariant divisors instead: that is what
reproduces its outputs bit for bit (checked on every golden softmax; only temperature 1 is covered there).
The same C function serves [softmax], [region] and [detection], and so does this kernel: on the golden
[region] outputs (yolov2_slim, yolov2-tiny_slim) the reciprocal rule is bit-exact where dividing by the sum
missed about one value in ten by an ulp.

error_model="numpy": x/0 is inf and 0/0 NaN as in C (a run of only -inf, or an empty run, divides by 0).
"""
import math

import numpy as np
from numba import njit, prange

FLT_MAX = np.float32(3.4028234663852886e38)


@njit(cache=True, inline="always", error_model="numpy")
def softmax_run(x, start, n, stride, temp, out):
    """One run: x[start + i*stride], i < n, normalised into out at the same places (out may be x)."""
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


@njit(cache=True, parallel=True, error_model="numpy")
def softmax_runs(x, starts, sizes, stride, temp, out):
    """x, out: flat float32 arrays of the same size; run r covers x[starts[r] + i*stride], i < sizes[r]."""
    for r in prange(starts.size):
        softmax_run(x, starts[r], sizes[r], stride, temp, out)


def run_starts(batch, inputs, offsets):
    """Start of every run for `offsets` (the run starts inside one image) repeated over the batch."""
    offsets = np.asarray(offsets, np.int64)
    return (np.arange(batch, dtype=np.int64)[:, None] * inputs + offsets[None, :]).reshape(-1)


def softmax_groups(x, n, batch, batch_offset, groups, group_offset, stride, temp, out):
    """Darknet's softmax_cpu: `batch` x `groups` independent softmaxes of n values each, group g of batch
    entry b starting at b*batch_offset + g*group_offset."""
    starts = run_starts(batch, batch_offset, np.arange(groups, dtype=np.int64) * group_offset)
    softmax_runs(x, starts, np.full(starts.size, n, np.int64), stride, np.float32(temp), out)
