"""pydarknet: darknet's cfg and weights files, darknet's numbers, in Python."""
import os

# Two thread pools share the cores: OpenBLAS's (the matrix products) and Numba's (everything else).
# Numba's default pool and OpenMP's default policy spin while idle and steal the cores from the other pool
# (measured: yolov3-tiny 2.5x slower). OpenMP threads that sleep when idle avoid it; this only takes
# effect when pydarknet is imported before Numba starts its threads.
os.environ.setdefault("NUMBA_THREADING_LAYER_PRIORITY", "omp tbb workqueue")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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
