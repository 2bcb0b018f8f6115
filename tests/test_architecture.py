"""The package keeps docs/architecture.md: every module in a layer, imports only downward, no import
circle, none of the imports the note forbids (directly or through other modules), and its list of
known breaks exact. Imports are read with ``ast`` from every ``pruning_utils/**/*.py``, at module
level and inside functions; the checker is tried on a small package made up for the purpose."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTE = ROOT / "docs" / "architecture.md"
ROOT_MODULE = "__init__"  # the package's own __init__.py


# --- reading the code --------------------------------------------------------------------------------


def modules_of(package: Path) -> dict[str, Path]:
    """Every module of ``package`` by its dotted name inside it: ``runs``, ``data`` (``data/__init__.py``),
    ``data.keys``; the package's own ``__init__.py`` is :data:`ROOT_MODULE`."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts) or ROOT_MODULE] = path
    return found


def imports_of(package: Path) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports, wherever the import statement is (module level,
    inside a function, under ``if TYPE_CHECKING``). ``from .data import to_float`` names ``data``;
    ``from . import steps`` names ``steps``; ``import <package>.runs`` names ``runs``."""
    modules = modules_of(package)
    name_of_package = package.name

    def module(dotted: str) -> str:
        return dotted or ROOT_MODULE

    graph = {}
    for name, path in modules.items():
        inside = [] if name == ROOT_MODULE else name.split(".")
        base = inside if path.name == "__init__.py" else inside[:-1]  # what `.` means in this file
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    if node.level - 1 > len(base):
                        raise ValueError(f"{path}: a relative import beyond the package")
                    target = base[: len(base) - (node.level - 1)] + ([node.module] if node.module else [])
                    target = ".".join(target)
                elif node.module == name_of_package or node.module.startswith(name_of_package + "."):
                    target = node.module[len(name_of_package) + 1:]
                else:
                    continue  # another package
                for alias in node.names:
                    child = f"{target}.{alias.name}" if target else alias.name
                    found.add(child if child in modules else module(target))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == name_of_package or alias.name.startswith(name_of_package + "."):
                        found.add(module(alias.name[len(name_of_package) + 1:]))
        unknown = found - set(modules)
        assert not unknown, f"{path} imports {unknown}, which the package does not hold"
        graph[name] = found - {name}
    return graph


def top(module: str) -> str:
    """``data.keys`` -> ``data``: the name the note's tables use."""
    return module.split(".")[0]


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import circle of ``graph`` as ``[a, b, ..., a]``, or ``[]`` when there is none."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" after

    def visit(node: str, path: list[str]) -> list[str]:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt, path + [nxt])):
                return cycle
        state[node] = "done"
        return []

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return []


def path_between(graph: dict[str, set[str]], start: str, goal) -> list[str] | None:
    """The shortest import chain from ``start`` to the first module for which ``goal`` holds, or None."""
    chains, seen = [[start]], {start}
    while chains:
        chain = chains.pop(0)
        for nxt in sorted(graph.get(chain[-1], ())):
            if nxt in seen:
                continue
            if goal(nxt):
                return chain + [nxt]
            seen.add(nxt)
            chains.append(chain + [nxt])
    return None


def upward_imports(graph: dict[str, set[str]], layers: dict[str, int]) -> list[str]:
    """Every import of a module of a higher layer (modules without a layer, e.g. the package's
    ``__init__``, are left to the other checks)."""
    return [f"{a} (layer {layers[top(a)]}) imports {b} (layer {layers[top(b)]})"
            for a in sorted(graph) for b in sorted(graph[a])
            if top(a) in layers and top(b) in layers and layers[top(b)] > layers[top(a)]]


def forbidden_imports(graph: dict[str, set[str]], rules: list[tuple[str, set[str], set[str]]]) -> list[str]:
    """Every module that imports, directly or through others, what a rule ``(name, modules, never)``
    forbids it (names as in the note: a package's name covers its modules); its own name is not
    held against a module."""
    found = []
    for rule, sources, never in rules:
        for module in sorted(m for m in graph if top(m) in sources):
            chain = path_between(graph, module, lambda m, own=top(module): top(m) in never - {own})
            if chain:
                found.append(f"{rule}: {' -> '.join(chain)}")
    return found


# --- reading the note --------------------------------------------------------------------------------


def table(text: str, heading: str) -> list[list[str]]:
    """The rows (cells) of the first table under the markdown heading ``heading``."""
    section = text.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")][2:]  # less the header and |---|
    return [[cell.strip() for cell in row.strip().strip("|").split("|")] for row in rows]


def names(cell: str, layers: dict[str, int], every: set[str]) -> set[str]:
    """The modules a cell names: backquoted names, ``layer N`` (its modules), ``every module``."""
    found = set(re.findall(r"`([\w.]+)`", cell))
    for layer in re.findall(r"layer (\d+)", cell):
        found |= {m for m, n in layers.items() if n == int(layer)}
    return found | (every if "every module" in cell else set())


def read_note(text: str) -> tuple[dict[str, int], list, list[tuple[str, str, str]]]:
    """The note's layers (module -> layer), rules ``(name, modules, never)`` and known breaks ``(module,
    imports, rule)``."""
    layers = {}
    for layer, modules, _ in table(text, "## Layers"):
        for module in re.findall(r"`([\w.]+)`", modules):
            assert module not in layers, f"{module} is in two layers of the note"
            layers[module] = int(layer)
    every = set(layers)
    rules = [(rule, names(modules, layers, every), names(never, layers, every))
             for rule, modules, never, _ in table(text, "## Imports that must never exist")]
    breaks = [(names(a, layers, every).pop(), names(b, layers, every).pop(), rule)
              for a, b, rule, _ in table(text, "## Known breaks")]
    assert layers and rules, "docs/architecture.md: no layer table or no rules table found"
    return layers, rules, breaks


@pytest.fixture(scope="module")
def note():
    return read_note(NOTE.read_text())


@pytest.fixture(scope="module")
def graph(note):
    """The package's imports, less the known breaks."""
    _, _, breaks = note
    graph = imports_of(ROOT / "pruning_utils")
    return {a: targets - {b for x, b, _ in breaks if x == a} for a, targets in graph.items()}


# --- the package keeps the note ----------------------------------------------------------------------


def test_every_module_is_in_one_layer_and_every_layered_module_exists(note):
    layers, _, _ = note
    present = {top(m) for m in modules_of(ROOT / "pruning_utils")} - {ROOT_MODULE}
    assert not present - set(layers), f"place these modules in a layer of docs/architecture.md: {present - set(layers)}"
    assert not set(layers) - present, f"docs/architecture.md names modules that do not exist: {set(layers) - present}"


def test_no_import_circle(graph):
    assert find_cycle(graph) == []


def test_imports_go_only_downward(graph, note):
    layers, _, _ = note
    assert upward_imports(graph, layers) == []


def test_no_module_imports_what_the_note_forbids(graph, note):
    _, rules, _ = note
    assert forbidden_imports(graph, rules) == []


def test_each_known_break_still_exists_and_still_breaks_its_rule(note):
    _, rules, breaks = note
    full = imports_of(ROOT / "pruning_utils")
    for module, imported, rule in breaks:
        assert imported in full.get(module, set()), (
            f"{module} no longer imports {imported}: delete its row from the known breaks of docs/architecture.md")
        others = {(a, b) for a, b, _ in breaks} - {(module, imported)}
        graph = {a: {b for b in targets if (a, b) not in others} for a, targets in full.items()}
        found = forbidden_imports(graph, [r for r in rules if r[0] == rule])
        assert any(f.startswith(f"{rule}: {module} -> {imported}") for f in found), (
            f"{module} -> {imported} breaks no longer the rule {rule!r}: delete its row from the known breaks")


def test_the_package_init_imports_nothing_of_the_package():
    """``import pruning_utils`` stays cheap and can make no circle."""
    assert imports_of(ROOT / "pruning_utils")[ROOT_MODULE] == set()


# --- the checker itself can fail ---------------------------------------------------------------------


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    package = tmp_path / "toy"
    for name, source in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return package


def test_the_checker_reads_every_form_of_import(tmp_path):
    package = _package(tmp_path, {
        "__init__.py": "",
        "low.py": "import os\n",
        "mid.py": "from .low import x\n",
        "high.py": "def f():\n    from . import mid\n    import toy.low\n",
        "sub/__init__.py": "from .leaf import y\nfrom .. import low\n",
        "sub/leaf.py": "from ..mid import z\nfrom toy.sub import w\n",
    })
    assert imports_of(package) == {ROOT_MODULE: set(), "low": set(), "mid": {"low"}, "high": {"mid", "low"},
                                   "sub": {"sub.leaf", "low"}, "sub.leaf": {"mid", "sub"}}


def test_the_checker_finds_a_circle_made_inside_a_function(tmp_path):
    package = _package(tmp_path, {
        "__init__.py": "",
        "a.py": "from .b import f\n",
        "b.py": "from .c import g\n",
        "c.py": "def g():\n    from .a import h  # only when called: still a circle\n",
        "d.py": "from .a import f\n",
    })
    assert find_cycle(imports_of(package)) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "d": {"a", "b"}}) == []


def test_the_checker_finds_upward_and_forbidden_imports_also_through_other_modules(tmp_path):
    package = _package(tmp_path, {
        "__init__.py": "",
        "science.py": "def f():\n    from .helper import g\n",
        "helper.py": "from .store import h\n",
        "store.py": "",
        "report.py": "from .store import h\n",
    })
    graph = imports_of(package)
    layers = {"science": 0, "helper": 0, "store": 1, "report": 2}
    assert upward_imports(graph, layers) == ["helper (layer 0) imports store (layer 1)"]
    rules = [("science", {"science"}, {"store", "report"}), ("top", set(layers), {"report"})]
    assert forbidden_imports(graph, rules) == ["science: science -> helper -> store"]
    graph["store"] = {"report"}
    assert forbidden_imports(graph, rules)[-1] == "top: store -> report"


def test_the_note_is_read_as_written():
    text = ("# t\n\n## Layers\n\n| layer | modules | what |\n|---|---|---|\n| 0 | `a`, `b` | x |\n| 1 | `c` | y |\n\n"
            "## Imports that must never exist\n\n| rule | modules | never import | why |\n|---|---|---|---|\n"
            "| up | layer 0 | layer 1 | z |\n| top | every module | `c` | z |\n\n"
            "## Known breaks\n\n| module | imports | rule | way out |\n|---|---|---|---|\n| `a` | `c` | up | w |\n")
    layers, rules, breaks = read_note(text)
    assert layers == {"a": 0, "b": 0, "c": 1}
    assert rules == [("up", {"a", "b"}, {"c"}), ("top", {"a", "b", "c"}, {"c"})]
    assert breaks == [("a", "c", "up")]
