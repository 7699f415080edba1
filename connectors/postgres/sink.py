"""Writing the projection's rows to PostgreSQL: one transaction per poll batch, with offsets.

:func:`write_batch` takes the rows of each record of a batch
(:func:`connectors.postgres.projection.rows_for`) and the next offset of every partition
the batch read, and in ONE transaction:

1. takes the consumer's advisory lock and checks that the stored offsets are still those
   the caller started the batch from (:class:`OffsetsMoved` otherwise: another projection
   under the same name is writing);
2. COPYs the rows into temporary staging tables (``stage_<table>``, one column ``_seq``
   more: the record's place in the batch), then ``INSERT ... SELECT DISTINCT ON (natural
   key) ... ON CONFLICT`` into each table, parents before children: the first copy of a
   document wins, a copy already there changes nothing;
3. folds each explicit contract the batch touched again from all its events in
   ``source_events`` (:func:`connectors.postgres.projection.contract_rows`) and upserts
   it and its obligations; upserts the latest schedule per contract and applies the
   schedules whose contract and obligations are all there; recomputes the status of the
   invoices the batch touched from their accounts receivable lines;
4. stores the next offsets.

So a batch is all or nothing, and replaying any range inserts nothing and changes nothing.

Errors, by SQLSTATE (never by message text)::

    ProjectionError
    ├── TransientDatabaseError  08xxx, 40001, 40P01, 57P0x, a lost connection: retry the batch
    ├── ConstraintViolation     23xxx (a CHECK, a key, the deferred balance trigger): a bug
    └── OffsetsMoved            the stored offsets are not those this run wrote

Must not import: faust, aiokafka, confluent_kafka, anything under ``streams``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from connectors.postgres.projection import (
    COLUMNS,
    CONTRACT_EVENT_TYPES,
    JSON_COLUMNS,
    ContractEvent,
    ContractRows,
    Received,
    Rows,
    ScheduleRow,
    contract_rows,
)
from ledger.reference import ReferenceData

SCHEMA = "revledger"
# (topic, partition) -> next offset to read.
Offsets = Mapping[tuple[str, int], int]

# SQLSTATEs worth retrying: serialization failure, deadlock, server shutting down or
# starting. Class 08 (connection exceptions) is matched by its prefix.
_TRANSIENT_STATES = frozenset({"40001", "40P01", "57P01", "57P02", "57P03"})

_SCHEDULE_COLUMNS = (
    "contract_id",
    "customer_id",
    "entity",
    "currency",
    "source_event_id",
    "cancelled_on",
    "lines",
    "topic",
    "kafka_partition",
    "kafka_offset",
)


class ProjectionError(RuntimeError):
    """Base of the errors :func:`write_batch` raises (tree in the module docstring)."""


class TransientDatabaseError(ProjectionError):
    """Raised when the database failed in a way a retry may cure; nothing was committed."""


class ConstraintViolation(ProjectionError):
    """Raised when the database refused rows (SQLSTATE 23xxx): the projection has a bug.

    ``sqlstate`` and ``constraint`` come from the server's diagnostics.
    """

    def __init__(self, message: str, sqlstate: str | None, constraint: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.constraint = constraint


class OffsetsMoved(ProjectionError):
    """Raised when the stored offsets differ from those this run expects (two writers)."""


def classify(exc: psycopg.Error) -> type[ProjectionError]:
    """The :class:`ProjectionError` subclass a psycopg error maps to, by SQLSTATE."""
    state = exc.sqlstate or ""
    if state.startswith("23"):
        return ConstraintViolation
    if state.startswith("08") or state in _TRANSIENT_STATES:
        return TransientDatabaseError
    if isinstance(exc, psycopg.OperationalError) and not state:
        return TransientDatabaseError  # the connection broke: no SQLSTATE
    return ProjectionError


def translated(exc: psycopg.Error) -> ProjectionError:
    """``exc`` as the :class:`ProjectionError` :func:`classify` picks (chain it with ``from``)."""
    kind = classify(exc)
    text = " ".join(str(exc).split()) or type(exc).__name__
    if kind is ConstraintViolation:
        diag = exc.diag
        return ConstraintViolation(f"{exc.sqlstate}: {text}", exc.sqlstate, diag.constraint_name)
    return kind(f"{exc.sqlstate or 'no SQLSTATE'}: {text}")


@contextmanager
def database_errors() -> Iterator[None]:
    """Re-raise psycopg errors of the block as :class:`ProjectionError` subclasses."""
    try:
        yield
    except psycopg.Error as exc:
        raise translated(exc) from exc


# --- setting up a connection ------------------------------------------------------------------


def _stage(table: str) -> sql.Identifier:
    return sql.Identifier(f"stage_{table}")


def prepare(conn: psycopg.Connection) -> None:
    """Create this session's staging tables (temporary, emptied at every commit).

    Call once per connection, outside a batch: a table created in a batch that rolls back
    would vanish with it.
    """
    with conn.transaction():
        for table, columns in COLUMNS.items():
            conn.execute(
                sql.SQL(
                    "CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS"
                    " SELECT {columns}, 0::bigint AS _seq FROM {table} WITH NO DATA"
                ).format(
                    stage=_stage(table),
                    columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
                    table=sql.Identifier(SCHEMA, table),
                )
            )
        conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS"
                " SELECT {columns}, 0::bigint AS _seq FROM {table} WITH NO DATA"
            ).format(
                stage=_stage("projection_schedules"),
                columns=sql.SQL(", ").join(map(sql.Identifier, _SCHEDULE_COLUMNS)),
                table=sql.Identifier(SCHEMA, "projection_schedules"),
            )
        )
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS ready_schedules (contract_id TEXT PRIMARY KEY)"
            " ON COMMIT DELETE ROWS"
        )


def stored_offsets(conn: psycopg.Connection, consumer: str) -> dict[tuple[str, int], int]:
    """The next offset per (topic, partition) stored for ``consumer``."""
    rows = conn.execute(
        "SELECT topic, kafka_partition, next_offset FROM revledger.projection_offsets"
        " WHERE consumer = %s",
        [consumer],
    ).fetchall()
    return {(topic, partition): offset for topic, partition, offset in rows}


# --- one batch --------------------------------------------------------------------------------


def write_batch(
    conn: psycopg.Connection,
    parts: Sequence[Rows],
    offsets: Offsets,
    consumer: str,
    expected: Offsets,
    reference: ReferenceData,
) -> tuple[Counter[str], Counter[str]]:
    """Write a batch's rows and its next offsets in one transaction.

    Args:
        conn: an autocommit connection on which :func:`prepare` ran.
        parts: the rows of each record, in the order they were read.
        offsets: the next offset of every partition the batch read.
        consumer: the consumer name the offsets are stored under.
        expected: the stored offsets this batch continues from (absent: none stored).
        reference: entities and product mappings (obligation methods of a fold).

    Returns:
        ``(inserted, updated)`` row counts per table.

    Raises:
        OffsetsMoved: the stored offsets are not ``expected``.
        TransientDatabaseError, ConstraintViolation, ProjectionError: see the module
            docstring; the transaction was rolled back.
    """
    with database_errors(), conn.transaction():
        _fence(conn, consumer, offsets, expected)
        counts = write_rows(conn, parts, reference)
        _store_offsets(conn, consumer, offsets)
    return counts


def _fence(conn: psycopg.Connection, consumer: str, offsets: Offsets, expected: Offsets) -> None:
    """Lock the consumer's offsets for this transaction and check they are ``expected``."""
    conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
        [f"revledger.projection:{consumer}"],
    )
    stored = stored_offsets(conn, consumer)
    moved = [key for key in offsets if stored.get(key) != expected.get(key)]
    if moved:
        topic, partition = moved[0]
        raise OffsetsMoved(
            f"stored offset of {topic}[{partition}] for consumer {consumer!r} is"
            f" {stored.get((topic, partition))}, this run expected"
            f" {expected.get((topic, partition))}: is another projection named"
            f" {consumer!r} running?"
        )


def _store_offsets(conn: psycopg.Connection, consumer: str, offsets: Offsets) -> None:
    with conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO revledger.projection_offsets (consumer, topic, kafka_partition,"
            " next_offset) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (consumer, topic, kafka_partition)"
            " DO UPDATE SET next_offset = EXCLUDED.next_offset",
            [
                (consumer, topic, partition, offset)
                for (topic, partition), offset in offsets.items()
            ],
        )


def write_rows(
    conn: psycopg.Connection, parts: Sequence[Rows], reference: ReferenceData
) -> tuple[Counter, Counter]:
    """Write ``parts`` inside the caller's transaction; returns ``(inserted, updated)``."""
    inserted: Counter[str] = Counter()
    updated: Counter[str] = Counter()
    _truncate_stages(conn)
    for table in COLUMNS:
        _copy(
            conn,
            table,
            COLUMNS[table],
            [(i, row) for i, p in enumerate(parts) for row in p.tables[table]],
        )
    new_events = _insert_source_events(conn)
    inserted["source_events"] = len(new_events)
    for table, key in _DOCUMENTS:
        inserted[table] = _insert(conn, table, key)
    inserted["performance_obligations"] = _insert_obligations(conn)
    inserted["periods"], updated["periods"] = _upsert_periods(conn)
    touched = sorted({contract for part in parts for contract in part.contracts_touched})
    _refold_contracts(conn, touched, reference, inserted, updated)
    schedules = [(i, s) for i, part in enumerate(parts) for s in part.schedules]
    _apply_schedules(conn, schedules, inserted, updated)
    for table, key in _HISTORY:
        inserted[table] = _insert(conn, table, key)
    invoices = sorted({invoice for part in parts for invoice in part.touched_invoices})
    updated["invoices"] += _recompute_invoice_status(conn, invoices)
    return +inserted, +updated


# Tables whose rows are inserted once by natural key, in foreign-key order (parents first).
# Contracts here are implied ones (from invoices); performance_obligations follows them
# separately (only the obligations of the record that made the contract row).
_DOCUMENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("journal_entries", ("entry_id",)),
    ("journal_lines", ("entry_id", "line_no")),
    ("invoices", ("invoice_id",)),
    ("payments", ("payment_id",)),
    ("contracts", ("contract_id",)),
)
_HISTORY: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("journal_batches", ("batch_id",)),
    ("journal_batch_lines", ("batch_id", "line_no")),
    ("journal_batch_entries", ("batch_id", "entry_id")),
    ("erp_acks", ("kafka_partition", "kafka_offset")),
    ("dlq_records", ("kafka_partition", "kafka_offset")),
    ("projection_rejects", ("topic", "kafka_partition", "kafka_offset")),
)


def _truncate_stages(conn: psycopg.Connection) -> None:
    """Empty the staging tables (several write_rows may share one transaction)."""
    stages = [_stage(table) for table in (*COLUMNS, "projection_schedules")]
    conn.execute(
        sql.SQL("TRUNCATE {}").format(
            sql.SQL(", ").join([*stages, sql.Identifier("ready_schedules")])
        )
    )


def _copy(
    conn: psycopg.Connection, table: str, columns: Sequence[str], rows: Sequence[tuple[int, tuple]]
) -> None:
    """COPY ``(seq, row)`` pairs into the staging table of ``table``."""
    if not rows:
        return
    json_at = [i for i, column in enumerate(columns) if column in JSON_COLUMNS]
    statement = sql.SQL("COPY {} ({}, _seq) FROM STDIN").format(
        _stage(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with conn.cursor() as cursor, cursor.copy(statement) as copy:
        for seq, row in rows:
            values = list(row)
            for i in json_at:
                values[i] = Jsonb(values[i])
            values.append(seq)
            copy.write_row(values)


def _select_first(table: str, key: Sequence[str]) -> sql.Composed:
    """``SELECT DISTINCT ON (key) columns FROM stage ORDER BY key, _seq``: the first copy."""
    keys = sql.SQL(", ").join(map(sql.Identifier, key))
    return sql.SQL(
        "SELECT DISTINCT ON ({keys}) {columns} FROM {stage} ORDER BY {keys}, _seq"
    ).format(
        keys=keys,
        columns=sql.SQL(", ").join(map(sql.Identifier, COLUMNS[table])),
        stage=_stage(table),
    )


def _insert_statement(table: str, key: Sequence[str]) -> sql.Composed:
    return sql.SQL(
        "INSERT INTO {table} ({columns}) {select} ON CONFLICT ({keys}) DO NOTHING"
    ).format(
        table=sql.Identifier(SCHEMA, table),
        columns=sql.SQL(", ").join(map(sql.Identifier, COLUMNS[table])),
        select=_select_first(table, key),
        keys=sql.SQL(", ").join(map(sql.Identifier, key)),
    )


def _insert(conn: psycopg.Connection, table: str, key: Sequence[str]) -> int:
    """Insert the staged rows of ``table`` not there yet; returns how many were inserted."""
    return conn.execute(_insert_statement(table, key)).rowcount


def _insert_source_events(conn: psycopg.Connection) -> set[str]:
    """Insert the events not there yet; returns their ids (new to the database).

    Of the copies of one event id, the first in its topic wins: the lowest (partition,
    offset). Redeliveries share a partition, so the first read is kept; a control record
    has a copy on every partition, and whichever a batch read first gives way to the
    partition-0 copy, so the row does not depend on how the records fell into batches.
    """
    columns = COLUMNS["source_events"]
    statement = sql.SQL(
        "INSERT INTO revledger.source_events AS s ({columns})"
        " SELECT DISTINCT ON (event_id) {columns} FROM {stage}"
        " ORDER BY event_id, kafka_partition, kafka_offset"
        " ON CONFLICT (event_id) DO UPDATE SET {updates}"
        " WHERE EXCLUDED.topic = s.topic AND (EXCLUDED.kafka_partition, EXCLUDED.kafka_offset)"
        " < (s.kafka_partition, s.kafka_offset)"
        " RETURNING s.event_id, (s.xmax = 0)"
    ).format(
        columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
        stage=_stage("source_events"),
        updates=sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(column)) for column in columns[1:]
        ),
    )
    return {event_id for event_id, is_new in conn.execute(statement) if is_new}


def _insert_obligations(conn: psycopg.Connection) -> int:
    """Obligations of the contract row in the table, from the record that made that row.

    A second booking of an existing contract id (the engine refuses it) adds nothing; a
    replayed booking finds its obligations there already.
    """
    statement = sql.SQL(
        "INSERT INTO revledger.performance_obligations ({names})"
        " SELECT {columns} FROM {stage_obligations} AS o"
        " JOIN (SELECT DISTINCT ON (contract_id) contract_id, source_event_id, _seq"
        "         FROM {stage_contracts} ORDER BY contract_id, _seq) AS c"
        "   ON c.contract_id = o.contract_id AND c._seq = o._seq"
        " JOIN revledger.contracts AS t"
        "   ON t.contract_id = c.contract_id AND t.source_event_id = c.source_event_id"
        " ON CONFLICT (contract_id, obligation_id) DO NOTHING"
    ).format(
        names=sql.SQL(", ").join(map(sql.Identifier, COLUMNS["performance_obligations"])),
        columns=sql.SQL(", ").join(
            sql.Identifier("o", column) for column in COLUMNS["performance_obligations"]
        ),
        stage_obligations=_stage("performance_obligations"),
        stage_contracts=_stage("contracts"),
    )
    return conn.execute(statement).rowcount


def _upsert_periods(conn: psycopg.Connection) -> tuple[int, int]:
    """Periods seen open or closed; closed wins (the latest close), open never reopens."""
    rows = conn.execute(
        sql.SQL(
            "INSERT INTO revledger.periods AS p (entity, period, status, closed_on)"
            " SELECT DISTINCT ON (entity, period) entity, period, status, closed_on"
            " FROM {stage} ORDER BY entity, period, (status = 'closed') DESC, _seq DESC"
            " ON CONFLICT (entity, period) DO UPDATE"
            " SET status = EXCLUDED.status, closed_on = EXCLUDED.closed_on"
            " WHERE EXCLUDED.status = 'closed'"
            " AND (p.status, p.closed_on) IS DISTINCT FROM (EXCLUDED.status, EXCLUDED.closed_on)"
            " RETURNING (p.xmax = 0)"
        ).format(stage=_stage("periods"))
    ).fetchall()
    inserted = sum(1 for (is_new,) in rows if is_new)
    return inserted, len(rows) - inserted


# --- explicit contracts, folded ---------------------------------------------------------

_CONTRACT_EVENTS = """
SELECT event_type, payload::text
  FROM revledger.source_events
 WHERE event_type IN ('contract.booked', 'contract.amended', 'contract.cancelled')
   AND payload ->> 'contract_id' = ANY(%s)
 ORDER BY kafka_partition, kafka_offset
"""
_UPSERT_CONTRACT = sql.SQL(
    "INSERT INTO revledger.contracts AS c ({columns}) VALUES ({values})"
    " ON CONFLICT (contract_id) DO UPDATE SET {updates}"
    " WHERE ({current}) IS DISTINCT FROM ({excluded})"
    " RETURNING (c.xmax = 0)"
).format(
    columns=sql.SQL(", ").join(map(sql.Identifier, COLUMNS["contracts"])),
    values=sql.SQL(", ").join(sql.Placeholder() * len(COLUMNS["contracts"])),
    updates=sql.SQL(", ").join(
        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in COLUMNS["contracts"][1:]
    ),
    current=sql.SQL(", ").join(sql.Identifier("c", c) for c in COLUMNS["contracts"][1:]),
    excluded=sql.SQL(", ").join(sql.Identifier("excluded", c) for c in COLUMNS["contracts"][1:]),
)
# An obligation's terms follow the fold; its allocation follows the fold only until a
# schedule of the contract has been applied (the schedule's is the engine's).
_TERMS = [c for c in COLUMNS["performance_obligations"][2:] if c != "allocated_minor"]
_SCHEDULED = sql.SQL(
    "EXISTS (SELECT 1 FROM revledger.projection_schedules AS s"
    " WHERE s.contract_id = o.contract_id AND s.applied)"
)
_UPSERT_OBLIGATION = sql.SQL(
    "INSERT INTO revledger.performance_obligations AS o ({columns}) VALUES ({values})"
    " ON CONFLICT (contract_id, obligation_id) DO UPDATE SET {updates},"
    " allocated_minor = CASE WHEN {scheduled} THEN o.allocated_minor"
    " ELSE EXCLUDED.allocated_minor END"
    " WHERE ({current}) IS DISTINCT FROM ({excluded})"
    " OR (o.allocated_minor <> EXCLUDED.allocated_minor AND NOT {scheduled})"
    " RETURNING (o.xmax = 0)"
).format(
    columns=sql.SQL(", ").join(map(sql.Identifier, COLUMNS["performance_obligations"])),
    values=sql.SQL(", ").join(sql.Placeholder() * len(COLUMNS["performance_obligations"])),
    updates=sql.SQL(", ").join(
        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in _TERMS
    ),
    scheduled=_SCHEDULED,
    current=sql.SQL(", ").join(sql.Identifier("o", c) for c in _TERMS),
    excluded=sql.SQL(", ").join(sql.Identifier("excluded", c) for c in _TERMS),
)


def _refold_contracts(
    conn: psycopg.Connection,
    contract_ids: Sequence[str],
    reference: ReferenceData,
    inserted: Counter[str],
    updated: Counter[str],
) -> None:
    """Fold ``contract_ids`` again from their events and upsert what changed.

    A contract whose obligations changed after one of its schedules was applied gets that
    schedule applied again (its allocations are the engine's, the fold's provisional).
    """
    if not contract_ids:
        return
    events: dict[str, list[ContractEvent]] = defaultdict(list)
    for event_type, payload in conn.execute(_CONTRACT_EVENTS, [list(contract_ids)]):
        event = CONTRACT_EVENT_TYPES[event_type].model_validate_json(payload)
        events[event.contract_id].append(event)
    reapply = []
    for contract_id in contract_ids:
        folded = contract_rows(events.get(contract_id, ()), reference)
        if folded is not None and _upsert_contract(conn, folded, inserted, updated):
            reapply.append(contract_id)
    if reapply:
        conn.execute(
            "UPDATE revledger.projection_schedules SET applied = false"
            " WHERE contract_id = ANY(%s) AND applied",
            [reapply],
        )


def _upsert_contract(
    conn: psycopg.Connection, folded: ContractRows, inserted: Counter[str], updated: Counter[str]
) -> bool:
    """Upsert a folded contract and its obligations; True when an obligation changed."""
    found = conn.execute(_UPSERT_CONTRACT, folded.contract).fetchall()
    _count(found, "contracts", inserted, updated)
    changed = False
    for row in folded.obligations:
        found = conn.execute(_UPSERT_OBLIGATION, row).fetchall()
        _count(found, "performance_obligations", inserted, updated)
        changed = changed or bool(found)
    return changed


def _count(found: list[tuple], table: str, inserted: Counter[str], updated: Counter[str]) -> None:
    """Count ``RETURNING (xmax = 0)`` rows: True inserted, False updated."""
    for (is_new,) in found:
        (inserted if is_new else updated)[table] += 1


# --- schedules --------------------------------------------------------------------------------


def _apply_schedules(
    conn: psycopg.Connection,
    schedules: Sequence[tuple[int, ScheduleRow]],
    inserted: Counter[str],
    updated: Counter[str],
) -> None:
    """Keep each contract's latest schedule; apply those whose obligations are all there.

    Counts schedules kept (``projection_schedules``), ``revenue_schedule`` rows inserted
    and, as updated, those deleted by replacing a contract's schedule, and allocations
    set (``performance_obligations`` updated).
    """
    if schedules:
        _copy(
            conn,
            "projection_schedules",
            _SCHEDULE_COLUMNS,
            [(i, _schedule_values(s)) for i, s in schedules],
        )
        _count(
            conn.execute(_UPSERT_SCHEDULES).fetchall(), "projection_schedules", inserted, updated
        )
    if not conn.execute(_READY_SCHEDULES).rowcount:
        return
    deleted, added, allocated = (
        conn.execute(statement).rowcount for statement in _APPLY_SCHEDULES[:3]
    )
    for statement in _APPLY_SCHEDULES[3:]:
        conn.execute(statement)
    inserted["revenue_schedule"] += added
    updated["revenue_schedule"] += deleted
    updated["performance_obligations"] += allocated


def _schedule_values(schedule: ScheduleRow) -> tuple:
    lines = [
        {"obligation_id": obligation, "period": period, "amount_minor": amount}
        for obligation, period, amount in schedule.lines
    ]
    received = schedule.received
    return (
        schedule.contract_id,
        schedule.customer_id,
        schedule.entity,
        schedule.currency,
        schedule.source_event_id,
        schedule.cancelled_on,
        Jsonb(lines),
        received.topic,
        received.partition,
        received.offset,
    )


_UPSERT_SCHEDULES = sql.SQL(
    "INSERT INTO revledger.projection_schedules AS p ({columns}, applied)"
    " SELECT DISTINCT ON (contract_id) {columns}, false FROM {stage}"
    " ORDER BY contract_id, kafka_offset DESC"
    " ON CONFLICT (contract_id) DO UPDATE SET {updates}, applied = false"
    " WHERE EXCLUDED.kafka_offset > p.kafka_offset"
    " RETURNING (p.xmax = 0)"
).format(
    columns=sql.SQL(", ").join(map(sql.Identifier, _SCHEDULE_COLUMNS)),
    stage=_stage("projection_schedules"),
    updates=sql.SQL(", ").join(
        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(column))
        for column in _SCHEDULE_COLUMNS[1:]
    ),
)
_READY_SCHEDULES = """
INSERT INTO ready_schedules (contract_id)
SELECT s.contract_id
  FROM revledger.projection_schedules AS s
 WHERE NOT s.applied
   AND EXISTS (SELECT 1 FROM revledger.contracts AS c WHERE c.contract_id = s.contract_id)
   AND NOT EXISTS (
       SELECT 1 FROM jsonb_array_elements(s.lines) AS l(value)
        WHERE NOT EXISTS (
            SELECT 1 FROM revledger.performance_obligations AS o
             WHERE o.contract_id = s.contract_id
               AND o.obligation_id = l.value ->> 'obligation_id'))
"""
_APPLY_SCHEDULES = (
    """
DELETE FROM revledger.revenue_schedule AS r
 USING ready_schedules AS x
 WHERE r.contract_id = x.contract_id
""",
    """
INSERT INTO revledger.revenue_schedule (contract_id, obligation_id, period, amount_minor, currency)
SELECT s.contract_id, l.value ->> 'obligation_id', l.value ->> 'period',
       (l.value ->> 'amount_minor')::bigint, s.currency
  FROM ready_schedules AS x
  JOIN revledger.projection_schedules AS s USING (contract_id)
 CROSS JOIN LATERAL jsonb_array_elements(s.lines) AS l(value)
""",
    # What a scheduled obligation is allocated now: its whole schedule (usage: unscheduled).
    """
UPDATE revledger.performance_obligations AS o
   SET allocated_minor = t.total
  FROM (SELECT p.contract_id, p.obligation_id,
               coalesce(sum((l.value ->> 'amount_minor')::bigint), 0) AS total
          FROM ready_schedules AS x
          JOIN revledger.performance_obligations AS p USING (contract_id)
          JOIN revledger.projection_schedules AS s USING (contract_id)
          LEFT JOIN LATERAL jsonb_array_elements(s.lines) AS l(value)
                 ON l.value ->> 'obligation_id' = p.obligation_id
         WHERE p.method IS NOT NULL
         GROUP BY p.contract_id, p.obligation_id) AS t
 WHERE o.contract_id = t.contract_id AND o.obligation_id = t.obligation_id
   AND o.allocated_minor <> t.total
""",
    """
UPDATE revledger.contracts AS c
   SET status = 'cancelled', cancelled_on = s.cancelled_on
  FROM ready_schedules AS x
  JOIN revledger.projection_schedules AS s USING (contract_id)
 WHERE c.contract_id = x.contract_id
   AND s.cancelled_on IS NOT NULL
   AND c.cancelled_on IS DISTINCT FROM s.cancelled_on
""",
    """
UPDATE revledger.projection_schedules AS s
   SET applied = true
  FROM ready_schedules AS x
 WHERE s.contract_id = x.contract_id
""",
)


# --- invoice status ---------------------------------------------------------------------------

# What is due on an invoice is the net of its accounts receivable lines; what brought it to
# zero last (the latest such entry in its customer's partition of the entries topic) names
# the status. An invoice without projected AR lines yet is open.
_INVOICE_STATUS = """
UPDATE revledger.invoices AS i
   SET status = s.status
  FROM (SELECT v.invoice_id,
               CASE WHEN last.rule = 'invoice_voided' THEN 'voided'
                    WHEN ar.lines = 0 OR ar.due > 0 THEN 'open'
                    WHEN last.rule = 'credit_note' THEN 'credited'
                    WHEN last.rule = 'write_off' THEN 'written_off'
                    ELSE 'paid' END AS status
          FROM revledger.invoices AS v
         CROSS JOIN LATERAL (
               SELECT count(*) AS lines,
                      coalesce(sum(CASE WHEN l.side = 'debit' THEN l.amount_minor
                                        ELSE -l.amount_minor END), 0) AS due
                 FROM revledger.journal_lines AS l
                WHERE l.dimensions ? 'invoice_id'
                  AND l.dimensions ->> 'invoice_id' = v.invoice_id
                  AND l.account = 'accounts_receivable') AS ar
          LEFT JOIN LATERAL (
               SELECT e.rule
                 FROM revledger.journal_lines AS l
                 JOIN revledger.journal_entries AS e USING (entry_id)
                WHERE l.dimensions ? 'invoice_id'
                  AND l.dimensions ->> 'invoice_id' = v.invoice_id
                  AND l.account = 'accounts_receivable'
                ORDER BY e.kafka_offset DESC, e.entry_id DESC
                LIMIT 1) AS last ON true
         WHERE v.invoice_id = ANY(%s)) AS s
 WHERE i.invoice_id = s.invoice_id
   AND i.status <> s.status
"""


def _recompute_invoice_status(conn: psycopg.Connection, invoice_ids: Sequence[str]) -> int:
    """Recompute the status of ``invoice_ids``; returns how many changed."""
    if not invoice_ids:
        return 0
    return conn.execute(_INVOICE_STATUS, [list(invoice_ids)]).rowcount


# --- finding the record a constraint refused --------------------------------------------------


def find_refused(
    conn: psycopg.Connection, parts: Sequence[tuple[Received, Rows]], reference: ReferenceData
) -> tuple[Received, ConstraintViolation] | None:
    """The first record whose rows the database refuses, written one by one; nothing kept.

    Each record's rows go in under a savepoint, then ``SET CONSTRAINTS ALL IMMEDIATE``
    runs the deferred checks (the balance triggers) for them at once. The transaction is
    rolled back at the end whatever happens.

    Returns:
        ``(where it was read, the violation)``, or None when every record passes alone.
    """
    with database_errors(), conn.transaction(force_rollback=True):
        for received, rows in parts:
            try:
                with conn.transaction():
                    write_rows(conn, [rows], reference)
                    conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
                    conn.execute("SET CONSTRAINTS ALL DEFERRED")
            except psycopg.Error as exc:
                if classify(exc) is not ConstraintViolation:
                    raise
                text = " ".join(str(exc).split())
                violation = ConstraintViolation(
                    f"{exc.sqlstate}: {text}", exc.sqlstate, exc.diag.constraint_name
                )
                return received, violation
    return None
