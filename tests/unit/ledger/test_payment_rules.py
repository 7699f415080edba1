"""Posting rules for payments, refunds, disputes, payouts, usage and customers."""

import datetime as dt

from connectors.simulation.builders import (
    apply_all,
    credit_note,
    customer_upserted,
    dispute,
    fx,
    invoice,
    payment,
    payment_failed,
    payout,
    reference_data,
    refund,
    rows,
    usage,
)
from ledger.book import OutcomeKind
from ledger.results import EntryStatus

AR, CASH, CC, FEES = "accounts_receivable", "cash_clearing", "customer_credit", "processor_fees"
FX = "realized_fx"
DR, CR = "debit", "credit"
FEB = dt.date(2024, 2, 1)


def test_payment_relieves_ar_when_it_pays_the_invoice_in_full():
    state, outcomes = apply_all(
        [invoice("INV-1", lines=[("SUB", 100_00)]), payment("PAY-1", [("INV-1", 100_00)])]
    )
    assert rows(outcomes[1].entries[0]) == [(CASH, DR, 100_00, 100_00), (AR, CR, 100_00, 100_00)]
    assert state.invoices["INV-1"].paid


def test_payment_leaves_amount_due_when_it_is_partial():
    state, outcomes = apply_all(
        [invoice("INV-1", lines=[("SUB", 100_00)]), payment("PAY-1", [("INV-1", 30_00)])]
    )
    assert rows(outcomes[1].entries[0]) == [(CASH, DR, 30_00, 30_00), (AR, CR, 30_00, 30_00)]
    item = state.invoices["INV-1"]
    assert (item.amount_due_minor, item.paid, item.applications) == (
        70_00,
        False,
        (("PAY-1", 30_00),),
    )


def test_payment_credits_customer_credit_when_application_exceeds_amount_due():
    state, outcomes = apply_all(
        [
            invoice("INV-1", lines=[("SUB", 100_00)]),
            payment("PAY-1", [("INV-1", 90_00)]),
            payment("PAY-2", [("INV-1", 25_00)]),
        ]
    )
    assert rows(outcomes[2].entries[0]) == [
        (CASH, DR, 25_00, 25_00),
        (AR, CR, 10_00, 10_00),
        (CC, CR, 15_00, 15_00),
    ]
    assert state.payments["PAY-2"].unapplied_minor == 15_00


def test_payment_credits_customer_credit_when_cash_is_unapplied_and_posts_fee():
    _, outcomes = apply_all(
        [
            invoice("INV-1", lines=[("SUB", 100_00)]),
            payment("PAY-1", [("INV-1", 100_00)], amount=120_00, fee=3_50),
        ]
    )
    assert rows(outcomes[1].entries[0]) == [
        (CASH, DR, 120_00, 120_00),
        (AR, CR, 100_00, 100_00),
        (CC, CR, 20_00, 20_00),
        (FEES, DR, 3_50, 3_50),
        (CASH, CR, 3_50, 3_50),
    ]


def test_payment_posts_yen_without_decimals_when_currency_is_jpy():
    from connectors.simulation.builders import entity

    reference = reference_data(entity("JP1", "JPY"))
    _, outcomes = apply_all(
        [
            invoice("INV-J", lines=[("SUB", 10_000)], currency="JPY", entity_name="JP1"),
            payment("PAY-J", [("INV-J", 3_333)], currency="JPY", entity_name="JP1", fee=99),
        ],
        reference,
    )
    assert rows(outcomes[1].entries[0]) == [
        (CASH, DR, 3_333, 3_333),
        (AR, CR, 3_333, 3_333),
        (FEES, DR, 99, 99),
        (CASH, CR, 99, 99),
    ]


def test_payment_posts_realized_fx_gain_when_foreign_invoice_is_paid_at_higher_rate():
    reference = reference_data(fx("EUR", "USD", "1.20", FEB))
    state, outcomes = apply_all(
        [
            invoice("INV-E", lines=[("SUB", 100_00)], currency="EUR"),  # 1.10 -> 110.00 USD
            payment("PAY-E", [("INV-E", 100_00)], currency="EUR", fee=3_00, on=FEB),
        ],
        reference,
    )
    assert rows(outcomes[1].entries[0]) == [
        (CASH, DR, 100_00, 120_00),
        (AR, CR, 100_00, 110_00),
        (FEES, DR, 3_00, 3_60),
        (CASH, CR, 3_00, 3_60),
        (FX, CR, 0, 10_00),
    ]
    ar = state.balance("US1", AR, "EUR")
    assert (ar.net_minor(AR), ar.functional_net_minor(AR)) == (0, 0)


def test_payment_posts_realized_fx_loss_when_partial_payments_at_lower_rate():
    reference = reference_data(fx("EUR", "USD", "1.00", FEB))
    state, outcomes = apply_all(
        [
            invoice("INV-E", lines=[("SUB", 100_01)], currency="EUR"),  # 110.01 USD
            payment("PAY-1", [("INV-E", 33_33)], currency="EUR", on=FEB),
            payment("PAY-2", [("INV-E", 66_68)], currency="EUR", on=FEB),
        ],
        reference,
    )
    # 33.33/100.01 of 110.01 = 36.6626 -> 36.66; the last payment relieves the rest: 73.35
    assert rows(outcomes[1].entries[0]) == [
        (CASH, DR, 33_33, 33_33),
        (AR, CR, 33_33, 36_66),
        (FX, DR, 0, 3_33),
    ]
    assert rows(outcomes[2].entries[0]) == [
        (CASH, DR, 66_68, 66_68),
        (AR, CR, 66_68, 73_35),
        (FX, DR, 0, 6_67),
    ]
    assert state.balance("US1", AR, "EUR").functional_net_minor(AR) == 0


def test_payment_is_held_when_fx_rate_is_missing():
    reference = reference_data(base=False)
    from connectors.simulation.builders import base_records

    records = [r for r in base_records() if r.event_type != "fx.rate"]
    reference = reference_data(*records, base=False)
    _, [outcome] = apply_all([invoice("INV-E", currency="EUR")], reference)
    assert (outcome.kind, outcome.status, outcome.waiting_on) == (
        OutcomeKind.held,
        EntryStatus.fx_rate_missing,
        "fx:EUR/USD@2024-01-15",
    )


def test_payment_is_rejected_when_currency_differs_from_invoice():
    _, outcomes = apply_all([invoice("INV-1"), payment("PAY-1", [("INV-1", 1_00)], currency="EUR")])
    assert outcomes[1].status is EntryStatus.currency_mismatch
    assert "'EUR'" in outcomes[1].message and "'USD'" in outcomes[1].message


def test_payment_is_rejected_when_invoice_is_already_settled():
    _, outcomes = apply_all(
        [
            invoice("INV-1", lines=[("SUB", 10_00)]),
            payment("PAY-1", [("INV-1", 10_00)]),
            payment("PAY-2", [("INV-1", 10_00)]),
        ]
    )
    assert outcomes[2].status is EntryStatus.invoice_already_settled


def test_payment_is_rejected_when_payment_id_was_settled_by_another_event():
    _, outcomes = apply_all(
        [payment("PAY-1", amount=5_00), payment("PAY-1", amount=5_00, event_id="again")]
    )
    assert outcomes[1].status is EntryStatus.payment_exists


def test_payment_failed_posts_nothing_when_applied():
    state, [outcome] = apply_all([payment_failed("PAY-F")])
    assert (outcome.kind, outcome.entries) == (OutcomeKind.posted, ())
    assert "evt-fail-PAY-F" in state.seen


def test_refund_takes_unapplied_cash_first_when_payment_had_some():
    state, outcomes = apply_all(
        [
            invoice("INV-1", lines=[("SUB", 100_00)]),
            payment("PAY-1", [("INV-1", 100_00)], amount=130_00),
            refund("RF-1", "PAY-1", 50_00),
        ]
    )
    assert rows(outcomes[2].entries[0]) == [
        (CC, DR, 30_00, 30_00),
        (AR, DR, 20_00, 20_00),
        (CASH, CR, 50_00, 50_00),
    ]
    assert state.invoices["INV-1"].amount_due_minor == 20_00
    assert state.payments["PAY-1"].refunded_minor == 50_00


def test_refund_uses_customer_credit_from_a_credit_note_when_the_invoice_was_paid():
    state, outcomes = apply_all(
        [
            invoice("INV-1", lines=[("SUB", 1200_00)]),
            payment("PAY-1", [("INV-1", 1200_00)]),
            credit_note("CN-1", "INV-1", lines=[("INV-1-L1", 604_93)]),
            refund("RF-1", "PAY-1", 604_93),
        ]
    )
    assert rows(outcomes[3].entries[0]) == [(CC, DR, 604_93, 604_93), (CASH, CR, 604_93, 604_93)]
    assert state.invoices["INV-1"].amount_due_minor == 0


def test_refund_is_held_when_payment_has_not_settled():
    _, [outcome] = apply_all([refund("RF-1", "PAY-9", 1_00)])
    assert (outcome.kind, outcome.waiting_on) == (OutcomeKind.held, "payment:PAY-9")


def test_refund_is_rejected_when_it_exceeds_the_payment():
    _, outcomes = apply_all([payment("PAY-1", amount=10_00), refund("RF-1", "PAY-1", 10_01)])
    assert outcomes[1].status is EntryStatus.refund_exceeds_payment


def test_dispute_lost_posts_chargeback_loss_and_fee_when_closed_lost():
    state, outcomes = apply_all(
        [payment("PAY-1", amount=50_00), dispute("DP-1", "PAY-1", 50_00, outcome="lost", fee=15_00)]
    )
    [entry] = outcomes[1].entries
    assert entry.rule == "dispute_lost"
    assert rows(entry) == [
        ("chargeback_loss", DR, 50_00, 50_00),
        (CASH, CR, 50_00, 50_00),
        (FEES, DR, 15_00, 15_00),
        (CASH, CR, 15_00, 15_00),
    ]
    assert state.payments["PAY-1"].refundable_minor == 0


def test_dispute_won_posts_fee_only_when_fee_is_charged():
    _, outcomes = apply_all(
        [
            payment("PAY-1", amount=50_00),
            dispute("DP-1", "PAY-1", 50_00, outcome="won", fee=15_00),
            dispute("DP-2", "PAY-1", 50_00, outcome="won"),
        ]
    )
    assert rows(outcomes[1].entries[0]) == [(FEES, DR, 15_00, 15_00), (CASH, CR, 15_00, 15_00)]
    assert (outcomes[2].kind, outcomes[2].entries) == (OutcomeKind.posted, ())


def test_dispute_is_rejected_when_it_exceeds_what_is_left_of_the_payment():
    _, outcomes = apply_all(
        [
            payment("PAY-1", amount=50_00),
            refund("RF-1", "PAY-1", 40_00),
            dispute("DP-1", "PAY-1", 20_00),
        ]
    )
    assert outcomes[2].status is EntryStatus.dispute_exceeds_payment


def test_payout_moves_cash_clearing_to_bank_when_paid():
    _, [outcome] = apply_all([payout("PO-1", 500_00)])
    assert rows(outcome.entries[0]) == [("bank", DR, 500_00, 500_00), (CASH, CR, 500_00, 500_00)]


def test_usage_posts_unbilled_ar_and_usage_revenue_when_priced():
    _, [outcome] = apply_all([usage("U-1", 7_25)])
    [entry] = outcome.entries
    assert rows(entry) == [("unbilled_receivable", DR, 7_25, 7_25), ("revenue", CR, 7_25, 7_25)]
    assert entry.lines[1].dimension("product_family") == "usage"


def test_usage_posts_nothing_when_amount_is_zero():
    _, [outcome] = apply_all([usage("U-1", 0)])
    assert (outcome.kind, outcome.entries) == (OutcomeKind.posted, ())


def test_customer_upserted_posts_nothing_when_applied():
    _, [outcome] = apply_all([customer_upserted()])
    assert (outcome.kind, outcome.status, outcome.entries) == (
        OutcomeKind.posted,
        EntryStatus.ok,
        (),
    )
