"""Detector training batches the AlexeyAB fork's way (its data.c load_data_detection, OpenCV build).

pjreddie's pipeline (data.py) keeps the image's aspect ratio jittered and places it on a grey canvas; the fork
instead crops: each side of the image moves in or out by its own random amount (up to `jitter` of the image
size, plus the [yolo] layer's `resize` range), the crop is padded with the image's mean colour where it leaves
the image, and stretched to the network size. Then, in this order: horizontal `flip`, hue/saturation/exposure
in OpenCV's 8-bit HSV, `blur`, `gaussian_noise`. With `letter_box=1` the crop is widened (or heightened) to the
network's aspect ratio first, so the image is not distorted. With `mosaic=1`, half the images are four images
cut at a random point (cut_x, cut_y) and put together, each quarter taken from the part of its image next to
the cut (shifted past the padding), its boxes moved with it (`mosaic_bound=1` clips them to their quarter).

Images go through the pipeline as 8-bit levels, as the fork's OpenCV Mats do, and come out as float32 0..1.
Truths are (max_boxes, 5) float32 rows ``x y w h class`` like pjreddie's pipeline (the fork's track id column
is left out: only track=0 is supported). Boxes follow the fork's rules: shuffled, moved with the crop, clamped
to the image, cut to `max_boxes`, then those under one network pixel wide or high dropped; in a mosaic the
quarters' boxes are added in turn while room is left (the fork's blend_truth_mosaic).

Randomness comes from the numpy Generator passed in (not the fork's rand() stream): a batch is a function of
the generator's state. The fork decides "mosaic or not" once per loading thread's share of a batch; here once
per image, with the same probability 1/2.
"""
import functools
from dataclasses import dataclass

import numpy as np

from ...files.config import DarknetError
from ...files.labels import label_path, read_labels
from ...kernels import augment as K
from .augment import (correct_boxes, load_training_image, naming, nonzero, rand_scale, rand_uniform,
                      randomize_boxes)

__all__ = ["AbOptions", "Augmentation", "draw_augmentation", "crop_sides", "fill_truth_detection_ab",
           "augment_image", "load_piece", "mosaic_shifts", "paste_mosaic_piece", "blend_truth_mosaic",
           "load_mosaic_image", "load_data_detection_ab", "DetectionDatasetAB"]

_F32 = np.float32


@dataclass(frozen=True)
class AbOptions:
    """The fork's augmentation settings ([net] and the last [yolo] layer of its cfg)."""
    max_boxes: int = 200
    jitter: float = 0.2
    resize: float = 1.0
    hue: float = 0.0
    saturation: float = 1.0
    exposure: float = 1.0
    flip: bool = True
    blur: int = 0
    gaussian_noise: int = 0
    mosaic: bool = False
    mosaic_bound: bool = False
    letter_box: bool = False


@dataclass
class Augmentation:
    """The random choices for one image (the fork draws them per image when track=0)."""
    resize_r1: float
    resize_r2: float
    r1: float
    r2: float
    r3: float
    r4: float
    flip: bool
    dhue: float
    dsat: float
    dexp: float
    blur: int
    gaussian_noise: int


def _random_float(rng):
    return _F32(rng.random())


def draw_augmentation(rng, opt):
    """One image's random choices: the four crop sides' and the two resize fractions, flip, the HSV factors
    (hue in [-hue, hue], saturation/exposure by rand_scale), blur (none, background only, or the whole image, one
    chance in three each) and noise (one chance in two)."""
    resize_r1, resize_r2 = _random_float(rng), _random_float(rng)
    r1, r2, r3, r4 = (_random_float(rng) for _ in range(4))
    flip = bool(rng.integers(2)) if opt.flip else False
    dhue = rand_uniform(rng, -opt.hue, opt.hue)
    dsat = rand_scale(rng, opt.saturation)
    dexp = rand_scale(rng, opt.exposure)
    blur = 0
    if opt.blur:
        blur = (0, 1, opt.blur)[int(rng.integers(3))]
    noise = opt.gaussian_noise if opt.gaussian_noise and rng.integers(2) else 0
    return Augmentation(resize_r1, resize_r2, r1, r2, r3, r4, flip, dhue, dsat, dexp, blur, noise)


def _between(low, high, fraction):
    """The fork's rand_precalc_random: low + fraction * (high - low) in float32, the bounds ordered."""
    low, high = _F32(low), _F32(high)
    if high < low:
        low, high = high, low
    return _F32(_F32(fraction) * _F32(high - low) + low)


def _trunc(v):
    """C's float-to-int conversion (towards zero)."""
    return int(np.trunc(np.float64(v)))


def crop_sides(ow, oh, w, h, opt, aug):
    """How far each side of the ow x oh image moves (positive: into the image, negative: out of it, padded):
    (pleft, pright, ptop, pbot), whole pixels, as the fork computes them before any mosaic corner move."""
    dw, dh = _trunc(_F32(ow) * _F32(opt.jitter)), _trunc(_F32(oh) * _F32(opt.jitter))
    resize = _F32(opt.resize)
    down = _F32(1 / resize) if resize > 1 else resize
    up = _F32(1 / resize) if resize < 1 else resize
    min_rdw = _trunc(_F32(ow) * _F32(1 - _F32(1 / down)) / _F32(2))   # <= 0: the crop grows
    min_rdh = _trunc(_F32(oh) * _F32(1 - _F32(1 / down)) / _F32(2))
    max_rdw = _trunc(_F32(ow) * _F32(1 - _F32(1 / up)) / _F32(2))     # >= 0: the crop shrinks
    max_rdh = _trunc(_F32(oh) * _F32(1 - _F32(1 / up)) / _F32(2))
    if resize < 1:  # downsizing only
        max_rdw = max_rdh = 0
    pleft = _trunc(_between(-dw, dw, aug.r1))
    pright = _trunc(_between(-dw, dw, aug.r2))
    ptop = _trunc(_between(-dh, dh, aug.r3))
    pbot = _trunc(_between(-dh, dh, aug.r4))
    # one random fraction for left and top, another for right and bottom: the same zoom on both axes
    pleft = _trunc(pleft + _between(min_rdw, max_rdw, aug.resize_r1))
    pright = _trunc(pright + _between(min_rdw, max_rdw, aug.resize_r2))
    ptop = _trunc(ptop + _between(min_rdh, max_rdh, aug.resize_r1))
    pbot = _trunc(pbot + _between(min_rdh, max_rdh, aug.resize_r2))
    if opt.letter_box:
        # pad the shorter relative side so that the crop has the network's aspect ratio
        net_ar = _F32(_F32(w) / _F32(h))
        if _F32(_F32(_F32(ow) / _F32(oh)) / net_ar) > 1:
            delta = _F32(_F32(_F32(ow) / net_ar - _F32(oh)) / _F32(2))
            ptop, pbot = _trunc(_F32(ptop) - delta), _trunc(_F32(pbot) - delta)
        else:
            delta = _F32(_F32(_F32(oh) * net_ar - _F32(ow)) / _F32(2))
            pleft, pright = _trunc(_F32(pleft) - delta), _trunc(_F32(pright) - delta)
    return pleft, pright, ptop, pbot


def _move_to_corner(sides, piece, flip):
    """The fork's move of a mosaic quarter's crop ("so that most of it is visible"): on each axis the margins of
    both sides go to one side, the other side keeping the image's edge -- the left side for the quarters on the
    left when not flipped, mirrored for those on the right or when flipped; the top for the upper quarters."""
    pleft, pright, ptop, pbot = sides
    if (piece in (1, 3)) != flip:
        pleft, pright = pleft + pright, 0
    else:
        pleft, pright = 0, pleft + pright
    if piece in (0, 1):
        ptop, pbot = 0, ptop + pbot
    else:
        ptop, pbot = ptop + pbot, 0
    return pleft, pright, ptop, pbot


def fill_truth_detection_ab(labels, max_boxes, flip, pleft, ptop, swidth, sheight, ow, oh, w, h, rng):
    """The fork's fill_truth_detection for a crop: shuffle, move the boxes with the crop (and flip), clamp to the
    image, keep the first `max_boxes`, drop those under one network pixel (1/w, 1/h) wide or high.

    Returns (truth (max_boxes, 5) float32 rows x y w h class, zero rows after the last; min_w_h: the smallest
    side of a kept box in network pixels, an integer, 0 without boxes -- the fork limits blur with it)."""
    truth = np.zeros((max_boxes, 5), np.float32)
    sx = _F32(_F32(swidth) / _F32(ow))
    sy = _F32(_F32(sheight) / _F32(oh))
    dx = _F32(_F32(_F32(pleft) / _F32(ow)) / sx)
    dy = _F32(_F32(_F32(ptop) / _F32(oh)) / sy)
    boxes = randomize_boxes(np.array(labels, dtype=np.float32, copy=True).reshape(-1, 5), rng)
    boxes = correct_boxes(boxes, dx, dy, _F32(1 / float(sx)), _F32(1 / float(sy)), flip)[:max_boxes]
    lowest_w, lowest_h = _F32(_F32(1) / _F32(w)), _F32(_F32(1) / _F32(h))
    keep = (boxes[:, 2] >= lowest_w) & (boxes[:, 3] >= lowest_h) & (boxes[:, 0] > 0) & (boxes[:, 1] > 0)
    boxes = boxes[keep]
    truth[:len(boxes)] = boxes
    min_w_h = 0
    for bw, bh in zip(boxes[:, 2] * _F32(w), boxes[:, 3] * _F32(h)):
        if min_w_h == 0 or min_w_h > bw:
            min_w_h = _trunc(bw)
        if min_w_h > bh:
            min_w_h = _trunc(bh)
    return truth, min_w_h


def _gaussian_taps(ksize):
    """cv::getGaussianKernel(ksize, sigma=0) as float32: OpenCV's fixed binomial taps up to 7, else the sampled
    Gaussian of sigma 0.3 * ((ksize - 1) / 2 - 1) + 0.8."""
    fixed = {1: [1.0], 3: [0.25, 0.5, 0.25], 5: [0.0625, 0.25, 0.375, 0.25, 0.0625],
             7: [0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125]}
    if ksize in fixed:
        return np.array(fixed[ksize], np.float32)
    sigma = 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8
    x = np.arange(ksize) - (ksize - 1) / 2
    taps = np.exp(-x * x / (2 * sigma * sigma))
    return (taps / taps.sum()).astype(np.float32)


def _keep_boxes_sharp(blurred, sharp, truth):
    """blur=1 blurs the background only: each truth box's pixels (the fork's integer rectangle, clipped to the
    image) are copied back from the sharp image."""
    _, h, w = sharp.shape
    for x, y, bw, bh, _ in truth[truth[:, 0] != 0]:
        left, top = _trunc((float(x) - float(bw) / 2) * w), _trunc((float(y) - float(bh) / 2) * h)
        right, bottom = left + _trunc(bw * _F32(w)), top + _trunc(bh * _F32(h))
        left, top, right, bottom = max(left, 0), max(top, 0), min(right, w), min(bottom, h)
        if right > left and bottom > top:
            blurred[:, top:bottom, left:right] = sharp[:, top:bottom, left:right]
    return blurred


def _crop(src, pleft, ptop, swidth, sheight):
    """The swidth x sheight window of `src` with its corner at (pleft, ptop), filled with the image's mean
    colour (rounded to levels) where it leaves the image."""
    c, oh, ow = src.shape
    if (pleft, ptop, swidth, sheight) == (0, 0, ow, oh):
        return src
    mean = np.rint(src.reshape(c, -1).mean(axis=1)).astype(np.uint8)
    window = np.empty((c, sheight, swidth), np.uint8)
    window[:] = mean[:, None, None]
    left, top = max(pleft, 0), max(ptop, 0)
    right, bottom = min(pleft + swidth, ow), min(ptop + sheight, oh)
    if right > left and bottom > top:
        window[:, top - ptop:bottom - ptop, left - pleft:right - pleft] = src[:, top:bottom, left:right]
    return window


@functools.cache
def opencv_hsv_block():
    """The pixels per block that this CPU's OpenCV truncates in cvtColor's 8-bit HSV to RGB (its vector loop's
    width: 32 with AVX2, 64 with AVX-512; 0 if it rounds every pixel), which the fork's HSV distortion runs
    through: a probe image converted both ways, against the kernel's readings of it."""
    import cv2
    rgb = np.random.default_rng(0).integers(0, 256, (4, 120, 3), dtype=np.uint8)   # 64, 96 or 112 in blocks
    expected = cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV), cv2.COLOR_HSV2RGB)
    planes = np.ascontiguousarray(rgb.transpose(2, 0, 1))
    for block in (64, 32, 16, 8, 0):
        if np.array_equal(K.distort_hsv_u8(planes.copy(), _F32(0), _F32(1), _F32(1), block).transpose(1, 2, 0),
                          expected):
            return block
    return 0   # an OpenCV that converts otherwise: the rounding every pixel gets on the widest vectors' tails


def augment_image(src, w, h, pleft, ptop, swidth, sheight, aug, blur, truth, rng):
    """The fork's image_data_augmentation on an 8-bit (3, oh, ow) image: crop (padded with the image's mean) and
    stretch to w x h, flip, HSV distortion (only when it changes something), blur (1: a 17x17 Gaussian on the
    background, the truth boxes kept sharp; n > 1: a (n/2*2+1)-wide Gaussian on everything), noise. Returns uint8
    (3, h, w)."""
    sized = K.resize_linear_u8(_crop(src, pleft, ptop, swidth, sheight), w, h)
    if aug.flip:
        K.flip_image(sized)
    if aug.dsat != 1 or aug.dexp != 1 or aug.dhue != 0:
        K.distort_hsv_u8(sized, aug.dhue, aug.dsat, aug.dexp, opencv_hsv_block())
    if blur:
        blurred = K.gaussian_blur_u8(sized, _gaussian_taps(17 if blur == 1 else blur // 2 * 2 + 1))
        sized = _keep_boxes_sharp(blurred, sized, truth) if blur == 1 else blurred
    if aug.gaussian_noise:
        sigma = min(max(aug.gaussian_noise, 0), 127)
        K.add_noise_u8(sized, rng.standard_normal(sized.shape, dtype=np.float32) * _F32(sigma))
    return sized


def _levels(path):
    """An image file as 8-bit levels (3, h, w), as the fork's OpenCV load gives it."""
    return np.rint(load_training_image(path) * _F32(255)).astype(np.uint8)


def load_piece(path, w, h, opt, rng, classes=None, warned=None, mosaic_piece=None):
    """One augmented image: (uint8 (3, h, w), truth (max_boxes, 5), sides (pleft, pright, ptop, pbot, ow, oh):
    the crop's sides and the image size as the mosaic needs them, left and right swapped when flipped).

    `mosaic_piece` (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right) makes it a mosaic quarter: with
    chance 1/2 its crop moves to the corner (`_move_to_corner`)."""
    src = _levels(path)
    _, oh, ow = src.shape
    aug = draw_augmentation(rng, opt)
    sides = crop_sides(ow, oh, w, h, opt, aug)
    if mosaic_piece is not None and rng.integers(2) == 0:
        sides = _move_to_corner(sides, mosaic_piece, aug.flip)
    pleft, pright, ptop, pbot = sides
    swidth, sheight = ow - pleft - pright, oh - ptop - pbot
    if swidth <= 0 or sheight <= 0 or ow - pleft <= 0 or oh - ptop <= 0:
        # the fork's fallback for a crop with nothing left: the whole image (its pright/pbot stay as drawn)
        swidth, sheight, pleft, ptop = ow, oh, 0, 0
    labels = read_labels(label_path(path), classes, warned)
    truth, min_w_h = fill_truth_detection_ab(labels, opt.max_boxes, aug.flip, pleft, ptop, swidth, sheight,
                                             ow, oh, w, h, rng)
    blur = aug.blur
    if blur > 1 and min_w_h // 8 < blur:
        blur = min_w_h // 8   # the smallest object limits the blur (down to 1: background only, or none)
    image = augment_image(src, w, h, pleft, ptop, swidth, sheight, aug, blur, truth, rng)
    if aug.flip:
        pleft, pright = pright, pleft
    return image, truth, (pleft, pright, ptop, pbot, ow, oh)


def mosaic_shifts(sides, w, h, cut_x, cut_y):
    """How far a quarter's window moves past the padding on each side of its augmented image (whole network
    pixels, at most the quarter's size): (left_shift, right_shift, top_shift, bot_shift)."""
    pleft, pright, ptop, pbot, ow, oh = sides
    left = min(cut_x, max(0, -pleft * w // ow))
    top = min(cut_y, max(0, -ptop * h // oh))
    right = min(w - cut_x, max(0, -pright * w // ow))
    bottom = min(h - cut_y, max(0, -pbot * h // oh))
    return left, right, top, bottom


def _piece_offset(piece, w, h, cut_x, cut_y, shifts):
    """Where quarter `piece` starts in its augmented image: (x0, y0). The top-left quarter takes the window of
    the image's bottom-right part that ends at its padding, and so on: each quarter shows its image's side that
    touches the cut point."""
    left, right, top, bottom = shifts
    x0 = w - cut_x - right if piece in (0, 2) else left
    y0 = h - cut_y - bottom if piece in (0, 1) else top
    return x0, y0


def _quarter(piece, w, h, cut_x, cut_y):
    """The quarter's rectangle in the mosaic: (left, right, top, bottom), right/bottom excluded."""
    left, right = (0, cut_x) if piece in (0, 2) else (cut_x, w)
    top, bottom = (0, cut_y) if piece in (0, 1) else (cut_y, h)
    return left, right, top, bottom


def paste_mosaic_piece(canvas, image, piece, cut_x, cut_y, shifts):
    """Copy quarter `piece` of the mosaic from its augmented image into `canvas` (both (3, h, w))."""
    _, h, w = canvas.shape
    left, right, top, bottom = _quarter(piece, w, h, cut_x, cut_y)
    x0, y0 = _piece_offset(piece, w, h, cut_x, cut_y, shifts)
    canvas[:, top:bottom, left:right] = image[:, y0:y0 + bottom - top, x0:x0 + right - left]
    return canvas


def blend_truth_mosaic(truth, piece_truth, piece, w, h, cut_x, cut_y, shifts, mosaic_bound):
    """The fork's blend_truth_mosaic, in place on the mosaic's `truth`: quarter `piece`'s boxes moved as its
    pixels were, then clipped -- to the quarter with `mosaic_bound` (on whole pixels), else to the image (the
    fork's integer edges: an edge less than a pixel outside stays) -- and appended after the boxes already there,
    those left out of the image, not strictly inside it or under a pixel wide or high dropped. Only the first
    (max_boxes - boxes already there) of the quarter's boxes are considered."""
    boxes = len(truth)
    count = int(np.argmax(truth[:, 0] == 0)) if np.any(truth[:, 0] == 0) else boxes
    x0, y0 = _piece_offset(piece, w, h, cut_x, cut_y, shifts)
    bounds = _quarter(piece, w, h, cut_x, cut_y)
    fw, fh = _F32(w), _F32(h)
    # a pixel at x0 + i in the piece's image lands at bounds' left + i in the mosaic
    shift_x, shift_y = _F32(_F32(bounds[0] - x0) / fw), _F32(_F32(bounds[2] - y0) / fh)
    lowest_w, lowest_h = _F32(1) / fw, _F32(1) / fh
    slot = count
    for row in piece_truth[:boxes - count]:
        if row[0] == 0:
            break
        xb, yb = _F32(row[0] + shift_x), _F32(row[1] + shift_y)
        wb, hb = row[2], row[3]
        left, right = _trunc(_F32(xb - wb / _F32(2)) * fw), _trunc(_F32(xb + wb / _F32(2)) * fw)
        top, bot = _trunc(_F32(yb - hb / _F32(2)) * fh), _trunc(_F32(yb + hb / _F32(2)) * fh)
        if mosaic_bound:
            left, right = max(left, bounds[0]), min(right, bounds[1])
            top, bot = max(top, bounds[2]), min(bot, bounds[3])
            xb, wb = _F32(_F32(right + left) / _F32(2) / fw), _F32(_F32(right - left) / fw)
            yb, hb = _F32(_F32(bot + top) / _F32(2) / fh), _F32(_F32(bot - top) / fh)
        else:
            # move the edge that sticks out back onto the image border (the centre moves half as far)
            if left < 0:
                diff = _F32(_F32(left) / fw)
                xb, wb = _F32(xb - diff / _F32(2)), _F32(wb + diff)
            if right > w:
                diff = _F32(_F32(right - w) / fw)
                xb, wb = _F32(xb - diff / _F32(2)), _F32(wb - diff)
            if top < 0:
                diff = _F32(_F32(top) / fh)
                yb, hb = _F32(yb - diff / _F32(2)), _F32(hb + diff)
            if bot > h:
                diff = _F32(_F32(bot - h) / fh)
                yb, hb = _F32(yb - diff / _F32(2)), _F32(hb - diff)
            left, right = _trunc(_F32(xb - wb / _F32(2)) * fw), _trunc(_F32(xb + wb / _F32(2)) * fw)
            top, bot = _trunc(_F32(yb - hb / _F32(2)) * fh), _trunc(_F32(yb + hb / _F32(2)) * fh)
        inside = left >= 0 and right <= w and top >= 0 and bot <= h
        if inside and 0 < wb < 1 and 0 < hb < 1 and 0 < xb < 1 and 0 < yb < 1 and wb > lowest_w \
                and hb > lowest_h:
            truth[slot] = (xb, yb, wb, hb, row[4])
            slot += 1
    return truth


def load_mosaic_image(paths, w, h, opt, rng, classes=None, warned=None):
    """A mosaic of the four images `paths` (top-left, top-right, bottom-left, bottom-right) cut at a random point
    at least a fifth of the size from each border. Returns uint8 (3, h, w) and its truth (max_boxes, 5)."""
    cut_x = int(rng.integers(_trunc(_F32(w) * _F32(0.2)), _trunc(_F32(w) * _F32(0.8)) + 1))
    cut_y = int(rng.integers(_trunc(_F32(h) * _F32(0.2)), _trunc(_F32(h) * _F32(0.8)) + 1))
    canvas = np.zeros((3, h, w), np.uint8)
    truth = np.zeros((opt.max_boxes, 5), np.float32)
    for piece, path in enumerate(paths):
        with naming(path):
            image, piece_truth, sides = load_piece(path, w, h, opt, rng, classes, warned, mosaic_piece=piece)
            shifts = mosaic_shifts(sides, w, h, cut_x, cut_y)
            paste_mosaic_piece(canvas, image, piece, cut_x, cut_y, shifts)
            blend_truth_mosaic(truth, piece_truth, piece, w, h, cut_x, cut_y, shifts, opt.mosaic_bound)
    return canvas, truth


def load_data_detection_ab(paths, n, w, h, opt, rng, classes=None, warned=None):
    """A detector batch the fork's way: `n` images (with mosaic=1, each a mosaic of four with chance 1/2), drawn
    at random with replacement from `paths`. Returns x (n, 3, h, w) float32 0..1, y (n, max_boxes, 5) float32."""
    if not paths:
        raise DarknetError("no training images: the image list is empty")
    x = np.empty((n, 3, h, w), np.float32)
    y = np.empty((n, opt.max_boxes, 5), np.float32)
    for i in range(n):
        if opt.mosaic and rng.integers(2):
            picks = rng.integers(len(paths), size=4)
            image, y[i] = load_mosaic_image([paths[k] for k in picks], w, h, opt, rng, classes, warned)
        else:
            path = paths[int(rng.integers(len(paths)))]
            with naming(path):
                image, y[i], _ = load_piece(path, w, h, opt, rng, classes, warned)
        x[i] = image
        x[i] /= _F32(255)
    return x, y


def _refuse(net, key, value, why):
    """A [net] option the fork has and this pipeline does not: one line naming the cfg line."""
    return DarknetError(f"{net.options.where(key)}: [net] {key}={value}: {why}")


class DetectionDatasetAB:
    """Detector training data for an AlexeyAB network: the images of a list and the fork's augmentation settings.
    Picklable. `load_batch(n, rng, size=None)` returns (x, y) as load_data_detection_ab; `size` = (w, h)
    overrides the network size (random=1 resizing)."""

    def __init__(self, paths, width, height, options, classes=None):
        self.paths = list(paths)
        self.width, self.height = int(width), int(height)
        self.options = options
        self.classes = classes
        self.warned = set()

    @classmethod
    def for_network(cls, net, paths, classes=None):
        """The dataset darknet's train_detector builds for `net`: [net] augmentation options, the last layer's
        max boxes, jitter and resize. Options this pipeline does not do are refused (one line, naming the cfg)."""
        if net.track:
            raise _refuse(net, "track", net.track, "training on sequences of frames is not supported (set track=0)")
        if net.mixup:
            raise _refuse(net, "mixup", net.mixup, "mixing two images is not supported (set mixup=0 or mosaic=1)")
        if net.cutmix:
            raise _refuse(net, "cutmix", net.cutmix, "not supported for a detector (the fork ignores it): remove it")
        if net.mosaic and net.letter_box:
            raise _refuse(net, "letter_box", net.letter_box, "letter_box=1 with mosaic=1 is not supported (the fork "
                                                            "refuses it too): use only one of them")
        out = net.layers[-1]
        options = AbOptions(
            max_boxes=getattr(out, "max_boxes", 200), jitter=getattr(out, "jitter", 0.2),
            resize=getattr(out, "resize", 1.0), hue=net.hue, saturation=nonzero(net.saturation),
            exposure=nonzero(net.exposure), flip=bool(net.flip), blur=net.blur, gaussian_noise=net.gaussian_noise,
            mosaic=bool(net.mosaic), mosaic_bound=bool(net.mosaic_bound), letter_box=bool(net.letter_box))
        return cls(paths, net.w, net.h, options, classes)

    def load_batch(self, n, rng, size=None):
        w, h = size if size else (self.width, self.height)
        return load_data_detection_ab(self.paths, n, w, h, self.options, rng, self.classes, self.warned)
