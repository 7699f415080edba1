"""``revledger recon`` on a simulated company: no break when all agrees, the right break when not.

A company of 25 customers (seed 5, 1,200 events with redeliveries and payments ahead of
their invoices) is replayed by the pure engine; its entries go to an isolated
``ledger.entries.v1`` on the real broker (2 partitions) and, with the same positions, into
a fresh database (tests/integration/pg_data.py) beside its source events, invoices,
payments, the batches a pure batcher replay closes (15 entries each) and one ``imported``
ack per batch, with the projection's offsets at the end of the topic. Then:

- the recon finds nothing (every check, every entity and day);
- deleting an invoice's entry, raising another invoice's amount, dropping an ack, and
  deleting a payment's entry whose event is in the DLQ give exactly the expected breaks:
  ``billing_vs_ar`` and ``projection_vs_entries`` naming the event and entry ids, another
  ``billing_vs_ar``, ``erp_ack_missing``, and an *explained* ``payments_vs_cash_clearing``;
- ``--entity E --date D`` explains each down to the event ids, types, both amounts, entry
  ids and the DLQ reason; ``--publish`` sends the open breaks keyed by break id (twice the
  same keys); the reader sees them in ``recon_breaks_open``; the gauge counts them.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import zlib
from collections import defaultdict
from typing import Any

import pytest
from prometheus_client import generate_latest

from connectors.simulation.builders import credit_note_void
from connectors.simulation.company import generate_company
from ledger.batching import BatchPolicy
from ledger.events import CreditNoteIssued, InvoiceIssued, PaymentSettled
from ledger.reference import ReferenceData
from revenue.replay import replay_all
from streams.admin import ensure_topics
from streams.batcher import replay_batches
from streams.batches import batch_record
from streams.entries import entry_record
from streams.reading import read_partitions_to_end
from streams.recon import (
    EXIT_BREAKS,
    EXIT_OK,
    ReconMetrics,
    ReconOptions,
    add_recon_commands,
    main_recon,
    run_once,
)
from streams.serde import Codec
from streams.topics import ENTRIES, RECON_BREAKS

import pg_data
from worker_process import isolated_settings, producer

pytestmark = pytest.mark.integration

PARTITIONS = 2
PROJECTION = "projection"
ACKED_AT = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def partition_of(customer_id: str) -> int:
    return zlib.crc32(customer_id.encode()) % PARTITIONS


@pytest.fixture(scope="module")
def company() -> Any:
    stream = with_credit_note_voids(
        generate_company(5, 25, 1200, duplicate_rate=0.03, out_of_order_rate=0.05), voids=4
    )
    replayed = replay_all(stream.reference, stream.events)
    assert not replayed.rejected and not replayed.expired and replayed.books != {}
    assert sum(e.source_event_type == "credit_note.voided" for e in replayed.entries) == 4
    return stream, replayed


def with_credit_note_voids(stream: Any, voids: int) -> Any:
    """The company with its first ``voids`` credit notes voided on the day they were issued.

    The generator issues no voids; the recon must count a void's give-back (the note's
    total) on the billing side, or each one is a ``billing_vs_ar`` break.
    """
    events, voided = [], set()
    for event in stream.events:
        events.append(event)
        if (
            isinstance(event, CreditNoteIssued)
            and event.credit_note_id not in voided
            and len(voided) < voids
        ):
            voided.add(event.credit_note_id)
            events.append(
                credit_note_void(
                    event.credit_note_id,
                    event.invoice_id,
                    entity_name=event.entity,
                    on=event.issue_date,
                    customer=event.customer_id,
                )
            )
    return dataclasses.replace(stream, events=events)


@pytest.fixture
def world(devstack, tmp_path, monkeypatch, company):
    """The database and the entries topic of the replayed company (see the module doc)."""
    stream, replayed = company
    settings = isolated_settings(devstack.bootstrap_servers, tmp_path, partitions=PARTITIONS)
    ensure_topics(settings, (ENTRIES, RECON_BREAKS))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", devstack.bootstrap_servers)
    monkeypatch.setenv("REVLEDGER_TOPIC_PREFIX", settings.topic_prefix)
    monkeypatch.setenv("REVLEDGER_PARTITIONS", str(PARTITIONS))
    topic = settings.topic_prefix + ENTRIES.name
    logs: dict[int, list[Any]] = defaultdict(list)
    for entry in replayed.entries:
        logs[partition_of(entry.customer_id)].append(entry_record(entry))
    _produce(devstack.bootstrap_servers, topic, logs)
    with pg_data.fresh_database(devstack.database_url) as conninfo:
        with pg_data.connect(conninfo) as conn:
            _fill(conn, stream, logs, topic)
        yield {"url": conninfo, "settings": settings, "logs": logs, "stream": stream}


def _produce(bootstrap: str, topic: str, logs: dict[int, list[Any]]) -> None:
    """Each partition's entries in order: a plain producer gives offsets 0, 1, 2 ..."""
    codec, kafka = Codec(), producer(bootstrap)
    for partition, records in sorted(logs.items()):
        for record in records:
            kafka.produce(
                topic,
                key=record.customer_id.encode(),
                value=codec.encode(record),
                partition=partition,
            )
            kafka.poll(0)
    assert kafka.flush(60) == 0


def _fill(conn, stream, logs: dict[int, list[Any]], topic: str) -> None:
    first = list({event.event_id: event for event in reversed(stream.events)}.values())[::-1]
    pg_data.insert_source_events(conn, first)
    for event in first:
        if isinstance(event, InvoiceIssued):
            pg_data.insert_invoice(
                conn,
                event.invoice_id,
                customer_id=event.customer_id,
                entity=event.entity,
                currency=event.currency,
                issue_date=event.issue_date,
                due_date=event.due_date,
                total_minor=event.total_minor,
                source_event_id=event.event_id,
                tax_minor=sum(tax.amount_minor for tax in event.tax_lines),
            )
        elif isinstance(event, PaymentSettled):
            pg_data.insert_payment(
                conn,
                event.payment_id,
                customer_id=event.customer_id,
                entity=event.entity,
                currency=event.currency,
                amount_minor=event.amount_minor,
                fee_minor=event.fee_minor,
                settled_date=event.settled_date,
                source_event_id=event.event_id,
            )
    reference = ReferenceData.from_records(stream.reference)
    policy = BatchPolicy(max_entries=15)
    for partition, records in sorted(logs.items()):
        pg_data.insert_entries(conn, records, topic=topic, partition=partition, first_offset=0)
        pg_data.insert_row(
            conn,
            "projection_offsets",
            {
                "consumer": PROJECTION,
                "topic": topic,
                "kafka_partition": partition,
                "next_offset": len(records),
            },
        )
        batches, _ = replay_batches(partition, enumerate(records), reference, policy)
        for batch in batches:
            record = batch_record(batch)
            pg_data.insert_journal_batch(conn, record)
            pg_data.insert_ack(
                conn,
                record.batch_id,
                entity=record.entity,
                status="imported",
                sequence=record.sequence,
                acknowledged_at=ACKED_AT,
                erp_document_id="JE",
            )


def recon(world, *argv: str) -> tuple[int, dict[str, Any]]:
    """``revledger recon --format json ARGV`` in process: exit code and the JSON document."""
    parser = argparse.ArgumentParser()
    add_recon_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["recon", "--database-url", world["url"], "--format", "json", *argv])
    printed: list[str] = []
    code = main_recon(args, out=printed.append)
    return code, json.loads("".join(printed)) if printed else {}


def _major(amount_minor: int) -> str:
    return f"{amount_minor // 100}.{amount_minor % 100:02d}"


def _entry_keys(conn, entry_id: str) -> set[tuple[str, str, str, str]]:
    """The projection keys an entry's lines fall on: (entity, posting day, account)."""
    rows = conn.execute(
        "SELECT DISTINCT e.entity, e.posting_date::text, l.account FROM revledger.journal_entries e"
        " JOIN revledger.journal_lines l ON l.entry_id = e.entry_id WHERE e.entry_id = %s",
        [entry_id],
    ).fetchall()
    return {("projection_vs_entries", entity, day, account) for entity, day, account in rows}


def _delete_entry(conn, entry_id: str) -> None:
    with conn.transaction():
        conn.execute("DELETE FROM revledger.journal_lines WHERE entry_id = %s", [entry_id])
        conn.execute("DELETE FROM revledger.journal_entries WHERE entry_id = %s", [entry_id])


def _early_usd_entries(conn, rule: str) -> list[tuple[str, str, str, str, int]]:
    """(entry id, event id, entity, day, AR or cash amount) of US1 USD entries of ``rule``,
    from the first third of the business calendar (long past any hold timeout)."""
    return conn.execute(
        """
        SELECT e.entry_id, e.source_event_id, e.entity, e.original_date::text,
               max(l.amount_minor) FILTER (WHERE l.account IN ('accounts_receivable',
                                                               'cash_clearing'))
          FROM revledger.journal_entries e
          JOIN revledger.journal_lines l ON l.entry_id = e.entry_id
         WHERE e.rule = %s AND e.entity = 'US1' AND l.currency = 'USD'
           AND e.original_date < (SELECT min(original_date) + 100
                                    FROM revledger.journal_entries)
         GROUP BY e.entry_id, e.source_event_id, e.entity, e.original_date
         ORDER BY e.original_date, e.entry_id
        """,
        [rule],
    ).fetchall()


def _plant(conn) -> dict[str, Any]:
    """Four faults on four different days; returns what each should be found as."""
    invoices = _early_usd_entries(conn, "invoice_issued")
    lost = invoices[0]
    raised = next(row for row in invoices if row[3] != lost[3])
    payment = next(
        row
        for row in _early_usd_entries(conn, "payment_settled")
        if row[3] not in (lost[3], raised[3])
    )
    batch_id, batch_day = conn.execute(
        "SELECT batch_id, (window_end AT TIME ZONE 'UTC')::date::text"
        " FROM revledger.journal_batches WHERE sequence = 0 ORDER BY batch_id LIMIT 1"
    ).fetchone()
    projection = _entry_keys(conn, lost[0]) | _entry_keys(conn, payment[0])

    _delete_entry(conn, lost[0])
    conn.execute(
        "UPDATE revledger.invoices SET total_minor = total_minor + 1 WHERE source_event_id = %s",
        [raised[1]],
    )
    conn.execute("DELETE FROM revledger.erp_acks WHERE batch_id = %s", [batch_id])
    _delete_entry(conn, payment[0])
    pg_data.insert_dlq(
        conn,
        "unknown_product",
        failed_at=ACKED_AT,
        event_id=payment[1],
        message="mapping withdrawn",
        source_topic="payments.events.v1",
    )
    return {
        "lost": {
            "entry_id": lost[0],
            "event_id": lost[1],
            "entity": lost[2],
            "day": lost[3],
            "amount": _major(lost[4]),
        },
        "raised": {"event_id": raised[1], "entity": raised[2], "day": raised[3]},
        "unacked": {"batch_id": batch_id, "entity": batch_id.split("/")[0], "day": batch_day},
        "dead": {"event_id": payment[1], "entity": payment[2], "day": payment[3]},
        "open": {
            ("billing_vs_ar", lost[2], lost[3], "invoice.issued"),
            ("billing_vs_ar", raised[2], raised[3], "invoice.issued"),
            ("erp_ack_missing", batch_id.split("/")[0], batch_day, batch_id),  # <entity>/p<n>/<seq>
            *projection,
        },
        "explained": {("payments_vs_cash_clearing", payment[2], payment[3], "payment.settled")},
    }


def _keys(document: dict[str, Any], status: str) -> set[tuple[str, str, str, str]]:
    return {
        (row["kind"], row["entity"], row["day"], row["reference"])
        for row in document["rows"]
        if row["status"] == status
    }


def test_recon_finds_each_planted_break_and_explains_it_down_to_the_events(world):
    code, clean = recon(world)
    assert code == EXIT_OK and clean["rows"] == [] and clean["open_breaks"] == 0, clean["rows"]

    with pg_data.connect(world["url"]) as conn:
        planted = _plant(conn)
    lost, raised, unacked, dead = (planted[k] for k in ("lost", "raised", "unacked", "dead"))

    code, found = recon(world)
    assert code == EXIT_BREAKS
    assert _keys(found, "open") == planted["open"]
    assert _keys(found, "explained") == planted["explained"]
    rows = {(r["kind"], r["entity"], r["day"], r["reference"]): r for r in found["rows"]}
    assert (
        rows[("billing_vs_ar", lost["entity"], lost["day"], "invoice.issued")]["unexplained"]
        == lost["amount"]
    )
    assert (
        rows[("billing_vs_ar", raised["entity"], raised["day"], "invoice.issued")]["unexplained"]
        == "0.01"
    )

    # Explained down to the events, one entity and day at a time.
    code, document = recon(world, "--entity", lost["entity"], "--date", lost["day"])
    assert code == EXIT_BREAKS
    items = {(item["kind"], item["item"]): item for item in document["items"]}
    event = items[("billing_vs_ar", lost["event_id"])]
    assert (event["event_type"], event["expected"], event["actual"], event["why"]) == (
        "invoice.issued",
        lost["amount"],
        "0.00",
        "nothing posted; no DLQ record; not held",
    )
    entry = items[("projection_vs_entries", lost["entry_id"])]
    assert (entry["events"], entry["entries"]) == (lost["event_id"], lost["entry_id"])
    assert entry["actual"] == "0.00" and entry["expected"] != "0.00"
    assert entry["why"] == "in ledger.entries.v1, missing in PostgreSQL"

    _, document = recon(world, "--entity", raised["entity"], "--date", raised["day"])
    (grown,) = [i for i in document["items"] if i["kind"] == "billing_vs_ar"]
    assert grown["item"] == raised["event_id"] and grown["entries"]  # posted, but less
    assert grown["why"] == "posted another amount"

    _, document = recon(world, "--entity", dead["entity"], "--date", dead["day"])
    (silent,) = [i for i in document["items"] if i["kind"] == "payments_vs_cash_clearing"]
    assert (silent["item"], silent["event_type"]) == (dead["event_id"], "payment.settled")
    assert silent["why"] == "dead-lettered (unknown_product: mapping withdrawn)"

    scope = ("--entity", unacked["entity"], "--date", unacked["day"], "--check", "acks")
    _, document = recon(world, *scope)
    assert [(i["item"], i["why"]) for i in document["items"]] == [
        (unacked["batch_id"], "no answer from the ERP")
    ]


def test_open_breaks_are_published_by_id_read_by_the_reader_and_counted(world):
    with pg_data.connect(world["url"]) as conn:
        planted = _plant(conn)
    settings = world["settings"]
    assert recon(world, "--publish")[0] == EXIT_BREAKS
    _, found = recon(world, "--publish")
    open_ids = {row["break_id"] for row in found["rows"] if row["status"] == "open"}
    assert len(open_ids) == len(planted["open"])

    topic = settings.topic_prefix + RECON_BREAKS.name
    codec = Codec()
    sent = [
        (m.key().decode(), codec.decode(m.value())) for m in read_partitions_to_end(settings, topic)
    ]
    # Two runs, the same keys: a consumer keyed by break id sees each break once.
    assert sorted(key for key, _ in sent) == sorted([*open_ids, *open_ids])
    assert all(record.break_id == key for key, record in sent)

    with pg_data.connect(world["url"]) as conn:
        conn.execute("SET ROLE revledger_reader")
        visible = {
            row[0] for row in conn.execute("SELECT break_id FROM revledger.recon_breaks_open")
        }
        conn.execute("RESET ROLE")
        assert visible == open_ids
    metrics = ReconMetrics()
    metrics.update(run_once(settings, ReconOptions(world["url"])))
    before = generate_latest(metrics.registry).decode()

    raised = planted["raised"]
    with pg_data.connect(world["url"]) as conn:
        conn.execute(
            "UPDATE revledger.invoices SET total_minor = total_minor - 1"
            " WHERE source_event_id = %s",
            [raised["event_id"]],
        )
    day = dt.date.fromisoformat(raised["day"])
    metrics.update(run_once(settings, ReconOptions(world["url"], entity="US1", day=day)))
    after = generate_latest(metrics.registry).decode()
    assert 'revledger_recon_breaks{entity="US1",kind="billing_vs_ar"} 2.0' in before
    assert 'revledger_recon_breaks{entity="US1",kind="billing_vs_ar"} 0.0' in after
    with pg_data.connect(world["url"]) as conn:
        still = {row[0] for row in conn.execute("SELECT break_id FROM revledger.recon_breaks_open")}
    fixed = f"billing_vs_ar:{raised['entity']}:{raised['day']}:USD:invoice.issued"
    assert fixed in open_ids and still == open_ids - {fixed}


def test_a_voided_credit_note_gives_back_its_total_and_a_lost_void_is_a_billing_break(world):
    """The void's reversal is on both sides: matched, and missing when its entry is lost."""
    with pg_data.connect(world["url"]) as conn:
        entry_id, event_id, entity, day, currency, total = conn.execute(
            """
            SELECT e.entry_id, e.source_event_id, e.entity, e.original_date::text,
                   c.payload ->> 'currency', (c.payload ->> 'total_minor')::bigint
              FROM revledger.journal_entries AS e
              JOIN revledger.source_events AS v ON v.event_id = e.source_event_id
              JOIN revledger.source_events AS c
                ON c.event_type = 'credit_note.issued'
               AND c.payload ->> 'credit_note_id' = v.payload ->> 'credit_note_id'
             WHERE e.source_event_type = 'credit_note.voided'
             ORDER BY e.entry_id LIMIT 1
            """
        ).fetchone()
        _delete_entry(conn, entry_id)
    code, found = recon(world, "--entity", entity, "--date", day, "--check", "billing")
    assert code == EXIT_BREAKS
    items = [i for i in found["items"] if i["kind"] == "billing_vs_ar"]
    assert [(i["item"], i["event_type"], i["actual"]) for i in items] == [
        (event_id, "credit_note.voided", "0.00")
    ], (currency, items)
    assert items[0]["expected"] == _major(total)
