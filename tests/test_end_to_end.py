"""From the image file to darknet's final answer, for every golden forward case: our JPEG decoder and
preprocessing give darknet's input.npy bit for bit, and the network then gives dets.txt / the top 10 to float
tolerance: the printing's (golden.PRINTED) for a classifier's top 10, golden.DETECTIONS for the boxes (the
layer-by-layer and decoding tests run from that same input)."""
import json

import numpy as np
import pytest

from conftest import SHARED
from golden import DETECTIONS, PRINTED, case_param, close, or_skip, read_dets, run_case
from pydarknet.files.image import letterbox_image, load_image, resize_image, resize_min
from pydarknet.results.classifications import top_k
from pydarknet.results.detections import do_nms_sort, network_detections

FORWARD = SHARED / "golden" / "forward"
CASES = sorted(p for p in FORWARD.glob("*") if p.is_dir()) if FORWARD.is_dir() else []
PREPARE = {"letterbox": lambda im, w, h: letterbox_image(im, w, h),
           "resize": lambda im, w, h: resize_image(im, w, h),
           "resize_min": lambda im, w, h: resize_min(im, w)}


@pytest.mark.parametrize("case_dir", or_skip([case_param(p) for p in CASES], "golden/forward"))
def test_image_file_to_darknets_answer(case_dir, darknet_products):
    info = json.loads((case_dir / "case.json").read_text())
    expected_input = np.load(case_dir / "input.npy")
    net, _ = run_case(case_dir, SHARED)  # loads the network (resized for resize_min cases)
    if info["preprocess"] == "resize_min":
        w = h = 224  # tiny.cfg's input size, the resize_min target
    else:
        _, h, w = expected_input.shape
    x = PREPARE[info["preprocess"]](load_image(SHARED / info["image"]), w, h)
    assert x.shape == expected_input.shape and np.array_equal(x, expected_input), "input differs from darknet's"
    output = net.forward(x[None])
    rows = read_dets(case_dir)
    if len(rows[0]) == 2:  # classifier: top 10 (index, probability)
        ours = top_k(output[0].reshape(-1), len(rows))
        assert [i for i, _ in ours] == [int(r[0]) for r in rows]
        assert close([p for _, p in ours], [r[1] for r in rows], PRINTED)
        return
    imw, imh = (int(v) for v in (case_dir / "dets.txt").read_text().split()[2:5:2])
    dets = network_detections(net, imw, imh, info["thresh"], info["hier_thresh"],
                              letterbox=info["preprocess"] == "letterbox")
    dets = do_nms_sort(dets, info["nms"])
    listing = dets.listing(info["thresh"])
    assert len(listing) == len(rows)
    for (i, j, p), row in zip(listing, rows):
        assert j == int(row[5])
        assert close(list(dets.bbox[i]) + [dets.objectness[i], p], row[:5] + [row[6]], DETECTIONS)
