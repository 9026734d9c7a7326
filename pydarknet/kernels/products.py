"""The matrix products of the convolutional and connected layers, forward and backward, in one place.

Darknet's gemm comes in three shapes, each with its own summation order (gemm.c built with -Ofast):
- gemm_nn, C (+)= A B, and gemm_tn, C (+)= A^T B: every C element is one float32 chain over k in order,
  starting from C's value (BETA = 1) or from 0;
- gemm_nt, C += A B^T: each element's dot product is summed in four float32 lanes (GCC vectorizes that
  reduction) from 0, then added to C.

Two backends:
- "blas" (the default): numpy's matmul (OpenBLAS). Fast; it sums in blocks, with FMA, so the results differ
  from darknet's in the last bits (a relative 1e-7 per product, growing with depth);
- "darknet": darknet's exact orders (kernels.gemm for nn/tn when that module is available, kernels.dense's
  four-lane dot products for nt): bit-exact products, slower for the weight gradients.

`set_backend(name)` switches for the whole process.
"""
import numpy as np

_BACKEND = "blas"


def set_backend(name):
    """Choose "blas" or "darknet" for every layer's products; returns the previous choice."""
    global _BACKEND
    if name not in ("blas", "darknet"):
        raise ValueError(f"unknown product backend {name!r} (blas or darknet)")
    if name == "darknet":
        from . import gemm  # noqa: F401  (fails early when the exact-order gemm is not there)
    previous, _BACKEND = _BACKEND, name
    return previous


def backend():
    return _BACKEND


def gemm_nn(a, b, out, accumulate=False):
    """out = a @ b, or out += a @ b with accumulate (a (m, k), b (k, n), out (m, n), float32)."""
    if _BACKEND == "darknet":
        from .gemm import sgemm_darknet
        sgemm_darknet(a, b, out, accumulate)
    elif accumulate:
        out += a @ b
    else:
        np.matmul(a, b, out=out)


def gemm_tn(a, b, out, accumulate=False):
    """out = a.T @ b, or out += a.T @ b with accumulate (a (k, m), b (k, n), out (m, n), float32)."""
    if _BACKEND == "darknet":
        from .gemm import sgemm_darknet_tn
        sgemm_darknet_tn(a, b, out, accumulate)
    elif accumulate:
        out += a.T @ b
    else:
        np.matmul(a.T, b, out=out)


def gemm_nt(a, b, out):
    """out = a @ b.T (a (m, k), b (n, k), out (m, n), float32); darknet adds this to its C afterwards."""
    if _BACKEND == "darknet":
        from .dense import dense_nt
        dense_nt(a, b, out)
    else:
        np.matmul(a, b.T, out=out)
