"""The update rule every layer's parameters follow (darknet's update_*_layer): SGD with momentum and weight
decay, or Adam, applied to the updates accumulated since the last one. train.update_args makes the arguments."""
from dataclasses import dataclass

import numpy as np

from ...kernels import backward

F32 = np.float32


@dataclass
class UpdateArgs:
    """What update_network hands every layer (darknet's update_args)."""
    batch: int
    learning_rate: np.float32
    momentum: np.float32
    decay: np.float32
    adam: bool = False
    B1: np.float32 = F32(0.9)
    B2: np.float32 = F32(0.999)
    eps: np.float32 = F32(1e-7)
    t: int = 0


def update_layer(layer, args):
    """SGD with momentum and decay (or Adam) on every trainable array of `layer`, as darknet."""
    rate = F32(F32(args.learning_rate) * F32(layer.learning_rate))
    batch = args.batch
    decay = F32(-args.decay * F32(batch))
    for param, update, decayed in layer.trainable:
        p = getattr(layer, param, None)
        if p is None:
            continue
        u = getattr(layer, update)
        pf, uf = p.reshape(-1), u.reshape(-1)
        if args.adam:
            _adam(layer, param, pf, uf, decay, rate, args)
            continue
        if decayed:
            backward.axpy(decay, pf, uf)
        backward.axpy(F32(rate / F32(batch)), uf, pf)
        uf *= F32(args.momentum)


def _adam(layer, name, p, u, decay, rate, args):
    state = layer.__dict__.setdefault("_adam", {})
    if name not in state or state[name][0].shape != p.shape:
        state[name] = (np.zeros_like(p), np.zeros_like(p))
    m, v = state[name]
    B1, B2 = F32(args.B1), F32(args.B2)
    m *= B1
    v *= B2
    u += decay * p
    m += F32(F32(1.0) - B1) * u
    u *= u
    v += F32(F32(1.0) - B2) * u
    mhat = m / F32(F32(1.0) - F32(np.power(B1, F32(args.t))))
    vhat = v / F32(F32(1.0) - F32(np.power(B2, F32(args.t))))
    p += rate * mhat / (np.sqrt(vhat) + F32(args.eps))
    u.fill(0)
