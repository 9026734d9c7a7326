"""The kernel threads' placement during a pass (kernels/placement.py): where the team fills the process's cores and
the pass runs alone, each kernel thread is bound to a core of its own, the first left to the caller, which keeps its
own affinity (moved to that first core where a pass finds it on another); elsewhere nothing is bound."""
import os
import sys
import threading
from pathlib import Path

import numba
import numpy as np
import pytest

from conftest import ROOT
from pydarknet.kernels import placement
from pydarknet.network.network import Network

placing = pytest.mark.skipif(placement.team_cores() is None,
                             reason="the kernel threads are not placed here: not Linux, OpenMP's threads bound by the "
                                    "user, or fewer kernel threads than cores (NUMBA_NUM_THREADS), or one core")


def single_core_threads():
    """{core: count} of this process's threads allowed on exactly one core."""
    found = {}
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            allowed = os.sched_getaffinity(int(task.name))
        except OSError:   # a thread that ended meanwhile
            continue
        if len(allowed) == 1:
            found[min(allowed)] = found.get(min(allowed), 0) + 1
    return found


@pytest.fixture
def released():
    placement.release_team()
    assert single_core_threads() == {}
    yield
    placement.release_team()


@placing
def test_a_pass_binds_each_kernel_thread_to_a_core_of_its_own(released):
    cores, own = placement.team_cores(), os.sched_getaffinity(0)
    with placement.placed():
        assert os.sched_getaffinity(0) == own
        assert single_core_threads() == {core: 1 for core in cores[1:]}
    assert single_core_threads() == {core: 1 for core in cores[1:]}   # they stay bound
    placement.release_team()
    assert single_core_threads() == {}


@placing
def test_a_pass_moves_its_caller_off_a_kernel_threads_core(released):
    """Another library's threads can leave the caller on the core kernel thread 1 is bound to: the pass moves it to
    the first core, its affinity as it was."""
    cores, own = placement.team_cores(), os.sched_getaffinity(0)
    with placement.placed():
        pass
    for _ in range(20):   # as another pool's work had left it: on core 1, free to run anywhere
        os.sched_setaffinity(0, {cores[1]})
        os.sched_setaffinity(0, own)
        if placement._current_core() == cores[1]:   # (not moved meanwhile: kernel thread 1 may still be spinning)
            break
    assert placement._current_core() == cores[1]
    with placement.placed():
        assert placement._current_core() == cores[0]
        assert os.sched_getaffinity(0) == own
        assert single_core_threads() == {core: 1 for core in cores[1:]}


@placing
def test_a_forward_is_placed(released):
    """Network.forward runs its layers placed."""
    net = Network(ROOT / "cfg" / "shapes-tiny.cfg", quiet_unused=True).initialize(seed=1)
    seen = []
    first = net.layers[0]
    forward = first.forward

    def watched(x, network):
        seen.append(single_core_threads())
        return forward(x, network)
    first.forward = watched
    net.forward(np.zeros((1,) + net.input_shape, np.float32))
    assert seen == [{core: 1 for core in placement.team_cores()[1:]}]


@placing
def test_a_smaller_team_is_not_placed(released):
    """A thread whose kernels run on fewer threads than the cores (numba.set_num_threads, as several processes
    sharing the machine do) runs as the scheduler places it."""
    threads = numba.get_num_threads()
    numba.set_num_threads(threads - 1)
    try:
        assert placement.team_cores() is None
        with placement.placed():
            assert single_core_threads() == {}
    finally:
        numba.set_num_threads(threads)


@placing
@pytest.mark.parametrize("variable,value", [("OMP_PROC_BIND", "close"), ("OMP_PLACES", "cores"),
                                            ("GOMP_CPU_AFFINITY", "0-1")])
def test_the_users_binding_wins(released, monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    assert placement.team_cores() is None
    with placement.placed():
        assert single_core_threads() == {}


def in_a_thread(call):
    """call() in a thread of its own: its result."""
    result = {}
    thread = threading.Thread(target=lambda: result.update(value=call()))
    thread.start()
    thread.join()
    return result["value"]


@placing
def test_each_calling_thread_places_its_own_team(released):
    """Numba's OpenMP teams are per calling thread: a pass from a second thread binds that thread's team instead of
    the first's."""
    cores = placement.team_cores()
    with placement.placed():
        pass

    def other():
        with placement.placed():
            return single_core_threads()
    assert in_a_thread(other) == {core: 1 for core in cores[1:]}


@placing
def test_a_second_pass_at_once_lets_every_thread_go(released):
    """While one pass runs placed, another thread's pass starts: both run as the scheduler places them (two teams
    bound to the same cores shared them worse)."""
    cores = placement.team_cores()
    go, done, seen = threading.Event(), threading.Event(), {}

    def other():
        go.wait()
        with placement.placed():
            seen["inside"] = single_core_threads()
        done.set()
    thread = threading.Thread(target=other)
    thread.start()
    with placement.placed():
        assert single_core_threads() == {core: 1 for core in cores[1:]}
        go.set()
        done.wait()
        assert seen["inside"] == {} and single_core_threads() == {}
    thread.join()
    with placement.placed():   # alone again: placed again
        assert single_core_threads() == {core: 1 for core in cores[1:]}


def test_nothing_is_placed_outside_linux(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert placement.team_cores() is None
