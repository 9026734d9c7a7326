"""The Python API shared by threads (a threaded web application's one model): one Detector, one Classifier, one
`import darknet` network called from 4 threads at once, on images of different sizes, give every call the answer
it gets alone, bit for bit; a Network entered by a second thread mid-forward says so instead of computing garbage."""
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from conftest import ROOT
from pydarknet.files.config import DarknetError

IMAGES = [str(ROOT / "data" / name) for name in ("dog.jpg", "shapes.jpg", "eagle.jpg", "person.jpg")]
THREADS, ROUNDS = 4, 3


def from_threads(call, items):
    """call(item) for every item, from THREADS threads at once, each going through all the items ROUNDS times
    from its own starting point (so that different images are in flight together): {item: [answers]}."""
    start = threading.Barrier(THREADS)

    def worker(first):
        start.wait()
        return [(items[(first + i) % len(items)], call(items[(first + i) % len(items)]))
                for i in range(ROUNDS * len(items))]
    with ThreadPoolExecutor(THREADS) as pool:
        answers = [answer for done in pool.map(worker, range(THREADS)) for answer in done]
    found = {}
    for item, answer in answers:
        found.setdefault(item, []).append(answer)
    return found


def timeless(result):
    result.seconds = 0
    return result


@pytest.mark.parametrize("name,fast", [("shapes-v4tiny", False), ("shapes-tiny", True)])
def test_one_detector_called_from_threads_answers_each_call_as_alone(name, fast):
    from pydarknet.tasks.predict import Detector
    detector = Detector(ROOT / "cfg" / f"{name}.cfg", ROOT / "data" / f"{name}.weights",
                        names=["circle", "square", "triangle"], fast=fast)
    alone = {image: timeless(detector.detect(image, thresh=.01)) for image in IMAGES}
    found = from_threads(lambda image: timeless(detector.detect(image, thresh=.01)), IMAGES)
    for image, answers in found.items():
        assert all(answer == alone[image] for answer in answers), image


def test_two_detectors_called_from_threads_at_once_answer_each_call_as_alone():
    """Two models, each called from two threads while the other runs: neither touches the other's state."""
    from pydarknet.tasks.predict import Detector
    detectors = [Detector(ROOT / "cfg" / f"{name}.cfg", ROOT / "data" / f"{name}.weights",
                          names=["circle", "square", "triangle"]) for name in ("shapes-tiny", "shapes-v4tiny")]
    calls = [(which, image) for which in range(2) for image in IMAGES]
    alone = {call: timeless(detectors[call[0]].detect(call[1], thresh=.01)) for call in calls}
    found = from_threads(lambda call: timeless(detectors[call[0]].detect(call[1], thresh=.01)), calls)
    for call, answers in found.items():
        assert all(answer == alone[call] for answer in answers), call


def test_two_modes_of_one_model_live_side_by_side_in_turn_and_from_threads():
    """An exact Detector keeps darknet's numbers after a --fast one of the same model is made and used, alone and
    with both called from threads at once; the fast one keeps its own (which differ from the exact ones in the
    last bits), and the process's products are as they were. Darknet's numbers: those `detect --json` prints in a
    process of its own."""
    import json
    import os
    import subprocess
    import sys

    from pydarknet.kernels import products
    from pydarknet.tasks.predict import Detector

    def made(fast):
        return Detector(ROOT / "cfg/shapes-v4tiny.cfg", ROOT / "data/shapes-v4tiny.weights",
                        names=["circle", "square", "triangle"], fast=fast)
    process = products.backend()
    exact = made(False)
    alone = {image: timeless(exact.detect(image, thresh=.01)) for image in IMAGES}
    fast = made(True)
    fast_alone = {image: timeless(fast.detect(image, thresh=.01)) for image in IMAGES}
    assert {image: timeless(exact.detect(image, thresh=.01)) for image in IMAGES} == alone
    assert fast_alone != alone and products.backend() == process
    printed = subprocess.run([sys.executable, "-m", "pydarknet", "detect", ROOT / "cfg/shapes-v4tiny.cfg",
                              ROOT / "data/shapes-v4tiny.weights", *IMAGES, "-thresh", ".01", "--json", "-q"],
                             capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    command = [json.loads(line)["detections"] for line in printed.stdout.splitlines()]
    assert len(command) == len(IMAGES) and sum(map(len, command)) > len(IMAGES), printed.stderr
    for image, detections in zip(IMAGES, command):
        mine = [{**d, "name": None} for d in exact.detect(image, thresh=.01).as_json()["detections"]]
        assert mine == [{**d, "name": None} for d in detections], image
    calls = [(detector, image) for detector in (exact, fast) for image in IMAGES]
    found = from_threads(lambda call: timeless(call[0].detect(call[1], thresh=.01)), calls)
    for (detector, image), answers in found.items():
        assert all(answer == (alone if detector is exact else fast_alone)[image] for answer in answers), image


def test_one_classifier_called_from_threads_answers_each_call_as_alone(small_classifier):
    """Images of different sizes: with "resize_min" each resizes the network, which threads must not share."""
    from pydarknet.tasks.predict import Classifier
    _, cfg, weights = small_classifier
    classifier = Classifier(cfg, weights, names=["a", "b", "c"])
    alone = {image: timeless(classifier.classify(image, top=3)) for image in IMAGES}
    found = from_threads(lambda image: timeless(classifier.classify(image, top=3)), IMAGES)
    for image, answers in found.items():
        assert all(answer == alone[image] for answer in answers), image


def test_one_darknet_network_called_from_threads_answers_each_call_as_alone():
    """The fork's darknet.py: detect_image on one network from 4 threads, each image resized to the network as
    its darknet_images.py does."""
    import cv2

    from pydarknet import darknet
    network, names, _ = darknet.load_network(str(ROOT / "cfg/shapes-v4tiny.cfg"), str(ROOT / "cfg/shapes.data"),
                                             str(ROOT / "data/shapes-v4tiny.weights"))
    size = (darknet.network_width(network), darknet.network_height(network))
    frames = {}
    for path in IMAGES:
        frame = darknet.make_image(*size, 3)
        rgb = cv2.cvtColor(cv2.resize(cv2.imread(path), size), cv2.COLOR_BGR2RGB)
        darknet.copy_image_from_bytes(frame, rgb.tobytes())
        frames[path] = frame
    alone = {path: darknet.detect_image(network, names, frames[path], thresh=.01) for path in IMAGES}
    found = from_threads(lambda path: darknet.detect_image(network, names, frames[path], thresh=.01), IMAGES)
    for path, answers in found.items():
        assert all(answer == alone[path] for answer in answers), path


def test_a_second_thread_entering_a_networks_forward_is_told_so():
    """Network serves one thread at a time: a forward begun while another thread's runs raises at once, naming the
    network, rather than computing garbage in the layers' shared buffers."""
    from pydarknet.network.network import Network
    net = Network(ROOT / "cfg/shapes-tiny.cfg", quiet_unused=True)
    net.load(ROOT / "data/shapes-tiny.weights")
    x = np.zeros((1, *net.input_shape), np.float32)
    inside, leave = threading.Event(), threading.Event()
    first = net.layers[0]
    original = type(first).forward

    def held_forward(layer, x, network):
        inside.set()
        leave.wait(30)
        return original(layer, x, network)
    first.forward = held_forward.__get__(first)
    running = threading.Thread(target=net.forward, args=(x,))
    running.start()
    try:
        assert inside.wait(30)
        with pytest.raises(DarknetError, match=r"shapes-tiny\.cfg: a forward pass of this network is already "
                                               r"running in another thread"):
            net.forward(x)
    finally:
        leave.set()
        running.join(30)
    del first.forward
    assert np.array_equal(net.forward(x), net.forward(x))   # the network is as usable as before
