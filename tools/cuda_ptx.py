"""Compile every GPU kernel (pydarknet/network/cuda/kernels.py) to PTX for sm_80 without a GPU: the check that the
kernels type for the real target (the simulator runs them as Python). Needs numba-cuda and NVIDIA's NVVM
(pip install 'numba-cuda[cu12]'). Prints one line per kernel; exit 0 all compiled, 1 some failed, 77 no NVVM or NVRTC.

    python3 tools/cuda_ptx.py
"""
import os
import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.pop("NUMBA_ENABLE_CUDASIM", None)

A1, A2, A3, A4 = "float32[::1]", "float32[:, ::1]", "float32[:, :, ::1]", "float32[:, :, :, ::1]"
S3 = "float32[:, :, :]"   # strided views (a group's filters, a batch's image)
SIGNATURES = {
    "im2col": f"void({A4}, int64, int64, int64, int64, int64, int64, {A3})",
    "col2im": f"void({A3}, int64, int64, int64, int64, int64, {A4}, int64)",
    "gemm": f"void(boolean, boolean, float32, {S3}, {S3}, float32, {S3})",
    "normalize_activate": f"void({A3}, {A1}, {A1}, {A1}, {A1}, int64, int64)",
    "activate_kept": f"void({A1}, int64, {A1})",
    "gradient_array": f"void({A1}, {A1}, int64, {A1})",
    "channel_sums": f"void({S3}, {S3}, {A1}, int64, float32, {A1})",
    "batchnorm_statistics": f"void({A1}, int64, {A1}, {A1}, {A1}, {A1})",
    "batchnorm_train": f"void({A3}, {A1}, {A1}, {A1}, {A1}, {A3}, {A3}, boolean, int64)",
    "scale_channels": f"void({A3}, {A1})",
    "batchnorm_delta": f"void({A3}, {A3}, {A1}, {A1}, {A1}, {A1}, boolean)",
    "maxpool": f"void({A4}, int64, int64, int64, int64, {A4}, int32[:, :, :, ::1], boolean)",
    "maxpool_backward": f"void({A2}, int32[:, ::1], {A2})",
    "upsample": f"void({A4}, int64, float32, {A4}, boolean)",
    "shortcut": f"void({A4}, {A4}, float32, float32, int64, {A4})",
    "shortcut_backward": f"void({A4}, float32, {A4})",
    "copy_columns": f"void({A2}, int64, {A2}, int64, int64, boolean)",
    "axpy": f"void(float32, {A1}, {A1})",
    "avgpool": f"void({A3}, {A2}, boolean)",
    "softmax": f"void({A2}, int64, int64, int64, float32, {A2})",
    "yolo_activate": f"void({A3}, int64, boolean, float32, float32, {A3})",
    "sgd": f"void({A1}, {A1}, float32, float32, float32)",
    "fill": f"void({A1}, float32)",
}


def main():
    try:
        import numba_cuda  # noqa: F401  (numba's own numba.cuda, deprecated, lacks what this needs)
        from pydarknet.network.cuda.backend import cuda_target
        cuda = cuda_target()   # numba.cuda as the engine imports it (with its numpy 2.5 alias)
        import numba.cuda.dispatcher as dispatcher
        from numba.cuda.cudadrv import nvvm
        nvvm.NVVM()
        # device functions ask the driver for the compute capability; without a GPU, name the target here
        dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=(8, 0))
        # a system CUDA can give NVVM without NVRTC, which numba-cuda also loads: try the whole toolchain once
        cuda.compile_ptx(lambda a: None, "void(float32[::1])", cc=(8, 0))
    except Exception as e:
        print(f"needs numba-cuda with NVIDIA's NVVM and NVRTC (pip install 'numba-cuda[cu12]'): "
              f"{type(e).__name__}: {str(e)[:200]}")
        return 77
    from pydarknet.network.cuda import kernels
    failures = 0
    for name, signature in SIGNATURES.items():
        try:
            ptx, _ = cuda.compile_ptx(getattr(kernels, name).py_func, signature, cc=(8, 0))
            doubles = ptx.count(".f64")
            print(f"{name:22s} ok{'' if not doubles else f'  {doubles} float64 instructions'}")
            failures += bool(doubles)
        except Exception as e:
            failures += 1
            print(f"{name:22s} FAILED {type(e).__name__}: {str(e)[:300]}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
