"""The AlexeyAB fork's layers, options and activations, each against a small numpy rendering of the fork's
formula, and their backward passes against finite differences (test_gradients' helpers)."""
import numpy as np
import pytest

from pydarknet.files.config import CfgError
from pydarknet.files.weights import save_weights
from pydarknet.kernels import products
from pydarknet.kernels.activations import CODE, activate, activate_channels
from pydarknet.kernels.backward import gradient_channels, gradient_from_input
from test_gradients import check_network, make_net, randomize


def forward(net, x):
    net.forward(x)
    return [layer.output.copy() for layer in net.layers]


def conv_reference(x, weights, size, stride, pad, dilation=1, groups=1):
    """A direct convolution: the fork's im2col_cpu_ext with taps `dilation` apart and pad*dilation padding."""
    n, c, h, w = x.shape
    filters = weights.shape[0]
    p = pad * dilation
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (p, p), (p, p)))
    oh = (h + 2 * pad - size) // stride + 1
    ow = (w + 2 * pad - size) // stride + 1
    kernels = weights.reshape(filters, c // groups, size, size).astype(np.float64)
    out = np.zeros((n, filters, oh, ow))
    per = filters // groups
    for f in range(filters):
        g = f // per
        for ky in range(size):
            for kx in range(size):
                y0, x0 = ky * dilation, kx * dilation
                window = xp[:, g * (c // groups):(g + 1) * (c // groups),
                            y0:y0 + stride * (oh - 1) + 1:stride, x0:x0 + stride * (ow - 1) + 1:stride]
                out[:, f] += np.einsum("nchw,c->nhw", window, kernels[f, :, ky, kx])
    return out


# -- activations ---------------------------------------------------------------------------------------------
def softplus(x):
    return np.where(x > 20, x, np.where(x < -20, np.exp(x), np.log1p(np.exp(x))))


REFERENCE = {
    "mish": lambda x: x * np.tanh(softplus(x)),
    "swish": lambda x: x / (1 + np.exp(-x)),
    "hard_mish": lambda x: np.where(x > 0, x, np.where(x > -2, x * x / 2 + x, 0)),
    "relu6": lambda x: np.clip(x, 0, 6),
    "gelu": lambda x: 0.5 * x * (1 + np.tanh(0.797885 * x + 0.035677 * x ** 3)),
    "revleaky": lambda x: np.where(x > 0, x, 0.1 * x),
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_activation_values(name):
    xs = np.concatenate([np.linspace(-25, 25, 201), [-2.5, -2, -1e-3, 0, 1e-3, 5.9, 6, 6.1]]).astype(np.float32)
    got = np.array([activate(v, CODE[name]) for v in xs])
    assert np.allclose(got, REFERENCE[name](xs.astype(np.float64)), rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("name", ["mish", "swish", "hard_mish"])
def test_gradient_from_input(name):
    """The fork's gradients from the activation's input against central differences (away from -2 and 0)."""
    xs = np.linspace(-6, 6, 97).astype(np.float32) + np.float32(0.013)
    ys = np.array([activate(v, CODE[name]) for v in xs], np.float32)
    delta = np.ones_like(xs)
    gradient_from_input(xs, ys, CODE[name], delta)
    h = 1e-3
    numeric = (REFERENCE[name](xs + h) - REFERENCE[name](xs - h)) / (2 * h)
    assert np.allclose(delta, numeric, rtol=1e-3, atol=1e-3)


def test_normalize_channels():
    """Each pixel across channels: positive parts over their sum, or exponentials over theirs (+ .0001)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 7)).astype(np.float32)
    for name in ("normalize_channels", "normalize_channels_softmax", "normalize_channels_softmax_maxval"):
        out = np.empty_like(x)
        activate_channels(x, CODE[name], out)
        if name == "normalize_channels":
            terms = np.maximum(x, 0)
        else:
            top = x.max(axis=1, keepdims=True) if name.endswith("maxval") else 0
            terms = np.exp(x - top)
        assert np.allclose(out, terms / (terms.sum(axis=1, keepdims=True) + 1e-4), rtol=1e-5, atol=1e-7), name
    delta = rng.normal(size=x.shape).astype(np.float32)
    got = delta.copy()
    gradient_channels(out, CODE["normalize_channels_softmax_maxval"], got)
    assert np.allclose(got, delta * (out * delta).sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("activation", ["mish", "swish"])
@pytest.mark.parametrize("batch_normalize", [0, 1])
def test_convolutional_activation_gradients(tmp_path, activation, batch_normalize):
    """The convolution keeps its activation's input in training for the gradients that need it (the smooth
    ones here: finite differences across hard_mish's and relu6's kinks would not check anything)."""
    rng = np.random.default_rng(3)
    net = make_net(tmp_path, 5, 4, 2, 2, f"[convolutional]\nfilters=3\nsize=3\npad=1\nactivation={activation}\n"
                                          f"batch_normalize={batch_normalize}\n")
    randomize(net, rng)
    x = rng.normal(size=(2, 2, 4, 5)).astype(np.float32)
    check_network(net, x, rng, h=1e-2, rtol=5e-3, atol=2e-3, params=not batch_normalize)


# -- [convolutional] dilation and the fork's batch-norm --------------------------------------------------------
@pytest.mark.parametrize("size, stride, dilation, groups", [(3, 1, 2, 1), (3, 2, 3, 2), (5, 1, 2, 4)])
def test_dilation(tmp_path, size, stride, dilation, groups):
    rng = np.random.default_rng(4)
    net = make_net(tmp_path, 11, 9, 4, 2, f"[convolutional]\nfilters=4\nsize={size}\nstride={stride}\npad=1\n"
                                           f"dilation={dilation}\ngroups={groups}\nactivation=linear\n")
    randomize(net, rng)
    x = rng.normal(size=(2, 4, 9, 11)).astype(np.float32)
    conv = net.layers[0]
    want = conv_reference(x, conv.weights, size, stride, size // 2, dilation, groups) + conv.biases[:, None, None]
    assert np.allclose(net.forward(x), want, rtol=1e-5, atol=1e-5)
    check_network(net, x, rng)


@pytest.mark.parametrize("size, stride, pad, dilation, h, w", [
    (3, 1, 1, 1, 13, 11), (3, 2, 1, 1, 13, 11), (5, 1, 2, 1, 13, 11), (3, 1, 1, 2, 13, 11), (3, 2, 0, 1, 13, 11),
    (5, 1, 1, 1, 13, 11), (3, 1, 1, 1, 70, 64), (3, 2, 1, 1, 70, 64), (3, 1, 1, 1, 5, 1), (3, 1, 1, 1, 150, 64),
    (3, 1, 1, 2, 70, 64), (5, 1, 2, 1, 70, 64), (3, 1, 1, 1, 40, 40), (5, 1, 2, 1, 7, 30)])
@pytest.mark.parametrize("products", ["darknet", "fast"])
def test_depthwise_is_the_product_path_bit_for_bit(size, stride, pad, dilation, h, w, products):
    """Depthwise layers skip im2col; each output is still the same float chain as the products' on im2col's
    columns: darknet's exact chains, or with the fast products (`fused`) the same chains of FMAs: read from the
    image in place with each tap's lanes masked off where it falls in the padding (stride 1, the image's size, at
    most MASKED_PLANE pixels: 13 x 11, 7 x 30, 5 x 1), through the kernel column copies (larger: one band, or 70
    and 150 rows of 64 in three and five, each band's copies zeroed above and below where another band's rows lie)
    and the phase planes (the rest: strides, other paddings, in bands of rows)."""
    from pydarknet.kernels.conv import depthwise_conv, im2col_batch
    from pydarknet.kernels.products import Products, gemm_nn, using
    fused = products == "fast"
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 6, h, w)).astype(np.float32)
    x[x < -1.2] = 0.0   # zeros, and -0 products, among the taps
    weights = rng.normal(size=(6, size * size)).astype(np.float32)
    span = dilation * (size - 1) + 1
    oh, ow = (h + 2 * pad * dilation - span) // stride + 1, (w + 2 * pad * dilation - span) // stride + 1
    out = np.empty((2, 6, oh * ow), np.float32)
    for b in range(2):
        depthwise_conv(x[b], weights, size, stride, pad * dilation, dilation, out[b], fused=fused)
    cols = np.empty((2, size * size, oh * ow), np.float32)
    other = np.empty((oh * ow), np.float32)   # the other products' chains: not these bits
    for ch in range(6):
        im2col_batch(x, ch, 1, size, stride, pad * dilation, cols, False, dilation)
        for b in range(2):
            want = np.empty((1, oh * ow), np.float32)
            with using(Products(products)):
                gemm_nn(weights[ch:ch + 1], cols[b], want)
            assert np.array_equal(out[b, ch], want[0]), (b, ch)
    with using(Products("darknet" if fused else "fast")):
        gemm_nn(weights[5:], cols[1], other[None])
    assert size == 1 or w == 1 or not np.array_equal(out[1, 5], other)


def test_dilation_must_fit(tmp_path):
    with pytest.raises(CfgError, match=r"net.cfg:\d+: .*dilation=2"):
        make_net(tmp_path, 8, 8, 1, 1, "[convolutional]\nfilters=1\nsize=3\npadding=0\ndilation=2\n")


BN_CFG = "[convolutional]\nfilters=3\nsize=3\npad=1\nbatch_normalize=1\nactivation=leaky\n"


def bn_net(tmp_path, rng):
    net = make_net(tmp_path, 6, 5, 2, 1, BN_CFG + "[batchnorm]\n")
    randomize(net, rng)
    conv, bn = net.layers
    for layer in (conv, bn):
        layer.rolling_mean[...] = rng.normal(size=3)
        layer.rolling_variance[...] = rng.uniform(1e-4, 2, size=3)
    bn.scales[...] = rng.uniform(0.5, 1.5, 3)
    return net


def test_ab_batchnorm_arithmetic(tmp_path):
    """net.darknet "ab": (x - mean) / sqrt(var + .00001) in [convolutional] and [batchnorm]; pjreddie's
    / (sqrt(var) + .000001) otherwise; fused into the weights (fuse_batchnorm) to float rounding."""
    rng = np.random.default_rng(5)
    net = bn_net(tmp_path, rng)
    x = rng.normal(size=(1, 2, 5, 6)).astype(np.float32)
    conv, bn = net.layers
    raw = conv_reference(x, conv.weights, 3, 1, 1)
    unfused = {}
    for darknet, divide in (("ab", lambda v: np.sqrt(v + 1e-5)), ("pjreddie", lambda v: np.sqrt(v) + 1e-6)):
        net.darknet, net.fuse_batchnorm = darknet, False
        c = lambda a: a[None, :, None, None]  # noqa: E731
        y = (raw - c(conv.rolling_mean)) / c(divide(conv.rolling_variance)) * c(conv.scales) + c(conv.biases)
        y = np.where(y > 0, y, 0.1 * y)
        want = (y - c(bn.rolling_mean)) / c(divide(bn.rolling_variance)) * c(bn.scales) + c(bn.biases)
        outs = unfused[darknet] = forward(net, x)
        assert np.allclose(outs[0], y, rtol=1e-5, atol=1e-5), darknet
        assert np.allclose(outs[1], want, rtol=1e-4, atol=1e-4), darknet
    net.darknet, net.fuse_batchnorm = "ab", True
    assert np.allclose(forward(net, x)[0], unfused["ab"][0], rtol=1e-5, atol=1e-5)


def test_fused_weights_follow_params_version(tmp_path):
    """The fused weights are the fork's (double arithmetic), recomputed when the parameters change; the layer's
    own parameters, and so the saved weights, stay unfused."""
    rng = np.random.default_rng(6)
    net = bn_net(tmp_path, rng)
    net.darknet = "ab"
    conv = net.layers[0]
    original = conv.weights.copy()
    x = rng.normal(size=(1, 2, 5, 6)).astype(np.float32)
    forward(net, x)
    weights, biases = conv.fused_parameters(net)
    root = np.sqrt(conv.rolling_variance.astype(np.float64) + .00001)
    assert np.array_equal(biases, (conv.biases - conv.scales.astype(np.float64) * conv.rolling_mean / root)
                          .astype(np.float32))
    assert np.array_equal(weights, (conv.weights * (conv.scales / root)[:, None]).astype(np.float32))
    assert np.array_equal(conv.weights, original)
    saved = tmp_path / "net.weights"
    save_weights(net, saved)
    other = make_net(tmp_path, 6, 5, 2, 1, BN_CFG + "[batchnorm]\n").load(saved)
    assert np.array_equal(other.layers[0].weights, original)
    conv.scales *= 2
    assert conv.fused_parameters(net)[0] is weights      # same version: the cached arrays
    net.params_version += 1
    assert np.allclose(conv.fused_parameters(net)[0], 2 * weights, rtol=1e-6)


@pytest.mark.parametrize("option", ["antialiasing=1", "xnor=1", "stride_x=2", "share_index=0", "sway=1"])
def test_unsupported_convolutional_options(tmp_path, option):
    key = option.split("=")[0]
    with pytest.raises(CfgError, match=rf"net.cfg:\d+: .*{key}="):
        make_net(tmp_path, 8, 8, 1, 1, f"[convolutional]\nfilters=1\nsize=3\npad=1\n[convolutional]\nfilters=1\n"
                                       f"size=3\n{option}\n")


# -- [route] groups --------------------------------------------------------------------------------------------
def test_route_groups(tmp_path):
    rng = np.random.default_rng(7)
    net = make_net(tmp_path, 3, 2, 4, 2, "[convolutional]\nfilters=6\nsize=1\nactivation=linear\n"
                                         "[convolutional]\nfilters=4\nsize=1\nactivation=linear\n"
                                         "[route]\nlayers=-1,-2\ngroups=2\ngroup_id=1\n")
    randomize(net, rng)
    x = rng.normal(size=(2, 4, 2, 3)).astype(np.float32)
    outs = forward(net, x)
    assert np.array_equal(outs[2], np.concatenate([outs[1][:, 2:], outs[0][:, 3:]], axis=1))
    check_network(net, x, rng)


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("read_by", ["caller", "convolution"])
@pytest.mark.parametrize("training", [False, True])
def test_route_of_one_layers_group_is_a_view_where_read_image_by_image(tmp_path, batch, read_by, training):
    """yolov4-tiny's CSP split (one layer, groups=2 group_id=1): for one image its channels lie in one run of
    the layer's output, and the route hands that on without a copy; for a batch too where, in inference, a
    convolution reads it (one image at a time); else, where the caller reads it or while training, it copies (a
    view would not be contiguous). The values are the group either way."""
    rng = np.random.default_rng(8)
    after = "[convolutional]\nfilters=2\nsize=1\nactivation=linear\n" if read_by == "convolution" else ""
    net = make_net(tmp_path, 3, 2, 4, batch, "[convolutional]\nfilters=6\nsize=1\nactivation=linear\n"
                                             "[route]\nlayers=-1\ngroups=2\ngroup_id=1\n" + after)
    randomize(net, rng)
    net.train = training
    x = rng.normal(size=(batch, 4, 2, 3)).astype(np.float32)
    net.forward(x)
    conv, route = net.layers[:2]
    viewed = batch == 1 or (read_by == "convolution" and not training)
    assert np.array_equal(route.output, conv.output[:, 3:])
    assert np.shares_memory(route.output, conv.output) == viewed
    assert route.output.flags.c_contiguous == (batch == 1 or not viewed)
    if after:   # the convolution reads each image's run: its output as from a copy
        reference = make_net(tmp_path, 3, 2, 3, 1, "[convolutional]\nfilters=2\nsize=1\nactivation=linear\n")
        reference.layers[0].weights[...], reference.layers[0].biases[...] = net.layers[2].weights, net.layers[2].biases
        for b in range(batch):
            assert np.array_equal(net.layers[2].output[b], reference.forward(np.ascontiguousarray(
                conv.output[b:b + 1, 3:]))[0])


CONCATENATIONS = ("[convolutional]\nfilters=4\nsize=1\nactivation=linear\n"              # 0
                  "[convolutional]\nfilters=3\nsize=3\npad=1\nactivation=leaky\n"         # 1
                  "[route]\nlayers=-1,-2\n"                                                 # 2: 1, 0
                  "[convolutional]\nfilters=2\nsize=1\nactivation=linear\n"              # 3
                  "[route]\nlayers=-1,0\n")                                                 # 4: 3, 0


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("mode", ["darknet", "fast"])
def test_concatenated_layers_write_into_the_route(tmp_path, batch, training, mode):
    """yolov4-tiny's concatenations: for one image each source writes its output in its part of the route's
    output and the route copies nothing; a layer in two concatenations is in place in the first and copied by
    the second. For a batch too in the fast modes, whose fused store writes each image's output in its run of the
    route's (the layers reading it read it image by image); a batch in the exact mode, and training (where a layer
    may change its input in place), copy every source. The values are those of a network that copies everything
    (two of the image: its first)."""
    rng = np.random.default_rng(9)
    x = rng.normal(size=(1, 4, 3, 5)).astype(np.float32)
    copying = make_net(tmp_path, 5, 3, 4, 2, CONCATENATIONS)
    randomize(copying, np.random.default_rng(10))
    copying.products = products.products_for(mode)
    copying.train = training
    copying.forward(np.concatenate([x, x]))
    net = make_net(tmp_path, 5, 3, 4, batch, CONCATENATIONS)
    randomize(net, np.random.default_rng(10))
    net.products = products.products_for(mode)
    net.train = training
    net.forward(np.concatenate([x] * batch))
    for layer, reference in zip(net.layers, copying.layers):
        assert np.array_equal(layer.output[0], reference.output[0]), layer.index
    first, second, route, third, last = net.layers
    in_place = not training and (batch == 1 or mode == "fast")
    assert [np.shares_memory(layer.output, route.output) for layer in (first, second)] == [in_place] * 2
    assert np.shares_memory(third.output, last.output) == in_place
    assert not np.shares_memory(first.output, last.output)
    if batch == 2:   # each image's values where they belong
        assert np.array_equal(route.output[1], route.output[0]) and np.array_equal(last.output[1], last.output[0])


def test_a_resize_gives_the_concatenated_layers_their_new_places(tmp_path):
    net = make_net(tmp_path, 5, 3, 4, 1, CONCATENATIONS)
    randomize(net, np.random.default_rng(10))
    net.resize(7, 4)
    x = np.random.default_rng(11).normal(size=(1, 4, 4, 7)).astype(np.float32)
    net.forward(x)
    first, second, route = net.layers[:3]
    assert np.array_equal(route.output, np.concatenate([second.output, first.output], axis=1))
    assert np.shares_memory(first.output, route.output) and np.shares_memory(second.output, route.output)


# -- [shortcut] ------------------------------------------------------------------------------------------------
def shortcut_reference(x, sources, weights, normalization):
    """The fork's shortcut_multilayer_cpu: w0 * x + sum_i w_i * from_i over their common channels."""
    if normalization == "relu":
        terms = np.maximum(weights, 0)
    elif normalization == "softmax":
        terms = np.exp(weights - weights.max(axis=0))
    else:
        terms = weights
    if normalization != "none":
        terms = terms / (terms.sum(axis=0) + 1e-4)
    scale = lambda w: w[None, :, None, None] if w.size > 1 else w[0]  # noqa: E731
    out = x * scale(terms[0][:x.shape[1]])
    for i, s in enumerate(sources):
        common = min(x.shape[1], s.shape[1])
        out[:, :common] += s[:, :common] * scale(terms[i + 1][:common])
    return out


@pytest.mark.parametrize("weights_type, normalization", [
    ("none", "none"), ("per_feature", "softmax"), ("per_channel", "relu"), ("per_channel", "none")])
def test_shortcut_multilayer(tmp_path, weights_type, normalization):
    """Two sources, one with fewer channels than the input and one with more (the common ones are added)."""
    rng = np.random.default_rng(8)
    net = make_net(tmp_path, 3, 3, 2, 2,
                   "[convolutional]\nfilters=6\nsize=1\nactivation=linear\n"
                   "[convolutional]\nfilters=2\nsize=1\nactivation=linear\n"
                   "[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=linear\n"
                   f"[shortcut]\nfrom=-2,-3\nweights_type={weights_type}\nweights_normalization={normalization}\n"
                   "activation=linear\n")
    randomize(net, rng)
    shortcut = net.layers[3]
    if shortcut.weights is not None:
        shortcut.weights[...] = rng.normal(0.3, 0.5, shortcut.weights.shape)
    x = rng.normal(size=(2, 2, 3, 3)).astype(np.float32)
    net.fuse_batchnorm = False   # relu floors at 0 as the fork's unfused CPU forward
    outs = forward(net, x)
    weights = shortcut.weights if shortcut.weights is not None else np.ones((3, 1), np.float32)
    want = shortcut_reference(outs[2], [outs[1], outs[0]], weights, normalization)
    assert np.allclose(outs[3], want, rtol=1e-5, atol=1e-6)
    # the weight gradients of normalised weights are the fork's (w or w(1-w) times the plain one), not exact
    if normalization == "none":
        check_network(net, x, rng)
    else:
        shortcut.weights[...] = np.abs(shortcut.weights) + 0.01   # above the training floor (.001)
        check_network(net, x, rng, params=False)


def test_shortcut_weights_in_the_weights_file(tmp_path):
    """(sources + 1) x channels floats after the layers before, in the fork's order (the input's first)."""
    rng = np.random.default_rng(9)
    body = ("[convolutional]\nfilters=3\nsize=1\nactivation=linear\n"
            "[shortcut]\nfrom=-1\nweights_type=per_channel\nweights_normalization=softmax\n")
    net = make_net(tmp_path, 2, 2, 3, 1, body)
    randomize(net, rng)
    net.layers[1].weights[...] = rng.normal(size=(2, 3))
    save_weights(net, tmp_path / "w.weights")
    data = np.fromfile(tmp_path / "w.weights", np.float32)
    assert np.array_equal(data[-6:], net.layers[1].weights.reshape(-1))
    other = make_net(tmp_path, 2, 2, 3, 1, body).load(tmp_path / "w.weights")
    assert np.array_equal(other.layers[1].weights, net.layers[1].weights)


def test_shortcut_mish(tmp_path):
    rng = np.random.default_rng(10)
    net = make_net(tmp_path, 3, 3, 2, 2, "[convolutional]\nfilters=2\nsize=1\nactivation=linear\n"
                                         "[convolutional]\nfilters=2\nsize=3\npad=1\nactivation=linear\n"
                                         "[shortcut]\nfrom=-2\nactivation=mish\n")
    randomize(net, rng)
    x = rng.normal(size=(2, 2, 3, 3)).astype(np.float32)
    outs = forward(net, x)
    assert np.allclose(outs[2], REFERENCE["mish"](outs[1] + outs[0]), rtol=1e-5, atol=1e-6)
    check_network(net, x, rng)


# -- [sam], [scale_channels], [reorg3d] ------------------------------------------------------------------------
def test_sam(tmp_path):
    rng = np.random.default_rng(11)
    net = make_net(tmp_path, 3, 4, 2, 2, "[convolutional]\nfilters=2\nsize=3\npad=1\nactivation=linear\n"
                                         "[convolutional]\nfilters=2\nsize=1\nactivation=logistic\n"
                                         "[sam]\nfrom=-2\n")
    randomize(net, rng)
    x = rng.normal(size=(2, 2, 4, 3)).astype(np.float32)
    outs = forward(net, x)
    assert np.array_equal(outs[2], outs[1] * outs[0])
    check_network(net, x, rng)


@pytest.mark.parametrize("scale_wh", [0, 1])
def test_scale_channels(tmp_path, scale_wh):
    rng = np.random.default_rng(12)
    squeeze = "[avgpool]\n" if not scale_wh else ""
    net = make_net(tmp_path, 3, 4, 2, 2, "[convolutional]\nfilters=3\nsize=3\npad=1\nactivation=linear\n"
                                         f"{squeeze}[convolutional]\nfilters={1 if scale_wh else 3}\nsize=1\n"
                                         f"activation=logistic\n[scale_channels]\nfrom=0\nscale_wh={scale_wh}\n")
    randomize(net, rng)
    x = rng.normal(size=(2, 2, 4, 3)).astype(np.float32)
    outs = forward(net, x)
    assert np.array_equal(outs[-1], outs[0] * outs[-2])   # factors (n, c, 1, 1) or (n, 1, h, w) broadcast
    check_network(net, x, rng)


def test_reorg3d(tmp_path):
    """Space to depth: output channel q*c + k is input channel k at offset (q // s, q % s) of each block."""
    rng = np.random.default_rng(13)
    net = make_net(tmp_path, 4, 6, 3, 2, "[convolutional]\nfilters=3\nsize=1\nactivation=linear\n"
                                         "[reorg3d]\nstride=2\n")
    randomize(net, rng)
    x = rng.normal(size=(2, 3, 6, 4)).astype(np.float32)
    outs = forward(net, x)
    blocks = outs[0].reshape(2, 3, 3, 2, 2, 2)            # n, c, oh, dy, ow, dx
    want = blocks.transpose(0, 3, 5, 1, 2, 4).reshape(2, 12, 3, 2)
    assert np.array_equal(outs[1], want)
    check_network(net, x, rng)


# -- [maxpool] and [local_avgpool] -----------------------------------------------------------------------------
def pool_reference(x, size, sy, sx, pad, reduce):
    n, c, h, w = x.shape
    oh, ow = (h + pad - size) // sy + 1, (w + pad - size) // sx + 1
    out = np.empty((n, c, oh, ow), np.float32)
    off = pad // 2
    for i in range(oh):
        for j in range(ow):
            y0, x0 = i * sy - off, j * sx - off
            out[:, :, i, j] = reduce(x[:, :, max(0, y0):y0 + size, max(0, x0):x0 + size], axis=(2, 3))
    return out


@pytest.mark.parametrize("kind", ["maxpool", "local_avgpool"])
def test_pool_stride_xy(tmp_path, kind):
    rng = np.random.default_rng(14)
    net = make_net(tmp_path, 7, 8, 2, 2, f"[{kind}]\nsize=2\nstride_x=1\nstride_y=2\npadding=0\n")
    x = (rng.permutation(2 * 2 * 8 * 7).astype(np.float32) * np.float32(0.05)).reshape(2, 2, 8, 7)  # no ties
    want = pool_reference(x, 2, 2, 1, 0, np.max if kind == "maxpool" else np.mean)
    assert np.allclose(forward(net, x)[0], want, rtol=1e-6, atol=1e-7)
    check_network(net, x, rng, h=1e-2, rtol=1e-3)


def test_local_avgpool_edges(tmp_path):
    """At the edges the fork averages over the pixels inside the image (its default padding is size - 1)."""
    rng = np.random.default_rng(15)
    net = make_net(tmp_path, 5, 5, 2, 1, "[local_avgpool]\nsize=3\nstride=2\n")
    x = rng.normal(size=(1, 2, 5, 5)).astype(np.float32)
    assert np.allclose(forward(net, x)[0], pool_reference(x, 3, 2, 2, 2, np.mean), rtol=1e-6)


def test_maxpool_depth(tmp_path):
    rng = np.random.default_rng(16)
    net = make_net(tmp_path, 3, 2, 6, 2, "[maxpool]\nmaxpool_depth=1\nout_channels=2\nsize=1\nstride=1\n")
    x = (rng.permutation(2 * 6 * 2 * 3).astype(np.float32) * np.float32(0.05)).reshape(2, 6, 2, 3)  # no ties
    assert np.array_equal(forward(net, x)[0], x.reshape(2, 3, 2, 2, 3).max(axis=1))  # channel k: k, k+2, k+4
    check_network(net, x, rng, h=1e-2, rtol=1e-3)


def test_unsupported_layer_options(tmp_path):
    for body, key in (("[maxpool]\nsize=2\nantialiasing=1\n", "antialiasing"),
                      ("[dropout]\ndropblock=1\n", "dropblock"),
                      ("[reorg3d]\nstride=2\nreverse=1\n", "reverse"),
                      ("[sam]\nfrom=-1\nactivation=mish\n", "activation")):
        with pytest.raises(CfgError, match=rf"net.cfg:\d+: .*{key}"):
            make_net(tmp_path, 4, 4, 2, 1, "[convolutional]\nfilters=2\nsize=1\n" + body)


def test_dropout_identity_at_inference(tmp_path):
    net = make_net(tmp_path, 3, 3, 2, 1, "[convolutional]\nfilters=2\nsize=1\nactivation=linear\n[dropout]\n")
    assert net.layers[1].probability == np.float32(0.5)   # pjreddie's default; the fork's is .2
    x = np.ones((1, 2, 3, 3), np.float32)
    assert np.array_equal(forward(net, x)[1], forward(net, x)[0])
