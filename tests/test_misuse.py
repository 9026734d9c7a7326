"""Misuse of the command line: each is one `pydarknet: error:` line naming the file and the likely fix (or one
warning line where darknet only warns), and a non-zero exit where nothing useful was done."""
import io
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ROOT, run_command as run
from pydarknet.files.errors import install_hint

SHAPES_CFG, SHAPES_WEIGHTS = str(ROOT / "cfg/shapes-tiny.cfg"), str(ROOT / "data/shapes-tiny.weights")


def test_export_onnx_without_onnx_says_how_to_install_it_before_reading_weights(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)   # as if not installed
    code, out, err = run(capsys, "export", "onnx", SHAPES_CFG, tmp_path / "missing.weights", tmp_path / "x.onnx")
    assert (code, out) == (1, "")
    assert err == f"pydarknet: error: export onnx needs the onnx package: {install_hint('onnx')}\n"


def command(*argv, stdin=""):
    """(exit code, stdout, stderr) of the command in a new process (OpenCV's and FFmpeg's own lines included)."""
    proc = subprocess.run([sys.executable, "-m", "pydarknet", *map(str, argv)], input=stdin, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def test_a_classifier_given_to_detect_names_classify(capsys):
    tiny = ROOT / "cfg/tiny.cfg"
    code, out, err = run(capsys, "detect", tiny, "never-read.weights", ROOT / "data/dog.jpg", "-q")
    assert (code, out) == (1, "")
    assert err == (f"pydarknet: error: {tiny}: a classifier (no [yolo], [region] or [detection] layer), not a "
                   f"detector: use `pydarknet classify {tiny} WEIGHTS IMAGE`\n")


def test_a_detector_given_to_classify_names_detect(capsys):
    code, out, err = run(capsys, "classify", SHAPES_CFG, "never-read.weights", ROOT / "data/dog.jpg")
    assert (code, out) == (1, "")
    assert err == (f"pydarknet: error: {SHAPES_CFG}: a detector (its [yolo] layer), not a classifier: use "
                   f"`pydarknet detect {SHAPES_CFG} WEIGHTS IMAGE`\n")


def test_an_image_given_as_the_cfg_tells_the_order_of_the_arguments(capsys):
    dog = ROOT / "data/dog.jpg"
    code, out, err = run(capsys, "summary", dog, "x.weights")
    assert (code, out) == (1, "")
    assert err == (f"pydarknet: error: {dog}: a JPEG image, not a network .cfg file: the arguments are CFG WEIGHTS "
                   "IMAGE (detector test, map, train: DATA CFG ...)\n")
    code, _, err = run(capsys, "summary", SHAPES_WEIGHTS)
    assert code == 1 and err.startswith(f"pydarknet: error: {SHAPES_WEIGHTS}: binary data, not a network .cfg")


def test_a_data_file_given_as_the_cfg_names_detector_test(capsys, tmp_path):
    data = tmp_path / "shapes-data.txt"   # a .data file told apart by its extension is taken for the names
    data.write_text("classes=3\nnames=data/shapes.names\n")
    code, out, err = run(capsys, "detect", data, SHAPES_WEIGHTS, ROOT / "data/dog.jpg")
    assert (code, out) == (1, "")
    assert err == (f"pydarknet: error: {data}: a .data file (classes=3), not a network cfg: use `pydarknet "
                   f"detector test {data} CFG WEIGHTS IMAGE` (DATA CFG WEIGHTS)\n")


@pytest.mark.parametrize("option, value", [("-thresh", "2"), ("-nms", "-0.1"), ("-hier", "nan")])
def test_thresholds_are_fractions(capsys, option, value):
    code, out, err = run(capsys, "detect", SHAPES_CFG, "never-read.weights", ROOT / "data/shapes.jpg", option, value)
    assert (code, out) == (1, "")
    assert err == f"pydarknet: error: {option} {float(value):g}: give a fraction from 0 to 1 (.25 for 25 %)\n"


def test_map_thresholds_are_fractions(capsys):
    code, _, err = run(capsys, "detector", "map", ROOT / "cfg/shapes.data", SHAPES_CFG, "x.weights",
                       "-iou_thresh", "50")
    assert code == 1 and err == "pydarknet: error: -iou_thresh 50: give a fraction from 0 to 1 (.25 for 25 %)\n"


def test_fewer_names_than_classes_is_an_error_before_drawing(capsys, tmp_path):
    (tmp_path / "few.names").write_text("circle\nsquare\n")
    (tmp_path / "few.data").write_text("classes=3\nnames=few.names\n")
    code, out, err = run(capsys, "detector", "test", tmp_path / "few.data", SHAPES_CFG, SHAPES_WEIGHTS,
                         ROOT / "data/shapes.jpg", "-q")
    assert (code, out) == (1, "")
    assert err == (f"pydarknet: error: {tmp_path / 'few.names'} has 2 names but {SHAPES_CFG} has 3 classes: one "
                   f"name per line, a line for each class (is {tmp_path / 'few.data'} the .data file of this "
                   "network?)\n")


def test_save_labels_for_pydarknets_own_image_says_to_copy_it(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # no data/ folder here: data/shapes.jpg is the shipped copy
    code, out, err = run(capsys, "detector", "test", ROOT / "cfg/shapes.data", SHAPES_CFG, SHAPES_WEIGHTS,
                         "data/shapes.jpg", "-save_labels", "-q")
    assert code == 1 and out.startswith("data/shapes.jpg: Predicted in ")
    assert err == ("pydarknet: error: data/shapes.txt: cannot write the labels: No such file or directory "
                   "(data/shapes.jpg is pydarknet's own copy: copy the image into a folder of yours to label it)\n")


def test_weights_of_another_network_name_the_layer_where_they_stop_matching(capsys, tmp_path):
    other = ROOT / "data/shapes-v4tiny.weights"
    code, out, err = run(capsys, "detector", "test", ROOT / "cfg/shapes.data", SHAPES_CFG, other,
                         ROOT / "data/shapes.jpg")
    assert (code, out) == (1, "")
    assert err.splitlines()[-1] == (
        f"pydarknet: error: {other}: does not match {SHAPES_CFG} from layer 0 (convolutional) on: its batch-norm "
        f"variances read as negative numbers (the file has 1495220 bytes, {SHAPES_CFG} needs 1860756): weights "
        "of another network?")
    cut = tmp_path / "cut.weights"
    cut.write_bytes(Path(SHAPES_WEIGHTS).read_bytes()[:1000000])
    code, _, err = run(capsys, "detect", SHAPES_CFG, cut, ROOT / "data/shapes.jpg", "-q")
    assert code == 1 and err.startswith(f"pydarknet: error: {cut}: too short for {SHAPES_CFG}: ran out at layer 10 ")
    assert err.endswith(f"(the file has 1000000 bytes, {SHAPES_CFG} needs 1860756): weights of a smaller or "
                        "another network?\n")


def test_empty_stdin_is_one_usage_line_before_any_network_loads(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n"))
    code, out, err = run(capsys, "detect", SHAPES_CFG, "never-read.weights")
    assert (code, out) == (2, "")
    assert err == ("pydarknet: error: no image: stdin is empty; give IMAGE paths as arguments, or pipe in their "
                   "paths (one per line) or a JPEG or PNG image\n")


def test_a_video_without_a_decodable_frame_is_one_line(tmp_path):
    """An mp4 whose frames are damaged (its index intact): FFmpeg's per-frame lines are not shown."""
    good = tmp_path / "good.mp4"
    writer = cv2.VideoWriter(str(good), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    rng = np.random.default_rng(0)
    for _ in range(5):
        writer.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    writer.release()
    data = bytearray(good.read_bytes())
    start, end = data.find(b"mdat") + 12, data.find(b"moov") - 4
    data[start:end] = rng.integers(0, 256, end - start, dtype=np.uint8).tobytes()
    (tmp_path / "damaged.mp4").write_bytes(bytes(data))
    code, out, err = command("demo", SHAPES_CFG, SHAPES_WEIGHTS, tmp_path / "damaged.mp4")
    assert (code, out) == (1, "")
    assert err == (f"pydarknet: error: {tmp_path / 'damaged.mp4'}: no frame could be read: a damaged video, or a "
                   "format this OpenCV cannot decode\n")


def test_a_missing_camera_is_one_line_under_q():
    code, out, err = command("demo", SHAPES_CFG, SHAPES_WEIGHTS, "-c", "97", "-q")
    assert (code, out) == (1, "")
    assert err == "pydarknet: error: cannot open camera 97: no such camera, or it is in use (-c N picks another)\n"


@pytest.mark.parametrize("argv, line", [
    (["detect", "a.cfg", "b.weights", "-thresh", "high"],
     "Invalid value for '-thresh': 'high' is not a valid float. (see `pydarknet detect --help`)"),
    (["frobnicate"], "No such command 'frobnicate'. (see `pydarknet --help`)"),
    (["anchors", "x.data", "-num_of_clusters", "0", "-width", "160", "-height", "160"],
     "Invalid value for '-num_of_clusters': 0 is not in the range x>=1. (see `pydarknet anchors --help`)"),
    (["train", "x.data", "x.cfg", "--max-batches", "-2"],
     "Invalid value for '--max-batches': -2 is not in the range x>=1. (see `pydarknet train --help`)")])
def test_a_usage_error_is_one_line_and_exit_2(capsys, argv, line):
    code, out, err = run(capsys, *argv)
    assert (code, out, err) == (2, "", f"pydarknet: error: {line}\n")


# -- the Python API: None where an image goes (a failed cv2.imread) -----------------------------------------------
NONE_IMAGE = ("is None: cv2.imread returns None for a file it cannot read (a missing file, a path relative to another "
              "working directory, no permission): check the path")


def test_none_for_an_image_says_why_that_happens(small_classifier):
    """Every entry of the Python API that takes an image: a ValueError naming the None, not a TypeError deep in
    os.fspath."""
    from pydarknet import Classifier, Detector, letterbox_image, load_image, resize_image
    detector, classifier = Detector(SHAPES_CFG, SHAPES_WEIGHTS), Classifier(*small_classifier[1:])
    calls = {"image": [lambda: detector.detect(None), lambda: detector.detect_batch([None]),
                       lambda: detector.prepare(None), lambda: list(detector.track([cv2.imread("no-such.jpg")])),
                       lambda: classifier.classify(None), lambda: classifier.classify_batch([None]),
                       lambda: classifier.prepare(None), lambda: load_image(None),
                       lambda: resize_image(None, 8, 8), lambda: letterbox_image(None, 8, 8)],
             "images": [lambda: detector.detect_batch(None), lambda: classifier.classify_batch(None)],
             "frames": [lambda: list(detector.track(None))],
             "input": [lambda: detector.net.forward(None)],
             "canvas": [lambda: detector.draw(None, detector.detect(str(ROOT / "data/shapes.jpg")))]}
    for what, entries in calls.items():
        for call in entries:
            with pytest.raises(ValueError) as error:
                call()
            assert str(error.value) == f"{what} {NONE_IMAGE}"


def test_none_for_an_image_in_the_darknet_module():
    import darknet
    network, names, colors = darknet.load_network(SHAPES_CFG, str(ROOT / "cfg/shapes.data"), SHAPES_WEIGHTS)
    calls = {"image": [lambda: darknet.detect_image(network, names, None), lambda: darknet.predict_image(network, None),
                       lambda: darknet.predict_image_letterbox(network, None),
                       lambda: darknet.letterbox_image(None, 8, 8), lambda: darknet.free_image(None),
                       lambda: darknet.copy_image_from_bytes(None, bytes(3)),
                       lambda: darknet.network_predict_batch(network, None, 1, 8, 8, .5, .5, None, 0, 0),
                       lambda: darknet.draw_boxes([], None, colors)],
             "filename": [lambda: darknet.load_image(None, 0, 0)],
             "data": [lambda: darknet.copy_image_from_bytes(darknet.make_image(8, 8, 3), None)]}
    for what, entries in calls.items():
        for call in entries:
            with pytest.raises(ValueError) as error:
                call()
            assert str(error.value) == f"{what} {NONE_IMAGE}"


# -- the network's files: in any order told by extension, the download cache, swapped files named --------------------
def test_classify_finds_cached_weights_given_first(capsys, small_classifier, tmp_path, monkeypatch):
    """`classify tiny.weights cfg/tiny.cfg IMAGE` (swapped, the weights a name in the download cache): as detect
    does, the extensions tell the files apart and the cache gives the weights."""
    _, cfg, weights = small_classifier
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "small.weights").write_bytes(Path(weights).read_bytes())
    monkeypatch.setenv("PYDARKNET_HOME", str(cache))
    monkeypatch.chdir(tmp_path)
    dog = str(ROOT / "data/dog.jpg")
    code, out, err = run(capsys, "classify", "small.weights", cfg, dog, "-q")
    assert code == 0 and out.startswith(f"{dog}: Predicted in ")
    assert out.splitlines()[1:] == run(capsys, "classify", cfg, weights, dog, "-q")[1].splitlines()[1:]
    assert len(out.splitlines()) == 4   # the small classifier's 3 classes


@pytest.mark.parametrize("argv", [["classify"], ["detect"], ["detector", "test", ROOT / "cfg/shapes.data"],
                                  ["classifier", "predict", ROOT / "cfg/shapes.data"]])
def test_swapped_files_without_extensions_are_named_both(capsys, tmp_path, argv):
    """A weights file where the CFG goes and a cfg where the WEIGHTS go (names that do not tell them): one usage
    line naming both, the same for every command that loads a network."""
    weights, cfg = tmp_path / "net-w", tmp_path / "net-c"
    weights.write_bytes(Path(SHAPES_WEIGHTS).read_bytes())
    cfg.write_text(Path(SHAPES_CFG).read_text())
    code, out, err = run(capsys, *argv, weights, cfg, ROOT / "data/shapes.jpg")
    assert (code, out) == (2, "")
    assert err == (f"pydarknet: error: {weights} and {cfg} are swapped: {weights} is binary (weights) where the CFG "
                   f"goes, {cfg} a cfg where the WEIGHTS go: give the CFG first, then the WEIGHTS\n")


# -- misspelt darknet options ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, line", [
    (["detect", "a.cfg", "b.weights", "-threshold", "0.3"], "no such option: -threshold (did you mean -thresh?)"),
    (["detector", "test", "a.data", "a.cfg", "b.weights", "-threshold=.3"],
     "no such option: -threshold (did you mean -thresh?)"),
    (["detector", "map", "a.data", "a.cfg", "b.weights", "-iou_threshold", ".5"],   # click: -i (-gpus) ou_threshold
     "no such option: -iou_threshold (did you mean -iou_thresh?)"),
    (["classify", "a.cfg", "b.weights", "-topk", "3"], "no such option: -topk (did you mean -top?)"),
    (["train", "a.data", "a.cfg", "-clearr"], "no such option: -clearr (did you mean -clear?)"),
    (["rnn", "generate", "a.cfg", "b.weights", "-tempp", "1"], "no such option: -tempp (did you mean -temp?)"),
    (["detector", "demo", "a.data", "a.cfg", "b.weights", "-count_lines", "1,2,3,4"],
     "no such option: -count_lines (did you mean -count_line?)"),
    (["detect", "a.cfg", "b.weights", "-zzzzz"],
     "no such option: -zzzzz (`pydarknet detect --help` lists the options)"),
    (["detector", "-threshold"], "no such option: -threshold (`pydarknet detector --help` lists the options)")])
def test_a_misspelt_single_dash_option_is_named_whole(capsys, argv, line):
    """darknet's options are single-dash long ones, which click reads as a short option and its value (-t hreshold):
    the whole option is named, with the command's closest, on every command; exit 2, nothing done."""
    assert run(capsys, *argv) == (2, "", f"pydarknet: error: {line}\n")


def test_every_group_checks_its_commands_options():
    """The check is the groups' (cli.Group): a group made another way would let its commands' misspellings through."""
    import click

    from pydarknet.cli import Group, cli
    groups, waiting = [], [cli]
    while waiting:
        groups.append(waiting.pop())
        waiting += [c for c in groups[-1].commands.values() if isinstance(c, click.Group)]
    assert len(groups) == 6 and all(type(group) is Group for group in groups)


def test_an_options_value_and_a_negative_number_are_not_misspelt_options(capsys):
    code, _, err = run(capsys, "detect", SHAPES_CFG, "never-read.weights", "-out", "-thresholded", "-nms", "-0.25")
    assert code == 1 and err == "pydarknet: error: -nms -0.25: give a fraction from 0 to 1 (.25 for 25 %)\n"
