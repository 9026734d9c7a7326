"""pydarknet: darknet's cfg and weights files, darknet's numbers, in Python."""
import os

# Numba's kernels run on OpenMP threads (the omp layer first: Numba's own workqueue pool spins while idle and
# steals the cores from OpenBLAS's threads, yolov3-tiny 2.5x slower when products went through BLAS). Idle
# OpenMP threads spin a short while, then sleep: GOMP_SPINCOUNT=3000 is about 60-120 us here, longer than the
# Python between two kernels of a forward pass, so a parallel loop starts in 2 us instead of the 50 us of
# waking sleeping threads (OMP_WAIT_POLICY=PASSIVE: Tiny Darknet's forward 9.7 -> 6.3 ms, yolov3-tiny 30.9 ->
# 23.5 ms on an AVX-512 EPYC); and short enough that OpenBLAS's threads (PYDARKNET_PRODUCTS=blas) lose about
# 10 %. numpy's OpenBLAS threads spin 2^28 cycles (about 0.1 s) after each of its products, taking the cores
# from every Numba loop that follows (a small exact product 0.06 -> 0.45 ms): 2^18 cycles (about 90 us) is the
# same short spin (PYDARKNET_PRODUCTS=blas: yolov3-tiny 53-63 -> 39-45 ms). Set before Numba and numpy start
# their threads, so only when pydarknet is imported first.
os.environ.setdefault("NUMBA_THREADING_LAYER_PRIORITY", "omp tbb workqueue")
os.environ.setdefault("GOMP_SPINCOUNT", "3000")
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "18")

# The Python API from the top (`from pydarknet import Detector`), imported on first use: `import pydarknet`
# stays cheap (no Numba) for the command line and for scripts that only read files.
API = {"Detector": "predict", "Classifier": "predict", "Network": "network"}
__all__ = list(API)


def __getattr__(name):
    if name not in API:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(f"{__name__}.{API[name]}"), name)


def __dir__():
    return sorted(list(globals()) + __all__)
