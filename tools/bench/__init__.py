"""The developer benchmarks, run by the Makefile from the repository root and never shipped in the wheel:
`make bench` and `make bench-train` (peers.py, `python3 -m tools.bench`), `make bench-gpu` (gpu.py),
`make bench-mpi` (mpi.py), `make bench-serve` (serve.py). They import pydarknet; pydarknet never imports them.
"""
import pydarknet  # noqa: F401  (the thread pools' environment, before a benchmark's numpy starts OpenBLAS's threads)
