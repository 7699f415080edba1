"""A simulated company written into a console database without Kafka, as the projection would.

The events of :func:`connectors.simulation.company.generate_company` go through the pure
engine (:func:`revenue.replay.replay_all`), its entries through the batcher's oracle
(:func:`streams.batcher.replay_batches`), every batch is acknowledged as imported, and the
whole lot (source events, entries, schedules, batches, acks) is written by the projection's
own sink (:func:`connectors.postgres.sink.write_batch`) under topics named
``<prefix><topic>``. So the console reads exactly the rows a real run would have written,
in seconds; the browser tests, the timeline benchmark and the README screenshot share it.

Must not import: faust, aiokafka, confluent_kafka.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from connectors.postgres.projection import (
    ACKS,
    BATCHES,
    ENTRIES,
    INPUTS,
    SCHEDULES,
    Received,
    Rows,
    rows_for,
)
from connectors.postgres.sink import prepare, stored_offsets, write_batch
from connectors.simulation.company import generate_company
from ledger.batching import BatchPolicy
from ledger.reference import ReferenceData
from revenue.recognition import schedule_by_period
from revenue.replay import replay_all
from streams.batcher import replay_batches
from streams.batches import batch_record
from streams.entries import entry_record
from streams.messages import ErpAck
from streams.schedules import schedule_record

ACKNOWLEDGED_AT = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
CONSUMER = "simulated"  # the name the sink stores these offsets under
WRITE_SIZE = 500  # records per transaction, as the projection's default batch


@dataclass(frozen=True)
class LoadedCustomer:
    """What the console must show for one customer of the loaded company."""

    customer_id: str
    invoice_ids: tuple[str, ...]
    payment_ids: tuple[str, ...]
    entry_ids: tuple[str, ...]
    batch_ids: tuple[str, ...]
    events: int


@dataclass(frozen=True)
class LoadedCompany:
    """Counts of what was written."""

    events: int
    entries: int
    batches: int


def load_company(
    conninfo: str,
    *,
    seed: int = 11,
    customers: int = 4,
    events: int = 400,
    topic_prefix: str = "sim.",
    batch_entries: int = 50,
    with_schedules: bool = True,
) -> LoadedCompany:
    """Simulate a company, run it through the pure engine and write it with the sink.

    Args:
        conninfo: a migrated database.
        customers, events: the size of the simulated company (``events`` business events).
        topic_prefix: prefix of the topic names stored with the rows (keeps them apart from
            rows a real projection writes into the same database).
        batch_entries: the batch policy's maximum entries per ERP batch.
        with_schedules: write the contracts' revenue schedules too. (With a long usage
            history a credit can leave an implied usage contract's schedule with a negative
            allocation, which the database refuses: the benchmark leaves schedules out.)

    Returns:
        The counts (:func:`richest_customer` finds a customer to look at).
    """
    stream = generate_company(
        seed=seed, customers=customers, events=events, duplicate_rate=0.0, out_of_order_rate=0.0
    )
    engine = replay_all(stream.reference, stream.events)
    reference = ReferenceData.from_records(stream.reference)
    entries = [entry_record(entry) for entry in engine.entries]
    batches, _ = replay_batches(
        0, list(enumerate(entries)), reference, BatchPolicy(max_entries=batch_entries)
    )
    acks = [
        ErpAck(
            batch_id=batch.batch_id,
            entity=batch.entity,
            sequence=batch.sequence,
            status="imported",
            erp_document_id=f"JE-{n + 1:05d}",
            acknowledged_at=ACKNOWLEDGED_AT,
        )
        for n, batch in enumerate(batches)
    ]
    schedules = [
        schedule_record(
            books.revenue.customer_id, contract, schedule_by_period(contract), "simulated"
        )
        for books in engine.books.values()
        for contract in books.revenue.contracts.values()
        if with_schedules
    ]
    parts = [
        *_rows(topic_prefix, SCHEDULES, schedules, reference),
        *_rows(topic_prefix, INPUTS, stream.events, reference),
        *_rows(topic_prefix, ENTRIES, entries, reference),
        *_rows(topic_prefix, BATCHES, [batch_record(x) for x in batches], reference),
        *_rows(topic_prefix, ACKS, acks, reference),
    ]
    write_rows(conninfo, parts, reference)
    return LoadedCompany(len(stream.events), len(entries), len(batches))


def _rows(prefix: str, topic: str, records: Iterable[Any], reference: ReferenceData) -> list[Rows]:
    """Each record's rows, at consecutive offsets of partition 0 of ``prefix + topic``."""
    return [
        rows_for(record, Received(prefix + topic, topic, 0, offset), reference)
        for offset, record in enumerate(records)
    ]


def write_rows(conninfo: str, parts: Sequence[Rows], reference: ReferenceData) -> None:
    """Write ``parts`` with the projection's sink, ``WRITE_SIZE`` records per transaction."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        prepare(conn)
        expected = stored_offsets(conn, CONSUMER)
        for start in range(0, len(parts), WRITE_SIZE):
            # The sink records where a reader would go on; one made-up partition suffices.
            offsets = {("simulated", 0): start + WRITE_SIZE}
            write_batch(
                conn, parts[start : start + WRITE_SIZE], offsets, CONSUMER, expected, reference
            )
            expected = {**expected, **offsets}


def richest_customer(conn: psycopg.Connection, topic_prefix: str = "sim.") -> LoadedCustomer:
    """The customer with the most source events among those with an invoice, a payment,
    entries and a batch, of the topics ``topic_prefix`` names (ties: the smaller id).

    Raises:
        LookupError: no such customer (a company too small to close a batch).
    """
    row = conn.execute(
        "SELECT s.customer_id, count(*) FROM revledger.source_events AS s"
        " WHERE s.topic LIKE %(topic)s AND s.customer_id IS NOT NULL"
        "   AND EXISTS (SELECT 1 FROM revledger.invoices AS i WHERE i.customer_id = s.customer_id)"
        "   AND EXISTS (SELECT 1 FROM revledger.payments AS p WHERE p.customer_id = s.customer_id)"
        "   AND EXISTS (SELECT 1 FROM revledger.entry_batches AS e"
        "                WHERE e.customer_id = s.customer_id AND e.batch_id IS NOT NULL)"
        " GROUP BY s.customer_id ORDER BY count(*) DESC, s.customer_id LIMIT 1",
        {"topic": topic_prefix.replace("_", r"\_").replace("%", r"\%") + "%"},
    ).fetchone()
    if row is None:
        raise LookupError("no simulated customer has an invoice, a payment and a batch")
    customer_id, events = row

    def ids(query: str) -> tuple[str, ...]:
        return tuple(r[0] for r in conn.execute(query, [customer_id]))

    return LoadedCustomer(
        customer_id=customer_id,
        invoice_ids=ids(
            "SELECT invoice_id FROM revledger.invoices WHERE customer_id = %s ORDER BY 1"
        ),
        payment_ids=ids(
            "SELECT payment_id FROM revledger.payments WHERE customer_id = %s ORDER BY 1"
        ),
        entry_ids=ids(
            "SELECT entry_id FROM revledger.journal_entries WHERE customer_id = %s ORDER BY 1"
        ),
        batch_ids=ids(
            "SELECT DISTINCT batch_id FROM revledger.entry_batches"
            " WHERE customer_id = %s AND batch_id IS NOT NULL ORDER BY 1"
        ),
        events=events,
    )
