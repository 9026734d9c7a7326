"""Where a forward pass's time goes, layer by layer, in the mode the network runs (its `products`, else the
process's): each layer's median time, split into its products and the rest (the passes over memory between
them), with an estimate of the bytes each part moves. `make bench` prints the table for a network and mode that
misses a speed target, `python3 -m tools.bench --layers NETWORK MODE` prints it alone, and
tools/profile_forward.py's per-layer part is this table in the process's mode.

The products are the calls a [convolutional] or [connected] layer makes into kernels.products (PRODUCT_CALLS),
each timed whole: so their time includes what those calls do inside them (the columns packed from the image, the
Winograd transforms, the image rounded into int16 or bf16 words and copied into padded planes). Everything else a
layer does is the rest: batch-norm, bias and activation, pooling, upsampling, concatenation and the other layers'
copies.
"""
import functools
import re
import statistics
import textwrap
import time
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np

from pydarknet.kernels.epilogue import Store
from pydarknet.kernels.products import using
from pydarknet.network.layers import connected, convolutional
from pydarknet.network.layers.base import same_memory
from pydarknet.tasks import engines

# The product calls of each layer type, by the names its module calls them under.
PRODUCT_CALLS = {"convolutional": (convolutional, ("gemm_nn", "conv_image", "image_convolution",
                                                   "pointwise_convolution", "winograd_convolution", "bf16_convolution",
                                                   "int16_convolution", "conv_int16_winograd",
                                                   "depthwise_convolution")),
                 "connected": (connected, ("gemm_nn",))}
# Of those, the ones that make a convolution for a layer's plan to keep (Convolutional.plan): what they return is timed.
PREPARED = ("image_convolution", "pointwise_convolution", "winograd_convolution", "bf16_convolution",
            "int16_convolution", "depthwise_convolution")
QUIET = 0.02   # seconds before each timed pass (peers.QUIET: the threads of the pass before have gone to sleep)
STORED = "store"   # among a layer's calls: its products finished the output as they stored it (the fused plan)


class LayerTime(NamedTuple):
    """One layer's row: medians in seconds, estimates in bytes (see table_lines)."""
    index: int
    type: str
    shape: tuple       # its output (channels, height, width)
    seconds: float     # median of its forward
    products: float    # median of its product calls' time in the same passes
    moved: int         # bytes moved by the whole layer
    passes: int        # bytes moved by its passes outside the products

    @property
    def rest(self):
        return self.seconds - self.products


class _Seen(NamedTuple):
    """One layer in one pass layer by layer."""
    seconds: float
    products: float
    given: np.ndarray       # its input
    output: np.ndarray
    written_before: bool    # its output written by the layer before (a max pool the convolution did)


class _Recorder:
    """What the layer being run spends in its product calls, and the scratch bytes they fill."""

    def __init__(self, count):
        self.layer = 0
        self.seconds = [0.0] * count
        self.scratch = [0] * count   # (asked for as each layer's plan is made: kept from pass to pass)
        self.calls = [set() for _ in range(count)]

    def start(self, index):
        self.layer = index
        self.seconds[index], self.calls[index] = 0.0, set()


@contextmanager
def _recording(recorder):
    """PRODUCT_CALLS timed into `recorder` until the block ends (for PREPARED, the convolutions they make, which the
    plans made meanwhile keep), and the scratch the products fill counted as the plans ask for it: the network's
    kept scratch (convolutional.scratch and aligned_scratch: Winograd's V and M, the int16 and bf16 words, the AMX
    copies); conv_direct's zero-padded planes are a band's at a time, in the cache, and not counted."""
    def timed(name, call):
        def run(*args, **kwargs):
            recorder.calls[recorder.layer].add(name)
            if any(isinstance(a, Store) and a.affine.shape[1] for a in (*args, *kwargs.values())):
                recorder.calls[recorder.layer].add(STORED)
            start = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                recorder.seconds[recorder.layer] += time.perf_counter() - start
        return run

    def counted(call, filled):
        def run(*args):
            result = call(*args)
            recorder.scratch[recorder.layer] += filled(args, result).nbytes
            return result
        return run

    def prepared(name, make):
        return lambda *args, **kwargs: timed(name, make(*args, **kwargs))

    patches = [(module, name, (prepared if name in PREPARED else timed)(name, getattr(module, name)))
               for module, names in PRODUCT_CALLS.values() for name in names]
    patches += [(convolutional, name, counted(getattr(convolutional, name), lambda args, array: array))
                for name in ("scratch", "aligned_scratch")]
    originals = [(module, name, getattr(module, name)) for module, name, _ in patches]
    try:
        for module, name, patched in patches:
            setattr(module, name, patched)
        yield
    finally:
        for module, name, original in originals:
            setattr(module, name, original)


def _layered_pass(net, x, recorder):
    """net's forward on x layer by layer, as Network.forward runs it: a _Seen per layer. net is a replica of the
    network Network.forward times, whose plans keep the timed convolutions (_recording's)."""
    seen = []
    with using(net.products), _recording(recorder):
        net.share_outputs(x.shape[0])   # the outputs' memory as the forward's (network/outputs.py)
        for i, layer in enumerate(net.layers):
            written_before = bool(getattr(layer, "pooled_from", ()))
            recorder.start(i)
            start = time.perf_counter()
            out = layer.forward(x, net)
            seconds = time.perf_counter() - start
            layer.output = out
            seen.append(_Seen(seconds, recorder.seconds[i], x, out, written_before))
            x = out
    return seen


def layer_bytes(net, index, given, output, written_before, pooled, scratch, calls):
    """(bytes the layer moves, bytes its passes outside the products move): an estimate by the float32 planes (and
    the scratch arrays), each counted in full as if it went to memory and back (a plane still in the cache moves
    less). A layer with products reads its input and weights, writes its output, writes and reads the scratch its
    products fill; its passes after them read and write the output (batch-norm, bias, activation) and
    write the max pool's output it pools into, unless its products stored through the fused plan (calls has
    STORED: those passes are then the products', and the pool's output is counted in what the layer moves, not in
    its passes). Another layer reads its input and the other layers it reads (a [route]: the parts it copies) and
    writes its output; it moves nothing where it hands on a view of its input, or its output was written in place
    (written_before: a max pool done by the convolutions before; the parts of a [route] its sources wrote into it).
    A convolution that hands its output over (its plan's words_out, Convolutional.hands_over) writes the next
    layer's bf16 words instead of its output, and that layer reads them (words_in), not the float32 planes.
    pooled: the part of a max pool's output that this layer's pass wrote, or None; scratch: the bytes of the
    scratch its products filled; calls: their names."""
    layer = net.layers[index]
    if layer.type in PRODUCT_CALLS:
        plan = net.plans.get(id(layer))
        words_in, words_out = getattr(plan, "words_in", None), getattr(plan, "words_out", None)
        read = given.nbytes if words_in is None else words_in.nbytes
        written = output.nbytes if words_out is None else words_out.nbytes
        pool = 0 if pooled is None else pooled.nbytes
        passes = 0 if STORED in calls else 2 * output.nbytes + pool
        weights = getattr(layer, "weights", None)
        moved = read + (0 if weights is None else weights.nbytes) + written + 2 * scratch + passes
        return moved + (pool if STORED in calls else 0), passes
    if written_before:
        return 0, 0
    if layer.type == "route":
        flat, start, copied = output.reshape(output.shape[0], -1), 0, 0
        for part in layer.source_parts(net, output.shape[0], "output"):
            if not same_memory(part, flat[:, start:start + part.shape[1]]):
                copied += part.nbytes
            start += part.shape[1]
        return 2 * copied, 2 * copied
    if np.may_share_memory(output, given):
        return 0, 0
    moved = given.nbytes + sum(net.layers[j].output.nbytes for j in layer.reads_layers) + output.nbytes
    return moved, moved


def time_layers(net, x, runs, warmup=2, quiet=QUIET):
    """Each layer of net's forward on x (n, c, h, w), in net's products (its `products`, else the process's), on
    the threads the kernels have: `runs` passes layer by layer, each in turn with a whole forward (Network.forward,
    timed too), each pass `quiet` seconds after the one before, after `warmup` untimed rounds. Returns ([LayerTime],
    the whole forward's median seconds)."""
    count = len(net.layers)
    recorder = _Recorder(count)
    layered = net.replica()   # its own plans, made with the timed products (_recording)
    layers, products, whole = [[] for _ in range(count)], [[] for _ in range(count)], []
    for run in range(warmup + runs):
        time.sleep(quiet)
        start = time.perf_counter()
        net.forward(x)
        seconds = time.perf_counter() - start
        time.sleep(quiet)
        seen = _layered_pass(layered, x, recorder)
        if run < warmup:
            continue
        whole.append(seconds)
        for i, layer in enumerate(seen):
            layers[i].append(layer.seconds)
            products[i].append(layer.products)
    rows = []
    for i, (layer, this) in enumerate(zip(layered.layers, seen)):   # (the arrays seen are the replica's)
        # the max pool this convolution pooled into: the next layer, or the one after the route it writes into
        pool, first = layer.pool_target(layered, x.shape[0]) if layer.type == "convolutional" else (None, 0)
        pooled = None
        if pool is not None and seen[pool.index].written_before:
            pooled = seen[pool.index].output[:, first:first + layer.out_shape[0]]
        moved, passes = layer_bytes(layered, i, this.given, this.output, this.written_before, pooled,
                                    recorder.scratch[i], recorder.calls[i])
        rows.append(LayerTime(i, layer.type, tuple(layer.out_shape), statistics.median(layers[i]),
                              statistics.median(products[i]), moved, passes))
    return rows, statistics.median(whole)


COLUMNS = ("ms: the layer's forward; products: its product calls (the convolution's matrix product, Winograd or "
           "reduced-precision call, with the packing, transforms and rounding into words they do inside, and the "
           "fast modes' fused store: batch-norm, bias, activation and a 2x2 max pool applied as they store each "
           "row); rest: ms - products (the passes over memory the products did not fuse: batch-norm, bias, "
           "activation, pooling, copies)",
           "MB: bytes moved, estimated by the float32 planes, each counted in full as if it went to memory: input "
           "and weights read, output written (the next layer's bf16 words where the layer hands them over, which "
           "that layer reads), the products' scratch (Winograd's V and M, words, padded copies) "
           "written and read, and the rest's passes; rest MB: the rest's passes alone (a product's output read and "
           "written by bias and activation; the max pool it pools into "
           "written; none where the products stored through the fused plan; "
           "another layer's inputs read and output written, nothing for a view or an output written in place); "
           "GB/s: rest MB / rest ms")


PEER_COLUMN = ("{peer}: OpenVINO's own timing (PERF_COUNT) of the nodes of `pydarknet export onnx`'s graph that "
               "compute the layer, medians of as many runs, each after the same pause; a layer it fused into another "
               "shows nothing")


def table_lines(title, rows, forward, peer=None, peer_name="ov f32"):
    """The per-layer table: `title`, what the columns are, a line per LayerTime, and the total line (the sum of
    the layers against the whole forward's median, `forward` seconds). With `peer` ({layer index: seconds},
    peer_layers'), a last column `peer_name` beside each layer, and the peer's sum on the total line."""
    wrap = functools.partial(textwrap.wrap, width=118, initial_indent="  ", subsequent_indent="    ",
                             break_on_hyphens=False)
    columns = COLUMNS if peer is None else COLUMNS + (PEER_COLUMN.format(peer=peer_name),)
    lines = [title] + [line for text in columns for line in wrap(text)]
    head = (f"{'layer':>5} {'type':<14} {'output':>13} {'ms':>7} {'products':>8} {'rest':>7} {'MB':>7} "
            f"{'rest MB':>7} {'GB/s':>6}")
    lines.append(head if peer is None else f"{head} {peer_name:>10}")
    for row in rows:
        line = (f"{row.index:5d} {row.type:<14} {'x'.join(map(str, row.shape)):>13} {row.seconds * 1e3:7.2f} "
                f"{row.products * 1e3:8.2f} {row.rest * 1e3:7.2f} {row.moved / 1e6:7.1f} {row.passes / 1e6:7.1f} "
                f"{rate(row.passes, row.rest):>6}")
        if peer is not None:
            line += f" {peer[row.index] * 1e3:10.2f}" if row.index in peer else f" {'-':>10}"
        lines.append(line)
    total = sum(row.seconds for row in rows)
    products = sum(row.products for row in rows)
    moved, passes = sum(row.moved for row in rows), sum(row.passes for row in rows)
    lines.append(f"total: layers {total * 1e3:.2f} ms (the whole forward {forward * 1e3:.2f} ms), products "
                 f"{products * 1e3:.2f} ms, rest {(total - products) * 1e3:.2f} ms ({(total - products) / total:.0%}), "
                 f"{moved / 1e6:.1f} MB moved, rest {passes / 1e6:.1f} MB at {rate(passes, total - products)} GB/s"
                 + ("" if peer is None else f"; {peer_name} {sum(peer.values()) * 1e3:.2f} ms"))
    return lines


LAYER_NODE = re.compile(r"layer_(\d+)_")   # the exporter names each node after its layer: layer_<index>_<type>...


def per_layer(timings):
    """{layer index: seconds} of a runtime's (node name, seconds) timings of `pydarknet export onnx`'s graph: each
    node to the layer its name names first (a layout reorder between two layers to the one before it, the input's
    to layer 0); nodes named after no layer are left out."""
    found = {}
    for name, seconds in timings:
        match = LAYER_NODE.search(name)
        if match:
            index = int(match.group(1))
            found[index] = found.get(index, 0.0) + seconds
    return found


def peer_layers(net, x, runs, precision, threads, warmup=2, quiet=QUIET):
    """{layer index: median seconds} of OpenVINO's own timing of each layer's nodes (PERF_COUNT, per_layer) in
    net's exported graph on x, compiled as the peers rows compile it (`precision` "f32", or None for its default)
    on `threads` threads, each run `quiet` seconds after the one before, as time_layers' passes; None without
    OpenVINO (the bench extra)."""
    if not engines.installed("openvino"):
        return None
    compiled = engines.openvino_compiled(engines.graph_file(net), threads, precision, profiled=True)
    request = compiled.create_infer_request()
    seen = []
    for run in range(warmup + runs):
        time.sleep(quiet)
        request.infer({0: x})
        if run >= warmup:
            seen.append(per_layer((node.node_name, node.real_time.total_seconds()) for node in request.profiling_info))
    return {index: statistics.median(timings.get(index, 0.0) for timings in seen) for index in seen[0]}


def rate(size, seconds):
    """GB/s of `size` bytes in `seconds`, or "-" for no bytes or no time."""
    return f"{size / seconds / 1e9:.1f}" if size and seconds > 0 else "-"
