"""The GPU engine (pydarknet.network.cuda) against the CPU engine, on tiny networks: on a real GPU where there is one,
else in Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1, set here before numba.cuda is first imported; the
simulator runs each GPU thread as a Python thread, hence the tiny shapes)."""
import ctypes.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

if "numba.cuda" not in sys.modules and not ctypes.util.find_library("cuda"):
    import numba
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    numba.core.config.reload_config()

from conftest import SHARED, tool  # noqa: E402
from golden import UNREPRODUCIBLE, case_paths, layer_mismatch, or_skip  # noqa: E402
from test_fast_products import CASE_TOLERANCE, FAST_TOLERANCE  # noqa: E402
from pydarknet.files.config import DarknetError  # noqa: E402
from pydarknet.network.cuda import gpu_list, parse_device, simulated  # noqa: E402
from pydarknet.network.network import Network  # noqa: E402
from pydarknet.tasks.train.step import train_network  # noqa: E402

try:
    from pydarknet.network.cuda.backend import device_count
    HAVE_DEVICE = device_count() > 0
except DarknetError:
    HAVE_DEVICE = False
needs_device = pytest.mark.skipif(not HAVE_DEVICE, reason="no CUDA GPU, and numba.cuda was imported before this "
                                                          "module could turn on its simulator")
TOLERANCE = 1e-4   # scaled, as the golden forward tests
ROOT = Path(__file__).resolve().parent.parent

# The images' side: the simulator runs each GPU thread as a Python thread, a product's in about 3 ms, so
# the tiny networks' products are kept to a few blocks of threads (4 x 4 pixels: half the blocks of 6 x 6).
SIDE = 4
NET = """[net]
batch={batch}
subdivisions={subdivisions}
width={side}
height={side}
channels=3
learning_rate=0.01
momentum=0.9
decay=0.0005
"""
CONV = "[convolutional]\nbatch_normalize={bn}\nfilters={filters}\nsize={size}\nstride=1\npad={pad}\nactivation={act}\n"
YOLO = "[yolo]\nmask=0,1,2\nanchors=2,3, 4,5, 6,7\nclasses=2\nnum=3\n"


def tiny_network(tmp_path, body, batch, seed=1, subdivisions=1):
    """A network from `body` with random parameters (batch-norm statistics spread so that nothing saturates)."""
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(NET.format(batch=batch, subdivisions=subdivisions, side=SIDE) + body)
    net = Network(cfg, quiet_unused=True).initialize(0)
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        if getattr(layer, "batch_normalize", False):
            layer.rolling_mean[:] = rng.normal(0, .1, layer.rolling_mean.shape)
            layer.rolling_variance[:] = rng.uniform(.5, 2, layer.rolling_variance.shape)
            layer.scales[:] = rng.uniform(.5, 1.5, layer.scales.shape)
        if getattr(layer, "biases", None) is not None and layer.type in ("convolutional", "connected"):
            layer.biases[:] = rng.normal(0, .1, layer.biases.shape)
    return net


scaled_error = tool("cuda_train_diff").scaled   # |ours - ref| / max(1, |ref|), its largest


def forward_both(net, x):
    """Every layer's output on the CPU and on the device: (cpu outputs, device outputs)."""
    net.to("cpu")
    net.every_output = True   # (an inference pass's outputs share memory otherwise: network/outputs.py)
    net.forward(x)
    cpu = [layer.output.copy() for layer in net.layers]
    net.to("cuda:0")
    net.engine.forward(x, every_layer=True)
    return cpu, [layer.output for layer in net.layers]


def test_device_names():
    assert parse_device("cpu") is None and parse_device(None) is None
    assert parse_device("cuda") == 0 and parse_device("cuda:1") == 1 and parse_device(2) == 2
    assert gpu_list("0,1") == [0, 1] and gpu_list("") == [] and gpu_list(None) == []
    with pytest.raises(DarknetError, match="cuda:N"):
        parse_device("tpu")
    with pytest.raises(DarknetError, match="-gpus"):
        gpu_list("0,x")


def test_no_gpu_is_one_clear_error(tmp_path):
    """A GPU index past the last one names what there is."""
    if not HAVE_DEVICE:
        pytest.skip("no CUDA device or simulator here to count")
    net = tiny_network(tmp_path, CONV.format(bn=0, filters=2, size=1, pad=0, act="linear"), 1)
    with pytest.raises(DarknetError, match="no CUDA GPU found: GPU 7 asked for"):
        net.to("cuda:7")


@needs_device
@pytest.mark.parametrize("darknet", ["pjreddie", "ab"])
def test_detector_forward_matches_cpu(tmp_path, darknet):
    """Convolutions (batch-norm at inference, pjreddie's and the fork's fused form; leaky, mish, logistic,
    linear), maxpool, shortcut, route of two layers, upsample, yolo: every layer's output."""
    body = "\n".join([CONV.format(bn=1, filters=4, size=3, pad=1, act="leaky"),
                      "[maxpool]\nsize=2\nstride=2\n",
                      CONV.format(bn=1, filters=4, size=3, pad=1, act="mish"),
                      "[shortcut]\nfrom=-2\nactivation=linear\n",
                      CONV.format(bn=0, filters=2, size=1, pad=0, act="logistic"),
                      "[route]\nlayers=-1,-3\n",
                      "[upsample]\nstride=2\n",
                      CONV.format(bn=0, filters=21, size=1, pad=0, act="linear"),
                      YOLO])
    net = tiny_network(tmp_path, body, 1)
    net.darknet = darknet
    x = np.random.default_rng(2).random((1, 3, SIDE, SIDE), dtype=np.float32)
    cpu, device = forward_both(net, x)
    for layer, ours, ref in zip(net.layers, device, cpu):
        assert scaled_error(ours, ref) <= TOLERANCE, (layer.index, layer.type)
    assert np.abs(cpu[-1]).max() > 0.1   # not a run of zeros


@needs_device
def test_classifier_forward_matches_cpu(tmp_path):
    """Grouped convolution, connected with batch-norm, dropout, global avgpool, softmax."""
    body = "\n".join([CONV.format(bn=0, filters=4, size=3, pad=1, act="relu"),
                      "[convolutional]\nfilters=4\nsize=3\nstride=2\npad=1\ngroups=2\nactivation=leaky\n",
                      "[dropout]\nprobability=.5\n",
                      "[avgpool]\n",
                      "[connected]\noutput=5\nbatch_normalize=1\nactivation=tanh\n",
                      "[softmax]\ngroups=1\n"])
    net = tiny_network(tmp_path, body, 2)
    x = np.random.default_rng(3).random((2, 3, SIDE, SIDE), dtype=np.float32)
    cpu, device = forward_both(net, x)
    for layer, ours, ref in zip(net.layers, device, cpu):
        assert scaled_error(ours, ref) <= TOLERANCE, (layer.index, layer.type)


@needs_device
def test_training_step_matches_cpu(tmp_path):
    """An SGD step of a tiny yolo network, batch 2: convolution with batch-norm (the batch's statistics) and
    without, maxpool, upsample and shortcut backward on the device (mish and swish: gradients from the kept
    input), [yolo]'s loss on the host. The cost, every parameter (the rolling statistics too) and the updates
    momentum carries into the next step agree with the CPU's."""
    from pydarknet.tasks.train.replicas import updates
    body = "\n".join([CONV.format(bn=1, filters=4, size=3, pad=1, act="mish"),
                      "[maxpool]\nsize=2\nstride=2\n",
                      "[upsample]\nstride=2\n",
                      "[shortcut]\nfrom=-3\nactivation=swish\n",
                      CONV.format(bn=0, filters=21, size=1, pad=0, act="linear"),
                      YOLO])
    cpu, gpu = tiny_network(tmp_path, body, 2), tiny_network(tmp_path, body, 2)
    cpu.quiet = gpu.quiet = True
    gpu.to("cuda:0")
    x = np.random.default_rng(4).random((2, 3, SIDE, SIDE), dtype=np.float32)
    truth = np.zeros((2, 90, 5), np.float32)
    truth[0, 0] = [.3, .4, .2, .3, 1]
    truth[1, 0] = [.6, .5, .4, .2, 0]
    expected = train_network(cpu, x, truth.reshape(2, -1))
    assert abs(train_network(gpu, x, truth.reshape(2, -1)) - expected) <= TOLERANCE * max(1, abs(expected))
    for a, b in zip(cpu.layers, gpu.layers):
        for ref, ours in zip(a.weight_arrays(), b.weight_arrays()):
            assert scaled_error(ours, ref) <= TOLERANCE, (a.index, a.type, ref.shape)
        if a.trainable:
            carried = updates(gpu, b)
            for name, ref in updates(cpu, a).items():
                assert scaled_error(carried[name], ref) <= TOLERANCE, (a.index, name)
    moved = np.abs(gpu.layers[0].weights - tiny_network(tmp_path, body, 2).layers[0].weights).max()
    assert moved > 1e-4   # the step changed the weights


@needs_device
def test_classifier_training_step_matches_cpu(tmp_path):
    """An SGD step of a tiny classifier: convolution, global avgpool and connected backward on the device,
    [softmax]'s loss on the host: the cost and every parameter as on the CPU."""
    body = "\n".join([CONV.format(bn=1, filters=4, size=3, pad=1, act="leaky"),
                      "[avgpool]\n",
                      "[connected]\noutput=3\nactivation=linear\n",
                      "[softmax]\ngroups=1\n"])
    cpu, gpu = tiny_network(tmp_path, body, 2), tiny_network(tmp_path, body, 2)
    gpu.to("cuda:0")
    x = np.random.default_rng(7).random((2, 3, SIDE, SIDE), dtype=np.float32)
    truth = np.array([[0, 1, 0], [1, 0, 0]], np.float32)
    expected = train_network(cpu, x, truth)
    assert abs(train_network(gpu, x, truth) - expected) <= TOLERANCE * max(1, abs(expected))
    for a, b in zip(cpu.layers, gpu.layers):
        for ref, ours in zip(a.weight_arrays(), b.weight_arrays()):
            assert scaled_error(ours, ref) <= TOLERANCE, (a.index, a.type, ref.shape)
    assert gpu.engine.on_device(gpu.layers[2])   # the connected layer trained on the device


def test_kernels_compile_for_a_real_gpu():
    """Every kernel compiles to PTX for sm_80 (tools/cuda_ptx.py: needs numba-cuda with NVIDIA's NVVM, not a
    GPU): the simulator runs the kernels as Python, so this is what checks their typing for the real target."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "cuda_ptx.py")], capture_output=True, text=True,
                         env=env)
    if run.returncode == 77:
        pytest.skip(run.stdout.strip() or "no NVVM")
    assert run.returncode == 0, run.stdout + run.stderr


REPLICA_BODY = "\n".join([CONV.format(bn=1, filters=4, size=3, pad=1, act="leaky"),
                          "[maxpool]\nsize=2\nstride=2\n",
                          CONV.format(bn=0, filters=21, size=1, pad=0, act="linear"),
                          "[upsample]\nstride=2\n",
                          YOLO])


def replicas_against_one(tmp_path, devices, steps):
    """Replicas on `devices`, a batch of one image each, against one CPU network whose batch of len(devices) is
    split into as many subdivisions (the same chunks, hence the same batch-norm statistics; the update divides
    by batch x subdivisions where the replicas' average divides by their number): the costs and the trained
    parameters (not the rolling statistics, which darknet's subdivisions fold in one after the other)."""
    from pydarknet.tasks.train.replicas import Replicas
    count = len(devices)
    single_dir, replica_dir = tmp_path / "single", tmp_path / "replica"
    single_dir.mkdir()
    replica_dir.mkdir()
    single = tiny_network(single_dir, REPLICA_BODY, count, subdivisions=count)
    replicas = Replicas(tiny_network(replica_dir, REPLICA_BODY, 1), devices)
    single.quiet = replicas.lead.quiet = True
    x = np.random.default_rng(5).random((count, 3, SIDE, SIDE), dtype=np.float32)
    truth = np.zeros((count, 90, 5), np.float32)
    truth[:, 0] = [.3, .4, .2, .3, 1]
    truth[-1, 0] = [.6, .5, .4, .2, 0]
    for _ in range(steps):
        expected = train_network(single, x, truth.reshape(count, -1))
        assert abs(replicas.train_batch(x, truth.reshape(count, -1)) - expected) <= TOLERANCE * max(1, abs(expected))
    for net in replicas.nets:
        for a, b in zip(single.layers, net.layers):
            for name in ("weights", "biases", "scales"):
                if getattr(a, name, None) is not None and a.trainable:
                    assert scaled_error(getattr(b, name), getattr(a, name)) <= TOLERANCE, (a.index, name)


def test_replicas_average_like_subdivisions(tmp_path):
    """-gpus 0,1's scheme with CPU replicas standing in for GPUs: two steps of two replicas."""
    replicas_against_one(tmp_path, ["cpu", "cpu"], 2)


@needs_device
def test_replicas_on_the_device(tmp_path):
    """The same with a GPU replica (its updates leave and reach the device) beside a CPU one: one step."""
    replicas_against_one(tmp_path, ["cuda:0", "cpu"], 1)


@needs_device
def test_detector_on_the_device(tmp_path):
    """Detector(..., device="cuda:0"): the same boxes and probabilities as on the CPU (a tiny untrained network
    with a low threshold, so that there are some)."""
    from pydarknet.tasks.predict import Detector
    body = "\n".join([CONV.format(bn=1, filters=4, size=3, pad=1, act="leaky"),
                      CONV.format(bn=0, filters=21, size=1, pad=0, act="linear"), YOLO])
    image = np.random.default_rng(6).random((3, 9, 12), dtype=np.float32)
    cpu = Detector(None, None, network=tiny_network(tmp_path, body, 1)).detect(image, thresh=0.05)
    gpu = Detector(None, None, network=tiny_network(tmp_path, body, 1), device="cuda:0").detect(image, thresh=0.05)
    assert len(cpu.boxes) > 0 and len(gpu.boxes) == len(cpu.boxes)
    for (box_a, scored_a), (box_b, scored_b) in zip(cpu.boxes, gpu.boxes):
        assert np.allclose(box_a, box_b, atol=1e-4) and [c for c, _ in scored_a] == [c for c, _ in scored_b]
        assert np.allclose([p for _, p in scored_a], [p for _, p in scored_b], atol=1e-4)


GOLDEN_FORWARD = sorted(p for p in (SHARED / "golden" / "forward").glob("*") if (p / "input.npy").is_file())


@pytest.mark.parametrize("case_dir", or_skip(GOLDEN_FORWARD, "golden/forward"), ids=lambda p: p.name)
def test_golden_forward_on_the_gpu(case_dir):
    """Every golden forward case on a real GPU: each stored layer output within --fast's promise (1e-3 scaled;
    yolov3-spp_slim 5e-3): cuBLAS sums in its own order, and on the deep networks the differences grow past the
    exact path's 1e-4 as any other order's do (measured on an H200: darknet53_slim 1.04e-4, yolov3_slim 1.67e-4;
    the CPU's BLAS order: 1.2e-4, 9.0e-4). The pass checked is a replay of the recorded one, on a new input. The
    simulator would take hours over these networks: the tiny ones above check the same kernels there."""
    if simulated() or not HAVE_DEVICE:
        pytest.skip("needs a real CUDA GPU (the simulator is too slow for the golden networks)")
    if case_dir.name in UNREPRODUCIBLE:
        pytest.skip(UNREPRODUCIBLE[case_dir.name])
    _, cfg, weights = case_paths(case_dir, SHARED)
    net = Network(cfg, quiet_unused=True).load(weights)
    x = np.load(case_dir / "input.npy")
    if x.shape != net.input_shape:
        net.resize(x.shape[2], x.shape[1])
    engine = net.to("cuda:0").engine
    engine.forward(x[None, :, ::-1].copy())   # records the pass (on another input), so that x's is replayed
    engine.forward(x[None], every_layer=True)
    tolerance = CASE_TOLERANCE.get(case_dir.name, FAST_TOLERANCE)
    assert layer_mismatch(net, case_dir, tolerance) is None, layer_mismatch(net, case_dir, tolerance)


def test_numba_cuda_says_nothing_of_small_launches():
    """numba-cuda warns of every launch of under 128 blocks (each small layer's: on an H200 the tests printed
    dozens); cuda_target() turns that off unless the user set NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS."""
    pytest.importorskip("numba_cuda", reason="needs numba-cuda (the cuda or test extra)")
    code = ("from pydarknet.network.cuda.backend import cuda_target; cuda_target(); "
            "from numba.cuda.core import config; print(config.CUDA_LOW_OCCUPANCY_WARNINGS)")
    unset = ("NUMBA_ENABLE_CUDASIM", "NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          check=True).stdout.split() == ["0"]
    env["NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS"] = "1"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          check=True).stdout.split() == ["1"]


class HostArray:
    """A host array as the backend sees a device array (shape, strides, dtype, __cuda_array_interface__'s address)."""

    def __init__(self, array):
        self.array, self.shape, self.strides, self.dtype = array, array.shape, array.strides, array.dtype
        self.__cuda_array_interface__ = {"data": (array.ctypes.data, False)}


def column_major(address, rows, columns, leading):
    """The column-major float matrix at a host address with leading dimension `leading`, as cuBLAS reads it."""
    flat = np.ctypeslib.as_array((ctypes.c_float * ((columns - 1) * leading + rows)).from_address(address))
    return np.lib.stride_tricks.as_strided(flat, (rows, columns), (4, 4 * leading), writeable=True)


def sgemm_strided_batched(handle, op_first, op_second, m, n, k, alpha, first, ld_first, stride_first, second,
                          ld_second, stride_second, beta, out, ld_out, stride_out, count):
    """cublasSgemmStridedBatched's arithmetic on host memory (column-major; alpha and beta by address)."""
    alpha, beta = (ctypes.c_float.from_address(address).value for address in (alpha, beta))
    for z in range(count):
        a = column_major(first + 4 * z * stride_first, *((k, m) if op_first else (m, k)), ld_first)
        b = column_major(second + 4 * z * stride_second, *((n, k) if op_second else (k, n)), ld_second)
        c = column_major(out + 4 * z * stride_out, m, n, ld_out)
        c[...] = alpha * ((a.T if op_first else a) @ (b.T if op_second else b)) + beta * c
    return 0


def test_cublas_calls_compute_the_row_major_products():
    """Backend's cuBLAS calls (Cublas.gemm and gemm_sum: the arguments gemm_arguments gives, the addresses of
    each image's matrices), applied as cublasSgemmStridedBatched applies them, compute Backend.matmul's row-major
    product for plain and transposed operands, a first dimension of 1 serving every z and the views the layers
    pass (a group's filters, a group's rows of the output), and matmul_sum's image-by-image sum."""
    from pydarknet.network.cuda.backend import Cublas
    cublas = Cublas.__new__(Cublas)
    cublas.handle, cublas._gemm, cublas._destroy = None, sgemm_strided_batched, lambda handle: 0
    rng = np.random.default_rng(11)
    for count, m, n, k, trans_a, trans_b, shared in [(1, 5, 7, 3, False, False, "a"), (3, 4, 6, 5, False, False, "a"),
                                                      (2, 3, 4, 5, True, False, None), (2, 6, 2, 3, False, True, "b"),
                                                      (3, 2, 5, 4, True, True, None)]:
        a = rng.random((1 if shared == "a" else count,) + ((k, m) if trans_a else (m, k)), dtype=np.float32)
        b = rng.random((1 if shared == "b" else count,) + ((n, k) if trans_b else (k, n)), dtype=np.float32)
        whole = rng.random((count, m + 3, n), dtype=np.float32)
        kept, c = whole.copy(), whole[:, 2:2 + m]   # a group's rows of a larger output, as grouped layers pass
        op_a, op_b = (a.transpose(0, 2, 1) if trans_a else a), (b.transpose(0, 2, 1) if trans_b else b)
        expected = 2 * (op_a @ op_b) + 0.5 * c
        cublas.gemm(HostArray(a), HostArray(b), HostArray(c), trans_a, trans_b, 2.0, 0.5)
        np.testing.assert_allclose(c, expected, rtol=1e-5)
        assert np.array_equal(whole[:, :2], kept[:, :2]) and np.array_equal(whole[:, 2 + m:], kept[:, 2 + m:])
    filters = rng.random((1, 12, 9), dtype=np.float32)[:, 4:8]   # group 1 of three's weights
    columns = rng.random((2, 9, 5), dtype=np.float32)
    out = np.zeros((2, 4, 5), np.float32)
    cublas.gemm(HostArray(filters), HostArray(columns), HostArray(out), False, False, 1.0, 0.0)
    np.testing.assert_allclose(out, filters @ columns, rtol=1e-5)
    delta = rng.random((3, 8, 10), dtype=np.float32)[:, 2:6]   # a group's filters' deltas, 3 images
    columns = rng.random((3, 7, 10), dtype=np.float32)
    updates = rng.random((1, 9, 7), dtype=np.float32)
    expected = updates[0, 5:9].copy()
    for z in range(3):
        expected += delta[z] @ columns[z].T
    cublas.gemm_sum(HostArray(delta), HostArray(columns), HostArray(updates[:, 5:9]), False, True)
    np.testing.assert_allclose(updates[0, 5:9], expected, rtol=1e-5)


def test_cublas_is_found_among_the_loaded_libraries():
    """The backend calls the cuBLAS that CuPy loaded, by its path among the process's mappings: a loaded library is
    found whatever its version suffix, a missing one is the one-line "no CUDA GPU found" error."""
    from pydarknet.network.cuda.backend import _loaded
    if not Path("/proc/self/maps").is_file():
        pytest.skip("no /proc/self/maps (not Linux)")
    assert Path(_loaded("libc.so")).name.startswith("libc.so")
    with pytest.raises(DarknetError, match="no CUDA GPU found: CuPy loaded no libnothing.so"):
        _loaded("libnothing.so")


class Rerun:
    """Stands in for a CUDA graph where there is none (the simulator): launching runs the recorded pass again, on
    the arrays bound when it was recorded, and leaves the engine's Python state as it was (a graph's launch runs
    no Python)."""

    def __init__(self, engine, run):
        self.engine, self.run, self.launches = engine, run, 0

    def launch(self):
        saved = list(self.engine.outputs), self.engine.input
        self.run()
        self.engine.outputs[:], self.engine.input = saved
        self.launches += 1


def recorded(net, monkeypatch):
    """net's engine with graphs on, each recording it makes listed: real graphs on a GPU with CuPy, Reruns else."""
    engine, graphs = net.engine, []
    record = engine.be.record if engine.be.records else (lambda run: Rerun(engine, run))

    def listed(run):
        graphs.append(record(run))
        return graphs[-1]
    monkeypatch.setattr(engine.be, "record", listed)
    engine.graphs = True
    return graphs


@needs_device
def test_recorded_passes_replay_what_launches_compute(tmp_path, monkeypatch):
    """An inference pass is recorded on the first call for its input shape and parameters and replayed after:
    every layer's output is what launching each kernel computes (the same kernels in the same order: bit for
    bit), for a new input each call; a new batch size or new parameters record again; a training pass in between
    at the same batch (which puts other arrays in the outputs' places) leaves the replay reading and writing its
    own, one at another batch (which replaces arrays the graph writes) has it recorded again; a network with a
    layer run on the host is launched pass by pass (a graph holds no host copies)."""
    body = "\n".join([CONV.format(bn=1, filters=4, size=3, pad=1, act="leaky"), "[maxpool]\nsize=2\nstride=2\n",
                      CONV.format(bn=1, filters=4, size=3, pad=1, act="mish"),
                      "[shortcut]\nfrom=-2\nactivation=linear\n", "[route]\nlayers=-1,-3\n", "[upsample]\nstride=2\n",
                      CONV.format(bn=0, filters=21, size=1, pad=0, act="linear"), YOLO])
    net = tiny_network(tmp_path, body, 1).to("cuda:0")
    rng = np.random.default_rng(12)
    inputs = [rng.random((batch, 3, SIDE, SIDE), dtype=np.float32) for batch in (2, 1, 1)]

    def launched(x):
        net.engine.graphs = False
        net.engine.forward(x, every_layer=True)
        net.engine.graphs = True
        return [layer.output.copy() for layer in net.layers]

    def replayed(x, expected):
        net.engine.forward(x, every_layer=True)
        for layer, ref in zip(net.layers, expected):
            assert np.array_equal(layer.output, ref), layer.index

    expected = [launched(x) for x in inputs]
    graphs = recorded(net, monkeypatch)
    for x, ref in zip(inputs, expected):   # recorded at batch 2, recorded at batch 1, replayed
        replayed(x, ref)
    truth = np.tile([.3, .4, .2, .3, 1], (1, 90)).astype(np.float32)

    def train(x):
        net.engine.forward_train(x, np.repeat(truth, len(x), axis=0))
        net.train = False
    train(inputs[2])
    replayed(inputs[1], expected[1])   # replayed, after a training pass put other arrays in the graph's places
    assert len(graphs) == 2
    if isinstance(graphs[0], Rerun):
        assert [graph.launches for graph in graphs] == [0, 2]
    train(inputs[0])   # at batch 2: replaces arrays the batch-1 graph writes
    replayed(inputs[2], expected[2])
    assert len(graphs) == 3
    net.layers[0].weights *= np.float32(1.5)
    net.params_version += 1
    new_weights = launched(inputs[1])
    assert not np.array_equal(new_weights[-1], expected[1][-1])
    replayed(inputs[1], new_weights)
    assert len(graphs) == 4

    several = "[shortcut]\nfrom=-3,-1\nweights_type=per_channel\nactivation=leaky\n"
    host = tiny_network(tmp_path, "\n".join([CONV.format(bn=1, filters=4, size=3, pad=1, act="leaky"),
                                             CONV.format(bn=0, filters=4, size=3, pad=1, act="leaky"),
                                             CONV.format(bn=0, filters=4, size=1, pad=0, act="linear"), several]),
                        1).to("cuda:0")
    graphs = recorded(host, monkeypatch)
    cpu, device = forward_both(host, inputs[0])
    host.engine.forward(inputs[1])
    assert graphs == [] and scaled_error(device[-1], cpu[-1]) <= TOLERANCE


def test_gpus_without_a_gpu_is_one_line():
    """`-gpus 0` on a machine without a GPU (nor the simulator): one error line, exit 1, nothing read."""
    if ctypes.util.find_library("cuda"):
        pytest.skip("this machine has a CUDA driver")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    run = subprocess.run([sys.executable, "-m", "pydarknet", "detect", "missing.cfg", "missing.weights", "x.jpg",
                          "-gpus", "0"], capture_output=True, text=True, env=env)
    errors = [line for line in run.stderr.splitlines() if line.startswith("pydarknet: error:")]
    assert run.returncode == 1 and "Traceback" not in run.stderr   # (a first run may also say it compiles)
    assert len(errors) == 1 and errors[0].startswith("pydarknet: error: no CUDA GPU found: ")


def parameter_error(net, ref):
    return max(scaled_error(ours, theirs) for a, b in zip(ref.layers, net.layers)
               for theirs, ours in zip(a.weight_arrays(), b.weight_arrays()))


@pytest.mark.parametrize("case", ["yolov4-tiny_train", "yolov7-tiny_train", "yolov4_train", "ab_ops_train"])
def test_golden_training_ab_on_the_gpu(case):
    """The AlexeyAB training goldens on a real GPU. cuBLAS's order and the GPU's tree-summed batch-norm statistics
    are not darknet's float32 chains, and these networks turn such differences into percent-level drift within a
    few steps, so the 8 steps' losses and weights cannot be darknet's. What a correct engine holds: the first loss
    (the forward) within 1e-4 relative of darknet's, and one step's parameters as near the CPU's exact step as
    the GPU's orders bring the CPU's own step (10x that step's scaled error, at least 1e-5; the orders emulated by
    tools/cuda_train_diff.py). Measured on an H200: yolov4-tiny_train's step 2.4e-4 from the exact one, the CPU in
    the GPU's orders 2.4e-4 (loss equal to the last bit); yolov7-tiny_train 4.6e-3 and 4.4e-3."""
    if simulated() or not HAVE_DEVICE:
        pytest.skip("needs a real CUDA GPU (the simulator is too slow for these networks)")
    from test_train_golden import printed_losses
    case_dir = SHARED / "golden" / "train_ab" / case
    if not case_dir.is_dir():
        pytest.skip(f"needs ../shared/golden/train_ab/{case}")
    one_step = tool("cuda_train_diff").one_step
    exact, _ = one_step(case_dir)
    gpu, loss = one_step(case_dir, "cuda:0")
    want = float(printed_losses(case_dir)[0])
    assert abs(loss - want) <= 1e-4 * abs(want), (loss, want)
    bound = max(1e-5, 10 * parameter_error(one_step(case_dir, gpu_orders=True)[0], exact))
    assert parameter_error(gpu, exact) <= bound, bound


def test_gpu_orders_emulation_is_batchnorm():
    """tools/cuda_train_diff.py's tree-summed batch-norm (the GPU's statistics on the CPU, which the GPU's golden
    training test measures against) computes what the engine's kernel computes, to float32's rounding, where the
    orders agree; on a channel of large mean it sums more exactly than darknet's chain, which moves its
    normalised values by 3e-4 (the difference that the GPU's training step shows)."""
    from pydarknet.kernels import backward
    from pydarknet.kernels.activations import CODE
    emulated = tool("cuda_train_diff").batchnorm_train_tree_sums
    rng = np.random.default_rng(5)
    x = rng.normal(0, 1, (4, 6, 1600)).astype(np.float32)
    x[:, 0] += np.float32(300)   # a channel whose float32 chain loses digits
    scales, biases = rng.uniform(.5, 1.5, 6).astype(np.float32), rng.normal(0, .1, 6).astype(np.float32)
    results = []
    for train in (backward.batchnorm_train, emulated):
        arrays = [np.ones(6, np.float32), np.ones(6, np.float32), np.empty(6, np.float32),
                  np.empty(6, np.float32), np.empty_like(x), np.empty_like(x)]
        rolling_mean, rolling_variance, mean, variance, x_norm, out = arrays
        train(x, out, scales, biases, rolling_mean, rolling_variance, mean, variance, x_norm, CODE["leaky"], True)
        results.append(arrays)
    for ours, ref in zip(results[1], results[0]):   # channel 0 aside
        assert scaled_error(ours[..., 1:, :] if ours.ndim == 3 else ours[1:],
                            ref[..., 1:, :] if ref.ndim == 3 else ref[1:]) <= 2e-6
    assert 1e-4 < scaled_error(results[1][4][:, 0], results[0][4][:, 0]) < 1e-3   # x_norm
    exact_mean = x[:, 0].astype(np.float64).mean()
    assert abs(results[1][2][0] - exact_mean) < abs(results[0][2][0] - exact_mean)


@needs_device
def test_shortcut_of_several_inputs_trains_as_on_the_cpu(tmp_path):
    """The fork's [shortcut] with weights or several from= layers (ab_ops_train's) has no device counterpart: it
    runs its CPU forward and backward on copies, the deltas of the layers it reads (the one before it among them)
    copied back to the device. Two steps: the costs and every parameter (the shortcut's weights too) as on the
    CPU (checked alike with per_feature/relu and without weights: the copies do not depend on them)."""
    shortcut = "[shortcut]\nfrom=-3,-1\nweights_type=per_channel\nweights_normalization=softmax\nactivation=leaky\n"
    body = "\n".join([CONV.format(bn=1, filters=4, size=3, pad=1, act="leaky"),
                      CONV.format(bn=1, filters=4, size=3, pad=1, act="leaky"),
                      CONV.format(bn=0, filters=4, size=1, pad=0, act="linear"),
                      shortcut,
                      CONV.format(bn=0, filters=21, size=1, pad=0, act="linear"), YOLO])
    cpu, gpu = tiny_network(tmp_path, body, 2), tiny_network(tmp_path, body, 2)
    for net in (cpu, gpu):
        net.quiet = True
        net.layers[3].weights[:] = np.random.default_rng(8).normal(0, .5, net.layers[3].weights.shape)
    assert cpu.layers[3].multilayer and not gpu.to("cuda:0").engine.on_device(gpu.layers[3])
    x = np.random.default_rng(9).random((2, 3, SIDE, SIDE), dtype=np.float32)
    truth = np.zeros((2, 90, 5), np.float32)
    truth[:, 0] = [.3, .4, .2, .3, 1]
    for _ in range(2):
        expected = train_network(cpu, x, truth.reshape(2, -1))
        assert abs(train_network(gpu, x, truth.reshape(2, -1)) - expected) <= TOLERANCE * max(1, abs(expected))
    for a, b in zip(cpu.layers, gpu.layers):
        for ref, ours in zip(a.weight_arrays(), b.weight_arrays()):
            assert scaled_error(ours, ref) <= TOLERANCE, (a.index, a.type, ref.shape)
    start = tiny_network(tmp_path, body, 2)
    moved = [np.abs(a.weights - b.weights).max() for a, b in zip(gpu.layers[:4], start.layers[:4])]
    assert min(moved) > 1e-5   # every layer up to the shortcut trained, the first through both of its paths
