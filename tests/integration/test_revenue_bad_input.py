"""Bad revenue input through the real worker: each a DLQ record with its reason, nothing posted."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest

from connectors.simulation import builders as b
from streams.admin import ensure_topics
from streams.producer import RecordProducer
from streams.serde import Codec
from streams.topics import DLQ, ENTRIES, TOPICS

from worker_process import (
    encode_unvalidated,
    is_entry,
    isolated_settings,
    read_committed,
    running_worker,
)

pytestmark = pytest.mark.integration
CODEC = Codec()
START, END = dt.date(2024, 1, 1), dt.date(2024, 12, 31)


def _read(settings, topic: str, expected: int, only=None) -> list:
    records = read_committed(
        settings.bootstrap_servers, settings.topic_prefix + topic, expected, 120, only=only
    )
    return [CODEC.decode(r.value()) for r in records]


def test_bad_revenue_input_goes_to_dlq_with_reason_when_nothing_is_half_posted(devstack, tmp_path):
    settings = isolated_settings(
        devstack.bootstrap_servers, tmp_path, hold_timeout_days=5, partitions=4, store="rocksdb://"
    )
    ensure_topics(settings, TOPICS)
    good = b.contract(
        "K-OK",
        1200_00,
        [
            b.obligation("OB1", 1200_00, START, END),
            b.obligation("OB-U", 0, START, pattern="usage", product_id="USG", family="usage"),
        ],
        on=START,
    )
    bad = {
        "ssp_all_zero": b.contract(
            "K-ZERO", 500_00, [b.obligation("Z1", 0, START, END)], customer="C2", event_id="e-zero"
        ),
        "not_a_usage_obligation": b.usage(
            "U-1",
            5_00,
            on=dt.date(2024, 1, 5),
            contract="K-OK",
            obligation="OB1",
            event_id="e-not-usage",
        ),
        # Never booked: held, then expired by the tick (5 business days).
        "orphan_event": b.amendment(
            "A-9",
            "prospective",
            100_00,
            [b.obligation("X1", 100_00, START, END)],
            contract_id="K-NEVER",
            effective=dt.date(2024, 1, 10),
            customer="C3",
            event_id="e-orphan-amendment",
        ),
    }
    backwards_spec = {**good.obligations[0].model_dump(mode="python"), "service_end": START}
    backwards_spec["service_start"] = END
    ends_before_start = encode_unvalidated(
        b.contract("K-BAD", 100_00, [b.obligation("B1", 100_00, START, END)], customer="C4"),
        obligations=[backwards_spec],
    )
    producer = RecordProducer(settings, CODEC)
    producer.send_all(b.base_records())
    producer.send_all([good, *bad.values()])
    producer.send_raw("contracts.events.v1", b"C4", ends_before_start)

    with running_worker(settings, tmp_path / "worker.log"):
        # Decided without the clock: the zero SSP, the non-usage usage, the bad period.
        first = _read(settings, DLQ.name, expected=3)
        producer.send_all([b.clock(dt.date(2024, 1, 31))])
        entries = _read(settings, ENTRIES.name, expected=1, only=is_entry)
        producer.send_all([b.clock(dt.date(2024, 1, 15))])  # back in time: every partition
        dead = _read(settings, DLQ.name, expected=3 + 1 + settings.partitions)

    reasons = Counter(record.reason for record in dead)
    assert {r.reason for r in first} == {
        "ssp_all_zero",
        "not_a_usage_obligation",
        "validation_failed",
    }
    assert reasons == {
        "ssp_all_zero": 1,
        "not_a_usage_obligation": 1,
        "validation_failed": 1,
        "orphan_event": 1,
        "clock_backwards": settings.partitions,
    }
    by_reason = {record.reason: record for record in dead}
    for reason, event in bad.items():
        record = by_reason[reason]
        assert record.event_id == event.event_id
        assert record.original_value == CODEC.encode(event), reason
    assert "service_end before service_start" in by_reason["validation_failed"].message
    assert by_reason["validation_failed"].original_value == ends_before_start
    assert "SSP 0" in by_reason["ssp_all_zero"].message
    assert "2024-01-15" in by_reason["clock_backwards"].message
    # The only posting: January's revenue of the good contract (31 of 366 days of 1,200).
    (entry,) = entries
    assert entry.rule == "revenue_recognition"
    assert [(line.account, line.side, line.amount_minor) for line in entry.lines] == [
        ("unbilled_receivable", "debit", 101_64),
        ("revenue", "credit", 101_64),
    ]
    assert {line.dimensions["contract_id"] for line in entry.lines} == {"K-OK"}
