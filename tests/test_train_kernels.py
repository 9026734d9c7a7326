"""The fast training kernels against straightforward references in darknet's order, bit for bit.

The golden training runs check the whole chain on their own shapes; these cover the paths and edge cases
those shapes do not reach (every weight-gradient path, odd sizes, channel offsets, ties, padding windows).
"""
import numpy as np
import pytest

from pydarknet.kernels import products
from pydarknet.kernels.activations import CODE
from pydarknet.kernels.backward import batchnorm_backward, batchnorm_train, batchnorm_train_forward, maxpool_backward
from pydarknet.kernels.conv import col2im_batch, im2col_batch, im2col_t
from pydarknet.kernels.pool import maxpool

F32 = np.float32
FLT_MAX = F32(3.4028234663852886e38)


# -- im2col / col2im --------------------------------------------------------------------------------------------
GEOMETRIES = [(3, 1, 1), (3, 2, 1), (1, 1, 0), (1, 2, 0), (7, 2, 3), (2, 1, 0), (3, 1, 2)]


def out_size(h, w, size, stride, pad):
    return (h + 2 * pad - size) // stride + 1, (w + 2 * pad - size) // stride + 1


def window_pixels(c, h, w, size, stride, pad):
    """darknet's im2col_cpu/col2im_cpu loops: (row of col, output position, channel, y, x of the pixel or
    None when it falls in the padding), rows then positions in order."""
    oh, ow = out_size(h, w, size, stride, pad)
    for row in range(c * size * size):
        kx, ky, ch = row % size, (row // size) % size, row // (size * size)
        for y in range(oh):
            for x in range(ow):
                iy, ix = ky + y * stride - pad, kx + x * stride - pad
                inside = 0 <= iy < h and 0 <= ix < w
                yield row, y * ow + x, ch, (iy, ix) if inside else None


def reference_im2col(im, size, stride, pad):
    c, h, w = im.shape
    oh, ow = out_size(h, w, size, stride, pad)
    col = np.zeros((c * size * size, oh * ow), F32)
    for row, pos, ch, pixel in window_pixels(c, h, w, size, stride, pad):
        if pixel:
            col[row, pos] = im[ch, pixel[0], pixel[1]]
    return col


def reference_col2im(col, size, stride, pad, im):
    """Adds in place, each term in darknet's order (float32 additions one by one)."""
    c, h, w = im.shape
    for row, pos, ch, pixel in window_pixels(c, h, w, size, stride, pad):
        if pixel:
            im[ch, pixel[0], pixel[1]] = F32(im[ch, pixel[0], pixel[1]] + col[row, pos])


@pytest.mark.parametrize("size, stride, pad", GEOMETRIES)
def test_im2col_batched_and_transposed(size, stride, pad):
    rng = np.random.default_rng(1)
    n, c, h, w = 3, 5, 9, 8
    x = rng.normal(size=(n, c, h, w)).astype(F32)
    c0, cg = 1, 3
    oh, ow = out_size(h, w, size, stride, pad)
    k, L = cg * size * size, oh * ow
    per_image = np.full((n, k, L), np.nan, F32)
    wide = np.full((k, n, L), np.nan, F32)
    transposed = np.full((n, L, k), np.nan, F32)
    im2col_batch(x, c0, cg, size, stride, pad, per_image, False)
    im2col_batch(x, c0, cg, size, stride, pad, wide, True)
    im2col_t(x, c0, cg, size, stride, pad, transposed)
    for b in range(n):
        ref = reference_im2col(x[b, c0:c0 + cg], size, stride, pad)
        assert np.array_equal(per_image[b], ref)
        assert np.array_equal(wide[:, b], ref)
        assert np.array_equal(transposed[b], ref.T)


@pytest.mark.parametrize("size, stride, pad", GEOMETRIES)
@pytest.mark.parametrize("wide", [False, True])
def test_col2im_batch(size, stride, pad, wide):
    rng = np.random.default_rng(2)
    n, c, h, w = 3, 5, 9, 8
    c0, cg = 2, 3
    oh, ow = out_size(h, w, size, stride, pad)
    k, L = cg * size * size, oh * ow
    cols = rng.normal(size=(k, n, L) if wide else (n, k, L)).astype(F32)
    start = rng.normal(size=(n, c, h, w)).astype(F32)
    got = start.copy()
    col2im_batch(cols, wide, size, stride, pad, got, c0)
    want = start.copy()
    for b in range(n):
        target = np.ascontiguousarray(want[b, c0:c0 + cg])
        reference_col2im(cols[:, b] if wide else cols[b], size, stride, pad, target)
        want[b, c0:c0 + cg] = target
    assert np.array_equal(got, want)


# -- the weight gradient ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("n, m, k, L, path", [
    (3, 5, 27, 130, "rows"), (2, 16, 9, 4097, "rows"), (2, 3, 7, 66, "rows"), (2, 40, 30, 70, "rows"),
    (3, 33, 50, 25, "tiles"), (2, 7, 13, 3, "tiles"), (2, 4, 5, 1, "tiles"), (1, 9, 600, 12, "tiles"),
    (2, 130, 37, 130, "chains"), (1, 133, 16, 131, "chains"), (2, 128, 16, 131, "rows"), (2, 37, 21, 129, "rows")])
def test_conv_weight_gradient_paths(n, m, k, L, path, darknet_products):
    """Every path equals darknet's gemm_nt per image (_gemm_nt_lanes, the reference kept bit-exact by the
    golden training runs) added to the gradient image by image."""
    assert products._nt_path(m, k, L) == path
    rng = np.random.default_rng(3)
    delta = rng.normal(size=(n, m, L)).astype(F32)
    col = rng.normal(size=(n, k, L)).astype(F32)
    start = rng.normal(size=(m, k)).astype(F32)
    want = start.copy()
    grad = np.empty((m, k), F32)
    for b in range(n):
        products._gemm_nt_lanes(delta[b], col[b], grad)
        want += grad
    cols = np.ascontiguousarray(col.transpose(0, 2, 1)) if products.weight_gradient_transposed(m, k, L) else col
    got = start.copy()
    products.conv_weight_gradient(delta, cols, got)
    assert np.array_equal(got, want)


# -- max pool ---------------------------------------------------------------------------------------------------
def maxpool_reference(x, size, stride, pad):
    n, c, h, w = x.shape
    oh, ow = (h + pad - size) // stride + 1, (w + pad - size) // stride + 1
    out = np.empty((n, c, oh, ow), F32)
    arg = np.empty((n, c, oh, ow), np.int64)
    off = -(pad // 2)
    for b in range(n):
        for ch in range(c):
            for i in range(oh):
                for j in range(ow):
                    best, at = -FLT_MAX, -1
                    for dy in range(size):
                        for dx in range(size):
                            y, xx = off + i * stride + dy, off + j * stride + dx
                            inside = 0 <= y < h and 0 <= xx < w
                            v = x[b, ch, y, xx] if inside else -FLT_MAX
                            if v > best:
                                best, at = v, (ch * h + y) * w + xx
                    out[b, ch, i, j], arg[b, ch, i, j] = best, at
    return out, arg


@pytest.mark.parametrize("size, stride, pad, h, w",
                         [(2, 2, 1, 7, 8), (2, 2, 1, 8, 10), (2, 2, 1, 9, 7), (2, 2, 0, 7, 8), (2, 1, 1, 7, 8),
                          (2, 2, 1, 5, 33), (2, 2, 1, 4, 64), (2, 2, 1, 5, 75), (3, 2, 2, 7, 8),
                          (3, 1, 2, 7, 8), (2, 2, 3, 7, 8), (5, 3, 4, 7, 8), (13, 1, 12, 10, 10), (9, 1, 8, 9, 11),
                          (5, 1, 0, 9, 12), (4, 1, 3, 6, 9), (6, 1, 5, 4, 20), (3, 1, 2, 4, 40), (7, 1, 2, 8, 5)])
def test_maxpool_training_path(size, stride, pad, h, w):
    """(2, 2, 1) is the inference's 2x2 path (kernels/pool.py maxpool_2x2), on odd sizes too: the windows past
    the last row or column, and rows of one, two and more vectors of windows and a part of one (33, 64 and 75
    wide); (13, 1, 12) and (9, 1, 8) an SPP block's, whose windows pass the image's edges; the other stride-1
    cases the inference's runs by doubling (_maxpool_stride1): no padding, even sizes, windows taller than the
    image, padding on one side only.
    Bit for bit: of +0 and -0 in one window, the first in darknet's order is the maximum."""
    rng = np.random.default_rng(4)
    n, c = 2, 3
    x = rng.integers(0, 4, size=(n, c, h, w)).astype(F32)   # many ties: the first maximum must win
    x[(x == 0) & (rng.random(x.shape) < .5)] = -0.0
    x[0, 0] = -FLT_MAX
    x[1, 1, :4, :4] = [[np.nan, 1, -np.inf, -np.inf], [2, np.nan, -np.inf, -np.inf], [np.nan] * 4, [np.nan] * 4]
    want, want_arg = maxpool_reference(x, size, stride, pad)
    out = np.empty(want.shape, F32)
    arg = np.empty(want.shape, np.int32)
    maxpool(x, size, stride, stride, pad, out, arg, True)
    assert np.array_equal(out.view(np.int32), want.view(np.int32)) and np.array_equal(arg, want_arg)
    fast = np.empty(want.shape, F32)
    maxpool(x, size, stride, stride, pad, fast, np.empty((0, 0, 0, 0), np.int32), False)
    assert np.array_equal(fast.view(np.int32), want.view(np.int32))
    delta = rng.normal(size=want.shape).astype(F32)
    prev = np.zeros(x.shape, F32)
    maxpool_backward(delta, arg, prev)
    ref = np.zeros(x.shape, F32)
    for b in range(n):
        flat = ref[b].reshape(-1)
        for d, j in zip(delta[b].reshape(-1), want_arg[b].reshape(-1)):
            if j >= 0:
                flat[j] += d
    assert np.array_equal(prev, ref)


def test_maxpool_2x2_reads_rows_by_their_stride():
    """maxpool_2x2 on a plane whose rows lie further apart than its width (a part of a wider array), into rows of
    a wider array too: each row where its stride puts it, nothing written past the output's columns."""
    from pydarknet.kernels.pool import maxpool_2x2
    rng = np.random.default_rng(5)
    wide = rng.standard_normal((9, 80), dtype=F32)
    target = np.full((5, 50), 7, F32)
    maxpool_2x2(wide[:, 3:72], target[:, 1:36])
    want, _ = maxpool_reference(np.ascontiguousarray(wide[:, 3:72])[None, None], 2, 2, 1)
    assert np.array_equal(target[:, 1:36], want[0, 0])
    assert (target[:, :1] == 7).all() and (target[:, 36:] == 7).all()


# -- batch-norm -------------------------------------------------------------------------------------------------
def sum4(values, init):
    """darknet's -Ofast vectorized sum: four lanes, (l0 + l2) + (l1 + l3), then the rest in order."""
    lanes = [F32(0)] * 4
    full = len(values) - len(values) % 4
    for i in range(full):
        lanes[i % 4] = F32(lanes[i % 4] + values[i])
    t = F32(init + F32(F32(lanes[0] + lanes[2]) + F32(lanes[1] + lanes[3])))
    for v in values[full:]:
        t = F32(t + v)
    return t


def batchnorm_forward_reference(x, scales, biases, rm, rv):
    n, c, s = x.shape
    count = n * s
    mean = np.empty(c, F32)
    var = np.empty(c, F32)
    out = np.empty_like(x)
    xn = np.empty_like(x)
    for f in range(c):
        m = F32(0)
        for b in range(n):
            for i in range(s):
                m = F32(m + x[b, f, i])
        m = F32(m * F32(1.0 / count))
        v = F32(0)
        for b in range(n):
            for i in range(s):
                d = float(F32(x[b, f, i] - m))
                v = F32(float(v) + d * d)
        v = F32(v * F32(1.0 / (count - 1)))
        mean[f], var[f] = m, v
        rm[f] = F32(F32(rm[f] * F32(0.99)) + F32(F32(0.01) * m))
        rv[f] = F32(F32(rv[f] * F32(0.99)) + F32(F32(0.01) * v))
        denom = np.sqrt(float(v)) + float(F32(0.000001))
        for b in range(n):
            for i in range(s):
                t = F32(float(F32(x[b, f, i] - m)) / denom)
                xn[b, f, i] = t
                y = F32(F32(t * scales[f]) + biases[f])
                out[b, f, i] = y if y > 0 else F32(0.1 * float(y))
    return out, xn, mean, var


@pytest.mark.parametrize("c", [1, 3, 5, 9, 16])
def test_batchnorm_train_forward(c):
    rng = np.random.default_rng(5)
    n, s = 3, 11
    x = rng.normal(size=(n, c, s)).astype(F32)
    scales = rng.uniform(0.5, 1.5, c).astype(F32)
    biases = rng.normal(size=c).astype(F32)
    rm0 = rng.normal(size=c).astype(F32)
    rv0 = rng.uniform(0.5, 2, c).astype(F32)
    rm, rv = rm0.copy(), rv0.copy()
    want, want_xn, want_mean, want_var = batchnorm_forward_reference(x, scales, biases, rm, rv)
    for in_place in (False, True):
        got_rm, got_rv = rm0.copy(), rv0.copy()
        mean, var = np.empty(c, F32), np.empty(c, F32)
        xn = np.empty_like(x)
        if in_place:
            out, kept = x.copy(), np.empty_like(x)
            batchnorm_train_forward(out, scales, biases, got_rm, got_rv, mean, var, kept, xn, CODE["leaky"])
            assert np.array_equal(kept, x)
        else:
            out = np.empty_like(x)
            batchnorm_train(x, out, scales, biases, got_rm, got_rv, mean, var, xn, CODE["leaky"])
        for a, b in ((out, want), (xn, want_xn), (mean, want_mean), (var, want_var), (got_rm, rm), (got_rv, rv)):
            assert np.array_equal(a, b)


@pytest.mark.parametrize("c, s", [(1, 7), (3, 12), (5, 9), (9, 2)])
def test_batchnorm_backward(c, s):
    rng = np.random.default_rng(6)
    n = 3
    delta = rng.normal(size=(n, c, s)).astype(F32)
    x = rng.normal(size=(n, c, s)).astype(F32)
    xn = rng.normal(size=(n, c, s)).astype(F32)
    mean = rng.normal(size=c).astype(F32)
    var = rng.uniform(0.5, 2, c).astype(F32)
    scales = rng.uniform(0.5, 1.5, c).astype(F32)
    bu0 = rng.normal(size=c).astype(F32)
    su0 = rng.normal(size=c).astype(F32)
    count = n * s
    inv_count = F32(F32(1.0) / F32(count))
    want = delta.copy()
    want_bu, want_su = bu0.copy(), su0.copy()
    for f in range(c):
        for b in range(n):
            want_bu[f] = F32(want_bu[f] + sum4(delta[b, f], F32(0)))
        t = F32(0)
        for b in range(n):
            t = sum4([F32(p * q) for p, q in zip(delta[b, f], xn[b, f])], t)
        want_su[f] = F32(want_su[f] + t)
        md = vd = F32(0)
        for b in range(n):
            for i in range(s):
                want[b, f, i] = F32(want[b, f, i] * scales[f])
                md = F32(md + want[b, f, i])
        for b in range(n):
            for i in range(s):
                vd = F32(vd + F32(want[b, f, i] * F32(x[b, f, i] - mean[f])))
        ve = F32(var[f] + F32(0.00001))
        root = np.sqrt(float(ve))
        md = F32(float(md) * (-1.0 / root))
        vd = F32(float(vd) * (-0.5 * float(ve) ** -1.5))
        mterm = float(F32(md * inv_count))
        for b in range(n):
            for i in range(s):
                want[b, f, i] = F32(float(want[b, f, i]) / root + float(vd) * 2.0 * float(F32(x[b, f, i] - mean[f]))
                                    / count + mterm)
    got, bu, su = delta.copy(), bu0.copy(), su0.copy()
    batchnorm_backward(got, x, xn, mean, var, scales, bu, su)
    assert np.array_equal(bu, want_bu)
    assert np.array_equal(su, want_su)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("activation", ["leaky", "logistic", "linear", "tanh"])
def test_batchnorm_backward_with_activation(activation):
    """The fused activation gradient + batch-norm backward equals gradient_array32 then batchnorm_backward."""
    from pydarknet.kernels.backward import batchnorm_backward_activation, gradient_array32
    rng = np.random.default_rng(7)
    n, c, s = 3, 5, 13
    delta = rng.normal(size=(n, c, s)).astype(F32)
    y = rng.uniform(-1, 1, size=(n, c, s)).astype(F32)
    x = rng.normal(size=(n, c, s)).astype(F32)
    xn = rng.normal(size=(n, c, s)).astype(F32)
    mean = rng.normal(size=c).astype(F32)
    var = rng.uniform(0.5, 2, c).astype(F32)
    scales = rng.uniform(0.5, 1.5, c).astype(F32)
    want, bu1, su1 = delta.copy(), np.zeros(c, F32), np.zeros(c, F32)
    gradient_array32(y.reshape(-1), CODE[activation], want.reshape(-1))
    batchnorm_backward(want, x, xn, mean, var, scales, bu1, su1)
    got, bu2, su2 = delta.copy(), np.zeros(c, F32), np.zeros(c, F32)
    batchnorm_backward_activation(got, y, CODE[activation], x, xn, mean, var, scales, bu2, su2)
    assert np.array_equal(got, want) and np.array_equal(bu1, bu2) and np.array_equal(su1, su2)


@pytest.mark.parametrize("n, m, c, h, w, size, pad", [
    (2, 5, 3, 7, 8, 3, 1), (3, 16, 2, 12, 16, 3, 1), (2, 9, 2, 6, 12, 1, 0), (2, 6, 3, 9, 4, 5, 2),
    (1, 33, 4, 5, 8, 3, 1), (2, 7, 3, 3, 6, 3, 2)])
def test_conv_weight_gradient_from_image(n, m, c, h, w, size, pad, darknet_products):
    """Reading the columns straight from the padded input gives the same floats as im2col + the rows path."""
    from pydarknet.kernels.conv import pad_images
    rng = np.random.default_rng(8)
    oh, ow = out_size(h, w, size, 1, pad)
    L, k = oh * ow, c * size * size
    x = rng.normal(size=(n, c + 1, h, w)).astype(F32)
    delta = rng.normal(size=(n, m, L)).astype(F32)
    col = np.empty((n, k, L), F32)
    im2col_batch(x, 1, c, size, 1, pad, col, False)
    xpad = np.full((n, c, h + 2 * pad, w + 2 * pad), np.nan, F32)
    pad_images(x, 1, c, pad, xpad)
    start = rng.normal(size=(m, k)).astype(F32)
    want = start.copy()
    grad = np.empty((m, k), F32)
    for b in range(n):
        products._gemm_nt_lanes(delta[b], col[b], grad)
        want += grad
    got = start.copy()
    products.conv_weight_gradient_image(delta, xpad, size, got)
    assert np.array_equal(got, want)
