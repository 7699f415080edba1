"""The revenue waterfall: what each obligation still has to earn, month by month."""

from __future__ import annotations

import datetime as dt

from connectors.simulation import builders as b
from connectors.simulation.builders import base_records, clock, contract, obligation
from revenue.recognition import changed_schedules, schedule_by_period, waterfall
from revenue.replay import replay_all
from revenue.state import RevenueBook

D = dt.date


def test_waterfall_lists_the_remaining_schedule_by_month_when_part_is_recognised():
    booked = contract(
        "K1",
        1200_00 + 300_00,
        [
            obligation("SUB", 1200_00, D(2024, 1, 1), D(2024, 12, 31)),
            obligation("SETUP", 300_00, D(2024, 5, 15), pattern="point_in_time", product_id="SVC"),
        ],
        on=D(2024, 1, 1),
    )
    result = replay_all(base_records(), [booked, clock(D(2024, 9, 30))])
    rows = waterfall(result.books["C1"].revenue, D(2024, 9, 30))

    # 2024 has 366 days: October 31, November 30, December 31 of 1,200.00 by day.
    assert rows == [
        ("K1", "SUB", "2024-10", 101_64),
        ("K1", "SUB", "2024-11", 98_36),
        ("K1", "SUB", "2024-12", 101_64),
    ]
    recognised = result.books["C1"].revenue.contracts["K1"].recognized_minor
    assert recognised + sum(amount for *_, amount in rows) == 1500_00


def test_waterfall_is_empty_when_every_schedule_has_ended():
    booked = contract("K1", 100_00, [obligation("SUB", 100_00, D(2024, 1, 1), D(2024, 1, 31))])
    result = replay_all(base_records(), [booked, clock(D(2024, 2, 29))])
    assert waterfall(result.books["C1"].revenue, D(2024, 2, 29)) == []


def test_schedule_by_period_spreads_each_obligation_over_its_months_and_sums_to_it():
    booked = contract(
        "K1",
        1200_00 + 300_00,
        [
            obligation("SUB", 1200_00, D(2024, 1, 1), D(2024, 12, 31)),
            obligation("SETUP", 300_00, D(2024, 5, 15), pattern="point_in_time", product_id="SVC"),
        ],
        on=D(2024, 1, 1),
    )
    books = replay_all(base_records(), [booked]).books["C1"].revenue
    rows = schedule_by_period(books.contracts["K1"])

    assert ("SETUP", "2024-05", 300_00) in rows
    sub = [(period, amount) for ob, period, amount in rows if ob == "SUB"]
    assert [period for period, _ in sub] == [f"2024-{m:02d}" for m in range(1, 13)]
    assert sub[0] == ("2024-01", 101_64) and sub[1] == ("2024-02", 95_08)
    assert sum(amount for _, amount in sub) == 1200_00


def test_schedule_by_period_follows_a_cancellation_and_ignores_usage():
    booked = contract(
        "K1",
        1200_00,
        [obligation("SUB", 1200_00, D(2024, 1, 1), D(2024, 12, 31))],
        on=D(2024, 1, 1),
    )
    cancelled = b.cancellation("K1", D(2024, 4, 1))
    books = replay_all(base_records(), [booked, cancelled]).books["C1"].revenue
    rows = schedule_by_period(books.contracts["K1"])
    assert [period for _, period, _ in rows] == ["2024-01", "2024-02", "2024-03"]
    assert (
        sum(amount for *_, amount in rows)
        == books.contracts["K1"].obligations["SUB"].allocated_minor
    )


def test_changed_schedules_names_a_contract_once_its_schedule_moves_and_not_on_a_tick():
    booked = contract("K1", 1200_00, [obligation("SUB", 1200_00, D(2024, 1, 1), D(2024, 12, 31))])
    empty = replay_all(base_records(), []).books.get("C1")
    first = replay_all(base_records(), [booked]).books["C1"].revenue
    ticked = replay_all(base_records(), [booked, clock(D(2024, 2, 29))]).books["C1"].revenue
    cancelled = (
        replay_all(
            base_records(), [booked, clock(D(2024, 2, 29)), b.cancellation("K1", D(2024, 4, 1))]
        )
        .books["C1"]
        .revenue
    )

    assert empty is None
    assert [
        (c.contract_id, len(rows)) for c, rows in changed_schedules(RevenueBook("C1"), first)
    ] == [("K1", 12)]
    assert changed_schedules(first, ticked) == []
    ((contract_after, rows),) = changed_schedules(ticked, cancelled)
    assert contract_after.cancelled_on == D(2024, 4, 1) and len(rows) == 3
