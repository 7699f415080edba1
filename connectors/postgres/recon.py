"""The SQL of reconciliation: each side of each check, and the runs and breaks written back.

:mod:`ledger.reconciliation` compares; this module gathers what it compares from the
projection's tables, every value a bound parameter and the SQL text fixed (composed from
constant fragments only), and records a run with its breaks (migration ``0008_recon.sql``).
Callers read every side in ONE repeatable-read transaction, so the two sides of a check
(and the projection's stored offsets) come from the same snapshot.

Sides (signs: + is a debit, i.e. + raises what the customer owes or the cash held):

* billing, expected: ``invoices.total_minor`` at issue; minus the voided invoice's total;
  minus a credit note's ``total_minor`` and a write-off's ``amount_minor``
  (``source_events``). Actual: the accounts receivable and customer credit lines of the
  entries sourced from those four event types, per source event.
* payments, expected: ``payments.amount_minor - fee_minor``; minus a refund; minus a
  dispute's lost amount and fee; minus a payout. Actual: the cash clearing lines of any
  entry, per source event.
* projection, actual: lines per entry, account and currency of the entries projected
  from the entries topic (the expected side is that topic, read by ``streams.recon``).

Keys: billing and payments by the document's business date against the entry's
``original_date`` (the source event's business date, whatever period it was posted in);
the projection by ``posting_date``; batches by their window's last day (UTC).

Must not import: faust, aiokafka, confluent_kafka, anything under ``streams``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from ledger.reconciliation import (
    AckFacts,
    BatchFacts,
    Break,
    Check,
    EventFacts,
    ItemDifference,
    Movement,
    ReconKey,
    Status,
)

# Source event types whose entries move the customer's receivable position (check 1).
BILLING_EVENT_TYPES = (
    "invoice.issued",
    "invoice.voided",
    "credit_note.issued",
    "credit_note.voided",
    "invoice.written_off",
)
# A credit note beyond what is due credits customer credit instead of AR (rules_billing.py):
# both are the customer's position with us.
RECEIVABLE_ACCOUNTS = ("accounts_receivable", "customer_credit")
CASH_CLEARING = "cash_clearing"


@dataclass(frozen=True, slots=True)
class Scope:
    """What a run covers: one entity or all (None), one business day or all (None)."""

    entity: str | None = None
    day: dt.date | None = None


def _where(scope: Scope, entity: str, day: str, *fixed: str) -> sql.Composed:
    """``WHERE`` of constant fragments and the scope's columns, values bound by name."""
    parts: list[sql.Composable] = [sql.SQL(text) for text in fixed]
    if scope.entity is not None:
        parts.append(sql.SQL("{} = %(entity)s").format(sql.SQL(entity)))
    if scope.day is not None:
        parts.append(sql.SQL("{} = %(day)s").format(sql.SQL(day)))
    if not parts:
        return sql.Composed([])
    return sql.SQL(" WHERE {}").format(sql.SQL(" AND ").join(parts))


def _params(scope: Scope, **more: Any) -> dict[str, Any]:
    return {"entity": scope.entity, "day": scope.day, **more}


def _movements(rows: Iterable[Sequence[Any]]) -> list[Movement]:
    """Rows of (entity, day, currency, reference, item, amount, count, customer, events,
    entries, event type) as movements."""
    return [
        Movement(
            key=ReconKey(entity, day, str(currency), reference),
            item=item,
            amount_minor=int(amount),
            count=int(count),
            event_type=event_type,
            customer_id=customer_id,
            event_ids=tuple(event_ids or ()),
            entry_ids=tuple(entry_ids or ()),
        )
        for (
            entity,
            day,
            currency,
            reference,
            item,
            amount,
            count,
            customer_id,
            event_ids,
            entry_ids,
            event_type,
        ) in rows
    ]


# --- the business clock ---------------------------------------------------------------------


def entity_known(conn: psycopg.Connection, entity: str) -> bool:
    """True when an event, an entry or a batch of ``entity`` is recorded."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM revledger.source_events WHERE entity = %(e)s)"
        " OR EXISTS (SELECT 1 FROM revledger.journal_entries WHERE entity = %(e)s)"
        " OR EXISTS (SELECT 1 FROM revledger.journal_batches WHERE entity = %(e)s)",
        {"e": entity},
    ).fetchone()
    return bool(row and row[0])


def business_clock(conn: psycopg.Connection) -> dt.date | None:
    """The latest clock tick's business date, else the latest business date of any event.

    Hold and ack ages are counted to it: business time, never the wall clock, so a
    replayed database is judged as the live one was.
    """
    row = conn.execute(
        "SELECT (SELECT max(business_date) FROM revledger.source_events"
        "         WHERE event_type = 'clock.advanced'),"
        "       (SELECT max(business_date) FROM revledger.source_events)"
    ).fetchone()
    if row is None:
        return None
    return row[0] or row[1]


# --- check 1: billing vs receivables --------------------------------------------------------

_ENTRY_SIDE = """
SELECT e.entity, e.original_date, l.currency, e.source_event_type, e.source_event_id,
       sum(CASE WHEN l.side = 'debit' THEN l.amount_minor ELSE -l.amount_minor END)::bigint,
       1, e.customer_id, ARRAY[e.source_event_id],
       array_agg(DISTINCT e.entry_id ORDER BY e.entry_id), e.source_event_type
  FROM revledger.journal_entries AS e
  JOIN revledger.journal_lines AS l ON l.entry_id = e.entry_id
"""
_ENTRY_GROUP = """
 GROUP BY e.entity, e.original_date, l.currency, e.source_event_type, e.source_event_id,
          e.customer_id
"""


def billing_sides(conn: psycopg.Connection, scope: Scope) -> tuple[list[Movement], list[Movement]]:
    """Check 1: billing documents (expected) and the receivable lines posted for them."""
    expected = sql.SQL(
        """
SELECT i.entity, i.issue_date, i.currency, 'invoice.issued', i.source_event_id,
       i.total_minor, 1, i.customer_id, ARRAY[i.source_event_id], NULL::text[],
       'invoice.issued'
  FROM revledger.invoices AS i{invoices}
UNION ALL
SELECT s.entity, s.business_date, i.currency, s.event_type, s.event_id,
       -i.total_minor, 1, s.customer_id, ARRAY[s.event_id], NULL::text[], s.event_type
  FROM revledger.source_events AS s
  JOIN revledger.invoices AS i ON i.invoice_id = s.payload ->> 'invoice_id'{voids}
UNION ALL
SELECT s.entity, s.business_date, s.payload ->> 'currency', s.event_type, s.event_id,
       -CASE s.event_type WHEN 'credit_note.issued' THEN (s.payload ->> 'total_minor')::bigint
                          ELSE (s.payload ->> 'amount_minor')::bigint END,
       1, s.customer_id, ARRAY[s.event_id], NULL::text[], s.event_type
  FROM revledger.source_events AS s{credits}
UNION ALL
SELECT s.entity, s.business_date, c.payload ->> 'currency', s.event_type, s.event_id,
       (c.payload ->> 'total_minor')::bigint,
       1, s.customer_id, ARRAY[s.event_id], NULL::text[], s.event_type
  FROM revledger.source_events AS s
  JOIN revledger.source_events AS c
    ON c.event_type = 'credit_note.issued'
   AND c.payload ->> 'credit_note_id' = s.payload ->> 'credit_note_id'{credit_voids}
"""
    ).format(
        invoices=_where(scope, "i.entity", "i.issue_date"),
        voids=_where(scope, "s.entity", "s.business_date", "s.event_type = 'invoice.voided'"),
        credits=_where(
            scope,
            "s.entity",
            "s.business_date",
            "s.event_type IN ('credit_note.issued', 'invoice.written_off')",
        ),
        # A voided credit note gives back what it took: the note's total, once.
        credit_voids=_where(
            scope, "s.entity", "s.business_date", "s.event_type = 'credit_note.voided'"
        ),
    )
    actual = sql.SQL(_ENTRY_SIDE + "{}" + _ENTRY_GROUP).format(
        _where(
            scope,
            "e.entity",
            "e.original_date",
            "e.source_event_type = ANY(%(types)s)",
            "l.account = ANY(%(accounts)s)",
        )
    )
    params = _params(scope, types=list(BILLING_EVENT_TYPES), accounts=list(RECEIVABLE_ACCOUNTS))
    return (
        _movements(conn.execute(expected, params).fetchall()),
        _movements(conn.execute(actual, params).fetchall()),
    )


# --- check 2: payments vs cash clearing ------------------------------------------------------


def payment_sides(conn: psycopg.Connection, scope: Scope) -> tuple[list[Movement], list[Movement]]:
    """Check 2: settlements, refunds, disputes, payouts (expected) and cash clearing lines."""
    expected = sql.SQL(
        """
SELECT p.entity, p.settled_date, p.currency, 'payment.settled', p.source_event_id,
       p.amount_minor - p.fee_minor, 1, p.customer_id, ARRAY[p.source_event_id],
       NULL::text[], 'payment.settled'
  FROM revledger.payments AS p{payments}
UNION ALL
SELECT s.entity, s.business_date, s.payload ->> 'currency', s.event_type, s.event_id,
       -CASE s.event_type
            WHEN 'dispute.closed' THEN
                CASE WHEN s.payload ->> 'outcome' = 'lost'
                     THEN (s.payload ->> 'amount_minor')::bigint ELSE 0 END
                + coalesce((s.payload ->> 'fee_minor')::bigint, 0)
            ELSE (s.payload ->> 'amount_minor')::bigint
        END,
       1, s.customer_id, ARRAY[s.event_id], NULL::text[], s.event_type
  FROM revledger.source_events AS s{others}
"""
    ).format(
        payments=_where(scope, "p.entity", "p.settled_date"),
        others=_where(
            scope,
            "s.entity",
            "s.business_date",
            "s.event_type IN ('refund.issued', 'dispute.closed', 'payout.paid')",
        ),
    )
    # Every cash clearing line, whatever its event: one posted by an unexpected rule shows.
    actual = sql.SQL(_ENTRY_SIDE + "{}" + _ENTRY_GROUP).format(
        _where(scope, "e.entity", "e.original_date", "l.account = %(account)s")
    )
    params = _params(scope, account=CASH_CLEARING)
    return (
        _movements(conn.execute(expected, params).fetchall()),
        _movements(conn.execute(actual, params).fetchall()),
    )


# --- why an event moved nothing -------------------------------------------------------------

_EVENT_FACTS = """
WITH wanted AS (
    SELECT DISTINCT unnest(%(ids)s::text[]) AS event_id
),
partitions AS (
    SELECT DISTINCT s.topic, s.kafka_partition
      FROM revledger.source_events AS s
      JOIN wanted AS w ON w.event_id = s.event_id
),
posted AS (
    -- Per input partition, the last record the ledger posted entries for (and the
    -- projection wrote them): the ledger applies a partition in order, so anything after
    -- it has not been processed (or projected) yet.
    SELECT s.topic, s.kafka_partition, max(s.kafka_offset) AS last_offset
      FROM revledger.source_events AS s
      JOIN partitions AS p ON p.topic = s.topic AND p.kafka_partition = s.kafka_partition
     WHERE EXISTS (SELECT 1 FROM revledger.journal_entries AS e
                    WHERE e.source_event_id = s.event_id)
     GROUP BY s.topic, s.kafka_partition
)
SELECT w.event_id,
       s.business_date,
       coalesce((SELECT array_agg(d.reason ORDER BY d.failed_at, d.kafka_partition,
                                  d.kafka_offset)
                   FROM revledger.dlq_records AS d WHERE d.event_id = w.event_id), '{}'),
       (SELECT d.message FROM revledger.dlq_records AS d WHERE d.event_id = w.event_id
         ORDER BY d.failed_at DESC, d.kafka_partition DESC, d.kafka_offset DESC LIMIT 1),
       coalesce(s.kafka_offset > coalesce(p.last_offset, -1), false),
       o.waiting_on,
       s.event_id IS NOT NULL
  FROM wanted AS w
  LEFT JOIN revledger.source_events AS s ON s.event_id = w.event_id
  -- What a held event waits for: the console's view says it the same way (0009).
  LEFT JOIN revledger.event_outcomes AS o ON o.event_id = s.event_id
  LEFT JOIN posted AS p ON p.topic = s.topic AND p.kafka_partition = s.kafka_partition
 ORDER BY w.event_id
"""


def event_facts(conn: psycopg.Connection, event_ids: Iterable[str]) -> list[EventFacts]:
    """DLQ records, input position and missing documents of events that posted nothing."""
    ids = sorted(set(event_ids))
    if not ids:
        return []
    rows = conn.execute(_EVENT_FACTS, {"ids": ids}).fetchall()
    return [
        EventFacts(
            event_id=event_id,
            business_date=business_date,
            dlq_reasons=tuple(reasons),
            dlq_message=message,
            after_last_posted=bool(after),
            waiting_on=waiting_on,
            known=bool(known),
        )
        for event_id, business_date, reasons, message, after, waiting_on, known in rows
    ]


# --- check 3: batches vs ERP acks ----------------------------------------------------------

_BATCH_DAY = "(b.window_end AT TIME ZONE 'UTC')::date"


def batch_facts(conn: psycopg.Connection, scope: Scope) -> list[BatchFacts]:
    """Batches in scope: entity, window's last day, functional currency and total debits."""
    query = sql.SQL(
        "SELECT b.batch_id, b.entity, " + _BATCH_DAY + ", b.functional_currency,"
        " (SELECT coalesce(sum(l.functional_debit_minor), 0)::bigint"
        "    FROM revledger.journal_batch_lines AS l WHERE l.batch_id = b.batch_id)"
        " FROM revledger.journal_batches AS b{} ORDER BY b.batch_id"
    ).format(_where(scope, "b.entity", _BATCH_DAY))
    return [
        BatchFacts(batch_id, entity, day, str(currency), int(total))
        for batch_id, entity, day, currency, total in conn.execute(query, _params(scope))
    ]


def ack_facts(conn: psycopg.Connection, batch_ids: Iterable[str]) -> list[AckFacts]:
    """Every ERP answer on ``batch_ids``, in log order."""
    ids = sorted(set(batch_ids))
    if not ids:
        return []
    rows = conn.execute(
        "SELECT batch_id, status, message, kafka_partition, kafka_offset"
        " FROM revledger.erp_acks WHERE batch_id = ANY(%s)"
        " ORDER BY batch_id, kafka_partition, kafka_offset",
        [ids],
    ).fetchall()
    return [
        AckFacts(batch_id, status, message, (partition, offset))
        for batch_id, status, message, partition, offset in rows
    ]


# --- check 4: the projection's side --------------------------------------------------------


def stored_offsets(conn: psycopg.Connection, consumer: str, topic: str) -> dict[int, int]:
    """The next offset per partition of ``topic`` the projection ``consumer`` stored."""
    rows = conn.execute(
        "SELECT kafka_partition, next_offset FROM revledger.projection_offsets"
        " WHERE consumer = %s AND topic = %s",
        [consumer, topic],
    ).fetchall()
    return {int(partition): int(offset) for partition, offset in rows}


def projected_entry_side(conn: psycopg.Connection, topic: str, scope: Scope) -> list[Movement]:
    """Check 4, actual: per entry, account and currency, the net amount and line count of
    the entries projected from ``topic`` (the name as read, prefix included)."""
    query = sql.SQL(
        """
SELECT e.entity, e.posting_date, l.currency, l.account, e.entry_id,
       sum(CASE WHEN l.side = 'debit' THEN l.amount_minor ELSE -l.amount_minor END)::bigint,
       count(*), e.customer_id, ARRAY[e.source_event_id], ARRAY[e.entry_id],
       e.source_event_type
  FROM revledger.journal_entries AS e
  JOIN revledger.journal_lines AS l ON l.entry_id = e.entry_id{}
 GROUP BY e.entity, e.posting_date, l.currency, l.account, e.entry_id, e.customer_id,
          e.source_event_id, e.source_event_type
"""
    ).format(_where(scope, "e.entity", "e.posting_date", "e.topic = %(topic)s"))
    return _movements(conn.execute(query, _params(scope, topic=topic)).fetchall())


# --- runs and breaks --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run of the checks: when, what it covered and the clock it judged ages by."""

    started_at: dt.datetime
    finished_at: dt.datetime
    scope: Scope
    clock_date: dt.date | None
    checks: tuple[Check, ...]


def item_document(item: ItemDifference) -> dict[str, Any]:
    """An item difference as the JSON object kept in ``recon_breaks.items``."""
    explanation = item.explanation
    return {
        "item": item.item,
        "event_type": item.event_type,
        "customer_id": item.customer_id,
        "event_ids": list(item.event_ids),
        "entry_ids": list(item.entry_ids),
        "expected_minor": item.expected_minor,
        "actual_minor": item.actual_minor,
        "expected_count": item.expected_count,
        "actual_count": item.actual_count,
        "note": item.note or None,
        "explanation": None
        if explanation is None
        else {
            "cause": str(explanation.cause),
            "reason": explanation.reason,
            "detail": explanation.detail,
        },
    }


_INSERT_BREAK = """
INSERT INTO revledger.recon_breaks (run_id, break_id, check_name, kind, status, entity,
    business_date, currency, reference, customer_id, expected_minor, actual_minor,
    explained_minor, expected_count, actual_count, event_ids, entry_ids, details, items)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
"""


def record_run(conn: psycopg.Connection, run: RunRecord, breaks: Sequence[Break]) -> int:
    """Write the run and its breaks in one transaction; returns the run id.

    Raises:
        psycopg.Error: the database refused (the transaction was rolled back).
    """
    open_count = sum(1 for found in breaks if found.status is Status.open)
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO revledger.recon_runs (started_at, finished_at, entity, business_date,"
            " clock_date, checks, open_breaks, explained_breaks)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING run_id",
            [
                run.started_at,
                run.finished_at,
                run.scope.entity,
                run.scope.day,
                run.clock_date,
                [str(check) for check in run.checks],
                open_count,
                len(breaks) - open_count,
            ],
        ).fetchone()
        run_id = int(row[0]) if row else 0
        with conn.cursor() as cursor:
            cursor.executemany(_INSERT_BREAK, [_break_row(run_id, found) for found in breaks])
    return run_id


def _break_row(run_id: int, found: Break) -> tuple[Any, ...]:
    key = found.key
    return (
        run_id,
        found.break_id,
        str(found.kind.check),
        str(found.kind),
        str(found.status),
        key.entity,
        key.day,
        key.currency,
        key.reference,
        found.customer_id,
        found.expected_minor,
        found.actual_minor,
        found.explained_minor,
        found.expected_count,
        found.actual_count,
        list(found.event_ids),
        list(found.entry_ids),
        found.details,
        Jsonb([item_document(item) for item in found.items]),
    )


@dataclass(frozen=True, slots=True)
class OpenBreak:
    """A row of the view ``recon_breaks_open``."""

    break_id: str
    kind: str
    entity: str
    business_date: dt.date
    currency: str
    reference: str
    expected_minor: int
    actual_minor: int
    explained_minor: int
    event_ids: tuple[str, ...]
    details: str
    detected_at: dt.datetime
    first_detected_at: dt.datetime


def open_breaks(conn: psycopg.Connection, scope: Scope) -> list[OpenBreak]:
    """The breaks open now (view ``recon_breaks_open``) in scope, by entity, day and id."""
    query = sql.SQL(
        "SELECT break_id, kind, entity, business_date, currency, reference, expected_minor,"
        " actual_minor, explained_minor, event_ids, details, detected_at, first_detected_at"
        " FROM revledger.recon_breaks_open{} ORDER BY entity, business_date, break_id"
    ).format(_where(scope, "entity", "business_date"))
    return [
        OpenBreak(*row[:9], tuple(row[9]), *row[10:])
        for row in conn.execute(query, _params(scope)).fetchall()
    ]
