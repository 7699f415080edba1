"""The sink's staging, without a database: what a batch hands to COPY.

Period rows are thinned before COPY (one per period, the row the upsert would keep); the
rows of new keys of source_events, journal_entries and journal_lines are taken out of the
staging, one per key (the row the staged statement would insert). The integration tests
(tests/integration/test_projection.py) check the tables that result.
"""

from __future__ import annotations

import datetime as dt

from connectors.postgres.projection import Rows
from connectors.postgres.sink import _periods_kept, _staged_rows, _take_new

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


# --- new keys copied straight into their tables (sink._take_new) ----------------------------


class _KeysThere:
    """A connection whose key look-ups find ``there`` (the only statements _take_new runs)."""

    def __init__(self, *there: str) -> None:
        self.there = set(there)
        self.asked: list[set[str]] = []

    def execute(self, query: str, params: list) -> list[tuple[str]]:
        (text,) = params  # the keys, one per line (string_to_array on the server)
        keys = text.split("\n")
        self.asked.append(set(keys))
        return [(key,) for key in keys if key in self.there]


def _event(event_id: str, partition: int, offset: int) -> tuple:
    return (event_id, "invoice.issued", "c-1", "US", "p.ledger.inputs.v1", partition, offset)


def _records(table: str, *rows_per_record: list[tuple]) -> list[Rows]:
    parts = []
    for rows in rows_per_record:
        part = Rows()
        for row in rows:
            part.add(table, row)
        parts.append(part)
    return parts


def test_new_event_keeps_its_lowest_partition_and_offset_copy_and_a_known_one_stays_staged():
    parts = _records(
        "source_events",
        [_event("ev-1", 1, 7)],
        [_event("ev-2", 0, 3), _event("ev-1", 0, 9)],  # a control record's copy: partition 0
        [_event("ev-1", 1, 8), _event("ev-3", 2, 1)],  # a redelivery, later
    )
    staged = _staged_rows(parts)
    conn = _KeysThere("ev-3")

    new = _take_new(conn, staged)  # type: ignore[arg-type]

    assert conn.asked == [{"ev-1", "ev-2", "ev-3"}]
    assert sorted(new["source_events"]) == [_event("ev-1", 0, 9), _event("ev-2", 0, 3)]
    assert staged["source_events"] == [(2, [_event("ev-3", 2, 1)])]


def test_lines_of_a_new_entry_are_taken_first_copy_first_and_those_of_a_known_entry_stay():
    entry = ("e-new",)
    known = ("e-old",)
    first = [("e-new", 1, "a"), ("e-new", 2, "b")]
    again = [("e-new", 1, "A"), ("e-new", 2, "B"), ("e-new", 3, "C")]  # a second copy
    parts = []
    for entries, lines in (([entry], first), ([known], [("e-old", 1, "x")]), ([entry], again)):
        part = Rows()
        for row in entries:
            part.add("journal_entries", row)
        for row in lines:
            part.add("journal_lines", row)
        parts.append(part)
    staged = _staged_rows(parts)

    new = _take_new(_KeysThere("e-old"), staged)  # type: ignore[arg-type]

    assert new["journal_entries"] == [entry]
    # Per (entry, line): the first record's copy, as DISTINCT ON ... ORDER BY _seq keeps.
    assert new["journal_lines"] == [*first, ("e-new", 3, "C")]
    assert staged["journal_entries"] == [(1, [known])]
    assert staged["journal_lines"] == [(1, [("e-old", 1, "x")])]


def test_nothing_stays_staged_when_every_key_is_new():
    parts = _records("source_events", [_event("ev-1", 0, 1)])
    staged = _staged_rows(parts)

    new = _take_new(_KeysThere(), staged)  # type: ignore[arg-type]

    assert new == {"source_events": [_event("ev-1", 0, 1)]}
    assert "source_events" not in staged
