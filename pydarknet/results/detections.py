"""Detections from a whole network: darknet's get_network_boxes, do_nms_sort and do_nms_obj, and the
AlexeyAB fork's NMS kinds (diounms_sort).

After a forward pass, every output layer that can decode boxes ([yolo], [region], [detection]) contributes
its candidates, in layer order, to one Detections (darknet's get_network_boxes); `do_nms_sort` then sorts
and suppresses them as darknet does before printing or drawing (`do_nms_obj`, by objectness alone, is what
`detector recall` uses). `network_nms` applies the NMS a network's darknet uses: pjreddie's do_nms_sort, or
the fork's, chosen by the nms_kind of the last output layer as the fork's detector does.
"""
import inspect

import numpy as np

from ..kernels.nms import FORK_DIOU, FORK_IOU, PJREDDIE_IOU, nms_obj, nms_sort
from .boxes import Detections


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
        if _accepts(decode, "darknet"):
            kwargs["darknet"] = net.darknet
        if _accepts(decode, "hier_thresh"):
            kwargs["hier_thresh"] = hier_thresh
        if map is not None and _accepts(decode, "map"):
            kwargs["map"] = map
        parts.append(decode(layer.output[batch_index], w, h, net.w, net.h, thresh, **kwargs))
        classes = layer.classes
    return Detections.concatenate(parts, classes)


def _nms_sort(dets, thresh, measure, beta=0.6):
    prob = np.array(dets.prob, np.float32, order="C")
    order = nms_sort(np.ascontiguousarray(dets.bbox, np.float32), np.ascontiguousarray(dets.objectness, np.float32),
                     prob, np.float32(thresh), measure, np.float32(beta))
    return Detections(dets.bbox[order], dets.objectness[order], prob[order])


def do_nms_sort(dets, thresh, darknet="pjreddie"):
    """Darknet's do_nms_sort: the detections reordered as darknet leaves them, with the probability of each
    box that a likelier box of the same class overlaps by more than `thresh` (IoU) set to 0.

    The order matters because darknet prints and draws in it. Zero-objectness detections go to the end by
    darknet's swap loop; the others end up sorted by the last class's probability, ties (and NaN) broken
    exactly as glibc's merge-sort qsort breaks them. `darknet="ab"`: the fork's, whose IoU is 0 when the
    union is 0 (pjreddie's gives inf or NaN there)."""
    return _nms_sort(dets, thresh, FORK_IOU if darknet == "ab" else PJREDDIE_IOU)


def diounms_sort(dets, thresh, kind, beta_nms=0.6):
    """The fork's diounms_sort: do_nms_sort's loop, a box suppressed when its DIoU with a likelier one is over
    `thresh`: IoU - (d^2/c^2)^beta, d the distance of the centres, c the diagonal of the smallest box holding
    both; beta .6 for kind "greedynms", beta_nms for "diounms". Kind "cornersnms" suppresses by IoU."""
    if kind == "greedynms":
        return _nms_sort(dets, thresh, FORK_DIOU, 0.6)
    if kind == "diounms":
        return _nms_sort(dets, thresh, FORK_DIOU, beta_nms)
    if kind == "cornersnms":
        return _nms_sort(dets, thresh, FORK_IOU)
    raise ValueError(f"unknown NMS kind {kind!r}: greedynms, diounms or cornersnms")


def nms_kind_of(net):
    """(nms_kind, beta_nms) of the network's last [yolo] or [region] layer, which the fork's detector uses."""
    last = None
    for layer in net.layers:
        if layer.type in ("yolo", "region"):
            last = layer
    return getattr(last, "nms_kind", "default"), getattr(last, "beta_nms", 0.6)


def network_nms(net, dets, thresh):
    """The NMS `net`'s darknet runs in its detector: pjreddie's do_nms_sort, or the fork's NMS of the kind
    its last [yolo] names (do_nms_sort for the default kind, diounms_sort otherwise)."""
    if net.darknet != "ab":
        return do_nms_sort(dets, thresh)
    kind, beta_nms = nms_kind_of(net)
    if kind == "default":
        return do_nms_sort(dets, thresh, darknet="ab")
    return diounms_sort(dets, thresh, kind, beta_nms)


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
