"""Which layers' outputs share memory in an inference pass: the network's memory plan.

Darknet gives every layer an output array of its own, and so did pydarknet: Yolo-Fastest's 131 layers write 30 MB
a pass at 320 x 320, so that each layer's output left the core's cache before the layer after the next read it
back. In inference most outputs are read only by the next layer or a few after it (a [route] or [shortcut] naming
it), so, as the runtimes do, an output whose last reader has run hands its array on to a later layer's output:
Yolo-Fastest's 100 outputs that may share then take 4 arrays.

An output keeps an array of its own (shared_outputs gives None for it) where someone may read it after the pass or
where another layer writes it: the network's output layer and the detection layers (read by the caller), a layer
writing into a concatenating route's output (route.Slot) and that route, a [maxpool] that the convolution before it
fills (pools_in_place), a layer whose output is not its own array (keeps_output False). Nothing is shared in
training, for a backward pass (keep_for_backward) or where every output is kept (every_output)."""
import numpy as np


def shared_outputs(net, batch):
    """{layer index: its output array for a pass of `batch` images}, for the layers whose output shares memory
    with others' (the arrays of layers whose lives do not overlap are the same memory); empty where nothing is
    shared (see the module's docstring)."""
    if net.train or net.keep_for_backward or net.every_output:
        return {}
    layers = net.layers
    last = lives(layers)
    arrays, free, held = {}, [], []   # held: (last reader, array) of the outputs alive
    for index, layer in enumerate(layers):
        for k in range(len(held) - 1, -1, -1):
            if held[k][0] < index:   # its last reader ran before this layer: its array is free again
                free.append(held.pop(k)[1])
        if not shares_output(layer, net, last):
            continue
        size = batch * int(np.prod(layer.out_shape))
        fits = [k for k, array in enumerate(free) if array.size >= size]
        array = free.pop(min(fits, key=lambda k: free[k].size)) if fits else np.empty(size, np.float32)
        held.append((last[index], array))
        arrays[index] = array[:size].reshape((batch,) + tuple(layer.out_shape))
    return arrays


def lives(layers):
    """For each layer, the index of the last layer that reads its output: the next layer (its input), the layers
    naming it (reads_layers), and through a layer handing its input on (keeps_output False: its output may be a
    view of it) that layer's readers too."""
    last = [index + 1 for index in range(len(layers))]
    for index, layer in enumerate(layers):
        for source in layer.reads_layers:
            last[source] = max(last[source], index)
    for index in range(len(layers) - 1, 0, -1):
        if not layers[index].keeps_output:
            last[index - 1] = max(last[index - 1], last[index])
            for source in layers[index].reads_layers:
                last[source] = max(last[source], last[index])
    return last


def shares_output(layer, net, last):
    """Whether `layer`'s output may share memory with others' (see the module's docstring)."""
    read_after = layer is net.output_layer or getattr(layer, "detections", None) is not None
    hosts = any(source.slot is not None and source.slot.route is layer
                for source in (net.layers[i] for i in layer.reads_layers))
    return (layer.keeps_output and not read_after and layer.slot is None and not hosts
            and not layer.pools_in_place(net) and last[layer.index] < len(net.layers))
