"""Training kernels: batch-norm with batch statistics, and the backward pass of every layer we train.

The arithmetic follows darknet's CPU code type for type, so that a training step lands on the same floats:
where darknet computes in float the kernels compute in float32, where C promotes to double (a double
literal, `sqrt`, `pow`) they do too and round where darknet stores. Sums run in darknet's index order.

Darknet is built with -Ofast, which lets GCC vectorize sums kept in a local variable (sum_array, mag_array,
backward_scale_cpu's sum, gemm_nt's dot products) with four float32 lanes: lane l adds the terms i = l, l+4,
..., the lanes are combined as (l0 + l2) + (l1 + l3) and the terms after the last full group of four follow
one by one (`sum4`); sums into array elements (mean_cpu, mean_delta_cpu, ...) stay sequential, and a
division by a loop-invariant float becomes a product with its float reciprocal. Checked bit for bit against
darknet's own functions built with gcc -Ofast.

Conventions: `delta` is darknet's delta, the *negative* gradient of the loss with respect to a layer's output
(darknet adds `lr * updates` to the weights, so its updates are negative gradients too). Every backward
kernel here ADDS what it passes to an earlier layer's delta; none overwrites.
"""
import math

import numba
import numpy as np
from numba import njit, prange

from .activations import (ELU, GELU, HARD_MISH, HARDTAN, LEAKY, LHTAN, LINEAR, LOGGY, LOGISTIC, MISH,
                          NORM_CHAN, PLSE, RAMP, RELIE, RELU, RELU6, REVLEAKY, SELU, STAIR, SWISH, TANH,
                          _exp2, _tanhf4, activate_row, logistic32, logistic4,
                          softplus32, softplus4)

F32 = np.float32
ONE = np.float32(1.0)
BN_EPS = np.float32(0.00001)      # darknet's `.00001f` in the batch-norm backward
NORM_EPS = np.float32(0.000001)   # and `.000001f` in normalize_cpu


# -- sums in darknet's -Ofast order ---------------------------------------------------------------------------
@njit(cache=True, inline="always")
def sum4(a, start, stop, init):
    """init + the float32 sum of a[start:stop] in four lanes (GCC's vectorized reduction)."""
    n = stop - start
    m = start + n - n % 4
    s0 = F32(0.0)
    s1 = F32(0.0)
    s2 = F32(0.0)
    s3 = F32(0.0)
    for i in range(start, m, 4):
        s0 += a[i]
        s1 += a[i + 1]
        s2 += a[i + 2]
        s3 += a[i + 3]
    t = init + ((s0 + s2) + (s1 + s3))
    for i in range(m, stop):
        t += a[i]
    return t


@njit(cache=True, inline="always")
def dot4(a, b, start, stop, init):
    """init + the float32 sum of a[i]*b[i] (each product rounded) over [start, stop), in four lanes."""
    n = stop - start
    m = start + n - n % 4
    s0 = F32(0.0)
    s1 = F32(0.0)
    s2 = F32(0.0)
    s3 = F32(0.0)
    for i in range(start, m, 4):
        s0 += a[i] * b[i]
        s1 += a[i + 1] * b[i + 1]
        s2 += a[i + 2] * b[i + 2]
        s3 += a[i + 3] * b[i + 3]
    t = init + ((s0 + s2) + (s1 + s3))
    for i in range(m, stop):
        t += a[i] * b[i]
    return t


@njit(cache=True)
def sum_array(a):
    """darknet's sum_array on a flat float32 array (four lanes, see sum4)."""
    return sum4(a, 0, a.size, F32(0.0))


@njit(cache=True)
def sum_squares(a):
    """sum of a*a as darknet's mag_array accumulates it before its sqrt (four lanes)."""
    return dot4(a, a, 0, a.size, F32(0.0))


# -- activations ---------------------------------------------------------------------------------------------
@njit(cache=True, inline="always")
def gradient32(y, a):
    """f'(x) from the activation's output y = f(x), as darknet's *_gradient functions: they return float,
    so double-valued expressions (`.1`, `(x+1.)/2.`) are rounded to float32 before multiplying the delta."""
    if a == LINEAR:
        return ONE
    if a == LEAKY:
        return ONE if y > 0 else F32(0.1)
    if a == LOGISTIC:
        return (ONE - y) * y
    if a == RELU:
        return ONE if y > 0 else F32(0.0)
    if a == RELIE:
        return ONE if y > 0 else F32(0.01)
    if a == RAMP:
        return F32(1.1) if y > 0 else F32(0.1)
    if a == TANH:
        return ONE - y * y
    if a == PLSE:
        return F32(0.01) if (y < 0 or y > 1) else F32(0.125)
    if a == ELU:
        return ONE if y >= 0 else y + ONE
    if a == LOGGY:
        t = F32((np.float64(y) + 1.0) / 2.0)
        return F32(2.0) * (ONE - t) * t
    if a == STAIR:
        return F32(0.0) if np.floor(y) == y else ONE
    if a == HARDTAN:
        return ONE if (y > -1 and y < 1) else F32(0.0)
    if a == LHTAN:
        return ONE if (y > 0 and y < 1) else F32(0.001)
    if a == SELU:
        return F32(1.0507) if y >= 0 else F32(np.float64(y) + 1.0507 * 1.6732)
    if a == RELU6:
        return ONE if (y > 0 and y < 6) else F32(0.0)
    if a == REVLEAKY:
        return ONE if y > 0 else F32(0.1)
    if a == GELU:   # the fork evaluates gelu's derivative at the layer's output, not its input
        y3 = F32(np.float64(y) ** 3)                                  # powf(y, 3)
        u = F32(0.0356774 * np.float64(y3) + 0.797885 * np.float64(y))   # tanh's argument, a float
        sech = F32(2.0) / (math.exp(u) + math.exp(-u))                 # in float (expf)
        return F32(0.5 * np.float64(math.tanh(u)) + (0.0535161 * np.float64(y3) + 0.398942 * np.float64(y))
                   * np.float64(sech * sech) + 0.5)
    return ONE


@njit(cache=True, parallel=True)
def gradient_array32(y, a, delta):
    """delta *= f'(y) in place (flat float32 arrays), darknet's gradient_array."""
    if a == LINEAR:
        return
    chunk = 1 << 14
    tenth = F32(0.1)
    for c in prange((y.size + chunk - 1) // chunk):
        start, stop = c * chunk, min(y.size, (c + 1) * chunk)
        if a == LEAKY:      # its own loop, which vectorizes
            for i in range(start, stop):
                delta[i] = delta[i] * (ONE if y[i] > 0 else tenth)
        elif a == LOGISTIC:     # -Ofast multiplies in the order (delta * y) * (1 - y)
            for i in range(start, stop):
                delta[i] = (delta[i] * y[i]) * (ONE - y[i])
        else:
            for i in range(start, stop):
                delta[i] = delta[i] * gradient32(y[i], a)


@njit(cache=True, inline="always")
def _mish_gradient(x, sp, tsp, grad_sp):
    """The fork's gradient_array_mish as -Ofast reassociates it: (x * grad_sp) * (1 - tsp^2) + tsp."""
    return (x * grad_sp) * (ONE - tsp * tsp) + tsp


@njit(cache=True, inline="always")
def _gradient_lanes(x, y, a, delta, i):
    """delta[i:i+4] *= f'(x[i:i+4]) as the fork's four-lane loops compute it (swish: the sigmoid its forward
    kept, which is the vector logistic of the input; mish: libmvec's softplus, tanhf and double exp)."""
    if a == SWISH:
        s = logistic4(x[i], x[i + 1], x[i + 2], x[i + 3])
        for k in range(4):
            delta[i + k] = ((ONE - y[i + k]) * s[k] + y[i + k]) * delta[i + k]
    elif a == MISH:
        sp = softplus4(x[i], x[i + 1], x[i + 2], x[i + 3])
        ea, eb = _exp2((-np.float64(sp[0]), -np.float64(sp[1])))
        ec, ed = _exp2((-np.float64(sp[2]), -np.float64(sp[3])))
        t = _tanhf4(sp)
        g = (F32(1.0 - ea), F32(1.0 - eb), F32(1.0 - ec), F32(1.0 - ed))
        for k in range(4):
            delta[i + k] = _mish_gradient(x[i + k], sp[k], t[k], g[k]) * delta[i + k]
    else:
        for k in range(4):
            delta[i + k] = _gradient_one(x[i + k], y[i + k], a) * delta[i + k]


@njit(cache=True, inline="always")
def _gradient_one(v, y, a):
    """f'(v) as the fork's scalar code computes it (the loops' last x.size % 4 elements)."""
    if a == SWISH:
        return (ONE - y) * logistic32(v) + y
    if a == MISH:   # the fork's exp is the double one; its tanh, on a float, becomes tanhf under -Ofast
        sp = softplus32(v)
        return _mish_gradient(v, sp, math.tanh(sp), F32(1.0 - math.exp(-np.float64(sp))))
    if a == HARD_MISH:
        return ONE if v > 0 else (v + ONE if v > -2 else F32(0.0))
    return ONE


@njit(cache=True, parallel=True)
def gradient_from_input(x, y, a, delta):
    """delta *= f'(x) for the activations whose derivative needs the input x (swish, mish, hard_mish; y is
    the output), as the fork's gradient_array_swish/_mish/_hard_mish (flat float32 arrays): four lanes at a
    time as its -Ofast loops compute them (kernels.activations.activate_fork4), the last x.size % 4 elements
    as its scalar code."""
    m = x.size - x.size % 4
    chunk = 1 << 14
    for c in prange((m + chunk - 1) // chunk):
        for i in range(c * chunk, min(m, (c + 1) * chunk), 4):
            _gradient_lanes(x, y, a, delta, i)
    for i in range(m, x.size):
        delta[i] = _gradient_one(x[i], y[i], a) * delta[i]


@njit(cache=True, parallel=True)
def gradient_channels(y, a, delta):
    """The fork's gradient of normalize_channels(_softmax) on (n, c, spatial) from the output y: each pixel's
    delta times the pixel's sum over channels of y * delta (normalize_channels: only where y > 0)."""
    n, c, spatial = y.shape
    for task in prange(n * spatial):
        b = task // spatial
        i = task % spatial
        total = F32(0.0)
        for k in range(c):
            total += y[b, k, i] * delta[b, k, i]
        for k in range(c):
            if a != NORM_CHAN or y[b, k, i] > 0:
                delta[b, k, i] = delta[b, k, i] * total


# -- biases and batch-norm -----------------------------------------------------------------------------------
@njit(cache=True, parallel=True)
def backward_bias(bias_updates, delta):
    """bias_updates[f] += sum of delta (n, c, spatial) over the spatial positions, image by image
    (darknet's backward_bias: one sum_array per image and channel, each added on its own)."""
    n, c, spatial = delta.shape
    for f in prange(c):
        acc = bias_updates[f]
        for b in range(n):
            acc += sum4(delta[b, f], 0, spatial, F32(0.0))
        bias_updates[f] = acc


def chain_block(c):
    """Channels per block for the kernels that run one sequential float32 chain per channel: up to four
    chains interleaved (each alone is latency-bound: a float add, or a float->double->float round trip, per
    term; four reach the throughput limit: measured 3.5x faster, eight no faster), but no fewer blocks than
    threads."""
    threads = numba.get_num_threads()
    return 4 if c >= 4 * threads else max(1, c // threads)


@njit(cache=True, inline="always")
def slot(f0, k, per, c):
    """Channel of chain slot k of the block of `per` channels starting at f0; slots past the block's end
    repeat its last channel (the extra chains ride along in the latency of the real ones)."""
    return min(f0 + k, min(c, f0 + per) - 1)


def batchnorm_train_forward(out, scales, biases, rolling_mean, rolling_variance, mean, variance, x, x_norm,
                            activation, ab=False):
    """Darknet's forward_batchnorm_layer in training mode, then the activation, on out (n, c, spatial) in place.

    x keeps the input, x_norm the normalised values (both for the backward pass); mean and variance get the
    batch statistics (variance with n-1); the rolling statistics move 1 % towards them. `ab`: divide by
    sqrt(var + .00001) as the AlexeyAB fork does, instead of pjreddie's sqrt(var) + .000001.
    """
    copy_array(out.reshape(-1), x.reshape(-1))
    batchnorm_train(x, out, scales, biases, rolling_mean, rolling_variance, mean, variance, x_norm, activation, ab)


def batchnorm_train(inp, out, scales, biases, rolling_mean, rolling_variance, mean, variance, x_norm,
                    activation, ab=False):
    """batchnorm_train_forward reading the raw sums from inp (which the backward pass keeps as its x) and
    writing the activations to out (n, c, spatial), so that nothing needs copying.

    Each channel's mean and variance is one sequential float32 chain over (image, pixel) as in darknet's
    mean_cpu/variance_cpu (-Ofast leaves sums into array elements sequential); the chains of up to four
    channels run interleaved, each in its own order.
    """
    _batchnorm_train(inp, out, scales, biases, rolling_mean, rolling_variance, mean, variance, x_norm,
                     activation, chain_block(out.shape[1]), ab)


@njit(cache=True, parallel=True)
def copy_array(src, dst):
    chunk = 1 << 16
    for c in prange((src.size + chunk - 1) // chunk):
        dst[c * chunk:(c + 1) * chunk] = src[c * chunk:(c + 1) * chunk]


@njit(cache=True, parallel=True, error_model="numpy")
def _batchnorm_train(inp, out, scales, biases, rolling_mean, rolling_variance, mean, variance, x_norm,
                     activation, per, ab):
    n, c, spatial = out.shape
    count = n * spatial
    inv_count = F32(1.0 / count)
    inv_count1 = F32(1.0 / (count - 1)) if count > 1 else F32(np.inf)
    for blk in prange((c + per - 1) // per):
        f0 = blk * per
        f1 = min(c, f0 + per)
        fa = slot(f0, 0, per, c)
        fb = slot(f0, 1, per, c)
        fc = slot(f0, 2, per, c)
        fd = slot(f0, 3, per, c)
        ma = F32(0.0)
        mb = F32(0.0)
        mc = F32(0.0)
        md = F32(0.0)
        for b in range(n):
            ra = inp[b, fa]
            rb = inp[b, fb]
            rc = inp[b, fc]
            rd = inp[b, fd]
            for i in range(spatial):
                ma += ra[i]
                mb += rb[i]
                mc += rc[i]
                md += rd[i]
        ma *= inv_count
        mb *= inv_count
        mc *= inv_count
        md *= inv_count
        va = F32(0.0)
        vb = F32(0.0)
        vc = F32(0.0)
        vd = F32(0.0)
        for b in range(n):
            ra = inp[b, fa]
            rb = inp[b, fb]
            rc = inp[b, fc]
            rd = inp[b, fd]
            for i in range(spatial):
                da = np.float64(ra[i] - ma)
                db = np.float64(rb[i] - mb)
                dc = np.float64(rc[i] - mc)
                dd = np.float64(rd[i] - md)
                va = F32(np.float64(va) + da * da)
                vb = F32(np.float64(vb) + db * db)
                vc = F32(np.float64(vc) + dc * dc)
                vd = F32(np.float64(vd) + dd * dd)
        stats = np.empty((2, 4), np.float32)
        stats[0, 0] = ma
        stats[0, 1] = mb
        stats[0, 2] = mc
        stats[0, 3] = md
        stats[1, 0] = va
        stats[1, 1] = vb
        stats[1, 2] = vc
        stats[1, 3] = vd
        for f in range(f0, f1):
            m = stats[0, f - f0]
            v = stats[1, f - f0] * inv_count1
            mean[f] = m
            variance[f] = v
            rolling_mean[f] = rolling_mean[f] * F32(0.99) + F32(0.01) * m
            rolling_variance[f] = rolling_variance[f] * F32(0.99) + F32(0.01) * v
            denom = math.sqrt(np.float64(v + BN_EPS)) if ab else math.sqrt(np.float64(v)) + np.float64(NORM_EPS)
            s = scales[f]
            bias = biases[f]
            for b in range(n):
                src = inp[b, f]
                row = out[b, f]
                nrow = x_norm[b, f]
                if activation == LEAKY:      # fused (the common case); any other activation: a second pass
                    for i in range(spatial):
                        xn = F32(np.float64(src[i] - m) / denom)
                        nrow[i] = xn
                        y = xn * s + bias
                        row[i] = y if y > 0 else 0.1 * np.float64(y)
                else:
                    for i in range(spatial):
                        xn = F32(np.float64(src[i] - m) / denom)
                        nrow[i] = xn
                        row[i] = xn * s + bias
                    activate_row(row, activation)


def batchnorm_backward(delta, x, x_norm, mean, variance, scales, bias_updates, scale_updates, ab=False):
    """Darknet's backward_batchnorm_layer on delta (n, c, spatial) in place: bias and scale gradients
    accumulated, then delta turned into the delta of the un-normalised input x.

    Not quite the exact gradient of the forward pass: the forward divides by sqrt(var) + 1e-6 while this
    uses sqrt(var + 1e-5), as darknet does. `ab`: the AlexeyAB fork's normalize_delta_cpu, which divides the
    delta itself by sqrt(var) + 1e-5 instead (its forward: sqrt(var + 1e-5); its mean and variance terms
    keep sqrt(var + 1e-5)).
    """
    _batchnorm_backward(delta, delta, LINEAR, x, x_norm, mean, variance, scales, bias_updates, scale_updates, ab)


def batchnorm_backward_activation(delta, y, activation, x, x_norm, mean, variance, scales, bias_updates,
                                  scale_updates, ab=False):
    """gradient_array32(y, activation, delta) then batchnorm_backward, in one pass over delta (the
    convolutional layer's backward: y (n, c, spatial) is its output, after the activation)."""
    _batchnorm_backward(delta, y, activation, x, x_norm, mean, variance, scales, bias_updates, scale_updates, ab)


@njit(cache=True, inline="always")
def gradient_row(row, y, a):
    """row *= f'(y) element by element (gradient_array32 on one row)."""
    if a == LEAKY:
        tenth = F32(0.1)
        for i in range(row.size):
            row[i] = row[i] * (ONE if y[i] > 0 else tenth)
    elif a == LOGISTIC:
        for i in range(row.size):
            row[i] = (row[i] * y[i]) * (ONE - y[i])
    elif a != LINEAR:
        for i in range(row.size):
            row[i] = row[i] * gradient32(y[i], a)


@njit(cache=True, parallel=True)
def _batchnorm_backward(delta, y, activation, x, x_norm, mean, variance, scales, bias_updates, scale_updates,
                        ab):
    n, c, spatial = delta.shape
    count = n * spatial
    inv_count = F32(F32(1.0) / F32(count))     # -Ofast: mean_delta / (spatial*batch) as a product
    for f in prange(c):
        # One pass over each image's row (which then stays in cache) for what darknet does in three passes
        # over the batch; each sum keeps its own order:
        # bias (backward_bias: a four-lane sum_array per image, then added), scale (backward_scale_cpu: one sum
        # over the batch, four lanes over each image's pixels), then delta *= scale with the sequential sums
        # of mean_delta_cpu and variance_delta_cpu (independent chains, so they can share the loop).
        acc = bias_updates[f]
        s = F32(0.0)
        sc = scales[f]
        m = mean[f]
        md = F32(0.0)
        vd = F32(0.0)
        for b in range(n):
            row = delta[b, f]
            xrow = x[b, f]
            gradient_row(row, y[b, f], activation)
            acc += sum4(row, 0, spatial, F32(0.0))
            s = dot4(row, x_norm[b, f], 0, spatial, s)
            for i in range(spatial):
                d = row[i] * sc
                row[i] = d
                md += d
                vd += d * (xrow[i] - m)
        bias_updates[f] = acc
        scale_updates[f] += s
        ve = variance[f] + BN_EPS
        root = math.sqrt(np.float64(ve))
        md = F32(np.float64(md) * (-1.0 / root))
        vd = F32(np.float64(vd) * (-0.5 * math.pow(np.float64(ve), -1.5)))
        mterm = np.float64(md * inv_count)
        if ab:
            root = math.sqrt(np.float64(variance[f])) + np.float64(BN_EPS)
        for b in range(n):
            row = delta[b, f]
            xrow = x[b, f]
            for i in range(spatial):
                row[i] = F32(np.float64(row[i]) / root + np.float64(vd) * 2.0 * np.float64(xrow[i] - m) / count
                             + mterm)


# -- layers without parameters -------------------------------------------------------------------------------
@njit(cache=True, parallel=True)
def maxpool_backward(delta, argmax, prev_delta):
    """prev_delta.flat[argmax] += delta, per image and channel (argmax: int32 flat index within one image; -1 for a
    window entirely in the padding, which has no input)."""
    n, c = delta.shape[0], delta.shape[1]
    for k in prange(n * c):
        b = k // c
        ch = k % c
        d = delta[b, ch].reshape(-1)
        idx = argmax[b, ch].reshape(-1)
        target = prev_delta[b].reshape(-1)
        for i in range(d.size):
            j = idx[i]
            if j >= 0:
                target[j] += d[i]


@njit(cache=True, parallel=True)
def upsample_backward(delta, stride, scale, prev_delta):
    """The adjoint of nearest-neighbour upsampling: each input pixel gets scale times the sum of its block."""
    n, c, h, w = prev_delta.shape
    for k in prange(n * c):
        b = k // c
        ch = k % c
        src = delta[b, ch]
        dst = prev_delta[b, ch]
        for y in range(h * stride):
            for xx in range(w * stride):
                dst[y // stride, xx // stride] += scale * src[y, xx]


@njit(cache=True, parallel=True)
def downsample_backward(delta, stride, scale, prev_delta):
    """The adjoint of the block sum (upsample with a negative stride): every pixel of a block gets scale times
    the block's delta."""
    n, c, h, w = prev_delta.shape
    for k in prange(n * c):
        b = k // c
        ch = k % c
        src = delta[b, ch]
        dst = prev_delta[b, ch]
        for y in range(src.shape[0] * stride):
            for xx in range(src.shape[1] * stride):
                dst[y, xx] += scale * src[y // stride, xx // stride]


@njit(cache=True, parallel=True)
def local_avgpool_backward(delta, size, stride_y, stride_x, pad, prev_delta):
    """The gradient of [local_avgpool]: each output's delta divided among the pixels of its window inside the
    image, as many as its forward averaged. (Neither of the fork's builds does quite this: its CPU build divides
    by size*size also where a window reaches off the edge, its GPU kernel gives each pixel the mean of the
    deltas of the outputs around it, size*size times too much for 2x2 windows at stride 2. No golden case
    has this layer in training: pydarknet follows the derivative of the forward both builds compute.)"""
    n, c, h, w = prev_delta.shape
    oh, ow = delta.shape[2], delta.shape[3]
    offset = -(pad // 2)
    for k in prange(n * c):
        b = k // c
        ch = k % c
        dst = prev_delta[b, ch]
        for i in range(oh):
            y0, y1 = max(0, offset + i * stride_y), min(h, offset + i * stride_y + size)
            for j in range(ow):
                x0, x1 = max(0, offset + j * stride_x), min(w, offset + j * stride_x + size)
                if y1 <= y0 or x1 <= x0:
                    continue
                share = delta[b, ch, i, j] / F32((y1 - y0) * (x1 - x0))
                for y in range(y0, y1):
                    for xx in range(x0, x1):
                        dst[y, xx] += share


@njit(cache=True, parallel=True)
def axpy(alpha, x, y):
    """y += alpha * x on flat float32 arrays (darknet's axpy_cpu)."""
    chunk = 1 << 14
    for c in prange((x.size + chunk - 1) // chunk):
        for i in range(c * chunk, min(x.size, (c + 1) * chunk)):
            y[i] += alpha * x[i]


@njit(cache=True, parallel=True)
def shortcut_backward(delta, beta, source_delta):
    """The source layer's share of a shortcut's delta: the adjoint of the strided/sampled sum in
    kernels.resample.shortcut (delta: the shortcut's (n, c, h, w), source_delta: the `from` layer's)."""
    n, c, h, w = delta.shape
    c1, h1, w1 = source_delta.shape[1], source_delta.shape[2], source_delta.shape[3]
    stride = max(w1 // w, 1)
    sample = max(w // w1, 1)
    minc, minh, minw = min(c, c1), min(h, h1), min(w, w1)
    for k in prange(n * minc):
        b = k // minc
        ch = k % minc
        for j in range(minh):
            for i in range(minw):
                source_delta[b, ch, j * stride, i * stride] += beta * delta[b, ch, j * sample, i * sample]


@njit(cache=True, parallel=True)
def avgpool_backward(delta, prev_delta):
    """Each pixel gets its channel's delta divided by h*w; darknet's -Ofast build multiplies by the float32
    reciprocal instead of dividing (as in its forward, see kernels/avgpool.py). delta: (n, c)."""
    n, c, h, w = prev_delta.shape
    inv = F32(F32(1.0) / F32(h * w))
    for k in prange(n * c):
        b = k // c
        ch = k % c
        d = delta[b, ch] * inv
        plane = prev_delta[b, ch]
        for y in range(h):
            for x in range(w):
                plane[y, x] += d




@njit(cache=True, parallel=True)
def dropout_backward(delta, rand, probability, scale, prev_delta):
    """prev_delta += delta * scale where the input was kept (rand >= probability), nothing where dropped."""
    chunk = 1 << 14
    for c in prange((delta.size + chunk - 1) // chunk):
        for i in range(c * chunk, min(delta.size, (c + 1) * chunk)):
            if not rand[i] < probability:
                prev_delta[i] += delta[i] * scale


@njit(cache=True, parallel=True)
def lrn_backward(x, size, alpha, beta, kappa, delta, prev_delta):
    """darknet's (self-declared approximate) backward_normalization_layer: each input's delta is the output's
    times norm^-beta, the norm rebuilt exactly as the forward pass builds it (kernels/normalization.py),
    ignoring how the norm depends on the input. Added to prev_delta (darknet overwrites)."""
    n, c, h, w = x.shape
    for k in prange(n * h):
        b = k // h
        y = k % h
        for xx in range(w):
            norm = F32(kappa)
            for ch in range(size // 2):
                if ch < c:
                    v = x[b, ch, y, xx]
                    norm = F32(norm + F32(alpha * F32(v * v)))
            prev_delta[b, 0, y, xx] += F32(math.pow(np.float64(norm), -np.float64(beta))) * delta[b, 0, y, xx]
            for ch in range(1, c):
                prev = ch - (size - 1) // 2 - 1
                nxt = ch + size // 2
                if prev >= 0:
                    v = x[b, prev, y, xx]
                    norm = F32(norm + F32(-alpha * F32(v * v)))
                if nxt < c:
                    v = x[b, nxt, y, xx]
                    norm = F32(norm + F32(alpha * F32(v * v)))
                prev_delta[b, ch, y, xx] += F32(math.pow(np.float64(norm), -np.float64(beta))) * delta[b, ch, y, xx]


@njit(cache=True, parallel=True)
def local_backward(col, delta, weights, weight_updates, col_delta):
    """[local] for one image: col (k, L) the input's im2col columns, delta (n, L), weights (L, n, k).
    weight_updates[j] += outer(delta[:, j], col[:, j]); col_delta[:, j] = weights[j]^T delta[:, j]
    (col_delta is then folded back onto the image by col2im)."""
    k, locations = col.shape
    n = delta.shape[0]
    for j in prange(locations):
        for f in range(n):
            d = delta[f, j]
            wu = weight_updates[j, f]
            for i in range(k):
                wu[i] += d * col[i, j]
        for i in range(k):
            s = F32(0.0)
            for f in range(n):
                s += weights[j, f, i] * delta[f, j]
            col_delta[i, j] = s


@njit(cache=True, parallel=True)
def scale_channels_backward(delta, scaled, factors, factors_delta, scaled_delta, per_pixel):
    """The fork's backward_scale_channels_layer on (n, c, spatial) arrays: each factor's delta gathers delta times
    the value it scaled, one product after the other in the fork's loop order (over the pixels of its channel,
    or with per_pixel over the channels at its pixel), added to what it holds; the scaled layer's delta gets
    delta times its factor. factors / factors_delta: (n, c, 1), or (n, 1, spatial) with per_pixel."""
    n, c, spatial = delta.shape
    factors_per_image = factors.shape[1] * factors.shape[2]
    for task in prange(n * factors_per_image):
        b = task // factors_per_image
        k = task % factors_per_image
        if per_pixel:
            acc = factors_delta[b, 0, k]
            for ch in range(c):
                acc += delta[b, ch, k] * scaled[b, ch, k]
                scaled_delta[b, ch, k] += factors[b, 0, k] * delta[b, ch, k]
            factors_delta[b, 0, k] = acc
        else:
            acc = factors_delta[b, k, 0]
            for i in range(spatial):
                acc += delta[b, k, i] * scaled[b, k, i]
                scaled_delta[b, k, i] += factors[b, k, 0] * delta[b, k, i]
            factors_delta[b, k, 0] = acc
