"""The codebase checks itself: imports point down, no package cycle, short functions.

Read from the source with `ast` (nothing is imported or run), so a change that breaks one
of these rules fails CI with the place named.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "agproxy"
MAX_FUNCTION_LINES = 60
# Low-level modules: everything may import them, they import none of the layers above.
LOW_LEVEL = {
    "protocols",
    "zones",
    "config",
    "addresses",
    "provider_settings",
    "monitor",
    "translate",
    "db",
    "datadir",
}
UPPER = {"service", "server", "middleware", "frontends", "admin", "cli"}


def _unit(path: Path) -> str:
    """The top-level package or module a file belongs to: agproxy/<unit>/… or <unit>.py."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _imports() -> dict[str, dict[str, set[str]]]:
    """unit → imported unit → files that import it."""
    found: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for path in PACKAGE.rglob("*.py"):
        unit = _unit(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                parts = node.module.split(".")
                if parts[0] == "agproxy" and len(parts) > 1 and parts[1] != unit:
                    found[unit][parts[1]].add(str(path.relative_to(PACKAGE)))
    return found


def test_no_two_packages_import_each_other() -> None:
    graph = _imports()
    cycles = [
        f"{a} ↔ {b}: {sorted(graph[a][b])} / {sorted(graph[b][a])}"
        for a in graph
        for b in graph[a]
        if a < b and a in graph.get(b, {})
    ]
    assert not cycles


def test_low_level_modules_import_no_upper_layer() -> None:
    graph = _imports()
    wrong = [
        f"{low} imports {up} in {sorted(graph[low][up])}"
        for low in LOW_LEVEL
        for up in UPPER
        if up in graph.get(low, {})
    ]
    assert not wrong


def test_no_function_is_longer_than_60_lines() -> None:
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(
                        f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({lines} lines)"
                    )
    assert not long


def test_all_middleware_lives_in_one_package() -> None:
    elsewhere = []
    for path in PACKAGE.rglob("*.py"):
        if _unit(path) == "middleware":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Middleware"):
                elsewhere.append(f"{path.relative_to(PACKAGE)}: {node.name}")
    assert not elsewhere
