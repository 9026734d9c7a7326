"""Passes fused for speed at inference give the same bits as the layers run one by one: a [maxpool] right after a
[convolutional] is computed in the convolution's last pass (Convolutional.normalize_activate)."""
import numpy as np
import pytest

from pydarknet.kernels import pool as pool_kernels
from pydarknet.network.layers import maxpool as maxpool_layer
from pydarknet.network.layers.maxpool import Maxpool
from pydarknet.network.network import Network

CFG = """[net]
width=37
height=29
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters=6
size=1
stride=1
activation=relu

[maxpool]
size=3
stride=1

[convolutional]
batch_normalize=1
filters=5
size=3
stride=1
pad=1
activation=mish

[maxpool]
size=2
stride_x=2
stride_y=1

[route]
layers=-4
"""


def network(tmp_path, darknet):
    path = tmp_path / "pools.cfg"
    path.write_text(CFG)
    net = Network(path, darknet=darknet).initialize(seed=3)
    for layer in net.layers:   # batch-norm statistics other than 0/1, so normalising does something
        if getattr(layer, "batch_normalize", 0):
            rng = np.random.default_rng(layer.index)
            layer.rolling_mean[:] = rng.normal(0, .5, layer.rolling_mean.shape)
            layer.rolling_variance[:] = rng.uniform(.2, 2, layer.rolling_variance.shape)
    return net


@pytest.mark.parametrize("darknet", ["pjreddie", "ab"])
def test_conv_then_maxpool_fused_is_bit_identical(tmp_path, darknet, monkeypatch):
    net = network(tmp_path, darknet)
    x = np.random.default_rng(0).normal(0, 1, (2, 3, 29, 37)).astype(np.float32)
    calls = []
    monkeypatch.setattr(maxpool_layer, "maxpool", lambda *args: calls.append(args) or pool_kernels.maxpool(*args))
    net.forward(x)
    fused = [layer.output.copy() for layer in net.layers]
    assert calls == [], "every max pool here follows a convolution: none should have run on its own"

    monkeypatch.setattr(Maxpool, "pools_in_place", lambda self, net: False)
    net.forward(x)
    assert len(calls) == 3
    for layer, ours in zip(net.layers, fused):
        np.testing.assert_array_equal(ours, layer.output, err_msg=f"layer {layer.index} {layer.type}")
    # a pooled convolution's own output stays whole: the route hands layer 2's on
    assert fused[-1].shape == (2, 6, 15, 19)
    np.testing.assert_array_equal(fused[-1], fused[2])


def test_training_forward_pools_on_its_own(tmp_path, monkeypatch):
    """Training needs each maximum's position (argmax) for the backward pass: no fusion there."""
    net = network(tmp_path, "pjreddie")
    calls = []
    monkeypatch.setattr(maxpool_layer, "maxpool", lambda *args: calls.append(args) or pool_kernels.maxpool(*args))
    x = np.random.default_rng(1).normal(0, 1, (1, 3, 29, 37)).astype(np.float32)
    net.forward_train(x, np.zeros((1, 0), np.float32))
    assert len(calls) == 3 and all(args[-1] for args in calls)   # keep_argmax
