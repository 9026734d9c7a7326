"""Pooling: darknet's max pool (with its offset padding rule), the AlexeyAB fork's max pool across channels
(maxpool_depth) and its local average pool. The global average pool is kernels/avgpool.py."""
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from .gemm import (_F32, _I32, _data, _i32, _is_f32_array, _lane_mask, _lanes, _masked_load, _masked_store,
                   _panel_width, _splat, _vec_ptr, copy_run)

FLT_MAX = np.float32(3.4028234663852886e38)
POOL_PARTS = 64   # maxpool's channels go in this many parts, a scratch each (not one a channel)


@njit(cache=True, parallel=True)
def maxpool(x, size, stride_y, stride_x, pad, out, argmax, keep_argmax):
    """x (n, c, h, w) -> out (n, c, oh, ow); with keep_argmax, argmax (int32, out's shape) gets the flat index
    (within x[b]) each maximum came from (training needs it, inference does not).

    The window starts pad//2 pixels up and left of the stride grid (rows stride_y apart, columns stride_x);
    pixels outside count as -FLT_MAX, so a window entirely outside gives -FLT_MAX (and argmax -1), as in
    darknet. Ties keep the first maximum in darknet's window order (row by row).
    """
    if keep_argmax:
        _maxpool_argmax(x, size, stride_y, stride_x, pad, out, argmax)
        return
    n, c = x.shape[0], x.shape[1]
    parts = min(n * c, POOL_PARTS)
    for part in prange(parts):
        across = pool_scratch(x.shape[2], out.shape[2], out.shape[3], size)
        for k in range(part * n * c // parts, (part + 1) * n * c // parts):
            maxpool_plane(x[k // c, k % c], size, stride_y, stride_x, pad, out[k // c, k % c], across)


@njit(cache=True, inline="always")
def _larger(v, m):
    """darknet's running maximum: v replaces m only if greater (a NaN never does)."""
    return v if v > m else m


@njit(cache=True)
def pool_scratch(h, oh, ow, size):
    """maxpool_plane's scratch for planes of h rows pooled into oh x ow by windows of size x size."""
    return np.empty((max(h + 1, oh + size + 1), ow + size - 1), np.float32)


@njit(cache=True)
def maxpool_plane(plane, size, stride_y, stride_x, pad, out, across):
    """One channel of maxpool: plane (h, w) -> out (oh, ow). across: scratch (pool_scratch): each input row's
    maxima over every window's columns (its last row, one tap of every window side by side), then each output row
    the maximum of its window's rows of those. Taking rows then columns picks what darknet's walk over each
    window, row by row, picks: the largest value, and of equal ones (+0 and -0) the first in that walk, since each
    step keeps the first of equals. It reads each row once per window column instead of once per window; at
    stride 1 for windows from 3 x 3 (the SPP blocks' 5 x 5 to 13 x 13), fewer times still (`_maxpool_stride1`)."""
    h, w = plane.shape
    oh, ow = out.shape
    offset = -(pad // 2)
    if tiles_2x2(h, w, oh, ow, size, stride_y, stride_x, pad):
        maxpool_2x2(plane, out)
        return
    if stride_y == 1 and stride_x == 1 and size > 2:
        _maxpool_stride1(plane, size, offset, out, across)
        return
    taps = across[h]
    for y in range(h):
        arow, irow = across[y], plane[y]
        arow[:] = -FLT_MAX
        for dx in range(size):
            # output columns j whose input column offset + j*stride + dx is inside [0, w)
            j0 = min(ow, max(0, -((offset + dx) // stride_x)))
            j1 = max(j0, min(ow, (w - 1 - offset - dx) // stride_x + 1))
            first = offset + dx + j0 * stride_x
            if stride_x <= 2:   # a vector copy (see copy_run), then a loop from 0 that vectorizes
                copy_run(irow, first, stride_x, taps, 0, j1 - j0)
            else:
                for j in range(j1 - j0):
                    taps[j] = irow[first + j * stride_x]
            dst = arow[j0:j1]
            for j in range(j1 - j0):
                dst[j] = _larger(taps[j], dst[j])
    for i in range(oh):
        orow = out[i]
        y0 = offset + i * stride_y
        orow[:] = -FLT_MAX
        for y in range(max(0, y0), min(h, y0 + size)):
            arow = across[y]
            for j in range(ow):
                orow[j] = _larger(arow[j], orow[j])


@njit(cache=True)
def _maxpool_stride1(plane, size, offset, out, rows):
    """maxpool_plane at stride 1: the maxima of runs of `size` taken by doubling, first along each row (rows[t],
    of the rows the windows cover from `offset`, becomes each window's maximum in that row), then down the
    columns, in place: a run of 2d is the larger of its two runs of d, and a run of `size` the larger of the two
    runs of the largest such d that cover it (overlapping). Each step keeps the earlier of equals, so the result is
    the first maximum in darknet's walk, as in maxpool_plane; values no greater than -FLT_MAX (NaN, -inf) are
    -FLT_MAX first, as darknet's walk from -FLT_MAX never takes them. log2(size) + 1 passes instead of `size`.
    A row's runs go back and forth between two lines of the scratch: a line read and written a few floats apart
    kept the loop scalar."""
    h, w = plane.shape
    oh, ow = out.shape
    covered = oh + size - 1
    span = ow + size - 1
    half = 1
    while 2 * half <= size:
        half *= 2
    first, last = min(max(-offset, 0), span), min(max(w - offset, 0), span)
    for t in range(covered):
        y = offset + t
        row = rows[t]
        if y < 0 or y >= h:
            row[:ow] = -FLT_MAX
            continue
        line = rows[covered]
        line[:first] = -FLT_MAX
        inside, image = line[first:last], plane[y, offset + first:offset + last]
        for u in range(last - first):
            inside[u] = _larger(image[u], -FLT_MAX)
        line[last:] = -FLT_MAX
        runs, other, d = covered, covered + 1, 1   # (the lines holding this row's runs, and the next ones)
        while d < half:
            _run_pairs(rows[runs], d, rows[other], span - 2 * d + 1)
            runs, other, d = other, runs, 2 * d
        _run_pairs(rows[runs], size - half, row, ow)
    d = 1
    while d < half:
        for t in range(covered - 2 * d + 1):
            _larger_into(rows[t], rows[t + d], ow)
        d *= 2
    for i in range(oh):
        _larger_rows(rows[i], rows[i + size - half], out[i], ow)


@njit(cache=True, inline="always")
def _run_pairs(line, d, dst, n):
    """dst[u] = the larger of line[u + d] and line[u], the earlier of equals, for u < n. (Indexed by the loop's
    own counter, on a slice: indexing line by u + d kept Numba's negative-index check, and the loop scalar.)"""
    _larger_rows(line, line[d:d + n], dst, n)


@njit(cache=True, inline="always")
def _larger_into(earlier, later, n):
    """earlier[j] = the larger of later[j] and earlier[j], the earlier of equals, for j < n. (One array read and
    written: as _larger_rows with dst the same memory, the loop stayed scalar.)"""
    for j in range(n):
        earlier[j] = _larger(later[j], earlier[j])


@njit(cache=True, inline="always")
def _larger_rows(earlier, later, dst, n):
    """dst[j] = the larger of later[j] and earlier[j], the earlier of equals, for j < n."""
    for j in range(n):
        dst[j] = _larger(later[j], earlier[j])


@njit(cache=True, inline="always")
def tiles_2x2(h, w, oh, ow, size, stride_y, stride_x, pad):
    """Whether the pool's windows are 2x2 at stride 2 from the plane's corner, covering it (yolov3-tiny's and
    yolov4-tiny's pools; Tiny Darknet's on odd sizes, 75 -> 38, whose last windows hang one pixel over the edge):
    each output row then reads two input rows of its own."""
    return (size == 2 and stride_y == 2 and stride_x == 2 and pad // 2 == 0 and 0 <= 2 * oh - h <= 1
            and 0 <= 2 * ow - w <= 1)


@njit(cache=True)
def maxpool_2x2(plane, out):
    """maxpool_plane where tiles_2x2: two input rows per output row, no padding to skip but a last row or column
    past an odd edge (see `pool_windows`). The rows (plane's and out's last axis) must be contiguous."""
    pool_windows(plane, 0, plane.strides[0] // 4, plane.shape[0], plane.shape[1], out, 0, out.strides[0] // 4,
                 out.shape[0])


@njit(cache=True, inline="always")
def pool_windows(src, at, step, h, w, dst, to, to_step, rows):
    """The first `rows` output rows of a 2x2 max pool at stride 2 over h input rows w wide, row y at src's element
    at + y * step, into dst's rows of (w + 1) // 2, row i at element to + i * to_step (element offsets from the
    arrays' starts), a vector of windows at a time (`_windows`). A window's missing row is its first row again,
    and its missing column is left out: the same maximum, as darknet's -FLT_MAX outside the image gives."""
    lanes = _panel_width() // 2
    windows = (w + 1) // 2
    for i in range(rows):
        first = at + 2 * i * step
        second = first + step if 2 * i + 1 < h else first
        for j in range(0, windows, lanes):
            n = min(lanes, windows - j)
            _windows(src, first + 2 * j, second + 2 * j, min(2 * n, w - 2 * j), dst, to + i * to_step + j, n)


@intrinsic
def _windows(typingctx, src, first, second, inputs, dst, at, n):
    """dst's elements at..at+n-1 (n at most one vector; element offsets from the arrays' starts) = the maxima of
    the 2x2 windows whose rows' inputs start at src elements `first` and `second`, `inputs` of them in each row:
    window l in darknet's walk over first + 2l, first + 2l + 1, second + 2l, second + 2l + 1 (those under
    `inputs`), each kept only if greater than the maximum so far (from -FLT_MAX: a NaN never is, and of +0 and -0
    the first stays), maxpool_plane's floats. Each row's two vectors of inputs are split into their even and odd
    columns by shuffles, the last vector's columns masked: the loop over windows that read them two floats apart
    took 50-75 ns a row of 38 windows, in cache, its remainder one window at a time (9-13 ns so)."""
    if not (_is_f32_array(src) and _is_f32_array(dst)):
        return None

    def codegen(context, builder, signature, args):
        lanes = _lanes(context)
        vec = ir.VectorType(_F32, lanes)
        data, out = _data(context, builder, signature.args[0], args[0]), _data(context, builder, signature.args[4],
                                                                                  args[4])
        low = ir.Constant(vec, [float(-FLT_MAX)] * lanes)
        inside = _splat(builder, args[3], lanes)

        def columns(start, parity):
            halves = [builder.call(_masked_load(builder, vec), [_vec_ptr(builder, builder.gep(data, [start]), at, vec),
                                                                _i32(4), _lane_mask(builder, at, inside), low])
                      for at in (0, lanes)]
            pick = ir.Constant(ir.VectorType(_I32, lanes), [2 * lane + parity for lane in range(lanes)])
            return builder.shuffle_vector(*halves, pick)

        largest = low
        for start in args[1:3]:
            for parity in (0, 1):
                v = columns(start, parity)
                largest = builder.select(builder.fcmp_ordered(">", v, largest), v, largest)
        builder.call(_masked_store(builder, vec), [largest, _vec_ptr(builder, builder.gep(out, [args[5]]), 0, vec),
                                                   _i32(4), _lane_mask(builder, 0, _splat(builder, args[6], lanes))])
        return context.get_dummy_value()
    return types.void(src, types.intp, types.intp, types.intp, dst, types.intp, types.intp), codegen


@njit(cache=True, parallel=True)
def _maxpool_argmax(x, size, stride_y, stride_x, pad, out, argmax):
    """The training path: one output window at a time, the window's loops innermost (darknet's order);
    2x2 windows at stride 2 that lie inside the image take a branch-free path."""
    n, c, h, w = x.shape
    oh, ow = out.shape[2], out.shape[3]
    offset = -(pad // 2)
    for k in prange(n * c):
        b = k // c
        ch = k % c
        plane = x[b, ch]
        base = ch * h * w
        for i in range(oh):
            orow = out[b, ch, i]
            arow = argmax[b, ch, i]
            y0 = offset + i * stride_y
            # output columns whose whole window is inside the image: j0 <= j < j1
            j0 = min(ow, (stride_x - 1 - offset) // stride_x)
            j1 = max(j0, min(ow, (w - size - offset) // stride_x + 1))
            if size == 2 and stride_x == 2 and y0 >= 0 and y0 + 1 < h:
                r0 = plane[y0]
                r1 = plane[y0 + 1]
                i0 = base + y0 * w + offset
                i1 = i0 + w
                for j in range(j0, j1):
                    x0 = 2 * j
                    best = -FLT_MAX
                    at = np.int32(-1)
                    v = r0[x0 + offset]
                    if v > best:
                        best = v
                        at = np.int32(i0 + x0)
                    v = r0[x0 + offset + 1]
                    if v > best:
                        best = v
                        at = np.int32(i0 + x0 + 1)
                    v = r1[x0 + offset]
                    if v > best:
                        best = v
                        at = np.int32(i1 + x0)
                    v = r1[x0 + offset + 1]
                    if v > best:
                        best = v
                        at = np.int32(i1 + x0 + 1)
                    orow[j] = best
                    arow[j] = at
                lo, hi = j0, j1
            else:
                lo, hi = 0, 0
            for j in range(ow):
                if lo <= j < hi:
                    continue
                xs = offset + j * stride_x
                best = -FLT_MAX
                at = np.int32(-1)
                for dy in range(size):
                    y = y0 + dy
                    if y < 0 or y >= h:
                        continue
                    irow = plane[y]
                    for dx in range(size):
                        xx = xs + dx
                        if xx < 0 or xx >= w:
                            continue
                        v = irow[xx]
                        if v > best:
                            best = v
                            at = np.int32(base + y * w + xx)
                orow[j] = best
                arow[j] = at


@njit(cache=True, parallel=True)
def maxpool_depth(x, out, argmax, keep_argmax):
    """The fork's maxpool_depth: out (n, g, h, w), channel k of out the maximum over the input channels k,
    k + g, k + 2g, ... at each pixel (first maximum on ties); argmax as maxpool's."""
    n, c, h, w = x.shape
    g = out.shape[1]
    for task in prange(n * h):
        b = task // h
        y = task % h
        for k in range(g):
            for xx in range(w):
                best = -FLT_MAX
                at = np.int32(-1)
                for ch in range(k, c, g):
                    v = x[b, ch, y, xx]
                    if v > best:
                        best = v
                        at = np.int32((ch * h + y) * w + xx)
                out[b, k, y, xx] = best
                if keep_argmax:
                    argmax[b, k, y, xx] = at


@njit(cache=True, parallel=True)
def local_avgpool(x, size, stride_y, stride_x, pad, out):
    """The fork's [local_avgpool]: the mean over each size x size window (placed as maxpool's) of the pixels
    inside the image, in float as it sums them."""
    n, c, h, w = x.shape
    oh, ow = out.shape[2], out.shape[3]
    offset = -(pad // 2)
    for k in prange(n * c):
        b = k // c
        ch = k % c
        plane = x[b, ch]
        for i in range(oh):
            for j in range(ow):
                total = np.float32(0.0)
                count = 0
                for dy in range(size):
                    y = offset + i * stride_y + dy
                    for dx in range(size):
                        xx = offset + j * stride_x + dx
                        if 0 <= y < h and 0 <= xx < w:
                            total += plane[y, xx]
                            count += 1
                out[b, ch, i, j] = total / np.float32(count)
