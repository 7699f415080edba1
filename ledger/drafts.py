"""From line specifications in transaction currency to a balanced :class:`JournalEntry`.

A posting rule says which accounts move by how much in the event's currency
(:class:`LineSpec`); this module fills in the functional amounts so the entry balances in
both columns, numbers the lines and builds the entry. Two modes:

* anchored (default): one side's functional total is fixed (the sum of lines whose
  functional amount the rule fixed, plus the converted rest); the other side's lines
  share that same total through :func:`ledger.money.allocate`, weighted by their
  transaction amounts. Without fixed lines the total is the entry total converted ONCE.
* ``fx_difference=True``: each side converts its floating lines on its own; the
  difference between the two functional totals goes to a ``realized_fx`` line with
  transaction amount 0 (debit = loss, credit = gain).

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

from ledger.accounts import Account, Side
from ledger.calendar import period_of
from ledger.entries import Dimensions, JournalEntry, JournalLine, make_entry_id
from ledger.errors import InvariantViolation
from ledger.money import allocate, convert


@dataclass(frozen=True, slots=True)
class LineSpec:
    """What a rule wants posted: account, side, transaction amount, optional fixed functional."""

    account: Account
    side: Side
    amount_minor: int
    dimensions: Dimensions = ()
    functional_minor: int | None = None


@dataclass(frozen=True, slots=True)
class EntryHeader:
    """Everything of an entry except its lines."""

    entity: str
    customer_id: str
    source_event_id: str
    source_event_type: str
    rule: str
    sequence: int
    posting_date: dt.date
    original_date: dt.date
    functional_currency: str
    description: str


def build_entry(
    header: EntryHeader,
    currency: str,
    specs: Sequence[LineSpec],
    rate: Decimal,
    *,
    fx_difference: bool = False,
) -> JournalEntry:
    """Balanced entry from ``specs`` in ``currency`` at ``rate`` (units of functional per unit).

    Lines with both amounts zero are dropped; raises InvariantViolation if the result
    does not balance (a rule bug).
    """
    context = (currency, header.functional_currency, rate)
    if fx_difference:
        filled = _fill_each_side(specs, context)
        filled = [*filled, *_fx_line(filled, header)]
    else:
        filled = _fill_anchored(specs, context)
    kept = [spec for spec in filled if spec.amount_minor > 0 or spec.functional_minor]
    lines = tuple(
        JournalLine(
            line_no=number,
            account=spec.account,
            side=spec.side,
            amount_minor=spec.amount_minor,
            currency=currency,
            functional_amount_minor=spec.functional_minor or 0,
            dimensions=spec.dimensions,
        )
        for number, spec in enumerate(kept, start=1)
    )
    return JournalEntry(
        entry_id=make_entry_id(header.source_event_id, header.rule, header.sequence),
        entity=header.entity,
        customer_id=header.customer_id,
        source_event_id=header.source_event_id,
        source_event_type=header.source_event_type,
        rule=header.rule,
        sequence=header.sequence,
        posting_date=header.posting_date,
        original_date=header.original_date,
        period=period_of(header.posting_date),
        functional_currency=header.functional_currency,
        description=header.description,
        lines=lines,
    )


def _converted_parts(specs: Sequence[LineSpec], context: tuple[str, str, Decimal]) -> list[int]:
    if not specs:
        return []
    weights = [spec.amount_minor for spec in specs]
    if sum(weights) == 0:
        raise InvariantViolation("a line without a fixed functional amount has amount 0")
    currency, functional_currency, rate = context
    return allocate(convert(sum(weights), currency, functional_currency, rate), weights)


def _floating(specs: Sequence[LineSpec], side: Side) -> list[int]:
    return [i for i, s in enumerate(specs) if s.side is side and s.functional_minor is None]


def _with_parts(specs: list[LineSpec], indexes: list[int], parts: list[int]) -> None:
    for index, part in zip(indexes, parts, strict=True):
        specs[index] = replace(specs[index], functional_minor=part)


def _fill_each_side(specs: Sequence[LineSpec], context: tuple[str, str, Decimal]) -> list[LineSpec]:
    filled = list(specs)
    for side in Side:
        indexes = _floating(specs, side)
        _with_parts(filled, indexes, _converted_parts([specs[i] for i in indexes], context))
    return filled


def _fill_anchored(specs: Sequence[LineSpec], context: tuple[str, str, Decimal]) -> list[LineSpec]:
    fixed_sides = {spec.side for spec in specs if spec.functional_minor is not None}
    if len(fixed_sides) > 1:
        raise InvariantViolation("fixed functional amounts on both sides need fx_difference")
    anchor = fixed_sides.pop() if fixed_sides else Side.debit
    filled = list(specs)
    indexes = _floating(specs, anchor)
    _with_parts(filled, indexes, _converted_parts([specs[i] for i in indexes], context))
    anchor_total = sum(s.functional_minor or 0 for s in filled if s.side is anchor)
    other = [i for i, s in enumerate(specs) if s.side is not anchor]
    weights = [specs[i].amount_minor for i in other]
    if other and sum(weights) == 0:
        raise InvariantViolation("the balancing side has no transaction amount")
    if other:
        _with_parts(filled, other, allocate(anchor_total, weights))
    return filled


def _fx_line(specs: Sequence[LineSpec], header: EntryHeader) -> list[LineSpec]:
    debit = sum(s.functional_minor or 0 for s in specs if s.side is Side.debit)
    credit = sum(s.functional_minor or 0 for s in specs if s.side is Side.credit)
    if debit == credit:
        return []
    side = Side.credit if debit > credit else Side.debit
    return [LineSpec(Account.realized_fx, side, 0, (), abs(debit - credit))]
