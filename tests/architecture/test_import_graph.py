"""The project's modules import each other without a circle.

The graph is built from the source with ``ast``: every ``import`` and ``from … import``,
at module level, inside functions and under ``if TYPE_CHECKING`` alike (a circle hidden in
a function is still a circle: it only fails later, at the first call). Tests, migrations and
bench are left out. import-linter (``lint-imports``, the contracts in pyproject.toml) keeps
the layers; its ``layers`` contract sees a circle only between layers it names, so this
test looks at every module.
"""

from __future__ import annotations

import ast
import itertools
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("accounts", "messaging", "protocol", "pubsub_site", "rooms", "webpush")


def project_modules(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    modules = {}
    for package in packages:
        for path in (root / package).rglob("*.py"):
            if {"tests", "migrations"} & set(path.relative_to(root).parts):
                continue
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def import_graph(modules: dict[str, Path]) -> dict[str, dict[str, int]]:
    """module -> {imported project module: line of the first import}."""

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, dict[str, int]] = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        edges = graph[module] = {}
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            for name in names:
                target = resolve(name)
                if target and target != module:
                    edges.setdefault(target, node.lineno)
    return graph


def import_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = itertools.count()

    def visit(module: str) -> None:
        index[module] = low[module] = next(counter)
        stack.append(module)
        on_stack.add(module)
        for target in graph[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph) + 100))
    try:
        for module in sorted(graph):
            if module not in index:
                visit(module)
    finally:
        sys.setrecursionlimit(limit)
    return found


def describe(cycles: list[list[str]], graph: dict[str, dict[str, int]]) -> str:
    lines = []
    for component in cycles:
        lines.append("circle: " + ", ".join(component))
        for module in component:
            for target, line in sorted(graph[module].items()):
                if target in component:
                    lines.append(f"  {module}:{line} imports {target}")
    return "\n".join(lines)


def test_the_projects_modules_import_each_other_without_a_circle():
    graph = import_graph(project_modules())
    assert len(graph) > 50  # the walk found the project
    cycles = import_cycles(graph)
    assert cycles == [], describe(cycles, graph)


def test_it_finds_a_circle_closed_by_an_import_inside_a_function(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text("def later():\n    from . import c\n")
    (package / "c.py").write_text("import typing\nif typing.TYPE_CHECKING:\n    from pkg.a import thing\n")
    (package / "d.py").write_text("from pkg import a\n")
    graph = import_graph(project_modules(tmp_path, ("pkg",)))
    assert import_cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]
    assert "pkg.b:2 imports pkg.c" in describe(import_cycles(graph), graph)
