"""pydarknet.files.image against darknet: network inputs built from darknet's own decoded pixels must equal the
input.npy darknet wrote, bit for bit; loading, drawing and saving follow darknet's rules."""
import json
import re
import struct
import sys
import types
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

import pydarknet.files
from conftest import DATA, SHARED, shared_path
from pydarknet.files import image as I


# ---------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------

def net_size(cfg_path):
    """(width, height) from a cfg's [net] (or [network]) section, by plain text parsing."""
    text = Path(cfg_path).read_text()
    m = re.search(r"^\[(?:net|network)\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    assert m, f"no [net] section in {cfg_path}"

    def value(key):
        v = re.search(rf"^\s*{key}\s*=\s*(\d+)", m.group(1), re.M)
        assert v, f"no {key}= in [net] of {cfg_path}"
        return int(v.group(1))

    return value("width"), value("height")


def stb_image(name_or_path):
    """darknet's float image from its stb pixels: uint8 planes / 255 in float32."""
    pix = np.load(name_or_path) if not isinstance(name_or_path, np.ndarray) else name_or_path
    return pix.astype(np.float32) / np.float32(255)


def preprocess(im, how, w, h):
    if how == "letterbox":
        return I.letterbox_image(im, w, h)
    if how == "resize":
        return I.resize_image(im, w, h)
    if how == "resize_min":
        return I.resize_min(im, w)
    raise AssertionError(f"unknown preprocess {how!r}")


def compare(out, ref, label):
    assert out.dtype == np.float32
    assert out.shape == ref.shape, f"{label}: shape {out.shape} != darknet's {ref.shape}"
    diff = float(np.abs(out - ref).max())
    n_diff = int(np.count_nonzero(out != ref))
    print(f"{label}: max abs diff {diff:.3g}, {n_diff} of {ref.size} values differ")
    assert diff <= 1e-6, f"{label}: max abs diff {diff} ({n_diff} values differ)"
    assert n_diff == 0, f"{label}: not bit-identical ({n_diff} values differ by up to {diff})"


def resize_reference(im, w, h):
    """darknet's resize_image written independently with whole-array float32 numpy operations."""
    c, sh, sw = im.shape
    f = np.float32
    if w > 1:
        sx = np.arange(w, dtype=f) * (f(sw - 1) / f(w - 1))
    else:
        sx = np.zeros(1, f)
    ix = sx.astype(np.int64)
    dx = sx - ix.astype(f)
    ix1 = np.minimum(ix + 1, sw - 1)
    part = (f(1) - dx) * im[:, :, ix] + dx * im[:, :, ix1]
    part[:, :, w - 1] = im[:, :, sw - 1]
    if sw == 1:
        part[:] = im[:, :, :1]
    if h > 1:
        sy = np.arange(h, dtype=f) * (f(sh - 1) / f(h - 1))
    else:
        sy = np.zeros(1, f)
    iy = sy.astype(np.int64)
    dy = sy - iy.astype(f)
    iy1 = np.minimum(iy + 1, sh - 1)
    out = (f(1) - dy)[None, :, None] * part[:, iy, :]
    lower = dy[None, :, None] * part[:, iy1, :]
    lower[:, h - 1, :] = 0
    if sh == 1:
        lower[:] = 0
    return (out + lower).astype(f)


def write_png(path, pix, color_type, bit_depth=8):
    """A minimal PNG writer (no filtering) for layouts OpenCV cannot write, e.g. grey + alpha."""
    pix = np.asarray(pix)
    h, w = pix.shape[:2]
    raw = pix.astype(">u2" if bit_depth == 16 else np.uint8).reshape(h, -1).tobytes()
    row_len = len(raw) // h
    data = b"".join(b"\x00" + raw[r * row_len:(r + 1) * row_len] for r in range(h))

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(data))
                           + chunk(b"IEND", b""))


def planes(rgb_hwc):
    """uint8 (h, w, 3) RGB -> darknet float image."""
    return rgb_hwc.transpose(2, 0, 1).astype(np.float32) / np.float32(255)


# ---------------------------------------------------------------------------------------------------------
# darknet's network inputs
# ---------------------------------------------------------------------------------------------------------

def test_bundled_letterbox_input_is_bit_identical():
    """Runs without ../shared: eagle.jpg as darknet decoded it, letterboxed to 64x64 (darknet53_slim)."""
    data = np.load(DATA / "image" / "eagle_letterbox_64x64.npz")
    im = stb_image(data["stb"])
    out = I.letterbox_image(im, int(data["w"]), int(data["h"]))
    compare(out, data["input"], "bundled eagle letterbox 64x64")
    # The last resized row (row 11 + 42 - 1) carries darknet's (1 - dy) quirk: almost black, and we match it.
    assert out[:, 52].max() < 1e-4 and out[:, 51].max() > 0.05


def _forward_cases():
    root = SHARED / "golden" / "forward"
    if not root.is_dir():
        return ["(shared data missing)"]
    return sorted(p.name for p in root.iterdir() if (p / "case.json").exists())


@pytest.mark.parametrize("case", _forward_cases())
def test_forward_input_matches_darknet(case):
    folder = shared_path("golden", "forward", case)
    spec = json.loads((folder / "case.json").read_text())
    cfg = SHARED / spec["cfg"] if spec["cfg"].startswith("cfg/") else folder / spec["cfg"]
    w, h = net_size(cfg)
    name = Path(spec["image"]).stem
    im = stb_image(shared_path("golden", "decode", f"{name}.stb.npy"))
    out = preprocess(im, spec["preprocess"], w, h)
    compare(out, np.load(folder / "input.npy"), f"{case} ({spec['preprocess']} {name} to {w}x{h})")


# ---------------------------------------------------------------------------------------------------------
# geometry, without shared data
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("src,dst", [((7, 5), (13, 11)), ((13, 11), (7, 5)), ((64, 48), (41, 42)),
                                     ((2, 2), (3, 42)), ((1, 4), (5, 1)), ((9, 1), (4, 6)), ((5, 5), (5, 5)),
                                     ((3, 2), (1, 1)), ((300, 200), (97, 131))])
def test_resize_matches_independent_float32_reference(src, dst):
    rng = np.random.default_rng(sum(src) * 31 + sum(dst))
    im = rng.random((3, src[1], src[0]), dtype=np.float32)
    out = I.resize_image(im, *dst)
    assert out.shape == (3, dst[1], dst[0]) and out.dtype == np.float32
    assert np.array_equal(out, resize_reference(im, *dst))


def test_resize_by_hand():
    im = np.array([[[0.0, 1.0], [0.5, 0.25]]], dtype=np.float32)  # 1 channel, 2x2
    out = I.resize_image(im, 3, 3)
    # scale (2-1)/(3-1) = .5 both ways; the middle column/row is the mean of its neighbours
    expected = np.array([[[0.0, 0.5, 1.0], [0.25, 0.4375, 0.625], [0.5, 0.375, 0.25]]], dtype=np.float32)
    assert np.array_equal(out, expected)
    assert np.array_equal(I.resize_image(im, 2, 2), im)


def test_resize_last_row_quirk():
    """2 -> 42 rows: 41 * float32(1/41) = 0.99999994, so darknet's last row keeps only (1 - dy) of row 0."""
    out = I.resize_image(np.ones((1, 2, 2), np.float32), 2, 42)
    assert out[0, -1, 0] == np.float32(1) - np.float32(41) * (np.float32(1) / np.float32(41))
    assert 0 < out[0, -1, 0] < 1e-7
    assert np.all(out[0, :-1] == 1)


def test_letterbox_geometry():
    im = np.ones((3, 512, 773), np.float32)
    assert I.letterbox_sizes(773, 512, 416, 416) == (416, 275)
    assert I.letterbox_sizes(512, 773, 416, 416) == (275, 416)
    out = I.letterbox_image(im, 416, 416)
    top = (416 - 275) // 2  # 70
    assert np.all(out[:, :top] == 0.5) and np.all(out[:, top + 275:] == 0.5)
    assert np.all(out[:, top:top + 275] == 1)


def test_resize_min_and_max():
    im = np.zeros((3, 512, 773), np.float32)
    assert I.resize_min(im, 224).shape == (3, 224, 338)  # 773 * 224 / 512 = 338.1
    assert I.resize_max(im, 224).shape == (3, 148, 224)  # 512 * 224 / 773 = 148.4
    assert I.resize_min(np.zeros((3, 640, 224), np.float32), 224).shape == (3, 640, 224)
    same = np.zeros((3, 224, 300), np.float32)
    assert I.resize_min(same, 224) is same  # unchanged size: darknet hands back the same image


def test_crop_clamps_to_the_edges():
    im = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    out = I.crop_image(im, -1, 1, 6, 3)
    assert out.shape == (2, 3, 6)
    assert np.array_equal(out[0, 0], [4, 4, 5, 6, 7, 7])
    assert np.array_equal(out[0, 2], out[0, 1])  # row 3 clamps to row 2 of the source
    assert np.array_equal(I.crop_image(im, 0, 0, 4, 3), im)


def test_center_crop_image():
    im = np.random.default_rng(1).random((3, 6, 10), dtype=np.float32)
    out = I.center_crop_image(im, 6, 6)
    assert np.array_equal(out, im[:, :, 2:8])  # square of the short side, resized to the same size
    assert I.center_crop is I.center_crop_image


def test_embed_clips_and_rgbgr():
    dest = np.zeros((3, 4, 4), np.float32)
    src = np.ones((3, 3, 3), np.float32)
    I.embed_image(src, dest, 2, -1)
    assert dest[:, :2, 2:].min() == 1 and dest.sum() == 3 * 4
    im = np.stack([np.full((2, 2), v, np.float32) for v in (0.1, 0.2, 0.3)])
    I.rgbgr_image(im)
    assert im[0, 0, 0] == np.float32(0.3) and im[2, 0, 0] == np.float32(0.1)


def test_byte_to_float_equals_darknets_double_division():
    """Every byte's float, as the planes of an interleaved image (any channel order) get it, is darknet's
    (float)byte / 255. in double, rounded to float32."""
    b = np.arange(256)
    assert np.array_equal((b / 255.0).astype(np.float32), b.astype(np.float32) / np.float32(255))
    pixels = np.stack([b, 255 - b, b[::-1]], axis=1).astype(np.uint8).reshape(16, 16, 3)
    for order in ([0, 1, 2], [2, 1, 0], [0, 0, 0]):
        planes = I._unit_planes(pixels.transpose(2, 0, 1), np.array(order, np.int64))
        expected = (pixels[:, :, order].transpose(2, 0, 1) / 255.0).astype(np.float32)
        assert planes.dtype == np.float32 and np.array_equal(planes.view(np.uint32), expected.view(np.uint32))


# ---------------------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------------------

@pytest.fixture
def rgb():
    return np.random.default_rng(7).integers(0, 256, (5, 7, 3), dtype=np.uint8)


@pytest.mark.parametrize("ext", [".png", ".bmp", ".ppm"])
def test_load_colour(tmp_path, rgb, ext):
    path = tmp_path / f"c{ext}"
    assert cv2.imwrite(str(path), rgb[:, :, ::-1])
    for decoder in ("opencv", "darknet"):
        im = I.load_image(path, decoder=decoder)
        assert im.dtype == np.float32 and im.shape == (3, 5, 7)
        assert np.array_equal(im, planes(rgb))


def test_load_grey_replicates(tmp_path, rgb):
    grey = rgb[:, :, 0]
    path = tmp_path / "g.png"
    cv2.imwrite(str(path), grey)
    im = I.load_image(path, decoder="opencv")
    assert np.array_equal(im, planes(np.dstack([grey] * 3)))


def test_load_16bit_keeps_high_byte(tmp_path):
    v16 = np.random.default_rng(3).integers(0, 65536, (4, 6, 3), dtype=np.uint16)
    path = tmp_path / "c16.png"
    cv2.imwrite(str(path), v16[:, :, ::-1])
    assert np.array_equal(I.load_image(path, decoder="opencv"), planes((v16 >> 8).astype(np.uint8)))
    grey = v16[:, :, 1]
    path = tmp_path / "g16.png"
    cv2.imwrite(str(path), grey)
    expected = planes(np.dstack([(grey >> 8).astype(np.uint8)] * 3))
    assert np.array_equal(I.load_image(path, decoder="opencv"), expected)


def test_load_drops_alpha(tmp_path, rgb):
    alpha = np.random.default_rng(5).integers(0, 256, rgb.shape[:2], dtype=np.uint8)
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), np.dstack([rgb[:, :, ::-1], alpha]))
    assert np.array_equal(I.load_image(path, decoder="opencv"), planes(rgb))  # not premultiplied
    path = tmp_path / "ga.png"  # grey + alpha (PNG colour type 4)
    write_png(path, np.dstack([rgb[:, :, 1], alpha]), color_type=4)
    assert np.array_equal(I.load_image(path, decoder="opencv"), planes(np.dstack([rgb[:, :, 1]] * 3)))


def test_load_ignores_exif_orientation(tmp_path):
    pix = np.zeros((8, 16, 3), np.uint8)
    pix[:, :8] = 255
    ok, buf = cv2.imencode(".jpg", pix)
    jpg = buf.tobytes()
    tiff = b"MM\x00\x2a\x00\x00\x00\x08" + struct.pack(">HHHIHH", 1, 0x0112, 3, 1, 6, 0) + b"\x00" * 4
    app1 = b"Exif\x00\x00" + tiff
    data = jpg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpg[2:]
    path = tmp_path / "rotated.jpg"
    path.write_bytes(data)
    # OpenCV's default read honours the tag (so the file really carries it) ...
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (16, 8)
    # ... darknet (stb_image) does not, and neither do we.
    for decoder in ("opencv", "darknet"):
        assert I.load_image(path, decoder=decoder).shape == (3, 8, 16)


def test_load_errors(tmp_path):
    missing = tmp_path / "nope.jpg"
    with pytest.raises(I.ImageError, match=r"nope\.jpg.*no such file"):
        I.load_image(missing)
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(I.ImageError, match=r"garbage\.png.*(unreadable|corrupt)"):
        I.load_image(garbage)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(I.ImageError, match=r"empty\.jpg.*empty"):
        I.load_image(empty)
    with pytest.raises(I.ImageError, match="directory"):
        I.load_image(tmp_path)
    with pytest.raises(ValueError, match="decoder"):
        I.load_image(garbage, decoder="pil")
    assert issubclass(I.ImageError, ValueError)
    try:
        I.load_image(missing)
    except I.ImageError as e:
        assert "\n" not in str(e)


def _fake_jpeg_module(message):
    mod = types.ModuleType("pydarknet.files.jpeg")

    class JPEGError(ValueError):
        pass

    def decode_jpeg(data, name):
        raise JPEGError(message)

    mod.JPEGError, mod.decode_jpeg = JPEGError, decode_jpeg
    return mod


def _small_jpeg(tmp_path, rgb):
    path = tmp_path / "small.jpg"
    cv2.imwrite(str(path), rgb[:, :, ::-1])
    return path


def test_unsupported_jpeg_falls_back_to_opencv(tmp_path, rgb, monkeypatch):
    fake = _fake_jpeg_module("unsupported JPEG feature: arithmetic coding")
    monkeypatch.setitem(sys.modules, "pydarknet.files.jpeg", fake)
    monkeypatch.setattr(pydarknet.files, "jpeg", fake, raising=False)
    path = _small_jpeg(tmp_path, rgb)
    assert np.array_equal(I.load_image(path), I.load_image(path, decoder="opencv"))


def test_corrupt_jpeg_error_becomes_image_error(tmp_path, rgb, monkeypatch):
    fake = _fake_jpeg_module("bad Huffman code")
    monkeypatch.setitem(sys.modules, "pydarknet.files.jpeg", fake)
    monkeypatch.setattr(pydarknet.files, "jpeg", fake, raising=False)
    path = _small_jpeg(tmp_path, rgb)
    with pytest.raises(I.ImageError, match=r"small\.jpg.*bad Huffman code"):
        I.load_image(path)


@pytest.mark.parametrize("name", ["dog", "eagle", "person"])
def test_load_jpeg_like_darknet(name):
    jpg = shared_path("golden", "decode", f"{name}.jpg")
    stb = np.load(shared_path("golden", "decode", f"{name}.stb.npy"))
    cv = I.load_image(jpg, decoder="opencv")
    assert cv.shape == stb.shape
    # OpenCV's libjpeg is close to stb_image but not identical
    assert np.abs(cv * 255 - stb).max() <= 20
    assert np.array_equal(I.load_image(jpg), stb_image(stb))


# ---------------------------------------------------------------------------------------------------------
# colours, drawing, saving
# ---------------------------------------------------------------------------------------------------------

def test_get_color_by_hand():
    # colors = {1,0,1},{0,0,1},{0,1,1},{0,1,0},{1,1,0},{1,0,0}; ratio = x/max*5, blend of rows floor and ceil
    assert [I.get_color(c, 0, 80) for c in (2, 1, 0)] == [1, 0, 1]
    # class 1 of 80: offset 123457 % 80 = 17, ratio 1.0625 -> rows 1 and 2, 1/16 of the way
    assert I.class_color(1, 80) == (1.0, 0.0625, 0.0)
    # class 2 of 80: offset 34, ratio 2.125 -> rows 2 and 3
    assert I.class_color(2, 80) == (0.875, 1.0, 0.0)
    # x == max: the last row exactly
    assert [I.get_color(c, 20, 20) for c in (2, 1, 0)] == [0, 0, 1]
    # 1 of 3: ratio 5/3 -> 2/3 of the way from {0,0,1} to {0,1,1}
    assert I.get_color(1, 1, 3) == pytest.approx(2 / 3, abs=1e-6)
    assert I.get_color(0, 1, 3) == 0 and I.get_color(2, 1, 3) == 1
    assert isinstance(I.get_color(1, 1, 3), np.float32)


def test_draw_detections_box_pixels():
    img = np.zeros((500, 400, 3), np.uint8)
    # class 2 of 80 = (r .875, g 1, b 0) -> bytes int(255 * v): BGR (0, 255, 223)
    I.draw_detections(img, [[0.5, 0.5, 0.5, 0.25]], [2], ["a", "b", "car"], 80)
    colour = [0, 255, 223]
    # left 100, right 300, top int(187.5) = 187, bottom int(312.5) = 312; width int(500 * .006) = 3
    for y in (310, 311, 312):
        assert np.all(img[y, 150:250] == colour)
    assert np.all(img[309, 150:250] == 0) and np.all(img[313, 150:250] == 0)
    for x in (298, 299, 300):
        assert np.all(img[200:300, x] == colour)
    for x in (100, 101, 102):
        assert np.all(img[200:300, x] == colour)
    assert np.all(img[200:300, 103] == 0) and np.all(img[200:300, 297] == 0) and np.all(img[200:300, 301] == 0)
    assert np.all(img[190:309, 103:298] == 0)  # inside stays untouched
    # the label tag sits above the box at its left edge: class colour with dark text in it
    tag = img[150:187, 100:160]
    is_colour = np.all(tag == colour, axis=2)
    assert is_colour.sum() > 0.3 * is_colour.size and (tag.sum(axis=2) < 100).sum() > 10
    assert np.all(img[:140] == 0)


def test_draw_matches_darknet_float_drawing():
    """Drawing on the uint8 image == drawing on darknet's float image, then save_image's byte conversion."""
    rng = np.random.default_rng(2)
    im = rng.random((3, 300, 200), dtype=np.float32)
    bgr = I.to_bgr8(im)
    r, g, b = I.class_color(5, 20)
    I.draw_box_width(im, 10, 20, 150, 250, 2, r, g, b)
    I.draw_box_width(bgr, 10, 20, 150, 250, 2, r, g, b)
    assert np.array_equal(I.to_bgr8(im), bgr)
    assert im[1, 21, 50] == g and im[0, 100, 149] == r


def test_draw_box_clamps_and_small_images_get_no_outline():
    img = np.zeros((100, 100, 3), np.uint8)
    I.draw_box(img, -5, -5, 500, 500, 1, 0, 0)
    assert np.all(img[0, :, 2] == 255) and np.all(img[99, :, 2] == 255) and np.all(img[:, 99, 2] == 255)
    small = np.zeros((150, 150, 3), np.uint8)  # int(150 * .006) = 0: darknet draws no outline
    I.draw_detections(small, [[0.5, 0.5, 0.5, 0.5]], [0], ["x"], 1, draw_labels=False)
    assert not small.any()
    I.draw_detections(small, [[0.5, 0.5, 0.5, 0.5]], [[]], ["x"], 1, width=2)
    assert not small.any()
    I.draw_detections(small, [[0.5, 0.5, 0.5, 0.5]], [[0]], ["x"], 1, width=2, draw_labels=False)
    assert np.all(small[37, 37:113] == [255, 0, 255])  # class 0: get_color row 0 = magenta


def test_labels_from_probs():
    probs = np.array([[0.1, 0.6, 0.7], [0.0, 0.2, 0.1]], np.float32)
    assert I.labels_from_probs(probs, 0.5) == [[1, 2], []]


def test_to_bgr8_truncates_and_save(tmp_path):
    im = np.zeros((3, 2, 2), np.float32)
    im[0] = 0.999  # 254.745 -> 254
    im[1] = 0.5  # 127.5 -> 127
    im[2] = 1.5  # clamped
    bgr = I.to_bgr8(im)
    assert bgr[0, 0].tolist() == [255, 127, 254]
    written = I.save_image(im, tmp_path / "out.png")
    assert np.array_equal(cv2.imread(written), bgr)
    written = I.save_image(im, tmp_path / "predictions")
    assert written.endswith("predictions.jpg") and Path(written).exists()
    grey = I.to_bgr8(np.full((1, 2, 2), 0.5, np.float32))
    assert grey.shape == (2, 2, 3) and np.all(grey == 127)
