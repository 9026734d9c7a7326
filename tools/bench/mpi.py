"""`make bench-mpi`: a training iteration on 1 and 2 MPI ranks on this machine, and the bytes each rank sends a step.

Trains NETWORK (cfg/shapes-tiny.cfg) on a synthetic shapes set:
- one process with all the cores' threads (training without MPI);
- `mpiexec -n 1 -bind-to core`: one rank, one core, one thread (a rank's share of a machine);
- `mpiexec -n 2 -bind-to core`: two ranks, one core and thread each, a replica each (twice the images an iteration);
the median seconds an iteration (darknet's line: loading waits included) and images a second. Then the sum of a
step's updates alone (Group.sum, MPI's Allreduce, 2 ranks, through shared memory) for this network's, yolov4-tiny's
and yolov4's buffers, and the bytes a rank sends a step on N ranks with a ring all-reduce: 2 (N - 1) / N x the buffer.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pydarknet.files.resources import shipped_root
from pydarknet.tasks.about import cpu_line
from pydarknet.tasks.train.replicas import AVERAGED

NETWORK = "shapes-tiny.cfg"
BUFFERS = (NETWORK, "yolov4-tiny.cfg", "yolov4.cfg")
LINE = re.compile(r"^(\d+): \S+, \S+ avg, \S+ rate, (\d+\.\d+) seconds, (\d+) images$")
ONE_THREAD = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def buffer_bytes(cfg):
    """The bytes a step adds over the ranks (replicas.py's buffer): an update per trainable parameter and the
    rolling statistics, float32."""
    from pydarknet.network.network import Network
    net = Network(cfg, quiet_unused=True)
    count = sum(getattr(layer, param).size for layer in net.layers if layer.trainable
                for param, _, _ in layer.trainable if getattr(layer, param, None) is not None)
    count += sum(getattr(layer, name).size for layer in net.layers for name in AVERAGED
                 if getattr(layer, name, None) is not None)
    return 4 * count


def ring_bytes(buffer, ranks):
    """What each rank sends a step in a ring all-reduce (reduce-scatter, then all-gather)."""
    return 2 * (ranks - 1) * buffer // ranks


def mpiexec(ranks):
    return ["mpiexec", "-n", str(ranks), "-bind-to", "core"]


def timed_training(launcher, env, data, cfg, iterations, folder):
    """(median seconds an iteration after the first 5, images an iteration) of `pydarknet train` run so."""
    command = [*launcher, sys.executable, "-m", "pydarknet", "train", str(data), str(cfg), "--backup", str(folder),
               "--max-batches", str(iterations), "--workers", "1", "--no-chart", "-q"]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env}, timeout=1800)
    if done.returncode:
        raise SystemExit(f"bench-mpi: {' '.join(command)} failed:\n{done.stderr}")
    rows = [(float(m.group(2)), int(m.group(3)) // int(m.group(1))) for m in map(LINE.match, done.stdout.splitlines())
            if m]
    return float(np.median([seconds for seconds, _ in rows[5:]])), rows[0][1]


def bindings():
    """Which CPUs each rank of `mpiexec -n 2 -bind-to core` may run on."""
    probe = ("import json, os; from mpi4py import MPI; cpus = MPI.COMM_WORLD.gather(sorted(os.sched_getaffinity(0)));"
             " MPI.COMM_WORLD.rank or print(json.dumps(cpus))")
    done = subprocess.run([*mpiexec(2), sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    return ", ".join(f"rank {rank} on CPU {','.join(map(str, cpus))}"
                     for rank, cpus in enumerate(json.loads(done.stdout)))


def time_sums(sizes, repeat):
    """Rank 0's median seconds of Group.sum on a buffer of each size (run under mpiexec)."""
    from pydarknet.tasks.train.mpi import Group
    group = Group()
    for size in sizes:
        buffer = np.ones(size // 4, np.float32)
        seconds = []
        for _ in range(repeat + 2):
            start = time.perf_counter()
            group.sum(buffer)
            seconds.append(time.perf_counter() - start)
        if group.rank == 0:
            print(size, np.median(seconds[2:]), flush=True)
    group.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=25, help="iterations a run (the first 5 are not timed)")
    parser.add_argument("--repeat", type=int, default=10, help="sums timed a buffer")
    parser.add_argument("--sums", type=int, nargs="*", help=argparse.SUPPRESS)   # the ranks' part
    args = parser.parse_args(argv)
    if args.sums is not None:
        return time_sums(args.sums, args.repeat)
    from pydarknet.files.datasets import write_shapes
    print(cpu_line())
    print(f"mpiexec -n 2 -bind-to core: {bindings()}")
    with tempfile.TemporaryDirectory() as folder:
        data = write_shapes(Path(folder) / "shapes", train=64, valid=1)
        cfg = shipped_root() / "cfg" / NETWORK
        print(f"\ntraining {NETWORK}, {args.iterations} iterations a run (medians after the first 5):")
        runs = [("1 process, all cores' threads", [], {}), ("1 rank, 1 core", mpiexec(1), ONE_THREAD),
                ("2 ranks, 1 core each", mpiexec(2), ONE_THREAD)]
        for i, (name, launcher, env) in enumerate(runs):
            seconds, images = timed_training(launcher, env, data, cfg, args.iterations, Path(folder) / str(i))
            print(f"  {name:32s} {seconds:8.3f} s an iteration, {images:4d} images: {images / seconds:7.1f} images/s")
    sizes = [buffer_bytes(shipped_root() / "cfg" / cfg) for cfg in BUFFERS]
    done = subprocess.run([*mpiexec(2), sys.executable, "-m", "tools.bench.mpi", "--repeat",
                           str(args.repeat), "--sums", *map(str, sizes)], capture_output=True, text=True, timeout=1800)
    if done.returncode:
        raise SystemExit(f"bench-mpi: the sums failed:\n{done.stderr}")
    print("\na step's sum (MPI Allreduce, 2 ranks, shared memory), and what each rank sends on N ranks (ring):")
    for cfg, line in zip(BUFFERS, done.stdout.split("\n")):
        size, seconds = line.split()
        sends = ", ".join(f"N={n} {ring_bytes(int(size), n) / 1e6:.1f} MB" for n in (2, 8, 64))
        print(f"  {cfg:16s} {int(size) / 1e6:7.1f} MB: {float(seconds) * 1000:8.2f} ms;  sends {sends}")


if __name__ == "__main__":
    main()
