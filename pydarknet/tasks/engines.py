"""Engines: a network's inference forward on ONNX Runtime or OpenVINO instead of pydarknet's own kernels, with
pydarknet's pre- and post-processing unchanged around it.

The runtime runs the graph `export onnx` writes (dynamic batch; the [yolo], [region] and [detection] layers'
outputs, else the output layer's, as darknet computes them), and the engine writes those outputs into the
layers' `output`, where results.detections and the Classifier read them after pydarknet's own forward: every
output format, flag and command works unchanged. `numba` (pydarknet's own) is the default and the only engine that
trains.

Precision: ONNX Runtime runs float32 (the --fast promise). OpenVINO runs float32 under --fast, bf16 under --bf16,
and otherwise its default precision on this CPU (bf16 where the CPU has AMX or avx512_bf16), except where bf16 is
slower than float32 here (openvino_precision). The graph is exported once per network and input size and cached on
disk, beside the kernel cache, under a key of the cfg's text and the parameters' bytes: a second start reads it.
"""
import ctypes
import hashlib
import importlib
import importlib.util
import io
import sys
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

from ..files.config import DarknetError
from ..files.errors import install_hint
from ..files.weights import atomic_write
from ..kernels import products
from ..kernels.threads import cores
from .options import engine_named

EXTRAS = {"onnxruntime": "onnx", "openvino": "openvino"}
GRAPH_VERSION = 2   # bumped when the exporter's graph of a network changes: older cached graphs are not read


def check_engine(engine, fast=None):
    """`engine`, if one of options.ENGINES that runs with the products `fast` names; a DarknetError saying why not."""
    engine_named(engine)
    if engine == "onnxruntime" and fast in ("bf16", "int16"):
        raise DarknetError(f"--{fast} is not ONNX Runtime's: it runs float32 (--engine openvino runs bf16, "
                           f"--engine numba --{fast})")
    if engine == "openvino" and fast == "int16":
        raise DarknetError("--int16 is pydarknet's own engine's: use --engine numba --int16, or OpenVINO's bf16")
    return engine


def installed(engine):
    """Whether the runtime of `engine` can be imported."""
    return importlib.util.find_spec(engine) is not None


def runtime(engine):
    """The runtime's module; a DarknetError naming the extra to install when it is missing."""
    try:
        return importlib.import_module(engine)
    except ImportError:
        raise DarknetError(f"--engine {engine} needs {engine}: {install_hint(EXTRAS[engine])}") from None


def check_cuda_provider():
    """A DarknetError unless ONNX Runtime has its CUDA execution provider (onnxruntime-gpu)."""
    if "CUDAExecutionProvider" not in runtime("onnxruntime").get_available_providers():
        raise DarknetError("--engine onnxruntime on a GPU needs onnxruntime-gpu (pip install onnxruntime-gpu) with "
                           "NVIDIA's CUDA libraries: its CUDA execution provider is missing")


def onnxruntime_runner(graph, threads, gpu=None):
    """run(x) -> the outputs, {name: array}, of `graph` (an ONNX model's bytes or file) in ONNX Runtime on `threads`
    threads; on GPU `gpu` (its index) through the CUDA execution provider (onnxruntime-gpu)."""
    ort = runtime("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")   # idle threads slow the others
    providers = ["CPUExecutionProvider"]
    if gpu is not None:
        check_cuda_provider()
        providers = [("CUDAExecutionProvider", {"device_id": gpu})]
        if hasattr(ort, "preload_dlls"):
            # the provider has no path to NVIDIA's libraries where pip put them (onnxruntime-gpu[cuda,cudnn]):
            # ONNX Runtime's own loader finds them there (its notes go to stdout)
            with redirect_stdout(io.StringIO()):
                ort.preload_dlls()
    session = ort.InferenceSession(graph, options, providers=providers)
    if gpu is not None and "CUDAExecutionProvider" not in session.get_providers():
        # ONNX Runtime falls back to the CPU when the provider's libraries do not load, and says so only in its log
        raise DarknetError("--engine onnxruntime on a GPU: ONNX Runtime's CUDA provider did not start (its CUDA "
                           "and cuDNN libraries did not load): pip install 'onnxruntime-gpu[cuda,cudnn]', or put "
                           "NVIDIA's libraries on LD_LIBRARY_PATH")
    names = [output.name for output in session.get_outputs()]
    return lambda x: dict(zip(names, session.run(names, {"input": x})))


def openvino_compiled(path, threads, precision=None, profiled=False):
    """The ONNX file `path` compiled by OpenVINO for the CPU on `threads` threads, in `precision` ("f32", "bf16";
    None: OpenVINO's default on this CPU); `profiled`: its requests time every node (PERF_COUNT)."""
    ov = runtime("openvino")
    core = ov.Core()
    settings = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": profiled}
    if precision is not None:
        settings["INFERENCE_PRECISION_HINT"] = precision
    with signal_stack_kept():
        return core.compile_model(core.read_model(str(path)), "CPU", settings)


def openvino_runner(path, threads, precision=None):
    """run(x) -> the outputs, {name: array}, of the ONNX file `path` compiled by OpenVINO (openvino_compiled)."""
    compiled = openvino_compiled(path, threads, precision)
    request = compiled.create_infer_request()

    def run(x):
        results = request.infer({0: x})
        # every name of an output tensor (OpenVINO may keep an inner node's beside the graph output's)
        return {name: results[output].copy() for output in compiled.outputs for name in output.get_names()}
    return run


class _SignalStack(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


@contextmanager
def signal_stack_kept():
    """The calling thread's alternate signal stack as it was before the block. OpenVINO's compile_model gives the
    thread one of its own (11824 bytes, 2026.4) and frees it with the compiled model: a signal handled after
    that (Ctrl-C, a scheduler's SIGTERM) ran on freed memory and crashed the process (SIGSEGV)."""
    if not sys.platform.startswith("linux"):
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    before = _SignalStack()
    libc.sigaltstack(None, ctypes.byref(before))
    try:
        yield
    finally:
        libc.sigaltstack(ctypes.byref(before), None)


def openvino_default_precision():
    """OpenVINO's default inference precision on this CPU ("f32", "bf16", ...)."""
    return str(runtime("openvino").Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name())


def openvino_precision(fast):
    """OpenVINO's INFERENCE_PRECISION_HINT for pydarknet's mode `fast` (predict.products_name's values): "f32"
    under --fast, "bf16" under --bf16; with no mode, None (OpenVINO's default on this CPU), but "f32" where that
    default is bf16 on a CPU whose bf16 products are slower than its float32 ones, where pydarknet's own --bf16 runs
    as --fast (products.bf16_engine: an Intel core without usable AMX tiles runs vdpbf16ps at half an FMA's rate).
    There OpenVINO picks bf16 all the same, for 1.2-1.7x its float32 time (the Xeon of docs/engines.md)."""
    if fast is True:
        return "f32"
    if fast == "bf16":
        return "bf16"
    if products.bf16_engine() is None and openvino_default_precision() == "bf16":
        return "f32"
    return None


def graph_key(net):
    """The cache key of a network's graph at its current input size: its cfg's text, its darknet, its input shape
    and its parameters' bytes."""
    digest = hashlib.sha256(f"{GRAPH_VERSION} {net.darknet} {net.input_shape}\n".encode())
    cfg = Path(str(net.cfg_path))
    digest.update(cfg.read_bytes() if cfg.is_file() else str(cfg).encode())
    for layer in net.layers:
        for array in layer.weight_arrays():
            digest.update(array.tobytes())
    return digest.hexdigest()[:32]


def graphs_folder():
    """Where the exported graphs are cached: "engines" beside the kernel cache."""
    from ..kernels import cache_folder
    return cache_folder() / "engines"


def graph_file(net):
    """The path of `net`'s graph (tasks.onnx.export, dynamic batch), exported now unless already cached; a
    DarknetError naming a layer the exporter cannot express."""
    from . import onnx
    path = graphs_folder() / f"{graph_key(net)}.onnx"
    if path.is_file():
        return path
    try:
        model = onnx.export(net, batch=None)
    except DarknetError as e:
        raise DarknetError(f"{e}: run it with --engine numba") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, model.SerializeToString())
    return path


def engine_name(net):
    """What runs `net`'s forward: "numba" (pydarknet's kernels, on the CPU or a GPU), "onnxruntime" or "openvino"."""
    return net.engine.name if isinstance(net.engine, RuntimeEngine) else "numba"


def use_engine(net, engine, fast=None, device=None):
    """Run `net`'s inference forward in `engine` from now on ("numba": pydarknet's own kernels, on `device`), with
    the products `fast` names (predict.products_name's values; None: the process's, as a command's --fast or
    --bf16 set them), on `device` ("cuda:N": ONNX Runtime's CUDA provider; None: the CPU). Returns the network."""
    from ..network.cuda import parse_device
    if engine == "numba":
        return net.to(device) if device is not None else net
    if fast is None:
        fast = {"darknet": None, "fast": True}.get(products.backend(), products.backend())
    net.engine = RuntimeEngine(net, engine, fast, parse_device(device))
    return net


class RuntimeEngine:
    """`net`'s inference forward in `engine` ("onnxruntime", "openvino") with the products `fast` names (see the
    module's notes) on `gpu` (an index; ONNX Runtime only) or the CPU. One runner per input size (a classifier's
    resize_min changes it), made when first needed. Inference only."""

    def __init__(self, net, engine, fast=None, gpu=None):
        check_engine(engine, fast)
        runtime(engine)   # the missing-extra error now, before any export
        if gpu is not None and engine != "onnxruntime":
            raise DarknetError(f"--engine {engine} runs on the CPU: GPUs run --engine onnxruntime or numba")
        if gpu is not None:
            check_cuda_provider()
        self.net, self.name, self.fast, self.gpu = net, engine, fast, gpu
        self.runners = {}
        from .onnx import layer_name, output_layers
        self.outputs = [(layer, layer_name(layer)) for layer in output_layers(net)]

    @property
    def device(self):
        return "cpu" if self.gpu is None else f"cuda:{self.gpu}"

    def runner(self):
        size = self.net.input_shape
        if size not in self.runners:
            path = graph_file(self.net)
            if self.name == "onnxruntime":
                self.runners[size] = onnxruntime_runner(str(path), cores(), self.gpu)
            else:
                self.runners[size] = openvino_runner(path, cores(), openvino_precision(self.fast))
        return self.runners[size]

    def forward(self, x):
        """The output layer's output for a batch `x`; the exported layers' `output` set as pydarknet's forward
        sets them."""
        results = self.runner()(x)
        for layer, name in self.outputs:
            layer.output = results[name]
        return self.net.output_layer.output

    def forward_train(self, x, truth):
        raise DarknetError(f"--engine {self.name} runs inference only: only --engine numba trains")

    def sync_to_host(self):
        """Nothing to bring back: the parameters stay the network's own, on the host."""

