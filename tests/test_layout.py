"""The house: bridge/ is sub-packages by concern with no import cycle, between modules or between packages, and
no toolkit is imported outside adapters/. Imports inside functions count (a cycle through a lazy import is still
a cycle); imports under `if TYPE_CHECKING:` do not (they never run)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1]
TOOLKITS = ("art", "foolbox", "torchattacks", "eagerpy")


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.AST) -> list[str]:
    """Every module imported anywhere in `tree`, except under `if TYPE_CHECKING:`."""
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            node.body = []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return found


def graph() -> dict[str, set[str]]:
    modules = {_module(p): p for p in (ROOT / "bridge").rglob("*.py")}
    return {name: {m for m in _imports(ast.parse(path.read_text())) if m in modules and m != name}
            for name, path in modules.items()}  # fmt: skip


def cycle(edges: dict[str, set[str]]) -> list[str]:
    """One cycle of the directed graph `edges`, or [] when it has none."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        stack.pop()
        return []

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return []


def package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_no_import_cycle_between_modules() -> None:
    assert cycle(graph()) == []


def test_no_import_cycle_between_packages() -> None:
    edges: dict[str, set[str]] = {}
    for module, targets in graph().items():
        edges.setdefault(package(module), set()).update(package(t) for t in targets if package(t) != package(module))
    assert cycle(edges) == []
    assert {package(m) for m in graph()} >= {"bridge.core", "bridge.data", "bridge.attacks", "bridge.models",
                                             "bridge.defences", "bridge.engine", "bridge.studies", "bridge.scenario",
                                             "bridge.runner", "bridge.report", "bridge.cli"}  # fmt: skip
    assert not [p for p in (ROOT / "bridge").glob("*.py") if p.name != "__init__.py"]  # every module in a package


def test_the_cycle_finder_finds_cycles() -> None:
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import x\ndef f():\n    import y\n")
    found = _imports(tree)
    assert "y" in found and "x" not in found


def test_toolkits_are_imported_only_in_adapters() -> None:
    leaks = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in (ROOT / "bridge").rglob("*.py")
        for name in _imports(ast.parse(path.read_text()))
        if name.split(".")[0] in TOOLKITS
    ]
    assert leaks == []
