"""What pydarknet runs on: its version, its libraries' and the CPU Numba compiles the kernels for
(`pydarknet version`, and the first line of `make bench`)."""
import os
import platform
from importlib import metadata
from pathlib import Path

# LLVM's names of the vector instruction sets, widest first, and their width in bits.
VECTOR_WIDTHS = (("avx512f", 512), ("avx2", 256), ("avx", 256), ("sse4.2", 128))


def version_of(distribution):
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def vector_width():
    """(instruction set, bits) of the widest vectors Numba's LLVM compiles for on this CPU."""
    import llvmlite.binding as llvm
    features = llvm.get_host_cpu_features()
    return next(((name, bits) for name, bits in VECTOR_WIDTHS if features.get(name)), ("sse2", 128))


def cpu_line():
    """The CPU: its model name, LLVM's name for it (what Numba compiles for) and the widest vector instructions
    it has."""
    import llvmlite.binding as llvm
    name, _ = vector_width()
    return f"cpu: {cpu_model()} (llvm {llvm.get_host_cpu_name()}, {name}), {os.cpu_count()} cores"


def version_lines():
    import cv2
    import numba
    import numpy

    name, bits = vector_width()
    return [f"pydarknet {version_of('pydarknet')}",
            f"python {platform.python_version()}",
            f"numba {numba.__version__} (llvmlite {version_of('llvmlite')}), "
            f"{numba.config.NUMBA_NUM_THREADS} threads",
            f"numpy {numpy.__version__}",
            f"opencv {cv2.__version__}",
            cpu_line(),
            f"vectors: {bits}-bit ({name})"]
