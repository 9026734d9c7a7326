"""The inverse DCT: stb_image's islow integer transform (12-bit constants, as stb rounds them) of every decoded
block into its component's plane; progressive coefficients are dequantised here."""
import numpy as np
from numba import njit, prange

from .tables import _F_COFF, _F_CW, _F_H2, _F_POFF, _F_TQ, _F_W2, _F_X, _F_Y


def _fix12(c: float) -> int:
    """stb's IDCT constant: float32(c) * 4096 + 0.5 truncated towards zero."""
    return int(float(np.float32(c)) * 4096 + 0.5)


# Rotation constants of the islow IDCT (module-level ints: numba compiles them
# in as constants).
_C_0_541 = _fix12(0.5411961)       # 2217
_C_M1_847 = _fix12(-1.847759065)   # -7567 (libjpeg: -7568)
_C_0_765 = _fix12(0.765366865)     # 3135
_C_1_175 = _fix12(1.175875602)     # 4816
_C_0_298 = _fix12(0.298631336)     # 1223
_C_2_053 = _fix12(2.053119869)     # 8410
_C_3_072 = _fix12(3.072711026)     # 12586
_C_1_501 = _fix12(1.501321110)     # 6149
_C_M0_899 = _fix12(-0.899976223)   # -3685 (libjpeg: -3686)
_C_M2_562 = _fix12(-2.562915447)   # -10497 (libjpeg: -10498)
_C_M1_961 = _fix12(-1.961570560)   # -8034 (libjpeg: -8035)
_C_M0_390 = _fix12(-0.390180644)   # -1597 (libjpeg: -1598)


@njit(cache=True, nogil=True)
def _clamp8(x):
    return min(max(x, 0), 255)


@njit(cache=True, nogil=True, inline="always")
def _islow_pass(s0, s1, s2, s3, s4, s5, s6, s7, bias):
    """One 8-point pass of the islow IDCT: its eight outputs, rounding term `bias` added, not yet shifted."""
    p1 = (s2 + s6) * _C_0_541
    t2 = p1 + s6 * _C_M1_847
    t3 = p1 + s2 * _C_0_765
    t0 = (s0 + s4) * 4096
    t1 = (s0 - s4) * 4096
    x0 = t0 + t3 + bias
    x3 = t0 - t3 + bias
    x1 = t1 + t2 + bias
    x2 = t1 - t2 + bias
    q3 = s7 + s3
    q4 = s5 + s1
    q1 = s7 + s1
    q2 = s5 + s3
    p5 = (q3 + q4) * _C_1_175
    q1 = p5 + q1 * _C_M0_899
    q2 = p5 + q2 * _C_M2_562
    q3 = q3 * _C_M1_961
    q4 = q4 * _C_M0_390
    o3 = s1 * _C_1_501 + q1 + q4
    o2 = s3 * _C_3_072 + q2 + q3
    o1 = s5 * _C_2_053 + q2 + q4
    o0 = s7 * _C_0_298 + q1 + q3
    return x0 + o3, x1 + o2, x2 + o1, x3 + o0, x3 - o0, x2 - o1, x1 - o2, x0 - o3


@njit(cache=True, nogil=True)
def _idct_block(blk, ws, planes, out0, w2):
    """Inverse DCT of one dequantised block (blk) into planes at out0, row stride w2; ws is scratch.

    This is the jpeg-6b "islow" algorithm with stb's 12-bit constants:
    a column pass keeping 2 extra fraction bits (+512, >> 10), then a row pass
    with rounding and the +128 level shift folded into one constant
    (+65536 + 128 << 17, >> 17) and clamping to 0..255.  The C code computes
    in int; we compute in int64 and truncate to int32 before each shift,
    which gives the same numbers even when extreme coefficients overflow.
    A column (or row) whose AC inputs are all zero skips the arithmetic: the
    result is the same as the full computation (stb shortcuts columns too).
    """
    bias = 65536 + (128 << 17)
    for i in range(8):  # columns
        s1, s2, s3, s4 = blk[i + 8], blk[i + 16], blk[i + 24], blk[i + 32]
        s5, s6, s7 = blk[i + 40], blk[i + 48], blk[i + 56]
        if (s1 | s2 | s3 | s4 | s5 | s6 | s7) == 0:
            dc = blk[i] * 4
            for r in range(8):
                ws[i + 8 * r] = dc
            continue
        y = _islow_pass(blk[i], s1, s2, s3, s4, s5, s6, s7, 512)
        for r in range(8):
            ws[i + 8 * r] = np.int32(y[r]) >> 10
    for r in range(8):  # rows
        e = 8 * r
        row = planes[out0 + r * w2:out0 + r * w2 + 8]
        s1, s2, s3, s4 = ws[e + 1], ws[e + 2], ws[e + 3], ws[e + 4]
        s5, s6, s7 = ws[e + 5], ws[e + 6], ws[e + 7]
        if (s1 | s2 | s3 | s4 | s5 | s6 | s7) == 0:
            v = _clamp8(np.int32(ws[e] * 4096 + bias) >> 17)
            for q in range(8):
                row[q] = v
            continue
        y = _islow_pass(ws[e], s1, s2, s3, s4, s5, s6, s7, bias)
        for q in range(8):
            row[q] = _clamp8(np.int32(y[q]) >> 17)


@njit(cache=True, nogil=True, parallel=True)
def _idct_all(comp, ncomp, progressive, dequant, coeffs, done, planes):
    """Inverse DCT of every decoded block into the component planes.

    Progressive files are dequantised here (with the tables in force at the
    end of the file) for every block inside the component's area; sequential
    files had their blocks dequantised while decoding, and only blocks some
    scan wrote are transformed.
    Block rows are independent and are split over the threads.
    """
    for n in range(ncomp):
        w2 = comp[n, _F_W2]
        cw = comp[n, _F_CW]
        poff = comp[n, _F_POFF]
        base = comp[n, _F_COFF] // 64
        dq = dequant[comp[n, _F_TQ]]
        if progressive:
            bw = (comp[n, _F_X] + 7) >> 3
            bh = (comp[n, _F_Y] + 7) >> 3
        else:
            bw = cw
            bh = comp[n, _F_H2] // 8
        for bj in prange(bh):
            blk = np.empty(64, dtype=np.int64)
            ws = np.empty(64, dtype=np.int64)
            for bi in range(bw):
                b = base + bi + bj * cw
                if not progressive and done[b] == 0:
                    continue
                cb = coeffs[b * 64:b * 64 + 64]
                if progressive:
                    for q in range(64):
                        # int16 multiply-and-store, wrapping like the C short
                        blk[q] = np.int16(np.int64(cb[q]) * dq[q])
                else:
                    for q in range(64):
                        blk[q] = cb[q]
                out0 = poff + bj * 8 * w2 + bi * 8
                _idct_block(blk, ws, planes, out0, w2)
