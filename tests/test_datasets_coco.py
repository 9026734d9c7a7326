"""COCO's figures and ids: `detector map ... --coco` equals pycocotools run here on the same detections, and
`detector valid` on a set converted from COCO writes COCO's results with the set's own category and image ids.
The network is the shipped demo (cfg/shapes-v4tiny.cfg, data/shapes-v4tiny.weights) on a shapes set."""
import json

import cv2
import numpy as np
import pytest
from conftest import ROOT, run_command

from pydarknet.files.config import read_data_cfg
from pydarknet.files.datasets import write_shapes
from pydarknet.files.labels import read_list
from pydarknet.tasks.coco import FIGURES
from pydarknet.tasks.evaluate import collect_detections

pytest.importorskip("pycocotools", reason="the coco extra (pycocotools) is not installed")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

CFG, WEIGHTS = ROOT / "cfg" / "shapes-v4tiny.cfg", ROOT / "data" / "shapes-v4tiny.weights"


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return write_shapes(tmp_path_factory.mktemp("shapes"), train=4, valid=8, seed=11)


def referee(paths, collected):
    """pycocotools' twelve figures, the truths read from the label files and the detections (every box and class
    with a nonzero probability, in pixels) given to loadRes as a user's results file would be."""
    images, truths, results = [], [], []
    for i, path in enumerate(paths):
        h, w = cv2.imread(path).shape[:2]
        images.append({"id": i, "width": w, "height": h})
        for line in open(path[:-4] + ".txt").read().splitlines():
            cls, x, y, bw, bh = (float(v) for v in line.split())
            truths.append({"id": len(truths) + 1, "image_id": i, "category_id": int(cls), "iscrowd": 0,
                           "bbox": [(x - bw / 2) * w, (y - bh / 2) * h, bw * w, bh * h], "area": bw * w * bh * h})
        start, end = collected.det_offsets[i], collected.det_offsets[i + 1]
        for (x, y, bw, bh), probs in zip(collected.bbox[start:end].astype(float), collected.prob[start:end]):
            for k in np.nonzero(probs > 0)[0]:
                results.append({"image_id": i, "category_id": int(k), "score": float(probs[k]),
                                "bbox": [(x - bw / 2) * w, (y - bh / 2) * h, bw * w, bh * h]})
    truth = COCO()
    truth.dataset = {"images": images, "annotations": truths,
                     "categories": [{"id": k, "name": str(k)} for k in range(3)]}
    truth.createIndex()
    evaluation = COCOeval(truth, truth.loadRes(results), "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    return evaluation.stats


def test_map_coco_is_pycocotools_on_the_same_detections(shapes, capsys):
    code, out, err = run_command(capsys, "detector", "map", shapes, CFG, WEIGHTS, "--coco", "--json")
    assert code == 0, err
    figures = json.loads(out)["coco"]
    assert " COCO's figures (pycocotools):" in err
    assert " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = " \
        f"{figures['AP']:0.3f}" in err
    stats = referee(read_list(read_data_cfg(shapes).str("valid")), collect_detections(shapes, CFG, WEIGHTS))
    assert list(figures) == list(FIGURES)
    np.testing.assert_allclose(list(figures.values()), stats, rtol=1e-12, atol=1e-12)
    assert figures["AP50"] > 0.8 and 0.3 < figures["AP"] < figures["AP50"]   # the demo network finds the shapes


def test_valid_writes_cocos_results_with_the_sets_own_ids(shapes, tmp_path, capsys):
    """The shapes set as a COCO export (category ids 5, 17, 40; image ids from 1000), converted: its labels are
    the set's own, and `detector valid` names the COCO ids."""
    paths = read_list(read_data_cfg(shapes).str("valid"))
    categories = [5, 17, 40]
    images, annotations = [], []
    for i, path in enumerate(paths):
        h, w = cv2.imread(path).shape[:2]
        images.append({"id": 1000 + i, "file_name": path.split("/")[-1], "width": w, "height": h})
        for line in open(path[:-4] + ".txt").read().splitlines():
            cls, x, y, bw, bh = (float(v) for v in line.split())
            annotations.append({"id": len(annotations), "image_id": 1000 + i, "category_id": categories[int(cls)],
                                "bbox": [(x - bw / 2) * w, (y - bh / 2) * h, bw * w, bh * h], "iscrowd": 0})
    export = tmp_path / "instances.json"
    export.write_text(json.dumps({"images": images, "annotations": annotations, "categories": [
        {"id": c, "name": n} for c, n in zip(categories, ["circle", "square", "triangle"])]}))
    code, out, err = run_command(capsys, "datasets", "convert", "coco", export, tmp_path / "set", "--images",
                                 paths[0].rsplit("/", 1)[0], "--valid", "0.5")
    assert code == 0, err
    data = out.strip()
    converted = read_list(read_data_cfg(data).str("train")) + read_list(read_data_cfg(data).str("valid"))
    assert len(converted) == len(paths)
    for path in converted:   # p_ID.jpg: its labels are the original's
        original = paths[int(path.rsplit("_", 1)[1][:-4]) - 1000]
        np.testing.assert_allclose(np.loadtxt(path[:-4] + ".txt", ndmin=2), np.loadtxt(original[:-4] + ".txt",
                                                                                       ndmin=2), atol=2e-6)
    code, _, err = run_command(capsys, "detector", "valid", data, CFG, WEIGHTS, "-out", tmp_path / "results")
    assert code == 0, err
    results = json.loads((tmp_path / "results" / "coco_results.json").read_text())
    valid_ids = {int(p.rsplit("_", 1)[1][:-4]) for p in read_list(read_data_cfg(data).str("valid"))}
    assert results and {r["image_id"] for r in results} == valid_ids
    assert {r["category_id"] for r in results} <= set(categories)
    best = {}
    for r in results:
        best[r["image_id"], r["category_id"]] = max(r["score"], best.get((r["image_id"], r["category_id"]), 0))
    truth = {(a["image_id"], a["category_id"]) for a in annotations if a["image_id"] in valid_ids}
    assert all(best.get(key, 0) > 0.5 for key in truth)   # each object's class is found with its own COCO id
