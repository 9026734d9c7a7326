"""-batch N: N images through the network in one forward pass, with exactly the results of one at a time (CLI and
Python API, detectors of both darknets, classifiers with images of different shapes)."""
import re

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import ROOT, shared_path
from pydarknet.cli import cli
from pydarknet.tasks.predict import Classifier, Detector

SHAPES = [str(ROOT / "cfg/shapes.data"), str(ROOT / "cfg/shapes-tiny.cfg"), str(ROOT / "data/shapes-tiny.weights")]
TIMING = re.compile(r"Predicted in [0-9.]+ (milli-)?seconds|\"seconds\": [0-9.e-]+")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Nine images of four sizes: the shapes picture, flipped and shifted, and the sample photos."""
    folder = tmp_path_factory.mktemp("images")
    shapes = cv2.imread(str(ROOT / "data/shapes.jpg"))
    variants = [shapes, shapes[:, ::-1], shapes[::-1], np.roll(shapes, 40, axis=1), np.roll(shapes, 30, axis=0),
                cv2.imread(str(ROOT / "data/dog.jpg")), cv2.imread(str(ROOT / "data/person.jpg")),
                cv2.imread(str(ROOT / "data/eagle.jpg")), shapes[:, ::-1][::-1]]
    paths = []
    for i, im in enumerate(variants):
        paths.append(str(folder / f"image{i}.png"))
        cv2.imwrite(paths[-1], im)
    return paths


def run(args, folder, monkeypatch, input=None):
    """The exit code, stdout with the timings blanked, stderr, and the drawn images' bytes."""
    monkeypatch.chdir(folder)
    result = CliRunner().invoke(cli, [*map(str, args), "-q"], input=input)
    assert result.exit_code in (0, 1), result.output
    drawn = {p.name: p.read_bytes() for p in sorted(folder.glob("predictions*.jpg"))}
    return result.exit_code, TIMING.sub("<time>", result.stdout), result.stderr, drawn


def same_at_batch(args, tmp_path, monkeypatch, batch=8, input=None):
    one, many = tmp_path / "one", tmp_path / "many"
    one.mkdir(), many.mkdir()
    expected = run(args, one, monkeypatch, input)
    assert run([*args, "-batch", batch], many, monkeypatch, input) == expected
    return expected


@pytest.mark.parametrize("darknet", ["pjreddie", "ab"])
def test_detector_test_batch_8_prints_and_draws_as_batch_1(images, tmp_path, monkeypatch, darknet):
    _, out, _, drawn = same_at_batch(["detector", "test", *SHAPES, *images, "--darknet", darknet, "-ext_output",
                                      "-thresh", ".2"], tmp_path, monkeypatch)
    assert out.count("%") > 10 and len(drawn) == len(images)


def test_json_and_a_bad_image_among_them(images, tmp_path, monkeypatch):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    paths = "\n".join([*images[:3], str(tmp_path / "broken.jpg"), *images[3:]]) + "\n"
    _, out, err, _ = same_at_batch(["detector", "test", *SHAPES, "--json"], tmp_path, monkeypatch, batch=4,
                                   input=paths)
    assert "broken.jpg" in err and len(out.splitlines()) == len(images)


@pytest.mark.parametrize("cfg, weights", [("yolov3-tiny.cfg", "yolov3-tiny.weights"),
                                          ("yolov4-tiny.cfg", "yolov4-tiny.weights")])
def test_real_detectors_at_batch_3(images, tmp_path, monkeypatch, cfg, weights):
    weights = shared_path("models", weights)
    _, out, _, _ = same_at_batch(["detect", ROOT / "cfg" / cfg, weights, *images[5:8], "-ext_output"], tmp_path,
                                 monkeypatch, batch=3)
    assert "dog: " in out


def test_detect_batch_api_equals_detect(images):
    detector = Detector(SHAPES[1], SHAPES[2], names=["circle", "square", "triangle"])
    together = detector.detect_batch(images, thresh=0.2)
    alone = [detector.detect(path, thresh=0.2) for path in images]
    for a, b in zip(together, alone):
        a.seconds = b.seconds = 0
    assert together == alone and sum(len(r.detections) for r in alone) > 10
    assert detector.detect_batch([]) == []


@pytest.mark.parametrize("preprocess", [[], ["-resize"], ["-letter_box"]])
def test_classifier_predict_batch_8_as_batch_1(images, small_classifier, tmp_path, monkeypatch, preprocess):
    _, out, _, _ = same_at_batch(["classifier", "predict", *small_classifier, *images, *preprocess], tmp_path,
                                 monkeypatch)
    assert out.count(": 0.") == 3 * len(images)


def test_classify_batch_api_groups_images_by_shape(images, small_classifier):
    _, cfg, weights = small_classifier
    classifier = Classifier(cfg, weights, names=["a", "b", "c"])
    together = classifier.classify_batch(images, top=3)
    alone = [classifier.classify(path, top=3) for path in images]
    for a, b in zip(together, alone):
        a.seconds = b.seconds = 0
    assert together == alone


def test_classify_tiny_darknet_batch(images, tmp_path, monkeypatch):
    weights = shared_path("models", "tiny.weights")
    same_at_batch(["classify", ROOT / "cfg/tiny.cfg", weights, *images[4:]], tmp_path, monkeypatch, batch=5)
