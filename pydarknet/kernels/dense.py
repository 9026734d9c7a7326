"""The connected layer's product as darknet's -Ofast build computes it (gemm_nt: one dot product per output).

GCC vectorizes gemm_nt's `sum += a[k]*b[k]` loop with 4-lane SSE partial sums: lane l adds the products of
k = l, l+4, l+8, ...; the four lanes are then combined as (l0 + l2) + (l1 + l3), and the k's left over after
the last full group of four are added one by one. Reproducing that order gives darknet's outputs bit for bit
(checked on every [connected] layer of the golden cases); numpy's BLAS sums differently (last-bit differences).
It runs at about darknet's own speed: as fast as BLAS for one image, several times slower for big batches.
"""
import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def _dot4(a, b):
    k = a.size
    m = k - k % 4
    s0 = np.float32(0.0)
    s1 = np.float32(0.0)
    s2 = np.float32(0.0)
    s3 = np.float32(0.0)
    for i in range(0, m, 4):
        s0 = np.float32(s0 + np.float32(a[i] * b[i]))
        s1 = np.float32(s1 + np.float32(a[i + 1] * b[i + 1]))
        s2 = np.float32(s2 + np.float32(a[i + 2] * b[i + 2]))
        s3 = np.float32(s3 + np.float32(a[i + 3] * b[i + 3]))
    total = np.float32(np.float32(s0 + s2) + np.float32(s1 + s3))
    for i in range(m, k):
        total = np.float32(total + np.float32(a[i] * b[i]))
    return total


@njit(cache=True, parallel=True)
def dense_nt(x, weights, out):
    """out (batch, n) = x (batch, k) times weights (n, k) transposed, in darknet's summation order."""
    batch = x.shape[0]
    n = weights.shape[0]
    for t in prange(batch * n):
        j = t // batch  # one weight row serves every image while it is in cache
        b = t % batch
        out[b, j] = _dot4(x[b], weights[j])
