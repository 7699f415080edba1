"""Close an accounting period: check it may be closed, then produce its ``PeriodClosed``.

The ledger applies a ``PeriodClosed`` record of ``control.v1`` (one copy per partition,
:class:`streams.producer.RecordProducer`) in input order: later postings dated in the
closed period go to the next open one (``ledger/reference.py``, ``streams/ledger_worker.py``).
The worker accepts any close and ignores a repeat, so the rules are checked here, against
the projection's ``period_status`` (:func:`connectors.postgres.queries.periods`):

- the period must be one the entity knows (opened by a control record or posted in);
- it must not be closed already;
- it must be the entity's oldest open period: periods close in order, so a month is never
  closed while an earlier one still takes postings.

The record's event id is ``period-close/<entity>/<period>``: the same close sent twice is
one close to every consumer that deduplicates by event id.

Must not import faust.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import psycopg

from connectors.postgres import queries
from ledger.events import PeriodClosed
from streams.producer import RecordProducer
from streams.settings import Settings

SOURCE_SYSTEM = "revledger-console"


class PeriodCloseRefused(ValueError):
    """Raised when a period may not be closed: unknown, already closed, or not the oldest
    open period of its entity (the message says which, and what to do)."""


def check_close(rows: Sequence[queries.PeriodRow], entity: str, period: str) -> None:
    """Refuse to close ``period`` unless it is ``entity``'s oldest open period (pure).

    Args:
        rows: the entity's periods, as :func:`connectors.postgres.queries.periods` returns.

    Raises:
        ValueError: ``period`` is not ``YYYY-MM``.
        PeriodCloseRefused: see the module docstring.
    """
    queries.check_period(period)
    by_period = {row.period: row for row in rows}
    row = by_period.get(period)
    if row is None:
        raise PeriodCloseRefused(f"{entity} has no period {period}: nothing posted or opened in it")
    if row.status == "closed":
        closed = f" on {row.closed_on}" if row.closed_on else ""
        raise PeriodCloseRefused(f"{entity} {period} is already closed{closed}")
    oldest = min(r.period for r in rows if r.status != "closed")
    if oldest != period:
        raise PeriodCloseRefused(
            f"{entity} {period} is not the oldest open period: close {oldest} first"
        )


def period_close_record(
    entity: str, period: str, closed_on: dt.date, now: dt.datetime | None = None
) -> PeriodClosed:
    """The ``PeriodClosed`` record of a close (its event id names entity and period)."""
    return PeriodClosed(
        event_id=f"period-close/{entity}/{period}",
        occurred_at=now or dt.datetime.now(dt.UTC),
        source_system=SOURCE_SYSTEM,
        source_id=f"{entity}/{period}",
        entity=entity,
        period=period,
        closed_on=closed_on,
    )


def close_period(
    settings: Settings,
    conn: psycopg.Connection,
    entity: str,
    period: str,
    closed_on: dt.date | None = None,
) -> PeriodClosed:
    """Check that ``entity``'s ``period`` may be closed, then produce its ``PeriodClosed``
    to every partition of ``control.v1`` and wait for delivery.

    Args:
        conn: a connection that reads the views (``revledger_reader`` suffices).
        closed_on: the closing date recorded (default: today, UTC).

    Returns:
        The record produced.

    Raises:
        connectors.postgres.queries.UnknownEntity: no entry and no period of ``entity``.
        PeriodCloseRefused, ValueError: see :func:`check_close`.
        RuntimeError: the broker did not take the record (the producer's error).
    """
    rows = queries.periods(conn, entity)
    check_close(rows, entity, period)
    record = period_close_record(entity, period, closed_on or dt.datetime.now(dt.UTC).date())
    producer = RecordProducer(settings)
    producer.send(record)
    producer.flush()
    return record
