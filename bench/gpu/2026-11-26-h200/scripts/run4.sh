#!/bin/bash
# Second device call: the fixes (IR version, numpy alias in the product), the training diagnosis, bench-gpu.
exec > >(tee "$OUT/log.txt") 2>&1
date -u
if [ -s /tmp/ort.tar.xz ] && [ ! -d /tmp/ortsite/onnxruntime ]; then
  mkdir -p /tmp/ortsite && python3 -c "import tarfile; tarfile.open('/tmp/ort.tar.xz').extractall('/tmp/ortsite')"
fi
[ -d /tmp/ortsite/onnxruntime ] && ORTSITE=/tmp/ortsite: || echo "NO ORT GPU BUILD (machine was fresh)"
[ -e ../shared ] || ln -s "$PWD/shared" ../shared
export PYTHONPATH=${ORTSITE}$PWD PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
timeout 50 python3 .dev/train_diag.py yolov4-tiny_train yolov7-tiny_train 2>&1 | grep -v -i warn | tee "$OUT/diag.txt"
timeout 120 python3 -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py tests/test_engines.py tests/test_onnx.py \
  -k "golden_training_ab_on_the_gpu or onnxruntime_on_a_gpu or real_gpu or weighted_shortcut or falls_back or ir_version" 2>&1 | grep -v -i "warn" | tail -25 | tee "$OUT/tests.txt"
timeout 90 python3 -m tools.bench.gpu --seconds 4 2>&1 | grep -v -i "warn" | tee "$OUT/bench_gpu.txt"
