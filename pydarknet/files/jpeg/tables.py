"""What the decoder's modules share: the bit reader's constants, the zigzag order, the kernels' status codes,
the component table's columns and the output colour modes."""
import numpy as np

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


# Status codes returned by the numba kernels.
_OK = 0
_ERR_HUFF = 1
_ERR_DC_RANGE = 2
_ERR_REFINE = 3

_KERNEL_ERRORS = {
    _ERR_HUFF: "bad Huffman code",
    _ERR_DC_RANGE: "DC difference category out of range",
    _ERR_REFINE: "bad Huffman code in AC refinement scan",
}

# Component table columns (int64 array of shape (4, _NF)).
_F_H, _F_V, _F_X, _F_Y, _F_W2, _F_H2, _F_HD, _F_HA, _F_TQ, _F_POFF, _F_COFF, _F_CW = range(12)
_NF = 12

# Output colour modes.
_MODE_YCC, _MODE_RGB, _MODE_GREY, _MODE_CMYK, _MODE_YCCK = range(5)
