"""Names follow one rule: an async twin carries the ``a`` prefix, and no two functions of the
domain share a name for different things.

- Where a sync function and its async twin both exist, the async one is ``a<name>``
  (``changes.delete`` / ``changes.adelete``, ``counters`` / ``acounters``): never the same
  name, never ``<name>_async``.
- No two top-level functions of the project's modules share a name, apart from what mirrors a
  service on purpose: a view is named after its URL (``rooms.views.room_join`` calls
  ``rooms.services.room_join``), a template filter after what it renders.
"""

from __future__ import annotations

import ast
from collections import defaultdict

from tests.architecture.test_import_graph import project_modules

MIRRORS = (".views", ".templatetags.", ".admin")


def top_level_functions() -> dict[str, list[tuple[str, bool]]]:
    """name -> [(module, is_async)] of every top-level function (tests and migrations aside)."""
    found: dict[str, list[tuple[str, bool]]] = defaultdict(list)
    for module, path in project_modules().items():
        for node in ast.parse(path.read_text(), filename=str(path)).body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                found[node.name].append((module, isinstance(node, ast.AsyncFunctionDef)))
    return found


def test_an_async_twin_carries_the_a_prefix():
    functions = top_level_functions()
    sync = {name for name, defs in functions.items() if any(not is_async for _, is_async in defs)}
    wrong = []
    for name, defs in functions.items():
        for module, is_async in defs:
            if not is_async:
                continue
            if name in sync:
                wrong.append(f"{module}.{name}: async, and a sync function has the same name")
            for twin in (name.removesuffix("_async"), name.removeprefix("async_")):
                if twin != name and twin in sync:
                    wrong.append(f"{module}.{name}: the async twin of {twin} is a{twin}")
            if name.startswith("a") and name[1:] in functions and name[1:] not in sync:
                wrong.append(f"{module}.{name}: {name[1:]} is async too; a is the prefix of an async twin")
    assert wrong == []
    assert "adelete" in functions and "delete" in sync  # the rule is seen at work


def test_no_two_functions_of_the_domain_share_a_name():
    shared = {
        name: [module for module, _ in defs]
        for name, defs in top_level_functions().items()
        if not name.startswith("_") and len({module for module, _ in defs if not any(m in module for m in MIRRORS)}) > 1
    }
    assert shared == {}
