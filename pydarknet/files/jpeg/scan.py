"""What every kind of scan shares: the blocks it codes, in its order, and its restart intervals.

A scan of several components (interleaved) codes MCUs: each MCU holds H x V blocks of every component in turn.
A scan of one component codes that component's blocks row by row, one block a "unit".  `_scan_units` gives both
as one walk, units_y rows of units_x units, each unit a few blocks.  After every `restart_interval` units the
entropy coder starts afresh at the next RSTn marker: the scan's kernel refills its bit reader, and where the
marker `_is_restart` it clears the bit reader, the DC predictions and the end-of-band run; any other marker ends
the scan there.  Each kernel (baseline.py, progressive.py) walks the units with its block decoding, its bit reader
and those restart steps in its own loop: the same steps in a shared function made small baseline files 3-4 %
slower to decode.
"""
import numpy as np
from numba import njit

from .tables import _F_COFF, _F_CW, _F_H, _F_HA, _F_HD, _F_TQ, _F_V, _F_X, _F_Y

# Columns of the unit table, a row per block of a unit: in unit (i, j) the block is coefficient block
# FIRST + i * STEP_X + j * STEP_Y of component COMP, decoded with Huffman tables DC and AC (rows of `htab`) and
# quantisation table Q.
_U_COMP, _U_FIRST, _U_STEP_X, _U_STEP_Y, _U_DC, _U_AC, _U_Q = range(7)


@njit(cache=True, nogil=True)
def _scan_units(order, scan_n, comp, mcu_x, mcu_y):
    """(units_x, units_y, blocks): the scan's walk; blocks has a row per block of a unit, in coding order."""
    interleaved = scan_n > 1
    count = 0
    for kk in range(scan_n):
        count += comp[order[kk], _F_H] * comp[order[kk], _F_V] if interleaved else 1
    blocks = np.empty((count, 7), dtype=np.int64)
    u = 0
    for kk in range(scan_n):
        n = order[kk]
        h = comp[n, _F_H] if interleaved else 1
        v = comp[n, _F_V] if interleaved else 1
        for y in range(v):
            for x in range(h):
                blocks[u, _U_COMP] = n
                blocks[u, _U_FIRST] = comp[n, _F_COFF] // 64 + x + y * comp[n, _F_CW]
                blocks[u, _U_STEP_X] = h
                blocks[u, _U_STEP_Y] = v * comp[n, _F_CW]
                blocks[u, _U_DC] = comp[n, _F_HD]
                blocks[u, _U_AC] = 4 + comp[n, _F_HA]
                blocks[u, _U_Q] = comp[n, _F_TQ]
                u += 1
    if interleaved:
        return mcu_x, mcu_y, blocks
    return (comp[order[0], _F_X] + 7) >> 3, (comp[order[0], _F_Y] + 7) >> 3, blocks


@njit(cache=True, nogil=True)
def _interval_length(restart_interval):
    """Units per restart interval; without restarts (DRI absent or 0), more than any scan has."""
    return restart_interval if restart_interval != 0 else 0x7FFFFFFF


@njit(cache=True, nogil=True)
def _is_restart(marker):
    """Whether the marker after a restart interval's data is RSTn, which starts the next interval."""
    return 0xD0 <= marker <= 0xD7
