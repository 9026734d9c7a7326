"""The AlexeyAB fork's Python API (its darknet.py) on pydarknet, installed as the top-level module `darknet`: scripts
written for the fork's libdarknet (its darknet_images.py and darknet_video.py) run unchanged and print what they
print there.

The fork's darknet.py is a ctypes binding, so its results are C structures read through pointers. Here they are
the same ctypes structures, laid out as the fork's: `detections[j].prob[k]`, `detections[j].bbox.x`, `image.data`,
`metadata.names[i]` and `num[0]` (a `pointer(c_int(0))` passed to get_network_boxes) read as they read there. The
network is pydarknet's, computing with the fork's arithmetic whatever the files say (the fork's library runs
pjreddie's networks with its own); the structures' float buffers are numpy arrays that the structures hold, so
the free_* functions have nothing left to free but an image's pixels.
"""
import ctypes as ct
import os
import random
# The fork's older darknet.py did `from ctypes import *`, and its darknet_images.py still reaches these through
# it (`darknet.POINTER(darknet.c_float)`).
from ctypes import POINTER, c_char_p, c_float, c_int, pointer

import cv2
import numpy as np

from .files.config import DarknetError, load_names, read_data_cfg
from .files.image import letterbox_image as letterbox_array
from .files.image import check_given, from_bgr8, load_image_color, resize_image
from .kernels.nms import FORK_IOU, nms_obj, nms_sort
from .programs.images import load_network as load_pydarknet_network
from .results.detections import network_detections

__all__ = [
    "BOX", "DETECTION", "DETNUMPAIR", "IMAGE", "METADATA", "FloatPtr", "IntPtr", "DETECTIONPtr", "DETNUMPAIRPtr",
    "POINTER", "c_char_p", "c_float", "c_int", "pointer",
    "network_width", "network_height", "bbox2points", "class_colors", "load_network", "print_detections",
    "draw_boxes", "decode_detection", "remove_negatives", "remove_negatives_faster", "detect_image",
    "load_net_custom", "load_meta", "make_image", "copy_image_from_bytes", "free_image", "load_image",
    "letterbox_image", "predict_image", "predict_image_letterbox", "get_network_boxes", "do_nms_sort",
    "do_nms_obj", "free_detections", "network_predict_batch", "free_batch_detections",
]


class BOX(ct.Structure):
    _fields_ = (("x", ct.c_float), ("y", ct.c_float), ("w", ct.c_float), ("h", ct.c_float))


FloatPtr = ct.POINTER(ct.c_float)
IntPtr = ct.POINTER(ct.c_int)


class DETECTION(ct.Structure):
    """One box: `prob` points to its `classes` probabilities. `best_class_idx` is its likeliest class with a
    probability over 0 (first of equals), -1 for none: what the fork sets for [region] layers (for [yolo] it
    leaves the 0 of calloc)."""
    _fields_ = (("bbox", BOX), ("classes", ct.c_int), ("best_class_idx", ct.c_int), ("prob", FloatPtr),
                ("mask", FloatPtr), ("objectness", ct.c_float), ("sort_class", ct.c_int), ("uc", FloatPtr),
                ("points", ct.c_int), ("embeddings", FloatPtr), ("embedding_size", ct.c_int), ("sim", ct.c_float),
                ("track_id", ct.c_int))


DETECTIONPtr = ct.POINTER(DETECTION)


class DETNUMPAIR(ct.Structure):
    _fields_ = (("num", ct.c_int), ("dets", DETECTIONPtr))


DETNUMPAIRPtr = ct.POINTER(DETNUMPAIR)


class IMAGE(ct.Structure):
    """Darknet's image: `data` points to c planes of h rows of w floats (0..1, RGB for colour)."""
    _fields_ = (("w", ct.c_int), ("h", ct.c_int), ("c", ct.c_int), ("data", FloatPtr))


class METADATA(ct.Structure):
    _fields_ = (("classes", ct.c_int), ("names", ct.POINTER(ct.c_char_p)))


# -- images ----------------------------------------------------------------------------------------------------
def image_struct(planes):
    """An IMAGE over a float32 (c, h, w) array, which it keeps alive."""
    planes = np.ascontiguousarray(planes, np.float32)
    c, h, w = planes.shape
    image = IMAGE(w, h, c, planes.ctypes.data_as(FloatPtr))
    image.planes = planes
    return image


def image_planes(image):
    """The float32 (c, h, w) view of an IMAGE's pixels."""
    if not check_given(image).data:
        raise DarknetError("the image has no data (freed with free_image, or never made): use make_image or "
                           "load_image")
    if min(image.w, image.h, image.c) < 1:
        raise DarknetError(f"bad image size {image.w}x{image.h}x{image.c}")
    return np.ctypeslib.as_array(image.data, (image.c, image.h, image.w))


def make_image(w, h, c):
    return image_struct(np.zeros((c, h, w), np.float32))


def copy_image_from_bytes(image, data):
    """Fill `image` from interleaved bytes (h rows of w pixels of c bytes, as an (h, w, c) uint8 array's
    tobytes()), each byte / 255 into its channel's plane: 3 channels stay in their order."""
    planes = image_planes(image)
    size = image.w * image.h * image.c
    if len(check_given(data, "data")) < size:
        raise DarknetError(f"{len(data)} bytes for a {image.w}x{image.h}x{image.c} image of {size}: resize the "
                           f"pixels to the image's size first")
    planes[:] = from_bgr8(np.frombuffer(data, np.uint8, size).reshape(image.h, image.w, image.c), rgb=True)


def free_image(image):
    """Releases the image's pixels: reading them afterwards is an error, not a crash."""
    check_given(image).data = None
    image.planes = None


def load_image(filename, w, h):
    """darknet's load_image_color: the file's pixels (decoded as darknet's stb_image does), resized to w x h
    unless either is 0."""
    return image_struct(load_image_color(os.fsdecode(check_given(filename, "filename")), w, h))


def letterbox_image(image, w, h):
    return image_struct(letterbox_array(image_planes(image), w, h))


# -- the network -----------------------------------------------------------------------------------------------
def load_net_custom(config_file, weights, clear, batch):
    """The network of a cfg and weights file (bytes or str paths), its layer table on stderr. `clear` (the
    training counters) and `batch` (the batch of network_predict_ptr) change nothing here: network_predict_batch
    is told its batch."""
    return load_pydarknet_network(os.fsdecode(config_file), os.fsdecode(weights), darknet="ab")


def load_meta(data_file):
    """The .data file's classes (classes=, 2 when absent, as the fork reads it) and names: a METADATA."""
    path = os.fsdecode(data_file)
    classes = read_data_cfg(path).int("classes", 2)
    names, _ = load_names(path, classes, path)
    return METADATA(classes, (ct.c_char_p * len(names))(*(name.encode() for name in names)))


def network_width(net):
    return net.w


def network_height(net):
    return net.h


def output_floats(net):
    """The first image's output of the last forward pass as network_predict returns it: floats read by index
    (here a ctypes array over a copy of the output, so that an index past its end is an IndexError, and another
    thread's forward leaves it as it was)."""
    output = np.array(net.output_layer.output[0], np.float32).reshape(-1)
    return (ct.c_float * output.size).from_buffer(output)


def predict_image(net, image):
    """The network on one image, resized to the network (darknet's resize_image) when it has another size."""
    planes = image_planes(image)
    if (image.w, image.h) != (net.w, net.h):
        planes = resize_image(planes, net.w, net.h)
    with net.lock:
        net.forward(planes)
        return output_floats(net)


def predict_image_letterbox(net, image):
    """predict_image, letterboxing an image of another size into the network."""
    planes = image_planes(image)
    if (image.w, image.h) != (net.w, net.h):
        planes = letterbox_array(planes, net.w, net.h)
    with net.lock:
        net.forward(planes)
        return output_floats(net)


# -- detections ------------------------------------------------------------------------------------------------
def detection_array(dets):
    """pydarknet's Detections as an array of DETECTION, whose probabilities it keeps alive."""
    prob = np.ascontiguousarray(dets.prob, np.float32)
    n, classes = prob.shape
    array = (DETECTION * n)()
    array.prob = prob
    positive = prob > 0
    best = np.where(positive.any(axis=1), np.argmax(np.where(positive, prob, -1), axis=1), -1)
    for j, ((x, y, w, h), objectness) in enumerate(zip(dets.bbox.tolist(), dets.objectness.tolist())):
        array[j] = DETECTION(BOX(x, y, w, h), classes, int(best[j]), prob[j].ctypes.data_as(FloatPtr),
                             objectness=objectness)
    return array


def map_argument(map):  # noqa: A002 - darknet's parameter name
    """get_network_boxes' `map` (YOLO9000's class map): None, or a sequence of ints."""
    return None if map is None else np.asarray(map, np.int64)


def get_network_boxes(net, w, h, thresh, hier_thresh, map, relative, num, letter):  # noqa: A002
    """The boxes of the last forward pass with objectness over thresh, for a w x h image (in its pixels unless
    `relative`; `letter`: the image was letterboxed): an array of DETECTION, their count stored in num[0]."""
    dets = network_detections(net, w, h, thresh, hier_thresh, relative=bool(relative), letterbox=bool(letter),
                              map=map_argument(map))
    if num:
        num[0] = len(dets)
    return detection_array(dets)


def check_classes(detection, classes):
    """Refuse to read more probabilities than a detection has (C would read past them)."""
    if classes > detection.classes:
        raise DarknetError(f"{classes} classes asked of detections of {detection.classes}: are the class names "
                           f"(the .data file) this network's?")


def nms_in_place(dets, total, classes, suppress):
    """Run `suppress(bbox, objectness, prob)` (an NMS kernel: zeroes in place, returns the final order) over the
    first `total` detections and leave them as darknet's NMS does: the structures reordered, with their
    suppressed probabilities and objectness."""
    items = [DETECTION.from_buffer_copy(dets[i]) for i in range(total)]
    if not items:
        return
    check_classes(items[0], classes)
    bbox = np.array([(d.bbox.x, d.bbox.y, d.bbox.w, d.bbox.h) for d in items], np.float32)
    objectness = np.array([d.objectness for d in items], np.float32)
    rows = [np.ctypeslib.as_array(d.prob, (classes,)) for d in items]
    prob = np.array(rows, np.float32)
    order = suppress(bbox, objectness, prob)
    for d, row, p, o in zip(items, rows, prob, objectness.tolist()):
        row[:] = p
        d.objectness = o
    for j, i in enumerate(order):
        dets[j] = items[i]


def do_nms_sort(dets, total, classes, thresh):
    """The fork's do_nms_sort: per class, a box's probability zeroed when a likelier box overlaps it by more
    than `thresh` (IoU); the boxes left in its final sort order."""
    nms_in_place(dets, total, classes,
                 lambda bbox, objectness, prob: nms_sort(bbox, objectness, prob, np.float32(thresh), FORK_IOU,
                                                         np.float32(0.6)))


def do_nms_obj(dets, total, classes, thresh):
    """darknet's do_nms_obj: by objectness, a box overlapped by more than `thresh` (IoU) by a likelier one loses
    its objectness and its probabilities."""
    nms_in_place(dets, total, classes, lambda bbox, objectness, prob: nms_obj(bbox, objectness, prob,
                                                                              np.float32(thresh)))


def free_detections(dets, num):
    """Nothing to do: the detections' memory is Python's, released with the last reference to them."""


def network_predict_batch(net, image, batch_size, w, h, thresh, hier_thresh, map, relative, letter):  # noqa: A002
    """The network on `batch_size` network-sized images stored one after the other at image.data (image.c
    channels), then each one's get_network_boxes for a w x h image: an array of DETNUMPAIR (num, dets)."""
    if not check_given(image).data:
        raise DarknetError("the batch image has no data")
    pairs = (DETNUMPAIR * batch_size)()
    with net.lock:   # threads take turns through the network and its outputs
        net.forward(np.ctypeslib.as_array(image.data, (batch_size, image.c, net.h, net.w)))
        for index in range(batch_size):
            dets = network_detections(net, w, h, thresh, hier_thresh, relative=bool(relative),
                                      letterbox=bool(letter), batch_index=index, map=map_argument(map))
            pairs[index] = DETNUMPAIR(len(dets), detection_array(dets))
    return pairs


def free_batch_detections(pairs, batch_size):
    """Nothing to do, as free_detections."""


# -- the fork's Python side ------------------------------------------------------------------------------------
def bbox2points(bbox):
    """A centre-size box -> the corners (left, top, right, bottom), rounded as Python rounds (halves to even)."""
    x, y, w, h = bbox
    return round(x - w / 2), round(y - h / 2), round(x + w / 2), round(y + h / 2)


def class_colors(names):
    """A random BGR colour per name, drawn from `random` in the fork's order (random.seed(3) gives its colours)."""
    return {name: (random.randint(0, 255), random.randint(0, 255), random.randint(0, 255)) for name in names}


def load_network(config_file, data_file, weights, batch_size=1):
    """(network, class names, a colour per name) of a cfg, .data and weights file."""
    network = load_net_custom(config_file, weights, 0, batch_size)
    metadata = load_meta(data_file)
    class_names = [metadata.names[i].decode() for i in range(metadata.classes)]
    return network, class_names, class_colors(class_names)


def print_detections(detections, coordinates=False):
    """The fork's listing on stdout; `coordinates` adds the box as it prints it (its "left_x" and "top_y" are
    the centre's)."""
    print("\nObjects:")
    for label, confidence, (x, y, w, h) in detections:
        if coordinates:
            print(f"{label}: {confidence}%    (left_x: {x:.0f}   top_y:  {y:.0f}   width:   {w:.0f}   "
                  f"height:  {h:.0f})")
        else:
            print(f"{label}: {confidence}%")


def draw_boxes(detections, image, colors):
    """Each detection's rectangle and "label [confidence]" drawn on `image` (a uint8 array) in its class colour, as
    the fork draws them."""
    check_given(image)
    for label, confidence, bbox in detections:
        left, top, right, bottom = bbox2points(bbox)
        cv2.rectangle(image, (left, top), (right, bottom), colors[label], 1)
        cv2.putText(image, f"{label} [{float(confidence):.2f}]", (left, top - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    colors[label], 2)
    return image


def decode_detection(detections):
    """Confidences as the fork shows them: a percentage rounded to 2 decimals, as a string."""
    return [(str(label), str(round(confidence * 100, 2)), bbox) for label, confidence, bbox in detections]


def remove_negatives(detections, class_names, num):
    """(name, probability, (x, y, w, h)) for every box and class with a probability over 0, box by box."""
    found = []
    for j in range(num):
        d = detections[j]
        check_classes(d, len(class_names))
        for index, name in enumerate(class_names):
            if d.prob[index] > 0:
                found.append((name, d.prob[index], (d.bbox.x, d.bbox.y, d.bbox.w, d.bbox.h)))
    return found


def remove_negatives_faster(detections, class_names, num):
    """remove_negatives with each box's best class only."""
    found = []
    for j in range(num):
        d = detections[j]
        if d.best_class_idx != -1:
            found.append((class_names[d.best_class_idx], d.prob[d.best_class_idx],
                          (d.bbox.x, d.bbox.y, d.bbox.w, d.bbox.h)))
    return found


def detect_image(network, class_names, image, thresh=.5, hier_thresh=.5, nms=.45):
    """The fork's detect_image: predict_image, the boxes in the image's pixels (not letterboxed), do_nms_sort,
    every (box, class) over 0 as (name, confidence string, (x, y, w, h)), sorted by that string (as the fork
    sorts them: "9.5" after "84.01")."""
    num = ct.pointer(ct.c_int(0))
    with network.lock:   # the forward and the boxes of that forward, whatever other threads do
        predict_image(network, image)
        detections = get_network_boxes(network, image.w, image.h, thresh, hier_thresh, None, 0, num, 0)
    if nms:
        do_nms_sort(detections, num[0], len(class_names), nms)
    found = decode_detection(remove_negatives(detections, class_names, num[0]))
    return sorted(found, key=lambda detection: detection[1])
