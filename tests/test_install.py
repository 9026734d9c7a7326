"""Installed the ordinary way (a wheel, not a checkout): the commands find the cfg/ and data/ files pydarknet
ships, from an empty directory."""
import os
import subprocess
import sys
import tarfile

from conftest import ROOT, SHARED

TINY_TOP5 = ["malamute: 0.167168", "Eskimo dog: 0.065828", "dogsled: 0.063020",
             "standard schnauzer: 0.051153", "Siberian husky: 0.037506"]


def run(installed, *args):
    bin_dir, cwd, env = installed
    proc = subprocess.run([str(bin_dir / "pydarknet"), *args], cwd=cwd, env=env, capture_output=True, text=True)
    return proc.returncode, proc.stdout, proc.stderr


def test_the_wheel_is_what_runs(installed):
    bin_dir, cwd, env = installed
    out = subprocess.run([str(bin_dir / "python"), "-c", "import pydarknet.files.resources as r; "
                          "print(r.__file__); print(r.shipped_root())"],
                         cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout.split()
    venv_dir = str(bin_dir.parent)
    assert out[0].startswith(venv_dir) and out[1].startswith(venv_dir) and out[1].endswith("_files")


def test_detector_test_and_detect_on_the_demo(installed):
    code, out, err = run(installed, "detector", "test", "cfg/shapes.data", "cfg/shapes-tiny.cfg",
                         "data/shapes-tiny.weights", "data/shapes.jpg", "-thresh", ".25", "-dont_show")
    assert code == 0, err
    # a regression pin: pydarknet's own detection with its own demo weights (README, Quick start)
    assert out.startswith("data/shapes.jpg: Predicted in") and "triangle: 90%" in out.splitlines()
    code, out, err = run(installed, "detect", "cfg/shapes-tiny.cfg", "data/shapes-tiny.weights", "data/shapes.jpg",
                         "--json")
    assert code == 0, err
    assert '"image": "data/shapes.jpg"' in out   # detect reads cfg/coco.data (and data/coco.names) shipped


def test_classify(installed, tmp_path):
    weights = SHARED / "models" / "tiny.weights"
    if not weights.is_file():   # without the real model: random weights, five lines all the same
        from pydarknet.files.weights import save_weights
        from pydarknet.network.network import Network
        weights = tmp_path / "random-tiny.weights"
        save_weights(Network(ROOT / "cfg" / "tiny.cfg").initialize(seed=1), weights)
    code, out, err = run(installed, "classify", "cfg/tiny.cfg", str(weights), "data/dog.jpg")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("data/dog.jpg: Predicted in") and len(lines) == 6
    if weights.name == "tiny.weights":
        assert lines[1:] == TINY_TOP5


def test_summary_from_an_empty_directory(installed):
    code, out, err = run(installed, "summary", "cfg/yolov3.cfg")
    assert code == 0, err
    assert "Total BFLOPS 140.692" in out.splitlines()


def test_import_darknet(installed):
    """The wheel installs the top-level module `darknet` (the AlexeyAB fork's darknet.py API): from an empty
    directory it loads the demo through the shipped cfg/ and data/ files and prints what `detector test` prints
    there with the fork's arithmetic (triangle: 79%, twice)."""
    bin_dir, cwd, env = installed
    script = ("import darknet\n"
              "print(darknet.__file__)\n"
              "net, names, colors = darknet.load_network('cfg/shapes-tiny.cfg', 'cfg/shapes.data', "
              "'data/shapes-tiny.weights')\n"
              "image = darknet.load_image(b'data/shapes.jpg', darknet.network_width(net), "
              "darknet.network_height(net))\n"
              "darknet.print_detections(darknet.detect_image(net, names, image, thresh=.25))\n")
    proc = subprocess.run([str(bin_dir / "python"), "-c", script], cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(str(bin_dir.parent)) and lines[0].endswith("darknet/__init__.py")
    assert lines[1:] == ["", "Objects:", "triangle: 78.78%", "triangle: 79.18%"]


def test_an_sdist_carries_its_build_backend_and_builds_a_wheel(tmp_path):
    """pyproject.toml's backend lives in tools/backend/ (MANIFEST.in puts it in the sdist): a wheel builds from the
    sdist; PYDARKNET_WHEEL_KERNELS=0 makes it the pure-Python wheel, without compiled kernels."""
    backend = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, 'tools/backend'); "
                              "import pydarknet_wheel; print(pydarknet_wheel.build_sdist(sys.argv[1]))", str(tmp_path)],
                             cwd=ROOT, capture_output=True, text=True)
    assert backend.returncode == 0, backend.stderr[-2000:]
    sdist = tmp_path / backend.stdout.split()[-1]
    with tarfile.open(sdist) as archive:
        assert "pydarknet-0.1.0/tools/backend/pydarknet_wheel.py" in archive.getnames()
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "--no-index", "-w", str(tmp_path / "wheels"), str(sdist)], capture_output=True, text=True,
                           env={**os.environ, "PYDARKNET_WHEEL_KERNELS": "0"})
    assert build.returncode == 0, build.stderr[-2000:]
    assert [p.name for p in (tmp_path / "wheels").iterdir()] == ["pydarknet-0.1.0-py3-none-any.whl"]
