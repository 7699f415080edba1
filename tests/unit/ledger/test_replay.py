"""replay(): the pure oracle the streaming tests compare against; and the generator."""

import datetime as dt

from connectors.simulation.builders import (
    base_records,
    clock,
    fx,
    invoice,
    payment,
    rows,
    void,
)
from connectors.simulation.company import generate_company
from ledger.replay import replay, replay_all
from ledger.results import EntryStatus


def test_replay_releases_held_event_when_fx_rate_arrives_mid_stream():
    reference = [r for r in base_records() if r.event_type != "fx.rate"]
    entries = replay(
        reference,
        [
            invoice("INV-E", currency="EUR", customer="C2"),
            invoice("INV-1", customer="C1"),
            fx("EUR", "USD", "1.25", dt.date(2024, 1, 1)),
        ],
    )
    assert [e.source_event_id for e in entries] == ["evt-inv-INV-1", "evt-inv-INV-E"]
    assert rows(entries[1])[0] == ("accounts_receivable", "debit", 100_00, 125_00)


def test_replay_expires_orphan_hold_when_clock_passes_timeout():
    result = replay_all(
        base_records(),
        [
            payment("PAY-1", [("INV-404", 5_00)]),
            clock(dt.date(2024, 2, 1)),
        ],
        hold_timeout_days=5,
    )
    [expired] = result.expired
    assert (expired.reason, result.states["C1"].held) == (EntryStatus.orphan_event, ())


def test_void_reverses_exact_functional_amounts_when_invoice_is_foreign():
    entries = replay(
        base_records(),
        [
            invoice("INV-E", currency="EUR", lines=[("SUB", 33_33), ("SVC", 1)], tax=7),
            void("INV-E"),
        ],
    )
    issued, voided = entries
    assert [(a, s == "credit", n, f) for a, s, n, f in rows(voided)] == [
        (a, s == "debit", n, f) for a, s, n, f in rows(issued)
    ]


def test_generate_company_is_deterministic_when_seed_is_the_same():
    settings = {
        "customers": 5,
        "events": 200,
        "duplicate_rate": 0.05,
        "out_of_order_rate": 0.1,
        "book_usage_contracts": False,
    }
    first = generate_company(3, **settings)
    second = generate_company(3, **settings)
    assert [e.model_dump_json() for e in first.events] == [
        e.model_dump_json() for e in second.events
    ]
    assert len({e.event_id for e in first.events}) == 200
    assert replay(first.reference, first.events) == replay(second.reference, second.events)
