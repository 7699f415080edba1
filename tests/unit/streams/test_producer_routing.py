"""Sources write each record type to its canonical topic, keyed as the design says."""

from __future__ import annotations

import datetime as dt

from connectors.simulation import builders as b
from streams.producer import TOPIC_OF_RECORD, key_for, topic_for
from streams.topics import BILLING, CONTROL, LEDGER_INPUTS, PAYMENTS, REF_ENTITIES, USAGE


def test_customer_events_go_to_their_source_topic_when_routed():
    assert topic_for(b.invoice()) is BILLING
    assert topic_for(b.payment("P", [("INV-1", 1)])) is PAYMENTS
    assert topic_for(b.usage()) is USAGE
    assert topic_for(b.clock(dt.date(2024, 1, 1))) is CONTROL
    assert topic_for(b.entity()) is REF_ENTITIES


def test_no_source_writes_the_ledger_input_log_when_routed():
    assert all(spec is not LEDGER_INPUTS for spec in TOPIC_OF_RECORD.values())


def test_keys_are_customer_ids_when_events_and_none_when_control():
    assert key_for(b.invoice(customer="C42")) == b"C42"
    assert key_for(b.clock(dt.date(2024, 1, 1))) is None
    assert key_for(b.fx("EUR", "USD", "1.1")) == b"EUR/USD@2024-01-01"
