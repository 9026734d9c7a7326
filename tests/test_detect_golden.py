"""End-to-end detector decoding: darknet's get_network_boxes + do_nms_sort on each golden detector case,
compared row by row (same rows, same order) with the dets.txt darknet printed: within golden.DETECTIONS (the
printing and darknet's -Ofast box arithmetic), from bit-exact layer outputs."""

import pytest

from conftest import DATA, SHARED, shared_path
from golden import DETECTIONS, close, read_dets, run_case
from pydarknet.results.detections import do_nms_sort, network_detections

DETECTOR_CASES = ["yolov1-tiny_slim", "yolov2-tiny_slim", "yolov2_slim", "yolov3_slim", "yolov3-spp_slim",
                  "yolov3-tiny_dog", "yolov3-tiny_eagle", "yolov3-tiny_person"]


def image_size(case_dir):
    """imw and imh from dets.txt's header line ('# imw 640 imh 424 ...')."""
    for line in (case_dir / "dets.txt").read_text().splitlines():
        if line.startswith("#") and "imw" in line:
            words = line[1:].split()
            return int(words[words.index("imw") + 1]), int(words[words.index("imh") + 1])
    raise AssertionError(f"{case_dir}/dets.txt: no '# imw .. imh ..' header")


def decoded_rows(case_dir, root, engine=None):
    net, info = run_case(case_dir, root, engine)
    imw, imh = image_size(case_dir)
    dets = network_detections(net, imw, imh, info["thresh"], info["hier_thresh"], relative=True,
                              letterbox=info["preprocess"] == "letterbox")
    dets = do_nms_sort(dets, info["nms"])
    return [list(map(float, dets.bbox[i])) + [float(dets.objectness[i]), j, p]
            for i, j, p in dets.listing(info["thresh"])]


def compare(rows, ref):
    assert len(rows) == len(ref), f"{len(rows)} rows, darknet printed {len(ref)}"
    for n, (ours, theirs) in enumerate(zip(rows, ref)):
        assert ours[5] == theirs[5] and close(ours, theirs, DETECTIONS), \
            f"row {n}: ours {ours}, darknet {theirs}"


@pytest.mark.parametrize("case", DETECTOR_CASES)
def test_shared_detector_case(case, darknet_products):
    case_dir = shared_path("golden", "forward", case)
    compare(decoded_rows(case_dir, SHARED), read_dets(case_dir))


LOCAL_CASES = sorted(p for p in (DATA / "forward").glob("*") if p.is_dir() and p.name in DETECTOR_CASES)


@pytest.mark.parametrize("case_dir", LOCAL_CASES, ids=lambda p: p.name)
def test_local_detector_case(case_dir, darknet_products):
    compare(decoded_rows(case_dir, DATA), read_dets(case_dir))
