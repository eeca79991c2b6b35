"""Imports run one way (issue 17): no library module reaches up into the command layer, no import cycle
anywhere, every module in a layer of the import-linter contract."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_library_module_imports_the_commands():
    library = [p for p in sorted((ROOT / "simulator").rglob("*.py")) + sorted((ROOT / "channels").rglob("*.py"))
               if "commands" not in p.relative_to(ROOT).parts and p.name not in ("cli.py", "__main__.py")]
    assert len(library) > 30
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in _imported_modules(p) if m.startswith("simulator.commands"))
                 for p in library}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_channels_do_not_import_the_simulator():
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in _imported_modules(p) if m.split(".")[0] == "simulator")
                 for p in sorted((ROOT / "channels").rglob("*.py"))}
    assert {k: v for k, v in offenders.items() if v} == {}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph(packages: tuple[str, ...]) -> dict[str, set[str]]:
    """Module -> the modules of ``packages`` it imports (function-level imports included). ``from a
    import b`` counts as importing ``a.b`` when that is a module, else ``a``; a module's imports of
    its own parent packages are left out (importing a submodule runs them anyway)."""
    paths = {_module_name(p): p for package in packages for p in (ROOT / package).rglob("*.py")}

    def resolve(name: str) -> str | None:
        parts = name.split(".")
        for end in range(len(parts), 0, -1):
            if ".".join(parts[:end]) in paths:
                return ".".join(parts[:end])
        return None

    graph = {}
    for name, path in paths.items():
        targets = {resolve(m) for m in _imported_modules(path)} - {None, name}
        graph[name] = {t for t in targets if not name.startswith(t + ".")}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles of ``graph``, each as the list of modules along it."""
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return cycles


def test_no_import_cycle_among_modules():
    graph = _import_graph(("simulator", "channels"))
    assert len(graph) > 60 and "simulator.systems.m4sc" in graph
    assert _cycles(graph) == []


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_every_simulator_module_sits_in_a_layer():
    """The layers contract of pyproject.toml (checked by lint-imports in CI) names every top-level
    module and subpackage, so a new module cannot slip in unlayered."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["type"] == "layers")["layers"]
    listed = {name.strip() for layer in layers for name in layer.replace(":", "|").split("|")}
    present = {f"simulator.{p.stem}" for p in (ROOT / "simulator").glob("*.py") if p.stem != "__init__"}
    present |= {f"simulator.{p.parent.name}" for p in (ROOT / "simulator").glob("*/__init__.py")}
    assert present - listed == set()
    assert listed - present == set()
