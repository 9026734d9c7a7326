"""The command line: darknet's output, clean streams, JSON, stdin pipelines, errors and exit codes."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import ROOT, shared_path
from pydarknet.cli import cli

TINY_LINES = ["malamute: 0.167168", "Eskimo dog: 0.065828", "dogsled: 0.063020",
              "standard schnauzer: 0.051153", "Siberian husky: 0.037506"]
# pjreddie's `detect` on dog.jpg (golden yolov3-tiny_dog, thresh .5): det order after do_nms_sort, classes ascending
DOG_LINES = ["dog: 57%", "car: 52%", "truck: 56%", "car: 62%", "bicycle: 59%"]


def run(args, input=None):
    """Run `python -m pydarknet` as a real process: (exit code, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "pydarknet", *args], input=input, capture_output=True, text=True,
                          cwd=os.getcwd(), env={**os.environ, "PYTHONPATH": str(ROOT)})
    return proc.returncode, proc.stdout, proc.stderr


def error_line(args):
    """A command that cannot use its input, as a real process: exit 1, nothing on stdout and one line on stderr,
    `pydarknet: error: ...` (README, Exit codes); returns that line."""
    code, out, err = run(args)
    assert code == 1 and out == "" and len(err.splitlines()) == 1, (code, out, err)
    assert err.startswith("pydarknet: error: ")
    return err.strip()


@pytest.fixture
def models():
    return shared_path("models")


@pytest.fixture
def images():
    return shared_path("images")


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def invoke(args, input=None):
    return CliRunner().invoke(cli, args, input=input)


def test_classify_prints_the_published_tiny_darknet_result(models, images, in_tmp):
    dog = str(images / "dog.jpg")
    result = invoke(["classify", str(ROOT / "cfg/tiny.cfg"), str(models / "tiny.weights"), dog])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{dog}: Predicted in ") and lines[0].endswith(" seconds.")
    assert lines[1:] == TINY_LINES


def test_classify_letterbox_and_top(models, images, in_tmp):
    result = invoke(["classify", str(ROOT / "cfg/tiny.cfg"), str(models / "tiny.weights"), str(images / "dog.jpg"),
                     "-letter_box", "-top", "2"])
    lines = result.stdout.splitlines()[1:]
    assert len(lines) == 2
    assert lines[0].startswith("malamute: 0.145")  # MODELS.md: letterbox 224x224 gives malamute 14.51 %
    assert lines[1].startswith("Newfoundland: 0.06")


def test_classifier_predict_long_form_reads_top_from_data(models, images, in_tmp):
    result = invoke(["classifier", "predict", str(ROOT / "cfg/imagenet1k.data"), str(ROOT / "cfg/tiny.cfg"),
                     str(models / "tiny.weights"), str(images / "dog.jpg")])
    assert result.stdout.splitlines()[1:] == TINY_LINES  # imagenet1k.data has top=5


def test_detect_prints_darknet_lines_and_draws(models, images, in_tmp):
    result = invoke(["detect", str(ROOT / "cfg/yolov3-tiny.cfg"), str(models / "yolov3-tiny.weights"),
                     str(images / "dog.jpg")])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{images / 'dog.jpg'}: Predicted in ")
    assert lines[1:] == DOG_LINES
    assert (in_tmp / "predictions.jpg").stat().st_size > 10000
    assert "layer     filters    size" in result.stderr  # the layer table goes to stderr


def test_detect_ext_output_and_out_name(models, images, in_tmp):
    result = invoke(["detector", "test", str(ROOT / "cfg/coco.data"), str(ROOT / "cfg/yolov3-tiny.cfg"),
                     str(models / "yolov3-tiny.weights"), str(images / "dog.jpg"), "-ext_output", "-out", "boxes",
                     "-dont_show"])
    first = result.stdout.splitlines()[1]
    # dog box (golden): x .324342 y .611325 w .312303 h .574242 on 768x576
    assert first == "dog: 57%\t(left_x:  129   top_y:  187   width:  240   height:  331)"
    assert (in_tmp / "boxes.jpg").exists() and not (in_tmp / "predictions.jpg").exists()


def test_detect_json_has_exactly_the_documented_keys(models, images, in_tmp):
    result = invoke(["detect", str(ROOT / "cfg/yolov3-tiny.cfg"), str(models / "yolov3-tiny.weights"),
                     str(images / "dog.jpg"), "--json", "-thresh", ".25"])
    (line,) = result.stdout.splitlines()
    doc = json.loads(line)
    assert set(doc) == {"image", "seconds", "width", "height", "detections"}
    assert (doc["width"], doc["height"]) == (768, 576)
    det = doc["detections"][0]
    assert set(det) == {"class_id", "name", "prob", "objectness", "box", "pixels"}
    assert set(det["box"]) == {"x", "y", "w", "h"} and set(det["pixels"]) == {"left", "top", "width", "height"}
    assert det["name"] == "dog" and det["class_id"] == 16 and det["prob"] == pytest.approx(0.570732, abs=1e-5)
    assert not (in_tmp / "predictions.jpg").exists()  # JSON pipelines draw nothing unless -out is given


def test_classify_json(models, images, in_tmp):
    result = invoke(["classify", str(ROOT / "cfg/tiny.cfg"), str(models / "tiny.weights"), str(images / "dog.jpg"),
                     "--json"])
    doc = json.loads(result.stdout)
    assert set(doc) == {"image", "seconds", "predictions"}
    assert doc["predictions"][0] == {"class_id": 14, "name": "malamute", "prob": pytest.approx(0.167168, abs=1e-6)}


def test_save_labels_beside_the_image(models, images, in_tmp):
    shutil.copy(images / "dog.jpg", in_tmp / "dog.jpg")
    invoke(["detect", str(ROOT / "cfg/yolov3-tiny.cfg"), str(models / "yolov3-tiny.weights"), "dog.jpg",
            "-save_labels"])
    rows = [line.split() for line in (in_tmp / "dog.txt").read_text().splitlines()]
    assert [r[0] for r in rows] == ["16", "7", "2", "1"]  # best class per box: dog, truck (.56 > car .52), car, bicycle
    assert rows[0][1:] == ["0.3243", "0.6113", "0.3123", "0.5742"]


def test_stdin_paths_and_a_bad_image_among_good_ones(models, images, in_tmp):
    (in_tmp / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    paths = f"{images / 'dog.jpg'}\nbroken.jpg\n\n{images / 'person.jpg'}\nmissing.jpg\n"
    code, out, err = run(["detect", str(ROOT / "cfg/yolov3-tiny.cfg"), str(models / "yolov3-tiny.weights"),
                          "--json", "-q"], input=paths)
    assert code == 1
    docs = [json.loads(line) for line in out.splitlines()]
    assert [d["image"] for d in docs] == [str(images / "dog.jpg"), str(images / "person.jpg")]
    errors = err.splitlines()
    assert len(errors) == 2 and "broken.jpg" in errors[0] and "missing.jpg" in errors[1]
    assert "Traceback" not in err


def test_many_image_arguments_number_the_drawings(models, images, in_tmp):
    invoke(["detect", str(ROOT / "cfg/yolov3-tiny.cfg"), str(models / "yolov3-tiny.weights"),
            str(images / "dog.jpg"), str(images / "person.jpg"), "-q"])
    assert (in_tmp / "predictions_1.jpg").exists() and (in_tmp / "predictions_2.jpg").exists()


def test_quiet_silences_chatter(models, images, in_tmp):
    code, out, err = run(["detect", str(ROOT / "cfg/yolov3-tiny.cfg"), str(models / "yolov3-tiny.weights"),
                          str(images / "dog.jpg"), "-q"])
    assert code == 0 and err == "" and out.splitlines()[1:] == DOG_LINES


def test_missing_files_give_one_line_and_exit_1(in_tmp):
    code, out, err = run(["detect", "nope.cfg", "nope.weights", "x.jpg"])
    assert code == 1 and out == ""
    assert err.strip().splitlines() == ["pydarknet: error: nope.cfg: no such file"]


def test_malformed_cfg_names_file_and_line(in_tmp):
    (in_tmp / "bad.cfg").write_text("[net]\nwidth=32\nheight=32\nchannels=3\n[convolutional]\nfilters=eight\n")
    assert error_line(["summary", "bad.cfg"]) == "pydarknet: error: bad.cfg:6: 'filters=eight': expected an integer"


def test_short_weights_file_names_the_layer(models, in_tmp):
    with open(models / "yolov3-tiny.weights", "rb") as f:
        (in_tmp / "short.weights").write_bytes(f.read(1000000))
    cfg = ROOT / "cfg/yolov3-tiny.cfg"
    assert error_line(["detect", str(cfg), "short.weights", "x.jpg", "-q"]) == (
        f"pydarknet: error: short.weights: too short for {cfg}: ran out at layer 8 (convolutional), which needs "
        f"1179648 bytes at offset 396756 but only 603244 remain (the file has 1000000 bytes, {cfg} needs 35434956): "
        "weights of a smaller or another network?")


def test_debug_shows_the_traceback(in_tmp):
    code, _, err = run(["summary", "nope.cfg", "--debug"])
    assert code == 1 and "Traceback" in err


def test_usage_errors_exit_2(in_tmp):
    assert run(["detect"])[0] == 2
    assert run(["detect", "a.cfg", "b.weights", "-thresh", "high"])[0] == 2
    assert run(["frobnicate"])[0] == 2


def test_names_count_mismatch_is_an_error_naming_both_files(models, images, in_tmp):
    (in_tmp / "few.names").write_text("a\nb\n")
    (in_tmp / "few.data").write_text("classes=2\nnames=few.names\n")
    cfg = ROOT / "cfg/yolov3-tiny.cfg"
    assert error_line(["detector", "test", "few.data", str(cfg), str(models / "yolov3-tiny.weights"),
                       str(images / "dog.jpg"), "-q"]) == (
        f"pydarknet: error: few.names has 2 names but {cfg} has 80 classes: one name per line, a line for each "
        "class (is few.data the .data file of this network?)")


def test_summary_table_and_totals(in_tmp):
    result = invoke(["summary", str(ROOT / "cfg/yolov3-tiny.cfg")])
    lines = result.stdout.splitlines()
    assert lines[0].startswith("layer     filters    size")
    assert lines[1] == "    0 conv     16  3 x 3 / 1   416 x 416 x   3   ->   416 x 416 x  16  0.150 BFLOPs"
    assert lines[-3] == "Total BFLOPS 5.565"  # the sum of the per-layer figures above
    assert lines[-2] == "Parameters 8858734"  # yolov3-tiny.weights: (35434956 - 20) / 4 floats
    assert lines[-1] == "darknet: pjreddie (no AlexeyAB-only option in the cfg)"
    assert invoke(["ops", str(ROOT / "cfg/yolov3-tiny.cfg")]).stdout == result.stdout


def test_python_dash_m_runs_the_cli():
    code, out, _ = run(["--help"])
    assert code == 0 and "classify" in out and "detect" in out


@pytest.fixture
def probe_stubs(tmp_path):
    """Stand-ins for scipy and cffi, first on the path whether or not the real ones are installed: Numba's BLAS
    probe (`import scipy.linalg.cython_blas`) and its cffi typing (`cffi.FFI()`) each write a line to
    probed.txt when they reach them; the stub BLAS then raises ImportError, as a missing scipy does."""
    log = tmp_path / "probed.txt"
    (tmp_path / "scipy" / "linalg").mkdir(parents=True)
    (tmp_path / "scipy" / "__init__.py").write_text("__version__ = '1.14.0'\n")   # Numba checks the version
    (tmp_path / "scipy" / "linalg" / "__init__.py").write_text("")
    (tmp_path / "scipy" / "linalg" / "cython_blas.py").write_text(
        f"open({str(log)!r}, 'a').write('scipy.linalg\\n')\nraise ImportError('stub scipy')\n")
    (tmp_path / "cffi.py").write_text(
        f"class FFI:\n    def __init__(self):\n        open({str(log)!r}, 'a').write('cffi.FFI\\n')\n")
    return tmp_path, log


@pytest.mark.parametrize("shortcuts, probed", [("1", []), ("0", ["cffi.FFI", "scipy.linalg"])])
def test_a_command_skips_numbas_probes(in_tmp, probe_stubs, shortcuts, probed):
    """Numba's BLAS probe imports scipy.linalg when scipy is installed (0.4 s of every command's start-up), its
    cffi support makes a cffi.FFI() (13 ms, its C parser's tables): a command skips both; with the shortcuts off
    (PYDARKNET_NUMBA_SHORTCUTS=0) the same command reaches both, so the stubs do stand where Numba looks."""
    stubs, log = probe_stubs
    args = ["detector", "test", ROOT / "cfg/shapes.data", ROOT / "cfg/shapes-tiny.cfg",
            ROOT / "data/shapes-tiny.weights", ROOT / "data/shapes.jpg", "-q"]
    proc = subprocess.run([sys.executable, "-m", "pydarknet", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": f"{stubs}{os.pathsep}{ROOT}",
                               "PYDARKNET_NUMBA_SHORTCUTS": shortcuts})
    assert proc.returncode == 0 and "triangle" in proc.stdout, proc.stderr[-500:]
    reached = sorted(set(log.read_text().split())) if log.exists() else []
    assert reached == probed


def run_python(code, *args, path=()):
    """`python -c code args` in a fresh process that imports this checkout's pydarknet (after `path`)."""
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(map(str, [*path, ROOT]))})


def test_cffi_stays_importable_after_the_probe_is_skipped(probe_stubs):
    stubs, log = probe_stubs
    code = ("from pydarknet.kernels.startup import skip_numba_probes; skip_numba_probes(); "
            "import numba.core.typing.cffi_utils as support; import cffi; "
            "print(support.SUPPORTED, cffi.FFI() is not None)")
    proc = run_python(code, path=[stubs])
    assert proc.stdout.split() == ["False", "True"], proc.stderr[-500:]
    assert log.read_text() == "cffi.FFI\n"   # the process's own FFI() alone, not Numba's


def test_numba_checks_each_cache_folder_once():
    """skip_numba_probes: Numba's check that a cache folder is writable runs once per folder, not per kernel."""
    code = ("import tempfile; from unittest import mock; from pydarknet.kernels.startup import skip_numba_probes; "
            "skip_numba_probes(); skip_numba_probes(); "
            "made = mock.patch('tempfile.TemporaryFile', wraps=tempfile.TemporaryFile); files = made.start(); "
            "import pydarknet.kernels.nms, pydarknet.kernels.region; "
            "from numba.core.caching import _CacheLocator as L; "
            "print(files.call_count, L.ensure_cache_path.once_per_folder)")
    proc = run_python(code)
    assert proc.stdout.split() == ["1", "True"], proc.stderr[-500:]


def test_numba_shortcuts_skip_what_numba_lacks():
    """Each start-up shortcut into Numba's internals checks that the internal exists: with one missing (a Numba
    release that renamed it) that shortcut is skipped and the others still taken."""
    code = ("import numba.core.caching as caching; del caching.Cache._load_overload; "
            "del caching._CacheLocator.ensure_cache_path; "
            "from pydarknet.kernels.startup import skip_numba_probes; print(skip_numba_probes())")
    proc = run_python(code)
    taken = ("['llvm lock events', 'blas', 'cffi', 'runtime', 'kernels without IR', 'arrays without numpy.ma', "
             "'environments without modules']")
    assert proc.stdout.strip() == taken, proc.stderr[-500:]


def test_numbas_runtime_is_compiled_once_and_then_loaded():
    """skip_numba_probes: the LLVM half of Numba's runtime (35-40 ms to compile) is kept beside the cached
    kernels and loaded by the next command; with compiling it made impossible, a process still runs a kernel
    that allocates and compiles a new one that links the runtime. A damaged copy is compiled again and replaced."""
    kernel = ("from pydarknet.kernels.startup import skip_numba_probes, runtime_file; skip_numba_probes(); "
              "from numba.core.registry import cpu_target; import numba, numpy as np; "
              "kept = runtime_file(cpu_target.target_context.codegen()); "
              "from pydarknet.kernels.activations import expf_array as k; print(k(np.zeros(3, np.float32)).sum()); "
              "print(numba.njit(lambda n: np.ones(n).sum())(4)); print(kept)")
    first = run_python(kernel)
    assert first.stdout.split()[:2] == ["3.0", "4.0"], first.stderr[-500:]
    kept = Path(first.stdout.split()[2])
    runtime = kept.read_bytes()
    assert kept.is_file() and len(runtime) > 1000
    no_compiling = "from numba.core.runtime import nrtdynmod; nrtdynmod.create_nrt_module = None; " + kernel
    loaded = run_python(no_compiling)
    assert loaded.stdout.split()[:2] == ["3.0", "4.0"], loaded.stderr[-500:]
    kept.write_bytes(b"damaged")
    assert run_python(kernel).stdout.split()[:2] == ["3.0", "4.0"]
    assert kept.read_bytes() == runtime


def test_a_cached_kernel_loads_without_numbas_registries_and_a_compile_still_sets_them_up():
    """skip_numba_probes: a kernel loaded from the cache leaves Numba's lowering registries (numba.np.arraymath
    and the rest, 100-160 ms) unimported; a kernel compiled afterwards in the same process still gets them."""
    kernel = "from pydarknet.kernels.activations import expf_array as k; print(k(np.zeros(3, np.float32)).sum()); "
    assert run_python("import numpy as np; " + kernel).returncode == 0   # in the cache
    code = ("import sys, numpy as np, numba; from pydarknet.kernels.startup import skip_numba_probes; "
            "skip_numba_probes(); " + kernel + "print(k.stats.cache_hits[k.signatures[0]], "
            "'numba.np.arraymath' in sys.modules); "
            "mean = numba.njit(lambda a: np.mean(a)); print(mean(np.arange(5.0)), 'numba.np.arraymath' in sys.modules)")
    proc = run_python(code)
    assert proc.stdout.split() == ["3.0", "1", "False", "2.0", "True"], proc.stderr[-500:]


def test_a_command_runs_with_every_numba_shortcut_disabled(tmp_path):
    """PYDARKNET_NUMBA_SHORTCUTS=0: Numba's own probes, the same detections."""
    args = ["-m", "pydarknet", "detector", "test", "cfg/shapes.data", "cfg/shapes-tiny.cfg",
            "data/shapes-tiny.weights", "data/shapes.jpg", "-thresh", ".25", "--json", "-q"]
    outputs = []
    for shortcuts in ("0", "1"):
        proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT), "PYDARKNET_NUMBA_SHORTCUTS": shortcuts})
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-500:]
        outputs.append(json.loads(proc.stdout)["detections"])
    assert outputs[0] == outputs[1] and len(outputs[0]) >= 3


def test_inference_leaves_the_training_kernels_unloaded():
    """kernels.backward and kernels.loss (about 60 cached kernels) load when a layer first trains, not for an
    inference command: a forward pass of yolov4-tiny (convolutions, route groups, max-pools, [yolo]) leaves both
    unexecuted (a module's code, once run, leaves __builtins__ in its namespace); the first training kernel called
    loads its module."""
    code = ("import sys; import numpy as np; from pydarknet.network.network import Network; "
            "net = Network(sys.argv[1], quiet_unused=True); net.initialize(); "
            "net.forward(np.zeros((1,) + net.input_shape, np.float32)); "
            "loaded = lambda name: '__builtins__' in object.__getattribute__(sys.modules[name], '__dict__'); "
            "before = [loaded('pydarknet.kernels.backward'), loaded('pydarknet.kernels.loss')]; "
            "from pydarknet.kernels import backward; x = np.ones(3, np.float32); backward.axpy(np.float32(2), x, x); "
            "print(*before, loaded('pydarknet.kernels.backward'), x[0])")
    proc = run_python(code, ROOT / "cfg/yolov4-tiny.cfg")
    assert proc.stdout.split() == ["False", "False", "True", "3.0"], proc.stderr[-500:]


def test_anchors_command_and_alexeyab_spelling(in_tmp):
    data = shared_path("datasets", "shapes", "shapes.data")
    args = [str(data), "-num_of_clusters", "6", "-width", "160", "-height", "160"]
    first = invoke(["anchors", *args, "--cfg", str(ROOT / "cfg/yolov3-tiny.cfg"), "-show"])
    assert first.exit_code == 0, first.output
    iou = next(line for line in first.stdout.splitlines() if "avg IoU" in line)
    assert float(iou.split("=")[1].split("%")[0]) >= 74.11  # AlexeyAB's best of five random starts
    assert (in_tmp / "anchors.txt").exists() and (in_tmp / "anchors.png").exists()
    assert "+anchors = " in first.stdout and (in_tmp / "yolov3-tiny-anchors.cfg").exists()
    again = invoke(["detector", "calc_anchors", *args])
    assert [l for l in again.stdout.splitlines() if "anchors =" in l] == \
        [l for l in first.stdout.splitlines() if l.startswith("anchors =")]
    # the rewritten cfg loads
    assert invoke(["summary", "yolov3-tiny-anchors.cfg"]).exit_code == 0


def test_anchors_more_clusters_than_boxes_is_an_error(in_tmp):
    (in_tmp / "img.jpg").write_bytes(b"")
    (in_tmp / "img.txt").write_text("0 0.5 0.5 0.2 0.3\n")
    (in_tmp / "train.txt").write_text("img.jpg\n")
    (in_tmp / "one.data").write_text("classes=1\ntrain=train.txt\n")
    assert error_line(["anchors", "one.data", "-num_of_clusters", "3", "-width", "64", "-height", "64"]) == (
        "pydarknet: error: cannot make 3 anchors from 1 boxes: need at least as many boxes as clusters")


def test_detector_map_prints_alexeyabs_report(monkeypatch):
    shapes = shared_path("datasets", "shapes")
    golden = shared_path("golden", "map")
    monkeypatch.chdir(shapes)  # shapes.data's lists are relative to the dataset folder
    result = invoke(["detector", "map", "shapes.data", str(golden / "shapes-tiny.cfg"),
                     str(golden / "shapes-tiny_final.weights"), "-points", "11", "-q"])
    assert result.exit_code == 0, result.output
    expected = (golden / "alexeyab_map_points11.txt").read_text().splitlines()
    start = expected.index(next(l for l in expected if "calculation mAP" in l))
    assert [l for l in result.stdout.splitlines() if l.strip()] == [l for l in expected[start:] if l.strip()]
    result = invoke(["detector", "map", "shapes.data", str(golden / "shapes-tiny.cfg"),
                     str(golden / "shapes-tiny_final.weights"), "-points", "11", "--json", "-q"])
    assert result.exit_code == 0 and json.loads(result.stdout)["map"] == pytest.approx(0.629505, abs=1e-6)


def test_detector_map_json_is_the_whole_stdout(tmp_path):
    """With --json, stdout is one JSON document (json.loads of all of it); the report goes to stderr with the rest
    of the chatter, in view at a terminal, and -q leaves it out."""
    from pydarknet.files.datasets import write_shapes
    data = write_shapes(tmp_path / "shapes", train=1, valid=4)
    argv = ["detector", "map", str(data), str(ROOT / "cfg/shapes-tiny.cfg"), str(ROOT / "data/shapes-tiny.weights")]
    code, out, err = run([*argv, "--json"])
    summary = json.loads(out)
    assert code == 0 and set(summary) >= {"map", "classes", "precision", "recall"}
    assert f"mean average precision (mAP@0.50) = {summary['map']:.6f}" in err
    assert [line for line in err.splitlines() if "average precision" in line] == \
           [line for line in run(argv)[1].splitlines() if "average precision" in line]
    code, out, err = run([*argv, "--json", "-q"])
    assert (code, json.loads(out), err) == (0, summary, "")


def test_each_main_call_exits_by_its_own_images(models, images, in_tmp, capsys):
    """main() in one process (as the tests and Python callers use it): an image that failed in one call does not
    make the next, successful call exit 1."""
    from pydarknet.cli import main
    args = ["classify", str(shared_path("cfg", "tiny.cfg")), str(models / "tiny.weights")]
    with pytest.raises(SystemExit) as failed:
        main([*args, str(in_tmp / "missing.jpg"), "-q"])
    with pytest.raises(SystemExit) as succeeded:
        main([*args, str(images / "dog.jpg"), "-q"])
    assert (failed.value.code, succeeded.value.code) == (1, 0)
    assert "malamute: 0.167168" in capsys.readouterr().out
