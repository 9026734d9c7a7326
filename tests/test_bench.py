"""tools/bench/peers.py's timing helper (the benchmark itself runs with `make bench`, never as a test)."""
import pytest
from conftest import bench_module

bench = bench_module("peers")


def test_median_times_alternates_and_keeps_missing_peers(monkeypatch):
    clock = [0.0]
    calls = []

    def taking(name, seconds):
        def fn():
            calls.append(name)
            clock[0] += seconds
        return fn

    monkeypatch.setattr(bench.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(bench.time, "sleep", lambda seconds: calls.append(f"quiet {seconds}"))
    ours, missing, theirs = bench.median_times([taking("a", 2.0), None, taking("b", 0.5)], runs=3, warmup=1)
    assert (ours, missing, theirs) == (2.0, None, 0.5)
    # one warm-up round, then three timed rounds in turn, each run after the pools' spin has ended
    assert calls[:2] == ["a", "b"]
    rounds = [calls[2 + 4 * r:6 + 4 * r] for r in range(3)]
    assert len(calls) == 14 and all(sorted(r) == ["a", "b", "quiet 0.02", "quiet 0.02"] for r in rounds)
    assert all(r[0] == r[2] == "quiet 0.02" for r in rounds)


def test_each_paused_run_is_followed_by_a_streak_back_to_back(monkeypatch):
    """paused_and_streamed: each turn is one run after the pause, then `streak` runs back to back (a stream's pace),
    each kind with medians of its own; without a streak, median_times's figures alone."""
    clock = [0.0]
    calls = []
    durations = {"a": iter([9.0, 9.0] + [5.0, 2.0, 2.0] * 3), "b": iter([1.0, 1.0] + [1.0, 0.5, 0.5] * 3)}

    def taking(name):
        def fn():
            calls.append(name)
            clock[0] += next(durations[name])
        return fn

    monkeypatch.setattr(bench.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(bench.time, "sleep", lambda seconds: calls.append("quiet"))
    paused, streamed = bench.paused_and_streamed([taking("a"), None, taking("b")], runs=3, streak=2, warmup=2)
    assert paused == [5.0, None, 1.0] and streamed == [2.0, None, 0.5]
    assert calls[:4] == ["a", "b", "a", "b"] and len(calls) == 4 + 3 * 8   # two warm-up rounds, three timed
    for r in range(3):
        first, second = calls[4 + 8 * r:8 + 8 * r], calls[8 + 8 * r:12 + 8 * r]
        assert first[0] == second[0] == "quiet" and {first[1], second[1]} == {"a", "b"}
        assert first[1:] == [first[1]] * 3 and second[1:] == [second[1]] * 3


def test_median_times_varies_which_runner_goes_before_each(monkeypatch):
    """In a fixed order each runner would always follow the same one (whose weights evict its own from the
    caches): every round takes a new order, the same in every bench run (seeded)."""
    monkeypatch.setattr(bench.time, "sleep", lambda seconds: None)

    def sequence():
        calls = []
        bench.median_times([lambda name=name: calls.append(name) for name in "abcd"], runs=15, warmup=0)
        return calls

    calls = sequence()
    assert sorted(calls) == sorted("abcd" * 15)
    assert all(sorted(calls[4 * r:4 * r + 4]) == list("abcd") for r in range(15))
    before = {name: {calls[i - 1] for i in range(1, len(calls)) if calls[i] == name} - {name} for name in "abcd"}
    assert all(len(others) == 3 for others in before.values()), before
    assert sequence() == calls


def test_report_line(capsys):
    bench.report("decode x.jpg", 0.012, 0.004)
    bench.report("forward y", 0.05, None)
    bench.report("forward z", 0.03, 0.025, 0.06)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "decode x.jpg                           pydarknet     12.0 ms   opencv      4.0 ms   ratio  3.00x"
    assert out[1].startswith("forward y") and "opencv: unavailable" in out[1]
    assert out[2].endswith("ratio  1.20x   (opencv without Winograd 60.0 ms: 0.50x)")


def test_opencv_without_winograd_is_another_forward():
    """The like-for-like peer of the exact products: OpenCV with its Winograd off computes the same network."""
    import numpy as np
    from conftest import ROOT
    import cv2
    assert hasattr(cv2.dnn.Net, "enableWinograd")   # OpenCV 4.7 on: pyproject.toml asks for 4.8 or later
    cfg, weights = ROOT / "cfg/shapes-tiny.cfg", ROOT / "data/shapes-tiny.weights"
    x = np.random.default_rng(0).random((1, 3, 160, 160), dtype=np.float32)   # the cfg's size
    with_winograd = bench.opencv_net(cfg, weights)(x)
    without = bench.opencv_net(cfg, weights, winograd=False)(x)
    for a, b in zip(with_winograd, without):
        assert a.shape == b.shape and np.allclose(a, b, atol=1e-3)


def test_cpu_line_names_the_machine():
    import os
    line = bench.cpu_line()
    assert line.startswith("cpu: ") and line.endswith(f"{os.cpu_count()} cores")
    assert "(llvm " in line and any(w in line for w in ("avx512f", "avx2", "avx,", "sse4.2", "sse2"))



def test_peers_lines_name_each_runtime_with_its_speed(capsys):
    """`make bench`'s peers blocks (after a pause, then back to back) on the demo model: pydarknet --fast (--int16
    where the CPU has VNNI, --bf16 where it has AMX or an AMD core's avx512_bf16) and --engine onnxruntime (beside the
    same runtime alone) against ONNX Runtime on the exported graph (the test extra has it),
    each row's milliseconds and GFLOP/s, and the ratio the --fast target is about; a runtime that is not
    installed, or a precision this CPU lacks, is a line saying why."""
    import re

    import numba
    from conftest import ROOT
    from pydarknet.kernels import int16, products
    from pydarknet.network.network import Network
    cfg = ROOT / "cfg/shapes-tiny.cfg"
    bench.bench_peers("shapes-tiny", cfg, ROOT / "data/shapes-tiny.weights", ROOT / "data/shapes.jpg",
                      bench.letterboxed, runs=1)
    out = capsys.readouterr().out.splitlines()
    gflop = sum(layer.flops() for layer in Network(cfg, quiet_unused=True).layers) / 1e9
    head = f"peers shapes-tiny 160x160, {gflop:.2f} GFLOP, {numba.get_num_threads()} threads"
    second = out.index(f"{head}, back to back (3 forwards after each of the runs above)")
    assert out[0] == head and 1 < second < len(out) - 1
    paused = {line[2:33].strip(): line[33:] for line in out[1:second]}
    rows = {line[2:33].strip(): line[33:] for line in out[second + 1:]}   # and the lines of what did not run
    assert set(paused) | {label for label, rest in rows.items() if "unavailable" in rest} == set(rows)
    assert all(re.fullmatch(r" +\d+\.\d ms +\d+ GFLOP/s.*", rest) for rest in paused.values())
    assert {"pydarknet exact", "pydarknet --fast", "pydarknet --int16", "pydarknet --bf16", "opencv dnn",
            "onnxruntime f32", "pydarknet --engine onnxruntime"} <= set(rows)
    assert re.search(r"GFLOP/s +\d+\.\d\dx onnxruntime f32 alone$", rows["pydarknet --engine onnxruntime"])
    for label, rest in rows.items():
        assert re.fullmatch(r" +\d+\.\d ms +\d+ GFLOP/s.*| unavailable: .+", rest), (label, rest)
    assert re.search(r"GFLOP/s +\d+\.\d\dx the faster float32 peer$", rows["pydarknet --fast"])
    assert ("unavailable" in rows["pydarknet --bf16"]) == (products.bf16_engine() is None)
    assert ("unavailable" in rows["pydarknet --int16"]) == (int16.unavailable() is not None)


# -- the official weights, from a fresh clone (no ../shared) ----------------------------------------------------
def saved_weights(cfg, path):
    """Weights of the cfg's shape (random, seed 0) written to `path`: a stand-in for the official file."""
    from pydarknet.files.weights import save_weights
    from pydarknet.network.network import Network
    net = Network(cfg, quiet_unused=True)
    net.initialize(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_weights(net, path)
    return path


def test_weights_come_from_the_download_cache_without_shared(tmp_path, monkeypatch):
    """No ../shared: the file `pydarknet download` put in its cache; with ../shared: its models/ copy, as before."""
    monkeypatch.setenv("PYDARKNET_HOME", str(tmp_path / "cache"))
    cached = tmp_path / "cache" / "yolov3-tiny.weights"
    cached.parent.mkdir()
    cached.write_bytes(b"cached")
    assert bench.weights_file("yolov3-tiny", shared=tmp_path / "no-shared") == cached
    shared = tmp_path / "shared"
    (shared / "models").mkdir(parents=True)
    (shared / "models" / "yolov3-tiny.weights").write_bytes(b"shared")
    assert bench.weights_file("yolov3-tiny", shared=shared) == shared / "models" / "yolov3-tiny.weights"


def test_missing_weights_are_downloaded_with_progress_and_checksum(tmp_path, monkeypatch, capsys):
    """The first use fetches the file into the cache (here from a local server, as `--mirror`), showing its
    progress, and keeps it only when its SHA-256 is the published one."""
    import functools
    import http.server
    import threading

    from conftest import shared_path
    from pydarknet.files import download
    models = shared_path("models", "tiny.weights").parent
    monkeypatch.setenv("PYDARKNET_HOME", str(tmp_path / "cache"))
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):   # no request lines on stderr
            pass
    handler = functools.partial(Quiet, directory=str(models))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            path = bench.weights_file("tiny", shared=tmp_path / "no-shared",
                                      mirror=f"http://127.0.0.1:{server.server_address[1]}")
        finally:
            server.shutdown()
    assert path == tmp_path / "cache" / "tiny.weights"
    assert download.sha256_of(path) == download.MODELS["tiny"].sha256
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"downloading tiny.weights (4.2 MB) into {tmp_path / 'cache'}"
    assert len(err) == 11 and err[-1] == "  4.2 MB of 4.2 MB"   # a line at each tenth


def run_without_shared(tmp_path, *argv):
    """A tool run in a process with an empty download cache, no ../shared, and a mirror that refuses connections
    (port 9 on the loopback: no network)."""
    import subprocess
    import sys

    from conftest import ROOT
    env = {**__import__("os").environ, "PYDARKNET_HOME": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, *map(str, argv), "--shared", tmp_path / "no-shared", "--mirror",
                           "http://127.0.0.1:9"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_bench_without_weights_nor_network_is_one_error_line(tmp_path):
    proc = run_without_shared(tmp_path, "-m", "tools.bench")
    assert proc.returncode == 1 and proc.stdout == ""
    announce, error = proc.stderr.splitlines()
    assert announce.startswith("downloading yolov3-tiny.weights (35.4 MB) into ")
    assert error.startswith("pydarknet: error: http://127.0.0.1:9/yolov3-tiny.weights: ")
    assert "--mirror BASE_URL" in error and f"copy yolov3-tiny.weights into {tmp_path / 'cache'}" in error


def test_profile_forward_without_weights_nor_network_is_one_error_line(tmp_path):
    proc = run_without_shared(tmp_path, "tools/profile_forward.py", "tiny")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines()[-1].startswith("pydarknet: error: http://127.0.0.1:9/tiny.weights: ")
    assert "Traceback" not in proc.stderr


def test_profile_forward_finds_the_cached_weights_without_shared(tmp_path):
    """The per-layer table of Tiny Darknet, its weights in the download cache only."""
    from conftest import ROOT
    saved_weights(ROOT / "cfg" / "tiny.cfg", tmp_path / "cache" / "tiny.weights")
    proc = run_without_shared(tmp_path, "tools/profile_forward.py", "tiny", "--layers", "--runs", "1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[1] == "== tiny" and lines[-1].startswith("total: layers ") and "Traceback" not in proc.stderr


def test_profile_forward_times_every_kind_of_product(tmp_path, monkeypatch):
    """With the fast products, each of yolov3-tiny's convolutions has its product timed, Winograd's (most of its
    3 x 3 layers) as well as the packed columns and the 1 x 1 products: the table used to time gemm_nn and
    conv_image only, and counted the other products (Winograd's, --bf16's, --int16's) as time outside them."""
    from conftest import ROOT
    saved_weights(ROOT / "cfg" / "yolov3-tiny.cfg", tmp_path / "cache" / "yolov3-tiny.weights")
    monkeypatch.setenv("PYDARKNET_PRODUCTS", "fast")
    proc = run_without_shared(tmp_path, "tools/profile_forward.py", "yolov3-tiny", "--layers", "--runs", "1")
    assert proc.returncode == 0, proc.stderr
    convolutions = [line.split() for line in proc.stdout.splitlines() if " convolutional " in line]
    assert len(convolutions) == 13 and all(float(row[4]) > 0 for row in convolutions), proc.stdout


# -- the summary: pydarknet's fastest mode against each peer -----------------------------------------------------
def test_fastest_lines_name_the_fastest_mode_and_its_ratio_to_each_peer():
    medians = {"yolov3-tiny": {"pydarknet exact": 0.020, "pydarknet --fast": 0.015, "opencv dnn": 0.024,
                               "pydarknet --int16": 0.012, "pydarknet --bf16": 0.010, "onnxruntime f32": 0.016,
                               "openvino f32": 0.020, "openvino default (bf16)": 0.008,
                               "pydarknet --engine openvino": 0.007},   # a runtime's speed, not a mode of ours
               "tiny (Tiny Darknet)": {"pydarknet exact": 0.007, "pydarknet --fast": 0.006}}
    assert bench.fastest_lines("Some CPU", medians) == [
        "fastest pydarknet mode on Some CPU (the peers rows: its median / each peer's; lower is better):",
        "  yolov3-tiny          --bf16                  10.0 ms   0.42x opencv dnn, 0.62x onnxruntime f32, "
        "0.50x openvino f32, 1.25x openvino default (bf16)",
        "  tiny (Tiny Darknet)  --fast                   6.0 ms   no peer ran"]


# -- the speed targets, and where the time goes when one is missed ----------------------------------------------
def test_targets_say_which_hold_from_the_medians():
    """The fastest of pydarknet's own modes (not an --engine row) against OpenVINO's faster precision (its
    default, or float32 where that is faster) on an AVX-512 CPU, --fast against the faster float32 peer; a peer
    that did not run leaves its target unchecked, saying why, unless --fast is already slower than the one that
    ran."""
    medians = {"yolov3-tiny": {"pydarknet exact": 0.020, "pydarknet --fast": 0.015, "pydarknet --int16": 0.012,
                               "pydarknet --engine openvino": 0.005, "onnxruntime f32": 0.016, "openvino f32": 0.014,
                               "openvino default (bf16)": 0.008},
               "yolov4-tiny": {"pydarknet exact": 0.030, "pydarknet --fast": 0.020, "pydarknet --int16": 0.012,
                               "onnxruntime f32": 0.025, "openvino f32": 0.010, "openvino default (bf16)": 0.016},
               "tiny-yolo": {"pydarknet exact": 0.030, "pydarknet --fast": 0.020, "pydarknet --int16": 0.012,
                               "onnxruntime f32": 0.025, "openvino f32": 0.021, "openvino default (f32)": 0.010},
               "tiny": {"pydarknet exact": 0.007, "pydarknet --fast": 0.006, "onnxruntime f32": 0.0065}}
    missing = {"tiny": {"openvino": "pip install 'pydarknet[bench]'"}}
    verdicts = bench.targets(medians, missing, "avx512f")
    fast = "target: --fast <= 1.0x the faster float32 peer (ONNX Runtime or OpenVINO f32):"
    assert [verdict.line for verdict in verdicts] == [
        "  yolov3-tiny          target: fastest mode <= 1.3x OpenVINO: 1.50x (--int16 / openvino default (bf16)), "
        "not held",
        f"  yolov3-tiny          {fast} 1.07x (--fast / openvino f32), not held",
        "  yolov4-tiny          target: fastest mode <= 1.3x OpenVINO: 1.20x (--int16 / openvino f32), held",
        f"  yolov4-tiny          {fast} 2.00x (--fast / openvino f32), not held",
        "  tiny-yolo            target: fastest mode <= 1.3x OpenVINO: 1.20x (--int16 / openvino default (f32)), "
        "held",
        f"  tiny-yolo            {fast} 0.95x (--fast / openvino f32), held",
        "  tiny                 target: fastest mode <= 1.3x OpenVINO: cannot be checked: openvino did not run (pip "
        "install 'pydarknet[bench]')",
        f"  tiny                 {fast} 0.92x (--fast / onnxruntime f32), cannot be checked: openvino did not run "
        "(pip install 'pydarknet[bench]')"]
    assert [(v.network, v.mode, v.held) for v in verdicts] == [
        ("yolov3-tiny", "--int16", False), ("yolov3-tiny", "--fast", False), ("yolov4-tiny", "--int16", True),
        ("yolov4-tiny", "--fast", False), ("tiny-yolo", "--int16", True), ("tiny-yolo", "--fast", True),
        ("tiny", "--fast", None), ("tiny", "--fast", None)]


def test_targets_without_avx512_or_peers():
    """Without AVX-512 the first target is one line saying so; --fast slower than the only float32 peer that ran
    misses the target whatever the other would do; no float32 peer at all: unchecked, each one's reason."""
    medians = {"a": {"pydarknet exact": 0.02, "pydarknet --fast": 0.014, "onnxruntime f32": 0.010},
               "b": {"pydarknet exact": 0.02, "pydarknet --fast": 0.014}}
    missing = {"a": {"openvino": "not installed"}, "b": {"onnxruntime": "x", "openvino": "y"}}
    assert [(v.line, v.held) for v in bench.targets(medians, missing, "avx2")] == [
        ("  target: fastest mode <= 1.3x OpenVINO: for CPUs with AVX-512, not checked (the kernels use avx2)",
         None),
        ("  a                    target: --fast <= 1.0x the faster float32 peer (ONNX Runtime or OpenVINO f32): "
         "1.40x (--fast / onnxruntime f32), not held", False),
        ("  b                    target: --fast <= 1.0x the faster float32 peer (ONNX Runtime or OpenVINO f32): "
         "cannot be checked: onnxruntime did not run (x); openvino did not run (y)", None)]


def test_the_start_up_target_sets_the_whole_command_against_the_opencv_script():
    assert bench.command_target(0.50, 0.40, 15) == (
        "  detect command       target: the whole process <= 1.3x the OpenCV DNN script: 1.25x (500 / 400 ms, "
        "medians of 15 runs each), held")
    assert bench.command_target(0.60, 0.40, 15).endswith("1.50x (600 / 400 ms, medians of 15 runs each), not held")


layers = bench_module("layers")


def test_layer_table_lines():
    rows = [layers.LayerTime(0, "convolutional", (16, 416, 416), 0.005, 0.004, 40_000_000, 20_000_000),
            layers.LayerTime(1, "maxpool", (16, 208, 208), 0.00005, 0.0, 0, 0),
            layers.LayerTime(2, "yolo", (255, 13, 13), 0.0001, 0.0, 300_000, 300_000)]
    lines = layers.table_lines("layers of x", rows, 0.0052)
    assert lines[0] == "layers of x"
    assert lines[1].startswith("  ms: the layer's forward; products: ") and lines[2].startswith("    ")
    head = lines.index("layer type                  output      ms products    rest      MB rest MB   GB/s")
    assert lines[head + 1:] == [
        "    0 convolutional     16x416x416    5.00     4.00    1.00    40.0    20.0   20.0",
        "    1 maxpool           16x208x208    0.05     0.00    0.05     0.0     0.0      -",
        "    2 yolo               255x13x13    0.10     0.00    0.10     0.3     0.3    3.0",
        "total: layers 5.15 ms (the whole forward 5.20 ms), products 4.00 ms, rest 1.15 ms (22%), 40.3 MB moved, "
        "rest 20.3 MB at 17.7 GB/s"]
    assert all(len(line) <= 120 for line in lines[:head])


def test_layer_table_lines_with_the_peer_beside_each_layer():
    """The peer's column: its milliseconds per layer, "-" for a layer it fused into another, its sum at the end."""
    rows = [layers.LayerTime(0, "convolutional", (16, 416, 416), 0.005, 0.004, 40_000_000, 20_000_000),
            layers.LayerTime(1, "maxpool", (16, 208, 208), 0.00005, 0.0, 0, 0)]
    lines = layers.table_lines("layers of x", rows, 0.0052, {0: 0.0031}, "ov f32")
    head = lines.index("layer type                  output      ms products    rest      MB rest MB   GB/s     ov f32")
    assert any(line.startswith("  ov f32: OpenVINO's own timing (PERF_COUNT)") for line in lines[1:head])
    assert lines[head + 1:] == [
        "    0 convolutional     16x416x416    5.00     4.00    1.00    40.0    20.0   20.0       3.10",
        "    1 maxpool           16x208x208    0.05     0.00    0.05     0.0     0.0      -          -",
        "total: layers 5.05 ms (the whole forward 5.20 ms), products 4.00 ms, rest 1.05 ms (21%), 40.0 MB moved, "
        "rest 20.0 MB at 19.0 GB/s; ov f32 3.10 ms"]


def test_per_layer_gives_each_node_to_the_layer_it_names_first():
    """OpenVINO's node names in the exported graph: a layer's nodes summed, a reorder between two layers to the
    first it names, nodes of no layer left out."""
    timings = [("input_abcd_acdb_layer_0_convolutional/Conv", 0.5), ("layer_0_convolutional/Conv_3/WithoutBias", 2.0),
               ("layer_3_maxpool/Pad_3", 0.25), ("layer_3_maxpool", 0.5),
               ("layer_20_avgpool_acdb_abcd_layer_21_soft", 1.0), ("Result_1234", 9.0),
               ("layer_21_softmax/Softmax_3", 0.125)]
    assert layers.per_layer(timings) == {0: 2.5, 3: 0.75, 20: 1.0, 21: 0.125}


def test_peer_layers_times_openvino_layer_by_layer():
    """OpenVINO's own timing of shapes-tiny's exported graph, layer by layer: every convolution timed (none is
    fused into another by OpenVINO), in about the time of its whole inference."""
    import time

    import numpy as np
    from conftest import ROOT
    from pydarknet.network.network import Network
    from pydarknet.tasks import engines
    if not engines.installed("openvino"):
        pytest.skip("needs OpenVINO (the bench extra)")
    net = Network(ROOT / "cfg/shapes-tiny.cfg", quiet_unused=True)
    net.load(ROOT / "data/shapes-tiny.weights")
    x = np.random.default_rng(0).random((1,) + net.input_shape, dtype=np.float32)
    start = time.perf_counter()
    timed = layers.peer_layers(net, x, runs=3, precision="f32", threads=1, warmup=1, quiet=0)
    elapsed = time.perf_counter() - start
    convolutions = {i for i, layer in enumerate(net.layers) if layer.type == "convolutional"}
    assert convolutions <= set(timed) <= set(range(len(net.layers)))
    assert all(timed[i] > 0 for i in convolutions) and sum(timed.values()) < elapsed


def test_time_layers_splits_each_layer_and_counts_its_bytes():
    """shapes-tiny (yolov3-tiny's layers at 160 x 160) with the int16 products where the CPU has them: every
    convolution's products timed; the bytes of each pass over the float32 planes (none where the products store
    through the fused plan; a max pool done in the convolution's pass moves nothing of its own, the convolution
    writes it, as do the int16 products' store; a route of one source is a view, a concatenation
    written in place by its sources moves nothing)."""
    import numpy as np
    from conftest import ROOT
    from pydarknet.kernels import products
    from pydarknet.network.network import Network
    net = Network(ROOT / "cfg/shapes-tiny.cfg", quiet_unused=True)
    net.load(ROOT / "data/shapes-tiny.weights")
    net.products = products.products_for("fast" if products.reduced_unavailable("int16") else "int16")
    x = np.random.default_rng(0).random((1,) + net.input_shape, dtype=np.float32)
    rows, forward = layers.time_layers(net, x, runs=1, warmup=1, quiet=0)
    assert forward > 0 and [row.index for row in rows] == list(range(len(net.layers)))
    assert all((row.products > 0) == (row.type == "convolutional") for row in rows)
    plane = lambda c, h, w: 4 * c * h * w   # noqa: E731  (float32 bytes)
    out0, pool1 = plane(16, 160, 160), plane(16, 80, 80)
    # layer 0's products (conv_direct) store through the fused plan: no passes of their own, the pool written;
    # its padded copies of the input are a band's at a time, in the cache, and not counted
    assert rows[0].passes == 0 and rows[1].passes == rows[1].moved == 0
    assert rows[0].moved == plane(3, 160, 160) + plane(16, 3, 9) + out0 + pool1
    # layer 2's 16 channels take the int16 products where the CPU has them, which finish the store themselves
    assert rows[2].passes == 0 and rows[2].moved >= plane(32, 80, 80) + plane(32, 40, 40)
    assert (rows[15].type, rows[15].passes, rows[15].moved) == ("yolo", 2 * plane(24, 5, 5), 2 * plane(24, 5, 5))
    assert (rows[16].type, rows[16].moved, rows[19].type, rows[19].moved) == ("route", 0, "route", 0)
    assert rows[18].passes == plane(32, 5, 5) + plane(32, 10, 10)   # the upsample
    assert all(row.moved >= row.passes for row in rows)


def test_time_layers_counts_no_pass_where_the_register_tiles_store():
    """With the fast products the 1 x 1 layers' register tiles finish the store (gemm_nn's `store`): their layers
    count no pass of their own, as the convolutions that store row by row."""
    import numpy as np
    from conftest import ROOT
    from pydarknet.kernels import products
    from pydarknet.network.network import Network
    net = Network(ROOT / "cfg/shapes-tiny.cfg", quiet_unused=True)
    net.load(ROOT / "data/shapes-tiny.weights")
    net.products = products.products_for("fast")
    x = np.random.default_rng(0).random((1,) + net.input_shape, dtype=np.float32)
    rows, _ = layers.time_layers(net, x, runs=1, warmup=1, quiet=0)
    ones = [row for row, layer in zip(rows, net.layers) if layer.type == "convolutional" and layer.size == 1]
    assert len(ones) == 4 and all(row.passes == 0 for row in ones)


@pytest.mark.parametrize("engine", ["amx", "emulated-amx"])
def test_time_layers_counts_the_words_a_layer_hands_over(tmp_path, engine, monkeypatch):
    """--bf16 on the tiles: a convolution that hands its output over (Convolutional.hands_over) is counted as
    writing the next layer's bf16 words, not its float32 output, and the layer handed them as reading those words,
    not its float32 input, and rounding nothing: against the same network with the hand-over off, each
    convolution's bytes differ by exactly that."""
    import numpy as np
    from emulated_products import emulate
    from test_fused_passes import HAND_OVER_CFG, store_network
    from pydarknet.kernels import amx, products
    from pydarknet.network.layers.convolutional import Convolutional
    if engine == "amx" and amx.unavailable():
        pytest.skip(f"no AMX here: {amx.unavailable()}")
    previous = products.backend()
    if engine == "emulated-amx":
        emulate("amx", monkeypatch)
    try:
        net = store_network(tmp_path, "pjreddie", "bf16", HAND_OVER_CFG, seed=7)
        x = np.random.default_rng(0).normal(0, 1, (1, 3, 22, 45)).astype(np.float32)
        handing, _ = layers.time_layers(net, x, runs=1, warmup=1, quiet=0)
        monkeypatch.setattr(Convolutional, "hands_over", lambda *args: (None, 0))
        net.plans.clear()
        apart, _ = layers.time_layers(net, x, runs=1, warmup=1, quiet=0)
    finally:
        products.set_backend(previous)

    def words(layer):   # the bytes of its input in the blocked kernel's layout
        shape = layer.in_shape, layer.size, layer.stride, layer.pad, *layer.out_shape[1:]
        return products.blocked_input(1, *shape).nbytes

    # the tiles' kernel rounds an input it is not handed into a scratch copy, written and read; the emulation
    # rounds without the kernel's scratch (emulated_products)
    copy = 2 if engine == "amx" else 0
    expected = [0, 0, 0, 0, 0, 0, 0]
    for i in (1, 2, 3):   # HAND_OVER_CFG's layers 1-3 hand theirs to layers 2-4
        after = net.layers[i + 1]
        expected[i] += words(after) - 4 * int(np.prod(net.layers[i].out_shape))
        expected[i + 1] += words(after) - 4 * int(np.prod(after.in_shape)) - copy * words(after)
    assert [a.moved - b.moved for a, b in zip(handing, apart)] == expected
    assert expected[2] < 0 and [row.passes for row in handing] == [row.passes for row in apart]


def test_bench_layers_prints_one_table(tmp_path):
    """`python3 -m tools.bench --layers NETWORK MODE`: the CPU line, then that network's table alone."""
    from conftest import ROOT
    saved_weights(ROOT / "cfg" / "tiny.cfg", tmp_path / "cache" / "tiny.weights")
    proc = run_without_shared(tmp_path, "-m", "tools.bench", "--layers", "tiny", "fast", "--runs", "1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("cpu: ") and lines[-1].startswith("total: layers ")
    assert lines[1].startswith("layers of tiny (Tiny Darknet) 298x224 in --fast, ")
    convolutions = [line.split() for line in lines if " convolutional " in line]
    assert convolutions and all(float(row[4]) > 0 for row in convolutions)
    wrong = run_without_shared(tmp_path, "-m", "tools.bench", "--layers", "tiny", "--fast")
    assert wrong.returncode == 2 and "--layers" in wrong.stderr


# -- training: what `pydarknet train` prints ------------------------------------------------------------------------
def test_the_training_figure_is_what_train_prints(tmp_path):
    """train_run runs `train`'s loop and reads the seconds of its printed lines, each of which includes the
    iteration's step (timed alone beside it)."""
    from conftest import ROOT
    from pydarknet.files.datasets import write_shapes
    data = write_shapes(tmp_path / "shapes", train=16, valid=0)
    printed, steps, net = bench.train_run(data, ROOT / "cfg" / "shapes-tiny.cfg", 3, tmp_path)
    assert len(printed) == len(steps) == 3 and net.batch == 16
    assert all(0 < step <= line + 1e-3 for step, line in zip(steps, printed))   # the line: time.time(), 6 decimals


def test_fixed_copy_trains_one_batch_at_the_cfg_size(tmp_path):
    from conftest import ROOT
    from pydarknet.network.network import Network
    net = Network(bench.fixed_copy(ROOT / "cfg" / "yolov3-tiny.cfg", 8, tmp_path), quiet_unused=True)
    assert (net.batch, net.subdivisions, net.w, net.h) == (8, 1, 416, 416)
    assert [layer.random for layer in net.layers if layer.type == "yolo"] == [0, 0]


def test_gpu_bench_times_darknet_through_its_library():
    """make bench-gpu's darknet row (--darknet libdarknet.so): the cfg's network loaded at the batch asked for with
    no weights file, then network_predict_ptr on a buffer of batch x c x h x w floats, timed as the engine is
    (a stand-in library here: the fork's CUDA build runs only on a GPU machine)."""
    import ctypes
    import time

    import numpy as np
    gpu = bench_module("gpu")
    loads, inputs = [], []

    def load_network_custom(cfg, weights, clear, batch):
        loads.append((cfg, weights, clear, batch))
        return 1234

    def network_predict_ptr(net, pointer):
        assert net == 1234
        inputs.append(np.ctypeslib.as_array(pointer, (4 * 3 * 5 * 7,)).copy())
        time.sleep(0.002)

    library = type("Library", (), {})()
    library.load_network_custom, library.network_predict_ptr = load_network_custom, network_predict_ptr
    rate = gpu.darknet_forward(library, "cfg/x.cfg", (3, 5, 7), 4, 0.05)
    assert loads == [(b"cfg/x.cfg", None, 0, 4)]
    assert library.network_predict_ptr.argtypes == [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float)]
    assert len(inputs) >= 4 and np.array_equal(inputs[0], inputs[-1]) and 0 <= inputs[0].min() < inputs[0].max() < 1
    assert 0 < rate <= 4 / 0.002   # batch images a call of at least 2 ms (a loaded machine only lowers it)
