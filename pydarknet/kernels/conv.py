"""Convolution around the matrix product: im2col before it, the fused batch-norm/bias/activation after it."""
import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .activations import FAST_ACTIVATIONS, LINEAR, activate_fast, activate_row
from .aligned import aligned_zeros
from .epilogue import (ACTIVATIONS as STORED_ACTIVATIONS, NO_RESIDUAL_PLANES, NONE, POOL_BAND, add_residual_row,
                       affine_activate_row, affine_terms, inverse_deviation, pool_rows, pool_rows_at)
from .gemm import (_F32, _data, _fma, _finished, _i32, _i64, _is_f32_array, _lane_mask, _lanes, _mask_type,
                   _masked_load, _masked_store, _splat, _vec_ptr, NO_RESIDUAL, check_image_product, col_range, copy_run,
                   direct_groups, direct_operands, direct_row, host_panel_width, padded_run, phase_planes)
from .pool import maxpool_plane, pool_scratch, pool_windows, tiles_2x2
from .placement import kernel_threads



@njit(cache=True, parallel=True)
def im2col_batch(x, c0, cg, size, stride, pad, col, wide, dilation=1):
    """im2col of the channels c0..c0+cg-1 of every image of x (n, c, h, w), in one parallel pass.

    wide: col (k, n, L), image b's columns at col[:, b] (one matrix (k, n*L) for a product over the whole
    batch); otherwise col (n, k, L), one matrix per image. k = cg*size*size, L = out_h*out_w.
    dilation: the kernel's taps are that many pixels apart (the fork's im2col_cpu_ext; `pad` is then the
    padding in pixels, the layer's pad times the dilation)."""
    n, _, h, w = x.shape
    span = dilation * (size - 1) + 1
    out_h = (h + 2 * pad - span) // stride + 1
    out_w = (w + 2 * pad - span) // stride + 1
    k = cg * size * size
    for task in prange(n * k):
        b = task // k
        row = task % k
        kx = row % size * dilation
        ky = (row // size) % size * dilation
        plane = x[b, c0 + row // (size * size)]
        dst_row = col[row, b] if wide else col[b, row]
        x0, x1 = col_range(kx, stride, pad, w, out_w)
        first = kx + x0 * stride - pad
        for y in range(out_h):
            dst = dst_row[y * out_w:(y + 1) * out_w]
            iy = ky + y * stride - pad
            if iy < 0 or iy >= h:
                dst[:] = 0.0
                continue
            dst[:x0] = 0.0
            dst[x1:] = 0.0
            src = plane[iy]
            if stride <= 2:
                copy_run(src, first, stride, dst, x0, x1 - x0)
            else:
                for xx in range(x0, x1):
                    dst[xx] = src[first + (xx - x0) * stride]


@njit(cache=True, parallel=True)
def im2col_t(x, c0, cg, size, stride, pad, colT, dilation=1):
    """The transposed im2col of every image: colT (n, L, k), colT[b] = im2col(x[b, c0:c0+cg]).T, a row per
    output position (the layout the weight gradient reads), written row after row: for each output pixel,
    the size x size window of each channel (size consecutive floats per window row; taps `dilation` apart)."""
    n, _, h, w = x.shape
    span = dilation * (size - 1) + 1
    out_h = (h + 2 * pad - span) // stride + 1
    out_w = (w + 2 * pad - span) // stride + 1
    ss = size * size
    for task in prange(n * out_h):
        b = task // out_h
        y = task % out_h
        y0 = y * stride - pad
        for xx in range(out_w):
            dst = colT[b, y * out_w + xx]
            x0 = xx * stride - pad
            inside = x0 >= 0 and x0 + span <= w and y0 >= 0 and y0 + span <= h
            if inside and size == 3 and dilation == 1:   # the common window, unrolled (faster than the loops below)
                for ch in range(cg):
                    plane = x[b, c0 + ch]
                    r0 = plane[y0]
                    r1 = plane[y0 + 1]
                    r2 = plane[y0 + 2]
                    r = ch * 9
                    dst[r] = r0[x0]
                    dst[r + 1] = r0[x0 + 1]
                    dst[r + 2] = r0[x0 + 2]
                    dst[r + 3] = r1[x0]
                    dst[r + 4] = r1[x0 + 1]
                    dst[r + 5] = r1[x0 + 2]
                    dst[r + 6] = r2[x0]
                    dst[r + 7] = r2[x0 + 1]
                    dst[r + 8] = r2[x0 + 2]
                continue
            for ch in range(cg):
                plane = x[b, c0 + ch]
                r = ch * ss
                if inside:
                    for ky in range(size):
                        src = plane[y0 + ky * dilation]
                        for kx in range(size):
                            dst[r + ky * size + kx] = src[x0 + kx * dilation]
                else:
                    for ky in range(size):
                        iy = y0 + ky * dilation
                        for kx in range(size):
                            ix = x0 + kx * dilation
                            dst[r + ky * size + kx] = plane[iy, ix] if (0 <= iy < h and 0 <= ix < w) else 0.0


@njit(cache=True, parallel=True)
def pad_images(x, c0, cg, pad, xpad):
    """xpad (n, cg, h + 2 pad, w + 2 pad) = channels c0..c0+cg-1 of x (n, c, h, w) with `pad` zeros around."""
    n, _, h, w = x.shape
    for task in prange(n * cg):
        b = task // cg
        ch = task % cg
        dst = xpad[b, ch]
        src = x[b, c0 + ch]
        dst[:pad, :] = 0.0
        dst[pad + h:, :] = 0.0
        for y in range(h):
            row = dst[pad + y]
            row[:pad] = 0.0
            row[pad:pad + w] = src[y]
            row[pad + w:] = 0.0


@njit(cache=True, parallel=True)
def col2im_batch(col, wide, size, stride, pad, im, c0, dilation=1):
    """col2im for every image at once: add each image's columns (laid out as im2col_batch's `col`) onto the
    channels c0.. of im (n, c, h, w); each pixel gets its terms in darknet's col2im_cpu order."""
    n, _, h, w = im.shape
    span = dilation * (size - 1) + 1
    out_h = (h + 2 * pad - span) // stride + 1
    out_w = (w + 2 * pad - span) // stride + 1
    cg = (col.shape[0] if wide else col.shape[1]) // (size * size)
    for task in prange(n * cg):     # a channel's rows only touch that channel: no two tasks write one pixel
        b = task // cg
        ch = task % cg
        plane = im[b, c0 + ch]
        for kk in range(size * size):
            row = ch * size * size + kk
            kx = kk % size * dilation
            ky = kk // size * dilation
            x0, x1 = col_range(kx, stride, pad, w, out_w)
            cnt = x1 - x0
            src_row = col[row, b] if wide else col[b, row]
            first = kx + x0 * stride - pad
            for y in range(out_h):
                iy = ky + y * stride - pad
                if iy < 0 or iy >= h:
                    continue
                dst = plane[iy]
                s0 = y * out_w + x0
                if stride == 1:  # contiguous on both sides: a loop that vectorizes
                    d = dst[first:first + cnt]
                    src = src_row[s0:s0 + cnt]
                    for xx in range(cnt):
                        d[xx] += src[xx]
                else:
                    for xx in range(cnt):
                        dst[first + xx * stride] += src_row[s0 + xx]


DEPTHWISE_BAND = 4096   # floats of a phase-plane band's sums (16 KiB): they and the taps' runs stay in L1
# floats of a band's input rows in one kernel-column copy: the copies (24 KiB for 3 x 3) stay in L1 beside the
# image and output rows streaming through (bands of 4096 floats, 48 KiB of copies, took 1.2-1.3x as long)
COLUMN_BAND = 2048
TAP_BLOCK = 4           # vectors of a depthwise run's outputs whose chains go through the taps together
UNROLLED_TAPS = 9       # a 3 x 3 kernel's taps: tap_chains keeps their weights in registers for the whole run


def depthwise_conv(x, weights, size, stride, pad, dilation, out, store=NONE, fused=False):
    """Depthwise convolution (groups = channels = filters) of one image: out (c, out_h*out_w) = each channel of x
    (c, h, w) convolved with its own size x size kernel (weights (c, size*size)), `pad` pixels of padding; then
    `store` (kernels.epilogue: the fast modes' affine, activation and pool, applied to each band of rows as it is
    finished; NONE for the raw sums).

    The same floats as darknet's im2col + gemm for a one-filter group: every output is a float32 chain over the
    taps in kernel order, each product rounded, the padding's taps included as darknet's columns include them
    (their products are zeros, and adding a zero never changes a chain that starts at +0); with `fused` (the fast
    modes) the same chains, each step one FMA. Each channel is first copied into zero-padded planes from which a
    tap's inputs for a band of output rows are one contiguous run, and `tap_chains` takes a few vectors of
    outputs through all the taps in registers and stores them finished (short runs per output row, indexed from a
    computed start, kept Numba's negative-index check in the loop and ran 5-9x slower: docs/notes.md):
    - stride 1, the output the image's size, planes of at most MASKED_PLANE pixels: no copies; each tap reads the
      plane in place, its lanes that fall in the padding masked off (masked_tap_chains: the copies were a third
      to a half of these layers' time, each channel's too short to pay for them);
    - stride 1 and the output the image's size: in bands of output rows, one copy per kernel column of the
      image rows the band reads, shifted so that every tap of a kernel row reads from the same place in a line
      (a tap's run starts on a line where ky * dilation * w is a multiple of 16), the columns a shift would wrap
      into zeroed, and the sums straight into the output (`by_column`);
    - else the stride x stride phase planes of the image (every stride-th row and column), the sums of each band
      copied into the output's rows after.
    (depthwise_convolution's, made and run at once.)"""
    depthwise_convolution(x.shape, size, stride, pad, dilation, fused)(x, weights, out, store)


def depthwise_convolution(shape, size, stride, pad, dilation, fused=False):
    """depthwise_conv for images of `shape` (c, h, w), decided once for the calling thread's kernel threads:
    returns convolve(x, weights, out, store), with the small planes' tap masks made here, else each thread's copies
    made and zeroed here, once: a pass writes the image's places in them, never their padding (zeroing them in every
    pass took 7-15 us of Yolo-Fastest's larger layers). A convolution's plan keeps it (and is made again for another
    count of threads: Network.plan_key)."""
    c, h, w = shape
    same = stride == 1 and 2 * pad == dilation * (size - 1) and pad < w
    threads, fused = kernel_threads(), bool(fused)
    if same and h * w <= MASKED_PLANE:   # small planes: the taps read the image in place, no copies
        masks, shifts = _tap_masks(h, w, size, pad, dilation, host_panel_width() // 2)

        def convolve(x, weights, out, store):
            _depthwise_in_place(np.ascontiguousarray(x), weights, out, masks, shifts, fused, *store)
        return convolve
    by_column = same and (2 * pad + 1) * w <= COLUMN_BAND
    copy_size, sums_size = _depthwise_layout(h, w, size, stride, pad, dilation, by_column)[-2:]
    # each thread's rows: whole 64-byte lines of their own
    copies, sums = aligned_zeros((threads, copy_size), np.float32), aligned_zeros((threads, sums_size), np.float32)

    def convolve(x, weights, out, store):
        _depthwise(np.ascontiguousarray(x), weights, size, stride, pad, dilation, out, by_column, fused, copies,
                   sums, *store)   # (the copies read each channel as one run)
    return convolve


# Pixels of a plane up to which a stride-1 depthwise layer reads it in place (masked_tap_chains). Alone, 2 threads,
# this Xeon, --fast with its store, in place against the column copies: 224 x 10 x 10 11.8 against 15.7 us,
# 136 x 20 x 20 15.7 / 19.6, 120 x 20 x 20 (5 x 5) 28.1 / 49.7, 32 x 32 x 32 10.2 / 11.4; 96 x 40 x 40 the same
# (35.9 / 36.0), and darknet's exact chains there 3 % slower (38.6 / 37.6).
MASKED_PLANE = 1024


@njit(cache=True, parallel=True)
def _depthwise_in_place(x, weights, out, masks, shifts, fused, affine, activation, pooled):
    """depthwise_convolution's small planes: each channel's sums straight from its plane (masked_tap_chains), then
    its pool."""
    c, h, w = x.shape
    finish = activation if affine.shape[1] else -1
    for ch in prange(c):
        dst = out[ch]
        masked_tap_chains(dst, x[ch].reshape(-1), shifts, weights[ch], 0, fused, affine, ch, finish, masks)
        if pooled.size:
            pool_rows(dst.reshape(h, w), 0, ch, pooled)


@njit(cache=True)
def _depthwise_layout(h, w, size, stride, pad, dilation, by_column):
    """(out_h, out_w, reach, planes, wq, plane, rows, a thread's copies, its sums) of a depthwise convolution of
    h x w images: reach, a tap's farthest shift within its plane; the planes of a channel's copies, each `plane`
    floats in rows wq wide; rows, the output rows of a band; the floats of a thread's copies and sums (_own_lines)."""
    span = dilation * (size - 1)
    out_h = (h + 2 * pad - span - 1) // stride + 1
    out_w = (w + 2 * pad - span - 1) // stride + 1
    reach = span // stride
    if by_column:   # `size` copies of a band's input rows, `pad` rows and columns of zeros around, on whole lines
        wq = w
        rows = min(out_h, COLUMN_BAND // w - 2 * pad)
        planes, plane = size, _own_lines((rows + 2 * pad) * w + 2 * pad) - 16
    else:   # a phase plane: every row and column an output reads
        planes, wq, plane = stride * stride, out_w + reach, (out_h + reach) * (out_w + reach)
        rows = max(1, min(out_h, DEPTHWISE_BAND // wq))
    return (out_h, out_w, reach, planes, wq, plane, rows, _own_lines(planes * plane + reach),
            _own_lines(0 if by_column else rows * wq))


@njit(cache=True, parallel=True)
def _depthwise(x, weights, size, stride, pad, dilation, out, by_column, fused, copies, sums, affine, activation,
               pooled):
    """copies: zeros but for the image's places, which every channel writes again, and where the kernel-column
    copies go in several bands, the places above and below the image, which each band zeroes (so the padding and
    the runs' slack read zeros); copies and sums a row per thread (at least kernel_threads())."""
    c, h, w = x.shape
    out_h, out_w, reach, planes, wq, plane, rows, _, _ = _depthwise_layout(h, w, size, stride, pad, dilation,
                                                                           by_column)
    starts = _tap_starts(size, stride, dilation, plane, wq, by_column)
    finish = activation if affine.shape[1] else -1
    for ch in prange(c):
        tid = numba.get_thread_id()
        q = copies[tid]
        if not by_column:
            _phase_split(x[ch], pad, stride, out_h + reach, wq, q)
        dst = out[ch]
        for y0 in range(0, out_h, rows):
            n = min(rows, out_h - y0)
            if by_column:   # the band's copies, and its sums straight into its output rows
                _column_copies(x[ch], size, pad, dilation, plane, q, y0, n, rows < out_h)
                tap_chains(dst[y0 * w:(y0 + n) * w], q, starts, weights[ch], 0, fused, affine, ch, finish)
                continue
            run = sums[tid, :n * wq]   # (the band's columns past out_w too)
            tap_chains(run, q, starts, weights[ch], y0 * wq, fused, affine, ch, finish)
            for y in range(n):
                copy_run(run, y * wq, 1, dst, (y0 + y) * out_w, out_w)
        if pooled.size:   # (without a pool, the reshape alone took 5 of 39 us on 224 x 10 x 10, one thread)
            pool_rows(dst.reshape(out_h, out_w), 0, ch, pooled)


@njit(cache=True, inline="always")
def _own_lines(n):
    """A thread's row of n floats rounded up to whole 64-byte lines, and one line more, never written: the rows of
    the threads side by side then share no line that either writes, wherever the array starts."""
    return (n + 15) // 16 * 16 + 16


@njit(cache=True)
def _tap_starts(size, stride, dilation, plane, wq, by_column):
    """Where each tap's run starts in q for the band from output row 0 (a band from row y0 starts y0 * wq
    later): in its kernel column's copy (which the copy's shift makes the same place for every tap of a kernel
    row), or in its phase plane. Worked out once per layer, not per band: the divisions by the stride cost more
    than a small channel's sums."""
    starts = np.empty(size * size, np.int64)
    for tap in range(size * size):
        ky, kx = tap // size * dilation, tap % size * dilation
        if by_column:
            starts[tap] = tap % size * plane + ky * wq
        else:
            starts[tap] = (ky % stride * stride + kx % stride) * plane + ky // stride * wq + kx // stride
    return starts


@intrinsic
def tap_chains(typingctx, run, q, starts, weights, offset, fused, affine, row, activation):
    """run[t] = the chain over the taps k = 0 .. starts.size - 1 in order, from +0: s = s + weights[k] * q[starts[k]
    + offset + t], each product rounded (darknet's), or with `fused` one FMA; then, where activation >= 0, finished
    by the store's affine column `row` and activation as it is stored (kernels.gemm._finished, the arithmetic of
    epilogue.affine_activate_row). TAP_BLOCK vectors of outputs go through all the taps in registers, the last
    vectors one at a time, the very last masked: no partial sums stored and loaded again, and q never read past a
    run's end. (The loads bound it: blocks of 6 and 8 vectors took as long on one thread, a last block of masked
    vectors longer on small planes.) `fused` is decided once for the run, and a 3 x 3 kernel's (UNROLLED_TAPS)
    weights are broadcast and its taps' starts found once, its taps unrolled: the same chains, 5-10 % faster than
    reading each tap's start and weight again for every block."""
    return _tap_chains(run, q, starts, weights, affine, ())


@intrinsic
def masked_tap_chains(typingctx, run, q, starts, weights, offset, fused, affine, row, activation, masks):
    """tap_chains with masks (taps, vectors of run) int32 (_tap_masks's): tap k's input for output t read only where
    bit t % lanes of masks[k, t // lanes] is on, a zero elsewhere (the padding's: a zero product added to a sum from
    +0 changes nothing, so the chains are the same), those lanes of q not read: q is then the image plane itself,
    not copies of it."""
    return _tap_chains(run, q, starts, weights, affine, (masks,))


def _tap_chains(run, q, starts, weights, affine, masks):
    """tap_chains's signature and code, and masked_tap_chains's (masks: the type of its masks, or ())."""
    masked = bool(masks)
    if not (_is_f32_array(run) and _is_f32_array(q) and _is_f32_array(weights) and _is_f32_array(affine)):
        return None
    sig = types.void(run, q, starts, weights, types.intp, types.boolean, affine, types.intp, types.intp, *masks)

    def codegen(context, builder, signature, args):
        run_v, q_v, starts_v, weights_v, offset_v, fused_v, affine_v, row_v, activation_v = args[:9]
        lanes = _lanes(context)
        vec = ir.VectorType(_F32, lanes)
        zero = ir.Constant(vec, [0.0] * lanes)
        run_a = context.make_array(signature.args[0])(context, builder, run_v)
        starts_a = context.make_array(signature.args[2])(context, builder, starts_v)
        q0 = builder.gep(_data(context, builder, signature.args[1], q_v), [offset_v])
        w0 = _data(context, builder, signature.args[3], weights_v)
        m = run_a.nitems
        sums = [cgutils.alloca_once(builder, vec) for _ in range(TAP_BLOCK)]   # (registers, once optimized)
        if masked:
            masks_a = context.make_array(signature.args[9])(context, builder, args[9])
            vectors = builder.extract_value(masks_a.shape, 1)

        def store(i, nv, mask, chained):
            """Outputs i .. (see chains): the finished sums `chained`, one vector each."""
            done = _finished(context, builder, signature.args[6], affine_v, row_v, activation_v, _i64(1), chained, 1,
                             nv)
            for j, value in enumerate(done):
                out = _vec_ptr(builder, builder.gep(run_a.data, [i]), j * lanes, vec)
                if mask is None:
                    builder.store(value, out, align=4)
                else:
                    builder.call(_masked_store(builder, vec), [value, out, _i32(4), mask])

        def load(first, nv, mask, k=None, i=None):
            """nv vectors of inputs from q's `first`; `mask`: the run's last vector's lanes; masked, tap k's inputs
            of outputs i .. (the table's lanes)."""
            pointers = [_vec_ptr(builder, first, j * lanes, vec) for j in range(nv)]
            if masked:   # (none past the run's end)
                at = builder.add(builder.mul(k, vectors), builder.sdiv(i, _i64(lanes)))
                words = [builder.load(builder.gep(masks_a.data, [builder.add(at, _i64(j))])) for j in range(nv)]
                lanes_on = [builder.bitcast(builder.trunc(w, ir.IntType(lanes)), _mask_type(vec)) for w in words]
                return [builder.call(_masked_load(builder, vec), [p, _i32(4), on, zero])
                        for p, on in zip(pointers, lanes_on)]
            return [builder.load(p, align=4) if mask is None else
                    builder.call(_masked_load(builder, vec), [p, _i32(4), mask, zero]) for p in pointers]

        def step(s, wt, x, fused):
            """s + wt * x: one FMA (fused), else the product rounded, then the sum (darknet's)."""
            return builder.call(_fma(builder, vec), [wt, x, s]) if fused else builder.fadd(s, builder.fmul(wt, x))

        def chains(fused):
            """Outputs i .. i + nv * lanes - 1 (with `mask`, one vector's lanes of it), through the taps' loop."""
            def run(i, nv, mask):
                for s in sums[:nv]:
                    builder.store(zero, s)
                with cgutils.for_range(builder, starts_a.nitems) as tap:
                    start = builder.load(builder.gep(starts_a.data, [tap.index]))
                    wt = _splat(builder, builder.load(builder.gep(w0, [tap.index])), lanes)
                    inputs = load(builder.gep(q0, [builder.add(start, i)]), nv, mask, tap.index, i)
                    for s, x in zip(sums, inputs):
                        builder.store(step(builder.load(s), wt, x, fused), s)
                store(i, nv, mask, [builder.load(s) for s in sums[:nv]])
            return run

        def unrolled_chains(fused):
            """chains for UNROLLED_TAPS taps, their weights broadcast and their runs' starts found once for the
            whole run: the same chains, in registers."""
            taps = [(builder.gep(q0, [builder.load(builder.gep(starts_a.data, [_i64(k)]))]),
                     _splat(builder, builder.load(builder.gep(w0, [_i64(k)])), lanes)) for k in range(UNROLLED_TAPS)]

            def run(i, nv, mask):
                acc = [zero] * nv
                for first, wt in taps:
                    acc = [step(s, wt, x, fused) for s, x in zip(acc, load(builder.gep(first, [i]), nv, mask))]
                store(i, nv, mask, acc)
            return run

        def over_the_run(chains_of):
            blocks = builder.mul(builder.sdiv(m, _i64(TAP_BLOCK * lanes)), _i64(TAP_BLOCK * lanes))
            whole = builder.mul(builder.sdiv(m, _i64(lanes)), _i64(lanes))
            with cgutils.for_range_slice(builder, _i64(0), blocks, _i64(TAP_BLOCK * lanes)) as (i, _):
                chains_of(i, TAP_BLOCK, None)
            with cgutils.for_range_slice(builder, blocks, whole, _i64(lanes)) as (i, _):
                chains_of(i, 1, None)
            with builder.if_then(builder.icmp_signed("<", whole, m)):
                chains_of(whole, 1, _lane_mask(builder, 0, _splat(builder, builder.sub(m, whole), lanes)))

        unrolled = builder.icmp_signed("==", starts_a.nitems, _i64(UNROLLED_TAPS))
        with builder.if_else(fused_v) as (fma, rounded):   # fused decided once for the run
            for branch, fused in ((fma, True), (rounded, False)):
                with branch:
                    if masked:   # the taps' loop (unrolled, 36 mask words a block: 20 x 20 planes 1.1x as long)
                        over_the_run(chains(fused))
                        continue
                    with builder.if_else(unrolled) as (then, otherwise):
                        with then:
                            over_the_run(unrolled_chains(fused))
                        with otherwise:
                            over_the_run(chains(fused))
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True)
def _tap_masks(h, w, size, pad, dilation, lanes):
    """masked_tap_chains's masks of a stride-1 depthwise convolution of h x w planes to h x w outputs: bit l of
    masks[k, v] on where output t = v * lanes + l lies in the plane and its tap k's input (the output's row and
    column moved by ky * dilation - pad and kx * dilation - pad) inside the image; and each tap's shift in the plane."""
    n = h * w
    vectors = (n + lanes - 1) // lanes
    masks = np.zeros((size * size, vectors), np.int32)
    shifts = np.empty(size * size, np.int64)
    for k in range(size * size):
        dy, dx = k // size * dilation - pad, k % size * dilation - pad
        shifts[k] = dy * w + dx
        for t in range(n):
            y, x = t // w, t % w
            if 0 <= y + dy < h and 0 <= x + dx < w:
                masks[k, t // lanes] |= np.int32(1) << np.int32(t % lanes)
    return masks, shifts


@njit(cache=True, inline="always")
def _column_copies(img, size, pad, dilation, plane, q, y0, n, banded):
    """The copies of output rows y0 .. y0 + n - 1's band: copy kx (one per kernel column) of the image rows it
    reads, pixel (y, x) at q[kx * plane + pad * w - shift + (y - y0) * w + x], shift = kx * dilation - pad: where
    output (y, x) reads it through tap (ky, kx) from q[kx * plane + ky * dilation * w] (`_tap_starts`), and the
    columns that the shift carries past an edge into the next or previous row are zeros. With `banded` (more
    than one band), the places a tap reads above and below the image are zeroed too (another band's rows may lie
    there); one band's never change (zeros)."""
    h, w = img.shape
    src = img.reshape(-1)
    top, bottom = max(0, y0 - pad), min(h, y0 + n + pad)   # the image rows the band reads
    for kx in range(size):
        shift = kx * dilation - pad
        first = kx * plane + pad * w - shift + (top - y0) * w
        last = first + (bottom - top) * w
        copy_run(src, top * w, 1, q, first, (bottom - top) * w)
        if banded:
            q[kx * plane:first] = 0.0
            q[last:kx * plane + (n + 2 * pad) * w] = 0.0
        lo, hi = (w + shift, w) if shift < 0 else (0, shift)
        for y in range(bottom - top):
            for x in range(lo, hi):
                q[first + y * w + x] = 0.0


@njit(cache=True, inline="always")
def _phase_split(img, pad, stride, hq, wq, q):
    """q[(py*stride + px)*hq*wq + i*wq + j] = img[i*stride + py - pad, j*stride + px - pad] for the pixels of the
    image (i < hq, j < wq); the rest of q is left as it is (zeros). Each phase's columns are worked out once and
    its rows followed without dividing (a division per row cost more than copying a row of a small image)."""
    h, w = img.shape
    src = img.reshape(-1)
    for px in range(stride):
        x0 = (px - pad) % stride   # the first column of this phase
        j0 = (x0 + pad) // stride
        n = min(wq - j0, (w - x0 + stride - 1) // stride)
        if n <= 0:
            continue
        i, py = divmod(pad, stride)   # where image row 0 goes
        for yy in range(h):
            if i >= hq:
                break
            padded_run(src, yy * w + x0, stride, q, ((py * stride + px) * hq + i) * wq + j0, 0, n, n)
            py += 1
            if py == stride:
                py, i = 0, i + 1


BAND_BYTES = 256 << 10   # the output rows conv_direct computes and finishes at a time: in a core's L2


def conv_direct(A, x, c0, size, stride, pad, dilation, out_h, out_w, C, fused=False, store=NONE, pooled_only=False,
                residual=NO_RESIDUAL_PLANES):
    """C (M, out_h*out_w) = sgemm_image's product (the same chains, bit for bit) as a direct convolution, output
    row by output row (kernels.gemm.direct_operands, direct_row), in bands of rows (BAND_BYTES of output, an even
    count for a pool's windows): each band copies the input rows it reads into padded planes of its own while
    they are in the cache, then takes its filters a group at a time through all its rows (direct_groups: each
    filter's part of the band stored in one run); the register tiles finish `store`'s affine and activation
    (kernels.epilogue) as they store, and its pool is filled from the band's rows (pooling each row or pair of rows
    alone cost more in calls than the band's pass). With `pooled_only` (given only with a pool, for an output only
    the pool reads), each band's rows go to a scratch band of their own and only the pool's output is written.
    Where the store finishes the sums, `residual` (M, out_h, out_w; a [shortcut] after the layer) is added as the
    tiles store them. A and x may be int32 or uint32 words, as for sgemm_image. Returns C. (direct_convolution's,
    made and run at once.)"""
    check_image_product("conv_direct", C, A, x, c0, size, out_h, out_w)
    direct_convolution(A, x.shape, c0, size, stride, pad, dilation, out_h, out_w, fused)(x, C, store, pooled_only,
                                                                                          residual)
    return C


def direct_convolution(A, shape, c0, size, stride, pad, dilation, out_h, out_w, fused=False):
    """conv_direct for images of `shape` (c, h, w), decided once: returns convolve(x, C, store, pooled_only,
    residual), which runs only the kernel, with A packed, the taps' offsets and the bands fixed here. A convolution's
    plan keeps it (and is made again for another count of threads: Network.plan_key), with each thread's planes
    made here, on a cache line (direct_operands)."""
    rows = min(out_h, max(2, BAND_BYTES // (4 * A.shape[0] * out_w) // 2 * 2))
    ap, offs, hp, wq = direct_operands(A, shape, c0, size, stride, pad, dilation, out_h, out_w, rows)
    cg = offs.size // (size * size)
    words = cg * stride * hp * wq   # a band's planes, then whole vectors past their end:
    planes = aligned_zeros((kernel_threads(), words + 2 * host_panel_width()), ap.dtype)

    def convolve(x, C, store, pooled_only, residual=NO_RESIDUAL_PLANES):
        _conv_direct(ap, x, c0, pad, offs, stride, planes, words, hp, wq, out_h, out_w, rows, C, bool(fused), *store,
                     bool(pooled_only), residual.reshape(-1) if store.affine.shape[1] else NO_RESIDUAL)
    return convolve


@njit(cache=True, parallel=True)
def _conv_direct(ap, x, c0, pad, offs, stride, planes, words, hp, wq, out_h, out_w, rows, C, fused, affine,
                 activation, pooled, pooled_only, residual):
    """Each thread takes whole bands of `rows` output rows: their input's planes (the first `words` of its row of
    planes), then their products, then their store (pooled_only: into a band of its own, only the pool read from
    it), residual (C's shape, flat) added."""
    M, K = C.shape[0], offs.size
    for task in prange((out_h + rows - 1) // rows):
        y0 = task * rows
        y1 = min(out_h, y0 + rows)
        own = planes[numba.get_thread_id()]
        phase_planes(x, c0, pad, stride, y0 * stride, hp, wq, own[:words])
        band = np.empty((M, rows * out_w), C.dtype) if pooled_only else C   # (rows: its output's rows)
        first = 0 if pooled_only else y0
        Cf = band.reshape(-1)
        for group in range(direct_groups(M)):   # a group's filters through the band, then the next group's
            for y in range(y0, y1):   # the register tiles finish the store (affine, activation) as they store
                direct_row(ap, M, K, own, offs, stride, wq, y - y0 + first, y - y0, out_w, Cf, fused, affine,
                           activation if affine.shape[1] else -1, residual, group)
        for f in range(M if pooled.size else 0):
            pool_rows_at(band, f * band.shape[1] + first * out_w, out_w, y1 - y0, out_w, y0, f, pooled)


def normalize_scale_bias_activate(x, mean, variance, scales, biases, activation, normalize, ab=False, fast=False,
                                  residual=NO_RESIDUAL_PLANES):
    """x (n, c, spatial) in place: darknet's batch-norm at inference, then bias, then the activation, then
    `residual` (n, c, spatial: a plain [shortcut]'s other input, as the shortcut adds it) where one is given.

    Darknet's division by the deviation (kernels.epilogue.inverse_deviation; `ab`: the AlexeyAB fork's); scale and
    bias are applied in float32 as darknet stores them. `fast` (the fast products): for linear, leaky and relu, one
    float32 multiply-add per element and the activation in float32 (kernels.epilogue's, as the fused store
    computes it), for mish, swish and the logistic the same multiply-add then activations.activate_fast; not
    darknet's bits.
    """
    _normalize_scale_bias_activate(x, mean, variance, scales, biases, activation, normalize, ab, fast, residual)


@njit(cache=True, parallel=True)
def _normalize_scale_bias_activate(x, mean, variance, scales, biases, activation, normalize, ab, fast, residual):
    n, c, spatial = x.shape
    for k in prange(n * c):
        row = x[k // c, k % c]
        _normalize_activate_row(row, k % c, mean, variance, scales, biases, activation, normalize, ab, fast)
        if residual.size:
            add_residual_row(row, residual, k // c, k % c)


@njit(cache=True, parallel=True)
def normalize_activate_maxpool(x, mean, variance, scales, biases, activation, normalize, ab, fast, width,
                               size, stride_y, stride_x, pad, pooled):
    """normalize_scale_bias_activate, then the [maxpool] that follows the layer (kernels.pool.maxpool's
    arithmetic) of each channel into pooled (n, c, oh, ow) while that channel is still in the cache: the
    pool's read of the whole output from memory is saved. x's rows are images `width` pixels wide."""
    n, c, spatial = x.shape
    height = spatial // width
    banded = tiles_2x2(height, width, pooled.shape[2], pooled.shape[3], size, stride_y, stride_x, pad)
    for k in prange(n * c):
        row = x[k // c, k % c]
        plane = row.reshape(height, width)
        if banded:   # POOL_BAND rows at a time: a first layer's channel (416 x 416) would not stay in L2
            for r0 in range(0, height, POOL_BAND):
                r1 = min(height, r0 + POOL_BAND)
                _normalize_activate_row(row[r0 * width:r1 * width], k % c, mean, variance, scales, biases,
                                        activation, normalize, ab, fast)
                strides = pooled.strides   # (in bytes: this channel's pool rows from r0 // 2)
                to = ((k // c) * strides[0] + (k % c) * strides[1] + r0 // 2 * strides[2]) // 4
                pool_windows(row, r0 * width, width, r1 - r0, width, pooled, to, strides[2] // 4, (r1 - r0 + 1) // 2)
            continue
        _normalize_activate_row(row, k % c, mean, variance, scales, biases, activation, normalize, ab, fast)
        across = pool_scratch(height, pooled.shape[2], pooled.shape[3], size)
        maxpool_plane(plane, size, stride_y, stride_x, pad, pooled[k // c, k % c], across)


@njit(cache=True)
def _normalize_activate_row(row, f, mean, variance, scales, biases, activation, normalize, ab, fast):
    stored = activation in STORED_ACTIVATIONS
    if fast and (stored or activation in FAST_ACTIVATIONS):
        center, scale, shift = affine_terms(f, mean, variance, scales, biases, normalize, ab)
        affine_activate_row(row, center, scale, shift, activation if stored else LINEAR)
        if not stored:
            activate_fast(row, activation)
        return
    bias = biases[f]
    if normalize:
        inv = inverse_deviation(variance[f], ab)
        m = mean[f]
        s = scales[f]
        for i in range(row.size):
            v = np.float32(np.float64(row[i] - m) * inv)
            row[i] = np.float32(v * s) + bias
    else:
        for i in range(row.size):
            row[i] += bias
    activate_row(row, activation)
