#!/bin/bash
# The AlexeyAB fork's CUDA build (GPU=1 CUDNN=1, sm_90, LIBSO for the batched forward), for measurement only:
# headers and libraries from the image's CUDA and its Python's NVIDIA packages (cuDNN, cuBLAS, cuRAND).
set -u
SP=$(python3 -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
mkdir -p /tmp/lk
INC=""
for h in cublas_v2.h curand.h cudnn.h cuda_runtime.h; do
  f=$(find /usr/local/cuda/include /usr/local/cuda/targets "$SP/nvidia" -name "$h" 2>/dev/null | head -1)
  echo "header $h: $f"; INC="$INC:$(dirname "$f")"
done
LIBS=""
for l in cublas cublasLt curand cudnn cudart cuda; do
  f=$(find /usr/local/cuda/lib64 /usr/local/cuda/targets "$SP/nvidia" /usr/local/nvidia /usr/lib/x86_64-linux-gnu /usr/lib64 -name "lib$l.so*" 2>/dev/null | grep -v stubs | head -1)
  echo "library $l: $f"; ln -sf "$f" /tmp/lk/lib$l.so; LIBS="$LIBS:$(dirname "$f")"
done
echo "export LD_LIBRARY_PATH=/tmp/lk${LIBS}:\${LD_LIBRARY_PATH:-}" > /tmp/fork_env.sh
export CPATH=${INC#:} LIBRARY_PATH=/tmp/lk PATH=/usr/local/cuda/bin:$PATH
cd .fork && touch build.sh && nvcc --version | tail -1
time make -j12 GPU=1 CUDNN=1 LIBSO=1 ARCH="-gencode arch=compute_90,code=sm_90" > build.log 2>&1
rc=$?; grep -i ' error' build.log | head; ls -la darknet libdarknet.so; exit $rc
