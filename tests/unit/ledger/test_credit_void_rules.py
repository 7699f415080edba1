"""Credit note voids in the ledger: the credit note's entry reversed, or a clear refusal."""

import dataclasses
import datetime as dt
import json

from connectors.simulation.builders import (
    CUSTOMER,
    apply_all,
    credit_note,
    credit_note_void,
    fx,
    invoice,
    payment,
    period_closed,
    reference_data,
    refund,
    rows,
    void,
    write_off,
)
from ledger.accounts import Account
from ledger.book import LedgerRules, OutcomeKind, apply
from ledger.codec import state_from_json, state_to_json
from ledger.results import EntryStatus
from ledger.state import CustomerLedger

AR, DEF, TAX = "accounts_receivable", "deferred_revenue", "tax_payable"
UNBILLED, CONTRA, CC = "unbilled_receivable", "contra_revenue", "customer_credit"
DR, CR = "debit", "credit"
LATER = dt.date(2024, 2, 10)


def swapped(entry_rows: list[tuple[str, str, int, int]]) -> list[tuple[str, str, int, int]]:
    """The rows of an entry with debit and credit swapped."""
    return [(account, CR if side == DR else DR, a, f) for account, side, a, f in entry_rows]


def nets(state: CustomerLedger) -> dict:
    """Net balance per (entity, account, currency), both amounts; zero balances left out."""
    out = {}
    for (entity, account, currency), balance in state.balances.items():
        pair = (balance.net_minor(account), balance.functional_net_minor(account))
        if pair != (0, 0):
            out[(entity, str(account), currency)] = pair
    return out


def test_void_posts_the_credit_note_entry_reversed_and_the_invoice_owes_it_again():
    alone, _ = apply_all([invoice("INV-1", lines=[("SUB", 100_00), ("SVC", 50_00)], tax=15_00)])
    state, outcomes = apply_all(
        [
            invoice("INV-1", lines=[("SUB", 100_00), ("SVC", 50_00)], tax=15_00),
            credit_note(
                "CN-1", "INV-1", lines=[("INV-1-L1", 40_00), ("INV-1-L2", 10_00)], tax=5_00
            ),
            credit_note_void("CN-1", "INV-1", on=LATER),
        ]
    )
    [credit], [voided] = outcomes[1].entries, outcomes[2].entries
    assert rows(voided) == swapped(rows(credit))
    assert rows(voided) == [
        (TAX, CR, 5_00, 5_00),
        (DEF, CR, 40_00, 40_00),
        (DEF, CR, 10_00, 10_00),
        (AR, DR, 55_00, 55_00),
    ]
    assert (voided.rule, voided.posting_date, voided.source_event_type) == (
        "credit_note_voided",
        LATER,
        "credit_note.voided",
    )
    assert voided.lines[1].dimension("credit_note_id") == "CN-1"
    assert voided.lines[1].dimension("invoice_line_id") == "INV-1-L1"
    item = state.invoices["INV-1"]
    assert (item.amount_due_minor, item.credits, item.voided_credits) == (165_00, (), ("CN-1",))
    assert [line.credited_minor for line in item.lines] == [0, 0]
    assert nets(state) == nets(alone)


def test_void_takes_back_the_customer_credit_of_a_note_on_a_paid_invoice():
    state, outcomes = apply_all(
        [
            invoice("INV-1", lines=[("SUB", 100_00)]),
            payment("PAY-1", [("INV-1", 80_00)]),
            credit_note("CN-1", "INV-1", lines=[("INV-1-L1", 50_00)]),
            credit_note_void("CN-1", "INV-1", on=LATER),
        ]
    )
    assert rows(outcomes[3].entries[0]) == [
        (DEF, CR, 50_00, 50_00),
        (AR, DR, 20_00, 20_00),
        (CC, DR, 30_00, 30_00),
    ]
    assert state.invoices["INV-1"].amount_due_minor == 20_00
    assert state.balance("US1", Account.customer_credit, "USD").net_minor(CC) == 0


def test_void_is_refused_when_the_customer_credit_it_gave_was_refunded():
    state, outcomes = apply_all(
        [
            invoice("INV-1", lines=[("SUB", 100_00)]),
            payment("PAY-1", [("INV-1", 100_00)]),
            credit_note("CN-1", "INV-1", lines=[("INV-1-L1", 30_00)]),
            refund("RF-1", "PAY-1", 30_00),
            credit_note_void("CN-1", "INV-1", on=LATER),
        ]
    )
    refused = outcomes[4]
    assert (refused.kind, refused.status) == (
        OutcomeKind.rejected,
        EntryStatus.credit_note_credit_used,
    )
    assert "gave 3000 USD of customer credit, and only 0 of credit" in refused.message
    assert refused.state is outcomes[3].state
    assert state.invoices["INV-1"].has_credit("CN-1")


def test_void_does_not_take_a_payments_unapplied_cash_for_credit_that_was_refunded():
    _, outcomes = apply_all(
        [
            invoice("INV-1", lines=[("SUB", 100_00)]),
            payment("PAY-1", [("INV-1", 100_00)]),
            credit_note("CN-1", "INV-1", lines=[("INV-1-L1", 30_00)]),
            refund("RF-1", "PAY-1", 30_00),
            # 50.00 overpaid: customer credit again, but it is PAY-2's, refundable as such.
            payment("PAY-2", amount=50_00, on=LATER),
            credit_note_void("CN-1", "INV-1", on=LATER),
        ]
    )
    assert outcomes[5].status is EntryStatus.credit_note_credit_used


def test_void_is_refused_when_the_invoice_was_written_off_after_the_note():
    _, outcomes = apply_all(
        [
            invoice("INV-1", lines=[("SUB", 100_00)]),
            credit_note("CN-1", "INV-1", lines=[("INV-1-L1", 30_00)]),
            write_off("INV-1", 70_00),
            credit_note_void("CN-1", "INV-1", on=LATER),
        ]
    )
    assert outcomes[3].status is EntryStatus.credit_note_after_write_off


def test_void_of_a_note_issued_after_a_partial_write_off_reopens_what_the_note_relieved():
    state, outcomes = apply_all(
        [
            invoice("INV-1", lines=[("SUB", 100_00)]),
            write_off("INV-1", 10_00),
            credit_note("CN-1", "INV-1", lines=[("INV-1-L1", 30_00)]),
            credit_note_void("CN-1", "INV-1", on=LATER),
        ]
    )
    assert outcomes[3].kind is OutcomeKind.posted
    assert state.invoices["INV-1"].amount_due_minor == 90_00


def test_void_waits_for_its_credit_note_and_is_released_when_it_arrives():
    state, outcomes = apply_all(
        [
            invoice("INV-1", lines=[("SUB", 100_00)]),
            credit_note_void("CN-1", "INV-1", on=LATER),
            credit_note("CN-1", "INV-1", lines=[("INV-1-L1", 30_00)]),
        ]
    )
    held = outcomes[1]
    assert (held.kind, held.status, held.waiting_on) == (
        OutcomeKind.held,
        EntryStatus.credit_note_missing,
        "credit_note:CN-1",
    )
    credit_entry, void_entry = outcomes[2].entries
    assert outcomes[2].released == ("evt-cnvoid-CN-1",)
    assert rows(void_entry) == swapped(rows(credit_entry))
    assert state.invoices["INV-1"].amount_due_minor == 100_00 and not state.held


def test_void_of_an_unknown_invoice_waits_for_the_credit_note():
    _, [outcome] = apply_all([credit_note_void("CN-9", "INV-9")])
    assert (outcome.kind, outcome.waiting_on) == (OutcomeKind.held, "credit_note:CN-9")


def test_second_void_of_the_same_note_changes_nothing():
    _, outcomes = apply_all(
        [
            invoice("INV-1", lines=[("SUB", 100_00)]),
            credit_note("CN-1", "INV-1", lines=[("INV-1-L1", 30_00)]),
            credit_note_void("CN-1", "INV-1", on=LATER),
            credit_note_void("CN-1", "INV-1", on=LATER),
            credit_note_void("CN-1", "INV-1", on=LATER, event_id="another-delivery"),
        ]
    )
    assert outcomes[3].kind is OutcomeKind.duplicate
    again = outcomes[4]
    assert (again.kind, again.entries) == (OutcomeKind.posted, ())
    assert again.state.balances == outcomes[2].state.balances
    assert again.state.invoices == outcomes[2].state.invoices


def test_invoice_can_be_voided_once_its_only_credit_note_was_voided():
    state, outcomes = apply_all(
        [
            invoice("INV-1", lines=[("SUB", 100_00)], tax=10_00),
            credit_note("CN-1", "INV-1", lines=[("INV-1-L1", 30_00)], tax=3_00),
            void("INV-1"),
            credit_note_void("CN-1", "INV-1", on=LATER),
            void("INV-1", event_id="void-again"),
        ]
    )
    assert outcomes[2].status is EntryStatus.invoice_has_applications
    assert outcomes[4].kind is OutcomeKind.posted
    assert nets(state) == {}


def test_void_in_a_closed_period_posts_in_the_first_open_period():
    reference = reference_data(period_closed("2024-02"))
    _, outcomes = apply_all(
        [
            invoice("INV-1", lines=[("SUB", 100_00)]),
            credit_note("CN-1", "INV-1", lines=[("INV-1-L1", 30_00)]),
            credit_note_void("CN-1", "INV-1", on=LATER),
        ],
        reference,
    )
    [entry] = outcomes[2].entries
    assert (entry.posting_date, entry.original_date) == (dt.date(2024, 3, 1), LATER)
    assert all(line.dimension("original_date") == LATER.isoformat() for line in entry.lines)


def test_void_of_a_foreign_invoice_reopens_ar_at_its_share_of_the_functional_gross():
    reference = reference_data(
        fx("EUR", "USD", "1.2345", dt.date(2024, 1, 10)), fx("EUR", "USD", "1.4", LATER)
    )
    events = [
        invoice("INV-E", currency="EUR", lines=[("SUB", 100_01), ("SVC", 33_33)], tax=7_77),
        credit_note(
            "CN-1", "INV-E", currency="EUR", lines=[("INV-E-L1", 33_33), ("INV-E-L2", 1_11)], tax=77
        ),
        credit_note_void("CN-1", "INV-E", on=LATER),
    ]
    alone, _ = apply_all(events[:1], reference)
    state, outcomes = apply_all(events, reference)
    assert rows(outcomes[2].entries[0]) == swapped(rows(outcomes[1].entries[0]))
    assert nets(state) == nets(alone)
    # The whole invoice still relieves to exactly zero functional AR afterwards.
    paid, _ = apply_all(
        [payment("PAY-1", [("INV-E", 141_11)], currency="EUR", on=LATER)], reference, state
    )
    assert paid.balance("US1", Account.accounts_receivable, "EUR").functional_net_minor(AR) == 0


def test_void_restores_contra_revenue_and_raises_the_position_from_where_it_is_now():
    reference = reference_data()
    state = apply(
        CustomerLedger(CUSTOMER),
        invoice("INV-1", lines=[("SUB", 100_00)], obligations=["OB-1"]),
        reference,
    ).state
    # Billed 100, recognised 95: a 5.00 liability. The credit reverses 4.00 of revenue,
    # relieves the 5.00 of deferred revenue and 1.00 more becomes unbilled AR.
    rules = LedgerRules(recognized_to_date={"K1": 95_00}, credit_to_revenue={"INV-1-L1": 4_00})
    credited = apply(
        state, credit_note("CN-1", "INV-1", lines=[("INV-1-L1", 10_00)]), reference, rules=rules
    )
    assert rows(credited.entries[0]) == [
        (CONTRA, DR, 4_00, 4_00),
        (DEF, DR, 5_00, 5_00),
        (UNBILLED, DR, 1_00, 1_00),
        (AR, CR, 10_00, 10_00),
    ]
    # Same position at the void (90 billed, 91 recognised): the exact reverse.
    same = LedgerRules(recognized_to_date={"K1": 91_00})
    voided = apply(
        credited.state, credit_note_void("CN-1", "INV-1", on=LATER), reference, rules=same
    )
    assert rows(voided.entries[0]) == swapped(rows(credited.entries[0]))
    assert voided.state.billed_by_contract == {"K1": 100_00}
    # Recognition went on to 93 meanwhile (a 3.00 asset): 3.00 back to unbilled AR, 3.00
    # to deferred revenue; the contract ends a 3.00 liability, never both.
    moved = LedgerRules(recognized_to_date={"K1": 93_00})
    voided = apply(
        credited.state, credit_note_void("CN-1", "INV-1", on=LATER), reference, rules=moved
    )
    assert rows(voided.entries[0]) == [
        (CONTRA, CR, 4_00, 4_00),
        (DEF, CR, 3_00, 3_00),
        (UNBILLED, CR, 3_00, 3_00),
        (AR, DR, 10_00, 10_00),
    ]


def test_state_keeps_credit_notes_through_its_json_and_reads_state_without_them():
    state, _ = apply_all(
        [
            invoice("INV-1", lines=[("SUB", 100_00)]),
            credit_note("CN-1", "INV-1", lines=[("INV-1-L1", 30_00)]),
            credit_note("CN-2", "INV-1", lines=[("INV-1-L1", 20_00)]),
            credit_note_void("CN-1", "INV-1", on=LATER),
        ]
    )
    assert state_from_json(state_to_json(state)) == state
    raw = json.loads(state_to_json(state))
    assert [n["credit_note_id"] for n in raw["invoices"][0]["credit_notes"]] == ["CN-2"]
    assert raw["invoices"][0]["voided_credits"] == ["CN-1"]
    # State written before credit notes were kept: no such keys.
    del raw["invoices"][0]["credit_notes"], raw["invoices"][0]["voided_credits"]
    old = state_from_json(json.dumps(raw))
    assert old.invoices["INV-1"].credit_notes == () and old.invoices["INV-1"].has_credit("CN-2")
    refused = apply(old, credit_note_void("CN-2", "INV-1", on=LATER), reference_data())
    assert refused.status is EntryStatus.credit_note_split_unknown
    assert "by hand" in refused.message


def test_invoice_without_credit_notes_keeps_its_state_bytes():
    state, _ = apply_all([invoice("INV-1", lines=[("SUB", 100_00)])])
    raw = json.loads(state_to_json(state))
    assert set(raw["invoices"][0]) == {
        "invoice_id",
        "entity",
        "currency",
        "issue_date",
        "due_date",
        "gross_minor",
        "tax_minor",
        "gross_functional_minor",
        "rate",
        "lines",
        "applications",
        "credits",
        "write_offs",
        "voided",
    }
    assert dataclasses.replace(state) == state_from_json(state_to_json(state))
