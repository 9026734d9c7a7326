"""The thread pools' environment, set when pydarknet is imported, before Numba and numpy start their threads (so
only when pydarknet is imported first); a value the user set wins.

- Numba's kernels run on OpenMP threads: the omp layer first (Numba's own workqueue pool spins while idle and
  steals the cores from OpenBLAS's threads: yolov3-tiny 2.5x slower when products went through BLAS).
- Idle OpenMP threads spin GOMP_SPINCOUNT rounds, then sleep. A forward pass starts dozens of parallel loops with
  a little Python between them: a loop that finds its threads spinning starts in 2 us, one that wakes them in
  50 us (sleeping at once, OMP_WAIT_POLICY=PASSIVE: Tiny Darknet 9.7 -> 6.3 ms). In a virtual machine, a sleeping
  thread costs more: its virtual CPU halts, and after a pause of 0.1 s or more the host answers every wake-up
  slowly for a while, so yolov3-tiny's forward took 50-55 ms instead of 22 after each pause when the threads
  slept after 3000 rounds (about 0.1 ms). 300000 rounds (about 5 ms) cover the gaps of a forward pass: 24-27 ms
  after a pause, the same 21-22 ms without; a stream of images 31 -> 34 images/s. OpenCV's threads wait
  the same way.
- Except when numpy's OpenBLAS runs products between the kernels (PYDARKNET_PRODUCTS=blas; training with the
  fast products, whose backward products are OpenBLAS's): its threads then need the cores the spinning ones
  hold (yolov3-tiny's blas forward 37 -> 71 ms, training 20-33 % slower), so `spin_briefly` keeps 3000 rounds.
- OpenBLAS's own idle threads spin 2^28 cycles (about 0.1 s) after each product, taking the cores from every
  Numba loop that follows (a small exact product 0.06 -> 0.45 ms): 2^18 cycles (about 90 us) instead
  (PYDARKNET_PRODUCTS=blas: yolov3-tiny 53-63 -> 39-45 ms).
"""
import os

SPIN = "300000"
SHORT_SPIN = "3000"
_OWN_SPIN = "GOMP_SPINCOUNT" not in os.environ   # the spin is pydarknet's choice, not the user's


def configure():
    os.environ.setdefault("NUMBA_THREADING_LAYER_PRIORITY", "omp tbb workqueue")
    os.environ.setdefault("GOMP_SPINCOUNT", SHORT_SPIN if os.environ.get("PYDARKNET_PRODUCTS") == "blas" else SPIN)
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "18")


def cores():
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def spin_briefly():
    """OpenBLAS will run products between the kernels: idle OpenMP threads spin SHORT_SPIN rounds. OpenMP reads
    the setting when Numba starts its threads (the first parallel kernel): later calls change nothing."""
    if _OWN_SPIN:
        os.environ["GOMP_SPINCOUNT"] = SHORT_SPIN
