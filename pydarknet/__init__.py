"""pydarknet: darknet's cfg and weights files, darknet's numbers, in Python."""
import os

# Numba's kernels run on OpenMP threads (the omp layer first: Numba's own workqueue pool spins while idle and
# steals the cores from OpenBLAS's threads, yolov3-tiny 2.5x slower when products went through BLAS). Idle
# OpenMP threads spin a short while, then sleep: GOMP_SPINCOUNT=3000 is about 60-120 us here, longer than the
# Python between two kernels of a forward pass, so a parallel loop starts in 2 us instead of the 50 us of
# waking sleeping threads (OMP_WAIT_POLICY=PASSIVE: Tiny Darknet's forward 9.7 -> 6.3 ms, yolov3-tiny 30.9 ->
# 23.5 ms on an AVX-512 EPYC); and short enough that OpenBLAS's threads (PYDARKNET_PRODUCTS=blas) lose about
# 10 %. Set before Numba starts its threads, so only when pydarknet is imported first.
os.environ.setdefault("NUMBA_THREADING_LAYER_PRIORITY", "omp tbb workqueue")
os.environ.setdefault("GOMP_SPINCOUNT", "3000")

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
