"""The reduced-precision products emulated in numpy, so that every CPU checks the arithmetic of the paths it lacks.

`emulate(engine, monkeypatch)` makes the network choose its products as a CPU with `engine` would (the real rules:
products.bf16_kernel, int16_kernel, winograd_tile) and computes the layers those rules give to the reduced-precision
products with numpy instead of the instructions:
- "amx" (--bf16 on the AMX tiles) and "dpbf16ps" (--bf16 on AVX-512's vdpbf16ps): the weights and each layer's
  input rounded to bf16 (to nearest, ties to even); the products of two bf16 are exact in float32, and their sums
  are float32 ones. (vdpbf16ps's F(2x2) layers take --int16's kernel.)
- "int16" (VNNI's vpdpwssd): the weights per filter and the layer's input per image (for "winograd", U per position
  and filter, V per position) in 12-bit units, the integer sums exact (float64 holds them), scaled back in float32.
Everything else (the fast products' layers, F(2x2)'s transforms, bias, activations) runs pydarknet's own code.

What the emulation cannot follow is the hardware's order of the float32 sums (the tiles' is unpublished, and
numpy's BLAS sums in blocks). The order matters more than it would in float32 alone: a value that moves by one ulp
may cross a bf16 rounding boundary in the next layer's input, a jump of 2^-9 of it, so the bf16 paths' detections
move with the order by several thousandths (see ORDER_MARGIN), where the products' own rounding moves them by up to
a hundredth. The int16 sums are integers: there the order changes nothing but the float32 rounding of the scaled
sum."""
import numpy as np

from pydarknet.kernels import amx, bf16, int16, products
from pydarknet.kernels.conv import im2col_batch
from pydarknet.kernels.epilogue import NO_RESIDUAL_PLANES, NONE, apply
from pydarknet.kernels.winograd import transform_input2, transform_output2, transform_weights
from pydarknet.network.layers import convolutional

ENGINES = ("amx", "dpbf16ps", "int16")
BF16_KERNELS = ("blocked", "packed", "direct")   # products.bf16_kernel's: one product, three layouts
# How far the emulation may be from the hardware, taken off the promise. Against the hardware: the float32 order
# (numpy's) gave 0.4327 and 0.4527 for the yolov4-tiny candidate that the tiles and vdpbf16ps (F(2x2) then on bf16
# transforms) put at 0.4325 and 0.4527 on a Sapphire Rapids Xeon (issue 50), and the int16 emulation is the
# kernels' outputs bit for bit. Summed in two other orders (float64; float32 over k reversed), the largest move
# of a probability on the nine detector cases of tests/test_reduced_precision.py differed by up to .0061 (the
# tiles) and .0085 (vdpbf16ps), one candidate's by as much; numpy's float32 order is the one that tracked the
# hardware. The largest moves emulated: .0077 (tiles), .0096 (vdpbf16ps), .0057 (int16) in probability, .0029 in
# box (in the three orders .0096 and .0033).
ORDER_MARGIN = .005


def bf16_round(a):
    """float32 -> the nearest bf16 (ties to even), as float32: what the bf16 kernels multiply."""
    bits = np.ascontiguousarray(a, np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16
    return bits.astype(np.uint32).view(np.float32)


def twelve_bits(a, axes, divide=False):
    """a (float32) in 12-bit units of its largest |value| over `axes` / 2047: the integer values (float64) and the
    units (float64, broadcastable against a). Weights are divided by their unit in float64 (int16.quantize_weights),
    an image multiplied by its unit's float32 reciprocal (int16.image_words, its Winograd V's _round_positions)."""
    peak = np.abs(a).max(axis=axes, keepdims=True).astype(np.float64)
    units = np.where(peak > 0, peak / int16.WEIGHT_LEVELS, 1.0)
    scaled = a / units if divide else a * (1.0 / units).astype(np.float32)
    return np.rint(scaled).astype(np.float64), units


class Emulated:
    """Stands in for the kernels that convolutional.py calls for the reduced-precision products."""

    @staticmethod
    def product(a, b):
        """a (m, k) @ b (k, n) in float32 sums (numpy's order; the operands' products are exact in float32)."""
        return np.matmul(np.ascontiguousarray(a, np.float32), np.ascontiguousarray(b, np.float32))

    @staticmethod
    def columns(x, size, stride, pad, dilation, out_h, out_w):
        c = x.shape[0]
        cols = np.empty((1, c * size * size, out_h * out_w), np.float32)
        im2col_batch(np.ascontiguousarray(x, np.float32)[None], 0, c, size, stride, pad, cols, False, dilation)
        return cols[0]

    # --bf16 (products.pack_bf16, bf16_convolution): every kernel multiplies the rounded weights by the rounded image
    def pack_bf16(self, weights, channels, size, kernel):
        assert kernel in BF16_KERNELS, f"the emulation does not know the bf16 kernel {kernel!r}: teach it"
        return bf16_round(weights)

    def bf16_convolution(self, a, kernel, filters, shape, size, stride, pad, dilation, out_h, out_w, scratch,
                         rounded=False):
        c, h, w = shape

        def convolve(x, out, store, pooled_only, words=None):   # (the output is written either way)
            if rounded:   # the blocked kernel's layout, as the layer before filled it: back to planes
                blocks, rows, wp, n = x.shape
                x = (x.astype(np.uint32) << 16).view(np.float32).transpose(0, 3, 1, 2).reshape(blocks * n, rows, wp)
                x = x[:c, pad:pad + h, pad:pad + w]
            out[...] = self.product(a, bf16_round(self.columns(x, size, stride, pad, dilation, out_h, out_w)))
            apply(out, out_w, store)   # the store's arithmetic: the same floats, in the tiles' store or in a pass
            if words is not None:   # the blocked kernel's hand-over: the next layer's input, rounded in its layout
                amx.to_bf16_blocked(out.reshape(filters, out_h, out_w), words[1], words[0])
        return convolve

    # --int16 (int16.quantize_weights, int16_convolution; quantize_winograd_weights, conv_int16_winograd)
    def quantize_weights(self, weights, channels, size):
        q, units = twelve_bits(weights, 1, divide=True)
        return q, units[:, 0].astype(np.float32)

    def int16_convolution(self, a, units, shape, size, stride, pad, dilation, out_h, out_w, scratch):
        def convolve(x, out, store, pooled_only, residual=NO_RESIDUAL_PLANES):   # (the output is written either way)
            q, unit = twelve_bits(x, None)
            out[...] = (a @ self.columns(q.astype(np.float32), size, stride, pad, dilation, out_h, out_w)
                        .astype(np.float64)).astype(np.float32)   # integers below 2^53: exact in any order
            factors = units * np.float32(unit.item())
            if store.affine.shape[1]:   # the factors first, then the store's arithmetic (epilogue.store_rows)
                store.affine[3] = factors
                apply(out, out_w, store, residual)
            else:
                out *= factors[:, None]
        return convolve

    def quantize_winograd_weights(self, weights, channels):
        q, units = twelve_bits(transform_weights(weights, channels, 2), 2, divide=True)   # per position and filter
        return q, units[..., 0].astype(np.float32)

    def conv_int16_winograd(self, a, units, x, pad, out_h, out_w, out, scratch, store=NONE,
                            residual=NO_RESIDUAL_PLANES, pooled_only=False):
        tiles_w = (out_w + 1) // 2
        V = np.zeros((16, x.shape[0], tiles_w * ((out_h + 1) // 2)), np.float32)
        transform_input2(x, pad, tiles_w, V)
        q, image_units = twelve_bits(V, (1, 2))   # per position
        M = (a @ q).astype(np.float32) * (units * image_units[:, :, 0].astype(np.float32))[:, :, None]
        transform_output2(M, tiles_w, out_h, out_w, out, *store, residual, bool(pooled_only))


def emulate(engine, monkeypatch):
    """Choose the products as a CPU with `engine` ("amx", "dpbf16ps" or "int16") would, and compute its layers with
    the emulation (see the module's docstring). Undone with monkeypatch; the caller resets products.set_backend."""
    assert engine in ENGINES
    monkeypatch.setattr(amx, "unavailable", lambda: None if engine == "amx" else amx.TURNED_OFF)
    monkeypatch.setattr(bf16, "unavailable", lambda: None)
    monkeypatch.setattr(int16, "unavailable", lambda: None)
    emulated = Emulated()
    for name in ("pack_bf16", "bf16_convolution", "quantize_weights", "int16_convolution",
                 "quantize_winograd_weights", "conv_int16_winograd"):
        monkeypatch.setattr(convolutional, name, getattr(emulated, name))
    products.set_backend("int16" if engine == "int16" else "bf16")
    assert products.backend() == ("int16" if engine == "int16" else "bf16")
    assert engine == "int16" or products.bf16_engine() == engine
