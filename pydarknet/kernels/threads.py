"""The thread pools' environment, set when pydarknet is imported, before Numba and numpy start their threads (so
only when pydarknet is imported first); a value the user set wins.

- Numba's kernels run on OpenMP threads: the omp layer first (Numba's own workqueue pool spins while idle and
  steals the cores from OpenBLAS's threads).
- Idle OpenMP threads spin GOMP_SPINCOUNT rounds (SPIN, about 5 ms), then sleep: a forward pass starts dozens of
  parallel loops with a little Python between them, and a loop that finds its threads spinning starts in 2 us
  where one that wakes them takes 50 us, far more in a virtual machine after a pause. 5 ms covers the gaps of a
  forward pass. OpenCV's threads wait the same way.
- Except when numpy's OpenBLAS runs products between the kernels (PYDARKNET_PRODUCTS=blas; training with the
  fast products, whose backward products are OpenBLAS's): its threads then need the cores the spinning ones
  hold, so `spin_briefly` keeps SHORT_SPIN rounds (about 0.1 ms).
- OpenBLAS's own idle threads spin 2^28 cycles (about 0.1 s) after each product, taking the cores from every
  Numba loop that follows: 2^18 cycles (about 90 us) instead.
The timings behind these choices are in docs/notes.md.
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


def one_kernel_thread_here():
    """This thread's parallel kernels run on it alone (Numba's thread count is the calling thread's): for work
    beside a forward pass, whose kernel threads would otherwise share the cores with a second team."""
    import numba
    numba.set_num_threads(1)
