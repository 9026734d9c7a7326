"""A JPEG decoder that reproduces stb_image's pixels bit for bit.

Darknet reads images with stb_image (``stbi_load(path, &w, &h, &c, 3)``).  Other
decoders (libjpeg-turbo inside OpenCV, PIL) use different IDCT rounding,
different chroma upsampling and a different YCbCr->RGB approximation, so their
pixels differ from stb's by a few grey levels here and there -- enough to move
darknet's detections.  This module decodes the way stb_image v2.19 (the copy in
pjreddie's darknet) does -- its plain C kernels, which its SSE2 kernels match
bit for bit:

* Huffman decoding with a 32-bit left-aligned bit buffer that is refilled a byte
  at a time; once a marker has been met the buffer is filled with zero bits, so
  an entropy segment that ends early decodes as if padded with zeros.
* The jpeg-6b style "islow" integer IDCT with 12-bit constants.  stb forms its
  constants as ``(int)(c * 4096 + 0.5)``, which truncates towards zero, so the
  negative constants are one smaller in magnitude than libjpeg's.  The column
  pass keeps two extra bits (``>> 10``), the row pass removes the rest
  (``>> 17``) with +128 level shift folded into the rounding term.
* Chroma upsampling: 2x vertical, 2x horizontal and 2x2 "triangle" filters
  (3/4 near + 1/4 far), nearest neighbour for every other factor.
* YCbCr->RGB in fixed point with 20 fractional bits where the Cb contribution
  to green has its low 16 bits cleared.
* Adobe APP14 transform flag / component ids 'R','G','B' select plain RGB;
  4-component files are CMYK (transform 0), YCCK (transform 2) or YCbCr with the
  fourth channel ignored.  EXIF orientation is ignored, like stb.

Where stb's behaviour on a corrupt file is well defined we do the same (zero
padding after an entropy segment cut short by a marker, a scan that stops at a
non-restart marker, failure whenever no EOI marker is reached -- so every
truncated file fails).  Where stb would read uninitialised memory (samples of
blocks no scan wrote) we use zeros; where stb's behaviour is undefined
(undefined tables, out-of-range Huffman symbols, an invalid code in a
progressive DC scan, which stb does not check) or where it would hang (see
``_Decoder.at_eof``) we raise :class:`JPEGError`.

Sequential scans keep their dequantised coefficients and every block is
transformed once after the last scan; that gives the same pixels as stb's
transform-while-decoding, also when scans overlap or stop early.

Files stb cannot decode (arithmetic coding, 12-bit samples, lossless,
hierarchical) raise :class:`JPEGError` with a message starting with
``"unsupported JPEG feature:"`` and ``unsupported=True`` so callers can fall
back to another decoder.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["JPEGError", "decode_jpeg", "is_jpeg"]


class JPEGError(ValueError):
    """A JPEG file that cannot be decoded.

    ``unsupported`` is True when the file looks valid but uses a coding
    process stb_image does not implement (the caller may try another decoder).
    """

    def __init__(self, message: str, unsupported: bool = False):
        super().__init__(message)
        self.unsupported = unsupported


# ---------------------------------------------------------------------------
# Tables and constants
# ---------------------------------------------------------------------------

FAST_BITS = 9
_MASK32 = 0xFFFFFFFF
_NO_MARKER = 0xFF  # "no pending marker" (0xFF never is a marker code)

# Zigzag position -> row-major index.  Entries past 63 are there so that a
# corrupt run length that overshoots the block lands on coefficient 63 instead
# of outside the array.
_ZIGZAG = np.array(
    [0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5,
     12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
     35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
     58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63]
    + [63] * 16,
    dtype=np.int64,
)


def _fix12(c: float) -> int:
    """stb's IDCT constant: float32(c) * 4096 + 0.5 truncated towards zero."""
    return int(float(np.float32(c)) * 4096 + 0.5)


def _fix_color(c: float) -> int:
    """stb's colour constant: computed in float32, truncated, then << 8."""
    f = np.float32(c) * np.float32(4096.0) + np.float32(0.5)
    return int(f) << 8


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

_CR_R = _fix_color(1.40200)
_CR_G = -_fix_color(0.71414)
_CB_G = -_fix_color(0.34414)
_CB_B = _fix_color(1.77200)

# Status codes returned by the numba kernels.
_OK = 0
_ERR_HUFF = 1
_ERR_DC_RANGE = 2
_ERR_MERGE = 3
_ERR_REFINE = 4

_KERNEL_ERRORS = {
    _ERR_HUFF: "bad Huffman code",
    _ERR_DC_RANGE: "DC difference category out of range",
    _ERR_MERGE: "progressive scan mixes DC and AC coefficients",
    _ERR_REFINE: "bad Huffman code in AC refinement scan",
}

# Component table columns (int64 array of shape (4, _NF)).
_F_H, _F_V, _F_X, _F_Y, _F_W2, _F_H2, _F_HD, _F_HA, _F_TQ, _F_POFF, _F_COFF, _F_CW = range(12)
_NF = 12

# Output colour modes.
_MODE_YCC, _MODE_RGB, _MODE_GREY, _MODE_CMYK, _MODE_YCCK = range(5)


# ---------------------------------------------------------------------------
# Huffman tables.  All eight tables (DC 0-3, AC 0-3) live in one int32 array
# `htab` of shape (8, _HT_LEN), one row per table, laid out as below, so that
# the numba kernels take a single array instead of a dozen.
# ---------------------------------------------------------------------------

_HT_FAST = 0                               # 9-bit look-up: symbol index, 255 = longer code
_HT_SIZE = _HT_FAST + (1 << FAST_BITS)     # code length of each symbol index (257)
_HT_VALUES = _HT_SIZE + 257                # symbol values (256)
_HT_MAXCODE = _HT_VALUES + 256             # one past last code of each length, <<(16-len) (18)
_HT_DELTA = _HT_MAXCODE + 18               # symbol index - code, per length (17)
_HT_FASTAC = _HT_DELTA + 17                # AC tables: combined run/size/value look-up (512)
_HT_LEN = _HT_FASTAC + (1 << FAST_BITS)


@njit(cache=True, nogil=True)
def _build_huffman(counts, values, ht):
    """Fill row `ht` of the table array from 16 code-length counts and values.

    Canonical code assignment (T.81 Annex C), then the tables the decoder
    uses: `maxcode` and `delta` for codes longer than FAST_BITS, the FAST_BITS
    look-up for the short ones and, for AC tables, the combined look-up that
    yields run, value and total length of short code+magnitude pairs.
    Returns the number of symbols, or -1 if the counts over-subscribe a length.
    """
    code = np.zeros(257, dtype=np.int64)
    k = 0
    for i in range(16):
        for _ in range(counts[i]):
            ht[_HT_SIZE + k] = i + 1
            k += 1
    ht[_HT_SIZE + k] = 0
    c = 0
    k = 0
    for j in range(1, 17):
        ht[_HT_DELTA + j] = k - c
        if ht[_HT_SIZE + k] == j:
            while ht[_HT_SIZE + k] == j:
                code[k] = c
                c += 1
                k += 1
            if c - 1 >= (1 << j):
                return -1
        ht[_HT_MAXCODE + j] = c << (16 - j)
        c <<= 1
    ht[_HT_MAXCODE + 17] = 0x7FFFFFFF  # above any 16-bit window: ends the search
    for i in range(1 << FAST_BITS):
        ht[_HT_FAST + i] = 255
    for i in range(k):
        s = ht[_HT_SIZE + i]
        if s <= FAST_BITS:
            first = code[i] << (FAST_BITS - s)
            for j in range(1 << (FAST_BITS - s)):
                ht[_HT_FAST + first + j] = i
    for i in range(values.shape[0]):
        ht[_HT_VALUES + i] = values[i]
    # combined AC look-up: value * 256 + run * 16 + code length + magnitude
    # length, for entries whose code and magnitude bits fit in FAST_BITS and
    # whose value fits in -128..127; 0 otherwise
    full = (1 << FAST_BITS) - 1
    for i in range(1 << FAST_BITS):
        f = ht[_HT_FAST + i]
        ht[_HT_FASTAC + i] = 0
        if f < 255:
            rs = ht[_HT_VALUES + f]
            run = (rs >> 4) & 15
            magbits = rs & 15
            ln = ht[_HT_SIZE + f]
            if magbits != 0 and ln + magbits <= FAST_BITS:
                v = ((i << ln) & full) >> (FAST_BITS - magbits)
                if v < (1 << (magbits - 1)):
                    v += 1 - (1 << magbits)
                if -128 <= v <= 127:
                    ht[_HT_FASTAC + i] = v * 256 + run * 16 + (ln + magbits)
    return k


# ---------------------------------------------------------------------------
# Entropy decoding (numba).  The bit reader is a 32-bit buffer `buf` whose
# next bit is bit 31, `bits` valid bits in it, the byte position `pos`, a
# flag `nomore` set once a marker has been met and that `marker`.
# ---------------------------------------------------------------------------

@njit(cache=True, nogil=True)
def _fill(data, pos, buf, bits, nomore, marker):
    """Append bytes to the bit buffer until it holds more than 24 bits.

    0xFF 0x00 is a literal 0xFF; 0xFF, optional 0xFF fill bytes and a non-zero
    code is a marker: the fill stops there (possibly leaving fewer bits than
    asked for) and from then on zero bytes are appended.  Past the end of the
    file, bytes read as zero.
    """
    n = data.shape[0]
    while True:
        b = 0
        if nomore == 0:
            if pos < n:
                b = np.int64(data[pos])
                pos += 1
            if b == 0xFF:
                c = 0
                if pos < n:
                    c = np.int64(data[pos])
                    pos += 1
                while c == 0xFF:
                    c = 0
                    if pos < n:
                        c = np.int64(data[pos])
                        pos += 1
                if c != 0:
                    return pos, buf, bits, 1, c
        buf = (buf | (b << (24 - bits))) & _MASK32
        bits += 8
        if bits > 24:
            return pos, buf, bits, nomore, marker


@njit(cache=True, nogil=True)
def _huff(htab, t, buf, bits):
    """Decode one symbol of table t from the buffer (already refilled).

    Returns (symbol or -1 for an invalid code, buf, bits).  A code longer
    than the bits actually available is invalid, as in stb.
    """
    c = (buf >> (32 - FAST_BITS)) & ((1 << FAST_BITS) - 1)
    k = np.int64(htab[t, _HT_FAST + c])
    if k < 255:
        s = np.int64(htab[t, _HT_SIZE + k])
        if s > bits:
            return -1, buf, bits
        return np.int64(htab[t, _HT_VALUES + k]), (buf << s) & _MASK32, bits - s
    top = buf >> 16
    k = FAST_BITS + 1
    while top >= htab[t, _HT_MAXCODE + k]:
        k += 1
    if k == 17:
        return -1, buf, bits - 16
    if k > bits:
        return -1, buf, bits
    c = ((buf >> (32 - k)) & ((1 << k) - 1)) + htab[t, _HT_DELTA + k]
    return np.int64(htab[t, _HT_VALUES + c]), (buf << k) & _MASK32, bits - k


@njit(cache=True, nogil=True)
def _extend(buf, bits, n):
    """Take n (1..15) magnitude bits and sign-extend them (T.81 EXTEND)."""
    v = buf >> (32 - n)
    if (buf & 0x80000000) == 0:
        v += 1 - (1 << n)
    return v, (buf << n) & _MASK32, bits - n


@njit(cache=True, nogil=True)
def _take(buf, bits, n):
    """Take n (1..15) raw bits."""
    return buf >> (32 - n), (buf << n) & _MASK32, bits - n


@njit(cache=True, nogil=True)
def _decode_scan(data, pos, progressive, order, scan_n, comp, mcu_x, mcu_y, restart_interval,
                 spec_start, spec_end, succ_high, succ_low, htab, dequant, coeffs, done):
    """Decode one scan starting at byte `pos` into `coeffs`.

    Sequential scans store dequantised coefficients and mark their blocks in
    `done`; progressive scans accumulate quantised coefficients.  Returns
    (status, pos, marker), marker being the marker that stopped the entropy
    decoder, or _NO_MARKER.
    """
    buf = 0
    bits = 0
    nomore = 0
    marker = _NO_MARKER
    eob_run = 0
    dc_pred = np.zeros(4, dtype=np.int64)
    todo = restart_interval if restart_interval != 0 else 0x7FFFFFFF

    if scan_n == 1:
        n0 = order[0]
        units_x = (comp[n0, _F_X] + 7) >> 3
        units_y = (comp[n0, _F_Y] + 7) >> 3
    else:
        units_x = mcu_x
        units_y = mcu_y
    refine_bit = np.int64(1) << succ_low

    for j in range(units_y):
        for i in range(units_x):
            for kk in range(scan_n):
                n = order[kk]
                if scan_n == 1:
                    nv = 1
                    nh = 1
                else:
                    nv = comp[n, _F_V]
                    nh = comp[n, _F_H]
                td = comp[n, _F_HD]
                ta = comp[n, _F_HA] + 4
                tq = comp[n, _F_TQ]
                for y in range(nv):
                    for x in range(nh):
                        if scan_n == 1:
                            bx = i
                            by = j
                        else:
                            bx = i * nh + x
                            by = j * nv + y
                        bi = comp[n, _F_COFF] // 64 + bx + by * comp[n, _F_CW]
                        cb = coeffs[bi * 64:bi * 64 + 64]

                        if not progressive:
                            # ---- sequential block: DC difference, then ACs
                            if bits < 16:
                                pos, buf, bits, nomore, marker = _fill(data, pos, buf, bits,
                                                                       nomore, marker)
                            if bits < 16:
                                pos, buf, bits, nomore, marker = _fill(data, pos, buf, bits,
                                                                       nomore, marker)
                            t, buf, bits = _huff(htab, td, buf, bits)
                            if t < 0:
                                return _ERR_HUFF, pos, marker
                            if t > 15:
                                return _ERR_DC_RANGE, pos, marker
                            for q in range(64):
                                cb[q] = 0
                            done[bi] = 1
                            if t != 0:
                                if bits < t:
                                    pos, buf, bits, nomore, marker = _fill(data, pos, buf, bits,
                                                                           nomore, marker)
                                diff, buf, bits = _extend(buf, bits, t)
                                dc_pred[n] += diff
                            cb[0] = dc_pred[n] * dequant[tq, 0]  # int16 store wraps
                            k = 1
                            while True:
                                if bits < 16:
                                    pos, buf, bits, nomore, marker = _fill(data, pos, buf, bits,
                                                                           nomore, marker)
                                c = (buf >> (32 - FAST_BITS)) & ((1 << FAST_BITS) - 1)
                                r = np.int64(htab[ta, _HT_FASTAC + c])
                                if r != 0:
                                    k += (r >> 4) & 15
                                    s = r & 15
                                    buf = (buf << s) & _MASK32
                                    bits -= s
                                    z = _ZIGZAG[k]
                                    k += 1
                                    cb[z] = (r >> 8) * dequant[tq, z]
                                else:
                                    if bits < 16:
                                        pos, buf, bits, nomore, marker = _fill(
                                            data, pos, buf, bits, nomore, marker)
                                    rs, buf, bits = _huff(htab, ta, buf, bits)
                                    if rs < 0:
                                        return _ERR_HUFF, pos, marker
                                    s = rs & 15
                                    if s == 0:
                                        if rs != 0xF0:
                                            break  # end of block
                                        k += 16
                                    else:
                                        k += rs >> 4
                                        z = _ZIGZAG[k]
                                        k += 1
                                        if bits < s:
                                            pos, buf, bits, nomore, marker = _fill(
                                                data, pos, buf, bits, nomore, marker)
                                        v, buf, bits = _extend(buf, bits, s)
                                        cb[z] = v * dequant[tq, z]
                                if k >= 64:
                                    break

                        elif scan_n == 1 and spec_start != 0:
                            # ---- progressive AC band of one block
                            if succ_high == 0:
                                if eob_run != 0:
                                    eob_run -= 1
                                    continue
                                k = spec_start
                                while True:
                                    if bits < 16:
                                        pos, buf, bits, nomore, marker = _fill(
                                            data, pos, buf, bits, nomore, marker)
                                    c = (buf >> (32 - FAST_BITS)) & ((1 << FAST_BITS) - 1)
                                    r = np.int64(htab[ta, _HT_FASTAC + c])
                                    if r != 0:
                                        k += (r >> 4) & 15
                                        s = r & 15
                                        buf = (buf << s) & _MASK32
                                        bits -= s
                                        z = _ZIGZAG[k]
                                        k += 1
                                        cb[z] = (r >> 8) << succ_low
                                    else:
                                        if bits < 16:
                                            pos, buf, bits, nomore, marker = _fill(
                                                data, pos, buf, bits, nomore, marker)
                                        rs, buf, bits = _huff(htab, ta, buf, bits)
                                        if rs < 0:
                                            return _ERR_HUFF, pos, marker
                                        s = rs & 15
                                        r = rs >> 4
                                        if s == 0:
                                            if r < 15:
                                                eob_run = 1 << r
                                                if r != 0:
                                                    if bits < r:
                                                        pos, buf, bits, nomore, marker = _fill(
                                                            data, pos, buf, bits, nomore, marker)
                                                    v, buf, bits = _take(buf, bits, r)
                                                    eob_run += v
                                                eob_run -= 1
                                                break
                                            k += 16
                                        else:
                                            k += r
                                            z = _ZIGZAG[k]
                                            k += 1
                                            if bits < s:
                                                pos, buf, bits, nomore, marker = _fill(
                                                    data, pos, buf, bits, nomore, marker)
                                            v, buf, bits = _extend(buf, bits, s)
                                            cb[z] = v << succ_low
                                    if k > spec_end:
                                        break
                            else:
                                # refinement: one correction bit for each
                                # already non-zero coefficient, new +-1<<Al
                                # coefficients placed after runs of zeros
                                if eob_run != 0:
                                    eob_run -= 1
                                    r = 64
                                    newval = 0
                                    k = spec_start
                                else:
                                    k = spec_start
                                    r = -1
                                while True:
                                    if r != 64:
                                        if bits < 16:
                                            pos, buf, bits, nomore, marker = _fill(
                                                data, pos, buf, bits, nomore, marker)
                                        rs, buf, bits = _huff(htab, ta, buf, bits)
                                        if rs < 0:
                                            return _ERR_HUFF, pos, marker
                                        s = rs & 15
                                        r = rs >> 4
                                        newval = 0
                                        if s == 0:
                                            if r < 15:
                                                eob_run = (1 << r) - 1
                                                if r != 0:
                                                    if bits < r:
                                                        pos, buf, bits, nomore, marker = _fill(
                                                            data, pos, buf, bits, nomore, marker)
                                                    v, buf, bits = _take(buf, bits, r)
                                                    eob_run += v
                                                r = 64
                                            # r == 15: sixteen zero-history
                                            # coefficients are skipped by
                                            # "placing" 0 on the 16th
                                        else:
                                            if s != 1:
                                                return _ERR_REFINE, pos, marker
                                            if bits < 1:
                                                pos, buf, bits, nomore, marker = _fill(
                                                    data, pos, buf, bits, nomore, marker)
                                            sb = buf & 0x80000000
                                            buf = (buf << 1) & _MASK32
                                            bits -= 1
                                            newval = refine_bit if sb != 0 else -refine_bit
                                    while k <= spec_end:
                                        idx = _ZIGZAG[k]
                                        k += 1
                                        p = np.int64(cb[idx])
                                        if p != 0:
                                            if bits < 1:
                                                pos, buf, bits, nomore, marker = _fill(
                                                    data, pos, buf, bits, nomore, marker)
                                            sb = buf & 0x80000000
                                            buf = (buf << 1) & _MASK32
                                            bits -= 1
                                            if sb != 0 and (p & refine_bit) == 0:
                                                if p > 0:
                                                    cb[idx] = p + refine_bit
                                                else:
                                                    cb[idx] = p - refine_bit
                                        else:
                                            if r == 0:
                                                cb[idx] = newval
                                                break
                                            r -= 1
                                    if k > spec_end:
                                        break

                        else:
                            # ---- progressive DC: first scan or refinement bit
                            if spec_end != 0:
                                return _ERR_MERGE, pos, marker
                            if bits < 16:
                                pos, buf, bits, nomore, marker = _fill(data, pos, buf, bits,
                                                                       nomore, marker)
                            if succ_high == 0:
                                for q in range(64):
                                    cb[q] = 0
                                if bits < 16:
                                    pos, buf, bits, nomore, marker = _fill(data, pos, buf, bits,
                                                                           nomore, marker)
                                t, buf, bits = _huff(htab, td, buf, bits)
                                # stb does not check t here; an invalid code or
                                # a category above 15 would make it read past
                                # its tables, so we stop instead.
                                if t < 0:
                                    return _ERR_HUFF, pos, marker
                                if t > 15:
                                    return _ERR_DC_RANGE, pos, marker
                                if t != 0:
                                    if bits < t:
                                        pos, buf, bits, nomore, marker = _fill(
                                            data, pos, buf, bits, nomore, marker)
                                    diff, buf, bits = _extend(buf, bits, t)
                                    dc_pred[n] += diff
                                cb[0] = dc_pred[n] << succ_low
                            else:
                                if bits < 1:
                                    pos, buf, bits, nomore, marker = _fill(data, pos, buf, bits,
                                                                           nomore, marker)
                                sb = buf & 0x80000000
                                buf = (buf << 1) & _MASK32
                                bits -= 1
                                if sb != 0:
                                    cb[0] = np.int64(cb[0]) + refine_bit

            # one MCU (or one block of a non-interleaved scan) done
            todo -= 1
            if todo <= 0:
                if bits < 24:
                    pos, buf, bits, nomore, marker = _fill(data, pos, buf, bits, nomore, marker)
                if not (0xD0 <= marker <= 0xD7):
                    # not a restart marker: the scan stops here, keeping what
                    # was decoded so far
                    return _OK, pos, marker
                buf = 0
                bits = 0
                nomore = 0
                marker = _NO_MARKER
                eob_run = 0
                for q in range(4):
                    dc_pred[q] = 0
                todo = restart_interval if restart_interval != 0 else 0x7FFFFFFF
    return _OK, pos, marker


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


# ---------------------------------------------------------------------------
# Upsampling and colour conversion (numba)
# ---------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------
# Marker parsing (Python)
# ---------------------------------------------------------------------------

_SOF_NAMES = {
    0xC3: "lossless (SOF3)",
    0xC5: "hierarchical differential sequential (SOF5)",
    0xC6: "hierarchical differential progressive (SOF6)",
    0xC7: "hierarchical differential lossless (SOF7)",
    0xC9: "arithmetic coding (SOF9)",
    0xCA: "arithmetic coding, progressive (SOF10)",
    0xCB: "arithmetic coding, lossless (SOF11)",
    0xCD: "arithmetic coding, differential sequential (SOF13)",
    0xCE: "arithmetic coding, differential progressive (SOF14)",
    0xCF: "arithmetic coding, differential lossless (SOF15)",
    0xCC: "arithmetic coding conditioning table (DAC)",
    0xDE: "hierarchical coding (DHP)",
    0xDF: "hierarchical coding (EXP)",
}


class _Decoder:
    """Marker-level state, mirroring the order in which stb reads the file."""

    def __init__(self, data: bytes, name: str):
        self.raw = data
        self.arr = np.frombuffer(data, dtype=np.uint8)
        self.n = len(data)
        self.pos = 0
        self.name = name
        self.marker = _NO_MARKER
        self.restart_interval = 0
        self.jfif = False
        self.app14 = -1
        self.progressive = False
        self.htab = np.zeros((8, _HT_LEN), dtype=np.int32)
        self.hdefined = [False] * 8
        self.dequant = np.zeros((4, 64), dtype=np.int64)
        self.qdefined = [False] * 4

    # -- errors -----------------------------------------------------------
    def corrupt(self, why: str) -> JPEGError:
        return JPEGError(f"{self.name}: corrupt JPEG: {why}")

    def unsupported(self, why: str) -> JPEGError:
        return JPEGError(f"{self.name}: unsupported JPEG feature: {why}", unsupported=True)

    # -- byte access (reads past the end give 0, like stb) ------------------
    def get8(self) -> int:
        if self.pos < self.n:
            b = self.raw[self.pos]
            self.pos += 1
            return b
        return 0

    def get16(self) -> int:
        hi = self.get8()
        return (hi << 8) | self.get8()

    def at_eof(self) -> bool:
        # stbi_load_from_memory's test.  (stbi_load on a FILE* relies on
        # feof(), which the fseek of a segment skip past the end clears: a
        # file whose last segment claims more bytes than remain then sends
        # stb scanning for a marker forever.  We fail instead.)
        return self.pos >= self.n

    def get_marker(self) -> int:
        """A pending marker from the entropy decoder, else 0xFF xx at pos.

        Returns _NO_MARKER (having consumed one byte) when pos is not 0xFF.
        """
        if self.marker != _NO_MARKER:
            m = self.marker
            self.marker = _NO_MARKER
            return m
        x = self.get8()
        if x != 0xFF:
            return _NO_MARKER
        while x == 0xFF:
            x = self.get8()
        return x

    def skip_to_ff(self) -> None:
        """Consume bytes until pos points at 0xFF (or the end of the file)."""
        p = self.raw.find(b"\xff", self.pos)
        self.pos = self.n if p < 0 else p

    # -- segments ------------------------------------------------------------
    def process_marker(self, m: int) -> None:
        if m == _NO_MARKER:
            raise self.corrupt("expected a marker")
        if m == 0xDD:  # DRI
            if self.get16() != 4:
                raise self.corrupt("bad DRI length")
            self.restart_interval = self.get16()
            return
        if m == 0xDB:  # DQT
            length = self.get16() - 2
            while length > 0:
                q = self.get8()
                p, t = q >> 4, q & 15
                if p not in (0, 1):
                    raise self.corrupt("bad DQT precision")
                if t > 3:
                    raise self.corrupt("bad DQT table id")
                table = self.dequant[t]
                for i in range(64):
                    table[_ZIGZAG[i]] = self.get16() if p else self.get8()
                self.qdefined[t] = True
                length -= 129 if p else 65
            if length != 0:
                raise self.corrupt("bad DQT length")
            return
        if m == 0xC4:  # DHT
            length = self.get16() - 2
            while length > 0:
                q = self.get8()
                tc, th = q >> 4, q & 15
                if tc > 1 or th > 3:
                    raise self.corrupt("bad DHT header")
                counts = np.array([self.get8() for _ in range(16)], dtype=np.int64)
                total = int(counts.sum())
                length -= 17
                if total > 256:
                    raise self.corrupt("Huffman table with more than 256 symbols")
                t = th + 4 * tc
                end = self.pos + total
                values = np.zeros(total, dtype=np.int64)  # zeros past the end of the file
                got = np.frombuffer(self.raw[self.pos:end], dtype=np.uint8)
                values[:len(got)] = got
                self.pos = end
                if _build_huffman(counts, values, self.htab[t]) < 0:
                    raise self.corrupt("bad Huffman code lengths")
                self.hdefined[t] = True
                length -= total
            if length != 0:
                raise self.corrupt("bad DHT length")
            return
        if 0xE0 <= m <= 0xEF or m == 0xFE:  # APPn, COM
            length = self.get16()
            if length < 2:
                raise self.corrupt("bad COM length" if m == 0xFE else "bad APP length")
            length -= 2
            start = self.pos
            seg = self.raw[start:start + length]
            if m == 0xE0 and length >= 5:
                if seg[:5] == b"JFIF\0":
                    self.jfif = True
            elif m == 0xEE and length >= 12:
                if seg[:6] == b"Adobe\0":
                    self.app14 = seg[11] if len(seg) > 11 else 0
            self.pos = start + length
            return
        if m in _SOF_NAMES:
            raise self.unsupported(_SOF_NAMES[m])
        if m in (0xC0, 0xC1, 0xC2):
            raise self.corrupt("second frame header")
        if m == 0xC8 or 0xF0 <= m <= 0xFD:
            raise self.unsupported(f"JPEG extension marker 0xFF{m:02X}")
        raise self.corrupt(f"unexpected marker 0xFF{m:02X}")

    def read_frame_header(self, m: int) -> None:
        lf = self.get16()
        if lf < 11:
            raise self.corrupt("bad SOF length")
        p = self.get8()
        if p != 8:
            raise self.unsupported(f"{p}-bit samples (only 8-bit is supported)")
        self.img_y = self.get16()
        if self.img_y == 0:
            raise self.unsupported("height defined by a DNL marker (height 0 in SOF)")
        self.img_x = self.get16()
        if self.img_x == 0:
            raise self.corrupt("width 0")
        c = self.get8()
        if c not in (1, 3, 4):
            raise self.corrupt(f"bad component count {c}")
        self.img_n = c
        if lf != 8 + 3 * c:
            raise self.corrupt("bad SOF length")
        comp = np.zeros((4, _NF), dtype=np.int64)
        self.ids = []
        rgb = 0
        for i in range(c):
            cid = self.get8()
            self.ids.append(cid)
            if c == 3 and cid == b"RGB"[i]:
                rgb += 1
            q = self.get8()
            h, v = q >> 4, q & 15
            if not 1 <= h <= 4:
                raise self.corrupt("bad horizontal sampling factor")
            if not 1 <= v <= 4:
                raise self.corrupt("bad vertical sampling factor")
            tq = self.get8()
            if tq > 3:
                raise self.corrupt("bad quantisation table id")
            comp[i, _F_H] = h
            comp[i, _F_V] = v
            comp[i, _F_TQ] = tq
        self.rgb = rgb
        if self.img_x * self.img_y * c > 0x7FFFFFFF or self.img_x * self.img_y * 3 + 1 > 0x7FFFFFFF:
            raise self.corrupt("image too large")
        self.progressive = m == 0xC2
        hmax = int(comp[:c, _F_H].max())
        vmax = int(comp[:c, _F_V].max())
        self.hmax, self.vmax = hmax, vmax
        self.mcu_x = (self.img_x + hmax * 8 - 1) // (hmax * 8)
        self.mcu_y = (self.img_y + vmax * 8 - 1) // (vmax * 8)
        poff = 0
        coff = 0
        for i in range(c):
            h, v = int(comp[i, _F_H]), int(comp[i, _F_V])
            comp[i, _F_X] = (self.img_x * h + hmax - 1) // hmax
            comp[i, _F_Y] = (self.img_y * v + vmax - 1) // vmax
            w2 = self.mcu_x * h * 8
            h2 = self.mcu_y * v * 8
            comp[i, _F_W2] = w2
            comp[i, _F_H2] = h2
            comp[i, _F_POFF] = poff
            comp[i, _F_CW] = w2 // 8
            comp[i, _F_COFF] = coff
            poff += w2 * h2
            coff += w2 * h2
        self.comp = comp
        # stb only succeeds on reaching an EOI marker, which it can only see
        # as the bytes FF D9 somewhere after the frame header (reads past the
        # end of the file give zeros).  Without them the file is bound to
        # fail: say so now instead of decoding a truncated file first.
        if self.raw.find(b"\xff\xd9", self.pos) < 0:
            raise self.corrupt("truncated file (no EOI marker after the frame header)")
        try:
            # Samples of blocks no scan writes stay 0.  Slack at the end: with
            # non-integer sampling ratios stb reads rows longer than the
            # component's stride.
            self.planes = np.zeros(poff + 4 * self.img_x + 64, dtype=np.uint8)
            self.coeffs = np.zeros(coff, dtype=np.int16)
            self.done = np.zeros(coff // 64, dtype=np.uint8)
        except MemoryError:
            raise self.corrupt("image too large for memory") from None

    def read_scan_header(self) -> tuple:
        ls = self.get16()
        scan_n = self.get8()
        if scan_n < 1 or scan_n > 4 or scan_n > self.img_n:
            raise self.corrupt("bad SOS component count")
        if ls != 6 + 2 * scan_n:
            raise self.corrupt("bad SOS length")
        order = np.zeros(4, dtype=np.int64)
        for i in range(scan_n):
            cid = self.get8()
            q = self.get8()
            if cid not in self.ids:
                raise self.corrupt("SOS names an unknown component")
            which = self.ids.index(cid)
            if q >> 4 > 3:
                raise self.corrupt("bad DC Huffman table id")
            if q & 15 > 3:
                raise self.corrupt("bad AC Huffman table id")
            self.comp[which, _F_HD] = q >> 4
            self.comp[which, _F_HA] = q & 15
            order[i] = which
        ss = self.get8()
        se = self.get8()
        a = self.get8()
        ah, al = a >> 4, a & 15
        if self.progressive:
            if ss > 63 or se > 63 or ss > se or ah > 13 or al > 13:
                raise self.corrupt("bad progressive scan parameters")
        else:
            if ss != 0 or ah != 0 or al != 0:
                raise self.corrupt("bad sequential scan parameters")
            se = 63
        # tables this scan will use must exist (stb would read garbage)
        for i in range(scan_n):
            n = order[i]
            dc_used = (not self.progressive) or (ss == 0 and ah == 0)
            ac_used = (not self.progressive) or ss != 0
            if dc_used and not self.hdefined[self.comp[n, _F_HD]]:
                raise self.corrupt("scan uses an undefined DC Huffman table")
            if ac_used and not self.hdefined[4 + self.comp[n, _F_HA]]:
                raise self.corrupt("scan uses an undefined AC Huffman table")
            if not self.progressive and not self.qdefined[self.comp[n, _F_TQ]]:
                raise self.corrupt("scan uses an undefined quantisation table")
        return order, scan_n, ss, se, ah, al

    # -- whole file ----------------------------------------------------------
    def decode(self) -> np.ndarray:
        if self.get_marker() != 0xD8:
            raise self.corrupt("no SOI marker")
        m = self.get_marker()
        while m not in (0xC0, 0xC1, 0xC2):
            self.process_marker(m)
            m = self.get_marker()
            while m == _NO_MARKER:
                # some files pad between segments: look for the next 0xFF
                self.skip_to_ff()
                if self.at_eof():
                    raise self.corrupt("no SOF marker")
                m = self.get_marker()
        self.read_frame_header(m)

        m = self.get_marker()
        while m != 0xD9:
            if m == 0xDA:
                order, scan_n, ss, se, ah, al = self.read_scan_header()
                status, pos, marker = _decode_scan(
                    self.arr, self.pos, self.progressive, order, scan_n, self.comp,
                    self.mcu_x, self.mcu_y, self.restart_interval, ss, se, ah, al,
                    self.htab, self.dequant, self.coeffs, self.done)
                self.pos = int(pos)
                self.marker = int(marker)
                if status != _OK:
                    raise self.corrupt(_KERNEL_ERRORS[status])
                if self.marker == _NO_MARKER:
                    # the scan ended before its data did: skip to the next 0xFF
                    # and take the byte after it as the marker
                    self.skip_to_ff()
                    if not self.at_eof():
                        self.pos += 1
                        self.marker = self.get8()
            elif m == 0xDC:  # DNL
                ld = self.get16()
                nl = self.get16()
                if ld != 4:
                    raise self.corrupt("bad DNL length")
                if nl != self.img_y:
                    raise self.corrupt("bad DNL height")
            else:
                self.process_marker(m)
            m = self.get_marker()

        if self.progressive:
            for i in range(self.img_n):
                if not self.qdefined[self.comp[i, _F_TQ]]:
                    raise self.corrupt("undefined quantisation table")
        _idct_all(self.comp, self.img_n, self.progressive, self.dequant, self.coeffs, self.done,
                  self.planes)
        return self.to_rgb()

    def to_rgb(self) -> np.ndarray:
        n = self.img_n
        is_rgb = n == 3 and (self.rgb == 3 or (self.app14 == 0 and not self.jfif))
        if n == 1:
            mode = _MODE_GREY
        elif n == 3:
            mode = _MODE_RGB if is_rgb else _MODE_YCC
        elif self.app14 == 0:
            mode = _MODE_CMYK
        elif self.app14 == 2:
            mode = _MODE_YCCK
        else:
            mode = _MODE_YCC  # YCbCr plus a fourth channel stb ignores
        try:
            out = np.empty((3, self.img_y, self.img_x), dtype=np.uint8)
        except MemoryError:
            raise self.corrupt("image too large for memory") from None
        _assemble(self.planes, self.comp, n, self.hmax, self.vmax, self.img_x, self.img_y,
                  mode, out)
        return out.transpose(1, 2, 0)


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------

def is_jpeg(data: bytes) -> bool:
    """True when data starts with a JPEG SOI marker (0xFF fill bytes allowed)."""
    i = 0
    n = len(data)
    if n < 2 or data[0] != 0xFF:
        return False
    while i < n and data[i] == 0xFF:
        i += 1
    return i < n and data[i] == 0xD8


def decode_jpeg(data: bytes, name: str = "<jpeg>") -> np.ndarray:
    """Decode a JPEG file's bytes to RGB uint8 of shape (h, w, 3), as stb_image does.

    The array is a view of (3, h, w) planes (`.transpose(2, 0, 1)` gives them back without a copy).
    Grey images are replicated to three channels (stbi_load with 3 channels).
    Raises JPEGError for files stb_image would reject (and for the few inputs
    on which stb_image's behaviour is undefined).
    """
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise TypeError(f"decode_jpeg wants bytes, not {type(data).__name__}")
    return _Decoder(data, name).decode()
