"""Training-data augmentation kernels: the pixel loops of darknet's image.c that the data loader runs.

Images are float32 (c, h, w) planes. Every kernel follows pjreddie's arithmetic in float32 (double where the C
code promotes to double), and releases the GIL (`nogil=True`) so loader threads can run them side by side.
`error_model="numpy"`: darknet's HSV conversion divides 0 by 0 for grey pixels (the NaN hue is never used).
"""
import math

import numpy as np
from numba import njit

_F0 = np.float32(0.0)
_F1 = np.float32(1.0)


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
                index = int(math.floor(h6))
                f = np.float32(h6 - np.float32(index))
                p = np.float32(v * np.float32(one - s))
                q = np.float32(v * np.float32(one - np.float32(s * f)))
                t = np.float32(v * np.float32(one - np.float32(s * np.float32(one - f))))
                if index == 0:
                    r, g, b = v, t, p
                elif index == 1:
                    r, g, b = q, v, p
                elif index == 2:
                    r, g, b = p, v, t
                elif index == 3:
                    r, g, b = p, q, v
                elif index == 4:
                    r, g, b = t, p, v
                else:
                    r, g, b = v, p, q
            # constrain_image
            im[0, y, x] = zero if r < zero else (one if r > one else r)
            im[1, y, x] = zero if g < zero else (one if g > one else g)
            im[2, y, x] = zero if b < zero else (one if b > one else b)
    return im
