"""The exact and fast products against OpenCV DNN in one run, taken in turn (a busy machine weighs on all three
alike): median forward times and their ratios to OpenCV.

    python3 tools/bench_modes.py [--runs N]
"""
import argparse
from pathlib import Path

import pydarknet  # noqa: F401  (thread-pool environment first)
from pydarknet.about import cpu_line
from pydarknet.bench import letterboxed, median_times, opencv_net, plain_resized, resized_min
from pydarknet.image import load_image
from pydarknet.kernels import products
from pydarknet.network import Network

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
NETS = (("yolov3-tiny", letterboxed), ("tiny", resized_min), ("yolov4-tiny", plain_resized))


def with_backend(name, fn):
    def run():
        previous = products.set_backend(name)
        try:
            fn()
        finally:
            products.set_backend(previous)
    return run


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    print(cpu_line())
    for name, prepare in NETS:
        cfg, weights = ROOT / "cfg" / f"{name}.cfg", SHARED / "models" / f"{name}.weights"
        net = Network(cfg, quiet_unused=True)
        net.load(weights)
        x = prepare(load_image(SHARED / "images" / "dog.jpg"), net)[None]
        peer = opencv_net(cfg, weights)
        exact, fast, theirs = median_times([with_backend("darknet", lambda: net.forward(x)),
                                            with_backend("fast", lambda: net.forward(x)), lambda: peer(x)], args.runs)
        print(f"{name:<12} {x.shape[3]}x{x.shape[2]}  exact {exact * 1e3:6.1f} ms ({exact / theirs:4.2f}x)   "
              f"fast {fast * 1e3:6.1f} ms ({fast / theirs:4.2f}x)   opencv {theirs * 1e3:6.1f} ms", flush=True)


if __name__ == "__main__":
    main()
