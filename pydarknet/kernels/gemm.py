"""Darknet's matrix product, bit for bit, at close to BLAS speed.

The contract
------------
Darknet's gemm (gemm.c, built -Ofast for plain x86-64: SSE2, no FMA) computes C = A @ B as

    for i: for k = 0 .. K-1: a = A[i, k]; for j: C[i, j] = C[i, j] + a * B[k, j]

in float32, from C = 0 (the convolution zero-fills its output first). Every output element is therefore
its own chain of float32 operations, c = 0; c = c + (a[k] * b[k]) for k = 0, 1, ..., K-1, in which each
product is rounded to float32 before it is added: a separate multiply and add, never a fused multiply-add.
A gemm that evaluates exactly these chains reproduces darknet to the last bit. BLAS does not: it splits
the k sum into partial sums and uses FMA, and through a deep network the difference grows to 1e-3.

Everything *between* chains is free. Elements may be computed in any order, on any thread, and a chain may
be paused (its float32 partial sum stored in C) and resumed later; only the k order inside one chain and
the separate rounding of each product are fixed. The kernel uses exactly that freedom:

* register tiles of 6 (or 4) rows x NR columns of C, NR being two vector registers of the CPU the kernel is
  compiled for: 32 floats with AVX-512F (twelve 16-float accumulators), 16 with AVX (8-float), 8 elsewhere
  (SSE, NEON: LLVM maps the 4-float vectors onto whatever the target has). A last panel of B at most one
  vector wide gets a one-vector tile. The tile holds its chains for a whole block of k, updated with one
  `vmulps` and one `vaddps` per vector of products. Zen's separate multiply and add pipes run the two at the
  throughput of one FMA, so exactness costs no peak speed there. The tile is written in LLVM IR
  (`_make_micro`) with plain `fmul`/`fadd` and no fast-math flags: LLVM may neither contract them into an
  FMA nor reassociate. `tests/test_gemm.py` checks this on inputs where an FMA rounds differently, for every
  width (the narrower ones compiled for older CPUs through Numba's NUMBA_CPU_NAME/NUMBA_CPU_FEATURES).
  The width is read from Numba's code generator while the kernel compiles (`_lanes`), not from the running
  machine, so that a kernel in Numba's cache (keyed by CPU name and features) always carries its own width;
* k blocks of at most 256: a 256 x NR panel of B (32 KiB at NR = 32) then stays in L1 while the tiles of a
  row block go by. Between blocks the chains wait in C and the next block reloads them, which is exact;
* B copied into NR-column panels (zero-padded on the right) and each row block of A into the tiles'
  order, so the tile reads both contiguously; C is only loaded and stored at the tile edges (masked);
* threads own disjoint tiles of C: runs of column panels where A has at most WIDE_ROWS rows and B many columns,
  else row blocks of A, B packed whole first and shared.

Variants: `sgemm_darknet` (C = A B), `sgemm_darknet_tn` (C = A^T B, darknet's gemm_tn) and
`sgemm_darknet_nt` (C = A B^T, darknet's gemm_nt) differ only in the strides used to pack A and B. With
``accumulate=True`` the chains start from C's current values (darknet's BETA = 1 for gemm_nn and gemm_tn).
Darknet's gemm_nt instead forms the whole sum from zero and adds it to C once: compute it into a scratch
array and do `C += scratch` with numpy (one float32 add per element, also exact). `sgemm_image` is
sgemm_darknet on im2col's columns packed straight from the image (`_pack_b_image`, the implicit im2col).
With ``fused=True`` each step is one fused multiply-add instead: the "fast" products, not darknet's bits.
Given int32 arrays for A and B instead (kernels/int16.py's words, each two int16), the same drivers and packing
run the --int16 products: each step multiplies a word pair's halves and adds both products to an int32 lane
(pmaddwd; vpdpwssd with VNNI), and a k block's int32 sums are added to C's float32 values at its end.
Given uint32 arrays (kernels/bf16.py's words, each two bfloat16), the --bf16 products without AMX: each step is
one vdpbf16ps (avx512_bf16), a word pair's two bf16 products added to C's float32 chain.

Operands must be float32 and C-contiguous. Denormals are kept as they are (darknet's -Ofast build flushes
them to zero); the golden networks never produce one.
"""
import functools

import numba
import numpy as np
from llvmlite import binding, ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .placement import kernel_threads

KC = 256          # longest k block: a KC x NR panel of B stays in L1 (32 KiB at NR = 32)
MC_MAX = 240      # rows of A per row block: the packed block (MC_MAX x KC floats) stays in L2
B_BLOCK = 32768   # floats of B a thread packs per k block when it owns all rows (128 KiB, in L2)
WIDE_COLUMNS = 128  # per thread: at least this many columns and at most WIDE_ROWS rows -> threads split columns
# Rows of A up to which the threads split B's columns (each packing its panels per k block, in L2, and reading all
# of A's k block: WIDE_ROWS x KC floats, 512 KiB) rather than A's row blocks after packing all of B (K x N floats,
# megabytes, through L3): 256 x 1152 x 2704 (yolov4's stride-2 layer at 416) 0.78x its time in --fast, 0.88x
# exact; 256 x 2304 x 676 0.89x and 0.95x; 512 rows 0.93-1.0x (the Xeon without AMX, 2 threads; compiled for AVX2
# there 0.86-0.98x).
WIDE_ROWS = 512

_F32 = ir.FloatType()
_I64 = ir.IntType(64)
_I32 = ir.IntType(32)
_I8P = ir.IntType(8).as_pointer()


def lanes_for(features):
    """Floats per vector register for an LLVM feature string ("+avx2,-avx512f,..."): 16 with AVX-512F, 8 with
    AVX (its 256-bit float multiply and add are all the tile uses), else 4 (SSE, NEON: the portable path)."""
    on = {f[1:] for f in features.split(",") if f.startswith("+")}
    return 16 if "avx512f" in on else 8 if "avx" in on else 4


def _lanes(context):
    """The vector width of the CPU this code is being compiled for. Read from the code generator at compile
    time, not from the running machine at import: Numba's cache is keyed by the same CPU name and features
    (codegen.magic_tuple()), so a cached kernel and the width it was built for can never disagree."""
    return lanes_for(context.codegen().magic_tuple()[2])


@functools.cache   # asking Numba's code generator takes 70 us, and a forward pass asks once per layer
def host_panel_width():
    """NR, the columns of B per register tile (two vectors) on the CPU this process compiles for."""
    from numba.core.registry import cpu_target
    return 2 * lanes_for(cpu_target.target_context.codegen().magic_tuple()[2])


@intrinsic
def _panel_width(typingctx):
    """NR = two vectors of the target CPU, a compile-time constant of the kernels that use it."""
    def codegen(context, builder, signature, args):
        return _i64(2 * _lanes(context))
    return types.intp(), codegen


def _i64(x):
    return ir.Constant(_I64, x)


def _i32(x):
    return ir.Constant(_I32, x)


def _is_f32_array(t):
    return isinstance(t, types.Array) and t.dtype == types.float32


def _is_word_array(t):
    """float32, int32 words each holding two int16 (the int16 products' operands) or uint32 words each holding
    two bfloat16 (the vdpbf16ps products' operands): see `_make_micro`."""
    return isinstance(t, types.Array) and t.dtype in (types.float32, types.int32, types.uint32)


def _data(context, builder, aty, val):
    return cgutils.create_struct_proxy(aty)(context, builder, value=val).data


def _phis(builder, *sources):
    """One phi per accumulator: phi q takes values[q] from block, for each (values, block) in sources
    (loops add their back edge later with add_incoming)."""
    phis = [builder.phi(v.type) for v in sources[0][0]]
    for values, block in sources:
        for phi, value in zip(phis, values):
            phi.add_incoming(value, block)
    return phis


def _declare(builder, name, ret, params):
    if name in builder.module.globals:
        return builder.module.globals[name]
    return ir.Function(builder.module, ir.FunctionType(ret, params), name=name)


def _mask_type(vec):
    return ir.VectorType(ir.IntType(1), vec.count)


def _vec_name(vec):
    return f"v{vec.count}{'f32' if vec.element == _F32 else 'i32'}"


def _masked_load(builder, vec):
    """llvm.masked.load of one vector: lanes off in the mask are not read (and come back as `passthru`)."""
    return _declare(builder, f"llvm.masked.load.{_vec_name(vec)}.p0", vec,
                    [vec.as_pointer(), _I32, _mask_type(vec), vec])


def _masked_store(builder, vec):
    return _declare(builder, f"llvm.masked.store.{_vec_name(vec)}.p0", ir.VoidType(),
                    [vec, vec.as_pointer(), _I32, _mask_type(vec)])


def _element(aty):
    """The LLVM type of a float32 or (u)int32 array's elements."""
    return _F32 if aty.dtype == types.float32 else _I32


def _fma(builder, vec):
    return _declare(builder, f"llvm.fma.v{vec.count}f32", vec, [vec, vec, vec])


def _pmaddwd(builder, lanes):
    """lanes int32 = the sums of adjacent int16 products of two vectors of 2*lanes int16."""
    name = {4: "llvm.x86.sse2.pmadd.wd", 8: "llvm.x86.avx2.pmadd.wd", 16: "llvm.x86.avx512.pmaddw.d.512"}[lanes]
    halves = ir.VectorType(ir.IntType(16), 2 * lanes)
    return _declare(builder, name, ir.VectorType(_I32, lanes), [halves, halves])


def _dpwssd(builder, lanes, acc, a, b):
    """acc + the sums of adjacent int16 products of a and b (vectors of 2*lanes int16), lanes int32: one vpdpwssd
    (AVX512-VNNI at 16 lanes, AVX-VNNI's VEX form at 8), written as the instruction itself. Through its intrinsic,
    LLVM's machine combiner split 420 of the chain kernel's 450 back into vpmaddwd and vpaddd on Intel's cores
    (their machine model makes the add's 1 cycle, not the instruction's 5, the sum's chain), twice the
    instructions where the register tiles' 12 sums already hide the latency."""
    binding.initialize_native_asmparser()   # (Numba's code generator reads no assembly of its own)
    words = ir.VectorType(_I32, lanes)
    halves = ir.VectorType(ir.IntType(16), 2 * lanes)
    form = "vpdpwssd" if lanes == 16 else "{vex} vpdpwssd"
    return builder.asm(ir.FunctionType(words, [words, halves, halves]), form + " $3, $2, $0", "=v,0,v,v",
                       [acc, a, b], False)


class _BFloat(ir.Type):
    """LLVM's bfloat, which llvmlite's ir does not name: the operand type of the avx512_bf16 intrinsics."""

    def _to_string(self):
        return "bfloat"

    def __eq__(self, other):
        return isinstance(other, _BFloat)

    def __hash__(self):
        return hash(_BFloat)


def _dpbf16ps(builder, lanes):
    """vdpbf16ps (avx512_bf16): lanes float32 sums + the sums of adjacent bf16 products of two vectors of
    2*lanes bf16 (the odd pair's product added first, then the even one's, each rounded to float32 to
    nearest-even, denormal inputs and results taken as zero: Intel's definition)."""
    floats = ir.VectorType(_F32, lanes)
    halves = ir.VectorType(_BFloat(), 2 * lanes)
    return _declare(builder, f"llvm.x86.avx512bf16.dpbf16ps.{32 * lanes}", floats, [floats, halves, halves])


def _prefetch(builder):
    return _declare(builder, "llvm.prefetch.p0", ir.VoidType(), [_I8P, _I32, _I32, _I32])


def _splat(builder, value, n):
    """<n x value's type>: value in every lane (an insert into lane 0 and a broadcast shuffle)."""
    undef = ir.Constant(ir.VectorType(value.type, n), ir.Undefined)
    return builder.shuffle_vector(builder.insert_element(undef, value, _i32(0)), undef,
                                  ir.Constant(ir.VectorType(_I32, n), [0] * n))


def _lane_mask(builder, first, limit_splat):
    """<n x i1>: lane l is on when first + l < limit (limit_splat: n copies of limit)."""
    n = limit_splat.type.count
    return builder.icmp_signed("<", ir.Constant(limit_splat.type, [first + lane for lane in range(n)]), limit_splat)


def _vec_ptr(builder, ptr, offset, vec):
    return builder.bitcast(builder.gep(ptr, [_i64(offset)]), vec.as_pointer())


def _make_micro(mr, nv, rows="packed"):
    """The register tile of `mr` rows x `nv` vectors of C as an intrinsic (see `micro`): nv = 2 for a whole
    panel of B, 1 for a last panel at most one vector wide (half the work of a mostly empty tile). Where B's
    steps k lie (`rows`): "packed", NR floats apart in a packed panel (NR a constant in the code); "strided",
    one more argument after fused, ldb, and the steps ldb floats apart; "offsets", two more, an int64 array
    offs and o_off, and step k at b_off + offs[o_off + k] (a convolution's taps in a padded image: see
    `conv_direct`); each then takes affine, row0 and activation as the packed tile's, and a residual after them (a
    float32 array shaped as C, or empty for none) added to the finished sums. Unpacked B is read in place
    a whole vector at a time, columns past w too, so bp holds nv vectors from every step's start. With int32 ap and bp
    (int16 pairs: kernels/int16.py) the chains are int32 over the block, then converted and added to C's float32
    values; with uint32 ones (bf16 pairs: kernels/bf16.py) each step is a vdpbf16ps on C's float32 chains;
    `fused` is then ignored."""

    def signature_of(ap, bp, c, offs=None, affine=None, residual=None):
        if not (_is_word_array(ap) and _is_word_array(bp) and ap.dtype == bp.dtype and _is_f32_array(c)):
            return None
        extra = {"packed": [offs, types.intp, types.intp, residual],
                 "strided": [types.intp, affine, types.intp, types.intp, residual],
                 "offsets": [offs, types.intp, affine, types.intp, types.intp, residual]}[rows]
        if not (_is_f32_array(residual) and residual.ndim == 1):
            return None
        if rows == "offsets" and not (isinstance(offs, types.Array) and offs.dtype == types.int64):
            return None
        table = offs if rows == "packed" else affine   # the store's (3, M) rows
        if not (isinstance(table, types.Array) and table.dtype == types.float32 and table.ndim == 2):
            return None
        return types.void(ap, types.intp, bp, types.intp, c, types.intp, types.intp, types.intp, types.intp,
                          types.intp, types.boolean, types.intp, types.boolean, *extra)

    def codegen(context, builder, signature, args):
        lanes = _lanes(context)
        vec = ir.VectorType(_F32, lanes)
        pairs = signature.args[0].dtype == types.int32
        bf16_pairs = signature.args[0].dtype == types.uint32
        vnni = f"+{'avx512vnni' if lanes == 16 else 'avxvnni'}" in context.codegen().magic_tuple()[2].split(",")
        words = ir.VectorType(_I32, lanes)
        halves = ir.VectorType(ir.IntType(16), 2 * lanes)
        n_acc = mr * nv
        ap_v, a_off_v, bp_v, b_off_v, c_v, c_off_v, ldc_v, h_v, w_v, kc_v, load_v, next_v, fused_v = args[:13]
        a0 = builder.gep(_data(context, builder, signature.args[0], ap_v), [a_off_v])
        b0 = builder.gep(_data(context, builder, signature.args[2], bp_v), [b_off_v])
        if rows == "offsets":
            o0 = builder.gep(_data(context, builder, signature.args[13], args[13]), [args[14]])

            def b_step(k):
                return builder.gep(b0, [builder.load(builder.gep(o0, [k]), align=8)])
        else:
            nr = args[13] if rows == "strided" else _i64(2 * lanes)     # B's step

            def b_step(k):
                return builder.gep(b0, [builder.mul(k, nr)])
        cdata = _data(context, builder, signature.args[4], c_v)
        c0 = builder.gep(cdata, [c_off_v])
        zero = ir.Constant(vec, [0.0] * lanes)

        with builder.if_then(builder.icmp_signed(">=", next_v, _i64(0))):
            n0 = builder.gep(cdata, [next_v])
            for r in range(mr):
                row = builder.gep(n0, [builder.mul(ldc_v, _i64(r))])
                for x in sorted({*range(0, nv * lanes, 16), nv * lanes - 1}):  # every cache line it may touch
                    ptr = builder.bitcast(builder.gep(row, [_i64(x)]), _I8P)
                    builder.call(_prefetch(builder), [ptr, _i32(1), _i32(3), _i32(1)])

        cptrs = []
        for r in range(mr):
            row = builder.gep(c0, [builder.mul(ldc_v, _i64(r))])
            cptrs.extend(_vec_ptr(builder, row, lanes * v, vec) for v in range(nv))

        def edge_masks():
            """Lanes of the tile inside C (built where used: live across the k loop they would spill)."""
            w_splat = _splat(builder, w_v, lanes)
            on, off = ir.Constant(_mask_type(vec), [1] * lanes), ir.Constant(_mask_type(vec), [0] * lanes)
            masks = []
            for r in range(mr):
                row_on = builder.select(builder.icmp_signed("<", _i64(r), h_v), on, off)
                masks.extend(builder.and_(_lane_mask(builder, lanes * v, w_splat), row_on) for v in range(nv))
            return masks

        full = builder.and_(builder.icmp_signed("==", h_v, _i64(mr)),
                            builder.icmp_signed("==", w_v, _i64(nv * lanes)))

        # the chains' starting values: zero, or the tile of C (masked at the edges of C)
        entry = builder.block
        with builder.if_then(load_v):
            with builder.if_else(full, likely=True) as (then, otherwise):
                with then:
                    plain = [builder.load(p, align=4) for p in cptrs]
                    plain_block = builder.block
                with otherwise:
                    edge = [builder.call(_masked_load(builder, vec), [p, _i32(4), m, zero])
                            for p, m in zip(cptrs, edge_masks())]
                    edge_block = builder.block
            loaded = _phis(builder, (plain, plain_block), (edge, edge_block))
            load_block = builder.block
        init = _phis(builder, (loaded, load_block), ([zero] * n_acc, entry))

        def k_loops(fma, init):
            """The chains from init through k = 0 .. kc-1; returns their values at the end."""
            def step_floats(acc, bk, a_ptr):
                """One k: acc[r][v] + a(r) * b[v], a plain fmul then a plain fadd (or one FMA if fma)."""
                bvec = [builder.load(_vec_ptr(builder, bk, lanes * v, vec), align=4) for v in range(nv)]
                new = []
                for r in range(mr):
                    a = builder.load(a_ptr(r), align=4)
                    splat = _splat(builder, a, lanes)
                    for v in range(nv):
                        q = acc[r * nv + v]
                        new.append(builder.call(_fma(builder, vec), [splat, bvec[v], q]) if fma else
                                   builder.fadd(q, builder.fmul(splat, bvec[v])))
                return new

            def b_words(bk, pair_type):
                """B's nv vectors of word pairs at this k, as `pair_type` (two halves a word)."""
                return [builder.bitcast(builder.load(_vec_ptr(builder, bk, lanes * v, words), align=4), pair_type)
                        for v in range(nv)]

            def a_word(a_ptr, r, pair_type):
                """Row r's word pair of A at this k in every lane, as `pair_type`."""
                a = builder.load(a_ptr(r), align=4)
                return builder.bitcast(_splat(builder, a, lanes), pair_type)

            def step_pairs(acc, bk, a_ptr):
                """One k of word pairs: acc[r][v] (int32 lanes) + a(r).lo * b[v].lo + a(r).hi * b[v].hi, the
                halves int16: pmaddwd then an add, or one vpdpwssd where the CPU has VNNI."""
                bvec = b_words(bk, halves)
                new = []
                for r in range(mr):
                    splat = a_word(a_ptr, r, halves)
                    for v in range(nv):
                        if vnni:   # the multiply and the add in one instruction, into the sum's register
                            new.append(_dpwssd(builder, lanes, acc[r * nv + v], splat, bvec[v]))
                            continue
                        total = builder.add(acc[r * nv + v], builder.call(_pmaddwd(builder, lanes), [splat, bvec[v]]))
                        # an empty asm holding each sum: integer adds may be regrouped, and LLVM's pairing of two
                        # steps' products first needs more registers than the 16 vectors the tile leaves
                        new.append(builder.asm(ir.FunctionType(words, [words]), "", "=x,0", [total], False))
                return new

            def step_bf16(acc, bk, a_ptr):
                """One k of bf16 pairs: acc[r][v] (float32 lanes) + a(r).lo * b[v].lo + a(r).hi * b[v].hi, one
                vdpbf16ps."""
                bf16 = ir.VectorType(_BFloat(), 2 * lanes)
                bvec = b_words(bk, bf16)
                new = []
                for r in range(mr):
                    splat = a_word(a_ptr, r, bf16)
                    new.extend(builder.call(_dpbf16ps(builder, lanes), [acc[r * nv + v], splat, bvec[v]])
                               for v in range(nv))
                return new

            step = step_pairs if pairs else step_bf16 if bf16_pairs else step_floats

            fn = builder.function
            main = fn.append_basic_block("gemm_k8")
            mid = fn.append_basic_block("gemm_k8_done")
            tail = fn.append_basic_block("gemm_ktail")
            done = fn.append_basic_block("gemm_k_done")
            ngroups = builder.ashr(kc_v, _i64(3))
            rem = builder.and_(kc_v, _i64(7))
            pre = builder.block
            builder.cbranch(builder.icmp_signed(">", ngroups, _i64(0)), main, mid)

            # k in groups of 8, in order
            builder.position_at_end(main)
            g = builder.phi(_I64)
            g.add_incoming(_i64(0), pre)
            acc = _phis(builder, (init, pre))
            ag = builder.gep(a0, [builder.mul(g, _i64(8 * mr))])
            cur = acc
            for kk in range(8):
                cur = step(cur, b_step(builder.add(builder.mul(g, _i64(8)), _i64(kk))),
                           lambda r, kk=kk: builder.gep(ag, [_i64(8 * r + kk)]))
            g_next = builder.add(g, _i64(1))
            g.add_incoming(g_next, main)
            for n in range(n_acc):
                acc[n].add_incoming(cur[n], main)
            builder.cbranch(builder.icmp_signed("<", g_next, ngroups), main, mid)

            builder.position_at_end(mid)
            acc_mid = _phis(builder, (init, pre), (cur, main))
            at = builder.gep(a0, [builder.mul(ngroups, _i64(8 * mr))])
            builder.cbranch(builder.icmp_signed(">", rem, _i64(0)), tail, done)

            # the last kc % 8 steps
            builder.position_at_end(tail)
            kk = builder.phi(_I64)
            kk.add_incoming(_i64(0), mid)
            acc_t = _phis(builder, (acc_mid, mid))
            new_t = step(acc_t, b_step(builder.add(builder.mul(ngroups, _i64(8)), kk)),
                         lambda r: builder.gep(at, [builder.add(builder.mul(rem, _i64(r)), kk)]))
            kk_next = builder.add(kk, _i64(1))
            kk.add_incoming(kk_next, tail)
            for n in range(n_acc):
                acc_t[n].add_incoming(new_t[n], tail)
            builder.cbranch(builder.icmp_signed("<", kk_next, rem), tail, done)

            builder.position_at_end(done)
            return _phis(builder, (acc_mid, mid), (new_t, tail))

        if pairs:   # int32 sums over this k block, then added to the float32 chains
            sums = k_loops(False, [ir.Constant(words, None)] * n_acc)
            out = [builder.fadd(c, builder.sitofp(q, vec)) for c, q in zip(init, sums)]
        elif bf16_pairs:
            out = k_loops(False, init)
        else:
            with builder.if_else(fused_v) as (then, otherwise):
                with then:
                    out_fused = k_loops(True, init)
                    fused_block = builder.block
                with otherwise:
                    out_exact = k_loops(False, init)
                    exact_block = builder.block
            out = _phis(builder, (out_fused, fused_block), (out_exact, exact_block))
        first = {"packed": 13, "strided": 14, "offsets": 15}[rows]   # the store's arguments: after fused, ldb or o_off
        out = _finished(context, builder, signature.args[first], *args[first:first + 3], h_v, out, mr, nv, pairs)
        # the residual, where one is given (after the store's arguments): read where C's tile lies in C
        residual = context.make_array(signature.args[first + 3])(context, builder, args[first + 3])
        entry = builder.block
        with builder.if_then(builder.icmp_signed(">", residual.nitems, _i64(0))):
            r0 = builder.gep(residual.data, [c_off_v])
            added = []
            for n, m in enumerate(edge_masks()):
                r, v = divmod(n, nv)
                ptr = _vec_ptr(builder, builder.gep(r0, [builder.mul(ldc_v, _i64(r))]), lanes * v, vec)
                value = builder.call(_masked_load(builder, vec), [ptr, _i32(4), m, zero])
                added.append(builder.fadd(out[n], value))
            with_residual = builder.block
        out = _phis(builder, (added, with_residual), (out, entry))
        with builder.if_else(full, likely=True) as (then, otherwise):
            with then:
                for n in range(n_acc):
                    builder.store(out[n], cptrs[n], align=4)
            with otherwise:
                for n, m in enumerate(edge_masks()):
                    builder.call(_masked_store(builder, vec), [out[n], cptrs[n], _i32(4), m])
        return context.get_dummy_value()


    if rows == "strided":
        @intrinsic
        def micro_strided(typingctx, ap, a_off, bp, b_off, c, c_off, ldc, h, w, kc, load_c, next_c, fused, ldb,
                          affine, row0, activation, residual):
            sig = signature_of(ap, bp, c, None, affine, residual)
            return None if sig is None else (sig, codegen)

        return micro_strided
    if rows == "offsets":
        @intrinsic
        def micro_offsets(typingctx, ap, a_off, bp, b_off, c, c_off, ldc, h, w, kc, load_c, next_c, fused, offs,
                          o_off, affine, row0, activation, residual):
            sig = signature_of(ap, bp, c, offs, affine, residual)
            return None if sig is None else (sig, codegen)

        return micro_offsets

    @intrinsic
    def micro(typingctx, ap, a_off, bp, b_off, c, c_off, ldc, h, w, kc, load_c, next_c, fused, affine, row0,
              activation, residual):
        """For r < h, j < w, in order k = 0 .. kc-1:

            C[c_off + r*ldc + j] (from 0, or from its value if load_c) += A(r, k) * bp[b_off + k*NR + j]

        Rows r >= h and columns j >= w of C are neither read nor written (w <= nv vectors). A(r, k) is packed
        by `_pack_a`: from a_off, k = 8g + kk (g < kc // 8) at ap[a_off + 8*mr*g + 8*r + kk], then the last
        rem = kc % 8 steps at ap[a_off + 8*mr*(kc // 8) + rem*r + kk]. If next_c >= 0 the rows of the next
        tile of C, at next_c, are prefetched: its load would otherwise stall the next call's k loop.
        With `fused` each step is one fused multiply-add instead (the fast products, not darknet's bits).
        With `activation` >= 0 (LINEAR, LEAKY or RELU) the sums are finished as they are stored, row r by
        affine's column row0 + r (kernels.epilogue's Store: see `_finished`); with -1 they are stored as they are.
        Then residual's values where C's lie are added (a [shortcut] after the layer), unless residual is empty.
        """
        sig = signature_of(ap, bp, c, affine, residual=residual)
        return None if sig is None else (sig, codegen)

    return micro


_micro6 = _make_micro(6, 2)
_micro4 = _make_micro(4, 2)
_micro6_half = _make_micro(6, 1)
_micro4_half = _make_micro(4, 1)
_micro6_strided = _make_micro(6, 2, "strided")
_micro4_strided = _make_micro(4, 2, "strided")
_micro6_half_strided = _make_micro(6, 1, "strided")
_micro4_half_strided = _make_micro(4, 1, "strided")
_micro6_offsets = _make_micro(6, 2, "offsets")
_micro4_offsets = _make_micro(4, 2, "offsets")
_micro6_half_offsets = _make_micro(6, 1, "offsets")
_micro4_half_offsets = _make_micro(4, 1, "offsets")


def _finished(context, builder, aty, affine, row0, activation, h, sums, mr, nv, factored=False):
    """The fused store's arithmetic (kernels.epilogue.affine_activate_row) on a register tile's finished sums, where
    activation >= 0: (sum - center) * scale + shift, a subtraction, a multiply and an add, each rounded (as that
    function runs, inlined into its callers), then leaky's 0.1 x below zero, relu's 0, or nothing (LINEAR): the
    same floats. Center, scale and shift of tile row r are affine[0..2, row0 + r] (affine (3, M)), rows past h
    reading row0's. `factored` (the int16 products): each sum is first multiplied by its row's factor,
    affine[3, row0 + r] where affine has that row (epilogue.store_rows's order)."""
    from .activations import LEAKY, RELU
    vec = sums[0].type
    lanes = vec.count
    table = context.make_array(aty)(context, builder, affine)
    data, stride = table.data, builder.extract_value(table.shape, 1)
    zero = ir.Constant(vec, [0.0] * lanes)
    tenth = ir.Constant(vec, [float(np.float32(0.1))] * lanes)
    entry = builder.block
    with builder.if_then(builder.icmp_signed(">=", activation, _i64(0))):
        leaky = builder.icmp_signed("==", activation, _i64(LEAKY))
        relu = builder.icmp_signed("==", activation, _i64(RELU))
        if factored:
            has_factors = builder.icmp_signed(">", builder.extract_value(table.shape, 0), _i64(3))
        done = []
        for r in range(mr):
            row = builder.select(builder.icmp_signed("<", _i64(r), h), builder.add(row0, _i64(r)), row0)
            center, scale, shift = (_splat(builder, builder.load(
                builder.gep(data, [builder.add(builder.mul(_i64(i), stride), row)])), lanes) for i in range(3))
            if factored:   # (row 0's address where there is no factor row: a float read, then not used)
                at = builder.select(has_factors, builder.add(builder.mul(_i64(3), stride), row), row)
                factor = builder.select(has_factors, builder.load(builder.gep(data, [at])), ir.Constant(_F32, 1.0))
                factor = _splat(builder, factor, lanes)
            for v in range(nv):
                x = builder.fmul(sums[r * nv + v], factor) if factored else sums[r * nv + v]
                x = builder.fadd(builder.fmul(builder.fsub(x, center), scale), shift)
                above = builder.fcmp_ordered(">", x, zero)
                x = builder.select(leaky, builder.select(above, x, builder.fmul(tenth, x)),
                                   builder.select(relu, builder.select(above, x, zero), x))
                done.append(x)
        finished = builder.block
    return _phis(builder, (done, finished), (sums, entry))


def _make_copy(width):
    @intrinsic
    def copy(typingctx, src, s_off, dst, d_off, w):
        """dst[d_off : d_off + n] = src[s_off : s_off + w], then zeros (w <= n; src past w not read), where
        n = `width` floats, or NR (a row of a panel of B) when width is None."""
        if not (_is_word_array(src) and _is_word_array(dst) and src.dtype == dst.dtype):
            return None
        sig = types.void(src, types.intp, dst, types.intp, types.intp)

        def codegen(context, builder, signature, args):
            vec = ir.VectorType(_element(src), width or 2 * _lanes(context))
            src_v, s_off_v, dst_v, d_off_v, w_v = args
            s0 = builder.gep(_data(context, builder, signature.args[0], src_v), [s_off_v])
            d0 = builder.gep(_data(context, builder, signature.args[2], dst_v), [d_off_v])
            with builder.if_else(builder.icmp_signed("==", w_v, _i64(vec.count)), likely=True) as (then, otherwise):
                with then:
                    builder.store(builder.load(_vec_ptr(builder, s0, 0, vec), align=4), _vec_ptr(builder, d0, 0, vec),
                                  align=4)
                with otherwise:
                    m = _lane_mask(builder, 0, _splat(builder, w_v, vec.count))
                    x = builder.call(_masked_load(builder, vec), [_vec_ptr(builder, s0, 0, vec), _i32(4), m,
                                                                  ir.Constant(vec, None)])
                    builder.store(x, _vec_ptr(builder, d0, 0, vec), align=4)
            return context.get_dummy_value()

        return sig, codegen

    return copy


_copy8 = _make_copy(8)
_copy_panel_row = _make_copy(None)


@intrinsic
def fma32(typingctx, a, b, c):
    """a * b + c in float32, rounded once (llvm.fma.f32): a loop of them vectorizes into the CPU's FMA instructions
    (the fast products' multiply-adds outside the register tiles)."""
    sig = types.float32(types.float32, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        return builder.call(_declare(builder, "llvm.fma.f32", _F32, [_F32] * 3), args)

    return sig, codegen


@njit(cache=True, inline="always")
def mul_add(w, x, s, fused):
    """s + w * x: the product rounded, then the sum (darknet's), or with fused one FMA."""
    return fma32(w, x, s) if fused else s + w * x


@intrinsic
def copy_run(typingctx, src, s_off, s_step, dst, d_off, n):
    """dst[d_off + t] = src[s_off + t*s_step] for t < n (not overlapping; s_step 1 or 2), a vector at a time,
    the last one masked (and a long run's first, up to dst's next 64-byte line): the copies of im2col, of the
    packing from an image and of the depthwise planes. (A loop over numpy indices checks each index for
    wraparound, which keeps LLVM from vectorizing it; at stride 2 that loop ran at about one float per ns.)
    Stride 2 loads twice the floats and keeps the even ones."""
    if not (_is_word_array(src) and _is_word_array(dst) and src.dtype == dst.dtype):
        return None
    sig = types.void(src, types.intp, types.intp, dst, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        lanes = _lanes(context)
        vec = ir.VectorType(_element(src), lanes)
        pair = ir.VectorType(_element(src), 2 * lanes)
        src_v, s_off_v, s_step_v, dst_v, d_off_v, n_v = args
        s0 = builder.gep(_data(context, builder, signature.args[0], src_v), [s_off_v])
        d0 = builder.gep(_data(context, builder, signature.args[3], dst_v), [d_off_v])
        evens = ir.Constant(ir.VectorType(_I32, lanes), list(range(0, 2 * lanes, 2)))

        def copy_vector(i, left):
            """Floats i .. i + lanes - 1, or with `left` (their count, at most lanes) the first `left` of them."""
            m = None if left is None else _lane_mask(builder, 0, _splat(builder, left, lanes))
            with builder.if_else(builder.icmp_signed("==", s_step_v, _i64(1)), likely=True) as (one, two):
                with one:
                    sp = builder.bitcast(builder.gep(s0, [i]), vec.as_pointer())
                    x1 = builder.load(sp, align=4) if m is None else builder.call(
                        _masked_load(builder, vec), [sp, _i32(4), m, ir.Constant(vec, None)])
                    block1 = builder.block
                with two:   # floats 2t for t < left: the first 2*left - 1 of the pair
                    sp = builder.bitcast(builder.gep(s0, [builder.mul(i, _i64(2))]), pair.as_pointer())
                    if m is None:   # (a vector before the last: the pair's last float is the next one's first)
                        both = builder.load(sp, align=4)
                    else:
                        m2 = _lane_mask(builder, 0, _splat(builder, builder.sub(builder.mul(left, _i64(2)),
                                                                                    _i64(1)), 2 * lanes))
                        both = builder.call(_masked_load(builder, pair), [sp, _i32(4), m2, ir.Constant(pair, None)])
                    x2 = builder.shuffle_vector(both, both, evens)
                    block2 = builder.block
            x = builder.phi(vec)
            x.add_incoming(x1, block1)
            x.add_incoming(x2, block2)
            dp = builder.bitcast(builder.gep(d0, [i]), vec.as_pointer())
            if m is None:
                builder.store(x, dp, align=4)
            else:
                builder.call(_masked_store(builder, vec), [x, dp, _i32(4), m])

        # A long run first copies the floats up to dst's next 64-byte line alone, so that its other stores are
        # whole lines (a store across two lines cost the copy 1.6-1.9x its time); then every vector but the last
        # whole, the last (1 .. lanes floats) masked (a mask worked out per vector took four instructions on one
        # port, a broadcast, two compares and a merge, and ran the copy at a third of its speed).
        misaligned = builder.urem(builder.udiv(builder.ptrtoint(d0, _I64), _i64(4)), _i64(lanes))
        head = builder.select(builder.icmp_signed(">=", n_v, _i64(4 * lanes)),
                              builder.urem(builder.sub(_i64(lanes), misaligned), _i64(lanes)), _i64(0))
        with builder.if_then(builder.icmp_signed(">", head, _i64(0))):
            copy_vector(_i64(0), head)
        last = builder.add(head, builder.mul(builder.sdiv(builder.sub(builder.sub(n_v, head), _i64(1)),
                                                          _i64(lanes)), _i64(lanes)))
        with cgutils.for_range_slice(builder, head, last, _i64(lanes)) as (i, _):
            copy_vector(i, None)
        with builder.if_then(builder.icmp_signed(">", n_v, head)):
            copy_vector(last, builder.sub(n_v, last))
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _prefetch_span(typingctx, arr, off, n):
    """Prefetch arr[off : off+n] (part of a row of A the next k block will pack)."""
    if not _is_word_array(arr):
        return None
    sig = types.void(arr, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        arr_v, off_v, n_v = args
        base = builder.gep(_data(context, builder, signature.args[0], arr_v), [off_v])
        with cgutils.for_range_slice(builder, _i64(0), n_v, _i64(16)) as (x, _):
            ptr = builder.bitcast(builder.gep(base, [x]), _I8P)
            builder.call(_prefetch(builder), [ptr, _i32(0), _i32(2), _i32(1)])
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, inline="always")
def col_range(k, stride, pad, w, out_w):
    """Output columns x whose input column k + x*stride - pad (k: the tap's offset in the kernel row) is
    inside [0, w)."""
    x0 = min(out_w, max(0, -((k - pad) // stride)))
    x1 = max(x0, min(out_w, (w - 1 + pad - k) // stride + 1))
    return x0, x1


@njit(cache=True, inline="always")
def padded_run(src, first, step, dst, d, lo, hi, n):
    """dst[d : d + n]: zeros, then src[first + t*step] for t < hi - lo from dst[d + lo], then zeros from
    dst[d + hi] (a row of im2col's or of a padded image: the pixels inside and the padding around them)."""
    for t in range(lo):
        dst[d + t] = 0.0
    if step <= 2:
        copy_run(src, first, step, dst, d + lo, hi - lo)
    else:
        for t in range(hi - lo):
            dst[d + lo + t] = src[first + t * step]
    for t in range(hi, n):
        dst[d + t] = 0.0


@njit(cache=True, inline="always")
def _tiles(M):
    """Row tiles covering M rows: n6 tiles of 6 rows, then n4 of 4, wasting at most one row (M >= 4)."""
    q, r = divmod(M, 6)
    if r == 0:
        return q, 0
    if r <= 2:
        return (q - 1, 2) if q > 0 else (0, 1)
    if r <= 4:
        return q, 1
    return q + 1, 0


@njit(cache=True, inline="always")
def _tile_row(t, n6):
    return 6 * t if t <= n6 else 6 * n6 + 4 * (t - n6)


@njit(cache=True)
def _pack_a(Af, a_rs, a_ks, M, k0, kc, t0, t1, n6, dst):
    """Row tiles t0..t1-1 of A, steps k0..k0+kc-1, in the tiles' layout (see `_make_micro`): tile t starts
    at dst[(row(t) - row(t0)) * kc]; rows past M are zeros. A[i, k] = Af[i*a_rs + k*a_ks]."""
    ng = kc // 8
    rem = kc - 8 * ng
    row0 = _tile_row(t0, n6)
    for t in range(t0, t1):
        mr = 6 if t < n6 else 4
        row = _tile_row(t, n6)
        base = (row - row0) * kc
        for r in range(mr):
            i = row + r
            if i >= M:  # rows past M are computed but never stored; zeros keep them harmless
                for g in range(ng):
                    for x in range(8):
                        dst[base + g * 8 * mr + r * 8 + x] = 0.0
                for x in range(rem):
                    dst[base + ng * 8 * mr + r * rem + x] = 0.0
            elif a_ks == 1:
                src = i * a_rs + k0
                for g in range(ng):
                    _copy8(Af, src + 8 * g, dst, base + g * 8 * mr + r * 8, 8)
                for x in range(rem):
                    dst[base + ng * 8 * mr + r * rem + x] = Af[src + 8 * ng + x]
            else:
                src = i * a_rs + k0 * a_ks
                for g in range(ng):
                    for x in range(8):
                        dst[base + g * 8 * mr + r * 8 + x] = Af[src + (8 * g + x) * a_ks]
                for x in range(rem):
                    dst[base + ng * 8 * mr + r * rem + x] = Af[src + (8 * ng + x) * a_ks]


@njit(cache=True, inline="always")
def _k_blocks(K):
    """(number, length) of the k blocks: even blocks of at most KC (288 -> 144 + 144 rather than 256 + 32)."""
    nkb = (K + KC - 1) // KC
    return nkb, (K + nkb - 1) // nkb


@njit(cache=True)
def _pack_a_whole(Af, a_rs, a_ks, M, K, dst):
    """All of A in the tiles' layout, k block after k block: block kb (from step pc) at dst[pc * rows], rows
    being M rounded up to whole tiles (`packed_a_size`)."""
    n6, n4 = _tiles(M)
    rows = _tile_row(n6 + n4, n6)
    nkb, kcb = _k_blocks(K)
    for kb in range(nkb):
        pc = kb * kcb
        _pack_a(Af, a_rs, a_ks, M, pc, min(kcb, K - pc), 0, n6 + n4, n6, dst[pc * rows:])


@njit(cache=True, parallel=True)
def pack_a_batch(A, dst):
    """dst[q] = A[q] (count, M, K) in `_pack_a_whole`'s layout, for `packed_product`: weights packed once for
    many products."""
    count, M, K = A.shape
    for q in prange(count):
        _pack_a_whole(A[q].reshape(-1), K, 1, M, K, dst[q])


def packed_a_size(M, K):
    """Floats of one packed A (pack_a_batch): M rounded up to whole 6- and 4-row tiles, times K."""
    n6, n4 = _tiles.py_func(M)
    return (6 * n6 + 4 * n4) * K


@njit(cache=True, inline="always")
def _strided_panel(ap, a_off, bp, b_off, ldb, Cf, c_off, ldc, M, w, kc, load, fused, affine, activation, residual,
                   span):
    """Every row tile of C's panel at Cf[c_off] (M rows ldc floats apart, w <= NR columns) over one k block of kc
    steps: A's block packed by `_pack_a_whole` from ap[a_off], B's steps read in place ldb floats apart from
    bp[b_off], the chains from C's values if load, finished as they are stored where activation >= 0 (see
    `micro`), then residual's values where C's lie added, unless residual is empty. The tiles go through `span`
    steps (a multiple of 8, or kc) at a time: the panel's lines of those steps stay in L1 while every tile reads
    them (in_place_span)."""
    lanes = _panel_width() // 2
    n6, n4 = _tiles(M)
    for s in range(0, kc, span):
        ks = min(span, kc - s)
        last = s + ks == kc
        finish = activation if last else -1
        added = residual if last else NO_RESIDUAL
        for t in range(n6 + n4):
            row = _tile_row(t, n6)
            mr = 6 if t < n6 else 4
            h = min(M - row, mr)
            aoff = a_off + row * kc + s * mr   # (a tile's steps lie 8 at a time, mr rows of each: step s at s * mr)
            coff = c_off + row * ldc
            boff = b_off + s * ldb
            more = load or s > 0
            if t < n6 and w > lanes:
                _micro6_strided(ap, aoff, bp, boff, Cf, coff, ldc, h, w, ks, more, -1, fused, ldb, affine, row,
                                finish, added)
            elif t < n6:
                _micro6_half_strided(ap, aoff, bp, boff, Cf, coff, ldc, h, w, ks, more, -1, fused, ldb, affine, row,
                                     finish, added)
            elif w > lanes:
                _micro4_strided(ap, aoff, bp, boff, Cf, coff, ldc, h, w, ks, more, -1, fused, ldb, affine, row,
                                finish, added)
            else:
                _micro4_half_strided(ap, aoff, bp, boff, Cf, coff, ldc, h, w, ks, more, -1, fused, ldb, affine, row,
                                     finish, added)


IN_PLACE_SPAN = 128   # steps of an unaligned panel read in place that the tiles take at a time


@njit(cache=True, inline="always")
def in_place_span(ldb, kc):
    """_strided_panel's span for a panel of B read in place with rows ldb floats apart: where the rows are not
    whole 64-byte lines apart, an AVX-512 panel's row (128 bytes) spans three lines, not two, and kc = KC steps
    (48 KiB) would not stay in L1 while the tiles read them: IN_PLACE_SPAN steps at a time (Tiny Darknet's 256 -> 32
    1 x 1 layer on 28 x 38 alone 105 -> 70 us, 2 threads); else all kc (narrower panels' rows span two lines)."""
    return kc if _panel_width() < 32 or ldb % 16 == 0 else min(kc, IN_PLACE_SPAN)


@njit(cache=True)
def packed_product(ap, bp, b_off, ldb, Cf, c_off, ldc, M, N, K, fused):
    """C = A @ B on one thread, A (M, K) packed by `_pack_a_whole` in ap, B (K, N) read in place: B[k, j] at
    bp[b_off + k * ldb + j], whole vectors at a time (so bp holds NR floats past its last row's start), C[i, j]
    at Cf[c_off + i * ldc + j]. The same chains as `_gemm`'s (one FMA per step if fused). For B already in
    the cache: a packed copy would cost more than it saves."""
    NR = _panel_width()
    n6, n4 = _tiles(M)
    rows = _tile_row(n6 + n4, n6)
    nkb, kcb = _k_blocks(K)
    for kb in range(nkb):
        pc = kb * kcb
        kc = min(kcb, K - pc)
        for p in range((N + NR - 1) // NR):
            _strided_panel(ap, pc * rows, bp, b_off + pc * ldb + p * NR, ldb, Cf, c_off + p * NR, ldc, M,
                           min(NR, N - p * NR), kc, kb > 0, fused, NO_AFFINE, -1, NO_RESIDUAL, in_place_span(ldb, kc))


@njit(cache=True, inline="always")
def _pointwise_group(M, N, K, kcb, NR):
    """Panels of B that pointwise_product packs together per k block (B_BLOCK floats at most), or 0 where it
    reads B in place. Read in place, each step of an AVX-512 panel is 128 bytes of an image row (three cache lines
    where unaligned), N floats from the last: with long sums, or planes so wide that the rows fall on few of the
    first-level cache's sets (N = 208 x 208: 4 of 64), the panel's lines stop staying in that cache. Packed from
    128 rows and 128 steps, and on planes of 32768 pixels or more from 32 rows and 64 steps; elsewhere, and with
    narrower vectors (panels of 64 bytes, which stay), the copy costs more than it saves. Measured one kernel
    against the other in one process, 2 threads, on the Xeon without AMX (time packed / in place, M x K x N):
    128 x 256 x 2704 0.62, 512 x 1024 x 169 0.82, 64 x 64 x 43264 0.83, 128 x 128 x 10816 0.99; 64 x 64 x 10816
    1.10, 32 x 128 x 784 1.3 (left in place); compiled for AVX2 on the same CPU 0.95-1.07."""
    if NR >= 32 and ((M >= 128 and K >= 128) or (N >= 32768 and M >= 32 and K >= 64)):
        return max(1, B_BLOCK // (kcb * NR))
    return 0


@njit(cache=True, parallel=True)
def pointwise_product(ap, Bf, Cf, M, N, K, nth, fused, affine, activation, residual):
    """C (M, N) = A @ B, A packed by `_pack_a_whole` in ap, B (K, N) row-major: `_gemm`'s chains, finished as
    they are stored where activation >= 0 (affine and activation: see `micro`), then residual (M, N, flat; empty
    for none) added: a [shortcut]'s add in the same store. For a 1 x 1 convolution (filters by pixels). nth
    threads take runs of whole panels (`_gemm`'s wide split), packing groups of them per k block where that pays
    (`_pointwise_group`: long sums of many rows, wide planes), else reading B in place (few rows multiply each
    float of B a few times only: packing would cost about as much as the products); read in place, a last panel
    narrower than NR is copied with zeros past N (its last step's vectors would run past B's end)."""
    NR = _panel_width()
    npan = (N + NR - 1) // NR
    n6, n4 = _tiles(M)
    rows = _tile_row(n6 + n4, n6)
    nkb, kcb = _k_blocks(K)
    group = _pointwise_group(M, N, K, kcb, NR)
    run = max(1, group)   # panels per pass over the k blocks
    packed = np.empty((nth, run * kcb * NR), Bf.dtype)
    for task in prange(nth):
        tid = numba.get_thread_id()
        first, end = task * npan // nth, (task + 1) * npan // nth
        for p0 in range(first, end, run):
            p1 = min(end, p0 + run)
            for kb in range(nkb):
                pc = kb * kcb
                kc = min(kcb, K - pc)
                last = kb == nkb - 1
                finish = activation if last else -1
                added = residual if last else NO_RESIDUAL
                if group:
                    _pack_b(Bf, N, 1, N, pc, kc, p0, p1, packed[tid], 0, kc * NR)
                for p in range(p0, p1):
                    w = min(NR, N - p * NR)
                    if group:
                        panel, at, step = packed[tid], (p - p0) * kc * NR, NR
                    elif w < NR:
                        _pack_b(Bf, N, 1, N, pc, kc, p, p + 1, packed[tid], 0, kc * NR)
                        panel, at, step = packed[tid], 0, NR
                    else:
                        panel, at, step = Bf, pc * N + p * NR, N
                    _strided_panel(ap, pc * rows, panel, at, step, Cf, p * NR, N, M, w, kc, kb > 0, fused, affine,
                                   finish, added, in_place_span(step, kc))


@njit(cache=True)
def _pack_b(Bf, b_ks, b_js, N, k0, kc, p0, p1, dst, dst_off, p_stride):
    """Panels p0..p1-1 of B (NR columns, zero-padded past N), steps k0..k0+kc-1:
    dst[dst_off + (p-p0)*p_stride + k*NR + j] = B[k0+k, p*NR+j], with B[k, j] = Bf[k*b_ks + j*b_js]."""
    NR = _panel_width()
    if b_js == 1:
        for kk in range(0, kc, 64):  # 64 rows at a time: reads stay near, writes run along each panel
            for p in range(p0, p1):
                w = min(NR, N - p * NR)
                for k in range(kk, min(kc, kk + 64)):
                    _copy_panel_row(Bf, (k0 + k) * b_ks + p * NR, dst, dst_off + (p - p0) * p_stride + k * NR, w)
    else:
        for p in range(p0, p1):
            base = dst_off + (p - p0) * p_stride
            w = min(NR, N - p * NR)
            for j in range(NR):
                if j < w:
                    src = (p * NR + j) * b_js + k0 * b_ks
                    for k in range(kc):
                        dst[base + k * NR + j] = Bf[src + k * b_ks]
                else:
                    for k in range(kc):
                        dst[base + k * NR + j] = 0.0


@njit(cache=True)
def _pack_b_image(img, conv, N, k0, kc, p0, p1, dst, dst_off, p_stride):
    """`_pack_b` for B = im2col of an image (the implicit im2col: the panels are packed straight from the
    image, no column matrix in between). img (c, h, w), C-contiguous; conv = (c0, size, stride, pad, dilation,
    out_w): row r = (channel c0 + r // size^2, ky, kx) of B, column j = (y, x) of the output with x < out_w;
    pixels outside the image are zeros, as in im2col.

    The panels' columns fall into runs within one output row and one panel, the same runs for every row of
    B: they are worked out once, then each row of B copies its pixels run by run (a vector copy each)."""
    NR = _panel_width()
    c0, size, stride, pad, dilation, out_w = conv
    h, w = img.shape[1], img.shape[2]
    flat = img.reshape(-1)
    j0 = p0 * NR
    j1 = min(N, p1 * NR)
    runs = np.empty((p1 - p0 + (j1 - 1) // out_w - j0 // out_w + 1, 4), np.int64)   # (y, x, offset, length)
    nrun = 0
    j = j0
    while j < j1:
        y = j // out_w
        x = j - y * out_w
        p = j // NR
        n = min(NR - (j - p * NR), out_w - x, j1 - j)
        runs[nrun, 0] = y
        runs[nrun, 1] = x
        runs[nrun, 2] = (p - p0) * p_stride + j - p * NR
        runs[nrun, 3] = n
        nrun += 1
        j += n
    tail = (p1 - 1 - p0) * p_stride + j1 - (p1 - 1) * NR   # the last panel's columns past N: zeros
    if stride == 1:   # the stride a constant to the compiler: the packing ran 3.8x as fast (16 x 56 x 75's B)
        _pack_runs(flat, h, w, c0, size, 1, pad, dilation, out_w, k0, kc, runs[:nrun], dst, dst_off)
    else:
        _pack_runs(flat, h, w, c0, size, stride, pad, dilation, out_w, k0, kc, runs[:nrun], dst, dst_off)
    for k in range(kc):
        row = dst_off + k * NR
        for t in range(tail, (p1 - 1 - p0) * p_stride + NR):
            dst[row + t] = 0.0


@njit(cache=True, inline="always")
def _pack_runs(flat, h, w, c0, size, stride, pad, dilation, out_w, k0, kc, runs, dst, dst_off):
    """`_pack_b_image`'s copies: each row of B, run by run."""
    NR = _panel_width()
    for k in range(kc):
        r = k0 + k
        plane = (c0 + r // (size * size)) * h * w
        kx = r % size * dilation
        ky = (r // size) % size * dilation
        x0, x1 = col_range(kx, stride, pad, w, out_w)   # output columns whose input column is inside
        row = dst_off + k * NR
        for q in range(runs.shape[0]):
            y, x, d, n = runs[q, 0], runs[q, 1], row + runs[q, 2], runs[q, 3]
            iy = ky + y * stride - pad
            lo = min(max(x0 - x, 0), n) if 0 <= iy < h else n
            hi = max(lo, min(x1 - x, n)) if 0 <= iy < h else n
            padded_run(flat, plane + iy * w + kx - pad + (x + lo) * stride, stride, dst, d, lo, hi, n)


@njit(cache=True, parallel=True)
def _gemm(Af, a_rs, a_ks, Bf, b_ks, b_js, Cf, M, N, K, accumulate, nth, fused, img, conv, count, affine, activation,
          residual):
    """Flat operands: A[i, k] = Af[i*a_rs + k*a_ks], B[k, j] = Bf[k*b_ks + j*b_js], C[i, j] = Cf[i*N + j].
    nth is numba.get_num_threads(), asked by the caller (that call cannot be cached in compiled code).
    fused: fused multiply-adds (faster where the CPU multiplies and adds on the same units; not darknet's bits).
    img, conv: B is im2col of the image img instead (see `_pack_b_image`; Bf, b_ks and b_js unused), unless img
    is empty (NO_IMAGE).
    count: that many products at once (in one parallel region), A, B and C row-major and stacked: product q
    reads Af[q*M*K:], Bf[q*K*N:] and writes Cf[q*M*N:].
    affine, activation: with activation >= 0, C's rows finished by the fused store's arithmetic as the last k block's
    tiles are stored (the micro-kernel's `activation`), else -1; then residual (M, N, flat; empty for none, and
    for count > 1) added as they are stored."""
    if M == 0 or N == 0:
        return
    if K == 0:
        if not accumulate:
            Cf[:] = 0.0
        return
    NR = _panel_width()
    lanes = NR // 2
    npan = (N + NR - 1) // NR
    n6, n4 = _tiles(M)
    ntile = n6 + n4
    nkb, kcb = _k_blocks(K)
    wide = count == 1 and M <= WIDE_ROWS and N >= WIDE_COLUMNS * nth
    rows = _tile_row(ntile, n6)         # M rounded up to whole tiles
    if wide:
        # few rows and many columns: a task owns all rows and a run of panels of B, packed per k block;
        # A is small and shared by every task: pack all of it here, k block after k block
        nrb = 1
        ngr = max(4 * nth, (npan * kcb * NR + B_BLOCK - 1) // B_BLOCK)
        ngr = min(npan, (ngr + nth - 1) // nth * nth)
        bbuf = np.empty((nth, (npan + ngr - 1) // ngr * kcb * NR), Af.dtype)
        abuf = np.empty((1, rows * K), Af.dtype)
        _pack_a_whole(Af, a_rs, a_ks, M, K, abuf[0])
    else:
        # B is shared by several row blocks: pack all of it first, panel after panel, whole K
        nrb = (M + MC_MAX - 1) // MC_MAX
        nrb = min(ntile, (nrb + nth - 1) // nth * nth)
        ngr = 1 if nrb >= nth else min(npan, (nth + nrb - 1) // nrb)
        bbuf = np.empty((1, count * npan * K * NR), Af.dtype)
        nchunk = min(npan, 4 * nth)
        for q in prange(count * nchunk):
            item = q // nchunk
            q0 = q % nchunk * npan // nchunk
            q1 = (q % nchunk + 1) * npan // nchunk
            if img.size == 0:
                _pack_b(Bf[item * K * N:], b_ks, b_js, N, 0, K, q0, q1, bbuf[0], (item * npan + q0) * K * NR, K * NR)
            else:
                _pack_b_image(img, conv, N, 0, K, q0, q1, bbuf[0], q0 * K * NR, K * NR)
        abuf = np.empty((nth, 6 * ((ntile + nrb - 1) // nrb) * kcb), Af.dtype)
    for task in prange(count * nrb * ngr):
        item = task // (nrb * ngr)
        rb = task % (nrb * ngr) // ngr
        gr = task % ngr
        Aq = Af[item * M * K:]
        Cq = Cf[item * M * N:]
        t0 = rb * ntile // nrb
        t1 = (rb + 1) * ntile // nrb
        p0 = gr * npan // ngr
        p1 = (gr + 1) * npan // ngr
        row0 = _tile_row(t0, n6)
        tid = numba.get_thread_id()
        ap = abuf[0] if wide else abuf[tid]
        bp = bbuf[tid] if wide else bbuf[0]
        for kb in range(nkb):
            pc = kb * kcb
            kc = min(kcb, K - pc)
            load = accumulate or kb > 0
            finish = activation if kb == nkb - 1 else -1
            added = residual if kb == nkb - 1 else NO_RESIDUAL
            if wide:
                abase = pc * rows
                if img.size == 0:
                    _pack_b(Bf, b_ks, b_js, N, pc, kc, p0, p1, bp, 0, kc * NR)
                else:
                    _pack_b_image(img, conv, N, pc, kc, p0, p1, bp, 0, kc * NR)
            else:
                abase = 0
                _pack_a(Aq, a_rs, a_ks, M, pc, kc, t0, t1, n6, ap)
            for p in range(p0, p1):
                jj = p * NR
                w = min(NR, N - jj)
                boff = (p - p0) * kc * NR if wide else ((item * npan + p) * K + pc) * NR
                for t in range(t0, t1):
                    row = _tile_row(t, n6)
                    h = min(M - row, 6 if t < n6 else 4)
                    if t + 1 < t1:
                        nxt = _tile_row(t + 1, n6) * N + jj
                    elif p + 1 < p1:
                        nxt = row0 * N + jj + NR
                    else:
                        nxt = -1
                    aoff = abase + (row - row0) * kc
                    if t < n6 and w > lanes:
                        _micro6(ap, aoff, bp, boff, Cq, row * N + jj, N, h, w, kc, load, nxt, fused, affine, row,
                                finish, added)
                    elif t < n6:
                        _micro6_half(ap, aoff, bp, boff, Cq, row * N + jj, N, h, w, kc, load, nxt, fused, affine, row,
                                     finish, added)
                    elif w > lanes:
                        _micro4(ap, aoff, bp, boff, Cq, row * N + jj, N, h, w, kc, load, nxt, fused, affine, row,
                                finish, added)
                    else:
                        _micro4_half(ap, aoff, bp, boff, Cq, row * N + jj, N, h, w, kc, load, nxt, fused, affine, row,
                                     finish, added)
                    if p == p1 - 1 and kb + 1 < nkb and a_ks == 1 and not wide:
                        # while the last panel computes, fetch the rows of A the next k block packs
                        for i in range(row, row + h):
                            _prefetch_span(Aq, i * a_rs + pc + kcb, min(kcb, K - pc - kcb))


@njit(cache=True, inline="always")
def phase_planes(img, c0, pad, stride, y0, hp, wq, planes):
    """The input of a direct convolution from image row y0 - pad on: planes[c, ph, yp, xq] =
    img[c0 + c, y0 + yp - pad, xq*stride + ph - pad] (planes (cg, stride, hp, wq), flat), zero outside the image.
    Each phase ph holds every stride-th column, so that a tap's inputs for consecutive output columns lie side by
    side."""
    h, w = img.shape[1], img.shape[2]
    flat = img.reshape(-1)
    for task in range(planes.size // wq):   # row yp of plane q
        q = task // hp
        yp = task - q * hp
        c = q // stride
        ph = q - c * stride
        iy = y0 + yp - pad
        x0, x1 = col_range(ph, stride, pad, w, wq)
        if iy < 0 or iy >= h:
            x0, x1 = wq, wq
        padded_run(flat, ((c0 + c) * h + iy) * w + ph + x0 * stride - pad, stride, planes, task * wq, x0, x1, wq)


# Row tiles (48 filters) in a group of direct_row: conv_direct takes a group through a band's rows before the next,
# so that each filter's part of the band is stored in one run (a row of every filter at a time stored 128 filters'
# lines a part each, rows of 75 floats straddling lines, and stalled on the output's cold lines).
DIRECT_TILES = 8


@njit(cache=True)
def direct_groups(M):
    """The groups of direct_row's row tiles covering M filters."""
    n6, n4 = _tiles(M)
    return (n6 + n4 + DIRECT_TILES - 1) // DIRECT_TILES


@njit(cache=True)
def direct_row(ap, M, K, planes, offs, stride, wq, y, yp, out_w, Cf, fused, affine, activation, residual, group):
    """Output row y of C (M, out_h*out_w) = A @ im2col for the filters of row tile group `group` (DIRECT_TILES
    tiles of A: see direct_groups), A packed by `_pack_a_whole`, B's step k for output (y, x) read in place at
    planes[yp*stride*wq + x + offs[k]] (direct_operands; yp: the row's place in the planes of its band): the chains
    of `_gemm`, with no columns packed at all, finished as they are stored where activation >= 0 (the store's
    affine rows and activation: see `micro`), then residual (shaped as C, flat; empty for none) added. A panel of
    B (one k block of its taps) stays in L1 while the group's row tiles of A go by."""
    NR = _panel_width()
    lanes = NR // 2
    n6, n4 = _tiles(M)
    ntile = n6 + n4
    rows = _tile_row(ntile, n6)
    t0 = group * DIRECT_TILES
    t1 = min(ntile, t0 + DIRECT_TILES)
    nkb, kcb = _k_blocks(K)
    npan = (out_w + NR - 1) // NR
    N = Cf.size // M
    for p in range(npan):
        w = min(NR, out_w - p * NR)
        boff = yp * stride * wq + p * NR
        for kb in range(nkb):
            pc = kb * kcb
            kc = min(kcb, K - pc)
            finish = activation if kb == nkb - 1 else -1
            added = residual if kb == nkb - 1 else NO_RESIDUAL
            for t in range(t0, t1):
                row = _tile_row(t, n6)
                h = min(M - row, 6 if t < n6 else 4)
                aoff = pc * rows + row * kc
                coff = row * N + y * out_w + p * NR
                if t < n6 and w > lanes:
                    _micro6_offsets(ap, aoff, planes, boff, Cf, coff, N, h, w, kc, kb > 0, -1, fused, offs, pc,
                                    affine, row, finish, added)
                elif t < n6:
                    _micro6_half_offsets(ap, aoff, planes, boff, Cf, coff, N, h, w, kc, kb > 0, -1, fused, offs, pc,
                                         affine, row, finish, added)
                elif w > lanes:
                    _micro4_offsets(ap, aoff, planes, boff, Cf, coff, N, h, w, kc, kb > 0, -1, fused, offs, pc,
                                    affine, row, finish, added)
                else:
                    _micro4_half_offsets(ap, aoff, planes, boff, Cf, coff, N, h, w, kc, kb > 0, -1, fused, offs, pc,
                                         affine, row, finish, added)


NO_IMAGE = {np.dtype(t): np.empty((0, 0, 0), t) for t in (np.float32, np.int32, np.uint32)}   # B is the flat operand
NO_CONV = (0, 0, 0, 0, 0, 0)


NO_AFFINE = np.zeros((3, 0), np.float32)
NO_RESIDUAL = np.zeros(0, np.float32)   # the tiles' store adds no residual


def gemm_flat(Af, a_rs, a_ks, Bf, b_ks, b_js, Cf, M, N, K, accumulate=False, nth=None, fused=False, img=None,
              conv=None, count=1, affine=NO_AFFINE, activation=-1, residual=NO_RESIDUAL):
    """_gemm (see there) with every argument passed, of one type each: every product then runs the same
    compiled kernel, one load from Numba's cache per process instead of one per combination of defaults."""
    _gemm(Af, a_rs, a_ks, Bf, b_ks, b_js, Cf, M, N, K, bool(accumulate),
          kernel_threads() if nth is None else nth, bool(fused), NO_IMAGE[Af.dtype] if img is None else img,
          NO_CONV if conv is None else conv, count, affine, int(activation), residual)


def _check(name, C, *operands):
    for x in (C,) + operands:
        if not (isinstance(x, np.ndarray) and x.dtype == np.float32 and x.ndim == 2 and x.flags.c_contiguous):
            raise TypeError(f"{name}: operands must be 2-d C-contiguous float32 arrays")
    if not C.flags.writeable:
        raise ValueError(f"{name}: C is read-only")


def check_image_product(name, C, A, x, c0, size, out_h, out_w):
    """C float32; A and the image x (c, h, w) both float32, both int32 words of int16 pairs (kernels.int16) or
    both uint32 words of bf16 pairs (kernels.bf16); A (M, K) with K taps of channels c0.. of x, C (M, out_h*out_w)."""
    _check(name, C)
    for operand in (A, x):
        if not (isinstance(operand, np.ndarray) and operand.dtype in (np.float32, np.int32, np.uint32)
                and operand.dtype == A.dtype and operand.flags.c_contiguous):
            raise TypeError(f"{name}: A and the image must be C-contiguous, both float32, int32 or uint32 words")
    if A.ndim != 2 or x.ndim != 3:
        raise TypeError(f"{name}: A must be 2-d and the image (c, h, w)")
    (M, K), (M2, N) = A.shape, C.shape
    if M2 != M or N != out_h * out_w or K % (size * size) or c0 + K // (size * size) > x.shape[0]:
        raise ValueError(f"{name}: A {A.shape}, C {C.shape} and image {x.shape} do not match")


def sgemm_darknet(A, B, C, accumulate=False, fused=False, affine=NO_AFFINE, activation=-1):
    """C = A @ B for A (M, K), B (K, N), C (M, N), float32 C-contiguous, in darknet's exact order:
    C[i, j] = (...((0 + A[i,0]*B[0,j]) + A[i,1]*B[1,j]) + ...), each product rounded, no FMA.
    With accumulate the chains start from C's values instead of 0 (darknet's BETA = 1). With fused, the same
    chains with a fused multiply-add per step (products.py's "fast" backend: not darknet's bits). With an
    activation (LINEAR, LEAKY or RELU), row i finished as it is stored: (C - affine[0, i]) * affine[1, i] +
    affine[2, i], activated (kernels.epilogue.affine_activate_row's floats). Returns C."""
    _check("sgemm_darknet", C, A, B)
    (M, K), (K2, N) = A.shape, B.shape
    if K2 != K or C.shape != (M, N):
        raise ValueError(f"sgemm_darknet: shapes {A.shape} @ {B.shape} -> {C.shape} do not match")
    gemm_flat(A.reshape(-1), K, 1, B.reshape(-1), N, 1, C.reshape(-1), M, N, K, accumulate, fused=fused,
              affine=affine, activation=activation)
    return C


def sgemm_image(A, x, c0, size, stride, pad, dilation, out_h, out_w, C, fused=False, affine=NO_AFFINE,
                activation=-1, residual=NO_RESIDUAL):
    """C = A @ im2col(x[c0 : c0 + K/size^2]) for one image x (c, h, w), A (M, K), C (M, out_h*out_w): the same
    chains as sgemm_darknet on im2col's columns, packed straight from the image (finished as it is stored with an
    activation, as sgemm_darknet's, then `residual`, shaped as C, flat, added where one is given). A and x may
    instead be int32 words (kernels.int16: int16 pairs, whose products the tiles sum in int32) or uint32 words
    (kernels.bf16: bf16 pairs, vdpbf16ps's operands). Returns C."""
    check_image_product("sgemm_image", C, A, x, c0, size, out_h, out_w)
    (M, K), N = A.shape, C.shape[1]
    gemm_flat(A.reshape(-1), K, 1, A.reshape(-1), 0, 0, C.reshape(-1), M, N, K, fused=fused, img=x,
              conv=(c0, size, stride, pad, dilation, out_w), affine=affine, activation=activation, residual=residual)
    return C


def direct_operands(A, shape, c0, size, stride, pad, dilation, out_h, out_w, rows):
    """The operands of a direct convolution of images of `shape` (c, h, w) in bands of `rows` output rows
    (kernels.conv.conv_direct: sgemm_image's product, the same chains bit for bit, row by row through direct_row):
    (ap, offs, hp, wq), A packed whole, and each tap's offset in a band's zero-padded planes split by column phase
    (`phase_planes`, hp rows of wq words), where the register tiles read its inputs instead of packing im2col's
    K x N columns. wq is whole vectors, so that in planes starting on a cache line (conv_direct's) the taps of a
    kernel's first column (both first columns at stride 2) read whole lines: a vector load that straddles two lines
    costs two (the direct products of yolov4-tiny's 32 -> 64 stride-2 layer 0.94x their time, of a 16 -> 128 layer
    on 56 x 56 0.93x). A may be int32 words, or uint32 words, as for sgemm_image."""
    M, K = A.shape
    reach = (size - 1) * dilation + 1
    hp = (rows - 1) * stride + reach
    wq = -(-max(shape[2] + 2 * pad, (out_w - 1) * stride + reach) // stride)
    lanes = host_panel_width() // 2
    wq = -(-wq // lanes) * lanes
    c, ky, kx = np.divmod(np.arange(K), size * size)[0], np.arange(K) // size % size, np.arange(K) % size
    offs = ((c * stride + kx * dilation % stride) * hp + ky * dilation) * wq + kx * dilation // stride
    ap = np.empty(packed_a_size(M, K), A.dtype)
    _pack_a_whole(A.reshape(-1), K, 1, M, K, ap)
    return ap, offs.astype(np.int64), hp, wq


def sgemm_darknet_tn(A, B, C, accumulate=False):
    """C = A.T @ B for A (K, M), B (K, N), C (M, N): darknet's gemm_tn, the same chains as sgemm_darknet.
    Returns C."""
    _check("sgemm_darknet_tn", C, A, B)
    (K, M), (K2, N) = A.shape, B.shape
    if K2 != K or C.shape != (M, N):
        raise ValueError(f"sgemm_darknet_tn: shapes {A.shape}.T @ {B.shape} -> {C.shape} do not match")
    gemm_flat(A.reshape(-1), 1, M, B.reshape(-1), N, 1, C.reshape(-1), M, N, K, accumulate)
    return C


def sgemm_darknet_nt(A, B, C):
    """C = A @ B.T for A (M, K), B (N, K), C (M, N): darknet's gemm_nt sum, from zero in k order.
    (Darknet adds that sum to C's old value: for its BETA = 1 do `C += result` with numpy.) Returns C."""
    _check("sgemm_darknet_nt", C, A, B)
    (M, K), (N, K2) = A.shape, B.shape
    if K2 != K or C.shape != (M, N):
        raise ValueError(f"sgemm_darknet_nt: shapes {A.shape} @ {B.shape}.T -> {C.shape} do not match")
    gemm_flat(A.reshape(-1), K, 1, B.reshape(-1), 1, K, C.reshape(-1), M, N, K)
    return C
