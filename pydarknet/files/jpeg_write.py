"""JPEG files as darknet's save_image writes them (its bundled stb_image_write 1.09): baseline JPEG, 4:4:4 (no
colour subsampling), the standard Huffman tables (ITU T.81 Annex K.3) and quantisation tables (K.1) scaled
by the quality, a float AAN DCT. Given darknet's bytes, the same file byte for byte (checked against stb's code
compiled with gcc 12 -Ofast at quality 80 on random and smooth images of 1x1 to 256x200 pixels; at quality 99 that
build's float code rounded one coefficient differently on one image of nine; -O0 agrees on all).

Per 8x8 block (the image's last row and column repeated past its edges), in float32 as darknet's build computes:
Y, Cb, Cr from the bytes (Y less 128), a separable DCT (rows, then columns), each coefficient times 1 / (its
quantiser * the AAN scales of its row and column), rounded half away from zero; then the usual run-length and
Huffman coding with a byte of 0 stuffed after each 0xFF.
"""
import numpy as np
from numba import njit

F32 = np.float32

# Annex K.1: quantisers in natural (row-major) order
LUMA_Q = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
          14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
          49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]
CHROMA_Q = [17, 18, 24, 47] + [99] * 4 + [18, 21, 26, 66] + [99] * 4 + [24, 26, 56] + [99] * 5 + [47, 66] + [99] * 38

# Annex K.3: (codes of each length 1..16, symbols) for DC and AC, luminance then chrominance
DC_LUMA = ([0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0], list(range(12)))
DC_CHROMA = ([0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0], list(range(12)))
AC_LUMA = ([0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d], bytes.fromhex(
    "01020300041105122131410613516107227114328191a1082342b1c11552d1f02433627282090a161718191a25262728292a3435"
    "363738393a434445464748494a535455565758595a636465666768696a737475767778797a838485868788898a92939495969798"
    "999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4"
    "f5f6f7f8f9fa"))
AC_CHROMA = ([0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77], bytes.fromhex(
    "000102031104052131061241510761711322328108144291a1b1c109233352f0156272d10a162434e125f11718191a26272829"
    "2a35363738393a434445464748494a535455565758595a636465666768696a737475767778797a82838485868788898a92939495"
    "969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae2e3e4e5e6e7e8e9eaf2f3"
    "f4f5f6f7f8f9fa"))

AAN = [1.0, 1.387039845, 1.306562965, 1.175875602, 1.0, 0.785694958, 0.541196100, 0.275899379]


def zigzag_order():
    """The natural index of each zigzag position: the anti-diagonals in turn, alternately up and down."""
    cells = sorted((r + c, r if (r + c) % 2 else c, r * 8 + c) for r in range(8) for c in range(8))
    return np.array([index for _, _, index in cells], np.int64)


ZIGZAG = zigzag_order()


def huffman_codes(table):
    """(code, length) of every symbol of a (counts per length, symbols) table: canonical codes (Annex C)."""
    counts, symbols = table
    codes = np.zeros((256, 2), np.int64)
    code, k = 0, 0
    for length, count in enumerate(counts, 1):
        for _ in range(count):
            codes[symbols[k]] = code, length
            code += 1
            k += 1
        code <<= 1
    return codes


def scaled_table(base, quality):
    """A quantisation table at `quality` (1..100; 0 means 90), each value kept within 1..255."""
    quality = 90 if quality == 0 else min(max(quality, 1), 100)
    factor = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((np.array(base, np.int64) * factor + 50) // 100, 1, 255)


def divisors(table):
    """Each coefficient's multiplier, 1 / (quantiser * AAN row scale * AAN column scale), in float32."""
    aan = np.array([F32(a) * F32(2.828427125) for a in AAN], np.float32)
    return (F32(1) / (table.astype(np.float32).reshape(8, 8) * aan[:, None] * aan[None, :])).astype(np.float32)


def dct(d):
    """The AAN forward DCT along the last axis of d (..., 8), float32, as stb computes each row."""
    t0, t7 = d[..., 0] + d[..., 7], d[..., 0] - d[..., 7]
    t1, t6 = d[..., 1] + d[..., 6], d[..., 1] - d[..., 6]
    t2, t5 = d[..., 2] + d[..., 5], d[..., 2] - d[..., 5]
    t3, t4 = d[..., 3] + d[..., 4], d[..., 3] - d[..., 4]
    e10, e13, e11, e12 = t0 + t3, t0 - t3, t1 + t2, t1 - t2
    out = np.empty_like(d)
    out[..., 0], out[..., 4] = e10 + e11, e10 - e11
    z1 = (e12 + e13) * F32(0.707106781)
    out[..., 2], out[..., 6] = e13 + z1, e13 - z1
    o10, o11, o12 = t4 + t5, t5 + t6, t6 + t7
    z5 = (o10 - o12) * F32(0.382683433)
    z2 = o10 * F32(0.541196100) + z5
    z4 = o12 * F32(1.306562965) + z5
    z3 = o11 * F32(0.707106781)
    z11, z13 = t7 + z3, t7 - z3
    out[..., 5], out[..., 3] = z13 + z2, z13 - z2
    out[..., 1], out[..., 7] = z11 + z4, z11 - z4
    return out


def quantized_blocks(plane, multipliers):
    """The zigzag-ordered integer coefficients of every block of one level-shifted plane (blocks, 64)."""
    blocks = plane.reshape(plane.shape[0] // 8, 8, plane.shape[1] // 8, 8).transpose(0, 2, 1, 3).reshape(-1, 8, 8)
    coefficients = dct(np.swapaxes(dct(blocks), 1, 2))      # rows, then columns
    v = np.swapaxes(coefficients, 1, 2) * multipliers
    rounded = np.where(v < 0, v - F32(0.5), v + F32(0.5)).astype(np.int64)   # C's truncation toward zero
    return rounded.reshape(-1, 64)[:, ZIGZAG]


def encode_jpeg(rgb, quality=80):
    """The JPEG file of rgb (h, w, 3) uint8, as bytes."""
    h, w, _ = rgb.shape
    rows, cols = -(-h // 8) * 8, -(-w // 8) * 8
    padded = np.pad(rgb, ((0, rows - h), (0, cols - w), (0, 0)), mode="edge").astype(np.float32)
    r, g, b = padded[..., 0], padded[..., 1], padded[..., 2]
    y = F32(0.29900) * r + F32(0.58700) * g + F32(0.11400) * b - F32(128)
    cb = F32(-0.16874) * r - F32(0.33126) * g + F32(0.50000) * b
    cr = F32(0.50000) * r - F32(0.41869) * g - F32(0.08131) * b
    luma, chroma = scaled_table(LUMA_Q, quality), scaled_table(CHROMA_Q, quality)
    planes = np.stack([quantized_blocks(y, divisors(luma)), quantized_blocks(cb, divisors(chroma)),
                       quantized_blocks(cr, divisors(chroma))], axis=1)       # (blocks, 3, 64)
    tables = np.stack([huffman_codes(DC_LUMA), huffman_codes(AC_LUMA), huffman_codes(DC_CHROMA),
                       huffman_codes(AC_CHROMA)])
    scan = entropy_code(planes, tables, np.empty(planes.size * 8 + 64, np.uint8))
    return header(h, w, luma, chroma) + scan.tobytes() + b"\xff\xd9"


def header(h, w, luma, chroma):
    """SOI, JFIF, both quantisation tables (zigzag order), the frame (three components, 1x1 sampling), the four
    Huffman tables, the scan header."""
    def dht(table_class, table):
        return bytes([table_class]) + bytes(table[0]) + bytes(table[1])

    return (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
            + b"\xff\xdb\x00\x84\x00" + bytes(luma[ZIGZAG].tolist()) + b"\x01" + bytes(chroma[ZIGZAG].tolist())
            + b"\xff\xc0\x00\x11\x08" + h.to_bytes(2, "big") + w.to_bytes(2, "big")
            + b"\x03\x01\x11\x00\x02\x11\x01\x03\x11\x01"
            + b"\xff\xc4\x01\xa2" + dht(0x00, DC_LUMA) + dht(0x10, AC_LUMA) + dht(0x01, DC_CHROMA)
            + dht(0x11, AC_CHROMA)
            + b"\xff\xda\x00\x0c\x03\x01\x00\x02\x11\x03\x11\x00\x3f\x00")


@njit(cache=True)
def entropy_code(planes, tables, out):
    """The scan's bytes: for each block and component, the DC difference and the AC run lengths through the
    Huffman codes `tables` (dc luma, ac luma, dc chroma, ac chroma; (256, 2) code and length), padded with ones."""
    state = np.zeros(3, np.int64)   # bit buffer, bits in it, bytes written
    last_dc = np.zeros(3, np.int64)
    for block in range(planes.shape[0]):
        for comp in range(3):
            dc, ac = tables[0 if comp == 0 else 2], tables[1 if comp == 0 else 3]
            du = planes[block, comp]
            diff = du[0] - last_dc[comp]
            last_dc[comp] = du[0]
            if diff == 0:
                _put(state, out, dc[0, 0], dc[0, 1])
            else:
                size, bits = _magnitude(diff)
                _put(state, out, dc[size, 0], dc[size, 1])
                _put(state, out, bits, size)
            last = 63
            while last > 0 and du[last] == 0:
                last -= 1
            i = 1
            while i <= last:
                start = i
                while du[i] == 0 and i <= last:
                    i += 1
                zeros = i - start
                for _ in range(zeros >> 4):
                    _put(state, out, ac[0xF0, 0], ac[0xF0, 1])
                zeros &= 15
                size, bits = _magnitude(du[i])
                _put(state, out, ac[(zeros << 4) + size, 0], ac[(zeros << 4) + size, 1])
                _put(state, out, bits, size)
                i += 1
            if last != 63:
                _put(state, out, ac[0, 0], ac[0, 1])
    _put(state, out, 0x7F, 7)
    return out[:state[2]]


@njit(cache=True, inline="always")
def _magnitude(value):
    """(bit count of |value|, its bits as JPEG stores them: negative values as value - 1, low bits)."""
    size = 1
    rest = abs(value) >> 1
    while rest:
        size += 1
        rest >>= 1
    if value < 0:
        value -= 1
    return size, value & ((1 << size) - 1)


@njit(cache=True, inline="always")
def _put(state, out, code, length):
    count = state[1] + length
    buffer = state[0] | (code << (24 - count))
    while count >= 8:
        byte = (buffer >> 16) & 255
        out[state[2]] = byte
        state[2] += 1
        if byte == 255:
            out[state[2]] = 0
            state[2] += 1
        buffer = (buffer << 8) & 0xFFFFFFFF
        count -= 8
    state[0], state[1] = buffer, count
