"""docs/architecture.md against the code: every module of src/steplog is in its table, in layer order,
and each module imports only modules above it (or in its own row); the few imports inside a function
that reach down a layer are exactly the ones the page lists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "steplog"
DOC = REPO / "docs" / "architecture.md"
#: The package's own entry points, not layers: ``__init__`` (the public names, imported lazily) and
#: ``__main__`` (``python -m steplog``, the CLI).
ENTRY_POINTS = {"__init__", "__main__"}


def layer_table(text: str) -> list[list[str]]:
    """The rows of the module table under "Modules, in layer order": the module names of each row."""
    section = text.split("## Modules, in layer order", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        match = re.match(r"^\|\s*(`[^|]+)\|", line)
        if match:
            rows.append([name.rstrip("/") for name in re.findall(r"`([^`]+)`", match.group(1))])
    return rows


def listed_deferred(text: str) -> set[tuple[str, str]]:
    """The (module, module below it) pairs the page lists as imports inside a function."""
    pairs = set()
    for match in re.finditer(r"^- `(\w+)` imports ((?:`\w+`(?:, )?)+):", text, re.MULTILINE):
        pairs.update((match.group(1), name) for name in re.findall(r"`(\w+)`", match.group(2)))
    return pairs


def owner(path: Path) -> str:
    """The layer a source file belongs to: its module, or the subpackage it is in (``cli``, ``ui``...)."""
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def steplog_imports(source: str, package: list[str]) -> list[tuple[str, bool, int]]:
    """(first-level steplog module imported, whether inside a function, line) for each import in
    ``source``, a module of the package ``package`` (e.g. ``["steplog", "cli"]``)."""
    found: list[tuple[str, bool, int]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.ImportFrom):
                base = package[: len(package) - child.level + 1] if child.level else []
                module = [*base, *(child.module.split(".") if child.module else [])]
                if module[:1] == ["steplog"]:
                    names = [alias.name for alias in child.names] if len(module) == 1 else [module[1]]
                    found.extend((name, inner, child.lineno) for name in names)
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    parts = alias.name.split(".")
                    if parts[0] == "steplog" and len(parts) > 1:
                        found.append((parts[1], inner, child.lineno))
            visit(child, inner)

    visit(ast.parse(source), False)
    return found


def modules_in_source() -> set[str]:
    return {owner(path) for path in SRC.rglob("*.py")} - ENTRY_POINTS


def layering_problems(rows: list[list[str]], deferred: set[tuple[str, str]]) -> tuple[list[str], set]:
    """What breaks the layering (one line each), and the deferred imports found that reach down."""
    layer = {name: index for index, names in enumerate(rows) for name in names}
    problems, reaching_down = [], set()
    for path in sorted(SRC.rglob("*.py")):
        me = owner(path)
        if me in ENTRY_POINTS or me not in layer:
            continue
        package = ["steplog", *path.relative_to(SRC).parts[:-1]]
        for name, in_function, line in steplog_imports(path.read_text(), package):
            if name not in layer or layer[name] <= layer[me]:
                continue  # above it, in its own row, or not a module (a name of the package)
            where = f"{path.relative_to(REPO)}:{line} imports {name}, which docs/architecture.md lists below {me}"
            if not in_function:
                problems.append(where + " (at the top of the module)")
            elif (me, name) not in deferred:
                problems.append(where + " (inside a function, and not in the page's list of such imports)")
            else:
                reaching_down.add((me, name))
    return problems, reaching_down


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text()


def test_the_table_lists_every_module_once_and_only_modules_that_exist(doc):
    rows = layer_table(doc)
    listed = [name for names in rows for name in names]
    assert len(listed) > 30, "the module table of docs/architecture.md was not found"
    assert len(listed) == len(set(listed)), f"listed twice: {sorted({n for n in listed if listed.count(n) > 1})}"
    assert sorted(modules_in_source() - set(listed)) == [], "modules missing from docs/architecture.md's table"
    assert sorted(set(listed) - modules_in_source()) == [], "modules in docs/architecture.md's table but not in src"


def test_every_module_imports_only_modules_above_it(doc):
    problems, _ = layering_problems(layer_table(doc), listed_deferred(doc))
    assert problems == [], "\n".join(problems)


def test_the_listed_imports_reaching_down_are_all_still_there(doc):
    listed = listed_deferred(doc)
    assert listed, "the list of imports inside a function was not found in docs/architecture.md"
    _, found = layering_problems(layer_table(doc), listed)
    assert sorted(listed - found) == [], "docs/architecture.md lists imports the code no longer makes"


def test_the_check_sees_imports_at_the_top_inside_functions_and_of_subpackages():
    source = (
        "from .. import format as fmt\n"
        "from ..store import resolve_run\n"
        "import steplog.query\n"
        "def f():\n"
        "    from .. import runstatus, __version__\n"
    )
    assert steplog_imports(source, ["steplog", "cli"]) == [
        ("format", False, 1),
        ("store", False, 2),
        ("query", False, 3),
        ("runstatus", True, 5),
        ("__version__", True, 5),
    ]
    assert steplog_imports("from . import store\nfrom .tables import text_table\n", ["steplog"]) == [
        ("store", False, 1),
        ("tables", False, 2),
    ]
    assert steplog_imports("from . import common\n", ["steplog", "cli"]) == [("cli", False, 1)]  # its own package


def test_a_module_importing_one_listed_below_it_is_reported(doc):
    rows = layer_table(doc)
    swapped = [list(row) for row in rows]
    at = {name: index for index, names in enumerate(rows) for name in names}
    swapped[at["store"]], swapped[at["format"]] = swapped[at["format"]], swapped[at["store"]]  # store above format
    problems, _ = layering_problems(swapped, listed_deferred(doc))
    assert any("src/steplog/store.py" in p and "imports format" in p for p in problems), problems
    problems, _ = layering_problems(rows, set())  # the deferred imports, unlisted
    assert any("compact.py" in p and "imports catalog" in p and "inside a function" in p for p in problems)
