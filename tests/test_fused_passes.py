"""Passes fused for speed at inference give the same bits as the layers run one by one: a [maxpool] right after a
[convolutional] is computed in the convolution's last pass (Convolutional.normalize_activate), and in the fast modes
batch-norm, bias, activation and a 2x2 pool as the products store each row (the fused plan's store,
Convolutional.fused_store and kernels/epilogue.py)."""
import numpy as np
import pytest

from conftest import ROOT
from emulated_products import emulate
from pydarknet.kernels import amx, pool as pool_kernels, products
from pydarknet.kernels.activations import CODE
from pydarknet.network import passes
from pydarknet.network.layers import convolutional, maxpool as maxpool_layer
from pydarknet.network.layers.convolutional import Convolutional, Plan
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


def network(tmp_path, darknet, cfg=CFG):
    path = tmp_path / "pools.cfg"
    path.write_text(cfg)
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


# -- the fast modes' fused store (kernels/epilogue.py) -----------------------------------------------------------
STORE_CFG = """[net]
width=88
height=41
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
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=relu

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters=10
size=1
stride=1
activation=leaky

[convolutional]
filters=12
size=3
stride=1
pad=1
activation=linear

[convolutional]
filters=12
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=3
stride=1

[convolutional]
filters=6
size=3
stride=2
pad=1
activation=logistic
"""


def store_network(tmp_path, darknet, products_name, cfg=STORE_CFG, seed=5):
    path = tmp_path / "store.cfg"
    path.write_text(cfg)
    net = Network(path, darknet=darknet).initialize(seed=seed)
    for layer in net.layers:   # batch-norm statistics other than 0/1, biases other than 0
        rng = np.random.default_rng(layer.index)
        if getattr(layer, "batch_normalize", 0):
            layer.rolling_mean[:] = rng.normal(0, .5, layer.rolling_mean.shape)
            layer.rolling_variance[:] = rng.uniform(.2, 2, layer.rolling_variance.shape)
            layer.scales[:] = rng.uniform(.5, 1.5, layer.scales.shape)
        if layer.type == "convolutional":
            layer.biases[:] = rng.normal(0, .3, layer.biases.shape)
    net.products = products.products_for(products_name)
    return net


@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("products_name", ["fast", "int16"])
@pytest.mark.parametrize("darknet", ["pjreddie", "ab"])
def test_the_fused_store_gives_the_pass_apart_bits(tmp_path, darknet, products_name, tile, monkeypatch):
    """In the fast modes each convolution's batch-norm, bias and linear/leaky/relu, and a 2x2 stride-2 max pool
    after it, are applied as the products store each row (conv_direct for the first layer, Winograd's output
    transform, forced here for the 3x3 layers) or each register tile (the chain kernel's, the 1 x 1 layer's):
    the same bits as the layers' own passes, for two images. The layer before the 3x3 stride-1 pool
    and the logistic one keep their own passes."""
    monkeypatch.setattr(convolutional, "winograd_tile",
                        lambda channels, filters, size, stride, dilation, groups, h, w: tile if (size, stride) == (3, 1)
                        else 0)
    net = store_network(tmp_path, darknet, products_name)
    x = np.random.default_rng(0).normal(0, 1, (2, 3, 41, 88)).astype(np.float32)
    stores = stored_as_apart(net, x, monkeypatch)
    assert [store is not None for store in stores] == [True, True, True, True, False, False]
    assert [store.pooled.shape for store in stores[:2]] == [(2, 8, 21, 44), (2, 16, 11, 22)]


def stored_as_apart(net, x, monkeypatch):
    """Check that net's forward on x gives every layer's output bit for bit with the fused plan's stores and with
    the passes apart (fused_store None, the plans made again); return the stores the fused forward's plans took."""
    net.every_output = True   # every layer's output is compared
    stores = []
    real = Convolutional.fused_store
    monkeypatch.setattr(Convolutional, "fused_store", lambda *args: stores.append(real(*args)) or stores[-1])
    net.forward(x)
    fused = [layer.output.copy() for layer in net.layers]
    monkeypatch.setattr(Convolutional, "fused_store", lambda *args: None)
    net.plans.clear()   # the layers' plans were made with the stores
    net.forward(x)
    for layer, ours in zip(net.layers, fused):
        np.testing.assert_array_equal(ours, layer.output, err_msg=f"layer {layer.index} {layer.type}")
    return stores


DEPTHWISE_CFG = """[net]
width=37
height=30
channels=8

[convolutional]
batch_normalize=1
filters=8
groups=8
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters=8
groups=8
size=3
stride=2
pad=1
activation=relu

[convolutional]
filters=8
groups=8
size=5
stride=1
pad=1
activation=linear
"""


@pytest.mark.parametrize("darknet", ["pjreddie", "ab"])
def test_a_depthwise_layer_stores_the_pass_apart_bits(tmp_path, darknet, monkeypatch):
    """Depthwise layers (kernels.conv.depthwise_conv) finish each band of rows as they store it, and fill the 2x2
    pool after them: the same bits as the passes apart, for two images, at strides 1 and 2 and a 5 x 5 kernel;
    their chains are the fast products' (FMAs) in the fast mode, darknet's in training."""
    net = store_network(tmp_path, darknet, "fast", DEPTHWISE_CFG)
    x = np.random.default_rng(1).normal(0, 1, (2, 8, 30, 37)).astype(np.float32)
    stores = stored_as_apart(net, x, monkeypatch)
    assert [store.pooled.shape for store in stores] == [(2, 8, 15, 19), (0, 0, 0), (0, 0, 0)]
    depthwise = [layer for layer in net.layers if layer.type == "convolutional"]
    with products.using(net.products):
        assert [layer.product_form(layer.weights, net) for layer in depthwise] == [("depthwise", True)] * 3
        net.train = True
        assert [layer.product_form(layer.weights, net) for layer in depthwise] == [("depthwise", False)] * 3


def test_no_store_in_the_exact_mode_or_training(tmp_path):
    """Darknet's exact arithmetic and training keep their own passes; the fast modes' inference stores."""
    net = store_network(tmp_path, "pjreddie", "darknet")
    first = net.layers[0]

    def store(products_name, train=False):
        net.train = train
        with products.using(products.products_for(products_name)):
            return first.fused_store(net, 1, CODE["leaky"], first.inference_terms(net)[1:])

    assert store("darknet") is None
    assert store("fast", train=True) is None
    assert store("fast").activation == CODE["leaky"]


ROUTE_POOL_CFG = """[net]
width=36
height=26
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=6
size=1
stride=1
activation=leaky

[route]
layers=-1,-2

[maxpool]
size=2
stride=2

[convolutional]
filters=4
size=3
stride=1
pad=1
activation=linear
"""


def test_only_a_convolution_that_its_pool_alone_reads_may_leave_its_output_unwritten(tmp_path):
    """The products that pool as they store may leave a convolution's output unwritten (their pooled_only): where
    the [maxpool] after it reads it and no other layer does, and the network keeps not every output.
    yolov3-tiny's first pools; not a convolution a [route] also reads (CFG's layer 2), nor one whose next layer
    is not a pool (ROUTE_POOL_CFG's, feeding the route)."""
    net = network(tmp_path, "pjreddie")
    assert [net.layers[i].may_skip_output(net) for i in (0, 2, 4)] == [True, False, True]
    net.every_output = True
    assert not net.layers[0].may_skip_output(net)
    net = network(tmp_path, "ab", ROUTE_POOL_CFG)
    assert [net.layers[i].may_skip_output(net) for i in (0, 1, 4)] == [False, False, False]


def test_a_first_layer_that_its_pool_alone_reads_writes_the_pools_output_alone(tmp_path, monkeypatch):
    """--fast's direct convolution of a first layer (conv_direct: 3 channels, 112 outputs wide) with its pool in
    the store: where only the pool reads the layer's output, each band's rows go to a scratch band and the output
    is left as it was (NaN here); the pool's output and the rest of the network are the same bits as with every
    output kept. (Every output its own array here, without the memory plan, whose later layers write over them.)"""
    monkeypatch.setattr(passes, "shared_outputs", lambda net, batch, sums: {})
    net = network(tmp_path, "pjreddie", CFG.replace("width=37", "width=112"))
    net.products = products.products_for("fast")
    x = np.random.default_rng(2).normal(0, 1, (1, 3, 29, 112)).astype(np.float32)
    net.every_output = True
    net.forward(x)
    kept = [layer.output.copy() for layer in net.layers]
    net.every_output = False
    net.layers[0].output[...] = np.nan
    net.forward(x)
    assert np.isnan(net.layers[0].output).all() and not np.isnan(kept[0]).any()
    for layer, ours in zip(net.layers[1:], kept[1:]):
        np.testing.assert_array_equal(layer.output, ours, err_msg=f"layer {layer.index} {layer.type}")


@pytest.mark.parametrize("form, tile, bands", [("winograd", 2, 0), ("winograd", 4, 0), ("winograd", 4, 2),
                                               ("int16_winograd", 0, 0)])
def test_a_winograd_layer_that_its_pool_alone_reads_writes_the_pools_output_alone(tmp_path, form, tile, bands,
                                                                                  monkeypatch):
    """Winograd's output transforms with the pool in the store (F(2x2); F(4x4) in three passes and in bands;
    --int16's F(2x2)): where only the pool reads a layer's output, each row of tiles is finished and pooled where
    the transform left it and the output is left as it was (NaN here); the pools' outputs and the rest of the
    network are the same bits as with every output kept."""
    monkeypatch.setattr(passes, "shared_outputs", lambda net, batch, sums: {})
    square = lambda size, stride: (size, stride) == (3, 1)   # noqa: E731
    monkeypatch.setattr(convolutional, "winograd_tile",
                        lambda channels, filters, size, stride, dilation, groups, h, w: tile if square(size, stride)
                        else 0)
    monkeypatch.setattr(convolutional, "int16_kernel",
                        lambda channels, size, stride, dilation, groups, h, w: "winograd" if square(size, stride)
                        and form == "int16_winograd" else None)
    monkeypatch.setattr(products, "winograd_bands", lambda *args: bands)
    net = store_network(tmp_path, "pjreddie", "int16" if form == "int16_winograd" else "fast")
    x = np.random.default_rng(4).normal(0, 1, (1, 3, 41, 88)).astype(np.float32)
    net.every_output = True
    net.forward(x)
    kept = [layer.output.copy() for layer in net.layers]
    net.every_output = False
    for i in (0, 2):   # the 3 x 3 layers a 2x2 pool alone reads
        net.layers[i].output[...] = np.nan
    net.forward(x)
    assert [net.plans[id(net.layers[i])].form for i in (0, 2)] == [form, form]
    assert [net.plans[id(net.layers[i])].pooled_only for i in (0, 2)] == [True, True]
    assert np.isnan(net.layers[0].output).all() and np.isnan(net.layers[2].output).all()
    for layer, ours in zip(net.layers, kept):
        if layer.index not in (0, 2):
            np.testing.assert_array_equal(layer.output, ours, err_msg=f"layer {layer.index} {layer.type}")


@pytest.mark.parametrize("products_name", ["fast", "darknet"])
def test_a_layers_plan_is_kept_until_the_network_changes(tmp_path, products_name):
    """A convolution decides its pass once (Convolutional.plan: its products, store, pool and output array) and
    keeps that plan while Network.plan_key stays the same. After another batch size, other products, new
    parameters or a resize, the pass runs a plan made for them: every layer gives a fresh network's bits. A replica
    starts without plans (theirs hold views of the first network's buffers: ROUTE_POOL_CFG's convolutions write into
    the route's output)."""
    other_products = "darknet" if products_name == "fast" else "fast"

    def run(x, name=products_name, seed=None, size=None, net=None):
        if net is None:
            net = network(tmp_path / "fresh", "ab", ROUTE_POOL_CFG)
            if seed is not None:
                net.initialize(seed=seed)
            if size is not None:
                net.resize(*size)
        net.products = products.products_for(name)
        net.forward(x)
        return [layer.output.copy() for layer in net.layers]

    def assert_same(outputs, expected):
        for i, (ours, theirs) in enumerate(zip(outputs, expected)):
            np.testing.assert_array_equal(ours, theirs, err_msg=f"layer {i}")

    (tmp_path / "fresh").mkdir()
    net = network(tmp_path, "ab", ROUTE_POOL_CFG)
    rng = np.random.default_rng(4)
    one, two = (rng.normal(0, 1, (batch, 3, 26, 36)).astype(np.float32) for batch in (1, 2))
    run(one, net=net)
    plans = dict(net.plans)
    assert sum(isinstance(plan, convolutional.Plan) for plan in plans.values()) == 3   # the three convolutions'
    assert_same(run(one, net=net), run(one))
    assert all(net.plans[key] is plan for key, plan in plans.items())
    assert_same(run(two, net=net), run(two))
    swapped = two[::-1].copy()   # (each pass writes the route's parts and the pool again, for two images too)
    assert_same(run(swapped, net=net), run(swapped))
    assert_same(run(one, net=net), run(one))
    assert_same(run(one, other_products, net=net), run(one, other_products))
    assert_same(run(one, net=net), run(one))
    new = network(tmp_path / "fresh", "ab", ROUTE_POOL_CFG).initialize(seed=9)
    new.save(tmp_path / "new.weights")
    net.load(tmp_path / "new.weights")
    assert_same(run(one, net=net), run(one, seed=9))
    replica = net.replica()
    assert replica.plans == {}
    kept = [layer.output.copy() for layer in net.layers]
    assert_same(run(two, net=replica), run(two, seed=9))
    assert_same(run(one, net=replica), run(one, seed=9))
    assert_same([layer.output for layer in net.layers], kept)
    small = one[:, :, :20, :28].copy()
    net.resize(28, 20)
    assert_same(run(small, net=net), run(small, seed=9, size=(28, 20)))


def test_a_pass_takes_its_plan_key_once(tmp_path, monkeypatch):
    """The layers of a pass read the key their plans are kept under from Network.passing (taken once a pass, not
    once a convolution: Yolo-Fastest's 100 cost its forward 0.07-0.1 ms), and outside a pass (a layer run alone)
    take it themselves: a layer run alone after the network changed runs a plan made for the change."""
    net = network(tmp_path, "ab", ROUTE_POOL_CFG)
    x = np.random.default_rng(5).normal(0, 1, (1, 3, 26, 36)).astype(np.float32)
    net.products = products.products_for("fast")
    net.forward(x)
    taken = []
    plan_key = type(net).plan_key
    monkeypatch.setattr(type(net), "plan_key", lambda self, batch: taken.append(batch) or plan_key(self, batch))
    net.forward(x)
    assert taken == [1] and net.pass_key is None
    first = next(layer for layer in net.layers if isinstance(layer, convolutional.Convolutional))
    kept = net.plans[id(first)]
    net.products = products.products_for("darknet")
    with products.using(net.products):
        first.forward(x, net)
    assert taken == [1, 1] and net.plans[id(first)] is not kept


THREADS_CFG = """[net]
width=84
height=10
channels=32

[convolutional]
filters=32
size=3
stride=1
pad=1
activation=leaky

[convolutional]
filters=32
groups=32
size=3
stride=1
pad=1
activation=relu

[convolutional]
filters=16
size=1
stride=1
activation=linear
"""


def test_a_plan_is_made_again_for_another_count_of_kernel_threads(tmp_path):
    """The plans split their work and size their scratch for the calling thread's team of kernel threads (the
    depthwise copies, Winograd's bands, the 1 x 1 products' split): after numba.set_num_threads the pass runs plans
    made for the new count (Network.plan_key has kernels.placement.kernel_threads), a fresh network's bits."""
    import numba
    from pydarknet.kernels.placement import kernel_threads
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one kernel thread only: NUMBA_NUM_THREADS is 1")
    x = np.random.default_rng(5).normal(0, 1, (1, 32, 10, 84)).astype(np.float32)
    (tmp_path / "fresh").mkdir()

    def run(net):
        net.products = products.products_for("fast")
        net.forward(x)
        return [layer.output.copy() for layer in net.layers]

    before = numba.get_num_threads()
    net = network(tmp_path, "ab", THREADS_CFG)
    try:
        numba.set_num_threads(1)
        assert kernel_threads() == 1
        one = run(net)
        plans = dict(net.plans)
        assert [plan.form for plan in plans.values() if isinstance(plan, Plan)] == ["winograd", "depthwise",
                                                                                    "pointwise"]
        numba.set_num_threads(2)
        assert kernel_threads() == 2
        two = run(net)
        assert all(net.plans[key] is not plan for key, plan in plans.items() if isinstance(plan, Plan))
        for ours, theirs in zip(two, run(network(tmp_path / "fresh", "ab", THREADS_CFG))):
            np.testing.assert_array_equal(ours, theirs)
        for ours, theirs in zip(one, two):
            np.testing.assert_array_equal(ours, theirs)
    finally:
        numba.set_num_threads(before)


def test_a_pool_keeps_its_answer_only_for_the_same_arrays(tmp_path):
    """Maxpool.made_of: whether the convolutions' pooled parts are its input's memory, whole; kept for the same input
    and parts (the plans hand over the same arrays pass after pass), looked at again for any other."""
    net = network(tmp_path, "ab", ROUTE_POOL_CFG)
    pool = net.layers[3]
    x = np.zeros((1, 14, 26, 36), np.float32)
    parts = ((0, x[:, :6]), (6, x[:, 6:]))
    assert pool.made_of(x, parts, net) and pool.made_of(x, parts, net)
    assert not pool.made_of(x.copy(), parts, net)
    assert not pool.made_of(x, ((0, x[:, :6]), (6, x[:, 6:].copy())), net)
    assert not pool.made_of(x, ((0, parts[0][1]), (7, parts[1][1])), net)
    assert not pool.made_of(x, parts[:1], net)
    assert pool.made_of(x, parts, net)


def test_a_plans_scratch_is_asked_for_once_and_kept(tmp_path):
    """kept_scratch: the network's aligned scratch array of that name, shape and dtype, asked for once and then the
    same array on every call; one the network's scratch outgrows (a later layer's bigger ask) stays the plan's, apart
    from the bigger one."""
    net = network(tmp_path, "pjreddie")
    first, second = convolutional.kept_scratch(net), convolutional.kept_scratch(net)
    small = first("words", (3, 4), np.uint16)
    assert small.shape == (3, 4) and small.dtype == np.uint16 and small.ctypes.data % 64 == 0
    assert first("words", (3, 4), np.uint16) is small
    assert first("words", (3, 4), np.float32) is not small
    big = second("words", (50, 40), np.uint16)
    assert big.ctypes.data % 64 == 0 and not np.shares_memory(big, small)
    assert first("words", (3, 4), np.uint16) is small
    assert second("words", (2, 2), np.uint16).ctypes.data == big.ctypes.data   # the network's, grown


@pytest.mark.parametrize("products_name", ["fast", "int16"])
@pytest.mark.parametrize("batch", [1, 2])
def test_a_pool_after_a_concatenation_is_filled_by_its_parts_stores(tmp_path, products_name, batch, monkeypatch):
    """yolov4-tiny's CSP blocks: a 2x2 stride-2 [maxpool] after a [route] of two convolutions that write their
    outputs into it in place, each image's in its run of the route's (a batch's too: the layers reading them
    read them image by image). Each convolution's store pools its own channels into the pool's output (layer 1's
    to channels 0..5, layer 0's to 6..13) and the pool does not run; the same bits as the layers run one by
    one."""
    net = network(tmp_path, "ab", ROUTE_POOL_CFG)
    net.products = products.products_for(products_name)
    x = np.random.default_rng(1).normal(0, 1, (batch, 3, 26, 36)).astype(np.float32)
    calls = []
    monkeypatch.setattr(maxpool_layer, "maxpool", lambda *args: calls.append(args) or pool_kernels.maxpool(*args))
    net.forward(x)
    fused = [layer.output.copy() for layer in net.layers]
    assert calls == []
    route = net.layers[2]
    assert all(np.shares_memory(net.layers[i].output, route.output) for i in (0, 1))
    monkeypatch.setattr(Maxpool, "pools_in_place", lambda self, net: False)
    net.plans.clear()   # the layers' plans were made with the pools in place
    net.forward(x)
    assert len(calls) == 1
    for layer, ours in zip(net.layers, fused):
        np.testing.assert_array_equal(ours, layer.output, err_msg=f"layer {layer.index} {layer.type}")
    assert np.abs(fused[3]).max() > 0.1


HAND_OVER_CFG = """[net]
width=45
height=22
channels=3

[convolutional]
filters=16
size=3
stride=1
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=40
size=3
stride=1
pad=1
activation=leaky

[convolutional]
filters=130
size=3
stride=2
pad=1
activation=relu

[convolutional]
batch_normalize=1
filters=16
size=1
stride=1
activation=linear

[convolutional]
filters=33
size=3
stride=1
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=32
size=3
stride=1
pad=1
activation=leaky

[route]
layers=-1,-2
"""


@pytest.mark.parametrize("engine", [
    pytest.param("amx", marks=pytest.mark.skipif(amx.unavailable() is not None,
                                                 reason=f"no AMX here: {amx.unavailable()}")), "emulated-amx"])
def test_a_tiled_layer_hands_its_output_on_in_the_next_layers_layout(tmp_path, engine, monkeypatch):
    """--bf16 on the AMX tiles: a convolution on the blocked kernel whose output only the next convolution reads,
    that one on the blocked kernel too, rounds its output into the next one's input as it stores its tiles
    (Convolutional.hands_over: 16-channel pixels after 16 filters, 32 after 40, 130 and partial blocks of filters)
    and leaves its float32 output unwritten. The layers that write theirs give the bits of every layer writing its
    output for the next to round: one image, two, one again. The layer a [route] names writes its own; where the
    network keeps every output, every layer does. Emulated: the layout's rounding and the plan's plumbing on every
    CPU."""
    previous = products.backend()
    if engine == "emulated-amx":   # (the network's own products are --bf16's either way)
        emulate("amx", monkeypatch)
    try:
        net = store_network(tmp_path, "pjreddie", "bf16", HAND_OVER_CFG, seed=7)
        images = [np.random.default_rng(seed).normal(0, 1, (batch, 3, 22, 45)).astype(np.float32)
                  for seed, batch in ((0, 1), (1, 2), (2, 1))]
        written = (0, 4, 5, 6)

        def passes():   # the written outputs of each pass, and the layers that hand theirs over
            outputs = []
            for x in images:
                net.forward(x)
                outputs.append([net.layers[i].output.copy() for i in written])
            plans = [net.plans.get(id(layer)) for layer in net.layers]
            return outputs, [i for i, plan in enumerate(plans) if isinstance(plan, Plan) and plan.words_out is not None]

        handed, handing = passes()
        assert handing == [1, 2, 3]
        real = Convolutional.hands_over
        monkeypatch.setattr(Convolutional, "hands_over", lambda *args: (None, 0))
        net.plans.clear()
        apart, none = passes()
        assert none == []
        for ours, theirs in zip(handed, apart):
            for i, a, b in zip(written, ours, theirs):
                np.testing.assert_array_equal(a, b, err_msg=f"layer {i}")
        monkeypatch.setattr(Convolutional, "hands_over", real)
        net.every_output = True
        assert passes()[1] == []
    finally:
        products.set_backend(previous)


@pytest.mark.parametrize("products_name", ["fast", "int16"])
def test_a_batch_of_yolov4_tiny_is_each_image_on_its_own(products_name):
    """yolov4-tiny's CSP blocks for a batch: the convolutions write each image's output in its run of the
    [route]s' outputs, the groups' routes hand views on to the convolutions reading them, and the pools after the
    concatenations are filled by the parts' stores (route.Slot, base.read_by_image). Every image's detections'
    inputs are those of a pass of that image alone, bit for bit."""
    net = Network(ROOT / "cfg" / "yolov4-tiny.cfg", quiet_unused=True).initialize(seed=5)
    alone = Network(ROOT / "cfg" / "yolov4-tiny.cfg", quiet_unused=True).initialize(seed=5)
    for each in (net, alone):
        each.resize(96, 64)
        each.products = products.products_for(products_name)
    x = np.random.default_rng(2).random((3, 3, 64, 96), np.float32)
    net.forward(x)
    routes = [layer for layer in net.layers if layer.type == "route"]
    hosted = [layer for layer in net.layers if layer.slot is not None
              and np.shares_memory(layer.output, layer.slot.route.output)]
    assert len(hosted) == 12 and all(np.shares_memory(route.output, net.layers[route.reads_layers[0]].output)
                                     for route in routes if route.groups == 2)
    heads = [layer.index for layer in net.layers if layer.type == "yolo"]
    for b in range(3):
        alone.forward(x[b:b + 1])
        for i in heads:
            np.testing.assert_array_equal(net.layers[i].output[b], alone.layers[i].output[0], err_msg=f"{b} {i}")
