"""How a command stops on a signal: Ctrl-C's SIGINT, and SIGTERM and SIGHUP, which the things that run long jobs
send (Slurm at preemption or a time limit, then SIGKILL after a grace period; `docker stop`, Kubernetes, systemd,
`timeout`; a closed terminal).

The commands (cli.main, never the Python API: a library leaves its caller's signals alone) handle all three as
Python handles Ctrl-C: the first raises KeyboardInterrupt (a StopSignal naming it) in the main thread, so that each
command's Ctrl-C clean-up runs for every one of them: train saves _last, demo finishes its video, a result file
written as it goes is removed or completed, never left half written under its name. A second signal ends the
process at once. The command then exits with 128 + the first signal's number, as a shell reports a process that
a signal ended (130, 143, 129). A signal that the process was started ignoring (`nohup` ignores SIGHUP, a
background job of a non-interactive shell SIGINT) stays ignored.
"""
import os
import signal
import sys
import threading
from contextlib import contextmanager

STOPS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_received = []   # the stop signals that came through stop_on_signals's handler, in order


class StopSignal(KeyboardInterrupt):
    """A stop signal, raised as Ctrl-C's KeyboardInterrupt is; its text is the signal's name."""


def handled(number):
    """Whether a stop signal reaches the process (it was not started ignoring it)."""
    return signal.getsignal(number) is not signal.SIG_IGN


def stop_on_signals():
    """Install the commands' handler for STOPS (see the module's docstring)."""
    for number in STOPS:
        if handled(number):
            signal.signal(number, _stop)


def _stop(number, frame):
    _received.append(number)
    for other in STOPS:
        if handled(other):
            signal.signal(other, lambda number, frame: stop_at_once(number))
    raise StopSignal(signal.Signals(number).name)


def stop_at_once(number):
    """A second stop signal, during the first's clean-up: the process ends now, saying so."""
    print(f"pydarknet: {signal.Signals(number).name} again: stopped at once", file=sys.stderr, flush=True)
    os._exit(128 + number)


def exit_status():
    """128 + the number of the first stop signal received, or Ctrl-C's 130 where none came through the handler
    (a KeyboardInterrupt of Python's own)."""
    return 128 + _received[0] if _received else 128 + signal.SIGINT


def stopped_line():
    """The command's last line when a stop signal ended it."""
    if not _received or _received[0] == signal.SIGINT:
        return "pydarknet: interrupted"
    return f"pydarknet: stopped by {signal.Signals(_received[0]).name}"


@contextmanager
def held():
    """A stop signal waits until the block is done (a network's update: the parameters are then all updated or none
    is; a video frame's outputs: printed, drawn and written, or none of them), then reaches the handler it was held
    from (a command's raises KeyboardInterrupt; Python's own SIGTERM ends the process). Only the main thread
    receives signals; elsewhere a no-op, and where Ctrl-C's handler never raises (marked `holds_nothing`: a rank
    of an MPI job, train/mpi.py, which stops the job at its ranks' next meeting)."""
    if (threading.current_thread() is not threading.main_thread()
            or getattr(signal.getsignal(signal.SIGINT), "holds_nothing", False)):
        yield
        return
    pending = []
    previous = {number: signal.signal(number, lambda number, frame: pending.append(number))
                for number in STOPS if handled(number)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if pending:
        signal.raise_signal(pending[0])
