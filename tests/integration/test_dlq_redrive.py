"""The DLQ tools against the real broker: list, show, and redrive in order with attempts counted.

The first test writes DLQ records straight to an isolated DLQ topic (no worker: seconds),
then checks the filters, ``show`` in full, and that a redrive puts each customer's records
back on their source partition in DLQ order, counting attempts. The second runs the ledger
worker: an invoice of an unknown entity is dead-lettered, redriven too early (and
dead-lettered again, attempt 1), then redriven after the entity is configured (attempt 2)
and posted once.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest
from confluent_kafka import Producer

from connectors.simulation import builders as b
from streams.admin import ensure_topics
from streams.dlq import Failure, SourceRecord, dlq_headers, dlq_record
from streams.dlq_tools import DlqFilter, list_dlq, redrive, show_dlq
from streams.messages import DlqRecord
from streams.producer import RecordProducer
from streams.reading import read_partitions_to_end
from streams.serde import Codec
from streams.settings import kafka_client_config
from streams.topics import BILLING, DLQ, ENTRIES, TOPICS

from worker_process import drain_for, isolated_settings, read_committed, running_worker

pytestmark = pytest.mark.integration
CODEC = Codec()
FAILED_AT = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)


def dead_letter(
    source_topic: str,
    partition: int,
    source_offset: int,
    customer: str,
    invoice_id: str,
    reason: str,
    headers: tuple[tuple[str, bytes], ...] = (),
    value: bytes | None = None,
) -> tuple[int, bytes, bytes, list[tuple[str, bytes]]]:
    """(partition, key, value, headers) of a DLQ record as the worker writes it."""
    invoice = b.invoice(invoice_id, customer=customer, event_id=f"ev-{invoice_id}")
    original = CODEC.encode(invoice) if value is None else value
    source = SourceRecord(
        source_topic, partition, source_offset, customer.encode(), original, headers
    )
    failure = Failure(reason, f"{invoice_id} failed with {reason}", event_id=f"ev-{invoice_id}")
    record = dlq_record(failure, source, service_version="test", failed_at=FAILED_AT)
    return partition, customer.encode(), CODEC.encode(record), list(dlq_headers(record))


def test_dlq_tools_filter_show_and_redrive_in_customer_order_when_records_are_dead(
    devstack, tmp_path, capsys
):
    settings = isolated_settings(devstack.bootstrap_servers, tmp_path, partitions=2)
    ensure_topics(settings, TOPICS)
    billing = settings.topic_prefix + BILLING.name
    dlq = settings.topic_prefix + DLQ.name
    earlier = (("trace", b"t-1"), ("redrive.attempt", b"2"), ("redrive.of", b"0:99"))
    records = [  # interleaved customers, as failures arrive
        dead_letter(billing, 0, 10, "A", "A1", "unknown_entity", (("trace", b"t-0"),)),
        dead_letter(billing, 1, 11, "B", "B1", "unknown_entity"),
        dead_letter(billing, 0, 12, "A", "A2", "gl_mapping_missing"),
        dead_letter(billing, 1, 13, "B", "B2", "unknown_entity"),
        dead_letter(billing, 0, 14, "A", "A3", "unknown_entity", earlier),
        dead_letter(billing, 0, 15, "A", "A4", "validation_failed", value=b"\xde\xad\xbe\xef"),
    ]
    out = Producer(kafka_client_config(settings, {"enable.idempotence": True}))
    for partition, key, value, headers in records:
        out.produce(dlq, key=key, value=value, partition=partition, headers=headers)
    out.produce(dlq, key=b"A", value=b"not a DLQ record", partition=0)
    assert out.flush(30) == 0
    capsys.readouterr()

    # list: filtered lines, counts of the customer's records by reason
    assert list_dlq(settings, DlqFilter(reason="unknown_entity", customer="A")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[:4] for line in lines[:-1]] == [
        ["0:0", "unknown_entity", "A", "-"],
        ["0:2", "unknown_entity", "A", "redriven 2x"],
    ]
    assert lines[-1] == (
        "dlq with reason unknown_entity for customer A: gl_mapping_missing 1,"
        " undecodable_dlq_record 1, unknown_entity 2, validation_failed 1"
    )

    # show: by position and by event id, original value decoded, else in hex
    assert show_dlq(settings, "ev-A3") == 0
    shown = capsys.readouterr().out
    assert "dlq record 0:2" in shown
    assert f"source:           {billing} partition 0 offset 14" in shown
    assert "redrive attempts: 2 (last from DLQ 0:99)" in shown
    assert "trace: t-1" in shown and "error.code: unknown_entity" in shown
    assert '"invoice_id": "A3"' in shown
    assert show_dlq(settings, "0:3") == 0
    assert "original value (does not decode), 4 bytes in hex:\n    00000000  de ad be ef" in (
        capsys.readouterr().out
    )
    assert show_dlq(settings, "ev-A3", DlqFilter(customer="B")) == 1

    # redrive: A's unknown_entity records, in order, to partition 0, attempts counted
    assert redrive(settings, DlqFilter(customer="A", reason="unknown_entity"), dry_run=True) == 0
    assert "would redrive 2 records" in capsys.readouterr().out
    assert redrive(settings, DlqFilter(customer="A", reason="unknown_entity")) == 0
    assert redrive(settings, DlqFilter(customer="A", reason="unknown_entity")) == 0
    assert redrive(settings, DlqFilter(customer="B")) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed == [
        "redrove 2 records with reason unknown_entity for customer A",
        "redrove 0 records with reason unknown_entity for customer A",
        "redrove 2 records for customer B",
    ]
    redriven = list(read_partitions_to_end(settings, billing))
    by_partition = {
        p: [
            (
                CODEC.decode(m.value()).invoice_id,
                dict(m.headers())["redrive.attempt"],
                dict(m.headers())["redrive.of"],
                m.key(),
            )
            for m in redriven
            if m.partition() == p
        ]
        for p in (0, 1)
    }
    assert by_partition == {
        0: [("A1", b"1", b"0:0", b"A"), ("A3", b"3", b"0:2", b"A")],
        1: [("B1", b"1", b"1:0", b"B"), ("B2", b"1", b"1:1", b"B")],
    }
    first = next(m for m in redriven if m.partition() == 0)
    assert dict(first.headers())["trace"] == b"t-0"  # the original headers travel along


def test_redrive_posts_the_invoice_once_when_its_entity_is_configured_later(
    devstack, tmp_path, capsys
):
    settings = isolated_settings(devstack.bootstrap_servers, tmp_path, partitions=1)
    ensure_topics(settings, TOPICS)
    producer = RecordProducer(settings, CODEC)
    producer.send_all(b.base_records())
    stranded = b.invoice("INV-NEW", entity_name="NEW1", customer="C7")
    producer.send_all([stranded])
    dlq_topic, entries_topic = (settings.topic_prefix + t.name for t in (DLQ, ENTRIES))

    with running_worker(settings, tmp_path / "worker.log"):
        dead = read_committed(settings.bootstrap_servers, dlq_topic, 1, timeout=120)
        assert CODEC.decode(dead[0].value()).reason == "unknown_entity"
        # Too early: the entity is still unknown, so the invoice fails again (attempt 1).
        assert redrive(settings, "unknown_entity") == 0
        dead = read_committed(settings.bootstrap_servers, dlq_topic, 2, timeout=120)
        again = CODEC.decode(dead[1].value())
        assert isinstance(again, DlqRecord) and again.reason == "unknown_entity"
        assert again.original_headers["redrive.attempt"] == b"1"
        assert again.original_headers["redrive.of"] == f"0:{dead[0].offset()}".encode()
        producer.send_all([b.entity("NEW1", "USD")])
        time.sleep(2)  # the worker's reference reader follows the new entity
        assert redrive(settings, "unknown_entity") == 0  # attempt 2
        entries = read_committed(settings.bootstrap_servers, entries_topic, 1, timeout=120)
        assert redrive(settings, "unknown_entity") == 0  # nothing left to redrive
        everything = drain_for(settings.bootstrap_servers, entries_topic, 3)

    assert [CODEC.decode(r.value()).source_event_id for r in entries] == [stranded.event_id]
    assert len(everything) == 1
    printed = capsys.readouterr().out
    assert printed.count("redrove 1 records with reason unknown_entity") == 2
    assert "redrove 0 records" in printed
    list_dlq(settings, DlqFilter(customer="C7"), limit=10)
    listed = capsys.readouterr().out
    assert "dlq for customer C7: unknown_entity 2" in listed
    assert "redriven 1x" in listed
