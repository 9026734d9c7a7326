"""pydarknet.files.jpeg: stb_image's pixels, bit for bit, and clean failures.

The golden cases under ../shared/golden/decode hold stb_image's own output
(stbi_load(..., 3), stored as (3, h, w) planes).  Three of the small ones are
copied into tests/data/decode so the exactness checks also run without
../shared.  The rest of the file checks behaviour that needs no oracle: the
colour paths against an independent numpy version of stb's formulas, and
corrupt or unsupported files against JPEGError.
"""

import struct
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED, shared_path
from pydarknet.files.jpeg import JPEGError, decode_jpeg, is_jpeg

LOCAL = Path(__file__).resolve().parent / "data" / "decode"
LOCAL_CASES = sorted(p.stem for p in LOCAL.glob("*.jpg"))
KNOWN_GOLDEN = [
    "baseline420_odd", "baseline422", "baseline444", "dog", "eagle", "gray",
    "gray_progressive", "person", "progressive420", "q100_444", "restart420", "tiny_7x5",
]
_golden_dir = SHARED / "golden" / "decode"
GOLDEN_CASES = sorted({p.stem for p in _golden_dir.glob("*.jpg")} | set(KNOWN_GOLDEN)) \
    if _golden_dir.exists() else KNOWN_GOLDEN


def _check_exact(jpg: Path, npy: Path):
    want = np.load(npy).transpose(1, 2, 0)
    got = decode_jpeg(jpg.read_bytes(), jpg.name)
    assert got.dtype == np.uint8
    assert got.shape == want.shape
    if not np.array_equal(got, want):
        bad = got != want
        diff = np.abs(got.astype(int) - want.astype(int))
        pytest.fail(f"{jpg.name}: {bad.any(axis=2).sum()} pixels differ from stb_image "
                    f"(max {diff.max()} grey levels)")


@pytest.mark.parametrize("name", GOLDEN_CASES)
def test_golden_bit_exact(name):
    jpg = shared_path("golden", "decode", f"{name}.jpg")
    _check_exact(jpg, jpg.with_name(f"{name}.stb.npy"))


@pytest.mark.parametrize("name", LOCAL_CASES)
def test_local_bit_exact(name):
    _check_exact(LOCAL / f"{name}.jpg", LOCAL / f"{name}.stb.npy")


def test_local_copies_present():
    assert len(LOCAL_CASES) >= 2, "tests/data/decode should hold copies of small golden cases"


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def _data(name="restart420"):
    return (LOCAL / f"{name}.jpg").read_bytes()


def _segments(data):
    """(marker, offset of the FF) for every segment before the first SOS."""
    out = []
    i = 2
    while i + 4 <= len(data):
        assert data[i] == 0xFF
        m = data[i + 1]
        out.append((m, i))
        if m == 0xDA:
            break
        i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
    return out


def _offset(data, marker):
    return next(off for m, off in _segments(data) if m == marker)


def _sof_offset(data):
    return next(off for m, off in _segments(data) if m in (0xC0, 0xC1, 0xC2))


def _patched(data, pos, new):
    b = bytearray(data)
    b[pos:pos + len(new)] = new
    return bytes(b)


def _ycc_ref(y, cb, cr):
    """stb's YCbCr->RGB written out plainly: 20 fractional bits, constants
    (int)(c * 4096 + 0.5) << 8 and the Cb part of green with its low 16 bits
    cleared."""
    y = y.astype(np.int64)
    cb = cb.astype(np.int64) - 128
    cr = cr.astype(np.int64) - 128
    yf = (y << 20) + (1 << 19)
    r = (yf + cr * (5743 << 8)) >> 20
    g = (yf + cr * -(2925 << 8) + ((cb * -(1410 << 8)) & ~0xFFFF)) >> 20
    b = (yf + cb * (7258 << 8)) >> 20
    return np.clip(np.stack([r, g, b], axis=-1), 0, 255).astype(np.uint8)


def _blinn(x, y):
    t = x.astype(np.int64) * y.astype(np.int64) + 128
    return ((t + (t >> 8)) >> 8).astype(np.uint8)


def _dc_only_jpeg(planes, ids, adobe=None, jfif=False):
    """A baseline JPEG whose 8x8 blocks are flat: planes[c] is a (bh, bw)
    array of block values, every component sampled 1x1.  With a DC quantiser
    of 8 a flat block of value v decodes to exactly v."""
    n = len(planes)
    bh, bw = planes[0].shape
    out = bytearray()
    acc = nbits = 0

    def put(v, n_):
        nonlocal acc, nbits
        for i in range(n_ - 1, -1, -1):
            acc = (acc << 1) | ((v >> i) & 1)
            nbits += 1
            if nbits == 8:
                out.append(acc)
                if acc == 0xFF:
                    out.append(0)
                acc = nbits = 0

    pred = [0] * n
    for j in range(bh):
        for i in range(bw):
            for c in range(n):
                dc = int(planes[c][j, i]) - 128
                diff, pred[c] = dc - pred[c], dc
                s = abs(diff).bit_length()
                put(s, 4)  # DC table: category s has the 4-bit code s
                if s:
                    put(diff if diff >= 0 else diff + (1 << s) - 1, s)
                put(0, 1)  # AC table: end-of-block is the 1-bit code 0
    if nbits:
        put((1 << (8 - nbits)) - 1, 8 - nbits)
    f = bytearray(b"\xff\xd8")
    if jfif:
        f += b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    if adobe is not None:
        # "Adobe", version 100, flags0, flags1, colour transform
        f += b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00" + bytes([adobe])
    f += b"\xff\xdb\x00\x43\x00" + bytes([8] * 64)
    f += b"\xff\xc0" + struct.pack(">HBHHB", 8 + 3 * n, 8, bh * 8, bw * 8, n)
    for cid in ids:
        f += bytes([cid, 0x11, 0])
    f += b"\xff\xc4" + struct.pack(">H", 2 + 17 + 12) + b"\x00" + bytes([0, 0, 0, 12] + [0] * 12)
    f += bytes(range(12))
    f += b"\xff\xc4" + struct.pack(">H", 2 + 17 + 1) + b"\x10" + bytes([1] + [0] * 15) + b"\x00"
    f += b"\xff\xda" + struct.pack(">HB", 6 + 2 * n, n)
    for cid in ids:
        f += bytes([cid, 0x00])
    f += b"\x00\x3f\x00" + out + b"\xff\xd9"
    return bytes(f)


def _flat_planes(n, seed=0, bh=2, bw=3):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (bh, bw)) for _ in range(n)]


def _expand(plane):
    return np.kron(plane, np.ones((8, 8), dtype=np.int64)).astype(np.uint8)


# ---------------------------------------------------------------------------
# colour paths
# ---------------------------------------------------------------------------

def test_ycbcr_kernel_on_every_chroma_pair():
    """The int32 conversion kernel against the plain formula: every (Cb, Cr) at the luma extremes and middle."""
    from pydarknet.files.jpeg.color import _ycc_row
    cb, cr = (a.ravel().astype(np.uint8) for a in np.meshgrid(np.arange(256), np.arange(256), indexing="ij"))
    for luma in (0, 1, 127, 128, 254, 255):
        y = np.full(cb.size, luma, np.uint8)
        rgb = np.empty((3, cb.size), np.uint8)
        _ycc_row(y, cb, cr, rgb[0], rgb[1], rgb[2], cb.size)
        assert np.array_equal(rgb.T, _ycc_ref(y, cb, cr)), luma


def test_ycbcr_conversion_matches_plain_formula():
    # component ids 'R','G','B' make stb skip the colour transform, so the
    # same file decoded both ways gives the upsampled planes and their RGB
    data = _data("restart420")
    sof = _sof_offset(data)
    rgb_ids = _patched(data, sof + 10, b"R")
    rgb_ids = _patched(rgb_ids, sof + 13, b"G")
    rgb_ids = _patched(rgb_ids, sof + 16, b"B")
    # the scan header names components by id too
    sos = _offset(rgb_ids, 0xDA)
    rgb_ids = _patched(rgb_ids, sos + 5, b"R")
    rgb_ids = _patched(rgb_ids, sos + 7, b"G")
    rgb_ids = _patched(rgb_ids, sos + 9, b"B")
    planes = decode_jpeg(rgb_ids)
    converted = decode_jpeg(data)
    assert np.array_equal(_ycc_ref(planes[..., 0], planes[..., 1], planes[..., 2]), converted)
    # and the copy itself is stb's
    want = np.load(LOCAL / "restart420.stb.npy").transpose(1, 2, 0)
    assert np.array_equal(converted, want)


def test_dc_only_synthetic_ycbcr():
    p = _flat_planes(3, seed=1)
    got = decode_jpeg(_dc_only_jpeg(p, [1, 2, 3], jfif=True))
    assert np.array_equal(got, _ycc_ref(_expand(p[0]), _expand(p[1]), _expand(p[2])))


@pytest.mark.parametrize("ids,adobe,jfif,is_rgb", [
    ([82, 71, 66], None, True, True),     # 'R','G','B' ids: always RGB
    ([1, 2, 3], 0, False, True),          # Adobe transform 0, no JFIF: RGB
    ([1, 2, 3], 0, True, False),          # ... but JFIF wins: YCbCr
    ([1, 2, 3], 1, False, False),         # Adobe transform 1: YCbCr
])
def test_three_component_colour_space(ids, adobe, jfif, is_rgb):
    p = _flat_planes(3, seed=2)
    got = decode_jpeg(_dc_only_jpeg(p, ids, adobe=adobe, jfif=jfif))
    e = [_expand(x) for x in p]
    want = np.stack(e, axis=-1) if is_rgb else _ycc_ref(*e)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("adobe", [0, 2, None, 1])
def test_four_components(adobe):
    p = _flat_planes(4, seed=3)
    got = decode_jpeg(_dc_only_jpeg(p, [1, 2, 3, 4], adobe=adobe))
    c0, c1, c2, k = (_expand(x) for x in p)
    if adobe == 0:      # CMYK: each of the first three times K / 255
        want = np.stack([_blinn(c0, k), _blinn(c1, k), _blinn(c2, k)], axis=-1)
    elif adobe == 2:    # YCCK: YCbCr -> RGB, inverted, times K / 255
        rgb = _ycc_ref(c0, c1, c2)
        want = _blinn(255 - rgb, k[..., None])
    else:               # YCbCr and a fourth channel stb ignores
        want = _ycc_ref(c0, c1, c2)
    assert np.array_equal(got, want)


def test_grey_is_replicated():
    p = _flat_planes(1, seed=4)
    got = decode_jpeg(_dc_only_jpeg(p, [1]))
    e = _expand(p[0])
    assert np.array_equal(got, np.stack([e, e, e], axis=-1))


# ---------------------------------------------------------------------------
# markers that do not change the pixels
# ---------------------------------------------------------------------------

def _exif_orientation(value):
    tiff = b"MM\x00\x2a\x00\x00\x00\x08" + b"\x00\x01" \
        + b"\x01\x12\x00\x03\x00\x00\x00\x01" + struct.pack(">H", value) + b"\x00\x00" \
        + b"\x00\x00\x00\x00"
    body = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", 2 + len(body)) + body


def test_exif_orientation_com_and_fill_bytes_are_ignored():
    data = _data("tiny_7x5")
    want = decode_jpeg(data)
    com = b"\xff\xfe\x00\x07hello"
    extra = _exif_orientation(6) + com + b"\xff\xe9\x00\x02"
    assert np.array_equal(decode_jpeg(data[:2] + extra + data[2:]), want)
    # 0xFF fill bytes before a marker
    dqt = _offset(data, 0xDB)
    assert np.array_equal(decode_jpeg(data[:dqt] + b"\xff\xff\xff" + data[dqt:]), want)


def test_accepts_bytearray_and_memoryview():
    data = _data("tiny_7x5")
    want = decode_jpeg(data)
    assert np.array_equal(decode_jpeg(bytearray(data)), want)
    assert np.array_equal(decode_jpeg(memoryview(data)), want)


def test_is_jpeg():
    assert is_jpeg(_data("tiny_7x5"))
    assert is_jpeg(b"\xff\xd8\xff\xe0")
    assert is_jpeg(b"\xff\xff\xd8")           # fill bytes before SOI, as stb allows
    assert not is_jpeg(b"")
    assert not is_jpeg(b"\xff")
    assert not is_jpeg(b"\xff\xd9")
    assert not is_jpeg(b"\x89PNG\r\n\x1a\n")
    assert not is_jpeg(b"BM")


# ---------------------------------------------------------------------------
# truncated, corrupt and unsupported files
# ---------------------------------------------------------------------------

def _raises(data, *words, unsupported=False):
    t = time.perf_counter()
    with pytest.raises(JPEGError) as info:
        decode_jpeg(data, "case.jpg")
    assert time.perf_counter() - t < 5, "decoding a bad file took too long"
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("case.jpg: ")
    for w in words:
        assert w in msg, msg
    assert info.value.unsupported == unsupported
    if unsupported:
        assert "unsupported JPEG feature: " in msg
    return msg


def test_jpeg_error_is_value_error():
    assert issubclass(JPEGError, ValueError)


@pytest.mark.parametrize("name", LOCAL_CASES)
def test_truncated_files_fail(name):
    # stb only succeeds once it reads an EOI marker, so every cut fails
    data = _data(name)
    for cut in sorted({0, 1, 2, 3, 20, 100, len(data) // 3, len(data) // 2, len(data) - 2,
                       len(data) - 1}):
        _raises(data[:cut])


def test_truncated_entropy_data_with_eoi_is_zero_padded():
    # a scan cut short but closed by EOI decodes as if padded with zero bits
    # (stb's behaviour); the top of the picture is untouched
    data = _data("restart420")
    full = decode_jpeg(data)
    cut = data[:len(data) // 2] + b"\xff\xd9"
    a = decode_jpeg(cut)
    b = decode_jpeg(cut)
    assert a.shape == full.shape
    assert np.array_equal(a, b)
    assert np.array_equal(a[:32], full[:32])
    assert not np.array_equal(a, full)


def test_garbage_after_soi():
    rng = np.random.default_rng(0)
    _raises(b"\xff\xd8" + b"garbage!" * 10, "expected a marker")
    for _ in range(20):
        _raises(b"\xff\xd8" + rng.integers(0, 256, 2000, dtype=np.uint8).tobytes())
    _raises(b"\xff\xd8\xff", "marker")
    _raises(b"not a jpeg at all", "no SOI")


def test_garbage_entropy_data_never_crashes():
    data = _data("progressive420")
    rng = np.random.default_rng(1)
    for _ in range(30):
        b = bytearray(data)
        for _ in range(3):
            b[rng.integers(600, len(b) - 2)] = rng.integers(0, 256)
        try:
            out = decode_jpeg(bytes(b))
        except JPEGError:
            continue
        assert out.shape == (131, 193, 3)


def test_bad_huffman_tables():
    data = _data("tiny_7x5")
    dht = _offset(data, 0xC4)
    # three codes of length 1 cannot exist
    _raises(_patched(data, dht + 5, b"\x03"), "Huffman code lengths")
    # table class 2
    _raises(_patched(data, dht + 4, b"\x20"), "DHT")
    # more than 256 symbols
    _raises(_patched(data, dht + 5, b"\xff" * 16), "Huffman")


def test_bad_frame_headers():
    data = _data("tiny_7x5")
    sof = _sof_offset(data)
    _raises(_patched(data, sof + 7, b"\x00\x00"), "width 0")
    _raises(_patched(data, sof + 9, b"\x02"), "component count")
    _raises(_patched(data, sof + 11, b"\x51"), "sampling factor")
    _raises(_patched(data, sof + 12, b"\x07"), "quantisation table")


def test_unsupported_features():
    data = _data("tiny_7x5")
    sof = _sof_offset(data)
    _raises(_patched(data, sof + 1, b"\xc9"), "arithmetic coding", unsupported=True)
    _raises(_patched(data, sof + 1, b"\xca"), "arithmetic coding", unsupported=True)
    _raises(_patched(data, sof + 1, b"\xc1\x00\x11\x0c"), "12-bit", unsupported=True)
    _raises(_patched(data, sof + 1, b"\xc2\x00\x11\x0c"), "12-bit", unsupported=True)
    _raises(_patched(data, sof + 1, b"\xc3"), "lossless", unsupported=True)
    _raises(_patched(data, sof + 1, b"\xc5"), "hierarchical", unsupported=True)
    _raises(_patched(data, sof + 5, b"\x00\x00"), "DNL", unsupported=True)
    dac = b"\xff\xcc\x00\x06\x00\x10\x01\x10"
    _raises(data[:2] + dac + data[2:], "arithmetic coding", unsupported=True)


def test_bad_segments():
    data = _data("tiny_7x5")
    _raises(data[:2] + b"\xff\xe0\x00\x01" + data[2:], "APP length")
    _raises(data[:2] + b"\xff\xdd\x00\x05\x00\x01" + data[2:], "DRI")
    dqt = _offset(data, 0xDB)
    _raises(_patched(data, dqt + 4, b"\x05"), "DQT")
    sos = _offset(data, 0xDA)
    _raises(_patched(data, sos + 5, b"\x09"), "unknown component")
    # a second SOI, an RST marker outside a scan
    _raises(data[:2] + b"\xff\xd8" + data[2:], "marker")
    _raises(data[:2] + b"\xff\xd0" + data[2:], "marker")
