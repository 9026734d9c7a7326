"""The classifier layers ([connected], [local], [crop], [softmax], [avgpool], [dropout], [cost] and the small
ones: [batchnorm], [activation], [logistic], [l2norm], [normalization]) on inputs small enough to work out
by hand, their layer-table lines, their .weights order, and the cfg errors they report (file:line)."""
import math
import struct

import numpy as np
import pytest

from pydarknet.files.config import CfgError, DarknetError
from pydarknet.files.weights import weights_bytes
from pydarknet.network.network import Network
from pydarknet.results.classifications import network_hierarchy, top_k
from pydarknet.results.tree import hierarchy_predictions, read_tree

f32 = np.float32


def build(tmp_path, body, net="[net]\nwidth=2\nheight=2\nchannels=1\n", name="t.cfg"):
    path = tmp_path / name
    path.write_text(net + body)
    return Network(path, quiet_unused=True)


def run(net, x):
    return net.forward(np.asarray(x, np.float32).reshape((1,) + net.input_shape))


def weights_file(tmp_path, floats, version=(0, 2, 0)):
    major, minor, revision = version
    if major * 10 + minor >= 2 and major < 1000 and minor < 1000:
        head = struct.pack("<3iq", major, minor, revision, 0)
    else:
        head = struct.pack("<4i", major, minor, revision, 0)
    path = tmp_path / "w.weights"
    path.write_bytes(head + np.asarray(floats, "<f4").tobytes())
    return path


# ---------------------------------------------------------------------------------------------------------
# [connected]
# ---------------------------------------------------------------------------------------------------------

def test_connected_linear(tmp_path):
    net = build(tmp_path, "[connected]\noutput=3\nactivation=linear\n")
    layer = net.layers[0]
    assert layer.out_shape == (3, 1, 1) and layer.weights.shape == (3, 4)
    layer.weights[...] = [[1, 0, 0, 0], [1, 1, 1, 1], [0, -2, 0, 0.5]]
    layer.biases[...] = [0.5, -1, 0]
    out = run(net, [1, 2, 3, 4])
    assert out.shape == (1, 3, 1, 1)
    np.testing.assert_array_equal(out.reshape(-1), [1.5, 9, -2])
    assert layer.describe() == "connected                               4  ->     3"
    assert layer.flops() == 0  # darknet counts no FLOPs for connected layers


def test_connected_summation_order(tmp_path):
    """darknet's -Ofast gemm_nt: 4 lane sums (k mod 4), combined (l0 + l2) + (l1 + l3), then the tail."""
    net = build(tmp_path, "[connected]\noutput=1\nactivation=linear\n", net="[net]\nwidth=5\nheight=1\nchannels=1\n")
    net.layers[0].weights[...] = 1
    # lanes: 1e8, 1, -1e8, 1 -> (1e8 - 1e8) + (1 + 1) = 2, then the tail + 1 = 3 (in order it would be 2)
    assert run(net, [1e8, 1, -1e8, 1, 1])[0, 0, 0, 0] == 3


def test_connected_default_logistic(tmp_path):
    net = build(tmp_path, "[conn]\noutput=1\n")
    layer = net.layers[0]
    assert layer.activation == "logistic"
    layer.weights[...] = [[1, 1, 0, 0]]
    out = run(net, [0.25, 0.75, 9, 9])
    assert out[0, 0, 0, 0] == f32(1 / (1 + math.exp(-1)))


def test_connected_batchnorm(tmp_path):
    net = build(tmp_path, "[connected]\noutput=2\nactivation=relu\nbatch_normalize=1\n")
    layer = net.layers[0]
    layer.weights[...] = [[1, 1, 1, 1], [1, -1, 0, 0]]
    layer.rolling_mean[...] = [2, 0]
    layer.rolling_variance[...] = [4, 1]
    layer.scales[...] = [3, 2]
    layer.biases[...] = [1, 0.5]
    out = run(net, [1, 1, 1, 1]).reshape(-1)
    # (4 - 2) / (2 + 1e-6) * 3 + 1 and relu((0 - 0) / 1 * 2 + 0.5)
    assert out[0] == pytest.approx(2 / (2 + 1e-6) * 3 + 1, rel=1e-7)
    assert out[1] == f32(0.5)


def test_connected_flattens_an_image(tmp_path):
    net = build(tmp_path, "[connected]\noutput=1\nactivation=linear\n",
                net="[net]\nwidth=2\nheight=1\nchannels=2\n")
    layer = net.layers[0]
    layer.weights[...] = [[1, 10, 100, 1000]]
    # input (c, h, w) = (2, 1, 2): flat order c0w0, c0w1, c1w0, c1w1
    assert run(net, [1, 2, 3, 4])[0, 0, 0, 0] == 4321


def test_connected_weights_order_and_transpose(tmp_path):
    cfg = "[connected]\noutput=2\nactivation=linear\nbatch_normalize=1\n"
    net = build(tmp_path, cfg)
    values = [1, 2] + list(range(10, 18)) + [3, 4, 5, 6, 7, 8]
    net.load(weights_file(tmp_path, values))
    layer = net.layers[0]
    np.testing.assert_array_equal(layer.biases, [1, 2])
    np.testing.assert_array_equal(layer.weights, [[10, 11, 12, 13], [14, 15, 16, 17]])
    np.testing.assert_array_equal(layer.scales, [3, 4])
    np.testing.assert_array_equal(layer.rolling_mean, [5, 6])
    np.testing.assert_array_equal(layer.rolling_variance, [7, 8])
    assert weights_bytes(net)[20:] == np.asarray(values, "<f4").tobytes()
    # a version with minor > 1000 stores the matrix as (inputs, outputs)
    net = build(tmp_path, cfg)
    net.load(weights_file(tmp_path, values, version=(0, 1001, 0)))
    np.testing.assert_array_equal(net.layers[0].weights, [[10, 12, 14, 16], [11, 13, 15, 17]])


def test_connected_dontloadscales(tmp_path):
    net = build(tmp_path, "[connected]\noutput=2\nbatch_normalize=1\ndontloadscales=1\n")
    net.load(weights_file(tmp_path, [1, 2] + [0] * 8))
    np.testing.assert_array_equal(net.layers[0].scales, [1, 1])


def test_connected_errors(tmp_path):
    with pytest.raises(CfgError, match=r"t\.cfg:7: .*output=0"):
        build(tmp_path, "\n[connected]\noutput=0\n")
    with pytest.raises(CfgError, match=r"t\.cfg:7: .*unknown activation 'bogus'"):
        build(tmp_path, "[connected]\noutput=2\nactivation=bogus\n")


def test_connected_cannot_resize(tmp_path):
    net = build(tmp_path, "[connected]\noutput=2\n")
    with pytest.raises(CfgError, match="cannot be resized"):
        net.resize(4, 4)


# ---------------------------------------------------------------------------------------------------------
# [local]
# ---------------------------------------------------------------------------------------------------------

def test_local_unshared_weights(tmp_path):
    net = build(tmp_path, "[local]\nfilters=2\nsize=3\nstride=1\npad=1\nactivation=linear\n",
                net="[net]\nwidth=3\nheight=3\nchannels=1\n")
    layer = net.layers[0]
    assert layer.out_shape == (2, 3, 3)
    assert layer.weights.shape == (9, 2, 9) and layer.biases.shape == (2, 3, 3)
    x = np.arange(1, 10, dtype=np.float32).reshape(3, 3)
    # filter 0: the centre of its window, times the location's number; filter 1: the window's sum
    for j in range(9):
        layer.weights[j, 0, 4] = j
        layer.weights[j, 1, :] = 1
    layer.biases[1] = 100
    out = run(net, x)[0]
    np.testing.assert_array_equal(out[0].reshape(-1), x.reshape(-1) * np.arange(9))
    padded = np.pad(x, 1)
    sums = [[padded[i:i + 3, j:j + 3].sum() for j in range(3)] for i in range(3)]
    np.testing.assert_array_equal(out[1], np.asarray(sums) + 100)
    assert layer.describe() == "Local Layer: 3 x 3 x 1 image, 2 filters -> 3 x 3 x 2 image"


def test_local_stride_no_pad_logistic(tmp_path):
    net = build(tmp_path, "[local]\nfilters=1\nsize=2\nstride=2\n", net="[net]\nwidth=4\nheight=4\nchannels=1\n")
    layer = net.layers[0]
    assert layer.out_shape == (1, 2, 2) and layer.activation == "logistic"
    layer.weights[:, 0, :] = [1, 0, 0, 0]  # the top-left pixel of each 2x2 window
    out = run(net, np.arange(16))[0, 0]
    expect = 1 / (1 + np.exp(-np.array([[0, 2], [8, 10]], np.float64)))
    np.testing.assert_array_equal(out, expect.astype(np.float32))


def test_local_weights_order(tmp_path):
    net = build(tmp_path, "[local]\nfilters=1\nsize=1\nactivation=linear\n")
    net.load(weights_file(tmp_path, [1, 2, 3, 4, 10, 20, 30, 40]))
    layer = net.layers[0]
    np.testing.assert_array_equal(layer.biases.reshape(-1), [1, 2, 3, 4])
    np.testing.assert_array_equal(layer.weights.reshape(-1), [10, 20, 30, 40])
    np.testing.assert_array_equal(run(net, [1, 1, 2, 2]).reshape(-1), [11, 22, 63, 84])


def test_local_inconsistent_pad(tmp_path):
    with pytest.raises(CfgError, match=r"t\.cfg:8: .*pad=1 with size=5"):
        build(tmp_path, "[local]\nfilters=1\nsize=5\npad=1\n", net="[net]\nwidth=8\nheight=8\nchannels=1\n")


# ---------------------------------------------------------------------------------------------------------
# [crop]
# ---------------------------------------------------------------------------------------------------------

def test_crop_centre_and_adjust(tmp_path):
    net = build(tmp_path, "[crop]\ncrop_height=2\ncrop_width=2\nflip=1\n",
                net="[net]\nwidth=4\nheight=4\nchannels=1\n")
    x = np.arange(16, dtype=np.float32) / 16
    out = run(net, x)[0, 0]
    np.testing.assert_array_equal(out, x.reshape(4, 4)[1:3, 1:3] * 2 - 1)
    assert net.layers[0].describe() == "Crop Layer: 4 x 4 -> 2 x 2 x 1 image"


def test_crop_noadjust_odd_offset(tmp_path):
    net = build(tmp_path, "[crop]\ncrop_height=2\ncrop_width=1\nnoadjust=1\n",
                net="[net]\nwidth=4\nheight=3\nchannels=1\n")
    x = np.arange(12, dtype=np.float32)
    out = run(net, x)[0, 0]
    # dh = (3 - 2) / 2 = 0, dw = (4 - 1) / 2 = 1
    np.testing.assert_array_equal(out, [[1], [5]])


def test_crop_larger_than_input_reads_like_darknet(tmp_path, capsys):
    net = build(tmp_path, "[crop]\ncrop_height=3\ncrop_width=3\n", net="[net]\nwidth=2\nheight=2\nchannels=2\n")
    assert "larger than its 2x2 input" in capsys.readouterr().err
    x = np.array([1, 2, 3, 4, 5, 6, 7, 8], np.float32)
    out = run(net, x)[0]
    # dh = dw = (2 - 3) / 2 = 0 (C truncates): flat index col + 2*(row + 2*channel), no bounds check;
    # indices past the whole input read as 0
    def flat(i):
        return x[i] if i < x.size else 0
    for c in range(2):
        for i in range(3):
            for j in range(3):
                assert out[c, i, j] == flat(j + 2 * (i + 2 * c)) * 2 - 1


def test_crop_resize_keeps_height_ratio(tmp_path):
    net = build(tmp_path, "[crop]\ncrop_height=3\ncrop_width=3\n", net="[net]\nwidth=6\nheight=6\nchannels=1\n")
    net.resize(8, 4)
    assert net.layers[0].out_shape == (1, 2, 4)


def test_crop_parses_training_options(tmp_path):
    net = build(tmp_path, "[crop]\ncrop_height=1\ncrop_width=1\nangle=7\nsaturation=1.5\nexposure=1.25\nshift=.1\n")
    layer = net.layers[0]
    assert (layer.angle, layer.saturation, layer.exposure, layer.shift) == (7, 1.5, 1.25, 0.1)
    with pytest.raises(CfgError, match=r"t\.cfg:6: .*crop_width=0"):
        build(tmp_path, "[crop]\ncrop_width=0\n")


# ---------------------------------------------------------------------------------------------------------
# [softmax]
# ---------------------------------------------------------------------------------------------------------

def softmax64(v, temp=1.0):
    v = np.asarray(v, np.float64) / temp
    e = np.exp(v - v.max())
    return e / e.sum()


def test_softmax_values(tmp_path):
    net = build(tmp_path, "[softmax]\n")
    out = run(net, [1, 2, 3, 4]).reshape(-1)
    np.testing.assert_allclose(out, softmax64([1, 2, 3, 4]), rtol=2e-7)
    assert net.layers[0].out_shape == (4, 1, 1)
    assert net.layers[0].describe() == "softmax                                           4"


def test_softmax_float32_arithmetic(tmp_path):
    net = build(tmp_path, "[soft]\n", net="[net]\nwidth=3\nheight=1\nchannels=1\n")
    x = np.array([0.1, -3.7, 2.25], np.float32)
    out = run(net, x).reshape(-1)
    e = [f32(math.exp(float(f32(v - x.max())))) for v in x]
    total = f32(0)
    for v in e:
        total = f32(total + v)
    # darknet's -Ofast build multiplies by the sum's float32 reciprocal where its source divides
    np.testing.assert_array_equal(out, [f32(v * f32(1 / total)) for v in e])


def test_softmax_groups_and_temperature(tmp_path):
    net = build(tmp_path, "[softmax]\ngroups=2\ntemperature=2\n")
    out = run(net, [0, 1, 5, 3]).reshape(-1)
    np.testing.assert_allclose(out[:2], softmax64([0, 1], 2), rtol=2e-7)
    np.testing.assert_allclose(out[2:], softmax64([5, 3], 2), rtol=2e-7)


def test_softmax_spatial(tmp_path):
    net = build(tmp_path, "[softmax]\nspatial=1\ntemperature=5\n", net="[net]\nwidth=2\nheight=1\nchannels=2\n")
    out = run(net, [1, 2, 3, 0]).reshape(2, 2)  # channel-major: pixel 0 = (1, 3), pixel 1 = (2, 0)
    np.testing.assert_allclose(out[:, 0], softmax64([1, 3]), rtol=2e-7)  # temperature not applied, as darknet
    np.testing.assert_allclose(out[:, 1], softmax64([2, 0]), rtol=2e-7)


def test_softmax_batch(tmp_path):
    net = build(tmp_path, "[softmax]\ngroups=2\n")
    out = net.forward(np.array([[1, 2, 3, 4], [4, 3, 2, 1]], np.float32).reshape(2, 1, 2, 2))
    np.testing.assert_allclose(out[1].reshape(-1), np.r_[softmax64([4, 3]), softmax64([2, 1])], rtol=2e-7)


def test_softmax_errors(tmp_path):
    with pytest.raises(CfgError, match=r"t\.cfg:6: .*groups=3 must divide the 4 inputs"):
        build(tmp_path, "[softmax]\ngroups=3\n")
    with pytest.raises(CfgError, match=r"t\.cfg:6: .*tree file 'nothere\.tree' not found"):
        build(tmp_path, "[softmax]\ntree=nothere.tree\n")


TREE = "a -1\nb -1\nc 0\nd 0\ne 0\nf 3\n"


def test_tree_structure(tmp_path):
    (tmp_path / "t.tree").write_text(TREE)
    t = read_tree(tmp_path / "t.tree")
    assert t.n == 6 and t.groups == 3
    assert t.group_offset.tolist() == [0, 2, 5] and t.group_size.tolist() == [2, 3, 1]
    assert t.child.tolist() == [1, -1, -1, 2, -1, -1]
    assert t.group.tolist() == [0, 0, 1, 1, 1, 2]
    assert t.leaf.tolist() == [False, True, True, False, True, True]
    (tmp_path / "bad.tree").write_text("a -1\nb 7\n")
    with pytest.raises(DarknetError, match=r"bad\.tree:2: parent 7"):
        read_tree(tmp_path / "bad.tree")


def test_softmax_tree(tmp_path):
    (tmp_path / "t.tree").write_text(TREE)
    net = build(tmp_path, "[softmax]\ntree=t.tree\n", net="[net]\nwidth=6\nheight=1\nchannels=1\n")
    x = [1, 2, 0, 1, 2, 7]
    out = run(net, x).reshape(-1)
    np.testing.assert_allclose(out[:2], softmax64([1, 2]), rtol=2e-7)
    np.testing.assert_allclose(out[2:5], softmax64([0, 1, 2]), rtol=2e-7)
    assert out[5] == 1
    tree = network_hierarchy(net)
    p = hierarchy_predictions(out.copy(), tree)
    a, b = softmax64([1, 2])
    c, d, e = softmax64([0, 1, 2])
    np.testing.assert_allclose(p, [0, b, c * a, 0, e * a, d * a], rtol=1e-6)
    with pytest.raises(CfgError, match=r"t\.cfg:6: .*tree has 6 nodes but the layer gets 4 inputs"):
        build(tmp_path, "[softmax]\ntree=t.tree\n")


# ---------------------------------------------------------------------------------------------------------
# [avgpool], [dropout], [cost]
# ---------------------------------------------------------------------------------------------------------

def test_avgpool(tmp_path):
    net = build(tmp_path, "[avg]\n", net="[net]\nwidth=2\nheight=2\nchannels=2\n")
    out = run(net, [1, 2, 3, 4, 10, 0, 0, 1])
    assert out.shape == (1, 2, 1, 1)
    np.testing.assert_array_equal(out.reshape(-1), [2.5, 2.75])
    assert net.layers[0].describe() == "avg                        2 x   2 x   2   ->     2"


def test_avgpool_multiplies_by_the_reciprocal(tmp_path):
    net = build(tmp_path, "[avgpool]\n", net="[net]\nwidth=3\nheight=1\nchannels=2\n")
    out = run(net, [2, 2, 1, 3, 3, 1]).reshape(-1)
    # sums 5 and 7: 5/3 would give 1.6666666 and 7/3 2.3333333; darknet (-Ofast) multiplies by 1/3f
    np.testing.assert_array_equal(out, [f32(5) * f32(f32(1) / f32(3)), f32(7) * f32(f32(1) / f32(3))])
    assert out[0] == f32(1.6666667) and out[1] == f32(2.3333335)


def test_dropout_identity_at_inference(tmp_path):
    net = build(tmp_path, "[connected]\noutput=3\nactivation=linear\n[dropout]\nprobability=.25\n")
    net.layers[0].biases[...] = [1, 2, 3]
    out = run(net, [0, 0, 0, 0])
    assert net.layers[1].output is net.layers[0].output  # darknet aliases the previous output
    np.testing.assert_array_equal(out.reshape(-1), [1, 2, 3])
    assert net.layers[1].out_shape == (3, 1, 1)
    assert net.layers[1].describe() == "dropout       p = 0.25                  3  ->     3"


def test_dropout_keeps_image_shape(tmp_path):
    net = build(tmp_path, "[dropout]\n")
    assert net.layers[0].out_shape == (1, 2, 2) and net.layers[0].probability == pytest.approx(0.5)


def test_cost(tmp_path):
    net = build(tmp_path, "[softmax]\n[cost]\ntype=masked\nscale=2\nratio=.5\nnoobj=.25\nthresh=.1\n")
    cost = net.layers[1]
    assert (cost.cost_type, cost.scale, cost.ratio, cost.noobject_scale, cost.thresh) == ("masked", 2, .5, .25, .1)
    assert cost.describe() == "cost                                              4"
    out = run(net, [1, 1, 1, 1])
    np.testing.assert_array_equal(out.reshape(-1), [.25] * 4)  # the network's output: the softmax
    assert net.output_layer is net.layers[0]
    for kind in ("sse", "smooth", "L1", "seg", "wgan"):
        assert build(tmp_path, f"[cost]\ntype={kind}\n").layers[0].cost_type == kind


def test_cost_unknown_type(tmp_path):
    with pytest.raises(CfgError, match=r"t\.cfg:6: .*unknown cost type 'l1'"):
        build(tmp_path, "[cost]\ntype=l1\n")


# ---------------------------------------------------------------------------------------------------------
# the small ones
# ---------------------------------------------------------------------------------------------------------

def test_batchnorm_layer(tmp_path):
    net = build(tmp_path, "[batchnorm]\n", net="[net]\nwidth=1\nheight=2\nchannels=2\n")
    net.load(weights_file(tmp_path, [2, 1, 0, 1, 1, 4]))  # scales, rolling_mean, rolling_variance
    layer = net.layers[0]
    np.testing.assert_array_equal(layer.scales, [2, 1])
    out = run(net, [1, 3, 5, 7])[0].reshape(-1)
    np.testing.assert_allclose(out, [1 / (1 + 1e-6) * 2, 3 / (1 + 1e-6) * 2, 4 / (2 + 1e-6), 6 / (2 + 1e-6)],
                               rtol=1e-7)
    assert layer.describe() == "Batch Normalization Layer: 1 x 2 x 2 image"


def test_activation_and_logistic(tmp_path):
    net = build(tmp_path, "[activation]\nactivation=leaky\n[logistic]\n")
    out = run(net, [-1, 0, 2, -10])
    leaky = np.array([-0.1, 0, 2, -1], np.float64)
    np.testing.assert_array_equal(net.layers[0].output.reshape(-1), leaky.astype(np.float32))
    np.testing.assert_allclose(out.reshape(-1), 1 / (1 + np.exp(-leaky)), rtol=1e-7)
    assert net.layers[0].describe() == "Activation Layer: 4 inputs"
    assert net.layers[1].describe() == "logistic x entropy                                4"


def test_l2norm(tmp_path):
    net = build(tmp_path, "[l2norm]\n", net="[net]\nwidth=2\nheight=1\nchannels=2\n")
    out = run(net, [3, 1, 4, 0])[0].reshape(2, 2)
    np.testing.assert_allclose(out, [[.6, 1], [.8, 0]], rtol=1e-7)


def test_local_response_normalization(tmp_path):
    net = build(tmp_path, "[lrn]\nsize=3\nalpha=.5\nbeta=.5\nkappa=1\n",
                net="[net]\nwidth=1\nheight=1\nchannels=3\n")
    out = run(net, [1, 2, 3]).reshape(-1)
    # darknet's running window: norm0 = k + a*x0^2 (size/2 = 1 channel); norm1 = norm0 + a*x2^2;
    # norm2 = norm1 - a*x0^2 (prev = 2 - 1 - 1 = 0; next = 3 is past the end)
    n0 = 1 + .5 * 1
    n1 = n0 + .5 * 9
    n2 = n1 - .5 * 1
    np.testing.assert_allclose(out, [1 / math.sqrt(n0), 2 / math.sqrt(n1), 3 / math.sqrt(n2)], rtol=1e-6)
    assert net.layers[0].describe() == "Local Response Normalization Layer: 1 x 1 x 3 image, 3 size"


# ---------------------------------------------------------------------------------------------------------
# top_k
# ---------------------------------------------------------------------------------------------------------

def test_top_k_order_and_ties():
    p = np.array([0.1, 0.3, 0.3, 0.05, 0.25], np.float32)
    assert [i for i, _ in top_k(p, 3)] == [1, 2, 4]
    assert [i for i, _ in top_k(p, 10)] == [1, 2, 4, 0, 3]
    assert top_k(p, 1) == [(1, float(np.float32(0.3)))]
    assert top_k(p, 0) == []
    assert [i for i, _ in top_k(np.zeros(4, np.float32), 4)] == [0, 1, 2, 3]


def test_top_k_nan_like_darknet():
    p = np.array([0.2, np.nan, 0.5, 0.1], np.float32)
    # 0.2 takes slot 0, NaN the empty slot 1; 0.5 displaces 0.2, which cannot beat the NaN and moves on to
    # slot 2; 0.1 beats nothing (NaN compares false) and fills slot 3
    assert [i for i, _ in top_k(p, 4)] == [2, 1, 0, 3]
