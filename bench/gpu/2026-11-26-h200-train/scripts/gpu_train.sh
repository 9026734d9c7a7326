#!/bin/bash
# Device call: where the GPU's first training step leaves the CPU's (tools/cuda_train_diff.py) beside the GPU
# training golden tests, both at once.
exec > >(tee "$OUT/log.txt") 2>&1
date -u
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
[ -e ../shared ] || ln -s "$PWD/shared" ../shared
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
python3 -c "import numba, numpy, cupy; print('numba', numba.__version__, 'numpy', numpy.__version__, 'cupy', cupy.__version__)"
SECONDS=0
( timeout ${TEST_S:-200} python3 -m pytest -q -p no:cacheprovider -rs --durations=5 tests/test_cuda.py \
    -k "golden_training_ab_on_the_gpu" 2>&1 | grep -v -i warn > "$OUT/tests.txt"; echo "tests done at $SECONDS s" ) &
tests=$!
for c in ${CASES:-yolov4-tiny_train}; do
  timeout ${DIFF_S:-150} python3 tools/cuda_train_diff.py shared/golden/train_ab/$c 2>&1 | grep -v -i warn | tee -a "$OUT/diff.txt"
  echo "diff $c done at $SECONDS s"
done
wait $tests   # (a bare wait would also wait for the tee above)
cat "$OUT/tests.txt" | tail -30
echo "all done at $SECONDS s"
