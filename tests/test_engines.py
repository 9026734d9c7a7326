"""--engine onnxruntime and openvino: pydarknet's exported graph run by another runtime, pydarknet's pre- and
post-processing around it. In float32 every golden forward case's output layers are within the --fast promise
(1e-3 scaled) of darknet's and every golden detector case gives darknet's detections within it; OpenVINO's default
precision keeps the trained detectors' detections within its mode's promise; then the Detector and Classifier API,
batches, the on-disk graph cache, the command line and the error lines."""
import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import ROOT, SHARED, shared_path
from golden import layer_mismatch, or_skip, read_dets, run_case
from test_detect_golden import DETECTOR_CASES, decoded_rows
from test_fast_products import CASE_TOLERANCE, DETECT_THRESH, FAST_TOLERANCE, same_detections
from test_forward_golden import LOCAL_CASES, SHARED_CASES
from test_stops import DEADLINE, ENV

from pydarknet.files.config import DarknetError
from pydarknet.tasks import engines

pytest.importorskip("onnxruntime", reason="needs ONNX Runtime: pip install -e '.[onnx]'")
RUNTIMES = [pytest.param("onnxruntime"),
            pytest.param("openvino", marks=pytest.mark.skipif(not engines.installed("openvino"),
                                                              reason="needs OpenVINO: pip install -e '.[openvino]'"))]
CASES = [p for p in [*LOCAL_CASES, *SHARED_CASES] if p.name != "vgg16_slim"]   # its crop reads undefined memory
SHAPES = (ROOT / "cfg/shapes-v4tiny.cfg", ROOT / "data/shapes-v4tiny.weights")
PHOTOS = [ROOT / "data" / name for name in ("shapes.jpg", "dog.jpg", "person.jpg")]


@pytest.fixture(autouse=True)
def graphs_apart(tmp_path_factory, monkeypatch):
    """The graphs the tests export go to one folder of the test session, not the kernel cache."""
    folder = tmp_path_factory.getbasetemp() / "engine-graphs"
    monkeypatch.setattr(engines, "graphs_folder", lambda: folder)
    return folder


@pytest.mark.parametrize("engine", RUNTIMES)
@pytest.mark.parametrize("case_dir", or_skip(CASES, "golden/forward"), ids=lambda p: p.name)
def test_golden_forward_outputs_within_the_fast_promise(engine, case_dir):
    net, _ = run_case(case_dir, SHARED if case_dir in SHARED_CASES else ROOT / "tests" / "data", engine)
    tolerance = CASE_TOLERANCE.get(case_dir.name, FAST_TOLERANCE)
    outputs = {layer.index for layer, _ in net.engine.outputs}
    assert layer_mismatch(net, case_dir, tolerance, only=outputs) is None


@pytest.mark.parametrize("engine", RUNTIMES)
@pytest.mark.parametrize("case", DETECTOR_CASES)
def test_golden_detector_cases_find_darknets_detections(engine, case):
    case_dir = shared_path("golden", "forward", case)
    same_detections(decoded_rows(case_dir, SHARED, engine), read_dets(case_dir), DETECT_THRESH)


def pairs(result):
    return [(d.class_id, d.prob, d.box) for d in result.detections]


def assert_close(results, reference, prob, box):
    """The same detections (classes in order), probabilities within `prob`, boxes within `box`."""
    assert [c for c, _, _ in pairs(results)] == [c for c, _, _ in pairs(reference)]
    for (_, p, b), (_, q, c) in zip(pairs(results), pairs(reference)):
        assert abs(p - q) <= prob and np.allclose(b, c, atol=box)


@pytest.mark.parametrize("engine", RUNTIMES)
def test_a_detector_on_an_engine_batches_and_answers_as_pydarknet(engine):
    from pydarknet.tasks.predict import Detector
    exact = Detector(*map(str, SHAPES))
    other = Detector(*map(str, SHAPES), engine=engine, fast=True)
    assert other.net.device == "cpu" and other.engine == engine
    alone = [other.detect(str(p)) for p in PHOTOS]
    batched = other.detect_batch([str(p) for p in PHOTOS])
    for one, together, reference in zip(alone, batched, [exact.detect(str(p)) for p in PHOTOS]):
        assert pairs(one) == pairs(together)
        assert_close(one, reference, FAST_TOLERANCE, FAST_TOLERANCE)


@pytest.mark.parametrize("engine", RUNTIMES)
@pytest.mark.parametrize("name,image", [("yolov4-tiny", "dog.jpg"), ("yolov3-tiny", "person.jpg")])
def test_trained_detectors_in_the_engines_default_precision(engine, name, image):
    """No precision flag: ONNX Runtime's float32, OpenVINO's precision on this CPU (bf16 where it has AMX or bf16
    pays on avx512_bf16: held to --bf16's promise, .02 in probability, .01 in box)."""
    from pydarknet.tasks.predict import Detector
    cfg, weights = ROOT / "cfg" / f"{name}.cfg", shared_path("models", f"{name}.weights")
    reference = Detector(str(cfg), str(weights), fast=False).detect(shared_path("images", image))
    found = Detector(str(cfg), str(weights), engine=engine).detect(shared_path("images", image))
    reduced = engine == "openvino" and (engines.openvino_precision(None) or
                                        engines.openvino_default_precision()) != "f32"
    assert_close(found, reference, .02 if reduced else FAST_TOLERANCE, .01 if reduced else FAST_TOLERANCE)


@pytest.mark.parametrize("default,bf16_engine,chosen", [
    ("bf16", None, "f32"),   # an Intel core without usable AMX tiles: OpenVINO's bf16 takes 1.2-1.7x its float32 time
    ("bf16", "amx", None), ("bf16", "dpbf16ps", None), ("f32", None, None)])
def test_openvino_with_no_mode_runs_bf16_only_where_it_pays(monkeypatch, default, bf16_engine, chosen):
    """With no mode OpenVINO runs its default precision (None), but float32 where that default is bf16 and
    pydarknet's own --bf16 would run as --fast; the modes name theirs."""
    monkeypatch.setattr(engines, "openvino_default_precision", lambda: default)
    monkeypatch.setattr(engines.products, "bf16_engine", lambda: bf16_engine)
    assert engines.openvino_precision(None) == engines.openvino_precision(False) == chosen
    assert (engines.openvino_precision(True), engines.openvino_precision("bf16")) == ("f32", "bf16")


@pytest.mark.skipif(not engines.installed("openvino"), reason="needs OpenVINO: pip install -e '.[openvino]'")
def test_a_detector_on_openvino_compiles_in_the_chosen_precision(monkeypatch):
    """What the Detector hands OpenVINO is openvino_precision's choice on this CPU, per mode."""
    from pydarknet.tasks.predict import Detector
    asked, compiled = [], engines.openvino_compiled

    def compiling(path, threads, precision=None):
        asked.append(precision)
        return compiled(path, threads, precision)
    monkeypatch.setattr(engines, "openvino_compiled", compiling)
    for fast in (None, True):
        Detector(str(SHAPES[0]), str(SHAPES[1]), engine="openvino", fast=fast).detect(str(PHOTOS[0]))
    assert asked == [engines.openvino_precision(None), "f32"]


@pytest.mark.parametrize("engine", RUNTIMES)
def test_a_classifier_on_an_engine_takes_each_image_size(engine, small_classifier):
    """resize_min gives each image shape its own input size: a graph for each, the same classes. In float32 (fast):
    OpenVINO's default on a CPU with AMX or avx512_bf16 is bf16, whose promise is .02, not this test's subject."""
    from pydarknet.tasks.predict import Classifier
    data, cfg, weights = small_classifier
    exact = Classifier(cfg, weights)
    other = Classifier(cfg, weights, engine=engine, fast=True)
    for photo in PHOTOS:
        ours, theirs = other.classify(str(photo), top=3), exact.classify(str(photo), top=3)
        assert [c for c, _, _ in ours.predictions] == [c for c, _, _ in theirs.predictions]
        assert np.allclose([p for _, _, p in ours.predictions], [p for _, _, p in theirs.predictions], atol=1e-4)
    assert len(other.net.engine.runners) == len({(p.input.shape) for p in map(other.prepare, map(str, PHOTOS))})


def test_the_graph_is_exported_once_then_read_from_the_cache(monkeypatch, graphs_apart):
    from pydarknet.tasks import onnx
    from pydarknet.tasks.predict import Detector
    first = Detector(*map(str, SHAPES), engine="onnxruntime").detect(str(PHOTOS[0]))
    assert len(list(graphs_apart.glob("*.onnx"))) >= 1

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")
    monkeypatch.setattr(onnx, "export", no_export)
    again = Detector(*map(str, SHAPES), engine="onnxruntime").detect(str(PHOTOS[0]))
    assert pairs(again) == pairs(first)


def test_a_missing_runtime_names_its_extra(monkeypatch):
    import importlib
    real = importlib.import_module

    def without_openvino(name, *args):
        if name == "openvino":
            raise ImportError(name)
        return real(name, *args)
    monkeypatch.setattr(importlib, "import_module", without_openvino)
    with pytest.raises(DarknetError, match=r"--engine openvino needs openvino: .*pip install .*\[openvino\]"):
        engines.runtime("openvino")


def test_bad_engine_choices_are_one_line():
    with pytest.raises(DarknetError, match="--engine tensorrt: give numba, onnxruntime, openvino"):
        engines.check_engine("tensorrt")
    with pytest.raises(DarknetError, match="--bf16 is not ONNX Runtime's"):
        engines.check_engine("onnxruntime", "bf16")
    with pytest.raises(DarknetError, match="--int16 is pydarknet's own engine's"):
        engines.check_engine("openvino", "int16")


def test_a_layer_the_exporter_cannot_express_suggests_numba(tmp_path):
    from pydarknet.network.network import Network
    cfg = tmp_path / "odd.cfg"
    cfg.write_text("[net]\nwidth=8\nheight=8\nchannels=3\n\n[convolutional]\nfilters=2\nsize=1\nactivation=linear\n\n"
                   "[crnn]\noutput=4\nhidden=4\n")
    net = Network(cfg, quiet_unused=True).initialize(1)
    with pytest.raises(DarknetError, match=r"cannot be exported to ONNX.*--engine numba"):
        engines.RuntimeEngine(net, "onnxruntime").forward(np.zeros((1, 3, 8, 8), np.float32))


def run(*args):
    return subprocess.run([sys.executable, "-m", "pydarknet", *map(str, args)], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=DEADLINE)


def test_detect_on_an_engine_prints_the_same_detections():
    data = ROOT / "cfg/shapes.data"
    ours = run("detector", "test", data, *SHAPES, PHOTOS[0], "--json", "-q", "-dont_show")
    theirs = run("detector", "test", data, *SHAPES, PHOTOS[0], "--json", "-q", "-dont_show", "--engine",
                 "onnxruntime")
    assert ours.returncode == 0 and theirs.returncode == 0, theirs.stderr
    a, b = json.loads(ours.stdout)["detections"], json.loads(theirs.stdout)["detections"]
    assert [d["class_id"] for d in a] == [d["class_id"] for d in b]
    assert np.allclose([d["prob"] for d in a], [d["prob"] for d in b], atol=FAST_TOLERANCE)


def test_training_refuses_an_engine():
    done = run("detector", "train", ROOT / "cfg/shapes.data", SHAPES[0], "--engine", "openvino")
    assert done.returncode != 0 and "only --engine numba trains" in done.stderr and "Traceback" not in done.stderr



def signal_stack():
    import ctypes
    stack = engines._SignalStack()
    ctypes.CDLL(None).sigaltstack(None, ctypes.byref(stack))
    return stack.ss_sp, stack.ss_flags, stack.ss_size


@pytest.mark.skipif(not engines.installed("openvino") or not sys.platform.startswith("linux"),
                    reason="needs OpenVINO on Linux")
def test_openvino_leaves_the_threads_signal_stack_as_it_was():
    """OpenVINO's compile gives the thread an alternate signal stack of its own, freed with the model: a signal
    handled after that ran on freed memory (the suite crashed with SIGSEGV at a training test's Ctrl-C after the
    golden cases had run on OpenVINO). The engine puts the thread's own back (engines.signal_stack_kept)."""
    from pydarknet.tasks.predict import Detector
    before = signal_stack()
    Detector(*map(str, SHAPES), engine="openvino").detect(str(PHOTOS[0]))
    assert signal_stack() == before


def test_a_dask_cluster_runs_the_commands_engine():
    """`--dask` with `--engine`: the workers build their networks on that engine (the same detections as here)."""
    pytest.importorskip("distributed", reason="needs the dask extra")
    data = ROOT / "cfg/shapes.data"
    here = run("detector", "test", data, *SHAPES, PHOTOS[0], "--json", "-q", "-dont_show", "--engine", "onnxruntime")
    there = run("detector", "test", data, *SHAPES, PHOTOS[0], "--json", "-q", "-dont_show", "--engine", "onnxruntime",
                "--dask", "local:1")
    assert there.returncode == 0, there.stderr
    assert json.loads(there.stdout)["detections"] == json.loads(here.stdout)["detections"]


def test_onnxruntime_on_a_gpu_or_the_line_that_says_what_is_missing():
    """-gpus 0 with --engine onnxruntime: ONNX Runtime's CUDA provider, the same detections within the --fast
    promise; without onnxruntime-gpu, one line naming it (--engine openvino: CPU only)."""
    import onnxruntime
    from pydarknet.tasks.predict import Detector
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(DarknetError, match="needs onnxruntime-gpu"):
            Detector(*map(str, SHAPES), engine="onnxruntime", device="cuda:0")
        pytest.skip("the GPU half needs onnxruntime-gpu and an NVIDIA GPU")
    on_gpu = Detector(*map(str, SHAPES), engine="onnxruntime", device="cuda:0")
    assert on_gpu.net.device == "cuda:0"
    assert_close(on_gpu.detect(str(PHOTOS[0])), Detector(*map(str, SHAPES)).detect(str(PHOTOS[0])),
                 FAST_TOLERANCE, FAST_TOLERANCE)


def test_a_cuda_provider_that_falls_back_to_the_cpu_is_an_error(monkeypatch):
    """onnxruntime-gpu lists its CUDA provider even where NVIDIA's libraries do not load; the session then runs on
    the CPU and says so only in ONNX Runtime's log: -gpus 0 says it in one line instead of running on the CPU."""
    class Session:
        def __init__(self, graph, options, providers):
            assert providers == [("CUDAExecutionProvider", {"device_id": 0})]

        def get_providers(self):
            return ["CPUExecutionProvider"]

    falling_back = SimpleNamespace(
        SessionOptions=lambda: SimpleNamespace(add_session_config_entry=lambda key, value: None),
        get_available_providers=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"],
        InferenceSession=Session)
    monkeypatch.setattr(engines, "runtime", lambda engine: falling_back)
    with pytest.raises(DarknetError, match=r"CUDA provider did not start .*onnxruntime-gpu\[cuda,cudnn\]"):
        engines.onnxruntime_runner(b"graph", 1, gpu=0)


def test_openvino_takes_no_gpu():
    pytest.importorskip("openvino", reason="needs OpenVINO")
    from pydarknet.tasks.predict import Detector
    with pytest.raises(DarknetError, match="--engine openvino runs on the CPU"):
        Detector(*map(str, SHAPES), engine="openvino", device="cuda:0")
