"""Huffman tables (built from a DHT segment) and the entropy decoder's bit reader: refilling the 32-bit buffer,
one symbol, a magnitude's sign extension, raw bits."""
import numpy as np
from numba import njit

from .tables import _MASK32, FAST_BITS


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
