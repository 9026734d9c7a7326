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
from numba import njit, prange

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


def conv_weight_gradient(delta, colT, out):
    """out (m, k) += the weight gradient of a convolution over a batch: for each image b in order,
    delta[b] (m, L) @ col[b].T with colT[b] = col[b].T (L, k) (kernels.conv.im2col_t), added image by
    image as darknet's backward_convolutional_layer does (its gemm_nt: C += A B^T per image).

    With the darknet backend each image's product is the -Ofast gemm_nt sum (see _gemm_nt_lanes): small
    problems (few output positions, or few weights) go through one Numba kernel for the whole batch
    (_nt_lanes_batch); the others through four chain products per image, one per lane, read straight from
    delta and colT through strides (no copies: lane l of delta is every fourth pixel from l; lane l of col.T
    is every fourth row of colT from l, rows that the product packs contiguously). delta[b], colT[b] and out
    must be C-contiguous float32."""
    n, m, L = delta.shape
    k = colT.shape[2]
    if _BACKEND != "darknet":
        grad = np.empty((m, k), np.float32)
        for b in range(n):
            np.matmul(delta[b], colT[b], out=grad)
            out += grad
        return
    import numba
    threads = numba.get_num_threads()
    if L < 128 or m * k <= 1200:
        rows = min(m, 8)
        cols = min(k, 512)
        while (-(-m // rows)) * (-(-k // cols)) < 2 * threads and cols > 8:  # enough tasks for the threads
            cols = max(8, (cols + 1) // 2)
        _nt_lanes_batch(delta, colT, out, rows, cols)
        return
    from .gemm import _gemm
    full = L - L % 4
    parts = np.empty((4, m, k), np.float32)
    grad = np.empty((m, k), np.float32)
    for b in range(n):
        a = delta[b].reshape(-1)
        bt = colT[b].reshape(-1)
        if full:
            for lane in range(4):
                _gemm(a[lane:], L, 4, bt[lane * k:], 4 * k, 1, parts[lane].reshape(-1), m, k, full // 4, False,
                      threads)
            np.add(parts[0], parts[2], out=parts[0])
            np.add(parts[1], parts[3], out=parts[1])
            np.add(parts[0], parts[1], out=grad)
        else:
            grad.fill(0)
        if L > full:   # the last L % 4 terms continue the chain in order
            _gemm(a[full:], L, 1, bt[full * k:], k, 1, grad.reshape(-1), m, k, L - full, True, threads)
        out += grad


@njit(cache=True, parallel=True)
def _nt_lanes_batch(delta, colT, out, rows, cols):
    """out[i, j] += for each image b in order: darknet's gemm_nt sum of delta[b, i] and colT[b, :, j] (four
    lanes: lane l is the chain over the pixels l, l+4, ... below the last multiple of four; the lanes combine
    as (l0 + l2) + (l1 + l3); the remaining pixels continue in order; the sum is then added to out).

    Tasks own blocks of rows x cols of out; a task keeps its lane sums in a small array and runs each
    lane's chain as a loop over the block's columns (which vectorizes: columns are independent chains)."""
    n, m, L = delta.shape
    k = colT.shape[2]
    full = L - L % 4
    nrow = (m + rows - 1) // rows
    ncol = (k + cols - 1) // cols
    for task in prange(nrow * ncol):
        i0 = (task % nrow) * rows
        h = min(m, i0 + rows) - i0
        j0 = (task // nrow) * cols
        w = min(k, j0 + cols) - j0
        acc = np.empty((4, cols), np.float32)
        total = np.empty(cols, np.float32)
        for b in range(n):
            bt = colT[b]
            for ii in range(h):
                a = delta[b, i0 + ii]
                acc[:, :w] = 0.0
                for t in range(0, full, 4):
                    for lane in range(4):
                        av = a[t + lane]
                        q = acc[lane]
                        r = bt[t + lane, j0:j0 + w]
                        for j in range(w):
                            q[j] += av * r[j]
                q0 = acc[0]
                q1 = acc[1]
                q2 = acc[2]
                q3 = acc[3]
                for j in range(w):
                    total[j] = (q0[j] + q2[j]) + (q1[j] + q3[j])
                for t in range(full, L):
                    av = a[t]
                    r = bt[t, j0:j0 + w]
                    for j in range(w):
                        total[j] += av * r[j]
                dst = out[i0 + ii, j0:j0 + w]
                for j in range(w):
                    dst[j] += total[j]
