"""The memory plan of an inference pass (network/outputs.py): layers whose outputs are no longer read hand their
memory on to later layers' outputs, and nothing a pass or its caller still reads is overwritten."""
import threading

import numpy as np
import pytest

from pydarknet.files.resources import shipped_root
from pydarknet.kernels import products
from pydarknet.network.network import Network
from pydarknet.network.outputs import Residual, lives, residuals_in_place

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
    last = lives(net.layers, residuals_in_place(net))
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


def section(kind, **options):
    """A cfg section's text."""
    return f"[{kind}]\n" + "".join(f"{key.rstrip('_')}={value}\n" for key, value in options.items())


def pointwise(**options):
    return section("convolutional", filters=8, size=1, activation="linear", **options)


def residual(source, **options):
    return section("shortcut", from_=source, activation="linear", **options)


RESIDUALS_CFG = "\n".join([
    section("net", width=16, height=16, channels=3),
    section("convolutional", filters=8, size=3, pad=1, batch_normalize=1, activation="leaky"),   # 0
    pointwise(batch_normalize=1),                # 1: a 1 x 1 layer: its pass adds 2's residual
    residual(0),                                 # 2
    section("convolutional", filters=8, size=3, pad=1, batch_normalize=1, activation="leaky"),   # 3: 3 x 3
    residual(2),                                 # 4: 3's store adds it (the packed columns' tiles; exact: its pass)
    pointwise(),                                 # 5
    section("dropout", probability=.1),          # 6
    residual(4),                                 # 7: through the dropout
    pointwise(),                                 # 8
    section("shortcut", from_=7, activation="leaky"),   # 9: leaky after the add: apart
    pointwise(),                                 # 10: read by the route too
    residual(9),                                 # 11: apart
    section("route", layers="10,11"),            # 12
    pointwise(),                                 # 13
    residual(11, beta=.5),                       # 14: pjreddie's beta: apart
    pointwise(),                                 # 15
    section("dropout", probability=.1),          # 16
    residual(15),                                # 17: its residual is its input's own writer: apart
    section("convolutional", filters=4, size=1, activation="linear"),   # 18: linear, so that nothing saturates
])


def shared_and_kept(cfg, text, products_name, seed):
    """(shared, kept): the network of cfg `text` in products `products_name`, its outputs' memory planned and one
    keeping every layer's output, initialized alike; two passes of each on the same inputs give the same bits."""
    cfg.write_text(text)

    def net_of(every_output):
        net = Network(cfg, quiet_unused=True).initialize(seed=seed)
        net.products = products.products_for(products_name)
        net.every_output = every_output
        return net
    shared, kept = net_of(False), net_of(True)
    rng = np.random.default_rng(seed + 1)
    for _ in range(2):
        x = rng.standard_normal((1,) + kept.input_shape, dtype=np.float32)
        np.testing.assert_array_equal(shared.forward(x), kept.forward(x))
    return shared, kept


@pytest.mark.parametrize("products_name", ["darknet", "fast", "int16"])
def test_residuals_added_in_place(tmp_path, products_name):
    """A plain [shortcut] (one from=, linear, alpha = beta = 1) adds its residual into its input's array and hands it
    on, where nothing else reads that input: after a layer whose register tiles finish the store (the fast modes:
    the 1 x 1 products, the columns packed from the image) the products' store adds it, in the exact mode the pass
    of batch-norm and activation; through a dropout too. Apart: an
    activation after the add, pjreddie's beta, an input a route reads too, a residual that is the input's own
    writer. The network's output: the bits of a pass where every layer keeps its own."""
    shared, kept = shared_and_kept(tmp_path / "residuals.cfg", RESIDUALS_CFG, products_name, 5)
    assert {layer.index: layer.in_place for layer in shared.layers if layer.in_place is not None} == {
        2: Residual(1, 0), 4: Residual(3, 2), 7: Residual(5, 4)}
    assert all(layer.in_place is None for layer in kept.layers)
    with products.using(shared.products):
        stored = {layer.index for layer in shared.layers if layer.type == "convolutional"
                  and layer.plan(shared, 1).residual is not None}
    assert stored == {1, 3, 5}
    # the sum is handed on: the writer's array is the shortcut's output
    assert shared.layers[2].output is shared.layers[1].output


def block(filters, activation="leaky"):
    """A 3 x 3 convolution with batch-norm, then a [shortcut] adding the output two layers back."""
    return section("convolutional", filters=filters, size=3, pad=1, batch_normalize=1,
                   activation=activation) + residual(-2)


WINOGRAD_RESIDUALS_CFG = "\n".join([
    section("net", width=104, height=104, channels=3),
    section("convolutional", filters=32, size=3, pad=1, activation="leaky"),   # 0
    section("convolutional", filters=16, size=1, activation="linear"),   # 1
    block(16),                                   # 2, 3: the direct products' tiles (16 channels, 104 wide)
    section("convolutional", filters=32, size=1, activation="linear"),   # 4
    block(32),                                   # 5, 6: F(4x4) in bands (104 x 104: 26 tiles a row)
    section("maxpool", size=2, stride=2),        # 7
    block(32),                                   # 8, 9: F(4x4)'s three passes (52 x 52) with AVX-512
    section("maxpool", size=2, stride=2),        # 10
    block(32),                                   # 11, 12: F(2x2)'s three passes (26 x 26) with AVX-512
    section("maxpool", size=2, stride=2),        # 13
    block(32),                                   # 14, 15: F(2x2) with the tiles as rows (13 x 13)
    section("convolutional", filters=128, size=1, activation="linear"),   # 16
    block(128),                                  # 17, 18: F(2x2), --int16's in integers
    block(128, "mish"),                          # 19, 20: mish: the pass after the products adds it
    section("convolutional", filters=4, size=1, activation="linear"),   # 21
])


@pytest.mark.parametrize("products_name", ["darknet", "fast", "int16"])
def test_3x3_layers_add_the_residual_as_they_finish(tmp_path, products_name):
    """A plain [shortcut] after a 3 x 3 layer of the direct products (their register tiles reading the image's
    padded planes; --int16's on words) or of Winograd's (F(4x4) in bands and in three passes, F(2x2) in three passes
    and with the tiles as rows, --int16's F(2x2)): the tiles or the output transform add the residual as they store,
    after batch-norm and leaky, and the shortcut only hands the sum on; after the exact products, and after mish,
    the pass of batch-norm and activation adds it. The network's output: the bits of a pass where every layer keeps
    its own. (--int16 takes its direct integer products for the 32-channel layers with AVX-512.)"""
    shared, kept = shared_and_kept(tmp_path / "winograd_residuals.cfg", WINOGRAD_RESIDUALS_CFG, products_name, 7)
    with products.using(shared.products):
        plans = {layer.index: layer.plan(shared, 1) for layer in shared.layers if layer.type == "convolutional"}
        assert products.winograd_bands(32, 32, 104, 104) > 0   # layer 5 takes the bands
    writers = {2, 5, 8, 11, 14, 17, 19}
    assert {index for index, plan in plans.items() if plan.residual is not None} == writers
    forms = {index: plans[index].form for index in writers}
    if products_name == "darknet":
        assert all(plans[index].store is None for index in writers)
    elif products_name == "fast":
        assert forms == {2: "image", 19: "winograd", **dict.fromkeys((5, 8, 11, 14, 17), "winograd")}
        assert plans[19].store is None
    else:
        assert forms[2] == forms[5] == "int16" and forms[17] == "int16_winograd"
    assert shared.layers[18].output is shared.layers[17].output   # the sum handed on
