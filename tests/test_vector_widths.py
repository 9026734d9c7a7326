"""README (Speed): the exact products keep darknet's order at every vector width, so the golden cases stay
bit-identical with the kernels compiled for Haswell (AVX2, 16-float panels) as well as for the host's widest
vectors. A sample of them (a forward case and a training case) runs here in a subprocess whose kernels Numba
compiles for Haswell, as `make bench-avx2` does (their own cache entries: the first run compiles for minutes).
The gemm unit tests cover the narrower widths product by product (tests/test_gemm.py)."""
import os
import subprocess
import sys
from pathlib import Path

import llvmlite.binding as llvm
import pytest

from conftest import shared_path

# the Makefile's AVX2 variables: Numba's target, and OpenBLAS's kernels (the training case's BLAS is not used
# with darknet's products, but the process is then what an AVX2-only CPU runs)
HASWELL = {"NUMBA_CPU_NAME": "haswell",
           "NUMBA_CPU_FEATURES": "+64bit,+sse,+sse2,+sse3,+ssse3,+sse4.1,+sse4.2,+popcnt,+avx,+avx2,+fma,+f16c,+bmi,"
                                 "+bmi2,+lzcnt,+movbe,-avx512f",
           "OPENCV_CPU_DISABLE": "AVX512F,AVX512-SKX", "OPENBLAS_CORETYPE": "Haswell"}
SAMPLE = ["test_forward_golden.py::test_shared_case_layers[yolov3-tiny_dog]",
          "test_train_golden.py::test_golden_training_exact[yolov3-tiny_train]"]


def test_golden_cases_bit_for_bit_with_kernels_compiled_for_haswell():
    shared_path("golden", "forward", "yolov3-tiny_dog")
    shared_path("golden", "train", "yolov3-tiny_train")
    if not llvm.get_host_cpu_features().get("avx2"):
        pytest.skip("this CPU has no AVX2 to run Haswell's kernels")
    code = ("import sys, pytest; from pydarknet.kernels.gemm import host_panel_width; "
            "print('panel', host_panel_width()); sys.exit(pytest.main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", code, "-q", "-p", "no:cacheprovider", *SAMPLE],
                          cwd=Path(__file__).parent, capture_output=True, text=True,
                          env={**os.environ, **HASWELL, "PYDARKNET_PRODUCTS": "darknet"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert proc.stdout.startswith("panel 16\n"), proc.stdout[:200]   # AVX2's two 8-float registers
    assert "2 passed" in proc.stdout
