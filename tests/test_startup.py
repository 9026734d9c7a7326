"""A command's start-up and end (kernels/startup.py, preload.py): the Numba versions and internals its shortcuts rely
on, pinned so that a Numba upgrade fails here rather than quietly slowing every command; Numba imported without
the packages a command never uses; the kernels recorded for the next run; an inference command's quick exit."""
import importlib
import inspect
import json
import os
import re
import subprocess
import sys
import tomllib

import numba
import pytest

from conftest import ROOT
from pydarknet.kernels import startup
from pydarknet.tasks import preload, warmup

# What the shortcuts (kernels/startup.py), preload.load_cached and the wheel's kernels (kernels/shipped.py) reach in
# Numba: (module, attribute, its parameters).
NUMBA_INTERNALS = [
    ("numba.core.caching", "_CacheLocator.ensure_cache_path", ["self"]),
    ("numba.core.caching", "_CacheLocator.get_cache_path", ["self"]),
    ("numba.core.cpu", "CPUContext.load_additional_registries", ["self"]),
    ("numba.np.linalg", "ensure_blas", []),
    ("numba.core.caching", "Cache.load_overload", ["self", "sig", "target_context"]),
    ("numba.core.caching", "Cache._load_overload", ["self", "sig", "target_context"]),
    ("numba.core.caching", "Cache._guard_against_spurious_io_errors", ["self"]),
    ("numba.core.runtime.nrt", "rtsys.initialize", ["ctx"]),
    ("numba.core.runtime.nrtdynmod", "compile_nrt_functions", ["ctx"]),
    ("numba.core.runtime.nrtdynmod", "create_nrt_module", ["ctx"]),
    ("numba.core.codegen", "JITCPUCodegen.magic_tuple", ["self"]),
    ("numba.core.codegen", "JITCPUCodegen.unserialize_library", ["self", "serialized"]),
    ("numba.core.codegen", "JITCodeLibrary.enable_object_caching", ["self"]),
    ("numba.core.codegen", "JITCodeLibrary.add_ir_module", ["self", "ir_module"]),
    ("numba.core.codegen", "JITCodeLibrary.finalize", ["self"]),
    ("numba.core.codegen", "JITCodeLibrary.serialize_using_object_code", ["self"]),
    ("numba.core.cpu", "CPUContext.insert_user_function", ["self", "func", "fndesc", "libs"]),
    ("numba.core.dispatcher", "Dispatcher.add_overload", ["self", "cres"]),
    ("numba.core.caching", "Cache._index_key", ["self", "sig", "codegen"]),
    ("numba.core.caching", "CompileResultCacheImpl.rebuild", ["self", "target_context", "payload"]),
    ("numba.core.caching", "_CacheLocator.get_suitable_cache_subpath", ["py_file"]),
    ("numba.core.caching", "IndexDataCacheFile.__init__", ["self", "cache_path", "filename_base", "source_stamp"]),
    ("llvmlite.binding.ffi", "unregister_lock_callback", ["acq_fn", "rel_fn"]),
    ("numba.core.codegen", "CPUCodeLibrary._unserialize", ["codegen", "state"]),
    ("numba.core.codegen", "CPUCodeLibrary._get_module_for_linking", ["self"]),
    ("numba.core.codegen", "CPUCodeLibrary._finalize_final_module", ["self"]),
    ("numba.core.codegen", "CodeLibrary._set_compiled_object", ["self", "value"]),
    ("numba.core.codegen", "Codegen.create_library", ["self", "name", "kwargs"]),
    ("llvmlite.binding.ffi", "lib._lock.unregister", ["acq_fn", "rel_fn"]),
    ("numba.np.numpy_support", "from_dtype", ["dtype"]),
    ("numba.np.numpy_support", "map_layout", ["val"]),
    ("numba.core.typing.typeof", "_typeof_ndarray", ["val", "c"]),
    ("numba.core.environment", "_rebuild_env", ["modname", "consts", "env_name"]),
    ("numba.core.environment", "lookup_environment", ["env_name"]),
]


def version(text):
    return tuple(int(part) for part in text.split(".")[:2])


def test_numba_is_a_version_the_shortcuts_were_tested_on_and_pyproject_asks_for_those():
    """NUMBA_TESTED (kernels/startup.py) is the range pyproject.toml allows, and the installed Numba is in it: a
    Numba outside it fails here first (then test the shortcuts on it and move both)."""
    first, last = startup.NUMBA_TESTED
    assert first <= version(numba.__version__) <= last, (numba.__version__, startup.NUMBA_TESTED)
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    [pin] = [d for d in dependencies if re.match(r"numba\b", d)]
    assert pin.replace(" ", "") == f"numba>={first[0]}.{first[1]},<{last[0]}.{last[1] + 1}"


def parameters_of(module, attribute):
    found = importlib.import_module(module)
    for name in attribute.split("."):
        found = getattr(found, name)
    return list(inspect.signature(found).parameters)


@pytest.fixture(scope="module")
def numbas_own():
    """{attribute: its parameters} read in a new process: in this one a command run in-process may have put
    startup's shortcuts in their place."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from test_startup import NUMBA_INTERNALS, "
            "parameters_of; print(json.dumps({a: parameters_of(m, a) for m, a, _ in NUMBA_INTERNALS}))")
    done = subprocess.run([sys.executable, "-c", code, str(ROOT / "tests")], capture_output=True, text=True,
                          cwd=ROOT / "tests", check=True)
    return json.loads(done.stdout)


@pytest.mark.parametrize("module, attribute, parameters", NUMBA_INTERNALS, ids=[a for _, a, _ in NUMBA_INTERNALS])
def test_the_numba_internals_the_shortcuts_reach_are_there(numbas_own, module, attribute, parameters):
    assert numbas_own[attribute] == parameters


def test_preload_loads_a_cached_kernel_by_numbas_cache_branch():
    """preload.load_cached takes Dispatcher.compile's cache branch (the dispatcher's cache, its hit counts, its
    target context, the compile result's entry point, description, library and mode): in a new process the
    kernel is loaded from the cache, counted as a hit, and runs without another load."""
    import numpy as np

    from numba.core.compiler import CR_FIELDS

    from pydarknet.kernels.activations import expf_array
    expf_array(np.zeros(3, np.float32))   # in the cache
    assert {"objectmode", "entry_point", "fndesc", "library"} <= set(CR_FIELDS)
    code = ("import numpy as np; from numba import typeof; from pydarknet.tasks import preload; "
            "from pydarknet.kernels.activations import expf_array as k; x = np.zeros(3, np.float32); "
            "sig = (typeof(x),); print(preload.load_cached(k, sig), k._cache_hits[sig], sig in k.overloads, "
            "k(x).sum(), k._cache_hits[sig])")
    proc = run_python(code)
    assert proc.stdout.split() == ["True", "1", "True", "3.0", "1"], proc.stderr[-500:]


def run_python(code, cwd=None):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_every_shortcut_is_taken_on_this_numba():
    """Each shortcut skips itself where its internal is missing (test_cli's test_numba_shortcuts_skip_what_numba_lacks):
    on a tested Numba every one of them is taken."""
    proc = run_python("from pydarknet.kernels.startup import skip_numba_probes; print(skip_numba_probes())")
    assert proc.stdout.strip() == str(list(startup.SHORTCUTS)), proc.stderr[-500:]


def test_numba_is_imported_without_scipy_and_pyyaml_which_stay_importable(tmp_path):
    """Numba imports SciPy only to check its version and PyYAML only to read a .numba_config.yaml: a command's
    start leaves both out (13 ms), and imports PyYAML where that file is, whose settings Numba then takes."""
    pytest.importorskip("scipy")
    pytest.importorskip("yaml")
    code = ("import sys; from pydarknet.kernels.startup import skip_numba_probes; skip_numba_probes(); "
            "import numba; left_out = [name in sys.modules for name in ('scipy', 'yaml')]; "
            "import scipy, yaml; print(*left_out, numba.config.BOUNDSCHECK)")
    proc = run_python(code, cwd=tmp_path)
    assert proc.stdout.split() == ["False", "False", "None"], proc.stderr[-500:]
    (tmp_path / ".numba_config.yaml").write_text("boundscheck: 1\n")
    proc = run_python(code, cwd=tmp_path)
    assert proc.stdout.split() == ["False", "True", "1"], proc.stderr[-500:]


def test_numba_is_imported_without_jitclass_operators_which_a_later_import_registers():
    """skip_numba_probes imports Numba without numba.experimental.jitclass.overloads (13 ms): the module is not
    left behind, and importing it afterwards registers jitclass's operators as usual."""
    code = ("import sys; from pydarknet.kernels.startup import skip_numba_probes, JITCLASS_OVERLOADS; "
            "skip_numba_probes(); import numba; from numba.experimental import jitclass; "
            "print(JITCLASS_OVERLOADS in sys.modules); import numba.experimental.jitclass.overloads\n"
            "@jitclass([('n', numba.int64)])\nclass Box:\n    def __init__(self, n):\n        self.n = n\n"
            "    def __len__(self):\n        return self.n\n"
            "print(numba.njit(lambda b: len(b))(Box(7)))")
    proc = run_python(code)
    assert proc.stdout.split() == ["False", "7"], proc.stderr[-500:]


def test_numbas_llvm_lock_events_are_left_out_and_a_compile_still_works():
    """skip_numba_probes removes the two callbacks Numba runs around every call into LLVM (its event timers);
    llvmlite's own lock stays, and a kernel still compiles and runs."""
    code = ("from llvmlite.binding import ffi; import numba.core.base; before = len(ffi.lib._lock._cblist); "
            "from pydarknet.kernels.startup import skip_numba_probes; skip_numba_probes(); import numba; "
            "print(before, len(ffi.lib._lock._cblist), numba.njit(lambda n: n * 2)(21))")
    proc = run_python(code)
    assert proc.stdout.split() == ["1", "0", "42"], proc.stderr[-500:]


def test_arrays_are_typed_as_numba_types_them_without_importing_numpy_ma():
    """skip_numba_probes: a plain array is typed without importing numpy.ma (10-40 ms), to the type Numba's own
    typing gives (layouts, read-only, record, datetime and object dtypes); a masked array and a dtype Numba lacks
    still get Numba's errors; a kernel still runs on an array typed so."""
    code = ("import sys, numpy as np, numba; from numba.core.typing.typeof import typeof_impl\n"
            "numbas = typeof_impl.dispatch(np.ndarray)\n"
            "from pydarknet.kernels.startup import skip_numba_probes; skip_numba_probes()\n"
            "ro = np.zeros(3); ro.flags.writeable = False\n"
            "arrays = [np.zeros((2, 3), np.float32), np.zeros((2, 3), order='F'), np.zeros((4, 4), np.uint16)[::2],"
            " ro, np.zeros(2, [('a', np.int32), ('b', np.float64)]), np.zeros(2, 'M8[s]'), np.zeros((0, 5)),"
            " np.zeros(2, object)]\n"
            "ours = [numba.typeof(a) for a in arrays]\n"
            "print('numpy.ma' in sys.modules, numba.njit(lambda a: a.sum())(arrays[0]) == 0)\n"
            "print(ours == [numbas(a, None) for a in arrays])\n"
            "for bad in (np.ma.masked_array([1, 2]), np.zeros(2, np.longdouble)):\n"
            "    try:\n"
            "        numba.typeof(bad)\n"
            "    except (numba.core.errors.NumbaTypeError, numba.core.errors.NumbaValueError, ValueError) as e:\n"
            "        print(type(e).__name__)\n")
    proc = run_python(code)
    assert proc.stdout.split() == ["False", "True", "True", "NumbaTypeError", "NumbaValueError"], proc.stderr[-500:]


def test_a_cached_kernel_that_allocates_loads_without_numbas_array_module(tmp_path):
    """skip_numba_probes: loading a cached kernel that allocates leaves numba.np.arrayobj (where np.empty's code
    came from, 24-40 ms with Numba's unicode support) unimported; the kernel runs, raises Numba's error for a
    negative size, and a new compile in the process still works. Where the module is imported first, its
    environment has the module's globals, as in Numba."""
    (tmp_path / "allocating.py").write_text("import numba, numpy as np\n\n\n@numba.njit(cache=True)\n"
                                            "def size(n):\n    return np.empty(n, np.float32).size\n")
    load = ("import sys; from pydarknet.kernels.startup import skip_numba_probes; skip_numba_probes(); "
            "{before}from allocating import size; print(size(3), 'numba.np.arrayobj' in sys.modules)\n"
            "try:\n    size(-1)\nexcept ValueError as e:\n    print(str(e).replace(' ', '_'))\n"
            "from numba.core.environment import Environment\n"
            "envs = [e for n, e in list(Environment._memo.items()) if 'arrayobj' in n]\n"
            "print(len(envs) > 0, all(len(e.globals) > 1 for e in envs) == ('numba.np.arrayobj' in sys.modules))\n"
            "import numba, numpy as np; print(numba.njit(lambda n: np.zeros(n).sum() + n)(2))")
    assert run_python(load.format(before=""), cwd=tmp_path).returncode == 0   # compiled and cached
    proc = run_python(load.format(before=""), cwd=tmp_path)
    assert proc.stdout.split() == ["3", "False", "negative_dimensions_not_allowed", "True", "True", "2.0"], \
        proc.stderr[-500:]
    proc = run_python(load.format(before="import numba.np.arrayobj; "), cwd=tmp_path)
    assert proc.stdout.split() == ["3", "True", "negative_dimensions_not_allowed", "True", "True", "2.0"], \
        proc.stderr[-500:]


def test_a_cached_kernel_loads_without_parsing_its_ir_which_a_compile_still_links():
    """skip_numba_probes: a kernel loaded from the cache keeps its IR unparsed (its symbols read from its machine
    code), runs, and a new compile that inlines it parses the IR then and runs too."""
    code = ("from pydarknet.kernels.startup import skip_numba_probes; skip_numba_probes(); import numba, numpy as np; "
            "from pydarknet.kernels.activations import expf_array as k; x = np.zeros(3, np.float32); "
            "print(k(x).sum()); library = k.overloads[k.signatures[0]].library; "
            "print(library._shared_module is None, '_unparsed_ir' in vars(library)); "
            "print(numba.njit(lambda a: k(a).sum() * 2)(x)); "
            "print(library._shared_module is not None, '_unparsed_ir' in vars(library))")
    assert run_python(code).returncode == 0   # in the cache (this process may hold it from before a stale index went)
    proc = run_python(code)
    assert proc.stdout.split() == ["3.0", "True", "True", "6.0", "True", "False"], proc.stderr[-500:]


def test_the_symbols_read_from_machine_code_are_the_functions_numba_lists():
    """elf_defined_symbols on a compiled kernel's machine code: every function its IR defines, and nothing its IR
    does not define (Numba's own list adds only private constants, which it never looks up); not ELF: None."""
    import llvmlite.binding as llvm
    import numpy as np
    kernel = numba.njit(lambda a: np.sin(a).sum())
    kernel(np.zeros(4))
    _, kind, (code, ir) = kernel.overloads[kernel.signatures[0]].library.serialize_using_object_code()
    module = llvm.parse_bitcode(ir)
    functions = {f.name for f in module.functions if not f.is_declaration}
    defined = functions | {g.name for g in module.global_variables if not g.is_declaration}
    symbols = startup.elf_defined_symbols(code)
    assert kind == "object" and functions and functions <= symbols <= defined
    assert startup.elf_defined_symbols(b"MZ" + code[2:]) is None


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


def test_a_process_that_compiled_forgets_its_networks_record(tmp_path, monkeypatch):
    """Compiling a kernel compiles or loads the kernels it calls, which a kernel loaded from the cache has built
    in: a process that compiled records nothing for its network (and forgets the last record), so that the
    next one, loading from the cache, records only the kernels that the command calls."""
    monkeypatch.setattr(preload, "path", lambda: tmp_path / preload.KERNELS_FILE)
    monkeypatch.setattr(preload, "_command_key", ["net.cfg darknet"])
    monkeypatch.setattr(preload, "used", lambda: [("pydarknet.x", "kernel", ["one"])])
    clock = Clock()
    watch = warmup.CompileWatch("detect", clock)
    monkeypatch.setattr(warmup, "_watches", [watch])
    preload.record_command()
    assert preload.recorded() == {"net.cfg darknet": [("pydarknet.x", "kernel", ["one"])]}
    watch.start()
    clock.now += 0.5
    watch.end()
    preload.record_command()
    assert warmup.compiled_here() and preload.recorded() == {}


def test_a_detect_command_leaves_the_training_kernels_unloaded(tmp_path):
    """preload looks for a network's kernels among pydarknet's modules without loading the training kernels'
    (kernels/__init__.py imports them on first use: 16 ms of loading where a command ran no training kernel)."""
    code = ("import sys; from pydarknet.cli import main\n"
            "try:\n"
            f"    main(['detector', 'test', {str(ROOT / 'cfg/shapes.data')!r}, {str(ROOT / 'cfg/shapes-tiny.cfg')!r}, "
            f"{str(ROOT / 'data/shapes-tiny.weights')!r}, {str(ROOT / 'data/shapes.jpg')!r}, '-q', '-dont_show'])\n"
            "except SystemExit:\n"
            "    pass\n"
            "print(*[type(sys.modules[f'pydarknet.kernels.{name}']).__name__ for name in ('backward', 'loss')])")
    for _ in range(2):   # the second with the first's record loaded ahead
        proc = run_python(code, cwd=tmp_path)
        assert proc.stdout.split()[-2:] == ["_LazyModule", "_LazyModule"], proc.stderr[-500:]


def test_pythons_exit_handlers_run_once_when_run_ahead():
    """startup.end's quick exit runs the exit handlers itself with CPython's atexit._run_exitfuncs, which empties
    the list: handlers run once, whichever way the process then ends. (stdout flushed before os._exit, as
    startup.end does: without PYTHONUNBUFFERED a pipe's buffer would lose the line.)"""
    for end in ("sys.stdout.flush(); os._exit(0)", "pass"):
        proc = run_python("import atexit, os, sys; atexit.register(print, 'handler'); atexit._run_exitfuncs(); "
                          + end)
        assert proc.stdout == "handler\n", proc.stderr[-500:]


# The exit handler runs in both ends: Python's own has by then stopped the main thread (threading's shutdown).
END_PROBE = """import atexit, sys, threading, time
atexit.register(lambda: print('handler, main thread running:', threading.main_thread().is_alive()))
if sys.argv[1] == 'thread':
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
sys.argv = ['pydarknet', *sys.argv[2:]]
from pydarknet.cli import main
main()
"""
DETECT = [str(ROOT / name) for name in ("cfg/shapes.data", "cfg/shapes-tiny.cfg", "data/shapes-tiny.weights",
                                        "data/shapes.jpg")]


@pytest.mark.parametrize("thread, args, status, quick", [
    ("", ["detector", "test", *DETECT, "missing.jpg", "-dont_show"], 1, True),
    ("thread", ["detector", "test", *DETECT, "-dont_show"], 0, False),
    ("", ["summary", str(ROOT / "cfg/shapes-tiny.cfg")], 0, False)])
def test_an_inference_command_ends_its_process_after_the_exit_handlers(thread, args, status, quick, tmp_path):
    """cli.end: `detector test` (cli.QUICK_EXIT_COMMANDS) ends its process once Python's exit handlers have run and
    its output is flushed, with the command's exit status (1: an image it could not read) and all its lines,
    skipping the rest of Python's end (35 ms after yolov3-tiny's detect). With another thread running, or for
    another command, the process ends as Python ends it."""
    proc = subprocess.run([sys.executable, "-c", END_PROBE, thread or "-", *args], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == status, proc.stderr[-500:]
    lines = proc.stdout.splitlines()
    assert lines[-1] == f"handler, main thread running: {quick}"
    if args[0] != "summary":
        assert any(line.startswith("triangle: ") for line in lines) and ("missing.jpg" in proc.stderr) == bool(status)
