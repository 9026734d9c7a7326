"""`pydarknet datasets check DATA`, and the same look at the labels that `train` takes before its first iteration.

A fault is a line that training would skip or misread, or an image that cannot be used: a label line that is
not five numbers, a class outside [0, classes), x or y outside [0, 1], w or h outside (0, 1] (the rules of
files.labels.parse_label_line), an image that does not decode (the decoder's own words; `train` only asks that
the file be there, decoding every image is the check's). Each is one line, `file:line: problem`. Duplicate
boxes, images listed twice and images without labels (negatives, or forgotten labels) are counted, not faults.
"""
import os
from collections import Counter
from pathlib import Path

from ...files.config import DarknetError, read_data_cfg
from ...files.image import ImageError, load_image
from ...files.labels import label_path, parse_label_line, read_list

FIRST_FAULTS = 3   # how many faults `train`'s refusal names


def label_faults(path, classes):
    """(faults, boxes, duplicate boxes) of an image's label file; boxes None when it has no label file."""
    label = label_path(path)
    try:
        text = Path(label).read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return [], None, 0
    except OSError as e:
        return [f"{label}: cannot read: {e.strerror}"], None, 0
    faults, lines = [], Counter()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.split():
            continue
        _, problem = parse_label_line(line, classes)
        if problem:
            faults.append(f"{label}:{number}: {problem}")
        lines[tuple(line.split())] += 1
    return faults, sum(lines.values()), sum(n - 1 for n in lines.values())


def set_lists(data_file):
    """The data file's classes and its lists: {"train": paths, "valid": paths} (those it names)."""
    data = read_data_cfg(data_file)
    classes = data.int("classes", 0)
    if classes < 1:
        raise DarknetError(f"{data_file}: classes={classes}: give the number of classes (classes=N)")
    lists = {}
    for key in ("train", "valid"):
        if data.has(key):
            name = data.str(key)
            beside = Path(data_file).parent / name
            path = name if os.path.isabs(name) or os.path.exists(name) or not beside.exists() else beside
            lists[key] = read_list(path, data.where(key))
    if not lists:
        raise DarknetError(f"{data_file}: no train= or valid= list to check")
    return classes, lists


def check_set(data_file, on_line, decode=True, progress=None):
    """Check every image of DATA's train= and valid= lists and its labels: on_line(fault) for each fault, then
    on_line(summary). DarknetError at the end when there were faults. `decode`: decode each image (else only
    ask that its file be there)."""
    classes, lists = set_lists(data_file)
    listed = Counter(path for paths in lists.values() for path in paths)
    faults = boxes = duplicates = unlabelled = 0
    for done, path in enumerate(listed, 1):
        found = []
        try:
            if decode:
                load_image(path)
            elif not os.path.isfile(path):
                raise ImageError(f"cannot load image {path}: no such file")
        except ImageError as e:
            found.append(str(e))
        more, count, twice = label_faults(path, classes)
        found += more
        for fault in found:
            on_line(fault)
        faults += len(found)
        boxes += count or 0
        duplicates += twice
        unlabelled += not count
        if progress is not None:
            progress(done, len(listed))
    sizes = ", ".join(f"{len(paths)} {key}" for key, paths in lists.items())
    on_line(f"{len(listed)} images ({sizes}), {boxes} boxes; {unlabelled} images without labels, {duplicates} "
            f"duplicate boxes, {sum(n - 1 for n in listed.values())} images listed twice; {faults} faults")
    if faults:
        raise DarknetError(f"{data_file}: {faults} faults in its images or labels (listed above): fix or remove "
                           f"those lines and images, then check again")


def refuse_broken(paths, classes, data_file):
    """`train`'s look before the first iteration: DarknetError naming the first faults of the training images'
    labels (and the images that are not there), with where to see them all."""
    faults = []
    for path in paths:
        if not os.path.isfile(path):
            faults.append(f"{path}: no such image")
        faults += label_faults(path, classes)[0]
    if faults:
        raise DarknetError(f"{data_file}: {len(faults)} faults in the training set's labels or images, the first: "
                           + "; ".join(faults[:FIRST_FAULTS]) + f" (`pydarknet datasets check {data_file}` lists "
                           f"them all)")
