"""The fork's forward through libdarknet.so at batch 1 and 32 (random input, host in and out), as tools.bench.gpu
times pydarknet's: network_predict_ptr on a network loaded with that batch."""
import ctypes
import sys
import time

import numpy as np

lib = ctypes.CDLL("./libdarknet.so", ctypes.RTLD_GLOBAL)
lib.load_network_custom.restype = ctypes.c_void_p
lib.load_network_custom.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
lib.network_predict_ptr.restype = ctypes.POINTER(ctypes.c_float)
lib.network_predict_ptr.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float)]
cfg, weights, seconds = sys.argv[1].encode(), sys.argv[2].encode(), float(sys.argv[3])
for batch in (1, 32):
    net = lib.load_network_custom(cfg, weights, 0, batch)
    x = np.random.default_rng(0).random(batch * 3 * 416 * 416, dtype=np.float32)
    pointer = x.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
    for _ in range(5):
        lib.network_predict_ptr(net, pointer)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or count < 3:
        lib.network_predict_ptr(net, pointer)
        count += 1
    print(f"fork (AlexeyAB, CUDA + cuDNN) yolov4-tiny 416x416 forward, batch {batch:2d}: "
          f"{count * batch / (time.perf_counter() - start):8.1f} images/s", flush=True)
