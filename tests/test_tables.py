"""Text tables: fitting a width never loses a value, and never exceeds the width when it can fit."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from steplog.tables import ELLIPSIS, format_duration, format_value, text_table

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789.", min_size=1, max_size=60)
numbers = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True, width=64))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(names, min_size=1, max_size=6),
    st.integers(min_value=1, max_value=8),
    st.data(),
    st.integers(min_value=40, max_value=140),
)
def test_a_fitted_table_keeps_every_value_within_the_width(row_names, metric_count, data, width):
    metrics = {
        f"m{i}.best": data.draw(st.lists(numbers, min_size=len(row_names), max_size=len(row_names)))
        for i in range(metric_count)
    }
    frame = pl.DataFrame({"name": row_names, **metrics}, schema={"name": pl.String, **{m: pl.Float64 for m in metrics}})
    text = text_table(frame, width=width, significant=4, truncatable=["name"], split_headers=True)
    assert all(len(line) <= width for line in text.splitlines())
    cells = text.split()
    for column, values in metrics.items():
        for value in values:
            assert format_value(value, significant=4) in cells  # every value survives the fitting
    for name in row_names:
        assert name in cells or any(ELLIPSIS in c and c[0] == name[0] for c in cells)


def test_droppable_columns_go_first_and_are_named():
    frame = pl.DataFrame({"name": ["run"], "a": [1.0], "b": [2.0], "started": ["11-26 18:13"]})
    text = text_table(frame, width=16, significant=4, droppable=["started", "b"])
    assert text.splitlines()[-3:] == ["(left out to fit", "16 columns:", "started)"]  # the note wraps to the width too
    assert " b" in text.splitlines()[0]


def test_durations():
    assert [format_duration(s) for s in (0.04, 9.96, 59.4, 60, 3599.6, 86400 * 3 + 7200)] == [
        "0.0s",
        "10s",
        "59s",
        "1m00s",
        "1h00m",
        "3d02h",
    ]


def test_numbers_read_as_four_significant_digits_and_counts_in_full():
    assert [format_value(v, significant=4) for v in (1.23456, 465512.3, 19998.0, 0.000123456, -2.0)] == [
        "1.235",
        "4.655e+05",
        "19998",
        "0.0001235",
        "-2",
    ]
