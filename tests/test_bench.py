"""pydarknet.bench's timing helper (the benchmark itself runs with `make bench`, never as a test)."""
from pydarknet import bench


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
    assert calls == ["a", "b"] + ["quiet 0.02", "a", "quiet 0.02", "b"] * 3


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
    """`make bench`'s peers block on the demo model: pydarknet --fast (--int16 where the CPU has VNNI, --bf16 where
    it has AMX) against ONNX Runtime on the exported graph (the test extra has it), each row's milliseconds and
    GFLOP/s, and the ratio the --fast target is about; a runtime that is not installed, or a precision this CPU
    lacks, is a line saying why."""
    import re

    import numba
    from conftest import ROOT
    from pydarknet.kernels import amx, int16
    from pydarknet.network import Network
    cfg = ROOT / "cfg/shapes-tiny.cfg"
    bench.bench_peers("shapes-tiny", cfg, ROOT / "data/shapes-tiny.weights", ROOT / "data/shapes.jpg",
                      bench.letterboxed, runs=1)
    out = capsys.readouterr().out.splitlines()
    gflop = sum(layer.flops() for layer in Network(cfg, quiet_unused=True).layers) / 1e9
    assert out[0] == f"peers shapes-tiny 160x160, {gflop:.2f} GFLOP, {numba.get_num_threads()} threads"
    rows = {line[2:30].strip(): line[30:] for line in out[1:]}
    assert {"pydarknet --fast", "pydarknet --int16", "pydarknet --bf16", "onnxruntime f32"} <= set(rows)
    for label, rest in rows.items():
        assert re.fullmatch(r" +\d+\.\d ms +\d+ GFLOP/s.*| unavailable: .+", rest), (label, rest)
    assert re.search(r"GFLOP/s +\d+\.\d\dx the faster float32 peer$", rows["pydarknet --fast"])
    assert ("unavailable" in rows["pydarknet --bf16"]) == (amx.unavailable() is not None)
    assert ("unavailable" in rows["pydarknet --int16"]) == (int16.unavailable() is not None)
