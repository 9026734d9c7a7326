"""Training through grouped and depthwise convolutions (issue 15, item 1's first bug: the first backward pass of
a network with groups > 1 ended in a Numba TypingError, `reshape() supports contiguous array only`, in
products.conv_weight_gradient). A ResNeXt-style block (groups=4 with batch-norm) and a depthwise one
(Yolo-Fastest's) train for several steps, and the updates they accumulate are the finite-difference gradients."""
import numpy as np
import pytest

from pydarknet.network.network import Network
from pydarknet.tasks.train.step import train_network
from test_gradients import check_network, make_net, randomize

BODY = ("[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\npad=1\nactivation=leaky\n\n"
        "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\npad=1\ngroups=4\nactivation=leaky\n\n"
        "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=2\npad=1\ngroups=8\nactivation=leaky\n\n"
        "[convolutional]\nfilters=4\nsize=1\nactivation=linear\n\n")


def test_grouped_network_trains(tmp_path):
    path = tmp_path / "net.cfg"
    path.write_text("[net]\nbatch=4\nsubdivisions=2\nwidth=12\nheight=12\nchannels=3\nlearning_rate=0.01\n\n"
                    + BODY + "[cost]\ntype=sse\n")
    net = Network(path, quiet_unused=True).initialize(seed=1)
    net.quiet = True
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 3, 12, 12)).astype(np.float32)
    y = rng.normal(size=(4, 4 * 6 * 6)).astype(np.float32)
    before = [layer.weights.copy() for layer in net.layers[:4]]
    losses = [float(train_network(net, x, y)) for _ in range(6)]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    for layer, w in zip(net.layers[:4], before):
        assert not np.array_equal(layer.weights, w), f"layer {layer.index} did not train"


@pytest.mark.parametrize("groups", [2, 4, 8])
def test_grouped_convolution_gradients(tmp_path, groups):
    """Batch of 3 (so the per-image delta slices of a group are not contiguous), batch-norm on."""
    rng = np.random.default_rng(groups)
    net = make_net(tmp_path, 7, 6, 8, 3, f"[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\npad=1\n"
                                          f"groups={groups}\nactivation=logistic\n")
    randomize(net, rng)
    x = rng.normal(size=(3, 8, 6, 7)).astype(np.float32)
    check_network(net, x, rng, rtol=5e-3)
