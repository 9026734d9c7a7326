"""Classifier results as darknet computes them: `top_k` (utils.c) and the word tree of a classifier's output
(`network_hierarchy`; the trees themselves and hierarchy_predictions are in tree.py)."""
import numpy as np


def top_k(probabilities, k):
    """The k best (index, probability) pairs, best first, exactly as darknet's top_k picks them.

    Darknet walks the values in index order and pushes each one down a k-slot list, displacing a slot only
    when strictly greater: among equal values the lower index ranks first. A NaN compares false both ways: it
    only ever lands in an empty slot, and once there no later value displaces it."""
    values = np.asarray(probabilities, np.float32).reshape(-1)
    k = max(0, min(int(k), values.size))
    slots = [-1] * k
    for i, value in enumerate(values.tolist()):
        current, cv = i, value
        for j in range(k):
            held = slots[j]
            if held < 0 or cv > values[held]:
                slots[j] = current
                if held < 0:
                    break
                current, cv = held, float(values[held])
    return [(i, float(values[i])) for i in slots if i >= 0]


def network_hierarchy(net):
    """The word tree darknet uses for a classifier's output: that of the last [softmax] with tree=."""
    tree = None
    for layer in net.layers:
        if layer.type == "softmax" and getattr(layer, "tree", None) is not None:
            tree = layer.tree
    return tree
