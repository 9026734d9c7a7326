#!/bin/bash
# The fork beside pydarknet on the same jobs: forward at batch 1 and 32 (ctypes), dog.jpg's detections, and
# training on the same synthetic set with the same cfg (yolov4-tiny, 3 classes, batch 64) for a few iterations.
set -u
ROOT=$PWD
source /tmp/fork_env.sh
W=$ROOT/shared/models/yolov4-tiny.weights
cd .fork
timeout 60 python3 ../.dev/fork_batch.py cfg/yolov4-tiny.cfg "$W" ${SECS:-4}
printf '%s\n' $(for i in $(seq 12); do echo "$ROOT/shared/images/dog.jpg"; done) > /tmp/dogs.txt
timeout 40 ./darknet detector test cfg/coco.data cfg/yolov4-tiny.cfg "$W" -dont_show -ext_output < /tmp/dogs.txt > /tmp/fork_test.txt 2>&1
grep -m1 -A6 "Predicted in" /tmp/fork_test.txt; grep "Predicted in" /tmp/fork_test.txt | tail -4
[ -s /tmp/shapes/shapes.data ] || { echo "no shapes set"; exit 1; }
sed -e 's/classes=80/classes=3/' -e 's/filters=255/filters=24/' -e 's/^max_batches *=.*/max_batches = 25/' \
    -e 's/^subdivisions=.*/subdivisions=1/' -e 's/^batch=.*/batch=64/' cfg/yolov4-tiny.cfg > /tmp/shapes/y4t.cfg
sed -e 's/^max_batches *=.*/max_batches = 12/' /tmp/shapes/y4t.cfg > /tmp/shapes/y4t_short.cfg
mkdir -p /tmp/shapes/backup
cd /tmp/shapes
timeout 100 "$ROOT/.fork/darknet" detector train shapes.data y4t.cfg -dont_show > /tmp/fork_train.txt 2>&1
echo "fork train rc=$?"; grep -E "^ *[0-9]+: " /tmp/fork_train.txt | tail -25
grep -E "Loaded:" /tmp/fork_train.txt | tail -5
cd "$ROOT"
timeout 150 python3 -m pydarknet detector train /tmp/shapes/shapes.data /tmp/shapes/y4t_short.cfg -gpus 0 -dont_show > /tmp/ours_train.txt 2>&1
echo "pydarknet train rc=$?"; grep -E "^ *[0-9]+: " /tmp/ours_train.txt | tail -12; tail -3 /tmp/ours_train.txt
cp /tmp/fork_train.txt /tmp/ours_train.txt /tmp/fork_test.txt "$OUT/" 2>/dev/null
