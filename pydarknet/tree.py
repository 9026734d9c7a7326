"""Class hierarchies (darknet's tree.c): YOLO9000's WordTree and hierarchical ImageNet labels.

A tree file lists one class per line, `name parent_index` (parent -1 for the roots; a missing index also
means -1). Consecutive lines with the same parent form a group, the set a softmax runs over. Darknet's
numbering of the groups is kept: group 0 is the first run of lines (the roots when the file starts with
them), and each class's `child` is the group of its children, -1 for a leaf.
"""
from pathlib import Path

import numpy as np

from .config import DarknetError


class Tree:
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
            if not -1 <= parent < n:
                raise DarknetError(f"{self.path}:{i + 1}: parent {parent} is not a line of the file "
                                   f"(0..{n - 1}, or -1 for none)")
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


def read_tree(path):
    """Read a darknet tree file (`name parent` per line)."""
    try:
        text = Path(path).read_bytes().decode("utf-8", errors="replace")
    except OSError as e:
        raise DarknetError(f"{path}: cannot read the class tree: {e.strerror}") from None
    names, parents = [], []
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for number, line in enumerate(lines, 1):
        fields = line.split()
        names.append(fields[0] if fields else "")
        parent = -1
        if len(fields) > 1:
            try:
                parent = int(fields[1])
            except ValueError:
                raise DarknetError(f"{path}:{number}: '{line.strip()}': expected 'name parent_index'") from None
        parents.append(parent)
    if not names:
        raise DarknetError(f"{path}: the class tree is empty")
    return Tree(names, parents, path)


def read_map(path):
    """A darknet class map file: one integer per line (darknet's read_map)."""
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError as e:
        raise DarknetError(f"{path}: cannot read the class map: {e.strerror}") from None
    values = []
    for number, line in enumerate(lines, 1):
        try:
            values.append(int(line.strip()))
        except ValueError:
            raise DarknetError(f"{path}:{number}: '{line.strip()}': expected an integer") from None
    return np.array(values, np.int64)
