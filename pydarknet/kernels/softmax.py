"""Darknet's softmax (blas.c `softmax`): runs of n values `stride` apart, each normalised on its own.

Per run: the largest value (starting from -FLT_MAX, strict `>`), then e = exp(x/temp - largest/temp) with
the exponential in double (C's `exp`) rounded to float32; the e's are summed in float32 in index order; finally
each e is scaled by the sum's reciprocal. Darknet's source divides (by temp, by the sum), but its -Ofast build
(-freciprocal-math) multiplies by the float32 reciprocal of these loop-invariant divisors instead, and factors
the temperature out: e = exp((x - largest) * (1/temp)). That is what reproduces its outputs bit for bit (checked
on every golden softmax, and for temperatures 0.5 and 0.7 against blas.c built with gcc 12.2 -Ofast).
The same C function serves [softmax], [region] and [detection], and so does this kernel: on the golden
[region] outputs (yolov2_slim, yolov2-tiny_slim) the reciprocal rule is bit-exact where dividing by the sum
missed about one value in ten by an ulp.

A newer build (gcc 12.2 -Ofast with glibc 2.36, the one behind the recurrent golden cases) vectorises the
exponential loop of a contiguous run of at least VECTOR_MIN values: four lanes through libmvec's expf, each lane
summing its own e's, the lanes combined as (0 + 2) + (1 + 3), the last n % 4 values after them through the
scalar expf, which is also what shorter runs use (`softmax_run_lanes`; checked bit for bit against that build's
blas.c for n = 1..19, 31, 64, 125, 250, 256, 1000). The two builds differ in the last bit of most outputs;
`lanes` picks the newer build's arithmetic.

error_model="numpy": x/0 is inf and 0/0 NaN as in C (a run of only -inf, or an empty run, divides by 0).
"""
import math

import numpy as np
from numba import njit, prange

from .activations import expf4

FLT_MAX = np.float32(3.4028234663852886e38)
VECTOR_MIN = 11


@njit(cache=True, inline="always", error_model="numpy")
def softmax_run(x, start, n, stride, temp, out):
    """One run: x[start + i*stride], i < n, normalised into out at the same places (out may be x)."""
    largest = -FLT_MAX
    for i in range(n):
        v = x[start + i * stride]
        if v > largest:
            largest = v
    rtemp = np.float32(np.float32(1.0) / temp)
    total = np.float32(0.0)
    for i in range(n):
        k = start + i * stride
        arg = np.float32(np.float32(x[k] - largest) * rtemp)
        e = np.float32(math.exp(np.float64(arg)))
        total = np.float32(total + e)
        out[k] = e
    inv = np.float32(np.float32(1.0) / total)
    for i in range(n):
        k = start + i * stride
        out[k] = np.float32(out[k] * inv)


@njit(cache=True, inline="always", error_model="numpy")
def softmax_run_lanes(x, start, n, temp, out):
    """One contiguous run as gcc 12's vectorised loop computes it (see the module's docstring)."""
    largest = -FLT_MAX
    for i in range(n):
        if x[start + i] > largest:
            largest = x[start + i]
    rtemp = np.float32(np.float32(1.0) / temp)
    lanes = np.zeros(4, np.float32)
    full = n - n % 4 if n >= VECTOR_MIN else 0   # gcc's cost model leaves short runs to the scalar loop
    for i in range(0, full, 4):
        k = start + i
        e = expf4((np.float32(np.float32(x[k] - largest) * rtemp),
                   np.float32(np.float32(x[k + 1] - largest) * rtemp),
                   np.float32(np.float32(x[k + 2] - largest) * rtemp),
                   np.float32(np.float32(x[k + 3] - largest) * rtemp)))
        for j in range(4):
            lanes[j] = np.float32(lanes[j] + e[j])
            out[k + j] = e[j]
    total = np.float32(np.float32(lanes[0] + lanes[2]) + np.float32(lanes[1] + lanes[3]))
    for i in range(full, n):
        k = start + i
        e = np.float32(math.exp(np.float32(np.float32(x[k] - largest) * rtemp)))
        total = np.float32(total + e)
        out[k] = e
    inv = np.float32(np.float32(1.0) / total)
    for i in range(n):
        out[start + i] = np.float32(out[start + i] * inv)


@njit(cache=True, parallel=True, error_model="numpy")
def softmax_runs(x, starts, sizes, stride, temp, out, lanes=False):
    """x, out: flat float32 arrays of the same size; run r covers x[starts[r] + i*stride], i < sizes[r].
    lanes: the vectorised build's arithmetic for contiguous runs (stride 1)."""
    for r in prange(starts.size):
        if lanes and stride == 1:
            softmax_run_lanes(x, starts[r], sizes[r], temp, out)
        else:
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
