"""pydarknet.tasks.anchors: IoU k-means anchors, AlexeyAB's calc_anchors report, and cfg rewriting."""
import re

import numpy as np
import pytest

from conftest import ROOT, shared_path
from pydarknet.files.config import DarknetError, read_cfg
from pydarknet.network.network import Network
from pydarknet.tasks import anchors as A

YOLOV3_TINY = ROOT / "cfg" / "yolov3-tiny.cfg"


def test_iou_of_corner_aligned_boxes():
    iou = A.iou_wh([[2, 2], [1, 4]], [[2, 2], [4, 1], [1, 1]])
    np.testing.assert_allclose(iou, [[1, 2 / 6, 1 / 4], [2 / 6, 1 / 7, 1 / 4]])


def test_kmeans_by_hand():
    boxes = np.array([[10, 10], [1, 1], [10, 11], [1.1, 1]])
    anchors, avg = A.calc_anchors(boxes, 2, refine=False)
    # two obvious clusters; each centroid is the mean of its pair; sorted by area
    np.testing.assert_allclose(anchors, [[1.05, 1], [10, 10.5]])
    expected = (1 / 1.05 + 1.05 / 1.1 + 100 / 105 + 105 / 110) / 4
    assert avg == pytest.approx(expected)
    refined, refined_avg = A.calc_anchors(boxes, 2)
    assert refined_avg >= avg
    assert refined_avg == pytest.approx(A.iou_wh(boxes, refined).max(axis=1).mean())


def test_one_cluster_and_identical_boxes():
    anchors, avg = A.calc_anchors([[3, 4], [3, 4], [3, 4]], 2)
    np.testing.assert_allclose(anchors, [[3, 4], [3, 4]])
    assert avg == pytest.approx(1)
    anchors, _ = A.calc_anchors([[2, 2], [4, 4]], 1, refine=False)
    np.testing.assert_allclose(anchors, [[3, 3]])


def test_deterministic_for_a_seed():
    rng = np.random.default_rng(0)
    boxes = rng.uniform(5, 100, (300, 2))
    a1, v1 = A.calc_anchors(boxes, 5, seed=3)
    a2, v2 = A.calc_anchors(boxes, 5, seed=3)
    np.testing.assert_array_equal(a1, a2)
    assert v1 == v2
    areas = a1[:, 0] * a1[:, 1]
    assert (np.diff(areas) >= 0).all()


def test_more_clusters_than_boxes():
    with pytest.raises(DarknetError, match=r"6 anchors from 3 boxes"):
        A.calc_anchors([[1, 2], [3, 4], [5, 6]], 6)
    with pytest.raises(DarknetError):
        A.calc_anchors([[1, 2]], 0)


def test_anchor_text_and_file(tmp_path):
    anchors = np.array([[19.6, 23.2], [25, 44], [132.4, 169.5]])
    assert A.format_anchors(anchors, 160) == " 20, 23,  25, 44, 132,170"
    assert A.format_anchors(anchors / 32, 13) == "0.6125,0.7250, 0.7812,1.3750, 4.1375,5.2969"
    A.write_anchors_file(tmp_path / "anchors.txt", anchors, 416)
    assert (tmp_path / "anchors.txt").read_text() == " 20, 23,  25, 44, 132,170"


def test_report_matches_alexeyab_lines():
    golden = shared_path("golden", "map", "alexeyab_calc_anchors.txt").read_text().splitlines()
    start = next(i for i, line in enumerate(golden) if "num_of_clusters" in line)
    expected = [line for line in golden[start:] if line.strip()][:8]
    anchors = np.array([[20, 23], [25, 44], [42, 33], [44, 57], [33, 81], [67, 50]], float)
    lines = A.format_anchors_report(6, 160, 160, 600, 63, [570, 588, 631], 0.7403, anchors)
    assert lines == expected


def yolo_sections(cfg_path):
    return [s for s in read_cfg(cfg_path) if s.type == "yolo"]


def filters_before_yolo(cfg_path):
    sections = read_cfg(cfg_path)
    return [sections[i - 1].int("filters") for i, s in enumerate(sections) if s.type == "yolo"]


def test_cfg_rewrite_yolov3_tiny(tmp_path):
    text = YOLOV3_TINY.read_text()
    anchors = np.array([[10, 14], [23, 27], [37, 58], [81, 82], [135, 169], [200, 250], [344, 319]], float)
    new_text, diff = A.cfg_with_anchors(text, anchors, 416, "yolov3-tiny.cfg", "new.cfg")
    path = tmp_path / "new.cfg"
    path.write_text(new_text)
    yolos = yolo_sections(path)
    # the first [yolo] (13x13, coarse) gets the largest anchors, the last one the smallest (and the extra one)
    assert [s.ints("mask") for s in yolos] == [[4, 5, 6], [0, 1, 2, 3]]
    assert [s.int("num") for s in yolos] == [7, 7]
    assert yolos[0].floats("anchors") == [10, 14, 23, 27, 37, 58, 81, 82, 135, 169, 200, 250, 344, 319]
    assert filters_before_yolo(path) == [3 * 85, 4 * 85]
    net = Network(path)
    assert [l.out_shape[0] for l in net.layers if type(l).__name__.lower().startswith("yolo")] == [255, 340]
    # nothing else moved: same number of lines, only option values changed
    old_lines, new_lines = text.splitlines(), new_text.splitlines()
    assert len(old_lines) == len(new_lines)
    changed = [(a, b) for a, b in zip(old_lines, new_lines) if a != b]
    assert len(changed) == 7  # 2 masks, 2 anchors, 2 num, 1 filters
    for a, b in changed:
        assert a.split("=")[0] == b.split("=")[0]
    assert diff.startswith("--- yolov3-tiny.cfg\n+++ new.cfg\n")
    assert "-filters=255\n+filters=340\n" in diff


def test_cfg_rewrite_six_anchors_keeps_stock_layout(tmp_path):
    text = YOLOV3_TINY.read_text()
    anchors = np.array([[10, 14], [23, 27], [37, 58], [81, 82], [135, 169], [344, 319]], float)
    new_text, diff = A.cfg_with_anchors(text, anchors, 416)
    path = tmp_path / "six.cfg"
    path.write_text(new_text)
    assert [s.ints("mask") for s in yolo_sections(path)] == [[3, 4, 5], [0, 1, 2]]
    assert filters_before_yolo(path) == [255, 255]
    Network(path)


def test_cfg_rewrite_adds_missing_keys_and_follows_existing_masks(tmp_path):
    text = YOLOV3_TINY.read_text()
    # yolov4 style: the first [yolo] is the fine one (mask 0,1,2); and drop num= from the second
    text = text.replace("mask = 3,4,5", "mask = @").replace("mask = 0,1,2", "mask = 3,4,5").replace("@", "0,1,2")
    head, tail = text.rsplit("num=6\n", 1)
    text = head + tail
    anchors = np.arange(1, 13, dtype=float).reshape(6, 2) * 10
    new_text, _ = A.cfg_with_anchors(text, anchors, 416)
    path = tmp_path / "v4.cfg"
    path.write_text(new_text)
    yolos = yolo_sections(path)
    assert [s.ints("mask") for s in yolos] == [[0, 1, 2], [3, 4, 5]]
    assert [s.int("num") for s in yolos] == [6, 6]
    Network(path)


def test_cfg_rewrite_region(tmp_path):
    text = (ROOT / "cfg" / "yolov2-tiny.cfg").read_text()
    anchors = np.array([[0.5, 0.7], [1.9, 2.1], [3.3, 5.5]])
    new_text, _ = A.cfg_with_anchors(text, anchors, 13)
    path = tmp_path / "v2.cfg"
    path.write_text(new_text)
    sections = read_cfg(path)
    region = sections[-1]
    assert region.int("num") == 3
    assert region.floats("anchors") == [0.5, 0.7, 1.9, 2.1, 3.3, 5.5]
    assert sections[-2].int("filters") == 3 * (80 + 4 + 1)
    Network(path)


def test_cfg_without_output_layer():
    with pytest.raises(DarknetError, match="no \\[yolo\\] or \\[region\\]"):
        A.cfg_with_anchors("[net]\nwidth=32\n", np.ones((2, 2)))


def test_shapes_anchors_reach_the_target():
    data = shared_path("datasets", "shapes", "shapes.data")
    boxes = A.read_training_boxes(data, 160, 160)
    assert boxes.shape == (1789, 2)
    first = A.calc_anchors(boxes, 6)
    second = A.calc_anchors(boxes, 6)
    np.testing.assert_array_equal(first[0], second[0])
    assert first[1] == second[1]
    # AlexeyAB's random starts reached 73.74-74.11 %
    assert round(100 * first[1], 2) >= 74.11
    other = A.calc_anchors(boxes, 6, seed=1)
    assert round(100 * other[1], 2) >= 74.11


def test_run_anchors(tmp_path):
    data = shared_path("datasets", "shapes", "shapes.data")
    cfg = tmp_path / "shapes-tiny.cfg"
    cfg.write_text(shared_path("golden", "map", "shapes-tiny.cfg").read_text())
    out = tmp_path / "out"
    lines = A.run_anchors(data, 6, 160, 160, show=True, cfg=cfg, out_dir=out)
    assert lines[0] == " num_of_clusters = 6, width = 160, height = 160 "
    assert lines[1] == " read labels from 600 images "
    assert lines[4] == "counters_per_class = 570, 588, 631"
    assert re.fullmatch(r" avg IoU = \d\d\.\d\d % ", lines[5])
    anchors_line = next(line for line in lines if line.startswith("anchors = "))
    text = (out / "anchors.txt").read_text()
    assert anchors_line == "anchors = " + text
    assert re.fullmatch(r"( *\d+, *\d+, ){5} *\d+, *\d+", text)
    assert (out / "anchors.png").stat().st_size > 1000
    new_cfg = out / "shapes-tiny-anchors.cfg"
    assert any(line.startswith("+anchors = ") for line in lines)
    net = Network(new_cfg)
    assert yolo_sections(new_cfg)[0].floats("anchors") == [float(v) for v in text.split(",")]
    assert net.layers


def test_run_anchors_errors(tmp_path):
    with pytest.raises(DarknetError, match="no such file"):
        A.run_anchors(tmp_path / "missing.data", 6, 160, 160, out_dir=tmp_path)
    data = tmp_path / "x.data"
    data.write_text("classes=1\ntrain=nolist.txt\n")
    with pytest.raises(DarknetError, match=r"nolist.txt.*x.data:2"):
        A.run_anchors(data, 6, 160, 160, out_dir=tmp_path)
    with pytest.raises(DarknetError, match="positive"):
        A.run_anchors(data, 6, 0, 160, out_dir=tmp_path)
