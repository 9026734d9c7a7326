"""Winograd's F(2x2, 3x3) and F(4x4, 3x3) for the fast products: a stride-1 3x3 convolution in n*n matrix
products over the channels (n = m + 2 for output tiles of m x m), 2.25x (m = 2) or 4x (m = 4) fewer
multiplications than im2col's product. Not darknet's bits (the transforms add and subtract before the
products): only for products.py's "fast" backend.

Every m x m block of outputs (a tile) comes from the n x n input patch around it:

    Y = A^T [ (G g G^T) * (B^T d B) ] A       (* elementwise over the n*n positions)

with g the 3x3 kernel, d the patch and the standard matrices of Lavin and Gray (points 0, +-1, +-2 for m = 4):
B^T (n x n), G (n x 3), A^T (m x n), applied below as the one-dimensional transforms _bt2/_at2 and _bt4/_at4
along columns, then rows. For each of the n*n positions the sum over input channels is a matrix product:
M[p] (filters x tiles) = U[p] (filters x channels) @ V[p] (channels x tiles), done by the chain kernel with
fused multiply-adds.

For large images F(4x4) also runs in bands of tile rows (conv_bands4), each band from input to output on one
thread: its V and M stay in that core's cache instead of going to memory and back between three passes. On small
images F(2x2) takes the tiles as the products' rows instead, M[p]^T = V[p]^T @ U[p]^T (products.winograd_rows:
13 x 13's 49 tiles fill 50 rows of tiles but 64 vector columns), its transforms running over the channels and
filters in vectors (transform_input2_rows, transform_output2_rows): the same sums, the same floats.
"""
import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .epilogue import store_rows
from .gemm import (_F32, _I32, _data, _i32, _i64, _lane_mask, _lanes, _masked_store, _panel_width, _splat,
                   packed_product)

_2, _4, _5, _8 = np.float32(2), np.float32(4), np.float32(5), np.float32(8)
G = {2: np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]]),
     4: np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
                  [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])}


def transform_weights(weights, channels, m):
    """U (n*n, filters, channels) = G g G^T for each filter's 3x3 kernels (weights (filters, channels*9)), for
    output tiles of m x m (n = m + 2), computed in double and rounded once (two matrix products: 2-3x
    faster than one einsum over the three)."""
    n = m + 2
    g = weights.reshape(weights.shape[0], channels, 3, 3).astype(np.float64)
    gg = np.tensordot(G[m], g, axes=([1], [2]))      # (n, filters, channels, 3): G g
    u = np.tensordot(gg, G[m], axes=([3], [1]))      # (n, filters, channels, n): G g G^T
    out = np.empty((n, n, weights.shape[0], channels), np.float32)
    np.copyto(out, u.transpose(0, 3, 1, 2), casting="same_kind")
    return out.reshape(n * n, weights.shape[0], channels)


@njit(cache=True, inline="always")
def _bt2(d0, d1, d2, d3):
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


@njit(cache=True, inline="always")
def _at2(m0, m1, m2, m3):
    return m0 + m1 + m2, m1 - m2 - m3


@njit(cache=True, inline="always")
def _bt4(d0, d1, d2, d3, d4, d5):
    a = d4 - _4 * d2
    b = d3 - _4 * d1
    c = d4 - d2
    e = _2 * (d3 - d1)
    return _4 * d0 - _5 * d2 + d4, a + b, a - b, c + e, c - e, _4 * d1 - _5 * d3 + d5


@njit(cache=True, inline="always")
def _at4(m0, m1, m2, m3, m4, m5):
    a = m1 + m2
    b = m1 - m2
    c = m3 + m4
    e = m3 - m4
    return m0 + a + c, b + _2 * e, a + _4 * c, b + _8 * e + m5


@njit(cache=True, inline="always")
def _chunks(count):
    """Tasks of a transform: runs of channels or filters, so that each task's scratch rows are made once."""
    return min(count, 16)


@njit(cache=True, inline="always")
def _padded_plane(plane, pad, buf):
    """buf = the image plane at offset (pad, pad), zeros around it, cut to buf's size: every tile's patch is
    then inside buf, and the transforms need no edge cases."""
    h, w = plane.shape
    hp, wp = buf.shape
    lo, hi = min(wp, pad), min(wp, w + pad)
    for y in range(hp):
        dst = buf[y]
        if y < pad or y >= h + pad:
            dst[:] = 0.0
        else:
            dst[:lo] = 0.0
            dst[lo:hi] = plane[y - pad, :hi - lo]
            dst[hi:] = 0.0


@njit(cache=True, inline="always")
def peak_bits(values):
    """The largest |value| of a float32 array's contiguous run (or of such bits), as its bits in an int32: those of
    the values without their sign, whose integer order is the magnitudes' with the infinities and NaNs above every
    finite value; their integer maximum vectorises (a float one waits on each comparison and skips NaNs)."""
    bits = values.view(np.int32)
    top = np.int32(0)
    for i in range(bits.size):
        top = max(top, bits[i] & np.int32(0x7FFFFFFF))
    return top


@njit(cache=True, parallel=True)
def transform_input2(x, pad, tiles_w, V, peaks=None):
    """V (16, channels, tiles or more) = B^T d B for the 4x4 patch d of every tile of x (channels, h, w), zeros
    outside the image; tile t = (ty, tx) starts at input pixel (2 ty - pad, 2 tx - pad), the tile rows those of the
    3x3 convolution's output (h + 2 pad - 2 rows). B^T runs down each column of a row of patches at once (rows of
    the padded plane, in vectors), then B along each patch's rows. With `peaks` (16, channels) int32, each
    position's largest |value| of each channel goes there (its bits: `peak_bits`), taken while the channel's V is in
    the cache: the int16 products round V per position (int16.conv_int16_winograd), and a pass of their own to find
    its peaks read all of V once more."""
    channels, ld = V.shape[1], V.shape[2]
    Vf = V.reshape(-1)
    tiles_h = (x.shape[1] + 2 * pad - 1) // 2
    hp, wp = 2 * tiles_h + 2, 2 * tiles_w + 2
    nchunk = _chunks(channels)
    for q in prange(nchunk):
        buf = np.empty((hp, wp), np.float32)
        col = _along_source(4, wp)
        for c in range(q * channels // nchunk, (q + 1) * channels // nchunk):
            _padded_plane(x[c], pad, buf)
            for ty in range(tiles_h):
                r0, r1, r2, r3 = buf[2 * ty], buf[2 * ty + 1], buf[2 * ty + 2], buf[2 * ty + 3]
                c0, c1, c2, c3 = col[0], col[1], col[2], col[3]
                for i in range(wp):
                    c0[i], c1[i], c2[i], c3[i] = _bt2(r0[i], r1[i], r2[i], r3[i])
                for i in range(4):
                    _bt2_along(col[i], Vf, (4 * i * channels + c) * ld + ty * tiles_w, channels * ld, tiles_w)
            if peaks is not None:
                for p in range(16):
                    start = (p * channels + c) * ld
                    peaks[p, c] = peak_bits(Vf[start:start + tiles_h * tiles_w])


@njit(cache=True, parallel=True)
def transform_input4(x, pad, tiles_w, V):
    """transform_input2 for F(4x4, 3x3): V (36, channels, tiles or more) from the 6x6 patches starting at
    (4 ty - pad, 4 tx - pad)."""
    channels = V.shape[1]
    tiles_h = (x.shape[1] + 2 * pad + 1) // 4
    hp, wp = 4 * tiles_h + 2, 4 * tiles_w + 2
    nchunk = _chunks(channels)
    for q in prange(nchunk):
        buf = np.empty((hp, wp), np.float32)
        col = _along_source(6, wp)
        for c in range(q * channels // nchunk, (q + 1) * channels // nchunk):
            _padded_plane(x[c], pad, buf)
            for ty in range(tiles_h):
                _input_row4(buf, 4 * ty, col, V, c, ty * tiles_w)


def _concat(builder, vectors):
    """The vectors' lanes side by side, as one vector."""
    joined = vectors[0]
    for vector in vectors[1:]:
        lanes, n = vector.type.count, joined.type.count
        wider = builder.shuffle_vector(vector, ir.Constant(vector.type, ir.Undefined),   # its lanes, then undefined
                                       ir.Constant(ir.VectorType(_I32, n), list(range(lanes)) + [lanes] * (n - lanes)))
        joined = builder.shuffle_vector(joined, wider, ir.Constant(ir.VectorType(_I32, n + lanes),
                                                                   list(range(n)) + list(range(n, n + lanes))))
    return joined


def _lanes_of(builder, vector, picked):
    """A vector of the given lanes of `vector`."""
    return builder.shuffle_vector(vector, vector, ir.Constant(ir.VectorType(_I32, len(picked)), list(picked)))


class _Vector:
    """An ir vector of floats that Python's +, - and * (by another or by a float32 constant) turn into LLVM's fadd,
    fsub and fmul, in the order Python evaluates them: the scalar transforms (_bt2.py_func, ...) written once, run
    on vectors of tiles. (__array_ufunc__ = None: numpy's float32 * _Vector comes to __rmul__.)"""
    __array_ufunc__ = None

    def __init__(self, builder, value):
        self.builder, self.value = builder, value

    def _operand(self, other):
        if isinstance(other, _Vector):
            return other.value
        return ir.Constant(self.value.type, [float(other)] * self.value.type.count)

    def __add__(self, other):
        return _Vector(self.builder, self.builder.fadd(self.value, self._operand(other)))

    def __sub__(self, other):
        return _Vector(self.builder, self.builder.fsub(self.value, self._operand(other)))

    def __mul__(self, other):
        return _Vector(self.builder, self.builder.fmul(self.value, self._operand(other)))

    def __rmul__(self, other):
        return _Vector(self.builder, self.builder.fmul(self._operand(other), self.value))


def _along(step, taps, transform, outputs):
    """One of the transforms along the tiles' rows as an intrinsic that takes a vector of tiles at a time (a loop
    over the tiles reads or writes floats `step` apart, one tile at a time: 0.37 of F(4x4)'s 0.51 ms input
    transform on 64 channels at 104 x 104). `transform`: _bt2, _at2, _bt4 or _at4, run on _Vectors: the same
    operations in the same order (no contraction), so the same floats as the scalar function.

    outputs "rows": (src, dst, d_off, d_stride, tiles): tile tx's `taps` inputs src[step tx ..] (whole vectors
    loaded, deinterleaved by shuffles), its outputs k to dst[d_off + k d_stride + tx]. outputs "interleaved":
    (src, s_off, s_stride, dst, tiles): tile tx's inputs src[s_off + j s_stride + tx], its `step` outputs to
    dst[step tx ..] (interleaved by shuffles, stored whole). Either way the last vector of tiles stores only the
    lanes below `tiles` and the loads read whole vectors past the last tile: src must hold them, zeros (the lanes
    past `tiles` compute on them; uninitialized memory made the pass 2.6x as slow: denormal floats)."""
    def codegen(context, builder, signature, args):
        lanes = _lanes(context)
        vec = ir.VectorType(_F32, lanes)

        def arithmetic(*values):
            return [out.value for out in transform.py_func(*(_Vector(builder, value) for value in values))]

        def at(i, offset):   # a vector pointer into argument i's data
            return builder.bitcast(builder.gep(_data(context, builder, signature.args[i], args[i]), [offset]),
                                   vec.as_pointer())

        def stored(value, pointer, mask):
            builder.call(_masked_store(builder, vec), [value, pointer, _i32(4), mask])

        tiles = args[4]
        with cgutils.for_range(builder, builder.sdiv(builder.add(tiles, _i64(lanes - 1)), _i64(lanes))) as loop:
            first = builder.mul(loop.index, _i64(lanes))
            left = _splat(builder, builder.sub(tiles, first), lanes)
            if outputs == "rows":   # args: src, dst, d_off, d_stride, tiles
                start = builder.mul(first, _i64(step))
                loads = -(-(step * (lanes - 1) + taps) // lanes)
                row = _concat(builder, [builder.load(at(0, builder.add(start, _i64(lanes * q))), align=4)
                                        for q in range(loads)])
                taps_ = [_lanes_of(builder, row, [k + step * j for j in range(lanes)]) for k in range(taps)]
                for k, out in enumerate(arithmetic(*taps_)):
                    stored(out, at(1, builder.add(args[2], builder.add(builder.mul(_i64(k), args[3]), first))),
                           _lane_mask(builder, 0, left))
            else:   # args: src, s_off, s_stride, dst, tiles
                inputs = [builder.load(at(0, builder.add(args[1], builder.add(builder.mul(_i64(j), args[2]), first))),
                                       align=4) for j in range(taps)]
                outs = _concat(builder, arithmetic(*inputs))
                interleaved = _lanes_of(builder, outs, [k * lanes + j for j in range(lanes) for k in range(step)])
                limit = _splat(builder, builder.mul(builder.sub(tiles, first), _i64(step)), lanes)
                start = builder.mul(first, _i64(step))
                for q in range(step):
                    stored(_lanes_of(builder, interleaved, range(q * lanes, (q + 1) * lanes)),
                           at(3, builder.add(start, _i64(q * lanes))), _lane_mask(builder, q * lanes, limit))
        return context.get_dummy_value()

    def typer(typingctx, a, b, c, d, e):
        floats = [x for x in (a, b, c, d, e) if isinstance(x, types.Array)]
        if len(floats) != 2 or any(x.dtype != types.float32 for x in floats):
            return None
        return types.void(a, b, c, d, e), codegen

    return intrinsic(typer)


_bt2_along = _along(2, 4, _bt2, "rows")
_at2_along = _along(2, 4, _at2, "interleaved")
_bt4_along = _along(4, 6, _bt4, "rows")
_at4_along = _along(4, 6, _at4, "interleaved")


@njit(cache=True, inline="always")
def _along_source(count, floats):
    """`count` rows of zeros for a transform along the tiles' rows to read (_along's src): `floats` each (a padded
    plane's width, or a row of tiles), then the whole vectors its loads reach past them, 3 NR floats at most
    (F(4x4)'s input: 5 vectors from its last vector of tiles' start, 4 floats a tile)."""
    return np.zeros((count, floats + 3 * _panel_width()), np.float32)


@njit(cache=True, inline="always")
def _input_row4(plane, y0, col, V, c, t0):
    """B^T d B for a row of tiles: the 6x6 patches in rows y0.. of the padded plane, tile tx's 36 values to
    V[p, c, t0 + tx] (position p). B^T runs down the patches' columns (col: 6 rows of the plane's width), then
    B along each tile's row."""
    r0, r1, r2, r3, r4, r5 = plane[y0], plane[y0 + 1], plane[y0 + 2], plane[y0 + 3], plane[y0 + 4], plane[y0 + 5]
    c0, c1, c2, c3, c4, c5 = col[0], col[1], col[2], col[3], col[4], col[5]
    for i in range(plane.shape[1]):
        c0[i], c1[i], c2[i], c3[i], c4[i], c5[i] = _bt4(r0[i], r1[i], r2[i], r3[i], r4[i], r5[i])
    channels, ld = V.shape[1], V.shape[2]
    Vf = V.reshape(-1)
    for i in range(6):
        _bt4_along(col[i], Vf, (6 * i * channels + c) * ld + t0, channels * ld, (plane.shape[1] - 2) // 4)


@njit(cache=True, parallel=True)
def transform_output2(M, tiles_w, out_h, out_w, out, affine, activation, pooled, residual, pooled_only,
                      scales=None):
    """out (filters, out_h*out_w) = A^T m A for every tile's 4x4 m of M (16, filters, tiles or more): its 2x2
    outputs, those inside the output, finished by the store (affine, activation, pooled: kernels.epilogue's Store;
    residual: the planes store_rows adds, or NO_RESIDUAL_PLANES); with `pooled_only` (given only with a pool, for
    an output only the pool reads) out is left unwritten and only the pool's output written (_store_rows).
    With `scales` (16, filters), each position's sums of each filter are multiplied by its scale as they are read
    (the int16 products' integer sums back to floats: int16.conv_int16_winograd), the same floats as a pass over
    M before. A^T runs over a row of tiles at once, then A along each tile's rows."""
    filters = M.shape[1]
    tiles_h = (out_h + 1) // 2
    nchunk = _chunks(filters)
    for q in prange(nchunk):
        s = _along_source(8, tiles_w).reshape(2, 4, -1)
        sf = s.reshape(-1)
        rows = np.empty((2, 2 * tiles_w), np.float32)
        for f in range(q * filters // nchunk, (q + 1) * filters // nchunk):
            dst = out[f]
            for ty in range(tiles_h):
                base = ty * tiles_w
                for j in range(4):
                    m0, m1, m2, m3 = M[j, f], M[4 + j, f], M[8 + j, f], M[12 + j, f]
                    s0, s1 = s[0, j], s[1, j]
                    k0 = k1 = k2 = k3 = np.float32(1.0)   # (a product by 1 is exact)
                    if scales is not None:
                        k0, k1, k2, k3 = scales[j, f], scales[4 + j, f], scales[8 + j, f], scales[12 + j, f]
                    for tx in range(tiles_w):
                        t = base + tx
                        s0[tx], s1[tx] = _at2(m0[t] * k0, m1[t] * k1, m2[t] * k2, m3[t] * k3)
                for i in range(2):
                    _at2_along(sf, 4 * i * s.shape[2], s.shape[2], rows[i], tiles_w)
                _store_rows(rows, 2 * ty, out_h, out_w, dst, f, affine, activation, pooled, residual, pooled_only)


@njit(cache=True, parallel=True)
def transform_output4(M, tiles_w, out_h, out_w, out, affine, activation, pooled, residual, pooled_only):
    """transform_output2 for F(4x4, 3x3): M (36, filters, tiles or more), 4x4 outputs per tile."""
    filters, ld = M.shape[1], M.shape[2]
    tiles_h = (out_h + 3) // 4
    nchunk = _chunks(filters)
    Mf = M.reshape(-1)
    for q in prange(nchunk):
        s = _along_source(24, tiles_w).reshape(4, 6, -1)
        rows = np.empty((4, 4 * tiles_w), np.float32)
        for f in range(q * filters // nchunk, (q + 1) * filters // nchunk):
            for ty in range(tiles_h):
                _output_row4(Mf, f * ld + ty * tiles_w, filters * ld, s, rows, 4 * ty, out_h, out_w, out[f], f,
                             affine, activation, pooled, residual, pooled_only)


@njit(cache=True, inline="always")
def _output_row4(Mf, q, stride, s, rows, y0, out_h, out_w, dst, f, affine, activation, pooled, residual,
                 pooled_only):
    """A^T m A for a row of tiles (tile tx's m at Mf[q + p * stride + tx], position p): A^T over the row at
    once (s: (4, 6, tiles or more), zeros past the tiles), then A along each tile's rows (rows (4, 4 tiles)), stored
    to the output rows y0.. of dst (out_h*out_w), filter f's, through the store (affine, activation, pooled,
    residual; _store_rows, pooled_only).
    (M is read flat: slices of it ran 25-30 % faster here than rows of a 3-d M.)"""
    tiles_w = rows.shape[1] // 4
    for j in range(6):
        o = q + j * stride
        m0, m1, m2 = Mf[o:o + tiles_w], Mf[o + 6 * stride:], Mf[o + 12 * stride:]
        m3, m4, m5 = Mf[o + 18 * stride:], Mf[o + 24 * stride:], Mf[o + 30 * stride:]
        s0, s1, s2, s3 = s[0, j], s[1, j], s[2, j], s[3, j]
        for tx in range(tiles_w):
            s0[tx], s1[tx], s2[tx], s3[tx] = _at4(m0[tx], m1[tx], m2[tx], m3[tx], m4[tx], m5[tx])
    sf = s.reshape(-1)
    for i in range(4):
        _at4_along(sf, 6 * i * s.shape[2], s.shape[2], rows[i], tiles_w)
    _store_rows(rows, y0, out_h, out_w, dst, f, affine, activation, pooled, residual, pooled_only)


@njit(cache=True, inline="always")
def _store_rows(rows, y0, out_h, out_w, dst, f, affine, activation, pooled, residual, pooled_only):
    """The output rows y0.. of a row of tiles (rows: one per tile row, tiles side by side) into dst (out_h*out_w),
    those inside the output, then finished there by filter f's store (kernels.epilogue.store_rows) while they are in
    the cache. With `pooled_only` (only the store's pool reads the output) they are finished where they are and
    pooled from there, and dst is left as it was: the output's planes, often larger than a core's L2, are neither
    written nor read again."""
    n = min(rows.shape[0], out_h - y0)
    if pooled_only:
        store_rows(rows[:n, :out_w], y0, f, affine, activation, pooled, residual)
        return
    for i in range(n):
        row = rows[i]
        o = (y0 + i) * out_w
        for x in range(out_w):
            dst[o + x] = row[x]
    store_rows(dst[y0 * out_w:(y0 + n) * out_w].reshape(n, out_w), y0, f, affine, activation, pooled, residual)


@njit(cache=True, parallel=True)
def winograd_products(up, V, channels, tiles, M):
    """M[p] = U[p] @ V[p] for every position p, U packed (products.pack_winograd), V (positions, channels, ld)
    flat with whole vectors past its end, M (positions, filters, ld), the first `tiles` of each row of ld: a
    position per task, the chain kernel with fused multiply-adds."""
    positions, filters, ld = M.shape
    Mf = M.reshape(-1)
    for p in prange(positions):
        packed_product(up[p], V, p * channels * ld, ld, Mf, p * filters * ld, ld, filters, tiles, channels, True)


@njit(cache=True, parallel=True)
def transform_input2_rows(x, pad, xt, VT):
    """transform_input2's V with the tiles as rows, VT (16, tiles, channels), the same floats: from the image made
    channel-last and padded in xt (2 tiles_h + 2, 2 tiles_w + 2, channels), so that every step runs over the
    channels in vectors (through a transposed view of V the same steps ran 3x as long)."""
    channels, h, w = x.shape
    hp, wp = xt.shape[0], xt.shape[1]
    tiles_w = (wp - 2) // 2
    for y in prange(hp):
        iy = y - pad
        for ix in range(wp):
            xt[y, ix, :] = 0.0
        if 0 <= iy < h:
            for c in range(channels):
                src = x[c, iy]
                for ix in range(max(0, pad), min(wp, w + pad)):
                    xt[y, ix, c] = src[ix - pad]
    for t in prange(VT.shape[1]):
        y0 = t // tiles_w * 2
        x0 = (t - y0 // 2 * tiles_w) * 2
        r0, r1, r2, r3 = xt[y0], xt[y0 + 1], xt[y0 + 2], xt[y0 + 3]
        for c in range(channels):
            c00, c10, c20, c30 = _bt2(r0[x0, c], r1[x0, c], r2[x0, c], r3[x0, c])
            c01, c11, c21, c31 = _bt2(r0[x0 + 1, c], r1[x0 + 1, c], r2[x0 + 1, c], r3[x0 + 1, c])
            c02, c12, c22, c32 = _bt2(r0[x0 + 2, c], r1[x0 + 2, c], r2[x0 + 2, c], r3[x0 + 2, c])
            c03, c13, c23, c33 = _bt2(r0[x0 + 3, c], r1[x0 + 3, c], r2[x0 + 3, c], r3[x0 + 3, c])
            VT[0, t, c], VT[1, t, c], VT[2, t, c], VT[3, t, c] = _bt2(c00, c01, c02, c03)
            VT[4, t, c], VT[5, t, c], VT[6, t, c], VT[7, t, c] = _bt2(c10, c11, c12, c13)
            VT[8, t, c], VT[9, t, c], VT[10, t, c], VT[11, t, c] = _bt2(c20, c21, c22, c23)
            VT[12, t, c], VT[13, t, c], VT[14, t, c], VT[15, t, c] = _bt2(c30, c31, c32, c33)


@njit(cache=True, parallel=True)
def transform_output2_rows(MT, yt, out_h, out_w, out, affine, activation, pooled, residual):
    """transform_output2 from M with the tiles as rows, MT (16, tiles, filters): each tile's 2x2 outputs over the
    filters in vectors into yt (2 tiles_h, 2 tiles_w, filters), channel-last, then copied into out (filters,
    out_h*out_w), those inside the output, each filter's plane finished by the store (affine, activation, pooled,
    residual: as transform_output2's) while it is in the cache. The same floats."""
    tiles_w = yt.shape[1] // 2
    filters = MT.shape[2]
    for t in prange(MT.shape[1]):
        y0 = t // tiles_w * 2
        x0 = (t - y0 // 2 * tiles_w) * 2
        a, b = yt[y0], yt[y0 + 1]
        for f in range(filters):
            s00, s10 = _at2(MT[0, t, f], MT[4, t, f], MT[8, t, f], MT[12, t, f])
            s01, s11 = _at2(MT[1, t, f], MT[5, t, f], MT[9, t, f], MT[13, t, f])
            s02, s12 = _at2(MT[2, t, f], MT[6, t, f], MT[10, t, f], MT[14, t, f])
            s03, s13 = _at2(MT[3, t, f], MT[7, t, f], MT[11, t, f], MT[15, t, f])
            a[x0, f], a[x0 + 1, f] = _at2(s00, s01, s02, s03)
            b[x0, f], b[x0 + 1, f] = _at2(s10, s11, s12, s13)
    for f in prange(filters):
        dst = out[f]
        for y in range(out_h):
            src = yt[y]
            for x in range(out_w):
                dst[y * out_w + x] = src[x, f]
        store_rows(dst.reshape(out_h, out_w), 0, f, affine, activation, pooled, residual)


@njit(cache=True, parallel=True)
def winograd_products_rows(a, up, MT):
    """MT[p] (tiles, filters) = V[p]^T @ U[p]^T for every position p: winograd_products' sums with the tiles as the
    rows, a (positions, packed) V^T packed by gemm.pack_a_batch, and the filters as the columns, up (positions,
    panels, channels, NR) products.pack_winograd's U^T in panels: each element the same chain over the channels as
    M[p]'s, so the same floats. A position's panel per task."""
    positions, panels, channels, NR = up.shape
    tiles, filters = MT.shape[1], MT.shape[2]
    upf = up.reshape(-1)
    MTf = MT.reshape(-1)
    for task in prange(positions * panels):
        p = task // panels
        j = task - p * panels
        packed_product(a[p], upf, (p * panels + j) * channels * NR, NR, MTf, p * tiles * filters + j * NR, filters,
                       tiles, min(NR, filters - j * NR), channels, True)


@njit(cache=True, parallel=True)
def padded_image(x, pad, xp):
    """xp (channels, hp, wp) = x (channels, h, w) at offset (pad, pad), zeros around it, cut to xp's size."""
    for c in prange(x.shape[0]):
        _padded_plane(x[c], pad, xp[c])


@njit(cache=True, parallel=True)
def conv_bands4(xp, up, filters, out_h, out_w, rows, work, out, affine, activation, pooled, residual, pooled_only):
    """out (filters, out_h*out_w) = F(4x4, 3x3) of the padded image xp (channels, 4 tiles_h + 2, 4 tiles_w + 2)
    in bands of `rows` tile rows, one band per task: transform_input4's V, the 36 products and
    transform_output4's sums finished by the store (affine, activation, pooled, residual, pooled_only: as
    transform_output2's), with V (36, channels, band tiles) and M (36, filters, band tiles) in that thread's part
    of work (threads, 36 * (channels + filters) * band tiles + NR floats: the products read whole vectors).
    up is transform_weights' U packed by gemm.pack_a_batch. The same sums as the three passes, bit for bit."""
    channels, wp = xp.shape[0], xp.shape[2]
    NR = _panel_width()
    tiles_w = (out_w + 3) // 4
    tiles_h = (out_h + 3) // 4
    ld = rows * tiles_w
    vstride, mstride = channels * ld, filters * ld
    for b in prange((tiles_h + rows - 1) // rows):
        ty0 = b * rows
        ty1 = min(tiles_h, ty0 + rows)
        V = work[numba.get_thread_id()]
        M = V[36 * vstride + NR:]
        V3 = V[:36 * vstride].reshape(36, channels, ld)
        col = _along_source(6, wp)
        s = _along_source(24, tiles_w).reshape(4, 6, -1)
        rows_out = np.empty((4, 4 * tiles_w), np.float32)
        for c in range(channels):
            for ty in range(ty0, ty1):
                _input_row4(xp[c], 4 * ty, col, V3, c, (ty - ty0) * tiles_w)
        for p in range(36):
            packed_product(up[p], V, p * vstride, ld, M, p * mstride, ld, filters, (ty1 - ty0) * tiles_w, channels,
                           True)
        for f in range(filters):
            for ty in range(ty0, ty1):
                _output_row4(M, f * ld + (ty - ty0) * tiles_w, mstride, s, rows_out, 4 * ty, out_h, out_w, out[f], f,
                             affine, activation, pooled, residual, pooled_only)
