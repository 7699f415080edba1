"""Projection into PostgreSQL: rows per second, on a fresh database.

The topics of a ledger scenario (inputs, entries, schedules, batches, DLQ) are projected
by the real :class:`streams.projection.Projector` (what ``revledger project`` runs:
decode, :func:`connectors.postgres.projection.rows_for`, COPY through
:func:`connectors.postgres.sink.write_batch`, offsets in the same transaction) into a
database created for the run (``bench_<uuid>``, migrated before the clock starts, dropped
after). Rows are those the run inserted or updated, every table counted; the rate is
given for the whole run and for the time spent in the sink (the database transactions).

Must not import faust.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from connectors.postgres.migrate import migrate
from streams.projection import DEFAULT_BATCH_SIZE, ProjectOptions, Projector
from streams.settings import Settings


@dataclass(frozen=True, slots=True)
class ProjectionRun:
    """One projection run to the end of the topics."""

    records: int
    rows: int
    batches: int
    seconds: float  # the whole run: reference, assignment, reading, mapping, writing, end
    write_seconds: float  # in the sink only: the batches' database transactions
    by_table: dict[str, int]

    def rows_per_second(self, sink_only: bool = False) -> float:
        """Rows per second of the whole run, or of the time spent writing."""
        seconds = self.write_seconds if sink_only else self.seconds
        return self.rows / seconds if seconds > 0 else 0.0


class _TimedProjector(Projector):
    """The real projector, also adding up the time spent writing batches."""

    write_seconds = 0.0

    def _write(self, parts: Any, offsets: Any) -> None:
        started = time.perf_counter()
        try:
            super()._write(parts, offsets)
        finally:
            self.write_seconds += time.perf_counter() - started


def run_projection(settings: Settings, admin_url: str) -> ProjectionRun:
    """Project ``settings``' topics into a fresh database; time the run."""
    name = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = make_conninfo(admin_url, dbname=name)
        migrate(url)
        lines: list[str] = []
        projector = _TimedProjector(
            settings, ProjectOptions(url, batch_size=DEFAULT_BATCH_SIZE), say=lines.append
        )
        started = time.perf_counter()
        code = projector.run()
        seconds = time.perf_counter() - started
        if code != 0:
            raise RuntimeError(f"projection exited {code}: {lines[-5:]}")
        totals = projector.totals
        by_table = {
            table: totals.inserted[table] + totals.updated[table]
            for table in sorted(set(totals.inserted) | set(totals.updated))
        }
        return ProjectionRun(
            totals.records,
            sum(by_table.values()),
            totals.batches,
            seconds,
            projector.write_seconds,
            by_table,
        )
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
