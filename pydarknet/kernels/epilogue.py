"""The fast modes' fused store: what a convolution's products do to each output row as they store it, while the row
is still in the core's cache, instead of a pass over the whole output afterwards.

A `Store` is one layer's part of the fused plan (network/layers/convolutional.py builds it once per layer and
parameters): batch-norm and bias as (x - center) * scale + shift per filter, then leaky, relu or nothing, and, where
a 2x2 stride-2 [maxpool] follows (or follows the [route] the layer writes its output into), that pool of the rows
just finished into the pool layer's output (its channels of it). Where a plain residual [shortcut] follows, the
store's rows also take its residual, given beside the store per pass (`residual`: the planes of the layer it adds,
which only exist once that layer has run), added after the activation as the shortcut adds it. The
arithmetic is the fast modes' pass over the output (affine_activate_row, which kernels.conv's pass also runs), so
fused or not, the floats are the same; darknet's exact pass never comes here.

Products that store through it: Winograd's output transforms (three passes, bands, tiles as rows and --int16's
F(2x2); the residual too), and the chain kernel's register tiles: conv_direct's (the first layers, which then fill the
pool from each band of rows: `pool_rows`) and the packed ones (1 x 1 layers, which add the residual too, and the
packed columns of the larger ones), kernels.gemm's `_finished`, the affine and activation only (the packed ones not
where a pool is to be filled), for the int16 products' words too (each filter's factor first); the depthwise layers'
chains (kernels.conv.tap_chains, through the same `_finished`, the pool from each channel after); and the bf16
products on the AMX tiles, the affine and activation on each of C's tiles as it is stored (kernels/amx.py's
`_store_rows`, the same arithmetic in vector registers), the pool in a pass after (`pool`) but for conv_blocked's.
Any other product stores its raw sums and `apply` runs the same arithmetic afterwards.
"""
import math
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from .activations import LEAKY, LINEAR, RELU
from .pool import pool_windows

ACTIVATIONS = (LINEAR, LEAKY, RELU)   # those the store computes (one compare and a multiply)


class Store(NamedTuple):
    """One image's fused store: affine (3, filters) float32 rows center, scale, shift, or (4, filters) with each
    filter's factor in row 3, by which its sums are multiplied first (the int16 products' integer sums back to
    floats: `with_factors`); activation (LINEAR, LEAKY or RELU); pooled (filters, oh, ow), the 2x2 stride-2 max
    pool's output filled as rows are stored, or NO_POOL."""
    affine: np.ndarray
    activation: int
    pooled: np.ndarray


NO_POOL = np.zeros((0, 0, 0), np.float32)
NO_RESIDUAL_PLANES = np.zeros((0, 0, 0), np.float32)   # no residual added by store_rows (gemm's NO_RESIDUAL is flat)
NONE = Store(np.zeros((3, 0), np.float32), LINEAR, NO_POOL)   # the raw sums stored as they are


def with_factors(store):
    """`store` with a row of factors (affine's row 3, ones until the products fill it), in an affine of its own:
    each image's products write theirs."""
    return store._replace(affine=np.vstack((store.affine, np.ones((1, store.affine.shape[1]), np.float32))))


@njit(cache=True, inline="always")
def inverse_deviation(variance, ab):
    """1 / the deviation batch-norm divides by, in double as darknet divides: sqrt(var) + .000001 (`ab`: the fork's
    sqrt(var + .00001)). Multiplying by it rounds to the same float as darknet's division (the double's error is
    far below float's)."""
    if ab:
        return 1.0 / math.sqrt(np.float64(variance + np.float32(0.00001)))
    return 1.0 / (math.sqrt(np.float64(variance)) + np.float64(np.float32(0.000001)))


@njit(cache=True)
def affine_terms(f, mean, variance, scales, biases, normalize, ab):
    """(center, scale, shift) of filter f: darknet's batch-norm at inference and bias as one subtraction and one
    multiply-add; without batch-norm (0, 1, bias). The mean is subtracted first, not folded into the shift, where
    it would cancel."""
    if not normalize:
        return np.float32(0.0), np.float32(1.0), biases[f]
    return mean[f], np.float32(scales[f] * inverse_deviation(variance[f], ab)), biases[f]


@njit(cache=True)
def affine_table(mean, variance, scales, biases, normalize, ab):
    """affine_terms of every filter as a Store's affine rows (3, filters)."""
    table = np.empty((3, biases.size), np.float32)
    for f in range(biases.size):
        table[0, f], table[1, f], table[2, f] = affine_terms(f, mean, variance, scales, biases, normalize, ab)
    return table


@njit(cache=True, inline="always")
def affine_activate_row(row, center, scale, shift, activation):
    """row = activation((row - center) * scale + shift) in place: a subtraction, a multiply and an add, each
    rounded (the chain kernel's register tiles do the same: gemm._finished), then leaky's 0.1 x or relu in float32.
    Darknet multiplies leaky's 0.1 in double and normalizes in double, which the exact pass keeps; those conversions
    make it several times slower than this one."""
    tenth = np.float32(0.1)
    zero = np.float32(0.0)
    if activation == LEAKY:
        for i in range(row.size):
            v = (row[i] - center) * scale + shift
            row[i] = v if v > zero else tenth * v
    elif activation == RELU:
        for i in range(row.size):
            v = (row[i] - center) * scale + shift
            row[i] = v if v > zero else zero
    else:
        for i in range(row.size):
            row[i] = (row[i] - center) * scale + shift


@njit(cache=True, inline="always")
def store_rows(rows, y0, f, affine, activation, pooled, residual):
    """Filter f's finished output rows (n, out_w), output rows y0.. of the layer: the factor (where affine has one),
    the affine and activation in place, then the residual's rows added (residual (filters, out_h, out_w), or
    NO_RESIDUAL_PLANES), then, with a pool, the pool's rows from them (pool_rows)."""
    if affine.shape[1] == 0:
        return
    if affine.shape[0] > 3:
        rows *= affine[3, f]
    for i in range(rows.shape[0]):
        affine_activate_row(rows[i], affine[0, f], affine[1, f], affine[2, f], activation)
        if residual.size:
            add_residual_row(rows[i], residual, f, y0 + i)
    pool_rows(rows, y0, f, pooled)


@njit(cache=True, inline="always")
def add_residual_row(row, residual, i, j):
    """row += residual[i, j] (a [shortcut]'s other input, residual 3-d), element by element: a view of the
    residual's row cost more than the add on 13-wide rows."""
    for x in range(row.size):
        row[x] += residual[i, j, x]


@njit(cache=True, inline="always")
def pool_rows(rows, y0, f, pooled):
    """The pool's rows (pooled: the store's, or NO_POOL) from filter f's output rows (n, out_w) y0.., already
    finished (y0 even: whole windows; n odd only at the last row)."""
    pool_rows_at(rows, 0, rows.strides[0] // 4, rows.shape[0], rows.shape[1], y0, f, pooled)


@njit(cache=True, inline="always")
def pool_rows_at(src, at, step, n, width, y0, f, pooled):
    """pool_rows from the n rows `width` wide at src's element at (flat, rows `step` apart): pool.pool_windows
    into the pool's rows of filter f, from y0 // 2 on."""
    if pooled.size:
        to = f * (pooled.strides[0] // 4) + y0 // 2 * (pooled.strides[1] // 4)
        pool_windows(src, at, step, n, width, pooled, to, pooled.strides[1] // 4, (n + 1) // 2)


POOL_BAND = 16   # rows finished then pooled at a time by `apply` (even); 416 wide, 26 KiB, in L1


@njit(cache=True, parallel=True)
def _apply(out, width, affine, activation, pooled, residual):
    filters = out.shape[0]
    height = out.shape[1] // width
    for f in prange(filters):
        plane = out[f].reshape(height, width)
        for y0 in range(0, height, POOL_BAND):
            store_rows(plane[y0:y0 + POOL_BAND], y0, f, affine, activation, pooled, residual)


@njit(cache=True, parallel=True)
def _pool(out, width, pooled):
    for f in prange(out.shape[0]):
        pool_rows(out[f].reshape(-1, width), 0, f, pooled)


def pool(out, width, store):
    """The store's pool alone, from one image's output (filters, out_h*out_w) in rows `width` wide that its products
    finished as they stored it (amx._store_rows)."""
    if store.pooled.size:
        _pool(out, width, store.pooled)


def apply(out, width, store, residual=NO_RESIDUAL_PLANES):
    """The store on one image's raw sums out (filters, out_h*out_w) of rows `width` wide, in a pass of its own:
    for the products that do not store through it; `residual` (filters, out_h, out_w) added as store_rows adds it
    (to the raw sums where the store is NONE)."""
    if store.affine.shape[1]:
        _apply(out, width, *store, residual)
    elif residual.size:
        out += residual.reshape(out.shape)
