"""Classifier results as darknet computes them: `top_k` (utils.c), word trees (tree.c) and the hierarchical
probabilities a tree softmax's output turns into (`hierarchy_predictions`)."""
from pathlib import Path

import numpy as np

from .config import DarknetError


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


class Tree:
    """Darknet's word tree: node i has `name[i]` and `parent[i]` (-1 for a root); sibling nodes are listed
    together and form a group (group_offset, group_size); `child[i]` is the group of i's children (-1: none);
    `group[i]` the group of node i; `leaf[i]` whether no node names i as its parent."""

    def __init__(self, names, parents):
        self.name = list(names)
        self.parent = list(parents)
        self.n = n = len(self.parent)
        self.child = [-1] * n
        self.group = [0] * n
        self.group_offset, self.group_size = [], []
        last_parent, size, groups = -1, 0, 0
        for i, parent in enumerate(self.parent):
            if parent != last_parent:  # a new run of siblings starts here
                groups += 1
                self.group_offset.append(i - size)
                self.group_size.append(size)
                size = 0
                last_parent = parent
            self.group[i] = groups
            if parent >= 0:
                self.child[parent] = groups
            size += 1
        self.group_offset.append(n - size)
        self.group_size.append(size)
        self.groups = groups + 1
        self.leaf = [True] * n
        for parent in self.parent:
            if parent >= 0:
                self.leaf[parent] = False


def read_tree(path):
    """A tree file: one node per line, `name parent_index` (parent -1 or absent for a root)."""
    path = Path(path)
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as e:
        raise DarknetError(f"{path}: cannot read tree: {e.strerror}") from None
    names, parents = [], []
    for number, line in enumerate(lines, 1):
        fields = line.split()
        parent = -1
        if len(fields) >= 2:
            try:
                parent = int(fields[1])
            except ValueError:
                raise DarknetError(f"{path}:{number}: parent '{fields[1]}' is not an integer") from None
        if not -1 <= parent < len(names):
            raise DarknetError(f"{path}:{number}: parent {parent} must be -1 or an earlier line's index "
                               f"(0..{len(names) - 1})")
        names.append(fields[0] if fields else "")
        parents.append(parent)
    if not names:
        raise DarknetError(f"{path}: empty tree file")
    return Tree(names, parents)


def hierarchy_predictions(predictions, tree, only_leaves=True):
    """In place on one image's flat output: each node's conditional probability times its parent's (parents
    come first, so this gives the absolute probability), then, with only_leaves, inner nodes set to 0."""
    p = predictions.reshape(-1)
    for j, parent in enumerate(tree.parent):
        if parent >= 0:
            p[j] *= p[parent]
    if only_leaves:
        p[~np.asarray(tree.leaf, bool)] = 0
    return predictions


def network_hierarchy(net):
    """The word tree darknet uses for a classifier's output: that of the last [softmax] with tree=."""
    tree = None
    for layer in net.layers:
        if layer.type == "softmax" and getattr(layer, "tree", None) is not None:
            tree = layer.tree
    return tree
