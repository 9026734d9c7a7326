"""The matrix products of the convolutional and connected layers, forward and backward, in one place.

Darknet's gemm comes in three shapes, each with its own summation order (gemm.c built with -Ofast):
- gemm_nn, C (+)= A B, and gemm_tn, C (+)= A^T B: every C element is one float32 chain over k in order,
  starting from C's value (BETA = 1) or from 0;
- gemm_nt, C += A B^T: each element's dot product is summed in four float32 lanes (GCC vectorizes that
  reduction) from 0, then added to C.

Two backends:
- "darknet" (the default): darknet's exact orders (kernels.gemm's chain kernel; for nt, one chain product per
  lane): bit-exact products, so every golden layer output matches darknet to the last bit, at BLAS speed for
  inference (yolov3-tiny forward: 156 ms against 180 ms for BLAS in the same loaded run);
- "blas": numpy's matmul (OpenBLAS). It sums in blocks, with FMA, so the results differ from darknet's in the
  last bits (a relative 1e-7 per product, growing with depth: up to 1e-3 on deep random-weight networks,
  and Tiny Darknet prints malamute 0.167167 instead of darknet's 0.167168).

`set_backend(name)` switches for the whole process; the environment variable PYDARKNET_PRODUCTS (darknet or
blas) sets the starting choice.
"""
import os

import numpy as np

_BACKEND = os.environ.get("PYDARKNET_PRODUCTS", "darknet")
if _BACKEND not in ("blas", "darknet"):
    raise ValueError(f"PYDARKNET_PRODUCTS={_BACKEND!r}: expected blas or darknet")


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
        _gemm_nt_lanes(a, b, out)
    else:
        np.matmul(a, b.T, out=out)


def _gemm_nt_lanes(a, b, out):
    """darknet's -Ofast gemm_nt order with the chain kernel: lane l of every dot product is the chain over
    k = l, l+4, ... (< the last multiple of 4), i.e. an ordinary product of the columns l::4; the lanes are
    combined as (l0 + l2) + (l1 + l3) and the last k % 4 terms continue that chain in order."""
    from .gemm import sgemm_darknet
    m, k = a.shape
    n = b.shape[0]
    full = k - k % 4
    if full:
        lanes = []
        for lane in range(4):
            part = np.empty((m, n), np.float32)
            sgemm_darknet(np.ascontiguousarray(a[:, lane:full:4]), np.ascontiguousarray(b[:, lane:full:4].T), part)
            lanes.append(part)
        np.add(lanes[0], lanes[2], out=lanes[0])
        np.add(lanes[1], lanes[3], out=lanes[1])
        np.add(lanes[0], lanes[1], out=out)
    else:
        out.fill(0)
    if k > full:
        sgemm_darknet(np.ascontiguousarray(a[:, full:]), np.ascontiguousarray(b[:, full:].T), out, accumulate=True)
