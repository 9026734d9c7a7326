"""Where the kernel threads run: each on a core of its own, where they fill the process's cores.

Numba's OpenMP threads sleep between passes (threads.py: after GOMP_SPINCOUNT rounds). The first parallel kernel of
a pass after a pause wakes them from the calling thread, and Linux places a woken thread near whatever woke it: on
a 2-core virtual machine the caller woke (from its timer) on the core the kernel thread had slept on, the two then
shared that core until the next load balance (a 4 ms tick), and the placement repeated pass after pass: Tiny
Darknet's --fast forward took 17 ms instead of 7 in stretches of dozens of passes, a pause before each (make
bench's, a stream's frames, a server's requests).

So where the calling thread's team has as many threads as the process has cores (the usual case) and its pass runs
alone, kernel thread t is bound to core t (t >= 1, the cores sorted), leaving the first to the caller: a forward
every 30 ms, 7.6 ms on average instead of 10.2. They stay bound after the pass (they only ever run kernels). The
caller keeps the affinity it has: binding it too for the pass measured 6.5-6.9 ms, but a thread started within a
pass (a library's pool, started lazily) would keep its one core for good. But a pass that finds the caller on a
kernel thread's core moves it to the first: another library's threads had left it there (right after an ONNX Runtime
session's run, a third to half of Tiny Darknet's --fast forwards took 10-25 ms instead of 7.3, the caller and kernel
thread 1 sharing core 1 while core 0 idled, until a load balance). When a second pass starts meanwhile (a threaded
server's), the bound threads are let go: two teams bound to the same cores ran yolov4-tiny from 4 threads at
15.2-16.3 images/s against 17.3-17.8 free. Nothing is bound where the team is smaller (several processes share the
machine: mpiexec's replicas, Dask's workers, `numba.set_num_threads`), where the user binds OpenMP's threads
(OMP_PROC_BIND, OMP_PLACES, GOMP_CPU_AFFINITY), outside Linux, or under another threading layer than OpenMP's.
"""
import ctypes
import functools
import os
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import numba
import numpy as np
from numba import njit, prange, types
from numba.np.ufunc import parallel

USER_BINDING = ("OMP_PROC_BIND", "OMP_PLACES", "GOMP_CPU_AFFINITY")
_GETTID = types.ExternalFunction("gettid", types.intc())


def kernel_threads():
    """numba.get_num_threads(): the size of the calling thread's team of kernel threads, without the lock Numba's
    takes on every call (0.8 us of the 9 a 1 x 1 layer of Yolo-Fastest takes at small sizes, asked by every layer of
    a pass): once its threads are started, Numba's own C function for it (numba 0.58 to 0.68)."""
    if parallel._is_initialized:
        return parallel._get_num_threads()
    return numba.get_num_threads()


@njit(cache=True, parallel=True)
def _thread_ids(ids):
    """ids[t] = the system's id of the calling thread's kernel thread t (0: the caller). One iteration a thread:
    Numba's schedule splits the team's size among the team evenly."""
    for _ in prange(ids.size):
        ids[numba.get_thread_id()] = _GETTID()


@functools.cache
def _libc():
    """The C library, or None where it cannot be loaded."""
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


@functools.cache
def _has_thread_calls():
    """Whether the C library has gettid (glibc since 2.30), which the kernel above calls, and sched_getcpu."""
    return _libc() is not None and hasattr(_libc(), "gettid") and hasattr(_libc(), "sched_getcpu")


def team_cores():
    """The process's cores where this thread's passes are placed, sorted (kernel thread t's is the t-th), or None
    where nothing is bound (see the module's docstring)."""
    if not sys.platform.startswith("linux") or any(name in os.environ for name in USER_BINDING):
        return None
    threads = numba.get_num_threads()   # (starts Numba's threads, which chooses the layer)
    cores = sorted(os.sched_getaffinity(0))
    if threads < 2 or threads != len(cores) or numba.threading_layer() != "omp" or not _has_thread_calls():
        return None
    return cores


class _Placement:
    """The passes running in this process, and the one team whose kernel threads are bound: {"caller": the
    threading ident of the thread whose team it is, "cores", "ids": the team's system ids, the caller's first}."""

    def __init__(self):
        self.lock, self.running, self.bound = threading.Lock(), 0, None

    def start(self):
        """A pass starts on this thread: place its team if it runs alone, else let every thread go."""
        with self.lock:
            self.running += 1
            cores = team_cores() if self.running == 1 else None
            if cores is None:
                self.release()
                return
            me = threading.get_ident()
            if not (self.bound and self.bound["caller"] == me and self.bound["cores"] == cores):
                self.release()
                ids = thread_ids()
                if ids is None:
                    return
                self.bound = {"caller": me, "cores": cores, "ids": ids}
                try:
                    for tid, core in zip(ids[1:], cores[1:]):
                        if not _ours(tid):
                            raise ProcessLookupError(tid)
                        os.sched_setaffinity(tid, {core})
                except OSError:   # a kernel thread ended (OpenMP made the team anew): find it again next pass
                    _team.ids = None
                    self.release()
                    return
            _to_own_core(cores)

    def end(self):
        with self.lock:
            self.running -= 1

    def release(self):
        """Let the bound team's kernel threads run on any of the process's cores again."""
        bound, self.bound = self.bound, None
        for tid in bound["ids"][1:] if bound else ():
            try:
                if _ours(tid):
                    os.sched_setaffinity(tid, bound["cores"])
            except OSError:   # the thread ended meanwhile
                pass


def _to_own_core(cores):
    """Move the calling thread to the core left to it, the first, where the pass finds it on a bound kernel
    thread's (see the module's docstring); its affinity stays the one it had, `cores`: set to that core and back,
    which leaves it running there."""
    if _current_core() != cores[0]:
        os.sched_setaffinity(0, {cores[0]})
        os.sched_setaffinity(0, cores)


def _current_core():
    """The core the calling thread runs on."""
    return _libc().sched_getcpu()


def _ours(tid):
    """Whether the system's thread id `tid` is still a thread of this process's (not an id reused after it ended)."""
    return Path(f"/proc/self/task/{tid}").exists()


_placement = _Placement()
_team = threading.local()   # this thread's team's system ids (`ids`), found once


def thread_ids():
    """The system ids of this thread's team of kernel threads (the caller's first), found once per team size, or
    None where the kernel did not give each one a thread. (A wheel's warm-up calls it: a pass runs the kernel only
    where the team fills the cores.)"""
    size = numba.get_num_threads()
    known = getattr(_team, "ids", None)
    if known is None or len(known) != size:
        ids = np.zeros(size, np.int32)
        _thread_ids(ids)
        known = _team.ids = [int(i) for i in ids] if len(set(ids)) == size and ids.all() else []
    return known or None


@contextmanager
def placed():
    """A pass of parallel kernels on this thread with each of its team's kernel threads on a core of its own
    (where team_cores says so and no other pass runs; else as the scheduler places them)."""
    _placement.start()
    try:
        yield
    finally:
        _placement.end()


def release_team():
    """Let the kernel threads bound by a placed pass run on any of the process's cores again."""
    with _placement.lock:
        _placement.release()
