"""From the component planes to RGB pixels: chroma upsampling (stb_image's triangle filters, nearest otherwise)
and its fixed-point YCbCr -> RGB, CMYK and YCCK, as stbi_load with 3 channels."""
import numpy as np
from numba import njit, prange

from .tables import _F_H, _F_POFF, _F_V, _F_W2, _F_Y, _MODE_CMYK, _MODE_GREY, _MODE_RGB, _MODE_YCCK


def _fix_color(c: float) -> int:
    """stb's colour constant: computed in float32, truncated, then << 8."""
    f = np.float32(c) * np.float32(4096.0) + np.float32(0.5)
    return int(f) << 8


_CR_R = _fix_color(1.40200)
_CR_G = -_fix_color(0.71414)
_CB_G = -_fix_color(0.34414)
_CB_B = _fix_color(1.77200)




@njit(cache=True, nogil=True)
def _resample_row(near, far, w, hs, vs, out):
    """One full-resolution row of a component into out[0:].

    near/far: the nearer and the other input row (w samples used).  1x2, 2x1
    and 2x2 use stb's triangle filters (weights 3/4 and 1/4 per direction,
    rounded once per pass); any other factor replicates the nearer row's
    samples.
    """
    if hs == 1 and vs == 1:
        for i in range(w):
            out[i] = near[i]
    elif hs == 1 and vs == 2:
        for i in range(w):
            out[i] = (3 * np.int32(near[i]) + np.int32(far[i]) + 2) >> 2
    elif hs == 2 and vs == 1:
        if w == 1:
            out[0] = near[0]
            out[1] = near[0]
            return
        a = np.int64(near[0])
        out[0] = a
        out[1] = (3 * a + np.int64(near[1]) + 2) >> 2
        for i in range(1, w - 1):
            m = 3 * np.int64(near[i]) + 2
            out[2 * i] = (m + near[i - 1]) >> 2
            out[2 * i + 1] = (m + near[i + 1]) >> 2
        last = np.int64(near[w - 1])
        out[2 * w - 2] = (3 * np.int64(near[w - 2]) + last + 2) >> 2
        out[2 * w - 1] = last
    elif hs == 2 and vs == 2:
        t1 = 3 * np.int64(near[0]) + np.int64(far[0])
        if w == 1:
            out[0] = (t1 + 2) >> 2
            out[1] = (t1 + 2) >> 2
            return
        out[0] = (t1 + 2) >> 2
        for i in range(1, w):
            t0 = t1
            t1 = 3 * np.int64(near[i]) + np.int64(far[i])
            out[2 * i - 1] = (3 * t0 + t1 + 8) >> 4
            out[2 * i] = (3 * t1 + t0 + 8) >> 4
        out[2 * w - 1] = (t1 + 2) >> 2
    else:
        for i in range(w):
            v = near[i]
            for j in range(hs):
                out[i * hs + j] = v


@njit(cache=True, nogil=True)
def _blinn(x, y):
    """x * y / 255 rounded, stb's way."""
    t = x * y + 128
    return (t + (t >> 8)) >> 8


@njit(cache=True, nogil=True)
def _ycc_row(y_row, cb_row, cr_row, r_row, g_row, b_row, n):
    """YCbCr -> RGB of n samples, as stb computes it with 20 fractional bits:

        R = (Y<<20) + 2^19 + Cr'*C_R                     >> 20
        G = (Y<<20) + 2^19 + Cr'*C_GR + (Cb'*C_GB & ~0xFFFF) >> 20
        B = (Y<<20) + 2^19 + Cb'*C_B                     >> 20

    (Cb' = Cb - 128, ...), clamped to 0..255.  Y<<20 is a whole multiple of 2^20, so each channel is exactly
    Y + (chroma part >> 20), and every term fits in 32 bits: the loop is written in int32 so LLVM can
    vectorise it (numba would otherwise widen each step to int64).
    """
    half = np.int32(1 << 19)
    low16 = np.int32(-65536)
    c_r, c_gr, c_gb, c_b = np.int32(_CR_R), np.int32(_CR_G), np.int32(_CB_G), np.int32(_CB_B)
    zero, full = np.int32(0), np.int32(255)
    for i in range(n):
        y = np.int32(y_row[i])
        cb = np.int32(np.int32(cb_row[i]) - np.int32(128))
        cr = np.int32(np.int32(cr_row[i]) - np.int32(128))
        r = np.int32(y + (np.int32(np.int32(cr * c_r) + half) >> 20))
        g = np.int32(y + (np.int32(np.int32(cr * c_gr) + half + np.int32(np.int32(cb * c_gb) & low16)) >> 20))
        b = np.int32(y + (np.int32(np.int32(cb * c_b) + half) >> 20))
        r_row[i] = min(max(r, zero), full)
        g_row[i] = min(max(g, zero), full)
        b_row[i] = min(max(b, zero), full)


@njit(cache=True, nogil=True, parallel=True)
def _assemble(planes, comp, ndecode, hmax, vmax, img_x, img_y, mode, out):
    """Upsample each component row by row and convert to RGB into out.

    out is the uint8 result as planes, (3, img_y, img_x).  Per component, stb
    keeps two input rows (line0, line1) and a phase counter: an output row
    blends the nearer input row with the other one, and the rows advance
    every `vs` output rows until the component's last row.  That walk is
    replayed first, recording each output row's two input rows, so the rows
    themselves can be made in parallel.
    """
    width = img_x + 8
    hs = np.zeros(4, dtype=np.int64)
    vs = np.zeros(4, dtype=np.int64)
    wlo = np.zeros(4, dtype=np.int64)
    near_row = np.zeros((img_y, 4), dtype=np.int64)
    far_row = np.zeros((img_y, 4), dtype=np.int64)
    for k in range(ndecode):
        hs[k] = hmax // comp[k, _F_H]
        vs[k] = vmax // comp[k, _F_V]
        wlo[k] = (img_x + hs[k] - 1) // hs[k]
        ystep = vs[k] >> 1
        ypos = 0
        line0 = comp[k, _F_POFF]
        line1 = line0
        for j in range(img_y):
            if ystep >= (vs[k] >> 1):
                near_row[j, k] = line1
                far_row[j, k] = line0
            else:
                near_row[j, k] = line0
                far_row[j, k] = line1
            ystep += 1
            if ystep >= vs[k]:
                ystep = 0
                line0 = line1
                ypos += 1
                if ypos < comp[k, _F_Y]:
                    line1 += comp[k, _F_W2]
    for j in prange(img_y):
        lines = np.empty(4 * width, dtype=np.uint8)
        l0 = lines[0:width]
        l1 = lines[width:2 * width]
        l2 = lines[2 * width:3 * width]
        l3 = lines[3 * width:4 * width]
        for k in range(ndecode):
            near = near_row[j, k]
            far = far_row[j, k]
            w = wlo[k]
            _resample_row(planes[near:near + w], planes[far:far + w], w, hs[k], vs[k],
                          lines[k * width:(k + 1) * width])
        r_row, g_row, b_row = out[0, j], out[1, j], out[2, j]
        if mode == _MODE_GREY:
            for i in range(img_x):
                r_row[i] = l0[i]
            g_row[:] = r_row
            b_row[:] = r_row
        elif mode == _MODE_RGB:
            r_row[:] = l0[:img_x]
            g_row[:] = l1[:img_x]
            b_row[:] = l2[:img_x]
        elif mode == _MODE_CMYK:
            for i in range(img_x):
                kv = np.int64(l3[i])
                r_row[i] = _blinn(np.int64(l0[i]), kv)
                g_row[i] = _blinn(np.int64(l1[i]), kv)
                b_row[i] = _blinn(np.int64(l2[i]), kv)
        else:
            _ycc_row(l0, l1, l2, r_row, g_row, b_row, img_x)
            if mode == _MODE_YCCK:
                for i in range(img_x):
                    kv = np.int64(l3[i])
                    r_row[i] = _blinn(255 - np.int64(r_row[i]), kv)
                    g_row[i] = _blinn(255 - np.int64(g_row[i]), kv)
                    b_row[i] = _blinn(255 - np.int64(b_row[i]), kv)
