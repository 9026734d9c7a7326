"""Where a forward pass's time goes, and how the exact products compare with OpenBLAS on the same shapes.

    python3 tools/profile_forward.py [yolov3-tiny|yolov4-tiny|tiny ...] [--runs N]

The weights come from ../shared/models where the reference data is beside the checkout, else from `pydarknet
download`'s cache, fetched into it on first use (as `make bench`'s).

Part 1: every convolution's product (filters x k by k x output positions), pydarknet's exact kernel and numpy's
matmul (OpenBLAS) in turn, medians and their ratio. Part 2: each layer's forward time (median), split
into its products and the rest, with the bytes each moves (tools/bench/layers.py's table, as `make bench` prints
it for a missed target), in the products PYDARKNET_PRODUCTS names (darknet's exact ones by default).
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

if "--threads" in sys.argv:   # before numpy and Numba start their pools: both products get the same cores
    THREADS = sys.argv[sys.argv.index("--threads") + 1]
    os.environ["OPENBLAS_NUM_THREADS"] = os.environ["NUMBA_NUM_THREADS"] = THREADS

import pydarknet  # noqa: F401,I001  (the thread pools' environment, before numpy starts OpenBLAS's)
import numpy as np
from pydarknet.files.errors import DarknetError
from pydarknet.kernels import products
from pydarknet.kernels.gemm import sgemm_darknet
from pydarknet.network.network import Network
from pydarknet.tasks.about import cpu_line

from bench.layers import table_lines, time_layers   # tools/bench/: this script's folder is on sys.path
from bench.peers import SHARED, weights_file

ROOT = Path(__file__).resolve().parent.parent


def medians(fns, runs, rounds=3):
    """Medians of fns timed in blocks of consecutive runs, blocks in turn, each after a pause and two untimed
    runs: each pool's idle threads spin after its call (pydarknet/kernels/threads.py: OpenMP's about 5 ms, OpenBLAS's
    0.1 ms) and would take the cores from the other's next call, so calls in turn would time that fight, not
    the kernels; the untimed runs wake the threads that slept during the pause. OpenBLAS's threads can still
    slow the products timed after them for a few ms: a small product then reads high (128x256x169 0.43 ms
    instead of 0.05)."""
    times = [[] for _ in fns]
    for _ in range(rounds):
        for t, fn in zip(times, fns):
            time.sleep(0.01)
            fn()
            fn()
            for _ in range(max(1, runs // rounds)):
                start = time.perf_counter()
                fn()
                t.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def product_table(net, runs):
    print(f"{'layer':>5} {'M':>5} {'K':>5} {'N':>6} {'GFLOP':>6} {'exact ms':>9} {'blas ms':>8} {'ratio':>6}")
    total = [0.0, 0.0]
    rng = np.random.default_rng(0)
    for i, layer in enumerate(net.layers):
        if layer.type != "convolutional" or layer.groups != 1:
            continue
        n, out_h, out_w = layer.out_shape
        M, K, N = n, layer.weights.shape[1], out_h * out_w
        a = rng.standard_normal((M, K), dtype=np.float32)
        b = rng.standard_normal((K, N), dtype=np.float32)
        c = np.empty((M, N), np.float32)
        ours, blas = medians([lambda: sgemm_darknet(a, b, c), lambda: np.matmul(a, b, out=c)], runs)
        total[0] += ours
        total[1] += blas
        print(f"{i:5d} {M:5d} {K:5d} {N:6d} {2e-9 * M * K * N:6.3f} {ours * 1e3:9.2f} {blas * 1e3:8.2f} "
              f"{ours / blas:6.2f}")
    print(f"{'all':>5} {'':>26} {total[0] * 1e3:9.2f} {total[1] * 1e3:8.2f} {total[0] / total[1]:6.2f}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("nets", nargs="*", default=["yolov3-tiny", "yolov4-tiny"])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--threads", type=int, help="threads of both pools (a loaded machine: 1 compares per core)")
    parser.add_argument("--layers", action="store_true", help="only the per-layer forward table")
    parser.add_argument("--products", action="store_true", help="only the product table")
    parser.add_argument("--shared", type=Path, default=SHARED, help="the shared reference data, used where present")
    parser.add_argument("--mirror", metavar="BASE_URL", help="fetch missing weights from BASE_URL/<file name>")
    args = parser.parse_args()
    try:
        weights = {name: weights_file(name, args.shared, args.mirror) for name in args.nets}
    except DarknetError as e:
        print(f"pydarknet: error: {e}", file=sys.stderr)
        return 1
    import numba
    print(cpu_line(), f"products: {products.backend()}, {numba.get_num_threads()} threads")
    for name in args.nets:
        net = Network(ROOT / "cfg" / f"{name}.cfg", quiet_unused=True)
        net.load(weights[name])
        print(f"== {name}")
        if not args.layers:
            product_table(net, args.runs)
        if not args.products:
            x = np.random.default_rng(1).random((1,) + net.input_shape, dtype=np.float32)
            rows, forward = time_layers(net, x, args.runs)
            print("\n".join(table_lines(f"layers in {products.backend()} (a random input), medians of {args.runs} "
                                         f"passes layer by layer, each in turn with a whole forward", rows, forward)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
