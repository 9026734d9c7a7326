"""Moving pixels between shapes: upsample/downsample, shortcut's strided sum, reorg."""
from numba import njit, prange

from .activations import LINEAR, activate


@njit(cache=True, parallel=True)
def upsample(x, stride, scale, out):
    """Nearest-neighbour: every input pixel becomes a stride x stride block, times scale. An input row makes the
    block rows' first, which the others copy (a division per output pixel took 8x as long)."""
    n, c, h, w = x.shape
    for k in prange(n * c):
        b = k // c
        ch = k % c
        for y in range(h):
            src = x[b, ch, y]
            first = out[b, ch, y * stride]
            for i in range(w):
                v = scale * src[i]
                for d in range(stride):
                    first[i * stride + d] = v
            for dy in range(1, stride):
                out[b, ch, y * stride + dy, :] = first


@njit(cache=True, parallel=True)
def downsample(x, stride, scale, out):
    """The reverse (darknet's negative stride): each output pixel sums its stride x stride block, times scale."""
    n, c, oh, ow = out.shape
    for k in prange(n * c):
        b = k // c
        ch = k % c
        for y in range(oh):
            for xx in range(ow):
                out[b, ch, y, xx] = 0.0
        for y in range(oh * stride):
            for xx in range(ow * stride):
                out[b, ch, y // stride, xx // stride] += scale * x[b, ch, y, xx]


@njit(cache=True, parallel=True)
def shortcut(x, add, alpha, beta, activation, out):
    """out = act(alpha*x + beta*add) where the shapes overlap, act(x) elsewhere; `add` may be a multiple
    or a fraction of x's size (darknet samples or strides over it). `activation`: any element-wise one
    (the fork's swish and mish too: Numba's cache keys on this file, so it must change when activate does)."""
    n, c, h, w = x.shape
    c1, h1, w1 = add.shape[1], add.shape[2], add.shape[3]
    stride = max(w1 // w, 1)
    sample = max(w // w1, 1)
    minc, minh, minw = min(c, c1), min(h, h1), min(w, w1)
    same = (c1, h1, w1) == (c, h, w)
    for k in prange(n * c):
        b = k // c
        ch = k % c
        if same:   # the usual residual: darknet's arithmetic in one pass whose rows vectorise
            for y in range(h):
                o, a, v = out[b, ch, y], add[b, ch, y], x[b, ch, y]
                for xx in range(w):
                    o[xx] = alpha * v[xx] + beta * a[xx]
                if activation != LINEAR:
                    for xx in range(w):
                        o[xx] = activate(o[xx], activation)
            continue
        for y in range(h):
            for xx in range(w):
                out[b, ch, y, xx] = x[b, ch, y, xx]
        if ch < minc:
            for j in range(minh):
                for i in range(minw):
                    yo = j * sample
                    xo = i * sample
                    out[b, ch, yo, xo] = alpha * out[b, ch, yo, xo] + beta * add[b, ch, j * stride, i * stride]
        for y in range(h):
            for xx in range(w):
                out[b, ch, y, xx] = activate(out[b, ch, y, xx], activation)
