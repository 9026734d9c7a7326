"""A process's start and end: what Numba's import, its first kernel's load and Python's end would cost.

The shortcuts reach into Numba's internals, as do preload.load_cached and the wheel's kernels (shipped.py, taken
here as one of them): NUMBA_TESTED names the Numba versions they were tested on, pyproject.toml bounds Numba to
them, and tests/test_startup.py fails on a Numba outside them or one whose internals moved. At run time each
shortcut checks that its internal is there and is skipped, leaving Numba's own slower path, when it is not;
PYDARKNET_NUMBA_SHORTCUTS=0 skips them all. Which commands end quickly, and what a command records at its end, the
command line decides (cli/__init__.py).
"""
import atexit
import gc
import hashlib
import os
import pickle
import struct
import sys
import threading
import types

from . import shipped

# The first and the last Numba minor release that the shortcuts into its internals were tested on.
NUMBA_TESTED = ((0, 58), (0, 68))


def start():
    """Everything a command's process does before it parses its arguments."""
    # A command's start creates Numba's hundred thousand long-lived objects: with Python's default threshold
    # (700) the collector walks them all twice on the way (85 ms); every 50000 new objects it runs 3 times.
    gc.set_threshold(50_000)
    if os.environ.get("PYDARKNET_NUMBA_SHORTCUTS", "1") != "0":
        skip_numba_probes()


def end(ending=None, quick=False):
    """The process ends here, with `ending` (an exception) on its way: Python's shutdown skips its garbage
    collection, which walks Numba's and LLVM's objects for 0.25 s (the operating system frees the memory). A
    `quick` process (one that has closed every file it wrote) that exits, no other thread running, ends once the
    exit handlers have run and its output is flushed: Python's end would go on to free every module's objects and
    LLVM's (35 ms after yolov3-tiny's `detect` on a Sapphire Rapids Xeon)."""
    gc.freeze()
    status = getattr(ending, "code", "")
    if quick and isinstance(ending, SystemExit) and (status is None or isinstance(status, int)) and \
            threading.active_count() == 1:
        atexit._run_exitfuncs()   # CPython's, unchanged since 3.0; tests/test_startup.py checks it is there
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError, AttributeError):   # a closed pipe or stream: Python's end reports it as ever
            return
        os._exit(status or 0)


def skip_numba_probes():
    """Import Numba without SciPy and PyYAML, and answer its probes for BLAS, cffi and its cache folder without
    their costs; each one that finds its Numba internal missing is skipped. Returns the names of the shortcuts
    taken."""
    return [name for name, shortcut in SHORTCUTS.items() if shortcut()]


JITCLASS_OVERLOADS = "numba.experimental.jitclass.overloads"


def numba_without_unused_imports():
    """Numba's import imports two optional packages that a command never uses, when installed: SciPy, only to
    check its version (its BLAS is left out: no_blas_probe), and PyYAML, to read a .numba_config.yaml in the
    current folder (where there is one, it is imported as usual): together 13 ms on a Sapphire Rapids Xeon. Numba
    is imported here with each import of them raising ImportError; the process may import them later. It also
    registers the operators of jitclass objects (numba.experimental.jitclass.overloads: 13 ms on an Intel Xeon
    with 2 cores), which pydarknet does not use: an empty module stands in for it while Numba imports, and a later
    import of it imports it (and registers them) as usual."""
    if "numba" in sys.modules:
        return False
    unused = [name for name in ("scipy", "yaml") if name not in sys.modules]
    if os.path.isfile(".numba_config.yaml") and "yaml" in unused:
        unused.remove("yaml")
    sys.modules.update(dict.fromkeys(unused))   # None: an import raises ImportError while this is set
    sys.modules[JITCLASS_OVERLOADS] = types.ModuleType(JITCLASS_OVERLOADS)
    try:
        import numba  # noqa: F401
    finally:
        for name in unused:
            del sys.modules[name]
        del sys.modules[JITCLASS_OVERLOADS]
        package = sys.modules.get(JITCLASS_OVERLOADS.rpartition(".")[0])
        if package is not None and isinstance(vars(package).get("overloads"), types.ModuleType) and \
                not hasattr(package.overloads, "__file__"):
            del package.overloads
    return True


def cache_check_once_per_folder():
    """Numba proves its cache folder writable by creating a temporary file in it for every cached kernel, as
    the kernel modules are imported (a command imports about 170): once per folder is enough."""
    try:
        from numba.core.caching import _CacheLocator
        check = _CacheLocator.ensure_cache_path
    except (ImportError, AttributeError):
        return False
    if not getattr(check, "once_per_folder", False):
        writable = set()

        def ensure_cache_path(locator):
            path = locator.get_cache_path()
            if path not in writable:
                check(locator)
                writable.add(path)

        ensure_cache_path.once_per_folder = True
        _CacheLocator.ensure_cache_path = ensure_cache_path
    return True


def no_blas_probe():
    """Numba's lowering of numpy (numba.np.arraymath, imported when a compile first sets up the registries) checks
    whether compiled code may call BLAS by importing scipy.linalg, if installed: 0.4 s. pydarknet's kernels never
    call BLAS from compiled code (matrix products go through numpy or kernels/gemm.py), so Numba is told there
    is none as it sets up its registries; a kernel that did call np.dot would fail to compile, loudly."""
    try:
        from numba.core.cpu import CPUContext
    except ImportError:
        return False
    load_registries = CPUContext.load_additional_registries
    if getattr(load_registries, "without_blas", False):
        return True

    def no_blas():
        raise ImportError("pydarknet's kernels do not use BLAS from compiled code")

    def load_additional_registries(context):
        import numba.np.linalg as linalg
        if hasattr(linalg, "ensure_blas"):
            linalg.ensure_blas = no_blas
        load_registries(context)

    load_additional_registries.without_blas = True
    CPUContext.load_additional_registries = load_additional_registries
    return True


def cached_loads_without_registries():
    """Before loading a cached kernel Numba refreshes its target context: it imports and installs every typing
    and lowering registry (numpy's, the typed containers', np.random's, ...), 100-160 ms of the first load on a
    Zen 3 EPYC, which only a compile uses. A cached kernel needs only Numba's runtime (NRT) set up; a compile
    still refreshes the context itself (numba's CompilerBase). Another target's context loads as Numba does."""
    try:
        from numba.core.caching import Cache
        from numba.core.cpu import CPUContext
        from numba.core.runtime.nrt import rtsys
    except ImportError:
        return False
    if not all(hasattr(Cache, name) for name in ("_load_overload", "_guard_against_spurious_io_errors")) or \
            not hasattr(rtsys, "initialize"):
        return False
    load_refreshed = Cache.load_overload
    if getattr(load_refreshed, "without_registries", False):
        return True

    def load_overload(cache, signature, target_context):
        if not isinstance(target_context, CPUContext):
            return load_refreshed(cache, signature, target_context)
        rtsys.initialize(target_context)
        with cache._guard_against_spurious_io_errors():
            return cache._load_overload(signature, target_context)

    load_overload.without_registries = True
    Cache.load_overload = load_overload
    return True


def runtime_from_cache():
    """Numba compiles the LLVM half of its runtime (reference counts, access to a meminfo's data) as a process
    loads its first kernel: 35-40 ms of every command on a Zen 3 EPYC. A command keeps that machine code beside
    the cached kernels, under Numba's and llvmlite's versions and the code generator's CPU and features, and
    loads it as Numba loads a cached kernel (4 ms); an unreadable copy is compiled again, as Numba would."""
    try:
        from numba.core.runtime import nrtdynmod
    except ImportError:
        return False
    compile_runtime = getattr(nrtdynmod, "compile_nrt_functions", None)
    if compile_runtime is None or not hasattr(nrtdynmod, "create_nrt_module"):
        return False
    if getattr(compile_runtime, "from_cache", False):
        return True

    def compile_nrt_functions(context):
        codegen = context.codegen()
        if not all(hasattr(codegen, name) for name in ("magic_tuple", "unserialize_library")):
            return compile_runtime(context)
        path = runtime_file(codegen)
        try:
            return codegen.unserialize_library(pickle.loads(path.read_bytes()))
        except Exception:   # not kept yet, or unreadable: compiled as Numba does, and kept
            pass
        module, library = nrtdynmod.create_nrt_module(context)
        library.enable_object_caching()
        library.add_ir_module(module)
        library.finalize()
        keep_runtime(path, library)
        return library

    compile_nrt_functions.from_cache = True
    nrtdynmod.compile_nrt_functions = compile_nrt_functions
    return True


def runtime_file(codegen):
    """Where runtime_from_cache keeps the runtime's machine code for this Numba, llvmlite and CPU."""
    import llvmlite
    import numba

    from . import cache_folder
    key = repr((numba.__version__, llvmlite.__version__, codegen.magic_tuple()))
    return cache_folder() / f"numba-runtime-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pickle"


def keep_runtime(path, library):
    """Write the runtime's machine code atomically; a read-only cache keeps nothing."""
    from ..files.errors import WriteError
    from ..files.weights import atomic_write
    try:
        atomic_write(path, pickle.dumps(library.serialize_using_object_code()))
    except (WriteError, OSError, pickle.PicklingError, ValueError):
        pass


def no_cffi_typing():
    """Numba's typing makes a cffi.FFI(), if cffi is installed, which parses C declarations (13 ms):
    pydarknet's kernels take no cffi function, so Numba's cffi support is set up as if cffi were absent (the
    process may import cffi later)."""
    if "cffi" in sys.modules or "numba.core.typing.cffi_utils" in sys.modules:
        return False
    sys.modules["cffi"] = None   # an import of cffi raises ImportError while this is set
    try:
        import numba.core.typing.cffi_utils  # noqa: F401
    except ImportError:
        return False
    finally:
        del sys.modules["cffi"]
    return True


def no_llvm_lock_events():
    """Numba counts the time its compiles hold LLVM's lock: every call into LLVM runs two Python callbacks that
    broadcast an event, which only a compile's statistics (its metadata's llvm_lock timer) listen to. Loading
    yolov3-tiny's cached kernels calls into LLVM 3,400 times, in both of a command's threads: without the
    callbacks the whole `detect` took 0.95x its time (Intel Xeon, 2 cores). A compile in the process still
    works; its statistics then count no time in the lock."""
    try:
        import numba.core.base  # noqa: F401  (where Numba registers them)
        from llvmlite.binding import ffi
        callbacks = list(ffi.lib._lock._cblist)
        unregister = ffi.unregister_lock_callback
    except (ImportError, AttributeError):
        return False
    for pair in callbacks:
        if getattr(pair[0], "__module__", None) == "numba.core.base":
            unregister(*pair)
    return True


def environments_without_their_modules():
    """A cached kernel's environment (the constants its machine code raises errors with) names the module its code
    came from, and Numba imports that module as it loads the kernel, to give the environment its globals: a
    kernel that allocates (np.zeros, np.empty) imports numba.np.arrayobj and with it Numba's unicode support,
    24-40 ms of yolov3-tiny's `detect` on an Intel Xeon with 2 cores. Compiled nopython code reads only the
    constants (globals are for object mode, which pydarknet's kernels never use), so the environment of a module
    not imported yet gets globals naming the module alone; a module already imported gives its own, as in Numba."""
    try:
        from numba.core import environment
    except ImportError:
        return False
    numbas_rebuild = environment._rebuild_env
    if getattr(numbas_rebuild, "without_modules", False):
        return True
    if not all(hasattr(environment, name) for name in ("Environment", "lookup_environment")):
        return False

    def rebuild_env(modname, consts, env_name):
        if modname in sys.modules or environment.lookup_environment(env_name) is not None:
            return numbas_rebuild(modname, consts, env_name)
        env = environment.Environment({"__name__": modname})
        env.consts[:] = consts
        env.env_name = env_name
        environment.Environment._memo[env_name] = env
        return env

    rebuild_env.without_modules = True
    environment._rebuild_env = rebuild_env
    return True


def arrays_typed_without_numpy_ma():
    """Numba types an array argument (each new kind of array, at its first call) after checking that it is not a
    numpy.ma.MaskedArray, and that check imports numpy.ma: 11-42 ms of yolov3-tiny's `detect` on an Intel Xeon
    with 2 cores, in the thread that decodes the image, holding the interpreter's lock that the network's load
    needs. An array whose type is exactly numpy.ndarray, not masked, is typed here as Numba types it, without the
    import; any other (a subclass: masked, a memmap) and a dtype Numba lacks go to Numba's own typing."""
    try:
        import numpy as np
        from numba.core import errors
        from numba.core import types as numba_types
        from numba.core.typing.typeof import typeof_impl
        from numba.np import numpy_support
    except ImportError:
        return False
    numbas_typeof = typeof_impl.dispatch(np.ndarray)
    if getattr(numbas_typeof, "without_numpy_ma", False):
        return True
    if not all(hasattr(numpy_support, name) for name in ("from_dtype", "map_layout")):
        return False

    def typeof_ndarray(value, context):
        if type(value) is not np.ndarray:
            return numbas_typeof(value, context)
        try:
            dtype = numpy_support.from_dtype(value.dtype)
        except errors.NumbaNotImplementedError:
            return numbas_typeof(value, context)   # its own error
        return numba_types.Array(dtype, value.ndim, numpy_support.map_layout(value),
                                 readonly=not value.flags.writeable)

    typeof_ndarray.without_numpy_ma = True
    typeof_impl.register(np.ndarray)(typeof_ndarray)
    return True


def cached_kernels_without_their_ir():
    """A cached kernel holds its machine code and its LLVM IR (as bitcode), which only a compile reads: one that
    inlines the kernel into another. Numba parses the IR as it loads the kernel, to list the symbols its machine
    code defines (the entry points it then looks up): 60 ms of yolov3-tiny's `detect` for 1 MB of IR in 18
    kernels (Intel Xeon, 2 cores). Here the symbols are read from the machine code's own symbol table (ELF: Linux)
    and the IR is parsed when a compile first links the kernel; machine code of another format loads as Numba
    loads it."""
    try:
        from llvmlite import binding as llvm
        from numba.core.codegen import CPUCodeLibrary
    except ImportError:
        return False
    numba_unserialize = CPUCodeLibrary.__dict__.get("_unserialize")
    numba_for_linking = getattr(CPUCodeLibrary, "_get_module_for_linking", None)
    if not isinstance(numba_unserialize, classmethod) or numba_for_linking is None:
        return False
    if getattr(numba_for_linking, "parses_ir", False):
        return True

    def _unserialize(cls, codegen, state):
        name, kind, data = state
        symbols = elf_defined_symbols(data[0]) if kind == "object" else None
        if symbols is None:
            return numba_unserialize.__func__(cls, codegen, state)
        library = codegen.create_library(name)
        library.enable_object_caching()
        library._set_compiled_object(data[0])
        library._unparsed_ir = data[1]
        library._finalize_final_module()
        codegen._engine._defined_symbols |= symbols
        return library

    def _get_module_for_linking(library):
        ir = library.__dict__.pop("_unparsed_ir", None)
        if ir is not None:
            library._shared_module = llvm.parse_bitcode(ir)
        return numba_for_linking(library)

    _get_module_for_linking.parses_ir = True
    CPUCodeLibrary._unserialize = classmethod(_unserialize)
    CPUCodeLibrary._get_module_for_linking = _get_module_for_linking
    return True


def elf_defined_symbols(code):
    """The names of the global and weak symbols that 64-bit little-endian ELF machine code defines, else None (not
    such ELF). Numba's list also names the module's private constants, which it never looks up."""
    if code[:6] != b"\x7fELF\x02\x01":
        return None
    table_at, = struct.unpack_from("<Q", code, 0x28)
    entry_size, count = struct.unpack_from("<HH", code, 0x3A)
    # each section: name, type, flags, address, offset, size, link, info, alignment, entry size
    sections = [struct.unpack_from("<IIQQQQIIQQ", code, table_at + i * entry_size) for i in range(count)]
    names = set()
    for _, kind, _, _, offset, size, link, _, _, _ in sections:
        if kind != 2:   # SHT_SYMTAB
            continue
        strings = sections[link][4]
        for at in range(offset, offset + size, 24):
            name, info, _, section = struct.unpack_from("<IBBH", code, at)
            if name and section != 0 and info >> 4 in (1, 2):   # defined; STB_GLOBAL or STB_WEAK
                start = strings + name
                names.add(code[start:code.index(b"\0", start)].decode())
    return names


SHORTCUTS = {"imports": numba_without_unused_imports, "llvm lock events": no_llvm_lock_events,
             "cache folder": cache_check_once_per_folder, "blas": no_blas_probe, "cffi": no_cffi_typing,
             "registries": cached_loads_without_registries, "runtime": runtime_from_cache,
             "kernels without IR": cached_kernels_without_their_ir,
             "arrays without numpy.ma": arrays_typed_without_numpy_ma,
             "environments without modules": environments_without_their_modules, "shipped kernels": shipped.install}
