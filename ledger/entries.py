"""Journal entries and lines: frozen, balanced by construction, with deterministic ids.

Every line carries its transaction-currency amount and the entity's functional-currency
amount; both are non-negative and the side says which way they go. ``JournalEntry``
refuses to exist unless it balances per currency in BOTH amounts: a realized-FX line has
amount 0 in the transaction currency and only a functional amount, which is what lets an
FX difference balance the functional column without unbalancing the transaction column.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from ledger.accounts import Account, Side
from ledger.calendar import period_of
from ledger.errors import InvariantViolation, UnknownCurrency
from ledger.money import amount_overflows, exponent

Dimensions = tuple[tuple[str, str], ...]


def make_entry_id(source_event_id: str, rule: str, sequence: int) -> str:
    """Deterministic entry id: the same event, rule and sequence give the same id."""
    return f"{source_event_id}:{rule}:{sequence}"


def dimensions_of(values: Mapping[str, str | None]) -> Dimensions:
    """Sorted ``(key, value)`` pairs, dropping None values: a deterministic dimension set."""
    return tuple(sorted((key, value) for key, value in values.items() if value is not None))


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InvariantViolation(message)


def _require_currency(currency: str, where: str) -> None:
    try:
        exponent(currency)
    except UnknownCurrency as exc:
        raise InvariantViolation(f"{where}: unknown currency {currency!r}") from exc


@dataclass(frozen=True, slots=True)
class JournalLine:
    """One debit or credit of an entry, in transaction and functional currency."""

    line_no: int
    account: Account
    side: Side
    amount_minor: int
    currency: str
    functional_amount_minor: int
    dimensions: Dimensions = ()

    def __post_init__(self) -> None:
        where = f"line {self.line_no}"
        _require(isinstance(self.account, Account), f"{where}: account must be an Account")
        _require(isinstance(self.side, Side), f"{where}: side must be a Side")
        for name in ("line_no", "amount_minor", "functional_amount_minor"):
            _require(type(getattr(self, name)) is int, f"{where}: {name} must be an int")
        _require(self.line_no >= 1, f"{where}: line_no must be >= 1")
        _require(self.amount_minor >= 0, f"{where}: amount_minor must be >= 0")
        _require(self.functional_amount_minor >= 0, f"{where}: functional amount must be >= 0")
        _require(
            self.amount_minor > 0 or self.functional_amount_minor > 0,
            f"{where}: amount_minor or functional_amount_minor must be > 0",
        )
        _require(not amount_overflows(self.amount_minor), f"{where}: amount_minor overflows")
        _require(
            not amount_overflows(self.functional_amount_minor),
            f"{where}: functional_amount_minor overflows",
        )
        _require_currency(self.currency, where)
        keys = [key for key, _ in self.dimensions]
        _require(keys == sorted(set(keys)), f"{where}: dimensions must be sorted, unique keys")

    def dimension(self, key: str) -> str | None:
        """Value of dimension ``key`` on this line, or None."""
        return dict(self.dimensions).get(key)


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """A balanced set of lines posted for one source event by one rule."""

    entry_id: str
    entity: str
    customer_id: str
    source_event_id: str
    source_event_type: str
    rule: str
    sequence: int
    posting_date: dt.date
    original_date: dt.date
    period: str
    functional_currency: str
    description: str
    lines: tuple[JournalLine, ...]

    def __post_init__(self) -> None:
        where = f"entry {self.entry_id}"
        expected_id = make_entry_id(self.source_event_id, self.rule, self.sequence)
        _require(self.entry_id == expected_id, f"{where}: id must be {expected_id!r}")
        _require(isinstance(self.lines, tuple), f"{where}: lines must be a tuple")
        _require(len(self.lines) >= 2, f"{where}: needs at least 2 lines")
        numbers = [line.line_no for line in self.lines]
        _require(numbers == list(range(1, len(numbers) + 1)), f"{where}: line_no must be 1..n")
        _require(self.period == period_of(self.posting_date), f"{where}: period != posting date")
        _require_currency(self.functional_currency, where)
        _check_balanced(where, self.lines)

    def currencies(self) -> tuple[str, ...]:
        """Transaction currencies of the lines, sorted."""
        return tuple(sorted({line.currency for line in self.lines}))


def _check_balanced(where: str, lines: tuple[JournalLine, ...]) -> None:
    totals: dict[str, list[int]] = {}
    for line in lines:
        debit = line.side is Side.debit
        total = totals.setdefault(line.currency, [0, 0, 0, 0])
        total[0 if debit else 1] += line.amount_minor
        total[2 if debit else 3] += line.functional_amount_minor
    for currency in sorted(totals):
        debits, credits, functional_debits, functional_credits = totals[currency]
        _require(
            debits == credits,
            f"{where}: {currency} debits {debits} != credits {credits}",
        )
        _require(
            functional_debits == functional_credits,
            f"{where}: {currency} functional debits {functional_debits}"
            f" != functional credits {functional_credits}",
        )
