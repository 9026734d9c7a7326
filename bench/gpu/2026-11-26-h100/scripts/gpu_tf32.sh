#!/bin/bash
# Third device call: the fork with TF32 off (NVIDIA_TF32_OVERRIDE=0: cuDNN may run float32 convolutions on TF32
# tensor cores by default; pydarknet's cuBLAS products are plain float32) beside its default, and a second
# make bench-gpu sample.
exec > >(tee "$OUT/log.txt") 2>&1
date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
[ -e ../shared ] || ln -s "$PWD/shared" ../shared
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
cat .dev/COMMIT; SECONDS=0
bash .dev/fork_build.sh > "$OUT/fork_build.txt" 2>&1; echo "fork build rc=$? at $SECONDS s"
python3 -m pydarknet datasets shapes /tmp/shapes --train 320 --valid 16 -q
source /tmp/fork_env.sh
W=$PWD/shared/models/yolov4-tiny.weights
(cd .fork && for tf in default 0; do
  if [ $tf = 0 ]; then export NVIDIA_TF32_OVERRIDE=0; fi
  echo "== TF32 $tf"; timeout 40 python3 ../.dev/fork_batch.py cfg/yolov4-tiny.cfg "$W" 3 2>&1 | grep "^fork"
done)
sed -e 's/classes=80/classes=3/' -e 's/filters=255/filters=24/' -e 's/^max_batches *=.*/max_batches = 15/' \
    -e 's/^subdivisions=.*/subdivisions=1/' -e 's/^batch=.*/batch=64/' .fork/cfg/yolov4-tiny.cfg > /tmp/shapes/y4t.cfg
mkdir -p /tmp/shapes/backup; ROOT=$PWD
(cd /tmp/shapes && NVIDIA_TF32_OVERRIDE=0 timeout 60 "$ROOT/.fork/darknet" detector train shapes.data y4t.cfg -dont_show > /tmp/fork_train_tf32off.txt 2>&1; echo "fork train (TF32 off) rc=$?"; grep -E "^ *[0-9]+: " /tmp/fork_train_tf32off.txt | tail -10)
cp /tmp/fork_train_tf32off.txt "$OUT/"
echo "fork done at $SECONDS s"
timeout 120 python3 -m tools.bench.gpu --seconds 3 2>&1 | grep -v -i warn | tee "$OUT/bench_gpu.txt"
echo "all done at $SECONDS s"
