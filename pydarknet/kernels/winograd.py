"""Winograd's F(2x2, 3x3) for the fast products: a stride-1 3x3 convolution in 16 matrix products of a quarter
of the size, 2.25x fewer multiplications than im2col's product. Not darknet's bits (the transforms add and
subtract before the products): only for products.py's "fast" backend.

Every 2x2 block of outputs (a tile) comes from the 4x4 input patch around it:

    Y = A^T [ (G g G^T) * (B^T d B) ] A       (* elementwise over the 16 positions)

with g the 3x3 kernel, d the patch and the standard matrices B^T (4x4), G (4x3), A^T (2x4) below. For each of
the 16 positions the sum over input channels is a matrix product: M[p] (filters x tiles) = U[p] (filters x
channels) @ V[p] (channels x tiles), done by the chain kernel with fused multiply-adds.
"""
import numpy as np
from numba import njit, prange

G = np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]])


def transform_weights(weights, channels):
    """U (16, filters, channels) = G g G^T for each filter's 3x3 kernels (weights (filters, channels*9)), computed
    in double and rounded once."""
    g = weights.reshape(weights.shape[0], channels, 3, 3).astype(np.float64)
    u = np.einsum("ik,fckl,jl->ijfc", G, g, G)
    return np.ascontiguousarray(u.reshape(16, weights.shape[0], channels), dtype=np.float32)


@njit(cache=True, parallel=True)
def transform_input(x, c0, pad, tiles_w, V):
    """V (16, channels, tiles) = B^T d B for the 4x4 patch d of every tile of channels c0.. of x (c, h, w),
    zeros outside the image; tile t = (ty, tx) starts at input pixel (2 ty - pad, 2 tx - pad)."""
    h, w = x.shape[1], x.shape[2]
    channels, tiles = V.shape[1], V.shape[2]
    for c in prange(channels):
        plane = x[c0 + c]
        d = np.empty((4, 4), np.float32)
        for t in range(tiles):
            y0 = 2 * (t // tiles_w) - pad
            x0 = 2 * (t % tiles_w) - pad
            if 0 <= y0 and y0 + 4 <= h and 0 <= x0 and x0 + 4 <= w:
                for i in range(4):
                    for j in range(4):
                        d[i, j] = plane[y0 + i, x0 + j]
            else:
                for i in range(4):
                    for j in range(4):
                        inside = 0 <= y0 + i < h and 0 <= x0 + j < w
                        d[i, j] = plane[y0 + i, x0 + j] if inside else 0.0
            for j in range(4):   # B^T d, column by column
                a, b, e, f = d[0, j], d[1, j], d[2, j], d[3, j]
                d[0, j] = a - e
                d[1, j] = b + e
                d[2, j] = e - b
                d[3, j] = b - f
            for i in range(4):   # (B^T d) B, row by row
                a, b, e, f = d[i, 0], d[i, 1], d[i, 2], d[i, 3]
                V[4 * i, c, t] = a - e
                V[4 * i + 1, c, t] = b + e
                V[4 * i + 2, c, t] = e - b
                V[4 * i + 3, c, t] = b - f


@njit(cache=True, parallel=True)
def transform_output(M, tiles_w, out_h, out_w, out):
    """out (filters, out_h*out_w) = A^T m A for every tile's 4x4 m of M (16, filters, tiles): its 2x2 outputs,
    those inside the output."""
    filters, tiles = M.shape[1], M.shape[2]
    for f in prange(filters):
        row = out[f]
        s = np.empty((2, 4), np.float32)
        for t in range(tiles):
            y0 = 2 * (t // tiles_w)
            x0 = 2 * (t % tiles_w)
            for j in range(4):   # A^T m
                s[0, j] = M[j, f, t] + M[4 + j, f, t] + M[8 + j, f, t]
                s[1, j] = M[4 + j, f, t] - M[8 + j, f, t] - M[12 + j, f, t]
            for i in range(2):   # (A^T m) A
                y = y0 + i
                if y < out_h:
                    row[y * out_w + x0] = s[i, 0] + s[i, 1] + s[i, 2]
                    if x0 + 1 < out_w:
                        row[y * out_w + x0 + 1] = s[i, 1] - s[i, 2] - s[i, 3]
