#!/bin/bash
# One device call: what the machine has, ONNX Runtime's GPU build (relayed in parts to /tmp), the GPU engine's
# tests, make bench-gpu.
exec > >(tee "$OUT/log.txt") 2>&1
date -u
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
lscpu | grep -E 'Model name|^CPU\(s\)'
if [ -s /tmp/ort.tar.xz ]; then
  echo "ort archive: $(sha256sum /tmp/ort.tar.xz | cut -c1-64) want $(cat .dev/ort.sha)"
  rm -rf /tmp/ortsite && mkdir -p /tmp/ortsite && python3 -c "import tarfile; tarfile.open('/tmp/ort.tar.xz').extractall('/tmp/ortsite')" && ORTSITE=/tmp/ortsite:
fi
[ -e ../shared ] || ln -s "$PWD/shared" ../shared
export PYTHONPATH=${ORTSITE}$PWD PYTHONUNBUFFERED=1
python3 -c "import sys, numba, numpy, cupy, onnxruntime as o; print(sys.version.split()[0], 'numba', numba.__version__, 'numpy', numpy.__version__, 'cupy', cupy.__version__, 'ort', o.__version__, o.__file__, o.get_available_providers())"
python3 .dev/ort_probe.py 2>&1 | grep -v '^$' | tail -6
SECONDS=0
timeout ${TEST_S:-300} python3 -m pytest -q -p no:cacheprovider --maxfail=8 -rs --durations=8 tests/test_cuda.py \
  "tests/test_engines.py::test_onnxruntime_on_a_gpu_or_the_line_that_says_what_is_missing" 2>&1 | tee "$OUT/tests.txt"
echo "tests took $SECONDS s"
SECONDS=0
PYTHONWARNINGS=ignore timeout ${BENCH_S:-150} make bench-gpu PYTHON=python3 2>&1 | grep -v -i "warn" | tee "$OUT/bench_gpu.txt"
echo "bench took $SECONDS s"
