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
   document wins, a copy already there changes nothing. The rows of source_events,
   journal_entries and journal_lines (most of a batch) whose key the table has not got
   yet are instead COPYed straight into it, one per key, the one that statement would
   insert (:func:`_take_new`); should another writer add such a key meanwhile, the COPY
   fails with a unique violation and the batch is written again, all staged;
3. folds each explicit contract the batch touched again from all its events in
   ``source_events`` (:func:`connectors.postgres.projection.contract_rows`) and upserts
   the folds (contracts, then obligations: one COPY and one statement each, whatever
   their number); upserts the latest schedule per contract and applies the schedules
   whose contract and obligations are all there; recomputes the status of the invoices
   the batch touched from their accounts receivable lines;
4. stores the next offsets.

So a batch is all or nothing, and replaying any range inserts nothing and changes nothing.

What it costs (issue 7): a batch runs at most about thirty statements whatever its size,
each composed once at import (those whose staging table got no rows are not sent);
nothing is written row by row except through COPY, and of the period rows (one per entry)
only the one per period that the upsert keeps is copied.
The deferred balance check of the entries runs once per transaction at COMMIT, for
every entry written (migrations 0010 and 0012).

Errors, by SQLSTATE (never by message text)::

    ProjectionError
    ├── TransientDatabaseError  08xxx, 40001, 40P01, 57P0x, a lost connection: retry the batch
    ├── ConstraintViolation     23xxx (a CHECK, a key, the deferred balance trigger): a bug
    └── OffsetsMoved            the stored offsets are not those this run wrote

Must not import: faust, aiokafka, confluent_kafka, anything under ``streams``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import psycopg
from psycopg import sql
from pydantic_core import to_json

from connectors.postgres.projection import (
    COLUMNS,
    CONTRACT_EVENT_TYPES,
    JSON_COLUMNS,
    ContractEvent,
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
_UNIQUE_VIOLATION = "23505"


def _dumps(value: object) -> str:
    """A JSON value as the text COPY hands to the column's input function.

    pydantic-core's serializer: the same JSON as ``json.dumps`` (dates as ISO strings, no
    ASCII escaping), several times faster per value (measured: 1.5 us against 13 us for a
    line's dimensions), which counted for 30,000 lines a run.
    """
    return to_json(value).decode()


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


# --- statements, composed once ---------------------------------------------------------------
#
# Every statement is composed here, at import, into its text: composing a psycopg
# ``sql.Composed`` on every call cost more than running it (the profile of issue 7:
# ``as_bytes`` took a quarter of the sink's time). psycopg prepares a statement on the
# server once a connection has run it a few times (``prepare_threshold``).


def _stage(table: str) -> sql.Identifier:
    return sql.Identifier(f"stage_{table}")


def _names(columns: Sequence[str], relation: str | None = None) -> sql.Composed:
    """``"a", "b"`` (or ``"r"."a", "r"."b"``)."""
    if relation is None:
        return sql.SQL(", ").join(map(sql.Identifier, columns))
    return sql.SQL(", ").join(sql.Identifier(relation, column) for column in columns)


def _set_excluded(columns: Sequence[str]) -> sql.Composed:
    """``"a" = EXCLUDED."a", ...``."""
    return sql.SQL(", ").join(
        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in columns
    )


def _text(statement: sql.Composable) -> str:
    return statement.as_string()


def _create_stage(stage: str, table: str, columns: Sequence[str], seq: bool) -> str:
    return _text(
        sql.SQL(
            "CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS"
            " SELECT {columns}{seq} FROM {table} WITH NO DATA"
        ).format(
            stage=sql.Identifier(stage),
            columns=_names(columns),
            seq=sql.SQL(", 0::bigint AS _seq" if seq else ""),
            table=sql.Identifier(SCHEMA, table),
        )
    )


# Staging tables of a session: ``stage_<table>`` (one column ``_seq`` more: the record's place
# in the batch) for the rows of the records, ``fold_<table>`` for the contracts folded again.
_STAGES: dict[str, tuple[str, Sequence[str], bool]] = {
    **{f"stage_{table}": (table, columns, True) for table, columns in COLUMNS.items()},
    "stage_projection_schedules": ("projection_schedules", _SCHEDULE_COLUMNS, True),
    "fold_contracts": ("contracts", COLUMNS["contracts"], False),
    "fold_obligations": ("performance_obligations", COLUMNS["performance_obligations"], False),
}
_PREPARE: tuple[str, ...] = (
    *(_create_stage(stage, *spec) for stage, spec in _STAGES.items()),
    "CREATE TEMP TABLE IF NOT EXISTS ready_schedules (contract_id TEXT PRIMARY KEY)"
    " ON COMMIT DELETE ROWS",
)
_TRUNCATE_STAGES = _text(
    sql.SQL("TRUNCATE {}").format(
        sql.SQL(", ").join(map(sql.Identifier, [*_STAGES, "ready_schedules"]))
    )
)
_COPY: dict[str, str] = {
    stage: _text(
        sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(stage), _names([*columns, "_seq"] if seq else columns)
        )
    )
    for stage, (_, columns, seq) in _STAGES.items()
}
# The tables new rows are copied into directly (see _take_new).
_DIRECT_TABLES = ("source_events", "journal_entries", "journal_lines")
_COPY.update(
    {
        table: _text(
            sql.SQL("COPY {} ({}) FROM STDIN").format(
                sql.Identifier(SCHEMA, table), _names(COLUMNS[table])
            )
        )
        for table in _DIRECT_TABLES
    }
)
# Positions of the JSON columns of each staging table (dumped to JSON text for COPY).
_JSON_AT: dict[str, tuple[int, ...]] = {
    **{
        stage: tuple(i for i, column in enumerate(columns) if column in JSON_COLUMNS)
        for stage, (_, columns, _seq) in _STAGES.items()
    },
    **{
        table: tuple(i for i, column in enumerate(COLUMNS[table]) if column in JSON_COLUMNS)
        for table in _DIRECT_TABLES
    },
}


def prepare(conn: psycopg.Connection) -> None:
    """Set up a session for the sink: its staging tables (temporary, emptied at every commit).

    Call once per connection, outside a batch: a table created in a batch that rolls back
    would vanish with it. Also turns JIT compilation off for the session: the sink's
    statements run in milliseconds, and compiling one (done when its estimated cost passes
    ``jit_above_cost``, easily reached by a batch's INSERT ... SELECT) took longer than
    running it.
    """
    conn.execute("SET jit = off")
    with conn.transaction():
        for statement in _PREPARE:
            conn.execute(statement)


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
    *,
    direct: bool = True,
) -> tuple[Counter[str], Counter[str]]:
    """Write a batch's rows and its next offsets in one transaction.

    Args:
        conn: an autocommit connection on which :func:`prepare` ran.
        parts: the rows of each record, in the order they were read.
        offsets: the next offset of every partition the batch read.
        consumer: the consumer name the offsets are stored under.
        expected: the stored offsets this batch continues from (absent: none stored).
        reference: entities and product mappings (obligation methods of a fold).
        direct: COPY new source events, entries and lines straight into their tables
            (:func:`_take_new`); False: every row through the staging tables.

    Returns:
        ``(inserted, updated)`` row counts per table.

    Raises:
        OffsetsMoved: the stored offsets are not ``expected``.
        TransientDatabaseError, ConstraintViolation, ProjectionError: see the module
            docstring; the transaction was rolled back.
    """
    try:
        with database_errors(), conn.transaction():
            _fence(conn, consumer, offsets, expected)
            # The staging tables are empty here: they empty themselves at every commit, and
            # a rolled-back batch leaves nothing in them either.
            counts = _write_staged(conn, parts, reference, direct=direct)
            _store_offsets(conn, consumer, offsets)
        return counts
    except ConstraintViolation as exc:
        if not direct or exc.sqlstate != _UNIQUE_VIOLATION:
            raise
    # A key looked up as absent was there by the time of the COPY: another writer (another
    # projection name) inserted it meanwhile. Nothing was committed: the batch again, every
    # row through the staging tables, whose statements let a row already there win.
    return write_batch(conn, parts, offsets, consumer, expected, reference, direct=False)


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
    """Write ``parts`` inside the caller's transaction; returns ``(inserted, updated)``.

    Empties the staging tables first, so several calls may share one transaction.
    """
    conn.execute(_TRUNCATE_STAGES)
    return _write_staged(conn, parts, reference)


def _write_staged(
    conn: psycopg.Connection,
    parts: Sequence[Rows],
    reference: ReferenceData,
    *,
    direct: bool = False,
) -> tuple[Counter, Counter]:
    """:func:`write_rows` on empty staging tables; ``direct``: see :func:`_take_new`."""
    inserted: Counter[str] = Counter()
    updated: Counter[str] = Counter()
    staged = _staged_rows(parts)
    if "periods" in staged:
        staged["periods"] = _periods_kept(staged["periods"])
    new = _take_new(conn, staged) if direct else {}
    for table in COLUMNS:
        if table in staged:
            _copy(conn, f"stage_{table}", _with_seq(staged[table]))
    # A statement whose staging table got no rows would insert nothing: it is not sent
    # (most batches fill a few of the fifteen tables; each statement is a round trip and
    # an execution). New rows go in first, parents before children as ever: the staged
    # statements of a table then find them there (and insert nothing for them).
    if "source_events" in new:
        inserted["source_events"] = _copy(conn, "source_events", new["source_events"])
    if "source_events" in staged:
        inserted["source_events"] += _count_new(conn, _INSERT_SOURCE_EVENTS)[0]
    for table, _ in _DOCUMENTS:
        if table in new:
            inserted[table] = _copy(conn, table, new[table])
        if table in staged:
            inserted[table] += conn.execute(_INSERT[table]).rowcount
    if "performance_obligations" in staged and "contracts" in staged:
        inserted["performance_obligations"] = conn.execute(_INSERT_OBLIGATIONS).rowcount
    if "periods" in staged:
        inserted["periods"], updated["periods"] = _count_new(conn, _UPSERT_PERIODS)
    touched = sorted({contract for part in parts for contract in part.contracts_touched})
    _refold_contracts(conn, touched, reference, inserted, updated)
    schedules = [(i, s) for i, part in enumerate(parts) for s in part.schedules]
    _apply_schedules(conn, schedules, inserted, updated)
    for table, _ in _HISTORY:
        if table in staged:
            inserted[table] = conn.execute(_INSERT[table]).rowcount
    invoices = sorted({invoice for part in parts for invoice in part.touched_invoices})
    updated["invoices"] += _recompute_invoice_status(conn, invoices)
    return +inserted, +updated


def _staged_rows(parts: Sequence[Rows]) -> dict[str, list[tuple[int, list[tuple]]]]:
    """Each table's rows of the batch, by record: ``(its place in the batch, its rows)``."""
    staged: dict[str, list[tuple[int, list[tuple]]]] = defaultdict(list)
    for seq, part in enumerate(parts):
        for table, rows in part.tables.items():
            if rows:
                staged[table].append((seq, rows))
    return staged


# The tables whose rows are most of a batch's, and whose new keys a batch COPYs straight
# into the table instead of through a staging table and an INSERT ... SELECT ... ON
# CONFLICT: COPY inserts several rows per heap write and WAL record, and the rows are not
# written, read and sorted a second time (measured on 23,000 journal lines: 340 against
# 410-430 ms of database CPU). One key look-up per batch for source_events, one for
# journal_entries (whose answer also decides for journal_lines: see _take_new).
#
# The keys go as one text, split on the server: psycopg adapts a list of 8,000 strings in
# ~16 ms of Python, the join takes 0.1 ms. A key holding the separator is split wrongly and
# so looked up wrongly, which costs nothing in correctness: a key found by mistake keeps its
# rows staged (always right), and a key there but not found makes the COPY fail and the
# batch go again all staged (see write_batch).
_KEY_SEPARATOR = "\n"
_EXISTING = {
    "source_events": "SELECT event_id FROM revledger.source_events"
    " WHERE event_id = ANY(string_to_array(%s, E'\\n'))",
    "journal_entries": "SELECT entry_id FROM revledger.journal_entries"
    " WHERE entry_id = ANY(string_to_array(%s, E'\\n'))",
}


def _take_new(
    conn: psycopg.Connection, staged: dict[str, list[tuple[int, list[tuple]]]]
) -> dict[str, list[tuple]]:
    """Take out of ``staged`` the rows whose key is in no row of the table yet.

    Returns them per table (source_events, journal_entries, journal_lines), one row per
    key: the one the staged statement would insert (:data:`_INSERT_SOURCE_EVENTS`: the
    lowest (partition, offset) of the event id; :func:`_insert_first`: the first record's
    copy). Keys already there stay staged, and their statements do what they always did.

    A line's key is new when its entry's is: the foreign key of journal_lines (checked at
    once, not deferrable) means no line can name an entry that is not in the table. The
    look-ups and the COPY run in the batch's transaction, after the fence: only another
    writer (another projection name) can add a key in between, and the COPY then fails
    with a unique violation, which :func:`write_batch` answers by writing the batch again
    all staged.
    """
    new: dict[str, list[tuple]] = {}
    if "source_events" in staged:
        existing = _existing(conn, "source_events", staged["source_events"])
        first: dict[str, tuple] = {}
        for _, rows in staged["source_events"]:
            for row in rows:
                if row[0] in existing:
                    continue
                kept = first.get(row[0])
                # (kafka_partition, kafka_offset): the ORDER BY of _INSERT_SOURCE_EVENTS.
                if kept is None or (row[5], row[6]) < (kept[5], kept[6]):
                    first[row[0]] = row
        _keep_staged(staged, "source_events", existing)
        if first:
            new["source_events"] = list(first.values())
    if "journal_entries" in staged:
        existing = _existing(conn, "journal_entries", staged["journal_entries"])
        entries: dict[str, tuple] = {}
        for _, rows in staged["journal_entries"]:
            for row in rows:
                if row[0] not in existing and row[0] not in entries:
                    entries[row[0]] = row
        _keep_staged(staged, "journal_entries", existing)
        if entries:
            new["journal_entries"] = list(entries.values())
        lines: dict[tuple[str, int], tuple] = {}
        for _, rows in staged.get("journal_lines", ()):
            for row in rows:
                if row[0] not in existing:
                    lines.setdefault((row[0], row[1]), row)  # (entry_id, line_no)
        if "journal_lines" in staged:
            _keep_staged(staged, "journal_lines", existing)
        if lines:
            new["journal_lines"] = list(lines.values())
    return new


def _existing(
    conn: psycopg.Connection, table: str, groups: list[tuple[int, list[tuple]]]
) -> set[str]:
    """The keys (first column) of ``groups``' rows that ``table`` has already."""
    keys = {row[0] for _, rows in groups for row in rows}
    found = conn.execute(_EXISTING[table], [_KEY_SEPARATOR.join(keys)])
    return {key for (key,) in found}


def _keep_staged(
    staged: dict[str, list[tuple[int, list[tuple]]]], table: str, existing: set[str]
) -> None:
    """Leave in ``staged[table]`` only the rows whose key (first column) is in ``existing``."""
    kept = []
    if existing:
        for seq, rows in staged[table]:
            old = [row for row in rows if row[0] in existing]
            if old:
                kept.append((seq, old))
    if kept:
        staged[table] = kept
    else:
        del staged[table]


def _periods_kept(groups: Iterable[tuple[int, list[tuple]]]) -> list[tuple[int, list[tuple]]]:
    """Per (entity, period), the one staged row :data:`_UPSERT_PERIODS` keeps: closed first,
    then the latest record's.

    Every entry sees its period open, so a batch stages thousands of period rows for a
    handful of periods; copying only the row the upsert's ``DISTINCT ON`` would pick
    writes the same and spares the rest their COPY and sort.
    """
    kept: dict[tuple, tuple[tuple[bool, int], tuple]] = {}
    for seq, rows in groups:
        for row in rows:
            key, rank = (row[0], row[1]), (row[2] == "closed", seq)
            current = kept.get(key)
            if current is None or rank >= current[0]:
                kept[key] = (rank, row)
    return [(rank[1], [row]) for rank, row in kept.values()]


def _with_seq(groups: Iterable[tuple[int, list[tuple]]]) -> Iterator[tuple]:
    """The rows of ``groups``, each with its record's place in the batch appended (``_seq``)."""
    for seq, rows in groups:
        for row in rows:
            yield (*row, seq)


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


def _copy(conn: psycopg.Connection, stage: str, rows: Iterable[tuple]) -> int:
    """COPY ``rows`` (each with every column of ``stage``) into ``stage``; returns how many.

    ``stage`` is a staging table, or one of :data:`_EXISTING`'s tables and journal_lines
    (rows :func:`_take_new` found new). JSON values go as JSON text (the column's input
    function parses it).
    """
    json_at = _JSON_AT[stage]
    count = 0
    with conn.cursor() as cursor, cursor.copy(_COPY[stage]) as copy:
        write = copy.write_row
        if not json_at:
            for row in rows:
                write(row)
                count += 1
            return count
        for row in rows:
            values = list(row)
            for i in json_at:
                values[i] = _dumps(values[i])
            write(values)
            count += 1
    return count


def _insert_first(table: str, key: Sequence[str]) -> str:
    """Insert the first staged copy of each ``key`` not in ``table`` yet."""
    return _text(
        sql.SQL(
            "INSERT INTO {table} ({columns})"
            " SELECT DISTINCT ON ({keys}) {columns} FROM {stage} ORDER BY {keys}, _seq"
            " ON CONFLICT ({keys}) DO NOTHING"
        ).format(
            table=sql.Identifier(SCHEMA, table),
            columns=_names(COLUMNS[table]),
            keys=_names(key),
            stage=_stage(table),
        )
    )


_INSERT: dict[str, str] = {
    table: _insert_first(table, key) for table, key in (*_DOCUMENTS, *_HISTORY)
}


def _count_new(conn: psycopg.Connection, statement: str) -> tuple[int, int]:
    """Run an upsert wrapped to count its ``RETURNING (xmax = 0) AS new`` rows on the server.

    Returns:
        ``(inserted, updated)``.
    """
    inserted, updated = conn.execute(statement).fetchone() or (0, 0)
    return inserted, updated


def _counted(upsert: sql.Composable) -> str:
    """``upsert`` (ending ``RETURNING (xmax = 0) AS new``) as one row: inserted, updated."""
    return _text(
        sql.SQL(
            "WITH written AS ({upsert})"
            " SELECT count(*) FILTER (WHERE new), count(*) FILTER (WHERE NOT new) FROM written"
        ).format(upsert=upsert)
    )


# Of the copies of one event id, the first in its topic wins: the lowest (partition,
# offset). Redeliveries share a partition, so the first read is kept; a control record
# has a copy on every partition, and whichever a batch read first gives way to the
# partition-0 copy, so the row does not depend on how the records fell into batches.
_INSERT_SOURCE_EVENTS = _counted(
    sql.SQL(
        "INSERT INTO revledger.source_events AS s ({columns})"
        " SELECT DISTINCT ON (event_id) {columns} FROM {stage}"
        " ORDER BY event_id, kafka_partition, kafka_offset"
        " ON CONFLICT (event_id) DO UPDATE SET {updates}"
        " WHERE EXCLUDED.topic = s.topic AND (EXCLUDED.kafka_partition, EXCLUDED.kafka_offset)"
        " < (s.kafka_partition, s.kafka_offset)"
        " RETURNING (s.xmax = 0) AS new"
    ).format(
        columns=_names(COLUMNS["source_events"]),
        stage=_stage("source_events"),
        updates=_set_excluded(COLUMNS["source_events"][1:]),
    )
)

# Obligations of the contract row in the table, from the record that made that row. A
# second booking of an existing contract id (the engine refuses it) adds nothing; a
# replayed booking finds its obligations there already.
_INSERT_OBLIGATIONS = _text(
    sql.SQL(
        "INSERT INTO revledger.performance_obligations ({names})"
        " SELECT {columns} FROM {stage_obligations} AS o"
        " JOIN (SELECT DISTINCT ON (contract_id) contract_id, source_event_id, _seq"
        "         FROM {stage_contracts} ORDER BY contract_id, _seq) AS c"
        "   ON c.contract_id = o.contract_id AND c._seq = o._seq"
        " JOIN revledger.contracts AS t"
        "   ON t.contract_id = c.contract_id AND t.source_event_id = c.source_event_id"
        " ON CONFLICT (contract_id, obligation_id) DO NOTHING"
    ).format(
        names=_names(COLUMNS["performance_obligations"]),
        columns=_names(COLUMNS["performance_obligations"], "o"),
        stage_obligations=_stage("performance_obligations"),
        stage_contracts=_stage("contracts"),
    )
)

# Periods seen open or closed; closed wins (the latest close), open never reopens.
_UPSERT_PERIODS = _counted(
    sql.SQL(
        "INSERT INTO revledger.periods AS p (entity, period, status, closed_on)"
        " SELECT DISTINCT ON (entity, period) entity, period, status, closed_on"
        " FROM {stage} ORDER BY entity, period, (status = 'closed') DESC, _seq DESC"
        " ON CONFLICT (entity, period) DO UPDATE"
        " SET status = EXCLUDED.status, closed_on = EXCLUDED.closed_on"
        " WHERE EXCLUDED.status = 'closed'"
        " AND (p.status, p.closed_on) IS DISTINCT FROM (EXCLUDED.status, EXCLUDED.closed_on)"
        " RETURNING (p.xmax = 0) AS new"
    ).format(stage=_stage("periods"))
)


# --- explicit contracts, folded ---------------------------------------------------------

_CONTRACT_EVENTS = """
SELECT event_type, payload::text
  FROM revledger.source_events
 WHERE event_type IN ('contract.booked', 'contract.amended', 'contract.cancelled')
   AND payload ->> 'contract_id' = ANY(%s)
 ORDER BY kafka_partition, kafka_offset
"""
# The folded contracts (``fold_contracts``) and their obligations (``fold_obligations``) of a
# batch are upserted by two statements, whatever their number; each returns what it
# inserted or changed.
_UPSERT_FOLDED_CONTRACTS = _counted(
    sql.SQL(
        "INSERT INTO revledger.contracts AS c ({columns}) SELECT {columns} FROM fold_contracts"
        " ON CONFLICT (contract_id) DO UPDATE SET {updates}"
        " WHERE ({current}) IS DISTINCT FROM ({excluded})"
        " RETURNING (c.xmax = 0) AS new"
    ).format(
        columns=_names(COLUMNS["contracts"]),
        updates=_set_excluded(COLUMNS["contracts"][1:]),
        current=_names(COLUMNS["contracts"][1:], "c"),
        excluded=_names(COLUMNS["contracts"][1:], "excluded"),
    )
)
# An obligation's terms follow the fold; its allocation follows the fold only until a
# schedule of the contract has been applied (the schedule's is the engine's).
_TERMS = [c for c in COLUMNS["performance_obligations"][2:] if c != "allocated_minor"]
_SCHEDULED = sql.SQL(
    "EXISTS (SELECT 1 FROM revledger.projection_schedules AS s"
    " WHERE s.contract_id = o.contract_id AND s.applied)"
)
_UPSERT_FOLDED_OBLIGATIONS = _text(
    sql.SQL(
        "INSERT INTO revledger.performance_obligations AS o ({columns})"
        " SELECT {columns} FROM fold_obligations"
        " ON CONFLICT (contract_id, obligation_id) DO UPDATE SET {updates},"
        " allocated_minor = CASE WHEN {scheduled} THEN o.allocated_minor"
        " ELSE EXCLUDED.allocated_minor END"
        " WHERE ({current}) IS DISTINCT FROM ({excluded})"
        " OR (o.allocated_minor <> EXCLUDED.allocated_minor AND NOT {scheduled})"
        " RETURNING o.contract_id, (o.xmax = 0)"
    ).format(
        columns=_names(COLUMNS["performance_obligations"]),
        updates=_set_excluded(_TERMS),
        scheduled=_SCHEDULED,
        current=_names(_TERMS, "o"),
        excluded=_names(_TERMS, "excluded"),
    )
)


def _refold_contracts(
    conn: psycopg.Connection,
    contract_ids: Sequence[str],
    reference: ReferenceData,
    inserted: Counter[str],
    updated: Counter[str],
) -> None:
    """Fold ``contract_ids`` again from their events and upsert what changed.

    The folds are computed here (:func:`contract_rows`, pure) and written set-based: one
    COPY and one upsert for the contracts, the same for their obligations. A contract one
    of whose obligations changed after one of its schedules was applied gets that schedule
    applied again (its allocations are the engine's, the fold's provisional).
    """
    if not contract_ids:
        return
    events: dict[str, list[ContractEvent]] = defaultdict(list)
    for event_type, payload in conn.execute(_CONTRACT_EVENTS, [list(contract_ids)]):
        event = CONTRACT_EVENT_TYPES[event_type].model_validate_json(payload)
        events[event.contract_id].append(event)
    folds = [contract_rows(events.get(contract_id, ()), reference) for contract_id in contract_ids]
    found = [fold for fold in folds if fold is not None]
    if not found:
        return
    _copy(conn, "fold_contracts", [fold.contract for fold in found])
    obligations = [row for fold in found for row in fold.obligations]
    if obligations:
        _copy(conn, "fold_obligations", obligations)
    new, changed = _count_new(conn, _UPSERT_FOLDED_CONTRACTS)
    inserted["contracts"] += new
    updated["contracts"] += changed
    reapply = set()
    for contract_id, is_new in conn.execute(_UPSERT_FOLDED_OBLIGATIONS):
        (inserted if is_new else updated)["performance_obligations"] += 1
        reapply.add(contract_id)
    if reapply:
        conn.execute(
            "UPDATE revledger.projection_schedules SET applied = false"
            " WHERE contract_id = ANY(%s) AND applied",
            [sorted(reapply)],
        )


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
            "stage_projection_schedules",
            [(*_schedule_values(s), i) for i, s in schedules],
        )
        new, changed = _count_new(conn, _UPSERT_SCHEDULES)
        inserted["projection_schedules"] += new
        updated["projection_schedules"] += changed
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
        _dumps(lines),
        received.topic,
        received.partition,
        received.offset,
    )


_UPSERT_SCHEDULES = _counted(
    sql.SQL(
        "INSERT INTO revledger.projection_schedules AS p ({columns}, applied)"
        " SELECT DISTINCT ON (contract_id) {columns}, false FROM {stage}"
        " ORDER BY contract_id, kafka_offset DESC"
        " ON CONFLICT (contract_id) DO UPDATE SET {updates}, applied = false"
        " WHERE EXCLUDED.kafka_offset > p.kafka_offset"
        " RETURNING (p.xmax = 0) AS new"
    ).format(
        columns=_names(_SCHEDULE_COLUMNS),
        stage=_stage("projection_schedules"),
        updates=_set_excluded(_SCHEDULE_COLUMNS[1:]),
    )
)
# The waiting schedules whose contract and every obligation they name are in the database.
# Set-based on purpose (the waiting ones, minus those with a line naming an obligation not
# there): the per-schedule form (NOT EXISTS over each schedule's lines) was planned as a
# scan of performance_obligations per waiting schedule while the tables were young and
# their statistics small, up to 1.5 s a batch. This form costs one pass whatever the plan.
_READY_SCHEDULES = """
INSERT INTO ready_schedules (contract_id)
SELECT s.contract_id
  FROM revledger.projection_schedules AS s
 WHERE NOT s.applied
   AND EXISTS (SELECT 1 FROM revledger.contracts AS c WHERE c.contract_id = s.contract_id)
EXCEPT
SELECT w.contract_id
  FROM revledger.projection_schedules AS w
 CROSS JOIN LATERAL jsonb_array_elements(w.lines) AS l(value)
  LEFT JOIN revledger.performance_obligations AS o
         ON o.contract_id = w.contract_id AND o.obligation_id = l.value ->> 'obligation_id'
 WHERE NOT w.applied
   AND o.contract_id IS NULL
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
