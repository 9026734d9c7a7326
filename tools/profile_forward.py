"""Where a forward pass's time goes, and how the exact products compare with OpenBLAS on the same shapes.

    python3 tools/profile_forward.py [yolov3-tiny|yolov4-tiny|tiny ...] [--runs N]

The weights come from ../shared/models where the reference data is beside the checkout, else from `pydarknet
download`'s cache, fetched into it on first use (as `make bench`'s).

Part 1: every convolution's product (filters x k by k x output positions), pydarknet's exact kernel and numpy's
matmul (OpenBLAS) in turn, medians and their ratio. Part 2: each layer's forward time (median), split
into the product and the rest for convolutions, and the forward's total outside the products.
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

from bench.peers import SHARED, weights_file   # tools/bench/: this script's folder is on sys.path

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


# The convolutional layer's product entry points, one per kind of products (each timed whole: conv_image's time
# includes packing the columns from the image, im2col's job otherwise; conv_bf16's and the int16 ones' rounding the
# image; the Winograd ones' transforms).
PRODUCTS = ("gemm_nn", "conv_image", "conv_winograd", "conv_bf16", "conv_int16", "conv_int16_winograd",
            "depthwise_conv")


def layer_table(net, x, runs):
    """Per layer: median forward time, and for convolutions the time of its products (PRODUCTS patched)."""
    spent = {}
    import pydarknet.network.layers.convolutional as conv

    def timing(inner):
        def timed(*args):
            start = time.perf_counter()
            inner(*args)
            spent[current[0]] = spent.get(current[0], 0.0) + time.perf_counter() - start
        return timed

    current = [None]
    per_layer = [[] for _ in net.layers]
    per_product = [[] for _ in net.layers]
    originals = {name: getattr(conv, name) for name in PRODUCTS}
    for name, product in originals.items():
        setattr(conv, name, timing(product))
    try:
        for run in range(runs + 1):
            h = x
            for i, layer in enumerate(net.layers):
                current[0] = i
                spent.pop(i, None)
                start = time.perf_counter()
                h = layer.forward(h, net)
                layer.output = h
                if run:
                    per_layer[i].append(time.perf_counter() - start)
                    per_product[i].append(spent.get(i, 0.0))
    finally:
        for name, product in originals.items():
            setattr(conv, name, product)
    total = prod = 0.0
    print(f"{'layer':>5} {'type':<14} {'ms':>7} {'product':>8} {'rest':>7}")
    for i, layer in enumerate(net.layers):
        t, p = statistics.median(per_layer[i]), statistics.median(per_product[i])
        total += t
        prod += p
        print(f"{i:5d} {layer.type:<14} {t * 1e3:7.2f} {p * 1e3:8.2f} {(t - p) * 1e3:7.2f}")
    print(f"total {total * 1e3:.1f} ms, products {prod * 1e3:.1f} ms, outside the products {(total - prod) * 1e3:.1f} ms "
          f"({(total - prod) / total:.0%})")


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
            layer_table(net, x, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
