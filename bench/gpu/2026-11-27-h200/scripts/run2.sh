#!/bin/bash
# Second device call (its command line, as run): the one training golden the first call did not carry.
exec > >(tee "$OUT/log.txt") 2>&1; [ -e ../shared ] || ln -s "$PWD/shared" ../shared; export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore; SECONDS=0; timeout 230 python3 -m pytest -q -p no:cacheprovider -rs --durations=3 tests/test_cuda.py -k "golden_training_ab_on_the_gpu and yolov4_train" 2>&1 | grep -v -i warn | tail -20; echo "done at $SECONDS s"
