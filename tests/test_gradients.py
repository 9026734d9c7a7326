"""Finite-difference checks of every layer's backward pass.

Darknet's `delta` is minus the gradient of the loss with respect to a layer's output. To check a layer we
feed f = sum(R * output) with random R into the backward pass by setting the last layer's delta to R: the
deltas it propagates (and the *_updates it accumulates) must then be the gradient of f, which we estimate by
central differences of the layers' own float32 forward pass (in training mode), reading f in float64.

Where darknet's delta is knowingly not the gradient of its forward pass, the test says so and checks what it
is instead:
- batch-norm: the forward divides by sqrt(var) + 1e-6 with the unbiased (n-1) variance, the backward uses
  sqrt(var + 1e-5) and differentiates the variance as if it divided by n: off by O(1/n) in the variance term.
- [yolo]: the delta is minus the gradient of an implied loss (logistic cross-entropy for x, y, objectness and
  classes, halved squared error for w, h, each times 2 - w*h for the box terms) that is not the cost darknet
  reports (sum of delta^2); the test rebuilds that implied loss independently and differentiates it.
- [shortcut] with alpha != 1 between layers of different shapes: darknet scales the whole delta by alpha,
  though its forward scales only the overlap (tested with alpha = 1 there; alpha != 1 with equal shapes).
"""

import numpy as np
import pytest

from pydarknet.kernels.activations import ACROSS_CHANNELS, NAMES, NEEDS_INPUT, activate, CODE
from pydarknet.kernels.backward import gradient32
from pydarknet.network.network import Network
from pydarknet.tasks.train.step import update_network


def make_net(tmp_path, w, h, c, batch, body):
    path = tmp_path / "net.cfg"
    path.write_text(f"[net]\nbatch={batch}\nwidth={w}\nheight={h}\nchannels={c}\n\n{body}")
    net = Network(path, quiet_unused=True)
    net.quiet = True
    return net


def randomize(net, rng):
    for layer in net.layers:
        for name in ("weights", "biases"):
            a = getattr(layer, name, None)
            if a is not None and layer.type != "yolo":
                a[...] = rng.normal(0, 0.5, a.shape)
        if getattr(layer, "batch_normalize", False):
            layer.scales[...] = rng.uniform(0.5, 1.5, layer.scales.shape)


def objective(net, x, r):
    net.forward_train(x, np.zeros((x.shape[0], 1), np.float32))
    return float(np.sum(net.layers[-1].output.astype(np.float64) * r))


def analytic(net, x, r, fill=0.0):
    """(input delta, {layer index: {param: update}}) for f = sum(r * output); the input delta starts at `fill`
    to show that the backward pass adds to it."""
    net.forward_train(x, np.zeros((x.shape[0], 1), np.float32))
    for layer in net.layers:
        for _, update, _ in layer.trainable:
            if getattr(layer, update, None) is not None:
                getattr(layer, update)[...] = 0
    net.layers[-1].delta[...] = r
    gx = np.full(x.shape, fill, np.float32)
    net.backward(input_delta=gx)
    updates = {layer.index: {param: getattr(layer, update).copy() for param, update, _ in layer.trainable
                             if getattr(layer, update, None) is not None} for layer in net.layers}
    return gx - np.float32(fill), updates


def numeric(f, array, indices, h):
    """Central differences of f() over array.flat[indices] (the float32 steps actually taken)."""
    out = np.empty(len(indices))
    flat = array.reshape(-1)
    for n, i in enumerate(indices):
        old = flat[i]
        flat[i] = old + np.float32(h)
        hi, fp = float(flat[i]), f()
        flat[i] = old - np.float32(h)
        lo, fm = float(flat[i]), f()
        flat[i] = old
        out[n] = (fp - fm) / (hi - lo)
    return out


def check(ana, num, rtol, what, atol=0.0):
    ana = np.asarray(ana, np.float64)
    err = np.max(np.abs(ana - num))
    scale = max(np.max(np.abs(num)), 1e-6)
    assert err <= rtol * scale + atol, \
        f"{what}: max |analytic - numerical| = {err:.3g}, max |gradient| = {scale:.3g}"


def pick(size, rng, limit=150):
    return np.arange(size) if size <= limit else np.sort(rng.choice(size, limit, replace=False))


def check_network(net, x, rng, h=1e-2, rtol=2e-3, params=True, atol=0.0):
    r = rng.normal(size=(x.shape[0],) + net.layers[-1].out_shape).astype(np.float32)
    gx, updates = analytic(net, x, r)
    f = lambda: objective(net, x, r)  # noqa: E731
    idx = pick(x.size, rng)
    check(gx.reshape(-1)[idx], numeric(f, x, idx, h), rtol, "input", atol)
    if params:
        for layer in net.layers:
            for param, _, _ in layer.trainable:
                a = getattr(layer, param, None)
                if a is None:
                    continue
                idx = pick(a.size, rng)
                check(updates[layer.index][param].reshape(-1)[idx], numeric(f, a, idx, h), rtol,
                      f"layer {layer.index} {param}", atol)
    return gx, r


# -- convolutional ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size, stride, pad, groups, activation", [
    (3, 1, 1, 1, "linear"),
    (3, 2, 1, 2, "logistic"),
    (3, 2, 0, 1, "tanh"),
    (1, 1, 0, 1, "logistic"),      # the direct 1x1 path (no im2col)
    (1, 2, 0, 2, "linear"),        # 1x1 with a stride goes through im2col
    (2, 2, 0, 4, "linear"),        # depthwise
])
def test_convolutional(tmp_path, size, stride, pad, groups, activation):
    rng = np.random.default_rng(1)
    net = make_net(tmp_path, 7, 6, 4, 2, f"[convolutional]\nfilters=4\nsize={size}\nstride={stride}\n"
                                            f"padding={pad}\ngroups={groups}\nactivation={activation}\n")
    randomize(net, rng)
    x = rng.normal(size=(2, 4, 6, 7)).astype(np.float32)
    check_network(net, x, rng)


def test_convolutional_adds_to_previous_delta(tmp_path):
    """The input gradient is added to what the previous delta already holds (darknet's 1x1 path overwrites)."""
    rng = np.random.default_rng(2)
    for size in (1, 3):
        net = make_net(tmp_path, 5, 5, 3, 1, f"[convolutional]\nfilters=2\nsize={size}\npad=1\nactivation=linear\n")
        randomize(net, rng)
        x = rng.normal(size=(1, 3, 5, 5)).astype(np.float32)
        r = rng.normal(size=(1, 2, 5, 5)).astype(np.float32)
        g0, _ = analytic(net, x, r, fill=0.0)
        g1, _ = analytic(net, x, r, fill=2.5)
        assert np.allclose(g0, g1, atol=1e-6)


def test_weight_updates_accumulate(tmp_path):
    """Two backward passes without an update add their weight gradients."""
    rng = np.random.default_rng(3)
    net = make_net(tmp_path, 5, 5, 2, 1, "[convolutional]\nfilters=2\nsize=3\npad=1\nactivation=linear\n")
    randomize(net, rng)
    x = rng.normal(size=(1, 2, 5, 5)).astype(np.float32)
    r = rng.normal(size=(1, 2, 5, 5)).astype(np.float32)
    _, once = analytic(net, x, r)
    net.forward_train(x, np.zeros((1, 1), np.float32))
    net.layers[0].delta[...] = r
    net.backward()
    assert np.allclose(net.layers[0].weight_updates, 2 * once[0]["weights"], rtol=1e-6, atol=1e-6)


# -- batch-norm --------------------------------------------------------------------------------------------------
def test_batchnorm_training_mode(tmp_path):
    """Gradient through batch statistics (n = 4 images x 8 x 8 = 256 values per channel: darknet's 1/n instead
    of 1/(n-1) in the variance term stays well inside the tolerance)."""
    rng = np.random.default_rng(4)
    net = make_net(tmp_path, 8, 8, 3, 4, "[convolutional]\nbatch_normalize=1\nfilters=3\nsize=3\npad=1\n"
                                          "activation=linear\n[convolutional]\nfilters=2\nsize=1\nactivation=logistic\n")
    randomize(net, rng)
    x = rng.normal(size=(4, 3, 8, 8)).astype(np.float32)
    check_network(net, x, rng, h=1e-2, rtol=5e-3)


def test_batchnorm_delta_is_darknets_formula(tmp_path):
    """The batch-norm backward against darknet's formulas written out in float64, on a small batch (n = 2 x 3 x 3,
    where they are visibly not the exact gradient)."""
    rng = np.random.default_rng(5)
    net = make_net(tmp_path, 3, 3, 2, 2, "[convolutional]\nbatch_normalize=1\nfilters=2\nsize=1\nactivation=linear\n")
    randomize(net, rng)
    layer = net.layers[0]
    x = rng.normal(size=(2, 2, 3, 3)).astype(np.float32)
    r = rng.normal(size=(2, 2, 3, 3)).astype(np.float32)
    _, updates = analytic(net, x, r)
    conv = layer.bn_x.astype(np.float64)                               # (n, c, spatial) before normalization
    n = conv.shape[0] * conv.shape[2]
    mean = conv.mean(axis=(0, 2))
    var = conv.var(axis=(0, 2), ddof=1)
    x_norm = (conv - mean[:, None]) / (np.sqrt(var)[:, None] + 1e-6)
    d = r.reshape(conv.shape).astype(np.float64)
    assert np.allclose(updates[0]["biases"], d.sum(axis=(0, 2)), rtol=1e-5, atol=1e-6)
    assert np.allclose(updates[0]["scales"], (d * x_norm).sum(axis=(0, 2)), rtol=1e-5, atol=1e-6)
    d = d * layer.scales[:, None]
    root = np.sqrt(var + 1e-5)
    mean_delta = -d.sum(axis=(0, 2)) / root
    var_delta = -0.5 * (d * (conv - mean[:, None])).sum(axis=(0, 2)) * (var + 1e-5) ** -1.5
    expect = d / root[:, None] + var_delta[:, None] * 2 * (conv - mean[:, None]) / n + mean_delta[:, None] / n
    assert np.allclose(layer.delta.reshape(conv.shape), expect, rtol=1e-4, atol=1e-6)
    # ... and how far that is from the exact gradient of the forward pass (the 1/n vs 1/(n-1))
    exact_var_delta = var_delta * (var + 1e-5) ** 1.5 * (np.sqrt(var) + 1e-6) ** -2 / np.sqrt(var)
    exact = (d / (np.sqrt(var)[:, None] + 1e-6) + exact_var_delta[:, None] * 2 * (conv - mean[:, None]) / (n - 1)
             + (-d.sum(axis=(0, 2)) / (np.sqrt(var) + 1e-6))[:, None] / n)
    f = lambda: objective(net, x, r)  # noqa: E731
    num = numeric(f, layer.weights, np.arange(layer.weights.size), 1e-2)
    grad_w = np.einsum("bfs,bcs->fc", exact, x.reshape(2, 2, 9).astype(np.float64)).reshape(-1)
    check(grad_w, num, 2e-3, "exact batch-norm gradient")
    ours = updates[0]["weights"].reshape(-1)
    assert np.max(np.abs(ours - grad_w)) > 1e-3 * np.max(np.abs(grad_w))   # darknet's is measurably not it


def test_rolling_statistics():
    """Rolling mean/variance move 1 % towards the batch's (variance with n-1), as darknet."""
    from pydarknet.kernels.backward import batchnorm_train_forward
    rng = np.random.default_rng(6)
    out = rng.normal(2, 3, size=(3, 2, 10)).astype(np.float32)
    conv = out.astype(np.float64).copy()
    rm, rv = np.array([1, 2], np.float32), np.array([3, 4], np.float32)
    mean, var = np.empty(2, np.float32), np.empty(2, np.float32)
    bx, bn = np.empty_like(out), np.empty_like(out)
    batchnorm_train_forward(out, np.ones(2, np.float32), np.zeros(2, np.float32), rm, rv, mean, var, bx, bn,
                            CODE["linear"])
    assert np.allclose(mean, conv.mean(axis=(0, 2)), rtol=1e-6)
    assert np.allclose(var, conv.var(axis=(0, 2), ddof=1), rtol=1e-5)
    assert np.allclose(rm, 0.99 * np.array([1, 2]) + 0.01 * conv.mean(axis=(0, 2)), rtol=1e-6)
    assert np.allclose(rv, 0.99 * np.array([3, 4]) + 0.01 * conv.var(axis=(0, 2), ddof=1), rtol=1e-6)
    assert np.array_equal(bx, conv.astype(np.float32))


# -- activations -------------------------------------------------------------------------------------------------
KINKS = {"relu": [0], "leaky": [0], "relie": [0], "ramp": [0], "plse": [-4, 4], "elu": [0], "selu": [0],
         "hardtan": [-1, 1], "lhtan": [0, 1], "stair": list(range(-6, 7)), "relu6": [0, 6], "revleaky": [0]}
# The activations whose gradient is a function of their output (the AlexeyAB fork's gelu takes its output
# too, but its formula is the derivative at the input: tests/test_layers_ab.py checks those others).
FROM_OUTPUT = [n for n in NAMES if CODE[n] not in NEEDS_INPUT | ACROSS_CHANNELS and n != "gelu"]


@pytest.mark.parametrize("name", FROM_OUTPUT)
def test_activation_gradient(name):
    """Each activation's gradient, computed from the activation's output as darknet does, against central
    differences of the activation itself (points away from the kinks)."""
    a = CODE[name]
    xs = np.linspace(-5.5, 5.5, 221) + 0.0123
    xs = np.array([x for x in xs if all(abs(x - k) > 0.02 for k in KINKS.get(name, []))])
    h = 1e-4
    num = np.array([(activate(x + h, a) - activate(x - h, a)) / (2 * h) for x in xs])
    ana = np.array([float(gradient32(np.float32(activate(np.float32(x), a)), a)) for x in xs])
    assert np.allclose(ana, num, rtol=1e-4, atol=1e-4), (name, np.max(np.abs(ana - num)))


@pytest.mark.parametrize("name", ["leaky", "logistic", "relu", "tanh", "elu"])
def test_activation_in_a_layer(tmp_path, name):
    """The [convolutional] backward applies its activation's gradient to each element (inputs kept away from
    the kinks by making every pre-activation at least 0.05 from zero)."""
    rng = np.random.default_rng(7)
    net = make_net(tmp_path, 4, 4, 1, 1, f"[convolutional]\nfilters=1\nsize=1\nactivation={name}\n")
    net.layers[0].weights[...] = 1
    net.layers[0].biases[...] = 0
    x = rng.uniform(0.05, 1.5, size=(1, 1, 4, 4)).astype(np.float32) * rng.choice([-1, 1], size=(1, 1, 4, 4))
    check_network(net, x.astype(np.float32), rng, h=1e-2, rtol=5e-3)


# -- pooling, routing, shortcut, upsample ----------------------------------------------------------------------
@pytest.mark.parametrize("size, stride, padding", [(2, 2, None), (3, 1, None), (3, 2, 1), (2, 1, 1)])
def test_maxpool(tmp_path, size, stride, padding):
    rng = np.random.default_rng(8)
    extra = f"padding={padding}\n" if padding is not None else ""
    net = make_net(tmp_path, 7, 6, 2, 2, f"[maxpool]\nsize={size}\nstride={stride}\n{extra}")
    x = (rng.permutation(2 * 2 * 6 * 7).astype(np.float32) * np.float32(0.05)).reshape(2, 2, 6, 7)
    check_network(net, x, rng, h=1e-2, rtol=1e-3)


def test_route(tmp_path):
    rng = np.random.default_rng(9)
    net = make_net(tmp_path, 5, 5, 2, 2, "[convolutional]\nfilters=3\nsize=3\npad=1\nactivation=linear\n"
                                          "[convolutional]\nfilters=2\nsize=3\npad=1\nactivation=logistic\n"
                                          "[route]\nlayers=-1,-2\n"
                                          "[convolutional]\nfilters=2\nsize=1\nactivation=linear\n"
                                          "[route]\nlayers=-1\n"
                                          "[convolutional]\nfilters=2\nsize=1\nactivation=linear\n")
    randomize(net, rng)
    x = rng.normal(size=(2, 2, 5, 5)).astype(np.float32)
    check_network(net, x, rng)


@pytest.mark.parametrize("body", [
    # same shapes, alpha and beta
    "[convolutional]\nfilters=3\nsize=3\npad=1\nactivation=linear\n"
    "[convolutional]\nfilters=3\nsize=3\npad=1\nactivation=linear\n"
    "[shortcut]\nfrom=-2\nalpha=0.7\nbeta=1.3\nactivation=logistic\n",
    # from a bigger layer with fewer channels (darknet's strided sum), beta only
    "[convolutional]\nfilters=2\nsize=3\npad=1\nactivation=linear\n"
    "[convolutional]\nfilters=3\nsize=3\nstride=2\npad=1\nactivation=linear\n"
    "[shortcut]\nfrom=-2\nbeta=0.6\nactivation=linear\n",
    # from a smaller layer with more channels (darknet's sampled sum)
    "[convolutional]\nfilters=4\nsize=3\nstride=2\npad=1\nactivation=linear\n"
    "[convolutional]\nfilters=3\nsize=3\npad=1\nactivation=linear\n"
    "[upsample]\nstride=2\n"
    "[shortcut]\nfrom=-3\nactivation=linear\n",
], ids=["same-shape-alpha-beta", "from-bigger", "from-smaller"])
def test_shortcut(tmp_path, body):
    rng = np.random.default_rng(10)
    net = make_net(tmp_path, 6, 6, 2, 2, body + "[convolutional]\nfilters=2\nsize=1\nactivation=linear\n")
    randomize(net, rng)
    x = rng.normal(size=(2, 2, 6, 6)).astype(np.float32)
    check_network(net, x, rng)


@pytest.mark.parametrize("stride, scale", [(2, 1.0), (3, 0.5), (-2, 1.0), (-2, 0.25)])
def test_upsample(tmp_path, stride, scale):
    rng = np.random.default_rng(11)
    net = make_net(tmp_path, 6, 6, 2, 2, f"[upsample]\nstride={stride}\nscale={scale}\n"
                                          "[convolutional]\nfilters=2\nsize=3\npad=1\nactivation=linear\n")
    randomize(net, rng)
    x = rng.normal(size=(2, 2, 6, 6)).astype(np.float32)
    check_network(net, x, rng)


# -- the YOLOv3 loss ---------------------------------------------------------------------------------------------
ANCHORS = [1, 1.5, 2, 1, 1.5, 2.5, 3, 3, 4, 2, 2.5, 4]   # six anchors, in pixels of a 16 x 16 network


def iou(a, b):
    def overlap(x1, w1, x2, w2):
        return min(x1 + w1 / 2, x2 + w2 / 2) - max(x1 - w1 / 2, x2 - w2 / 2)
    w, h = overlap(a[0], a[2], b[0], b[2]), overlap(a[1], a[3], b[1], b[3])
    inter = 0.0 if w < 0 or h < 0 else w * h
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def implied_terms(z, truth, mask, classes, netw, neth, ignore_thresh):
    """An independent, plain-Python reading of darknet's forward_yolo_layer: for every input element that gets
    a delta, (kind, target, weight). 'logistic': weight * cross-entropy of sigmoid(z) against target;
    'square': weight / 2 * (target - z)^2. Elements without a term have no loss."""
    batch, n, _, lh, lw = z.shape
    sig = 1 / (1 + np.exp(-z))
    terms = {}
    for b in range(batch):
        boxes = [t for t in truth[b] if t[0] != 0]
        for j in range(lh):
            for i in range(lw):
                for a in range(n):
                    k = mask[a]
                    pred = ((i + sig[b, a, 0, j, i]) / lw, (j + sig[b, a, 1, j, i]) / lh,
                            np.exp(z[b, a, 2, j, i]) * ANCHORS[2 * k] / netw,
                            np.exp(z[b, a, 3, j, i]) * ANCHORS[2 * k + 1] / neth)
                    best = max([iou(pred, t) for t in boxes] + [0])
                    if best <= ignore_thresh:
                        terms[(b, a, 4, j, i)] = ("logistic", 0.0, 1.0)
        for t in boxes:
            i, j = int(t[0] * lw), int(t[1] * lh)
            shapes = [iou((0, 0, ANCHORS[2 * k] / netw, ANCHORS[2 * k + 1] / neth), (0, 0, t[2], t[3]))
                      for k in range(len(ANCHORS) // 2)]
            best_n = int(np.argmax(shapes))
            if best_n not in mask:
                continue
            a = mask.index(best_n)
            scale = 2 - t[2] * t[3]
            terms[(b, a, 0, j, i)] = ("logistic", t[0] * lw - i, scale)
            terms[(b, a, 1, j, i)] = ("logistic", t[1] * lh - j, scale)
            terms[(b, a, 2, j, i)] = ("square", np.log(t[2] * netw / ANCHORS[2 * best_n]), scale)
            terms[(b, a, 3, j, i)] = ("square", np.log(t[3] * neth / ANCHORS[2 * best_n + 1]), scale)
            terms[(b, a, 4, j, i)] = ("logistic", 1.0, 1.0)
            if (b, a, 5, j, i) in terms:      # an earlier truth took this cell: only this class is set
                terms[(b, a, 5 + int(t[4]), j, i)] = ("logistic", 1.0, 1.0)
            else:
                for c in range(classes):
                    terms[(b, a, 5 + c, j, i)] = ("logistic", float(c == int(t[4])), 1.0)
    return terms


def implied_loss(zv, kind, target, weight):
    if kind == "logistic":
        p = 1 / (1 + np.exp(-zv))
        return -weight * (target * np.log(p) + (1 - target) * np.log(1 - p))
    return weight / 2 * (target - zv) ** 2


def yolo_case(tmp_path, rng, ignore_thresh=0.5):
    classes, mask = 3, [3, 4, 5]
    channels = len(mask) * (5 + classes)
    net = make_net(tmp_path, 4, 4, channels, 2,
                   f"[yolo]\nmask=3,4,5\nanchors={','.join(map(str, ANCHORS))}\nclasses={classes}\nnum=6\n"
                   f"ignore_thresh={ignore_thresh}\ntruth_thresh=1\n")
    # the layer's input is the network's: a 4 x 4 grid in a "4 x 4 pixel" network; anchors scaled to match
    net.w = net.h = 16
    z = rng.normal(0, 1, size=(2, channels, 4, 4)).astype(np.float32)
    truth = np.zeros((2, 90, 5), np.float32)
    truth[0, 0] = [0.30, 0.40, 0.20, 0.25, 1]      # best anchor (3,3)/16 is in the mask
    truth[0, 1] = [0.33, 0.45, 0.16, 0.26, 2]      # same cell and anchor: only its class is added
    truth[0, 2] = [0.80, 0.70, 0.06, 0.09, 0]      # a small box: its best anchor is not in this layer's mask
    truth[1, 0] = [0.55, 0.15, 0.26, 0.14, 0]
    truth[1, 1] = [0.10, 0.90, 0.16, 0.25, 2]
    # make one prediction (image 1, anchor slot 1 in the first truth's cell) match its truth: it is then ignored
    zz = z.reshape(2, 3, 5 + classes, 4, 4)
    t = truth[1, 1]
    i, j = int(t[0] * 4), int(t[1] * 4)
    zz[1, 1, 0, j, i] = np.log((t[0] * 4 - i) / (1 - (t[0] * 4 - i)))
    zz[1, 1, 1, j, i] = np.log((t[1] * 4 - j) / (1 - (t[1] * 4 - j)))
    zz[1, 1, 2, j, i] = np.log(t[2] * 16 / ANCHORS[2 * 4])
    zz[1, 1, 3, j, i] = np.log(t[3] * 16 / ANCHORS[2 * 4 + 1])
    return net, z, truth, mask, classes


def test_yolo_delta_is_minus_gradient_of_implied_loss(tmp_path):
    rng = np.random.default_rng(12)
    net, z, truth, mask, classes = yolo_case(tmp_path, rng)
    net.forward_train(z, truth)
    layer = net.layers[0]
    delta = layer.delta.reshape(2, 3, 5 + classes, 4, 4).astype(np.float64)
    z5 = z.reshape(delta.shape).astype(np.float64)
    terms = implied_terms(z5, truth, mask, classes, 16, 16, 0.5)
    assert (1, 1, 4, 3, 0) not in terms and delta[1, 1, 4, 3, 0] == 0   # the matched prediction is ignored
    assert terms[(0, 2, 5 + 1, 1, 1)][1] == terms[(0, 2, 5 + 2, 1, 1)][1] == 1  # two truths, one cell
    num = np.zeros_like(z5)
    h = 1e-6
    for key, (kind, target, weight) in terms.items():
        num[key] = -(implied_loss(z5[key] + h, kind, target, weight)
                     - implied_loss(z5[key] - h, kind, target, weight)) / (2 * h)
    assert np.allclose(delta, num, rtol=1e-4, atol=2e-6), np.max(np.abs(delta - num))
    # the cost darknet reports is not that loss: it is the squared norm of the delta
    assert layer.cost == pytest.approx(float(np.sum(delta ** 2)), rel=1e-5)
    assert net.cost == layer.cost
    # backward hands the delta on unchanged (it is already with respect to the layer's input)
    gx = np.ones_like(z)
    net.backward(input_delta=gx)
    assert np.allclose(gx - 1, layer.delta, atol=1e-6)


def test_yolo_statistics_line(tmp_path, capsys):
    rng = np.random.default_rng(13)
    net, z, truth, mask, classes = yolo_case(tmp_path, rng)
    net.quiet = False
    net.forward_train(z, truth)
    err = capsys.readouterr().err.strip()
    assert err.startswith("Region 0 Avg IOU: ") and err.endswith(",  count: 4"), err
    s = net.layers[0].stats
    assert s["count"] == 4
    out = net.layers[0].output.reshape(2, 3, 5 + classes, 4, 4)
    assert s["avg_anyobj"] == pytest.approx(float(out[:, :, 4].mean()), rel=1e-5)
    # a truth row with x = 0 ends the list; an image without truths gives -nan statistics as darknet prints
    net.forward_train(z, np.zeros_like(truth))
    assert "Avg IOU: -nan, Class: -nan, Obj: -nan" in capsys.readouterr().err


def test_yolo_ignore_threshold(tmp_path):
    """With ignore_thresh = 1 no prediction is ignored; with a low one, most are."""
    rng = np.random.default_rng(14)
    for thresh, expect_some_zero in ((1.0, False), (0.01, True)):
        net, z, truth, mask, classes = yolo_case(tmp_path, rng, ignore_thresh=thresh)
        net.forward_train(z, truth)
        obj = net.layers[0].delta.reshape(2, 3, 5 + classes, 4, 4)[:, :, 4]
        assert bool(np.any(obj == 0)) == expect_some_zero


# -- classifier layers -------------------------------------------------------------------------------------------
def test_avgpool(tmp_path):
    rng = np.random.default_rng(15)
    net = make_net(tmp_path, 5, 3, 3, 2, "[avgpool]\n[connected]\noutput=3\nactivation=linear\n")
    randomize(net, rng)
    x = rng.normal(size=(2, 3, 3, 5)).astype(np.float32)
    check_network(net, x, rng)


@pytest.mark.parametrize("bn, activation", [(0, "leaky"), (0, "logistic"), (1, "linear"), (1, "tanh")])
def test_connected(tmp_path, bn, activation):
    rng = np.random.default_rng(16)
    batch = 64 if bn else 3    # batch-norm: one value per image and output, so n = batch in darknet's 1/n
    net = make_net(tmp_path, 3, 3, 2, batch, f"[connected]\noutput=5\nbatch_normalize={bn}\n"
                                              f"activation={activation}\n[connected]\noutput=3\nactivation=linear\n")
    randomize(net, rng)
    x = rng.normal(size=(batch, 2, 3, 3)).astype(np.float32)
    if activation == "leaky":   # keep the pre-activations away from the kink
        net.layers[0].biases[...] = np.where(net.layers[0].biases >= 0, 3, -3)
    check_network(net, x, rng, rtol=2e-2 if bn else 2e-3)


def loss_case(tmp_path, body, w=4, h=4, c=2, batch=2):
    net = make_net(tmp_path, w, h, c, batch, body)
    rng = np.random.default_rng(17)
    randomize(net, rng)
    return net, rng


def loss_gradient(net, x, truth, h=1e-2):
    """(input delta after forward_train + backward, central differences of the network cost)."""
    net.forward_train(x, truth)
    gx = np.zeros_like(x)
    net.backward(input_delta=gx)

    def cost():
        return float(net.forward_train(x, truth))
    idx = np.arange(x.size)
    return gx.reshape(-1), numeric(cost, x, idx, h)


def test_softmax_cross_entropy(tmp_path):
    """softmax + darknet's softmax_x_ent with one-hot truth: delta = truth - p is exactly minus the gradient
    of the cost (the network cost: the mean of the output layers' costs, here one softmax)."""
    net, rng = loss_case(tmp_path, "[convolutional]\nfilters=5\nsize=3\npad=1\nactivation=linear\n"
                                   "[avgpool]\n[softmax]\ngroups=1\n")
    x = rng.normal(size=(2, 2, 4, 4)).astype(np.float32)
    truth = np.eye(5, dtype=np.float32)[[1, 3]]
    ana, num = loss_gradient(net, x, truth)
    check(ana, -num, 2e-3, "softmax cross-entropy")
    p = net.layers[-1].output.reshape(2, 5).astype(np.float64)
    assert net.cost == pytest.approx(-np.log(p[[0, 1], [1, 3]]).sum(), rel=1e-6)


@pytest.mark.parametrize("groups", [1, 2])
def test_softmax_groups(tmp_path, groups):
    net, rng = loss_case(tmp_path, "[connected]\noutput=6\nactivation=linear\n"
                                   f"[softmax]\ngroups={groups}\n")
    x = rng.normal(size=(2, 2, 4, 4)).astype(np.float32)
    truth = np.zeros((2, 6), np.float32)
    truth[0, 1] = truth[1, 4] = 1
    if groups == 2:
        truth[0, 5] = truth[1, 0] = 1
    ana, num = loss_gradient(net, x, truth)
    check(ana, -num, 2e-3, "grouped softmax")


@pytest.mark.parametrize("cost_type, factor", [("sse", 0.5), ("L1", 1.0), ("masked", 0.5)])
def test_cost_layer(tmp_path, cost_type, factor):
    """[cost]: the reported cost is the sum of the errors; darknet's delta is minus `factor` times its gradient
    (sse: delta = truth - x, half the gradient of (truth - x)^2), times the layer's scale."""
    net, rng = loss_case(tmp_path, "[convolutional]\nfilters=2\nsize=3\npad=1\nactivation=linear\n"
                                   f"[cost]\ntype={cost_type}\nscale=0.5\n")
    x = rng.normal(size=(2, 2, 4, 4)).astype(np.float32)
    truth = rng.normal(size=(2, 32)).astype(np.float32)
    if cost_type == "masked":
        truth[:, ::3] = -1234
    if cost_type == "L1":    # keep |truth - x| away from 0 where the gradient jumps
        net.forward_train(x, truth)
        out = net.layers[0].output.reshape(2, 32)
        truth = np.where(truth > out, out + 1, out - 1).astype(np.float32)
    ana, num = loss_gradient(net, x, truth, h=1e-3 if cost_type == "L1" else 1e-2)
    check(ana, -factor * 0.5 * num, 2e-3, cost_type)


def test_cost_smooth_l1_as_darknet():
    """darknet's smooth L1: inside |diff| < 1 the delta is diff (minus half the gradient of diff^2), outside it
    is -sign(diff), while minus half the gradient of 2|diff| - 1 would be +sign(diff)."""
    from pydarknet.kernels.loss import cost_smooth_l1
    pred = np.array([0.0, 0.0, 0.0, 0.0], np.float32)
    truth = np.array([0.5, -0.25, 3.0, -2.0], np.float32)
    delta, err = np.empty(4, np.float32), np.empty(4, np.float32)
    total = cost_smooth_l1(pred, truth, delta, err)
    assert list(err) == [0.25, 0.0625, 5.0, 3.0] and total == np.float32(8.3125)
    assert list(delta) == [0.5, -0.25, -1.0, 1.0]


def test_dropout(tmp_path):
    """With the same random draws (seeded), the gradient through dropout is the kept deltas times 1/(1-p)."""
    rng = np.random.default_rng(18)
    net = make_net(tmp_path, 4, 4, 2, 2, "[convolutional]\nfilters=3\nsize=3\npad=1\nactivation=linear\n"
                                          "[dropout]\nprobability=0.4\n"
                                          "[convolutional]\nfilters=2\nsize=1\nactivation=linear\n")
    randomize(net, rng)
    x = rng.normal(size=(2, 2, 4, 4)).astype(np.float32)
    r = rng.normal(size=(2, 2, 4, 4)).astype(np.float32)

    def f():
        np.random.seed(5)
        return objective(net, x, r)
    np.random.seed(5)
    gx, _ = analytic(net, x, r)
    dropped = net.layers[1].rand < np.float32(0.4)
    assert 0 < dropped.mean() < 1
    idx = np.arange(x.size)
    check(gx.reshape(-1), numeric(f, x, idx, 1e-2), 2e-3, "dropout")


def test_crop_passes_no_gradient(tmp_path):
    rng = np.random.default_rng(19)
    net = make_net(tmp_path, 6, 6, 2, 1, "[crop]\ncrop_width=4\ncrop_height=4\n"
                                          "[convolutional]\nfilters=2\nsize=1\nactivation=linear\n")
    x = rng.uniform(size=(1, 2, 6, 6)).astype(np.float32)
    gx, _ = analytic(net, x, rng.normal(size=(1, 2, 4, 4)).astype(np.float32))
    assert not gx.any()


# -- the other layers ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ["logistic", "tanh", "elu"])
def test_activation_layer(tmp_path, activation):
    rng = np.random.default_rng(20)
    net = make_net(tmp_path, 4, 4, 2, 2, "[convolutional]\nfilters=3\nsize=3\npad=1\nactivation=linear\n"
                                          f"[activation]\nactivation={activation}\n"
                                          "[convolutional]\nfilters=2\nsize=1\nactivation=linear\n")
    randomize(net, rng)
    check_network(net, rng.normal(size=(2, 2, 4, 4)).astype(np.float32), rng)


def test_logistic_cross_entropy_layer(tmp_path):
    """[logistic]: delta = truth - sigmoid(x), minus the gradient of the binary cross-entropy it reports."""
    net, rng = loss_case(tmp_path, "[convolutional]\nfilters=2\nsize=3\npad=1\nactivation=linear\n[logistic]\n")
    x = rng.normal(size=(2, 2, 4, 4)).astype(np.float32)
    truth = rng.uniform(size=(2, 32)).astype(np.float32)
    ana, num = loss_gradient(net, x, truth)
    check(ana, -num, 2e-3, "logistic cross-entropy")


def test_batchnorm_layer(tmp_path):
    """[batchnorm] on its own: the gradient through batch statistics (n = 4 x 6 x 6 = 144 per channel)."""
    rng = np.random.default_rng(21)
    net = make_net(tmp_path, 6, 6, 2, 4, "[convolutional]\nfilters=3\nsize=3\npad=1\nactivation=linear\n"
                                          "[batchnorm]\n[convolutional]\nfilters=2\nsize=1\nactivation=linear\n")
    randomize(net, rng)
    net.layers[1].scales[...] = [0.5, 1.5, 1.0]
    net.layers[1].biases[...] = [0.1, -0.2, 0.3]
    # (the convolution's biases have no effect through the batch-norm: their gradient is 0 up to float noise)
    check_network(net, rng.normal(size=(4, 2, 6, 6)).astype(np.float32), rng, rtol=1e-2, atol=5e-4)
    # darknet never updates this layer's parameters
    net.seen += net.batch
    update_network(net)
    assert list(net.layers[1].scales) == [0.5, 1.5, 1.0]


@pytest.mark.parametrize("size, stride, pad", [(3, 1, 1), (3, 2, 0), (1, 1, 0)])
def test_local(tmp_path, size, stride, pad):
    rng = np.random.default_rng(22)
    net = make_net(tmp_path, 5, 5, 2, 2, f"[local]\nfilters=3\nsize={size}\nstride={stride}\npad={pad}\n"
                                          "activation=logistic\n")
    randomize(net, rng)
    check_network(net, rng.normal(size=(2, 2, 5, 5)).astype(np.float32), rng)


def test_lrn_and_l2norm_as_darknet(tmp_path):
    """Darknet's backward of [normalization] (LRN) is its own approximation, delta * norm^-beta, and [l2norm]
    passes the delta through unchanged; both are checked as such (not against the true gradient)."""
    rng = np.random.default_rng(23)
    net = make_net(tmp_path, 3, 3, 6, 1, "[lrn]\nsize=5\nalpha=0.5\nbeta=0.75\nkappa=2\n")
    x = rng.normal(size=(1, 6, 3, 3)).astype(np.float32)
    r = rng.normal(size=(1, 6, 3, 3)).astype(np.float32)
    gx, _ = analytic(net, x, r)
    factor = net.layers[0].output / x            # = norm^-beta
    assert np.allclose(gx, factor * r, rtol=1e-5, atol=1e-6)
    net = make_net(tmp_path, 3, 3, 4, 1, "[l2norm]\n")
    gx, _ = analytic(net, x[:, :4], r[:, :4])
    assert np.array_equal(gx, r[:, :4])


@pytest.mark.parametrize("options", ["stride=2", "stride=2\nreverse=1", "flatten=1", "flatten=1\nreverse=1",
                                     "extra=5"])
def test_reorg(tmp_path, options):
    rng = np.random.default_rng(24)
    net = make_net(tmp_path, 4, 4, 8, 2, f"[convolutional]\nfilters=8\nsize=1\nactivation=linear\n"
                                          f"[reorg]\n{options}\n[connected]\noutput=3\nactivation=linear\n")
    randomize(net, rng)
    check_network(net, rng.normal(size=(2, 8, 4, 4)).astype(np.float32), rng)


# -- YOLOv2 and YOLOv1 losses --------------------------------------------------------------------------------------
REGION_ANCHORS = [1.0, 1.5, 2.0, 1.0, 1.2, 2.4]   # three anchors, in grid cells of a 4 x 4 grid


def region_terms(z, truth, classes, seen, thresh, softmax):
    """Plain-Python reading of darknet's forward_region_layer (no class tree, coords = 4): for each element with
    a delta, (kind, target, weight) of the implied loss. 'sq_logistic': weight/2 * (target - sigmoid(z))^2;
    'square': weight/2 * (target - z)^2; 'softmax': one term per (b, a, j, i) cell, weight * cross-entropy of
    the softmax over the classes against a one-hot target; 'logistic': weight * cross-entropy of sigmoid(z)."""
    batch, n, _, lh, lw = z.shape
    sig = 1 / (1 + np.exp(-z))
    terms = {}
    for b in range(batch):
        boxes = [t for t in truth[b].reshape(-1, 5)[:30] if t[0] != 0]
        for j in range(lh):
            for i in range(lw):
                for a in range(n):
                    aw, ah = REGION_ANCHORS[2 * a], REGION_ANCHORS[2 * a + 1]
                    pred = ((i + sig[b, a, 0, j, i]) / lw, (j + sig[b, a, 1, j, i]) / lh,
                            np.exp(z[b, a, 2, j, i]) * aw / lw, np.exp(z[b, a, 3, j, i]) * ah / lh)
                    best = max([iou(pred, t) for t in boxes] + [0])
                    terms[(b, a, 4, j, i)] = ("sq_logistic", 0.0, 1.0)
                    if best > thresh:
                        del terms[(b, a, 4, j, i)]
                    if seen < 12800:
                        for row, target in ((0, 0.5), (1, 0.5), (2, 0.0), (3, 0.0)):
                            terms[(b, a, row, j, i)] = ("sq_logistic" if row < 2 else "square", target, 0.01)
        for t in boxes:
            i, j = int(t[0] * lw), int(t[1] * lh)
            ious = []
            for a in range(n):
                pw = np.exp(z[b, a, 2, j, i]) * REGION_ANCHORS[2 * a] / lw
                ph = np.exp(z[b, a, 3, j, i]) * REGION_ANCHORS[2 * a + 1] / lh
                ious.append(iou((0, 0, pw, ph), (0, 0, t[2], t[3])))
            a = int(np.argmax(ious))
            aw, ah = REGION_ANCHORS[2 * a], REGION_ANCHORS[2 * a + 1]
            scale = 2 - t[2] * t[3]
            terms[(b, a, 0, j, i)] = ("sq_logistic", t[0] * lw - i, scale)
            terms[(b, a, 1, j, i)] = ("sq_logistic", t[1] * lh - j, scale)
            terms[(b, a, 2, j, i)] = ("square", np.log(t[2] * lw / aw), scale)
            terms[(b, a, 3, j, i)] = ("square", np.log(t[3] * lh / ah), scale)
            terms[(b, a, 4, j, i)] = ("sq_logistic", 1.0, 1.0)
            if softmax:
                terms[(b, a, "cls", j, i)] = ("softmax", int(t[4]), 1.0)
            else:
                for c in range(classes):
                    terms[(b, a, 5 + c, j, i)] = ("logistic", float(c == int(t[4])), 1.0)
    return terms


def region_case(tmp_path, softmax, seen):
    classes = 3
    channels = 3 * (5 + classes)
    net = make_net(tmp_path, 4, 4, channels, 2,
                   f"[region]\nanchors={','.join(map(str, REGION_ANCHORS))}\nclasses={classes}\nnum=3\n"
                   f"coords=4\nsoftmax={softmax}\nthresh=0.6\n")
    net.seen = seen
    rng = np.random.default_rng(25)
    z = rng.normal(0, 1, size=(2, channels, 4, 4)).astype(np.float32)
    truth = np.zeros((2, 30, 5), np.float32)
    truth[0, 0] = [0.30, 0.40, 0.30, 0.35, 1]
    truth[0, 1] = [0.80, 0.70, 0.10, 0.20, 0]
    truth[1, 0] = [0.55, 0.15, 0.45, 0.25, 2]
    return net, z, truth, classes


@pytest.mark.parametrize("softmax, seen", [(1, 20000), (0, 20000), (1, 0)])
def test_region_delta_is_minus_gradient_of_implied_loss(tmp_path, softmax, seen):
    """[region]: after backward (which multiplies the x, y and objectness deltas by the logistic's gradient, as
    darknet's GPU code does), the input delta is minus the gradient of the implied loss."""
    net, z, truth, classes = region_case(tmp_path, softmax, seen)
    net.forward_train(z, truth)
    layer = net.layers[0]
    delta_out = layer.delta.copy()
    assert layer.cost == pytest.approx(float(np.sum(delta_out.astype(np.float64) ** 2)), rel=1e-5)
    gx = np.zeros_like(z)
    net.backward(input_delta=gx)
    shape = (2, 3, 5 + classes, 4, 4)
    z5 = z.reshape(shape).astype(np.float64)
    terms = region_terms(z5, truth, classes, seen, 0.6, softmax)

    def loss(zz):
        total = 0.0
        for key, (kind, target, weight) in terms.items():
            if kind == "softmax":
                b, a, _, j, i = key
                logits = zz[b, a, 5:, j, i]
                total += weight * (np.log(np.sum(np.exp(logits - logits.max()))) + logits.max() - logits[target])
                continue
            v = zz[key]
            if kind == "sq_logistic":
                total += weight / 2 * (target - 1 / (1 + np.exp(-v))) ** 2
            elif kind == "square":
                total += weight / 2 * (target - v) ** 2
            else:
                p = 1 / (1 + np.exp(-v))
                total += -weight * (target * np.log(p) + (1 - target) * np.log(1 - p))
        return total
    num = np.zeros(z5.size)
    flat = z5.reshape(-1)
    h = 1e-6
    for k in range(flat.size):
        old = flat[k]
        flat[k] = old + h
        fp = loss(z5)
        flat[k] = old - h
        fm = loss(z5)
        flat[k] = old
        num[k] = -(fp - fm) / (2 * h)
    assert np.allclose(gx.reshape(-1), num, rtol=1e-4, atol=3e-6), np.max(np.abs(gx.reshape(-1) - num))


def region_statistics(z, truth):
    """darknet's forward_region_layer statistics (softmax classes, no tree), read independently in float64: the
    mean over truths of the responsible prediction's IoU, true-class probability and objectness; the mean
    objectness of every prediction; the share of truths with IoU > .5; the count."""
    batch, n, _, lh, lw = z.shape
    sig = 1 / (1 + np.exp(-z))
    ious, cats, objs = [], [], []
    for b in range(batch):
        for t in (t for t in truth[b].reshape(-1, 5)[:30] if t[0] != 0):
            i, j = int(t[0] * lw), int(t[1] * lh)
            shapes = [(np.exp(z[b, a, 2, j, i]) * REGION_ANCHORS[2 * a] / lw,
                       np.exp(z[b, a, 3, j, i]) * REGION_ANCHORS[2 * a + 1] / lh) for a in range(n)]
            a = int(np.argmax([iou((0, 0, pw, ph), (0, 0, t[2], t[3])) for pw, ph in shapes]))
            ious.append(iou(((i + sig[b, a, 0, j, i]) / lw, (j + sig[b, a, 1, j, i]) / lh) + shapes[a], t))
            objs.append(sig[b, a, 4, j, i])
            logits = z[b, a, 5:, j, i]
            cats.append(np.exp(logits[int(t[4])]) / np.exp(logits).sum())
    return [np.mean(ious), np.mean(cats), np.mean(objs), sig[:, :, 4].mean(), np.mean(np.array(ious) > .5)], len(ious)


def test_region_statistics_line(tmp_path, capsys):
    """darknet's `Region Avg IOU: ..., Class: ..., Obj: ..., No Obj: ..., Avg Recall: ...,  count: N` line, each
    figure the one darknet's loop computes (to its six printed decimals)."""
    net, z, truth, classes = region_case(tmp_path, 1, 20000)
    net.quiet = False
    net.forward_train(z, truth)
    err = capsys.readouterr().err.strip()
    figures, count = region_statistics(z.reshape(2, 3, 5 + classes, 4, 4).astype(np.float64), truth)
    names = ["Region Avg IOU", "Class", "Obj", "No Obj", "Avg Recall"]
    printed = dict(part.split(": ") for part in err.split(", ")[:5])
    assert list(printed) == names and err.endswith(f",  count: {count}") and count == 3
    assert 0 < figures[4] < 1    # some truths are recalled, some not: the recall is a real figure here
    for name, want in zip(names, figures):
        assert abs(float(printed[name]) - want) <= 5e-7 + 1e-6 * want, (name, printed[name], want)


def test_detection_delta(tmp_path):
    """[detection] (YOLOv1): squared error on the raw outputs, the responsible box chosen by IoU; with
    softmax=0 the delta is minus the gradient of the implied loss (half the sum of the weighted squares)."""
    side, n, classes = 3, 2, 2
    inputs = side * side * (classes + n * 5)
    net = make_net(tmp_path, inputs, 1, 1, 2, f"[detection]\nclasses={classes}\ncoords=4\nrescore=0\nside={side}\n"
                                               f"num={n}\nsoftmax=0\nsqrt=1\nobject_scale=1\nnoobject_scale=.5\n"
                                               "class_scale=1\ncoord_scale=5\n")
    rng = np.random.default_rng(26)
    x = rng.uniform(0.1, 0.9, size=(2, 1, 1, inputs)).astype(np.float32)
    truth = np.zeros((2, side * side, 1 + classes + 4), np.float32)
    truth[0, 4] = [1, 0, 1, 0.4, 0.6, 0.5, 0.3]
    truth[1, 0] = [1, 1, 0, 0.2, 0.1, 0.3, 0.6]
    net.forward_train(x, truth.reshape(2, -1))
    layer = net.layers[0]
    gx = np.zeros_like(x)
    net.backward(input_delta=gx)
    cells = side * side
    out = x.reshape(2, -1).astype(np.float64)
    expect = np.zeros_like(out)
    for b in range(2):
        for c in range(cells):
            conf = cells * classes + c * n
            expect[b, conf:conf + n] = 0.5 * (0 - out[b, conf:conf + n])
            if truth[b, c, 0] == 0:
                continue
            span = slice(c * classes, (c + 1) * classes)
            expect[b, span] = truth[b, c, 1:1 + classes] - out[b, span]
            t = truth[b, c, 1 + classes:].astype(np.float64)
            tbox = (t[0] / side, t[1] / side, t[2], t[3])
            best, best_iou = 0, -1
            for k in range(n):
                o = out[b, cells * (classes + n) + (c * n + k) * 4:][:4]
                v = iou((o[0] / side, o[1] / side, o[2] ** 2, o[3] ** 2), tbox)
                if v > best_iou:
                    best, best_iou = k, v
            assert best_iou > 0
            bi = cells * (classes + n) + (c * n + best) * 4
            expect[b, conf + best] = 1 - out[b, conf + best]
            expect[b, bi:bi + 2] = 5 * (t[:2] - out[b, bi:bi + 2])
            expect[b, bi + 2:bi + 4] = 5 * (np.sqrt(t[2:]) - out[b, bi + 2:bi + 4])
    assert np.allclose(layer.delta.reshape(2, -1), expect, rtol=1e-5, atol=1e-6)
    assert np.array_equal(gx.reshape(2, -1), layer.delta.reshape(2, -1))
    assert layer.cost == pytest.approx(float(np.sum(expect ** 2)), rel=1e-5)
