"""Convolutions as bfloat16 products with float32 sums on Intel's AMX tiles: the `--bf16` products.

An AMX tile register holds 16 rows of 64 bytes; `tdpbf16ps` multiplies a 16 x 32 bf16 tile of A by a 32 x 16
bf16 tile of B (stored as 16 rows of k-pairs, "VNNI" order: B[k, j] and B[k + 1, j] side by side) into a
16 x 16 float32 tile of C: 8192 multiply-adds in one instruction, 16 times an AVX-512 FMA's. The kernel keeps
2 x 2 C tiles (32 filters x 32 output pixels) in tmm0-3, and for each 32-long step of k loads two A tiles
(tmm4-5) and two B tiles (tmm6-7) and multiplies all four pairs.

- Strides 1 and 2 (`conv_blocked`: kernels over 1 x 1, and 1 x 1 kernels at stride 1): the image is A, rounded
  once per layer into blocks of 32 channels with each pixel's channels side by side (`to_bf16_blocked`), so that
  a kernel column's shift moves A's rows by whole 64-byte rows and one copy serves every column. An image of 16
  channels or fewer is rounded in pixels of 16 channels: a tile row of 64 bytes is then two neighbouring pixels,
  and a step of k two kernel columns, where 32-channel pixels would make it half padding. The weights are B
  (`pack_weights_blocked`). C's tiles come out pixels x filters and are turned around in vector registers on
  their way to the output (`_store_turned`).
- Other strides and dilations (`conv_image`): A is the weights (filters, k), rounded to bf16 once per parameters,
  padded with zeros to multiples of 32 rows and columns and stored in 32 x 32 blocks (`pack_weights`); the image
  is rounded to bf16 with its border (`to_bf16_padded`); each thread packs the im2col columns of its block of 32
  output pixels into B's order and runs every row block of A over them while they are in its cache.
- Each of C's tiles goes through a thread's scratch (1 KiB, in L1) into vector registers, where the layer's
  batch-norm, bias and activation (the fused plan's, kernels/epilogue.py) finish each filter's row before one
  masked store writes it to the output (`_store_rows`; conv_blocked's are turned around first, `_store_turned`).
  conv_blocked's blocks are 16 columns of two output rows, so that it also takes the 2x2 max pool after the
  layer there (and, where only the pool reads the layer's output, writes the pool's alone). Where only the next
  convolution reads the layer's output and it takes conv_blocked too, the finished tiles go, rounded, straight
  into that layer's input in its layout (`_store_words`): no float32 planes written, read back and rounded.
Rounding is to nearest, ties to even, as the CPU's own conversions (bf16.to_bf16, shared with the vdpbf16ps
products). The sums are float32 in the tiles' order, not darknet's: this is the reduced-precision mode, within
the tolerances docs/fidelity.md states.

The tiles need the CPU's amx-tile and amx-bf16, the kernel's permission for the process (Linux 5.16 on:
arch_prctl(ARCH_REQ_XCOMP_PERM)) and Numba compiling for a CPU that has them (not under NUMBA_CPU_NAME or
NUMBA_CPU_FEATURES naming an older one): `unavailable()` checks all three before anything here is compiled,
since LLVM cannot compile the tile intrinsics for a CPU without them. PYDARKNET_AMX=off leaves the tiles unused (the
--bf16 products then run on vdpbf16ps where the CPU has avx512_bf16: kernels/bf16.py), to test and time that path
on a CPU with both.
"""
import ctypes
import functools
import os
import platform
import sys

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .aligned import aligned_zeros
from .bf16 import to_bf16
from .gemm import _splat
from .activations import LEAKY, RELU
from .pool import FLT_MAX

_I8 = ir.IntType(8)
_I8P = _I8.as_pointer()
_I64 = ir.IntType(64)

ARCH_REQ_XCOMP_PERM = 0x1023
XFEATURE_XTILEDATA = 18
SYS_ARCH_PRCTL = 158   # x86-64
TURNED_OFF = "PYDARKNET_AMX=off"   # unavailable()'s answer when the tiles are left unused on purpose


@functools.cache
def unavailable():
    """None when this process can run the AMX kernels, else why not (one line)."""
    from numba.core.registry import cpu_target
    if os.environ.get("PYDARKNET_AMX", "on") == "off":
        return TURNED_OFF
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return f"AMX tiles are used on x86-64 Linux only (this is {sys.platform} {platform.machine()})"
    features = cpu_target.target_context.codegen().magic_tuple()[2].split(",")
    missing = [f for f in ("amx-tile", "amx-bf16") if f"+{f}" not in features]
    if missing:
        return f"this CPU (as Numba compiles for it) lacks {' and '.join(missing)}"
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(SYS_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0:
        return f"the kernel does not let this process use the AMX tiles (arch_prctl: errno {ctypes.get_errno()})"
    return None


def _declare(builder, name, args, result=ir.VoidType()):
    try:
        return builder.module.get_global(name)
    except KeyError:
        return ir.Function(builder.module, ir.FunctionType(result, args), name)


def _at(context, builder, aty, array, offset):
    """The address of element `offset` of a contiguous array, as a byte pointer."""
    data = cgutils.create_struct_proxy(aty)(context, builder, value=array).data
    return builder.bitcast(builder.gep(data, [offset]), _I8P)


def _tile(n):
    return ir.Constant(_I8, n)


@intrinsic
def _tile_config(typingctx, config):
    """Load the tile shapes (TILE_CONFIG's 64 bytes) for this thread."""
    def codegen(context, builder, signature, args):
        at = _at(context, builder, signature.args[0], args[0], ir.Constant(_I64, 0))
        builder.call(_declare(builder, "llvm.x86.ldtilecfg", [_I8P]), [at])
        return context.get_dummy_value()
    return types.void(config), codegen


@intrinsic
def _prefetch_rows(typingctx, a, at, ld, rows, length):
    """Ask for the cache lines of `rows` rows of `length` (<= 16) elements (ld elements apart) of a from element
    `at`, for writing (prefetchw), so that the stores that follow find them in the core's cache: each row's first
    and last element (a row of 16 floats spans at most two lines)."""
    def codegen(context, builder, signature, args):
        a_, at_, ld_, rows_, length_ = args
        i32 = ir.IntType(32)
        fetch = _declare(builder, "llvm.prefetch.p0", [_I8P, i32, i32, i32])
        write, keep, data = ir.Constant(i32, 1), ir.Constant(i32, 3), ir.Constant(i32, 1)
        last = builder.sub(length_, ir.Constant(_I64, 1))
        with cgutils.for_range(builder, rows_) as loop:
            row = builder.add(at_, builder.mul(loop.index, ld_))
            for offset in (row, builder.add(row, last)):
                builder.call(fetch, [_at(context, builder, signature.args[0], a_, offset), write, keep, data])
        return context.get_dummy_value()
    return types.void(a, types.intp, types.intp, types.intp, types.intp), codegen


@intrinsic
def _zero_c(typingctx):
    """C's four tiles to zero."""
    def codegen(context, builder, signature, args):
        zero = _declare(builder, "llvm.x86.tilezero", [_I8])
        for t in range(4):
            builder.call(zero, [_tile(t)])
        return context.get_dummy_value()
    return types.void(), codegen


@intrinsic
def _step(typingctx, a, a_at, a_next, lda, b, b_at, b_next, ldb):
    """C += A . B for one 32-long step of k: A's two tiles (rows 0-15 and 16-31, each 16 rows lda elements apart)
    at a_at and a_at + a_next, B's two tiles (columns 0-15 and 16-31, in VNNI order: 16 k-pair rows of 16 x 2
    bf16, ldb elements apart) at b_at and b_at + b_next."""
    def codegen(context, builder, signature, args):
        a_, a_at_, a_next_, lda_, b_, b_at_, b_next_, ldb_ = args
        load = _declare(builder, "llvm.x86.tileloadd64", [_I8, _I8P, _I64])
        dot = _declare(builder, "llvm.x86.tdpbf16ps", [_I8, _I8, _I8])
        two = ir.Constant(_I64, 2)
        below = builder.add(a_at_, a_next_)
        builder.call(load, [_tile(4), _at(context, builder, signature.args[0], a_, a_at_), builder.mul(lda_, two)])
        builder.call(load, [_tile(5), _at(context, builder, signature.args[0], a_, below), builder.mul(lda_, two)])
        for t, offset in ((6, ir.Constant(_I64, 0)), (7, b_next_)):
            at = _at(context, builder, signature.args[4], b_, builder.add(b_at_, offset))
            builder.call(load, [_tile(t), at, builder.mul(ldb_, two)])
        for c, (ta, tb) in enumerate(((4, 6), (4, 7), (5, 6), (5, 7))):
            builder.call(dot, [_tile(c), _tile(ta), _tile(tb)])
        return context.get_dummy_value()
    return types.void(a, types.intp, types.intp, types.intp, b, types.intp, types.intp, types.intp), codegen


@intrinsic
def _store_tile(typingctx, c, c_at, ldc, tile):
    """C's tile `tile` (0-3: filters 16 (tile // 2) on, pixels 16 (tile % 2) on) into c from element c_at, its 16
    rows ldc elements apart."""
    def codegen(context, builder, signature, args):
        c_, c_at_, ldc_, tile_ = args
        store = _declare(builder, "llvm.x86.tilestored64", [_I8, _I8P, _I64])
        at = _at(context, builder, signature.args[0], c_, c_at_)
        row_bytes = builder.mul(ldc_, ir.Constant(_I64, 4))
        done = builder.append_basic_block("tile_stored")
        switch = builder.switch(tile_, done)
        for t in range(4):   # the tile is an immediate of the instruction
            block = builder.append_basic_block(f"store_tile{t}")
            switch.add_case(ir.Constant(tile_.type, t), block)
            with builder.goto_block(block):
                builder.call(store, [_tile(t), at, row_bytes])
                builder.branch(done)
        builder.position_at_end(done)
        return context.get_dummy_value()
    return types.void(c, types.intp, types.intp, types.intp), codegen


_F32 = ir.FloatType()
_I32 = ir.IntType(32)
_ROW = ir.VectorType(_F32, 16)     # 16 floats
_WORDS = ir.VectorType(_I32, 16)   # 16 words


def _block_swap(d, high):
    """The two-source shuffle that makes row i (high: row i + d) of a stage of a 16 x 16 transpose from rows i and
    i + d: the d x d blocks off the diagonal of each 2d x 2d block swapped (rows d = 8, 4, 2, 1 apart, in turn)."""
    return ir.Constant(ir.VectorType(_I32, 16), [p + d * high if not p & d else 16 + p - d * (not high)
                                                  for p in range(16)])


def _splat_i32(builder, value):
    return ir.Constant(_WORDS, [value] * 16)


def _turn(builder, rows):
    """16 vectors of 16 (a 16 x 16 block by rows) turned around: four stages of two-source shuffles."""
    for d in (8, 4, 2, 1):
        turned = list(rows)
        for i in range(16):
            if not i & d:
                turned[i] = builder.shuffle_vector(rows[i], rows[i + d], _block_swap(d, False))
                turned[i + d] = builder.shuffle_vector(rows[i], rows[i + d], _block_swap(d, True))
        rows = turned
    return rows


def _to_bf16(builder, bits):
    """16 float32 bits (words) -> their bf16 in the low halves: bf16.to_bf16's rounding (to nearest, ties to even,
    in integers), vector-wide."""
    odd = builder.and_(builder.lshr(bits, _splat_i32(builder, 16)), _splat_i32(builder, 1))
    return builder.lshr(builder.add(builder.add(bits, _splat_i32(builder, 0x7FFF)), odd), _splat_i32(builder, 16))


def _lanes(builder, count):
    """The mask of lanes 0 .. count - 1 of 16."""
    ones = builder.sub(builder.shl(ir.Constant(_I64, 1), count), ir.Constant(_I64, 1))
    return builder.bitcast(builder.trunc(ones, ir.IntType(16)), ir.VectorType(ir.IntType(1), 16))


def _masked(builder, op, vector):
    """llvm.masked.load or llvm.masked.store of a vector like `vector` (its type, 16 lanes)."""
    kind = "v16f32" if vector.element == _F32 else "v16i32"
    suffix = f"{kind}.{'p0' if str(vector.as_pointer()) == 'ptr' else 'p0' + kind}"   # (opaque or typed pointers)
    mask = ir.VectorType(ir.IntType(1), 16)
    if op == "load":
        return _declare(builder, f"llvm.masked.load.{suffix}", [vector.as_pointer(), _I32, mask, vector], vector)
    return _declare(builder, f"llvm.masked.store.{suffix}", [vector, vector.as_pointer(), _I32, mask])


@intrinsic
def _round_turned(typingctx, bits, at, plane, channels, count, words, words_at, width):
    """`count` (<= 16) pixels of `channels` (<= 2 width) planes, rounded to bf16 and turned around into pixel rows
    of `width` (16 or 8) words: words[words_at + width j + p] = the bf16 of plane 2 p (low half) and plane 2 p + 1
    (high half) at pixel j, the planes bits[at + i plane + j] (float32 bits), zero past `channels`. Each plane's 16
    pixels are one
    masked vector load, rounded as bf16.to_bf16 rounds (to nearest, ties to even, in integers: the same bits), two
    planes joined into words, the 16 x 16 words turned around in registers: element by element, the reads 32
    planes apart are each a load of its own."""
    def codegen(context, builder, signature, args):
        bits_, at_, plane_, channels_, count_, words_, words_at_, width_ = args
        lanes = _lanes(builder, count_)
        none = ir.Constant(ir.VectorType(ir.IntType(1), 16), [0] * 16)
        zero = ir.Constant(_WORDS, [0] * 16)
        load = _masked(builder, "load", _WORDS)
        rounded = []
        for i in range(32):
            source = builder.bitcast(_at(context, builder, signature.args[0], bits_,
                                         builder.add(at_, builder.mul(plane_, ir.Constant(_I64, i)))),
                                     _WORDS.as_pointer())
            present = builder.select(builder.icmp_signed("<", ir.Constant(_I64, i), channels_), lanes, none)
            v = builder.call(load, [source, ir.Constant(_I32, 4), present, zero])
            rounded.append(_to_bf16(builder, v))
        pairs = [builder.or_(rounded[2 * p], builder.shl(rounded[2 * p + 1], _splat_i32(builder, 16)))
                 for p in range(16)]
        store = _masked(builder, "store", _WORDS)
        row_lanes = _lanes(builder, width_)
        for j, row in enumerate(_turn(builder, pairs)):
            with builder.if_then(builder.icmp_signed("<", ir.Constant(_I64, j), count_)):
                target = _at(context, builder, signature.args[5], words_,
                             builder.add(words_at_, builder.mul(width_, ir.Constant(_I64, j))))
                builder.call(store, [row, builder.bitcast(target, _WORDS.as_pointer()), ir.Constant(_I32, 4),
                                     row_lanes])
        return context.get_dummy_value()
    return types.void(bits, types.intp, types.intp, types.intp, types.intp, words, types.intp, types.intp), codegen


def _finish(builder, v, center, scale, shift, activation):
    """v (16 floats) finished as epilogue.affine_activate_row finishes a row: (v - center) * scale + shift, each
    rounded, then leaky's 0.1 x or relu (`activation`, the Store's code) in float32."""
    zero = ir.Constant(_ROW, [0.0] * 16)
    tenth = _splat(builder, ir.Constant(_F32, float(np.float32(0.1))), 16)
    leaky = builder.icmp_signed("==", activation, ir.Constant(activation.type, LEAKY))
    relu = builder.icmp_signed("==", activation, ir.Constant(activation.type, RELU))
    v = builder.fadd(builder.fmul(builder.fsub(v, center), scale), shift)
    positive = builder.fcmp_ordered(">", v, zero)
    return builder.select(leaky, builder.select(positive, v, builder.fmul(tenth, v)),
                          builder.select(relu, builder.select(positive, v, zero), v))


def _tile_rows(context, builder, signature, c):
    """The 16 rows of 16 floats of C's tile in c (signature.args[0])."""
    return [builder.load(builder.bitcast(_at(context, builder, signature.args[0], c, ir.Constant(_I64, 16 * j)),
                                         _ROW.as_pointer()), align=4) for j in range(16)]


def _finish_tile(turn):
    """The codegen of _store_rows (turn False) and _store_turned (turn True)."""
    def codegen(context, builder, signature, args):
        c_, out_, at_, ldc_, filters_, cols_, affine_, f_, activation_ = args
        rows = _tile_rows(context, builder, signature, c_)
        if turn:
            rows = _turn(builder, rows)
        lanes = _lanes(builder, cols_)
        store = _masked(builder, "store", _ROW)
        terms = cgutils.create_struct_proxy(signature.args[6])(context, builder, value=affine_)
        count = builder.extract_value(terms.shape, 1)   # filters in the affine rows: 0 for none
        for i in range(16):
            with builder.if_then(builder.icmp_signed("<", ir.Constant(_I64, i), filters_)):
                target = builder.bitcast(_at(context, builder, signature.args[1], out_,
                                             builder.add(at_, builder.mul(ldc_, ir.Constant(_I64, i)))),
                                         _ROW.as_pointer())
                with builder.if_else(builder.icmp_signed(">", count, ir.Constant(_I64, 0))) as (finish, raw):
                    with finish:
                        filter_ = builder.add(f_, ir.Constant(_I64, i))
                        center, scale, shift = (
                            _splat(builder, builder.load(builder.bitcast(
                                _at(context, builder, signature.args[6], affine_,
                                    builder.add(builder.mul(count, ir.Constant(_I64, r)), filter_)),
                                _F32.as_pointer())), 16) for r in range(3))
                        v = _finish(builder, rows[i], center, scale, shift, activation_)
                        builder.call(store, [v, target, ir.Constant(_I32, 4), lanes])
                    with raw:
                        builder.call(store, [rows[i], target, ir.Constant(_I32, 4), lanes])
        return context.get_dummy_value()
    return codegen


@intrinsic
def _store_rows(typingctx, c, out, at, ldc, filters, cols, affine, f, activation):
    """C's tile in c (16 filters x 16 pixels, rows of 16 floats) into the output's planes: filter f + i's `cols`
    pixels at out[at + i ldc] for i < filters, finished as they go by the affine rows and activation of a
    kernels.epilogue.Store (none for affine (3, 0)): each filter's row finished in a vector register and written
    with one masked store. The arithmetic is epilogue.affine_activate_row's, a subtraction, a multiply and an add
    each rounded, then leaky's 0.1 x or relu, so the bits are the fast modes' pass's (tests/test_reduced_precision.py
    holds them to it). Scalar code finishing the tile's rows took a third of the time of a kernel storing C
    filters x pixels."""
    return types.void(c, out, types.intp, types.intp, types.intp, types.intp, affine, types.intp, types.intp), \
        _finish_tile(turn=False)


@intrinsic
def _store_turned(typingctx, c, out, at, ldc, filters, cols, affine, f, activation):
    """_store_rows of C's tile stored pixels x filters (16 pixels x 16 filters, rows of 16 floats): the tile is
    turned around in vector registers first (four stages of 16 two-source shuffles)."""
    return types.void(c, out, types.intp, types.intp, types.intp, types.intp, affine, types.intp, types.intp), \
        _finish_tile(turn=True)


@intrinsic
def _store_words(typingctx, c, words, at, step, cols, filters, affine, f, activation):
    """C's tile in c (16 pixels x 16 filters, rows of 16 floats) as the next layer's input: pixel j's filters f .. f
    + 15, finished as _store_turned finishes them (the affine rows and activation of a kernels.epilogue.Store:
    affine (3, 0) for none), rounded to bf16 as _round_turned rounds them (_to_bf16) and paired into 8 words (the
    even filter in the low half; zero past `filters`), at words[at + step j] for j < cols: to_bf16_blocked's layout,
    with the bits to_bf16_blocked would give from the output this tile would have stored."""
    def codegen(context, builder, signature, args):
        c_, words_, at_, step_, cols_, filters_, affine_, f_, activation_ = args
        rows = _tile_rows(context, builder, signature, c_)
        terms = cgutils.create_struct_proxy(signature.args[6])(context, builder, value=affine_)
        count = builder.extract_value(terms.shape, 1)   # filters in the affine rows: 0 for none
        finished = builder.icmp_signed(">", count, ir.Constant(_I64, 0))
        present = _lanes(builder, filters_)
        none = ir.Constant(ir.VectorType(ir.IntType(1), 16), [0] * 16)
        zero = ir.Constant(_ROW, [0.0] * 16)
        load = _masked(builder, "load", _ROW)
        terms_at = [builder.add(builder.mul(count, ir.Constant(_I64, r)), f_) for r in range(3)]   # affine[r, f]
        center, scale, shift = (builder.call(load, [
            builder.bitcast(_at(context, builder, signature.args[6], affine_, at), _ROW.as_pointer()),
            ir.Constant(_I32, 4), builder.select(finished, present, none), zero]) for at in terms_at)
        even = ir.Constant(ir.VectorType(_I32, 8), list(range(0, 16, 2)))
        odd = ir.Constant(ir.VectorType(_I32, 8), list(range(1, 16, 2)))
        for j in range(16):
            with builder.if_then(builder.icmp_signed("<", ir.Constant(_I64, j), cols_)):
                v = builder.select(finished, _finish(builder, rows[j], center, scale, shift, activation_), rows[j])
                rounded = _to_bf16(builder, builder.bitcast(builder.select(present, v, zero), _WORDS))
                pairs = builder.or_(builder.shuffle_vector(rounded, rounded, even),
                                    builder.shl(builder.shuffle_vector(rounded, rounded, odd),
                                                ir.Constant(ir.VectorType(_I32, 8), [16] * 8)))
                target = _at(context, builder, signature.args[1], words_,
                             builder.add(at_, builder.mul(step_, ir.Constant(_I64, j))))
                builder.store(pairs, builder.bitcast(target, ir.VectorType(_I32, 8).as_pointer()), align=4)
        return context.get_dummy_value()
    return types.void(c, words, types.intp, types.intp, types.intp, types.intp, affine, types.intp, types.intp), \
        codegen


@intrinsic
def _pool_stored(typingctx, out, top, bottom, ldc, filters, cols, pooled, pooled_at, pooled_ld):
    """The 2x2 stride-2 max pool of `filters` output rows just stored (in the core's cache): filter i's `cols`
    (<= 16) pixels from out[top + i ldc] and, the window's second row, out[bottom + i ldc] (top again where there
    is none), into (cols + 1) // 2 elements of pooled[pooled_at + i pooled_ld]. pool.maxpool_2x2's arithmetic in
    vector registers: each window's running maximum from -FLT_MAX, its four pixels taken in darknet's order, each
    replacing the maximum only if greater; a column past the row's end is -FLT_MAX, which never does."""
    def codegen(context, builder, signature, args):
        out_, top_, bottom_, ldc_, filters_, cols_, pooled_, pooled_at_, pooled_ld_ = args
        load = _masked(builder, "load", _ROW)
        store = _masked(builder, "store", _ROW)
        lowest = ir.Constant(_ROW, [-float(FLT_MAX)] * 16)
        lanes = _lanes(builder, cols_)
        windows = _lanes(builder, builder.sdiv(builder.add(cols_, ir.Constant(_I64, 1)), ir.Constant(_I64, 2)))
        even = ir.Constant(ir.VectorType(_I32, 16), [2 * j % 16 for j in range(16)])
        odd = ir.Constant(ir.VectorType(_I32, 16), [(2 * j + 1) % 16 for j in range(16)])

        def row(at):
            source = builder.bitcast(_at(context, builder, signature.args[0], out_, at), _ROW.as_pointer())
            return builder.call(load, [source, ir.Constant(_I32, 4), lanes, lowest])

        def larger(v, m):
            return builder.select(builder.fcmp_ordered(">", v, m), v, m)

        for i in range(16):
            with builder.if_then(builder.icmp_signed("<", ir.Constant(_I64, i), filters_)):
                step = builder.mul(ldc_, ir.Constant(_I64, i))
                r0, r1 = row(builder.add(top_, step)), row(builder.add(bottom_, step))
                m = larger(builder.shuffle_vector(r0, r0, even), lowest)
                m = larger(builder.shuffle_vector(r0, r0, odd), m)
                m = larger(builder.shuffle_vector(r1, r1, even), m)
                m = larger(builder.shuffle_vector(r1, r1, odd), m)
                at = builder.add(pooled_at_, builder.mul(pooled_ld_, ir.Constant(_I64, i)))
                target = builder.bitcast(_at(context, builder, signature.args[6], pooled_, at), _ROW.as_pointer())
                builder.call(store, [m, target, ir.Constant(_I32, 4), windows])
        return context.get_dummy_value()
    return types.void(out, types.intp, types.intp, types.intp, types.intp, types.intp, pooled, types.intp,
                      types.intp), codegen


def tile_config():
    """The 64-byte tile configuration: palette 1, tiles 0-7 of 16 rows x 64 bytes."""
    config = np.zeros(64, np.uint8)
    config[0] = 1
    config[16:32:2] = 64     # bytes per row, tiles 0-7 (16-bit fields)
    config[48:56] = 16       # rows, tiles 0-7
    return config


TILE_CONFIG = tile_config()


@njit(cache=True)
def _pack_weights(w, a):
    bits = w.view(np.uint32)
    for i in range(w.shape[0]):
        for k in range(w.shape[1]):
            a[i // 32, k // 32, i % 32, k % 32] = to_bf16(bits[i, k])


def pack_weights(w):
    """The weights (filters, k) as bf16, zero-padded to multiples of 32 rows and columns, in blocks of 32 x 32
    (row blocks, k blocks, 32, 32): A's two tiles for a step of k are 2 KiB in one piece. Rows of the whole
    matrix (k * 2 bytes apart) made each tile load touch 16 distant cache lines: yolov4-tiny's AMX products
    took ~10 % longer so."""
    m, k = w.shape
    a = aligned_zeros((-(-m // 32), -(-k // 32), 32, 32), np.uint16)
    _pack_weights(np.ascontiguousarray(w, dtype=np.float32), a)
    return a


@njit(cache=True, parallel=True)
def to_bf16_padded(x, pad, out):
    """out (c + 1, h + 2 pad, w + 2 pad) = image x (c, h, w) as bf16 within a zero border, and a zero plane
    after (conv_image reads it for k's padding)."""
    c, h, w = x.shape
    bits = x.view(np.uint32)
    out[c] = 0
    for ch in prange(c):
        out[ch, :pad, :] = 0
        out[ch, pad + h:, :] = 0
        for y in range(h):
            row = out[ch, pad + y]
            row[:pad] = 0
            row[pad + w:] = 0
            for i in range(w):
                row[pad + i] = to_bf16(bits[ch, y, i])


@njit(cache=True, parallel=True)
def conv_image(a, m, xp, channels, size, stride, dilation, out_h, out_w, out, config, b_work, c_work, affine,
               activation):
    """out (m, out_h*out_w) = the convolution of the padded bf16 image xp (to_bf16_padded) by the packed weights
    a (pack_weights: m filters x channels*size*size), for any stride and dilation, finished by the affine rows and
    activation of a kernels.epilogue.Store as it is stored (none for affine (3, 0)). Each thread packs the im2col
    columns of its blocks of 32 output pixels into b_work[t] (k padded * 32 bf16, in B's order) and runs every
    row block of A over them; c_work (threads, 1024) float32 holds each of C's tiles on its way (_store_rows)."""
    rows_a, kp = a.shape[0] * 32, a.shape[1] * 32
    k = channels * size * size
    L = out_h * out_w
    blocks = (L + 31) // 32
    threads = b_work.shape[0]
    per = (blocks + threads - 1) // threads
    a_flat = a.reshape(-1)
    out_flat = out.reshape(-1)
    where = np.empty((kp, 3), np.intp)   # each position of k: its channel, row and column offsets in xp
    for kk in range(kp):
        if kk < k:
            ch = kk // (size * size)
            r = kk - ch * size * size
            where[kk, 0], where[kk, 1], where[kk, 2] = ch, (r // size) * dilation, (r % size) * dilation
        else:             # k's padding reads xp's last plane, zero (A is zero there too, but garbage could be NaN)
            where[kk, 0], where[kk, 1], where[kk, 2] = xp.shape[0] - 1, 0, 0
    for t in prange(threads):
        _tile_config(config)
        b = b_work[t]
        c = c_work[t]
        runs_j = np.empty(32, np.intp)
        runs_y = np.empty(32, np.intp)
        runs_x = np.empty(32, np.intp)
        runs_n = np.empty(32, np.intp)
        for block in range(t * per, min(blocks, (t + 1) * per)):
            p0 = block * 32
            cols = min(32, L - p0)
            runs, j = 0, 0
            while j < cols:   # the block's pixels as runs along output rows
                oy = (p0 + j) // out_w
                ox = p0 + j - oy * out_w
                runs_j[runs], runs_y[runs], runs_x[runs] = j, oy * stride, ox * stride
                runs_n[runs] = min(cols - j, out_w - ox)
                j += runs_n[runs]
                runs += 1
            for pair in range(kp // 2):   # two positions of k at a time: B's rows are k-pairs
                ca, ya, xa = where[2 * pair]
                cb, yb, xb = where[2 * pair + 1]
                for r in range(runs):
                    dst = pair * 64 + 2 * runs_j[r]
                    row_a = xp[ca, runs_y[r] + ya]
                    row_b = xp[cb, runs_y[r] + yb]
                    xa0, xb0 = runs_x[r] + xa, runs_x[r] + xb
                    if stride == 1:   # contiguous reads: LLVM interleaves them with vector shuffles
                        for q in range(runs_n[r]):
                            b[dst + 2 * q] = row_a[xa0 + q]
                            b[dst + 2 * q + 1] = row_b[xb0 + q]
                    else:
                        for q in range(runs_n[r]):
                            b[dst + 2 * q] = row_a[xa0 + q * stride]
                            b[dst + 2 * q + 1] = row_b[xb0 + q * stride]
            for r0 in range(0, rows_a, 32):
                _zero_c()
                for s in range(kp // 32):
                    _step(a_flat, (r0 // 32 * (kp // 32) + s) * 1024, 512, 32, b, s * 1024, 32, 64)
                for tile in range(4):
                    f, q = r0 + 16 * (tile // 2), p0 + 16 * (tile % 2)
                    if f < m and q - p0 < cols:
                        _store_tile(c, 0, 16, tile)
                        _store_rows(c, out_flat, f * L + q, L, min(16, m - f), min(16, cols - (q - p0)), affine, f,
                                    activation)


def pixel_channels(channels):
    """The channels of a pixel in to_bf16_blocked's layout: 32, or 16 for an image of 16 channels or fewer, whose
    tile rows (64 bytes) are then two neighbouring pixels: a step of the tiles' k is two kernel columns, not one
    column's 16 channels and 16 of padding."""
    return 16 if channels <= 16 else 32


def kernel_columns(channels, size):
    """The kernel columns of conv_blocked's steps of k (pack_weights_blocked's third axis): each column, or pairs of
    columns (pixel_channels 16), the last of an odd size paired with a column of zero weights."""
    return size if pixel_channels(channels) == 32 else -(-size // 2)


def blocked_layout(channels, size, stride, pad, w, out_h, out_w):
    """The shape of to_bf16_blocked's output for an image of `channels` x ? x w and a size x size kernel at
    `stride`, (blocks of pixel_channels, rows, wp, pixel_channels); wp, the padded row (w + 2 pad, and the column
    a kernel of paired columns reads past its last: zero) rounded up to 16 pixels; and wq, the output's row (out_w)
    rounded up to 16, the rows of conv_blocked's grid of output positions, so that each of C's tiles (16 output
    positions) lies within one row. Its rows are those conv_blocked's blocks of output positions (16 columns of
    two rows) read: the padded image's, and zeros below."""
    per_pixel = pixel_channels(channels)
    reach = kernel_columns(channels, size) * 32 // per_pixel   # the kernel's columns, and the zero one if paired
    wp, wq = -(-(w + 2 * pad + reach - size) // 16) * 16, -(-out_w // 16) * 16
    last = (-(-out_h // 2) * 2) * wq - 1   # the last position of the grid (an even number of rows)
    read = (stride * (last // wq) + size - 1) * wp + stride * (last % wq) + reach   # positions 0 .. read - 1
    return (-(-channels // per_pixel), -(-read // wp), wp, per_pixel), wp, wq


NO_WORDS = np.zeros((0, 0, 0, 32), np.uint16)   # conv_blocked's words when it writes its output

BLOCKED_RUN = 128   # pixels of a row a task of to_bf16_blocked rounds (a wide row is several tasks)


@njit(cache=True, parallel=True)
def to_bf16_blocked(x, pad, out):
    """out[cb, y, x, i] = the bf16 of channel n cb + i of image x (c, h, w) at row y - pad, column x - pad; zero
    outside the image and past its channels: each pixel's n channels side by side (n = out.shape[3],
    pixel_channels), conv_blocked's A tiles' rows. All of out is written (it may be scratch that another layout
    used), a run of BLOCKED_RUN pixels of a row of a block a task, the image's pixels 16 at a time
    (_round_turned)."""
    c, h, w = x.shape
    blocks, rows, wp, n = out.shape
    per = n // 2   # words a pixel
    runs = -(-wp // BLOCKED_RUN)
    bits = x.reshape(-1).view(np.uint32)
    words = out.reshape(-1).view(np.uint32)
    for task in prange(blocks * rows * runs):
        cb, y, run = task // (rows * runs), task // runs % rows, task % runs
        x0, x1 = run * BLOCKED_RUN, min(wp, (run + 1) * BLOCKED_RUN)
        iy = y - pad
        first, last = (max(x0, pad), min(x1, pad + w)) if 0 <= iy < h else (x1, x1)   # the image's pixels
        line = words[((cb * rows + y) * wp) * per:((cb * rows + y + 1) * wp) * per]
        line[x0 * per:max(x0, first) * per] = 0
        line[max(x0, last) * per:x1 * per] = 0
        for px in range(first, last, 16):
            _round_turned(bits, (n * cb * h + iy) * w + px - pad, h * w, min(n, c - n * cb),
                          min(16, last - px), words, ((cb * rows + y) * wp + px) * per, per)


@njit(cache=True)
def _pack_blocked(w, n, b):
    bits = w.view(np.uint32)
    paired = 32 // n   # kernel columns a step
    for f in range(w.shape[0]):
        for ch in range(w.shape[1]):
            for ky in range(w.shape[2]):
                for kx in range(w.shape[3]):
                    word = to_bf16(bits[f, ch, ky, kx])
                    b[f // 32, ky, kx // paired, ch // n, f % 32 // 16, kx % paired * n // 2 + ch % n // 2, f % 16,
                      ch % 2] = word


def pack_weights_blocked(w, channels, size):
    """The weights (filters, channels*size*size, darknet's order) as conv_blocked's B: bf16, zero-padded, in blocks
    (filter blocks of 32, ky, kernel_columns, channel blocks of pixel_channels, 2 halves of 16 filters, 16 channel
    pairs, 16 filters, 2): each half a B tile of 1 KiB in VNNI order (a channel pair's two weights of a filter side
    by side); with 16 channels a pixel, pairs 0-7 are a column's and 8-15 the next column's."""
    m = w.shape[0]
    n = pixel_channels(channels)
    b = aligned_zeros((-(-m // 32), size, kernel_columns(channels, size), -(-channels // n), 2, 16, 16, 2), np.uint16)
    _pack_blocked(np.ascontiguousarray(w, dtype=np.float32).reshape(m, channels, size, size), n, b)
    return b


@njit(cache=True, inline="always")
def _work_item(item, blocks, filter_blocks, weights_outer):
    """(block of 32 output positions, block of 32 filters) of work item `item`: the filter blocks of a block of
    positions in turn (its image tiles stay in the core's cache while every filter goes by), or with
    `weights_outer` the position blocks of a filter block in turn (weights larger than the cache are then read
    from memory once, not once per block of positions)."""
    if weights_outer:
        return item % blocks, item // blocks
    return item // filter_blocks, item % filter_blocks


@njit(cache=True, inline="always")
def _image_at(q, wq, stride, wp, ky, kx):
    """The pixel of the padded image (in rows of wp) that kernel position (ky, kx) reads for output position q of a
    grid in rows of wq."""
    y = q // wq
    return (stride * y + ky) * wp + stride * (q - y * wq) + kx


@njit(cache=True, inline="always")
def _rows_at(pooled_only, half, row, f, L, y, out_w, x):
    """Where conv_blocked finishes the rows of C's tile of filter half `half` and grid row `row` of its block
    (output row y, filters f.., columns x..): the output's planes, or with pooled_only c_work past C's tile."""
    if pooled_only:
        return 256 + half * 512 + row * 256
    return f * L + y * out_w + x


@njit(cache=True, parallel=True)
def conv_blocked(b, m, xb, wp, wq, stride, out_h, out_w, out, config, c_work, weights_outer, affine, activation,
                 pooled, pooled_only, words, words_pad):
    """out (m, out_h*out_w) = the size x size convolution at `stride` of the image in xb (to_bf16_blocked, rows of
    wp pixels) by b (pack_weights_blocked), finished tile by tile by a kernels.epilogue.Store's affine rows and
    activation (none for affine (3, 0)) and its 2x2 max pool into `pooled` (none for NO_POOL). A is the image, 16
    output columns of two output rows at a time (a tile of 16 pixels a row, each pixel a row of 32 channels, or of
    two neighbouring pixels' 16; q = y wq + x, grid rows wq wide), B the weights. For kernel position (ky, kx) (kx
    even with pixels of 16 channels: the step is columns kx and kx + 1), A's tile rows are pixels (stride y + ky,
    stride x + kx) of the padded image, `stride` pixels apart: no copy of the image per kernel column or phase. C's
    tiles are pixels x filters: each goes through c_work into the output's rows (16 filters' planes), the columns
    past out_w dropped, finished by the store on the way (_store_turned); then the pool's windows over the two rows
    (_pool_stored), while they are in the core's cache; with `pooled_only` (an output no other layer reads) the
    finished rows go to c_work past C's tile instead of the output (c_work: 1280 floats a thread), so that only the
    pool's output is written. With `words` (not NO_WORDS: the next layer's input in to_bf16_blocked's layout,
    padded by words_pad), the finished tiles go there instead, rounded to bf16 (_store_words), and the output is
    left unwritten. The work is shared out in runs of items (_work_item; weights_outer: filter block by filter
    block). Each item first asks for the output lines it will store (_prefetch_rows), which a pass finds cold: they
    arrive while its steps run instead of stalling the stores."""
    filter_blocks, size, columns = b.shape[:3]
    channel_blocks, rows, _, n = xb.shape   # n channels a pixel: kernel columns 32 // n a step
    across = wq // 16   # blocks of a pair of grid rows
    blocks = -(-out_h // 2) * across
    items = blocks * filter_blocks
    threads = c_work.shape[0]
    per = (items + threads - 1) // threads
    L = out_h * out_w
    b_flat = b.reshape(-1)
    xb_flat = xb.reshape(-1)
    out_flat = out.reshape(-1)
    per_filter_block = size * columns * channel_blocks * 1024
    p_h, p_w = pooled.shape[1:]
    pooled_flat = pooled.reshape(-1)
    words_flat = words.reshape(-1).view(np.uint32)
    _, words_rows, words_wp, words_n = words.shape
    half_n = words_n // 2   # words a pixel
    for t in prange(threads):
        _tile_config(config)
        c = c_work[t]
        for item in range(t * per, min(items, (t + 1) * per)):
            block, fb = _work_item(item, blocks, filter_blocks, weights_outer)
            y0, x = block // across * 2, block % across * 16
            q0, f0 = y0 * wq + x, fb * 32
            if not pooled_only and not words.size:   # the rows this item stores, fetched while its steps run
                for r in range(min(2, out_h - y0)):
                    _prefetch_rows(out_flat, f0 * L + (y0 + r) * out_w + x, L, min(32, m - f0), min(16, out_w - x))
            _zero_c()
            for ky in range(size):
                for kx in range(columns):
                    at = _image_at(q0, wq, stride, wp, ky, kx * 32 // n)
                    below = _image_at(q0 + wq, wq, stride, wp, ky, kx * 32 // n) - at   # (the grid's next row)
                    for cb in range(channel_blocks):
                        b_at = fb * per_filter_block + ((ky * columns + kx) * channel_blocks + cb) * 1024
                        _step(xb_flat, (cb * rows * wp + at) * n, below * n, n * stride, b_flat, b_at, 512, 32)
            cols = min(16, out_w - x)
            rows_to, ld = (c, 16) if pooled_only else (out_flat, L)   # where the finished rows go
            for tile in range(4):
                y, half = y0 + tile // 2, tile % 2
                f = f0 + 16 * half
                filters = min(16, m - f)
                if y >= out_h or filters <= 0:
                    continue
                _store_tile(c, 0, 16, tile)
                if words.size:
                    at = ((f // words_n * words_rows + y + words_pad) * words_wp + x + words_pad) * half_n
                    _store_words(c, words_flat, at + f % words_n // 2, half_n, cols, filters, affine, f, activation)
                    continue
                at = _rows_at(pooled_only, half, tile // 2, f, L, y, out_w, x)
                _store_turned(c, rows_to, at, ld, filters, cols, affine, f, activation)
            for half in range(2 if pooled.size else 0):   # the windows of the two rows just finished
                at = _rows_at(pooled_only, half, 0, f0 + 16 * half, L, y0, out_w, x)
                below = (_rows_at(pooled_only, half, 1, f0 + 16 * half, L, y0 + 1, out_w, x) - at
                         if y0 + 1 < out_h else 0)
                _pool_stored(rows_to, at, at + below, ld, min(16, m - f0 - 16 * half), cols, pooled_flat,
                             ((f0 + 16 * half) * p_h + y0 // 2) * p_w + x // 2, p_h * p_w)
