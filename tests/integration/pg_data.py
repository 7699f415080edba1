"""Test data for PostgreSQL: a fresh migrated database, and rows as the tables define them.

Shared by the integration tests of the query surface (views, reports, projection):

* :func:`fresh_database` creates a database of the test's own (``t_<uuid>``) through the
  dev stack's superuser URL, applies every migration, yields its conninfo and drops it;
* :func:`connect` opens an autocommit connection to it;
* ``insert_*`` write rows column for column as ``connectors/postgres/migrations`` define
  them (no projection logic): entries and their lines by COPY in one transaction (the
  deferred balance triggers run at its COMMIT), source events, invoices, payments,
  contracts with their obligations, schedules, journal batches with lines and entries,
  ERP acks, DLQ records and periods.

Kafka positions a row needs (topic, partition, offset) default to the next free offset of
that topic and partition in the table, so tests give them only when they matter.

Must not import: faust, aiokafka, confluent_kafka.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.types.json import Jsonb

from connectors.postgres.migrate import migrate
from connectors.postgres.projection import COLUMNS

ENTRIES_TOPIC = "ledger.entries.v1"
INPUTS_TOPIC = "ledger.inputs.v1"
SCHEMA = "revledger"
# Columns of revledger.journal_entries and journal_lines in COPY order: the projection's.
ENTRY_COLUMNS = COLUMNS["journal_entries"]
LINE_COLUMNS = COLUMNS["journal_lines"]
UTC = dt.UTC


def connect(conninfo: str) -> psycopg.Connection:
    """An autocommit connection (10 s connect timeout)."""
    return psycopg.connect(conninfo, autocommit=True, connect_timeout=10)


@contextlib.contextmanager
def fresh_database(admin_url: str, *, migrated: bool = True) -> Iterator[str]:
    """Conninfo of a new database ``t_<uuid>`` (migrated unless told not), dropped after.

    Args:
        admin_url: a URL of a role that may create databases (the dev stack's superuser).
        migrated: apply :func:`connectors.postgres.migrate.migrate` first.
    """
    name = f"t_{uuid.uuid4().hex}"
    with connect(admin_url) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        conninfo = make_conninfo(admin_url, dbname=name)
        if migrated:
            migrate(conninfo)
        yield conninfo
    finally:
        with connect(admin_url) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


# --- generic ---------------------------------------------------------------------------------


def _value(value: Any) -> Any:
    """Dicts and lists go to jsonb columns as JSON; everything else as is."""
    if isinstance(value, dict | list):
        return Jsonb(value)
    return value


def insert_row(conn: psycopg.Connection, table: str, row: Mapping[str, Any]) -> None:
    """``INSERT INTO revledger.<table> (<keys>) VALUES (<values>)``, every value bound."""
    statement = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(SCHEMA, table),
        sql.SQL(", ").join(sql.Identifier(column) for column in row),
        sql.SQL(", ").join(sql.Placeholder() for _ in row),
    )
    conn.execute(statement, [_value(value) for value in row.values()])


def next_offset(
    conn: psycopg.Connection, table: str, partition: int, topic: str | None = None
) -> int:
    """One past the highest ``kafka_offset`` of ``partition`` (and ``topic``) in ``table``."""
    where = sql.SQL("kafka_partition = %s")
    params: list[Any] = [partition]
    if topic is not None:
        where = sql.SQL("{} AND topic = %s").format(where)
        params.append(topic)
    statement = sql.SQL("SELECT coalesce(max(kafka_offset) + 1, 0) FROM {} WHERE {}").format(
        sql.Identifier(SCHEMA, table), where
    )
    row = conn.execute(statement, params).fetchone()
    return int(row[0]) if row else 0


# --- journal entries -------------------------------------------------------------------------


def _dimensions(line: Any) -> dict[str, str]:
    dims = line.dimensions
    return dict(dims) if not isinstance(dims, Mapping) else {**dims}


def entry_row(entry: Any, topic: str, partition: int, offset: int) -> tuple[Any, ...]:
    """A ``journal_entries`` row of a :class:`ledger.entries.JournalEntry` or a
    :class:`streams.messages.JournalEntryPosted` (same field names)."""
    return (
        entry.entry_id,
        entry.entity,
        entry.customer_id,
        entry.source_event_id,
        entry.source_event_type,
        entry.rule,
        entry.sequence,
        entry.posting_date,
        entry.original_date,
        entry.period,
        entry.functional_currency,
        entry.description,
        topic,
        partition,
        offset,
    )


def line_rows(entry: Any) -> list[tuple[Any, ...]]:
    """The ``journal_lines`` rows of an entry (domain or wire record)."""
    return [
        (
            entry.entry_id,
            line.line_no,
            str(line.account),
            str(line.side),
            line.amount_minor,
            line.currency,
            line.functional_amount_minor,
            Jsonb(_dimensions(line)),
        )
        for line in entry.lines
    ]


def insert_entries(
    conn: psycopg.Connection,
    entries: Iterable[Any],
    *,
    topic: str = ENTRIES_TOPIC,
    partition: int = 0,
    first_offset: int | None = None,
) -> int:
    """COPY entries and their lines in one transaction; return how many entries.

    Args:
        conn: a connection (autocommit or not: the rows go in one transaction).
        entries: :class:`ledger.entries.JournalEntry` or
            :class:`streams.messages.JournalEntryPosted`, in log order.
        topic, partition: where the entry records sit in ``ledger.entries.v1``.
        first_offset: the first record's offset (then +1 each); default
            :func:`next_offset` of that topic and partition.

    Raises:
        psycopg.errors.CheckViolation: an entry does not balance (at COMMIT).
    """
    entries = list(entries)
    with conn.transaction():
        offset = next_offset(conn, "journal_entries", partition, topic)
        offset = offset if first_offset is None else first_offset
        cursor = conn.cursor()
        entry_copy = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(SCHEMA, "journal_entries"),
            sql.SQL(", ").join(map(sql.Identifier, ENTRY_COLUMNS)),
        )
        with cursor.copy(entry_copy) as copy:
            for position, entry in enumerate(entries):
                copy.write_row(entry_row(entry, topic, partition, offset + position))
        line_copy = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(SCHEMA, "journal_lines"),
            sql.SQL(", ").join(map(sql.Identifier, LINE_COLUMNS)),
        )
        with cursor.copy(line_copy) as copy:
            for entry in entries:
                for row in line_rows(entry):
                    copy.write_row(row)
    return len(entries)


# --- source events ---------------------------------------------------------------------------


def insert_source_event(
    conn: psycopg.Connection,
    event_id: str,
    event_type: str,
    *,
    customer_id: str | None = None,
    entity: str | None = None,
    occurred_at: dt.datetime | None = None,
    business_date: dt.date | None = None,
    payload: Mapping[str, Any] | None = None,
    topic: str = INPUTS_TOPIC,
    partition: int = 0,
    offset: int | None = None,
) -> None:
    """One ``source_events`` row; ``occurred_at`` defaults to noon UTC of ``business_date``."""
    if occurred_at is None:
        day = business_date or dt.date(2024, 1, 1)
        occurred_at = dt.datetime.combine(day, dt.time(12), UTC)
    if offset is None:
        offset = next_offset(conn, "source_events", partition, topic)
    insert_row(
        conn,
        "source_events",
        {
            "event_id": event_id,
            "event_type": event_type,
            "customer_id": customer_id,
            "entity": entity,
            "topic": topic,
            "kafka_partition": partition,
            "kafka_offset": offset,
            "occurred_at": occurred_at,
            "business_date": business_date,
            "payload": dict(payload or {"event_id": event_id, "event_type": event_type}),
        },
    )


def insert_source_events(
    conn: psycopg.Connection,
    records: Iterable[Any],
    *,
    topic: str = INPUTS_TOPIC,
    partition: int = 0,
) -> int:
    """``source_events`` rows of pydantic events or control records (ledger/revenue events).

    The business date is the payload's (``issue_date``, ``settled_date`` ...,
    ``business_date`` of a tick), else NULL; the payload is the record as JSON.
    """
    from ledger.events import Event
    from ledger.posting import business_date_of

    count = 0
    with conn.transaction():
        for record in records:
            if isinstance(record, Event):
                business_date = business_date_of(record)
            else:
                business_date = getattr(record, "business_date", None)
            insert_source_event(
                conn,
                record.event_id,
                record.event_type,
                customer_id=getattr(record, "customer_id", None),
                entity=getattr(record, "entity", None),
                occurred_at=record.occurred_at,
                business_date=business_date,
                payload=record.model_dump(mode="json"),
                topic=topic,
                partition=partition,
            )
            count += 1
    return count


# --- documents -------------------------------------------------------------------------------


def insert_invoice(
    conn: psycopg.Connection,
    invoice_id: str,
    *,
    customer_id: str,
    entity: str,
    currency: str,
    issue_date: dt.date,
    due_date: dt.date,
    total_minor: int,
    tax_minor: int = 0,
    status: str = "open",
    source_event_id: str | None = None,
) -> None:
    """One ``invoices`` row; ``source_event_id`` defaults to ``ev-<invoice id>``."""
    insert_row(
        conn,
        "invoices",
        {
            "invoice_id": invoice_id,
            "customer_id": customer_id,
            "entity": entity,
            "currency": currency,
            "issue_date": issue_date,
            "due_date": due_date,
            "total_minor": total_minor,
            "tax_minor": tax_minor,
            "status": status,
            "source_event_id": source_event_id or f"ev-{invoice_id}",
        },
    )


def insert_payment(
    conn: psycopg.Connection,
    payment_id: str,
    *,
    customer_id: str,
    entity: str,
    currency: str,
    amount_minor: int,
    settled_date: dt.date,
    fee_minor: int = 0,
    processor: str = "stripe",
    method: str | None = "card",
    source_event_id: str | None = None,
) -> None:
    """One ``payments`` row; ``source_event_id`` defaults to ``ev-<payment id>``."""
    insert_row(
        conn,
        "payments",
        {
            "payment_id": payment_id,
            "customer_id": customer_id,
            "entity": entity,
            "currency": currency,
            "amount_minor": amount_minor,
            "fee_minor": fee_minor,
            "settled_date": settled_date,
            "processor": processor,
            "method": method,
            "source_event_id": source_event_id or f"ev-{payment_id}",
        },
    )


def insert_contract(
    conn: psycopg.Connection,
    contract_id: str,
    *,
    customer_id: str,
    entity: str,
    currency: str,
    total_price_minor: int,
    booking_date: dt.date,
    service_start: dt.date,
    service_end: dt.date | None = None,
    status: str = "active",
    cancelled_on: dt.date | None = None,
    implied: bool = False,
    source_event_id: str | None = None,
    obligations: Sequence[Mapping[str, Any]] = (),
) -> None:
    """A ``contracts`` row and its ``performance_obligations`` rows, in one transaction.

    ``obligations``: mappings of the obligation columns without ``contract_id``
    (:func:`obligation` builds one).
    """
    with conn.transaction():
        insert_row(
            conn,
            "contracts",
            {
                "contract_id": contract_id,
                "customer_id": customer_id,
                "entity": entity,
                "currency": currency,
                "total_price_minor": total_price_minor,
                "booking_date": booking_date,
                "service_start": service_start,
                "service_end": service_end,
                "status": status,
                "cancelled_on": cancelled_on,
                "implied": implied,
                "source_event_id": source_event_id or f"ev-{contract_id}",
            },
        )
        for row in obligations:
            insert_row(conn, "performance_obligations", {"contract_id": contract_id, **row})


def obligation(
    obligation_id: str,
    *,
    allocated_minor: int,
    service_start: dt.date,
    service_end: dt.date | None,
    product_id: str = "SUB",
    family: str = "subscription",
    pattern: str = "ratable_monthly",
    method: str | None = "monthly_even",
    quantity: int = 1,
    ssp_minor: int | None = None,
) -> dict[str, Any]:
    """The columns of a ``performance_obligations`` row, for :func:`insert_contract`."""
    return {
        "obligation_id": obligation_id,
        "product_id": product_id,
        "family": family,
        "pattern": pattern,
        "method": method,
        "quantity": quantity,
        "ssp_minor": allocated_minor if ssp_minor is None else ssp_minor,
        "allocated_minor": allocated_minor,
        "service_start": service_start,
        "service_end": service_end,
    }


def insert_schedule(
    conn: psycopg.Connection,
    contract_id: str,
    obligation_id: str,
    currency: str,
    amounts: Iterable[tuple[str, int]],
) -> int:
    """``revenue_schedule`` rows ``(period, amount_minor)`` of one obligation; return the count."""
    count = 0
    with conn.transaction():
        for period, amount_minor in amounts:
            insert_row(
                conn,
                "revenue_schedule",
                {
                    "contract_id": contract_id,
                    "obligation_id": obligation_id,
                    "period": period,
                    "amount_minor": amount_minor,
                    "currency": currency,
                },
            )
            count += 1
    return count


# --- ERP batches and acks --------------------------------------------------------------------


def batch_line(
    gl_code: str,
    account: str,
    currency: str,
    *,
    debit_minor: int = 0,
    credit_minor: int = 0,
    functional_debit_minor: int | None = None,
    functional_credit_minor: int | None = None,
    dimensions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The columns of a ``journal_batch_lines`` row without batch_id and line_no.

    Functional amounts default to the transaction amounts (a batch in its functional
    currency).
    """
    return {
        "gl_code": gl_code,
        "account": account,
        "currency": currency,
        "debit_minor": debit_minor,
        "credit_minor": credit_minor,
        "functional_debit_minor": (
            debit_minor if functional_debit_minor is None else functional_debit_minor
        ),
        "functional_credit_minor": (
            credit_minor if functional_credit_minor is None else functional_credit_minor
        ),
        "dimensions": dict(dimensions or {}),
    }


def insert_batch(
    conn: psycopg.Connection,
    batch_id: str,
    *,
    entity: str,
    period: str,
    functional_currency: str,
    lines: Sequence[Mapping[str, Any]],
    entry_ids: Sequence[str],
    source_partition: int = 0,
    sequence: int = 0,
    window_start: dt.datetime | None = None,
    window_end: dt.datetime | None = None,
    entry_ids_digest: str | None = None,
    first_source_offset: int = 0,
    last_source_offset: int | None = None,
) -> None:
    """A ``journal_batches`` row with its lines (numbered 1..n) and entry ids, in one
    transaction (the batch balance trigger runs at its COMMIT).

    ``lines``: mappings from :func:`batch_line`. The digest defaults to
    :func:`streams.messages.digest_entry_ids` of ``entry_ids``; the window to the first
    day of ``period``.
    """
    from streams.messages import digest_entry_ids

    start = window_start or dt.datetime.fromisoformat(f"{period}-01T00:00:00+00:00")
    with conn.transaction():
        insert_row(
            conn,
            "journal_batches",
            {
                "batch_id": batch_id,
                "entity": entity,
                "source_partition": source_partition,
                "sequence": sequence,
                "period": period,
                "window_start": start,
                "window_end": window_end or start,
                "functional_currency": functional_currency,
                "entry_count": len(entry_ids),
                "line_count": len(lines),
                "entry_ids_digest": entry_ids_digest or digest_entry_ids(entry_ids),
                "first_source_offset": first_source_offset,
                "last_source_offset": (
                    first_source_offset + len(entry_ids) - 1
                    if last_source_offset is None
                    else last_source_offset
                ),
            },
        )
        for line_no, line in enumerate(lines, start=1):
            insert_row(
                conn, "journal_batch_lines", {"batch_id": batch_id, "line_no": line_no, **line}
            )
        for entry_id in entry_ids:
            insert_row(conn, "journal_batch_entries", {"batch_id": batch_id, "entry_id": entry_id})


def insert_journal_batch(conn: psycopg.Connection, batch: Any) -> None:
    """A :class:`streams.messages.JournalBatch` record as its three tables' rows."""
    insert_batch(
        conn,
        batch.batch_id,
        entity=batch.entity,
        period=batch.period,
        functional_currency=batch.functional_currency,
        lines=[
            batch_line(
                line.gl_code,
                line.account,
                line.currency,
                debit_minor=line.debit_minor,
                credit_minor=line.credit_minor,
                functional_debit_minor=line.functional_debit_minor,
                functional_credit_minor=line.functional_credit_minor,
                dimensions=line.dimensions,
            )
            for line in batch.lines
        ],
        entry_ids=list(batch.entry_ids),
        source_partition=batch.source_partition,
        sequence=batch.sequence,
        window_start=batch.window_start,
        window_end=batch.window_end,
        entry_ids_digest=batch.entry_ids_digest,
        first_source_offset=batch.first_source_offset,
        last_source_offset=batch.last_source_offset,
    )


def insert_ack(
    conn: psycopg.Connection,
    batch_id: str,
    *,
    entity: str,
    status: str,
    acknowledged_at: dt.datetime,
    sequence: int = 0,
    erp_document_id: str | None = None,
    message: str | None = None,
    partition: int = 0,
    offset: int | None = None,
) -> None:
    """One ``erp_acks`` row (a record of erp.acks.v1 at ``partition``/``offset``)."""
    if offset is None:
        offset = next_offset(conn, "erp_acks", partition)
    insert_row(
        conn,
        "erp_acks",
        {
            "kafka_partition": partition,
            "kafka_offset": offset,
            "batch_id": batch_id,
            "entity": entity,
            "sequence": sequence,
            "status": status,
            "erp_document_id": erp_document_id,
            "message": message,
            "acknowledged_at": acknowledged_at,
        },
    )


# --- operations ------------------------------------------------------------------------------


def insert_dlq(
    conn: psycopg.Connection,
    reason: str,
    *,
    failed_at: dt.datetime,
    event_id: str | None = None,
    error_class: str = "ValidationError",
    message: str = "refused",
    source_topic: str = "billing.events.v1",
    source_partition: int = 0,
    source_offset: int = 0,
    service_version: str = "test",
    original_key: bytes | None = None,
    original_value: bytes | None = None,
    partition: int = 0,
    offset: int | None = None,
) -> None:
    """One ``dlq_records`` row (a record of dlq.v1 at ``partition``/``offset``)."""
    if offset is None:
        offset = next_offset(conn, "dlq_records", partition)
    insert_row(
        conn,
        "dlq_records",
        {
            "kafka_partition": partition,
            "kafka_offset": offset,
            "reason": reason,
            "error_class": error_class,
            "message": message,
            "source_topic": source_topic,
            "source_partition": source_partition,
            "source_offset": source_offset,
            "event_id": event_id,
            "failed_at": failed_at,
            "service_version": service_version,
            "original_key": original_key,
            "original_value": original_value,
        },
    )


def insert_period(
    conn: psycopg.Connection,
    entity: str,
    period: str,
    *,
    status: str = "closed",
    closed_on: dt.date | None = None,
) -> None:
    """One ``periods`` row; ``closed_on`` is required by the table when status is closed."""
    insert_row(
        conn,
        "periods",
        {"entity": entity, "period": period, "status": status, "closed_on": closed_on},
    )
