"""JournalEntry invariants and functional conversion that keeps entries balanced."""

import datetime as dt
from decimal import Decimal

import pytest

from ledger.accounts import Account, Side
from ledger.drafts import EntryHeader, LineSpec, build_entry
from ledger.entries import JournalEntry, JournalLine, make_entry_id
from ledger.errors import InvariantViolation

DAY = dt.date(2024, 1, 15)


def line(no, account, side, amount, functional=None, currency="USD"):
    return JournalLine(
        no, account, side, amount, currency, amount if functional is None else functional
    )


def entry(*lines, entry_id="E1:r:0"):
    return JournalEntry(
        entry_id, "US1", "C1", "E1", "t", "r", 0, DAY, DAY, "2024-01", "USD", "test", tuple(lines)
    )


def header(functional="USD"):
    return EntryHeader("US1", "C1", "E1", "t", "r", 0, DAY, DAY, functional, "test")


def test_entry_id_is_source_rule_sequence_when_made():
    assert make_entry_id("evt-1", "payment_settled", 0) == "evt-1:payment_settled:0"


def test_entry_is_valid_when_balanced_in_both_amounts():
    made = entry(
        line(1, Account.bank, Side.debit, 5), line(2, Account.cash_clearing, Side.credit, 5)
    )
    assert made.currencies() == ("USD",)


def test_entry_raises_when_transaction_amounts_do_not_balance():
    with pytest.raises(InvariantViolation, match="debits 5 != credits 4"):
        entry(line(1, Account.bank, Side.debit, 5), line(2, Account.cash_clearing, Side.credit, 4))


def test_entry_raises_when_functional_amounts_do_not_balance():
    with pytest.raises(InvariantViolation, match="functional debits"):
        entry(
            line(1, Account.bank, Side.debit, 5, 6),
            line(2, Account.cash_clearing, Side.credit, 5, 5),
        )


def test_entry_raises_when_it_has_one_line():
    with pytest.raises(InvariantViolation, match="at least 2"):
        entry(line(1, Account.bank, Side.debit, 0, 1))


def test_entry_raises_when_id_is_not_deterministic():
    with pytest.raises(InvariantViolation, match="id must be"):
        entry(
            line(1, Account.bank, Side.debit, 5),
            line(2, Account.cash_clearing, Side.credit, 5),
            entry_id="random",
        )


def test_line_raises_when_both_amounts_are_zero():
    with pytest.raises(InvariantViolation, match="must be > 0"):
        line(1, Account.bank, Side.debit, 0, 0)


def test_line_raises_when_amount_is_negative():
    with pytest.raises(InvariantViolation, match="amount_minor must be >= 0"):
        line(1, Account.bank, Side.debit, -1)


def test_line_raises_when_currency_is_unknown():
    with pytest.raises(InvariantViolation, match="unknown currency"):
        line(1, Account.bank, Side.debit, 1, currency="ABC")


def test_line_raises_when_dimensions_are_unsorted():
    with pytest.raises(InvariantViolation, match="sorted"):
        JournalLine(1, Account.bank, Side.debit, 1, "USD", 1, (("b", "1"), ("a", "2")))


def test_realized_fx_line_balances_functional_when_transaction_amount_is_zero():
    made = entry(
        line(1, Account.cash_clearing, Side.debit, 100, 120, "EUR"),
        line(2, Account.accounts_receivable, Side.credit, 100, 110, "EUR"),
        line(3, Account.realized_fx, Side.credit, 0, 10, "EUR"),
    )
    assert made.lines[2].amount_minor == 0


def test_build_entry_converts_total_once_when_lines_would_round_apart():
    # three lines of 1 cent at 1.5: converting each gives 2+2+2=6 on the credit side,
    # converting the total gives 4.5 -> 4 (half even) split 2/1/1: the entry still balances
    specs = [
        LineSpec(Account.accounts_receivable, Side.debit, 3),
        LineSpec(Account.deferred_revenue, Side.credit, 1),
        LineSpec(Account.deferred_revenue, Side.credit, 1),
        LineSpec(Account.tax_payable, Side.credit, 1),
    ]
    made = build_entry(header(), "EUR", specs, Decimal("1.5"))
    assert [ln.functional_amount_minor for ln in made.lines] == [4, 2, 1, 1]


def test_build_entry_adds_realized_fx_loss_when_fixed_side_is_larger():
    specs = [
        LineSpec(Account.cash_clearing, Side.debit, 100),
        LineSpec(Account.accounts_receivable, Side.credit, 100, (), 130),
    ]
    made = build_entry(header(), "EUR", specs, Decimal("1.2"), fx_difference=True)
    assert [
        (ln.account, ln.side, ln.amount_minor, ln.functional_amount_minor) for ln in made.lines
    ] == [
        (Account.cash_clearing, Side.debit, 100, 120),
        (Account.accounts_receivable, Side.credit, 100, 130),
        (Account.realized_fx, Side.debit, 0, 10),
    ]


def test_build_entry_raises_when_fixed_amounts_on_both_sides_without_fx():
    specs = [
        LineSpec(Account.cash_clearing, Side.debit, 100, (), 1),
        LineSpec(Account.accounts_receivable, Side.credit, 100, (), 2),
    ]
    with pytest.raises(InvariantViolation):
        build_entry(header(), "EUR", specs, Decimal("1.2"))
