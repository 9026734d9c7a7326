"""Kernels compiled when the wheel was built, loaded where Numba's own cache has none: the first command on a fresh
install starts in a second instead of compiling for half a minute.

A wheel built from this source (tools/backend/pydarknet_wheel.py) carries, in compiled/<level>/, Numba's cache
files of the commands' default paths (tasks.warmup.compile_jobs' portable set) compiled for a portable x86-64 level
(LEVELS: x86-64-v3 for AVX2, x86-64-v4 for AVX-512), with a manifest of what they were built with. `install()`
puts `load` behind Numba's cache lookup, for pydarknet's kernels only:

* Numba's own cache is read first: a kernel compiled on this machine (`pydarknet compile`, a mode the wheel does not
  carry, such as --int16 or --bf16 with the CPU's own instructions) is what runs when there is one;
* a level is used only where it is the highest one the CPU Numba compiles for has (its features, or those
  NUMBA_CPU_NAME / NUMBA_CPU_FEATURES name): never a kernel for features the CPU lacks, and never AVX2's kernels on a
  CPU with AVX-512 (the kernels read their vector width from the target they are compiled for);
* only with the Python, Numba and llvmlite versions it was built with, and while the package's sources are the ones
  it was built from (their sha256): otherwise, or where a file cannot be read, Numba compiles as it always did (and
  the compile notice says so).

Nothing is written: a read-only install loads them as well. The exact products keep darknet's order whatever they
are compiled for, so the portable kernels give the same bits as the natively compiled ones (tests/test_shipped.py).

Numba's own cache gets the same rule (`fresh`): Numba stamps a kernel's compilation with its own file's source, but
a kernel compiles into itself the kernels it calls from other files, so after a change to those files alone (a
`git pull` in the README's editable install) it would load the callees' old code (conv.py's pass after the products
kept activations.py's old mish and swish until its own file changed). Before the process's first load from Numba's
cache, the kernels' sources (the path, mtime and size of each .py file in kernels/ and files/) are compared with the
record kept beside that cache; where they differ, pydarknet's index files there are removed (Numba compiles again),
but for those this process wrote (a script's images decoded before its first network), and the record is written.

The lookup reaches into Numba's caching internals, as the start-up shortcuts do (startup.py), and is skipped with
them by PYDARKNET_NUMBA_SHORTCUTS=0.
"""
import hashlib
import json
import os
import pickle
import shutil
import sys
from pathlib import Path

from . import IMPORTED

PACKAGE = Path(__file__).resolve().parent.parent   # pydarknet/
FOLDER = Path(__file__).resolve().parent / "compiled"
MANIFEST = "manifest.json"
RECORD = "pydarknet-sources"   # beside Numba's cache of the package: the sources it was compiled from (`fresh`)
_BASE = "64bit,cmov,cx8,fxsr,mmx,sse,sse2,cx16,sahf,popcnt,sse3,sse4.1,sse4.2,ssse3"
_V3 = _BASE + ",avx,avx2,bmi,bmi2,f16c,fma,lzcnt,movbe,xsave"
# The x86-64 psABI's micro-architecture levels, highest first: LLVM's CPU name and the features it implies.
LEVELS = {"x86-64-v4": _V3 + ",avx512f,avx512bw,avx512cd,avx512dq,avx512vl", "x86-64-v3": _V3}
# Features every x86-64 CPU with AVX has, which a feature string may leave to its CPU name (NUMBA_CPU_FEATURES as
# `make bench-avx2` sets it for Haswell lists none of them): not looked for.
IMPLIED = {"64bit", "cmov", "cx8", "fxsr", "mmx", "sse", "sse2", "cx16", "sahf", "xsave"}


def target_environment(level):
    """The environment under which Numba compiles for `level` (NUMBA_CPU_NAME and NUMBA_CPU_FEATURES)."""
    return {"NUMBA_CPU_NAME": level, "NUMBA_CPU_FEATURES": ",".join("+" + name for name in LEVELS[level].split(","))}


def levels_run_by(features):
    """The levels, highest first, whose features are all in `features` (LLVM's feature string: "+avx2,-avx512f")."""
    on = {name[1:] for name in features.split(",") if name.startswith("+")}
    return [level for level, needs in LEVELS.items() if set(needs.split(",")) - IMPLIED <= on]


def level_for(features):
    """The highest level a CPU with `features` runs, else None."""
    return next(iter(levels_run_by(features)), None)


def sources_digest(package=PACKAGE):
    """sha256 of the package's Python sources (their paths and bytes): the shipped kernels are valid only for the
    sources they were compiled from, callers and callees alike."""
    digest = hashlib.sha256()
    for name in python_sources(package):   # 3-5 ms a process for the wheel's 1.4 MB of sources
        with open(os.path.join(package, name), "rb") as f:
            digest.update(name.replace(os.sep, "/").encode() + b"\0" + f.read() + b"\0")
    return digest.hexdigest()


def python_sources(package=PACKAGE):
    """The package's .py files, their paths relative to it, sorted (os.walk, not pathlib's rglob, which took 8 ms
    where this takes 5 with the reading; Numba's caches and the wheel's compiled/ are not walked)."""
    names = []
    for folder, subfolders, files in os.walk(package):
        subfolders[:] = [name for name in subfolders if name not in ("__pycache__", "compiled")]
        relative = os.path.relpath(folder, package)
        names += (os.path.normpath(os.path.join(relative, name)) for name in files if name.endswith(".py"))
    return sorted(names)


def source_folders(names, package=PACKAGE):
    """The folders holding the files `names` (python_sources'), sorted."""
    return [Path(package, folder) for folder in sorted({os.path.dirname(name) for name in names})]


def versions():
    import llvmlite
    import numba
    return {"python": "%d.%d" % sys.version_info[:2], "numba": numba.__version__, "llvmlite": llvmlite.__version__}


# -- loading ------------------------------------------------------------------------------------------------------
_levels = {}    # {Numba's magic tuple: (the level's folder, the target it was compiled for), or None}
_indexes = {}   # {index file: {key: data file name}}
_loads = [0]    # kernels loaded from a cache in this process, Numba's or the wheel's (loads_so_far)


def loads_so_far():
    """How many kernels this process has loaded from a cache, Numba's own or the wheel's, since install(): a pass
    that loaded some is not a warm pass (tasks.predict.timed_forward times another)."""
    return _loads[0]


def install():
    """Put `load` behind Numba's cache lookup (Cache._load_overload) for the rest of the process; returns whether
    it is there. Where the internal is missing, Numba is left as it is."""
    if os.environ.get("PYDARKNET_NUMBA_SHORTCUTS", "1") == "0":
        return False
    try:
        from numba.core.caching import Cache
    except ImportError:
        return False
    numba_load = getattr(Cache, "_load_overload", None)
    if numba_load is None:
        return False
    if getattr(numba_load, "shipped", False):
        return True

    def _load_overload(cache, signature, target_context):
        if not _fresh:
            fresh(cache)
        found = numba_load(cache, signature, target_context)
        if found is None:
            found = load(cache, signature, target_context)
        _loads[0] += found is not None
        return found

    _load_overload.shipped = True
    Cache._load_overload = _load_overload
    return True


_fresh = []   # the cache folder `fresh` has checked in this process


def fresh(cache):
    """Remove the index files of pydarknet's kernels from Numba's cache where the kernels' sources changed since
    they were compiled (see the module's docstring), once per process, at the first load of one of its kernels."""
    try:
        source = Path(cache._py_func.__code__.co_filename).resolve()
        if PACKAGE not in source.parents:
            return
        cached = Path(cache._cache_path)
        in_tree = cached == source.parent / "__pycache__"   # else a folder per source folder, side by side
        base = PACKAGE / "__pycache__" if in_tree else cached.parent
        _fresh.append(base)
        folders, now = sources_fingerprint(PACKAGE)
        record = base / RECORD
        if record.is_file() and record.read_text() == now:
            return
        from numba.core.caching import _CacheLocator
        for folder in folders:
            where = folder / "__pycache__" if in_tree else \
                base / _CacheLocator.get_suitable_cache_subpath(str(folder / "any.py"))
            for index in where.glob("*.nbi"):
                if index.stat().st_mtime < IMPORTED:   # (not this process's own, compiled from these sources)
                    index.unlink(missing_ok=True)
        base.mkdir(parents=True, exist_ok=True)
        partial = base / f"{RECORD}.{os.getpid()}"
        partial.write_text(now)
        os.replace(partial, record)
    except (OSError, AttributeError, ImportError):   # a read-only cache, or Numba's internals moved: as Numba does
        return


KERNEL_SOURCES = ("kernels", "files")   # the package's folders whose kernels other files' kernels call


def sources_fingerprint(package=PACKAGE):
    """(the package's folders of sources, a digest of the path, mtime and size of each .py file in KERNEL_SOURCES):
    under a millisecond a process, where hashing their bytes (sources_digest) takes 3-5. A change elsewhere (the
    commands, the layers) leaves the kernels' cache as it is."""
    names = python_sources(package)
    digest = hashlib.sha256()
    for name in names:
        if name.split(os.sep)[0] in KERNEL_SOURCES:
            stat = os.stat(os.path.join(package, name))
            digest.update(f"{name.replace(os.sep, '/')}\0{stat.st_mtime_ns}\0{stat.st_size}\0".encode())
    return source_folders(names, package), digest.hexdigest()


def load(cache, signature, target_context):
    """The shipped compilation of `cache`'s kernel for `signature`, rebuilt for `target_context`, else None."""
    try:
        source = Path(cache._py_func.__code__.co_filename).resolve()
        level = shipped_level(target_context.codegen().magic_tuple())
        if level is None or PACKAGE not in source.parents:
            return None
        folder, compiled_for = level
        index = folder / source.parent.relative_to(PACKAGE) / cache._cache_file._index_name
        sig, _, code = cache._index_key(signature, target_context.codegen())
        name = read_index(index).get((sig, compiled_for, code))
        if name is None:
            return None
        return cache._impl.rebuild(target_context, pickle.loads((index.parent / name).read_bytes()))
    except Exception:   # an unreadable or foreign file: Numba compiles, as it would have without them
        return None


def shipped_level(magic):
    """(folder, the magic tuple it was compiled for) of the shipped level for Numba's target `magic` (triple, CPU
    name, features), or None: see the module's docstring for when."""
    if magic not in _levels:
        level = level_for(magic[2])
        _levels[magic] = None if level is None else usable(FOLDER / level, magic[0])
    return _levels[magic]


def usable(folder, triple):
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        compiled_for = tuple(manifest["magic"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    same = manifest.get("versions") == versions() and compiled_for[0] == triple
    return (folder, compiled_for) if same and manifest.get("sources") == sources_digest() else None


def read_index(path):
    """Numba's index file: {key: data file name} (its source stamp is left unread: the manifest's digest holds)."""
    if path not in _indexes:
        try:
            with open(path, "rb") as f:
                pickle.load(f)   # Numba's version, checked with the manifest's
                _indexes[path] = pickle.loads(f.read())[1]
        except (OSError, pickle.UnpicklingError, EOFError, IndexError):
            _indexes[path] = {}
    return _indexes[path]


# -- building (tools/backend/pydarknet_wheel.py, in a process that compiled for one level) ------------------------
def keep(level, numba_cache, out):
    """Copy this process's compilations for `level` from Numba's cache folder `numba_cache` (NUMBA_CACHE_DIR) into
    out/<level>/, each source folder's files under its path in the package, with the level's manifest. Returns how
    many index files were kept."""
    from numba.core.caching import _CacheLocator
    from numba.core.registry import cpu_target
    magic = cpu_target.target_context.codegen().magic_tuple()
    if magic[1] != level:
        raise RuntimeError(f"this process compiles for {magic[1]}, not {level}: run it under target_environment()")
    target = Path(out) / level
    kept = 0
    for folder in source_folders(python_sources(PACKAGE), PACKAGE):
        cached = Path(numba_cache) / _CacheLocator.get_suitable_cache_subpath(str(folder / "any.py"))
        for index in sorted(cached.glob("*.nbi")):
            entries = {key: name for key, name in read_index(index).items() if key[1] == magic}
            if not entries:
                continue
            into = target / folder.relative_to(PACKAGE)
            into.mkdir(parents=True, exist_ok=True)
            with open(index, "rb") as f:
                version = pickle.load(f)
            (into / index.name).write_bytes(pickle.dumps(version) + pickle.dumps((None, entries)))
            for name in entries.values():
                shutil.copyfile(cached / name, into / name)
            kept += 1
    manifest = {"level": level, "magic": list(magic), "versions": versions(), "sources": sources_digest()}
    (target / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return kept
