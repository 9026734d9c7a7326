"""Convolutions as bfloat16 products with float32 sums on AVX-512's vdpbf16ps: the `--bf16` products where the CPU
has avx512_bf16 but no AMX tiles it can use (kernels/amx.py has the tiles' kernels).

vdpbf16ps multiplies the 32 bf16 of one vector by the 32 of another and adds each adjacent pair's two products to
one of 16 float32 lanes. Its operands are words of two bf16, the layout of kernels/int16.py's int16 pairs: the
weights (filters, channel pairs, ky, kx) and the image (channel pairs, h, w), the even channel in each word's low
half, an odd channel count padded with a zero channel. im2col of the word image is then the B that gemm's register
tiles read, so its drivers (the packed columns, conv_direct, the flat product) run unchanged on uint32 words,
one vdpbf16ps per step (gemm._make_micro): each output's sum is one float32 chain over the channel pairs in order.

- The weights are rounded to bf16 once per parameters (`pack_weights`), each layer's input once per image
  (`round_pairs`), both by `to_bf16`, the rounding the AMX kernels use: the two paths multiply the same operands.
- Where the fast products take Winograd's F(2x2, 3x3), --bf16 on vdpbf16ps takes --int16's F(2x2) in 12-bit
  integers (kernels/int16.py): bf16's 8 bits on F(2x2)'s transforms moved the detections further than on the
  weights and image (products.bf16_kernel says how far).

Intel defines the instruction as: the odd pair's product added to the lane, then the even one's, each sum rounded
to float32 to nearest-even, with bf16 denormals read as zero and denormal sums written as zero, whatever MXCSR
says (tests/test_reduced_precision.py emulates that).
"""
import functools
import platform

import numpy as np
from numba import njit, prange

from .int16 import pair_words


@functools.cache
def unavailable():
    """None where vdpbf16ps compiles and runs: x86-64 with Numba compiling for AVX-512 with avx512_bf16 (not under
    NUMBA_CPU_NAME or NUMBA_CPU_FEATURES naming an older CPU), else why not (one line)."""
    from numba.core.registry import cpu_target
    if platform.machine() not in ("x86_64", "AMD64"):
        return f"vdpbf16ps is x86-64's (this is {platform.machine()})"
    features = cpu_target.target_context.codegen().magic_tuple()[2].split(",")
    missing = [f for f in ("avx512f", "avx512bf16") if f"+{f}" not in features]
    if missing:
        return f"this CPU (as Numba compiles for it) lacks {' and '.join(missing)}"
    return None


@functools.cache
def slower_than_fma():
    """Whether vdpbf16ps does less here than twice an FMA's multiply-adds per second, so that --bf16 on it would be
    slower than --fast: on Intel's cores (a Sapphire Rapids runs one per two cycles: 60 G multiply-adds/s a core
    against FMA's 122, and yolov3-tiny took 25.5 ms against --fast's 23.0), not on AMD's (a Zen 4 EPYC: 107 G
    multiply-adds/s a core in the chain kernel against its float32 FMA's 50, as vpdpwssd's 108)."""
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.split(":")[-1].strip() == "GenuineIntel" for line in f if line.startswith("vendor_id"))
    except OSError:
        return False


@njit(cache=True, inline="always")
def to_bf16(bits):
    """float32 bits -> bf16 bits, to nearest, ties to even."""
    return np.uint16((bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16))


@njit(cache=True, parallel=True)
def _round(x, out):
    """out = to_bf16 of every float32 of x (both contiguous, of one size)."""
    bits = x.reshape(-1).view(np.uint32)
    flat = out.reshape(-1)
    for i in prange(bits.size):
        flat[i] = to_bf16(bits[i])


def pack_weights(weights, channels, size):
    """A convolution's weights (filters, channels*size*size) as bf16 words (filters, pairs*size*size) uint32."""
    w = np.ascontiguousarray(weights, np.float32)
    halves = np.empty(w.shape, np.uint16)
    _round(w, halves)
    return pair_words(halves.reshape(len(w), channels, size, size))


ROUND_RUN = 4096    # words per task of round_pairs: runs long enough to vectorise, enough of them for the threads


@njit(cache=True, parallel=True)
def round_pairs(x, words):
    """words (count, pairs, n) uint32 = x (count, c, n) float32 as bf16 (to_bf16), channel 2q in word q's low half
    and 2q + 1 in its high half (0 where an odd count leaves it missing)."""
    count, c, n = x.shape
    pairs = words.shape[1]
    bits = x.view(np.uint32)
    runs = (n + ROUND_RUN - 1) // ROUND_RUN
    for task in prange(count * pairs * runs):
        item, rest = task // (pairs * runs), task % (pairs * runs)
        q, start = rest // runs, rest % runs * ROUND_RUN
        end = min(n, start + ROUND_RUN)
        # views from 0: an index start + i keeps Numba's negative-index check in the loop, which LLVM then does
        # not vectorise (5-11x slower)
        low, dst = bits[item, 2 * q, start:end], words[item, q, start:end]
        if 2 * q + 1 < c:
            high = bits[item, 2 * q + 1, start:end]
            for i in range(dst.size):
                dst[i] = np.uint32(to_bf16(low[i])) | (np.uint32(to_bf16(high[i])) << np.uint32(16))
        else:
            for i in range(dst.size):
                dst[i] = np.uint32(to_bf16(low[i]))


def image_words(x, words):
    """words (pairs, h, w) uint32 = image x (c, h, w) in bf16 pairs (see round_pairs)."""
    c, h, w = x.shape
    round_pairs(x.reshape(1, c, h * w), words.reshape(1, -1, h * w))
