"""The labelling tools' exports, read into one form: Pascal VOC XML, COCO instances JSON, Ultralytics YOLO folders.

Each reader gives Annotations: the class names (and, for COCO, each class's category id), one Annotated a usable
image (its file, the name it gets in a darknet set, its boxes as darknet's label rows ``class x y w h`` relative
to the image, the split its source put it in) and one line a problem (an unknown class, a box past the image,
a missing image, a file that does not parse), each naming its file. A reader raises only when its source is not
there at all; what it leaves out is said in `problems`, and counted in `left_out` where it is by design (VOC's
`difficult` objects, COCO's crowd regions).

Conversions:

* VOC: `<bndbox>` is 1-based pixels (xmin, ymin, xmax, ymax); as darknet's scripts/voc_label.py converts it, the
  centre is ((xmin + xmax) / 2 - 1, (ymin + ymax) / 2 - 1) and the size (xmax - xmin, ymax - ymin), each over the
  image's width or height. A box is first clipped to [1, width] x [1, height].
* COCO: `bbox` is [x, y, w, h] in 0-based pixels of its top-left corner; the centre is (x + w / 2, y + h / 2).
  Categories in id order are the classes, whatever their ids; `iscrowd` regions are left out; an image without
  annotations is a negative (no boxes). A box is clipped to [0, width] x [0, height].
* YOLO: label lines are darknet's already (`class x y w h`, relative); a box is clipped to the image.
"""
import json
import re
import xml.etree.ElementTree as ElementTree
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DarknetError
from .image import ImageError
from .image_header import declared_size

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".pgm", ".ppm")


@dataclass
class Annotated:
    source: Path        # the image file
    name: str           # its path under the converted set's images/ folder
    boxes: list         # (class, x, y, w, h) rows, relative to the image
    split: str = None   # "train" or "valid" where the source says, else None (the converter draws it)


@dataclass
class Annotations:
    names: list
    items: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    left_out: Counter = field(default_factory=Counter)
    categories: list = None   # COCO's category id of each class


def clip_box(x0, y0, x1, y1, low, width, height):
    """The corners clipped to [low, width] x [low, height], and whether that moved any of them."""
    clipped = (min(max(x0, low), width), min(max(y0, low), height), min(max(x1, low), width),
               min(max(y1, low), height))
    return clipped, clipped != (x0, y0, x1, y1)


def image_size(path):
    """(width, height) from the image's header."""
    try:
        with open(path, "rb") as f:
            return declared_size(f.read(1 << 16), str(path))
    except OSError as e:
        raise ImageError(f"{path}: {e.strerror}") from None


def _pixel_box(anns, where, cls, corners, low, size):
    """The relative row of a box given by its pixel corners, clipped (a problem line when it was), or None (a
    problem line) when nothing is left of it."""
    width, height = size
    (x0, y0, x1, y1), clipped = clip_box(*corners, low, width, height)
    if clipped:
        anns.problems.append(f"{where}: box {tuple(round(c, 4) for c in corners)} past the image: clipped")
    if x1 <= x0 or y1 <= y0:
        anns.problems.append(f"{where}: the box is empty inside the image: left out")
        return None
    shift = 1 if low == 1 else 0   # VOC's 1-based pixels
    return (cls, ((x0 + x1) / 2 - shift) / width, ((y0 + y1) / 2 - shift) / height, (x1 - x0) / width,
            (y1 - y0) / height)


# ---------------------------------------------------------------------------------------------------------
# Pascal VOC
# ---------------------------------------------------------------------------------------------------------

def _voc_text(node, path, default=None):
    found = node.find(path)
    return found.text.strip() if found is not None and found.text else default


def _voc_image(folder, xml, root):
    """The image an annotation names (<filename>, else the XML's stem with any image suffix) in JPEGImages/."""
    images = folder / "JPEGImages"
    named = _voc_text(root, "filename")
    if named and (images / named).is_file():
        return images / named
    stem = Path(named).stem if named else xml.stem
    return next((images / (stem + s) for s in IMAGE_SUFFIXES + tuple(s.upper() for s in IMAGE_SUFFIXES)
                 if (images / (stem + s)).is_file()), None)


def _voc_splits(folder):
    """{image id: "train" or "valid"} from ImageSets/Main (val.txt, else test.txt, is valid; the others train),
    or {} without those lists."""
    main = folder / "ImageSets" / "Main"
    valid = next((main / n for n in ("val.txt", "test.txt") if (main / n).is_file()), None)
    if valid is None:
        return {}
    return {line.split()[0]: "valid" for line in valid.read_text().splitlines() if line.split()}


def read_voc(folder, names=None, keep_difficult=False):
    """A VOC folder (Annotations/*.xml, JPEGImages/, optionally ImageSets/Main/val.txt): Annotations. `names`:
    the classes in order (others are problems), else every name found, sorted. `difficult` objects are left out
    (as voc_label.py) unless `keep_difficult`."""
    folder = Path(folder)
    xmls = sorted((folder / "Annotations").glob("*.xml"))
    if not xmls:
        raise DarknetError(f"{folder}: no Annotations/*.xml: give a Pascal VOC folder (Annotations/, JPEGImages/)")
    parsed = []
    anns = Annotations(names=list(names or []))
    for xml in xmls:
        try:
            parsed.append((xml, ElementTree.parse(xml).getroot()))
        except ElementTree.ParseError as e:
            anns.problems.append(f"{xml}:{e.position[0]}: not XML ({e}): left out")
    if names is None:
        anns.names = sorted({_voc_text(o, "name", "") for _, root in parsed for o in root.iter("object")} - {""})
    index = {name: i for i, name in enumerate(anns.names)}
    splits = _voc_splits(folder)
    for xml, root in parsed:
        image = _voc_image(folder, xml, root)
        if image is None:
            anns.problems.append(f"{xml}: its image ({_voc_text(root, 'filename', xml.stem)}) is not in "
                                 f"{folder / 'JPEGImages'}: left out")
            continue
        try:
            size = int(float(_voc_text(root, "size/width", 0))), int(float(_voc_text(root, "size/height", 0)))
            if min(size) <= 0:
                size = image_size(image)
        except (ValueError, ImageError) as e:
            anns.problems.append(f"{xml}: no usable <size> and no size from the image ({e}): left out")
            continue
        boxes = []
        for number, obj in enumerate(root.iter("object"), 1):
            name = _voc_text(obj, "name", "")
            where = f"{xml}: object {number} ({name})"
            if int(float(_voc_text(obj, "difficult", 0) or 0)) and not keep_difficult:
                anns.left_out["difficult objects"] += 1
                continue
            if name not in index:
                anns.problems.append(f"{where}: not one of the {len(index)} names: left out")
                continue
            try:
                corners = tuple(float(_voc_text(obj, f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
            except (TypeError, ValueError):
                anns.problems.append(f"{where}: no <bndbox> with xmin, ymin, xmax, ymax numbers: left out")
                continue
            row = _pixel_box(anns, where, index[name], corners, 1, size)
            if row:
                boxes.append(row)
        anns.items.append(Annotated(image, image.name, boxes, splits.get(xml.stem, "train") if splits else None))
    return anns


# ---------------------------------------------------------------------------------------------------------
# COCO
# ---------------------------------------------------------------------------------------------------------

def read_coco(json_path, images):
    """A COCO instances JSON and the folder of its images: Annotations (with `categories`, the ids). An image is
    named `STEM_ID.ext` in the converted set, so that darknet's `valid` (the number after the last '_') finds its
    COCO id."""
    json_path, images = Path(json_path), Path(images)
    try:
        coco = json.loads(json_path.read_bytes())
    except OSError as e:
        raise DarknetError(f"{json_path}: cannot read: {e.strerror}") from None
    except ValueError as e:
        line = f":{e.lineno}" if hasattr(e, "lineno") else ""
        raise DarknetError(f"{json_path}{line}: not JSON ({e}): give COCO's instances_*.json") from None
    if not isinstance(coco, dict) or not {"images", "annotations", "categories"} <= coco.keys():
        raise DarknetError(f"{json_path}: not a COCO instances file (it needs images, annotations and categories)")
    try:
        return _coco_annotations(coco, json_path, images)
    except (KeyError, TypeError, ValueError) as e:
        raise DarknetError(f"{json_path}: not a COCO instances file ({type(e).__name__}: {e}): give COCO's "
                           f"instances_*.json, its images with id and file_name, its categories with id and "
                           f"name") from None


def _coco_annotations(coco, json_path, images):
    categories = sorted(coco["categories"], key=lambda c: c["id"])
    anns = Annotations(names=[c["name"] for c in categories], categories=[c["id"] for c in categories])
    index = {c["id"]: i for i, c in enumerate(categories)}
    by_image = {}
    for number, a in enumerate(coco["annotations"]):
        by_image.setdefault(a.get("image_id"), []).append((number, a))
    known = {im["id"] for im in coco["images"]}
    for image_id in by_image.keys() - known:
        anns.problems.append(f"{json_path}: annotations[{by_image[image_id][0][0]}]: image_id {image_id} is not "
                             f"in images: left out")
    for im in coco["images"]:
        source = images / im["file_name"]
        if not source.is_file():
            anns.problems.append(f"{json_path}: image {im['id']} ({source}): no such file: left out")
            continue
        size = (im.get("width"), im.get("height")) if im.get("width") and im.get("height") else image_size(source)
        boxes = []
        for number, a in by_image.get(im["id"], []):
            where = f"{json_path}: annotations[{number}] (id {a.get('id')})"
            if a.get("iscrowd"):
                anns.left_out["crowd regions"] += 1
            elif a.get("category_id") not in index:
                anns.problems.append(f"{where}: category_id {a.get('category_id')} is not in categories: left out")
            elif len(a.get("bbox") or ()) != 4:
                anns.problems.append(f"{where}: no bbox [x, y, width, height]: left out")
            else:
                x, y, w, h = (float(v) for v in a["bbox"])
                row = _pixel_box(anns, where, index[a["category_id"]], (x, y, x + w, y + h), 0, size)
                if row:
                    boxes.append(row)
        name = Path(im["file_name"])
        anns.items.append(Annotated(source, f"{name.stem}_{im['id']}{name.suffix}", boxes))
    return anns


# ---------------------------------------------------------------------------------------------------------
# Ultralytics YOLO folders
# ---------------------------------------------------------------------------------------------------------

def _yaml_value(text):
    text = text.split(" #")[0].strip()
    return text[1:-1] if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"" else text


def read_data_yaml(path):
    """The keys of an Ultralytics data.yaml that a set needs (path, train, val, names), in the forms its tools
    write: `names: [a, b]`, a `- a` list, or a `0: a` mapping under `names:`."""
    options, key = {}, None
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        nested = line[0] in " \t-"
        item = re.match(r"\s*(?:-\s+(.*)|(\d+)\s*:\s*(.*))$", line) if nested else None
        if nested and key == "names" and item:
            options["names"].append(_yaml_value(item[1] if item[1] is not None else item[3]))
        elif not nested and ":" in line:
            key, value = (part.strip() for part in line.split(":", 1))
            value = _yaml_value(value)
            if key == "names":
                options[key] = [_yaml_value(v) for v in value[1:-1].split(",") if v.strip()] \
                    if value.startswith("[") else []
            else:
                options[key] = value
        elif not nested or key != "names":
            raise DarknetError(f"{path}:{number}: cannot read '{line.strip()}' (give `key: value` lines and the "
                               f"names as a list or a mapping)")
    if not options.get("names"):
        raise DarknetError(f"{path}: no names: give `names: [first, second, ...]`")
    return options


def _yolo_images(where):
    """The images of a split: a folder's (recursively), or a list file's lines."""
    if where.is_dir():
        return sorted(p for p in where.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return [where.parent / line.strip() for line in where.read_text().splitlines() if line.strip()]


def _yolo_label(image):
    """Ultralytics' rule: the last images/ folder becomes labels/, the suffix .txt."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _yolo_boxes(anns, label, classes):
    boxes = []
    for number, line in enumerate(label.read_text(errors="replace").splitlines(), 1):
        fields, where = line.split(), f"{label}:{number}"
        if not fields:
            continue
        try:
            cls, x, y, w, h = int(fields[0]), *(float(v) for v in fields[1:])
        except ValueError:
            anns.problems.append(f"{where}: expected 'class x y w h', got '{line.strip()}': left out")
            continue
        if not 0 <= cls < classes:
            anns.problems.append(f"{where}: class {cls} is not one of the {classes} names: left out")
            continue
        row = _pixel_box(anns, where, cls, (x - w / 2, y - h / 2, x + w / 2, y + h / 2), 0, (1, 1))
        if row:
            boxes.append(row)
    return boxes


def read_yolo(folder):
    """An Ultralytics folder (data.yaml; images/{train,val}/, labels/{train,val}/): Annotations, each image in the
    split of its data.yaml key (train, val; no split without a val:); an image without a label file is a
    negative."""
    folder = Path(folder)
    found = sorted(folder.glob("*.yaml")) if folder.is_dir() else [folder]
    if not found or not found[0].is_file():
        raise DarknetError(f"{folder}: no data.yaml: give an Ultralytics YOLO folder (data.yaml, images/, labels/)")
    yaml_file = next((p for p in found if p.name == "data.yaml"), found[0])
    options = read_data_yaml(yaml_file)
    root = yaml_file.parent / options.get("path", "")
    anns = Annotations(names=options["names"])
    for key, split in (("train", "train"), ("val", "valid")):
        if not options.get(key):
            continue
        where = root / options[key]
        if not where.exists():
            anns.problems.append(f"{yaml_file}: {key}: {where}: no such folder or list: left out")
            continue
        for image in _yolo_images(where):
            if not image.is_file():
                anns.problems.append(f"{where}: {image}: no such file: left out")
                continue
            label = _yolo_label(image)
            boxes = _yolo_boxes(anns, label, len(anns.names)) if label.is_file() else []
            anns.items.append(Annotated(image, f"{split}/{image.name}", boxes, split if options.get("val") else None))
    return anns
