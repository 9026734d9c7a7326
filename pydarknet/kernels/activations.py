"""Darknet's activation functions and their gradients (activations.h), element by element.

Darknet evaluates these in C with double constants (`.1*x`, `exp(-x)`), rounding to float only when it
stores the result; Numba's typing does the same here, which keeps outputs bit-identical.
The gradient takes the activation's *output*, as darknet's does.

The AlexeyAB fork's activations come after pjreddie's (their codes are appended, not the fork's enum order).
It evaluates them in float (expf, .1f); mish, hard_mish and swish are written in float32 here as it does.
Their gradients need the activation's input (kernels.backward.gradient_from_input), and normalize_channels*
are not element by element: they normalise each pixel across channels (activate_channels).
"""
import ctypes.util
import math
import platform

import llvmlite.binding as llvm_binding
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

# Names as a cfg spells them: pjreddie's in darknet's ACTIVATION enum order, then the AlexeyAB fork's.
NAMES = ("logistic", "relu", "relie", "linear", "ramp", "tanh", "plse", "leaky", "elu", "loggy",
         "stair", "hardtan", "lhtan", "selu",
         "relu6", "gelu", "revleaky", "swish", "mish", "hard_mish",
         "normalize_channels", "normalize_channels_softmax", "normalize_channels_softmax_maxval")
CODE = {name: i for i, name in enumerate(NAMES)}
LOGISTIC, RELU, RELIE, LINEAR, RAMP, TANH, PLSE, LEAKY, ELU, LOGGY, STAIR, HARDTAN, LHTAN, SELU = range(14)
RELU6, GELU, REVLEAKY, SWISH, MISH, HARD_MISH, NORM_CHAN, NORM_CHAN_SOFTMAX, NORM_CHAN_SOFTMAX_MAXVAL = range(14, 23)
NEEDS_INPUT = frozenset({SWISH, MISH, HARD_MISH})      # their gradient is a function of the input, not the output
ACROSS_CHANNELS = frozenset({NORM_CHAN, NORM_CHAN_SOFTMAX, NORM_CHAN_SOFTMAX_MAXVAL})
F32 = np.float32
MISH_THRESHOLD = F32(20.0)   # softplus(x) is x above it and exp(x) below minus it, as in the fork


@njit(cache=True, inline="always")
def logistic32(x):
    """The fork's logistic_activate in float: 1/(1 + expf(-x))."""
    return F32(1.0) / (F32(1.0) + math.exp(-x))


@njit(cache=True, inline="always")
def softplus32(x):
    if x > MISH_THRESHOLD:
        return x
    if x < -MISH_THRESHOLD:
        return math.exp(x)
    return math.log(math.exp(x) + F32(1.0))


@njit(cache=True, inline="always")
def tanh32(x):
    """The fork's tanh_activate: 2/(1 + expf(-2x)) - 1 in float."""
    return F32(2.0) / (F32(1.0) + math.exp(F32(-2.0) * x)) - F32(1.0)


# -- the fork's vectorised loops ------------------------------------------------------------------------------
# Built with -Ofast (SSE2), GCC turns the fork's loops over logistic, swish and mish (activate_array's logistic
# loop, activate_array_swish/_mish, gradient_array_mish) into 4-lane loops: expf, logf, tanhf (and mish's
# double exp, two lanes) become glibc's vector functions (libmvec, whose results differ from the scalar ones in
# about half the elements by an ulp), and a float division becomes the CPU's approximate reciprocal (rcpps) with
# one Newton step, r' = (r + r) - (d * r) * r. Only the last n % 4 elements of each loop go through the scalar
# functions and a true division. These helpers compute four lanes the same way (the same libmvec functions, and
# rcpps as Intel CPUs compute it: rcp_intel); without libmvec they fall back to the scalar functions lane by lane.
_X86 = platform.machine().lower() in ("x86_64", "amd64")
_MVEC = ctypes.util.find_library("mvec") if _X86 else None
if _MVEC:
    try:
        llvm_binding.load_library_permanently(_MVEC)
    except RuntimeError:
        _MVEC = None
_V4 = ir.VectorType(ir.FloatType(), 4)
_V2 = ir.VectorType(ir.DoubleType(), 2)
_SCALAR = {"expf": ("llvm.exp.f32", ir.FloatType()), "logf": ("llvm.log.f32", ir.FloatType()),
           "tanhf": ("tanhf", ir.FloatType()), "exp": ("llvm.exp.f64", ir.DoubleType())}


def _lanes(name, width):
    """An intrinsic taking `width` scalars (float32, or float64 for width 2) and returning them through the
    vector function `name` of libmvec."""
    scalar = types.float64 if width == 2 else types.float32

    @intrinsic
    def lanes(typingctx, values):
        sig = types.UniTuple(scalar, width)(types.UniTuple(scalar, width))

        def codegen(context, builder, signature, args):
            values = cgutils.unpack_tuple(builder, args[0])
            idx = [ir.Constant(ir.IntType(32), i) for i in range(width)]
            vec_type = _V2 if width == 2 else _V4
            if not _MVEC:
                fname, ftype = _SCALAR[name]
                fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ftype, [ftype]), fname)
                return context.make_tuple(builder, signature.return_type, [builder.call(fn, [v]) for v in values])
            vec = ir.Constant(vec_type, ir.Undefined)
            for i, v in enumerate(values):
                vec = builder.insert_element(vec, v, idx[i])
            symbol = f"_ZGVbN{width}v_{name}"
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec_type, [vec_type]), symbol)
            out = builder.call(fn, [vec])
            return context.make_tuple(builder, signature.return_type,
                                      [builder.extract_element(out, i) for i in idx])
        return sig, codegen
    return lanes


expf4 = _lanes("expf", 4)   # also kernels/softmax.py's vectorised build
_logf4 = _lanes("logf", 4)
_tanhf4 = _lanes("tanhf", 4)
_exp2 = _lanes("exp", 2)


def _rcp_significands():
    """Intel's rcpps table: for each value of the 11 leading fraction bits of x (an interval of significands
    [1 + i/2048, 1 + (i+1)/2048)), 1 over the interval's midpoint 1 + (2i+1)/4096, scaled into [1, 2) and
    rounded to 12 fraction bits; stored less 1. (AMD's CPUs compute other last bits, so the host's own
    instruction would make the fork's Intel-made goldens depend on the machine.)"""
    i = np.arange(2048, dtype=np.float64)
    return np.rint((2.0 / (1.0 + (2.0 * i + 1.0) / 4096.0) - 1.0) * 4096.0) / 4096.0


RCP_FRACTIONS = (_rcp_significands() * (1 << 23)).astype(np.uint32)   # the table as float32 fraction fields


@intrinsic
def _float_bits(typingctx, x):
    """A float32's bits as a uint32."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))
    return types.uint32(types.float32), codegen


@intrinsic
def _bits_float(typingctx, bits):
    """The float32 whose bits are the uint32 `bits`."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.uint32), codegen


@njit(cache=True, inline="always")
def rcp_intel(x):
    """The approximate 1/x of x86's rcpss/rcpps as Intel CPUs compute it (12 significant bits): the table's
    significand with the exponent of 1/x; zero and denormals give infinity, |x| >= 2^126 (and infinity) 0.
    In the bits: x = 2^(E-127) * 1.f gives 2^(253-E-127) * (1 + table[top 11 bits of f])."""
    if math.isnan(x):
        return x
    bits = _float_bits(F32(x))
    sign = bits & np.uint32(0x80000000)
    exponent = (bits >> np.uint32(23)) & np.uint32(0xFF)
    if exponent == 0:
        return _bits_float(sign | np.uint32(0x7F800000))
    if exponent >= 253:
        return _bits_float(sign)
    fraction = RCP_FRACTIONS[(bits >> np.uint32(12)) & np.uint32(0x7FF)]
    return _bits_float(sign | ((np.uint32(253) - exponent) << np.uint32(23)) + fraction)


@njit(cache=True, inline="always")
def recip_newton(d):
    """1/d as -Ofast computes a vector division: rcpps, then one Newton step. An infinite d (the logistic of
    x < -88.7, whose expf(-x) overflows) gives 0, as a true division and the fork's GPU build do: the CPU
    build's Newton step makes it NaN, (inf * 0) * 0, and a network trained through it diverges."""
    r = rcp_intel(d)
    if math.isinf(d):
        return r
    return (r + r) - (d * r) * r


@njit(cache=True, inline="always")
def _recip4(a, b, c, d):
    """recip_newton in four lanes."""
    return recip_newton(a), recip_newton(b), recip_newton(c), recip_newton(d)


@njit(cache=True, inline="always")
def logistic4(a, b, c, d):
    """The fork's logistic in its vector loop: 1/(1 + expf(-x)), libmvec's expf and the reciprocal above."""
    one = F32(1.0)
    ea, eb, ec, ed = expf4((-a, -b, -c, -d))
    return _recip4(ea + one, eb + one, ec + one, ed + one)


@njit(cache=True, inline="always")
def _softplus_lane(x, e, log1p_e):
    if x > MISH_THRESHOLD:
        return x
    if x < -MISH_THRESHOLD:
        return e
    return log1p_e


@njit(cache=True, inline="always")
def softplus4(a, b, c, d):
    """The fork's softplus in mish's vector loops (libmvec's expf and logf)."""
    one = F32(1.0)
    ea, eb, ec, ed = expf4((a, b, c, d))
    la, lb, lc, ld = _logf4((ea + one, eb + one, ec + one, ed + one))
    return (_softplus_lane(a, ea, la), _softplus_lane(b, eb, lb), _softplus_lane(c, ec, lc),
            _softplus_lane(d, ed, ld))


@njit(cache=True, inline="always")
def mish4(a, b, c, d):
    """The fork's activate_array_mish in its vector loop: x * (2 * (1/(1 + expf(-2 sp))) - 1)."""
    one = F32(1.0)
    two = F32(2.0)
    m2 = F32(-2.0)
    sa, sb, sc, sd = softplus4(a, b, c, d)
    ea, eb, ec, ed = expf4((sa * m2, sb * m2, sc * m2, sd * m2))
    ra, rb, rc, rd = _recip4(ea + one, eb + one, ec + one, ed + one)
    return ((ra * two - one) * a, (rb * two - one) * b, (rc * two - one) * c, (rd * two - one) * d)


@njit(cache=True, inline="always")
def activate_fork4(x, a):
    """The fork's vector loop for logistic (its activate_array), swish or mish over x in place: four lanes
    at a time, the last x.size % 4 elements as its scalar code computes them."""
    m = x.size - x.size % 4
    for i in range(0, m, 4):
        if a == MISH:
            r = mish4(x[i], x[i + 1], x[i + 2], x[i + 3])
        else:
            r = logistic4(x[i], x[i + 1], x[i + 2], x[i + 3])
            if a == SWISH:
                r = (r[0] * x[i], r[1] * x[i + 1], r[2] * x[i + 2], r[3] * x[i + 3])
        x[i] = r[0]
        x[i + 1] = r[1]
        x[i + 2] = r[2]
        x[i + 3] = r[3]
    for i in range(m, x.size):
        v = x[i]
        if a == MISH:
            x[i] = v * tanh32(softplus32(v))
        elif a == SWISH:
            x[i] = v * logistic32(v)
        else:
            x[i] = logistic32(v)


# The fork's scalar activate() (what its convolution applies element by element) computes these in float,
# with expf and float constants, where pjreddie's compute in double: activate() takes code + FORK_FLOAT for them.
FORK_FLOAT = 64
FLOAT_IN_FORK = frozenset({LOGISTIC, LOGGY, TANH, ELU, SELU, RELIE, RAMP, PLSE, LHTAN})


def fork_scalar(code):
    """The code under which activate() computes `code` as the fork's scalar activate() does."""
    return code + FORK_FLOAT if code in FLOAT_IN_FORK else code


@njit(cache=True, inline="always")
def activate_fork(x, a):
    """The fork's float activate() for the codes of FLOAT_IN_FORK."""
    one = F32(1.0)
    if a == LOGISTIC:
        return logistic32(x)
    if a == LOGGY:
        return F32(2.0) / (one + math.exp(-x)) - one
    if a == TANH:
        return tanh32(x)
    if a == ELU:
        return F32(x >= 0) * x + F32(x < 0) * (math.exp(x) - one)
    if a == SELU:
        return F32(x >= 0) * F32(1.0507) * x + F32(x < 0) * F32(1.0507) * F32(1.6732) * (math.exp(x) - one)
    if a == RELIE:
        return x if x > 0 else F32(0.01) * x
    if a == RAMP:    # x*(x > 0) + .1f*x, which -Ofast folds to 1.1f*x for x > 0
        return F32(1.1) * x if x > 0 else F32(0.1) * x
    if a == PLSE:
        if x < -4:
            return F32(0.01) * (x + F32(4.0))
        if x > 4:
            return F32(0.01) * (x - F32(4.0)) + one
        return F32(0.125) * x + F32(0.5)
    if x < 0:    # LHTAN
        return F32(0.001) * x
    if x > 1:
        return F32(0.001) * (x - one) + one
    return x


@njit(cache=True, inline="always")
def activate(x32, a):
    if a >= FORK_FLOAT:
        return activate_fork(x32, a - FORK_FLOAT)
    x = np.float64(x32)  # C promotes to double for exp() and the double constants
    if a == LINEAR:
        return x
    if a == LEAKY:
        return x if x > 0 else 0.1 * x
    if a == LOGISTIC:
        return 1.0 / (1.0 + math.exp(-x))
    if a == RELU:
        return x if x > 0 else 0.0 * x
    if a == RELIE:
        return x if x > 0 else 0.01 * x
    if a == RAMP:
        return x * (x > 0) + 0.1 * x
    if a == TANH:
        e = math.exp(2.0 * x)
        return (e - 1.0) / (e + 1.0)
    if a == PLSE:
        if x < -4:
            return 0.01 * (x + 4)
        if x > 4:
            return 0.01 * (x - 4) + 1
        return 0.125 * x + 0.5
    if a == ELU:
        return x if x >= 0 else math.exp(x) - 1.0
    if a == LOGGY:
        return 2.0 / (1.0 + math.exp(-x)) - 1.0
    if a == STAIR:
        n = math.floor(x)
        if int(n) % 2 == 0:
            return math.floor(x / 2.0)
        return (x - n) + math.floor(x / 2.0)
    if a == HARDTAN:
        return -1.0 if x < -1 else (1.0 if x > 1 else x)
    if a == LHTAN:
        if x < 0:
            return 0.001 * x
        if x > 1:
            return 0.001 * (x - 1) + 1
        return x
    if a == SELU:
        return 1.0507 * x if x >= 0 else 1.0507 * 1.6732 * (math.exp(x) - 1.0)
    if a == RELU6:
        return min(max(x, 0.0), 6.0)
    if a == REVLEAKY:    # the fork computes it as leaky
        return x if x > 0 else 0.1 * x
    if a == GELU:
        return 0.5 * x * (1.0 + math.tanh(0.797885 * x + 0.035677 * x * x * x))
    if a == SWISH:
        return x32 * logistic32(x32)
    if a == MISH:
        return x32 * tanh32(softplus32(x32))
    if a == HARD_MISH:
        if x32 > 0:
            return x32
        return x32 * x32 / F32(2.0) + x32 if x32 > -2 else F32(0.0)
    return x


@njit(cache=True, inline="always")
def gradient(y32, a):
    y = np.float64(y32)
    if a == LINEAR:
        return 1.0
    if a == LEAKY:
        return 1.0 if y > 0 else 0.1
    if a == LOGISTIC:
        return (1 - y) * y
    if a == RELU:
        return 1.0 if y > 0 else 0.0
    if a == RELIE:
        return 1.0 if y > 0 else 0.01
    if a == RAMP:
        return (1.0 if y > 0 else 0.0) + 0.1
    if a == TANH:
        return 1 - y * y
    if a == PLSE:
        return 0.01 if (y < 0 or y > 1) else 0.125
    if a == ELU:
        return 1.0 if y >= 0 else y + 1
    if a == LOGGY:
        t = (y + 1.0) / 2.0
        return 2 * (1 - t) * t
    if a == STAIR:
        return 0.0 if math.floor(y) == y else 1.0
    if a == HARDTAN:
        return 1.0 if (y > -1 and y < 1) else 0.0
    if a == LHTAN:
        return 1.0 if (y > 0 and y < 1) else 0.001
    if a == SELU:
        return 1.0507 if y >= 0 else y + 1.0507 * 1.6732
    return 1.0


@njit(cache=True, inline="always")
def activate_row(x, a):
    """In place on a flat float32 array; the common activations get their own loop so they vectorize."""
    if a == LINEAR:
        return
    if a == LEAKY:
        for i in range(x.size):
            v = x[i]
            x[i] = v if v > 0 else 0.1 * np.float64(v)
    elif a == RELU:
        for i in range(x.size):
            v = x[i]
            x[i] = v if v > 0 else 0 * v
    else:
        activate_others(x, a)


@njit(cache=True)
def activate_others(x, a):
    """activate_row for every activation but linear, leaky and relu, compiled once in a kernel of its own: inlined
    into every pass that activates, activate's 20-way switch in a loop (unswitched into 20 loops) and the fork's
    four-lane loops took most of their compile time (cold, on a Zen 3 EPYC: normalize_activate_maxpool 142 s,
    normalize_scale_bias_activate 41 s, activate_array 31 s)."""
    if a == MISH or a == SWISH:
        activate_fork4(x, a)
    else:
        for i in range(x.size):
            x[i] = activate(x[i], a)


@njit(cache=True)
def expf_array(x):
    """glibc's expf of every element of a contiguous float32 array, as the fork's scalar loops call it (numpy's
    exp differs from it in the last bit of a third of the values); a new array."""
    out = np.empty_like(x)
    src, dst = x.reshape(-1), out.reshape(-1)
    for i in range(src.size):
        dst[i] = math.exp(src[i])
    return out


# Elements per parallel task of the element-wise passes: a [yolo] layer's anchor (85 x 13 x 13 = 14365 values of
# yolov3-tiny's first head) still splits among the threads.
ACTIVATION_CHUNK = 1 << 12


@njit(cache=True, parallel=True)
def activate_array(x, a):
    """In place on a flat float32 array, in parallel chunks of ACTIVATION_CHUNK elements (a multiple of four, so
    that the fork's four-lane loops of swish and mish see the lanes it does)."""
    chunk = ACTIVATION_CHUNK
    for c in prange((x.size + chunk - 1) // chunk):
        activate_row(x[c * chunk:(c + 1) * chunk], a)


@njit(cache=True, parallel=True)
def gradient_array(y, a, delta):
    """delta *= f'(y), in place; flat float32 arrays."""
    if a == LINEAR:
        return
    for i in prange(y.size):
        delta[i] *= gradient(y[i], a)


@njit(cache=True, parallel=True)
def activate_channels(x, a, out):
    """normalize_channels(_softmax(_maxval)) on x (n, c, spatial) into out (may be x): each pixel's values
    across the channels become weights summing to 1 (less the fork's .0001 in the denominator): positive
    parts over their sum, or exponentials over theirs (less the pixel's maximum first with _maxval)."""
    n, c, spatial = x.shape
    eps = F32(0.0001)
    for task in prange(n * spatial):
        b = task // spatial
        i = task % spatial
        total = eps
        if a == NORM_CHAN:
            for k in range(c):
                v = x[b, k, i]
                if v > 0:
                    total += v
            for k in range(c):
                v = x[b, k, i]
                out[b, k, i] = v / total if v > 0 else F32(0.0)
            continue
        top = F32(0.0)
        if a == NORM_CHAN_SOFTMAX_MAXVAL:
            top = x[b, 0, i]
            for k in range(1, c):
                top = max(top, x[b, k, i])
        for k in range(c):
            total += math.exp(x[b, k, i] - top)
        for k in range(c):
            out[b, k, i] = math.exp(x[b, k, i] - top) / total


@njit(cache=True, parallel=True)
def logistic_array32(x):
    """In place on a flat float32 array: the fork's activate_array(LOGISTIC), 1.f/(1.f + expf(-x)) in float in
    its four-lane loop (its [yolo] layer; pjreddie's activate_array computes it in double)."""
    chunk = ACTIVATION_CHUNK
    for c in prange((x.size + chunk - 1) // chunk):
        activate_fork4(x[c * chunk:min(x.size, (c + 1) * chunk)], LOGISTIC)


# e^t = 2^k e^r, k = round(t / ln 2), r = t - k ln 2 (ln 2 in two parts, so that r is exact) and e^r by Cephes's
# expf polynomial: within 2 ulp of a correctly rounded expf for |t| <= 87.
_LOG2E, _LN2_HIGH, _LN2_LOW = F32(1.4426950408889634), F32(0.693359375), F32(-2.12194440e-4)
LOWEST_EXP = F32(-87.0)   # e^t's lowest t: 2^k stays a normal float32
_EXP_POLY = (F32(1.9875691500e-4), F32(1.3981999507e-3), F32(8.3334519073e-3), F32(4.1665795894e-2),
             F32(1.6666665459e-1), F32(5.0000001201e-1))
# The kernels built on it let LLVM fuse a multiply and an add into one FMA (as the fast products do): e^r's
# polynomial and ln 2's two parts then take half the instructions (mish and swish 0.77x their time on a 208 x 208
# plane); the results move by at most 3e-7 relative, and infinities and NaN keep their meaning (no other flag).
FMA = {"contract"}


@njit(cache=True, inline="always")
def _exp_parts(x, sign, high, mantissas, bits):
    """e^(sign * x[i]) as mantissas[i] (e^r) times 2^k, whose float32 bits go to bits[i] (int32): the caller's
    next loop reads bits as float32 (a bit cast in this loop kept it scalar). t = sign * x is clamped to
    [-87, high], so k stays within float32's normal exponents; a NaN stays NaN. mantissas may be x."""
    p0, p1, p2, p3, p4, p5 = _EXP_POLY
    for i in range(x.size):
        t = sign * x[i]
        t = high if t > high else t
        t = LOWEST_EXP if t < LOWEST_EXP else t
        k = np.floor(t * _LOG2E + F32(0.5))
        r = t - k * _LN2_HIGH - k * _LN2_LOW
        mantissas[i] = F32(1.0) + r + r * r * (((((p0 * r + p1) * r + p2) * r + p3) * r + p4) * r + p5)
        bits[i] = (np.int32(k) + np.int32(127)) << np.int32(23)


@njit(cache=True, inline="always")
def _logistic_run(part, bits):
    """logistic_fast on one contiguous run, in place; bits: int32 scratch, at least part's size."""
    _exp_parts(part, F32(-1.0), F32(88.0), part, bits)
    powers = bits.view(np.float32)
    for i in range(part.size):
        part[i] = F32(1.0) / (F32(1.0) + part[i] * powers[i])


# Computed by the fast modes with the e^ above (activate_fast); the logistic as pjreddie's and the fork's code it.
FAST_ACTIVATIONS = (MISH, SWISH, LOGISTIC, LOGISTIC + FORK_FLOAT)


@njit(cache=True, error_model="numpy", fastmath=FMA)
def activate_fast(x, a):
    """Mish, swish or the logistic in place on a flat float32 array as the fast modes compute them, with the
    vectorised e^ above: the logistic as logistic_fast; swish x / (1 + e^-x); mish x * n(n + 2) / (n(n + 2) + 2),
    n = e^x (tanh(log(1 + n)) without the log and the tanh; n from e^20 on, where the fork's softplus is x and
    tanh 1, gives x); below x = -87 (where the e^ stops) swish and mish are x * 0, as the fork's are from about -89
    and -17. Within a few ulps of float64's elsewhere; the fork's libm calls per element, which no loop
    vectorises, took 0.43 s of yolov4's 0.64-s `--fast` forward (2 threads, the Xeon without AMX in
    docs/performance.md). A kernel of its own, called per row, as activate_others is (compiled once);
    error_model="numpy": Python's check of each division by zero (never, here) kept the loops scalar."""
    chunk = ACTIVATION_CHUNK
    mantissas = np.empty(min(chunk, x.size), np.float32)
    bits = np.empty(min(chunk, x.size), np.int32)
    powers = bits.view(np.float32)
    for lo in range(0, x.size, chunk):
        part = x[lo:lo + chunk]
        m = mantissas[:part.size]
        if a == MISH:
            _exp_parts(part, F32(1.0), MISH_THRESHOLD, m, bits)
            for i in range(part.size):
                n = m[i] * powers[i]
                q = n * (n + F32(2.0))
                v = part[i]
                part[i] = v * (q / (q + F32(2.0))) if v >= LOWEST_EXP else v * F32(0.0)
        elif a == SWISH:
            _exp_parts(part, F32(-1.0), F32(88.0), m, bits)
            for i in range(part.size):
                v = part[i]
                part[i] = v / (F32(1.0) + m[i] * powers[i]) if v >= LOWEST_EXP else v * F32(0.0)
        else:
            _logistic_run(part, bits)


@njit(cache=True, parallel=True, fastmath=FMA)
def logistic_fast(x):
    """In place on a flat float32 array: 1/(1 + e^-x) with the e^ above, for the fast products. darknet's
    expf is a library call per element that no loop vectorises: 0.34 ms of yolov3-tiny's 26 x 26 [yolo] layer on
    a Zen 5 EPYC (2 threads), where this takes 0.03. 2^k is built from its bits, in an int32 array (the first
    loop) that the second reads as float32: k is clamped to float32's normal exponents, so e^-x is at most
    2.4e38 and the logistic 4e-39 at least; a NaN stays NaN."""
    chunk = ACTIVATION_CHUNK
    for c in prange((x.size + chunk - 1) // chunk):
        part = x[c * chunk:min(x.size, (c + 1) * chunk)]
        _logistic_run(part, np.empty(part.size, np.int32))


@njit(cache=True, parallel=True, fastmath=FMA)
def yolo_fast(x, out, cells, squash, scale, shift):
    """[yolo]'s forward at inference with the fast products, in one parallel pass: x (anchors, entries * cells),
    each anchor's rows, copied into out; with `squash` (not the fork's new_coords) logistic_fast's logistic on x,
    y, objectness and the class scores (entries 0, 1 and 4 on); then, for scale != 1, x and y scaled about the
    cell's centre (x scale, then + shift, each rounded). The same floats as those steps one call each, which made
    six calls and a copy a head, each call waking the threads."""
    anchors, size = x.shape
    chunk = ACTIVATION_CHUNK
    runs = (size + chunk - 1) // chunk
    for task in prange(anchors * runs):
        a, lo = task // runs, task % runs * chunk
        hi = min(size, lo + chunk)
        row = out[a]
        row[lo:hi] = x[a, lo:hi]
        for first, last in ((0, 2 * cells), (4 * cells, size)):
            if squash and max(lo, first) < min(hi, last):
                part = row[max(lo, first):min(hi, last)]
                _logistic_run(part, np.empty(part.size, np.int32))
        if scale != F32(1.0):
            _stretch(row[lo:min(hi, 2 * cells)], scale, shift)


@njit(cache=True, fastmath=False)
def _stretch(part, scale, shift):
    """part * scale, then + shift, each rounded as darknet's: a function of its own, fastmath=False said (a callee
    that does not say inherits its caller's), so that yolo_fast's FMA contraction does not fuse the two."""
    for i in range(part.size):
        v = part[i] * scale
        part[i] = v + shift
