#!/bin/bash
# Device call: a command's process (start-up shortcuts on) detecting on the GPU, then the GPU engine's tests.
exec > >(tee "$OUT/log.txt") 2>&1
date -u
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
SECONDS=0
for i in 1 2; do
  timeout 120 python3 -m pydarknet detect cfg/yolov4-tiny.cfg shared/models/yolov4-tiny.weights shared/images/dog.jpg -gpus 0 -q 2>&1 | tail -8
  echo "detect -gpus 0 run $i: rc ${PIPESTATUS[0]} at $SECONDS s"
done
timeout 120 python3 -m pydarknet detect cfg/yolov4-tiny.cfg shared/models/yolov4-tiny.weights shared/images/dog.jpg -q 2>&1 | tail -8
echo "detect on the CPU at $SECONDS s"
timeout ${TEST_S:-150} python3 -m pytest -q -p no:cacheprovider -x tests/test_cuda.py -k "not golden" 2>&1 | grep -v -i warn | tail -5
echo "all done at $SECONDS s"
