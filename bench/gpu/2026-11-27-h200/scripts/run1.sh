#!/bin/bash
# One device call: the GPU engine's tests (tests/test_cuda.py, all) and make bench-gpu's tool (5 s a figure).
exec > >(tee "$OUT/log.txt") 2>&1; date -u
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; lscpu | grep -E 'Model name|^CPU\(s\)'
[ -e ../shared ] || ln -s "$PWD/shared" ../shared
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore; cat .dev/COMMIT
python3 -c "import sys, numba, numba_cuda, numpy, cupy; print(sys.version.split()[0], 'numba', numba.__version__, 'numba-cuda', numba_cuda.__version__, 'numpy', numpy.__version__, 'cupy', cupy.__version__)"
SECONDS=0
timeout ${TEST_S:-280} python3 -m pytest -q -p no:cacheprovider -rs --durations=8 tests/test_cuda.py 2>&1 | grep -v -i warn > "$OUT/tests.txt"
echo "tests done at $SECONDS s"; grep -E "^(FAILED|ERROR)|^E  " "$OUT/tests.txt" | head -30; tail -16 "$OUT/tests.txt"
SECONDS=0
timeout ${BENCH_S:-120} python3 -m tools.bench.gpu --seconds 5 2>&1 | grep -v -i warn | tee "$OUT/bench_gpu.txt"; echo "bench done at $SECONDS s"
