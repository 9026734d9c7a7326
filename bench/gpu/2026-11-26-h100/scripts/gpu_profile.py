"""Where a GPU training step and a batch-32 forward spend their time (yolov4-tiny 416, random weights and data,
one box an image as tools/bench/gpu.py): the step's phases (forward_train, backward, update, each synchronized),
cProfile's top functions over three steps, and the launched batch-32 pass layer by layer (synchronized)."""
import cProfile
import pstats
import statistics
import sys
import time

import numpy as np

from pydarknet.network.network import Network
from pydarknet.tasks.train.step import train_network

cfg = sys.argv[1] if len(sys.argv) > 1 else "cfg/yolov4-tiny.cfg"
net = Network(cfg, quiet_unused=True).initialize(0).to("cuda:0")
net.quiet = True
engine, be = net.engine, net.engine.be
n = net.batch * net.subdivisions
rng = np.random.default_rng(0)
x = rng.random((n,) + net.input_shape, dtype=np.float32)
boxes = max(getattr(layer, "max_boxes", 1) for layer in net.layers)
truth = np.zeros((n, boxes * 5), np.float32)
truth[:, :5] = [.5, .5, .2, .3, 0]
phases = {}
for name in ("forward_train", "backward", "update"):
    method = getattr(engine, name)

    def timed(*args, _method=method, _name=name):
        be.synchronize()
        start = time.perf_counter()
        result = _method(*args)
        be.synchronize()
        phases.setdefault(_name, []).append(time.perf_counter() - start)
        return result
    setattr(engine, name, timed)
for _ in range(2):
    train_network(net, x, truth)
phases.clear()
for _ in range(5):
    start = time.perf_counter()
    train_network(net, x, truth)
    be.synchronize()
    phases.setdefault("whole step", []).append(time.perf_counter() - start)
for name, times in phases.items():
    print(f"training batch {n}: {name:13s} {1000 * statistics.median(times):8.1f} ms (median of {len(times)})")
profile = cProfile.Profile()
profile.enable()
for _ in range(3):
    train_network(net, x, truth)
be.synchronize()
profile.disable()
pstats.Stats(profile, stream=sys.stdout).sort_stats("tottime").print_stats(22)

infer = Network(cfg, quiet_unused=True).initialize(0).to("cuda:0")
infer.engine.graphs = False
xb = rng.random((int(sys.argv[2]) if len(sys.argv) > 2 else 32,) + infer.input_shape, dtype=np.float32)
infer.forward(xb)
e = infer.engine
layer_times = [[] for _ in infer.layers]
for _ in range(5):
    with e.be.active():
        e.input = h = e.be.to_device(xb)
        e.be.synchronize()
        for layer in infer.layers:
            start = time.perf_counter()
            h = e.outputs[layer.index] = e._layer_forward(layer, h)
            e.be.synchronize()
            layer_times[layer.index].append(time.perf_counter() - start)
rows = sorted(((statistics.median(t), layer) for t, layer in zip(layer_times, infer.layers)), key=lambda r: -r[0])
print(f"batch 32 launched pass, layers synchronized one by one: {1000 * sum(r[0] for r in rows):.1f} ms in all")
for seconds, layer in rows[:12]:
    print(f"  layer {layer.index:2d} {layer.type:13s} {layer.out_shape} {1000 * seconds:7.2f} ms")
