"""COCO's figures by COCO's referee: pycocotools' COCOeval (the `coco` extra) on the detections `detector map`
scores, beside darknet's table (`detector map ... --coco`).

The truths are the set's label files and the detections every (box, class) with a nonzero probability that map
ranks, both in pixels of the image (its size from its header). COCOeval then does what the COCO server does:
AP averaged over IoU .50:.05:.95, at .50 and .75, by area (small < 32², medium < 96², large, the area of the
truth's box, as the labels hold no masks), and AR at 1, 10 and 100 detections an image (the 100 best a picture);
-1 where the set has no truth of that size, pycocotools' mark for a figure it cannot make.
"""
import contextlib
import io

import numpy as np

from ..files.annotations import image_size
from ..files.errors import DarknetError, install_hint

FIGURES = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR1", "AR10", "AR100", "AR_small",
           "AR_medium", "AR_large")


def coco_sets(collected):
    """(ground truth, detections) as COCO dicts of `collected` (evaluate.MapDetections): image i has id i + 1,
    class k category id k + 1 (COCO's ids start at 1)."""
    images, truths, detections = [], [], []
    for i, path in enumerate(collected.paths):
        width, height = image_size(path)
        images.append({"id": i + 1, "width": width, "height": height, "file_name": str(path)})
        scale = np.array([width, height, width, height], np.float64)
        truth = collected.truth[collected.truth_offsets[i]:collected.truth_offsets[i + 1]]
        for x, y, w, h, cls in truth.astype(np.float64) * np.append(scale, 1):
            truths.append({"id": len(truths) + 1, "image_id": i + 1, "category_id": int(cls) + 1, "iscrowd": 0,
                           "bbox": [x - w / 2, y - h / 2, w, h], "area": w * h})
        start, end = collected.det_offsets[i], collected.det_offsets[i + 1]
        boxes = collected.bbox[start:end].astype(np.float64) * scale
        for (x, y, w, h), probs in zip(boxes, collected.prob[start:end]):
            for k in np.nonzero(probs > 0)[0]:
                detections.append({"id": len(detections) + 1, "image_id": i + 1, "category_id": int(k) + 1,
                                   "iscrowd": 0, "bbox": [x - w / 2, y - h / 2, w, h], "area": w * h,
                                   "score": float(probs[k])})
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(collected.names)]
    return ({"images": images, "annotations": truths, "categories": categories},
            {"images": images, "annotations": detections, "categories": categories})


def coco_figures(collected):
    """(pycocotools' twelve printed lines, {figure: value}) for `collected`."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise DarknetError(f"--coco needs pycocotools: {install_hint('coco')}") from None
    sets = []
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):   # pycocotools prints as it goes: its summary becomes the lines
        for dataset in coco_sets(collected):
            coco = COCO()
            coco.dataset = dataset
            coco.createIndex()
            sets.append(coco)
        evaluation = COCOeval(*sets, iouType="bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        start = printed.tell()
        evaluation.summarize()
    lines = printed.getvalue()[start:].splitlines()
    return ["", " COCO's figures (pycocotools):"] + lines, dict(zip(FIGURES, map(float, evaluation.stats)))
