"""The memory plan of an inference pass (network/outputs.py): layers whose outputs are no longer read hand their
memory on to later layers' outputs, and nothing a pass or its caller still reads is overwritten."""
import threading

import numpy as np
import pytest

from pydarknet.files.resources import shipped_root
from pydarknet.kernels import products
from pydarknet.network.network import Network
from pydarknet.network.outputs import lives

NETWORKS = ["yolo-fastest-1.1", "yolov3-tiny", "yolov4-tiny", "tiny", "enet-coco"]


def network(name, products_name, every_output=False):
    net = Network(shipped_root() / "cfg" / f"{name}.cfg", quiet_unused=True).initialize(seed=3)
    if net.w > 96:   # (small passes: the memory plan does not depend on the size)
        net.resize(96, 96)
    net.products = products.products_for(products_name)
    net.every_output = every_output
    return net


def results(net, x):
    """What a caller reads after a pass: the detection layers' outputs and the network's output."""
    net.forward(x)
    return [layer.output.copy() for layer in net.layers
            if getattr(layer, "detections", None) is not None or layer is net.output_layer]


@pytest.mark.parametrize("products_name", ["darknet", "fast"])
@pytest.mark.parametrize("name", NETWORKS)
def test_shared_outputs_give_the_same_results(name, products_name):
    """The results of two passes on different images with the memory plan are the bits of passes where every
    layer keeps its own output; and the plan does share: fewer arrays than layers."""
    rng = np.random.default_rng(1)
    kept, shared = network(name, products_name, every_output=True), network(name, products_name)
    for _ in range(2):
        x = rng.random((1,) + kept.input_shape, dtype=np.float32)
        for ours, theirs in zip(results(shared, x), results(kept, x)):
            np.testing.assert_array_equal(ours, theirs)
    arrays = [layer.shared_output for layer in shared.layers if layer.shared_output is not None]
    assert len({id(array.base) for array in arrays}) < len(arrays)
    assert all(layer.shared_output is None for layer in kept.layers)


@pytest.mark.parametrize("name", NETWORKS)
def test_no_output_is_overwritten_while_it_is_read(name):
    """Two layers share memory only where one's last reader runs before the other is written; the outputs read
    after the pass (detections, the network's output) and those other layers write (a pool its convolution
    fills, a route's part a layer writes into) keep arrays of their own."""
    net = network(name, "fast")
    net.forward(np.zeros((1,) + net.input_shape, np.float32))
    last = lives(net.layers)
    shared = [layer for layer in net.layers if layer.shared_output is not None]
    for a in shared:
        for b in shared:
            if a.index < b.index and np.shares_memory(a.shared_output, b.shared_output):
                assert last[a.index] < b.index, (a.index, b.index)
    for layer in net.layers:
        if (getattr(layer, "detections", None) is not None or layer is net.output_layer or layer.slot is not None
                or layer.pools_in_place(net)):
            assert layer.shared_output is None, layer.index
    assert shared


def test_nothing_is_shared_in_training_or_for_a_backward_pass():
    net = network("yolov3-tiny", "darknet")
    x = np.zeros((1,) + net.input_shape, np.float32)
    net.forward(x)
    assert any(layer.shared_output is not None for layer in net.layers)
    net.train = True
    net.share_outputs(1)
    assert all(layer.shared_output is None for layer in net.layers)
    net.train, net.keep_for_backward = False, True
    net.share_outputs(1)
    assert all(layer.shared_output is None for layer in net.layers)


def test_replicas_share_no_memory_across_threads():
    """A replica (another thread's copy of the network) plans its own memory: its outputs and the original's
    never overlap, and both give the same results when run at once."""
    net = network("yolo-fastest-1.1", "fast")
    x = np.random.default_rng(2).random((1,) + net.input_shape, dtype=np.float32)
    want = results(net, x)
    copy = net.replica()
    got = {}
    threads = [threading.Thread(target=lambda n=n, k=k: got.__setitem__(k, [results(n, x) for _ in range(3)]))
               for k, n in enumerate((net, copy))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for runs in got.values():
        for run in runs:
            for ours, theirs in zip(run, want):
                np.testing.assert_array_equal(ours, theirs)
    for a in net.layers:
        if a.shared_output is not None:
            assert not any(np.shares_memory(a.shared_output, b.output) for b in copy.layers if b.output is not None)
