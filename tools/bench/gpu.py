"""`make bench-gpu`: the GPU engine's speed on yolov4-tiny at 416x416 (random weights: speed does not depend on
them): forward images/s at batch 1 and at batch 32, each pass replayed from its CUDA graph (what the engine does)
and launched kernel by kernel (what it did before, and does for networks with a layer on the host), beside ONNX
Runtime's CUDA provider on the same graph and batches where onnxruntime-gpu is installed (the peer a deployment
would pick; all take and return host arrays), beside darknet's own CUDA build where `--darknet` names its
libdarknet.so (the AlexeyAB fork built with GPU=1 LIBSO=1, CUDNN=1 where cuDNN is there: its network_predict_ptr
on a network of that batch, random weights and input too; the scripts in bench/gpu/2026-11-26-h100/scripts build
it on a device machine), and training images/s (forward, backward and update) at batch 64 with the cfg's
subdivisions. Prints the GPU's name first; without a GPU, one line saying so (exit 1).

    python3 -m tools.bench.gpu [--cfg cfg/yolov4-tiny.cfg] [--seconds 10] [--darknet PATH/libdarknet.so]
"""
import argparse
import ctypes
import sys
import time

import numpy as np

from pydarknet.files.config import DarknetError
from pydarknet.files.resources import find_argument
from pydarknet.network.network import Network
from pydarknet.tasks.engines import use_engine
from pydarknet.tasks.train.step import train_network


def images_per_second(step, images, seconds):
    """Run step() (images each) once to warm up (compiling the kernels), then for about `seconds`."""
    step()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or count < 3:
        step()
        count += 1
    return count * images / (time.perf_counter() - start)


def darknet_forward(library, cfg, shape, batch, seconds):
    """images/s of darknet's forward through `library` (its libdarknet.so, loaded): the cfg's network loaded
    with `batch` and no weights file (random weights), network_predict_ptr timed on random input of the network's
    input shape (c, h, w), host in and out, as the engine is timed."""
    library.load_network_custom.restype = ctypes.c_void_p
    library.load_network_custom.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
    library.network_predict_ptr.restype = ctypes.POINTER(ctypes.c_float)
    library.network_predict_ptr.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float)]
    net = library.load_network_custom(str(cfg).encode(), None, 0, batch)
    x = np.random.default_rng(0).random(batch * int(np.prod(shape)), dtype=np.float32)
    pointer = x.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
    return images_per_second(lambda: library.network_predict_ptr(net, pointer), batch, seconds)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", default=None, help="the network [yolov4-tiny.cfg]")
    parser.add_argument("--gpu", type=int, default=0, help="the GPU's index")
    parser.add_argument("--seconds", type=float, default=10.0, help="time per measurement")
    parser.add_argument("--darknet", default=None, help="darknet's libdarknet.so (a CUDA build) to time beside")
    args = parser.parse_args(argv)
    cfg = find_argument(args.cfg or "cfg/yolov4-tiny.cfg")
    try:
        net = Network(cfg, quiet_unused=True).initialize(0).to(f"cuda:{args.gpu}")
        darknet = args.darknet and ctypes.CDLL(args.darknet)
    except DarknetError as e:
        print(f"bench-gpu: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"bench-gpu: --darknet {args.darknet}: cannot load it ({e})", file=sys.stderr)
        return 1
    be = net.engine.be
    print(f"GPU {args.gpu}: {be.name}; products: {'cuBLAS (CuPy)' if be.cupy is not None else 'our tiled kernel'}")
    try:
        peer = use_engine(Network(cfg, quiet_unused=True).initialize(0), "onnxruntime", True, f"cuda:{args.gpu}")
    except DarknetError as e:
        peer = None
        print(f"(no peer row: {e})")
    rng = np.random.default_rng(0)
    for batch in (1, 32):
        x = rng.random((batch,) + net.input_shape, dtype=np.float32)

        def forward():
            net.forward(x)
            be.synchronize()
        rates = {}
        for graphs in (True, False):
            net.engine.graphs = graphs and be.records
            rates[graphs] = images_per_second(forward, batch, args.seconds)
        print(f"{cfg} {net.w}x{net.h} forward, batch {batch:2d}: {rates[True]:8.1f} images/s "
              f"({'one CUDA graph a pass' if be.records else 'no graphs here: launched'}); "
              f"launched kernel by kernel {rates[False]:8.1f}")
        if peer is not None:
            peer_rate = images_per_second(lambda: peer.forward(x), batch, args.seconds)
            print(f"    ONNX Runtime CUDA, batch {batch:2d}: {peer_rate:8.1f} images/s "
                  f"(pydarknet {rates[True] / peer_rate:.2f}x its rate)")
        if darknet:
            darknet_rate = darknet_forward(darknet, cfg, net.input_shape, batch, args.seconds)
            print(f"    darknet ({args.darknet}), batch {batch:2d}: {darknet_rate:8.1f} images/s "
                  f"(pydarknet {rates[True] / darknet_rate:.2f}x its rate)")
    train = Network(cfg, quiet_unused=True).initialize(0).to(f"cuda:{args.gpu}")
    train.quiet = True
    n = train.batch * train.subdivisions
    x = rng.random((n,) + train.input_shape, dtype=np.float32)
    boxes = max(getattr(layer, "max_boxes", 1) for layer in train.layers)
    truth = np.zeros((n, boxes * 5), np.float32)
    truth[:, :5] = [.5, .5, .2, .3, 0]   # one box an image

    def step():
        train_network(train, x, truth)
        be.synchronize()
    print(f"{cfg} training, batch {n} (subdivisions {train.subdivisions}): "
          f"{images_per_second(step, n, args.seconds):8.1f} images/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
