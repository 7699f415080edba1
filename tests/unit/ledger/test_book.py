"""apply(): duplicates, rejections, holds released in order, retries, expiry, state JSON."""

import datetime as dt

import pytest

from connectors.simulation.builders import (
    CUSTOMER,
    apply_all,
    base_records,
    entity,
    fx,
    invoice,
    payment,
    product,
    reference_data,
    refund,
    write_off,
)
from ledger.book import OutcomeKind, apply, expire_holds, retry_holds
from ledger.codec import entry_from_dict, entry_to_dict, state_from_json, state_to_json
from ledger.errors import InvariantViolation, StateDecodeError
from ledger.events import MAX_MINOR
from ledger.results import EntryStatus
from ledger.state import CustomerLedger


def test_apply_returns_duplicate_when_same_event_arrives_twice():
    _, outcomes = apply_all([invoice("INV-1"), invoice("INV-1")])
    assert (outcomes[1].kind, outcomes[1].status, outcomes[1].entries) == (
        OutcomeKind.duplicate,
        EntryStatus.exists,
        (),
    )
    assert outcomes[1].state is outcomes[0].state
    assert EntryStatus.exists.is_success()


def test_apply_rejects_when_same_event_id_has_different_payload():
    first = invoice("INV-1", lines=[("SUB", 100_00)])
    changed = invoice("INV-1", lines=[("SUB", 100_01)])
    _, outcomes = apply_all([first, changed])
    assert (outcomes[1].kind, outcomes[1].status) == (
        OutcomeKind.rejected,
        EntryStatus.exists_with_different_payload,
    )
    assert outcomes[1].state is outcomes[0].state


def test_apply_leaves_state_unchanged_and_forgets_id_when_event_is_rejected():
    state, outcomes = apply_all(
        [invoice("INV-1", lines=[("SUB", 10_00)]), write_off("INV-1", 20_00)]
    )
    assert outcomes[1].state is outcomes[0].state
    assert "evt-wo-INV-1" not in state.seen
    again = apply(state, write_off("INV-1", 20_00), reference_data())
    assert again.status is EntryStatus.write_off_exceeds_amount_due  # re-evaluated, not deduped


def test_apply_returns_duplicate_when_held_event_arrives_again():
    state, outcomes = apply_all(
        [payment("PAY-1", [("INV-1", 10_00)]), payment("PAY-1", [("INV-1", 10_00)])]
    )
    assert outcomes[1].kind is OutcomeKind.duplicate
    assert len(state.held) == 1


def test_apply_raises_when_event_belongs_to_another_customer():
    with pytest.raises(InvariantViolation):
        apply(CustomerLedger("OTHER"), invoice("INV-1"), reference_data())


def test_apply_releases_held_events_in_arrival_order_when_invoice_arrives():
    state, outcomes = apply_all(
        [
            payment("PAY-1", [("INV-1", 30_00)]),
            refund("RF-1", "PAY-1", 10_00),  # waits on the payment, which waits on the invoice
            payment("PAY-2", [("INV-1", 20_00)]),
            invoice("INV-1", lines=[("SUB", 100_00)]),
        ]
    )
    assert [o.kind for o in outcomes] == [OutcomeKind.held] * 3 + [OutcomeKind.posted]
    assert outcomes[1].waiting_on == "payment:PAY-1"
    last = outcomes[3]
    assert [e.source_event_id for e in last.entries] == [
        "evt-inv-INV-1",
        "evt-pay-PAY-1",
        "evt-rf-RF-1",
        "evt-pay-PAY-2",
    ]
    assert last.released == ("evt-pay-PAY-1", "evt-rf-RF-1", "evt-pay-PAY-2")
    assert state.held == ()
    assert state.invoices["INV-1"].amount_due_minor == 100_00 - 30_00 + 10_00 - 20_00


def test_apply_reports_rejected_hold_with_token_when_released_event_fails():
    state = CustomerLedger(CUSTOMER)
    reference = reference_data()
    held = apply(
        state,
        payment("PAY-1", [("INV-1", 1_00)], currency="EUR"),
        reference,
        token=b"\x00kafka-bytes",
    )
    outcome = apply(held.state, invoice("INV-1"), reference)
    [rejected] = outcome.rejected_holds
    assert (rejected.status, rejected.token) == (EntryStatus.currency_mismatch, b"\x00kafka-bytes")
    assert outcome.state.held == ()


def test_retry_holds_posts_held_event_when_fx_rate_arrives():
    records = [r for r in base_records() if r.event_type != "fx.rate"]
    reference = reference_data(*records, base=False)
    state, [outcome] = apply_all([invoice("INV-E", currency="EUR")], reference)
    assert outcome.waiting_on == "fx:EUR/USD@2024-01-15"
    assert retry_holds(state, reference).entries == ()
    release = retry_holds(
        state, reference.with_record(fx("EUR", "USD", "1.5", dt.date(2024, 1, 14)))
    )
    assert release.released == ("evt-inv-INV-E",)
    assert release.entries[0].lines[0].functional_amount_minor == 150_00
    assert release.state.held == ()


def test_retry_holds_posts_invoice_when_product_mapping_arrives():
    reference = reference_data()
    state, _ = apply_all([invoice("INV-1", lines=[("NEW", 10_00)])], reference)
    release = retry_holds(state, reference.with_record(product("NEW", "services")))
    assert release.entries[0].lines[1].dimension("product_family") == "services"


def test_expire_holds_returns_orphan_when_invoice_never_arrives():
    state, _ = apply_all(
        [
            payment(
                "PAY-1",
                [("INV-1", 1_00)],
                on=dt.date(2024, 1, 15),
            )
        ]
    )
    kept, expired = expire_holds(state, dt.date(2024, 1, 22), timeout_days=5)
    assert (kept, expired) == (state, [])  # Mon 15th -> Mon 22nd: 5 business days
    gone, [hold] = expire_holds(state, dt.date(2024, 1, 23), timeout_days=5)
    assert (hold.reason, hold.waiting_on, gone.held) == (
        EntryStatus.orphan_event,
        "invoice:INV-1",
        (),
    )


def test_expire_holds_returns_fx_rate_missing_when_rate_never_arrives():
    records = [r for r in base_records() if r.event_type != "fx.rate"]
    state, _ = apply_all([invoice("INV-E", currency="EUR")], reference_data(*records, base=False))
    _, [hold] = expire_holds(state, dt.date(2024, 3, 1), timeout_days=10)
    assert hold.reason is EntryStatus.fx_rate_missing


def test_apply_rejects_amount_overflows_when_converted_amount_exceeds_64_bits():
    # 1 JPY = 0.0025 KWD = 2.5 fils: half the largest long in yen is 1.25 times too many fils
    reference = reference_data(entity("KW1", "KWD"), fx("JPY", "KWD", "0.0025"))
    _, [outcome] = apply_all(
        [invoice("INV-K", lines=[("SUB", MAX_MINOR // 2)], currency="JPY", entity_name="KW1")],
        reference,
    )
    assert outcome.status is EntryStatus.amount_overflows


def test_state_round_trips_through_json_when_holds_and_items_exist():
    state, _ = apply_all(
        [
            invoice("INV-E", currency="EUR", lines=[("SUB", 100_00)], tax=5_00),
            payment("PAY-1", [("INV-E", 50_00)], currency="EUR", amount=60_00),
            refund("RF-9", "PAY-9", 1_00),
        ]
    )
    state = apply(state, refund("RF-8", "PAY-8", 1_00), reference_data(), token=b"\xff\x00").state
    data = state_to_json(state)
    assert state_from_json(data) == state
    assert state_to_json(state_from_json(data)) == data
    assert state_from_json(data).held[1].token == b"\xff\x00"


def test_state_from_json_raises_when_a_float_is_present():
    data = state_to_json(CustomerLedger(CUSTOMER)).replace(
        b'"next_hold_sequence":0', b'"next_hold_sequence":0.0'
    )
    with pytest.raises(StateDecodeError, match="float"):
        state_from_json(data)


def test_entry_round_trips_through_dict_when_encoded():
    _, [outcome] = apply_all([invoice("INV-1", tax=1_00)])
    [entry] = outcome.entries
    assert entry_from_dict(entry_to_dict(entry)) == entry
