"""The matrix products of the convolutional and connected layers, forward and backward, in one place.

Darknet's gemm comes in three shapes, each with its own summation order (gemm.c built with -Ofast):
- gemm_nn, C (+)= A B, and gemm_tn, C (+)= A^T B: every C element is one float32 chain over k in order,
  starting from C's value (BETA = 1) or from 0;
- gemm_nt, C += A B^T: each element's dot product is summed in four float32 lanes (GCC vectorizes that
  reduction) from 0, then added to C.

Three backends:
- "darknet" (the default): darknet's exact orders (kernels.gemm's chain kernel; for nt, one chain product per
  lane): bit-exact products, so every golden layer output matches darknet to the last bit, at BLAS speed for
  inference (faster than OpenBLAS's on the networks' shapes with AVX-512);
- "blas": numpy's matmul (OpenBLAS). It sums in blocks, with FMA, so the results differ from darknet's in the
  last bits (a relative 1e-7 per product, growing with depth: up to 1e-3 on deep random-weight networks,
  and Tiny Darknet prints malamute 0.167167 instead of darknet's 0.167168);
- "fast" (`--fast`): inference products through the chain kernel with a fused multiply-add per step (one
  rounding instead of two: as accurate, not darknet's bits; faster wherever multiply and add share the
  FMA units, as on Intel cores), and stride-1 3x3 convolutions by Winograd's F(4x4, 3x3) or F(2x2, 3x3)
  (kernels/winograd.py: 4x or 2.25x fewer multiplications; see winograd_tile); training's products as "blas". Golden
  outputs stay within 1e-3 (scaled) of the exact ones (tests/test_fast_products.py).
- "int16" (`--int16`): "fast", except that convolutions over 16 channels or more multiply 12-bit integers (the
  weights per output channel, each layer's input per image) in int16 pairs with int32 sums (kernels/int16.py:
  twice a float32 FMA's multiply-adds per instruction); tests/test_reduced_precision.py holds the detections to
  the exact path's.
- "bf16" (`--bf16`): "fast", except that most convolutions over 32 channels or more (16 on vdpbf16ps: every
  layer but the first few of a detector; see bf16_kernel) multiply in bfloat16 with float32 sums: on the CPU's
  AMX tiles (kernels/amx.py), or where the CPU or the operating system does not allow the tiles (or
  PYDARKNET_AMX=off), with AVX-512's vdpbf16ps (kernels/bf16.py) where the CPU has avx512_bf16 and runs it
  faster than two FMAs (AMD's; Intel's cores do not, bf16.slower_than_fma, so there only PYDARKNET_AMX=off
  takes it): the weights and each layer's input rounded to 8 bits of mantissa, so outputs move by about 1e-2
  of their scale (tests/test_reduced_precision.py holds the detections to the exact path's). Where the CPU has
  neither, set_backend says what is missing and takes "fast"; so for "int16" without VNNI.

A network may have its own (Network.products, a Products: Detector(..., fast=True) sets it), which `using` puts in
force in the thread running its passes; the others use the process's: `set_backend(name)` (what --fast calls),
starting from the environment variable PYDARKNET_PRODUCTS (darknet, blas, fast, int16 or bf16).
"""
import functools
import os
import threading
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from .aligned import aligned_zeros
from .conv import direct_convolution
from .epilogue import NO_RESIDUAL_PLANES, NONE, apply, pool
from .gemm import (NO_AFFINE, NO_RESIDUAL, _F32, _I64, _data, _i64, _phis, check_image_product, gemm_flat,
                   host_panel_width, pack_a_batch, packed_a_size, pointwise_product, sgemm_darknet, sgemm_darknet_tn,
                   sgemm_image)
from .placement import kernel_threads
from .threads import spin_briefly

BACKENDS = ("darknet", "blas", "fast", "int16", "bf16")
FUSED = ("fast", "int16", "bf16")   # the backends whose float32 chain products fuse multiply and add
REDUCED = ("int16", "bf16")   # the reduced-precision backends: each needs its instructions (reduced_unavailable)


LACKS = "this CPU (as Numba compiles for it) lacks "


def bf16_engine():
    """What the bf16 products run on here: "amx" (the tiles), else "dpbf16ps" (AVX-512's vdpbf16ps) where it beats
    the fast products or PYDARKNET_AMX=off asks for it, else None."""
    from . import amx, bf16
    tiles = amx.unavailable()
    if tiles is None:
        return "amx"
    if bf16.unavailable() is None and (tiles == amx.TURNED_OFF or not bf16.slower_than_fma()):
        return "dpbf16ps"
    return None


def reduced_unavailable(name):
    """None where this CPU and system run the reduced-precision backend `name`, else why not (one line)."""
    from . import amx, bf16, int16
    if name == "int16":
        return int16.unavailable()
    if bf16_engine():
        return None
    tiles, dot = amx.unavailable(), bf16.unavailable()
    if dot is None:
        return (f"{tiles} (AMX), and Intel's cores run vdpbf16ps at half an FMA's rate, slower than the --fast "
                f"products ({amx.TURNED_OFF} runs it anyway)")
    if tiles.startswith(LACKS) and dot.startswith(LACKS):   # one list of what is missing
        return f"{tiles} (AMX) and {dot[len(LACKS):]} (vdpbf16ps)"
    return f"{tiles} (AMX), and {dot} (vdpbf16ps)"


class Products(NamedTuple):
    """A choice of products: the backend's name, and for "bf16" the engine it runs on (bf16_engine's)."""
    name: str
    bf16_engine: str = None


def products_for(name):
    """The Products of "darknet", "blas", "fast", "int16" or "bf16" on this CPU: "int16" or "bf16" where the CPU (or
    the system) lacks their instructions is a warning saying why, and "fast" ("bf16"'s names --int16 where that
    runs: on VNNI it is faster than --fast). "bf16" runs on the engine bf16_engine() finds, asked here once."""
    if name not in BACKENDS:
        raise ValueError(f"unknown product backend {name!r} ({', '.join(BACKENDS)})")
    why = reduced_unavailable(name) if name in REDUCED else None
    if why:
        from ..files.config import warn
        faster = " (--int16, on this CPU's VNNI, is faster)" if name == "bf16" and not reduced_unavailable("int16") \
            else ""
        warn(f"--{name}: {why}; using the --fast products{faster}")
        name = "fast"
    return Products(name, bf16_engine() if name == "bf16" else None)


def set_backend(name):
    """Choose "darknet", "blas", "fast", "int16" or "bf16" (products_for) for the process: for every network that
    has no products of its own (Network.products, which `using` puts in force around its passes); returns the
    previous choice's name."""
    global _PROCESS
    chosen = products_for(name)
    if chosen.name == "blas":
        spin_briefly()
    previous, _PROCESS = _PROCESS, chosen
    return previous.name


class _InThisThread(threading.local):
    chosen = None   # the Products of the network whose pass this thread runs (using), None for the process's


_PROCESS = Products("darknet")
_in_this_thread = _InThisThread()
if os.environ.get("PYDARKNET_PRODUCTS", "darknet") not in BACKENDS:
    raise ValueError(f"PYDARKNET_PRODUCTS={os.environ['PYDARKNET_PRODUCTS']!r}: expected {', '.join(BACKENDS)}")
set_backend(os.environ.get("PYDARKNET_PRODUCTS", "darknet"))


@contextmanager
def using(chosen):
    """`chosen` (Products, or None for the process's) for the products this thread runs until the block ends: a
    network's own choice around its passes, so that networks of two choices live side by side, in one thread or
    in several."""
    previous, _in_this_thread.chosen = _in_this_thread.chosen, chosen
    try:
        yield
    finally:
        _in_this_thread.chosen = previous


def chosen():
    """The Products in force in this thread (using's, else the process's)."""
    return _in_this_thread.chosen or _PROCESS


def backend():
    """The name of the products in force in this thread (using's, else the process's)."""
    return chosen().name


def stored_by_tiles(store):
    """(affine, activation) for the chain kernel's register tiles to finish `store` (kernels.epilogue's) as they
    store their sums, or (NO_AFFINE, -1) where they cannot: no store, or a pool to fill (the store's own pass
    does that). The floats are the pass's either way."""
    if store.affine.shape[1] and not store.pooled.size:
        return store.affine, store.activation
    return NO_AFFINE, -1


def gemm_nn(a, b, out, accumulate=False, store=NONE, width=0):
    """out = a @ b, or out += a @ b with accumulate (a (m, k), b (k, n), out (m, n), float32), then finished by
    `store` (kernels.epilogue; out's rows images `width` wide): by the register tiles as they store the sums
    where they can (stored_by_tiles), else in a pass after them."""
    name = backend()
    if name == "blas":
        if accumulate:
            out += a @ b
        else:
            np.matmul(a, b, out=out)
        apply(out, width, store)
        return
    by_tiles = stored_by_tiles(store)
    sgemm_darknet(a, b, out, accumulate, name in FUSED, *by_tiles)
    if by_tiles[1] < 0:
        apply(out, width, store)


def packs_images():
    """Whether convolutions go through conv_image: with the chain kernel (BLAS needs im2col's columns).
    Reading the image in place saves writing and reading the column matrix, which pays most on the first,
    largest layers."""
    return backend() != "blas"


DIRECT_WEIGHTS_BYTES = 192 << 10   # conv_direct's every output row reads all of A: it must stay in L2
DIRECT_PANELS = 3   # conv_direct's output rows at least this many panels wide (see conv_image)


def conv_image(a, x, c0, size, stride, pad, dilation, out_h, out_w, out, store=NONE, pooled_only=False):
    """out (m, out_h*out_w) = a (m, k) @ im2col(x[c0 : c0 + k/size^2]) for one image x (c, h, w) with the chain
    kernel (see packs_images): the same floats as im2col then gemm_nn, without the column matrix, then finished by
    `store` (kernels.epilogue). Layers whose weights fit in a core's L2 (DIRECT_WEIGHTS_BYTES: the first layers of
    a network, few channels, large images) read the taps straight from a padded copy of the image (conv.conv_direct,
    which finishes each output row as it stores it); the others pack the columns from the image into the kernel's
    panels (gemm.sgemm_image, whose register tiles finish the store as they store their sums, but for a pool: see
    stored_by_tiles), which pays where A is too large to read once per output row, or where the rows are
    narrower than DIRECT_PANELS panels: conv_direct's tiles go row by row, and a 75-wide row's 32 + 32 + 16
    columns took Tiny Darknet's 16 -> 128-channel layers 0.70 ms each against the packed columns' 0.55.
    (image_convolution's, made and run at once.)"""
    check_image_product("conv_image", out, a, x, c0, size, out_h, out_w)
    image_convolution(a, x.shape, c0, size, stride, pad, dilation, out_h, out_w)(x, out, store, pooled_only)


def image_convolution(a, shape, c0, size, stride, pad, dilation, out_h, out_w):
    """conv_image for images of `shape` (c, h, w) with the products in force, decided once: returns
    convolve(x, out, store, pooled_only, residual=NO_RESIDUAL_PLANES), for conv_direct with A packed and the taps'
    offsets fixed here (conv.direct_convolution), else the columns packed from the image; `residual` (filters, out_h,
    out_w; a [shortcut] after the layer) added as the register tiles finish the store (with a pool after the layer
    there is none). A convolution's plan keeps it."""
    fused = backend() in FUSED
    if size > 1 and a.size * 4 <= DIRECT_WEIGHTS_BYTES and out_w >= DIRECT_PANELS * host_panel_width():
        return direct_convolution(a, shape, c0, size, stride, pad, dilation, out_h, out_w, fused)

    def convolve(x, out, store, pooled_only, residual=NO_RESIDUAL_PLANES):
        affine, activation = stored_by_tiles(store)
        sgemm_image(a, x, c0, size, stride, pad, dilation, out_h, out_w, out, fused, affine, activation,
                    residual.reshape(-1) if activation >= 0 else NO_RESIDUAL)
        if activation < 0:
            apply(out, out_w, store, residual)
    return convolve


def pointwise_convolution(a, out_w):
    """gemm_nn for a 1 x 1 convolution (stride 1, no padding) of one image with the products in force, decided
    once: returns convolve(x, out, store, pooled_only=False, residual=NO_RESIDUAL_PLANES): out (m, pixels) = a (m, k)
    @ the image x (k, h, w) as a (k, pixels) matrix, finished by `store` (out's rows images out_w wide) as gemm_nn
    finishes it, the same floats, then `residual` (m, h, w) added (a [shortcut] after the layer:
    layers/shortcut.py), as the register tiles store it where they finish the store. The output is always written
    (a pool after it runs its pass from there), so `pooled_only` changes nothing: it is taken as the other forms'
    convolve take it. A convolution's plan keeps it with its weights packed
    (gemm.pointwise_product): the pass then goes straight to the kernel, which reads the image in place."""
    fused = backend() in FUSED
    m, k = a.shape
    packed = np.empty((1, packed_a_size(m, k)), np.float32)
    pack_a_batch(np.ascontiguousarray(a, np.float32).reshape(1, m, k), packed)
    threads = kernel_threads()   # (a plan is made again for another count: Network.plan_key)

    def convolve(x, out, store, pooled_only=False, residual=NO_RESIDUAL_PLANES):
        affine, activation = stored_by_tiles(store)
        pointwise_product(packed[0], x.reshape(-1), out.reshape(-1), m, out.shape[1], k, threads,
                          fused, affine, activation, residual.reshape(-1) if activation >= 0 else NO_RESIDUAL)
        if activation < 0:
            apply(out, out_w, store, residual.reshape(m, -1, out_w) if residual.size else NO_RESIDUAL_PLANES)
    return convolve


def winograd_tile(channels, filters, size, stride, dilation, groups, out_h, out_w):
    """The output tile (m x m) of the Winograd transform a convolution goes through, or 0 for the products: with
    the fast products, for stride-1 3x3 kernels not taken by the reduced-precision products, F(4x4, 3x3) on
    outputs of 40 x 40 or more from 32 channels, F(2x2, 3x3) from 32 channels on smaller outputs; where the
    vectors are narrower than AVX-512's, F(4x4) from 16 channels on 20 x 20 (the products run at half the width
    while the transforms cost the same). On smaller outputs F(4x4)'s U, four times the weights, is read for few
    tiles (yolov3-tiny's 384-channel layer on 26 x 26: 3.7 ms against F(2x2)'s 2.8 within the network); under
    those channel counts the direct products are as fast, short sums being cheap as products. The thresholds are
    measured per layer within the networks (docs/notes.md)."""
    if backend() not in FUSED or size != 3 or stride != 1 or dilation != 1 or groups != 1:
        return 0
    if bf16_kernel(channels, filters, size, stride, dilation, groups, out_h, out_w) or \
            int16_kernel(channels, size, stride, dilation, groups, out_h, out_w):
        return 0
    return _fast_tile(channels, out_h, out_w)


def _fast_tile(channels, out_h, out_w, words=False):
    """winograd_tile's rule for a stride-1 3x3 convolution of the fast products; `words`: the rule as it was when
    --int16 and vdpbf16ps were measured against it (with AVX-512, F(4x4) from 64 channels and F(2x2) from 128), by
    which _words_kernel divides the layers between the integer F(2x2), the integer direct products and the fast
    F(4x4)."""
    wide = host_panel_width() >= 32
    if min(out_h, out_w) >= (40 if wide else 20) and channels >= ((64 if words else 32) if wide else 16):
        return 4
    return 2 if channels >= (128 if wide and words else 32) else 0


BAND_U_BYTES = 1 << 20      # F(4x4)'s U read by every band: at most this much
BAND_BYTES = 768 << 10      # a band's V and M: within a core's L2 (1 MiB on the machines measured)


def winograd_bands(filters, channels, out_h, out_w):
    """Tile rows per band of F(4x4)'s banded kernel (kernels.winograd.conv_bands4), or 0 for its three passes
    over the whole image. The bands pay on images 20 tiles (80 outputs) wide or more, where the three passes'
    V and M (36 positions x (channels + filters) x tiles) go to memory and back, and only with a U of at most
    BAND_U_BYTES, which every band reads; on narrower images the three passes are faster.
    The rows: as many as fit BAND_BYTES, those that waste the fewest vector columns of the products (a band's
    tiles are its product's columns) and share them most evenly among the threads."""
    return _band_rows(filters, channels, out_h, out_w, host_panel_width() // 2, kernel_threads())


@functools.cache    # asked for every image through every such layer
def _band_rows(filters, channels, out_h, out_w, lanes, threads):
    tiles_w, tiles_h = (out_w + 3) // 4, (out_h + 3) // 4
    if tiles_w < 20 or 36 * filters * channels * 4 > BAND_U_BYTES:
        return 0
    best, best_rows = np.inf, 1
    for rows in range(1, tiles_h + 1):
        if rows > 1 and 36 * (channels + filters) * rows * tiles_w * 4 > BAND_BYTES:
            break
        bands = -(-tiles_h // rows)
        columns = [-(-min(rows, tiles_h - b * rows) * tiles_w // lanes) * lanes for b in range(bands)]
        per = -(-bands // threads)      # prange gives each thread a run of bands
        cost = max(sum(columns[i:i + per]) for i in range(0, bands, per)) * threads / (tiles_h * tiles_w)
        if cost < best - 0.01:
            best, best_rows = cost, rows
    return best_rows


def winograd_rows(tile, out_h, out_w):
    """Whether F(tile x tile)'s products take the tiles as their rows and the filters as their columns (kernels.
    winograd.winograd_products_rows) rather than the other way round: for F(2x2) on outputs whose tiles fill their
    vectors badly as columns (13 x 13: 49 tiles in 64 columns, a quarter of every product wasted; as rows, 50 for
    49). yolov3-tiny's 1024-filter layer: products 4.7 -> 3.8 ms."""
    tiles = -(-out_h // tile) * -(-out_w // tile)
    lanes = host_panel_width() // 2
    return tile == 2 and -(-tiles // lanes) * lanes > 1.1 * tiles


def pack_winograd(u, rows=False):
    """U (positions, filters, channels) of kernels.winograd.transform_weights packed for the products, once per
    parameters (packing each image's U in the product took 5-15 % of F(2x2)'s products alone): as their rows,
    in gemm.pack_a_batch's tiles (positions, packed floats); with `rows` (winograd_rows), as their columns: U[p]^T in
    panels of NR filters (positions, panels, channels, NR), zeros past the last filter."""
    positions, filters, channels = u.shape
    if rows:
        NR = host_panel_width()
        panels = -(-filters // NR)
        ut = np.zeros((positions, channels, panels * NR), np.float32)
        ut[:, :, :filters] = u.transpose(0, 2, 1)
        return np.ascontiguousarray(ut.reshape(positions, channels, panels, NR).transpose(0, 2, 1, 3))
    up = np.empty((positions, packed_a_size(filters, channels)), np.float32)
    pack_a_batch(u, up)
    return up


# V's and M's rows of tiles start at whole cache lines (16 floats): for 13 x 13 outputs (49 tiles a row) the
# products alone ran 19 % faster (yolov3-tiny's 1024-filter layer 5.3 -> 4.3 ms), no slower on other sizes; within
# the network that layer is bound by reading its U from L3 and stayed at 5.0-5.3 ms.
TILES_ALIGNED = 16


def conv_winograd(up, x, pad, out_h, out_w, out, scratch, store=NONE):
    """out (filters, out_h*out_w) = the 3x3 stride-1 convolution of image x (c, h, w) whose Winograd weights are
    up (pack_winograd's, for tiles of m x m: (m + 2)^2 positions), by F(m x m, 3x3): (m + 2)^2 products through the
    chain kernel with fused multiply-adds, in three passes over the image or in bands of it (winograd_bands), each
    output row finished by `store` (kernels.epilogue) as the output transform stores it. scratch(name, floats)
    gives kept scratch arrays. Weights packed with `rows` (pack_winograd's, 4-d) take the tiles as the products'
    rows: the same sums, the same floats. (winograd_convolution's, made and run at once.)"""
    winograd_convolution(up, x.shape[0], out.shape[0], pad, out_h, out_w, scratch)(x, out, store)


def winograd_convolution(up, channels, filters, pad, out_h, out_w, scratch):
    """conv_winograd for images of `channels`, decided once: returns convolve(x, out, store, pooled_only=False,
    residual=NO_RESIDUAL_PLANES), which runs only the transforms and the products, with the tiles, the bands, the
    scratch arrays and the work's split among Numba's threads fixed here; its output transform finishes the store
    and adds `residual` (filters, out_h, out_w; a [shortcut] after the layer: layers/shortcut.py) as it stores each
    row. With `pooled_only` (given only with a pool, for an output only the pool reads), the transforms by tile
    rows (not the tiles-as-rows form) leave out unwritten and write only the pool's output. A convolution's plan
    keeps it."""
    from .winograd import (conv_bands4, padded_image, transform_input2, transform_input2_rows, transform_input4,
                           transform_output2, transform_output2_rows, transform_output4, winograd_products,
                           winograd_products_rows)
    positions = up.shape[0]
    m = 2 if positions == 16 else 4
    tiles_w = (out_w + m - 1) // m
    tiles_h = (out_h + m - 1) // m
    tiles = tiles_h * tiles_w
    if up.ndim == 4:   # the tiles as the rows: V^T (tiles, channels) packed, M^T (tiles, filters), channel-last
        xt = scratch("winograd_xt", (2 * tiles_h + 2) * (2 * tiles_w + 2) * channels)
        xt = xt.reshape(2 * tiles_h + 2, 2 * tiles_w + 2, channels)
        vt = scratch("winograd_vt", positions * tiles * channels).reshape(positions, tiles, channels)
        a = scratch("winograd_a", positions * packed_a_size(tiles, channels)).reshape(positions, -1)
        mt = scratch("winograd_mt", positions * tiles * filters).reshape(positions, tiles, filters)
        yt = scratch("winograd_yt", 4 * tiles * filters).reshape(2 * tiles_h, 2 * tiles_w, filters)

        def convolve(x, out, store, pooled_only=False, residual=NO_RESIDUAL_PLANES):
            transform_input2_rows(x, pad, xt, vt)
            pack_a_batch(vt, a)
            winograd_products_rows(a, up, mt)
            transform_output2_rows(mt, yt, out_h, out_w, out, *store, residual)
        return convolve
    rows = winograd_bands(filters, channels, out_h, out_w) if m == 4 else 0
    if rows:
        xp = scratch("winograd_x", channels * (4 * tiles_h + 2) * (4 * tiles_w + 2))
        xp = xp.reshape(channels, 4 * tiles_h + 2, 4 * tiles_w + 2)
        per_thread = 36 * (channels + filters) * rows * tiles_w + host_panel_width()
        work = scratch("winograd_work", kernel_threads() * per_thread).reshape(-1, per_thread)

        def convolve(x, out, store, pooled_only=False, residual=NO_RESIDUAL_PLANES):
            padded_image(x, pad, xp)
            conv_bands4(xp, up, filters, out_h, out_w, rows, work, out, *store, residual, bool(pooled_only))
        return convolve
    ld = -(-tiles // TILES_ALIGNED) * TILES_ALIGNED
    V = scratch("winograd_v", positions * channels * ld + host_panel_width())   # whole vectors past the end
    M = scratch("winograd_m", positions * filters * ld).reshape(positions, filters, ld)
    images = V[:positions * channels * ld].reshape(positions, channels, ld)
    transform_input = transform_input2 if m == 2 else transform_input4
    transform_output = transform_output2 if m == 2 else transform_output4

    def convolve(x, out, store, pooled_only=False, residual=NO_RESIDUAL_PLANES):
        transform_input(x, pad, tiles_w, images)
        winograd_products(up, V, channels, tiles, M)
        transform_output(M, tiles_w, out_h, out_w, out, *store, residual, bool(pooled_only))
    return convolve


INT16_CHANNELS = 16


def int16_kernel(channels, size, stride, dilation, groups, out_h, out_w):
    """How a convolution multiplies in integers with the int16 products: "winograd" (F(2x2, 3x3) on 12-bit U and V,
    kernels/int16.py's conv_int16_winograd) on the F(2x2) layers of _fast_tile's words rule, "direct" (the integer
    products on the image's words) for the other ungrouped kernels over 1 x 1 from INT16_CHANNELS input channels, else
    None: the fast products, for grouped convolutions, the first layer's 3 channels (a pair and a half: its float
    products are as fast), 1 x 1 kernels and the F(4x4) layers of _fast_tile's words rule. With VNNI the integer
    products do twice an FMA's multiply-adds, but rounding an image to 12 bits is a pass of its own, and F(4x4) does 4x
    fewer multiply-adds than the direct products (F(2x2) 2.25x): so 1 x 1 layers gain nothing, and F(4x4) in integers
    doubles the largest move of a probability. --bf16 on vdpbf16ps takes the same "winograd" layers (bf16_kernel)."""
    if groups != 1 or size == 1:
        return None
    if backend() == "int16":
        return _words_kernel(channels, size, stride, dilation, out_h, out_w, None)
    if backend() == "bf16" and chosen().bf16_engine == "dpbf16ps":
        return "winograd" if _words_kernel(channels, size, stride, dilation, out_h, out_w, None) == "winograd" else None
    return None


def _words_kernel(channels, size, stride, dilation, out_h, out_w, over_f4):
    """int16_kernel's rule for an ungrouped kernel over 1 x 1, which vdpbf16ps's words follow too (bf16_kernel), but for
    the F(4x4) layers of _fast_tile's words rule: they take `over_f4` ("direct", or None for the fast products)."""
    if channels < INT16_CHANNELS:
        return None
    tile = _fast_tile(channels, out_h, out_w, words=True) if size == 3 and stride == 1 and dilation == 1 else 0
    return {0: "direct", 2: "winograd", 4: over_f4}.get(tile)


def conv_words(a, words, size, stride, pad, dilation, out_h, out_w, out):
    """out (filters, out_h*out_w) = the product of weights a (filters, pairs*size*size) and the im2col of an image
    (pairs, h, w), both in words of two channels (kernels/bf16.py's bf16 pairs, for vdpbf16ps; the int16 products
    keep theirs in int16_convolution): gemm's flat product for 1 x 1 kernels, else conv_image's."""
    filters, k = a.shape
    if size == 1 and stride == 1 and pad == 0:
        L = words.shape[1] * words.shape[2]
        gemm_flat(a.reshape(-1), k, 1, words.reshape(-1), L, 1, out.reshape(-1), filters, L, k)
    else:
        conv_image(a, words, 0, size, stride, pad, dilation, out_h, out_w, out)


def int16_convolution(a, units, shape, size, stride, pad, dilation, out_h, out_w, scratch):
    """The int16 products of images of `shape` (c, h, w) by the 12-bit weights a, units (int16.quantize_weights),
    decided once: returns convolve(x, out, store, pooled_only, residual=NO_RESIDUAL_PLANES), which rounds x to
    12-bit words (int16.image_words) and multiplies them with the chain kernel (image_convolution on the words).
    Each filter's integer sums become floats by its factor, units times the image's unit: in the store (its affine
    made by epilogue.with_factors: the register tiles or the store's pass multiply by it first, then add
    `residual`), or, without a store, in a pass of their own. scratch(name, shape, dtype) gives kept arrays. A
    convolution's plan keeps it."""
    from .int16 import image_words, scale_rows
    c, h, w = shape
    words = scratch("int16_image", ((c + 1) // 2, h, w), np.int32)
    product = image_convolution(a, words.shape, 0, size, stride, pad, dilation, out_h, out_w)

    def convolve(x, out, store, pooled_only, residual=NO_RESIDUAL_PLANES):
        factors = units * np.float32(image_words(x, words))
        if store.affine.shape[1]:
            store.affine[3] = factors
            product(words, out, store, pooled_only, residual)
        else:
            product(words, out, store, False)
            scale_rows(out, factors)
    return convolve


BF16_CHANNELS = 32
BF16_POINTWISE_CHANNELS = 128   # 1 x 1 kernels take vdpbf16ps's bf16 products from this many channels
AMX_POINTWISE_CHANNELS = 64     # and the tiles' (from 32, Yolo-Fastest's dog moved .0235: past the .02 promised)


def bf16_kernel(channels, filters, size, stride, dilation, groups, out_h, out_w):
    """The kernel a convolution of `channels` (per group) into `filters` takes with the bf16 products, or None for
    the fast products (also for groups and every other backend).
    On the AMX tiles: None under BF16_CHANNELS channels (Yolo-Fastest's 16- and 24-channel 1 x 1 layers would
    move a probability past the .02 docs/fidelity.md promises), except stride-1 kernels over 1 x 1 of exactly 16
    channels: "blocked", in pixels of 16 channels, two kernel columns a step of k (amx.pixel_channels); "blocked"
    (kernels over 1 x 1 at strides 1 and 2, and 1 x 1 kernels at stride 1 from AMX_POINTWISE_CHANNELS: the image
    as A, in blocks of 32 channels, one copy for every kernel column, stride 2 reading every other pixel where the
    image's four phases made 16/9 as many products), "packed" (other strides and dilations: im2col's columns
    packed per block) from 64 channels. Where the tiles' k is mostly padding or the packing outweighs the
    products, the fast products are faster.
    With vdpbf16ps (bf16_engine() "dpbf16ps", kernels/bf16.py), which does VNNI's vpdpwssd's work:
    int16_kernel's rule for kernels over 1 x 1, "direct" (bf16 words through gemm's drivers), including
    the F(4x4) layers of _fast_tile's words rule, but on its F(2x2) layers: those take
    int16_kernel's "winograd" (12-bit U and V), since F(2x2) on bf16 transforms moves the detections half as much
    again as bf16 weights and images do; and 1 x 1 kernels from BF16_POINTWISE_CHANNELS.
    The per-layer measurements behind these rules are in docs/notes.md."""
    if backend() != "bf16" or groups != 1:
        return None
    if chosen().bf16_engine == "amx" and channels == 16 and stride == 1 and dilation == 1 and size > 1:
        return "blocked"
    if chosen().bf16_engine == "dpbf16ps":
        if size == 1:
            return "direct" if channels >= BF16_POINTWISE_CHANNELS else None
        kernel = _words_kernel(channels, size, stride, dilation, out_h, out_w, "direct")
        return None if kernel == "winograd" else kernel   # int16_kernel's
    if channels < BF16_CHANNELS:
        return None
    if stride <= 2 and dilation == 1 and size > 1:
        return "blocked"
    if stride == 1 and dilation == 1:   # 1 x 1
        return "blocked" if channels >= AMX_POINTWISE_CHANNELS else None
    return "packed" if channels >= 64 else None


# Packed bf16 weights larger than this are run filter block by filter block (amx.conv_blocked's weights_outer): a
# core's L2 (2 MiB on the Xeons with AMX) holds them with a block of pixels beside.
AMX_WEIGHTS_CACHED = 1 << 20


def pack_bf16(weights, channels, size, kernel):
    """A convolution's weights (filters, channels*size*size) for its bf16 kernel (see bf16_kernel)."""
    from . import amx, bf16
    if kernel == "blocked":
        return amx.pack_weights_blocked(weights, channels, size)
    if kernel == "packed":
        return amx.pack_weights(weights)
    return bf16.pack_weights(weights, channels, size)


def conv_bf16(a, kernel, filters, x, size, stride, pad, dilation, out_h, out_w, out, scratch, store=NONE,
              pooled_only=False):
    """out (filters, out_h*out_w) = the convolution of image x (c, h, w) by a (pack_bf16) with its kernel: on the
    AMX tiles ("blocked", "packed") or with vdpbf16ps ("direct"), finished by `store` (the fused plan's
    kernels.epilogue.Store of this image): the tiles apply its affine and activation as they store C; the blocked
    kernel its pool too (with `pooled_only`, given only with a pool, for an output that only the pool reads, it
    then leaves `out` unwritten), the others' pool follows in a pass; vdpbf16ps's sums get the whole store in a
    pass after. scratch(name, shape, dtype) gives kept arrays aligned to 64 bytes. (bf16_convolution's, made and
    run at once.)"""
    bf16_convolution(a, kernel, filters, x.shape, size, stride, pad, dilation, out_h, out_w, scratch)(
        x, out, store, pooled_only)


def bf16_convolution(a, kernel, filters, shape, size, stride, pad, dilation, out_h, out_w, scratch, rounded=False):
    """conv_bf16 for images of `shape` (c, h, w), decided once: returns convolve(x, out, store, pooled_only),
    which runs only the kernels (the rounding of x into the kernel's layout, then the products), with the layout,
    the scratch arrays and the work's split among Numba's threads fixed here. A convolution's plan keeps it.
    The blocked kernel's convolve also takes `words`, (array, pad): the next layer's input in its layout
    (amx.blocked_layout of that layer), which the store fills, rounded, instead of `out`; and with `rounded`, its
    x is the image already in its own layout (filled so by the layer before), not rounded again."""
    from . import amx, bf16
    c, h, w = shape
    if kernel == "direct":
        words = scratch("bf16_image", ((c + 1) // 2, h, w), np.uint32)

        def convolve(x, out, store, pooled_only):
            bf16.image_words(x, words)
            conv_words(a, words, size, stride, pad, dilation, out_h, out_w, out)
            apply(out, out_w, store)
        return convolve
    if amx.unavailable():   # also what asks the system for the tiles: without that, the first tile load faults
        raise RuntimeError(f"the bf16 products: {amx.unavailable()}")
    config = amx.TILE_CONFIG
    c_work = scratch("amx_c", (kernel_threads(), 2048), np.float32)
    outer = a.nbytes > AMX_WEIGHTS_CACHED
    if kernel == "blocked":
        layout, wp, wq = amx.blocked_layout(c, size, stride, pad, w, out_h, out_w)
        xb = None if rounded else scratch("amx_blocked", layout, np.uint16)

        def convolve(x, out, store, pooled_only, words=(amx.NO_WORDS, 0)):
            if not rounded:
                amx.to_bf16_blocked(x, pad, xb)
            amx.conv_blocked(a, filters, x if rounded else xb, wp, wq, stride, out_h, out_w, out, config, c_work,
                             outer, *store, pooled_only, *words)
        return convolve
    xp = scratch("amx_padded", (c + 1, h + 2 * pad, w + 2 * pad), np.uint16)
    b_work = scratch("amx_b", (c_work.shape[0], a.shape[1] * 1024), np.uint16)

    def convolve(x, out, store, pooled_only):
        amx.to_bf16_padded(x, pad, xp)
        amx.conv_image(a, filters, xp, c, size, stride, dilation, out_h, out_w, out, config, b_work, c_work,
                       store.affine, store.activation)
        pool(out, out_w, store)
    return convolve


def blocked_input(batch, shape, size, stride, pad, out_h, out_w):
    """Zeros in the blocked bf16 kernel's layout (amx.blocked_layout) for `batch` images of `shape` (c, h, w) and a
    size x size kernel at `stride`: a layer's input that the layer before fills as it stores its products
    (bf16_convolution's words), 64-byte aligned. Only the image's pixels are written: the padding stays zero."""
    from . import amx
    c, h, w = shape
    return aligned_zeros((batch, *amx.blocked_layout(c, size, stride, pad, w, out_h, out_w)[0]), np.uint16)


def gemm_tn(a, b, out, accumulate=False):
    """out = a.T @ b, or out += a.T @ b with accumulate (a (k, m), b (k, n), out (m, n), float32)."""
    if backend() == "darknet":
        sgemm_darknet_tn(a, b, out, accumulate)
    elif accumulate:
        out += a.T @ b
    else:
        np.matmul(a.T, b, out=out)


def gemm_nt(a, b, out):
    """out = a @ b.T (a (m, k), b (n, k), out (m, n), float32); darknet adds this to its C afterwards."""
    if backend() == "darknet":
        _gemm_nt_lanes(a, b, out)
    else:
        np.matmul(a, b.T, out=out)


def _gemm_nt_lanes(a, b, out):
    """darknet's -Ofast gemm_nt order with the chain kernel: lane l of every dot product is the chain over
    k = l, l+4, ... (< the last multiple of 4), i.e. an ordinary product of the columns l::4; the lanes are
    combined as (l0 + l2) + (l1 + l3) and the last k % 4 terms continue that chain in order."""
    m, k = a.shape
    n = b.shape[0]
    full = k - k % 4
    if full:
        lanes = []
        for lane in range(4):
            part = np.empty((m, n), np.float32)
            sgemm_darknet(np.ascontiguousarray(a[:, lane:full:4]), np.ascontiguousarray(b[:, lane:full:4].T), part)
            lanes.append(part)
        np.add(lanes[0], lanes[2], out=lanes[0])
        np.add(lanes[1], lanes[3], out=lanes[1])
        np.add(lanes[0], lanes[1], out=out)
    else:
        out.fill(0)
    if k > full:
        sgemm_darknet(np.ascontiguousarray(a[:, full:]), np.ascontiguousarray(b[:, full:].T), out, accumulate=True)


def weight_gradient_transposed(m, k, L):
    """Which columns conv_weight_gradient wants for a layer with m filters (per group), k weights per filter and
    L output positions: True for the transposed columns (L, k) per image (kernels.conv.im2col_t), False for
    im2col's (k, L)."""
    return backend() == "darknet" and _nt_path(m, k, L) != "rows"


def _nt_path(m, k, L):
    """How the darknet backend sums a weight gradient, by the shape (each the fastest there on two cores):
    rows: _nt_lanes_rows, the four lanes as vectors, a register tile of 4 rows of delta x 4 of the columns
          (up to 128 filters, or 64-127 output positions): the first layers, where L is large, and one parallel
          region where the chains would be eight per image;
    tiles: _nt_lanes_batch, lanes kept in cache per block of the result (fewer than 64 output positions);
    chains: four chain products per image through kernels.gemm (many filters, where the chain kernel's
          bigger register tile wins)."""
    if L < 64:
        return "tiles"
    if m <= 128 or L < 128:
        return "rows"
    return "chains"


def conv_weight_gradient(delta, cols, out):
    """out (m, k) += the weight gradient of a convolution over a batch: for each image b in order,
    delta[b] (m, L) @ col[b].T, added image by image as darknet's backward_convolutional_layer does (its
    gemm_nt: C += A B^T per image). cols: the columns of every image, (n, L, k) (col[b].T, from
    kernels.conv.im2col_t) if weight_gradient_transposed(m, k, L), else (n, k, L) (im2col's).

    With the darknet backend each image's product is the -Ofast gemm_nt sum (see _gemm_nt_lanes) in one of
    three ways (see _nt_path); "chains" computes each image's lanes as four chain products read straight from
    delta and the transposed columns through strides (no copies: lane l of delta is every fourth pixel from
    l; lane l of col.T is every fourth row of colT from l, rows that the product packs contiguously).
    delta[b], cols[b] and out must be C-contiguous float32."""
    n, m, L = delta.shape
    if backend() != "darknet":
        grad = np.empty(out.shape, np.float32)
        for b in range(n):
            np.matmul(delta[b], cols[b].T, out=grad)
            out += grad
        return
    k = out.shape[1]
    threads = kernel_threads()
    path = _nt_path(m, k, L)
    if path == "rows":
        _nt_lanes_rows(delta, cols, out, *_lane_blocks(m, k), 2048)
        return
    if path == "tiles":
        rows = min(m, 8)
        width = min(k, 512)
        while (-(-m // rows)) * (-(-k // width)) < 2 * threads and width > 8:  # enough tasks for the threads
            width = max(8, (width + 1) // 2)
        _nt_lanes_batch(delta, cols, out, rows, width)
        return
    full = L - L % 4
    parts = np.empty((4, m, k), np.float32)
    for b in range(n):
        a = delta[b].reshape(-1)
        bt = cols[b].reshape(-1)
        if full:
            for lane in range(4):
                gemm_flat(a[lane:], L, 4, bt[lane * k:], 4 * k, 1, parts[lane].reshape(-1), m, k, full // 4,
                          nth=threads)
        _add_lanes(parts, delta[b], cols[b], full, out)


def _lane_blocks(m, k):
    """Blocks of the result (rows, columns) for the lane tile paths: at most 32 x 32, whole tiles, and narrowed
    until there are enough tasks for the threads."""
    threads = kernel_threads()
    rows = min(-(-m // TILE_R) * TILE_R, 32)
    width = min(-(-k // TILE_S) * TILE_S, 32)
    while (-(-m // rows)) * (-(-k // width)) < 2 * threads and width > TILE_S:
        width = max(TILE_S, width // 2 // TILE_S * TILE_S)
    return rows, width


@njit(cache=True, parallel=True)
def _add_lanes(parts, a, bt, full, out):
    """out[i, j] += ((l0 + l2) + (l1 + l3)) then the terms p >= full of a[i, p] * bt[p, j] in order, with
    lane l = parts[l] (all zero when full is 0): the end of darknet's gemm_nt sum, in one pass."""
    m, k = out.shape
    L = a.shape[1]
    for i in prange(m):
        row = out[i]
        p0 = parts[0, i]
        p1 = parts[1, i]
        p2 = parts[2, i]
        p3 = parts[3, i]
        total = np.empty(k, np.float32)
        if full:
            for j in range(k):
                total[j] = (p0[j] + p2[j]) + (p1[j] + p3[j])
        else:
            total[:] = 0.0
        for p in range(full, L):
            av = a[i, p]
            src = bt[p]
            for j in range(k):
                total[j] += av * src[j]
        for j in range(k):
            row[j] += total[j]


# -- darknet's gemm_nt lanes as 4-float vectors ---------------------------------------------------------------
_V4 = ir.VectorType(_F32, 4)
_V8 = ir.VectorType(_F32, 8)
TILE_R, TILE_S = 4, 4   # rows of delta x columns (rows of col) per register tile: 8 registers of 2 x 4 lanes


def _make_lane_tile(R, S):
    @intrinsic
    def lane_tile(typingctx, a, a_off, lda, h, a_step, b, boffs, b_step, n4, nrows, acc, load):
        """For r < R, s < S: the four-lane vector acc[(r*S + s)*4 : +4] (from 0, or from its value if load)
        += a[a_off + r*lda + y*a_step + 4g : +4] * b[boffs[s] + y*b_step + 4g : +4] for y = 0 .. nrows-1, then
        g = 0 .. n4-1, in that order; a plain fmul then a plain fadd per step (never an FMA: no fast-math flags,
        so LLVM may not contract them). That is lane l of darknet's vectorized dot product, continued over the
        steps. Two columns share an 8-float register: [lanes of (r, s) | lanes of (r, s+1)] times [a_r | a_r].
        With nrows > 1 the columns can be read straight from an image: column s's pixels at row y are a window
        row of a (padded) input plane. Rows r >= h read row h-1; the caller repeats an offset for columns past
        the end (their sums are computed but meaningless)."""
        if not all(isinstance(t, types.Array) and t.dtype == types.float32 for t in (a, b, acc)):
            return None
        if not (isinstance(boffs, types.Array) and boffs.dtype == types.int64):
            return None
        sig = types.void(a, types.intp, types.intp, types.intp, types.intp, b, boffs, types.intp, types.intp,
                         types.intp, acc, types.boolean)
        pairs = S // 2

        def codegen(context, builder, signature, args):
            (a_v, a_off_v, lda_v, h_v, a_step_v, b_v, boffs_v, b_step_v, n4_v, nrows_v, acc_v, load_v) = args
            ad = builder.gep(_data(context, builder, signature.args[0], a_v), [a_off_v])
            bdata = _data(context, builder, signature.args[5], b_v)
            odata = _data(context, builder, signature.args[6], boffs_v)
            cd = _data(context, builder, signature.args[10], acc_v)
            aptr = []
            for r in range(R):
                rr = builder.select(builder.icmp_signed("<", _i64(r), h_v), _i64(r), builder.sub(h_v, _i64(1)))
                aptr.append(builder.gep(ad, [builder.mul(rr, lda_v)]))
            bptr = [builder.gep(bdata, [builder.load(builder.gep(odata, [_i64(s)]))]) for s in range(S)]
            n_acc = R * pairs
            cptr = [builder.bitcast(builder.gep(cd, [_i64(8 * q)]), _V8.as_pointer()) for q in range(n_acc)]
            entry = builder.block
            with builder.if_then(load_v):
                loaded = [builder.load(p, align=4) for p in cptr]
                load_block = builder.block
            zero = ir.Constant(_V8, [0.0] * 8)
            init = _phis(builder, (loaded, load_block), ([zero] * n_acc, entry))
            fn = builder.function
            outer = fn.append_basic_block("lanes_row")
            inner = fn.append_basic_block("lanes_step")
            row_end = fn.append_basic_block("lanes_row_end")
            done = fn.append_basic_block("lanes_done")
            pre = builder.block
            go = builder.and_(builder.icmp_signed(">", n4_v, _i64(0)), builder.icmp_signed(">", nrows_v, _i64(0)))
            builder.cbranch(go, outer, done)

            builder.position_at_end(outer)         # one row of pixels: y
            y = builder.phi(_I64)
            y.add_incoming(_i64(0), pre)
            row_acc = _phis(builder, (init, pre))
            a_rows = [builder.gep(p, [builder.mul(y, a_step_v)]) for p in aptr]
            b_rows = [builder.gep(p, [builder.mul(y, b_step_v)]) for p in bptr]
            builder.branch(inner)

            builder.position_at_end(inner)         # four pixels per step: g
            g = builder.phi(_I64)
            g.add_incoming(_i64(0), outer)
            accs = _phis(builder, (row_acc, outer))
            off = builder.mul(g, _i64(4))

            def vec(p):
                return builder.load(builder.bitcast(builder.gep(p, [off]), _V4.as_pointer()), align=4)

            join = ir.Constant(ir.VectorType(ir.IntType(32), 8), list(range(8)))
            twice = ir.Constant(ir.VectorType(ir.IntType(32), 8), [0, 1, 2, 3, 0, 1, 2, 3])
            bv = [builder.shuffle_vector(vec(b_rows[2 * p]), vec(b_rows[2 * p + 1]), join) for p in range(pairs)]
            new = []
            for r in range(R):
                a4 = vec(a_rows[r])
                av = builder.shuffle_vector(a4, a4, twice)
                new.extend(builder.fadd(accs[r * pairs + p], builder.fmul(av, bv[p])) for p in range(pairs))
            g_next = builder.add(g, _i64(1))
            g.add_incoming(g_next, inner)
            for q in range(n_acc):
                accs[q].add_incoming(new[q], inner)
            builder.cbranch(builder.icmp_signed("<", g_next, n4_v), inner, row_end)

            builder.position_at_end(row_end)
            y_next = builder.add(y, _i64(1))
            y.add_incoming(y_next, row_end)
            for q in range(n_acc):
                row_acc[q].add_incoming(new[q], row_end)
            builder.cbranch(builder.icmp_signed("<", y_next, nrows_v), outer, done)

            builder.position_at_end(done)
            final = _phis(builder, (init, pre), (new, row_end))
            for q in range(n_acc):
                builder.store(final[q], cptr[q], align=4)
            return context.get_dummy_value()

        return sig, codegen

    return lane_tile


_lane_tile = _make_lane_tile(TILE_R, TILE_S)


def weight_gradient_from_image(m, k, L, stride, out_w):
    """Whether conv_weight_gradient_image applies: darknet's products, the lane rows path, stride 1 and
    output rows of whole groups of four pixels (so that each four-lane step stays within a window row)."""
    return backend() == "darknet" and stride == 1 and out_w % 4 == 0 and _nt_path(m, k, L) == "rows"


def conv_weight_gradient_image(delta, xpad, size, out):
    """conv_weight_gradient for a stride-1 convolution read straight from its padded input, without im2col:
    xpad (n, c, h + 2 pad, w + 2 pad) (kernels.conv.pad_images), delta (n, m, out_h*out_w), out (m, c*size*size).
    The same floats as conv_weight_gradient on im2col's columns (see weight_gradient_from_image)."""
    rows, width = _lane_blocks(delta.shape[1], out.shape[1])
    out_w = xpad.shape[3] - size + 1
    _nt_lanes_image(delta, xpad, size, out, rows, width, max(1, 2048 // out_w))


@njit(cache=True, parallel=True)
def _nt_lanes_image(delta, xpad, size, out, rows, cols, ychunk):
    """_nt_lanes_rows with the columns read from the padded input: column j = (channel, ky, kx) at output
    row y is xpad[b, channel, y + ky, kx : kx + out_w]. out_w is a multiple of 4 (no tail pixels)."""
    n, m, L = delta.shape
    _, cg, hp, wp = xpad.shape
    k = cg * size * size
    out_w = wp - size + 1
    out_h = hp - size + 1
    n4 = out_w // 4
    nib = (m + rows - 1) // rows
    njb = (k + cols - 1) // cols
    tr = (rows + TILE_R - 1) // TILE_R
    ts = (cols + TILE_S - 1) // TILE_S
    for task in prange(nib * njb):
        bi0 = (task % nib) * rows
        bj0 = (task // nib) * cols
        bh = min(m, bi0 + rows) - bi0
        bw = min(k, bj0 + cols) - bj0
        acc = np.empty((tr * ts, TILE_R * TILE_S * 4), np.float32)
        offs = np.empty((ts, TILE_S), np.int64)
        for tj in range((bw + TILE_S - 1) // TILE_S):
            j0 = bj0 + tj * TILE_S
            w = min(k, j0 + TILE_S) - j0
            for s in range(TILE_S):
                j = j0 + min(s, w - 1)
                offs[tj, s] = ((j // (size * size)) * hp + (j // size) % size) * wp + j % size
        for b in range(n):
            a = delta[b].reshape(-1)
            xb = xpad[b].reshape(-1)
            for y0 in range(0, out_h, ychunk):
                ny = min(out_h, y0 + ychunk) - y0
                for tj in range((bw + TILE_S - 1) // TILE_S):
                    o = offs[tj]
                    shifted = o + y0 * wp
                    for ti in range((bh + TILE_R - 1) // TILE_R):
                        i0 = bi0 + ti * TILE_R
                        _lane_tile(a, i0 * L + y0 * out_w, L, min(m, i0 + TILE_R) - i0, out_w, xb, shifted, wp, n4,
                                      ny, acc[ti * ts + tj], y0 > 0)
            for tj in range((bw + TILE_S - 1) // TILE_S):
                j0 = bj0 + tj * TILE_S
                w = min(k, j0 + TILE_S) - j0
                for ti in range((bh + TILE_R - 1) // TILE_R):
                    i0 = bi0 + ti * TILE_R
                    q = acc[ti * ts + tj]
                    for r in range(min(m, i0 + TILE_R) - i0):
                        for s in range(w):
                            e = (r * TILE_S + s) * 4
                            out[i0 + r, j0 + s] += (q[e] + q[e + 2]) + (q[e + 1] + q[e + 3])


@njit(cache=True, parallel=True)
def _nt_lanes_rows(delta, col, out, rows, cols, chunk):
    """out[i, j] += for each image b in order: darknet's gemm_nt sum of delta[b, i] and col[b, j] (rows of
    L pixels): the four lanes as vectors, TILE_R rows of delta by TILE_S rows of col per register tile
    (_lane_tile), in steps of `chunk` pixels (a multiple of 4); the lanes combine as (l0 + l2) + (l1 + l3),
    the last L % 4 pixels continue in order, and the sum is added to out.

    Tasks own blocks of `rows` x `cols` of out (multiples of the tile): per image and step, the block's
    rows of delta and col (rows + cols rows of `chunk` pixels) stay in cache while its tiles go by; the
    tiles' lane sums wait in `acc` between steps."""
    n, m, L = delta.shape
    k = col.shape[1]
    full = L - L % 4
    nib = (m + rows - 1) // rows
    njb = (k + cols - 1) // cols
    tr = (rows + TILE_R - 1) // TILE_R
    ts = (cols + TILE_S - 1) // TILE_S
    for task in prange(nib * njb):
        bi0 = (task % nib) * rows
        bj0 = (task // nib) * cols
        bh = min(m, bi0 + rows) - bi0
        bw = min(k, bj0 + cols) - bj0
        acc = np.empty((tr * ts, TILE_R * TILE_S * 4), np.float32)
        offs = np.empty((ts, TILE_S), np.int64)   # where each tile's rows of col start (the last one repeated)
        for tj in range((bw + TILE_S - 1) // TILE_S):
            j0 = bj0 + tj * TILE_S
            w = min(k, j0 + TILE_S) - j0
            for s in range(TILE_S):
                offs[tj, s] = (j0 + min(s, w - 1)) * L
        for b in range(n):
            a = delta[b].reshape(-1)
            c = col[b].reshape(-1)
            for p0 in range(0, full, chunk):
                steps = (min(full, p0 + chunk) - p0) // 4
                for tj in range((bw + TILE_S - 1) // TILE_S):
                    shifted = offs[tj] + p0
                    for ti in range((bh + TILE_R - 1) // TILE_R):
                        i0 = bi0 + ti * TILE_R
                        _lane_tile(a, i0 * L + p0, L, min(m, i0 + TILE_R) - i0, 0, c, shifted, 0, steps, 1,
                                   acc[ti * ts + tj], p0 > 0)
            for tj in range((bw + TILE_S - 1) // TILE_S):
                j0 = bj0 + tj * TILE_S
                w = min(k, j0 + TILE_S) - j0
                for ti in range((bh + TILE_R - 1) // TILE_R):
                    i0 = bi0 + ti * TILE_R
                    q = acc[ti * ts + tj]
                    for r in range(min(m, i0 + TILE_R) - i0):
                        arow = delta[b, i0 + r]
                        for s in range(w):
                            e = (r * TILE_S + s) * 4
                            t = (q[e] + q[e + 2]) + (q[e + 1] + q[e + 3]) if full else np.float32(0.0)
                            crow = col[b, j0 + s]
                            for p in range(full, L):
                                t += arow[p] * crow[p]
                            out[i0 + r, j0 + s] += t


@njit(cache=True, parallel=True)
def _nt_lanes_batch(delta, colT, out, rows, cols):
    """out[i, j] += for each image b in order: darknet's gemm_nt sum of delta[b, i] and colT[b, :, j] (four
    lanes: lane l is the chain over the pixels l, l+4, ... below the last multiple of four; the lanes combine
    as (l0 + l2) + (l1 + l3); the remaining pixels continue in order; the sum is then added to out).

    Tasks own blocks of rows x cols of out; a task keeps its lane sums in a small array and runs each
    lane's chain as a loop over the block's columns (which vectorizes: columns are independent chains)."""
    n, m, L = delta.shape
    k = colT.shape[2]
    full = L - L % 4
    nrow = (m + rows - 1) // rows
    ncol = (k + cols - 1) // cols
    for task in prange(nrow * ncol):
        i0 = (task % nrow) * rows
        h = min(m, i0 + rows) - i0
        j0 = (task // nrow) * cols
        w = min(k, j0 + cols) - j0
        acc = np.empty((4, cols), np.float32)
        total = np.empty(cols, np.float32)
        for b in range(n):
            bt = colT[b]
            for ii in range(h):
                a = delta[b, i0 + ii]
                acc[:, :w] = 0.0
                for t in range(0, full, 4):
                    for lane in range(4):
                        av = a[t + lane]
                        q = acc[lane]
                        r = bt[t + lane, j0:j0 + w]
                        for j in range(w):
                            q[j] += av * r[j]
                q0 = acc[0]
                q1 = acc[1]
                q2 = acc[2]
                q3 = acc[3]
                for j in range(w):
                    total[j] = (q0[j] + q2[j]) + (q1[j] + q3[j])
                for t in range(full, L):
                    av = a[t]
                    r = bt[t, j0:j0 + w]
                    for j in range(w):
                        total[j] += av * r[j]
                dst = out[i0 + ii, j0:j0 + w]
                for j in range(w):
                    dst[j] += total[j]
