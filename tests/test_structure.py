"""The package's shape: the top of pydarknet/ is a few packages in a declared order, highest first, and imports
flow down it: a module never imports one of a package above its own (function-level imports included), there is
no cycle among the modules, the command modules hold no work of their own, every package's docstring says what
lives there and what it may import, and the README's Architecture section is the folder tree."""
import ast
import re

from conftest import ROOT

PACKAGE = ROOT / "pydarknet"

# The top of pydarknet/, highest first: an entry may import the entries after it, never one before it.
ORDER = ("__init__", "__main__", "cli", "_darknet", "darknet", "programs", "tasks", "network", "results", "kernels",
         "files")


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


def top_of(module):
    """The entry of ORDER that holds a module: `pydarknet.tasks.train.run` -> "tasks", `pydarknet` -> "__init__"."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def upward_imports(graph, order=ORDER):
    """Every import (module, imported module) that goes up the order."""
    rank = {entry: i for i, entry in enumerate(order)}
    return sorted((module, target) for module, targets in graph.items() for target in targets
                  if rank[top_of(target)] < rank[top_of(module)])


def test_no_import_cycle():
    assert find_cycle(import_graph()) is None


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]


def test_a_lazy_import_is_an_import():
    source = "def update():\n    from ...tasks.train.step import update_args\n"
    assert imports_of("pydarknet.network.cuda.engine", source) == {"pydarknet.tasks.train.step"}


def test_the_top_of_the_package_is_the_declared_order():
    top = {p.stem for p in PACKAGE.iterdir() if p.name not in ("__pycache__", "py.typed")}
    assert top == set(ORDER)


def test_no_module_imports_a_package_above_its_own():
    """However lazily: the network, its layers and kernels know nothing of the tasks, the tasks nothing of the
    commands, the files nothing of anything."""
    assert upward_imports(import_graph()) == []


def test_the_order_check_finds_an_upward_import():
    graph = {"pydarknet.network.layers.yolo": {"pydarknet.tasks.train.step", "pydarknet.kernels.loss"},
             "pydarknet.cli.options": {"pydarknet.tasks.predict"}, "pydarknet": {"pydarknet.kernels.threads"}}
    assert upward_imports(graph) == [("pydarknet.network.layers.yolo", "pydarknet.tasks.train.step")]


def test_command_modules_only_parse_options_and_call():
    """cli/: no loops, no with-blocks, no classes; each module short."""
    for path in (PACKAGE / "cli").glob("*.py"):
        tree = ast.parse(path.read_text())
        assert len(path.read_text().splitlines()) <= 250, path
        if path.name in ("progress.py", "__init__.py"):
            continue   # the bars, and the tree's assembly with the process's start and end
        work = [type(node).__name__ for node in ast.walk(tree) if isinstance(node, (ast.While, ast.With, ast.ClassDef))]
        assert not work, (path.name, work)


def docstring_lines(package):
    return (ast.get_docstring(ast.parse((package / "__init__.py").read_text()), clean=False) or "").splitlines()


def test_every_package_says_what_lives_there_and_what_it_may_import():
    """Two lines first: what lives there, then `May import: ...`, naming only entries below its own."""
    for init in PACKAGE.rglob("__init__.py"):
        package = init.parent
        if package == PACKAGE:
            continue
        lines = docstring_lines(package)
        assert len(lines) >= 2 and lines[0].strip() and lines[1].startswith("May import:"), package
        top = package.relative_to(PACKAGE).parts[0]
        named = set(re.findall(r"\w+", lines[1])) & set(ORDER)
        above = set(ORDER[:ORDER.index(top)])
        assert not named & above, (package, sorted(named & above))


def test_the_architecture_page_is_the_folder_tree():
    """docs/architecture.md's tree: `ls pydarknet/` in the declared order, each package's subpackages under it, one
    line each."""
    section = re.search(r"^## The folders$(.*?)(?=^#|\Z)", (ROOT / "docs/architecture.md").read_text(), re.M | re.S)[1]
    tree = re.search(r"^```\npydarknet/\n(.*?)^```", section, re.M | re.S)[1].splitlines()
    top = [re.match(r"[├└]── (\S+)", line)[1] for line in tree if line[0] in "├└"]
    listed = {p.name + ("/" if p.is_dir() else "") for p in PACKAGE.iterdir()
              if p.name not in ("__pycache__", "py.typed")}   # py.typed: a marker for type checkers, no module
    assert sorted(top) == sorted(listed)
    assert [name.removesuffix("/").removesuffix(".py") for name in top] == list(ORDER)
    nested, parent = {}, None
    for line in tree:
        if line[0] in "├└":
            parent = line[4:].split()[0]
        else:
            nested.setdefault(parent, []).append(re.match(r"[│ ]   [├└]── (\S+)", line)[1])
    for name in top:
        if name.endswith("/"):
            subpackages = sorted(p.name + "/" for p in (PACKAGE / name).iterdir() if (p / "__init__.py").exists())
            assert sorted(nested.get(name, [])) == subpackages, name


def test_the_wheel_ships_every_package():
    """pyproject's package list names every package under pydarknet/ (the fork's `darknet` is pydarknet/_darknet,
    mapped there): a package left out is missing from an installed pydarknet."""
    import tomllib
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {module_name(init) for init in PACKAGE.rglob("__init__.py")} - {"pydarknet._darknet"}
    assert found <= listed, sorted(found - listed)


def test_the_wheel_ships_the_type_marker():
    """pydarknet/py.typed (PEP 561) is in the package data, so that type checkers read the API's hints."""
    import tomllib
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "py.typed" in data["pydarknet"] and (PACKAGE / "py.typed").is_file()
