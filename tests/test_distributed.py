"""--dask: the commands on a real Dask cluster of worker processes (2 workers, the shapes demo and a small random
classifier) print what the single-process commands print, lose nothing when a worker dies, report a bad image
once, and leave no process behind."""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import suppress
from pathlib import Path

import cv2
import distributed
import numpy as np
import psutil   # a dependency of distributed
import pytest

from conftest import ROOT, shared_path, takes_ctrl_c
from pydarknet.files.errors import install_hint

SHAPES = [str(ROOT / "cfg/shapes.data"), str(ROOT / "cfg/shapes-tiny.cfg"), str(ROOT / "data/shapes-tiny.weights")]
TIMING = re.compile(r"Predicted in [0-9.]+ (milli-)?seconds|\"seconds\": [0-9.e-]+")


def run(args, cwd, input=None):
    """`python -m pydarknet ARGS -q` as a real process: (exit code, stdout with the timings blanked, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "pydarknet", *map(str, args), "-q"], input=input, cwd=cwd,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    return proc.returncode, TIMING.sub("<time>", proc.stdout), proc.stderr


def start(args, cwd, stdin=subprocess.DEVNULL):
    return subprocess.Popen([sys.executable, "-m", "pydarknet", *map(str, args), "-q"], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=stdin, preexec_fn=takes_ctrl_c,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster of 2 worker processes, one thread each; its scheduler's address."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0",
                                  env={"NUMBA_NUM_THREADS": "1"}) as local, distributed.Client(local) as client:
        yield client


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Ten images of four sizes (the shapes picture flipped and shifted, the sample photos) and a broken one
    fourth."""
    folder = tmp_path_factory.mktemp("images")
    shapes = cv2.imread(str(ROOT / "data/shapes.jpg"))
    variants = [shapes, shapes[:, ::-1], shapes[::-1], None, np.roll(shapes, 40, axis=1), np.roll(shapes, 30, axis=0),
                cv2.imread(str(ROOT / "data/dog.jpg")), cv2.imread(str(ROOT / "data/person.jpg")),
                cv2.imread(str(ROOT / "data/eagle.jpg")), shapes[:, ::-1][::-1], np.roll(shapes, 50, axis=0)]
    paths = []
    for i, im in enumerate(variants):
        paths.append(str(folder / f"image{i}.png"))
        if im is None:
            (folder / f"image{i}.png").write_bytes(b"\x89PNG not really a png")
        else:
            cv2.imwrite(paths[-1], im)
    return paths


@pytest.fixture(scope="module")
def many_images(tmp_path_factory):
    """96 distinct files (the sample photos, whose decoding keeps a worker busy for a while)."""
    folder = tmp_path_factory.mktemp("many")
    photos = [(ROOT / "data" / name).read_bytes() for name in ("dog.jpg", "person.jpg", "eagle.jpg")]
    paths = []
    for i in range(96):
        paths.append(folder / f"photo{i:03d}.jpg")
        paths[-1].write_bytes(photos[i % 3])
    return [str(p) for p in paths]


def same_on_cluster(args, cwd, address, input=None):
    """The command alone and with --dask ADDRESS: the same exit code and stdout (timings aside); returns them
    and the cluster run's stderr."""
    code, out, _ = run(args, cwd, input)
    on_cluster = run([*args, "--dask", address], cwd, input)
    assert on_cluster[:2] == (code, out)
    return code, out, on_cluster[2]


@pytest.mark.parametrize("form", [["-ext_output"], ["--json", "--fast"], ["--darknet", "ab", "-batch", "3"]])
def test_detect_prints_what_one_process_prints_and_a_bad_image_once(images, cluster, tmp_path, form):
    code, out, err = same_on_cluster(["detector", "test", *SHAPES, *images, "-thresh", ".2", *form], tmp_path,
                                     cluster.scheduler.address)
    assert code == 1 and err.count("image3.png") == 1 and out.count("%") + out.count('"prob"') > 10
    assert {p.name for p in tmp_path.glob("predictions_*.jpg")} == (
        set() if "--json" in form else {f"predictions_{i}.jpg" for i in range(1, len(images))})


def test_classify_prints_what_one_process_prints(images, small_classifier, cluster, tmp_path):
    for form in ([], ["--json", "-batch", "4"]):
        code, out, _ = same_on_cluster(["classifier", "predict", *small_classifier, *images, *form], tmp_path,
                                       cluster.scheduler.address)
        assert code == 1 and len(out.splitlines()) == (len(images) - 1) * (1 if form else 4)


def test_paths_from_stdin_and_unordered_give_every_result(images, cluster, tmp_path):
    paths = "\n".join(images) + "\n"
    _, out, _ = run(["detector", "test", *SHAPES, "--json"], tmp_path, paths)
    code, unordered, err = run(["detector", "test", *SHAPES, "--json", "--dask", cluster.scheduler.address,
                                "--unordered"], tmp_path, paths)
    assert code == 1 and err.count("image3.png") == 1
    assert sorted(unordered.splitlines()) == sorted(out.splitlines()) and len(out.splitlines()) == len(images) - 1


@pytest.mark.parametrize("command", [["detector", "map", "-points", "11", "--json"], ["detector", "recall"]])
def test_evaluation_reports_what_one_process_reports(cluster, command):
    shared_path("datasets", "shapes", "valid.txt")   # cfg/shapes.data's valid= list
    code, out, _ = same_on_cluster([*command[:2], *SHAPES, *command[2:]], ROOT, cluster.scheduler.address)
    assert code == 0
    if "--json" in command:   # stdout is the summary, one JSON document (the report goes to stderr)
        assert json.loads(out)["images"] == 150
    else:
        assert len(out.splitlines()) > 10


def test_classifier_valid_reports_what_one_process_reports(images, small_classifier, cluster, tmp_path):
    _, cfg, weights = small_classifier
    (tmp_path / "labels.txt").write_text("image0\nimage1\nimage2\n")   # the label is the first one in the path
    (tmp_path / "valid.txt").write_text("\n".join(p for p in images if "image3" not in p) + "\n")
    (tmp_path / "small.data").write_text("classes=3\nlabels=labels.txt\nvalid=valid.txt\ntop=2\n")
    code, out, _ = same_on_cluster(["classifier", "valid", "small.data", cfg, weights], tmp_path,
                                   cluster.scheduler.address)
    assert code == 0 and len(out.splitlines()) == len(images) - 1


def test_detector_valid_writes_the_same_files(cluster, tmp_path):
    shared_path("datasets", "shapes", "valid.txt")
    assert run(["detector", "valid", *SHAPES, "-out", tmp_path / "one"], ROOT)[0] == 0
    assert run(["detector", "valid", *SHAPES, "-out", tmp_path / "two", "--dask", cluster.scheduler.address],
               ROOT)[0] == 0
    one = {p.name: p.read_text() for p in (tmp_path / "one").iterdir()}
    assert one == {p.name: p.read_text() for p in (tmp_path / "two").iterdir()} and len(one) == 3


def serve_fifo(fifo, data):
    """A thread that opens `fifo` for writing (which waits for a reader), writes `data` and closes it: one
    reader's worth of the image."""
    def serve():
        with open(fifo, "wb") as f:
            f.write(data)
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def fifo_reader(fifo, pids):
    """The one of `pids` that holds `fifo` open (its /proc fd links name it), else None."""
    for pid in pids:
        with suppress(OSError):
            if any(os.readlink(fd) == str(fifo) for fd in Path(f"/proc/{pid}/fd").iterdir()):
                return pid
    return None


def test_a_worker_killed_mid_run_loses_nothing(many_images, cluster, tmp_path):
    """One image is a named pipe: the worker whose chunk holds it waits on it, so that worker is killed with
    that chunk in flight, deterministically (the pipe is fed only after the kill). The chunk reruns on the
    other worker, and the output is the single process's: each image once, in order, the pipe's included."""
    fifo = tmp_path / "photo_pipe.jpg"
    os.mkfifo(fifo)
    data = (ROOT / "data" / "dog.jpg").read_bytes()
    args = ["detector", "test", *SHAPES, *many_images[:40], fifo, *many_images[40:], "--json"]
    feeding = serve_fifo(fifo, data)
    _, expected, _ = run(args, tmp_path)
    feeding.join()
    assert expected.count('"image"') == len(many_images) + 1 and str(fifo) in expected
    workers = list(cluster.run(os.getpid).values())
    proc = start([*args, "--dask", cluster.scheduler.address], tmp_path)
    writer = None
    while writer is None:   # a worker opens the pipe for reading: opening it for writing then succeeds
        assert proc.poll() is None, proc.stderr.read()
        with suppress(OSError):   # ENXIO: no reader yet
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        time.sleep(0.02)
    while (holder := fifo_reader(fifo, workers)) is None:   # its open() returns now that a writer is there
        time.sleep(0.01)
    os.kill(holder, signal.SIGKILL)   # blocked reading the pipe, which holds no byte yet
    with suppress(psutil.NoSuchProcess):
        psutil.Process(holder).wait(timeout=60)
    os.close(writer)
    feeding = serve_fifo(fifo, data)   # for the rerun of the killed worker's chunk
    out = proc.stdout.read()
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    feeding.join(timeout=60)
    assert not feeding.is_alive()   # the rerun read the pipe
    assert TIMING.sub("<time>", out) == expected   # each image once, in order
    cluster.wait_for_workers(2, timeout=60)


@pytest.mark.parametrize("interrupt", [False, True])
def test_local_cluster_leaves_no_process_behind(many_images, tmp_path, interrupt):
    """The command closes its local cluster before it exits, joining the worker processes: none is left
    running the moment it has exited (multiprocessing's resource tracker, which is no worker, ends by itself
    when the command's end closes its pipe). The interrupted command reads its paths from a pipe left open, so
    that it cannot have finished before the Ctrl-C comes, however slow the machine."""
    if interrupt:
        proc = start(["detector", "test", *SHAPES, "--json", "--dask", "local:2"], tmp_path, stdin=subprocess.PIPE)
        proc.stdin.write("".join(f"{path}\n" for path in many_images))
        proc.stdin.flush()
    else:
        proc = start(["detector", "test", *SHAPES, *many_images, "--json", "--dask", "local:2"], tmp_path)
    proc.stdout.readline()
    children = psutil.Process(proc.pid).children(recursive=True)
    workers = [c for c in children if "resource_tracker" not in " ".join(c.cmdline())]
    assert len(workers) >= 2
    if interrupt:
        proc.send_signal(signal.SIGINT)   # Ctrl-C
        proc.stdin.close()                # (then a Ctrl-C ignored fails the test, it does not hang it)
    rest = proc.stdout.read()
    code, err = proc.wait(timeout=120), proc.stderr.read()
    assert code == (130 if interrupt else 0), err
    if not interrupt:
        assert len(rest.splitlines()) == len(many_images) - 1
    assert not [c.cmdline() for c in workers if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    trackers = [c for c in children if c not in workers]
    _, alive = psutil.wait_procs(trackers, timeout=60)
    assert not alive


def test_python_api_equals_detect_batch_and_reads_urls(images, cluster):
    from pydarknet.tasks import distributed as on_dask
    from pydarknet.tasks.predict import Detector
    good = [p for p in images if "image3" not in p]
    paths = [f"file://{p}" if i % 2 else p for i, p in enumerate(good)]
    results = list(on_dask.detect(paths, SHAPES[1], SHAPES[2], client=cluster, thresh=0.2, batch=2, chunk=3))
    local = Detector(SHAPES[1], SHAPES[2]).detect_batch(good, thresh=0.2)
    assert [path for path, _ in results] == paths
    for (_, result), alone in zip(results, local):
        result.seconds = alone.seconds = 0
        result.image = alone.image
    assert [result for _, result in results] == local


def test_without_dask_the_option_names_the_extra(monkeypatch, capsys, tmp_path):
    from pydarknet.cli import main
    monkeypatch.setitem(sys.modules, "distributed", None)   # as if not installed
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit:
        main(["detector", "test", *SHAPES, str(ROOT / "data/shapes.jpg"), "--dask", "local:2", "-q"])
    assert exit.value.code == 1
    assert capsys.readouterr().err == ("pydarknet: error: --dask needs Dask's distributed scheduler: "
                                       f"{install_hint('dask')}\n")
