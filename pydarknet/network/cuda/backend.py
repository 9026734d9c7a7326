"""The device a network runs on: its arrays (Numba device arrays), the kernels' launches, the matrix product, and
the recording of a pass as a CUDA graph.

Every copy, launch and product goes to the backend's one stream, so that a pass can be recorded (stream capture
records what is queued on one stream) and so that nothing waits on another stream's work. The product is cuBLAS's
where CuPy imports and a real GPU is present (the library CuPy loads, called through ctypes on a handle of the
backend's own bound to its stream, with the arrays' pointers: CuPy's bindings set the handle's stream on every
call, and CuPy 14 refuses that while a stream records); otherwise, and always under the simulator, our tiled kernel
(kernels.gemm): cuBLAS is several times faster than a simple shared-memory tile on every recent GPU, and the tile
keeps the engine complete without CuPy. Graphs need CuPy too (its stream capture).
"""
import contextlib
import ctypes
import os
from dataclasses import dataclass

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
        self.cupy_stream = self.cublas = None
        with self.active():
            if self.cupy is None:
                self.stream = self.cuda.stream()
            else:   # non-blocking: work on the legacy default stream (anyone's) neither waits nor breaks a capture
                self.cupy_stream = self.cupy.cuda.Stream(non_blocking=True)
                self.stream = self.cuda.external_stream(self.cupy_stream.ptr)
                self.cublas = Cublas(self.cupy, self.cupy_stream.ptr)

    @property
    def records(self):
        """Whether record() can make graphs here (a real GPU with CuPy)."""
        return self.cupy_stream is not None

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
        return self.cuda.to_device(np.ascontiguousarray(array, dtype=np.float32), stream=self.stream)

    def to_host(self, array, out=None):
        """The device array's values in a new host array (or in `out`), once the work before has finished."""
        out = array.copy_to_host(out, stream=self.stream)
        self.stream.synchronize()
        return out

    def copy_in(self, target, array):
        """The host array's values into the device array `target` (the same shape), in the stream's order."""
        target.copy_to_device(np.ascontiguousarray(array, dtype=target.dtype), stream=self.stream)

    def empty(self, shape, dtype=np.float32):
        return self.cuda.device_array(tuple(shape), dtype)

    def zeros(self, shape):
        array = self.empty(shape)
        self.launch(self.k.fill, array.size, array.reshape(-1), np.float32(0))
        return array

    def synchronize(self):
        self.stream.synchronize()

    # -- kernels ---------------------------------------------------------------------------------------------
    def launch(self, kernel, count, *args):
        """kernel over `count` threads (one per element), kernels.THREADS a block."""
        if count:
            threads = self.k.THREADS
            kernel[(count + threads - 1) // threads, threads, self.stream](*args)

    def launch_channels(self, kernel, channels, *args):
        """kernel with one block of REDUCE_THREADS per channel (the per-channel sums)."""
        if channels:
            kernel[channels, self.k.REDUCE_THREADS, self.stream](*args)

    def matmul(self, a, b, c, trans_a=False, trans_b=False, alpha=1.0, beta=0.0):
        """c[z] = alpha * op(a[z]) @ op(b[z]) + beta * c[z] on 3-d arrays (a or b with first dimension 1
        serves every z): cuBLAS where CuPy is, else kernels.gemm."""
        if self.cublas is not None:
            self.cublas.gemm(a, b, c, trans_a, trans_b, alpha, beta)
            return
        tile = self.k.TILE
        grid = ((c.shape[2] + tile - 1) // tile, (c.shape[1] + tile - 1) // tile, c.shape[0])
        self.k.gemm[grid, (tile, tile), self.stream](trans_a, trans_b, np.float32(alpha), a, b, np.float32(beta), c)

    def matmul_sum(self, a, b, c, trans_a=False, trans_b=False):
        """c[0] += op(a[z]) @ op(b[z]) for z = 0, 1, ... in turn (darknet's order for a weight gradient: image after
        image). With cuBLAS, one product a z at offsets of the same arrays: slicing Numba's device arrays cost
        ~75 us a slice, most of a training step's backward (measured on an H100)."""
        if self.cublas is not None:
            self.cublas.gemm_sum(a, b, c, trans_a, trans_b)
            return
        for z in range(a.shape[0]):
            self.matmul(a[z:z + 1], b[z:z + 1], c, trans_a, trans_b, beta=1.0)

    # -- graphs ----------------------------------------------------------------------------------------------
    def record(self, run):
        """run()'s copies, launches and products recorded as one CUDA graph instead of made (needs `records`):
        the Graph makes them all again with one call. run() must neither allocate, copy from or to the host,
        nor wait."""
        stream = self.cupy_stream
        with self.active():
            stream.begin_capture()
            try:
                run()
            except BaseException:
                with contextlib.suppress(Exception):
                    stream.end_capture()
                raise
            return Graph(stream.end_capture(), stream)


class Cublas:
    """cuBLAS's float32 strided-batched product on a handle of its own, bound to one stream: the library CuPy
    loaded (found among the process's mappings), called through ctypes."""

    def __init__(self, cupy, stream):
        cupy.cuda.device.get_cublas_handle()   # CuPy loads cuBLAS
        lib = ctypes.CDLL(_loaded("libcublas.so"))
        self._destroy = lib.cublasDestroy_v2
        self.handle = ctypes.c_void_p()
        _check(lib.cublasCreate_v2(ctypes.byref(self.handle)), "cublasCreate")
        _check(lib.cublasSetStream_v2(self.handle, ctypes.c_void_p(stream)), "cublasSetStream")
        self._gemm = lib.cublasSgemmStridedBatched
        size, pointer_, count = ctypes.c_int, ctypes.c_void_p, ctypes.c_longlong
        self._gemm.argtypes = [pointer_, size, size, size, size, size, pointer_, pointer_, size, count, pointer_, size,
                               count, pointer_, pointer_, size, count, size]

    def gemm(self, a, b, c, trans_a, trans_b, alpha, beta):
        """Backend.matmul's product (gemm_arguments says how)."""
        self._call(elements(a), elements(b), elements(c), pointer(a), pointer(b), pointer(c), trans_a, trans_b,
                   alpha, beta)

    def gemm_sum(self, a, b, c, trans_a, trans_b):
        """Backend.matmul_sum's products: one a z, each at z times the batch stride of a and b."""
        (shape_a, strides_a), (shape_b, strides_b) = elements(a), elements(b)
        one_a, one_b = ((1,) + shape_a[1:], strides_a), ((1,) + shape_b[1:], strides_b)
        one_c, start_a, start_b, into, item = elements(c), pointer(a), pointer(b), pointer(c), a.dtype.itemsize
        for z in range(shape_a[0]):
            self._call(one_a, one_b, one_c, start_a + z * strides_a[0] * item, start_b + z * strides_b[0] * item,
                       into, trans_a, trans_b, 1.0, 1.0)

    def _call(self, a, b, c, at_a, at_b, at_c, trans_a, trans_b, alpha, beta):
        """cublasSgemmStridedBatched on (shape, strides in elements) a, b, c at device addresses at_a, at_b, at_c."""
        scalars = np.array([alpha, beta], np.float32)   # read during the call (host pointer mode)
        ops, sizes, (lda, stride_a, ldb, stride_b, ldc, stride_c), count = gemm_arguments(a, b, c, trans_a, trans_b)
        _check(self._gemm(self.handle, *ops, *sizes, scalars.ctypes.data, at_b, ldb, stride_b, at_a, lda, stride_a,
                          scalars.ctypes.data + 4, at_c, ldc, stride_c, count), "cublasSgemmStridedBatched")

    def __del__(self):
        with contextlib.suppress(Exception):
            self._destroy(self.handle)


def _loaded(name):
    """The path of the shared library `name` (e.g. libcublas.so, any version) this process has loaded (read from
    Linux's /proc/self/maps)."""
    with contextlib.suppress(OSError), open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and f"/{name}" in fields[5]:
                return fields[5].strip()
    raise DarknetError(f"no CUDA GPU found: CuPy loaded no {name} (the cuda extra's CuPy must match the CUDA "
                       f"libraries); drop -gpus/--gpu to run on the CPU")


def _check(status, call):
    if status != 0:
        raise DarknetError(f"{call} failed with cuBLAS status {status}")


@dataclass(frozen=True)
class Graph:
    """A recorded pass (CuPy's cupy.cuda.Graph) and the stream it runs on."""
    graph: object
    stream: object

    def launch(self):
        self.graph.launch(stream=self.stream)


def elements(array):
    """(shape, strides in elements) of a device or host array."""
    return array.shape, tuple(s // array.dtype.itemsize for s in array.strides)


def pointer(array):
    """The device address of the array's first element."""
    return array.__cuda_array_interface__["data"][0]


def gemm_arguments(a, b, c, trans_a, trans_b):
    """cublasSgemmStridedBatched's arguments for the row-major c[z] = op(a[z]) @ op(b[z]), each of a, b, c given
    as (shape, strides in elements) of a 3-d array whose rows are contiguous (a first dimension of 1 serves every
    z): cuBLAS is column-major, and a row-major matrix read column-major is its transpose, so cuBLAS computes
    c^T = op(b)^T op(a)^T with b passed first. Returns ((op for b, op for a), (n, m, k), (lda, stride_a, ldb,
    stride_b, ldc, stride_c), batch count), the ops as cuBLAS numbers them (0 none, 1 transposed)."""
    (count, m, n), k = c[0], (a[0][1] if trans_a else a[0][2])
    for shape, strides in (a, b, c):
        if shape[2] > 1 and strides[2] != 1:
            raise ValueError(f"gemm_arguments: rows must be contiguous (shape {shape}, strides {strides})")

    def leading_and_batch(shape, strides):
        return max(strides[1], shape[2], 1), 0 if shape[0] == 1 else strides[0]
    return ((int(trans_b), int(trans_a)), (n, m, k),
            (*leading_and_batch(*a), *leading_and_batch(*b), *leading_and_batch(*c)), count)
