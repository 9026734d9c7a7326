#!/bin/bash
# Second device call (its command line, as run): the GPU engine's tests and make bench-gpu at 90833a3.
exec > >(tee "$OUT/log.txt") 2>&1; date -u; nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
[ -e ../shared ] || ln -s "$PWD/shared" ../shared; export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
cat .dev/COMMIT; SECONDS=0
timeout 200 python3 -m pytest -q -p no:cacheprovider -rs --durations=6 tests/test_cuda.py 2>&1 | grep -v -i warn > "$OUT/tests.txt"
echo "tests done at $SECONDS s"; grep -E "^(FAILED|ERROR)|^E  " "$OUT/tests.txt" | head -20; tail -12 "$OUT/tests.txt"
timeout 150 python3 -m tools.bench.gpu --seconds 4 2>&1 | grep -v -i warn | tee "$OUT/bench_gpu.txt"; echo "all done at $SECONDS s"
