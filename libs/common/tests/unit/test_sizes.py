"""No source file over 500 lines, no function over 60 lines (outside tests and benchmarks).

Every ``src`` tree of the workspace (``libs/*/src``, ``gateway/src``,
``services/*/src``) is walked; each ``*.py`` file is measured in lines
(``str.splitlines``) and parsed with :mod:`ast`, and every function, method
and nested function (sync or async) is measured from its ``def`` line to its
last line, inclusive (decorators not counted). Directories named ``tests`` or
``benchmarks`` are skipped; the scaffold's templates (``*.py.tmpl``, not valid
Python until rendered) are not ``*.py`` files and are not read. The test names
every offender at once.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 60
SKIPPED_DIRS = frozenset({"tests", "benchmarks"})

def source_files() -> Iterator[Path]:
    trees = [*sorted((ROOT / "libs").glob("*/src")), ROOT / "gateway" / "src",
             *sorted((ROOT / "services").glob("*/src"))]
    for tree in trees:
        for path in sorted(tree.rglob("*.py")):
            if SKIPPED_DIRS.isdisjoint(path.relative_to(tree).parts):
                yield path


def functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, ast.AST]]:
    """Every function under ``tree`` with its qualified name (``Class.method``,
    ``outer.inner``)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield prefix + node.name, node
            yield from functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from functions(node, f"{prefix}{node.name}.")
        else:
            yield from functions(node, prefix)


def offenders() -> dict[str, str]:
    """``path`` or ``path::function`` → what is too long, for every file and function
    over the limits."""
    found: dict[str, str] = {}
    for path in source_files():
        name = path.relative_to(ROOT).as_posix()
        text = path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        if lines > MAX_FILE_LINES:
            found[name] = f"{lines} lines (max {MAX_FILE_LINES})"
        for qualified, node in functions(ast.parse(text, filename=name)):
            assert node.end_lineno is not None
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                found[f"{name}::{qualified}"] = f"{length} lines (max {MAX_FUNCTION_LINES})"
    return found


def test_the_walk_finds_every_src_tree() -> None:
    found = {path.relative_to(ROOT).parts[:2] for path in source_files()}
    assert ("gateway", "src") in found
    assert ("libs", "common") in found
    assert ("services", "doctor") in found


def test_no_file_or_function_is_too_long() -> None:
    found = offenders()
    too_long = [f"{key}: {what}" for key, what in sorted(found.items())]
    assert not too_long, "over the size limits:\n" + "\n".join(too_long)
