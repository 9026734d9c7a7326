"""`import darknet`: the AlexeyAB fork's darknet.py API on pydarknet. The call patterns of the fork's
darknet_images.py and darknet_video.py (written again here, not copied) print what `pydarknet detector test`
prints for the same pixels: the same objects, each confidence the same to its printed digit. Detector and
Classifier take OpenCV's uint8 BGR frames (RGB with rgb=True), with the same numbers as the files they were read
from, and name classes as the commands do."""
import os
import queue
import random
import re
import subprocess
import sys
import threading
from collections import namedtuple

import cv2
import darknet
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import ROOT, shared_path
from pydarknet.cli import cli
from pydarknet.files.config import DarknetError, read_names
from pydarknet.tasks.predict import Classifier, Detector

Model = namedtuple("Model", "cfg data weights photos")
SHAPES = Model(str(ROOT / "cfg/shapes-tiny.cfg"), str(ROOT / "cfg/shapes.data"), str(ROOT / "data/shapes-tiny.weights"),
               [ROOT / "data/shapes.jpg"])


@pytest.fixture(scope="module", params=["shapes-tiny", "yolov4-tiny"])
def model(request):
    """The demo detector (pjreddie's files, run with the fork's arithmetic as the fork's library runs them) and
    the fork's yolov4-tiny on darknet's sample photos."""
    if request.param == "shapes-tiny":
        return SHAPES
    return Model(str(shared_path("cfg", "yolov4-tiny.cfg")), str(ROOT / "cfg/coco.data"),
                 str(shared_path("models", "yolov4-tiny.weights")),
                 [ROOT / "data" / f"{name}.jpg" for name in ("dog", "person", "eagle")])


@pytest.fixture(scope="module")
def loaded(model):
    random.seed(3)   # the scripts' deterministic colours
    return darknet.load_network(model.cfg, model.data, model.weights, batch_size=1)


@pytest.fixture(scope="module")
def network_sized(model, loaded, tmp_path_factory):
    """The photos scaled to the network's size as PNGs: cv2.resize in the scripts and darknet's resize_image in
    `detector test` leave such an image as it is, so both see the same pixels."""
    network = loaded[0]
    folder = tmp_path_factory.mktemp("network-sized")
    paths = []
    for photo in model.photos:
        paths.append(folder / f"{photo.stem}.png")
        size = (darknet.network_width(network), darknet.network_height(network))
        cv2.imwrite(str(paths[-1]), cv2.resize(cv2.imread(str(photo)), size, interpolation=cv2.INTER_AREA))
    return paths


# -- the fork's scripts, their call patterns ----------------------------------------------------------------------
def resized_rgb(image, network):
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return cv2.resize(rgb, (darknet.network_width(network), darknet.network_height(network)),
                      interpolation=cv2.INTER_LINEAR)


def image_detection(path, network, class_names, class_colors, thresh):
    """darknet_images.py's image_detection: OpenCV reads and resizes, darknet detects on a darknet IMAGE."""
    darknet_image = darknet.make_image(darknet.network_width(network), darknet.network_height(network), 3)
    image_resized = resized_rgb(cv2.imread(str(path)), network)
    darknet.copy_image_from_bytes(darknet_image, image_resized.tobytes())
    detections = darknet.detect_image(network, class_names, darknet_image, thresh=thresh)
    darknet.free_image(darknet_image)
    image = darknet.draw_boxes(detections, image_resized, class_colors)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), detections


def images_script(paths, loaded, ext_output=False):
    """darknet_images.py's main loop over `paths`: each image's detections, printed."""
    network, class_names, class_colors = loaded
    found = []
    for path in paths:
        _, detections = image_detection(path, network, class_names, class_colors, .25)
        darknet.print_detections(detections, ext_output)
        found.append(detections)
    return found


def video_script(path, loaded):
    """darknet_video.py's three threads: capture (cv2 frames into darknet IMAGEs), inference (detect_image,
    print_detections, free_image), drawing (boxes mapped back onto the frame). Returns the drawn frames."""
    network, class_names, class_colors = loaded
    width, height = darknet.network_width(network), darknet.network_height(network)
    raw_frames, images, detections_queue, drawn = queue.Queue(), queue.Queue(), queue.Queue(), []

    def capture():
        cap = cv2.VideoCapture(str(path))
        while cap.isOpened():
            ok, frame = cap.read()
            if not ok:
                break
            frame_resized = resized_rgb(frame, network)
            raw_frames.put(frame)
            image = darknet.make_image(width, height, 3)
            darknet.copy_image_from_bytes(image, frame_resized.tobytes())
            images.put(image)
        cap.release()
        images.put(None)

    def inference():
        while (image := images.get()) is not None:
            detections = darknet.detect_image(network, class_names, image, thresh=.25)
            detections_queue.put(detections)
            darknet.print_detections(detections, False)
            darknet.free_image(image)
        detections_queue.put(None)

    def drawing():
        while (detections := detections_queue.get()) is not None:
            frame = raw_frames.get()
            frame_h, frame_w, _ = frame.shape
            adjusted = [(label, confidence, (int(x / width * frame_w), int(y / height * frame_h),
                                             int(w / width * frame_w), int(h / height * frame_h)))
                        for label, confidence, (x, y, w, h) in detections]
            drawn.append(darknet.draw_boxes(adjusted, frame, class_colors))

    threads = [threading.Thread(target=target) for target in (capture, inference, drawing)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return drawn


def batch_detection(paths, network, class_names, batch_size):
    """darknet_images.py's batch_detection: the images in one darknet IMAGE, network_predict_batch, do_nms_obj."""
    images = [cv2.imread(str(path)) for path in paths]
    image_height, image_width, _ = images[0].shape
    planes = [resized_rgb(image, network).transpose(2, 0, 1) for image in images]
    batch_array = np.ascontiguousarray(np.concatenate(planes, axis=0).flat, dtype=np.float32) / 255.0
    batch_array = batch_array.ctypes.data_as(darknet.POINTER(darknet.c_float))
    darknet_images = darknet.IMAGE(image_width, image_height, 3, batch_array)
    batch_detections = darknet.network_predict_batch(network, darknet_images, batch_size, image_width,
                                                     image_height, .25, .5, None, 0, 0)
    predictions = []
    for index in range(batch_size):
        num, detections = batch_detections[index].num, batch_detections[index].dets
        darknet.do_nms_obj(detections, num, len(class_names), .45)
        predictions.append(darknet.remove_negatives(detections, class_names, num))
    darknet.free_batch_detections(batch_detections, batch_size)
    return predictions


# -- what pydarknet's own commands print -----------------------------------------------------------------------
def detector_test(model, paths, tmp_path, monkeypatch):
    """`pydarknet detector test --darknet ab -thresh .25` on `paths`: per image, its (name, percent) lines."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["detector", "test", model.data, model.cfg, model.weights, *map(str, paths),
                                      "-thresh", ".25", "-dont_show", "-q", "--darknet", "ab"])
    assert result.exit_code == 0, result.output
    listing = []
    for line in result.stdout.splitlines():
        if " Predicted in " in line:
            listing.append([])
        else:
            name, percent = line.rsplit(": ", 1)
            listing[-1].append((name, int(percent.rstrip("%"))))
    return listing


def printed_objects(stdout):
    """print_detections' output: per call, its (name, confidence string) lines."""
    blocks = stdout.split("\nObjects:\n")[1:]
    return [[tuple(line.rsplit(": ", 1)) for line in block.splitlines() if line] for block in blocks]


def same_objects(printed, listed):
    """The script's objects and detector test's: the same names, each confidence the same to the percent
    detector test prints (C's %.0f of the same float: within .5 of the script's 2-decimal figure)."""
    assert sorted(name for name, _ in printed) == sorted(name for name, _ in listed)
    for name in {name for name, _ in listed}:
        mine = sorted(float(confidence.rstrip("%")) for n, confidence in printed if n == name)
        theirs = sorted(percent for n, percent in listed if n == name)
        assert all(abs(a - b) <= 0.5 for a, b in zip(mine, theirs)), (name, mine, theirs)


def test_images_script_prints_what_detector_test_prints(model, loaded, network_sized, tmp_path, monkeypatch,
                                                        capsys):
    images_script(network_sized, loaded)
    printed = printed_objects(capsys.readouterr().out)
    listed = detector_test(model, network_sized, tmp_path, monkeypatch)
    assert len(printed) == len(listed) == len(network_sized) and any(printed)
    for mine, theirs in zip(printed, listed):
        same_objects(mine, theirs)


@pytest.mark.parametrize("model", ["yolov4-tiny"], indirect=True)
def test_yolov4_tiny_on_the_sample_photos(model, loaded, network_sized, tmp_path, monkeypatch, capsys):
    """What the script prints on dog.jpg scaled to 416x416, and on the photos themselves (OpenCV's decoder and
    resize, not darknet's: the same objects as `detector test` on the files, other confidences)."""
    found = images_script(network_sized[:1], loaded, ext_output=True)
    assert [(label, confidence) for label, confidence, _ in found[0]] == \
           [("car", "42.96"), ("bicycle", "61.2"), ("truck", "80.78"), ("dog", "87.8")]   # by the string
    assert capsys.readouterr().out.splitlines()[2] == \
           "car: 42.96%    (left_x: 317   top_y:  92   width:   122   height:  67)"   # the centre, as the fork prints
    images_script(model.photos, loaded)
    printed = printed_objects(capsys.readouterr().out)
    listed = detector_test(model, model.photos, tmp_path, monkeypatch)
    assert len(printed) == len(listed) == 3
    for mine, theirs in zip(printed, listed):
        assert sorted(name for name, _ in mine) == sorted(name for name, _ in theirs)


def test_detect_image_is_the_detector_on_the_same_frame(model, loaded, network_sized):
    """detect_image on a darknet IMAGE and Detector.detect on the uint8 frame it was made from: the same boxes in
    pixels of the network-sized frame and the same confidences, to the last bit."""
    network, class_names, _ = loaded
    detector = Detector(model.cfg, model.weights, darknet="ab", names=class_names)
    for photo in model.photos:
        _, detections = image_detection(photo, network, class_names, {name: (0, 0, 0) for name in class_names}, .25)
        frame = cv2.cvtColor(resized_rgb(cv2.imread(str(photo)), network), cv2.COLOR_RGB2BGR)
        result = detector.detect(frame, thresh=.25)
        w, h = np.float32(result.width), np.float32(result.height)
        expected = [(d.name, str(round(d.prob * 100, 2)),
                     tuple(float(np.float32(v) * s) for v, s in zip(d.box, (w, h, w, h))))
                    for d in result.detections]
        assert detections and sorted(detections) == sorted(expected)


def test_video_script_prints_what_the_images_script_prints(loaded, network_sized, tmp_path, capsys):
    """A lossless video of the network-sized images through darknet_video.py's threads: frame for frame the
    images script's output, and boxes drawn on every frame."""
    height, width = cv2.imread(str(network_sized[0])).shape[:2]
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 5, (width, height))
    assert writer.isOpened(), "opencv-python-headless's wheels bundle FFmpeg, whose FFV1 encoder this needs"
    frames = [cv2.imread(str(p)) for p in network_sized]
    for frame in frames:
        writer.write(frame)
    writer.release()
    drawn = video_script(path, loaded)
    from_video = capsys.readouterr().out
    images_script(network_sized, loaded)
    assert from_video == capsys.readouterr().out and "%" in from_video
    originals = map(cv2.imread, map(str, network_sized))
    assert len(drawn) == len(frames) and all((d != f).any() for d, f in zip(drawn, originals))


def test_batch_is_each_image_alone(loaded, network_sized):
    """network_predict_batch's detections of each image are those of the image alone (predict_image,
    get_network_boxes, do_nms_obj); the same image twice in a batch gives the same list twice."""
    network, class_names, _ = loaded
    paths = [network_sized[0], network_sized[-1], network_sized[0]]
    batch = batch_detection(paths, network, class_names, len(paths))
    for path, predictions in zip(paths, batch):
        image = cv2.imread(str(path))
        darknet_image = darknet.make_image(darknet.network_width(network), darknet.network_height(network), 3)
        darknet.copy_image_from_bytes(darknet_image, resized_rgb(image, network).tobytes())
        darknet.predict_image(network, darknet_image)
        num = darknet.pointer(darknet.c_int(0))
        detections = darknet.get_network_boxes(network, image.shape[1], image.shape[0], .25, .5, None, 0, num, 0)
        darknet.do_nms_obj(detections, num[0], len(class_names), .45)
        assert predictions and predictions == darknet.remove_negatives(detections, class_names, num[0])
    assert batch[0] == batch[2]


def test_classification_script_is_the_classifier(tmp_path):
    """darknet_images.py's image_classification (network-sized RGB pixels, predict_image) and Classifier on the
    same RGB array (rgb=True, its default ImageNet names): the same top 5, the same probabilities."""
    weights = shared_path("models", "tiny.weights")
    network, class_names, _ = darknet.load_network(str(ROOT / "cfg/tiny.cfg"), str(ROOT / "cfg/imagenet1k.data"),
                                                   str(weights))
    image_resized = resized_rgb(cv2.imread(str(ROOT / "data/dog.jpg")), network)
    darknet_image = darknet.make_image(darknet.network_width(network), darknet.network_height(network), 3)
    darknet.copy_image_from_bytes(darknet_image, image_resized.tobytes())
    output = darknet.predict_image(network, darknet_image)
    predictions = sorted([(name, output[index]) for index, name in enumerate(class_names)], key=lambda x: -x[1])
    darknet.free_image(darknet_image)
    classifier = Classifier(str(ROOT / "cfg/tiny.cfg"), str(weights), preprocess="resize", rgb=True, darknet="ab")
    result = classifier.classify(image_resized, top=5)
    assert predictions[:5] == [(name, prob) for _, name, prob in result.predictions]
    assert [name for name, _ in predictions[:3]] == ["standard schnauzer", "giant schnauzer", "miniature schnauzer"]


# -- frames into Detector and Classifier ------------------------------------------------------------------------
@pytest.mark.parametrize("decoder, suffix", [("opencv", ".jpg"), ("darknet", ".png"), ("opencv", ".png")])
def test_a_frame_is_its_file_bit_for_bit(decoder, suffix, tmp_path):
    """cv2.imread's array and the file it was read from, where pydarknet decodes the file with OpenCV too (every
    PNG; JPEGs with decoder="opencv"): the same network input to the last bit, so the same detections; the same
    pixels in RGB order with rgb=True."""
    path = tmp_path / f"shapes{suffix}"
    cv2.imwrite(str(path), cv2.imread(str(ROOT / "data/shapes.jpg")))
    frame = cv2.imread(str(path))
    detector = Detector(SHAPES.cfg, SHAPES.weights, decoder=decoder)
    from_file, from_frame = detector.prepare(str(path)), detector.prepare(frame)
    assert from_frame.input.tobytes() == from_file.input.tobytes()
    assert (from_frame.width, from_frame.height) == (from_file.width, from_file.height) == (224, 144)
    rgb_detector = Detector(SHAPES.cfg, SHAPES.weights, decoder=decoder, rgb=True)
    rgb = rgb_detector.prepare(np.ascontiguousarray(frame[:, :, ::-1]))
    assert rgb.input.tobytes() == from_file.input.tobytes()
    by_file, by_frame = detector.detect(str(path)), detector.detect(frame)
    assert by_frame.detections and [(d.name, d.prob, d.box) for d in by_frame.detections] == \
           [(d.name, d.prob, d.box) for d in by_file.detections]


def test_a_classifier_frame_is_its_file(small_classifier, tmp_path):
    _, cfg, weights = small_classifier
    path = tmp_path / "dog.png"
    cv2.imwrite(str(path), cv2.imread(str(ROOT / "data/dog.jpg")))
    classifier = Classifier(cfg, weights)
    by_file, by_frame = classifier.classify_batch([str(path), cv2.imread(str(path))], top=3)
    assert by_frame.predictions == by_file.predictions and by_frame.image == "<array>"


def test_a_frame_of_another_shape_is_refused():
    detector = Detector(SHAPES.cfg, SHAPES.weights)
    with pytest.raises(DarknetError, match=r"uint8 \(h, w, 3\) BGR image, got a uint8 array of shape \(144, 224, 4\)"):
        detector.detect(np.zeros((144, 224, 4), np.uint8))


# -- class names by default, as the commands ------------------------------------------------------------------
def test_detector_names_are_detects(tmp_path, monkeypatch):
    """Without names, Detector names classes as `detect` does (cfg/coco.data's names), not by number."""
    detector = Detector(SHAPES.cfg, SHAPES.weights)
    assert detector.names == read_names(ROOT / "data/coco.names")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["detect", SHAPES.cfg, SHAPES.weights, str(ROOT / "data/shapes.jpg"), "--json",
                                      "-q"])
    assert result.exit_code == 0, result.output
    names = [d.name for d in detector.detect(str(ROOT / "data/shapes.jpg")).detections]
    assert names and set(names) <= {"person", "bicycle", "car"}   # COCO's first three for its 3 classes
    assert all(f'"name": "{name}"' in result.stdout for name in names)


def test_classifier_names_are_classifys():
    """Without names, Classifier names classes as `classify` does (ImageNet's): Tiny Darknet's published top 5."""
    classifier = Classifier(str(ROOT / "cfg/tiny.cfg"), str(shared_path("models", "tiny.weights")))
    result = classifier.classify(str(ROOT / "data/dog.jpg"))
    assert [f"{name}: {prob:.6f}" for _, name, prob in result.predictions] == \
           ["malamute: 0.167168", "Eskimo dog: 0.065828", "dogsled: 0.063020", "standard schnauzer: 0.051153",
            "Siberian husky: 0.037506"]


# -- misuse: one clear error, never a crash ---------------------------------------------------------------------
def test_misuse_is_a_darknet_error(tmp_path):
    with pytest.raises(DarknetError, match="no-such.weights"):
        darknet.load_network(SHAPES.cfg, SHAPES.data, str(tmp_path / "no-such.weights"))
    too_many = tmp_path / "too-many.data"
    too_many.write_text(f"classes=5\nnames={ROOT / 'data/shapes.names'}\n")
    with pytest.raises(DarknetError, match="has 3 names but .*too-many.data has 5 classes"):
        darknet.load_meta(str(too_many).encode())
    network, class_names, _ = darknet.load_network(SHAPES.cfg, SHAPES.data, SHAPES.weights)
    image = darknet.load_image(str(ROOT / "data/shapes.jpg").encode(), 160, 160)
    assert (image.w, image.h, image.c) == (160, 160, 3) and 0 < image.data[0] < 1
    with pytest.raises(DarknetError, match="names .* this network's"):
        darknet.detect_image(network, class_names + ["extra"], image, thresh=.25)
    darknet.free_image(image)
    with pytest.raises(DarknetError, match="freed with free_image"):
        darknet.detect_image(network, class_names, image)
    with pytest.raises(DarknetError, match="resize the pixels"):
        darknet.copy_image_from_bytes(darknet.make_image(160, 160, 3), bytes(100))


# -- the examples of README.md and docs/python.md ---------------------------------------------------------------
def readme_python_examples():
    """The ```python blocks of the README's Python section and of docs/python.md: (code, the output its full-line
    comments show)."""
    readme = (ROOT / "README.md").read_text()
    text = readme[readme.index("\n## Python\n"):readme.index("\n## Speed\n")] + (ROOT / "docs/python.md").read_text()
    return [(block, [line[2:] for line in block.splitlines() if line.startswith("# ") or line == "#"])
            for block in re.findall(r"```python\n(.*?)```", text, re.S)]


def test_the_readme_python_examples_print_what_they_say(tmp_path):
    """Run as written, in a folder holding darknet's data/ and with yolov4-tiny.weights in the download cache."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "yolov4-tiny.weights").symlink_to(shared_path("models", "yolov4-tiny.weights"))
    (tmp_path / "data").symlink_to(ROOT / "data")
    env = {**os.environ, "PYDARKNET_HOME": str(cache)}
    examples = readme_python_examples()
    assert len(examples) == 3 and all(shown for _, shown in examples)
    for code, shown in examples:
        proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.splitlines() == shown
    assert (tmp_path / "predictions.jpg").is_file()
