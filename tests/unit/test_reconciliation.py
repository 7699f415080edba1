"""The pure comparisons of reconciliation (ledger/reconciliation.py), worked out by hand."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.reconciliation import (
    AckFacts,
    BatchFacts,
    BreakKind,
    Cause,
    Check,
    EventFacts,
    Explanation,
    Movement,
    ReconKey,
    Status,
    break_id,
    check_acks,
    compare,
    differences,
    explanation_for,
    format_minor,
    reconcile,
    totals,
)

DAY = dt.date(2024, 3, 5)  # a Tuesday
ISSUED = ReconKey("US1", DAY, "USD", "invoice.issued")
DLQ = Explanation(Cause.dead_lettered, "unknown_product", "dead-lettered (unknown_product)")


def invoice(item: str, amount: int, key: ReconKey = ISSUED, **extra) -> Movement:
    return Movement(key, item, amount, event_type="invoice.issued", event_ids=(item,), **extra)


def posted(item: str, amount: int, key: ReconKey = ISSUED) -> Movement:
    return Movement(key, item, amount, event_ids=(item,), entry_ids=(f"{item}:invoice_issued:0",))


# --- billing and payments -----------------------------------------------------------------


def test_reconcile_finds_nothing_when_every_event_posted_its_amount():
    expected = [invoice("ev-1", 100_00), invoice("ev-2", 50_00)]
    actual = [posted("ev-1", 100_00), posted("ev-2", 50_00)]
    assert reconcile(BreakKind.billing_vs_ar, expected, actual) == []


def test_break_is_explained_when_the_missing_event_is_in_the_dlq():
    # The module docstring's example: 150.00 billed, 100.00 in AR, ev-2 dead-lettered.
    expected = [invoice("ev-1", 100_00), invoice("ev-2", 50_00, customer_id="C1")]
    (found,) = reconcile(BreakKind.billing_vs_ar, expected, [posted("ev-1", 100_00)], {"ev-2": DLQ})
    assert found.status is Status.explained
    assert (found.expected_minor, found.actual_minor, found.explained_minor) == (
        150_00,
        100_00,
        50_00,
    )
    assert found.unexplained_minor == 0
    assert found.break_id == "billing_vs_ar:US1:2024-03-05:USD:invoice.issued"
    assert found.event_ids == ("ev-2",) and found.customer_id == "C1"
    assert "ev-2 (invoice.issued) expected 50.00 actual 0.00" in found.details
    assert "dead-lettered (unknown_product)" in found.details


def test_break_is_open_when_nothing_explains_the_missing_amount():
    expected = [invoice("ev-1", 100_00), invoice("ev-2", 50_00)]
    (found,) = reconcile(BreakKind.billing_vs_ar, expected, [posted("ev-1", 100_00)])
    assert found.status is Status.open and found.unexplained_minor == 50_00
    assert [item.item for item in found.items] == ["ev-2"]
    assert found.items[0].moved_nothing and "no entry" in found.details


def test_dlq_record_does_not_explain_an_event_that_posted_a_wrong_amount():
    # ev-1 posted 90.00 of its 100.00: a DLQ record of an earlier copy cannot account for it.
    (found,) = reconcile(
        BreakKind.billing_vs_ar, [invoice("ev-1", 100_00)], [posted("ev-1", 90_00)], {"ev-1": DLQ}
    )
    assert found.status is Status.open and found.explained_minor == 0
    assert found.items[0].explanation is None
    assert found.entry_ids == ("ev-1:invoice_issued:0",)


def test_break_is_open_when_an_explained_event_sits_beside_an_unexplained_one():
    expected = [invoice("ev-1", 100_00), invoice("ev-2", 50_00), invoice("ev-3", 20_00)]
    (found,) = reconcile(BreakKind.billing_vs_ar, expected, [posted("ev-1", 100_00)], {"ev-2": DLQ})
    assert found.status is Status.open
    assert (found.explained_minor, found.unexplained_minor) == (50_00, 20_00)
    assert "explained 50.00, unexplained 20.00" in found.details


def test_entries_without_a_document_are_a_break_on_the_actual_side():
    key = ReconKey("US1", DAY, "EUR", "payment.settled")
    found = reconcile(BreakKind.payments_vs_cash_clearing, [], [posted("ev-9", 97_00, key)])
    assert [(f.expected_minor, f.actual_minor, f.status) for f in found] == [
        (0, 97_00, Status.open)
    ]


def test_each_key_is_compared_on_its_own_when_days_and_currencies_differ():
    other_day = ReconKey("US1", DAY + dt.timedelta(days=1), "USD", "invoice.issued")
    in_euros = ReconKey("US1", DAY, "EUR", "invoice.issued")
    expected = [
        invoice("ev-1", 100_00),
        invoice("ev-2", 10_00, other_day),
        invoice("ev-3", 5, in_euros),
    ]
    actual = [posted("ev-1", 100_00), posted("ev-2", 10_00, other_day), posted("ev-3", 4, in_euros)]
    (found,) = reconcile(BreakKind.billing_vs_ar, expected, actual)
    assert found.key == in_euros and found.items[0].item == "ev-3"


def test_compare_gives_nothing_when_totals_agree_even_if_items_net_out():
    # The comparison is of totals per key (the brief's contract): offsetting items hide.
    expected = [invoice("ev-1", 100_00), invoice("ev-2", 50_00)]
    actual = [posted("ev-1", 120_00), posted("ev-2", 30_00)]
    assert len(differences(expected, actual)) == 2
    assert compare(BreakKind.billing_vs_ar, totals(expected), totals(actual)) == []


def test_counts_are_compared_when_asked_so_a_line_pair_netting_to_zero_is_seen():
    ar = ReconKey("US1", DAY, "USD", "accounts_receivable")
    topic = [Movement(ar, "e-1", 0, count=2), Movement(ar, "e-2", 100_00, count=1)]
    database = [Movement(ar, "e-2", 100_00, count=1)]
    assert reconcile(BreakKind.projection_vs_entries, topic, database) == []
    (found,) = reconcile(BreakKind.projection_vs_entries, topic, database, counts=True)
    assert (found.expected_count, found.actual_count) == (3, 1)  # lines: 2 + 1 against 1
    assert [item.item for item in found.items] == ["e-1"] and "(3 vs 1 counted)" in found.details


def test_break_kinds_belong_to_their_checks():
    assert BreakKind.billing_vs_ar.check is Check.billing
    assert BreakKind.erp_ack_rejected.check is Check.acks
    assert {kind.check for kind in BreakKind} == set(Check)


def test_break_id_is_readable_and_hashed_only_when_too_long():
    assert break_id(BreakKind.erp_ack_missing, ReconKey("US1", DAY, "USD", "US1/p0/3")) == (
        "erp_ack_missing:US1:2024-03-05:USD:US1/p0/3"
    )
    long = break_id(BreakKind.billing_vs_ar, ReconKey("US1", DAY, "USD", "x" * 300))
    assert len(long) <= 200 and long.startswith("billing_vs_ar:US1:2024-03-05:USD:")
    assert long == break_id(BreakKind.billing_vs_ar, ReconKey("US1", DAY, "USD", "x" * 300))


def test_format_minor_uses_the_currency_decimals_and_keeps_the_sign():
    assert format_minor(-12345, "USD") == "-123.45"
    assert format_minor(1500, "JPY") == "1500"
    assert format_minor(1234, "KWD") == "1.234"
    assert format_minor(7, "ZZZ") == "7 minor units"


# --- why an event moved nothing ------------------------------------------------------------


def facts(**values) -> EventFacts:
    return EventFacts(**{"event_id": "ev-1", "business_date": dt.date(2024, 3, 1), **values})


def test_explanation_prefers_the_dlq_then_in_flight_then_a_presumed_hold():
    clock = dt.date(2024, 3, 4)
    dead = explanation_for(facts(dlq_reasons=("orphan_event",), dlq_message="waited"), clock, 7)
    assert dead == Explanation(
        Cause.dead_lettered, "orphan_event", "dead-lettered (orphan_event: waited)"
    )
    behind = explanation_for(facts(after_last_posted=True), clock, 7)
    assert behind is not None and behind.cause is Cause.in_flight
    held = explanation_for(facts(waiting_on="invoice:INV-9"), clock, 7)
    assert held is not None and held.cause is Cause.held
    assert (
        held.detail
        == "presumably held: 1 of 7 business days at 2024-03-04, waiting on invoice:INV-9"
    )


def test_event_missing_from_the_input_log_is_explained_only_by_a_dlq_record():
    clock = dt.date(2024, 3, 4)
    assert explanation_for(facts(known=False, business_date=None), clock, 7) is None
    assert explanation_for(facts(known=False, after_last_posted=True), clock, 7) is None
    dead = explanation_for(facts(known=False, dlq_reasons=("schema_invalid",)), clock, 7)
    assert dead is not None and dead.cause is Cause.dead_lettered


def test_presumed_hold_ends_when_the_clock_passes_the_hold_timeout_in_business_days():
    # Friday 2024-03-01: Mar 4-8 and 11-12 are 7 business days to Tuesday the 12th.
    assert explanation_for(facts(), dt.date(2024, 3, 12), 7) is not None
    assert explanation_for(facts(), dt.date(2024, 3, 13), 7) is None
    assert explanation_for(facts(), None, 7).detail.startswith("presumably held (no business clock")


# --- batches and acks ---------------------------------------------------------------------------


def batch(batch_id: str, day: dt.date = DAY) -> BatchFacts:
    return BatchFacts(batch_id, "US1", day, "USD", 1_000_00)


def ack(batch_id: str, status: str, offset: int, message: str | None = None) -> AckFacts:
    return AckFacts(batch_id, status, message, (0, offset))


def test_acks_break_when_a_batch_is_rejected_imported_twice_or_unanswered_too_long():
    batches = [batch(f"US1/p0/{n}", DAY - dt.timedelta(days=7)) for n in range(6)]
    acks = [
        ack("US1/p0/0", "imported", 1),
        ack("US1/p0/1", "imported", 2),
        ack("US1/p0/1", "imported", 3, "already imported"),  # a re-ack is no second import
        ack("US1/p0/2", "rejected", 4, "control_totals_mismatch: debits"),
        ack("US1/p0/3", "rejected", 5, "layout_refused"),
        ack("US1/p0/3", "imported", 6),  # re-sent after the fix: imported once
        ack("US1/p0/4", "imported", 8),
        ack("US1/p0/4", "imported", 9),
    ]
    found = check_acks(batches, acks, DAY, max_age_days=2)
    assert [(f.kind, f.key.reference, f.status) for f in found] == [
        (BreakKind.erp_ack_rejected, "US1/p0/2", Status.open),
        (BreakKind.erp_ack_duplicated, "US1/p0/4", Status.open),
        (BreakKind.erp_ack_missing, "US1/p0/5", Status.open),
    ]
    rejected, duplicated, missing = found
    assert "rejected at [0]@4: control_totals_mismatch: debits" in rejected.details
    assert (duplicated.expected_minor, duplicated.actual_minor) == (1_000_00, 2_000_00)
    assert (missing.expected_count, missing.actual_count) == (1, 0)
    assert "no answer from the ERP" in missing.details


def test_unanswered_batch_is_explained_while_within_the_ack_age():
    # Tuesday 2024-03-05 to Thursday the 7th: 2 business days.
    (waiting,) = check_acks([batch("US1/p1/0")], [], dt.date(2024, 3, 7), max_age_days=2)
    assert waiting.kind is BreakKind.erp_ack_missing and waiting.status is Status.explained
    assert waiting.items[0].explanation.cause is Cause.awaiting_erp
    (late,) = check_acks([batch("US1/p1/0")], [], dt.date(2024, 3, 8), max_age_days=2)
    assert late.status is Status.open


# --- properties ----------------------------------------------------------------------------

keys = st.builds(
    ReconKey,
    entity=st.sampled_from(["US1", "EU1"]),
    day=st.dates(dt.date(2024, 1, 1), dt.date(2024, 1, 5)),
    currency=st.sampled_from(["USD", "EUR", "JPY"]),
    reference=st.sampled_from(["invoice.issued", "credit_note.issued", "accounts_receivable"]),
)
movements = st.lists(
    st.builds(
        Movement,
        key=keys,
        item=st.sampled_from([f"ev-{n}" for n in range(8)]),
        amount_minor=st.integers(-(10**12), 10**12),
        count=st.integers(0, 3),
    ),
    max_size=25,
)


def agreeing_totals_never_break(side, counts):
    return reconcile(BreakKind.billing_vs_ar, side, list(side), counts=counts) == []


def one_perturbation_gives_one_break_naming_it(side, index, delta, counts):
    perturbed = list(side)
    target = perturbed[index]
    perturbed[index] = Movement(target.key, target.item, target.amount_minor + delta, target.count)
    found = reconcile(BreakKind.billing_vs_ar, side, perturbed, counts=counts)
    return (
        len(found) == 1
        and found[0].key == target.key
        and found[0].status is Status.open
        and [item.item for item in found[0].items] == [target.item]
        and found[0].actual_minor - found[0].expected_minor == delta
    )


@settings(derandomize=True, deadline=None, max_examples=200)
@given(movements, st.booleans())
def test_totals_that_agree_never_produce_a_break(side, counts):
    assert agreeing_totals_never_break(side, counts)


@settings(derandomize=True, deadline=None, max_examples=200)
@given(movements.filter(bool), st.data(), st.booleans())
def test_any_single_amount_perturbation_produces_exactly_one_break_naming_it(side, data, counts):
    index = data.draw(st.integers(0, len(side) - 1))
    delta = data.draw(st.integers(-(10**9), 10**9).filter(bool))
    assert one_perturbation_gives_one_break_naming_it(side, index, delta, counts)


@settings(derandomize=True, deadline=None, max_examples=200)
@given(movements.filter(bool), st.data())
def test_a_dropped_movement_produces_exactly_one_break_naming_it(side, data):
    index = data.draw(st.integers(0, len(side) - 1))
    target = side[index]
    rest = side[:index] + side[index + 1 :]
    same_slot = [m for m in side if (m.key, m.item) == (target.key, target.item)]
    found = reconcile(BreakKind.projection_vs_entries, side, rest, counts=True)
    if target.amount_minor == 0 and target.count == 0:
        assert found == []
        return
    assert len(found) == 1 and found[0].key == target.key
    # Other movements of the same item and key are merged with it into one item.
    assert [item.item for item in found[0].items] == [target.item], same_slot


# --- the entries topic's side (streams.recon, pure) -------------------------------------------


def test_entry_movements_group_an_entry_by_account_and_currency_within_the_scope():
    from streams.messages import JournalEntryPosted, JournalLine
    from streams.recon import entry_movements

    lines = [
        JournalLine(
            line_no=1,
            account="accounts_receivable",
            side="debit",
            amount_minor=110_00,
            currency="USD",
            functional_amount_minor=110_00,
        ),
        JournalLine(
            line_no=2,
            account="tax_payable",
            side="credit",
            amount_minor=10_00,
            currency="USD",
            functional_amount_minor=10_00,
        ),
        JournalLine(
            line_no=3,
            account="deferred_revenue",
            side="credit",
            amount_minor=60_00,
            currency="USD",
            functional_amount_minor=60_00,
        ),
        JournalLine(
            line_no=4,
            account="deferred_revenue",
            side="credit",
            amount_minor=40_00,
            currency="USD",
            functional_amount_minor=40_00,
        ),
    ]
    record = JournalEntryPosted(
        entry_id="ev-1:invoice_issued:0",
        entity="US1",
        customer_id="C1",
        source_event_id="ev-1",
        source_event_type="invoice.issued",
        rule="invoice_issued",
        sequence=0,
        posting_date=DAY,
        original_date=DAY,
        period="2024-03",
        functional_currency="USD",
        description="Invoice INV-1 issued",
        lines=tuple(lines),
    )
    found = entry_movements(record, "US1", DAY)
    assert [(m.key.reference, m.amount_minor, m.count) for m in found] == [
        ("accounts_receivable", 110_00, 1),
        ("deferred_revenue", -100_00, 2),
        ("tax_payable", -10_00, 1),
    ]
    assert found[0].event_ids == ("ev-1",) and found[0].entry_ids == ("ev-1:invoice_issued:0",)
    assert entry_movements(record, "EU1", None) == []
    assert entry_movements(record, None, DAY + dt.timedelta(days=1)) == []
