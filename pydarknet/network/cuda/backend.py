"""The device a network runs on: its arrays (Numba device arrays), the kernels' launches, and the matrix product.

The product is CuPy's (cuBLAS) where CuPy imports and a real GPU is present, on the same memory (the
arrays share it through __cuda_array_interface__); otherwise, and always under the simulator, our tiled kernel
(kernels.gemm): cuBLAS is several times faster than a simple shared-memory tile on every recent GPU, and the
tile keeps the engine complete without CuPy.
"""
import contextlib
import os

import numpy as np

from ...files.config import DarknetError
from ...files.errors import install_hint

from . import simulated


def cuda_target():
    """numba.cuda, or a DarknetError saying what is missing."""
    if not hasattr(np, "row_stack"):
        # numba-cuda (0.30.4, the newest) registers np.row_stack when its first kernel compiles; numpy 2.5
        # removed that alias of vstack, and every launch failed with an AttributeError (seen on an H200)
        np.row_stack = np.vstack
    # a launch of under 128 blocks (every small layer's) warned of low occupancy, a note for a kernel's writer
    # that reached the command's stderr (seen on an H200); a user's own setting wins
    os.environ.setdefault("NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS", "0")
    try:
        from numba import cuda
    except ImportError as e:   # numba without its CUDA target (numba-cuda)
        raise DarknetError(f"no CUDA GPU found: numba's CUDA target does not import ({e}); "
                           f"{install_hint('cuda')}") from None
    return cuda


def device_count():
    """How many CUDA devices there are (1 under the simulator; 0 without a driver or numba-cuda)."""
    if simulated():
        return 1
    try:
        cuda = cuda_target()
        return len(cuda.gpus) if cuda.is_available() else 0
    except Exception:   # a driver that fails to start counts as none
        return 0


def _cupy():
    """CuPy, where it imports and a real GPU runs (None otherwise)."""
    if simulated():
        return None
    try:
        import cupy
        return cupy
    except Exception:   # not installed, or built for another CUDA
        return None


class Backend:
    """One CUDA device: `index` as -gpus numbers them. Raises DarknetError when there is no such device."""

    def __init__(self, index=0):
        count = device_count()
        if count == 0:
            reason = "numba reports no CUDA device or driver" if not simulated() else "simulator failed"
            raise DarknetError(f"no CUDA GPU found: {reason}; drop -gpus/--gpu to run on the CPU")
        if not 0 <= index < count:
            raise DarknetError(f"no CUDA GPU found: GPU {index} asked for, {count} present (0..{count - 1})")
        self.cuda = cuda_target()
        from . import kernels   # compiled lazily by Numba, on first launch
        self.k = kernels
        self.index = index
        if not simulated():
            self.cuda.select_device(index)
        self.cupy = _cupy()

    @contextlib.contextmanager
    def active(self):
        """This device made current (Numba's and CuPy's) for the calls inside: with several GPUs in one process
        each engine's allocations and launches must go to its own."""
        with contextlib.ExitStack() as stack:
            if not simulated():
                stack.enter_context(self.cuda.gpus[self.index])
                if self.cupy is not None:
                    stack.enter_context(self.cupy.cuda.Device(self.index))
            yield

    @property
    def name(self):
        if simulated():
            return "Numba CUDA simulator"
        name = self.cuda.gpus[self.index].name
        return name.decode() if isinstance(name, bytes) else str(name)

    # -- arrays ----------------------------------------------------------------------------------------------
    def to_device(self, array):
        return self.cuda.to_device(np.ascontiguousarray(array, dtype=np.float32))

    def to_host(self, array):
        return array.copy_to_host()

    def empty(self, shape, dtype=np.float32):
        return self.cuda.device_array(tuple(shape), dtype)

    def zeros(self, shape):
        array = self.empty(shape)
        self.launch(self.k.fill, array.size, array.reshape(-1), np.float32(0))
        return array

    def synchronize(self):
        self.cuda.synchronize()

    # -- kernels ---------------------------------------------------------------------------------------------
    def launch(self, kernel, count, *args):
        """kernel over `count` threads (one per element), kernels.THREADS a block."""
        if count:
            threads = self.k.THREADS
            kernel[(count + threads - 1) // threads, threads](*args)

    def launch_channels(self, kernel, channels, *args):
        """kernel with one block of REDUCE_THREADS per channel (the per-channel sums)."""
        if channels:
            kernel[channels, self.k.REDUCE_THREADS](*args)

    def matmul(self, a, b, c, trans_a=False, trans_b=False, alpha=1.0, beta=0.0):
        """c[z] = alpha * op(a[z]) @ op(b[z]) + beta * c[z] on 3-d arrays (a or b with first dimension 1
        serves every z): cuBLAS through CuPy where there is one, else kernels.gemm."""
        if self.cupy is not None:
            cp = self.cupy
            ca, cb, cc = cp.asarray(a), cp.asarray(b), cp.asarray(c)
            product = cp.matmul(ca.transpose(0, 2, 1) if trans_a else ca, cb.transpose(0, 2, 1) if trans_b else cb)
            if beta == 0:
                cc[...] = product * np.float32(alpha) if alpha != 1 else product
            else:
                cc *= np.float32(beta)
                cc += product * np.float32(alpha) if alpha != 1 else product
            return
        tile = self.k.TILE
        grid = ((c.shape[2] + tile - 1) // tile, (c.shape[1] + tile - 1) // tile, c.shape[0])
        self.k.gemm[grid, (tile, tile)](trans_a, trans_b, np.float32(alpha), a, b, np.float32(beta), c)
