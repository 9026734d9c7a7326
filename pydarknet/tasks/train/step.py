"""Training, darknet's way: the learning-rate schedule, the parameter updates and one training call.

A training loop (the `train` command) does, per iteration:

    x, y = <a batch of net.batch * net.subdivisions images and their truths>
    loss = train_network(net, x, y)         # darknet's train_network(net, d)
    rate = get_current_rate(net)            # what darknet prints after the step
    ... print, save net (weights.save_weights) every so often, stop at net.max_batches

`train_network` splits x into chunks of `net.batch` images (darknet divides the cfg's batch by its subdivisions
when it parses the [net] section), and for each chunk runs darknet's train_network_datum: `seen += batch`,
forward in training mode with the truth, backward, and an update of every layer once `subdivisions` chunks
have been accumulated. It returns the average cost per image (float32), as train_network does.

Truth layouts (y, any array with n rows: it is flattened per image, as darknet's d.y matrix):
- [yolo]: (n, 90, 5) rows `x y w h class` relative to the image, zero rows after the last box;
- [region]: the same rows (with coords > 4, `x y w h <mask values> class`), at most 30 read;
- [detection] (YOLOv1): darknet's grid, per cell `is-object, classes one-hot, x y (within the cell) w h`;
- [softmax]/[logistic]/[cost]: one value per output, e.g. one-hot rows (n, classes) for a classifier.

Output layers print darknet's statistics line (to stderr) on every chunk unless `net.quiet` is set; the
last values are kept in `layer.stats`.

Exactness: every operation follows darknet's float arithmetic and -Ofast summation orders except the matrix
products, which use numpy's BLAS unless `kernels.products.set_backend("darknet")` (or PYDARKNET_PRODUCTS=
darknet) selects darknet's exact order; with it the golden training runs are reproduced bit for bit.

Parameter updates (darknet's update_*_layer on the CPU), with B = net.batch * net.subdivisions images per
update and lr = get_current_rate(net) * the layer's `learning_rate=` scale, for every parameter p with its
accumulated update u (the negative gradient summed over the B images):

    SGD:   u += -decay*B * p     (weights only: not biases nor batch-norm scales)
           p += lr/B * u
           u *= momentum
    Adam:  (net.adam; darknet trains with it only on the GPU: its adam_update_gpu)
           m = B1*m + (1-B1)*(u - decay*B*p);  v = B2*v + (1-B2)*(u - decay*B*p)^2   (every parameter decays)
           p += lr * (m / (1 - B1^t)) / (sqrt(v / (1 - B2^t)) + eps);  u = 0
"""
import math
import random
import sys

import numpy as np

from ...files.config import DarknetError
from ...network.layers.update import UpdateArgs
from ..stops import held as stops_held

F32 = np.float32

POLICIES = ("constant", "step", "steps", "exp", "poly", "sigmoid", "random")


def get_current_batch(net):
    """Updates done so far: seen / (batch * subdivisions), as darknet counts them."""
    return int(net.seen) // (net.batch * net.subdivisions)


def get_current_rate(net):
    """The learning rate for the current batch number, exactly as pjreddie's get_current_rate (float32).

    burn_in: lr * (batch_num / burn_in)^power while batch_num < burn_in, whatever the policy. Then
    constant: lr; step: lr * scale^(batch_num / step) (integer division); steps: lr times every
    scales[i] whose steps[i] <= batch_num; exp: lr * gamma^batch_num; poly: lr * (1 - batch_num /
    max_batches)^power; random: lr * u^power with u uniform in [0, 1) (from `net.rng` when set, else Python's
    `random`); sigmoid: lr / (1 + exp(gamma * (batch_num - step))), where darknet subtracts in unsigned
    (size_t) arithmetic: before `step` the difference wraps to about 1.8e19, so with gamma > 0 the rate is
    0 until batch `step` (then lr/2, falling) -- reproduced here. An unknown policy name gives lr, as darknet
    (which says "Couldn't find policy" at parse time).
    """
    batch_num = get_current_batch(net)
    lr = F32(net.learning_rate)
    power = F32(net.power)
    if batch_num < net.burn_in:
        ratio = F32(F32(batch_num) / F32(net.burn_in))
        return F32(np.float64(lr) * math.pow(np.float64(ratio), np.float64(power)))
    policy = net.policy
    if policy == "constant":
        return lr
    if policy == "step":
        return F32(np.float64(lr) * math.pow(np.float64(F32(net.scale)), batch_num // net.step))
    if policy == "steps":
        rate = lr
        for step, scale in zip(net.steps, net.scales):
            if step > batch_num:
                return rate
            rate = F32(rate * F32(scale))
        return rate
    if policy == "exp":
        return F32(np.float64(lr) * _pow(np.float64(F32(net.gamma)), batch_num))
    if policy == "poly":
        base = F32(F32(1.0) - F32(F32(batch_num) / F32(net.max_batches)))
        return F32(np.float64(lr) * _pow(np.float64(base), np.float64(power)))
    if policy == "random":
        rng = getattr(net, "rng", None)
        u = F32(rng.random() if rng is not None else random.random())
        return F32(np.float64(lr) * _pow(np.float64(u), np.float64(power)))
    if policy == "sigmoid":
        diff = (batch_num - net.step) % (1 << 64)          # size_t subtraction
        z = np.float64(F32(net.gamma) * F32(diff))
        return F32(np.float64(lr) * (1.0 / (1.0 + _exp(z))))
    return lr


def _pow(x, y):
    try:
        return math.pow(x, y)
    except (OverflowError, ValueError):
        return float(np.power(np.float64(x), np.float64(y)))


def _exp(z):
    try:
        return math.exp(z)
    except OverflowError:
        return math.inf


def check_policy(net):
    """Refuse schedules darknet would crash on or misread (call before training)."""
    if net.policy not in POLICIES:
        print(f"Couldn't find policy {net.policy}, going with constant", file=sys.stderr)
    if net.policy == "steps":
        if not net.steps or not net.scales:
            raise DarknetError(f"{net.cfg_path}: STEPS policy must have steps and scales in cfg file")
        if len(net.scales) < len(net.steps):
            raise DarknetError(f"{net.cfg_path}: policy=steps has {len(net.steps)} steps but "
                               f"{len(net.scales)} scales")
    if net.policy == "poly" and net.max_batches <= 0:
        raise DarknetError(f"{net.cfg_path}: policy=poly needs max_batches > 0")
    if net.policy == "step" and net.step <= 0:
        raise DarknetError(f"{net.cfg_path}: policy=step needs step > 0")


def update_args(net):
    """darknet's update_network preamble: the arguments every layer's update gets (advances net.t)."""
    net.t += 1
    return UpdateArgs(batch=net.batch * net.subdivisions, learning_rate=get_current_rate(net),
                      momentum=F32(net.momentum), decay=F32(net.decay), adam=bool(net.adam),
                      B1=F32(net.B1), B2=F32(net.B2), eps=F32(net.eps), t=net.t)


# -- the training calls -----------------------------------------------------------------------------------------
def train_datum(net, x, y):
    """darknet's train_network_datum on one chunk of net.batch images: returns the network cost (float32)."""
    net.seen += net.batch
    cost = net.forward_train(x, y)
    net.backward()
    if (net.seen // net.batch) % net.subdivisions == 0:
        update_network(net)
    return cost


def update_network(net):
    """darknet's update_network: every layer applies its accumulated updates at the current rate (on the GPU
    when the network runs there: pydarknet.network.cuda's engine)."""
    with stops_held():   # a stop signal never leaves some layers updated and others not
        args = update_args(net)
        if net.engine is not None:
            net.engine.update(args)
            return
        for layer in net.layers:
            layer.update(args)
        net.params_version += 1


def train_network(net, x, y):
    """darknet's train_network(net, d): x (n, c, h, w) with n a multiple of net.batch, y its truths (n, ...).
    Returns the summed chunk costs divided by the number of images, in float32."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 4 or x.shape[1:] != net.input_shape:
        raise DarknetError(f"{net.cfg_path}: training input of shape {x.shape} given, the network takes "
                           f"(n, {', '.join(map(str, net.input_shape))})")
    y = np.ascontiguousarray(y, dtype=np.float32)
    if y.shape[0] != x.shape[0]:
        raise DarknetError(f"{x.shape[0]} images but {y.shape[0]} truths")
    n = x.shape[0]
    if n % net.batch:
        raise DarknetError(f"{n} images do not split into chunks of batch={net.batch} (the cfg's batch divided "
                           "by subdivisions)")
    chunks = n // net.batch
    total = F32(0.0)
    try:
        for i in range(chunks):
            part = slice(i * net.batch, (i + 1) * net.batch)
            total = F32(total + F32(train_datum(net, x[part], y[part])))
    finally:
        net.train = False   # back in inference mode, whatever happened
    return F32(total / F32(chunks * net.batch))
