"""Darknet's images: loading, resizing, letterboxing, cropping, drawing and saving (image.c).

A darknet image is a float32 array of shape (c, h, w): channel planes (RGB for colour images), values 0..1.
The geometry here follows pjreddie's image.c operation for operation in float32, so a network input built
by these functions is bit-identical to the one darknet builds.

Things worth knowing about darknet's arithmetic, all reproduced on purpose:

* Pixels are ``byte / 255.`` in double, rounded to float32; for the 256 byte values that equals the float32
  quotient ``np.float32(byte) / np.float32(255)``, which is what is computed here.
* ``resize_image`` is not OpenCV's bilinear resize. It maps destination pixel ``i`` to source position
  ``i * (src-1)/(dst-1)`` (the two ends of both images coincide, no half-pixel centres), interpolates the rows
  first into an intermediate (dst_w x src_h) image, then the columns. The last column copies the source's last
  column. The last row only gets its ``(1 - dy)`` share: when ``(h-1) * h_scale`` rounds to just below
  ``src_h - 1`` the last row is darkened toward zero (darknet does this too).
* Letterbox sizes use integer truncation (``new_h = im.h * w / im.w``) chosen by a float32 ratio comparison,
  fill 0.5, and put the image at ``((w - new_w) / 2, (h - new_h) / 2)``.
* ``crop_image`` clamps coordinates (edge pixels are repeated), it does not zero-fill.
* Saving truncates ``255 * value`` computed in float32 (no rounding).
* Drawn boxes are ``int(im.h * .006)`` pixels wide, so darknet draws *no* box outline on images under
  167 pixels tall; ``draw_detections`` keeps that rule unless a width is passed.
"""
import math
import os
from pathlib import Path

import cv2
import numpy as np
from numba import njit, prange

from .config import DarknetError
from .resources import find_argument, is_url, read_url

__all__ = [
    "ImageError", "check_given", "load_image", "decode_image", "load_image_color", "make_image", "resize_image",
    "letterbox_image", "resize_min", "resize_max", "crop_image", "center_crop", "center_crop_image", "embed_image",
    "rgbgr_image", "get_color", "class_color", "draw_box", "draw_box_width", "draw_detections", "labels_from_probs",
    "to_bgr8", "from_bgr8", "save_image",
]


class ImageError(DarknetError, ValueError):
    """An image file that cannot be read: missing, unreadable, corrupt or empty."""


def make_image(w, h, c=3, fill=0.0):
    """A (c, h, w) float32 image filled with ``fill`` (darknet's make_image / fill_image)."""
    return np.full((c, h, w), fill, dtype=np.float32)


# ---------------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------------

@njit(cache=True, nogil=True, parallel=True)
def _unit_planes(planes, order):
    """uint8 planes (n, h, w), any strides -> float32 (3, h, w): output plane k is planes[order[k]] / 255
    (darknet's float(byte) / 255.: the same float32 for each byte)."""
    h, w = planes.shape[1], planes.shape[2]
    out = np.empty((3, h, w), np.float32)
    for y in prange(h):
        for k in range(3):
            src = planes[order[k], y]
            for x in range(w):
                out[k, y, x] = np.float32(src[x]) / np.float32(255)
    return out


@njit(cache=True, nogil=True, parallel=True)
def _hdr_to_u8(src):
    """stb_image's float -> byte conversion for colour samples: (x ** (1/2.2)) * 255 + 0.5, clamped, truncated."""
    h, w, n = src.shape
    out = np.empty((h, w, n), np.uint8)
    gamma_inv = np.float64(np.float32(1.0) / np.float32(2.2))  # stb keeps 1/2.2 as a float, pow() runs in double
    for y in prange(h):
        for x in range(w):
            for k in range(n):
                v = np.float64(src[y, x, k])  # scale factor 1
                z = np.float32(np.float32(math.pow(v, gamma_inv)) * np.float32(255) + np.float32(0.5))
                if not z > 0:  # also catches NaN
                    z = np.float32(0)
                if z > 255:
                    z = np.float32(255)
                out[y, x, k] = np.uint8(int(z))
    return out


def _bytes_to_image(pix, name):
    """An OpenCV-decoded array (BGR/BGRA/grey, any depth) -> darknet image, converted the way stb_image would."""
    if pix is None:
        raise ImageError(f"cannot load image {name}: unreadable, corrupt or unsupported image data")
    if pix.size == 0:
        raise ImageError(f"cannot load image {name}: empty image")
    if pix.ndim == 2:
        pix = pix[:, :, None]
    n = pix.shape[2]
    if pix.dtype == np.uint16:
        pix = (pix >> 8).astype(np.uint8)  # stb keeps the high byte of 16-bit samples
    elif pix.dtype in (np.float32, np.float64):
        colour = pix[:, :, : (3 if n >= 3 else 1)]
        pix = _hdr_to_u8(np.ascontiguousarray(colour, dtype=np.float32))
        n = pix.shape[2]
    elif pix.dtype != np.uint8:
        raise ImageError(f"cannot load image {name}: unsupported sample type {pix.dtype}")
    if n >= 3:
        order = np.array([2, 1, 0], np.int64)  # BGR(A) -> RGB, alpha dropped
    else:
        order = np.zeros(3, np.int64)  # grey (and grey+alpha): replicate the grey channel
    return _unit_planes(np.ascontiguousarray(pix).transpose(2, 0, 1), order)


def _decode_opencv(data, name):
    buf = np.frombuffer(data, dtype=np.uint8)
    # IMREAD_UNCHANGED keeps depth and alpha and skips EXIF orientation, as stb_image does. (OR-ing in
    # IMREAD_IGNORE_ORIENTATION changes nothing: IMREAD_UNCHANGED is -1, all bits set.)
    flags = cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION
    try:
        pix = cv2.imdecode(buf, flags)
    except cv2.error as e:
        raise ImageError(f"cannot load image {name}: {str(e).strip().splitlines()[-1]}") from None
    return _bytes_to_image(pix, name)


def _decode_stb_jpeg(data, name):
    """Darknet's own JPEG pixels via pydarknet.files.jpeg, or None when OpenCV should decode instead."""
    from pydarknet.files import jpeg  # its kernels load only when a JPEG is met
    try:
        rgb = jpeg.decode_jpeg(data, name)
    except jpeg.JPEGError as e:
        if str(e).startswith("unsupported JPEG feature"):
            return None
        raise ImageError(f"cannot load image {name}: {e}") from None
    return _unit_planes(rgb.transpose(2, 0, 1), np.arange(3))  # the decoder's own (3, h, w) planes, no copy


def check_given(image, what="image"):
    """`image`, unless it is None: then a ValueError (an ImageError) saying why that usually happens. Every
    entry of the Python API that takes an image calls it, so that a failed cv2.imread is one plain sentence."""
    if image is None:
        raise ImageError(f"{what} is None: cv2.imread returns None for a file it cannot read (a missing file, a "
                         "path relative to another working directory, no permission): check the path")
    return image


def load_image(path, decoder="darknet"):
    """Load an image file as darknet's 3-channel float32 (3, h, w) RGB image, values 0..1 (load_image_color).

    decoder="darknet": JPEGs are decoded exactly as darknet's stb_image does (pydarknet.files.jpeg), falling back
    to OpenCV for what that decoder does not support; other formats go through OpenCV.
    decoder="opencv": everything through OpenCV. Either way OpenCV's output is converted as stb would:
    no EXIF rotation, grey replicated to 3 channels, alpha dropped, 16-bit samples keep their high byte.
    Raises ImageError (a ValueError) naming the file when it is missing, unreadable, corrupt or empty.
    """
    name = os.fspath(check_given(path))
    check_decoder(decoder)
    try:
        data = read_url(name) if is_url(name) else Path(find_argument(name)).read_bytes()
    except FileNotFoundError:
        raise ImageError(f"cannot load image {name}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"cannot load image {name}: is a directory") from None
    except OSError as e:
        raise ImageError(f"cannot load image {name}: {e.strerror or e}") from None
    return decode_image(data, name, decoder)


def decode_image(data, name, decoder="darknet"):
    """load_image of a file's bytes `data` (an image piped on stdin), `name` naming it in errors."""
    check_decoder(decoder)
    if not data:
        raise ImageError(f"cannot load image {name}: empty file")
    try:
        return _decode(data, name, decoder)
    except MemoryError:   # a header can claim 20000 x 20000 pixels in a few bytes
        raise ImageError(f"cannot load image {name}: its pixels do not fit in memory") from None


def check_decoder(decoder):
    if decoder not in ("darknet", "opencv"):
        raise ValueError(f"unknown image decoder {decoder!r} (expected 'darknet' or 'opencv')")


def _decode(data, name, decoder):
    if decoder == "darknet" and data[:2] == b"\xff\xd8":
        im = _decode_stb_jpeg(data, name)
        if im is not None:
            if im.shape[1] == 0 or im.shape[2] == 0:
                raise ImageError(f"cannot load image {name}: empty image")
            return im
    return _decode_opencv(data, name)


def load_image_color(path, w=0, h=0, decoder="darknet"):
    """darknet's load_image_color: load, then resize_image to (w, h) when both are given and differ."""
    im = load_image(path, decoder)
    if w and h and (im.shape[2] != w or im.shape[1] != h):
        im = resize_image(im, w, h)
    return im


# ---------------------------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------------------------

def _as_image(im):
    im = np.asarray(check_given(im))
    if im.ndim != 3:
        raise ValueError(f"expected a (c, h, w) image, got shape {im.shape}")
    return np.ascontiguousarray(im, dtype=np.float32)


@njit(cache=True, nogil=True)
def _source_positions(n, source_n):
    """Where each of n destination columns (or rows) falls among source_n: the source index before it and the
    fraction past that index, as darknet computes them (float32 throughout)."""
    scale = np.float32(source_n - 1) / np.float32(n - 1) if n > 1 else np.float32(0)
    index = np.empty(n, np.int64)
    fraction = np.empty(n, np.float32)
    for i in range(n):
        s = np.float32(i) * scale
        index[i] = int(s)
        fraction[i] = s - np.float32(index[i])
    return index, fraction


@njit(cache=True, nogil=True, parallel=True)
def _resize(src, w, h):
    nc, sh, sw = src.shape
    one = np.float32(1)
    col_i, col_d = _source_positions(w, sw)
    row_i, row_d = _source_positions(h, sh)

    # Pass 1: along each source row into a (c, sh, w) intermediate.
    part = np.empty((nc, sh, w), np.float32)
    for kr in prange(nc * sh):
        k = kr // sh
        r = kr - k * sh
        for c in range(w):
            if c == w - 1 or sw == 1:
                part[k, r, c] = src[k, r, sw - 1]
            else:
                ix = col_i[c]
                ix1 = min(ix + 1, sw - 1)
                dx = col_d[c]
                part[k, r, c] = (one - dx) * src[k, r, ix] + dx * src[k, r, ix1]

    # Pass 2: down the columns. Darknet stores (1-dy)*upper, then adds dy*lower except on the last row.
    out = np.empty((nc, h, w), np.float32)
    for kr in prange(nc * h):
        k = kr // h
        r = kr - k * h
        iy = min(row_i[r], sh - 1)
        dy = row_d[r]
        wu = one - dy
        if r == h - 1 or sh == 1:
            for c in range(w):
                out[k, r, c] = wu * part[k, iy, c]
        else:
            iy1 = min(iy + 1, sh - 1)
            for c in range(w):
                out[k, r, c] = wu * part[k, iy, c] + dy * part[k, iy1, c]
    return out


def resize_image(im, w, h):
    """darknet's resize_image: two-pass bilinear, (src-1)/(dst-1) scale, float32, bit-identical.

    A 1-row destination is darknet's undefined case (0 * inf); here its row is the source's first row
    interpolated horizontally.
    """
    w, h = int(w), int(h)
    if w < 1 or h < 1:
        raise ValueError(f"resize_image: bad size {w}x{h}")
    return _resize(_as_image(im), w, h)


def embed_image(source, dest, dx, dy):
    """Copy ``source`` into ``dest`` (in place) with its top-left corner at (dx, dy); pixels falling outside
    ``dest`` are dropped, as darknet's set_pixel does. Returns ``dest``."""
    sc, sh, sw = source.shape
    _, h, w = dest.shape
    x0, y0 = max(dx, 0), max(dy, 0)
    x1, y1 = min(dx + sw, w), min(dy + sh, h)
    if x0 < x1 and y0 < y1:
        dest[:sc, y0:y1, x0:x1] = source[:, y0 - dy:y1 - dy, x0 - dx:x1 - dx]
    return dest


def letterbox_sizes(im_w, im_h, w, h):
    """The (new_w, new_h) darknet's letterbox_image scales an im_w x im_h image to inside w x h."""
    if np.float32(w) / np.float32(im_w) < np.float32(h) / np.float32(im_h):
        return w, (im_h * w) // im_w
    return (im_w * h) // im_h, h


def letterbox_image(im, w, h):
    """darknet's letterbox_image: aspect-preserving resize_image into a w x h image filled with 0.5."""
    im = _as_image(im)
    c, ih, iw = im.shape
    new_w, new_h = letterbox_sizes(iw, ih, w, h)
    resized = resize_image(im, new_w, new_h)
    boxed = make_image(w, h, c, 0.5)
    return embed_image(resized, boxed, (w - new_w) // 2, (h - new_h) // 2)


def resize_min(im, min_size):
    """darknet's resize_min: scale so the shorter side is ``min_size`` (integer-truncated other side).
    Returns ``im`` itself when the size does not change, as darknet does."""
    _, h, w = im.shape
    if w < h:
        h, w = (h * min_size) // w, min_size
    else:
        w, h = (w * min_size) // h, min_size
    if w == im.shape[2] and h == im.shape[1]:
        return im
    return resize_image(im, w, h)


def resize_max(im, max_size):
    """darknet's resize_max: scale so the longer side is ``max_size``. Returns ``im`` when unchanged."""
    _, h, w = im.shape
    if w > h:
        h, w = (h * max_size) // w, max_size
    else:
        w, h = (w * max_size) // h, max_size
    if w == im.shape[2] and h == im.shape[1]:
        return im
    return resize_image(im, w, h)


def crop_image(im, dx, dy, w, h):
    """darknet's crop_image: the w x h window at (dx, dy); coordinates outside ``im`` are clamped to its edge
    (the border pixels repeat), not zero-filled."""
    im = np.asarray(im, dtype=np.float32)
    _, ih, iw = im.shape
    rows = np.clip(np.arange(h) + dy, 0, ih - 1)
    cols = np.clip(np.arange(w) + dx, 0, iw - 1)
    return np.ascontiguousarray(im[:, rows][:, :, cols])


def center_crop_image(im, w, h):
    """darknet's center_crop_image: the centred largest square, resized to w x h."""
    _, ih, iw = im.shape
    m = min(iw, ih)
    return resize_image(crop_image(im, (iw - m) // 2, (ih - m) // 2, m, m), w, h)


# The short name other modules use for it.
center_crop = center_crop_image


def rgbgr_image(im):
    """Swap the first and third planes in place (darknet's rgbgr_image). Returns ``im``."""
    im[[0, 2]] = im[[2, 0]]
    return im


# ---------------------------------------------------------------------------------------------------------
# Drawing and saving
# ---------------------------------------------------------------------------------------------------------

_COLORS = np.array([[1, 0, 1], [0, 0, 1], [0, 1, 1], [0, 1, 0], [1, 1, 0], [1, 0, 0]], dtype=np.float32)


def get_color(c, x, max):  # noqa: A002 - darknet's parameter name
    """darknet's get_color: channel c (0 = blue, 1 = green, 2 = red in darknet's calls) of the colour for
    position x of max, interpolated along darknet's 6-colour ramp; float32 like darknet."""
    ratio = np.float32(np.float32(x) / np.float32(max)) * np.float32(5)
    i = math.floor(ratio)
    j = math.ceil(ratio)
    ratio = np.float32(ratio - np.float32(i))
    return np.float32((np.float32(1) - ratio) * _COLORS[i, c] + ratio * _COLORS[j, c])


def class_color(cls, classes):
    """(r, g, b) floats darknet's draw_detections uses for class ``cls`` of ``classes``."""
    offset = (cls * 123457) % classes
    return get_color(2, offset, classes), get_color(1, offset, classes), get_color(0, offset, classes)


@njit(cache=True)
def _draw_box(planes, x1, y1, x2, y2, v0, v1, v2):
    """darknet's draw_box on 3 planes (any strides): clamp the corners, then set the 4 edges."""
    h, w = planes.shape[1], planes.shape[2]
    x1 = min(max(x1, 0), w - 1)
    x2 = min(max(x2, 0), w - 1)
    y1 = min(max(y1, 0), h - 1)
    y2 = min(max(y2, 0), h - 1)
    for i in range(x1, x2 + 1):
        planes[0, y1, i] = v0
        planes[0, y2, i] = v0
        planes[1, y1, i] = v1
        planes[1, y2, i] = v1
        planes[2, y1, i] = v2
        planes[2, y2, i] = v2
    for i in range(y1, y2 + 1):
        planes[0, i, x1] = v0
        planes[0, i, x2] = v0
        planes[1, i, x1] = v1
        planes[1, i, x2] = v1
        planes[2, i, x1] = v2
        planes[2, i, x2] = v2


def _byte(v):
    """darknet's save_image conversion of one float: (unsigned char)(255 * v), float32, truncated."""
    return int(np.clip(np.float32(255) * np.float32(v), 0, 255))


def _planes_and_values(im, r, g, b):
    """RGB planes view of ``im`` plus the colour in its dtype.

    float (c, h, w): darknet's own image (c >= 3). uint8 (h, w, 3): an OpenCV BGR image; the colour becomes
    the bytes darknet's save_image would have written for it."""
    if im.dtype == np.uint8:
        if im.ndim != 3 or im.shape[2] != 3:
            raise ValueError(f"expected a BGR uint8 (h, w, 3) image, got shape {im.shape}")
        planes = im.transpose(2, 0, 1)[::-1]
        return planes, (np.uint8(_byte(r)), np.uint8(_byte(g)), np.uint8(_byte(b)))
    if im.ndim != 3 or im.shape[0] < 3:
        raise ValueError(f"expected a (3, h, w) float image, got shape {im.shape}")
    return im, (im.dtype.type(r), im.dtype.type(g), im.dtype.type(b))


def draw_box(im, x1, y1, x2, y2, r, g, b):
    """darknet's draw_box, in place. ``im`` is a float (3, h, w) image or a uint8 BGR (h, w, 3) one."""
    planes, (v0, v1, v2) = _planes_and_values(im, r, g, b)
    _draw_box(planes, int(x1), int(y1), int(x2), int(y2), v0, v1, v2)
    return im


def draw_box_width(im, x1, y1, x2, y2, w, r, g, b):
    """darknet's draw_box_width: ``w`` nested boxes, each one pixel further inside. In place."""
    planes, (v0, v1, v2) = _planes_and_values(im, r, g, b)
    x1, y1, x2, y2 = int(x1), int(y1), int(x2), int(y2)
    for i in range(int(w)):
        _draw_box(planes, x1 + i, y1 + i, x2 - i, y2 - i, v0, v1, v2)
    return im


def labels_from_probs(probs, thresh):
    """Per detection, the classes whose probability is above ``thresh``, in class order (darknet's label
    rule: the first one picks the colour, all of them are named). Detections with none get an empty list."""
    probs = np.asarray(probs)
    return [list(np.flatnonzero(row > thresh)) for row in probs]


# Height in pixels of darknet's label glyphs (data/labels/*_N.png) for its 8 font sizes.
_GLYPH_H = (11, 22, 32, 43, 53, 64, 74, 84)


def box_pixels(box, im_w, im_h):
    """darknet's box -> (left, right, top, bot) pixel rule in draw_detections (double math, truncation,
    then left/top clamped at 0 and right/bot at the last column/row)."""
    x, y, w, h = (float(np.float32(v)) for v in box)
    left = int((x - w / 2.0) * im_w)
    right = int((x + w / 2.0) * im_w)
    top = int((y - h / 2.0) * im_h)
    bot = int((y + h / 2.0) * im_h)
    left = max(left, 0)
    right = min(right, im_w - 1)
    top = max(top, 0)
    bot = min(bot, im_h - 1)
    return left, right, top, bot


def draw_detections(img, boxes, labels, names, classes, width=None, draw_labels=True, tags=None):
    """Draw detections the way darknet's ``detect`` does, in place on a uint8 BGR (h, w, 3) image.

    boxes: (n, 4) centre x, centre y, width, height relative to the image (0..1).
    labels: per box, a class id or a sequence of class ids (those above threshold, in class order; the first
    picks the colour, all are named, joined by ", "); boxes with an empty sequence are skipped.
    names: class names; classes: the number of classes (darknet's colour spread uses it).
    width: line width; default darknet's int(h * .006), which is 0 (no outline) under 167 pixels.
    tags: per box, text written after its names (a track id), or None.
    The label tag is a filled box in the class colour with black text, above the box (or inside it when there
    is no room), as darknet places it; the text is OpenCV's Hershey font instead of darknet's bitmap font.
    Returns ``img``.
    """
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError("draw_detections draws on a uint8 BGR (h, w, 3) image; use to_bgr8() first")
    im_h, im_w = img.shape[:2]
    if width is None:
        width = int(im_h * .006)
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    tags = [""] * len(boxes) if tags is None else tags
    for box, lab, tag in zip(boxes, labels, tags):
        ids = [int(lab)] if np.ndim(lab) == 0 else [int(v) for v in lab]
        if not ids:
            continue
        cls = ids[0]
        r, g, b = class_color(cls, classes)
        left, right, top, bot = box_pixels(box, im_w, im_h)
        draw_box_width(img, left, top, right, bot, width, r, g, b)
        if draw_labels:
            text = ", ".join(str(names[i]) for i in ids) + (f" {tag}" if tag else "")
            _draw_label(img, top + width, left, text, (_byte(b), _byte(g), _byte(r)))
    return img


def _draw_label(img, row, col, text, bgr):
    """A filled tag in ``bgr`` with black text; sized and placed like darknet's get_label/draw_label."""
    im_h, im_w = img.shape[:2]
    size = min(int(im_h * .03) // 10, 7)
    glyph_h = _GLYPH_H[size]
    border = int(glyph_h * .25)
    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = glyph_h * 0.62 / 22.0  # Hershey simplex caps are ~22 px tall at scale 1
    thick = max(1, int(round(scale * 1.6)))
    (tw, th), _ = cv2.getTextSize(text, font, scale, thick)
    tag_h = glyph_h + 2 * border
    tag_w = tw + 2 * border
    if row - tag_h >= 0:
        row -= tag_h
    if row >= im_h or col >= im_w:
        return
    x2 = min(col + tag_w, im_w) - 1
    y2 = min(row + tag_h, im_h) - 1
    cv2.rectangle(img, (col, row), (x2, y2), bgr, thickness=-1)
    baseline_y = row + border + (glyph_h + th) // 2
    cv2.putText(img, text, (col + border, baseline_y), font, scale, (0, 0, 0), thick, cv2.LINE_AA)


def to_bgr8(im):
    """A darknet float (c, h, w) image -> uint8 BGR (h, w, 3) with save_image's (unsigned char)(255 * v)
    truncation (values clamped to 0..255 first). One channel is replicated."""
    im = np.asarray(im, dtype=np.float32)
    if im.ndim != 3:
        raise ValueError(f"expected a (c, h, w) image, got shape {im.shape}")
    if im.shape[0] == 1:
        im = np.repeat(im, 3, axis=0)
    return _to_bgr8(np.ascontiguousarray(im[:3]))


def from_bgr8(bgr, rgb=False):
    """An OpenCV uint8 BGR (h, w, 3) image (cv2.imread's, a video frame's) -> darknet's float32 (3, h, w) RGB
    image, converted as load_image converts OpenCV's pixels (byte / 255): the same decoded pixels give the same
    floats, bit for bit. `rgb`: the array's channels are in RGB order (PIL's, imageio's) instead."""
    pixels = np.asarray(bgr)
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ImageError(f"expected a uint8 (h, w, 3) {'RGB' if rgb else 'BGR'} image, got a {pixels.dtype} array "
                         f"of shape {pixels.shape}")
    return _bytes_to_image(pixels[:, :, ::-1] if rgb else pixels, "<frame>")


@njit(cache=True, parallel=True)
def _to_bgr8(im):
    _, h, w = im.shape
    out = np.empty((h, w, 3), np.uint8)
    for y in prange(h):
        for x in range(w):
            for k in range(3):
                v = np.float32(255) * im[k, y, x]
                if not v > 0:
                    v = np.float32(0)
                if v > 255:
                    v = np.float32(255)
                out[y, x, 2 - k] = np.uint8(int(v))
    return out


_WRITE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tga")


def save_image(im, path, quality=80):
    """Write ``im`` (a darknet float (c, h, w) image, or a uint8 BGR (h, w, 3) one) to ``path``.

    Like darknet's save_image, a path without an image extension gets ".jpg" appended and JPEGs use
    quality 80. PNG/BMP/JPEG are encoded by OpenCV and written atomically; TGA is refused (OpenCV cannot write it).
    Returns the path written."""
    name = os.fspath(path)
    ext = os.path.splitext(name)[1].lower()
    if ext not in _WRITE_EXTS:
        name += ".jpg"
        ext = ".jpg"
    if ext == ".tga":
        raise ImageError(f"cannot write image {name}: TGA output is not supported")
    arr = np.asarray(im)
    if arr.dtype != np.uint8:
        arr = to_bgr8(arr)
    elif arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected a uint8 BGR (h, w, 3) image, got shape {arr.shape}")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, arr, params)
    if not ok:
        raise ImageError(f"cannot write image {name}: encoding failed")
    from .weights import atomic_write
    atomic_write(name, buf.tobytes())   # whole or not at all: demo's -prefix frames when a signal stops it
    return name


def save_image_darknet(im, name, quality=80):
    """darknet's save_image byte for byte: `name`.jpg from the bytes (unsigned char)(255 * v) through darknet's
    own JPEG encoder (pydarknet.files.jpeg_write, stb_image_write's; slower than save_image's OpenCV, and without its
    colour subsampling), written atomically. Returns the path written."""
    from .jpeg_write import encode_jpeg
    from .weights import atomic_write
    path = f"{os.fspath(name)}.jpg"
    rgb = np.ascontiguousarray(to_bgr8(im)[:, :, ::-1])
    atomic_write(path, encode_jpeg(rgb, quality))
    return path
