"""`mpiexec -n 2 pydarknet train`: real MPI processes on this machine (the mpi extra's mpich and mpi4py), a tiny
network on the synthetic shapes, a few iterations; every run bounded in time."""
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import takes_ctrl_c, toy_detector_cfg

from pydarknet.files.datasets import write_shapes
from pydarknet.files.weights import load_weights
from pydarknet.network.network import Network
from pydarknet.tasks.train.mpi import launched, local_device

pytest.importorskip("mpi4py", reason="needs the mpi extra (pip install -e '.[mpi]'): mpi4py")
# the mpich wheel's mpiexec beside this interpreter first (a venv used without activating it), then the PATH's
MPIEXEC = shutil.which("mpiexec", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="needs the mpi extra's mpiexec (the mpich wheel)")

CFG = toy_detector_cfg(classes=3, max_batches=400)
LINE = re.compile(r"^(\d+): (\d+\.\d{6}), \d+\.\d{6} avg, \d+\.\d{6} rate, \d+\.\d{6} seconds, (\d+) images$")
# one thread a rank: two ranks share this machine's cores with other work; and the CPU, never the CUDA simulator
# that tests/test_cuda.py turns on for the whole suite's process (with it a rank takes the simulated GPU as its
# local one and trains a thread at a time: minutes an iteration)
ENV = dict({k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"},
           NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """The shapes set (16 training images) and the tiny detector's cfg: (data, cfg). Trained two iterations in one
    process first, so that on a cold cache the ranks load the training kernels instead of both compiling them at
    once (minutes on 2 cores, within the tests' time bounds)."""
    folder = tmp_path_factory.mktemp("mpi")
    data = write_shapes(folder / "shapes", train=16, valid=4)
    cfg = folder / "tiny.cfg"
    cfg.write_text(CFG)
    status, _, err = alone(train_args(data, cfg, folder / "warm", "--max-batches", 2, "-q"), timeout=1200)
    assert status == 0, err
    return data, cfg


def train_args(data, cfg, backup, *more):
    return ["-m", "pydarknet", "detector", "train", str(data), str(cfg), "--backup", str(backup), "--workers", "1",
            *map(str, more)]


def end_group(process):
    """Kill a launched job's whole process group (mpiexec, its proxy, the ranks and their supervisors) where it is
    still running: a test that fails or times out must not leave ranks training on."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def mpiexec(*ranks, timeout=300, env=ENV):
    """`mpiexec -n 1 python ARGS : -n 1 python ARGS ...`, one argument list a rank: its (exit status, stdout,
    stderr)."""
    command = [MPIEXEC]
    for i, args in enumerate(ranks):
        command += ([":"] if i else []) + ["-n", "1", sys.executable, *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        end_group(process)
    return process.returncode, out, err


def alone(args, timeout=300):
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=ENV)
    return done.returncode, done.stdout, done.stderr


def lines(stdout):
    """{iteration: (loss, images)} of darknet's per-iteration lines."""
    return {int(m.group(1)): (m.group(2), int(m.group(3))) for line in stdout.splitlines() if (m := LINE.match(line))}


def iterations_in(weights, cfg):
    net = Network(cfg, quiet_unused=True)
    load_weights(net, weights)
    return net.seen // (net.batch * net.subdivisions)


def errors(stderr):
    return [line for line in stderr.splitlines() if line.startswith("pydarknet: error:")]


JOBS = []   # the tests' background jobs, ended after each test whatever its outcome (end_jobs)


@pytest.fixture(autouse=True)
def end_jobs():
    yield
    while JOBS:
        end_group(JOBS.pop().process)


class Job:
    """A `mpiexec -n 2` training run in the background, its output in files, for the tests that stop it."""

    def __init__(self, folder, data, cfg, *more):
        self.folder, self.backup = folder, folder / "backup"
        self.out, self.err = open(folder / "out.txt", "w+"), open(folder / "err.txt", "w+")
        command = [MPIEXEC, "-n", "2", sys.executable, *train_args(data, cfg, self.backup, *more)]
        self.process = subprocess.Popen(command,
                                        stdout=self.out, stderr=self.err, env=ENV, preexec_fn=takes_ctrl_c,
                                        start_new_session=True)
        JOBS.append(self)

    def reached(self, iteration, timeout=240):
        """Wait until rank 0 has printed `iteration`'s line."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if max(lines((self.folder / "out.txt").read_text()), default=0) >= iteration:
                return
            assert self.process.poll() is None, (self.folder / "err.txt").read_text()
            time.sleep(0.1)
        raise AssertionError(f"iteration {iteration} not reached in {timeout} s")

    def worker(self, rank):
        """The process training as MPI rank `rank`: the supervisor's child (both have the launcher's PMI_RANK)."""
        def environment(pid):
            try:
                pairs = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                return dict(v.split(b"=", 1) for v in pairs if b"=" in v)
            except OSError:
                return {}

        def parent(pid):
            return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                mine = str(self.backup).encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
                if mine and environment(pid).get(b"PMI_RANK") == str(rank).encode() and \
                        environment(parent(pid)).get(b"PMI_RANK") == str(rank).encode():
                    return int(pid)
            except OSError:
                continue
        raise AssertionError(f"no process trains as rank {rank}")

    def wait(self, timeout):
        """(exit status, stdout, stderr, seconds waited)."""
        start = time.monotonic()
        try:
            status = self.process.wait(timeout)
        finally:
            end_group(self.process)
        self.out.seek(0)
        self.err.seek(0)
        return status, self.out.read(), self.err.read(), time.monotonic() - start


def test_launchers_are_told_by_their_environment(monkeypatch):
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "SLURM_STEP_NUM_TASKS"):
        monkeypatch.delenv(name, raising=False)
    assert not launched()
    monkeypatch.setenv("PMI_SIZE", "1")   # one process: plain training
    assert not launched()
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    assert launched()


def test_a_rank_takes_the_gpu_of_its_place_on_its_machine():
    assert [local_device(rank, 2) for rank in range(4)] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert local_device(1, 1) == "cuda:0"   # the launcher gave each rank its own GPU (CUDA_VISIBLE_DEVICES)
    assert local_device(1, 0) == "cpu"
    # the place itself: MPI's shared-memory split, here two ranks on one machine
    probe = ("from pydarknet.tasks.train.mpi import Group; g = Group(); "
             "places = g.comm.gather((g.rank, g.local_rank)); g.rank or print(places); g.close()")
    status, out, err = mpiexec(["-c", probe], ["-c", probe], timeout=120)
    assert status == 0, err
    assert out == "[(0, 0), (1, 1)]\n"


def test_two_ranks_train_as_two_replicas_in_one_process_and_rank_0_alone_writes(shapes, tmp_path):
    """The same losses and, bit for bit, the same weights as `-gpus cpu,cpu`; rank 1 (given a backup folder of its
    own) writes nothing and prints nothing."""
    data, cfg = shapes
    status, out, err = mpiexec(train_args(data, cfg, tmp_path / "mpi", "--max-batches", 4),
                               train_args(data, cfg, tmp_path / "rank1", "--max-batches", 4))
    assert status == 0, err
    status, reference, _ = alone(train_args(data, cfg, tmp_path / "one", "--max-batches", 4, "-gpus", "cpu,cpu"))
    assert status == 0
    assert lines(out) == lines(reference) and sorted(lines(out)) == [1, 2, 3, 4]
    assert [images for _, images in lines(out).values()] == [8, 16, 24, 32]   # 2 replicas x 4 images
    assert (tmp_path / "mpi/tiny_final.weights").read_bytes() == (tmp_path / "one/tiny_final.weights").read_bytes()
    assert sorted(p.name for p in (tmp_path / "mpi").iterdir()) == ["chart.png", "tiny_final.weights"]
    assert not (tmp_path / "rank1").exists()
    assert err.count("layer     filters") == 1 and err.count("Region 3 Avg IOU") == 4 * 2   # rank 0's chatter only


def test_a_data_list_one_rank_cannot_read_is_one_error_before_the_first_step(shapes, tmp_path):
    data, cfg = shapes
    (tmp_path / "elsewhere.data").write_text(Path(data).read_text().replace("train.txt", "missing.txt"))
    status, out, err = mpiexec(train_args(data, cfg, tmp_path / "b"),
                               train_args(tmp_path / "elsewhere.data", cfg, tmp_path / "b"), timeout=120)
    assert status == 1 and not lines(out)
    assert errors(err) == [line for line in err.splitlines() if line.strip()]   # nothing but the error
    assert len(errors(err)) == 1
    assert re.fullmatch(r"pydarknet: error: rank 1: \S*missing\.txt: cannot read image list: no such file .*: "
                        r"the job stops before its first iteration", errors(err)[0])
    assert not (tmp_path / "b").exists()


def test_an_unreadable_image_stops_the_job_with_one_line_and_the_iterations_saved(shapes, tmp_path):
    data, cfg = shapes
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff" + b"\0" * 64)
    listed = tmp_path / "train.txt"   # the good images 20 times over: the broken one comes up some iterations in
    listed.write_text(Path(data).with_name("train.txt").read_text() * 20 + f"{broken}\n")
    (tmp_path / "broken.data").write_text(Path(data).read_text().replace(str(Path(data).with_name("train.txt")),
                                                                        str(listed)))
    args = train_args(tmp_path / "broken.data", cfg, tmp_path / "b", "-q")
    status, out, err = mpiexec(args, args)
    assert status == 1
    reached = max(lines(out))
    line, = errors(err)
    assert re.fullmatch(rf"pydarknet: error: rank [01]: cannot load image {broken}: .*: the job stops in iteration "
                        rf"{reached + 1}; resume from {tmp_path}/b/tiny_last\.weights \(iteration {reached}\)", line)
    assert iterations_in(tmp_path / "b/tiny_last.weights", cfg) == reached


def test_a_killed_rank_stops_the_job_with_one_line_and_a_whole_last_weights(shapes, tmp_path):
    data, cfg = shapes
    job = Job(tmp_path, data, cfg, "-q")
    job.reached(110)
    os.kill(job.worker(1), signal.SIGKILL)
    status, out, err, waited = job.wait(60)
    assert status != 0 and waited < 30
    line, = errors(err)
    assert re.fullmatch(rf"pydarknet: error: rank 1 was killed by SIGKILL \(kill -9, or out of memory\) in iteration "
                        rf"\d+: the job stops; resume from {job.backup}/tiny_last\.weights \(iteration 100\)", line)
    assert int(re.search(r"in iteration (\d+)", line).group(1)) >= 110
    assert iterations_in(job.backup / "tiny_last.weights", cfg) == 100


def test_a_silent_rank_stops_the_job_in_bounded_time(shapes, tmp_path):
    """A rank stopped (SIGSTOP: as frozen as a process gets) is given up on after --rank-timeout seconds without a
    word: rank 0 saves the iterations done and names it."""
    data, cfg = shapes
    job = Job(tmp_path, data, cfg, "-q", "--rank-timeout", 3)
    job.reached(20)
    stopped = job.worker(1)
    os.kill(stopped, signal.SIGSTOP)
    try:
        status, out, err, waited = job.wait(60)
    finally:
        try:
            os.kill(stopped, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert status == 1 and waited < 20
    line, = errors(err)
    done = max(lines(out))
    assert re.fullmatch(rf"pydarknet: error: rank 1 sent nothing for 3 s \(stopped, frozen or cut off\) while rank 0 "
                        rf"waited for .*: the job stops in iteration {done + 1}; resume from "
                        rf"{job.backup}/tiny_last\.weights \(iteration {done}\)", line)
    assert iterations_in(job.backup / "tiny_last.weights", cfg) == done


def job_processes(job):
    """Every process of the job's ranks (their supervisors and the ranks they forked), as Slurm's signal reaches a
    step's tasks."""
    return [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
            if str(job.backup).encode() in read_or_empty(f"/proc/{pid}/cmdline")]


def read_or_empty(path):
    try:
        return Path(path).read_bytes()
    except OSError:
        return b""


@pytest.mark.parametrize("number,to", [(signal.SIGINT, "mpiexec"), (signal.SIGTERM, "mpiexec"),
                                       (signal.SIGTERM, "every rank")], ids=["ctrl-c", "sigterm", "sigterm-every-rank"])
def test_a_stop_signal_saves_last_once_every_rank_exits_with_it_and_another_rank_count_resumes(shapes, tmp_path,
                                                                                            number, to):
    """Ctrl-C, or SIGTERM (a scheduler's stop), sent to the launcher, which passes both on; or SIGTERM to every
    process of the ranks at once, as Slurm's scancel and time limit do (a rank then has it twice, directly and
    through its supervisor, and takes it once): one _last from rank 0, every rank exits 128 + the signal's number,
    and one process goes on from _last at the next iteration, two ranks from that one's weights."""
    data, cfg = shapes
    job = Job(tmp_path, data, cfg)
    job.reached(5)
    for pid in [job.process.pid] if to == "mpiexec" else job_processes(job):
        os.kill(pid, number)
    status, out, err, _ = job.wait(60)
    assert status == 128 + number and not errors(err), err
    saved = re.findall(r"Interrupted: saved (\S+) after (\d+) iterations", err)
    assert len(saved) == 1 and saved[0][0] == f"{job.backup}/tiny_last.weights"
    done = int(saved[0][1])
    assert done >= 5 and iterations_in(job.backup / "tiny_last.weights", cfg) == done
    status, out, err = alone(train_args(data, cfg, tmp_path / "one", "--max-batches", done + 2, "-q",
                                        job.backup / "tiny_last.weights"))
    assert status == 0, err
    assert sorted(lines(out)) == [done + 1, done + 2]
    status, out, err = mpiexec(*[train_args(data, cfg, tmp_path / "two", "--max-batches", done + 4, "-q",
                                            tmp_path / "one/tiny_final.weights")] * 2)
    assert status == 0, err
    assert sorted(lines(out)) == [done + 3, done + 4]


def test_on_the_simulated_gpu_a_rank_takes_its_local_gpu_and_the_sums_go_through_host_memory(shapes, tmp_path):
    """Numba's CUDA simulator (one GPU; 8x8 images, one a replica: it runs the kernels a thread at a time): without
    -gpus each rank trains on the GPU of its place (cuda:0 for both here), its updates read from the device,
    summed over the ranks and written back: the CPU replicas' losses and weights within the engine's tolerance."""
    data, cfg = shapes
    small = tmp_path / "small.cfg"
    small.write_text(CFG.replace("batch=4", "batch=1").replace("subdivisions=2", "subdivisions=1")
                     .replace("width=32", "width=8").replace("height=32", "height=8"))
    status, out, err = mpiexec(*[train_args(data, small, tmp_path / "gpu", "--max-batches", 2)] * 2, timeout=600,
                               env={**ENV, "NUMBA_ENABLE_CUDASIM": "1"})
    assert status == 0, err
    assert "MPI: 2 ranks, 2 replicas (rank 0's on cuda:0)" in err
    status, reference, _ = alone(train_args(data, small, tmp_path / "cpu", "--max-batches", 2, "-gpus", "cpu,cpu"))
    assert status == 0
    on_gpu, on_cpu = lines(out), lines(reference)
    assert sorted(on_gpu) == sorted(on_cpu) == [1, 2]
    assert all(abs(float(on_gpu[i][0]) - float(on_cpu[i][0])) <= 1e-4 * float(on_cpu[i][0]) for i in (1, 2))
    trained = [Network(small, quiet_unused=True) for _ in range(2)]
    load_weights(trained[0], tmp_path / "gpu/small_final.weights")
    load_weights(trained[1], tmp_path / "cpu/small_final.weights")
    for a, b in zip(trained[0].layers, trained[1].layers):
        for x, y in zip(a.weight_arrays(), b.weight_arrays()):
            assert np.allclose(x, y, rtol=1e-4, atol=1e-5)
