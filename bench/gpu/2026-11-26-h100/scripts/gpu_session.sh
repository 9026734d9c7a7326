#!/bin/bash
# One device call: the GPU engine's tests (graphs included), make bench-gpu (graphs and launches), the fork's
# CUDA build and its figures on the same jobs.
exec > >(tee "$OUT/log.txt") 2>&1
date -u
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader
[ -e ../shared ] || ln -s "$PWD/shared" ../shared
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
python3 -c "import numba, numpy, cupy, numba_cuda; print('numba', numba.__version__, 'numba-cuda', numba_cuda.__version__, 'numpy', numpy.__version__, 'cupy', cupy.__version__)"
cat .dev/COMMIT
SECONDS=0
( bash .dev/fork_build.sh > "$OUT/fork_build.txt" 2>&1; echo "fork build rc=$? at $SECONDS s" ) &
build=$!
( python3 -m pydarknet datasets shapes /tmp/shapes --train 320 --valid 16 -q; echo "shapes rc=$? at $SECONDS s" ) &
shapes=$!
timeout ${TEST_S:-260} python3 -m pytest -q -p no:cacheprovider -rs --durations=8 tests/test_cuda.py ${TESTS_K:+-k "$TESTS_K"} 2>&1 | grep -v -i warn > "$OUT/tests.txt"
echo "tests done at $SECONDS s"; tail -15 "$OUT/tests.txt"
wait $build $shapes; tail -12 "$OUT/fork_build.txt"
timeout ${BENCH_S:-150} python3 -m tools.bench.gpu --seconds ${SECS:-4} 2>&1 | grep -v -i warn | tee "$OUT/bench_gpu.txt"
echo "bench done at $SECONDS s"
timeout ${FORK_S:-200} bash .dev/fork_bench.sh 2>&1 | tee "$OUT/fork.txt"
echo "all done at $SECONDS s"
