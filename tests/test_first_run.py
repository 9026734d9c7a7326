"""A new user's first minutes: `--version`, a cheap `import pydarknet`, the notice while the kernels compile
(once) with the compile kept out of the printed seconds, and progress bars on a terminal only."""
import json
import os
import pickle
import re
import subprocess
import sys

import click._termui_impl
import pytest

from conftest import ROOT, shared_path
from pydarknet import cli
from pydarknet.tasks import preload


def python(*args, env=None, cwd=None):
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, proc.stderr


def test_version_names_the_libraries_and_the_vector_width():
    out, _ = python("-m", "pydarknet", "--version")
    lines = out.splitlines()
    assert lines[0].startswith("pydarknet ") and [line.split()[0] for line in lines[1:5]] == \
        ["python", "numba", "numpy", "opencv"]
    assert re.fullmatch(r"vectors: (512|256|128)-bit \(\S+\)", lines[-1])
    assert python("-m", "pydarknet", "version")[0] == out


def test_import_pydarknet_is_cheap_and_the_api_is_at_the_top():
    out, _ = python("-c", "import sys, pydarknet; print('numba' in sys.modules)")
    assert out == "False\n"
    out, _ = python("-c", "from pydarknet import Detector, Classifier, Network; print(Detector.__module__, "
                          "Classifier.__module__, Network.__module__)")
    assert out.split() == ["pydarknet.tasks.predict", "pydarknet.tasks.predict", "pydarknet.network.network"]


def test_import_pydarknet_first_sets_the_thread_spins_and_keeps_the_users_own():
    """OpenMP threads spin about 5 ms when idle (about 0.1 ms when OpenBLAS runs products between the kernels),
    OpenBLAS's about 0.1 ms, then sleep (pydarknet/kernels/threads.py says why); a value the user set wins."""
    names = ["NUMBA_THREADING_LAYER_PRIORITY", "GOMP_SPINCOUNT", "OPENBLAS_THREAD_TIMEOUT"]
    code = (f"import os, pydarknet; print([os.environ[n] for n in {names}]); "
            "from pydarknet.kernels.products import set_backend; set_backend('blas'); "
            "print(os.environ['GOMP_SPINCOUNT'])")
    unset = {k: v for k, v in os.environ.items() if k not in names + ["PYDARKNET_PRODUCTS"]}

    def spins(**env):
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env={**unset, "PYTHONPATH": str(ROOT), **env})
        return proc.stdout.splitlines() or proc.stderr[-2000:]
    assert spins() == ["['omp tbb workqueue', '300000', '18']", "3000"]
    assert spins(PYDARKNET_PRODUCTS="blas") == ["['omp tbb workqueue', '3000', '18']", "3000"]
    assert spins(GOMP_SPINCOUNT="0", OPENBLAS_THREAD_TIMEOUT="28") == ["['omp tbb workqueue', '0', '28']", "0"]


def test_the_first_run_says_it_compiles_once(tmp_path):
    """With an empty Numba cache, `detector test` compiles the kernels it runs (a minute or two on 2
    cores): the notice shows once, the time it took is kept for the next notice; the next run is silent and
    prints the same. (That `Predicted in` leaves the compile out: test_predicted_in_is_a_warm_pass_alone.)"""
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    args = ["-m", "pydarknet", "detector", "test", "cfg/shapes.data", "cfg/shapes-tiny.cfg",
            "data/shapes-tiny.weights", "data/shapes.jpg", "-dont_show"]
    notice = "Compiling pydarknet's kernels for this CPU"
    first, err = python(*args, env=env, cwd=tmp_path)
    assert err.count(notice) == 1
    [times] = (tmp_path / "numba-cache").rglob("compile-seconds.json")   # the next notice's figure
    assert list(json.loads(times.read_text())) == ["detector test"]
    out, err = python(*args, env=env, cwd=tmp_path)
    assert notice not in err and out.splitlines()[1:] == first.splitlines()[1:]
    # a regression pin: pydarknet's own detection with its own demo weights (README, Quick start)
    assert "triangle: 90%" in out.splitlines()
    # the kernels the runs called are recorded by network (by the second: the first compiled), and the next load
    # of that network loads them before its first pass, which then loads none (pydarknet.tasks.preload)
    [record] = (tmp_path / "numba-cache").rglob(preload.KERNELS_FILE)
    check = """if True:
        import numpy as np
        from pydarknet.tasks import preload
        from pydarknet.programs.images import load_network
        net = load_network("cfg/shapes-tiny.cfg", "data/shapes-tiny.weights", table=False)
        loaded = {(module, name): len(signatures) for module, name, signatures in preload.used()}
        net.forward(np.zeros((1,) + net.input_shape, np.float32))
        after = {(module, name): len(signatures) for module, name, signatures in preload.used()}
        print(sorted(name for _, name in loaded), after == loaded)
    """
    out, _ = python("-c", check, env=env, cwd=tmp_path)
    names, same = out.rsplit(" ", 1)
    assert same == "True\n" and "'normalize_activate_maxpool'" in names and "'_gemm'" in names
    kernels = {name for _, name, _ in pickle.loads(record.read_bytes())["shapes-tiny.cfg darknet"]}
    assert {"_decode_baseline_scan", "_idct_all"} <= kernels and "_idct_block" not in kernels   # _idct_all's callee


def load_numbas_registries():
    """Numba reads numpy's ufuncs into its registries when a process first loads a cached kernel (later since
    start-up defers it): done before a test patches numpy."""
    from numba.core.registry import cpu_target
    cpu_target.target_context.refresh()


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


def test_predicted_in_is_a_warm_pass_alone(monkeypatch):
    """A forward pass during which Numba compiled (60 s on the clock) is run again and the warm pass timed:
    the seconds are each image's share of that pass (0.25 s for two images), the compile left out."""
    from types import SimpleNamespace

    import numpy as np
    from numba.core import event

    from pydarknet.tasks import predict
    clock = Clock()
    monkeypatch.setattr(predict.time, "perf_counter", clock)

    class Net:
        passes = 0

        def forward(self, batch):
            if self.passes == 0:
                compiled = {"dispatcher": Net, "args": (), "return_type": None}   # a kernel of this module's
                with event.trigger_event("numba:compile", data=compiled):
                    clock.now += 60.0
            self.passes += 1
            clock.now += 0.25
            return batch * self.passes

    net = Net()
    images = [SimpleNamespace(input=np.ones((3, 2, 2), np.float32))] * 2
    output, seconds = predict.timed_forward(net, images)
    assert seconds == 0.125 and net.passes == 2 and np.all(output == 2)
    output, seconds = predict.timed_forward(net, images)   # warm from the start: one pass
    assert seconds == 0.125 and net.passes == 3 and np.all(output == 3)


@pytest.mark.parametrize("products", ["darknet", "fast"])
def test_a_commands_network_prepares_its_weights_before_the_first_pass(monkeypatch, products):
    """What a first inference pass does once per parameters, a command (load_network) does before that pass,
    which it times: the fork's batch-norm folded into each convolution's weights and, for --fast, their
    Winograd transforms (340 ms of yolov4-tiny's first pass). The first pass then only reads them; the same
    outputs as a network that prepares on the way."""
    import numpy as np

    from pydarknet.kernels import winograd
    from pydarknet.kernels.products import set_backend
    from pydarknet.network.layers.convolutional import Convolutional
    from pydarknet.network.network import Network
    from pydarknet.programs.images import load_network
    load_numbas_registries()
    previous = set_backend(products)
    try:
        cfg, weights = ROOT / "cfg/shapes-v4tiny.cfg", ROOT / "data/shapes-v4tiny.weights"
        net = load_network(cfg, weights, table=False)
        convolutions = [layer for layer in net.layers if isinstance(layer, Convolutional)]
        assert net.darknet == "ab" and sum(layer.batch_normalize for layer in convolutions) == 19
        x = np.random.default_rng(3).random((1, *net.input_shape), dtype=np.float32)
        with monkeypatch.context() as patch:   # folding or transforming from now on would fail
            patch.setattr(np, "sqrt", None)
            patch.setattr(winograd, "transform_weights", None)
            forms = [layer.product_form(layer.fused_parameters(net)[0] if layer.batch_normalize else layer.weights,
                                        net) for layer in convolutions]
            output = net.forward(x).copy()
        assert ("winograd" in [form for form, _ in forms]) == (products == "fast")
        on_the_way = Network(cfg, quiet_unused=True)
        on_the_way.load(weights)
        assert np.array_equal(on_the_way.forward(x), output)
    finally:
        set_backend(previous)


@pytest.mark.parametrize("name", ["shapes-tiny", "shapes-v4tiny"])
def test_the_first_pass_writes_into_outputs_the_command_touched_before_it(monkeypatch, name):
    """Network.prepare (in load_network) gives every layer that keeps an output of its own its buffer for one
    image, written once: the operating system's first touch of fresh memory took 10-20 ms of yolov3-tiny's
    first pass. The timed first pass then allocates no output (here, a route's concatenations and max pools
    fused into the convolutions before them included), pools in the convolutions' pass as before, and answers
    as before."""
    import numpy as np

    from pydarknet.kernels import pool as kernels
    from pydarknet.kernels.aligned import aligned_zeros
    from pydarknet.network import outputs
    from pydarknet.network.layers import base
    from pydarknet.network.layers import maxpool as maxpool_layer
    from pydarknet.network.network import Network
    from pydarknet.programs.images import load_network
    load_numbas_registries()

    class Counting:   # the outputs' allocations (on cache lines: kernels/aligned.py)
        made = 0

        def __call__(self, *args, **kwargs):
            self.made += 1
            return aligned_zeros(*args, **kwargs)

    cfg, weights = ROOT / f"cfg/{name}.cfg", ROOT / f"data/{name}.weights"
    net = load_network(cfg, weights, table=False)
    x = np.random.default_rng(5).random((1, *net.input_shape), dtype=np.float32)
    counting, pooled_alone = Counting(), []
    with monkeypatch.context() as patch:
        patch.setattr(base, "aligned_zeros", counting)
        patch.setattr(outputs, "aligned_zeros", counting)
        patch.setattr(maxpool_layer, "maxpool", lambda *args: pooled_alone.append(args) or kernels.maxpool(*args))
        output = net.forward(x).copy()
    assert counting.made == 0
    # a max pool after a convolution is still done in the convolution's last pass
    assert len(pooled_alone) == sum(layer.type == "maxpool" and net.layers[layer.index - 1].type != "convolutional"
                                    for layer in net.layers)
    unprepared = Network(cfg, quiet_unused=True)
    unprepared.load(weights)
    with monkeypatch.context() as patch:
        patch.setattr(base, "aligned_zeros", counting)
        patch.setattr(outputs, "aligned_zeros", counting)
        assert np.array_equal(unprepared.forward(x), output)
    own = sum(layer.keeps_output and layer.slot is None and layer.shared_output is None for layer in net.layers)
    shared = {id(layer.shared_output.base) for layer in net.layers if layer.shared_output is not None}
    assert shared and counting.made >= own + len(shared)


def test_the_compile_notice_waits_for_seconds_of_compiling_and_names_the_last_measure(tmp_path, monkeypatch,
                                                                                     capsys):
    """A kernel or two (1.5 s, nested compiles counted once) say nothing; past 2 s the notice shows once, with
    what this command's compiling took here last time, and the time is recorded for the next one."""
    from pydarknet.tasks import warmup
    monkeypatch.setattr(warmup, "cache_folder", lambda: tmp_path)
    (tmp_path / warmup.TIMES_FILE).write_text('{"detect": 71.0}')
    clock = Clock()
    watch = warmup.CompileWatch("detect", clock)
    watch.start()
    clock.now = 0.5
    watch.start()    # a kernel compiling the kernel it calls
    clock.now = 1.0
    watch.end()
    clock.now = 1.5
    watch.end()
    assert capsys.readouterr().err == ""
    clock.now = 10.0
    watch.start()
    clock.now = 10.6
    watch.end()
    watch.start()
    clock.now = 20.0
    watch.end()
    err = capsys.readouterr().err
    assert err.count("Compiling pydarknet's kernels") == 1
    assert "`detect` compiled for 71 s the last time it did on this machine." in err
    watch.record()
    assert json.loads((tmp_path / warmup.TIMES_FILE).read_text()) == {"detect": 11.5}
    quiet = warmup.CompileWatch("detector map", clock)
    quiet.record()   # it never compiled for seconds: nothing recorded
    assert "detector map" not in json.loads((tmp_path / warmup.TIMES_FILE).read_text())


def test_anchors_progress_on_a_terminal_only(tmp_path, monkeypatch, capsys):
    data = shared_path("datasets", "shapes", "shapes.data")
    monkeypatch.chdir(tmp_path)
    args = ["anchors", str(data), "-num_of_clusters", "6", "-width", "160", "-height", "160"]

    def run():
        with pytest.raises(SystemExit):
            cli.main(args)
        return capsys.readouterr()

    plain = run()
    monkeypatch.setattr(cli.progress, "stderr_is_terminal", lambda: True)
    monkeypatch.setattr(click._termui_impl, "isatty", lambda stream: True)
    shown = run()
    assert plain.err == "" and re.search(r"labels  \[#+\]  \d+/\d+", shown.err)
    assert shown.out == plain.out


def test_compile_runs_every_inference_job_and_says_where(tmp_path):
    """`pydarknet compile` (README: every kernel ahead, for container images and shared installs) runs its
    compile jobs, each command's kernels through the code paths that command takes, and names the cache; a
    kernel module the commands load is then in it (here on the suite's warm cache: a cold one takes minutes)."""
    out, err = python("-m", "pydarknet", "compile", "--no-training", cwd=tmp_path)
    folder = err.strip().splitlines()[-1].removeprefix("kernels compiled and cached in ")
    from pydarknet.tasks.warmup import cache_folder
    assert out == "" and folder == str(cache_folder())
    cached = {p.name.split(".")[0] for p in cache_folder().glob("*.nbi")}
    assert {"gemm", "conv", "nms", "pool", "activations"} <= cached, sorted(cached)


def test_the_kernel_record_is_a_commands_and_replaced_by_its_next_run(tmp_path, monkeypatch):
    """preload: loading a network records nothing by itself; the end of a command's process records what it ran
    under the network's key, in place of the last run's (a run that stopped early cannot leave a stale union)."""
    from pydarknet.tasks import preload, warmup
    monkeypatch.setattr(preload, "path", lambda: tmp_path / preload.KERNELS_FILE)
    monkeypatch.setattr(preload, "_command_key", [])
    monkeypatch.setattr(warmup, "_watches", [])   # no compile seen (test_startup: a compiling process forgets)
    preload.record_command()   # no network loaded: nothing to record
    assert preload.load_recorded("net.cfg darknet") == 0 and not (tmp_path / preload.KERNELS_FILE).exists()
    monkeypatch.setattr(preload, "used", lambda: [("pydarknet.x", "kernel", ["one"])])
    preload.record_command()
    assert preload.recorded() == {"net.cfg darknet": [("pydarknet.x", "kernel", ["one"])]}
    monkeypatch.setattr(preload, "used", lambda: [("pydarknet.x", "other", ["two"])])
    preload.record_command()
    assert preload.recorded() == {"net.cfg darknet": [("pydarknet.x", "other", ["two"])]}
