"""Posting rules for invoices, voids, credit notes and write-offs: exact lines."""

import datetime as dt

from connectors.simulation.builders import (
    CUSTOMER,
    EU,
    apply_all,
    credit_note,
    entity,
    fx,
    invoice,
    payment,
    period_closed,
    product,
    reference_data,
    rows,
    void,
    write_off,
)
from ledger.book import LedgerRules, OutcomeKind, apply
from ledger.results import EntryStatus
from ledger.state import CustomerLedger

AR, DEF, TAX = "accounts_receivable", "deferred_revenue", "tax_payable"
UNBILLED, CONTRA, CC = "unbilled_receivable", "contra_revenue", "customer_credit"
DR, CR = "debit", "credit"


def test_invoice_posts_ar_tax_and_deferred_when_issued():
    state, [outcome] = apply_all(
        [invoice("INV-1", lines=[("SUB", 100_00), ("SVC", 50_00)], tax=15_00)]
    )
    [entry] = outcome.entries
    assert entry.entry_id == "evt-inv-INV-1:invoice_issued:0"
    assert rows(entry) == [
        (AR, DR, 165_00, 165_00),
        (TAX, CR, 15_00, 15_00),
        (DEF, CR, 100_00, 100_00),
        (DEF, CR, 50_00, 50_00),
    ]
    assert entry.lines[2].dimension("product_family") == "subscription"
    assert entry.lines[3].dimension("product_family") == "services"
    item = state.invoices["INV-1"]
    assert (item.gross_minor, item.tax_minor, item.amount_due_minor) == (165_00, 15_00, 165_00)


def test_invoice_credits_unbilled_ar_when_revenue_was_recognised_before_billing():
    event = invoice("INV-1", lines=[("SUB", 100_00)], obligations=["OB-1"])
    outcome = apply(
        CustomerLedger(CUSTOMER), event, reference_data(), recognized_to_date={"K1": 30_00}
    )
    assert rows(outcome.entries[0]) == [
        (AR, DR, 100_00, 100_00),
        (DEF, CR, 70_00, 70_00),
        (UNBILLED, CR, 30_00, 30_00),
    ]
    assert outcome.state.billed_by_contract == {"K1": 100_00}


def test_invoice_posts_whole_yen_when_currency_has_zero_decimals():
    reference = reference_data(entity("JP1", "JPY"))
    _, [outcome] = apply_all(
        [invoice("INV-J", lines=[("SUB", 12_345)], tax=1_234, currency="JPY", entity_name="JP1")],
        reference,
    )
    assert rows(outcome.entries[0]) == [
        (AR, DR, 13_579, 13_579),
        (TAX, CR, 1_234, 1_234),
        (DEF, CR, 12_345, 12_345),
    ]


def test_invoice_converts_at_rate_of_issue_date_when_currency_is_foreign():
    reference = reference_data(fx("EUR", "USD", "1.2345", dt.date(2024, 1, 10)))
    _, [outcome] = apply_all(
        [invoice("INV-E", lines=[("SUB", 100_01), ("SVC", 1)], currency="EUR")], reference
    )
    # total 100.02 EUR * 1.2345 = 123.474... -> 123.47 USD, split by allocate 100.01 : 0.01
    assert rows(outcome.entries[0]) == [
        (AR, DR, 100_02, 123_47),
        (DEF, CR, 100_01, 123_46),
        (DEF, CR, 1, 1),
    ]
    assert outcome.entries[0].functional_currency == "USD"


def test_invoice_posts_to_first_open_period_when_dated_in_closed_period():
    reference = reference_data(period_closed("2024-01"))
    _, [outcome] = apply_all([invoice("INV-1", on=dt.date(2024, 1, 20))], reference)
    [entry] = outcome.entries
    assert (entry.posting_date, entry.period, entry.original_date) == (
        dt.date(2024, 2, 1),
        "2024-02",
        dt.date(2024, 1, 20),
    )
    assert all(line.dimension("original_date") == "2024-01-20" for line in entry.lines)


def test_invoice_is_held_when_product_mapping_is_missing():
    _, [outcome] = apply_all([invoice("INV-1", lines=[("NEW", 10_00)])])
    assert (outcome.kind, outcome.status, outcome.waiting_on) == (
        OutcomeKind.held,
        EntryStatus.unknown_product,
        "product:NEW",
    )


def test_invoice_is_rejected_when_invoice_id_was_issued_by_another_event():
    _, outcomes = apply_all([invoice("INV-1"), invoice("INV-1", event_id="other")])
    assert outcomes[1].status is EntryStatus.invoice_exists


def test_void_reverses_invoice_when_nothing_was_applied():
    state, outcomes = apply_all(
        [invoice("INV-1", lines=[("SUB", 100_00)], tax=10_00), void("INV-1")]
    )
    assert rows(outcomes[1].entries[0]) == [
        (AR, CR, 110_00, 110_00),
        (TAX, DR, 10_00, 10_00),
        (DEF, DR, 100_00, 100_00),
    ]
    assert state.invoices["INV-1"].voided
    assert state.balance("US1", "accounts_receivable", "USD").net_minor("accounts_receivable") == 0


def test_void_is_rejected_when_invoice_has_applications():
    _, outcomes = apply_all([invoice("INV-1"), payment("PAY-1", [("INV-1", 10_00)]), void("INV-1")])
    assert outcomes[2].status is EntryStatus.invoice_has_applications
    assert "INV-1" in outcomes[2].message


def test_void_is_held_when_invoice_has_not_arrived():
    _, [outcome] = apply_all([void("INV-9")])
    assert (outcome.kind, outcome.waiting_on) == (OutcomeKind.held, "invoice:INV-9")


def test_credit_note_reduces_ar_and_deferred_when_invoice_is_unpaid():
    _, outcomes = apply_all(
        [
            invoice("INV-1", lines=[("SUB", 100_00)], tax=10_00),
            credit_note("CN-1", "INV-1", lines=[("INV-1-L1", 40_00)], tax=4_00),
        ]
    )
    assert rows(outcomes[1].entries[0]) == [
        (TAX, DR, 4_00, 4_00),
        (DEF, DR, 40_00, 40_00),
        (AR, CR, 44_00, 44_00),
    ]


def test_credit_note_on_a_contract_line_reverses_revenue_then_lowers_the_position():
    reference = reference_data()
    state = apply(
        CustomerLedger(CUSTOMER),
        invoice("INV-1", lines=[("SUB", 100_00)], obligations=["OB-1"]),
        reference,
        recognized_to_date={"K1": 25_00},
    ).state
    # Billed 100, recognised 95 by now: the contract is a 5.00 liability.
    rules = LedgerRules(recognized_to_date={"K1": 95_00}, credit_to_revenue={"INV-1-L1": 4_00})
    credit = credit_note("CN-1", "INV-1", lines=[("INV-1-L1", 10_00)])
    outcome = apply(state, credit, reference, rules=rules)
    assert rows(outcome.entries[0]) == [
        (CONTRA, DR, 4_00, 4_00),
        (DEF, DR, 5_00, 5_00),
        (UNBILLED, DR, 1_00, 1_00),
        (AR, CR, 10_00, 10_00),
    ]
    assert outcome.state.billed_by_contract == {"K1": 90_00}


def test_credit_note_goes_to_customer_credit_when_invoice_was_paid():
    state, outcomes = apply_all(
        [
            invoice("INV-1", lines=[("SUB", 100_00)]),
            payment("PAY-1", [("INV-1", 80_00)]),
            credit_note("CN-1", "INV-1", lines=[("INV-1-L1", 50_00)]),
        ]
    )
    assert rows(outcomes[2].entries[0]) == [
        (DEF, DR, 50_00, 50_00),
        (AR, CR, 20_00, 20_00),
        (CC, CR, 30_00, 30_00),
    ]
    assert state.invoices["INV-1"].amount_due_minor == 0


def test_credit_note_is_rejected_when_it_exceeds_the_invoice_line():
    _, outcomes = apply_all(
        [
            invoice("INV-1", lines=[("SUB", 100_00)]),
            credit_note("CN-1", "INV-1", lines=[("INV-1-L1", 100_01)]),
        ]
    )
    assert outcomes[1].status is EntryStatus.credit_exceeds_invoice


def test_credit_note_is_rejected_when_line_is_not_on_invoice():
    _, outcomes = apply_all(
        [invoice("INV-1"), credit_note("CN-1", "INV-1", lines=[("INV-1-L9", 1_00)])]
    )
    assert outcomes[1].status is EntryStatus.unknown_invoice_line


def test_credit_note_is_rejected_when_currency_differs_from_invoice():
    _, outcomes = apply_all(
        [invoice("INV-1"), credit_note("CN-1", "INV-1", currency="EUR", lines=[("INV-1-L1", 1_00)])]
    )
    assert outcomes[1].status is EntryStatus.currency_mismatch


def test_credit_note_relieves_ar_at_invoice_functional_when_invoice_is_foreign():
    reference = reference_data(fx("EUR", "USD", "1.3", dt.date(2024, 1, 20)))
    _, outcomes = apply_all(
        [
            invoice("INV-E", currency="EUR", lines=[("SUB", 100_00)]),
            credit_note(
                "CN-1",
                "INV-E",
                currency="EUR",
                lines=[("INV-E-L1", 100_00)],
                on=dt.date(2024, 1, 25),
            ),
        ],
        reference,
    )
    # issued at 1.10 on 2024-01-15: the credit note gives back exactly 110.00 USD
    assert rows(outcomes[1].entries[0]) == [(DEF, DR, 100_00, 110_00), (AR, CR, 100_00, 110_00)]


def test_write_off_moves_amount_due_to_bad_debt_when_within_amount_due():
    state, outcomes = apply_all(
        [
            invoice("INV-1", lines=[("SUB", 100_00)]),
            payment("PAY-1", [("INV-1", 60_00)]),
            write_off("INV-1", 40_00),
        ]
    )
    assert rows(outcomes[2].entries[0]) == [("bad_debt", DR, 40_00, 40_00), (AR, CR, 40_00, 40_00)]
    assert state.invoices["INV-1"].amount_due_minor == 0


def test_write_off_is_rejected_when_above_amount_due():
    _, outcomes = apply_all([invoice("INV-1", lines=[("SUB", 100_00)]), write_off("INV-1", 100_01)])
    assert outcomes[1].status is EntryStatus.write_off_exceeds_amount_due


def test_invoice_is_rejected_when_entity_is_unknown():
    _, [outcome] = apply_all([invoice("INV-1", entity_name="NOPE")])
    assert (outcome.kind, outcome.status) == (OutcomeKind.rejected, EntryStatus.unknown_entity)


def test_invoice_is_rejected_when_currency_passes_wire_check_but_is_unknown():
    _, [outcome] = apply_all([invoice("INV-1", currency="ABC")])
    assert outcome.status is EntryStatus.unknown_currency


def test_invoice_in_eur_entity_needs_no_rate_when_currency_is_functional():
    _, [outcome] = apply_all(
        [invoice("INV-1", currency="EUR", entity_name=EU)], reference_data(product("X"), base=True)
    )
    assert outcome.entries[0].functional_currency == "EUR"
    assert rows(outcome.entries[0]) == [(AR, DR, 100_00, 100_00), (DEF, CR, 100_00, 100_00)]
