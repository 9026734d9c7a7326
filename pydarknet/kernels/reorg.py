"""Reorg: darknet's space-to-depth shuffle (blas.c reorg_cpu) and the channel/pixel transpose it calls
"flatten", on flat float32 arrays."""
from numba import njit, prange


@njit(cache=True, parallel=True)
def reorg(x, w, h, c, batch, stride, forward, out):
    """Darknet's index mapping for a c x h x w tensor (flat, `batch` of them back to back).

    Pixel (k, j, i) of the c x h x w view is paired with pixel (k % oc, j*stride + q // stride,
    i*stride + q % stride) of a (c / stride^2) x (h*stride) x (w*stride) view of the same number of
    values, where oc = c / stride^2 and q = k / oc. `forward` copies the first into the second
    (out[big] = x[small]); otherwise it gathers the second into the first (out[small] = x[big]).
    Callers make sure c is a multiple of stride^2, so the pairing is one to one.
    """
    oc = c // (stride * stride)
    for bk in prange(batch * c):
        b = bk // c
        k = bk % c
        c2 = k % oc
        q = k // oc
        for j in range(h):
            h2 = j * stride + q // stride
            for i in range(w):
                small = i + w * (j + h * (k + c * b))
                w2 = i * stride + q % stride
                big = w2 + w * stride * (h2 + h * stride * (c2 + oc * b))
                if forward:
                    out[big] = x[small]
                else:
                    out[small] = x[big]


@njit(cache=True, parallel=True)
def flatten(x, size, layers, batch, forward, out):
    """Transpose each item between `layers` planes of `size` values and `size` rows of `layers` values:
    forward turns (layers, size) into (size, layers); otherwise (size, layers) back into (layers, size)."""
    for bc in prange(batch * layers):
        b = bc // layers
        c = bc % layers
        base = b * layers * size
        for i in range(size):
            planar = base + c * size + i
            interleaved = base + i * layers + c
            if forward:
                out[interleaved] = x[planar]
            else:
                out[planar] = x[interleaved]
