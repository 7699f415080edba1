"""Recognition schedules: what each method has due through a day, terms, stops, credits."""

import datetime as dt

import pytest

from ledger.errors import InvariantViolation
from revenue.schedule import (
    Segment,
    add_months,
    due_through,
    last_day,
    last_service_day,
    periods_between,
    term_in_months,
    total_of,
)

D = dt.date


def month_ends(segment: Segment, periods: list[str]) -> list[int]:
    """What ``segment`` has due at each of ``periods``' last day."""
    return [segment.due_through(last_day(period)) for period in periods]


def month_figures(segment: Segment, periods: list[str]) -> list[int]:
    """What ``segment`` earns in each of ``periods`` (differences of month-end figures)."""
    due = month_ends(segment, periods)
    return [after - before for before, after in zip([0, *due], due, strict=False)]


# --- daily -------------------------------------------------------------------------------


def test_daily_earns_the_same_each_day_when_the_period_is_a_leap_year():
    segment = Segment(D(2024, 1, 1), D(2024, 12, 31), 366_00, "daily")
    assert month_figures(segment, ["2024-01", "2024-02", "2024-03"]) == [31_00, 29_00, 31_00]
    assert segment.due_through(D(2024, 1, 1)) == 1_00  # the first day counts whole
    assert segment.due_through(D(2024, 12, 31)) == 366_00


def test_daily_rounds_half_even_and_reaches_the_amount_when_the_split_is_uneven():
    segment = Segment(D(2024, 1, 1), D(2024, 1, 3), 100, "daily")
    assert [segment.due_through(D(2024, 1, day)) for day in (1, 2, 3)] == [33, 67, 100]


def test_daily_earns_nothing_before_the_start_when_asked_for_an_earlier_day():
    segment = Segment(D(2024, 3, 1), D(2024, 3, 31), 31_00, "daily")
    assert (segment.due_through(D(2024, 2, 29)), segment.due_through(None)) == (0, 0)
    assert segment.due_through(D(2025, 1, 1)) == 31_00


# --- monthly even ------------------------------------------------------------------------


def test_monthly_even_gives_each_service_month_the_same_when_months_differ_in_length():
    segment = Segment(D(2024, 1, 1), D(2024, 4, 30), 400_00, "monthly_even")
    periods = ["2024-01", "2024-02", "2024-03", "2024-04"]
    assert month_figures(segment, periods) == [100_00] * 4


def test_monthly_even_counts_rounded_months_when_the_term_starts_mid_month():
    # Jun 15 - Oct 12 is 4 months (3 months 28 days): Jun, Jul, Aug, Sep earn; Oct nothing.
    segment = Segment(D(2024, 6, 15), D(2024, 10, 12), 400_00, "monthly_even")
    periods = ["2024-06", "2024-07", "2024-08", "2024-09", "2024-10"]
    assert month_figures(segment, periods) == [100_00, 100_00, 100_00, 100_00, 0]
    # Within June the share accrues by service day: 8 of 16 days by Jun 22.
    assert segment.due_through(D(2024, 6, 22)) == 50_00


def test_monthly_even_gives_the_extra_cents_to_the_earliest_months_when_it_does_not_divide():
    segment = Segment(D(2024, 1, 1), D(2024, 3, 31), 100, "monthly_even")
    assert month_figures(segment, ["2024-01", "2024-02", "2024-03"]) == [34, 33, 33]


def test_monthly_even_gives_the_start_month_a_whole_share_when_service_starts_on_jan_31():
    segment = Segment(D(2024, 1, 31), D(2024, 4, 29), 300_00, "monthly_even")
    periods = ["2024-01", "2024-02", "2024-03", "2024-04"]
    assert month_figures(segment, periods) == [100_00, 100_00, 100_00, 0]


def test_monthly_even_earns_it_all_on_the_day_when_service_is_one_day():
    segment = Segment(D(2024, 2, 29), D(2024, 2, 29), 12_34, "monthly_even")
    assert (segment.due_through(D(2024, 2, 28)), segment.due_through(D(2024, 2, 29))) == (
        0,
        12_34,
    )


# --- monthly prorated --------------------------------------------------------------------


def test_monthly_prorated_prorates_first_and_last_months_when_they_are_partial():
    # 91 days: Jan 15-31 (17), Feb (29), Mar (31), Apr 1-14 (14).
    segment = Segment(D(2024, 1, 15), D(2024, 4, 14), 910_00, "monthly_prorated")
    periods = ["2024-01", "2024-02", "2024-03", "2024-04"]
    assert month_figures(segment, periods) == [170_00, 300_00, 300_00, 140_00]


def test_monthly_prorated_splits_by_days_when_no_month_is_whole():
    segment = Segment(D(2024, 1, 15), D(2024, 2, 14), 310_00, "monthly_prorated")
    assert month_figures(segment, ["2024-01", "2024-02"]) == [170_00, 140_00]


def test_monthly_prorated_gives_whole_months_equal_shares_when_the_term_is_whole_months():
    segment = Segment(D(2023, 2, 1), D(2023, 4, 30), 300_00, "monthly_prorated")
    assert month_figures(segment, ["2023-02", "2023-03", "2023-04"]) == [100_00] * 3


def test_monthly_prorated_earns_it_all_in_the_month_when_service_is_within_one_month():
    segment = Segment(D(2024, 5, 10), D(2024, 5, 19), 10_00, "monthly_prorated")
    assert segment.due_through(D(2024, 5, 14)) == 5_00
    assert segment.due_through(D(2024, 5, 31)) == 10_00


# --- point in time -----------------------------------------------------------------------


def test_point_in_time_is_due_whole_on_the_delivery_day_when_delivered():
    segment = Segment(D(2024, 3, 1), D(2024, 3, 1), 500_00, "point_in_time")
    assert [segment.due_through(D(2024, 2, 29)), segment.due_through(D(2024, 3, 1))] == [
        0,
        500_00,
    ]


# --- term_in_months ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "months"),
    [
        (D(2024, 6, 15), D(2024, 10, 12), 4),  # 3 months 28 days
        (D(2024, 1, 15), D(2025, 1, 14), 12),
        (D(2024, 1, 1), D(2024, 12, 31), 12),
        (D(2024, 1, 10), D(2024, 1, 10), 1),  # one day: at least 1
        (D(2024, 1, 1), D(2024, 1, 15), 1),  # half a month rounds to 0: at least 1
        (D(2024, 5, 1), D(2024, 6, 14), 1),  # 1 month 14 of 30 days
        (D(2024, 5, 1), D(2024, 6, 15), 2),  # 1 month 15 of 30 days: half rounds up
        (D(2023, 1, 31), D(2023, 2, 27), 1),  # Jan 31 + 1 month = Feb 28
        (D(2023, 1, 31), D(2023, 2, 28), 1),
        (D(2023, 1, 31), D(2023, 3, 30), 2),  # Jan 31 + 2 months = Mar 31
        (D(2024, 1, 31), D(2024, 4, 29), 3),
        (D(2024, 2, 29), D(2025, 2, 28), 12),  # from a leap day, one year
        (D(2023, 3, 1), D(2024, 2, 29), 12),  # a year ending on a leap day
    ],
)
def test_term_in_months_rounds_to_the_nearest_month_when_dates_are_awkward(start, end, months):
    assert term_in_months(start, end) == months


@pytest.mark.parametrize(
    ("day", "months", "moved"),
    [
        (D(2024, 1, 31), 1, D(2024, 2, 29)),
        (D(2023, 1, 31), 1, D(2023, 2, 28)),
        (D(2024, 2, 29), 12, D(2025, 2, 28)),
        (D(2024, 12, 15), 1, D(2025, 1, 15)),
        (D(2024, 3, 31), -1, D(2024, 2, 29)),
    ],
)
def test_add_months_clamps_to_the_month_end_when_the_day_does_not_exist(day, months, moved):
    assert add_months(day, months) == moved


def test_periods_between_lists_every_month_when_the_range_crosses_a_year():
    assert periods_between(D(2024, 11, 30), D(2025, 2, 1)) == [
        "2024-11",
        "2024-12",
        "2025-01",
        "2025-02",
    ]


# --- stop truncation ---------------------------------------------------------------------


def test_stop_cuts_the_schedule_off_when_service_ends_early():
    stopped = Segment(D(2024, 1, 1), D(2024, 12, 31), 366_00, "daily").stopped(D(2024, 6, 30))
    assert stopped.total_minor == 182_00
    assert stopped.due_through(D(2024, 6, 30)) == stopped.due_through(D(2024, 12, 31))
    assert stopped.due_through(D(2024, 1, 31)) == 31_00


def test_stop_keeps_the_earlier_day_when_stopped_twice():
    segment = Segment(D(2024, 1, 1), D(2024, 12, 31), 366_00, "daily")
    assert segment.stopped(D(2024, 3, 31)).stopped(D(2024, 9, 30)).stop == D(2024, 3, 31)
    assert segment.stopped(D(2024, 9, 30)).stopped(D(2024, 3, 31)).stop == D(2024, 3, 31)


def test_stop_earns_nothing_when_it_comes_before_the_start():
    segment = Segment(D(2024, 3, 1), D(2024, 12, 31), 1000_00, "monthly_even")
    assert segment.stopped(D(2024, 2, 29)).total_minor == 0


def test_stop_mid_month_earns_the_days_served_when_the_method_is_monthly():
    segment = Segment(D(2024, 1, 1), D(2024, 4, 30), 400_00, "monthly_even")
    stopped = segment.stopped(D(2024, 2, 14))  # 14 of February's 29 days
    assert stopped.total_minor == 100_00 + 48_28
    assert last_service_day((stopped,)) == D(2024, 2, 14)


def test_stop_on_a_point_in_time_segment_drops_it_when_delivery_is_after_the_stop():
    segment = Segment(D(2024, 3, 1), D(2024, 3, 1), 500_00, "point_in_time")
    assert segment.stopped(D(2024, 2, 29)).total_minor == 0
    assert segment.stopped(D(2024, 3, 1)).total_minor == 500_00


# --- negative amounts (credits) ----------------------------------------------------------


@pytest.mark.parametrize("method", ["daily", "monthly_even", "monthly_prorated"])
def test_negative_segment_mirrors_the_positive_one_when_amounts_are_opposite(method):
    start, end = D(2024, 1, 20), D(2024, 5, 9)
    positive = Segment(start, end, 1234_57, method)
    negative = Segment(start, end, -1234_57, method)
    day = start
    while day <= end:
        assert negative.due_through(day) == -positive.due_through(day), day
        day += dt.timedelta(days=1)
    assert negative.total_minor == -1234_57


def test_negative_segment_lowers_the_rest_of_the_schedule_when_added_as_a_credit():
    schedule = (
        Segment(D(2024, 1, 1), D(2024, 12, 31), 366_00, "daily"),
        Segment(D(2024, 7, 1), D(2024, 12, 31), -184_00, "daily"),  # the rest, credited
    )
    assert due_through(schedule, D(2024, 6, 30)) == 182_00
    assert due_through(schedule, D(2024, 9, 30)) == 182_00
    assert total_of(schedule) == 182_00


# --- validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "method"),
    [
        (D(2024, 2, 1), D(2024, 1, 31), "daily"),  # ends before it starts
        (D(2024, 2, 1), D(2024, 2, 2), "point_in_time"),  # point in time spans a day
        (D(2024, 2, 1), D(2024, 2, 2), "weekly"),  # unknown method
    ],
)
def test_segment_raises_invariant_violation_when_it_is_malformed(start, end, method):
    with pytest.raises(InvariantViolation):
        Segment(start, end, 100, method)
