"""The GPU engine: a network's forward, backward and update on an NVIDIA GPU (the cuda extra).
May import: network.layers, results, kernels, files (never the network that holds it).

Design. The network and its layers stay what they are on the CPU (pydarknet.network.layers: options, shapes, parameters,
the CPU arithmetic). `net.to("cuda:0")` gives the network an Engine (engine.py) and Network's forward,
forward_train, backward and update hand over to it; `net.to("cpu")` takes it away. The engine walks the same
layer list; for each layer type with a device counterpart (layers.py: one small class per type, the same
operations as the CPU layer) it calls that, which reads the layer's options and the engine's device arrays and
launches kernels (kernels.py, Numba CUDA) through the Backend (backend.py: the device, its one stream, array
allocation, launches, the matrix product: cuBLAS where CuPy is installed, our tiled kernel otherwise; and the
recording of a pass as a CUDA graph, which the engine replays for inference).
Outputs stay on the device between layers; only what the host reads (detections, class scores) comes back.
A layer without a counterpart, or with options the counterpart does not take, runs its own CPU code on
copies -- that is also how the loss layers ([yolo], [softmax]) train: their delta goes back to the device;
a layer that reads others (the fork's [shortcut] of several inputs or with weights) gets their outputs and
deltas as copies too, and their deltas go back with its gradient added.
In training, convolutional (batch-norm included), connected (without it), maxpool, route, shortcut
(pjreddie's form), upsample and avgpool run forward, backward and the SGD update on the device; Adam updates
run on the CPU; the parameters come back to the layers' arrays after each update (saving sees them).
Not yet: pinned, overlapped input copies from the loader threads (each batch is copied in when it runs).

Arithmetic: float32 as darknet's CUDA build (activations in float, batch-norm as the network's darknet does
it on the CPU), in other summation orders (cuBLAS's, the per-channel reductions'): forward outputs keep --fast's
promise against darknet (1e-3 scaled; on an H200 the golden cases' worst was 1.67e-4), not its bits, and training
leaves darknet's trajectory within a few steps, as any other order does. Without a GPU, NUMBA_ENABLE_CUDASIM=1
runs the same kernels in Numba's simulator: that is how the tests check them in CI (tests/test_cuda.py).

The command line's -gpus/-i/--gpu (cli.options.common) check their devices with `devices` and hand them down to
the network the command builds (Network(..., device=...)): a device is a network's own, never the process's.
Training with several (`-gpus 0,1`) trains one replica per GPU (train/replicas.py: each iteration's images
shared out, their updates averaged); the other commands run on the first, as darknet's.
"""
import os

from ...files.config import DarknetError


def simulated():
    """Whether Numba's CUDA simulator stands in for the GPU (NUMBA_ENABLE_CUDASIM=1, which numba reads when
    numba.cuda is first imported)."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def parse_device(device):
    """"cpu", None, "cuda", "cuda:N", "gpu:N" or an int N -> None (the CPU) or the GPU's index."""
    if device is None or device == "cpu":
        return None
    if isinstance(device, int):
        return device
    text = str(device).strip().lower()
    for prefix in ("cuda", "gpu"):
        if text == prefix:
            return 0
        if text.startswith(prefix + ":") and text[len(prefix) + 1:].isdigit():
            return int(text[len(prefix) + 1:])
    if text.isdigit():
        return int(text)
    raise DarknetError(f"device {device!r}: use cpu, cuda or cuda:N (N: the GPU's index)")


def gpu_list(value):
    """darknet's -gpus: "0" or "0,1,2" -> [0, 1, 2] (None or "" -> [], the CPU)."""
    if value is None or str(value).strip() == "":
        return []
    try:
        gpus = [int(v) for v in str(value).split(",") if v.strip() != ""]
    except ValueError:
        raise DarknetError(f"-gpus {value}: give GPU indices separated by commas, e.g. -gpus 0,1") from None
    if any(g < 0 for g in gpus) or len(set(gpus)) != len(gpus):
        raise DarknetError(f"-gpus {value}: indices must be distinct and not negative")
    return gpus


def engine_for(net, index):
    """A new Engine running `net` on GPU `index` (DarknetError "no CUDA GPU found: ..." without one)."""
    from .backend import Backend
    from .engine import Engine
    return Engine(net, Backend(index))


def devices(value):
    """darknet's -gpus/-i value ("0" or "0,1"; None or "": the CPU; "cpu" entries: replicas on the CPU, as in
    training's -gpus cpu,cpu) as a list of devices ("cuda:0", "cpu"; []: the CPU), once it has checked that the
    GPUs are there (DarknetError "no CUDA GPU found: ..." otherwise)."""
    entries = [entry.strip().lower() for entry in str(value or "").split(",") if entry.strip()]
    gpus = gpu_list(",".join(entry for entry in entries if entry != "cpu"))
    if gpus:
        from .backend import Backend
        for index in gpus:
            Backend(index)   # raises the clear error now, before any file is read
    return ["cpu" if entry == "cpu" else f"cuda:{int(entry)}" for entry in entries]
