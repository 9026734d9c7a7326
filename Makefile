PYTHON ?= python3

.PHONY: install test bench bench-avx2 demo demo-tiny bench-train bench-gpu bench-mpi bench-serve bench-cold

install:
	$(PYTHON) -m pip install -e '.[test]'

test:
	$(PYTHON) -m pytest -q

bench:
	$(PYTHON) -m tools.bench

# The same bench with the kernels, OpenCV and OpenBLAS all limited to AVX2 (what an AVX2-only CPU runs), on a CPU
# that has AVX-512: Numba compiles for Haswell (its own cache entries: the first run compiles for minutes).
AVX2 = NUMBA_CPU_NAME=haswell \
       NUMBA_CPU_FEATURES=+64bit,+sse,+sse2,+sse3,+ssse3,+sse4.1,+sse4.2,+popcnt,+avx,+avx2,+fma,+f16c,+bmi,+bmi2,+lzcnt,+movbe,-avx512f \
       OPENCV_CPU_DISABLE=AVX512F,AVX512-SKX OPENBLAS_CORETYPE=Haswell

bench-avx2:
	$(AVX2) $(PYTHON) -m tools.bench

demo:          # the AlexeyAB fork's yolov4-tiny shape (CIoU, mosaic), trained by pydarknet: finds the four shapes
	$(PYTHON) -m pydarknet detector test cfg/shapes.data cfg/shapes-v4tiny.cfg data/shapes-v4tiny.weights data/shapes.jpg

demo-tiny:     # the first demo model, yolov3-tiny's shape: it misses the square of data/shapes.jpg
	$(PYTHON) -m pydarknet detector test cfg/shapes.data cfg/shapes-tiny.cfg data/shapes-tiny.weights data/shapes.jpg -thresh .25

bench-train:
	$(PYTHON) -m tools.bench --train

bench-gpu:     # the GPU engine (pydarknet[cuda]): yolov4-tiny 416 forward at batch 1 and 32, training images/s
	$(PYTHON) -m tools.bench.gpu

bench-mpi:     # the mpi extra: a training iteration on 1 and 2 MPI ranks here, each rank's bytes a step
	$(PYTHON) -m tools.bench.mpi

bench-serve:   # the serve extra: `pydarknet serve` under 1, 4 and 16 clients beside detect_batch's offline rate
	$(PYTHON) -m tools.bench.serve

bench-cold:    # a fresh install's first `detect` (the wheel built here, a new venv, empty caches) beside OpenCV's
	$(PYTHON) -m tools.bench.cold
