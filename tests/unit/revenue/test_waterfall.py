"""The revenue waterfall: what each obligation still has to earn, month by month."""

from __future__ import annotations

import datetime as dt

from connectors.simulation.builders import base_records, clock, contract, obligation
from revenue.recognition import waterfall
from revenue.replay import replay_all

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
