"""--dask: the commands on a real Dask cluster of worker processes (2 workers, the shapes demo and a small random
classifier) print what the single-process commands print, lose nothing when a worker dies, report a bad image
once, and leave no process behind."""
import os
import re
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from conftest import ROOT, shared_path
from pydarknet.errors import install_hint

distributed = pytest.importorskip("distributed")
psutil = pytest.importorskip("psutil")

SHAPES = [str(ROOT / "cfg/shapes.data"), str(ROOT / "cfg/shapes-tiny.cfg"), str(ROOT / "data/shapes-tiny.weights")]
TIMING = re.compile(r"Predicted in [0-9.]+ (milli-)?seconds|\"seconds\": [0-9.e-]+")


def run(args, cwd, input=None):
    """`python -m pydarknet ARGS -q` as a real process: (exit code, stdout with the timings blanked, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "pydarknet", *map(str, args), "-q"], input=input, cwd=cwd,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    return proc.returncode, TIMING.sub("<time>", proc.stdout), proc.stderr


def start(args, cwd):
    return subprocess.Popen([sys.executable, "-m", "pydarknet", *map(str, args), "-q"], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
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
    assert code == 0 and len(out.splitlines()) > 10


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


def test_a_worker_killed_mid_run_loses_nothing(many_images, cluster, tmp_path):
    args = ["detector", "test", *SHAPES, *many_images, "--json"]
    _, expected, _ = run(args, tmp_path)
    workers = list(cluster.run(os.getpid).values())
    proc = start([*args, "--dask", cluster.scheduler.address], tmp_path)
    lines = [proc.stdout.readline()]
    os.kill(workers[0], signal.SIGKILL)
    lines += list(proc.stdout)   # (read through the same buffer as the first line)
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
    assert not psutil.pid_exists(workers[0]) or psutil.Process(workers[0]).status() == psutil.STATUS_ZOMBIE
    assert len(lines) - 1 > 16   # chunks were still running when the worker died
    assert TIMING.sub("<time>", "".join(lines)) == expected   # each image once, in order
    cluster.wait_for_workers(2, timeout=60)


@pytest.mark.parametrize("interrupt", [False, True])
def test_local_cluster_leaves_no_process_behind(many_images, tmp_path, interrupt):
    proc = start(["detector", "test", *SHAPES, *many_images, "--json", "--dask", "local:2"], tmp_path)
    proc.stdout.readline()
    children = psutil.Process(proc.pid).children(recursive=True)
    assert len(children) >= 2   # the workers (and whatever else the cluster runs)
    if interrupt:
        proc.send_signal(signal.SIGINT)   # Ctrl-C
    rest = proc.stdout.read()
    assert proc.wait(timeout=120) == (130 if interrupt else 0)
    if not interrupt:
        assert len(rest.splitlines()) == len(many_images) - 1
    deadline = time.monotonic() + 10
    while any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children):
        assert time.monotonic() < deadline, [c.cmdline() for c in children if c.is_running()]
        time.sleep(0.1)


def test_python_api_equals_detect_batch_and_reads_urls(images, cluster):
    from pydarknet import distributed as on_dask
    from pydarknet.predict import Detector
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
