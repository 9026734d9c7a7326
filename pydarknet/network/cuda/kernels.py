"""The device kernels: Numba CUDA (cached on disk like the CPU kernels), float32 like darknet's CUDA build, one
thread per output element unless a kernel says otherwise. Launch them through Backend.launch (which sizes the
grid); under NUMBA_ENABLE_CUDASIM=1 the same kernels run in Numba's simulator, which is how CI tests them.

Activations follow darknet's activation_kernels.cu: float arithmetic (expf, .1f). Sums over a channel
(biases, batch-norm statistics) are one block per channel, its threads striding over (image, pixel) and
then halving the partial sums in shared memory: a fixed order, so the same floats on every run.
"""
import math

from numba import cuda, float32, int32

from . import simulated
from ...kernels.activations import (ELU, GELU, HARD_MISH, HARDTAN, LEAKY, LHTAN, LINEAR, LOGGY, LOGISTIC, MISH, PLSE,
                                    RAMP, RELIE, RELU, RELU6, REVLEAKY, SELU, STAIR, SWISH, TANH)

# The simulator runs every thread of a block as a Python thread: it gets small blocks (the same code paths,
# with more tiles and steps), so that the tests run in seconds.
TILE = 8 if simulated() else 16                 # the product's tile: TILE x TILE threads, each one element of C
REDUCE_THREADS = 8 if simulated() else 128      # threads of a per-channel sum (a power of two)
THREADS = 32 if simulated() else 256            # threads per block of the element-wise kernels
BN_EPS = float32(0.00001)
NORM_EPS = float32(0.000001)

# What the bias/batch-norm pass does before the activation (normalize_activate's `mode`).
BIAS, NORM_PJREDDIE, NORM_AB = 0, 1, 2
# What a per-channel sum adds up (channel_sums' `what`).
SUM, SQUARED_DEVIATION, PRODUCT, PRODUCT_DEVIATION = 0, 1, 2, 3


@cuda.jit(device=True, inline=True)
def exp_capped(x):
    """expf, its argument capped at 88 (e^88 = 1.7e38): where expf would overflow to inf (and 1/(1 + inf) give
    0) this gives 6e-39 instead -- the same to any tolerance -- and the simulator's math.exp does not raise."""
    return math.exp(min(x, float32(88.0)))


@cuda.jit(device=True, inline=True)
def logistic(x):
    return float32(1.0) / (float32(1.0) + exp_capped(-x))


@cuda.jit(device=True, inline=True)
def tanh_act(x):
    return float32(2.0) / (float32(1.0) + exp_capped(float32(-2.0) * x)) - float32(1.0)


@cuda.jit(device=True, inline=True)
def softplus(x):
    if x > float32(20.0):
        return x
    if x < float32(-20.0):
        return math.exp(x)
    return math.log(math.exp(x) + float32(1.0))


@cuda.jit(device=True)
def activate(x, a):
    """darknet's activate_kernel: every element-wise activation (the codes of kernels.activations)."""
    if a == LINEAR:
        return x
    if a == LEAKY or a == REVLEAKY:
        return x if x > 0 else float32(0.1) * x
    if a == LOGISTIC:
        return logistic(x)
    if a == RELU:
        return x if x > 0 else float32(0.0)
    if a == RELIE:
        return x if x > 0 else float32(0.01) * x
    if a == RAMP:
        return (x if x > 0 else float32(0.0)) + float32(0.1) * x
    if a == TANH:
        return tanh_act(x)
    if a == PLSE:
        if x < -4:
            return float32(0.01) * (x + float32(4.0))
        if x > 4:
            return float32(0.01) * (x - float32(4.0)) + float32(1.0)
        return float32(0.125) * x + float32(0.5)
    if a == ELU:
        return x if x >= 0 else math.exp(x) - float32(1.0)
    if a == LOGGY:
        return float32(2.0) / (float32(1.0) + exp_capped(-x)) - float32(1.0)
    if a == STAIR:
        n = float32(math.floor(x))
        half = float32(math.floor(x / float32(2.0)))
        if int32(n) % 2 == 0:
            return half
        return (x - n) + half
    if a == HARDTAN:
        return float32(-1.0) if x < -1 else (float32(1.0) if x > 1 else x)
    if a == LHTAN:
        if x < 0:
            return float32(0.001) * x
        if x > 1:
            return float32(0.001) * (x - float32(1.0)) + float32(1.0)
        return x
    if a == SELU:
        return float32(1.0507) * x if x >= 0 else float32(1.0507 * 1.6732) * (math.exp(x) - float32(1.0))
    if a == RELU6:
        return min(max(x, float32(0.0)), float32(6.0))
    if a == GELU:
        return float32(0.5) * x * (float32(1.0) + math.tanh(float32(0.797885) * x + float32(0.035677) * x * x * x))
    if a == SWISH:
        return x * logistic(x)
    if a == MISH:
        return x * tanh_act(softplus(x))
    if a == HARD_MISH:
        if x > 0:
            return x
        return x * x / float32(2.0) + x if x > -2 else float32(0.0)
    return x


@cuda.jit(device=True)
def gradient(x, y, a):
    """darknet's gradient_kernel: the activation's derivative from its output y, or from its input x for
    those that need it (swish, mish, hard_mish: the fork's gradient_array_swish/mish/hard_mish_kernel)."""
    if a == SWISH:
        return (float32(1.0) - y) * logistic(x) + y
    if a == MISH:
        sp = softplus(x)
        tsp = math.tanh(sp)
        return x * ((float32(1.0) - tsp * tsp) * (float32(1.0) - math.exp(-sp))) + tsp
    if a == HARD_MISH:
        return float32(1.0) if x > 0 else (x + float32(1.0) if x > -2 else float32(0.0))
    if a == LEAKY or a == REVLEAKY:
        return float32(1.0) if y > 0 else float32(0.1)
    if a == LOGISTIC:
        return (float32(1.0) - y) * y
    if a == RELU:
        return float32(1.0) if y > 0 else float32(0.0)
    if a == RELIE:
        return float32(1.0) if y > 0 else float32(0.01)
    if a == RAMP:
        return (float32(1.0) if y > 0 else float32(0.0)) + float32(0.1)
    if a == TANH:
        return float32(1.0) - y * y
    if a == PLSE:
        return float32(0.01) if (y < 0 or y > 1) else float32(0.125)
    if a == ELU:
        return float32(1.0) if y >= 0 else y + float32(1.0)
    if a == LOGGY:
        return float32(2.0) * (float32(1.0) - (y + float32(1.0)) / float32(2.0)) * ((y + float32(1.0)) / float32(2.0))
    if a == STAIR:
        return float32(0.0) if math.floor(y) == y else float32(1.0)
    if a == HARDTAN:
        return float32(1.0) if (y > -1 and y < 1) else float32(0.0)
    if a == LHTAN:
        return float32(1.0) if (y > 0 and y < 1) else float32(0.001)
    if a == SELU:
        return float32(1.0507) if y >= 0 else y + float32(1.0507 * 1.6732)
    if a == RELU6:
        return float32(1.0) if (y > 0 and y < 6) else float32(0.0)
    return float32(1.0)


@cuda.jit(device=True, inline=True)
def thread_element(shape):
    """This thread's element (image, row, position) of an (n, rows, spatial) array, the elements numbered row by
    row; b = -1 for the threads past its end."""
    i = cuda.grid(1)
    n, rows, spatial = shape
    if i >= n * rows * spatial:
        return -1, 0, 0
    return i // (spatial * rows), (i // spatial) % rows, i % spatial


@cuda.jit(device=True, inline=True)
def thread_pixel(shape):
    """This thread's pixel (image, channel, y, x) of an (n, c, h, w) array; b = -1 past its end."""
    n, c, h, w = shape
    b, ch, p = thread_element((n, c, h * w))
    return b, ch, p // w, p % w


# -- convolution: columns, product, bias/batch-norm/activation ---------------------------------------------------
@cuda.jit(cache=True)
def im2col(x, c0, size, stride, pad, dilation, out_w, col):
    """col (n, cg*size*size, out_h*out_w) from channels c0.. of x (n, c, h, w); taps outside the image are 0."""
    b, row, p = thread_element(col.shape)
    if b < 0:
        return
    kx = row % size
    ky = (row // size) % size
    ch = c0 + row // (size * size)
    y = (p // out_w) * stride - pad + ky * dilation
    xx = (p % out_w) * stride - pad + kx * dilation
    h, w = x.shape[2], x.shape[3]
    col[b, row, p] = x[b, ch, y, xx] if (0 <= y < h and 0 <= xx < w) else float32(0.0)


@cuda.jit(cache=True)
def col2im(col, size, stride, pad, dilation, out_w, im, c0):
    """im[:, c0:c0+cg] += the columns summed back onto the pixels they were taken from: each thread gathers
    its pixel's taps (no atomics, so a fixed order)."""
    n, k, spatial = col.shape
    cg = k // (size * size)
    b, ch, y, xx = thread_pixel((n, cg, im.shape[2], im.shape[3]))
    if b < 0:
        return
    out_h = spatial // out_w
    total = float32(0.0)
    for ky in range(size):
        oy = y + pad - ky * dilation
        if oy < 0 or oy % stride != 0 or oy // stride >= out_h:
            continue
        for kx in range(size):
            ox = xx + pad - kx * dilation
            if ox < 0 or ox % stride != 0 or ox // stride >= out_w:
                continue
            total += col[b, (ch * size + ky) * size + kx, (oy // stride) * out_w + ox // stride]
    im[b, c0 + ch, y, xx] += total


@cuda.jit(cache=True)
def gemm(trans_a, trans_b, alpha, a, b, beta, c):
    """c[z] = alpha * op(a[z]) @ op(b[z]) + beta * c[z] for every z of c (n, M, N); a or b with one matrix
    (first dimension 1) serves every z. op transposes when trans_*: a[z] is then (K, M), b[z] (N, K).
    Tiles of a and b go through shared memory; each thread sums its element over k in order."""
    ta = cuda.shared.array((TILE, TILE), float32)
    tb = cuda.shared.array((TILE, TILE), float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    col = cuda.blockIdx.x * TILE + tx
    row = cuda.blockIdx.y * TILE + ty
    z = cuda.blockIdx.z
    m, n = c.shape[1], c.shape[2]
    k = a.shape[1] if trans_a else a.shape[2]
    za = z if a.shape[0] > 1 else 0
    zb = z if b.shape[0] > 1 else 0
    total = float32(0.0)
    for k0 in range(0, k, TILE):
        ka = k0 + tx
        kb = k0 + ty
        if row < m and ka < k:
            ta[ty, tx] = a[za, ka, row] if trans_a else a[za, row, ka]
        else:
            ta[ty, tx] = float32(0.0)
        if col < n and kb < k:
            tb[ty, tx] = b[zb, col, kb] if trans_b else b[zb, kb, col]
        else:
            tb[ty, tx] = float32(0.0)
        cuda.syncthreads()
        for j in range(TILE):
            total += ta[ty, j] * tb[j, tx]
        cuda.syncthreads()
    if row < m and col < n:
        if beta == 0:
            c[z, row, col] = alpha * total
        else:
            c[z, row, col] = alpha * total + beta * c[z, row, col]


@cuda.jit(cache=True)
def normalize_activate(x, mean, variance, scales, biases, mode, activation):
    """x (n, c, spatial) in place: batch-norm (mode NORM_PJREDDIE: (x - mean)/(sqrt(var) + .000001), NORM_AB:
    /sqrt(var + .00001)), times scale, plus bias (mode BIAS: the bias alone), then the activation."""
    b, f, p = thread_element(x.shape)
    if b < 0:
        return
    v = x[b, f, p]
    if mode == NORM_PJREDDIE:
        v = (v - mean[f]) / (math.sqrt(variance[f]) + NORM_EPS) * scales[f]
    elif mode == NORM_AB:
        v = (v - mean[f]) / math.sqrt(variance[f] + BN_EPS) * scales[f]
    x[b, f, p] = activate(v + biases[f], activation)


@cuda.jit(cache=True)
def activate_kept(x, activation, kept):
    """kept = x, then x = act(x) (flat): the training forward of the activations whose gradient needs their
    input."""
    i = cuda.grid(1)
    if i < x.size:
        kept[i] = x[i]
        x[i] = activate(x[i], activation)


@cuda.jit(cache=True)
def gradient_array(x, y, activation, delta):
    """delta *= f'(x or y), element by element (flat arrays; x, the activation's input, is read only by the
    activations that need it)."""
    i = cuda.grid(1)
    if i < delta.size:
        delta[i] = delta[i] * gradient(x[i], y[i], activation)


# -- per-channel sums (one block per channel) --------------------------------------------------------------------
@cuda.jit(cache=True)
def channel_sums(a, b, center, what, scale, out):
    """out[f] += scale * the sum over images and pixels of channel f of: a (SUM), (a - center[f])^2
    (SQUARED_DEVIATION), a * b (PRODUCT), a * (b - center[f]) (PRODUCT_DEVIATION); a, b (n, c, spatial)."""
    partial = cuda.shared.array(REDUCE_THREADS, float32)
    f = cuda.blockIdx.x
    t = cuda.threadIdx.x
    n, _, spatial = a.shape
    total = float32(0.0)
    for i in range(t, n * spatial, REDUCE_THREADS):
        v = a[i // spatial, f, i % spatial]
        if what == SQUARED_DEVIATION:
            v = (v - center[f]) * (v - center[f])
        elif what == PRODUCT:
            v = v * b[i // spatial, f, i % spatial]
        elif what == PRODUCT_DEVIATION:
            v = v * (b[i // spatial, f, i % spatial] - center[f])
        total += v
    partial[t] = total
    cuda.syncthreads()
    step = REDUCE_THREADS // 2
    while step > 0:
        if t < step:
            partial[t] += partial[t + step]
        cuda.syncthreads()
        step //= 2
    if t == 0:
        out[f] += scale * partial[0]


@cuda.jit(cache=True)
def batchnorm_statistics(squares, count, mean, variance, rolling_mean, rolling_variance):
    """Each channel's variance (its squared deviations over count - 1); the rolling averages .99 old + .01 new,
    as darknet."""
    f = cuda.grid(1)
    if f >= mean.size:
        return
    variance[f] = squares[f] / float32(count - 1)
    rolling_mean[f] = float32(0.99) * rolling_mean[f] + float32(0.01) * mean[f]
    rolling_variance[f] = float32(0.99) * rolling_variance[f] + float32(0.01) * variance[f]


@cuda.jit(cache=True)
def batchnorm_train(x, mean, variance, scales, biases, x_norm, out, ab, activation):
    """Training batch-norm, element by element: x_norm = (x - mean)/sqrt(var + .00001) (pjreddie's CPU build:
    sqrt(var) + .000001, kept when not `ab` so that both engines train alike), out = act(x_norm*scale + bias)."""
    b, f, p = thread_element(x.shape)
    if b < 0:
        return
    if ab:
        v = (x[b, f, p] - mean[f]) / math.sqrt(variance[f] + BN_EPS)
    else:
        v = (x[b, f, p] - mean[f]) / (math.sqrt(variance[f]) + NORM_EPS)
    x_norm[b, f, p] = v
    out[b, f, p] = activate(v * scales[f] + biases[f], activation)


@cuda.jit(cache=True)
def scale_channels(delta, scales):
    """delta (n, c, spatial) *= scales[c]."""
    b, f, p = thread_element(delta.shape)
    if b >= 0:
        delta[b, f, p] *= scales[f]


@cuda.jit(cache=True)
def batchnorm_delta(delta, x, mean, variance, mean_delta, variance_delta, ab):
    """darknet's normalize_delta: the delta of the un-normalised input x, from the (scaled) delta and the two
    statistics' sums (mean_delta: sum of delta, variance_delta: sum of delta * (x - mean)), which this scales
    as darknet's mean_delta/variance_delta do. The fork divides the delta by sqrt(var) + .00001."""
    b, f, p = thread_element(delta.shape)
    if b < 0:
        return
    count = float32(delta.shape[0] * delta.shape[2])
    ve = variance[f] + BN_EPS
    md = mean_delta[f] * (float32(-1.0) / math.sqrt(ve))
    vd = variance_delta[f] * float32(-0.5) * math.pow(ve, float32(-1.5))
    root = math.sqrt(variance[f]) + BN_EPS if ab else math.sqrt(ve)
    delta[b, f, p] = delta[b, f, p] / root + vd * float32(2.0) * (x[b, f, p] - mean[f]) / count + md / count


# -- layers without parameters -----------------------------------------------------------------------------------
@cuda.jit(cache=True)
def maxpool(x, size, stride_y, stride_x, pad, out, argmax, keep_argmax):
    """darknet's maxpool: windows from pad//2 up and left of the stride grid, pixels outside count as -FLT_MAX;
    with keep_argmax, argmax (out's shape) gets the flat index within x[b] of each maximum (-1: none)."""
    b, ch, oy, ox = thread_pixel(out.shape)
    if b < 0:
        return
    h, w = x.shape[2], x.shape[3]
    best = float32(-3.4028234663852886e38)
    where = -1
    for ky in range(size):
        y = oy * stride_y - pad // 2 + ky
        for kx in range(size):
            xx = ox * stride_x - pad // 2 + kx
            if 0 <= y < h and 0 <= xx < w:
                v = x[b, ch, y, xx]
                if v > best:
                    best = v
                    where = (ch * h + y) * w + xx
    out[b, ch, oy, ox] = best
    if keep_argmax:
        argmax[b, ch, oy, ox] = where


@cuda.jit(cache=True)
def maxpool_backward(delta, argmax, prev):
    """prev (n, c*h*w) gets each input pixel's share: the sum of the deltas whose maximum it was. One thread
    per output (no two outputs of a stride >= size pool share an input, else the adds race: atomics)."""
    i = cuda.grid(1)
    n, per = delta.shape
    if i < n * per:
        j = argmax[i // per, i % per]
        if j >= 0:
            cuda.atomic.add(prev, (i // per, j), delta[i // per, i % per])


@cuda.jit(cache=True)
def upsample(x, stride, scale, out, backward):
    """Nearest neighbour: out (n, c, h*stride, w*stride) = scale * x; backward: x += scale * out's block sums
    (one thread per output element forward, per input element backward)."""
    if not backward:
        b, ch, y, xx = thread_pixel(out.shape)
        if b >= 0:
            out[b, ch, y, xx] = scale * x[b, ch, y // stride, xx // stride]
        return
    b, ch, y, xx = thread_pixel(x.shape)
    if b >= 0:
        total = float32(0.0)
        for dy in range(stride):
            for dx in range(stride):
                total += out[b, ch, y * stride + dy, xx * stride + dx]
        x[b, ch, y, xx] += scale * total


@cuda.jit(cache=True)
def shortcut(x, add, alpha, beta, activation, out):
    """pjreddie's shortcut: out = act(alpha*x + beta*add) where the shapes overlap (add sampled or strided
    when its size differs), act(x) elsewhere."""
    b, ch, y, xx = thread_pixel(x.shape)
    if b < 0:
        return
    c, h, w = x.shape[1], x.shape[2], x.shape[3]
    c1, h1, w1 = add.shape[1], add.shape[2], add.shape[3]
    stride = max(w1 // w, 1)
    sample = max(w // w1, 1)
    v = x[b, ch, y, xx]
    if ch < min(c, c1) and y % sample == 0 and xx % sample == 0 and y // sample < min(h, h1) \
            and xx // sample < min(w, w1):
        v = alpha * v + beta * add[b, ch, (y // sample) * stride, (xx // sample) * stride]
    out[b, ch, y, xx] = activate(v, activation)


@cuda.jit(cache=True)
def shortcut_backward(delta, beta, add_delta):
    """The source's delta += beta * delta where the shapes overlap (one thread per source element)."""
    b, ch, ys, xs = thread_pixel(add_delta.shape)
    if b < 0:
        return
    c1, h1, w1 = add_delta.shape[1], add_delta.shape[2], add_delta.shape[3]
    c, h, w = delta.shape[1], delta.shape[2], delta.shape[3]
    stride = max(w1 // w, 1)
    sample = max(w // w1, 1)
    if ch >= min(c, c1) or xs % stride != 0 or ys % stride != 0:
        return
    j, k = ys // stride, xs // stride
    if j < min(h, h1) and k < min(w, w1):
        add_delta[b, ch, ys, xs] += beta * delta[b, ch, j * sample, k * sample]


@cuda.jit(cache=True)
def copy_columns(src, src0, dst, dst0, count, accumulate):
    """dst[:, dst0:dst0+count] = (or +=) src[:, src0:src0+count], rows being images (route's parts)."""
    i = cuda.grid(1)
    n = src.shape[0]
    if i < n * count:
        b = i // count
        j = i % count
        if accumulate:
            dst[b, dst0 + j] += src[b, src0 + j]
        else:
            dst[b, dst0 + j] = src[b, src0 + j]


@cuda.jit(cache=True)
def axpy(alpha, x, y):
    """y += alpha * x (flat)."""
    i = cuda.grid(1)
    if i < y.size:
        y[i] += alpha * x[i]


@cuda.jit(cache=True)
def avgpool(x, out, backward):
    """Global average: out (n, c) = each channel of x (n, c, spatial) summed, then divided by spatial;
    backward: x += out / spatial (one thread per input element)."""
    i = cuda.grid(1)
    n, c, spatial = x.shape
    if not backward:
        if i < n * c:
            total = float32(0.0)
            for p in range(spatial):
                total += x[i // c, i % c, p]
            out[i // c, i % c] = total / float32(spatial)
        return
    if i < n * c * spatial:
        b = i // (c * spatial)
        f = (i // spatial) % c
        x[b, f, i % spatial] += out[b, f] / float32(spatial)


@cuda.jit(cache=True)
def softmax(x, size, groups, stride, temperature, out):
    """darknet's softmax over each of `groups` runs of `size` values `stride` apart in each image's flat input
    (x, out (n, inputs)): a run starts at g*size (stride 1) or at g (a spatial softmax across channels)."""
    i = cuda.grid(1)
    n = x.shape[0]
    if i >= n * groups:
        return
    b = i // groups
    g = i % groups
    start = g if stride > 1 else g * size
    largest = float32(-3.4028234663852886e38)
    for j in range(size):
        largest = max(largest, x[b, start + j * stride])
    total = float32(0.0)
    for j in range(size):
        e = math.exp((x[b, start + j * stride] - largest) / temperature)
        total += e
        out[b, start + j * stride] = e
    for j in range(size):
        out[b, start + j * stride] /= total


@cuda.jit(cache=True)
def yolo_activate(x, entries, logistic_on, scale, shift, out):
    """[yolo]'s forward on x (n, anchors*entries, spatial): the logistic on x, y, objectness and the classes
    (entries 0, 1 and 4 on; not with new_coords), then x, y times scale plus shift (scale_x_y)."""
    b, row, p = thread_element(x.shape)
    if b < 0:
        return
    entry = row % entries
    v = x[b, row, p]
    if logistic_on and entry != 2 and entry != 3:
        v = logistic(v)
    if entry < 2 and scale != 1:
        v = v * scale + shift
    out[b, row, p] = v


# -- updates -------------------------------------------------------------------------------------------------
@cuda.jit(cache=True)
def sgd(weights, updates, decay, rate, momentum):
    """darknet's SGD step on flat arrays: updates += decay * weights (decay: -decay*batch, 0 for none),
    weights += rate * updates (rate: learning_rate/batch), updates *= momentum."""
    i = cuda.grid(1)
    if i < weights.size:
        u = updates[i] + decay * weights[i]
        weights[i] += rate * u
        updates[i] = u * momentum


@cuda.jit(cache=True)
def fill(x, value):
    """x (flat) = value."""
    i = cuda.grid(1)
    if i < x.size:
        x[i] = value
