"""docs/engines.md runs as written: each engine (steplog.sql, DuckDB, Polars, PyArrow datasets, Spark in
local[2] mode) answers "which learning rate gave the best val_loss, per model size" as steplog.sql does."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "engines.md"


def _sections() -> dict[str, str]:
    """{section title: its python code}, in order; the setup is the first section."""
    found = {}
    for title, body in re.findall(r"^## (.+?)\n(.*?)(?=^## |\Z)", DOC.read_text(), flags=re.DOTALL | re.MULTILINE):
        code = re.findall(r"```python\n(.*?)```", body, flags=re.DOTALL)
        if code:
            found[title.strip()] = "\n".join(code)
    return found


SECTIONS = _sections()


@pytest.fixture(scope="module")
def namespace() -> dict:
    setup = next(iter(SECTIONS.values()))
    space: dict = {}
    exec(compile(setup, f"{DOC.name} setup", "exec"), space)
    return space


def _run(title: str, namespace: dict) -> dict:
    space = dict(namespace)
    exec(compile(SECTIONS[title], f"{DOC.name} {title}", "exec"), space)
    return space


def test_the_doc_has_every_engine():
    assert [t.split(" (")[0] for t in SECTIONS][1:] == ["SQL", "DuckDB", "Polars", "PyArrow datasets", "Spark"]


@pytest.mark.parametrize("title", [t for t in SECTIONS if t not in ("Spark",)][1:])
def test_engine_answers_as_steplog_does(title, namespace):
    space = _run(title, namespace)
    assert space.get("answer", space.get("best")) is not None


def test_spark_answers_as_steplog_does(namespace):
    space = _run("Spark", namespace)
    try:
        assert space["answer"] == namespace["expected"]
    finally:
        space["spark"].stop()
