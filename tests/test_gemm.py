"""sgemm_darknet must give darknet's gemm bit for bit: per element, 0 + a0*b0 + a1*b1 + ... in k order,
each product rounded to float32 before the add, never fused."""
import numba
import numpy as np
import pytest

import pydarknet  # noqa: F401  (sets the threading layer before Numba starts its threads)
from pydarknet.kernels.activations import LEAKY, LINEAR, RELU
from pydarknet.kernels import conv
from pydarknet.kernels.conv import conv_direct, im2col_batch
from pydarknet.kernels.epilogue import Store, apply
from pydarknet.kernels.gemm import (copy_run, host_panel_width, sgemm_darknet, sgemm_darknet_nt, sgemm_darknet_tn,
                                    sgemm_image)


def reference(A, B, C=None):
    """Darknet's loop, one k at a time: C += outer(A[:, k], B[k]) in float32 (numpy rounds each product,
    then adds: no FMA, no reordering)."""
    M, K = A.shape
    C = np.zeros((M, B.shape[1]), np.float32) if C is None else C.copy()
    for k in range(K):
        C += np.multiply.outer(A[:, k], B[k])
    return C


def same_bits(x, y):
    return x.shape == y.shape and np.array_equal(x.view(np.uint32), y.view(np.uint32))


def operands(rng, M, K, N):
    return rng.standard_normal((M, K), dtype=np.float32), rng.standard_normal((K, N), dtype=np.float32)


def run(A, B):
    C = np.full((A.shape[0], B.shape[1]), np.nan, np.float32)  # every element must be written
    assert sgemm_darknet(A, B, C) is C
    return C


def test_every_small_shape_edge():
    """Rows 1..37 (6- and 4-row tiles, partial tiles), columns around the 16-wide panels, k in the
    8-step groups and the tail."""
    rng = np.random.default_rng(0)
    for M in range(1, 38):
        for K, N in ((1, 1), (7, 17), (9, 16), (16, 33), (37, 5)):
            A, B = operands(rng, M, K, N)
            assert same_bits(run(A, B), reference(A, B)), (M, K, N)


def test_random_small_shapes():
    rng = np.random.default_rng(1)
    for _ in range(300):
        M, K, N = rng.integers(1, 38, size=3)
        A, B = operands(rng, M, K, N)
        assert same_bits(run(A, B), reference(A, B)), (M, K, N)


@pytest.mark.parametrize("M,K,N", [
    (37, 300, 41),     # two k blocks: chains paused in C and resumed
    (7, 513, 17),      # three k blocks of 171 (8-step groups plus a tail of 3)
    (250, 600, 169),   # two row blocks sharing B packed once
    (30, 45, 2100),    # few rows, many columns: threads split the panels
    (300, 600, 700),   # up to WIDE_ROWS rows, many columns: the threads split the panels too, all of A shared
    (530, 300, 700),   # more rows: row blocks, B packed once
    (128, 256, 169),   # yolov3-tiny
    (255, 512, 169),   # yolov3-tiny
    (16, 27, 20000),   # yolov3-tiny's first layer, narrower
])
def test_larger_shapes(M, K, N):
    A, B = operands(np.random.default_rng(M * K + N), M, K, N)
    assert same_bits(run(A, B), reference(A, B))


def test_no_fused_multiply_add():
    """a*b = 1 + 2^-11 + 2^-24 rounds to 1 + 2^-11, so c + a*b = 0 when rounded first and 2^-24 with an
    FMA. Put that chain into every element (rows of both tile heights, every column of a panel, k in the
    8-step loop and in the tail, across two k blocks) and demand exact zeros."""
    a = np.float32(1 + 2.0 ** -12)
    c = -np.float32(1 + 2.0 ** -11)
    assert np.float32(c + a * a) == 0 and np.float32(np.float64(c) + np.float64(a) * np.float64(a)) == 2.0 ** -24
    for K, k in ((2, 1), (20, 9), (20, 19), (600, 299), (600, 300), (600, 599)):
        M, N = 23, 37
        A = np.zeros((M, K), np.float32)
        B = np.zeros((K, N), np.float32)
        A[:, k - 1] = 1.0
        B[k - 1] = c
        A[:, k] = a
        B[k] = a
        C = run(A, B)
        assert not C.any() and not np.signbit(C).any(), K
        # the same kernel with its multiply-adds fused (--fast's products) gives 2^-24 in every element: the
        # chains do reach every element, and an FMA would be caught
        fused = sgemm_darknet(A, B, np.full((M, N), np.nan, np.float32), fused=True)
        assert np.all(fused == np.float32(2.0 ** -24)), K


def test_transposed_variants_and_accumulate():
    rng = np.random.default_rng(2)
    for M, K, N in ((5, 7, 33), (37, 300, 41), (64, 40, 1500)):
        A, B = operands(rng, M, K, N)
        want = reference(A, B)
        C = np.full((M, N), np.nan, np.float32)
        assert same_bits(sgemm_darknet_tn(np.ascontiguousarray(A.T), B, C), want)
        C = np.full((M, N), np.nan, np.float32)
        assert same_bits(sgemm_darknet_nt(A, np.ascontiguousarray(B.T), C), want)
        C0 = rng.standard_normal((M, N), dtype=np.float32)
        assert same_bits(sgemm_darknet(A, B, C0.copy(), accumulate=True), reference(A, B, C0))
        assert same_bits(sgemm_darknet_tn(np.ascontiguousarray(A.T), B, C0.copy(), accumulate=True),
                         reference(A, B, C0))


def test_empty_and_degenerate():
    A = np.ones((3, 0), np.float32)
    B = np.ones((0, 4), np.float32)
    C = np.full((3, 4), 7, np.float32)
    assert not sgemm_darknet(A, B, C).any()                                  # K = 0: C = 0
    C[:] = 7
    assert (sgemm_darknet(A, B, C, accumulate=True) == 7).all()              # ... or left as it is
    assert sgemm_darknet(np.ones((0, 3), np.float32), np.ones((3, 4), np.float32),
                         np.empty((0, 4), np.float32)).shape == (0, 4)
    # the sign of zero: 0 + (-0) is +0, as in darknet's zero-filled C
    C = run(np.full((2, 1), -0.0, np.float32), np.ones((1, host_panel_width() + 3), np.float32))
    assert not np.signbit(C).any()


def test_rejects_bad_operands():
    A = np.ones((4, 5), np.float32)
    B = np.ones((5, 6), np.float32)
    with pytest.raises(ValueError):
        sgemm_darknet(A, B, np.empty((4, 7), np.float32))
    with pytest.raises(TypeError):
        sgemm_darknet(A.astype(np.float64), B, np.empty((4, 6), np.float32))
    with pytest.raises(TypeError):
        sgemm_darknet(np.ones((5, 4), np.float32).T, B, np.empty((4, 6), np.float32))


@pytest.mark.parametrize("filters, out_w, direct", [(8, 96, True), (8, 95, False), (520, 96, False)])
def test_conv_image_reads_the_image_in_place_for_small_weights_and_wide_rows(monkeypatch, filters, out_w, direct):
    """products.conv_image's choice with AVX-512's 32-float panels: conv_direct where the weights fit its L2 budget
    and the rows are at least three panels wide (its direct_convolution), else the columns packed from the image;
    the same bits either way."""
    from pydarknet.kernels import products
    monkeypatch.setattr(products, "host_panel_width", lambda: 32)
    chosen = []
    for name in ("direct_convolution", "sgemm_image"):
        monkeypatch.setattr(products, name, lambda *args, name=name, call=getattr(products, name):
                            chosen.append(name) or call(*args))
    rng = np.random.default_rng(out_w)
    x = rng.standard_normal((12, 5, out_w), dtype=np.float32)
    A = rng.standard_normal((filters, 12 * 9), dtype=np.float32)
    out = np.full((filters, 5 * out_w), np.nan, np.float32)
    with products.using(products.products_for("fast")):
        products.conv_image(A, x, 0, 3, 1, 1, 1, 5, out_w, out)
    assert chosen == ["direct_convolution" if direct else "sgemm_image"]
    assert same_bits(out, sgemm_image(A, x, 0, 3, 1, 1, 1, 5, out_w, np.empty_like(out), True))


@pytest.mark.parametrize("c,h,w,filters,size,stride,pad,dilation", [
    (3, 64, 70, 16, 3, 1, 1, 1),     # a first layer: few rows of B, many columns (threads split the panels)
    (5, 13, 17, 7, 3, 1, 1, 1),      # rows of the output not a multiple of the panel width
    (4, 20, 9, 250, 3, 2, 1, 1),     # stride 2; many filters (B packed whole first)
    (3, 23, 23, 5, 3, 3, 0, 1),      # stride 3 (the copy's plain loop)
    (6, 11, 12, 9, 1, 1, 0, 1),      # 1x1
    (3, 15, 15, 4, 3, 1, 2, 2),      # dilation 2
    (5, 9, 7, 6, 2, 2, 0, 1),        # even kernel, no padding
    (30, 6, 40, 8, 3, 1, 1, 1),      # k = 270: two k blocks
    (2, 9, 70, 13, 3, 2, 1, 1),      # stride 2 over several panels, the last one part-filled
    (3, 12, 14, 6, 5, 3, 2, 1),      # stride 3: three column phases
])
def test_product_from_image(c, h, w, filters, size, stride, pad, dilation, monkeypatch):
    """sgemm_image and conv_direct: the same bits as im2col then sgemm_darknet (channels 1.. of the image, not
    0..), conv_direct in bands of two output rows too (each band's own planes of the input), and the same as each
    other with fused multiply-adds, and with the fused store, a residual added after it."""
    rng = np.random.default_rng(c * h + w)
    x = rng.standard_normal((1, c + 2, h, w), dtype=np.float32)
    span = dilation * (size - 1) + 1
    out_h, out_w = (h + 2 * pad - span) // stride + 1, (w + 2 * pad - span) // stride + 1
    k, L = c * size * size, out_h * out_w
    cols = np.empty((1, k, L), np.float32)
    im2col_batch(x, 1, c, size, stride, pad, cols, False, dilation)
    A = rng.standard_normal((filters, k), dtype=np.float32)
    C = np.full((filters, L), np.nan, np.float32)
    assert same_bits(sgemm_image(A, x[0], 1, size, stride, pad, dilation, out_h, out_w, C), run(A, cols[0]))
    direct = np.full((filters, L), np.nan, np.float32)
    assert same_bits(conv_direct(A, x[0], 1, size, stride, pad, dilation, out_h, out_w, direct), C)
    with monkeypatch.context() as narrow:
        narrow.setattr(conv, "BAND_BYTES", 1)   # bands of two rows
        banded = np.full((filters, L), np.nan, np.float32)
        assert same_bits(conv_direct(A, x[0], 1, size, stride, pad, dilation, out_h, out_w, banded), C)
    fused = [np.full((filters, L), np.nan, np.float32) for _ in range(2)]
    sgemm_image(A, x[0], 1, size, stride, pad, dilation, out_h, out_w, fused[0], fused=True)
    conv_direct(A, x[0], 1, size, stride, pad, dilation, out_h, out_w, fused[1], fused=True)
    assert same_bits(*fused)
    # each output row finished as it is stored (the fast modes' fused store: affine, activation, a 2x2 pool or
    # none; by the register tiles on the last k block, the pool from each band): the bits of the store's pass after
    # the raw sums
    affine = rng.uniform(-1, 1, (3, filters)).astype(np.float32)
    sums = fused[0].copy()
    for activation, pool in ((RELU, True), (LEAKY, False), (LINEAR, True)):
        shape = (filters, (out_h + 1) // 2, (out_w + 1) // 2) if pool else (0, 0, 0)
        stores = [Store(affine, activation, np.full(shape, np.nan, np.float32)) for _ in range(2)]
        conv_direct(A, x[0], 1, size, stride, pad, dilation, out_h, out_w, fused[1], True, stores[0])
        fused[0][...] = sums
        apply(fused[0], out_w, stores[1])
        assert same_bits(*fused) and same_bits(stores[0].pooled, stores[1].pooled)
    # a [shortcut]'s residual added after the activation as the tiles store (no pool: the shortcut follows), by the
    # direct tiles and the packed columns' alike
    residual = rng.standard_normal((filters, out_h, out_w), dtype=np.float32)
    store = Store(affine, LEAKY, np.zeros((0, 0, 0), np.float32))
    conv_direct(A, x[0], 1, size, stride, pad, dilation, out_h, out_w, fused[1], True, store, residual=residual)
    packed = sgemm_image(A, x[0], 1, size, stride, pad, dilation, out_h, out_w, np.empty_like(C), True, affine, LEAKY,
                         residual.reshape(-1))
    fused[0][...] = sums
    apply(fused[0], out_w, store, residual)
    assert same_bits(*fused) and same_bits(packed, fused[0])


@numba.njit
def copy(src, s_off, step, dst, d_off, n):
    copy_run(src, s_off, step, dst, d_off, n)


def test_copy_run():
    """The vector copy of im2col: every length around the vector widths and past the long runs' first line, from
    every place in a line, strides 1 and 2, nothing written before d_off or past n."""
    src = np.arange(300, dtype=np.float32)
    for step in (1, 2):
        for n in list(range(0, 40)) + list(range(60, 70)) + [129, 144]:
            for d_off in range(17):
                dst = np.full(170, -1, np.float32)
                copy(src, 3, step, dst, d_off, n)
                want = np.full(170, -1, np.float32)
                want[d_off:d_off + n] = src[3:3 + step * n:step]
                assert np.array_equal(dst, want), (step, n, d_off)


def test_vector_width_from_features():
    from pydarknet.kernels.gemm import lanes_for
    assert lanes_for("+avx,+avx2,+avx512f,+fma") == 16
    assert lanes_for("+avx,+avx2,-avx512f") == 8
    assert lanes_for("+avx,-avx2") == 8
    assert lanes_for("+sse4.2,-avx") == 4
    assert lanes_for("") == 4
    assert lanes_for("+neon") == 4


CHECK_TARGET = """
import numpy as np
import pydarknet
from pydarknet.kernels.gemm import host_panel_width, sgemm_darknet
import tests.test_gemm as t
assert host_panel_width() == {nr}, host_panel_width()
t.test_every_small_shape_edge()
t.test_no_fused_multiply_add()
t.test_transposed_variants_and_accumulate()
for shape in ((37, 300, 41), (30, 45, 2100), (250, 600, 169)):
    t.test_larger_shapes(*shape)
t.test_copy_run()
t.test_tiles_finish_the_store()
for name in ("darknet", "fast"):
    t.test_pointwise_product_reads_the_image_in_place_or_packed(name)
for m in (2, 4):
    t.test_winograd_input_transform_is_bts_floats(m)
    t.test_winograd_output_transform_is_ats_floats(m)
import pytest
for case in ((3, 64, 70, 16, 3, 1, 1, 1), (4, 20, 9, 250, 3, 2, 1, 1), (30, 6, 40, 8, 3, 1, 1, 1)):
    with pytest.MonkeyPatch.context() as patch:
        t.test_product_from_image(*case, patch)
"""

# Targets other than this CPU's widest, compiled through Numba's own CPU override: each is a separate entry of
# Numba's cache (keyed by CPU name and features), so these runs also check that a cache written for one CPU is
# not used for another. Only instruction sets this machine has can run.
TARGETS = {"portable": ({"NUMBA_CPU_NAME": "generic"}, 8, None),
           "avx2": ({"NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": "+64bit,+sse,+sse2,+sse3,+ssse3,+sse4.1,"
                     "+sse4.2,+popcnt,+avx,+avx2,+fma,+f16c,+bmi,+bmi2,+lzcnt,+movbe,-avx512f"}, 16, "avx2")}


@pytest.fixture(scope="module")
def target_checks():
    """Each target's check (CHECK_TARGET, minutes of compiling) started at once, a process each, so that they
    compile side by side: target -> the process, or why it cannot run here."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import llvmlite.binding as llvm
    root = Path(__file__).resolve().parent.parent
    checks = {}
    for target, (env, nr, needs) in TARGETS.items():
        if needs and not llvm.get_host_cpu_features().get(needs):
            checks[target] = f"this CPU has no {needs}"
            continue
        checks[target] = subprocess.Popen([sys.executable, "-c", CHECK_TARGET.format(nr=nr)], cwd=root, text=True,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                          env={**os.environ, **env, "PYTHONPATH": str(root)})
    yield checks
    for check in checks.values():
        if not isinstance(check, str) and check.poll() is None:
            check.kill()
            check.wait()


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_other_vector_widths(target, target_checks):
    """The 8-float (AVX2) and 4-float (portable) tiles, compiled for those CPUs in a subprocess: the same bits."""
    check = target_checks[target]
    if isinstance(check, str):
        pytest.skip(check)
    _, stderr = check.communicate(timeout=900)
    assert check.returncode == 0, stderr[-3000:]


def test_tiles_finish_the_store():
    """With an activation the register tiles finish each row as they store it (batch-norm and bias as (x - center) *
    scale + shift, then linear, leaky or relu): the floats of the store's pass after the raw sums (epilogue.apply),
    on cut tiles, one and three k blocks (only the last one's sums are finished), darknet's chains and the fused
    ones, a product and one from an image."""
    from pydarknet.kernels.activations import LEAKY, LINEAR
    rng = np.random.default_rng(11)
    for M, K, N in ((13, 27, 77), (7, 600, 33), (64, 64, 1000)):
        A, B = operands(rng, M, K, N)
        affine = rng.uniform(-.5, 1.5, (3, M)).astype(np.float32)
        for activation in (LINEAR, LEAKY, RELU):
            store = Store(affine, activation, np.zeros((0, 0, 0), np.float32))
            for fused in (False, True):
                expected = sgemm_darknet(A, B, np.empty((M, N), np.float32), fused=fused)
                apply(expected, N, store)
                finished = sgemm_darknet(A, B, np.full((M, N), np.nan, np.float32), False, fused, affine, activation)
                np.testing.assert_array_equal(finished, expected)
    x = rng.standard_normal((5, 19, 23), dtype=np.float32)
    A = rng.standard_normal((10, 45), dtype=np.float32)
    affine = rng.uniform(-.5, 1.5, (3, 10)).astype(np.float32)
    expected = sgemm_image(A, x, 0, 3, 1, 1, 1, 19, 23, np.empty((10, 437), np.float32), True)
    apply(expected, 23, Store(affine, LEAKY, np.zeros((0, 0, 0), np.float32)))
    finished = sgemm_image(A, x, 0, 3, 1, 1, 1, 19, 23, np.empty((10, 437), np.float32), True, affine, LEAKY)
    np.testing.assert_array_equal(finished, expected)


def guarded(floats):
    """A float32 array of `floats` ending where the process's memory stops being readable (a page mapped without
    access after it): a kernel reading past its end stops the process (SIGSEGV) instead of reading garbage."""
    import ctypes
    import mmap
    page = mmap.PAGESIZE
    size = -(-floats * 4 // page) * page
    memory = mmap.mmap(-1, size + page)
    start = ctypes.addressof(ctypes.c_char.from_buffer(memory))
    assert ctypes.CDLL(None).mprotect(ctypes.c_void_p(start + size), page, 0) == 0   # PROT_NONE
    return np.frombuffer(memory, np.float32, floats, size - floats * 4)


@pytest.mark.parametrize("name", ["darknet", "fast"])
def test_pointwise_product_reads_the_image_in_place_or_packed(name):
    """products.pointwise_convolution (gemm.pointwise_product: A packed once, the image read in place as B, or its
    panels packed in groups per k block for long sums of many rows and wide planes): gemm_nn's product and store,
    bit for bit, on row tiles of 6 and 4, whole panels, a last narrower one (copied where B is read in place: its
    last step's vectors would run past the image) and images narrower than a panel, one to three k blocks, whole
    and partial groups of panels, on one thread and on all, with and without a residual added as the sums are
    stored (a [shortcut]'s: the store's floats, then the add), planes whose rows are not whole lines apart read
    in_place_span's steps at a time (k blocks of 150 and 174 steps in two spans). Each image ends where readable
    memory does."""
    from pydarknet.kernels.epilogue import NONE
    from pydarknet.kernels.products import gemm_nn, pointwise_convolution, products_for, using
    rng = np.random.default_rng(12)
    NR = host_panel_width()
    threads = numba.get_num_threads()
    for M, K, h, w in ((16, 128, 4, 2 * NR), (13, 27, 7, 11), (37, 300, 3, NR + 5), (4, 8, 1, 3), (48, 8, 40, 40),
                       (9, 600, 2, NR), (130, 590, 3, 4 * NR + 7), (32, 64, 128, 257), (20, 520, 5, 2 * NR + 3)):
        A = rng.standard_normal((M, K), dtype=np.float32)
        x = guarded(K * h * w).reshape(K, h, w)
        x[...] = rng.standard_normal((K, h, w), dtype=np.float32)
        affine = rng.uniform(-.5, 1.5, (3, M)).astype(np.float32)
        residual = rng.standard_normal((M, h, w), dtype=np.float32)
        for store in (NONE, Store(affine, LEAKY, np.zeros((0, 0, 0), np.float32))):
            for nth in sorted({1, threads}):
                numba.set_num_threads(nth)
                try:
                    with using(products_for(name)):
                        expected = np.empty((M, h * w), np.float32)
                        gemm_nn(A, x.reshape(K, -1), expected, store=store, width=w)
                        convolve = pointwise_convolution(A, w)
                        got = np.full((M, h * w), np.nan, np.float32)
                        convolve(x, got, store)
                        added = np.full((M, h * w), np.nan, np.float32)
                        convolve(x, added, store, residual=residual)
                finally:
                    numba.set_num_threads(threads)
                assert same_bits(got, expected), (M, K, h, w, store is NONE, nth)
                assert same_bits(added, expected + residual.reshape(M, -1)), (M, K, h, w, store is NONE, nth)


def _bt(m, *d):
    """Winograd's B^T along one axis, in numpy's float32 arithmetic in kernels.winograd's order (_bt2, _bt4)."""
    f = np.float32
    if m == 2:
        d0, d1, d2, d3 = d
        return [d0 - d2, d1 + d2, d2 - d1, d1 - d3]
    d0, d1, d2, d3, d4, d5 = d
    a, b, c, e = d4 - f(4) * d2, d3 - f(4) * d1, d4 - d2, f(2) * (d3 - d1)
    return [f(4) * d0 - f(5) * d2 + d4, a + b, a - b, c + e, c - e, f(4) * d1 - f(5) * d3 + d5]


def _at(m, *s):
    """Winograd's A^T along one axis, as _bt (_at2, _at4)."""
    f = np.float32
    if m == 2:
        m0, m1, m2, m3 = s
        return [m0 + m1 + m2, m1 - m2 - m3]
    m0, m1, m2, m3, m4, m5 = s
    a, b, c, e = m1 + m2, m1 - m2, m3 + m4, m3 - m4
    return [m0 + a + c, b + f(2) * e, a + f(4) * c, b + f(8) * e + m5]


@pytest.mark.parametrize("m", [2, 4])
def test_winograd_input_transform_is_bts_floats(m):
    """F(m x m)'s input transform (its pass along the tiles' rows a vector of tiles at a time, the columns
    deinterleaved by shuffles, a last vector of tiles cut short) gives B^T d B, down the columns then along the
    rows, each operation a float32 one: numpy's floats in that order (F(4x4)'s bands run the same transform:
    test_fast_products checks them against these three passes)."""
    from pydarknet.kernels.winograd import transform_input2, transform_input4
    n = m + 2
    rng = np.random.default_rng(17)
    for channels, h, w, pad in ((3, 83, 90, 0), (5, 41, 137, 1), (2, 12, 9, 2)):
        x = rng.standard_normal((channels, h, w), dtype=np.float32)
        tiles_h, tiles_w = -(-(h + 2 * pad - 2) // m), -(-(w + 2 * pad - 2) // m)
        xp = np.zeros((channels, m * tiles_h + 2, m * tiles_w + 2), np.float32)
        xp[:, pad:pad + h, pad:pad + w] = x
        patches = np.lib.stride_tricks.sliding_window_view(xp, (n, n), axis=(1, 2))[:, ::m, ::m]   # (c, ty, tx, n, n)
        columns = _bt(m, *(patches[..., r, :] for r in range(n)))        # [i] (c, ty, tx, n): B^T down the columns
        expected = np.stack([v for i in range(n) for v in _bt(m, *(columns[i][..., j] for j in range(n)))])
        V = np.full((n * n, channels, tiles_h * tiles_w), np.nan, np.float32)
        (transform_input2 if m == 2 else transform_input4)(x, pad, tiles_w, V)
        np.testing.assert_array_equal(V, expected.reshape(n * n, channels, -1))


def test_winograd_input_transform_takes_each_positions_peaks():
    """F(2x2)'s input transform with `peaks` (the int16 products' rounding) gives the same V and each position's
    largest |value| of each channel, as float32 bits: an infinity, or a NaN (above it), where V holds one."""
    from pydarknet.kernels.winograd import transform_input2
    rng = np.random.default_rng(23)
    for channels, h, w, pad in ((5, 41, 137, 1), (33, 13, 13, 1), (2, 12, 9, 0)):
        x = rng.standard_normal((channels, h, w), dtype=np.float32)
        x[0, 5, 6], x[1, 3, 4] = np.nan, np.inf
        tiles_h, tiles_w = -(-(h + 2 * pad - 2) // 2), -(-(w + 2 * pad - 2) // 2)
        V, alone = (np.full((16, channels, tiles_h * tiles_w), np.nan, np.float32) for _ in range(2))
        peaks = np.full((16, channels), -1, np.int32)
        transform_input2(x, pad, tiles_w, V, peaks)
        transform_input2(x, pad, tiles_w, alone)
        np.testing.assert_array_equal(V, alone)
        np.testing.assert_array_equal(peaks.view(np.float32), np.abs(V).max(axis=2))
        peak = peaks.view(np.float32)
        assert np.isnan(peak[:, 0]).any() and np.isinf(peak[:, 1]).any() and np.isfinite(peak[:, 2:]).all()


@pytest.mark.parametrize("m", [2, 4])
def test_winograd_output_transform_is_ats_floats(m):
    """F(m x m)'s output transform (its pass along the tiles' rows a vector of tiles at a time, the outputs
    interleaved by shuffles, a last vector cut short) gives A^T m A, down the columns then along the rows, in
    float32: numpy's floats in that order, cut to the output's size."""
    from pydarknet.kernels.epilogue import NO_RESIDUAL_PLANES, NONE
    from pydarknet.kernels.winograd import transform_output2, transform_output4
    n = m + 2
    rng = np.random.default_rng(19)
    for filters, out_h, out_w in ((3, 81, 88), (2, 41, 137), (4, 13, 11)):
        tiles_h, tiles_w = -(-out_h // m), -(-out_w // m)
        M = rng.standard_normal((n * n, filters, tiles_h * tiles_w), dtype=np.float32)
        sums = M.reshape(n * n, filters, tiles_h, tiles_w)
        down = [_at(m, *(sums[n * r + j] for r in range(n))) for j in range(n)]          # [j][i] (f, ty, tx)
        rows = np.stack([np.stack(_at(m, *(down[j][i] for j in range(n))), -1) for i in range(m)], 2)
        expected = rows.reshape(filters, m * tiles_h, m * tiles_w)[:, :out_h, :out_w]   # rows: (f, ty, i, tx, k)
        out = np.full((filters, out_h * out_w), np.nan, np.float32)
        (transform_output2 if m == 2 else transform_output4)(M, tiles_w, out_h, out_w, out, *NONE, NO_RESIDUAL_PLANES,
                                                             False)
        np.testing.assert_array_equal(out.reshape(expected.shape), expected)
        if m == 2:   # each position's sums of each filter scaled as they are read: M scaled first, the same floats
            scales = rng.uniform(-2, 2, (16, filters)).astype(np.float32)
            scaled = np.full_like(out, np.nan)
            transform_output2(M, tiles_w, out_h, out_w, scaled, *NONE, NO_RESIDUAL_PLANES, False, scales)
            transform_output2(M * scales[:, :, None], tiles_w, out_h, out_w, out, *NONE, NO_RESIDUAL_PLANES, False)
            np.testing.assert_array_equal(scaled, out)


def test_fused_variant():
    """fused=True (the fast backend) rounds each step once: the FMA case above gives 2^-24, not 0; elsewhere
    it stays within float32 accumulation error of the exact chains."""
    a = np.float32(1 + 2.0 ** -12)
    A = np.array([[1.0, a]], np.float32)
    B = np.array([[-np.float32(1 + 2.0 ** -11)], [a]], np.float32)
    assert sgemm_darknet(A, B, np.empty((1, 1), np.float32), fused=True)[0, 0] == np.float32(2.0 ** -24)
    rng = np.random.default_rng(3)
    for M, K, N in ((37, 300, 41), (7, 513, 17), (30, 45, 2100)):
        A, B = operands(rng, M, K, N)
        C = sgemm_darknet(A, B, np.empty((M, N), np.float32), fused=True)
        np.testing.assert_allclose(C, A.astype(np.float64) @ B, rtol=0, atol=1e-5 * np.sqrt(K))


def test_winograd_products_from_packed_weights():
    """kernels.winograd.winograd_products (U packed once, V read in place, a position per task, rows of V and M
    longer than the tiles they hold): each product the same bits as sgemm_darknet's with fused multiply-adds on its
    own (row tiles of 6 and 4, panels and their tails, two k blocks), NaN past the tiles changing nothing."""
    from pydarknet.kernels.products import pack_winograd
    from pydarknet.kernels.winograd import winograd_products
    rng = np.random.default_rng(4)
    for count, M, K, N, ld in ((16, 37, 300, 41, 48), (3, 250, 45, 70, 70), (2, 5, 7, 1, 16)):
        A = rng.standard_normal((count, M, K), dtype=np.float32)
        V = np.full(count * K * ld + host_panel_width(), np.nan, np.float32)   # rows of ld, N of them used
        B = V[:count * K * ld].reshape(count, K, ld)[:, :, :N]
        B[...] = rng.standard_normal((count, K, N), dtype=np.float32)
        C = np.full((count, M, ld), np.nan, np.float32)
        winograd_products(pack_winograd(A), V, K, N, C)
        for q in range(count):
            own = sgemm_darknet(A[q], np.ascontiguousarray(B[q]), np.empty((M, N), np.float32), fused=True)
            assert same_bits(C[q, :, :N], own), (count, M, K, N, q)
