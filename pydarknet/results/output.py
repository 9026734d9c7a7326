"""What the commands print: darknet's text lines, JSON lines, and the AlexeyAB fork's JSON file.

Everything here formats; nothing runs a network. Numbers are printed as C's printf prints darknet's floats.
"""
import json
import math
import re
from pathlib import Path

import numpy as np

from ..files.errors import DarknetError, WriteError
from ..files.resources import find_argument
from ..files.weights import atomic_write

# The fork's detection_to_json keeps every class over this (the boxes were already cut at the threshold).
FORK_JSON_THRESH = np.float32(0.005)


def c_float(value, spec="f"):
    """`value` as C's printf prints it with %<spec>: Python's formatting, except that inf and NaN come out as
    glibc writes them: inf, -inf, nan, -nan (a NaN's sign bit shows)."""
    value = float(value)
    if math.isfinite(value):
        return format(value, spec)
    text = ("-" if math.copysign(1, value) < 0 else "") + ("nan" if value != value else "inf")
    width = spec.split(".")[0].rstrip("f")
    return text.rjust(int(width)) if width else text


def strict_json(value):
    """`value` (dicts, lists, numbers, strings) with every inf or NaN replaced by None, so that json.dumps writes
    strict JSON (no Infinity or NaN tokens)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict_json(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def json_line(doc):
    """One line of strict JSON: inf and NaN written as null."""
    return json.dumps(strict_json(doc), allow_nan=False)


def print_lines(lines):
    for line in lines:
        print(line)


def detection_line(d, ext_output):
    """One printed detection, as both darknets print it (the percentage of darknet's float32 prob * 100)."""
    line = f"{d.name}: {float(np.float32(d.prob) * np.float32(100)):.0f}%"
    if ext_output:
        left, top, width, height = (c_float(v, "4.0f") for v in d.pixels)
        line += f"\t(left_x: {left}   top_y: {top}   width: {width}   height: {height})"
    return line


def detection_lines(path, result, fork, ext_output):
    """An image's printed result: the fork's (milliseconds, detections by left edge) or pjreddie's."""
    if fork:
        yield f"{path}: Predicted in {result.seconds * 1000:f} milli-seconds."
        detections = result.fork_order()
    else:
        yield f"{path}: Predicted in {result.seconds:f} seconds."
        detections = result.detections
    for d in detections:
        yield detection_line(d, ext_output)


def classification_lines(path, result):
    yield f"{path}: Predicted in {result.seconds:f} seconds."
    for _, name, prob in result.predictions:
        yield f"{name}: {c_float(prob)}"


def fork_objects(result):
    """The fork's JSON objects of one image or frame: one per box and class over FORK_JSON_THRESH (not those named
    dont_show*), in NMS order; each with "track_id" too when the frame was tracked (track.Tracker)."""
    objects = []
    for d in result.detections:
        if np.float32(d.prob) > FORK_JSON_THRESH and not d.name.startswith("dont_show"):
            x, y, w, h = d.box
            found = {"class_id": d.class_id, "name": d.name,
                     "relative_coordinates": {"center_x": x, "center_y": y, "width": w, "height": h},
                     "confidence": d.prob}
            if d.track_id is not None:
                found["track_id"] = d.track_id
            objects.append(found)
    return objects


def fork_value(value):
    """A value spaced and rounded as the fork's sprintf calls write it: floats with %f (null where the fork writes
    inf or nan, which are not JSON), objects as {"key":value, ...}."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}:{fork_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fork_value(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:f}" if math.isfinite(value) else "null"
    return json.dumps(value)


def fork_json(frame_id, objects, filename=None, counting=None):
    """One image or frame as the fork's detection_to_json writes it: its `-out` file's entries (with "filename")
    and its JSON port's frames (without); the line counts (track.LineCounter.as_json) as "counting" after the
    objects when counting."""
    head = f'{{\n "frame_id":{frame_id}, \n'
    if filename is not None:
        head += f' "filename":{json.dumps(filename)}, \n'
    tail = "\n ] \n}" if counting is None else f"\n ], \n \"counting\":{fork_value(counting)} \n}}"
    return head + ' "objects": [ \n' + ", \n".join("  " + fork_value(o) for o in objects) + tail


def fork_json_frame(frame_id, path, result):
    """One image's entry of the fork's `-out` JSON file."""
    return fork_json(frame_id, fork_objects(result), path)


def file_label(name):
    """A class name as a part of a file name: each run of characters other than letters, digits, '.' and '-' as
    one '_' ("traffic light": traffic_light)."""
    return re.sub(r"[^\w.-]+", "_", name)


def write_crops(folder, image_path, bgr, result):
    """Each detection of `result` cut out of `bgr` (the detected image, uint8 (h, w, 3)) at its pixels, clipped to
    the image, as folder/<image>_<n>_<class>.jpg (<image> the image's name without extension, n from 1 in the order
    of result.detections, <class> its name); each written path becomes its detection's `crop` (in --json). A box
    with an inf or NaN coordinate, or wholly outside the image, is not written."""
    from ..files.image import save_image   # OpenCV loads only when needed (and after -q has silenced it)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    h, w = bgr.shape[:2]
    for n, d in enumerate(result.detections, 1):
        if not all(math.isfinite(v) for v in d.pixels):
            continue
        left, top, width, height = d.pixels
        x0, y0, x1, y1 = max(left, 0), max(top, 0), min(left + width, w), min(top + height, h)
        if x1 > x0 and y1 > y0:
            name = f"{Path(image_path).stem}_{n}_{file_label(d.name)}.jpg"
            d.crop = save_image(np.ascontiguousarray(bgr[y0:y1, x0:x1]), folder / name)


def write_labels(image_path, result):
    """YOLO-format labels beside the image: the best class of each box, as AlexeyAB's -save_labels (boxes with an
    inf or NaN coordinate left out)."""
    lines = []
    for box, scored in result.finite_boxes():
        best = max(scored, key=lambda s: s[1])[0]  # the first of equal maxima, as darknet's strict '>'
        lines.append("%d %2.4f %2.4f %2.4f %2.4f\n" % ((best,) + box))
    label = Path(image_path).with_suffix(".txt")
    try:
        atomic_write(label, "".join(lines).encode())
    except WriteError as e:
        shipped = find_argument(image_path) != image_path
        raise DarknetError(f"{label}: cannot write the labels: {e.strerror}" + (
            f" ({image_path} is pydarknet's own copy: copy the image into a folder of yours to label it)"
            if shipped else "")) from None
