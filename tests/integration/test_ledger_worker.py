"""The real ledger worker on the real broker: entries equal the pure replay, bad input to DLQ."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest

from connectors.simulation import builders as b
from connectors.simulation.company import generate_company
from revenue.replay import replay, replay_partitions
from streams.admin import ensure_topics
from streams.entries import entry_record
from streams.messages import DlqRecord
from streams.producer import RecordProducer
from streams.serde import Codec
from streams.topics import DLQ, ENTRIES, LEDGER_INPUTS, TOPICS

from worker_process import (
    drain_for,
    encode_unvalidated,
    is_entry,
    isolated_settings,
    read_committed,
    running_worker,
)

pytestmark = pytest.mark.integration
CODEC = Codec()


def _entries(settings, expected: int, timeout: float = 120.0) -> list:
    topic = settings.topic_prefix + ENTRIES.name
    records = read_committed(
        settings.bootstrap_servers, topic, expected, timeout=timeout, only=is_entry
    )
    return [CODEC.decode(r.value()) for r in records]


def _dead_letters(settings, expected: int) -> dict[str, tuple[DlqRecord, object]]:
    topic = settings.topic_prefix + DLQ.name
    records = read_committed(settings.bootstrap_servers, topic, expected, timeout=120)
    found = {}
    for kafka_record in records:
        record = CODEC.decode(kafka_record.value())
        found[record.event_id or record.reason] = (record, kafka_record)
    return found


def _sequenced(settings, expected: int) -> list[list]:
    """The ledger's input log, decoded: one list per partition, in offset order."""
    topic = settings.topic_prefix + LEDGER_INPUTS.name
    records = read_committed(settings.bootstrap_servers, topic, expected, timeout=120)
    logs: dict[int, list] = {}
    for record in sorted(records, key=lambda r: (r.partition(), r.offset())):
        logs.setdefault(record.partition(), []).append(CODEC.decode(record.value()))
    return [logs[partition] for partition in sorted(logs)]


def test_entries_equal_replay_when_payment_arrives_before_invoice_and_twice(devstack, tmp_path):
    settings = isolated_settings(devstack.bootstrap_servers, tmp_path, store="rocksdb://")
    ensure_topics(settings, TOPICS)
    reference = [*b.base_records(), b.fx("EUR", "USD", "1.20", dt.date(2024, 2, 1))]
    events = [
        b.payment("PAY-1", [("INV-1", 60_00)]),  # before its invoice: held
        b.invoice("INV-1", tax=10_00),
        b.invoice("INV-1", tax=10_00),  # redelivered: a duplicate
        b.payment("PAY-1", [("INV-1", 60_00)]),
        b.invoice("INV-2", currency="EUR", customer="C2"),
        b.payment(
            "PAY-2", [("INV-2", 100_00)], currency="EUR", customer="C2", on=dt.date(2024, 2, 2)
        ),
        b.payout("PO-1", 50_00),
    ]
    expected = [entry_record(e) for e in replay(reference, events)]
    producer = RecordProducer(settings, CODEC)
    producer.send_all(reference)
    producer.send_all(events)

    with running_worker(settings, tmp_path / "worker.log"):
        got = _entries(settings, len(expected))
        extra = drain_for(
            settings.bootstrap_servers, settings.topic_prefix + ENTRIES.name, 3, only=is_entry
        )

    assert len(expected) >= 4
    assert len(extra) == len(expected), "an entry was produced twice"
    assert sorted(got, key=lambda e: e.entry_id) == sorted(expected, key=lambda e: e.entry_id)
    assert any(line.account == "realized_fx" for e in got for line in e.lines)


def test_bad_business_input_goes_to_dlq_with_reason_when_nothing_is_half_posted(devstack, tmp_path):
    settings = isolated_settings(
        devstack.bootstrap_servers, tmp_path, hold_timeout_days=5, partitions=4, store="rocksdb://"
    )
    ensure_topics(settings, TOPICS)
    good = b.invoice("INV-OK")
    eur_invoice = b.invoice("INV-EUR", currency="EUR")
    bad = {
        "unknown_entity": b.invoice("INV-X", entity_name="XX9", event_id="e-unknown-entity"),
        "unknown_currency": b.invoice("INV-Y", currency="ABC", event_id="e-unknown-ccy"),
        "orphan_event": b.payment("PAY-9", [("INV-NEVER", 5_00)], event_id="e-orphan"),
        "currency_mismatch": b.payment("PAY-M", [("INV-EUR", 5_00)], event_id="e-mismatch"),
    }
    negative = encode_unvalidated(b.invoice("INV-NEG", event_id="e-negative"), total_minor=-5)
    producer = RecordProducer(settings, CODEC)
    producer.send_all([*b.base_records()])
    producer.send_all([good, eur_invoice, *bad.values()])
    producer.send_raw("billing.events.v1", b"C1", negative)

    with running_worker(settings, tmp_path / "worker.log"):
        # Everything but the orphan is decided without the clock.
        _dead_letters(settings, expected=len(bad))
        _entries(settings, expected=2)
        # Kafka orders nothing across topics: the tick goes out once the payment is held.
        producer.send_all([b.clock(b.DAY + dt.timedelta(days=14))])
        # The tick recognises the two invoices (implied contracts, point in time on the
        # issue day); the next invoice is sent once it has, as Kafka orders nothing
        # across topics.
        _entries(settings, expected=4)
        producer.send_all([b.invoice("INV-AFTER")])
        dead = _dead_letters(settings, expected=len(bad) + 1)
        entries = _entries(settings, expected=5)

    posted = [e for e in entries if e.rule != "revenue_recognition"]
    assert sorted(e.source_event_id for e in posted) == sorted(
        [good.event_id, eur_invoice.event_id, "evt-inv-INV-AFTER"]
    )
    recognised = [e for e in entries if e.rule == "revenue_recognition"]
    assert sorted(line.dimensions["contract_id"] for e in recognised for line in e.lines[:1]) == [
        "implied:INV-EUR",
        "implied:INV-OK",
    ]
    for reason, event in bad.items():
        record, _ = dead[event.event_id]
        assert record.reason == reason, record
        assert record.original_value == CODEC.encode(event)
        assert record.original_key == event.customer_id.encode()
    negative_record, kafka_record = dead["validation_failed"]
    assert "total_minor" in negative_record.message
    assert negative_record.original_value == negative
    assert dict(kafka_record.headers())["error.code"] == b"validation_failed"


def _state_bytes_after(events: list) -> int:
    """Largest stored state (either table's JSON) once ``events`` are applied, as the
    worker stores them."""
    from benchmarks.books_step import RocksLikeTable
    from revenue import engine
    from streams.ledger_worker import BooksStore

    store = BooksStore(RocksLikeTable(), RocksLikeTable())
    reference = b.reference_data()
    for event in events:
        loaded = store.load(event.customer_id)
        store.save(loaded, engine.apply(loaded.books, event, reference).books)
    tables = (store.ledgers.data, store.revenue_books.data)
    return max(len(value) for table in tables for value in table.values())


def test_an_event_that_would_outgrow_the_state_record_goes_to_dlq_and_the_partition_goes_on(
    devstack, tmp_path
):
    # Without the limit the changelog record is refused by the broker, the transaction can
    # never commit and every customer of the partition stalls behind it.
    grown = [b.invoice(f"INV-{n}", lines=[("SUB", (n + 1) * 10_00)]) for n in range(1, 4)]
    other = b.invoice("INV-C2", customer="C2")
    limit = _state_bytes_after(grown[:2]) + 10  # two invoices fit, the third does not
    settings = isolated_settings(
        devstack.bootstrap_servers, tmp_path, partitions=1, max_state_bytes=limit
    )
    ensure_topics(settings, TOPICS)
    producer = RecordProducer(settings, CODEC)
    producer.send_all([*b.base_records()])
    producer.send_all([*grown, other])

    with running_worker(settings, tmp_path / "worker.log"):
        dead = _dead_letters(settings, expected=1)
        entries = _entries(settings, expected=3)

    assert sorted(e.source_event_id for e in entries) == sorted(
        [grown[0].event_id, grown[1].event_id, other.event_id]
    )
    record, kafka_record = dead[grown[2].event_id]
    assert record.reason == "customer_state_too_large"
    assert "customer 'C1'" in record.message and f"{limit:,}" in record.message
    assert record.original_value == CODEC.encode(grown[2])
    assert dict(kafka_record.headers())["error.code"] == b"customer_state_too_large"


def test_ten_thousand_events_equal_replay_when_duplicated_and_out_of_order(devstack, tmp_path):
    stream = generate_company(
        seed=11, customers=250, events=10_000, duplicate_rate=0.05, out_of_order_rate=0.05
    )
    settings = isolated_settings(
        devstack.bootstrap_servers, tmp_path, partitions=4, store="rocksdb://"
    )
    ensure_topics(settings, TOPICS)
    expected = [entry_record(e) for e in replay(stream.reference, stream.events)]
    producer = RecordProducer(settings, CODEC)
    producer.send_all(stream.reference)
    sent = producer.send_all(stream.events)
    customers = {e.customer_id for e in stream.events}
    duplicates = sent - len({e.event_id for e in stream.events})

    with running_worker(settings, tmp_path / "worker.log"):
        got = _entries(settings, len(expected), timeout=600)
        extra = drain_for(
            settings.bootstrap_servers, settings.topic_prefix + ENTRIES.name, 5, only=is_entry
        )
    logs = _sequenced(settings, sent)
    sequenced = [record for log in logs for record in log]
    # The sequencer copies every valid record once; the ledger applies them in that order.
    assert Counter(e.event_id for e in sequenced) == Counter(e.event_id for e in stream.events)
    expected = [entry_record(e) for e in replay_partitions(stream.reference, logs)]

    print(
        f"{sent} events ({duplicates} redelivered) across {len(customers)} customers:"
        f" {len(expected)} entries expected, {len(got)} read"
    )
    assert sent >= 10_000 and len(customers) >= 200 and duplicates >= 0.04 * 10_000
    everything = [CODEC.decode(r.value()) for r in extra]
    ids = Counter(e.entry_id for e in everything)
    assert not [i for i, n in ids.items() if n > 1], "an entry was produced twice"
    assert len(everything) == len(expected)
    assert sorted(everything, key=lambda e: e.entry_id) == sorted(
        expected, key=lambda e: e.entry_id
    )
