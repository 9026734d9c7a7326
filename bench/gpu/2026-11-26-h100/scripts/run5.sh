#!/bin/bash
# Fifth device call (its command line, as run): the GPU training tests and make bench-gpu at 78aa2ee. The tests'
# 100 s limit was too short (the first CPU compile alone takes most of it): they were stopped with no summary.
exec > >(tee "$OUT/log.txt") 2>&1; date -u; nvidia-smi --query-gpu=name --format=csv,noheader
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore; cat .dev/COMMIT; SECONDS=0
timeout 100 python3 -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py -k "training_step or replicas or several_inputs or recorded or cublas" 2>&1 | grep -v -i warn | tail -6 | tee "$OUT/tests.txt"
echo "tests at $SECONDS s"; timeout 90 python3 -m tools.bench.gpu --seconds 2 2>&1 | grep -v -i warn | tee "$OUT/bench_gpu.txt"; echo "all done at $SECONDS s"
