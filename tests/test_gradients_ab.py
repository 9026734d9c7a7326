"""Finite-difference checks of the AlexeyAB fork's layers and options in training (issue 15, item 1), with
test_gradients' helpers: f = sum(R * output) for a fixed random R, its central differences over the input and
every trainable parameter (the float32 forward pass in training mode, f summed in float64) against the input
delta and the *_updates the backward pass produces.

Already checked elsewhere, not repeated here: route groups with two sources, several shortcut sources with
fewer/more channels (input deltas; per_channel weights without normalisation), a mish shortcut, sam,
scale_channels (both forms), reorg3d, maxpool_depth, maxpool/local_avgpool with stride_x != stride_y and no
padding, dilation (with groups), grouped and depthwise convolutions (with batch-norm), mish/swish in a
convolution without batch-norm (test_layers_ab.py, test_gradients.py, test_train_grouped.py).

Tolerances. Every check is max |backward - numerical| <= rtol * max |numerical| (+ atol) over the entries
checked. The numerical gradient has two errors: truncation, h^2/6 * f''' (below 1e-5 relative with h = 1e-2
on these smooth functions), and the float32 rounding of f, about 6e-8 * sum |R * output| ~ 1e-5 for these
small nets, divided by the 2h step: ~5e-4 absolute on gradients of order 1-10, hence rtol 2e-3, 5e-3 where
batch statistics add their own O(1/n) departure (see below). Measured when written: worst 9e-4 without batch
statistics (the CSP block, gradients up to 43), 2.7e-3 with them. The activations' kinks (relu6 at 0 and 6,
hard_mish's jump of slope at -2, revleaky at 0) are kept more than h * the largest factor away from every
pre-activation, so no central difference straddles one.

Where the fork's backward is knowingly not the gradient of its forward pass, the exact check is marked
xfail(strict=True) with the reason, and what the fork computes (read from its src/*.c and *.cu) is checked
instead:
- weighted shortcuts with weights_normalization=relu|softmax: the weight update is delta * input times w
  (relu) or w(1 - w) (softmax) of the input's own normalised weight (blas_kernels.cu,
  backward_shortcut_multilayer_kernel), not the derivative of the normalisation over all the inputs;
- gelu: the fork's gelu_gradient is the derivative formula evaluated at the layer's output (gradient_array on
  l.output), not at its input;
- normalize_channels*: the fork multiplies each delta by the pixel's sum of output * delta
  (gradient_array_normalize_channels*), which is not the Jacobian of the normalisation;
- batch-norm (fork): the forward divides by sqrt(var + 1e-5) with the unbiased variance, the backward divides
  the delta by sqrt(var) + 1e-5 and its variance term uses 1/n (batchnorm_layer.c, normalize_delta_cpu): with
  n >= 144 values per channel that is inside 5e-3, and the formula itself is checked on a small batch.
"""
import numpy as np
import pytest

from pydarknet.tasks.train.step import update_network
from test_gradients import analytic, check, check_network, make_net, randomize


def ab_net(tmp_path, w, h, c, batch, body):
    """make_net with the fork's arithmetic whatever the cfg says (batch-norm: its eps and backward)."""
    net = make_net(tmp_path, w, h, c, batch, body)
    net.darknet = "ab"
    return net


# -- activations in a layer ------------------------------------------------------------------------------------
KINKS = {"relu6": (0.0, 6.0), "revleaky": (0.0,), "hard_mish": (-2.0, 0.0), "mish": (), "swish": (),
         "gelu": ()}
MIXING = np.array([[1.0, 0.25], [-0.3, 0.9]], np.float32)   # a well-conditioned 1x1 convolution
OFFSET = np.array([0.1, -0.2], np.float32)


def controlled_input(rng, kinks, margin=0.2, low=-3.5, high=7.5):
    """An input (2, 2, 3, 4) whose 1x1 convolution by MIXING + OFFSET gives pre-activations spread over
    [low, high] but at least `margin` from every kink (solved for the input, so no sampling luck)."""
    z = rng.uniform(low, high, size=(2, 3, 4, 2))
    for k in kinks:
        close = np.abs(z - k) < margin
        z[close] = k + np.where(z[close] >= k, margin, -margin) * 1.5
    x = np.linalg.solve(MIXING.astype(np.float64), (z - OFFSET).reshape(-1, 2).T).T
    return np.ascontiguousarray(x.reshape(2, 3, 4, 2).transpose(0, 3, 1, 2), dtype=np.float32)


def activation_net(tmp_path, layer_kind, name):
    if layer_kind == "convolutional":
        body = f"[convolutional]\nfilters=2\nsize=1\nactivation={name}\n"
    else:   # a linear 1x1 convolution, then the activation as its own layer
        body = f"[convolutional]\nfilters=2\nsize=1\nactivation=linear\n[activation]\nactivation={name}\n"
    net = ab_net(tmp_path, 4, 3, 2, 2, body)
    net.layers[0].weights[...] = MIXING.reshape(net.layers[0].weights.shape)
    net.layers[0].biases[...] = OFFSET
    return net


def check_activation(tmp_path, layer_kind, name, h=1e-2):
    rng = np.random.default_rng(30)
    net = activation_net(tmp_path, layer_kind, name)
    x = controlled_input(rng, KINKS[name])
    # no step of h in one input or parameter moves a pre-activation across a kink
    z = np.einsum("fc,bchw->bfhw", MIXING, x) + OFFSET[:, None, None]
    distance = min([np.min(np.abs(z - k)) for k in KINKS[name]] + [np.inf])
    assert distance > h * max(np.abs(x).max(), np.abs(MIXING).max(), 1.0)
    check_network(net, x, rng, h=h, rtol=2e-3)


@pytest.mark.parametrize("layer_kind, name", [
    ("convolutional", "relu6"), ("activation", "relu6"), ("convolutional", "revleaky"),
    ("activation", "revleaky"), ("convolutional", "hard_mish"), ("convolutional", "mish"),
    ("convolutional", "swish"),
])
def test_activation_in_a_layer(tmp_path, layer_kind, name):
    """The fork's activations between kinks: relu6 on both sides of 6, hard_mish on its parabola (-2, 0)
    and past 0, mish and swish far into their tails (-3.5 .. 7.5)."""
    check_activation(tmp_path, layer_kind, name)


GELU_FROM_OUTPUT = ("the fork's gelu_gradient is evaluated at the layer's output, not its input "
                    "(activations.c gradient_array(l.output, ...); activations.h gelu_gradient)")


@pytest.mark.xfail(strict=True, reason=GELU_FROM_OUTPUT)
@pytest.mark.parametrize("layer_kind", ["convolutional", "activation"])
def test_gelu_exact_gradient(tmp_path, layer_kind):
    check_activation(tmp_path, layer_kind, "gelu")


def fork_gelu_gradient(y):
    """The fork's gelu_gradient(y) (activations.h), in float64: the exact derivative formula of its gelu,
    0.5 tanh(u) + (0.0535161 y^3 + 0.398942 y) sech(u)^2 + 0.5 with u = 0.0356774 y^3 + 0.797885 y."""
    y = y.astype(np.float64)
    u = 0.0356774 * y ** 3 + 0.797885 * y
    return 0.5 * np.tanh(u) + (0.0535161 * y ** 3 + 0.398942 * y) / np.cosh(u) ** 2 + 0.5


@pytest.mark.parametrize("layer_kind", ["convolutional", "activation"])
def test_gelu_is_the_forks_gradient(tmp_path, layer_kind):
    """What the fork computes instead: the delta of the pre-activation is R * gelu_gradient(output)."""
    rng = np.random.default_rng(31)
    net = activation_net(tmp_path, layer_kind, "gelu")
    x = controlled_input(rng, (), low=-3.0, high=3.0)
    r = rng.normal(size=(2, 2, 3, 4)).astype(np.float32)
    analytic(net, x, r)
    layer = net.layers[-1]
    pre_delta = layer.delta if layer_kind == "convolutional" else net.layers[0].delta
    want = r * fork_gelu_gradient(layer.output)
    check(pre_delta, want, 1e-5, "gelu delta")


NORMALIZE_CHANNELS = ["normalize_channels", "normalize_channels_softmax", "normalize_channels_softmax_maxval"]


def normalize_channels_net(tmp_path, rng, name):
    net = ab_net(tmp_path, 4, 3, 2, 2, f"[convolutional]\nfilters=3\nsize=3\npad=1\nactivation={name}\n")
    randomize(net, rng)
    return net, rng.normal(size=(2, 2, 3, 4)).astype(np.float32)


@pytest.mark.xfail(strict=True, reason="the fork's gradient_array_normalize_channels*: delta * sum over the "
                                       "pixel's channels of output * delta, not the normalisation's Jacobian")
@pytest.mark.parametrize("name", NORMALIZE_CHANNELS)
def test_normalize_channels_exact_gradient(tmp_path, name):
    rng = np.random.default_rng(32)
    net, x = normalize_channels_net(tmp_path, rng, name)
    check_network(net, x, rng)


@pytest.mark.parametrize("name", NORMALIZE_CHANNELS)
def test_normalize_channels_as_the_fork(tmp_path, name):
    """What the fork computes instead, in a convolution: each pre-activation delta is R times the pixel's sum
    over channels of output * R (normalize_channels: only where the output is positive, else R itself)."""
    rng = np.random.default_rng(32)
    net, x = normalize_channels_net(tmp_path, rng, name)
    r = rng.normal(size=(2, 3, 3, 4)).astype(np.float32)
    analytic(net, x, r)
    y = net.layers[0].output.astype(np.float64)
    scaled = r * (y * r).sum(axis=1, keepdims=True)
    want = np.where(y > 0, scaled, r) if name == "normalize_channels" else scaled
    if name == "normalize_channels":
        assert (y == 0).any() and (y > 0).any()       # both branches exercised
    check(net.layers[0].delta, want, 1e-5, name)


# -- batch-norm in fork networks -------------------------------------------------------------------------------
@pytest.mark.parametrize("body", [
    "[convolutional]\nbatch_normalize=1\nfilters=3\nsize=3\npad=1\nactivation=logistic\n",
    "[convolutional]\nbatch_normalize=1\nfilters=4\nsize=3\npad=1\ndilation=2\ngroups=2\nactivation=mish\n",
    "[convolutional]\nbatch_normalize=1\nfilters=4\nsize=3\npad=1\ngroups=4\nactivation=swish\n",
    "[convolutional]\nfilters=3\nsize=3\npad=1\nactivation=linear\n[batchnorm]\n",
], ids=["logistic", "mish-dilated-grouped", "swish-depthwise", "batchnorm-layer"])
def test_batchnorm_training(tmp_path, body):
    """The fork's batch-norm in training, n = 4 images x 6 x 6 = 144 values per channel (its 1/n for 1/(n-1)
    in the variance term and sqrt(var) + 1e-5 for sqrt(var + 1e-5) stay inside 5e-3; atol for the
    convolution biases before a [batchnorm], whose gradient is 0 up to float noise)."""
    rng = np.random.default_rng(33)
    net = ab_net(tmp_path, 6, 6, 4, 4, body + "[convolutional]\nfilters=2\nsize=1\nactivation=linear\n")
    randomize(net, rng)
    for layer in net.layers:
        if layer.type == "batchnorm":
            layer.scales[...] = rng.uniform(0.5, 1.5, layer.scales.shape)
            layer.biases[...] = rng.normal(0, 0.3, layer.biases.shape)
    check_network(net, rng.normal(size=(4, 4, 6, 6)).astype(np.float32), rng, rtol=5e-3, atol=5e-4)


def test_batchnorm_is_the_forks_formula(tmp_path):
    """On a batch of n = 2 x 3 x 3 with a variance near 1e-4 (where the eps placements differ by ~5 % and the
    1/n for 1/(n-1) by 1/18), the forward and backward are the fork's normalize_cpu, mean_delta_cpu,
    variance_delta_cpu and normalize_delta_cpu (batchnorm_layer.c, blas.c), written out in float64."""
    rng = np.random.default_rng(34)
    net = ab_net(tmp_path, 3, 3, 2, 2, "[convolutional]\nbatch_normalize=1\nfilters=2\nsize=1\nactivation=linear\n")
    randomize(net, rng)
    layer = net.layers[0]
    x = rng.normal(0, 0.01, size=(2, 2, 3, 3)).astype(np.float32)
    r = rng.normal(size=(2, 2, 3, 3)).astype(np.float32)
    _, updates = analytic(net, x, r)
    raw = layer.bn_x.astype(np.float64)                 # (images, channels, pixels) before normalisation
    n = raw.shape[0] * raw.shape[2]
    mean = raw.mean(axis=(0, 2))[:, None]
    var = raw.var(axis=(0, 2), ddof=1)[:, None]
    assert 2e-5 < var.min() and var.max() < 1e-3
    x_norm = (raw - mean) / np.sqrt(var + 1e-5)
    d = r.reshape(raw.shape).astype(np.float64)
    check(updates[0]["biases"], d.sum(axis=(0, 2)), 1e-5, "biases")
    check(updates[0]["scales"], (d * x_norm).sum(axis=(0, 2)), 1e-4, "scales")
    d = d * layer.scales[:, None]
    mean_delta = -d.sum(axis=(0, 2))[:, None] / np.sqrt(var + 1e-5)
    var_delta = -0.5 * (d * (raw - mean)).sum(axis=(0, 2))[:, None] * (var + 1e-5) ** -1.5
    fork = d / (np.sqrt(var) + 1e-5) + var_delta * 2 * (raw - mean) / n + mean_delta / n
    got = layer.delta.reshape(raw.shape)
    check(got, fork, 1e-4, "fork batch-norm delta")
    # the test can tell: pjreddie's division of the delta (by sqrt(var + 1e-5)) is a few % away
    pjreddie = d / np.sqrt(var + 1e-5) + var_delta * 2 * (raw - mean) / n + mean_delta / n
    assert np.max(np.abs(got - pjreddie)) > 1e-2 * np.max(np.abs(pjreddie))


# -- [shortcut] with learned weights -----------------------------------------------------------------------------
SHORTCUT_SOURCES = ("[convolutional]\nfilters=5\nsize=1\nactivation=linear\n"
                    "[convolutional]\nfilters=2\nsize=1\nactivation=linear\n"
                    "[convolutional]\nfilters=3\nsize=3\npad=1\nactivation=linear\n")


def shortcut_net(tmp_path, rng, weights_type, normalization, activation="linear"):
    """The input (3 channels) plus a source with fewer channels (2) and one with more (5)."""
    net = ab_net(tmp_path, 3, 4, 2, 2, SHORTCUT_SOURCES +
                 f"[shortcut]\nfrom=-2,-3\nweights_type={weights_type}\nweights_normalization={normalization}\n"
                 f"activation={activation}\n")
    randomize(net, rng)
    shortcut = net.layers[3]
    # above relu's training floor (.001), where its normalisation is smooth
    shortcut.weights[...] = rng.uniform(0.2, 1.5, shortcut.weights.shape)
    return net, shortcut, rng.normal(size=(2, 2, 4, 3)).astype(np.float32)


@pytest.mark.parametrize("weights_type, activation", [("per_feature", "linear"), ("per_feature", "swish"),
                                                     ("per_channel", "swish")])
def test_shortcut_weights(tmp_path, weights_type, activation):
    """Without normalisation the weights' updates are their exact gradients (per_feature: one weight per
    input, summed over its channels; rows past a source's channels get nothing)."""
    rng = np.random.default_rng(35)
    net, _, x = shortcut_net(tmp_path, rng, weights_type, "none", activation)
    check_network(net, x, rng)


NORMALIZED = [(t, n) for t in ("per_feature", "per_channel") for n in ("relu", "softmax")]


@pytest.mark.xfail(strict=True, reason="the fork's weight update of normalised shortcut weights is delta * input "
                                       "* w (relu) or w(1 - w) (softmax) of that input's normalised weight, not "
                                       "the derivative of the normalisation (blas_kernels.cu, "
                                       "backward_shortcut_multilayer_kernel)")
@pytest.mark.parametrize("weights_type, normalization", NORMALIZED)
def test_shortcut_normalized_weights_exact_gradient(tmp_path, weights_type, normalization):
    rng = np.random.default_rng(36)
    net, _, x = shortcut_net(tmp_path, rng, weights_type, normalization)
    check_network(net, x, rng)


def fork_normalized(weights, normalization):
    """The fork's GPU normalisation (what its training uses), in float64: relu floors at .001."""
    w = weights.astype(np.float64)
    terms = np.maximum(w, 0.001) if normalization == "relu" else np.exp(w - w.max(axis=0))
    return terms / (terms.sum(axis=0) + 1e-4)


@pytest.mark.parametrize("weights_type, normalization", NORMALIZED)
def test_shortcut_normalized_weights_as_the_fork(tmp_path, weights_type, normalization):
    """The input deltas are exact (finite differences); the weight updates are the fork's: for input i,
    sum over images and pixels (and channels, per_feature) of delta * input_i * g(w_i), g(w) = w (relu) or
    w(1 - w) (softmax), w_i the normalised weight."""
    rng = np.random.default_rng(37)
    net, shortcut, x = shortcut_net(tmp_path, rng, weights_type, normalization)
    _, r = check_network(net, x, rng, params=False)
    _, updates = analytic(net, x, r)
    w = fork_normalized(shortcut.weights, normalization)
    g = w if normalization == "relu" else w * (1 - w)
    d = r.astype(np.float64)
    want = np.zeros(shortcut.weights.shape)
    for i, source in enumerate([net.layers[2], net.layers[1], net.layers[0]]):   # the input, then from=
        common = min(3, source.out_shape[0])
        terms = (d[:, :common] * source.output[:, :common]).sum(axis=(0, 2, 3))
        if weights_type == "per_feature":
            want[i, 0] = terms.sum() * g[i, 0]
        else:
            want[i, :common] = terms * g[i, :common]
    got = updates[3]["weights"]
    check(got, want, 1e-5, "shortcut weight updates")
    if weights_type == "per_channel":
        assert not got[1, 2:].any()          # the 2-channel source has no weight gradient for channel 2


def test_shortcut_weights_update_step(tmp_path):
    """One update of learned shortcut weights as the fork's update_shortcut_layer_gpu: the updates clipped to
    [-1, 1], then weights += lr * layer learning_rate / batch * updates, without weight decay, and the updates
    kept times momentum (the convolution before it, for contrast, is decayed)."""
    rng = np.random.default_rng(38)
    net = ab_net(tmp_path, 3, 4, 2, 2, SHORTCUT_SOURCES + "[shortcut]\nfrom=-2,-3\nweights_type=per_channel\n"
                                                          "weights_normalization=softmax\nlearning_rate=0.5\n")
    randomize(net, rng)
    shortcut, conv = net.layers[3], net.layers[2]
    shortcut.weights[...] = rng.uniform(-1, 1, shortcut.weights.shape)
    net.learning_rate, net.momentum, net.decay, net.subdivisions = 0.1, 0.9, 0.05, 3
    x = rng.normal(size=(2, 2, 4, 3)).astype(np.float32)
    r = rng.normal(0, 3, size=(2, 3, 4, 3)).astype(np.float32)
    analytic(net, x, r)
    updates = shortcut.weight_updates.copy()
    assert (np.abs(updates) > 1).any() and ((np.abs(updates) < 1) & (updates != 0)).any()   # clipped and not
    weights, conv_weights, conv_updates = shortcut.weights.copy(), conv.weights.copy(), conv.weight_updates.copy()
    update_network(net)
    f32 = np.float32
    batch = f32(2 * 3)
    step = f32(f32(f32(0.1) * f32(0.5)) / batch)
    clipped = np.clip(updates, -1, 1)
    assert np.allclose(shortcut.weights, weights + step * clipped, rtol=1e-6, atol=1e-8)
    assert np.allclose(shortcut.weight_updates, clipped * f32(0.9), rtol=1e-6, atol=1e-8)
    decayed = weights + step * (clipped - f32(0.05) * batch * weights)
    assert np.max(np.abs(shortcut.weights - decayed)) > 1e-3      # (decay would have shown)
    conv_step = f32(f32(0.1) / batch)
    assert np.allclose(conv.weights, conv_weights + conv_step * (conv_updates - f32(0.05) * batch * conv_weights),
                       rtol=1e-5, atol=1e-7)


# -- pooling with the fork's options, and yolov4-tiny's CSP block ------------------------------------------------
def pool_input(rng):
    return (rng.permutation(2 * 2 * 6 * 7).astype(np.float32) * np.float32(0.05)).reshape(2, 2, 6, 7)  # no ties


def test_maxpool_padded_stride_xy(tmp_path):
    """stride_x != stride_y with the default padding (size - 1): windows reaching off the edges."""
    rng = np.random.default_rng(39)
    net = ab_net(tmp_path, 7, 6, 2, 2, "[maxpool]\nsize=3\nstride_x=2\nstride_y=1\n")
    check_network(net, pool_input(rng), rng, h=1e-2, rtol=1e-3)


LOCAL_AVGPOOLS = ["[local_avgpool]\nsize=3\nstride_x=1\nstride_y=2\n", "[local_avgpool]\nsize=2\nstride=2\n"]


@pytest.mark.parametrize("body", LOCAL_AVGPOOLS)
def test_local_avgpool_padded_exact_gradient(tmp_path, body):
    """Windows reaching off the edge average fewer pixels, and their deltas are shared among those only (the
    fork's builds depart here, each its own way: see kernels.backward.local_avgpool_backward)."""
    rng = np.random.default_rng(39)
    net = ab_net(tmp_path, 7, 6, 2, 2, body)
    check_network(net, pool_input(rng), rng, h=1e-2, rtol=1e-3)


def test_csp_block(tmp_path):
    """yolov4-tiny's CSP block: the second half of a layer's channels (route groups=2 group_id=1), two
    convolutions, their concatenation, and the whole block concatenated with the first layer: route deltas
    added into sources that two routes read (no max pool after it: a step of h in a weight moves
    random values across one another, where the maximum has its kink)."""
    rng = np.random.default_rng(40)
    net = ab_net(tmp_path, 6, 6, 2, 2,
                 "[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=mish\n"
                 "[route]\nlayers=-1\ngroups=2\ngroup_id=1\n"
                 "[convolutional]\nfilters=2\nsize=3\npad=1\nactivation=mish\n"
                 "[convolutional]\nfilters=2\nsize=3\npad=1\nactivation=mish\n"
                 "[route]\nlayers=-1,-2\n"
                 "[convolutional]\nfilters=4\nsize=1\nactivation=mish\n"
                 "[route]\nlayers=-6,-1\n")
    randomize(net, rng)
    check_network(net, rng.normal(size=(2, 2, 6, 6)).astype(np.float32), rng)


# -- sam and scale_channels with an activation ---------------------------------------------------------------------
@pytest.mark.parametrize("tail", ["[sam]\nfrom=-2\nactivation=logistic\n",
                                  "[sam]\nfrom=-2\nactivation=relu6\n",
                                  "[avgpool]\n[scale_channels]\nfrom=-2\nactivation=logistic\n"])
def test_attention_with_activation(tmp_path, tail):
    """The activation's gradient comes first (from the output), then each factor's share."""
    rng = np.random.default_rng(41)
    net = ab_net(tmp_path, 3, 4, 2, 2, "[convolutional]\nfilters=3\nsize=3\npad=1\nactivation=linear\n"
                                        "[convolutional]\nfilters=3\nsize=1\nactivation=logistic\n" + tail)
    randomize(net, rng)
    x = rng.normal(size=(2, 2, 4, 3)).astype(np.float32)
    if "relu6" in tail:   # products of 2.5 +- .3 and a logistic: in (0, 3), so relu6's kinks are never crossed
        net.layers[0].weights *= 0.1
        net.layers[0].biases[...] = 2.5
    check_network(net, x, rng)
