"""The package's shape: imports flow one way (no cycle among pydarknet's modules, function-level imports
included), the network and what it loads know nothing of training or the commands, the command modules hold no
work of their own, and the README's architecture map names every module."""
import ast
import re

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


def imports_of(name, source):
    """The pydarknet modules module `name` imports anywhere in its source: at the top, in functions (lazily)."""
    return set().union(*[imported(name, node) for node in ast.walk(ast.parse(source))
                         if isinstance(node, (ast.Import, ast.ImportFrom))] or [set()])


def import_graph():
    return {name: imports_of(name, path.read_text()) for name, path in MODULES.items()}


def reachable(graph, starts):
    """Every module that importing `starts` may load, at any depth."""
    seen, todo = set(), list(starts)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(graph[module])
    return seen


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


def test_a_lazy_import_is_an_import():
    assert imports_of("pydarknet.cuda.engine", "def update():\n    from ..train.step import update_args\n") == \
        {"pydarknet.train.step"}


# The commands and the tasks (the README's architecture map), and the GPU's benchmark (`make bench-gpu`).
ABOVE = ("pydarknet.cli", "pydarknet.programs", "pydarknet.train", "pydarknet.evaluate", "pydarknet.predict",
         "pydarknet.anchors", "pydarknet.onnx", "pydarknet.distributed", "pydarknet.warmup", "pydarknet.darknet",
         "pydarknet._darknet", "pydarknet.output", "pydarknet.tiles", "pydarknet.heatmap", "pydarknet.video",
         "pydarknet.track", "pydarknet.live", "pydarknet.stream", "pydarknet.datasets", "pydarknet.bench",
         "pydarknet.cuda.bench")
BELOW = ("pydarknet.network", "pydarknet.layers", "pydarknet.kernels", "pydarknet.config", "pydarknet.weights",
         "pydarknet.labels", "pydarknet.image", "pydarknet.jpeg", "pydarknet.boxes", "pydarknet.tree",
         "pydarknet.resources", "pydarknet.download", "pydarknet.crand", "pydarknet.errors", "pydarknet.threads",
         "pydarknet.about")


def test_layers_and_network_know_nothing_above_them():
    """Nothing the network, the layers, the kernels or the modules below them load, however indirectly and
    however lazily (the network's GPU engine included), is a task or a command."""
    graph = import_graph()
    loaded = reachable(graph, [m for m in graph if m.startswith(BELOW)])
    assert not sorted(m for m in loaded if m.startswith(ABOVE))


def test_the_reach_is_followed_through_lazy_imports():
    graph = {"network": {"cuda"}, "cuda": {"engine"}, "engine": {"train"}, "train": set(), "cli": {"network"}}
    assert reachable(graph, ["network"]) == {"network", "cuda", "engine", "train"}


def test_command_modules_only_parse_options_and_call():
    """cli/: no loops, no with-blocks, no classes; each module short."""
    for path in (PACKAGE / "cli").glob("*.py"):
        tree = ast.parse(path.read_text())
        assert len(path.read_text().splitlines()) <= 250, path
        if path.name in ("startup.py", "progress.py", "__init__.py"):
            continue   # the process start, the bars, and the tree's assembly
        work = [type(node).__name__ for node in ast.walk(tree) if isinstance(node, (ast.While, ast.With, ast.ClassDef))]
        assert not work, (path.name, work)


def test_the_readme_architecture_map_names_every_module():
    """Every top-level module and subpackage is in the map (as `name.py` or `name/`), and every file or folder
    the map names exists (a module of a subpackage may be named by its file name alone)."""
    paragraph = re.search(r"^### Architecture$(.*?)(?=^#|\Z)", (ROOT / "README.md").read_text(), re.M | re.S)[1]
    named = {name.removeprefix("pydarknet/") for name in re.findall(r"`([\w/]+(?:\.py|/))`", paragraph)}
    tree = {p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py")}
    tree |= {p.name + "/" for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    missing = sorted(tree - named)
    assert not missing, f"not in the map: {missing}"
    everything = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")}
    everything |= {str(p.relative_to(PACKAGE)) + "/" for p in PACKAGE.rglob("*") if (p / "__init__.py").exists()}
    gone = sorted(name for name in named if not (ROOT / name).exists()   # the repository's own files
                  and not any(e == name or e.endswith("/" + name) for e in everything))
    assert not gone, f"in the map, not in the package: {gone}"
