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
training, for a backward pass (keep_for_backward) or where every output is kept (every_output).

In the same passes a plain residual [shortcut] adds its `from` layer's output to its input's array in place and
hands that array on as its output (residuals_in_place), where nothing else reads its input: a convolution before it
whose products finish the store (1 x 1 products, Winograd's) then adds the residual as it stores its sums
(layers/convolutional.py residual_added), and no pass over the sum is left."""
from typing import NamedTuple

import numpy as np

from ..kernels.aligned import aligned_zeros


def shared_outputs(net, batch, sums):
    """{layer index: its output array for a pass of `batch` images}, for the layers whose output shares memory
    with others' (the arrays of layers whose lives do not overlap are the same memory), the residuals added in place
    being `sums` (residuals_in_place's); empty where nothing is shared (see the module's docstring)."""
    if net.train or net.keep_for_backward or net.every_output:
        return {}
    layers = net.layers
    last = lives(layers, sums)
    arrays, free, held = {}, [], []   # held: (last reader, array) of the outputs alive
    for index, layer in enumerate(layers):
        for k in range(len(held) - 1, -1, -1):
            if held[k][0] < index:   # its last reader ran before this layer: its array is free again
                free.append(held.pop(k)[1])
        if index in sums or not shares_output(layer, net, last):
            continue
        size = batch * int(np.prod(layer.out_shape))
        fits = [k for k, array in enumerate(free) if array.size >= size]
        array = free.pop(min(fits, key=lambda k: free[k].size)) if fits else aligned_zeros(size)
        held.append((last[index], array))
        arrays[index] = array[:size].reshape((batch,) + tuple(layer.out_shape))
    return arrays


class Residual(NamedTuple):
    """A [shortcut] adding in place: the layer that writes the array its input is (`writer`, the same or before it
    through layers handing their input on untouched) and the layer whose output it adds (`source`)."""
    writer: int
    source: int


def residuals_in_place(net):
    """{[shortcut] index: its Residual} for the shortcuts that add their `from` layer's output to their input's array
    in place in an inference pass and hand that array on as their output: a plain residual
    (Layer.residual_in_place) whose input is an array its writer owns that nothing else reads (no other layer names
    it or a layer handing it on, nor the caller after the pass), the residual written before. Empty where nothing is
    shared (see the module's docstring)."""
    if net.train or net.keep_for_backward or net.every_output:
        return {}
    named = {source for layer in net.layers for source in layer.reads_layers}
    sums = {}
    for index, layer in enumerate(net.layers):
        source = layer.residual_in_place()
        writer = index - 1
        while writer > 0 and net.layers[writer].hands_input_on:
            writer -= 1
        if source is None or writer < 0 or source >= writer or not net.layers[writer].keeps_output:
            continue
        chain = net.layers[writer:index]
        if layer.slot is None and not read_after(layer, net) and all(
                part.slot is None and part.index not in named and not read_after(part, net) for part in chain):
            sums[index] = Residual(writer, source)
    return sums


def lives(layers, sums=()):
    """For each layer, the index of the last layer that reads its output: the next layer (its input), the layers
    naming it (reads_layers), and through a layer handing its input on (keeps_output False, or a residual added in
    place: `sums`, residuals_in_place's) that layer's readers too."""
    last = [index + 1 for index in range(len(layers))]
    for index, layer in enumerate(layers):
        for source in layer.reads_layers:
            last[source] = max(last[source], index)
    for index in range(len(layers) - 1, 0, -1):
        if not layers[index].keeps_output or index in sums:
            last[index - 1] = max(last[index - 1], last[index])
            for source in layers[index].reads_layers:
                last[source] = max(last[source], last[index])
    return last


def read_after(layer, net):
    """Whether the caller reads `layer`'s output after the pass: the network's output and the detection layers'."""
    return layer is net.output_layer or getattr(layer, "detections", None) is not None


def shares_output(layer, net, last):
    """Whether `layer`'s output may share memory with others' (see the module's docstring)."""
    hosts = any(source.slot is not None and source.slot.route is layer
                for source in (net.layers[i] for i in layer.reads_layers))
    return (layer.keeps_output and not read_after(layer, net) and layer.slot is None and not hosts
            and not layer.pools_in_place(net) and last[layer.index] < len(net.layers))
