"""Projection into PostgreSQL: rows per second, on a fresh database, several samples.

The topics of a ledger scenario (inputs, entries, schedules, batches, DLQ) are projected
by the real :class:`streams.projection.Projector` (what ``revledger project`` runs:
decode, :func:`connectors.postgres.projection.rows_for`, COPY through
:func:`connectors.postgres.sink.write_batch`, offsets in the same transaction) into a
database created for the run (``bench_<uuid>``, migrated before the clock starts, dropped
after). Rows are those the run inserted or updated, every table counted; the rate is
given for the whole run and for the time spent in the sink (the database transactions).

One run writes some 70,000 rows in five transactions: about 1.5 s of sink on a quiet
machine, and ±10 % or more between runs on a shared one (seen: 22,700 to 46,300 rows/s in
three runs under a load average of 5-7). So :func:`run_projections` projects the same
topics several times, each into its own fresh database, and the figures are the medians.
Each run also records the CPU seconds its writes cost, in this process (the sink's
thread) and in the database backend serving it (``/proc``, when the server runs on this
machine): rows per CPU second of the sink moves far less with other processes' load than
rows per wall-clock second.

Must not import faust.
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from connectors.postgres.migrate import migrate
from streams.projection import DEFAULT_BATCH_SIZE, ProjectOptions, Projector
from streams.settings import Settings

# Projections of the same topics per benchmark run (the figures are their medians).
REPEATS = 3


@dataclass(frozen=True, slots=True)
class ProjectionRun:
    """One projection run to the end of the topics."""

    records: int
    rows: int
    batches: int
    seconds: float  # the whole run: reference, assignment, reading, mapping, writing, end
    write_seconds: float  # in the sink only: the batches' database transactions
    by_table: dict[str, int]
    client_cpu_seconds: float = 0.0  # CPU of the thread writing, during the writes
    # CPU of the database backend serving the run during the writes; None when it could not
    # be read (a server on another machine, a connection replaced by a retry).
    server_cpu_seconds: float | None = None

    def rows_per_second(self, sink_only: bool = False) -> float:
        """Rows per second of the whole run, or of the time spent writing."""
        seconds = self.write_seconds if sink_only else self.seconds
        return self.rows / seconds if seconds > 0 else 0.0

    def rows_per_cpu_second(self) -> float | None:
        """Rows per CPU second of the sink (client thread + database backend), if known."""
        if self.server_cpu_seconds is None:
            return None
        cpu = self.client_cpu_seconds + self.server_cpu_seconds
        return self.rows / cpu if cpu > 0 else None


def median_of(
    runs: Sequence[ProjectionRun], figure: Callable[[ProjectionRun], Any]
) -> float | None:
    """The median of ``figure`` over ``runs``, leaving out runs where it is None."""
    values = [value for value in map(figure, runs) if value is not None]
    return statistics.median(values) if values else None


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def backend_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` if it is a local PostgreSQL backend.

    Read from ``/proc/<pid>/stat``; None when there is no such process here or it is not
    a ``postgres`` process (a server on another machine: the pid means nothing here).
    """
    try:
        if b"postgres" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return None
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces: fields are counted after its ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / _CLOCK_TICKS


class _TimedProjector(Projector):
    """The real projector, also adding up the time (and CPU) spent writing batches."""

    write_seconds = 0.0
    client_cpu_seconds = 0.0
    server_cpu_seconds: float | None = 0.0

    def _write(self, parts: Any, offsets: Any) -> None:
        conn = self._conn  # opened by the start (stored offsets), before any write
        pid = conn.info.backend_pid if conn is not None and not conn.closed else None
        server_before = backend_cpu_seconds(pid) if pid is not None else None
        started, cpu_started = time.perf_counter(), time.thread_time()
        try:
            super()._write(parts, offsets)
        finally:
            self.write_seconds += time.perf_counter() - started
            self.client_cpu_seconds += time.thread_time() - cpu_started
            after = self._conn
            same = after is conn and pid is not None and not after.closed
            server_after = backend_cpu_seconds(pid) if same else None
            if self.server_cpu_seconds is not None:
                if server_before is None or server_after is None:
                    self.server_cpu_seconds = None  # one write not measured: none is
                else:
                    self.server_cpu_seconds += server_after - server_before


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
            projector.client_cpu_seconds,
            projector.server_cpu_seconds,
        )
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def run_projections(
    settings: Settings, admin_url: str, repeats: int = REPEATS
) -> list[ProjectionRun]:
    """:func:`run_projection` ``repeats`` times on the same topics, each into a fresh database.

    The row counts may differ a little between runs (seen: 70,247 and 70,644): they count
    rows updated too, and which invoices and schedules a batch updates depends on where
    the batches end, which depends on timing (:data:`streams.projection.BATCH_MAX_SECONDS`).
    """
    return [run_projection(settings, admin_url) for _ in range(repeats)]
