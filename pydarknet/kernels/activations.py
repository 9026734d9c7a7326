"""Darknet's activation functions and their gradients (activations.h), element by element.

Darknet evaluates these in C with double constants (`.1*x`, `exp(-x)`), rounding to float only when it
stores the result; Numba's typing does the same here, which keeps outputs bit-identical.
The gradient takes the activation's *output*, as darknet's does.
"""
import math

import numpy as np
from numba import njit, prange

# Names as a cfg spells them, in darknet's ACTIVATION enum order.
NAMES = ("logistic", "relu", "relie", "linear", "ramp", "tanh", "plse", "leaky", "elu", "loggy",
         "stair", "hardtan", "lhtan", "selu")
CODE = {name: i for i, name in enumerate(NAMES)}
LOGISTIC, RELU, RELIE, LINEAR, RAMP, TANH, PLSE, LEAKY, ELU, LOGGY, STAIR, HARDTAN, LHTAN, SELU = range(14)


@njit(cache=True, inline="always")
def activate(x32, a):
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
        for i in range(x.size):
            x[i] = activate(x[i], a)


@njit(cache=True, parallel=True)
def activate_array(x, a):
    """In place on a flat float32 array, in parallel chunks."""
    chunk = 1 << 16
    for c in prange((x.size + chunk - 1) // chunk):
        activate_row(x[c * chunk:(c + 1) * chunk], a)


@njit(cache=True, parallel=True)
def gradient_array(y, a, delta):
    """delta *= f'(y), in place; flat float32 arrays."""
    if a == LINEAR:
        return
    for i in prange(y.size):
        delta[i] *= gradient(y[i], a)
