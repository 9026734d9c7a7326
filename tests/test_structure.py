"""The package's shape: imports flow one way (no cycle among pydarknet's modules, function-level imports
included), the network knows nothing of training, and the command modules hold no work of their own."""
import ast
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "pydarknet"


def module_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imported(name, node):
    """The pydarknet modules an import statement in module `name` loads (the longest existing prefix)."""
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = name.split(".") if MODULES[name].name == "__init__.py" else name.split(".")[:-1]
            base = base[:len(base) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        candidates = [f"{target}.{alias.name}" for alias in node.names] + [target]
    else:
        candidates = [alias.name for alias in node.names]
    found = set()
    for candidate in candidates:
        while candidate and candidate not in MODULES:
            candidate = candidate.rpartition(".")[0]
        if candidate.startswith("pydarknet") and candidate != name and not name.startswith(candidate + "."):
            found.add(candidate)   # a submodule's import of its own package is how Python loads it, not a cycle
    return found


def import_graph():
    return {name: set().union(*[imported(name, node) for node in ast.walk(ast.parse(path.read_text()))
                                if isinstance(node, (ast.Import, ast.ImportFrom))] or [set()])
            for name, path in MODULES.items()}


def find_cycle(graph):
    """One import cycle as a list of modules, or None (a depth-first search for a back edge)."""
    state, stack = {}, []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        state[module] = "done"
        stack.pop()
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module)
            if cycle:
                return cycle
    return None


def test_no_import_cycle():
    assert find_cycle(import_graph()) is None


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]


def test_layers_and_network_know_nothing_above_them():
    graph = import_graph()
    above = ("pydarknet.train", "pydarknet.cli", "pydarknet.programs", "pydarknet.evaluate", "pydarknet.predict")
    for module in ["pydarknet.network", *[m for m in graph if m.startswith(("pydarknet.layers", "pydarknet.kernels"))]]:
        assert not {t for t in graph[module] if t.startswith(above)}, module


def test_command_modules_only_parse_options_and_call():
    """cli/: no loops, no with-blocks, no classes; each module short."""
    for path in (PACKAGE / "cli").glob("*.py"):
        tree = ast.parse(path.read_text())
        assert len(path.read_text().splitlines()) <= 250, path
        if path.name in ("startup.py", "progress.py", "__init__.py"):
            continue   # the process start, the bars, and the tree's assembly
        work = [type(node).__name__ for node in ast.walk(tree) if isinstance(node, (ast.While, ast.With, ast.ClassDef))]
        assert not work, (path.name, work)
