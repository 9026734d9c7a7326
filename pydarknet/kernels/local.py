"""[local]'s product: every output location has its own filters (darknet's local_layer.c)."""
import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def local_forward(col, weights, biases, out):
    """col (k, L): im2col columns of one image; weights (L, n, k); biases, out (n, L).

    out[f, j] = biases[f, j] + sum_k weights[j, f, k] * col[k, j], added term by term in k order in float32,
    as darknet's gemm_nn does when it accumulates one location's products into the bias-filled output."""
    k = col.shape[0]
    n, locations = out.shape
    for j in prange(locations):
        for f in range(n):
            w = weights[j, f]
            acc = biases[f, j]
            for i in range(k):
                acc = np.float32(acc + np.float32(w[i] * col[i, j]))
            out[f, j] = acc
