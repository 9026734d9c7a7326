"""Training across processes and machines: `mpiexec -n N pydarknet train ...` (Open MPI's mpirun and Slurm's srun
alike), one replica a process, or several with -gpus; every message goes through MPI (mpi4py, the `mpi` extra).

Every rank builds the network from the same files and seed and trains its replicas on their own share of each
iteration's images (loader seed: the run's seed plus the replica's number over all ranks, as `-gpus cpu,cpu`
numbers its replicas in one process). Each iteration, after the replicas' forward and backward:
1. check in: each rank sends rank 0 its state (ok, failed with the error's text, or interrupted by Ctrl-C,
   SIGTERM or SIGHUP: tasks/stops.py; a launcher passes Ctrl-C and SIGTERM on to every rank, Slurm signals them) and
   its replicas' costs; rank 0 answers each with one verdict: go on (with every replica's cost), or stop (why,
   and the file to resume from). Every rank so learns of a stop at the same point of the same iteration.
2. one Allreduce adds every rank's updates and rolling statistics (a single float32 buffer), and every rank
   applies the same averaged step to its own copy (replicas.py): the copies stay equal without sending
   parameters. Bits: with two ranks each element is one float32 addition, the same as in one process; with
   more, MPI's reduction order is its own, so the sum may differ in the last bit from `-gpus cpu,cpu,...`
   (6e-8 after 5 iterations, 2 ranks of 2 replicas against 4 in one process). MPI's Allreduce gives every rank
   the same sum (MPICH's algorithms do, as the standard advises), so the copies never part.
Rank 0 alone prints, draws and writes files; the other ranks print only errors, each naming its rank.

Faults end the whole job in bounded time, with one line naming the rank, the cause, and the weights file to
resume from (every file is written whole, weights.atomic_write):
- an error on a rank (an unreadable image, a data list it cannot read, out of memory in Python) is its state
  at the next check-in: rank 0 saves _last (the iterations done) and says so;
- a rank killed by a signal (kill -9, the kernel's out-of-memory killer) is reported by its supervisor, the
  process it was forked from (supervise): MPICH's launcher ends every other rank the instant one dies;
- a rank that falls silent (stopped, frozen, cut off) is found by whoever waits for it, once nothing at all has
  come from it for `timeout` seconds. Each rank sends small beats from a thread while it works, so a rank that
  is only slow (a first compile on a cold cache, rank 0 evaluating -map) is waited for, however long.
"""
import importlib.util
import os
import signal
import sys
import threading
import time
import traceback

import numpy as np

from ...files.config import DarknetError, chatter, note, set_quiet
from ...files.errors import Interrupted, install_hint
from ..stops import STOPS, handled, stop_at_once

# Set by MPI launchers in the processes they start: only a hint, read to decide whether to load MPI at all (plain
# training never pays for it); the rank and size are MPI's own. MPICH's and Intel MPI's hydra, Slurm's PMI
# (PMI_SIZE), Open MPI (OMPI_COMM_WORLD_SIZE), MVAPICH, Slurm's srun (SLURM_STEP_NUM_TASKS).
SIZE_HINTS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "SLURM_STEP_NUM_TASKS")
STATUS, VERDICT, SAVED, BEAT = 1, 2, 3, 4    # message tags
WAITED_FOR = {STATUS: "its state", VERDICT: "rank 0's verdict", SAVED: "rank 0's _last.weights"}
STAGGER = 2.0   # seconds between the ranks that watch rank 0: the first to give up speaks, MPI_Abort ends the rest
SAME_STOP = 1.0   # a stop signal that reaches a rank again within this many seconds (from the launcher and through
                  # its supervisor) is the same stop; a later one ends the rank at once


def launched():
    """Whether a launcher started this process as one of several (see SIZE_HINTS)."""
    for name in SIZE_HINTS:
        try:
            if int(os.environ.get(name, "1")) > 1:
                return True
        except ValueError:
            pass
    return False


def local_device(local_rank, gpus):
    """The device of a rank not given -gpus: the GPU numbered as its rank among the ranks on its machine (round
    robin where there are more ranks than GPUs; with the launcher's one GPU a rank, that one), else the CPU."""
    return f"cuda:{local_rank % gpus}" if gpus else "cpu"


# -- the supervisor -----------------------------------------------------------------------------------------------
_reports = {"fd": None}


def supervise():
    """Fork: the child returns and trains; the parent waits for it and, if a signal ends it, says so in one line
    naming its rank, its iteration and the file to resume from, as the child last reported them (`report`). The
    parent keeps the launcher's connection (MPICH's PMI_FD) open, so that the launcher learns of the death from
    the parent's exit, after the line; it then ends the other ranks at once. Called before MPI is loaded."""
    sys.stdout.flush()
    sys.stderr.flush()
    reports, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(reports)
        _reports["fd"] = write
        return
    os.close(write)
    # a launcher that signals this process alone (not its group) still reaches the rank; the rank takes two as one
    for number in STOPS:
        if handled(number):
            signal.signal(number, lambda number, frame: os.kill(child, number))
    last = b""
    with os.fdopen(reports, "rb") as lines:
        for line in lines:
            last = line
    _, status = os.waitpid(child, 0)
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) not in STOPS:
        print(killed_line(last.decode(errors="replace"), os.WTERMSIG(status), child), file=sys.stderr, flush=True)
        os._exit(1)
    os._exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.waitstatus_to_exitcode(status))


def report(rank, iteration, resume):
    """Tell the supervisor where this rank is (a line it keeps the last of)."""
    if _reports["fd"] is not None:
        os.write(_reports["fd"], f"{rank}\t{iteration}\t{resume}\n".encode())


def killed_line(last_report, number, pid):
    name = signal.Signals(number).name
    why = f"{name} (kill -9, or out of memory)" if number == signal.SIGKILL else name
    fields = last_report.rstrip("\n").split("\t")
    if len(fields) != 3:
        return f"pydarknet: error: a rank (process {pid}) was killed by {why} before it started training"
    rank, iteration, resume = fields
    return f"pydarknet: error: rank {rank} was killed by {why} in iteration {iteration}: the job stops; {resume}"


# -- the group ----------------------------------------------------------------------------------------------------
class Stopped(Exception):
    """The job stops: every rank learnt it at the same check-in (or a rank watching another gave up on it:
    `abort`). `cause` names the rank; `status` is the exit status."""

    def __init__(self, cause, status=1, abort=False):
        super().__init__(cause)
        self.cause, self.status, self.abort = cause, status, abort

    @property
    def interrupted(self):
        """Whether a stop signal on a rank stops the job (the status is then 128 + its number)."""
        return self.status - 128 in STOPS


def describe(error):
    """An error as its user reads it: pydarknet's own as they are, any other with its type."""
    if isinstance(error, (DarknetError, OSError)):
        return str(error)
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


class Group:
    """This process's place in an MPI job: its rank, the job's size, which replicas are its own (`first`,
    `total`, known after `start`), what the job can resume from, and the meetings of every iteration
    (check_in, sum, saved, close). Loads MPI (mpi4py); MPI starts here."""

    def __init__(self, timeout=60.0, debug=False):
        from mpi4py import MPI
        self.MPI, self.comm = MPI, MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.local_rank = self.comm.Split_type(MPI.COMM_TYPE_SHARED).Get_rank()
        self.timeout, self.debug = float(timeout), debug
        self.first, self.total = 0, 1
        self.resume = "no weights saved yet: start again"
        self.iteration = 0
        self.interrupted, self.interrupted_at = 0, 0.0   # the first stop signal's number, and when it came
        self.checked_in = False   # between this iteration's check-in and its sum: a failure can no longer be told
        self.errors = sys.stderr  # where this rank's errors go (other ranks' Python output is muted: mute)
        self._lock = threading.Lock()   # one MPI call at a time (MPI_THREAD_SERIALIZED is all this needs)
        self._quit = threading.Event()
        self._sends = []
        self._empty = np.empty(0, np.uint8)

        def interrupt(number, frame):
            now = time.monotonic()
            if not self.interrupted:
                self.interrupted, self.interrupted_at = number, now
            elif now - self.interrupted_at > SAME_STOP:   # another stop, during the job's: at once, as a command's
                stop_at_once(number)
        interrupt.holds_nothing = True   # stops.held: this handler never raises
        for number in STOPS:
            if handled(number):
                signal.signal(number, interrupt)
        self._beats = threading.Thread(target=self._beat, name="pydarknet-mpi-beats", daemon=True)
        self._beats.start()

    # -- what the ranks say to each other
    def start(self, replicas):
        """The check-in before the first iteration: every rank is ready with `replicas` replicas (or the job
        stops now). Numbers the replicas over the ranks."""
        counts = self.check_in([replicas])
        self.first, self.total = sum(counts[:self.rank]), sum(counts)
        self.checked_in = False   # no sum follows this one

    def check_in(self, payload, error=None):
        """This iteration's meeting (see the module's docstring): `payload` is this rank's list of values (its
        replicas' costs); returns every rank's, joined in rank order, or raises Stopped."""
        if error is not None:
            state = ("failed", describe(error))
        else:
            state = ("interrupted", self.interrupted) if self.interrupted else ("ok",)
        mine = (state, list(payload))
        if self.rank == 0:
            told = [mine] + [self._receive(source, STATUS) for source in range(1, self.size)]
            verdict = self._judge(told)
            self._wait_all([self._isend(verdict, dest, VERDICT) for dest in range(1, self.size)])
        else:
            self._wait_all([self._isend(mine, 0, STATUS)])
            verdict = self._receive(0, VERDICT)
        stop, payloads, self.resume = verdict
        report(self.rank, self.iteration, self.resume)
        if stop:
            raise Stopped(*stop)
        self.checked_in = True
        return [value for values in payloads for value in values]

    def _judge(self, told):
        """Rank 0's verdict on what every rank told it: the first failure stops the job (exit status 1), else
        a stop signal on any rank (128 + the first's number, as tasks/stops.py's commands)."""
        failed = [(rank, state[1]) for rank, (state, _) in enumerate(told) if state[0] == "failed"]
        if failed:
            stop = (f"rank {failed[0][0]}: {failed[0][1]}", 1)
        elif any(state[0] == "interrupted" for state, _ in told):
            stop = ("interrupted", 128 + next(state[1] for state, _ in told if state[0] == "interrupted"))
        else:
            stop = None
        return stop, [values for _, values in told], self.resume

    def stopped(self, error):
        """The verdict on an error of this rank's (or a Stopped already raised): told at this iteration's
        check-in; past it the others are already adding, so this rank says it itself and ends the job."""
        if isinstance(error, Stopped):
            return error
        if self.debug:
            traceback.print_exception(error, file=self.errors)
        if self.checked_in:
            self.abort(self.stop_line(Stopped(f"rank {self.rank}: {describe(error)}")))
        try:
            self.check_in([], error)
        except Stopped as stop:
            return stop

    def sum(self, buffer):
        """`buffer` (float32) summed over every rank, into each (MPI's Allreduce, in place)."""
        with self._lock:
            request = self.comm.Iallreduce(self.MPI.IN_PLACE, buffer, op=self.MPI.SUM)
        self._wait(request.Test, "the sum of the updates", spin=True)
        self.checked_in = False

    def saved(self, path, iteration):
        """Rank 0 saved `path` after `iteration` (the others wait until it is whole): the job's resume point."""
        if self.rank == 0:
            self.resume = f"resume from {path} (iteration {iteration})"
            self._wait_all([self._isend(self.resume, dest, SAVED) for dest in range(1, self.size)])
        else:
            self.resume = self._receive(0, SAVED)
        report(self.rank, self.iteration, self.resume)

    def close(self):
        """The end, together (rank 0 has written its last file): then the beats stop."""
        with self._lock:
            request = self.comm.Ibarrier()
        self._wait(request.Test, "the end")
        self._quit.set()
        self._beats.join()
        self._wait_all(self._sends)

    def begin(self, iteration):
        """This rank starts `iteration` (what its supervisor and its lines will name)."""
        self.iteration = iteration
        report(self.rank, iteration, self.resume)

    def stop_line(self, stop):
        """The one line a stop is told in (Ctrl-C's is the note of what was saved)."""
        if not self.iteration:
            return f"pydarknet: error: {stop.cause}: the job stops before its first iteration"
        return f"pydarknet: error: {stop.cause}: the job stops in iteration {self.iteration}; {self.resume}"

    def end(self, stop):
        """Stop as `stop` says: its line from rank 0 (or from the rank that gave up on a silent one), then every
        rank exits with its status."""
        if not stop.interrupted and (self.rank == 0 or stop.abort):
            print(self.stop_line(stop), file=self.errors, flush=True)
        if stop.abort:
            self.abort(None)
        self.close()
        if stop.interrupted:
            raise Interrupted(stop.cause, stop.status)
        raise SystemExit(stop.status)

    def abort(self, line):
        """End every rank now (MPI_Abort), after `line`; MPICH's own 'Abort(1) on node ...' line, which would
        repeat it, is not shown. The launcher is given half a second to pass the line on: MPICH's ends the
        processes without reading what they wrote last (one run in eight lost it)."""
        if line:
            print(line, file=self.errors, flush=True)
        sys.stdout.flush()
        time.sleep(0.5)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        self.comm.Abort(1)

    def mute(self):
        """Ranks other than 0 print nothing but errors: Python's output goes nowhere, errors to the real stderr."""
        set_quiet(True)
        self.errors = sys.stderr
        sys.stdout = sys.stderr = open(os.devnull, "w")

    # -- waiting, with the beats
    def _isend(self, value, dest, tag):
        with self._lock:
            return self.comm.isend(value, dest=dest, tag=tag)

    def _receive(self, source, tag):
        self._wait(lambda: self.comm.iprobe(source=source, tag=tag), WAITED_FOR[tag])
        with self._lock:
            return self.comm.recv(source=source, tag=tag)

    def _wait_all(self, requests):
        self._wait(lambda: self.MPI.Request.Testall(requests), "its messages to go")

    def _beat(self):
        """Every few seconds, an empty message to the ranks that watch this one (rank 0: all; the others: 0)."""
        watchers = range(1, self.size) if self.rank == 0 else (0,)
        while not self._quit.wait(min(5.0, max(0.2, self.timeout / 6))):
            with self._lock:
                try:
                    self._sends = [r for r in self._sends if not r.Test()]
                    self._sends += [self.comm.Isend([self._empty, self.MPI.BYTE], dest=w, tag=BEAT) for w in watchers]
                except self.MPI.Exception:   # the job is ending under it
                    return

    def _wait(self, done, what, spin=False):
        """Poll `done()` until it is true, reading beats every 50 ms meanwhile. A rank watched (rank 0 watches all,
        the others rank 0) from which nothing comes for `timeout` seconds is lost: the job stops. `spin`: poll
        without pausing, as MPI's blocking calls do (a collective advances only while polled: a sum polled every
        millisecond took 7 ms instead of 0.3 for 2 MB); otherwise pauses growing to 1 ms leave the cores to others."""
        watched = range(1, self.size) if self.rank == 0 else (0,)
        patience = self.timeout + (STAGGER * (self.rank - 1) if self.rank else 0)
        heard = dict.fromkeys(watched, time.monotonic())
        status, pause, listened = self.MPI.Status(), 0.00005, 0.0
        while True:
            with self._lock:
                if done():
                    return
            now = time.monotonic()
            if now - listened >= 0.05:
                listened = now
                with self._lock:
                    while self.comm.Iprobe(source=self.MPI.ANY_SOURCE, tag=BEAT, status=status):
                        self.comm.Recv([self._empty, self.MPI.BYTE], source=status.Get_source(), tag=BEAT)
                        heard[status.Get_source()] = now
                    for source in watched:   # a message waiting from a rank is word from it too
                        if self.comm.Iprobe(source=source, tag=self.MPI.ANY_TAG):
                            heard[source] = now
                silent = [source for source in watched if now - heard[source] > patience]
                if silent:
                    raise Stopped(f"rank {silent[0]} sent nothing for {self.timeout:g} s (stopped, frozen or cut "
                                  f"off) while rank {self.rank} waited for {what}", 1, abort=True)
            if not spin:
                time.sleep(pause)
                pause = min(pause * 2, 0.001)


# -- the command --------------------------------------------------------------------------------------------------
def train_ranks(make_run, progress=None, timeout=60.0, debug=False, devices=()):
    """One rank of `mpiexec -n N pydarknet train ...`: `make_run(group, devices)` builds this rank's TrainingRun on
    `devices` (-gpus's; none given: local_device's GPU, else the CPU)."""
    if importlib.util.find_spec("mpi4py") is None:
        raise DarknetError(f"started by an MPI launcher, but mpi4py is missing: {install_hint('mpi')}")
    supervise()
    group = Group(timeout, debug)
    if group.rank:
        group.mute()
    try:
        try:
            if not devices:   # -gpus not given: the GPU of this rank's place on its machine, or the CPU
                from ...network.cuda.backend import device_count
                device = local_device(group.local_rank, device_count())
                devices = [] if device == "cpu" else [device]
            run = make_run(group, devices)
        except Exception as error:   # noqa: BLE001 - every rank learns of it at the check-in
            raise group.stopped(error) from None
        group.start(len(run.nets))
    except Stopped as stop:
        group.end(stop)
    if not chatter["quiet"]:   # rank 0's (the others are quiet)
        note("\n".join(run.net.summary()))
        note(f"MPI: {group.size} ranks, {group.total} replicas (rank 0's on {', '.join(n.device for n in run.nets)}): "
             f"{group.total} x {run.net.batch * run.net.subdivisions} images an iteration")
    run.net.quiet = chatter["quiet"]
    try:
        final = run.run(progress=progress if group.rank == 0 else None)
        group.close()
    except Stopped as stop:   # given up on a silent rank while telling a failure, or in the end's meeting
        group.end(stop)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as error:   # outside the iterations' meetings (a bug): this rank says it and ends the job
        group.abort(f"pydarknet: error: rank {group.rank}: {describe(error)}")
    return final
