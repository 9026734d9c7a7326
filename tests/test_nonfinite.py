"""An untrained network's overflowing outputs (inf and NaN boxes) never crash a command: text prints what darknet
prints, JSON stays strict, drawing and labels leave those boxes out with one warning per image."""
import json
import math

import pytest
from click.testing import CliRunner

from conftest import ROOT
from pydarknet.cli import cli
from pydarknet.results.output import c_float
from pydarknet.network.network import Network
from pydarknet.files.weights import save_weights

SHAPES = [str(ROOT / "cfg/shapes.data"), str(ROOT / "cfg/shapes-tiny.cfg")]


def refuse(token):
    raise ValueError(f"not strict JSON: {token}")


def strict(line):
    return json.loads(line, parse_constant=refuse)


@pytest.fixture(scope="module")
def overflowing(tmp_path_factory):
    """shapes-tiny with random weights: pjreddie's batch-norm over a zero rolling variance multiplies every layer's
    output by 1000, so the [yolo] logits reach 1e23 and some boxes are infinitely wide (exp overflows)."""
    net = Network(SHAPES[1], quiet_unused=True).initialize(1)
    for layer in net.layers:
        if layer.type == "convolutional":
            layer.weights *= 0.002
    path = tmp_path_factory.mktemp("random") / "random.weights"
    save_weights(net, path)
    return str(path)


def detector_test(weights, *args):
    result = CliRunner().invoke(cli, ["detector", "test", *SHAPES, weights, str(ROOT / "data/shapes.jpg"), *args])
    assert result.exit_code == 0, result.output
    return result


def test_text_prints_inf_as_darknet(overflowing, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lines = detector_test(overflowing, "-ext_output", "-q").stdout.splitlines()
    # a regression pin from pydarknet's own run of this overflowing network: an infinite box printed with
    # glibc's "%4.0f" of inf and -inf (test_c_float_writes_glibcs_inf_and_nan), as darknet's printf would
    assert "(left_x: -inf   top_y:  140   width:  inf   height:    0)" in lines[1]


def test_json_lines_are_strict(overflowing, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (line,) = detector_test(overflowing, "--json", "-q").stdout.splitlines()
    boxes = [d["box"] for d in strict(line)["detections"]]
    assert any(box["w"] is None for box in boxes) and any(box["w"] is not None for box in boxes)
    detector_test(overflowing, "--darknet", "ab", "-out", "all.json", "-q")
    json.loads((tmp_path / "all.json").read_text(), parse_constant=refuse)


def test_drawing_and_labels_skip_infinite_boxes_with_one_warning(overflowing, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    image = tmp_path / "shapes.jpg"
    image.write_bytes((ROOT / "data/shapes.jpg").read_bytes())
    result = CliRunner().invoke(cli, ["detector", "test", *SHAPES, overflowing, str(image), "-save_labels"])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "inf or NaN" in line]
    assert len(warnings) == 1 and "not drawn or labelled" in warnings[0]
    assert (tmp_path / "predictions.jpg").exists()
    labels = [line.split() for line in (tmp_path / "shapes.txt").read_text().splitlines()]
    assert labels and all(math.isfinite(float(v)) for row in labels for v in row)


def test_c_float_writes_glibcs_inf_and_nan():
    assert c_float(float("inf"), "4.0f") == " inf" and c_float(float("-inf"), "4.0f") == "-inf"
    assert c_float(float("nan")) == "nan" and c_float(-float("nan")) == "-nan"
    assert c_float(-float("nan"), "6.0f") == "  -nan" and c_float(0.5) == "0.500000" and c_float(2.5, "4.0f") == "   2"


def test_map_and_recall_print_with_the_same_formatter():
    """One formatter for C's floats: `detector map`'s and `detector recall`'s lines use c_float, whose 0/0 (a set
    with no truths) is the -nan that darknet's x86 build prints."""
    import numpy as np

    from pydarknet.tasks import evaluate
    assert evaluate.c_float is c_float and not hasattr(evaluate, "_c_float")
    with np.errstate(invalid="ignore", divide="ignore"):
        assert c_float(np.float32(0) / np.float32(0), "1.2f") == "-nan"
        assert c_float(np.float64(100.0) * 0 / np.float64(0), ".2f") == "-nan"


def test_coco_results_stay_strict_json(overflowing, tmp_path):
    from pydarknet.tasks.evaluate import run_valid
    image = tmp_path / "000000000042.jpg"
    image.write_bytes((ROOT / "data/shapes.jpg").read_bytes())
    (tmp_path / "valid.txt").write_text(f"{image}\n")
    data = tmp_path / "shapes.data"
    data.write_text(f"classes=3\nvalid={tmp_path / 'valid.txt'}\nnames={ROOT / 'data/shapes.names'}\n"
                    f"eval=coco\nresults={tmp_path / 'results'}\n")
    (tmp_path / "results").mkdir()
    files, _ = run_valid(data, SHAPES[1], overflowing)
    entries = json.loads(open(files[0]).read(), parse_constant=refuse)
    assert entries and any(e["bbox"][2] == 224.0 for e in entries)   # the infinitely wide boxes, clamped
    from pydarknet.tasks.evaluate import _coco_number
    assert [_coco_number(v) for v in (float("nan"), float("inf"), 1.5)] == ["null", "null", "1.500000"]
