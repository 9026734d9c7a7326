"""Training-data augmentation kernels: the pixel loops of darknet's image.c that the data loader runs.

Images are float32 (c, h, w) planes. Every kernel follows pjreddie's arithmetic in float32 (double where the C
code promotes to double), and releases the GIL (`nogil=True`) so loader threads can run them side by side.
`error_model="numpy"`: darknet's HSV conversion divides 0 by 0 for grey pixels (the NaN hue is never used).

The AlexeyAB fork augments with OpenCV on 8-bit images; its kernels (after pjreddie's below) take and give
uint8 (c, h, w) planes and round to the nearest level where OpenCV's 8-bit operations do.
"""
import math

import numpy as np
from numba import njit

_F0 = np.float32(0.0)
_F1 = np.float32(1.0)


@njit(cache=True, inline="always")
def _sector_rgb(h6, s, v):
    """(r, g, b) in float32 of hue h6 (sixths of a turn, 0 <= h6 < 6), saturation s > 0 and value v: the sector
    formula that darknet's hsv_to_rgb and OpenCV's HSV2RGB both use."""
    sector = int(math.floor(h6))
    f = np.float32(h6 - np.float32(sector))
    p = np.float32(v * np.float32(_F1 - s))
    q = np.float32(v * np.float32(_F1 - np.float32(s * f)))
    t = np.float32(v * np.float32(_F1 - np.float32(s * np.float32(_F1 - f))))
    return _by_sector(sector, v, p, q, t)


@njit(cache=True, nogil=True, inline="always")
def _sector_rgb_fused(h6, s, v):
    """_sector_rgb with 1 - s*f and 1 - s*(1 - f) each one fused multiply-add, as OpenCV's vector HSV to RGB
    computes them (GCC contracts its multiply and subtract)."""
    sector = int(math.floor(h6))
    f = np.float32(h6 - np.float32(sector))
    p = np.float32(v * np.float32(_F1 - s))
    q = np.float32(v * _fma32(-s, f, _F1))
    t = np.float32(v * _fma32(-s, np.float32(_F1 - f), _F1))
    return _by_sector(sector, v, p, q, t)


@njit(cache=True, nogil=True, inline="always")
def _by_sector(sector, v, p, q, t):
    """(r, g, b) of a hue's sector from the formula's four values."""
    if sector == 0:
        return v, t, p
    if sector == 1:
        return q, v, p
    if sector == 2:
        return p, v, t
    if sector == 3:
        return p, q, v
    if sector == 4:
        return t, p, v
    return v, p, q


@njit(cache=True, nogil=True, inline="always")
def _fma32(a, b, c):
    """a * b + c with one rounding to float32: the double product of two floats is exact, and c (1, or a
    whole sector) added to it in double is exact too at these magnitudes."""
    return np.float32(np.float64(a) * np.float64(b) + np.float64(c))


@njit(cache=True, nogil=True, inline="always")
def _pixel_or_zero(im, x, y, c):
    """darknet's get_pixel_extend: 0 outside the image."""
    if x < 0 or y < 0 or x >= im.shape[2] or y >= im.shape[1]:
        return np.float32(0.0)
    return im[c, y, x]


@njit(cache=True, nogil=True, inline="always")
def _bilinear(im, x, y, c):
    """darknet's bilinear_interpolate at float32 (x, y): neighbours outside the image count as 0."""
    ix = int(math.floor(x))
    iy = int(math.floor(y))
    dx = np.float32(x - np.float32(ix))
    dy = np.float32(y - np.float32(iy))
    one = np.float32(1.0)
    a = np.float32(np.float32((one - dy) * (one - dx)) * _pixel_or_zero(im, ix, iy, c))
    b = np.float32(np.float32(dy * (one - dx)) * _pixel_or_zero(im, ix, iy + 1, c))
    d = np.float32(np.float32((one - dy) * dx) * _pixel_or_zero(im, ix + 1, iy, c))
    e = np.float32(np.float32(dy * dx) * _pixel_or_zero(im, ix + 1, iy + 1, c))
    return np.float32(np.float32(np.float32(a + b) + d) + e)


@njit(cache=True, nogil=True)
def place_image(im, w, h, dx, dy, canvas):
    """darknet's place_image: draw `im` scaled to w x h with its corner at (dx, dy) on `canvas` (in place).

    Destination pixel (x, y) samples the source at (x / w * im_w, y / h * im_h) bilinearly; pixels falling
    outside the canvas are dropped."""
    c_n, ih, iw = im.shape
    _, ch, cw = canvas.shape
    fw = np.float32(w)
    fh = np.float32(h)
    fiw = np.float32(iw)
    fih = np.float32(ih)
    for c in range(min(c_n, canvas.shape[0])):
        for y in range(h):
            ty = y + dy
            if ty < 0 or ty >= ch:
                continue
            ry = np.float32(np.float32(np.float32(y) / fh) * fih)
            for x in range(w):
                tx = x + dx
                if tx < 0 or tx >= cw:
                    continue
                rx = np.float32(np.float32(np.float32(x) / fw) * fiw)
                canvas[c, ty, tx] = _bilinear(im, rx, ry, c)
    return canvas


@njit(cache=True, nogil=True)
def rotate_crop(im, rad, s, w, h, dx, dy, aspect):
    """darknet's rotate_crop_image: a w x h window of `im` rotated by `rad` about the image centre, scaled by
    `s`, shifted by (dx, dy) and stretched horizontally by `aspect` (sample positions computed in double)."""
    c_n, ih, iw = im.shape
    out = np.empty((c_n, h, w), np.float32)
    cx = np.float32(iw / 2.0)
    cy = np.float32(ih / 2.0)
    rad64 = np.float64(rad)
    s64 = np.float64(s)
    a64 = np.float64(aspect)
    cr = math.cos(rad64)
    sr = math.sin(rad64)
    # the shift terms are float expressions in darknet (dx/s*aspect, dy/s); the rest is double
    shift_x = np.float64(np.float32(np.float32(dx / s) * aspect))
    shift_y = np.float64(np.float32(dy / s))
    for c in range(c_n):
        for y in range(h):
            for x in range(w):
                u = (x - w / 2.0) / s64 * a64 + shift_x
                v = (y - h / 2.0) / s64 + shift_y
                rx = np.float32(cr * u - sr * v + np.float64(cx))
                ry = np.float32(sr * u + cr * v + np.float64(cy))
                out[c, y, x] = _bilinear(im, rx, ry, c)
    return out


@njit(cache=True, nogil=True)
def flip_image(im):
    """darknet's flip_image: mirror every row left-right, in place."""
    c_n, h, w = im.shape
    for c in range(c_n):
        for y in range(h):
            for x in range(w // 2):
                t = im[c, y, w - x - 1]
                im[c, y, w - x - 1] = im[c, y, x]
                im[c, y, x] = t
    return im


@njit(cache=True, nogil=True, error_model="numpy")
def distort_image(im, hue, sat, val):
    """darknet's distort_image, in place on a 3-plane RGB image: to HSV (rgb_to_hsv), saturation *= sat,
    value *= val, hue += hue (wrapped once into 0..1), back to RGB (hsv_to_rgb), clamp to 0..1.

    Each pixel is independent, so the five passes darknet makes over the image are fused into one."""
    _, h, w = im.shape
    one = np.float32(1.0)
    zero = np.float32(0.0)
    hue = np.float32(hue)
    sat = np.float32(sat)
    val = np.float32(val)
    for y in range(h):
        for x in range(w):
            r = im[0, y, x]
            g = im[1, y, x]
            b = im[2, y, x]
            # rgb_to_hsv
            mx = (r if r > b else b) if r > g else (g if g > b else b)
            mn = (r if r < b else b) if r < g else (g if g < b else b)
            delta = np.float32(mx - mn)
            v = mx
            if mx == zero:
                s = zero
                hh = zero
            else:
                s = np.float32(delta / mx)
                if r == mx:
                    hh = np.float32(np.float32(g - b) / delta)
                elif g == mx:
                    hh = np.float32(np.float32(2.0) + np.float32(np.float32(b - r) / delta))
                else:
                    hh = np.float32(np.float32(4.0) + np.float32(np.float32(r - g) / delta))
                if hh < zero:
                    hh = np.float32(hh + np.float32(6.0))
                hh = np.float32(hh / np.float32(6.0))
            # scale saturation and value, shift hue
            s = np.float32(s * sat)
            v = np.float32(v * val)
            hh = np.float32(hh + hue)
            if hh > one:
                hh = np.float32(hh - one)
            if hh < zero:
                hh = np.float32(hh + one)
            # hsv_to_rgb
            h6 = np.float32(np.float32(6.0) * hh)
            if s == zero:
                r = v
                g = v
                b = v
            else:
                r, g, b = _sector_rgb(h6, s, v)
            # constrain_image
            im[0, y, x] = zero if r < zero else (one if r > one else r)
            im[1, y, x] = zero if g < zero else (one if g > one else g)
            im[2, y, x] = zero if b < zero else (one if b > one else b)
    return im


# ---------------------------------------------------------------------------------------------------------
# The AlexeyAB fork's augmentation (OpenCV on 8-bit images: its image_data_augmentation)
# ---------------------------------------------------------------------------------------------------------

@njit(cache=True, nogil=True, inline="always")
def _level(v):
    """A float to the nearest 8-bit level, ties to even, saturated to 0..255 (OpenCV's saturate_cast<uchar>:
    the fork's `hsv[1] *= dsat` meets ties whenever dsat is a multiple of 1/2)."""
    if v <= 0.0:
        return np.uint8(0)
    if v >= 255.0:
        return np.uint8(255)
    r = int(v + 0.5)
    if r - v == 0.5 and r & 1:
        r -= 1
    return np.uint8(r)


@njit(cache=True, nogil=True)
def _linear_taps(dst_size, src_size):
    """cv::resize INTER_LINEAR along one axis: for each destination index, the two source indices and the
    weight of the second (pixel centres aligned, the edge pixels repeated outside the source)."""
    first = np.empty(dst_size, np.int64)
    second = np.empty(dst_size, np.int64)
    weight = np.empty(dst_size, np.float32)
    scale = np.float32(np.float32(src_size) / np.float32(dst_size))
    for d in range(dst_size):
        f = np.float32(np.float32(np.float32(d) + np.float32(0.5)) * scale - np.float32(0.5))
        i = int(math.floor(f))
        weight[d] = np.float32(f - np.float32(i))
        first[d] = min(max(i, 0), src_size - 1)
        second[d] = min(max(i + 1, 0), src_size - 1)
    return first, second, weight


@njit(cache=True, nogil=True)
def resize_linear_u8(src, w, h):
    """cv::resize(INTER_LINEAR) of an 8-bit (c, h, w) image to w x h: bilinear with OpenCV's pixel-centre
    alignment, in float32, rounded to levels (OpenCV's fixed-point arithmetic can differ by one level)."""
    c_n, sh, sw = src.shape
    out = np.empty((c_n, h, w), np.uint8)
    x0, x1, fx = _linear_taps(w, sw)
    y0, y1, fy = _linear_taps(h, sh)
    one = np.float32(1.0)
    for c in range(c_n):
        for y in range(h):
            upper = src[c, y0[y]]
            lower = src[c, y1[y]]
            wy = fy[y]
            for x in range(w):
                wx = fx[x]
                top = np.float32(np.float32(upper[x0[x]]) * np.float32(one - wx) + np.float32(upper[x1[x]]) * wx)
                bottom = np.float32(np.float32(lower[x0[x]]) * np.float32(one - wx) + np.float32(lower[x1[x]]) * wx)
                out[c, y, x] = _level(np.float32(top * np.float32(one - wy) + bottom * wy))
    return out


@njit(cache=True, nogil=True)
def distort_hsv_u8(im, dhue, dsat, dexp, truncated_block=0):
    """The fork's HSV distortion, in place on an 8-bit RGB image, as OpenCV computes it: RGB to 8-bit HSV (hue in
    0..179, OpenCV's fixed-point rounding), hue += 179 * dhue, saturation *= dsat and value *= dexp each rounded
    and saturated to 0..255 (so a hue pushed below 0 stays 0 and one above 179 wraps around when converted back),
    then back to RGB. OpenCV's conversion back to 8 bits depends on the CPU it runs on: its vector loop
    truncates each row's pixels in whole blocks of its vector's byte count (`truncated_block`: 32 with AVX2, 64
    with AVX-512), and the rest of the row is rounded (0: every pixel; see train.data_ab.opencv_hsv_block)."""
    _, h, w = im.shape
    blocked = w - w % truncated_block if truncated_block else 0
    dhue = np.float32(dhue)
    dsat = np.float32(dsat)
    dexp = np.float32(dexp)
    for y in range(h):
        for x in range(w):
            r = np.int64(im[0, y, x])   # int() of a uint8 is unsigned in Numba: g - b would wrap
            g = np.int64(im[1, y, x])
            b = np.int64(im[2, y, x])
            v = max(r, g, b)
            diff = v - min(r, g, b)
            # OpenCV's RGB2HSV_b: 255/v and 30/diff as rounded multiples of 2^-12 (no ties occur at 8 bits)
            s = 0
            if v > 0:
                s = (diff * int(math.floor(1044480.0 / v + 0.5)) + (1 << 11)) >> 12
            hue = 0
            if diff > 0:
                if v == r:
                    hue = g - b
                elif v == g:
                    hue = b - r + 2 * diff
                else:
                    hue = r - g + 4 * diff
                hue = (hue * int(math.floor(122880.0 / diff + 0.5)) + (1 << 11)) >> 12
                if hue < 0:
                    hue += 180
            hh = np.float32(_level(np.float32(np.float32(hue) + np.float32(np.float32(179.0) * dhue))))
            # OpenCV multiplies by 1/255 (as float), not divides: the two differ in the last bit, which its
            # truncating vector loop shows
            ss = np.float32(np.float32(_level(np.float32(np.float32(s) * dsat))) * np.float32(1.0 / 255.0))
            vv = np.float32(np.float32(_level(np.float32(np.float32(v) * dexp))) * np.float32(1.0 / 255.0))
            # OpenCV's HSV2RGB for 8-bit input: hue in 180ths of a turn, wrapped into 0..6 sectors
            if ss == 0:
                rf = vv
                gf = vv
                bf = vv
            else:
                h6 = np.float32(hh * np.float32(6.0 / 180.0))
                if h6 >= np.float32(6.0):   # hue 180..255 (at most 8.5 sectors): once round is enough
                    h6 = np.float32(h6 - np.float32(6.0))
                if x < blocked:   # OpenCV's vector loop
                    rf, gf, bf = _sector_rgb_fused(h6, ss, vv)
                else:
                    rf, gf, bf = _sector_rgb(h6, ss, vv)
            for c, level in enumerate((rf, gf, bf)):
                v = np.float32(level * np.float32(255.0))
                im[c, y, x] = _level_down(v) if x < blocked else _level(v)
    return im


@njit(cache=True, nogil=True, inline="always")
def _level_down(v):
    """A float to the 8-bit level below it, saturated to 0..255 (OpenCV's v_trunc then v_pack_u)."""
    return np.uint8(0) if v <= 0.0 else np.uint8(255) if v >= 255.0 else np.uint8(int(v))


@njit(cache=True, nogil=True)
def _reflect101(n, r):
    """Source index of positions -r .. n-1+r under OpenCV's default filter border (BORDER_REFLECT_101:
    ... 2 1 | 0 1 2 ... n-1 | n-2 ...), position p at entry p + r."""
    index = np.empty(n + 2 * r, np.int64)
    for p in range(-r, n + r):
        i = p
        while n > 1 and (i < 0 or i >= n):
            i = -i if i < 0 else 2 * (n - 1) - i
        index[p + r] = i if n > 1 else 0
    return index


@njit(cache=True, nogil=True)
def gaussian_blur_u8(im, taps):
    """cv::GaussianBlur of an 8-bit image with the separable kernel `taps` (odd length, float32, sums to 1):
    rows then columns in float32, borders reflected (BORDER_REFLECT_101), rounded to levels. Returns a new image."""
    c_n, h, w = im.shape
    r = taps.shape[0] // 2
    across = _reflect101(w, r)
    down = _reflect101(h, r)
    rows = np.empty((h, w), np.float32)
    out = np.empty_like(im)
    for c in range(c_n):
        for y in range(h):
            for x in range(w):
                acc = np.float32(0.0)
                for k in range(2 * r + 1):
                    acc += taps[k] * np.float32(im[c, y, across[x + k]])
                rows[y, x] = acc
        for y in range(h):
            for x in range(w):
                acc = np.float32(0.0)
                for k in range(2 * r + 1):
                    acc += taps[k] * rows[down[y + k], x]
                out[c, y, x] = _level(acc)
    return out


@njit(cache=True, nogil=True)
def add_noise_u8(im, noise):
    """The fork's gaussian_noise, in place: cv::randn into an 8-bit image rounds each normal sample and saturates
    it to 0..255 (negative samples become 0, so the noise only brightens), then the sum saturates at 255."""
    c_n, h, w = im.shape
    for c in range(c_n):
        for y in range(h):
            for x in range(w):
                im[c, y, x] = _level(np.float32(np.float32(im[c, y, x]) + np.float32(_level(noise[c, y, x]))))
    return im
