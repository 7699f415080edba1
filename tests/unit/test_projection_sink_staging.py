"""The sink's staging, without a database: what a batch hands to COPY.

Period rows are thinned before COPY (one per period, the row the upsert would keep); the
integration tests (tests/integration/test_projection.py) check the tables that result.
"""

from __future__ import annotations

import datetime as dt

from connectors.postgres.projection import Rows
from connectors.postgres.sink import _periods_kept, _staged_rows

CLOSED_ON = dt.date(2026, 2, 3)


def _batch(*records: list[tuple]) -> list[Rows]:
    """One ``Rows`` per record, each with the given ``periods`` rows."""
    parts = []
    for rows in records:
        part = Rows()
        for row in rows:
            part.add("periods", row)
        parts.append(part)
    return parts


def _kept(*records: list[tuple]) -> dict[tuple, tuple[int, tuple]]:
    groups = _staged_rows(_batch(*records))["periods"]
    kept = _periods_kept(groups)
    assert all(len(rows) == 1 for _, rows in kept), kept
    return {(rows[0][0], rows[0][1]): (seq, rows[0]) for seq, rows in kept}


def test_one_row_per_period_is_copied_when_many_entries_see_it_open():
    open_row = ("US", "2026-01", "open", None)
    kept = _kept(*([open_row] for _ in range(1000)))
    assert kept == {("US", "2026-01"): (999, open_row)}


def test_close_is_kept_when_entries_see_the_period_open_after_it():
    closed = ("US", "2026-01", "closed", CLOSED_ON)
    kept = _kept([("US", "2026-01", "open", None)], [closed], [("US", "2026-01", "open", None)])
    assert kept[("US", "2026-01")] == (1, closed)


def test_latest_close_is_kept_when_a_period_is_closed_twice_in_a_batch():
    first = ("US", "2026-01", "closed", CLOSED_ON)
    second = ("US", "2026-01", "closed", CLOSED_ON + dt.timedelta(days=1))
    kept = _kept([first], [("US", "2026-01", "open", None)], [second])
    assert kept[("US", "2026-01")] == (2, second)


def test_periods_of_each_entity_are_kept_apart_when_they_share_a_name():
    kept = _kept(
        [("US", "2026-01", "open", None)],
        [("EU", "2026-01", "closed", CLOSED_ON)],
        [("US", "2026-02", "open", None)],
    )
    assert sorted(kept) == [("EU", "2026-01"), ("US", "2026-01"), ("US", "2026-02")]
    assert kept[("EU", "2026-01")][1][2] == "closed"
    assert kept[("US", "2026-01")][1][2] == "open"
