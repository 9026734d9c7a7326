"""Darknet's word trees (tree.c), for [softmax] tree= (hierarchical classifiers) and [region] tree= (YOLO9000),
and its class map files (utils.c's read_map), for [region] map= and a .data file's map=.

A tree file lists one class per line, `name parent_index` (parent -1 for the roots; a missing index also
means -1); a parent is always an earlier line, which darknet's hierarchy_predictions relies on. Consecutive
lines with the same parent form a group, the set a softmax runs over. Darknet's numbering of the groups is
kept: group 0 is the first run of lines (the roots when the file starts with them), and each class's `child`
is the group of its children, -1 for a leaf.
"""
from pathlib import Path

import numpy as np

from ..files.config import DarknetError
from ..kernels.region import hierarchy_predictions as _hierarchy_predictions


class Tree:
    """Node i has `name[i]` and `parent[i]` (-1 for a root); `child[i]` is the group of i's children (-1: none),
    `group[i]` the group of node i, `leaf[i]` whether no node names i as its parent; group g is the nodes
    group_offset[g] .. group_offset[g] + group_size[g] - 1. Arrays are int64 (leaf: bool), as the kernels take
    them."""

    def __init__(self, names, parents, path="<tree>"):
        self.path = str(path)
        self.name = list(names)
        n = self.n = len(self.name)
        self.parent = np.asarray(parents, np.int64).reshape(n)
        self.child = np.full(n, -1, np.int64)
        self.group = np.zeros(n, np.int64)
        offsets, sizes = [], []
        last_parent, run, groups = -1, 0, 0
        for i, parent in enumerate(self.parent):
            if not -1 <= parent < i:
                raise DarknetError(f"{self.path}:{i + 1}: parent {parent} must be -1 or an earlier line's index "
                                   + (f"(0..{i - 1})" if i else "(this is the first line)"))
            if parent != last_parent:      # a run ends: darknet records it as a group
                groups += 1
                offsets.append(i - run)
                sizes.append(run)
                run, last_parent = 0, parent
            self.group[i] = groups
            if parent >= 0:
                self.child[parent] = groups
            run += 1
        offsets.append(n - run)
        sizes.append(run)
        self.groups = len(sizes)
        self.group_offset = np.array(offsets, np.int64)
        self.group_size = np.array(sizes, np.int64)
        self.leaf = np.ones(n, np.bool_)
        self.leaf[self.parent[self.parent >= 0]] = False

    def probability(self, p, c, stride=1, start=0):
        """Darknet's get_hierarchy_probability: class c's conditional probabilities up to the root, multiplied."""
        prob = np.float32(1.0)
        while c >= 0:
            prob = np.float32(prob * p[start + c * stride])
            c = int(self.parent[c])
        return prob


def _lines(path, what):
    """The lines of a text file as darknet's fgetl reads them (split at '\\n' only; undecodable bytes
    replaced)."""
    try:
        text = Path(path).read_bytes().decode("utf-8", errors="replace")
    except OSError as e:
        raise DarknetError(f"{path}: cannot read the {what}: {e.strerror}") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def read_tree(path):
    """Read a darknet tree file (`name parent` per line); errors name the file and line."""
    names, parents = [], []
    for number, line in enumerate(_lines(path, "class tree"), 1):
        fields = line.split()
        names.append(fields[0] if fields else "")
        parent = -1
        if len(fields) > 1:
            try:
                parent = int(fields[1])
            except ValueError:
                raise DarknetError(f"{path}:{number}: parent '{fields[1]}' is not an integer "
                                   f"(expected 'name parent_index')") from None
        parents.append(parent)
    if not names:
        raise DarknetError(f"{path}: the class tree is empty")
    return Tree(names, parents, path)


def read_map(path):
    """A darknet class map file: one integer per line, read as darknet's read_map reads it (C's atoi: leading
    blanks, a sign, digits; what follows is ignored). A line with no integer at all (darknet would take 0) is
    an error naming the file and line."""
    values = []
    for number, line in enumerate(_lines(path, "class map"), 1):
        s = line.lstrip()
        digits = s[1:] if s[:1] in ("+", "-") else s
        n = len(digits) - len(digits.lstrip("0123456789"))
        if not n:
            raise DarknetError(f"{path}:{number}: '{line.strip()}': expected an integer")
        values.append(int(s[:len(s) - len(digits) + n]))
    return np.array(values, np.int64)


def hierarchy_predictions(predictions, tree, only_leaves=True):
    """Darknet's hierarchy_predictions, in place on one image's flat output: each node's conditional probability
    times its parent's (parents come first, so this gives the absolute probability), then, with only_leaves,
    inner nodes set to 0. Returns `predictions`."""
    _hierarchy_predictions(predictions.reshape(-1), 0, tree.n, tree.parent, tree.leaf, only_leaves, 1)
    return predictions


def read_option_file(section, key, read, error):
    """read(path) of the file the cfg option `key` names: as given (relative to the working directory, as darknet
    opens it), else beside the cfg file, else in the folder above it (darknet's cfgs live in cfg/ and name
    data/... files). Problems are raised as error(message, key), the layer's error naming the cfg file:line."""
    name = section.str(key)
    path = Path(name)
    candidates = [path]
    if not path.is_absolute():
        folder = Path(section.path).resolve().parent
        candidates += [folder / path, folder.parent / path]
    for candidate in candidates:
        if candidate.is_file():
            try:
                return read(candidate)
            except DarknetError as e:
                raise error(f"{key}={name}: {e}", key) from None
    tried = ", ".join(dict.fromkeys(str(p) for p in candidates))
    raise error(f"{key} file '{name}' not found (tried {tried})", key)
