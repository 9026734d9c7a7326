"""The kernels a network ran the last time, loaded from Numba's cache before its first forward pass is timed.

Numba loads a cached kernel the first time it is called (5 to 25 ms each: unpickling it, parsing its bitcode,
linking its machine code), which would otherwise fall inside darknet's "Predicted in"; Numba's own first load also
set up its typing and lowering registries, which a command leaves to a compile (kernels/startup.py).
As a command's process ends it records the kernels it ran, by network (KERNELS_FILE beside the cached kernels,
replaced by each run); the next command on that network loads them once its weights are read (`load_recorded`),
while its first image decodes in the other thread, so that the timed pass finds them ready and the process's wall
time is unchanged. Not in a background thread from the start of the command: the loading is Python and holds the
interpreter's lock, which the command's own start-up needs. A kernel not in the cache (pydarknet or Numba changed)
is left for its first call to compile: nothing compiles ahead.

Only a process that compiled nothing records: compiling a kernel compiles (or loads) every kernel it calls,
which a kernel loaded from the cache has built in, so a compiling process's kernels are more than the next
one needs (and every later run would load them all again).

Loading from the cache without compiling reaches into Numba's dispatcher (the steps of Dispatcher.compile's
cache branch); where those internals are missing the kernels load as they are called.
PYDARKNET_NUMBA_SHORTCUTS=0 turns it off with the other shortcuts (kernels/startup.py).
"""
import os
import pickle
import sys
import types

KERNELS_FILE = "kernels-called.pickle"   # "kernels-used" held the callees too
NETWORKS_KEPT = 32   # networks whose kernels the file keeps (the most recently recorded)


_command_key = []   # the key of the network this process's command loaded (record_command records under it)


def load_recorded(key):
    """Load the kernels recorded under `key` (a network and its products); a command's process records its
    own under it as it ends (record_command). Returns how many were loaded."""
    if os.environ.get("PYDARKNET_NUMBA_SHORTCUTS", "1") == "0":
        return 0
    _command_key[:] = [key]
    return load(recorded().get(key, []))


def record_command():
    """The end of a command's process (cli.end): record the kernels it ran under its network's key, or, where it
    compiled some, forget them (the next run records what it calls). Only a command's process ends
    there: a test session or a script that runs commands in-process, whose kernels are not one network's,
    records nothing."""
    from .warmup import compiled_here
    if _command_key:
        record(_command_key[0], [] if compiled_here() else used())


def dispatchers():
    """{(module, name): dispatcher} of the Numba kernels defined in pydarknet's imported modules, those imported
    on first use (kernels/__init__.py) left out until used: reading their names would load them."""
    from numba.core.registry import CPUDispatcher
    found = {}
    for module_name, module in list(sys.modules.items()):
        if module_name.startswith("pydarknet") and type(module) is types.ModuleType:
            for name, value in list(vars(module).items()):
                # type(), not isinstance(): Numba's dispatchers are abstract classes, whose check is slow
                if type(value) is CPUDispatcher and value.py_func.__module__ == module_name:
                    found[module_name, name] = value
    return found


def used():
    """[(module, name, [argument types, ...])] of the kernels this process has run or loaded."""
    return [(module, name, list(kernel.overloads)) for (module, name), kernel in dispatchers().items()
            if kernel.overloads]


def load(entries):
    """Load each recorded kernel whose module is imported, from Numba's cache only; returns how many."""
    kernels = dispatchers()
    return sum(load_cached(kernels[module, name], signature) for module, name, signatures in entries
               if (module, name) in kernels for signature in signatures)


def load_cached(kernel, signature):
    """Dispatcher.compile(signature)'s cache branch: the kernel from Numba's cache if it is there, else nothing.
    Returns whether it is loaded now."""
    from numba.core.compiler_lock import global_compiler_lock
    if not all(hasattr(kernel, name) for name in ("_cache", "_cache_hits", "targetctx", "add_overload")):
        return False
    with global_compiler_lock:
        if signature in kernel.overloads:
            return True
        try:
            compiled = kernel._cache.load_overload(signature, kernel.targetctx)
        except Exception:   # an unreadable cache entry: the kernel's first call deals with it, as it would have
            return False
        if compiled is None:
            return False
        kernel._cache_hits[signature] += 1
        if not compiled.objectmode:
            kernel.targetctx.insert_user_function(compiled.entry_point, compiled.fndesc, [compiled.library])
        kernel.add_overload(compiled)
        return True


def path():
    from .warmup import cache_folder
    return cache_folder() / KERNELS_FILE


def recorded():
    """{key: entries} as recorded; empty when there is no readable record."""
    try:
        with open(path(), "rb") as f:
            table = pickle.load(f)
        return table if isinstance(table, dict) else {}
    except Exception:   # missing, from another Numba version, or damaged: start afresh
        return {}


def record(key, entries):
    """`entries` under `key` in place of what was there (none: the key forgotten), written atomically when they
    differ; a read-only cache is left alone."""
    from ..files.errors import WriteError
    from ..files.weights import atomic_write
    table = recorded()
    if table.get(key, []) == entries:
        return
    table.pop(key, None)
    if entries:
        table[key] = entries
    table = dict(list(table.items())[-NETWORKS_KEPT:])
    try:
        atomic_write(path(), pickle.dumps(table))
    except (WriteError, pickle.PicklingError):
        pass
