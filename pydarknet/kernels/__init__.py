"""The Numba kernels: every loop over pixels, boxes or weights; threads, start-up, arrays on whole cache lines.
May import: files.

The training kernels (`backward`, `loss`: about 60 of them) are imported on first use, when a layer first trains:
loading their cached compilations cost every inference command 6 ms of start-up. The layers import these two
modules and call `backward.axpy(...)`, so naming a function does not load it."""
import importlib.util
import sys
import time

IMPORTED = time.time()   # before any kernel of the package compiles: what this process's Numba writes is newer


def _on_first_use(name):
    """The module pydarknet.kernels.<name>, executed when one of its attributes is first read."""
    full = f"{__name__}.{name}"
    spec = importlib.util.find_spec(full)
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[full] = module
    spec.loader.exec_module(module)
    return module


backward = _on_first_use("backward")
loss = _on_first_use("loss")


def cache_folder():
    """The folder where Numba caches the kernels of pydarknet/kernels (those of pydarknet/ go beside it), and
    where what is derived from them is kept (the tasks' compile times, kernel records, exported graphs)."""
    from pathlib import Path

    from . import activations
    return Path(activations.activate_array._cache.cache_path)
