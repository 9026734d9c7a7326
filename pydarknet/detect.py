"""Detections from a whole network: darknet's get_network_boxes, do_nms_sort and do_nms_obj.

After a forward pass, every output layer that can decode boxes ([yolo], [region], [detection]) contributes
its candidates, in layer order, to one Detections (darknet's get_network_boxes); `do_nms_sort` then sorts
and suppresses them as darknet does before printing or drawing (`do_nms_obj`, by objectness alone, is what
`detector recall` uses).
"""
import inspect

import numpy as np

from .boxes import Detections
from .kernels.nms import nms_obj, nms_sort


def _accepts(method, name):
    try:
        return name in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def network_detections(net, w, h, thresh, hier_thresh=0.5, relative=True, letterbox=True, batch_index=0,
                       map=None):
    """Darknet's get_network_boxes(net, w, h, thresh, hier_thresh, map, relative) for image `batch_index`
    of the last forward pass. `w`, `h`: the original image size; `letterbox`: whether the image was
    letterboxed into the network (boxes are mapped back accordingly). `map` (YOLO9000's 200-class map)
    only concerns [region] layers with a class tree."""
    parts = []
    classes = 0
    for layer in net.layers:
        decode = getattr(layer, "detections", None)
        if decode is None:
            continue
        if layer.output is None:
            raise ValueError(f"layer {layer.index} ({layer.type}) has no output: run net.forward first")
        kwargs = {"relative": relative, "letterbox": letterbox}
        if _accepts(decode, "hier_thresh"):
            kwargs["hier_thresh"] = hier_thresh
        if map is not None and _accepts(decode, "map"):
            kwargs["map"] = map
        parts.append(decode(layer.output[batch_index], w, h, net.w, net.h, thresh, **kwargs))
        classes = layer.classes
    return Detections.concatenate(parts, classes)


def do_nms_sort(dets, thresh):
    """Darknet's do_nms_sort: the detections reordered as darknet leaves them, with the probability of each
    box that a likelier box of the same class overlaps by more than `thresh` (IoU) set to 0.

    The order matters because darknet prints and draws in it. Zero-objectness boxes go to the end by
    darknet's swap loop; the others end up sorted by the last class's probability, ties (and NaN) broken
    exactly as glibc's merge-sort qsort breaks them."""
    prob = np.array(dets.prob, np.float32, order="C")
    order = nms_sort(np.ascontiguousarray(dets.bbox, np.float32), np.ascontiguousarray(dets.objectness, np.float32),
                     prob, np.float32(thresh))
    return Detections(dets.bbox[order], dets.objectness[order], prob[order])


def do_nms_obj(dets, thresh, classes=None):
    """darknet's do_nms_obj: sorted by objectness, a box overlapping a likelier one by more than `thresh` gets
    objectness 0 (and its first `classes` probabilities, all by default). Returns new Detections in darknet's
    final order."""
    objectness = np.array(dets.objectness, np.float32)
    prob = np.array(dets.prob, np.float32)
    cut = prob.shape[1] if classes is None else min(int(classes), prob.shape[1])
    view = np.ascontiguousarray(prob[:, :cut])
    order = nms_obj(np.ascontiguousarray(dets.bbox, np.float32), objectness, view, np.float32(thresh))
    prob[:, :cut] = view
    return Detections(dets.bbox[order], objectness[order], prob[order])
