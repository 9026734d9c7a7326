"""Convolutions in integers: the `--int16` products.

- The weights are rounded to 12-bit integers once per parameters, per output channel: a filter's unit is its
  largest |weight| / 2047 (`quantize_weights`).
- Each layer's input is rounded to 12-bit integers per image: its unit is the image's largest |value| / 2047
  (`image_words`).
- The products are summed in int32 by the chain kernel's register tiles (gemm._make_micro on int32 arrays):
  each 32-bit word holds two int16, adjacent channels, and one instruction multiplies the halves of two words
  and adds both products to a 32-bit lane: with AVX-VNNI or AVX512-VNNI one vpdpwssd, the sum's add included,
  twice a float32 FMA's multiply-adds per lane (written as the instruction itself: gemm._dpwssd); elsewhere
  pmaddwd (AVX2, AVX-512BW) and an add.
- The sums of a k block (at most gemm.KC words, 2 KC products) cannot overflow int32: 2 x 256 x 2047 x 2047
  < 2^31. Blocks are added in float32, then each filter's sums are multiplied by its unit times the image's as
  the output is stored (products.int16_convolution).

Why 12 bits and not int8: the instruction costs the same for any value that fits 16 bits, and int8 weights
(per output channel, the image in 16 bits) moved yolov3-tiny's, yolov4-tiny's and Yolo-Fastest's probabilities
by up to .095 and their boxes by .039 on the sample images, past the .02 and .01 docs/fidelity.md promises; 12 and 12
bits moved them by at most .008 and .002 (1023 x 4095 and 4095 x 1023 by .010 and .007).

Winograd's F(2x2, 3x3) in integers (`conv_int16_winograd`, for the F(2x2) layers of products._fast_tile's words rule): U
and V (kernels/winograd.py) are computed in float32 as the fast products do, then rounded to 12 bits, U per position and
filter, V per position (its 16 positions differ in scale); each position's product is the integer one above, scaled back
as the output transform reads it. F(2x2)'s transforms only add and subtract (and halve the weights), so they add little
to the rounding's error; F(4x4)'s, with coefficients up to 8, would.

Word layout: weights (filters, channel pairs, ky, kx) and the image (channel pairs, h, w), the even channel in
the low half, an odd channel count padded with a zero channel. im2col of the word image is then the B that the
tiles read, so gemm's drivers (the packed columns, conv_direct, the flat 1 x 1 product) run unchanged on words.
"""
import functools
import platform

import numpy as np
from numba import njit, prange

from .epilogue import NO_RESIDUAL_PLANES, NONE
from .gemm import KC, gemm_flat, lanes_for
from .winograd import peak_bits, transform_input2, transform_output2, transform_weights

WEIGHT_LEVELS = 2047     # 12 bits
IMAGE_LEVELS = 2047
assert 2 * KC * WEIGHT_LEVELS * IMAGE_LEVELS < 2 ** 31   # a k block's int32 sums cannot overflow


def _features():
    from numba.core.registry import cpu_target
    features = cpu_target.target_context.codegen().magic_tuple()[2]
    return lanes_for(features), {f[1:] for f in features.split(",") if f.startswith("+")}


@functools.cache
def uncompilable():
    """None where the int16 kernels compile: x86-64 with pmaddwd at the width of Numba's float vectors (SSE2,
    AVX2, AVX-512BW), else why not (one line)."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return f"the int16 products are written for x86-64 (this is {platform.machine()})"
    lanes, on = _features()
    needed = {16: "avx512bw", 8: "avx2", 4: "sse2"}[lanes]
    return None if needed in on else f"this CPU (as Numba compiles for it) lacks {needed}"


@functools.cache
def unavailable():
    """None where the int16 products pay: their kernels compile and the CPU has VNNI as Numba compiles for it
    (AVX512-VNNI where its vectors are AVX-512's, AVX-VNNI where they are AVX2's), else why not (one line).
    Without VNNI, pmaddwd and the add are two instructions: on a Zen 3 EPYC (AVX2) the int16 products ran 1.4x
    the float32 kernel's multiply-adds per second, and --fast's Winograd beat them (yolov3-tiny's convolutions
    35.6 against 31.6 ms, 2 threads); with VNNI the pair's one vpdpwssd does twice an FMA's multiply-adds."""
    why = uncompilable()
    if why:
        return why
    lanes, on = _features()
    vnni = "avx512vnni" if lanes == 16 else "avxvnni"
    if vnni not in on:
        return (f"this CPU (as Numba compiles for it) lacks {vnni}, without which the int16 products are no "
                f"faster than --fast's")
    return None


def quantize_weights(weights, channels, size):
    """A convolution's weights (filters, channels*size*size) as 12-bit values in the kernel's words (filters,
    pairs*size*size) int32, and each filter's unit (filters,) float32."""
    filters = weights.shape[0]
    w = weights.reshape(filters, channels, size, size).astype(np.float64)
    peak = np.abs(w).reshape(filters, -1).max(axis=1)
    units = np.where(peak > 0, peak / WEIGHT_LEVELS, 1.0)
    return pair_words(np.rint(w / units[:, None, None, None]).astype(np.int16)), units.astype(np.float32)


def pair_words(halves):
    """16-bit values (filters, channels, size, size), int16 or bf16's uint16 bits, as the kernels' 32-bit words
    (filters, pairs*size*size), int32 or uint32: channels 2q and 2q + 1 of tap (ky, kx) in word (q, ky, kx), the
    even one in the low half; an odd channel count padded with a zero channel."""
    filters, channels, size = halves.shape[:3]
    if channels % 2:
        halves = np.concatenate([halves, np.zeros((filters, 1, size, size), halves.dtype)], axis=1)
    pairs = halves.reshape(filters, -1, 2, size, size).transpose(0, 1, 3, 4, 2)
    words = np.ascontiguousarray(pairs).view(np.int32 if halves.dtype == np.int16 else np.uint32)
    return words.reshape(filters, -1)


@njit(cache=True, inline="always")
def _peak(values):
    """The largest |value| of a contiguous float32 array (or of winograd.peak_bits's bits), as a float32."""
    return np.array([peak_bits(values)], np.int32).view(np.float32)[0]


@njit(cache=True, inline="always")
def _round_pair(channels, q, start, scale, words):
    """words = channel rows 2q and 2q + 1 of channels (c, n), from `start` on, times scale, rounded to nearest:
    the even channel in each word's low 16 bits, the odd one in its high ones (0 where an odd count leaves it
    missing)."""
    c = channels.shape[0]
    low, high = channels[2 * q, start:], channels[min(2 * q + 1, c - 1), start:]
    keep_high = np.int32(-1) if 2 * q + 1 < c else np.int32(0)
    for i in range(words.size):
        lo = np.int32(np.rint(low[i] * scale))
        hi = np.int32(np.rint(high[i] * scale)) & keep_high
        words[i] = (lo & np.int32(0xFFFF)) | (hi << np.int32(16))


@njit(cache=True, parallel=True)
def _peaks(flat, parts):
    """parts[p] = the largest |value| of the p-th of len(parts) runs of flat (_peak)."""
    n = flat.size
    for p in prange(parts.size):
        parts[p] = _peak(flat[p * n // parts.size:(p + 1) * n // parts.size])


@njit(cache=True, parallel=True)
def _round_pairs(x, scale, words):
    """words (pairs, h, w) int32 = x (c, h, w) / the unit, rounded to nearest, channel pairs (see _round_pair)."""
    c, h, w = x.shape
    planes = x.reshape(c, h * w)
    for task in prange(words.shape[0] * h):
        p = task // h
        y = task - p * h
        _round_pair(planes, p, y * w, scale, words[p, y])


def image_words(x, words):
    """words (pairs, h, w) int32 = image x (c, h, w) in 12-bit halves (see the module's layout); returns the
    image's unit (float). A non-finite value makes every word 0 and the unit NaN: the sums come out NaN, as the
    float products' would."""
    parts = np.empty(64, np.float32)
    _peaks(x.reshape(-1), parts)
    peak = float(parts.max())
    if not np.isfinite(peak):
        words[...] = 0
        return float("nan")
    unit = peak / IMAGE_LEVELS if peak > 0 else 1.0
    _round_pairs(x, np.float32(1.0 / unit), words)
    return unit


def quantize_winograd_weights(weights, channels):
    """A 3x3 convolution's weights (filters, channels*9) as F(2x2)'s U (kernels.winograd.transform_weights)
    in 12-bit values: words (16, filters, pairs) int32 and units (16, filters) float32, per position and filter."""
    u = transform_weights(weights, channels, 2)
    words, units = zip(*(quantize_weights(np.ascontiguousarray(u[p]), channels, 1) for p in range(len(u))))
    return np.ascontiguousarray(np.stack(words)), np.stack(units)


@njit(cache=True, parallel=True)
def _round_positions(V, peaks, units, words):
    """words (positions, pairs, tiles) int32 = V (positions, channels, tiles) in units of each position's
    largest |value| / IMAGE_LEVELS (the largest of its channels' `peaks`, (positions, channels), winograd.peak_bits's
    bits), channel 2q in word q's low half and 2q + 1 in its high half (a missing last channel 0); the units go to
    units (positions,). A position holding a NaN or an infinity gets words 0 and the unit NaN: its sums come out
    NaN, as the float products' would."""
    for p in prange(V.shape[0]):
        top = _peak(peaks[p])
        if not np.isfinite(top):
            units[p] = np.float32(np.nan)
            words[p] = 0
            continue
        unit = np.float64(top) / IMAGE_LEVELS if top > 0 else 1.0   # as image_words's
        units[p] = unit
        scale = np.float32(1.0 / unit)
        for q in range(words.shape[1]):
            _round_pair(V[p], q, 0, scale, words[p, q])


@njit(cache=True, parallel=True)
def scale_rows(rows, factors):
    """rows (n, length) float32 *= factors (n,), in place: integer sums back to floats, a row per thread at a
    time (numpy's in-place product runs on one thread: 512 x 266 sums 0.018 -> 0.004 ms on 2 threads)."""
    for r in prange(rows.shape[0]):
        factor = factors[r]
        row = rows[r]
        for i in range(row.size):
            row[i] *= factor


def conv_int16_winograd(a, units, x, pad, out_h, out_w, out, scratch, store=NONE, residual=NO_RESIDUAL_PLANES,
                        pooled_only=False):
    """out (filters, out_h*out_w) = the 3x3 stride-1 convolution of image x (c, h, w) by F(2x2, 3x3) with the
    12-bit U of `quantize_winograd_weights` (a, units): V in float32 (each position's peaks taken by the input
    transform), rounded per position, 16 integer products in one parallel region, then the output transform,
    which scales each position's sums back as it reads them and is finished by `store` (kernels.epilogue) as it
    stores, `residual` added, out left unwritten with `pooled_only` (as winograd_convolution's). scratch(name,
    shape, dtype) gives kept arrays."""
    c = x.shape[0]
    positions, filters, pairs = a.shape
    tiles_w, tiles_h = (out_w + 1) // 2, (out_h + 1) // 2
    tiles = tiles_w * tiles_h
    V = scratch("winograd_v", (positions, c, tiles), np.float32)
    peaks = scratch("winograd_peaks", (positions, c), np.int32)
    transform_input2(x, pad, tiles_w, V, peaks)
    words = scratch("int16_winograd_v", (positions, pairs, tiles), np.int32)
    image_units = np.empty(positions, np.float32)
    _round_positions(V, peaks, image_units, words)
    M = scratch("winograd_m", (positions, filters, tiles), np.float32)
    gemm_flat(a.reshape(-1), pairs, 1, words.reshape(-1), tiles, 1, M.reshape(-1), filters, tiles, pairs,
              count=positions)
    transform_output2(M, tiles_w, out_h, out_w, out, *store, residual, bool(pooled_only),
                      units * image_units[:, None])
