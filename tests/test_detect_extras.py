"""The Hank.ai fork's and DarkHelp's conveniences on the detector commands: the files in any order and a .names
file for the .data; -crop, -skipclasses and -heatmaps (Detector's skip_classes= and heatmaps=)."""
import json

import cv2
import numpy as np
from click.testing import CliRunner

from conftest import ROOT, run_command as run
from moving_shapes import COUNT_LINE, write_clip
from pydarknet.cli import cli
from pydarknet.files.datasets import write_shapes
from pydarknet.tasks.predict import Detector

CFG, WEIGHTS = str(ROOT / "cfg/shapes-tiny.cfg"), str(ROOT / "data/shapes-tiny.weights")
DATA, NAMES = str(ROOT / "cfg/shapes.data"), str(ROOT / "data/shapes.names")
V4_CFG, V4_WEIGHTS = str(ROOT / "cfg/shapes-v4tiny.cfg"), str(ROOT / "data/shapes-v4tiny.weights")
IMAGE = str(ROOT / "data/shapes.jpg")


def results(out):
    """The stdout of --json runs without the times."""
    docs = [json.loads(line) for line in out.splitlines()]
    return [{k: v for k, v in doc.items() if k != "seconds"} for doc in docs]


def test_files_in_any_order_and_a_names_file_for_the_data(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, expected, _ = run(capsys, "detector", "test", DATA, CFG, WEIGHTS, IMAGE, "--json", "-q")
    assert code == 0 and "triangle" in expected
    for argv in (["detector", "test", NAMES, CFG, WEIGHTS, IMAGE], ["detect", IMAGE, WEIGHTS, NAMES, CFG],
                 ["detect", NAMES, CFG, WEIGHTS, IMAGE], ["detector", "test", WEIGHTS, IMAGE, CFG, DATA]):
        code, out, err = run(capsys, *argv, "--json", "-q")
        assert (code, err, results(out)) == (0, "", results(expected)), argv
    code, out, _ = run(capsys, "detect", CFG, WEIGHTS, IMAGE, "--json", "-q")   # no names: COCO's, as before
    assert code == 0 and [d["name"] for d in results(out)[0]["detections"]] == ["car", "car", "car"]


def test_files_that_cannot_be_told_apart_are_one_usage_line(capsys):
    code, out, err = run(capsys, "detect", CFG, V4_CFG, WEIGHTS, IMAGE)
    assert (code, out) == (2, "")
    assert err == (f"pydarknet: error: {CFG} and {V4_CFG} are both .cfg files: give one (see `pydarknet detect "
                   "--help`)\n")
    code, _, err = run(capsys, "detector", "test", NAMES, CFG)
    assert code == 2 and err == "pydarknet: error: Missing argument 'WEIGHTS'. (see `pydarknet detector test --help`)\n"
    code, _, err = run(capsys, "detect", DATA, WEIGHTS, IMAGE)   # the .data where the cfg goes
    assert code == 2 and err == (f"pydarknet: error: Missing argument 'CFG': {DATA} gives the class names, not the "
                                 "network: give the .cfg as well, before the WEIGHTS. "
                                 "(see `pydarknet detect --help`)\n")
    code, _, err = run(capsys, "demo", CFG, WEIGHTS, "a.mp4", "b.mp4")
    assert code == 2 and err.startswith("pydarknet: error: Got unexpected extra argument (b.mp4)")


def test_map_takes_a_names_file_and_the_list_of_images(capsys, tmp_path):
    data = write_shapes(tmp_path / "set", train=0, valid=8)
    code, expected, _ = run(capsys, "detector", "map", data, CFG, WEIGHTS, "-q")
    assert code == 0 and "mean average precision (mAP@0.50)" in expected
    code, out, _ = run(capsys, "detector", "map", WEIGHTS, tmp_path / "set/valid.txt", CFG,
                       tmp_path / "set/shapes.names", "-q")
    assert (code, out) == (0, expected)
    code, out, err = run(capsys, "detector", "map", tmp_path / "set/shapes.names", CFG, WEIGHTS, "-q")
    assert (code, out) == (1, "")
    assert err == (f"pydarknet: error: {tmp_path / 'set/shapes.names'}: a names file lists no images to evaluate: "
                   "give their list after WEIGHTS (a file of image paths, one per line, as a .data file's valid=)\n")


def test_crops_are_the_boxes_pixels_named_in_the_json(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "detector", "test", DATA, V4_CFG, V4_WEIGHTS, IMAGE, "-crop", "crops", "--json", "-q")
    detections = json.loads(out)["detections"]
    assert code == 0 and [d["crop"] for d in detections] == [
        "crops/shapes_1_triangle.jpg", "crops/shapes_2_triangle.jpg", "crops/shapes_3_square.jpg",
        "crops/shapes_4_circle.jpg"]
    image = cv2.imread(IMAGE)
    for d in detections:
        crop = cv2.imread(d["crop"])
        p = d["pixels"]
        assert crop.shape == (p["height"], p["width"], 3)   # each box lies inside the image
        assert np.abs(crop.astype(int) - image[p["top"]:p["top"] + p["height"],
                                               p["left"]:p["left"] + p["width"]]).mean() < 8   # JPEG at 80


def test_a_skipped_class_is_never_reported_drawn_or_labelled(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shapes.jpg").write_bytes(open(IMAGE, "rb").read())
    runs = {}
    for skip in ([], ["-skipclasses", "1"]):
        code, text, _ = run(capsys, "detector", "test", DATA, V4_CFG, V4_WEIGHTS, "shapes.jpg", "-save_labels", "-q",
                            "-out", f"drawn{len(skip)}", *skip)
        labels = (tmp_path / "shapes.txt").read_text()
        code, out, _ = run(capsys, "detector", "test", DATA, V4_CFG, V4_WEIGHTS, "shapes.jpg", "--json", "-q", *skip)
        runs[bool(skip)] = text, labels, [d["name"] for d in json.loads(out)["detections"]]
    assert runs[False][2] == ["triangle", "triangle", "square", "circle"]
    assert runs[True][2] == ["triangle", "triangle", "circle"]
    assert "square: 53%" in runs[False][0] and "square" not in runs[True][0]
    assert [line[0] for line in runs[False][1].splitlines()] == ["2", "2", "1", "0"]
    assert [line[0] for line in runs[True][1].splitlines()] == ["2", "2", "0"]
    drawn, skipped = cv2.imread("drawn0.jpg").astype(int), cv2.imread("drawn2.jpg").astype(int)
    changed = np.argwhere(np.abs(drawn - skipped).sum(2) > 60)   # only around the square's box (67, 123, 36, 19)
    assert len(changed) and changed[:, 1].min() >= 60 and changed[:, 0].min() >= 100


def test_skipped_classes_leave_the_demo_stream_tracking_and_counting(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    clip = tmp_path / "moving.avi"
    write_clip(clip)
    line = ",".join(map(str, COUNT_LINE))
    docs = CliRunner().invoke(cli, ["detector", "demo", NAMES, CFG, WEIGHTS, str(clip), "-thresh", ".25",
                                    "-count_line", line, "--json", "-q", "-skipclasses", "0"])
    assert docs.exit_code == 0, docs.output
    frames = [json.loads(line) for line in docs.stdout.splitlines()]
    assert {d["name"] for frame in frames for d in frame["detections"]} == {"square", "triangle"}
    assert set(frames[-1]["counting"]["counts"]) == {"square", "triangle"}   # the circle crossed too (test_track)


def test_bad_skip_classes_are_one_line(capsys):
    code, out, err = run(capsys, "detect", CFG, WEIGHTS, IMAGE, "-skipclasses", "2,x")
    assert (code, out, err) == (1, "", "pydarknet: error: -skipclasses 2,x: give class numbers and ranges, e.g. "
                                       "2,5-8\n")
    code, out, err = run(capsys, "detect", CFG, WEIGHTS, IMAGE, "-skipclasses", "1-3", "-q")
    assert (code, out) == (1, "")
    assert err == "pydarknet: error: -skipclasses: class 3 is not one of the network's 3 classes (0 to 2)\n"


def test_a_heatmap_is_bright_where_its_class_is(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    image = cv2.imread(IMAGE)
    result = Detector(V4_CFG, V4_WEIGHTS, names=["circle", "square", "triangle"], heatmaps=True).detect(image)
    square = next(d for d in result.detections if d.name == "square")
    left, top, width, height = square.pixels
    heat = result.heatmap(1)
    assert heat.shape == (144, 224)
    y, x = np.unravel_index(heat.argmax(), heat.shape)
    assert left <= x < left + width and top <= y < top + height
    assert heat[top:top + height, left:left + width].mean() > 5 * heat.mean()
    code, _, err = run(capsys, "detector", "test", NAMES, V4_CFG, V4_WEIGHTS, IMAGE, "-heatmaps", "-skipclasses", "0")
    assert code == 0 and sorted(p.name for p in tmp_path.iterdir()) == [
        "predictions.jpg", "predictions_heatmap.jpg", "predictions_heatmap_square.jpg",
        "predictions_heatmap_triangle.jpg"]
    written = cv2.imread("predictions_heatmap_square.jpg").astype(int)
    hottest, nothing = written[top + height // 2, left + width // 2], written[5, 5]   # BGR: JET, dark blue to dark red
    assert hottest[2] > 100 and hottest[0] < 50 and nothing[0] > 100 and nothing[2] < 50, (hottest, nothing)
