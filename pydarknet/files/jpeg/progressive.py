"""Progressive JPEG: a scan codes one part of its blocks' coefficients, of four kinds, each decoded here by its own
kernel: the DC coefficients' first scan (their high bits) and refinement scans (one more bit each), and for one
component a band of AC coefficients, first (their high bits, whole runs of blocks with nothing in the band coded
as one end-of-band run) or refined (a bit more of each coefficient already non-zero, and new coefficients of
+-1).  The coefficients stay quantised until the IDCT (idct.py) dequantises them."""
import numpy as np
from numba import njit

from .huffman import _HT_FASTAC, _extend, _fill, _huff, _take
from .scan import _U_AC, _U_COMP, _U_DC, _U_FIRST, _U_STEP_X, _U_STEP_Y, _interval_length, _is_restart, _scan_units
from .tables import _ERR_DC_RANGE, _ERR_HUFF, _ERR_REFINE, _MASK32, _NO_MARKER, _OK, _ZIGZAG, FAST_BITS


@njit(cache=True, nogil=True)
def _decode_dc_first_scan(data, pos, order, scan_n, comp, mcu_x, mcu_y, restart_interval, htab, coeffs, succ_low):
    """The first scan of the DC coefficients: each block's DC difference, << Al; the block's other coefficients
    are cleared.  Returns (status, pos, marker) as baseline.py's scan does."""
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
                bi = blocks[u, _U_FIRST] + i * blocks[u, _U_STEP_X] + j * blocks[u, _U_STEP_Y]
                cb = coeffs[bi * 64:bi * 64 + 64]
                if bits < 16:
                    pos, buf, bits, nomore, marker = _fill(data, pos, buf, bits, nomore, marker)
                for q in range(64):
                    cb[q] = 0
                if bits < 16:
                    pos, buf, bits, nomore, marker = _fill(data, pos, buf, bits, nomore, marker)
                t, buf, bits = _huff(htab, blocks[u, _U_DC], buf, bits)
                # stb does not check t here; an invalid code or a category above 15 would make it read past its
                # tables, so we stop instead.
                if t < 0:
                    return _ERR_HUFF, pos, marker
                if t > 15:
                    return _ERR_DC_RANGE, pos, marker
                if t != 0:
                    if bits < t:
                        pos, buf, bits, nomore, marker = _fill(data, pos, buf, bits, nomore, marker)
                    diff, buf, bits = _extend(buf, bits, t)
                    dc_pred[n] += diff
                cb[0] = dc_pred[n] << succ_low
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


@njit(cache=True, nogil=True)
def _decode_dc_refine_scan(data, pos, order, scan_n, comp, mcu_x, mcu_y, restart_interval, coeffs, succ_low):
    """A refinement scan of the DC coefficients: one bit a block, bit Al of its DC coefficient."""
    buf = 0
    bits = 0
    nomore = 0
    marker = _NO_MARKER
    refine_bit = np.int64(1) << succ_low
    units_x, units_y, blocks = _scan_units(order, scan_n, comp, mcu_x, mcu_y)
    todo = _interval_length(restart_interval)
    for j in range(units_y):
        for i in range(units_x):
            for u in range(blocks.shape[0]):
                bi = blocks[u, _U_FIRST] + i * blocks[u, _U_STEP_X] + j * blocks[u, _U_STEP_Y]
                if bits < 16:
                    pos, buf, bits, nomore, marker = _fill(data, pos, buf, bits, nomore, marker)
                if bits < 1:
                    pos, buf, bits, nomore, marker = _fill(data, pos, buf, bits, nomore, marker)
                sb = buf & 0x80000000
                buf = (buf << 1) & _MASK32
                bits -= 1
                if sb != 0:
                    coeffs[bi * 64] = np.int64(coeffs[bi * 64]) + refine_bit
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
                todo = _interval_length(restart_interval)
    return _OK, pos, marker


@njit(cache=True, nogil=True)
def _decode_ac_first_scan(data, pos, order, scan_n, comp, mcu_x, mcu_y, restart_interval, htab, coeffs,
                          spec_start, spec_end, succ_low):
    """The first scan of the AC band spec_start..spec_end of one component: each coefficient << Al."""
    buf = 0
    bits = 0
    nomore = 0
    marker = _NO_MARKER
    eob_run = 0
    units_x, units_y, blocks = _scan_units(order, scan_n, comp, mcu_x, mcu_y)
    ta = blocks[0, _U_AC]
    todo = _interval_length(restart_interval)
    for j in range(units_y):
        for i in range(units_x):
            bi = blocks[0, _U_FIRST] + i * blocks[0, _U_STEP_X] + j * blocks[0, _U_STEP_Y]
            cb = coeffs[bi * 64:bi * 64 + 64]
            if eob_run != 0:
                eob_run -= 1  # a block of an end-of-band run: nothing in the band
            else:
                k = spec_start
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
                        cb[z] = (r >> 8) << succ_low
                    else:
                        if bits < 16:
                            pos, buf, bits, nomore, marker = _fill(data, pos, buf, bits, nomore, marker)
                        rs, buf, bits = _huff(htab, ta, buf, bits)
                        if rs < 0:
                            return _ERR_HUFF, pos, marker
                        s = rs & 15
                        r = rs >> 4
                        if s == 0:
                            if r < 15:  # an end-of-band run of 2^r + r more bits blocks, this one included
                                eob_run = 1 << r
                                if r != 0:
                                    if bits < r:
                                        pos, buf, bits, nomore, marker = _fill(data, pos, buf, bits, nomore, marker)
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
                                pos, buf, bits, nomore, marker = _fill(data, pos, buf, bits, nomore, marker)
                            v, buf, bits = _extend(buf, bits, s)
                            cb[z] = v << succ_low
                    if k > spec_end:
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
                eob_run = 0
                todo = _interval_length(restart_interval)
    return _OK, pos, marker


@njit(cache=True, nogil=True)
def _decode_ac_refine_scan(data, pos, order, scan_n, comp, mcu_x, mcu_y, restart_interval, htab, coeffs,
                           spec_start, spec_end, succ_low):
    """A refinement scan of the AC band spec_start..spec_end of one component: a correction bit for each
    coefficient already non-zero, and new coefficients of +-1 << Al placed after runs of zero ones."""
    buf = 0
    bits = 0
    nomore = 0
    marker = _NO_MARKER
    eob_run = 0
    refine_bit = np.int64(1) << succ_low
    units_x, units_y, blocks = _scan_units(order, scan_n, comp, mcu_x, mcu_y)
    ta = blocks[0, _U_AC]
    todo = _interval_length(restart_interval)
    for j in range(units_y):
        for i in range(units_x):
            bi = blocks[0, _U_FIRST] + i * blocks[0, _U_STEP_X] + j * blocks[0, _U_STEP_Y]
            cb = coeffs[bi * 64:bi * 64 + 64]
            k = spec_start
            if eob_run != 0:
                # a block of an end-of-band run: correction bits only
                eob_run -= 1
                r = 64
                newval = 0
            else:
                r = -1
            while True:
                if r != 64:
                    if bits < 16:
                        pos, buf, bits, nomore, marker = _fill(data, pos, buf, bits, nomore, marker)
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
                                    pos, buf, bits, nomore, marker = _fill(data, pos, buf, bits, nomore, marker)
                                v, buf, bits = _take(buf, bits, r)
                                eob_run += v
                            r = 64
                        # r == 15: sixteen zero-history coefficients are skipped by "placing" 0 on the 16th
                    else:
                        if s != 1:
                            return _ERR_REFINE, pos, marker
                        if bits < 1:
                            pos, buf, bits, nomore, marker = _fill(data, pos, buf, bits, nomore, marker)
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
                            pos, buf, bits, nomore, marker = _fill(data, pos, buf, bits, nomore, marker)
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
                eob_run = 0
                todo = _interval_length(restart_interval)
    return _OK, pos, marker
