"""The benchmarks' pure helpers: percentiles, the pacer, targets, the table and the JSON."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks.harness import (
    TARGET_P99,
    TARGET_PROJECTION,
    Figure,
    Pacer,
    Target,
    format_table,
    format_value,
    percentile,
    rate,
    results_document,
)


def test_percentile_interpolates_between_ranks_when_between_samples():
    values = [4.0, 1.0, 3.0, 2.0]  # unsorted on purpose
    assert percentile(values, 0.0) == 1.0
    assert percentile(values, 1.0) == 4.0
    assert percentile(values, 0.5) == pytest.approx(2.5)
    # rank 0.99 * 3 = 2.97: 3 + 0.97 * (4 - 3)
    assert percentile(values, 0.99) == pytest.approx(3.97)


def test_percentile_of_one_value_is_that_value_when_alone():
    assert percentile([0.25], 0.5) == 0.25
    assert percentile([0.25], 0.99) == 0.25


def test_percentile_p99_of_hundred_samples_is_not_the_maximum_when_interpolated():
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 0.99) == pytest.approx(99.01)
    assert percentile(values, 0.5) == pytest.approx(50.5)


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_percentile_refuses_fraction_when_outside_unit_interval(fraction):
    with pytest.raises(ValueError, match="outside"):
        percentile([1.0], fraction)


def test_percentile_refuses_when_no_values():
    with pytest.raises(ValueError, match="no values"):
        percentile([], 0.5)


def test_rate_is_count_per_second_and_safe_when_duration_is_zero():
    assert rate(300, 1.5) == 200
    assert rate(0, 0.0) == 0.0
    assert math.isinf(rate(5, 0.0))


def test_pacer_schedules_events_on_an_absolute_clock():
    pacer = Pacer(rate=100.0, started=10.0)
    assert pacer.due(9.99) == 0
    assert pacer.due(10.0) == 1  # event 0 is due at the start
    assert pacer.due(10.0999) == 10
    assert pacer.due(11.0) == 101
    assert pacer.wait(sent=5, now=10.0) == pytest.approx(0.05)
    assert pacer.wait(sent=5, now=10.2) == 0.0  # behind: send at once


def test_pacer_catches_up_when_sends_were_late():
    pacer = Pacer(rate=1000.0, started=0.0)
    # Nothing sent for 50 ms: the next call may send 51 at once, and the mean rate holds.
    assert pacer.due(0.05) == 51
    assert pacer.due(1.0) == 1001


def test_pacer_refuses_rate_when_not_positive():
    with pytest.raises(ValueError, match="positive"):
        Pacer(rate=0.0, started=0.0)


def test_target_met_when_on_the_right_side_of_the_bound():
    at_least = Target(10.0, "at_least", ">= 10")
    at_most = Target(1.0, "at_most", "<= 1")
    assert at_least.met(10.0) and not at_least.met(9.99)
    assert at_most.met(1.0) and not at_most.met(1.01)


def test_figure_verdict_says_met_not_met_or_not_measured():
    assert Figure("a", "a", 0.9, "s", TARGET_P99).verdict() == "met"
    assert Figure("a", "a", 1.2, "s", TARGET_P99).verdict() == "NOT met"
    assert Figure("a", "a", None, "s", TARGET_P99).verdict() == "not measured"
    assert Figure("a", "a", math.nan, "s", TARGET_P99).verdict() == "not measured"
    assert Figure("a", "a", 5.0, "s").verdict() == ""


def test_format_value_uses_separators_and_decimals_by_magnitude():
    assert format_value(12_345.6, "events/s") == "12,346"
    assert format_value(42.123, "s") == "42.12"
    assert format_value(0.61234, "s") == "0.612"
    assert format_value(0.617, "x") == "0.62"
    assert format_value(0.0617, "x") == "0.062"  # a small ratio keeps its first digits
    assert format_value(None, "s") == "-"
    assert format_value(math.inf, "events/s") == "inf"


def test_format_table_aligns_columns_and_prints_verdicts():
    table = format_table(
        [
            Figure("p", "projection rows/s", 3_137.0, "rows/s", TARGET_PROJECTION, "small run"),
            Figure("l", "latency p99", 0.9, "s", TARGET_P99),
        ]
    )
    lines = table.splitlines()
    assert lines[0].split() == ["figure", "value", "unit", "target", "verdict", "note"]
    assert set(lines[1]) <= {"-", " "}
    assert "3,137" in lines[2] and "NOT met" in lines[2] and lines[2].endswith("small run")
    assert "0.900" in lines[3] and lines[3].rstrip().endswith("met")
    # Values are right-aligned in one column.
    assert lines[2].index("3,137") + len("3,137") == lines[3].index("0.900") + len("0.900")


def test_results_document_is_json_and_keeps_load_and_verdicts():
    figures = [
        Figure("x.rate", "x", math.inf, "events/s"),
        Figure("x.p99", "p99", 2.5, "s", TARGET_P99, details={"p50": 1.7}),
    ]
    document = results_document(
        figures, mode="quick", load_start=(1.234, 1.0, 0.5), load_end=(2.0, 1.5, 1.0), seconds=61.26
    )
    parsed = json.loads(json.dumps(document))
    assert parsed["mode"] == "quick"
    assert parsed["loadavg_start"] == [1.23, 1.0, 0.5]
    assert parsed["seconds"] == 61.3
    first, second = parsed["figures"]
    assert first["value"] is None  # infinity is not JSON
    assert second["verdict"] == "NOT met"
    assert second["target"] == "<= 1 s at half max"
    assert second["details"] == {"p50": 1.7}
