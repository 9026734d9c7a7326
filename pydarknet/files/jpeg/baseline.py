"""Baseline (sequential) JPEG: a scan codes every coefficient of its blocks at once, a DC difference then the
AC coefficients in zigzag order, which are dequantised as they are decoded."""
import numpy as np
from numba import njit

from .huffman import _HT_FASTAC, _extend, _fill, _huff
from .scan import (_U_AC, _U_COMP, _U_DC, _U_FIRST, _U_Q, _U_STEP_X, _U_STEP_Y, _interval_length, _is_restart,
                   _scan_units)
from .tables import _ERR_DC_RANGE, _ERR_HUFF, _MASK32, _NO_MARKER, _OK, _ZIGZAG, FAST_BITS


@njit(cache=True, nogil=True)
def _decode_baseline_scan(data, pos, order, scan_n, comp, mcu_x, mcu_y, restart_interval, htab, dequant, coeffs,
                          done):
    """Decode one sequential scan starting at byte `pos`: dequantised coefficients into `coeffs`, each block
    decoded marked in `done`.  Returns (status, pos, marker), marker being the marker that stopped the entropy
    decoder, or _NO_MARKER."""
    buf = 0
    bits = 0
    nomore = 0
    marker = _NO_MARKER
    dc_pred = np.zeros(4, dtype=np.int64)
    units_x, units_y, blocks = _scan_units(order, scan_n, comp, mcu_x, mcu_y)
    todo = _interval_length(restart_interval)
    for j in range(units_y):
        for i in range(units_x):
            for u in range(blocks.shape[0]):
                n = blocks[u, _U_COMP]
                td = blocks[u, _U_DC]
                ta = blocks[u, _U_AC]
                tq = blocks[u, _U_Q]
                bi = blocks[u, _U_FIRST] + i * blocks[u, _U_STEP_X] + j * blocks[u, _U_STEP_Y]
                cb = coeffs[bi * 64:bi * 64 + 64]
                # the DC difference
                if bits < 16:
                    pos, buf, bits, nomore, marker = _fill(data, pos, buf, bits, nomore, marker)
                if bits < 16:
                    pos, buf, bits, nomore, marker = _fill(data, pos, buf, bits, nomore, marker)
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
                        pos, buf, bits, nomore, marker = _fill(data, pos, buf, bits, nomore, marker)
                    diff, buf, bits = _extend(buf, bits, t)
                    dc_pred[n] += diff
                cb[0] = dc_pred[n] * dequant[tq, 0]  # int16 store wraps
                # the AC coefficients: short run/value pairs from the combined look-up, the rest symbol by symbol
                k = 1
                while True:
                    if bits < 16:
                        pos, buf, bits, nomore, marker = _fill(data, pos, buf, bits, nomore, marker)
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
                            pos, buf, bits, nomore, marker = _fill(data, pos, buf, bits, nomore, marker)
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
                                pos, buf, bits, nomore, marker = _fill(data, pos, buf, bits, nomore, marker)
                            v, buf, bits = _extend(buf, bits, s)
                            cb[z] = v * dequant[tq, z]
                    if k >= 64:
                        break
            todo -= 1
            if todo <= 0:
                if bits < 24:
                    pos, buf, bits, nomore, marker = _fill(data, pos, buf, bits, nomore, marker)
                if not _is_restart(marker):
                    return _OK, pos, marker  # the scan stops here, keeping what it decoded
                buf = 0
                bits = 0
                nomore = 0
                marker = _NO_MARKER
                dc_pred[:] = 0
                todo = _interval_length(restart_interval)
    return _OK, pos, marker
