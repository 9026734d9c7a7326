"""Where the kernel threads run during a pass: each on a core of its own, where they fill the process's cores.

Numba's OpenMP threads sleep between passes (threads.py: after GOMP_SPINCOUNT rounds). The first parallel kernel of
a pass after a pause wakes them from the calling thread, and Linux places a woken thread near whatever woke it: on
a 2-core virtual machine the caller woke (from its timer) on the core the kernel thread had slept on, the two then
shared that core until the next load balance (a 4 ms tick), and the placement repeated pass after pass: Tiny
Darknet's --fast forward took 17 ms instead of 7 in stretches of dozens of passes, a pause before each (make
bench's, a stream's frames, a server's requests). With each thread on its own core, every pass took 7 ms.

So where the calling thread's team has as many threads as the process has cores (the usual case), `placed()` runs
a pass with the caller on the first core and kernel thread t on core t: the kernel threads are pinned once (they
only ever run kernels), the caller only for the pass, its own affinity given back after it (threads it starts
later are not confined). Nothing is pinned where the team is smaller (several processes share the machine:
mpiexec's replicas, Dask's workers, `numba.set_num_threads`), where the user binds OpenMP's threads
(OMP_PROC_BIND, OMP_PLACES, GOMP_CPU_AFFINITY), outside Linux, or under another threading layer than OpenMP's.
"""
import os
import sys
import threading
from contextlib import contextmanager

import numba
import numpy as np
from numba import njit, prange, types

USER_BINDING = ("OMP_PROC_BIND", "OMP_PLACES", "GOMP_CPU_AFFINITY")
_SET_AFFINITY = types.ExternalFunction("sched_setaffinity", types.intc(types.intc, types.intp, types.intp))
_pinned = threading.local()   # per calling thread (as Numba's teams are): the cores its team was bound to, and whether


@njit(cache=True, parallel=True)
def _bind_team(masks, bound):
    """Kernel thread t (t > 0; 0 is the caller, left as it is) bound to the CPU set of masks[t] (the bits of
    sched_setaffinity's mask); bound[t] = 1 where that succeeded. One iteration a thread: Numba's schedule splits
    the team's size among the team evenly."""
    for _ in prange(masks.shape[0]):
        t = numba.get_thread_id()
        if t > 0:
            bound[t] = _SET_AFFINITY(0, masks.shape[1] * 8, masks[t].ctypes.data) == 0


def _bind(cpu_sets):
    """Bind the calling thread's kernel thread t to cpu_sets[t] (t >= 1); whether every one was."""
    masks = np.zeros((len(cpu_sets), max(max(s) for s in cpu_sets) // 64 + 1), np.uint64)
    for t, cpus in enumerate(cpu_sets):
        for cpu in cpus:
            masks[t, cpu // 64] |= np.uint64(1) << np.uint64(cpu % 64)
    bound = np.zeros(len(cpu_sets), np.uint8)
    _bind_team(masks, bound)
    return bool(bound[1:].all())


def team_cores():
    """The cores of a placed pass on this thread, sorted (the caller's first, then kernel thread t's), or None
    where nothing is pinned (see the module's docstring)."""
    if not sys.platform.startswith("linux") or any(name in os.environ for name in USER_BINDING):
        return None
    threads = numba.get_num_threads()   # (starts Numba's threads, which chooses the layer)
    cores = sorted(os.sched_getaffinity(0))
    if threads < 2 or threads != len(cores) or numba.threading_layer() != "omp":
        return None
    return cores


@contextmanager
def placed():
    """A pass of parallel kernels on this thread with each of its team's threads on a core of its own (where
    team_cores says so; else as the scheduler places them)."""
    cores = team_cores()
    if cores is not None and getattr(_pinned, "cores", None) != cores:
        _pinned.cores, _pinned.bound = cores, _bind([[core] for core in cores])
    if cores is None or not _pinned.bound:
        yield
        return
    own = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cores[0]})
    try:
        yield
    finally:
        os.sched_setaffinity(0, own)


def release_team():
    """Let this thread's kernel threads run on any of the process's cores again (as before their first placed
    pass)."""
    cores = sorted(os.sched_getaffinity(0))
    _bind([cores] * numba.get_num_threads())
    _pinned.cores = None
