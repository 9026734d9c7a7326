"""Evaluating a trained network on the `valid=` list of a .data file.

* `run_map`: AlexeyAB's `detector map` -- per-class average precision, precision/recall/F1 and average IoU at a
  confidence threshold, and the mean average precision, with AlexeyAB's printed report. Split into
  `collect_detections` (the network run over the list, done once) and `compute_map` (the statistics, cheap), so
  several threshold or `points` settings can share one run.
* `run_valid`: pjreddie's `detector valid` -- detections written as VOC `comp4_det_test_<class>.txt` files,
  COCO `coco_results.json` or the ImageNet detection format, under `results=`.
* `run_recall`: pjreddie's `detector recall` -- the proposal recall of the objectness alone.
* `run_classifier_valid`: pjreddie's `classifier valid` -- running top-1 and top-k accuracy.

None of them prints: they return the report's lines (and a summary dict for --json); `progress(done, total)`
is called after each image when given. Each one's work on an image is one function (`map_image`, `valid_image`,
`recall_image`, `classify_image`: the network's part and the image's labels, returning the image's small
contribution), mapped over the list by `images(work, items)`: here, in this process, unless a caller passes the
runner of a Dask cluster (pydarknet.tasks.distributed.evaluation), whose workers run the same functions.
Differences from darknet, each deliberate:

* `map` letterboxes when the cfg's [net] says letter_box=1 *or* `letter_box=True` is passed (AlexeyAB takes the
  cfg's setting and ignores its command-line flag).
* `valid` creates the results folder (darknet fails to open its files when it is missing), and an empty COCO
  result is valid JSON (`[` `]`; darknet's backward seek leaves a bare `]`).
* `recall` reads `valid=` of the .data file (pjreddie reads a hard-coded data/coco_val_5k.list) and looks at every
  decoded box (pjreddie only at the first width*height*anchors of the last layer, which misses boxes of
  multi-layer [yolo] networks).
* labels are found as pydarknet's data module finds them (darknet's location, else beside the image), bad label
  lines are skipped with a warning; `classifier valid` can insist on exactly one class label per image path.
"""
import math
import os
import re
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from numba import njit

from ..results.boxes import Detections
from ..results.classifications import network_hierarchy, top_k
from ..files.config import DarknetError, check_fractions, read_data_cfg, read_data_or_names, read_names, warn
from ..files.labels import label_path, read_labels, read_list
from ..results.detections import do_nms_obj, do_nms_sort, network_detections, network_nms
from ..files.image import center_crop_image, letterbox_image, load_image, resize_image
from ..kernels.nms import box_iou
from ..network.network import Network
from ..files.resources import find_file
from ..files.weights import AtomicFile
from ..results.tree import hierarchy_predictions, read_map
from ..results.output import c_float

__all__ = ["run_map", "valid_list", "collect_detections", "compute_map", "MapDetections", "run_valid", "run_recall",
           "run_classifier_valid", "do_nms_obj", "COCO_IDS"]

# pjreddie's category ids of the 80 COCO classes, in the order of coco.names.
COCO_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32,
            33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59,
            60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90)

# AlexeyAB's LAYER_TYPE numbers of the layers its `map` reports as detection layers.
ALEXEYAB_LAYER_CODES = {"region": 27, "yolo": 28}

_F32 = np.float32


# ---------------------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------------------

def _json_number(value):
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value


def _coco_number(value):
    """A number of coco_results.json as darknet prints it (%f), or null where darknet would write nan or inf
    (an untrained network's boxes), which would not be JSON."""
    value = _json_number(value)
    return "null" if value is None else f"{value:f}"


def _data_file_path(options, key, default, data_file, what):
    """A file named by a .data option: as darknet (relative to the working directory), else beside the
    .data file. Returns (path, "file.data:line" of the option)."""
    name = options.str(key, default)
    where = options.where(key) if options.has(key) else f"{data_file} (default {key}={default})"
    path = name
    if not os.path.isabs(name) and not os.path.exists(name):
        beside = Path(data_file).parent / name
        if beside.exists():
            path = str(beside)
    if not os.path.exists(path):
        raise DarknetError(f"{name}: no such {what} (named at {where})")
    return path, where


def _image_list(options, key, default, data_file):
    path, where = _data_file_path(options, key, default, data_file, "image list")
    return read_list(path, where)


def _names(options, key, default, data_file):
    name = options.str(key, default)
    return read_names(find_file(name, beside=data_file, what="names file"))


def _load_network(cfg, weights, network=None):
    """`network` as given, else cfg's with the parameters of `weights` (predict.network_from_files), or as built
    without weights."""
    if network is not None:
        return network
    if not weights:
        return Network(cfg)
    from .predict import network_from_files
    return network_from_files(cfg, weights)


def _detector_classes(net, cfg):
    """The classes of the network's last box-decoding layer ([yolo], [region] or [detection]; error if none)."""
    decoding = [layer for layer in net.layers if hasattr(layer, "detections")]
    if not decoding:
        raise DarknetError(f"{cfg}: the network has no [yolo], [region] or [detection] layer to detect with")
    return decoding[-1].classes


def _tick(progress, done, total):
    if progress is not None:
        progress(done, total)


def local_images(net):
    """The runner of the per-image work in this process: images(work, items) yields work(net, item) for each
    item, in order."""
    def images(work, items):
        for item in items:
            yield work(net, item)
    return images


# ---------------------------------------------------------------------------------------------------------
# detector map (AlexeyAB's validate_detector_map)
# ---------------------------------------------------------------------------------------------------------

# AlexeyAB's fixed settings for map: detections kept over .005, per-class NMS (the cfg's kind) at .45, no
# hierarchy threshold.
MAP_DETECTION_THRESH = 0.005
MAP_NMS = 0.45
MAP_HIER_THRESH = 0.0


@dataclass
class MapDetections:
    """What one run of the network over a list gives `compute_map`: per image (in list order) the boxes left
    after NMS (rows with some nonzero probability, in darknet's post-NMS order, relative centre x, y, w, h) and
    the truths ([x, y, w, h, class] rows), concatenated with offsets."""
    names: list
    classes: int
    layers: list                 # (layer index, AlexeyAB's type code) of the detection layers
    paths: list
    bbox: np.ndarray             # (N, 4) float32
    prob: np.ndarray             # (N, classes) float32
    det_offsets: np.ndarray      # (images + 1,) int64
    truth: np.ndarray            # (T, 5) float32
    truth_offsets: np.ndarray
    difficult: np.ndarray        # (D, 5) float32: truths whose detections are neither right nor wrong
    difficult_offsets: np.ndarray
    letter_box: bool = False


def _detection_setup(net, names, cfg, name_list):
    """AlexeyAB's choice of the layer giving the classes: the last [yolo]/[region] (else the last layer)."""
    layers = [(i, ALEXEYAB_LAYER_CODES[layer.type]) for i, layer in enumerate(net.layers)
              if layer.type in ALEXEYAB_LAYER_CODES]
    classes = _detector_classes(net, cfg)
    if len(names) != classes:
        raise DarknetError(f"{name_list}: {len(names)} names but the network ({cfg}) has classes={classes}")
    return layers, classes


class _AsTheFork:
    """`detector map` is the AlexeyAB fork's command: for the duration of a `with` block the network follows the
    fork's arithmetic (batch-norm folded into the convolutions when `fuse_batchnorm`, as the fork does before
    running map; its box correction and NMS), unless the user forced a darknet with --darknet. The folded network
    gives slightly different floats -- enough to move the fork's mAP in its sixth decimal."""

    def __init__(self, net, fuse_batchnorm=True):
        self.net, self.fuse_batchnorm = net, fuse_batchnorm

    def __enter__(self):
        net = self.net
        self.saved = net.darknet, net.fuse_batchnorm
        if not net.darknet_forced:
            net.darknet = "ab"
        net.fuse_batchnorm = self.fuse_batchnorm
        return self

    def __exit__(self, *exc):
        self.net.darknet, self.net.fuse_batchnorm = self.saved
        return False


def collect_detections(data_file, cfg, weights, letter_box=False, progress=None, network=None,
                       decoder="darknet", fuse_batchnorm=True, images=None, paths=None, image_list=None):
    """Run the network over the `valid=` list of `data_file` as AlexeyAB's map does (each image resized -- or
    letterboxed -- to the network, boxes over .005, the NMS of the cfg's kind at .45) and read the truths. `network`: an
    already loaded Network to use instead of building one from cfg/weights (left as it was afterwards).
    `fuse_batchnorm`: fold batch normalisation into the convolutions first, as the fork does. `images`: the
    runner of map_image over the list [this process, on `network`]. `paths`: the images to evaluate instead
    of the `valid=` list (training's -map falls back to `train=`, see valid_list); `image_list`: a file of them,
    one per line. `data_file` may be a .names file, which has no valid= list."""
    options = read_data_or_names(data_file)
    if paths is None and image_list is not None:
        paths = read_list(image_list)
    if paths is None and Path(str(data_file)).suffix.lower() == ".names":
        raise DarknetError(f"{data_file}: a names file lists no images to evaluate: give their list after WEIGHTS "
                           f"(a file of image paths, one per line, as a .data file's valid=)")
    if paths is None:
        paths = _image_list(options, "valid", "data/train.txt", data_file)
    difficult_paths = None
    if options.has("difficult"):
        difficult_paths = _image_list(options, "difficult", None, data_file)
        if len(difficult_paths) < len(paths):
            raise DarknetError(f"{options.where('difficult')}: the difficult list has {len(difficult_paths)} "
                               f"images, the valid list {len(paths)} (they must match line by line)")
    name_list = options.str("names", "data/names.list")
    names = _names(options, "names", "data/names.list", data_file)
    net = _load_network(cfg, weights, network)
    layers, classes = _detection_setup(net, names, cfg, name_list)
    letter = bool(letter_box or net.letter_box)

    work = partial(map_image, classes=classes, letter=letter, decoder=decoder, fuse_batchnorm=fuse_batchnorm,
                   warned=set())
    items = zip(paths, difficult_paths or [None] * len(paths))
    bboxes, probs, truths, difficult = [], [], [], []
    for index, parts in enumerate((images or local_images(net))(work, items)):
        for part, kept in zip(parts, (bboxes, probs, truths, difficult)):
            kept.append(part)
        _tick(progress, index + 1, len(paths))

    def offsets(parts):
        return np.cumsum([0] + [len(part) for part in parts], dtype=np.int64)

    def stack(parts, width):
        return np.ascontiguousarray(np.concatenate(parts), np.float32) if parts else np.zeros((0, width), _F32)

    return MapDetections(names=list(names), classes=classes, layers=layers, paths=list(paths),
                         bbox=stack(bboxes, 4), prob=stack(probs, classes).reshape(-1, classes),
                         det_offsets=offsets(bboxes), truth=stack(truths, 5), truth_offsets=offsets(truths),
                         difficult=stack(difficult, 5), difficult_offsets=offsets(difficult), letter_box=letter)


def valid_list(data_file):
    """The images training's -map evaluates: `valid=` of the .data file, else its `train=` list (as the fork's
    train_detector); a missing list is an error before training starts, as in the fork."""
    options = read_data_cfg(data_file)
    key = "valid" if options.has("valid") else "train"
    return _image_list(options, key, "data/train.txt", data_file)


def map_image(net, item, classes, letter, decoder, fuse_batchnorm, warned=None):
    """One image's part of `detector map`, item (path, difficult path or None): its boxes after NMS that have
    some nonzero probability (bbox, prob), its truths and its difficult truths."""
    path, difficult_path = item
    im = load_image(path, decoder)
    _, h, w = im.shape
    with _AsTheFork(net, fuse_batchnorm):
        net.forward((letterbox_image(im, net.w, net.h) if letter else resize_image(im, net.w, net.h))[None])
        # AlexeyAB asks for boxes on a 1 x 1 image unless letterboxed: relative coordinates from every layer type
        size = (w, h) if letter else (1, 1)
        dets = network_detections(net, *size, MAP_DETECTION_THRESH, MAP_HIER_THRESH, relative=True,
                                  letterbox=letter)
        dets = network_nms(net, dets, MAP_NMS)
    prob = dets.prob[:, :classes]
    keep = np.any(prob > 0, axis=1)
    truth = read_labels(label_path(path), classes, warned)
    hard = read_labels(label_path(difficult_path), classes, warned) if difficult_path else np.zeros((0, 5), _F32)
    return dets.bbox[keep], prob[keep], truth, hard


@njit(cache=True)
def _match_detections(bbox, prob, det_off, truth, truth_off, dif, dif_off, iou_thresh, thresh):
    """AlexeyAB's per-image pass over every (box, class) with a nonzero probability, box by box then class by
    class: the truth of that class it overlaps best by more than iou_thresh (its global index, or -1); a pair
    with none that overlaps a `difficult` truth of its class is dropped from the ranking. Pairs over `thresh`
    count as TP when they have a truth no earlier pair of the same image took, else as FP (dropped pairs
    included), and a TP adds its IoU to the average.

    Returns per pair (kept ones only): prob, class, truth index; and the per-class TP, FP and summed IoU at
    thresh (float32, added in darknet's order)."""
    n_img = det_off.size - 1
    classes = prob.shape[1]
    total = 0
    for i in range(prob.shape[0]):
        for c in range(classes):
            if prob[i, c] > 0:
                total += 1
    out_p = np.empty(total, np.float32)
    out_c = np.empty(total, np.int64)
    out_t = np.empty(total, np.int64)
    tp = np.zeros(classes, np.int64)
    fp = np.zeros(classes, np.int64)
    iou_sum = np.float32(0)
    iou_class = np.zeros(classes, np.float32)
    n = 0
    for im in range(n_img):
        first = n
        t0, t1 = truth_off[im], truth_off[im + 1]
        d0, d1 = dif_off[im], dif_off[im + 1]
        for i in range(det_off[im], det_off[im + 1]):
            for c in range(classes):
                p = prob[i, c]
                if not p > 0:
                    continue
                best = -1
                max_iou = np.float32(0)
                for j in range(t0, t1):
                    iou = box_iou(bbox[i], truth[j, :4])
                    if iou > iou_thresh and c == int(truth[j, 4]):
                        if iou > max_iou:
                            max_iou = iou
                            best = j
                kept = True
                if best < 0:
                    for j in range(d0, d1):
                        iou = box_iou(bbox[i], dif[j, :4])
                        if iou > iou_thresh and c == int(dif[j, 4]):
                            kept = False
                            break
                if kept:
                    out_p[n] = p
                    out_c[n] = c
                    out_t[n] = best
                    n += 1
                if p > thresh:
                    found = False
                    if best >= 0:
                        for z in range(first, n - 1 if kept else n):
                            if out_t[z] == best:
                                found = True
                                break
                    if best >= 0 and not found:
                        iou_sum += max_iou
                        iou_class[c] += max_iou
                        tp[c] += 1
                    else:
                        fp[c] += 1
    return out_p[:n], out_c[:n], out_t[:n], tp, fp, iou_sum, iou_class


def _average_precision(precision, recall, points):
    """AlexeyAB's AP of one class from its precision/recall after each of its ranked detections (float64).
    points=0: area under the curve, precision made non-increasing from the right, summed over each rise in
    recall; otherwise the mean over `points` evenly spaced recall levels of the best precision at a recall at
    least that high."""
    n = precision.size
    if n == 0:
        return 0.0
    best_right = np.maximum.accumulate(precision[::-1])[::-1]
    if points == 0:
        # darknet walks from the last rank down, adding (recall step) * (best precision from here on), then the
        # first rank's recall times the best precision overall; a sequential sum in that order.
        terms = (recall[1:] - recall[:-1]) * best_right[:-1]
        total = np.add.accumulate(terms[::-1])[-1] if terms.size else 0.0
        return float(total + recall[0] * best_right[0])
    total = 0.0
    for point in range(points):
        level = point * 1.0 / (points - 1)
        k = int(np.searchsorted(recall, level, side="left"))
        best = float(best_right[k]) if k < n else 0.0
        total += best if best > 0 else 0.0
    return total / points


def compute_map(collected, thresh=0.25, iou_thresh=0.5, points=0):
    """AlexeyAB's statistics over collected detections: (report lines, summary dict). See run_map."""
    points = int(points)
    if points < 0 or points == 1:
        raise DarknetError(f"points={points}: use 0 (area under the curve), 11 (VOC2007), 101 (COCO) or any "
                           f"number of recall points >= 2")
    c = collected
    classes = c.classes
    thresh32, iou32 = _F32(thresh), _F32(iou_thresh)
    pair_p, pair_c, pair_t, tp_class, fp_class, iou_sum, iou_class = _match_detections(
        c.bbox, np.ascontiguousarray(c.prob, np.float32), c.det_offsets, c.truth, c.truth_offsets,
        c.difficult, c.difficult_offsets, iou32, thresh32)
    truth_classes = c.truth[:, 4].astype(np.int64)
    truth_count = np.bincount(truth_classes, minlength=classes)[:classes]
    unique_truth = len(c.truth)
    detections_count = len(pair_p)

    # Rank every pair by descending probability (a stable sort, as glibc's merge-sort qsort); a pair is a true
    # positive when it has a truth that no higher-ranked pair took.
    order = np.argsort(-pair_p, kind="stable")
    ranked_c, ranked_t = pair_c[order], pair_t[order]
    hit = np.zeros(detections_count, bool)
    has_truth = np.nonzero(ranked_t >= 0)[0]
    if has_truth.size:
        _, first = np.unique(ranked_t[has_truth], return_index=True)
        hit[has_truth[first]] = True

    lines = ["", " calculation mAP (mean average precision)..."]
    lines += [f" Detection layer: {index} - type = {code} " for index, code in c.layers]
    lines += ["", f" detections_count = {detections_count}, unique_truth_count = {unique_truth}  "]
    per_class = []
    total_ap = 0.0
    for k in range(classes):
        mine = ranked_c == k
        tp = np.cumsum(hit[mine]).astype(np.float64)
        fp = np.cumsum(~hit[mine]).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
            recall = tp / truth_count[k] if truth_count[k] > 0 else np.zeros_like(tp)
        ap = _average_precision(precision, recall, points)
        total_ap += ap
        lines.append(f"class_id = {k}, name = {c.names[k]}, ap = {ap * 100:2.2f}%   \t "
                     f"(TP = {tp_class[k]}, FP = {fp_class[k]}) ")
        n_thr = tp_class[k] + fp_class[k]
        per_class.append({"class_id": k, "name": c.names[k], "ap": ap, "tp": int(tp_class[k]),
                          "fp": int(fp_class[k]), "truths": int(truth_count[k]),
                          "average_iou": _json_number(iou_class[k] / _F32(n_thr)) if n_thr else 0.0})
    mean_ap = total_ap / classes if classes else 0.0

    tp_all, fp_all = int(tp_class.sum()), int(fp_class.sum())
    fn_all = unique_truth - tp_all
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = _F32(tp_all) / (_F32(tp_all) + _F32(fp_all))
        recall = _F32(tp_all) / (_F32(tp_all) + _F32(fn_all))
        f1 = _F32(2) * precision * recall / (precision + recall)
    avg_iou = iou_sum / _F32(tp_all + fp_all) if tp_all + fp_all > 0 else iou_sum
    th = float(thresh32)
    lines += ["",
              f" for conf_thresh = {th:1.2f}, precision = {c_float(precision, '1.2f')}, "
              f"recall = {c_float(recall, '1.2f')}, F1-score = {c_float(f1, '1.2f')} ",
              f" for conf_thresh = {th:0.2f}, TP = {tp_all}, FP = {fp_all}, FN = {fn_all}, "
              f"average IoU = {c_float(avg_iou * _F32(100), '2.2f')} % ",
              "",
              f" IoU threshold = {float(iou32 * _F32(100)):2.0f} %, "
              + (f"used {points} Recall-points " if points else "used Area-Under-Curve for each unique Recall "),
              f" mean average precision (mAP@{float(iou32):0.2f}) = {mean_ap:f}, or {mean_ap * 100:2.2f} % ",
              "",
              "Set -points flag:",
              " `-points 101` for MS COCO ",
              " `-points 11` for PascalVOC 2007 (uncomment `difficult` in voc.data) ",
              " `-points 0` (AUC) for ImageNet, PascalVOC 2010-2012, your custom dataset"]
    summary = {"map": mean_ap, "points": points, "iou_thresh": float(iou32), "thresh": th,
               "images": len(c.paths), "detections_count": detections_count, "unique_truth_count": unique_truth,
               "classes": per_class, "precision": _json_number(precision), "recall": _json_number(recall),
               "f1": _json_number(f1), "tp": tp_all, "fp": fp_all, "fn": fn_all,
               "average_iou": _json_number(avg_iou), "letter_box": c.letter_box}
    return lines, summary


def run_map(data_file, cfg, weights, thresh=0.25, iou_thresh=0.5, points=0, letter_box=False, progress=None,
            network=None, fuse_batchnorm=True, images=None, paths=None, image_list=None, coco=False):
    """AlexeyAB's `detector map`: (lines of its report without the progress lines, summary dict).

    Each image of `valid=` is resized (letterboxed when the cfg's [net] has letter_box=1 or `letter_box` is
    True) to the network; boxes over .005 are kept, do_nms_sort'ed at .45. Each (box, class) with a nonzero
    probability is matched to the truth of its class it overlaps best with IoU > iou_thresh; ranked by
    probability over the whole list, a match is a true positive unless a higher-ranked one took that truth.
    AP per class from the precision/recall curve (points=0: area under it at every recall step; 11: VOC2007;
    101: COCO), mAP their mean. TP/FP/precision/recall/F1/average IoU count the pairs over `thresh`.

    summary: map and per-class ap as fractions (0..1), points, iou_thresh, thresh, precision, recall, f1, tp,
    fp, fn, average_iou, detections_count, unique_truth_count, and per class ap/tp/fp/truths/average_iou.
    `fuse_batchnorm` (default, as AlexeyAB): run with batch normalisation folded into the convolutions, which
    reproduces AlexeyAB's figures to the last printed digit; `network`: a loaded Network to use (restored);
    `images`: the runner of the per-image work and `paths` (or `image_list`, a file of them) the images [valid=]
    (see collect_detections).

    `coco`: COCO's twelve figures too, by pycocotools on the same detections (pydarknet.tasks.coco): their lines
    after the report, and summary["coco"].

    Training's -map (pydarknet.tasks.train) calls it too, on the network being trained (`network`, not fused: the
    fork's training evaluates its unfused network) and the list valid_list gives."""
    check_fractions(thresh=thresh, iou_thresh=iou_thresh)
    collected = collect_detections(data_file, cfg, weights, letter_box=letter_box, progress=progress,
                                   network=network, fuse_batchnorm=fuse_batchnorm, images=images, paths=paths,
                                   image_list=image_list)
    lines, summary = compute_map(collected, thresh=thresh, iou_thresh=iou_thresh, points=points)
    if coco:
        from .coco import coco_figures
        more, summary["coco"] = coco_figures(collected)
        lines += more
    return lines, summary


# ---------------------------------------------------------------------------------------------------------
# detector valid (pjreddie's validate_detector)
# ---------------------------------------------------------------------------------------------------------

VALID_THRESH = 0.005
VALID_NMS = 0.45


def _basecfg(path):
    """darknet's basecfg: the file name up to its first '.'."""
    name = os.fspath(path).split("/")[-1]
    return name.split(".", 1)[0]


def _coco_image_id(path):
    """pjreddie's get_coco_image_id: C's atoi of what follows the last '_' (else the last '/')."""
    path = os.fspath(path)
    cut = path.rfind("_")
    if cut < 0:
        cut = path.rfind("/")
    match = re.match(r"\s*([+-]?\d+)", path[cut + 1:])
    return int(match.group(1)) if match else 0


def _corners(bbox, w, h, one):
    """Left, top, right, bottom of pixel boxes as pjreddie's printers compute them in float: the half sizes in
    double, `one` (1 for VOC's 1-based pixels, else 0) added, clamped to [one, w] x [one, h]."""
    b = bbox.astype(np.float64)
    left = (b[:, 0] - b[:, 2] / 2.0 + one).astype(np.float32)
    right = (b[:, 0] + b[:, 2] / 2.0 + one).astype(np.float32)
    top = (b[:, 1] - b[:, 3] / 2.0 + one).astype(np.float32)
    bottom = (b[:, 1] + b[:, 3] / 2.0 + one).astype(np.float32)
    left = np.where(left < one, _F32(one), left)
    top = np.where(top < one, _F32(one), top)
    right = np.where(right > w, _F32(w), right)
    bottom = np.where(bottom > h, _F32(h), bottom)
    return left, top, right, bottom


def valid_image(net, item, classes, class_map, kind, categories=COCO_IDS):
    """One image's lines of `detector valid`, item (index in the list, path): (file, text) pairs, file the index
    of the class's file (eval=voc), else 0; for eval=coco the text is an entry of the JSON list, its
    category_id the class's of `categories`."""
    index, path = item
    im = load_image(path)
    _, h, w = im.shape
    net.forward(letterbox_image(im, net.w, net.h)[None])
    dets = network_detections(net, w, h, VALID_THRESH, 0.5, relative=False, letterbox=True, map=class_map)
    dets = do_nms_sort(Detections(dets.bbox, dets.objectness, dets.prob[:, :classes]), VALID_NMS)
    prob = dets.prob
    found = list(zip(*np.nonzero(prob[:, :classes])))
    if kind == "coco":
        image_id = _coco_image_id(path)
        left, top, right, bottom = _corners(dets.bbox, w, h, 0)
        bw, bh = right - left, bottom - top
        return [(0, f'{{"image_id":{image_id}, "category_id":{categories[j]}, "bbox":'
                    f'[{", ".join(_coco_number(v) for v in (left[i], top[i], bw[i], bh[i]))}], '
                    f'"score":{_coco_number(prob[i, j])}}}') for i, j in found]
    if kind == "imagenet":
        left, top, right, bottom = _corners(dets.bbox, w, h, 0)
        return [(0, f"{index + 1} {j + 1} {float(prob[i, j]):f} {float(left[i]):f} {float(top[i]):f} "
                    f"{float(right[i]):f} {float(bottom[i]):f}\n") for i, j in found]
    image_id = _basecfg(path)
    left, top, right, bottom = _corners(dets.bbox, w, h, 1)
    return [(j, f"{image_id} {float(prob[i, j]):f} {float(left[i]):f} {float(top[i]):f} "
                f"{float(right[i]):f} {float(bottom[i]):f}\n") for i, j in found]


def _category_ids(path):
    """The COCO category id of each class, one a line (`datasets convert coco` writes them)."""
    ids = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        try:
            ids.append(int(line))
        except ValueError:
            raise DarknetError(f"{path}:{number}: '{line}' is not a category id (one integer a line)") from None
    return ids


def run_valid(data_file, cfg, weights, out_dir=None, outfile=None, progress=None, network=None, images=None):
    """pjreddie's `detector valid`: every image of `valid=` letterboxed into the network, boxes over .005 in
    pixels of the image, do_nms_sort at .45, written under `out_dir` (default: `results=` of the .data file,
    else "results"; created when missing) as
      eval=voc (default): one `comp4_det_test_<name>.txt` per class, lines `image_id prob left top right bottom`
        (1-based pixel corners clamped to [1, w] x [1, h]; image_id: the file name up to its first '.');
      eval=coco: `coco_results.json`, one object per line with image_id (the number after the file name's last
        '_'), category_id (COCO's id for each of the 80 classes, or the ids of the data file's `categories=` file,
        one a class, as `datasets convert coco` writes it), bbox [x, y, w, h] and score;
      eval=imagenet: `imagenet-detection.txt`, lines `image_number class+1 prob left top right bottom`.
    `outfile` replaces the file name stem (darknet's -out); `images`: the runner of valid_image over the list
    [this process]. Returns (list of files written, summary dict)."""
    options = read_data_cfg(data_file)
    paths = _image_list(options, "valid", "data/train.list", data_file)
    names = _names(options, "names", "data/names.list", data_file)
    prefix = Path(out_dir) if out_dir is not None else Path(options.str("results", "results"))
    kind = options.str("eval", "voc")
    categories = COCO_IDS
    if options.has("categories"):   # a set converted from COCO: its own category ids, one a class
        categories = _category_ids(find_file(options.str("categories"), beside=data_file, what="categories file"))
    class_map = None
    if options.has("map"):
        class_map = read_map(find_file(options.str("map"), beside=data_file, what="class map file"))
    net = _load_network(cfg, weights, network)
    classes = _detector_classes(net, cfg)
    if kind == "imagenet":
        classes = min(classes, 200)
    if kind == "coco" and classes > len(categories):
        where = options.where("categories" if options.has("categories") else "eval")
        raise DarknetError(f"{where}: {len(categories)} COCO category ids for the network's {classes} classes")
    if kind not in ("coco", "imagenet") and len(names) < classes:
        raise DarknetError(f"{data_file}: {len(names)} names for the network's {classes} classes")
    try:
        prefix.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DarknetError(f"{prefix}: cannot create the results folder: {e.strerror}") from None

    if kind == "coco":
        files = [prefix / f"{outfile or 'coco_results'}.json"]
    elif kind == "imagenet":
        files = [prefix / f"{outfile or 'imagenet-detection'}.txt"]
    else:
        files = [prefix / f"{outfile or 'comp4_det_test_'}{names[j]}.txt" for j in range(classes)]
    written = 0
    coco_entries = []
    work = partial(valid_image, classes=classes, class_map=class_map, kind=kind, categories=categories)
    with ExitStack() as stack:   # every file renamed into place at the end, or none (a stop, an error)
        handles = [stack.enter_context(AtomicFile(f)) for f in files]
        for index, lines in enumerate((images or local_images(net))(work, enumerate(paths))):
            for file, text in lines:
                if kind == "coco":
                    coco_entries.append(text)
                else:
                    handles[file].write(text)
            written += len(lines)
            _tick(progress, index + 1, len(paths))
        if kind == "coco":
            handles[0].write("[\n" + ",\n".join(coco_entries) + ("\n" if coco_entries else "") + "]\n")
    summary = {"eval": kind, "images": len(paths), "detections": written, "files": [str(f) for f in files]}
    return [str(f) for f in files], summary


# ---------------------------------------------------------------------------------------------------------
# detector recall (pjreddie's validate_detector_recall)
# ---------------------------------------------------------------------------------------------------------

RECALL_THRESH = 0.001
RECALL_IOU = 0.5
RECALL_NMS = 0.4


def recall_image(net, path, warned=None):
    """One image's part of `detector recall`: how many proposals it has, and for each of its truths the best
    IoU of a proposal with it (float32)."""
    im = load_image(path)
    net.forward(resize_image(im, net.w, net.h)[None])
    dets = network_detections(net, net.w, net.h, RECALL_THRESH, 0.5, relative=True, letterbox=False)
    dets = do_nms_obj(dets, RECALL_NMS, classes=1)
    live = dets.objectness > _F32(RECALL_THRESH)
    boxes = dets.bbox[live]
    best_ious = []
    for t in read_labels(label_path(path), None, warned):
        best = _F32(0)
        for b in boxes:
            iou = box_iou(b, t[:4])
            if iou > best:
                best = iou
        best_ious.append(best)
    return int(live.sum()), best_ious


def run_recall(data_file, cfg, weights, progress=None, network=None, on_line=None, images=None):
    """pjreddie's `detector recall` over `valid=`: each image resized to the network, boxes with objectness over
    .001 after do_nms_obj at .4 are proposals; a truth is recalled when some proposal overlaps it by IoU > .5.
    Returns (one running line per image, `%5d %5d %5d\\tRPs/Img: %.2f\\tIOU: %.2f%%\\tRecall:%.2f%%` -- image index,
    recalled, truths, proposals per image, average best IoU, recall -- and a summary dict). `on_line(line)` is
    called with each line as it is made; `images`: the runner of recall_image over the list [this process]."""
    options = read_data_cfg(data_file)
    paths = _image_list(options, "valid", "data/train.list", data_file)
    net = _load_network(cfg, weights, network)
    _detector_classes(net, cfg)  # only the check that the network can detect
    total = correct = proposals = 0
    avg_iou = _F32(0)
    lines = []
    work = partial(recall_image, warned=set())
    for i, (found, best_ious) in enumerate((images or local_images(net))(work, paths)):
        proposals += found
        for best in best_ious:
            total += 1
            avg_iou = _F32(avg_iou + best)
            if best > _F32(RECALL_IOU):
                correct += 1
        with np.errstate(invalid="ignore", divide="ignore"):
            rps = _F32(proposals) / _F32(i + 1)
            iou_pct = avg_iou * _F32(100) / _F32(total)
            recall = np.float64(100.0) * correct / np.float64(total)   # 0/0: -nan, as C prints it
        line = (f"{i:5d} {correct:5d} {total:5d}\tRPs/Img: {c_float(rps, '.2f')}\t"
                f"IOU: {c_float(iou_pct, '.2f')}%\tRecall:{c_float(recall, '.2f')}%")
        lines.append(line)
        if on_line is not None:
            on_line(line)
        _tick(progress, i + 1, len(paths))
    summary = {"images": len(paths), "truths": total, "recalled": correct, "proposals": proposals,
               "proposals_per_image": proposals / len(paths) if paths else 0.0,
               "average_iou": _json_number(avg_iou / _F32(total)) if total else None,
               "recall": correct / total if total else None}
    return lines, summary


# ---------------------------------------------------------------------------------------------------------
# classifier valid (pjreddie's validate_classifier_single)
# ---------------------------------------------------------------------------------------------------------

def _path_classes(path, labels):
    """Every label index whose text occurs in the path (darknet's strstr test), in label order."""
    return [j for j, label in enumerate(labels) if label and label in path]


def classify_image(net, path, classes, topk, cfg, data_file):
    """One image's part of `classifier valid`: its top `topk` classes (indices) among the first `classes`."""
    im = load_image(path)
    crop = center_crop_image(im, net.w, net.h)
    pred = np.array(net.forward(crop[None])[0], np.float32).reshape(-1)
    tree = network_hierarchy(net)
    if tree is not None:
        hierarchy_predictions(pred, tree, only_leaves=True)
    if pred.size < classes:
        raise DarknetError(f"{cfg}: the network gives {pred.size} outputs but classes={classes} in {data_file}")
    return [j for j, _ in top_k(pred[:classes], topk)]


def run_classifier_valid(data_file, cfg, weights, strict_labels=False, progress=None, network=None,
                         on_line=None, images=None):
    """pjreddie's `classifier valid`: each image of `valid=` centre-cropped to a square and resized to the network
    (center_crop_image), the network's output (made hierarchical with a tree softmax) ranked with top_k over the
    first `classes=` entries; running accuracy lines `%d: top 1: %f, top %d: %f` (k from `top=`, default 1).
    The true class is the first `labels=` entry contained in the image path (none: counted wrong). With
    `strict_labels`, every path must contain exactly one label, else DarknetError naming the images. `images`:
    the runner of classify_image over the list [this process]. Returns (lines, summary dict)."""
    options = read_data_cfg(data_file)
    label_list = options.str("labels", "data/labels.list")
    labels = read_names(find_file(label_list, beside=data_file, what="labels file"))
    paths = _image_list(options, "valid", "data/train.list", data_file)
    classes = options.int("classes", 2)
    topk = options.int("top", 1)
    if classes < 1:
        raise DarknetError(f"{options.where('classes')}: classes={classes}")
    if topk < 1:
        raise DarknetError(f"{options.where('top')}: top={topk} must be at least 1")
    if len(labels) < classes:
        raise DarknetError(f"{label_list}: {len(labels)} labels but classes={classes} in {data_file}")
    labels = labels[:classes]
    if options.has("leaves"):
        warn(f"{options.where('leaves')}: leaves= (darknet's change_leaves) is not supported: ignored")

    truth = []
    problems = []
    unlabelled = 0
    for path in paths:
        found = _path_classes(path, labels)
        if strict_labels and len(found) != 1:
            if found:
                problems.append(f"{path}: {len(found)} class labels match the path "
                                f"({', '.join(labels[j] for j in found[:6])}{', ...' if len(found) > 6 else ''})")
            else:
                problems.append(f"{path}: no class label matches the path")
        if not found:
            unlabelled += 1
        truth.append(found[0] if found else -1)
    if problems:
        shown = problems[:20]
        more = f"\n... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        raise DarknetError(f"{len(problems)} of {len(paths)} images do not have exactly one class label in their "
                           f"path (strict labels):\n" + "\n".join(shown) + more)
    if unlabelled:
        warn(f"{unlabelled} of {len(paths)} images have no class label in their path: counted as wrong")

    net = _load_network(cfg, weights, network)
    avg_acc = _F32(0)
    avg_topk = _F32(0)
    lines = []
    work = partial(classify_image, classes=classes, topk=topk, cfg=cfg, data_file=data_file)
    for i, best in enumerate((images or local_images(net))(work, paths)):
        if best and best[0] == truth[i]:
            avg_acc = _F32(avg_acc + _F32(1))
        if truth[i] in best:
            avg_topk = _F32(avg_topk + _F32(1))
        top1 = avg_acc / _F32(i + 1)
        topn = avg_topk / _F32(i + 1)
        line = f"{i}: top 1: {float(top1):f}, top {topk}: {float(topn):f}"
        lines.append(line)
        if on_line is not None:
            on_line(line)
        _tick(progress, i + 1, len(paths))
    n = len(paths)
    summary = {"images": n, "top": topk, "top1": float(avg_acc / _F32(n)) if n else None,
               "topk": float(avg_topk / _F32(n)) if n else None, "unlabelled": unlabelled}
    return lines, summary
