"""Anchor boxes from a dataset's labels: IoU k-means (the YOLOv2 paper; AlexeyAB's `detector calc_anchors`).

Boxes are compared by their (w, h) only, as if they shared a corner; the distance is 1 - IoU. Clustering:

1. k-means++ seeding with 1 - IoU as the distance (the next centroid is drawn with probability proportional
   to the squared distance to the nearest one already chosen), from a seeded numpy Generator;
2. Lloyd iterations as AlexeyAB's do_kmeans: assign each box to the centroid of highest IoU (the first one on
   ties), move each centroid to the mean w, h of its boxes, until no assignment changes (at most 1000
   updates). A cluster left empty is re-seeded with the box farthest (lowest IoU) from its centroid;
3. `restarts` runs of 1-2, keeping the highest average IoU (mean over boxes of the best IoU with any
   centroid);
4. with `refine=True` (the default), the kept solution is refined: the same alternation, but each centroid
   moves to the (w, h) that maximises the summed IoU of its boxes (a shrinking grid search in log space)
   instead of their mean. The mean is not what maximises IoU, so this raises the average IoU further
   (74.0-74.1 % -> about 74.4 % on the shapes set); each step can only increase it.

Anchors come back sorted by area (w * h, ascending), as AlexeyAB sorts them.
"""
import difflib
import os
import re
from collections import namedtuple
from pathlib import Path

import numpy as np

from ..files.config import DarknetError, read_data_cfg, warn
from ..files.labels import label_path, read_labels, read_list
from ..files.resources import find_argument
from ..files.weights import atomic_write

__all__ = [
    "iou_wh", "kmeans_anchors", "calc_anchors", "read_training_boxes", "format_anchors", "format_anchors_report",
    "write_anchors_file", "anchors_plot", "cfg_with_anchors", "run_anchors", "KMeansResult",
]

MAX_ITERATIONS = 1000

KMeansResult = namedtuple("KMeansResult", "anchors avg_iou iterations assignments")


def iou_wh(boxes, centroids):
    """IoU of corner-aligned boxes: (n, 2) x (k, 2) widths/heights -> (n, k)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 2)
    c = np.asarray(centroids, dtype=np.float64).reshape(-1, 2)
    inter = np.minimum(b[:, None, 0], c[None, :, 0]) * np.minimum(b[:, None, 1], c[None, :, 1])
    union = (b[:, 0] * b[:, 1])[:, None] + (c[:, 0] * c[:, 1])[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
    return np.nan_to_num(iou, nan=0.0)


def _kmeans_pp(boxes, k, rng):
    n = len(boxes)
    chosen = [int(rng.integers(n))]
    dist = 1.0 - iou_wh(boxes, boxes[chosen[0]])[:, 0]
    for _ in range(1, k):
        weights = dist ** 2
        total = weights.sum()
        if total > 0:
            index = int(np.searchsorted(np.cumsum(weights), rng.random() * total, side="right"))
            index = min(index, n - 1)
        else:  # every box coincides with a centroid already: take an unused box
            unused = np.setdiff1d(np.arange(n), chosen)
            index = int(unused[rng.integers(len(unused))])
        chosen.append(index)
        dist = np.minimum(dist, 1.0 - iou_wh(boxes, boxes[index])[:, 0])
    return boxes[chosen].copy()


def _reseed_empty(boxes, centroids, assignments, counts):
    """Give each empty cluster the box with the lowest IoU to its own centroid (first on ties), taken out
    of its cluster. Deterministic."""
    empty = np.flatnonzero(counts == 0)
    if not len(empty):
        return False
    own = iou_wh(boxes, centroids)[np.arange(len(boxes)), assignments]
    for j in empty:
        movable = counts[assignments] > 1
        candidates = np.where(movable, own, np.inf)
        i = int(np.argmin(candidates))
        if not np.isfinite(candidates[i]):
            break
        counts[assignments[i]] -= 1
        assignments[i] = j
        counts[j] = 1
        own[i] = 1.0
        centroids[j] = boxes[i]
    return True


def _mean_update(boxes, assignments, k, centroids):
    counts = np.bincount(assignments, minlength=k)
    sums = np.zeros((k, 2))
    np.add.at(sums, assignments, boxes)
    filled = counts > 0
    centroids[filled] = sums[filled] / counts[filled, None]
    return counts


def _lloyd(boxes, centroids, update):
    """Alternate assignment and `update` until no assignment changes. Returns (centroids, assignments,
    number of updates)."""
    k = len(centroids)
    assignments = np.full(len(boxes), -1)
    iterations = 0
    while True:
        new = np.argmax(iou_wh(boxes, centroids), axis=1)
        if np.array_equal(new, assignments) or iterations >= MAX_ITERATIONS:
            break
        assignments = new
        before = centroids.copy()
        counts = update(boxes, assignments, k, centroids)
        iterations += 1
        if _reseed_empty(boxes, centroids, assignments, counts):
            update(boxes, assignments, k, centroids)
        if np.array_equal(before, centroids):
            break  # nothing moved (e.g. coinciding boxes re-seeded on ties): the next assignment is the same
    return centroids, assignments, iterations


_GRID = np.linspace(-1.0, 1.0, 9)


def _best_centroid(members, centroid):
    """The (w, h) maximising the summed IoU with `members`: shrinking 9 x 9 grid search around `centroid` in
    log space (the grid always contains the current point, so the sum never decreases)."""
    lw, lh = np.log(centroid)
    span = 0.25
    best = iou_wh(members, centroid).sum()
    for _ in range(14):
        ws = np.exp(lw + span * _GRID)
        hs = np.exp(lh + span * _GRID)
        cand = np.stack([np.repeat(ws, len(hs)), np.tile(hs, len(ws))], axis=1)
        scores = iou_wh(members, cand).sum(axis=0)
        j = int(np.argmax(scores))
        if scores[j] > best:
            best = scores[j]
            lw, lh = np.log(cand[j])
        span *= 0.5
    return np.exp([lw, lh])


def _iou_update(boxes, assignments, k, centroids):
    counts = np.bincount(assignments, minlength=k)
    for j in range(k):
        if counts[j]:
            centroids[j] = _best_centroid(boxes[assignments == j], centroids[j])
    return counts


def _avg_iou(boxes, centroids):
    return float(iou_wh(boxes, centroids).max(axis=1).mean())


def kmeans_anchors(boxes_wh, k, seed=0, restarts=10, refine=True):
    """IoU k-means on (n, 2) box sizes: KMeansResult(anchors (k, 2) sorted by area, avg_iou (0..1),
    iterations of the kept Lloyd run, assignments to the sorted anchors)."""
    boxes = np.asarray(boxes_wh, dtype=np.float64).reshape(-1, 2)
    k = int(k)
    if k < 1:
        raise DarknetError(f"number of clusters must be at least 1, got {k}")
    if len(boxes) < k:
        raise DarknetError(f"cannot make {k} anchors from {len(boxes)} boxes: need at least as many boxes as "
                           f"clusters")
    if not np.all(np.isfinite(boxes)) or np.any(boxes <= 0):
        raise DarknetError("box widths and heights must be positive and finite")
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(max(1, int(restarts))):
        centroids, assignments, iterations = _lloyd(boxes, _kmeans_pp(boxes, k, rng), _mean_update)
        score = _avg_iou(boxes, centroids)
        if best is None or score > best[0]:
            best = (score, centroids.copy(), iterations)
    score, centroids, iterations = best
    if refine:
        refined, _, _ = _lloyd(boxes, centroids.copy(), _iou_update)
        refined_score = _avg_iou(boxes, refined)
        if refined_score > score:
            score, centroids = refined_score, refined
    order = np.argsort(centroids[:, 0] * centroids[:, 1], kind="stable")
    centroids = centroids[order]
    assignments = np.argmax(iou_wh(boxes, centroids), axis=1)
    return KMeansResult(centroids, score, iterations, assignments)


def calc_anchors(boxes_wh, k, seed=0, restarts=10, refine=True):
    """IoU k-means anchors: (anchors (k, 2) float64 sorted by area, avg_iou as a fraction 0..1).
    Deterministic for a given seed. Raises DarknetError when k exceeds the number of boxes."""
    result = kmeans_anchors(boxes_wh, k, seed, restarts, refine)
    return result.anchors, result.avg_iou


# ---------------------------------------------------------------------------------------------------------
# Reading a dataset
# ---------------------------------------------------------------------------------------------------------

TrainingLabels = namedtuple("TrainingLabels", "images labels classes")


def read_training_labels(data_file, progress=None):
    """Every label of the `train=` list of a .data file, found as training finds them:
    TrainingLabels(number of images, (n, 5) float32 [x y w h class] rows, classes from the .data file).
    `progress(done, total)` is called after each image's labels."""
    options = read_data_cfg(data_file)
    train = options.str("train", "data/train.list")
    where = options.where("train")
    list_path = train
    if not os.path.isabs(train) and not os.path.exists(train):
        beside = Path(data_file).parent / train
        if beside.exists():
            list_path = str(beside)
    classes = options.int("classes", 0) if options.has("classes") else None
    paths = read_list(list_path, where)
    rows = []
    for done, path in enumerate(paths, 1):
        rows.append(read_labels(label_path(path), classes))
        if progress is not None:
            progress(done, len(paths))
    labels = np.concatenate(rows) if rows else np.zeros((0, 5), np.float32)
    return TrainingLabels(len(paths), labels, classes)


def read_training_boxes(data_file, width, height):
    """(n, 2) float64 box sizes of every training label, relative w, h scaled to width x height pixels."""
    labels = read_training_labels(data_file).labels
    return _scaled(labels, width, height)


def _scaled(labels, width, height):
    # AlexeyAB multiplies the float label values by the int size in float
    wh = labels[:, 2:4].astype(np.float32) * np.array([width, height], np.float32)
    return wh.astype(np.float64)


# ---------------------------------------------------------------------------------------------------------
# Output: AlexeyAB's report, anchors.txt, anchors.png
# ---------------------------------------------------------------------------------------------------------

def format_anchors(anchors, width=None):
    """AlexeyAB's anchors text: ``%3.0f,%3.0f`` pairs joined by ", " when width > 32, else ``%2.4f,%2.4f``
    (grid-unit anchors for [region] layers). Without `width`, integers when the largest value exceeds 32."""
    a = np.asarray(anchors, dtype=np.float64).reshape(-1, 2)
    big = (width > 32) if width is not None else (a.size and a.max() > 32)
    fmt = "{:3.0f},{:3.0f}" if big else "{:2.4f},{:2.4f}"
    return ", ".join(fmt.format(np.float32(w), np.float32(h)) for w, h in a)


def format_anchors_report(k, width, height, images, iterations, counters, avg_iou, anchors,
                          anchors_file="anchors.txt"):
    """The lines AlexeyAB's `detector calc_anchors` prints (progress and blank lines left out).
    `avg_iou` is a fraction (0..1); `counters` the number of boxes per class."""
    return [
        f" num_of_clusters = {k}, width = {width}, height = {height} ",
        f" read labels from {images} images ",
        " calculating k-means++ ...",
        f" iterations = {iterations} ",
        "counters_per_class = " + ", ".join(str(int(c)) for c in counters),
        f" avg IoU = {100 * float(avg_iou):2.2f} % ",
        f"Saving anchors to the file: {anchors_file} ",
        "anchors = " + format_anchors(anchors, width),
    ]


def write_anchors_file(path, anchors, width=None):
    """anchors.txt as AlexeyAB writes it: the anchors text, no newline."""
    atomic_write(path, format_anchors(anchors, width).encode())


def anchors_plot(boxes, anchors, path, width=None, height=None, size=640):
    """anchors.png: every box as a point at (w, h), coloured by its nearest anchor (highest IoU), and each
    anchor as a rectangle from the origin with a filled marker and its size."""
    import cv2

    from ..files.image import get_color

    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 2)
    anchors = np.asarray(anchors, dtype=np.float64).reshape(-1, 2)
    k = len(anchors)
    margin = 50
    extent_w = max([width or 0] + list(boxes[:, 0]) + list(anchors[:, 0]) + [1.0])
    extent_h = max([height or 0] + list(boxes[:, 1]) + list(anchors[:, 1]) + [1.0])
    extent = max(extent_w, extent_h)
    scale = (size - 2 * margin) / extent
    canvas = np.full((size, size, 3), 255, np.uint8)

    def point(w, h):
        return int(round(margin + w * scale)), int(round(size - margin - h * scale))

    def colour(j):
        return tuple(int(255 * get_color(c, j, k)) for c in (0, 1, 2))  # BGR order as darknet's draw

    origin = point(0, 0)
    cv2.line(canvas, origin, point(extent, 0), (0, 0, 0), 1)
    cv2.line(canvas, origin, point(0, extent), (0, 0, 0), 1)
    cv2.putText(canvas, "w", (size - margin + 8, origin[1] + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    cv2.putText(canvas, "h", (origin[0] - 4, margin - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    cv2.putText(canvas, f"{extent:.0f}", (point(extent, 0)[0] - 20, origin[1] + 18), cv2.FONT_HERSHEY_SIMPLEX,
                0.4, (0, 0, 0), 1)
    cv2.putText(canvas, f"{extent:.0f}", (4, point(0, extent)[1] + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                (0, 0, 0), 1)
    nearest = np.argmax(iou_wh(boxes, anchors), axis=1) if len(boxes) else np.zeros(0, int)
    for (w, h), j in zip(boxes, nearest):
        cv2.circle(canvas, point(w, h), 2, colour(j), -1)
    for j, (w, h) in enumerate(anchors):
        cv2.rectangle(canvas, origin, point(w, h), colour(j), 1)
        cv2.circle(canvas, point(w, h), 6, colour(j), -1)
        cv2.circle(canvas, point(w, h), 6, (0, 0, 0), 1)
    for w, h in anchors:  # labels last, on a white outline, so points do not hide them
        where = (point(w, h)[0] + 8, point(w, h)[1] - 6)
        cv2.putText(canvas, f"{w:.0f}x{h:.0f}", where, cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 3)
        cv2.putText(canvas, f"{w:.0f}x{h:.0f}", where, cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    ok, png = cv2.imencode(".png", canvas)
    if not ok:
        raise DarknetError(f"{path}: cannot encode the anchors plot")
    atomic_write(path, png.tobytes())
    return canvas


# ---------------------------------------------------------------------------------------------------------
# Rewriting a cfg
# ---------------------------------------------------------------------------------------------------------

_Section = namedtuple("_Section", "type header options last")  # options: key -> line index (first occurrence)


def _scan_cfg(lines):
    sections = []
    for i, raw in enumerate(lines):
        line = "".join(raw.split())
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            sections.append(_Section(line.strip("[]"), i, {}, [i]))
        elif sections and "=" in line:
            key = line.split("=", 1)[0]
            sections[-1].options.setdefault(key, i)
            sections[-1].last[0] = i
    return sections


def _value(lines, section, key):
    i = section.options.get(key)
    if i is None:
        return None
    return "".join(lines[i].split()).split("=", 1)[1]


def _int_value(lines, section, key, default):
    v = _value(lines, section, key)
    try:
        return int(v) if v is not None else default
    except ValueError:
        return default


_LINE = re.compile(r"^(\s*[^=]*?\s*=[ \t]*)(.*?)([ \t]*(?:\r\n|\n|\r)?)$", re.S)


def cfg_with_anchors(cfg_text, anchors, width=None, name="cfg", new_name=None):
    """The cfg text with the anchors applied, and a unified diff of the change: (new_text, diff).

    Every [yolo] and [region] section gets ``anchors=`` and ``num=`` k. The [yolo] masks split the sorted
    anchors between the [yolo] layers, smallest anchors to the layer whose current mask starts lowest (the
    finest grid: the last [yolo] of the stock yolov3 cfgs, the first of yolov4's) -- by file order, last
    first, when a mask is missing -- as evenly as possible. The ``filters=`` of the [convolutional] section
    right before each [yolo] becomes len(mask) * (classes + 5), before each [region] num * (classes + coords
    + 1). Every other line (comments, spacing, key spelling) is kept; a missing key is added at the end of its
    section. `width` picks AlexeyAB's number format (see format_anchors)."""
    anchors = np.asarray(anchors, dtype=np.float64).reshape(-1, 2)
    k = len(anchors)
    text = format_anchors(anchors, width).strip()
    lines = cfg_text.splitlines(keepends=True)
    newline = next((ln[len(ln.rstrip("\r\n")):] for ln in lines if ln.endswith(("\n", "\r"))), "\n")
    sections = _scan_cfg(lines)
    yolos = [s for s in sections if s.type == "yolo"]
    regions = [s for s in sections if s.type == "region"]
    if not yolos and not regions:
        raise DarknetError(f"{name}: no [yolo] or [region] section to put anchors in")
    if yolos and k < len(yolos):
        raise DarknetError(f"{name}: {k} anchors cannot be shared among {len(yolos)} [yolo] layers")

    edits = {}      # line index -> new value
    additions = {}  # line index of a section's last line -> new "key=value" lines after it

    def set_option(section, key, value):
        if key in section.options:
            edits[section.options[key]] = value
        else:
            additions.setdefault(section.last[0], []).append(f"{key}={value}")

    def previous_section(section):
        index = sections.index(section)
        return sections[index - 1] if index > 0 else None

    def set_filters(section, filters):
        conv = previous_section(section)
        if conv is None or conv.type not in ("convolutional", "conv"):
            warn(f"{name}:{section.header + 1}: [{section.type}] does not follow a [convolutional] section: "
                 f"its filters were not changed (they must be {filters})")
            return
        set_option(conv, "filters", str(filters))

    if yolos:
        def rank(pair):
            position, section = pair
            mask = _value(lines, section, "mask")
            first = None
            if mask:
                try:
                    first = min(int(v) for v in mask.split(",") if v)
                except ValueError:
                    first = None
            return (0, first, -position) if first is not None else (1, 0, -position)

        have_masks = all(_value(lines, s, "mask") for s in yolos)
        order = sorted(enumerate(yolos), key=rank) if have_masks else \
            sorted(enumerate(yolos), key=lambda pair: -pair[0])
        groups = np.array_split(np.arange(k), len(yolos))
        for (_, section), group in zip(order, groups):
            classes = _int_value(lines, section, "classes", 20)
            set_option(section, "mask", ",".join(str(i) for i in group))
            set_option(section, "anchors", text)
            set_option(section, "num", str(k))
            set_filters(section, len(group) * (classes + 5))
    for section in regions:
        classes = _int_value(lines, section, "classes", 20)
        coords = _int_value(lines, section, "coords", 4)
        set_option(section, "anchors", text)
        set_option(section, "num", str(k))
        set_filters(section, k * (classes + coords + 1))

    out = []
    for i, line in enumerate(lines):
        if i in edits:
            m = _LINE.match(line)
            line = m.group(1) + edits[i] + m.group(3)
        out.append(line)
        if i in additions:
            if not line.endswith(("\n", "\r")):
                out[-1] = line + newline
            out.extend(add + newline for add in additions[i])
    new_text = "".join(out)
    diff = "".join(difflib.unified_diff(cfg_text.splitlines(keepends=True), new_text.splitlines(keepends=True),
                                        fromfile=name, tofile=new_name or name))
    return new_text, diff


# ---------------------------------------------------------------------------------------------------------
# The `anchors` command
# ---------------------------------------------------------------------------------------------------------

def run_anchors(data_file, k, width, height, seed=0, show=False, cfg=None, out_dir=".", restarts=10, progress=None):
    """Everything `pydarknet anchors` does; returns the lines to print (prints nothing); `progress` as in
    read_training_labels.

    Reads the training labels of `data_file`, clusters them into `k` anchors for a width x height network,
    writes out_dir/anchors.txt, out_dir/anchors.png when `show`, and when `cfg` is given
    out_dir/<cfg stem>-anchors.cfg with the anchors, masks, num and filters set (its diff is in the lines)."""
    if width <= 0 or height <= 0:
        raise DarknetError(f"width and height must be positive, got {width} x {height}")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DarknetError(f"{out}: cannot create the output folder: {e.strerror or e}") from None
    data = read_training_labels(data_file, progress)
    boxes = _scaled(data.labels, width, height)
    if not len(boxes):
        raise DarknetError(f"{data_file}: no boxes in the labels of the training images")
    result = kmeans_anchors(boxes, k, seed=seed, restarts=restarts)
    ids = data.labels[:, 4].astype(int)
    classes = max(data.classes or 1, int(ids.max()) + 1)
    counters = np.bincount(ids, minlength=classes)
    anchors_file = out / "anchors.txt"
    lines = format_anchors_report(k, width, height, data.images, result.iterations, counters, result.avg_iou,
                                  result.anchors, anchors_file if out_dir != "." else "anchors.txt")
    write_anchors_file(anchors_file, result.anchors, width)
    if show:
        png = out / "anchors.png"
        anchors_plot(boxes, result.anchors, png, width, height)
        lines.append(f"Saving the anchors plot to the file: {png} ")
    if cfg is not None:
        cfg = Path(find_argument(cfg))   # cfg/shapes-tiny.cfg: pydarknet's copy when the directory has none
        try:
            cfg_text = cfg.read_bytes().decode("utf-8", errors="replace")
        except OSError as e:
            raise DarknetError(f"{cfg}: cannot read cfg: {e.strerror or e}") from None
        target = out / f"{cfg.stem}-anchors.cfg"
        new_text, diff = cfg_with_anchors(cfg_text, result.anchors, width, str(cfg), str(target))
        atomic_write(target, new_text.encode("utf-8"))
        lines.append(f"Saving the cfg with these anchors to the file: {target} ")
        lines.extend(diff.splitlines())
    return lines
