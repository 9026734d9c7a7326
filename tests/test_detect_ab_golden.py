"""The AlexeyAB fork's decoding and NMS on every golden/forward_ab case: its get_network_boxes and the NMS of
the cfg's last [yolo] (do_nms_sort or diounms_sort), run on the [yolo] outputs the fork stored, compared row
by row (same rows, same order) with its dets.txt. Needs no other layer: the stored tensors stand in for the
forward pass."""
import json

import numpy as np
import pytest

from conftest import SHARED
from golden import case_paths, read_dets
from pydarknet.results.detections import network_detections, network_nms
from pydarknet.files.config import read_cfg
from pydarknet.network.layers.yolo import Yolo
from test_detect_golden import compare, image_size

CASES = sorted(p.name for p in (SHARED / "golden" / "forward_ab").glob("*") if (p / "dets.txt").exists())


def dets_header(case_dir):
    """dets.txt's first line as {word: next word} ('letter 0', 'nms_kind 1', ...)."""
    words = (case_dir / "dets.txt").read_text().splitlines()[0].lstrip("# ").split()
    return dict(zip(words, words[1:]))


class StoredOutputs:
    """Stands in for the case's Network: the [net] size and the [yolo] layers alone, each holding the output the
    fork stored. The layers between are not built, so no other layer needs to exist or be right."""

    darknet = "ab"  # the cases are the fork's (a cfg like yolov3-tiny-prn's says so only through its weights)

    def __init__(self, case_dir, cfg):
        sections = read_cfg(cfg)
        self.w, self.h = sections[0].int("width"), sections[0].int("height")
        self.layers = []
        for entry in json.loads((case_dir / "layers.json").read_text()):
            if "file" in entry:
                section = sections[entry["index"] + 1]
                assert section.type == "yolo", f"layer {entry['index']} is [{section.type}], not the fork's [yolo]"
                layer = Yolo(section, entry["shape"], self, entry["index"])
                layer.output = np.load(case_dir / entry["file"])[None]
                self.layers.append(layer)


@pytest.mark.skipif(not CASES, reason="needs ../shared/golden/forward_ab (the shared reference data is not "
                    "beside the project)")
@pytest.mark.parametrize("case", CASES or ["none"])
def test_fork_decoding_and_nms(case):
    case_dir = SHARED / "golden" / "forward_ab" / case
    info, cfg, _ = case_paths(case_dir, SHARED)
    net = StoredOutputs(case_dir, cfg)
    imw, imh = image_size(case_dir)
    dets = network_detections(net, imw, imh, info["thresh"], info["hier_thresh"], relative=True,
                              letterbox=dets_header(case_dir)["letter"] == "1")
    dets = network_nms(net, dets, info["nms"])
    rows = [list(map(float, dets.bbox[i])) + [float(dets.objectness[i]), j, p]
            for i, j, p in dets.listing(info["thresh"])]
    compare(rows, read_dets(case_dir))
