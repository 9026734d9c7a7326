"""The kernels a wheel carries (kernels/shipped.py, built by tools/backend/pydarknet_wheel.py): a fresh install's first
command compiles nothing and prints what a warm run prints, with the bits of natively compiled kernels, from a
read-only install too; where they cannot be used (another Numba, changed sources, a CPU without a level's
features) Numba compiles as it always did, and a kernel for features the CPU lacks is never loaded."""
import json
import os
import re
import shutil
import subprocess
import sys

import llvmlite.binding as llvm
import numpy as np
import pytest

from conftest import ROOT, SHARED
from pydarknet.kernels import shipped
from test_vector_widths import HASWELL

HOST_LEVELS = shipped.levels_run_by(llvm.get_host_cpu_features().flatten())
needs_kernels = pytest.mark.skipif(not HOST_LEVELS or sys.platform != "linux",
                                   reason="the wheel carries kernels where it is built on x86-64 Linux with AVX2")


def site_packages(installed):
    bin_dir, cwd, env = installed
    return subprocess.run([str(bin_dir / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True, env=env).stdout.strip()


def compiled_folder(installed):
    return os.path.join(site_packages(installed), "pydarknet", "kernels", "compiled")


def cold(installed, tmp_path, **extra):
    """The installed command's environment with an empty Numba cache and HOME: a fresh machine."""
    bin_dir, cwd, env = installed
    (tmp_path / "home").mkdir(exist_ok=True)
    return {**env, "NUMBA_CACHE_DIR": str(tmp_path / "numba"), "HOME": str(tmp_path / "home"), **extra}


def kernels_compiled(folder):
    """The index files Numba wrote: one for each kernel it compiled (a kernel loaded from its cache writes none)."""
    return sorted(p.name for p in folder.rglob("*.nbi")) if folder.exists() else []


def test_a_cpu_runs_the_levels_whose_features_it_has():
    v4 = shipped.target_environment("x86-64-v4")["NUMBA_CPU_FEATURES"]
    assert shipped.levels_run_by(v4 + ",+avx512vnni,-amx-tile") == ["x86-64-v4", "x86-64-v3"]
    assert shipped.level_for(HASWELL["NUMBA_CPU_FEATURES"]) == "x86-64-v3"
    assert shipped.level_for(v4.replace("+avx512vl", "-avx512vl")) == "x86-64-v3"   # one feature short of v4
    assert shipped.level_for("+64bit,+sse,+sse2,+sse3,+ssse3,+sse4.1,+sse4.2,+popcnt") is None
    assert shipped.level_for("") is None


@needs_kernels
def test_the_wheel_carries_the_levels_this_cpu_runs(installed):
    folder = compiled_folder(installed)
    assert sorted(os.listdir(folder)) == sorted(HOST_LEVELS)
    for level in HOST_LEVELS:
        with open(os.path.join(folder, level, shipped.MANIFEST)) as f:
            manifest = json.load(f)
        assert manifest["magic"][1] == level and manifest["versions"] == shipped.versions()
        assert len([name for _, _, names in os.walk(os.path.join(folder, level)) for name in names
                    if name.endswith(".nbi")]) > 90
    info = next(p for p in os.listdir(site_packages(installed)) if p.startswith("pydarknet-") and
                p.endswith(".dist-info"))
    with open(os.path.join(site_packages(installed), info, "WHEEL")) as f:
        wheel = f.read()
    python = "cp%d%d" % sys.version_info[:2]
    assert "Root-Is-Purelib: false" in wheel and f"Tag: {python}-{python}-manylinux_2_17_x86_64" in wheel


def detect_twice(installed, env, args, wrap=()):
    bin_dir, cwd, _ = installed
    runs = [subprocess.run([*wrap, str(bin_dir / "pydarknet"), "detect", *args], cwd=cwd, env=env,
                           capture_output=True, text=True, timeout=300) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
    return runs


def timeless(out):
    return re.sub(r"Predicted in [0-9.]+ (milli-)?seconds", "Predicted in", out)


def the_cases():
    cases = [["cfg/shapes-tiny.cfg", "data/shapes-tiny.weights", "data/shapes.jpg"]]
    if (SHARED / "models" / "yolov3-tiny.weights").is_file():   # the first command the README shows
        cases.append(["cfg/yolov3-tiny.cfg", str(SHARED / "models" / "yolov3-tiny.weights"), "data/dog.jpg"])
    return cases


@needs_kernels
@pytest.mark.parametrize("args", the_cases(), ids=lambda args: os.path.basename(args[0]))
def test_the_first_detect_compiles_nothing_and_prints_what_a_warm_run_prints(installed, tmp_path, args):
    first, warm = detect_twice(installed, cold(installed, tmp_path), args)
    assert kernels_compiled(tmp_path / "numba") == []
    assert "Compiling" not in first.stderr and first.stderr == warm.stderr
    assert timeless(first.stdout) == timeless(warm.stdout) and "%" in first.stdout


@needs_kernels
def test_a_read_only_install_loads_them_too(installed, tmp_path):
    """The package's folder mounted read-only (as an image's or a system's install): Numba's cache goes to the
    user's own, and stays empty of kernels."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode:
        pytest.skip("no user and mount namespaces here (unshare -rm) to mount the install read-only")
    site = site_packages(installed)
    env = {k: v for k, v in cold(installed, tmp_path).items() if k != "NUMBA_CACHE_DIR"}
    wrap = ["unshare", "-rm", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"', site]
    first, warm = detect_twice(installed, env, the_cases()[0], wrap)
    assert "Compiling" not in first.stderr
    assert timeless(first.stdout) == timeless(warm.stdout)
    assert kernels_compiled(tmp_path / "home") == [] and list((tmp_path / "home").rglob("*.nb*")) == []


FORWARDS = """import sys, numpy as np
from pydarknet.kernels.products import products_for
from pydarknet.network.network import Network
outputs = {}
files = sys.argv[1]
for mode in ("darknet", "fast"):
    net = Network(files + "/cfg/shapes-v4tiny.cfg", quiet_unused=True).load(files + "/data/shapes-v4tiny.weights")
    net.resize(416, 416)
    net.products = products_for(mode)
    net.forward(np.random.default_rng(0).random((1,) + net.input_shape, dtype=np.float32))
    outputs[mode] = np.concatenate([l.output.ravel() for l in net.layers if l.type == "yolo"])
np.savez(sys.argv[2], **outputs)
"""


@needs_kernels
def test_the_shipped_kernels_give_the_bits_of_native_ones(installed, tmp_path):
    """The demo model (yolov4-tiny's shape) at 416, the exact products and --fast's (Winograd, FMA): the wheel's
    kernels for this CPU's level, against those compiled natively for it."""
    bin_dir, cwd, _ = installed
    files = os.path.join(site_packages(installed), "pydarknet", "_files")
    run = subprocess.run([str(bin_dir / "python"), "-c", FORWARDS, files, str(tmp_path / "shipped.npz")], cwd=cwd,
                         env=cold(installed, tmp_path), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert kernels_compiled(tmp_path / "numba") == []
    native = subprocess.run([sys.executable, "-c", FORWARDS, str(ROOT), str(tmp_path / "native.npz")],
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert native.returncode == 0, native.stderr[-2000:]
    ours, theirs = np.load(tmp_path / "shipped.npz"), np.load(tmp_path / "native.npz")
    assert not np.array_equal(ours["darknet"], ours["fast"])   # two arithmetics, each compared below
    for mode in ("darknet", "fast"):
        assert np.isfinite(ours[mode]).all() and np.array_equal(ours[mode], theirs[mode]), mode


# One kernel from the checkout, with the shipped set at argv[1]: whether Numba compiled it.
ONE_KERNEL = """import sys, numpy as np
from pathlib import Path
from pydarknet.kernels import shipped
shipped.FOLDER = Path(sys.argv[1])
shipped.install()
from pydarknet.kernels.nms import box_iou
print(box_iou(np.float32([.5, .5, .2, .2]), np.float32([.55, .5, .2, .2])))
"""


@pytest.fixture
def shipped_copy(installed, tmp_path):
    """The wheel's levels copied, their manifests naming this checkout's sources (its pydarknet/ also holds the
    fork's `darknet` package, which the wheel puts beside it), and a runner of ONE_KERNEL on them that returns
    whether the kernel compiled."""
    folder = tmp_path / "compiled"
    shutil.copytree(compiled_folder(installed), folder)
    edit_manifests(folder, sources=shipped.sources_digest())

    def compiled(**env):
        cache = tmp_path / f"numba-{len(list(tmp_path.glob('numba-*')))}"
        run = subprocess.run([sys.executable, "-c", ONE_KERNEL, str(folder)], capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_CACHE_DIR": str(cache), **env})
        assert run.returncode == 0 and float(run.stdout) == pytest.approx(0.6), run.stderr[-2000:]
        return kernels_compiled(cache) != []
    return folder, compiled


def edit_manifests(folder, **changes):
    for manifest in folder.glob(f"*/{shipped.MANIFEST}"):
        manifest.write_text(json.dumps({**json.loads(manifest.read_text()), **changes}))


@needs_kernels
def test_they_load_only_for_the_sources_and_versions_they_were_built_with(shipped_copy):
    folder, compiled = shipped_copy
    assert not compiled()
    edit_manifests(folder, sources="0" * 64)   # the package's sources changed since
    assert compiled()
    edit_manifests(folder, sources=shipped.sources_digest(), versions={**shipped.versions(), "numba": "0.57.0"})
    assert compiled()
    edit_manifests(folder, versions=shipped.versions())
    assert not compiled() and compiled(PYDARKNET_NUMBA_SHORTCUTS="0")


@needs_kernels
def test_a_level_the_cpu_lacks_features_of_is_never_loaded(shipped_copy):
    """Numba compiling for Haswell (AVX2, no AVX-512) takes AVX2's level, never AVX-512's; a CPU with AVX-512 takes
    its own level only (its kernels' vectors are twice as wide), so it compiles where the wheel lacks it."""
    folder, compiled = shipped_copy
    assert not compiled(**HASWELL)
    if "x86-64-v4" in HOST_LEVELS:
        aside = folder.parent / "aside"
        (folder / "x86-64-v4").rename(aside)
        assert compiled()
        aside.rename(folder / "x86-64-v4")
        shutil.rmtree(folder / "x86-64-v3")
        assert compiled(**HASWELL)
        assert not compiled()


@pytest.mark.parametrize("in_tree", [False, True])
def test_numbas_cache_of_the_package_is_dropped_when_the_kernels_sources_change(tmp_path, monkeypatch, in_tree):
    """shipped.fresh: Numba's per-file stamp misses a callee changed in another file (a kernel compiles its callees
    into itself); the package's index files go when a file of kernels/ or files/ changed since the record, and
    stay while none did (a change to the commands' files included). NUMBA_CACHE_DIR's layout (a folder per source
    folder, side by side) and the in-tree one (each source folder's __pycache__); another package's untouched."""
    from types import SimpleNamespace

    from numba.core.caching import _CacheLocator

    from pydarknet.kernels import IMPORTED
    package = tmp_path / "pydarknet"
    for name in ("kernels/conv.py", "kernels/activations.py", "files/image.py", "cli/options.py", "__init__.py"):
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text("")
    monkeypatch.setattr(shipped, "PACKAGE", package)
    base = package / "__pycache__" if in_tree else tmp_path / "numba"

    def where(folder):
        return folder / "__pycache__" if in_tree else base / _CacheLocator.get_suitable_cache_subpath(
            str(folder / "any.py"))

    namespace = {}
    exec(compile("def kernel(): pass", str(package / "kernels" / "conv.py"), "exec"), namespace)
    cache = SimpleNamespace(_py_func=namespace["kernel"], _cache_path=str(where(package / "kernels")))
    folders = [package, package / "kernels", package / "files", package / "cli"]
    theirs = tmp_path / "numba" / "elsewhere_0" / "theirs.nbi"
    theirs.parent.mkdir(parents=True)
    theirs.write_bytes(b"")

    def indexed():
        return sorted(str(p.relative_to(tmp_path)) for folder in folders for p in where(folder).glob("*.nbi"))

    def compiled(by_this_process=False):   # an index file in each folder's cache, as Numba writes one a kernel
        for folder in folders:
            where(folder).mkdir(parents=True, exist_ok=True)
            (where(folder) / "k.nbi").write_bytes(b"")
            if not by_this_process:   # by an earlier one
                os.utime(where(folder) / "k.nbi", (IMPORTED - 60, IMPORTED - 60))
        return indexed()

    def first_load():   # a process's first load from the cache
        monkeypatch.setattr(shipped, "_fresh", [])
        shipped.fresh(cache)

    def touch(name):
        stat = os.stat(package / name)
        os.utime(package / name, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10 ** 9))

    compiled()
    first_load()   # no record yet: what is there may be stale
    assert indexed() == [] and (base / shipped.RECORD).is_file()
    kept = compiled()
    first_load()
    touch("cli/options.py")
    first_load()
    assert indexed() == kept and len(kept) == 4
    touch("files/image.py")
    first_load()
    assert indexed() == [] and theirs.exists()
    compiled()
    (package / "kernels" / "activations.py").write_text("x = 1")
    first_load()
    assert indexed() == []
    ours = compiled(by_this_process=True)   # compiled from these sources before the first load (an image decoded)
    touch("kernels/conv.py")
    first_load()
    assert indexed() == ours
