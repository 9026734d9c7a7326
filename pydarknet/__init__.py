"""pydarknet: darknet's cfg and weights files, darknet's numbers, in Python."""
from .kernels import threads

threads.configure()   # the thread pools' environment (threads.py says why), before Numba and numpy start them

# The Python API from the top (`from pydarknet import Detector`), imported on first use: `import pydarknet`
# stays cheap (no Numba) for the command line and for scripts that only read files.
API = {"Detector": "tasks.predict", "Classifier": "tasks.predict", "Network": "network.network",
       "Tracker": "results.track", "load_image": "files.image", "letterbox_image": "files.image",
       "resize_image": "files.image"}
__all__ = list(API)


def __getattr__(name):
    if name not in API:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(f"{__name__}.{API[name]}"), name)


def __dir__():
    return sorted(list(globals()) + __all__)
