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


def compile_target():
    """(LLVM CPU name, feature string) the kernels are compiled for: this CPU's, or the older CPU that Numba's
    NUMBA_CPU_NAME / NUMBA_CPU_FEATURES name (how another CPU class's kernels are built, tested and timed)."""
    from numba.core.registry import cpu_target
    _, name, features = cpu_target.target_context.codegen().magic_tuple()
    return name, features


def vector_width():
    """(instruction set, bits) of the widest vectors in the kernels Numba compiles (see compile_target)."""
    on = {f[1:] for f in compile_target()[1].split(",") if f.startswith("+")}
    return next(((name, bits) for name, bits in VECTOR_WIDTHS if name in on), ("sse2", 128))


def cpu_line():
    """The CPU: its model name, LLVM's name for what Numba compiles for (marked when NUMBA_CPU_NAME overrides
    this CPU's) and the widest vector instructions the kernels use."""
    import llvmlite.binding as llvm
    name, _ = compile_target()
    host = llvm.get_host_cpu_name()
    target = name if name == host else f"{name} by NUMBA_CPU_NAME on a {host}"
    return f"cpu: {cpu_model()} (llvm {target}, {vector_width()[0]}), {os.cpu_count()} cores"


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
