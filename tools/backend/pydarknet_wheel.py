"""pydarknet's build backend: setuptools', with a wheel that carries its kernels compiled for portable x86-64 levels
(pydarknet/kernels/shipped.py), so that the first command on a fresh install starts in a second, not in thirty.

pyproject.toml names this module as the backend (backend-path: tools/backend/, a folder of its own, since the
backend's folder comes first on the build's path) and its two commands in setuptools' cmdclass. A wheel (not an
editable install, not an sdist) is built with the package's own dependencies (Numba compiles the kernels): each
level the building CPU runs compiles in a process of its own, side by side, and the wheel is then a platform wheel
(this Python's ABI, x86-64 Linux). Elsewhere (another platform, a CPU without AVX2) or with
PYDARKNET_WHEEL_KERNELS=0 the wheel is pure Python, as before, and the kernels compile on first use.
"""
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from setuptools import build_meta
from setuptools.build_meta import *  # noqa: F403  (the backend's other hooks, as setuptools defines them)
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent.parent.parent
# The wheel's platform: its kernels are machine code for x86-64 that links to nothing but the running process.
PLATFORM = "manylinux_2_17_x86_64"


def get_requires_for_build_wheel(config_settings=None):
    """setuptools', and the package's own dependencies: the build compiles its kernels with them."""
    from setuptools.config.pyprojecttoml import load_file
    dependencies = load_file(ROOT / "pyproject.toml")["project"]["dependencies"] if kernels_wanted() else []
    return build_meta.get_requires_for_build_wheel(config_settings) + dependencies


def kernels_wanted():
    return sys.platform == "linux" and platform.machine() == "x86_64" and \
        os.environ.get("PYDARKNET_WHEEL_KERNELS", "1") != "0"


def levels_here():
    """The levels this CPU runs (the kernels compile by running the commands' default paths), highest first;
    none where the wheel is not to carry kernels."""
    if not kernels_wanted():
        return []
    try:
        import llvmlite.binding as llvm
    except ImportError:   # no Numba to build with (a build without isolation in an environment that lacks it)
        return []
    return shipped().levels_run_by(llvm.get_host_cpu_features().flatten())


def shipped():
    """pydarknet.kernels.shipped of the source being built (it imports nothing beyond the standard library)."""
    sys.path.insert(0, str(ROOT))
    try:
        from pydarknet.kernels import shipped
        return shipped
    finally:
        sys.path.remove(str(ROOT))


def compile_levels(package_root, levels):
    """Compile the wheel's kernels for each level into package_root/pydarknet/kernels/compiled/, one process a
    level, side by side. Each process imports the package being built: from its folder (the current one, first on
    the path), without site's .pth files (-S), where an editable install of pydarknet would put its own finder
    first, with this process's path after it."""
    package_root = Path(package_root).resolve()
    out = package_root / "pydarknet" / "kernels" / "compiled"
    shutil.rmtree(out, ignore_errors=True)   # a build folder's earlier levels
    code = ("import sys, pydarknet; from pathlib import Path; from pydarknet.tasks.warmup import compile_for_wheel\n"
            "assert Path(pydarknet.__file__).parent.parent == Path(sys.argv[1]), pydarknet.__file__\n"
            "compile_for_wheel(*sys.argv[2:])")
    path = os.pathsep.join([str(package_root)] + [entry for entry in sys.path if entry])
    with tempfile.TemporaryDirectory(prefix="pydarknet-wheel-kernels-") as caches:
        processes = []
        for level in levels:
            env = {**os.environ, **shipped().target_environment(level), "NUMBA_CACHE_DIR": os.path.join(caches, level),
                   "PYTHONPATH": path}
            command = [sys.executable, "-S", "-c", code, str(package_root), level, str(out)]
            processes.append(subprocess.Popen(command, env=env, cwd=package_root))
        failed = [level for level, process in zip(levels, processes) if process.wait() != 0]
    if failed:
        raise RuntimeError(f"compiling the kernels for {', '.join(failed)} failed (see above); "
                           "PYDARKNET_WHEEL_KERNELS=0 builds a wheel without them")


class BuildWithKernels(build_py):
    """setuptools' build_py, then (for a wheel) the kernels compiled into the built package."""

    def run(self):
        super().run()
        levels = [] if self.editable_mode else levels_here()
        if levels:
            compile_levels(self.build_lib, levels)


class PlatformWheel(bdist_wheel):
    """A platform wheel where the build compiles kernels (levels_here), else setuptools' pure one."""

    def finalize_options(self):
        if levels_here():   # as for compiled extensions: the whole package installs into platlib, in one folder
            self.distribution.has_ext_modules = lambda: True
        super().finalize_options()

    def get_tag(self):
        python, abi, plat = super().get_tag()
        return (python, abi, plat) if self.root_is_pure else (python, abi, PLATFORM)
