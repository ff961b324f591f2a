"""Property-based round trips: what is logged is what history returns, in every durability mode."""

from __future__ import annotations

import math
import shutil
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import steplog
from steplog.format import RESERVED_NAMES

metric_names = st.text(min_size=1, max_size=12).filter(lambda k: k not in RESERVED_NAMES)
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.booleans(),
)
steps = st.lists(st.dictionaries(metric_names, values, max_size=6), min_size=1, max_size=25)


def same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return (math.isnan(a) and math.isnan(b)) or a == b


def expected_history(logged: list[dict]) -> dict[int, dict[str, float]]:
    """Sequential steps from 0 (each step's values as floats)."""
    return {step: {k: float(v) for k, v in metrics.items()} for step, metrics in enumerate(logged)}


def check_round_trip(durability: str, logged: list[dict]) -> None:
    root = tempfile.mkdtemp()
    try:
        run = steplog.init(root=root, durability=durability, buffer_size=7)
        for metrics in logged:
            run.log(metrics)
        run.finish()
        hist = steplog.history(run.id, root=root)
        expected = expected_history(logged)
        assert hist["step"].to_list() == list(expected)
        names = {k for m in logged for k in m}
        assert set(hist.columns) == {"step", "wallclock", "time"} | names
        for row in hist.iter_rows(named=True):
            want = expected[row["step"]]
            for name in names:
                assert same(row[name], want.get(name)), (name, row[name], want.get(name))
    finally:
        shutil.rmtree(root)


settings_ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@settings_
@given(steps)
def test_round_trip_process(logged):
    check_round_trip("process", logged)


@settings_
@given(steps)
def test_round_trip_fsync(logged):
    check_round_trip("fsync", logged)


@settings_
@given(steps)
def test_round_trip_buffered(logged):
    check_round_trip("buffered", logged)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 8),
            st.dictionaries(st.sampled_from("abcd"), st.floats(allow_nan=True)),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_repeated_and_unordered_steps_merge_with_the_later_value_winning(calls):
    root = tempfile.mkdtemp()
    try:
        run = steplog.init(root=root)
        expected: dict[int, dict[str, float]] = {}
        for step, metrics in calls:
            run.log(metrics, step=step)
            expected.setdefault(step, {}).update(metrics)
        run.finish()
        hist = steplog.history(run.id, root=root)
        assert hist["step"].to_list() == sorted(expected)
        for row in hist.iter_rows(named=True):
            for name in "abcd":
                if name in hist.columns:
                    assert same(row[name], expected[row["step"]].get(name))
    finally:
        shutil.rmtree(root)
