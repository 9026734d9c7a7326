"""Datasets in darknet's layout: image lists and YOLO label files, as training, evaluation and anchors read them.

Layout. A `train=` / `valid=` list file names one image per line. Each image's boxes are in a text file
found as darknet finds it (`label_path`), one box per line: ``class cx cy w h``, the centre and size relative
to the image (0..1).

Boxes in memory. ``read_labels`` returns float32 rows ``[x, y, w, h, class]`` -- the order of darknet's
training truth rows (what `fill_truth_detection` writes and the [yolo]/[region] layers read), so a label
array and a truth array have the same layout.
"""
import os
import re
from pathlib import Path

import numpy as np

from .config import DarknetError, warn


def read_list(list_path, where=None):
    """The image paths listed in a `train=`/`valid=` list file, one per line (blank lines skipped).

    A relative entry is taken relative to the working directory when it exists there (darknet's rule), else
    relative to the list file's folder when it exists there; the path is returned as it resolved (not made
    absolute). An entry found in neither place is returned unchanged, and fails when it is loaded.
    `where` ("file.data:line") is named in the error when the list file itself is missing.
    """
    path = Path(list_path)
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as e:
        reason = "no such file" if isinstance(e, FileNotFoundError) else (e.strerror or str(e))
        named = f" (named at {where})" if where else ""
        raise DarknetError(f"{list_path}: cannot read image list: {reason}{named}") from None
    folder = path.parent
    paths = []
    for line in text.splitlines():
        entry = line.strip()
        if not entry:
            continue
        if not os.path.isabs(entry) and not os.path.exists(entry):
            beside = folder / entry
            if beside.exists():
                entry = str(beside)
        paths.append(entry)
    return paths


def _first_replace(text, old, new):
    """darknet's find_replace: the first occurrence only."""
    return text.replace(old, new, 1)


def _darknet_label_path(image_path):
    """Where pjreddie's fill_truth_detection looks: the first "images", "JPEGImages" and "raw" substrings
    each become "labels", then the image extension becomes ".txt" (any extension here: darknet only knows
    .jpg .png .JPG .JPEG and otherwise reads the image itself as a label file)."""
    p = _first_replace(image_path, "images", "labels")
    p = _first_replace(p, "JPEGImages", "labels")
    p = _first_replace(p, "raw", "labels")
    return _with_txt(p)


def _with_txt(path):
    head, tail = os.path.split(path)
    stem = tail.rsplit(".", 1)[0] if "." in tail.lstrip(".") else tail
    return os.path.join(head, stem + ".txt") if head else stem + ".txt"


def _component_label_path(image_path):
    """The same rule on whole folder names only: the last folder named images/JPEGImages becomes labels
    (avoids darknet's substring accidents, e.g. "drawings" -> "dlabelsings")."""
    parts = re.split(r"([/\\])", image_path)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] in ("images", "JPEGImages"):
            parts[i] = "labels"
            return _with_txt("".join(parts))
    return None


def label_path(image_path):
    """The label file of an image: darknet's location if it exists (pjreddie's find_replace chain
    images/JPEGImages/raw -> labels, extension -> .txt), else the same rule applied to whole folder names,
    else the ``.txt`` beside the image. When none exists, darknet's location is returned."""
    image_path = os.fspath(image_path)
    darknet = _darknet_label_path(image_path)
    candidates = [darknet, _component_label_path(image_path), _with_txt(image_path)]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate):
            return candidate
    return darknet


_EMPTY = np.zeros((0, 5), np.float32)


def parse_label_line(line, classes=None):
    """One line of a label file: ((x, y, w, h, class), None), or (None, the problem) when it is not five numbers,
    its class is not an integer in [0, classes) (classes None: any >= 0), a number is not finite, w or h is not
    in (0, 1], the centre is outside 0..1 or at (0, 0) (darknet reads that as no box)."""
    fields = line.split()
    if len(fields) != 5:
        return None, f"expected 'class x y w h', got {len(fields)} fields: '{line.strip()}'"
    try:
        cls = int(fields[0])
    except ValueError:
        return None, f"class '{fields[0]}' is not an integer"
    try:
        x, y, w, h = (float(v) for v in fields[1:])
    except ValueError:
        return None, f"cannot read numbers in '{line.strip()}'"
    if cls < 0 or (classes is not None and cls >= classes):
        return None, f"class {cls} out of range" + (f" (classes={classes})" if classes is not None else "")
    if not all(np.isfinite((x, y, w, h))):
        return None, f"non-finite value in '{line.strip()}'"
    if not (0 < w <= 1 and 0 < h <= 1):
        return None, f"box size {w:g} x {h:g} not in (0, 1] (relative to the image)"
    if not (0 <= x <= 1 and 0 <= y <= 1):
        return None, f"box centre ({x:g}, {y:g}) outside the image"
    if x == 0 and y == 0:
        return None, "box centre at (0, 0) (darknet reads it as no box)"
    return (x, y, w, h, cls), None


def read_labels(label_file, classes=None, warned=None):
    """Read a YOLO label file: float32 array (n, 5), rows ``[x, y, w, h, class]`` (darknet's truth order).

    Bad lines are skipped with ``warn("FILE:LINE: ...")``: not exactly 5 fields, an unparseable or negative
    class (or >= `classes` when given), a non-finite number, w or h <= 0 or > 1, a centre outside 0..1 or at
    (0, 0). A box whose edges stick out of the image is kept (training clamps it, as darknet's correct_boxes).
    A missing or unreadable file gives an empty array and one warning. `warned`, a set, silences repeated
    warnings about the same file (a loader keeps one per dataset).
    """
    label_file = os.fspath(label_file)
    quiet = warned is not None and label_file in warned
    complained = []

    def complain(message):
        if not quiet:
            warn(message)
        complained.append(message)

    try:
        with open(label_file, "rb") as f:
            text = f.read().decode("utf-8", errors="replace")
    except OSError as e:
        reason = "no such file" if isinstance(e, FileNotFoundError) else (e.strerror or str(e))
        complain(f"{label_file}: cannot read label file ({reason}): no boxes for this image")
        if warned is not None:
            warned.add(label_file)
        return _EMPTY.copy()
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.split():
            continue
        row, problem = parse_label_line(line, classes)
        if problem:
            complain(f"{label_file}:{number}: {problem}: line skipped")
        else:
            rows.append(row)
    if warned is not None and complained:
        warned.add(label_file)
    if not rows:
        return _EMPTY.copy()
    return np.array(rows, dtype=np.float32)
