"""`pydarknet datasets convert voc|coco|yolo SRC OUT`: a labelling tool's export as a set in darknet's layout.

OUT gets `images/` (each image linked, or copied, with its label file beside it: ``class x y w h`` lines, an
empty file for an image without boxes), `NAME.names`, `train.txt` and `valid.txt` (absolute paths), and
`NAME.data` naming them with `backup=`, ready for `detector train`, `anchors` and `map`. A set from COCO also
gets `NAME.categories` (each class's COCO category id, one a line) and `eval=coco` with `categories=` in its
.data, so that `detector valid` writes COCO's results with the original ids.

The split: the source's own where it has one (VOC's ImageSets/Main/val.txt, a data.yaml's val:), else a
`valid` fraction of the images drawn with `seed`.
"""
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np

from ...files.annotations import read_coco, read_voc, read_yolo
from ...files.config import read_names
from ...files.errors import DarknetError
from ...files.weights import atomic_write

FORMATS = ("voc", "coco", "yolo")


def read_source(kind, src, images=None, names=None, keep_difficult=False):
    """The Annotations of SRC in format `kind`."""
    if kind == "voc":
        return read_voc(src, read_names(names) if names else None, keep_difficult)
    if kind == "coco":
        if images is None:
            raise DarknetError(f"{src}: a COCO JSON names its images by file name: give their folder, --images DIR")
        return read_coco(src, images)
    return read_yolo(src)


def split(items, valid, seed):
    """The items' splits: their own when every one has one, else a `valid` fraction drawn with `seed`."""
    if items and all(item.split for item in items):
        return [item.split for item in items]
    chosen = set(np.random.default_rng(seed).permutation(len(items))[:round(valid * len(items))].tolist())
    return ["valid" if i in chosen else "train" for i in range(len(items))]


def place(source, target, copy):
    """The image at `target`: a link to `source` (absolute), or a copy; whatever was at `target` replaced."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    if copy:
        shutil.copyfile(source, target)
    else:
        os.symlink(source.resolve(), target)


def label_text(boxes):
    return "".join(f"{cls} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n" for cls, x, y, w, h in boxes)


def convert(kind, src, out, valid=0.2, seed=0, images=None, names=None, keep_difficult=False, copy=False,
            name=None):
    """Convert SRC (format `kind`) into OUT: (the .data file's path, the problems, one line each, the summary
    lines). DarknetError when no image is usable."""
    if kind not in FORMATS:
        raise DarknetError(f"{kind}: not a format I convert: give one of {', '.join(FORMATS)}")
    if not Path(src).exists():
        raise DarknetError(f"{src}: no such file or folder")
    anns = read_source(kind, src, images, names, keep_difficult)
    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise DarknetError(f"{out}: exists and is not a folder; give a new or empty folder")
    seen, items = set(), []
    for item in anns.items:
        if item.name in seen:
            anns.problems.append(f"{item.source}: a second image named {item.name}: left out")
        else:
            seen.add(item.name)
            items.append(item)
    if not items:
        raise DarknetError(f"{src}: no usable image ({len(anns.problems)} problems above): nothing converted")
    name = name or out.name
    lists = {"train": [], "valid": []}
    boxes = Counter()
    for item, part in zip(items, split(items, valid, seed)):
        target = out / "images" / item.name
        place(item.source, target, copy)
        target.with_suffix(".txt").write_text(label_text(item.boxes))   # not atomic: the lists come last
        lists[part].append(f"{target}\n")
        boxes.update(anns.names[row[0]] for row in item.boxes)
    for part, paths in lists.items():
        atomic_write(out / f"{part}.txt", "".join(paths).encode())
    atomic_write(out / f"{name}.names", "".join(f"{n}\n" for n in anns.names).encode())
    data = (f"classes={len(anns.names)}\ntrain={out / 'train.txt'}\nvalid={out / 'valid.txt'}\n"
            f"names={out / f'{name}.names'}\nbackup={out / 'backup'}{os.sep}\n")
    if anns.categories is not None:
        atomic_write(out / f"{name}.categories", "".join(f"{c}\n" for c in anns.categories).encode())
        data += f"eval=coco\ncategories={out / f'{name}.categories'}\n"
    atomic_write(out / f"{name}.data", data.encode())
    negatives = sum(not item.boxes for item in items)
    summary = [f"{len(items)} images ({len(lists['train'])} train, {len(lists['valid'])} valid; {negatives} "
               f"without boxes), {sum(boxes.values())} boxes in {len(anns.names)} classes"]
    summary += [f"  {n}: {boxes[n]}" for n in anns.names]
    summary += [f"{count} {what} left out" for what, count in sorted(anns.left_out.items())]
    if anns.problems:
        summary.append(f"{len(anns.problems)} problems (listed above)")
    return out / f"{name}.data", anns.problems, summary
