"""Where a GPU's first training step leaves the CPU's exact one, layer by layer: the forward output, the delta after
backward and the parameters after the update (scaled errors |gpu - cpu| / max(1, |cpu|)), beside the same for the
CPU in the GPU's summation orders (BLAS's products, batch-norm's statistics summed as a tree): what the orders alone
move. A parameter error names its array by its place in the .weights file's order (a batch-normalised convolution's:
0 biases, 1 scales, 2 rolling mean, 3 rolling variance, 4 weights). Needs a CUDA GPU and the cuda extra.

    python3 tools/cuda_train_diff.py ../shared/golden/train_ab/yolov4-tiny_train [more case folders]

A case folder holds net.cfg, before.weights, x.npy and y.npy (../shared/golden/train_ab's layout).

Why the statistics: darknet sums each channel's mean and variance in one float32 chain over the batch's pixels (a
few units in the 5th digit off over 25,600 of them); the GPU's per-channel tree sums nearly exactly, and a few
batch-normalised layers of near-constant channels amplify that difference through backward (on an H200,
yolov4-tiny_train's step: the GPU and the CPU with tree-summed statistics both moved layer 0's weights 2.4e-4 from
the exact step, where BLAS's products alone move them 1.5e-7).
"""
import contextlib
import sys
from pathlib import Path

import numpy as np

from pydarknet.files.config import DarknetError
from pydarknet.kernels import backward, products
from pydarknet.kernels.activations import activate_row
from pydarknet.network.network import Network
from pydarknet.tasks.train.step import train_network

F32 = np.float32


def scaled(ours, ref):
    ref = np.asarray(ref, np.float64)
    if ours is None or ref.size == 0:
        return float("nan")
    ours = np.asarray(ours, np.float64).reshape(ref.shape)
    return float((np.abs(ours - ref) / np.maximum(1, np.abs(ref))).max())


def batchnorm_train_tree_sums(inp, out, scales, biases, rolling_mean, rolling_variance, mean, variance, x_norm,
                              activation, ab=False):
    """kernels.backward.batchnorm_train with each channel's mean and variance summed as the GPU sums them (a
    tree: here in float64, which it is close to) instead of darknet's float32 chain; the rest as that kernel."""
    n, c, spatial = out.shape
    m = (inp.sum((0, 2), dtype=np.float64) / (n * spatial)).astype(F32)
    deviation = (inp - m[:, None]).astype(np.float64)
    v = ((deviation ** 2).sum((0, 2)) / (n * spatial - 1)).astype(F32)
    mean[:], variance[:] = m, v
    rolling_mean[:] = rolling_mean * F32(0.99) + F32(0.01) * m
    rolling_variance[:] = rolling_variance * F32(0.99) + F32(0.01) * v
    v64 = v.astype(np.float64)
    denom = np.sqrt(v64 + np.float64(backward.BN_EPS)) if ab else np.sqrt(v64) + np.float64(backward.NORM_EPS)
    x_norm[...] = deviation / denom[:, None]
    out[...] = x_norm * scales[:, None] + biases[:, None]
    for row in out.reshape(-1, spatial):
        activate_row(row, activation)


@contextlib.contextmanager
def summed_as_on_the_gpu():
    """The CPU engine's training in the GPU's summation orders: BLAS's products, tree-summed statistics."""
    previous, darknet_order = products.set_backend("blas"), backward.batchnorm_train
    backward.batchnorm_train = batchnorm_train_tree_sums
    try:
        yield
    finally:
        backward.batchnorm_train = darknet_order
        products.set_backend(previous)


def one_step(case, device=None, gpu_orders=False):
    """The case's network after one training step (on `device`; on the CPU in darknet's summation orders, or
    with `gpu_orders` in the GPU's), and its loss."""
    net = Network(case / "net.cfg", quiet_unused=True).load(case / "before.weights")
    net.seen, net.quiet = 0, True
    if device is not None:
        net.to(device)
    with summed_as_on_the_gpu() if gpu_orders else contextlib.nullcontext():
        loss = float(train_network(net, np.load(case / "x.npy"), np.load(case / "y.npy")))
    return net, loss


def worst_parameter(ours, ref):
    """The largest scaled error among a layer's parameter arrays, as "error@place" ("-" for none)."""
    errors = [scaled(o, r) for r, o in zip(ref.weight_arrays(), ours.weight_arrays())]
    if not errors:
        return "-"
    place = int(np.argmax(errors))
    return f"{errors[place]:.2g}@{place}"


def device_delta(engine, index):
    delta = engine.deltas[index]
    return engine.be.to_host(delta) if hasattr(delta, "copy_to_host") else delta


def main(cases):
    for case in map(Path, cases):
        try:   # the GPU's step first: without a GPU, one line and no CPU steps
            gpu, gpu_loss = one_step(case, "cuda:0")
        except DarknetError as e:
            print(f"cuda_train_diff: {e}", file=sys.stderr)
            return 1
        exact, exact_loss = one_step(case)
        reordered, reordered_loss = one_step(case, gpu_orders=True)
        e = gpu.engine
        print(f"{case.name}: loss exact {exact_loss!r}, cpu in the gpu's orders {reordered_loss!r}, gpu {gpu_loss!r}")
        print("layer type           on gpu  output   delta    params   | cpu in the gpu's orders: output delta params")
        for i, (a, b, g) in enumerate(zip(exact.layers, reordered.layers, gpu.layers)):
            print(f"{i:5d} {a.type:14s} {str(e.on_device(g)):6s}  {scaled(e.host_output(i), a.output):.2g}"
                  f"  {scaled(device_delta(e, i), a.delta):.2g}  {worst_parameter(g, a)}"
                  f"   | {scaled(b.output, a.output):.2g} {scaled(b.delta, a.delta):.2g} {worst_parameter(b, a)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
