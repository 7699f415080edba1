"""Faust exactly-once on the real broker: Avro in from a plain producer, out under a transaction.

The echo worker (tests/integration/echo_worker.py) uses the production app builder,
supervision, serde and DLQ writer; these tests prove the platform, not the ledger rules.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

import pytest

from ledger.events import InvoiceIssued, InvoiceLine
from streams.admin import ensure_topics
from streams.messages import DlqRecord
from streams.serde import SINGLE_OBJECT_MAGIC, Codec
from streams.topics import BILLING, DLQ, ENTRIES

from worker_process import (
    drain_for,
    encode_unvalidated,
    end_offsets,
    isolated_settings,
    producer,
    read_committed,
    running_worker,
)

pytestmark = pytest.mark.integration
ECHO = [sys.executable, str(Path(__file__).with_name("echo_worker.py"))]
CODEC = Codec()


def _invoice(n: int) -> InvoiceIssued:
    return InvoiceIssued(
        event_id=f"evt-{n}",
        occurred_at=dt.datetime(2026, 1, 5, 12, 0, tzinfo=dt.UTC),
        source_system="billing",
        source_id=f"in_{n}",
        entity="US",
        customer_id=f"cus_{n % 7}",
        invoice_id=f"inv-{n}",
        issue_date=dt.date(2026, 1, 5),
        due_date=dt.date(2026, 2, 4),
        currency="USD",
        lines=(
            InvoiceLine(
                line_id="l1",
                description="Pro plan",
                product_id="pro",
                quantity=1,
                amount_minor=10_000 + n,
            ),
        ),
        total_minor=10_000 + n,
    )


def _topics(settings):
    ensure_topics(settings, (BILLING, ENTRIES, DLQ))
    prefix = settings.topic_prefix
    return prefix + BILLING.name, prefix + ENTRIES.name, prefix + DLQ.name


def test_agent_output_is_read_committed_when_produced_by_plain_producer(devstack, tmp_path):
    settings = isolated_settings(devstack.bootstrap_servers, tmp_path)
    source, sink, _ = _topics(settings)
    invoices = [_invoice(n) for n in range(30)]
    out = producer(devstack.bootstrap_servers)
    for invoice in invoices:
        out.produce(source, key=invoice.customer_id.encode(), value=CODEC.encode(invoice))
    assert out.flush(30) == 0

    with running_worker(settings, tmp_path / "echo.log", argv=ECHO):
        records = read_committed(devstack.bootstrap_servers, sink, expected=30)
        extra = drain_for(devstack.bootstrap_servers, sink, seconds=3)

    got = sorted(CODEC.decode(r.value()).event_id for r in records)
    assert got == sorted(i.event_id for i in invoices)
    assert len(extra) == 30, "a record was produced twice or outside the transaction"
    # An output stays on its input's partition: the same key hashes to the same partition.
    for record in records:
        assert record.partition() in range(settings.partitions)
    # Transactional writes leave a commit marker after the last record of each partition.
    ends = end_offsets(devstack.bootstrap_servers, sink, settings.partitions)
    last = {}
    for record in records:
        last[record.partition()] = max(last.get(record.partition(), -1), record.offset())
    for partition, offset in last.items():
        assert ends[partition] > offset + 1, "no transaction marker after the last record"


def test_bad_input_lands_in_dlq_with_reason_when_agent_goes_on(devstack, tmp_path):
    settings = isolated_settings(devstack.bootstrap_servers, tmp_path, max_message_bytes=4096)
    source, sink, dlq = _topics(settings)
    unknown_fingerprint = SINGLE_OBJECT_MAGIC + b"\x01\x02\x03\x04\x05\x06\x07\x08" + b"\x00"
    oversized = CODEC.encode(_invoice(1))[:10] + os.urandom(5000)
    bad = {
        "unknown_encoding": b"\x17random bytes \xff\xfe",
        "unknown_schema_fingerprint": unknown_fingerprint,
        "validation_failed": encode_unvalidated(_invoice(999), currency="usd"),
        "message_too_large": oversized,
    }
    out = producer(devstack.bootstrap_servers)
    out.produce(source, key=b"cus_1", value=CODEC.encode(_invoice(1)))
    for reason, value in bad.items():
        out.produce(source, key=b"cus_1", value=value, headers=[("reason-under-test", reason)])
    out.produce(source, key=b"cus_1", value=CODEC.encode(_invoice(2)))
    assert out.flush(30) == 0

    with running_worker(settings, tmp_path / "echo.log", argv=ECHO):
        dead = read_committed(devstack.bootstrap_servers, dlq, expected=len(bad))
        forwarded = read_committed(devstack.bootstrap_servers, sink, expected=2)

    assert [CODEC.decode(r.value()).event_id for r in forwarded] == ["evt-1", "evt-2"]
    by_reason = {}
    for record in dead:
        dlq_record = CODEC.decode(record.value())
        assert isinstance(dlq_record, DlqRecord)
        by_reason[dlq_record.reason] = (dlq_record, record)
    assert sorted(by_reason) == sorted(bad)
    for reason, value in bad.items():
        dlq_record, kafka_record = by_reason[reason]
        assert dlq_record.original_value == value, reason
        assert dlq_record.original_key == b"cus_1"
        assert dlq_record.source_topic == source
        assert dlq_record.original_headers["reason-under-test"] == reason.encode()
        assert dict(kafka_record.headers())["error.code"] == reason.encode()
        assert kafka_record.key() == b"cus_1"
    assert "currency" in by_reason["validation_failed"][0].message


def test_failed_event_is_not_committed_when_handler_crashes(devstack, tmp_path):
    settings = isolated_settings(devstack.bootstrap_servers, tmp_path, partitions=1)
    source, sink, _ = _topics(settings)
    out = producer(devstack.bootstrap_servers)
    for n in range(5):
        out.produce(source, key=b"cus_1", value=CODEC.encode(_invoice(n)))
    assert out.flush(30) == 0

    failing = {"ECHO_FAIL_ON_EVENT_ID": "evt-3"}
    with running_worker(settings, tmp_path / "a.log", argv=ECHO, extra_env=failing) as worker:
        worker.process.wait(90)
        assert worker.process.returncode == 70, worker.log()[-3000:]
    # After the crash nothing past the failing event is visible; a healthy restart
    # forwards the rest exactly once.
    with running_worker(settings, tmp_path / "b.log", argv=ECHO):
        records = read_committed(devstack.bootstrap_servers, sink, expected=5)
        extra = drain_for(devstack.bootstrap_servers, sink, seconds=3)
    assert [CODEC.decode(r.value()).event_id for r in extra] == [f"evt-{n}" for n in range(5)]
    assert len(records) == 5
