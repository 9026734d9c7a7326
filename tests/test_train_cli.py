"""The `train` and `partial` commands: darknet's per-iteration line, backups, resume, Ctrl-C, atomic writes."""
import os
import re
import struct

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import bench_module, toy_detector_cfg

from pydarknet.cli import cli
from pydarknet.files.weights import load_weights
from pydarknet.network.network import Network
from pydarknet.tasks.train import run as training
from pydarknet.tasks.train.run import TrainingRun, backup_names

CFG = toy_detector_cfg(classes=2, max_batches=4)
LINE = re.compile(r"^(\d+): \d+\.\d{6}, \d+\.\d{6} avg, \d+\.\d{6} rate, \d+\.\d{6} seconds, (\d+) images$")


@pytest.fixture
def dataset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return toy_dataset(tmp_path)


def toy_dataset(tmp_path):
    """Six noisy 48x40 images with a white box each (classes 0 and 1), toy.data and toy.cfg in tmp_path."""
    rng = np.random.default_rng(0)
    (tmp_path / "img").mkdir()
    names = []
    for i in range(6):
        im = (rng.random((40, 48, 3)) * 255).astype(np.uint8)
        cv2.rectangle(im, (10, 8), (30, 28), (255, 255, 255), -1)
        cv2.imwrite(str(tmp_path / "img" / f"{i}.png"), im)
        (tmp_path / "img" / f"{i}.txt").write_text(f"{i % 2} 0.42 0.45 0.42 0.5\n")
        names.append(f"img/{i}.png")
    (tmp_path / "train.txt").write_text("\n".join(names) + "\n")
    (tmp_path / "names.txt").write_text("a\nb\n")
    (tmp_path / "toy.data").write_text("classes=2\ntrain=train.txt\nnames=names.txt\nbackup=backup\n")
    (tmp_path / "toy.cfg").write_text(CFG)
    return tmp_path


def invoke(args):
    return CliRunner().invoke(cli, args)


def error_line(args, capsys):
    """pydarknet's entry point on `args` must exit 1 with one line on stderr, `pydarknet: error: ...` (README,
    Exit codes); returns that line."""
    from pydarknet.cli import main
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit:
        main(args)
    out, err = capsys.readouterr()
    assert exit.value.code == 1 and out == "" and len(err.splitlines()) == 1, (exit.value.code, out, err)
    assert err.startswith("pydarknet: error: ")
    return err.strip()


def test_train_prints_darknet_lines_and_saves_final_weights(dataset):
    result = invoke(["train", "toy.data", "toy.cfg", "--workers", "1"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line]
    assert [int(LINE.match(line).group(1)) for line in lines] == [1, 2, 3, 4]
    assert [int(LINE.match(line).group(2)) for line in lines] == [4, 8, 12, 16]  # batch 4 per iteration
    assert lines[1].split(", ")[2] == "0.010000 rate" and lines[2].split(", ")[2] == "0.001000 rate"
    final = dataset / "backup" / "toy_final.weights"
    net = Network("toy.cfg", quiet_unused=True)
    load_weights(net, final)
    assert net.seen == 16
    assert (dataset / "backup" / "chart.png").stat().st_size > 1000
    assert not [p for p in (dataset / "backup").iterdir() if p.name.startswith(".")]  # no temp files left


def test_resume_continues_from_seen_and_clear_restarts(dataset):
    invoke(["train", "toy.data", "toy.cfg", "--max-batches", "2", "--workers", "1"])
    final = "backup/toy_final.weights"
    resumed = invoke(["train", "toy.data", "toy.cfg", final, "--workers", "1"])
    assert [line.split(":")[0] for line in resumed.stdout.splitlines()] == ["3", "4"]
    cleared = invoke(["detector", "train", "toy.data", "toy.cfg", final, "-clear", "--max-batches", "1",
                      "--workers", "1"])
    assert cleared.stdout.splitlines()[0].startswith("1: ")


def test_ctrl_c_saves_last_weights(dataset, monkeypatch):
    calls = {"n": 0}
    original = training.train_network

    def interrupted(net, x, y):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(net, x, y)
    monkeypatch.setattr(training, "train_network", interrupted)
    run = TrainingRun("toy.data", "toy.cfg", workers=1)
    with pytest.raises(KeyboardInterrupt):
        run.run()
    last = dataset / "backup" / "toy_last.weights"
    net = Network("toy.cfg", quiet_unused=True)
    load_weights(net, last)
    assert net.seen == 8  # two iterations of 4 images were done


def losses(text):
    """{iteration: the printed loss} of a run's stdout."""
    return {int(m.group(1)): line.split(", ")[0].split(": ")[1]
            for line in text.splitlines() if (m := LINE.match(line))}


@pytest.mark.parametrize("momentum", ["0.9", "0"])
def test_resume_after_ctrl_c_in_an_iteration_goes_on_as_the_uninterrupted_run(dataset, monkeypatch, momentum):
    """Ctrl-C in iteration 3's second chunk (seen already counts it, nothing updated): _last.weights holds the 2
    iterations done, with seen 8; the run from it trains 3 and 4 on the batches the uninterrupted run had, so
    the loss of 3 is the same, and with momentum 0 (no state outside the weights file) everything after too."""
    (dataset / "toy.cfg").write_text(CFG.replace("momentum=0.9", f"momentum={momentum}"))
    whole = invoke(["train", "toy.data", "toy.cfg", "--workers", "1", "--backup", "whole"])
    assert sorted(losses(whole.stdout)) == [1, 2, 3, 4]
    calls = {"n": 0}
    original = Network.forward_train

    def interrupted(self, x, y):
        calls["n"] += 1
        if calls["n"] == 6:   # 2 chunks per iteration: iteration 3's second
            raise KeyboardInterrupt
        return original(self, x, y)
    with monkeypatch.context() as patch:
        patch.setattr(Network, "forward_train", interrupted)
        with pytest.raises(KeyboardInterrupt):
            TrainingRun("toy.data", "toy.cfg", workers=1, backup="cut", out=open(os.devnull, "w")).run()
    last = dataset / "cut" / "toy_last.weights"
    net = Network("toy.cfg", quiet_unused=True)
    load_weights(net, last)
    assert net.seen == 8
    resumed = invoke(["train", "toy.data", "toy.cfg", str(last), "--workers", "1", "--backup", "cut"])
    assert sorted(losses(resumed.stdout)) == [3, 4]
    assert losses(resumed.stdout)[3] == losses(whole.stdout)[3]
    if momentum == "0":
        assert losses(resumed.stdout)[4] == losses(whole.stdout)[4]
        assert (dataset / "cut/toy_final.weights").read_bytes() == (dataset / "whole/toy_final.weights").read_bytes()


def test_ctrl_c_during_the_update_lets_it_finish(dataset, monkeypatch):
    """SIGINT while the layers update: the update completes, then the run stops; the iteration counts."""
    import signal
    whole = TrainingRun("toy.data", "toy.cfg", workers=1, backup="whole", max_batches=3, out=open(os.devnull, "w"))
    whole.run()
    run = TrainingRun("toy.data", "toy.cfg", workers=1, backup="cut", out=open(os.devnull, "w"))
    first = run.net.layers[0]
    original, updates = first.update, {"n": 0}

    def update(args):
        updates["n"] += 1
        if updates["n"] == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return original(args)
    monkeypatch.setattr(first, "update", update)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)   # Ctrl-C as a terminal's run has it
    try:   # (a test run started as a background job of a non-interactive shell ignores SIGINT)
        with pytest.raises(KeyboardInterrupt):
            run.run()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert (dataset / "cut/toy_last.weights").read_bytes() == (dataset / "whole/toy_final.weights").read_bytes()


def test_a_train_that_fails_leaves_no_backup_folder(dataset, capsys):
    (dataset / "bad.data").write_text("classes=2\ntrain=nope.txt\nbackup=never\n")
    assert "nope.txt" in error_line(["train", "bad.data", "toy.cfg"], capsys)
    assert not (dataset / "never").exists()


@pytest.mark.parametrize("backend, spin", [("darknet", "300000"), ("fast", "3000")])
def test_training_with_openblas_products_keeps_the_short_thread_spin(dataset, monkeypatch, backend, spin):
    """The fast products train with OpenBLAS's backward products: OpenMP's idle threads then spin briefly
    (pydarknet/kernels/threads.py), so that OpenBLAS's threads get the cores."""
    from pydarknet.kernels import threads
    from pydarknet.kernels import products
    monkeypatch.setattr(threads, "_OWN_SPIN", True)
    monkeypatch.setenv("GOMP_SPINCOUNT", threads.SPIN)
    previous = products.set_backend(backend)
    try:
        TrainingRun("toy.data", "toy.cfg", workers=1)
    finally:
        products.set_backend(previous)
    assert os.environ["GOMP_SPINCOUNT"] == spin


def test_backup_schedule():
    assert backup_names("cfg/x.cfg", 100) == ["x_100.weights", "x_last.weights"]
    assert backup_names("x.cfg", 150) == []
    assert backup_names("x.cfg", 1100) == ["x_last.weights"]
    assert backup_names("x.cfg", 20000) == ["x_20000.weights", "x_last.weights"]


def test_missing_train_list_is_one_line_error(dataset, capsys):
    (dataset / "bad.data").write_text("classes=2\ntrain=nope.txt\n")
    assert error_line(["train", "bad.data", "toy.cfg"], capsys) == (
        "pydarknet: error: nope.txt: cannot read image list: no such file (named at bad.data:2)")


def test_partial_keeps_the_first_layers(dataset):
    invoke(["train", "toy.data", "toy.cfg", "--max-batches", "1", "--workers", "1"])
    result = invoke(["partial", "toy.cfg", "backup/toy_final.weights", "backbone.weights", "1"])
    assert result.exit_code == 0, result.output
    data = (dataset / "backbone.weights").read_bytes()
    assert struct.unpack_from("<3iq", data) == (0, 2, 0, 0)
    assert len(data) == 20 + 4 * (4 + 3 * 4 + 4 * 27)  # conv 0: biases, scales, mean, variance, weights


def test_training_from_scratch_starts_from_darknets_random_weights(dataset):
    net = Network("toy.cfg", quiet_unused=True).initialize(seed=1)
    conv = net.layers[0]
    assert abs(conv.weights.std() - np.sqrt(2.0 / 27)) < 0.05  # normal, scaled by sqrt(2 / fan-in)
    assert not conv.biases.any()
    again = Network("toy.cfg", quiet_unused=True).initialize(seed=1)
    assert np.array_equal(again.layers[2].weights, net.layers[2].weights)


def test_ctrl_c_in_train_ends_on_the_saved_line(dataset, monkeypatch, capsys):
    """'Interrupted: saved ...' is the last line (no 'pydarknet: aborted' after it), exit 130."""
    from pydarknet.cli import main
    original = training.train_network

    def interrupted(net, x, y):
        if net.seen >= 4:
            raise KeyboardInterrupt
        return original(net, x, y)
    monkeypatch.setattr(training, "train_network", interrupted)
    with pytest.raises(SystemExit) as end:
        main(["train", "toy.data", "toy.cfg", "--workers", "1"])
    err = capsys.readouterr().err
    assert end.value.code == 130
    assert err.strip().splitlines()[-1] == "Interrupted: saved backup/toy_last.weights after 1 iterations"


def test_cpu_replicas_each_train_on_their_own_share(dataset):
    """-gpus cpu,cpu: two replicas on the CPU, each iteration's images twice a lone run's; replica r's share is drawn
    with the seed plus r alone, so replica 0's images are a lone run's (an MPI job's rank r draws the same)."""
    from pydarknet.tasks.train.data import BatchLoader
    result = invoke(["train", "toy.data", "toy.cfg", "--max-batches", "2", "--workers", "1", "-gpus", "cpu,cpu"])
    assert result.exit_code == 0, result.output
    assert [int(LINE.match(line).group(2)) for line in result.stdout.splitlines() if line] == [8, 16]
    images = TrainingRun("toy.data", "toy.cfg", workers=0).dataset
    x, y = next(BatchLoader(images, 8, seed=[3, 4], workers=0))
    for share, seed in ((slice(0, 4), 3), (slice(4, 8), 4)):
        alone_x, alone_y = next(BatchLoader(images, 4, seed=seed, workers=0))
        assert np.array_equal(x[share], alone_x) and np.array_equal(y[share], alone_y)


class AloneInAGroup:
    """An MPI job of one rank, for Replicas: every sum is its own buffer (kept, to be measured)."""
    first, total = 0, 1

    def check_in(self, costs):
        return costs

    def sum(self, buffer):
        self.buffer = buffer.copy()


def test_a_replica_in_a_job_of_one_trains_as_train_network_and_sends_its_parameters_and_statistics(dataset):
    """Replicas' arithmetic across processes, without MPI: with nothing to add, a step is train_network's (within
    float32's rounding: the replica scheme takes the carried momentum out of the sum and puts it back); the buffer
    a step adds over the ranks holds an update per parameter and the rolling statistics (what make bench-mpi counts:
    yolov4-tiny's and yolov4's are the trainable and non-trainable parameter counts their Keras ports report,
    6,056,606 + 6,208 and 64,363,101 + 66,304)."""
    from pydarknet.files.resources import shipped_root
    from pydarknet.tasks.train.replicas import Replicas
    from pydarknet.tasks.train.step import train_network
    buffer_bytes = bench_module("mpi").buffer_bytes
    alone, together = (Network("toy.cfg", quiet_unused=True).initialize(1) for _ in range(2))
    alone.quiet = together.quiet = True
    group = AloneInAGroup()
    replicas = Replicas(together, ["cpu"], group)
    x = np.random.default_rng(0).random((4, 3, 32, 32), np.float32)
    y = np.zeros((4, 90 * 5), np.float32)
    y[:, :5] = [0.5, 0.5, 0.3, 0.3, 1]
    for _ in range(3):
        assert np.isclose(replicas.train_batch(x, y), train_network(alone, x, y), rtol=1e-6)
    for mine, theirs in zip(together.layers, alone.layers):
        for a, b in zip(mine.weight_arrays(), theirs.weight_arrays()):
            assert np.allclose(a, b, rtol=1e-6, atol=1e-7) and (a != 0).any()
    assert group.buffer.nbytes == buffer_bytes("toy.cfg") == 4 * (4 + 4 + 4 * 27 + 2 * 4 + 14 + 14 * 4)
    assert buffer_bytes(shipped_root() / "cfg/yolov4-tiny.cfg") == 4 * (6056606 + 6208)
    assert buffer_bytes(shipped_root() / "cfg/yolov4.cfg") == 4 * (64363101 + 66304)


def test_training_without_a_launcher_never_loads_mpi(dataset):
    """Only an MPI launcher's environment makes `train` load mpi4py (train/mpi.py): plain training pays nothing."""
    import subprocess
    import sys
    probe = ("import sys\nfrom pydarknet.cli import main\ntry:\n"
             "    main(['train', 'toy.data', 'toy.cfg', '--max-batches', '1', '-q'])\nfinally:\n"
             "    print(sorted(m for m in sys.modules if m.startswith('mpi4py')))")
    env = {k: v for k, v in os.environ.items() if k not in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE",
                                                            "SLURM_STEP_NUM_TASKS")}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
    assert done.stdout.splitlines()[-1] == "[]", done.stderr
    assert (dataset / "backup/toy_final.weights").exists()
