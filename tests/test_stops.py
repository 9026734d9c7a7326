"""Stop signals (pydarknet/tasks/stops.py): SIGTERM and SIGHUP stop every long command as Ctrl-C does. Real processes
sent real signals, every wait bounded: train (one process and two replicas) leaves a _last that resumes at the next
iteration, demo leaves a video that OpenCV reads to the frame count its JSON lines report and -prefix images whole,
a result file stopped mid-way is completed or absent, never half written under its name, and a second signal during
the clean-up ends the process at once. (An MPI job's are in tests/test_mpi.py.)"""
import json
import os
import re
import signal
import subprocess
import sys
import time

import cv2
import pytest

from conftest import ROOT, takes_ctrl_c, toy_detector_cfg
from moving_shapes import write_clip
from pydarknet.files.datasets import write_shapes
from pydarknet.files.weights import load_weights
from pydarknet.network.network import Network

DEADLINE = 120   # seconds any one wait may take on a loaded machine (a cold Numba cache compiles first)
SHAPES = [str(ROOT / "cfg/shapes.data"), str(ROOT / "cfg/shapes-tiny.cfg"), str(ROOT / "data/shapes-tiny.weights")]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
STOPS = [pytest.param(signal.SIGTERM, id="SIGTERM"), pytest.param(signal.SIGHUP, id="SIGHUP")]
ITERATION = re.compile(r"^(\d+): ")


def start(args, folder, **kwargs):
    """`python -m pydarknet ARGS` in `folder`, stdout and stderr piped."""
    return subprocess.Popen([sys.executable, "-m", "pydarknet", *map(str, args)], cwd=folder, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=takes_ctrl_c, **kwargs)


def lines_until(stream, count, pattern=None):
    """The next lines of `stream` until `count` of them match `pattern` (any line without one); the test fails
    past DEADLINE rather than hang (every caller's process writes a line at least every few seconds)."""
    found, given_up = [], time.monotonic() + DEADLINE
    while sum(1 for line in found if pattern is None or pattern.match(line)) < count:
        assert time.monotonic() < given_up, f"only {found[-3:]} after {DEADLINE} s"
        line = stream.readline()
        assert line, f"the process ended after {found[-3:]}"
        found.append(line)
    return found


PROGRAM = """
import time
from pydarknet.tasks import stops
stops.stop_on_signals()
try:
    print("working", flush=True)
    time.sleep(60)
except KeyboardInterrupt as stop:
    print(f"cleaning up after {stop}", flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("number", [pytest.param(signal.SIGINT, id="SIGINT"), *STOPS])
def test_a_second_stop_signal_during_the_clean_up_ends_the_process_at_once(number):
    """The commands' handler: the first signal raises KeyboardInterrupt (its clean-up then runs), the second ends
    the process there, with one line and 128 + its number."""
    process = subprocess.Popen([sys.executable, "-c", PROGRAM], env=ENV, text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, preexec_fn=takes_ctrl_c)
    try:
        assert lines_until(process.stdout, 1) == ["working\n"]
        process.send_signal(number)
        assert lines_until(process.stdout, 1) == [f"cleaning up after {signal.Signals(number).name}\n"]
        sent = time.monotonic()
        process.send_signal(number)
        assert process.wait(timeout=DEADLINE) == 128 + number
        assert time.monotonic() - sent < 10   # not the clean-up's minute
        assert process.stderr.read() == f"pydarknet: {signal.Signals(number).name} again: stopped at once\n"
    finally:
        process.kill()


def test_a_signal_the_process_was_started_ignoring_stays_ignored():
    """nohup's SIGHUP: ignored as before; SIGTERM still stops the process."""
    def as_nohup():
        takes_ctrl_c()
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    process = subprocess.Popen([sys.executable, "-c", PROGRAM], env=ENV, text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, preexec_fn=as_nohup)
    try:
        assert lines_until(process.stdout, 1) == ["working\n"]
        process.send_signal(signal.SIGHUP)
        time.sleep(1)
        assert process.poll() is None
        process.send_signal(signal.SIGTERM)
        assert lines_until(process.stdout, 1) == ["cleaning up after SIGTERM\n"]
    finally:
        process.kill()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """The shapes set (16 training images) and a detector small enough to train hundreds of iterations a
    second; trained two iterations first, so that its kernels are compiled before any test's clock starts."""
    folder = tmp_path_factory.mktemp("stops")
    data = write_shapes(folder / "shapes", train=16, valid=4)
    (folder / "toy.cfg").write_text(toy_detector_cfg(classes=3, max_batches=1_000_000))
    warm = subprocess.run([sys.executable, "-m", "pydarknet", "detector", "train", data, "toy.cfg", "--backup", "warm",
                           "--max-batches", "2", "--workers", "1", "-q"], cwd=folder, env=ENV, capture_output=True,
                          text=True, timeout=1200)
    assert warm.returncode == 0, warm.stderr
    return folder, data


def iterations_in(weights, cfg):
    net = Network(cfg, quiet_unused=True)
    load_weights(net, weights)
    return net.seen // (net.batch * net.subdivisions)


@pytest.mark.parametrize("number", STOPS)
@pytest.mark.parametrize("replicas", [[], ["-gpus", "cpu,cpu"]], ids=["one replica", "two replicas"])
def test_a_stop_signal_in_train_saves_last_once_and_the_run_resumes_from_it(dataset, tmp_path, number, replicas):
    folder, data = dataset
    backup = tmp_path / "backup"
    train = start(["detector", "train", data, "toy.cfg", "--backup", backup, "--workers", 1, *replicas], folder)
    try:
        lines_until(train.stdout, 5, ITERATION)
        train.send_signal(number)
        out, err = train.communicate(timeout=DEADLINE)
    finally:
        train.kill()
    assert train.returncode == 128 + number, err
    last = err.strip().splitlines()[-1]
    done = int(re.fullmatch(rf"Interrupted: saved {backup}/toy_last\.weights after (\d+) iterations", last).group(1))
    assert done >= 5 and err.count("Interrupted") == 1
    assert iterations_in(backup / "toy_last.weights", folder / "toy.cfg") == done
    resumed = subprocess.run([sys.executable, "-m", "pydarknet", "detector", "train", data, "toy.cfg",
                              backup / "toy_last.weights", "--backup", tmp_path / "again", "--workers", "1",
                              "--max-batches", str(done + 2), "-q", *replicas], cwd=folder, env=ENV,
                             capture_output=True, text=True, timeout=DEADLINE)
    assert resumed.returncode == 0, resumed.stderr
    assert [int(ITERATION.match(line).group(1)) for line in resumed.stdout.splitlines()] == [done + 1, done + 2]


@pytest.mark.parametrize("number", STOPS)
def test_a_stop_signal_in_demo_leaves_a_whole_video_and_whole_frames(tmp_path, number):
    """The video is finished: OpenCV reads as many frames from it as demo printed JSON lines; every -prefix image
    written is whole."""
    clip = tmp_path / "long.avi"
    write_clip(clip, 300)
    demo = start(["detector", "demo", *SHAPES, clip, "-dont_show", "--json", "-out_filename", "out.mp4", "-prefix",
                  "frame"], tmp_path)
    try:
        first = lines_until(demo.stdout, 5)
        demo.send_signal(number)
        out, err = demo.communicate(timeout=DEADLINE)
    finally:
        demo.kill()
    assert demo.returncode == 128 + number, err
    printed = [json.loads(line) for line in first + out.splitlines()]   # every line whole
    frames = len(printed)
    assert [frame["frame"] for frame in printed] == list(range(1, frames + 1)) and frames < 300
    assert [line for line in err.splitlines() if line][-2:] == [f"saved out.mp4 ({frames} frames)",
                                                                f"pydarknet: stopped by {signal.Signals(number).name}"]
    video = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    readable = 0
    while video.read()[0]:
        readable += 1
    assert readable == frames
    images = sorted(tmp_path.glob("frame_*.jpg"))
    assert len(images) == frames and all(cv2.imread(str(image)) is not None for image in images)
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_stop_signal_in_valid_leaves_no_result_file(tmp_path):
    """`detector valid` stopped in the middle of its list (waiting for an image that a pipe holds back): none of
    its result files exists, whole or partial, and no temporary file is left; a file of the same name from an
    earlier run is as it was."""
    images = sorted((ROOT / "data").glob("*.jpg"))[:2]
    held = tmp_path / "held.jpg"
    os.mkfifo(held)
    (tmp_path / "valid.txt").write_text("".join(f"{path}\n" for path in [*images, held, *images]))
    (tmp_path / "shapes.data").write_text(f"classes=3\nvalid={tmp_path / 'valid.txt'}\n"
                                          f"names={ROOT / 'data/shapes.names'}\n")
    earlier = tmp_path / "results" / "comp4_det_test_circle.txt"
    earlier.parent.mkdir()
    earlier.write_text("an earlier run's\n")
    valid = start(["detector", "valid", "shapes.data", *SHAPES[1:]], tmp_path)
    given_up = time.monotonic() + DEADLINE
    try:
        while True:   # until valid opens the held image for reading: it is past the first two
            assert valid.poll() is None and time.monotonic() < given_up, valid.stderr.read()
            try:
                writer = os.open(held, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError:   # ENXIO: no reader yet
                time.sleep(0.05)
        valid.send_signal(signal.SIGTERM)
        _, err = valid.communicate(timeout=DEADLINE)
        os.close(writer)
    finally:
        valid.kill()
    assert valid.returncode == 143, err
    assert err.strip().splitlines()[-1] == "pydarknet: stopped by SIGTERM"
    assert sorted(p.name for p in earlier.parent.iterdir()) == [earlier.name]   # no other result, no temporary
    assert earlier.read_text() == "an earlier run's\n"


def test_a_stop_signal_in_detect_leaves_its_json_whole_with_the_images_done(tmp_path):
    """-out FILE.json of `detector test` over a list from stdin, stopped with the list still open: a whole JSON
    array of the images detected."""
    image = ROOT / "data" / "shapes.jpg"
    detect = start(["detector", "test", *SHAPES, "-dont_show", "-ext_output", "-out", "result.json"], tmp_path,
                   stdin=subprocess.PIPE)
    try:
        for _ in range(3):
            detect.stdin.write(f"{image}\n")
            detect.stdin.flush()
            lines_until(detect.stdout, 1, re.compile(r".*Predicted in"))
        detect.send_signal(signal.SIGTERM)
        _, err = detect.communicate(timeout=DEADLINE)
    finally:
        detect.kill()
    assert detect.returncode == 143, err
    frames = json.loads((tmp_path / "result.json").read_text())
    assert [frame["filename"] for frame in frames] == [str(image)] * 3
    assert not list(tmp_path.glob(".*.tmp"))


def test_the_python_api_leaves_the_callers_signals_alone(tmp_path, monkeypatch):
    """Only the command line installs the handler: a Detector made and run, and main(argv) run in-process, leave
    SIGTERM and SIGHUP as the caller had them."""
    from pydarknet.cli import main
    monkeypatch.chdir(tmp_path)   # detect's predictions.jpg
    from pydarknet.tasks.predict import Detector
    before = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    Detector(*SHAPES[1:], names=["circle", "square", "triangle"]).detect(str(ROOT / "data" / "shapes.jpg"))
    with pytest.raises(SystemExit):
        main(["detector", "test", *SHAPES, str(ROOT / "data" / "shapes.jpg"), "-dont_show", "-q"])
    assert {number: signal.getsignal(number) for number in before} == before
