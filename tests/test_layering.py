"""Imports run one way: no library module reaches up into the command layer (issue 17)."""

import ast
from pathlib import Path

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


def _cycles(package: str) -> list[list[str]]:
    """Import cycles among ``package``'s modules (function-level imports included), as module lists."""
    modules = {p.stem: p for p in (ROOT / package).glob("*.py") if p.stem != "__init__"}
    edges = {name: {m.split(".")[1] for m in _imported_modules(path)
                    if m.startswith(f"{package}.") and m.split(".")[1] in modules and m.split(".")[1] != name}
             for name, path in modules.items()}
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for name in sorted(modules):
        if name not in state:
            visit(name, [name])
    return cycles


def test_channels_have_no_import_cycle():
    assert _cycles("channels") == []
