"""Where a GPU's first training step leaves the CPU's exact one, layer by layer: the forward output, the delta after
backward and the parameters after the update (scaled errors |gpu - cpu| / max(1, |cpu|)), beside the same for the
CPU with BLAS's products (another summation order: what rounding alone moves). Needs a CUDA GPU and the cuda extra.

    python3 tools/cuda_train_diff.py ../shared/golden/train_ab/yolov4-tiny_train [more case folders]

A case folder holds net.cfg, before.weights, x.npy and y.npy (../shared/golden/train_ab's layout).
"""
import sys
from pathlib import Path

import numpy as np

from pydarknet.files.config import DarknetError
from pydarknet.kernels import products
from pydarknet.network.network import Network
from pydarknet.tasks.train.step import train_network


def scaled(ours, ref):
    ref = np.asarray(ref, np.float64)
    if ours is None or ref.size == 0:
        return float("nan")
    ours = np.asarray(ours, np.float64).reshape(ref.shape)
    return float((np.abs(ours - ref) / np.maximum(1, np.abs(ref))).max())


def one_step(case, device=None, products_name="darknet"):
    """The case's network after one training step (on `device`, with `products_name`'s products on the CPU),
    and its loss."""
    net = Network(case / "net.cfg", quiet_unused=True).load(case / "before.weights")
    net.seen, net.quiet = 0, True
    if device is not None:
        net.to(device)
    previous = products.set_backend(products_name)
    try:
        loss = float(train_network(net, np.load(case / "x.npy"), np.load(case / "y.npy")))
    finally:
        products.set_backend(previous)
    return net, loss


def device_delta(engine, index):
    delta = engine.deltas[index]
    return delta.copy_to_host() if hasattr(delta, "copy_to_host") else delta


def main(cases):
    for case in map(Path, cases):
        try:   # the GPU's step first: without a GPU, one line and no CPU steps
            gpu, gpu_loss = one_step(case, "cuda:0")
        except DarknetError as e:
            print(f"cuda_train_diff: {e}", file=sys.stderr)
            return 1
        exact, exact_loss = one_step(case)
        blas, blas_loss = one_step(case, products_name="blas")
        e = gpu.engine
        print(f"{case.name}: loss exact {exact_loss!r}, blas {blas_loss!r}, gpu {gpu_loss!r}")
        print("layer type           on gpu  output   delta    params   | blas: output delta params")
        for i, (a, b, g) in enumerate(zip(exact.layers, blas.layers, gpu.layers)):
            params = [max([scaled(o, r) for r, o in zip(a.weight_arrays(), x.weight_arrays())] or [0.0])
                      for x in (g, b)]
            print(f"{i:5d} {a.type:14s} {str(e.on_device(g)):6s}  {scaled(e.host_output(i), a.output):.2g}"
                  f"  {scaled(device_delta(e, i), a.delta):.2g}  {params[0]:.2g}"
                  f"   | {scaled(b.output, a.output):.2g} {scaled(b.delta, a.delta):.2g} {params[1]:.2g}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
