"""What every posting rule shares: its context, its three possible results, and helpers.

A rule is a pure function ``(state, event, context) -> Posted | Held | Rejected``. It reads
the customer state and reference data, checks in :class:`EntryStatus` order, and on
success returns the new open items plus balanced entries; :mod:`ledger.book` then records
the event id, posts the entries to the balances and releases held events.

Hold keys (what a held event waits for) are built here: ``invoice:<id>``,
``payment:<id>``, ``credit_note:<id>``, ``product:<id>``,
``fx:<FROM>/<TO>@<YYYY-MM-DD>``.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType

from ledger.drafts import EntryHeader, LineSpec, build_entry
from ledger.entries import JournalEntry, dimensions_of
from ledger.events import (
    CreditNoteIssued,
    CreditNoteVoided,
    DisputeClosed,
    Event,
    InvoiceIssued,
    InvoiceVoided,
    InvoiceWrittenOff,
    PaymentFailed,
    PaymentSettled,
    PayoutPaid,
    RefundIssued,
    UsageRecorded,
)
from ledger.money import amount_overflows, convert, is_known_currency
from ledger.reference import ReferenceData
from ledger.results import EntryStatus
from ledger.state import CustomerLedger, InvoiceItem, PaymentItem


def _no_amounts() -> Mapping:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class RuleContext:
    """Inputs of a rule besides state and event; the revenue engine fills the last two.

    ``recognized_to_date`` maps a position key (a contract id; an obligation id for a line
    without one) to net revenue recognised so far, in the contract's currency.
    ``credit_to_revenue`` maps an invoice line id to the part of a credit note that
    reverses revenue already recognised (contra revenue now) instead of relieving the
    contract position (a credit for past service, or more than the remaining service).
    ``write_off_relief`` maps a position key to the parts of a write-off that go to
    deferred revenue (billed ahead of revenue) and to contra revenue instead of bad debt.
    """

    reference: ReferenceData
    recognized_to_date: Mapping[str, int] = field(default_factory=_no_amounts)
    credit_to_revenue: Mapping[str, int] = field(default_factory=_no_amounts)
    write_off_relief: Mapping[str, tuple[int, int]] = field(default_factory=_no_amounts)

    def position(self, state: CustomerLedger, key: str) -> int:
        """Contract position of ``key``: billed − recognised (> 0 deferred, < 0 unbilled)."""
        return state.billed_by_contract.get(key, 0) - self.recognized_to_date.get(key, 0)


# A contract is either a liability (billed ahead of revenue: deferred revenue) or an asset
# (revenue ahead of billing: unbilled AR), never both (ASC 606-10-45-1). These two split an
# amount that moves a position so that it crosses zero through both accounts in order.


def consume_position(position: int, amount_minor: int) -> tuple[int, int]:
    """``(deferred, unbilled)`` parts of an amount that LOWERS the position.

    Recognising revenue, voiding or crediting a bill: first Dr deferred revenue while
    the contract is a liability, the rest Dr unbilled AR.
    """
    deferred = min(amount_minor, max(0, position))
    return deferred, amount_minor - deferred


def restore_position(position: int, amount_minor: int) -> tuple[int, int]:
    """``(unbilled, deferred)`` parts of an amount that RAISES the position.

    Billing, or reversing recognised revenue: first Cr unbilled AR while the contract is
    an asset, the rest Cr deferred revenue.
    """
    unbilled = min(amount_minor, max(0, -position))
    return unbilled, amount_minor - unbilled


@dataclass(frozen=True, slots=True)
class Posted:
    """The event is accepted: new open items (balances not yet posted) and entries."""

    state: CustomerLedger
    entries: tuple[JournalEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class Held:
    """The event waits for ``waiting_on``; ``status`` is transient."""

    status: EntryStatus
    waiting_on: str
    message: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """The event is refused; ``message`` names the field and value."""

    status: EntryStatus
    message: str


RuleResult = Posted | Held | Rejected

_BUSINESS_DATE_FIELD: dict[type[Event], str] = {
    InvoiceIssued: "issue_date",
    InvoiceVoided: "void_date",
    CreditNoteIssued: "issue_date",
    CreditNoteVoided: "void_date",
    InvoiceWrittenOff: "write_off_date",
    PaymentSettled: "settled_date",
    PaymentFailed: "failed_date",
    RefundIssued: "refund_date",
    DisputeClosed: "closed_date",
    PayoutPaid: "payout_date",
    UsageRecorded: "usage_date",
}


def business_date_of(event: Event) -> dt.date:
    """The business date in the payload (``occurred_at``'s date for customer upserts).

    Events defined outside the ledger (contracts) name their field in the class
    attribute ``business_date_field``.
    """
    name = _BUSINESS_DATE_FIELD.get(type(event)) or getattr(event, "business_date_field", None)
    if name is None:
        return event.occurred_at.date()
    return getattr(event, name)


def invoice_key(invoice_id: str) -> str:
    """Hold key of an event waiting for an invoice."""
    return f"invoice:{invoice_id}"


def payment_key(payment_id: str) -> str:
    """Hold key of an event waiting for a settled payment."""
    return f"payment:{payment_id}"


def credit_note_key(credit_note_id: str) -> str:
    """Hold key of a credit note void waiting for its credit note."""
    return f"credit_note:{credit_note_id}"


def product_key(product_id: str) -> str:
    """Hold key of an event waiting for a product mapping."""
    return f"product:{product_id}"


def fx_key(from_currency: str, to_currency: str, on_date: dt.date) -> str:
    """Hold key of an event waiting for a rate of record."""
    return f"fx:{from_currency}/{to_currency}@{on_date.isoformat()}"


def check_entity_and_currency(
    event: Event, currency: str | None, reference: ReferenceData
) -> Rejected | None:
    """``unknown_entity`` then ``unknown_currency``, or None when both are known."""
    if not reference.has_entity(event.entity):
        return Rejected(EntryStatus.unknown_entity, f"entity {event.entity!r} is not configured")
    if currency is not None and not is_known_currency(currency):
        return Rejected(EntryStatus.unknown_currency, f"currency {currency!r} is not known")
    return None


def find_invoice(
    state: CustomerLedger, event: Event, invoice_id: str, currency: str | None
) -> InvoiceItem | Held | Rejected:
    """The invoice an event refers to, checked for entity, currency and void."""
    item = state.invoices.get(invoice_id)
    if item is None:
        return Held(
            EntryStatus.invoice_missing,
            invoice_key(invoice_id),
            f"invoice_id {invoice_id!r} has not arrived",
        )
    if item.entity != event.entity:
        return Rejected(
            EntryStatus.entity_mismatch,
            f"entity {event.entity!r} differs from invoice {invoice_id!r} entity {item.entity!r}",
        )
    if currency is not None and item.currency != currency:
        return Rejected(
            EntryStatus.currency_mismatch,
            f"currency {currency!r} differs from invoice {invoice_id!r} currency {item.currency!r}",
        )
    if item.voided:
        return Rejected(EntryStatus.invoice_voided, f"invoice_id {invoice_id!r} is voided")
    return item


def find_payment(
    state: CustomerLedger, event: Event, payment_id: str, currency: str
) -> PaymentItem | Held | Rejected:
    """The settled payment an event refers to, checked for entity and currency."""
    item = state.payments.get(payment_id)
    if item is None:
        return Held(
            EntryStatus.payment_missing,
            payment_key(payment_id),
            f"payment_id {payment_id!r} has not settled yet",
        )
    if item.entity != event.entity:
        return Rejected(
            EntryStatus.entity_mismatch,
            f"entity {event.entity!r} differs from payment {payment_id!r} entity {item.entity!r}",
        )
    if item.currency != currency:
        return Rejected(
            EntryStatus.currency_mismatch,
            f"currency {currency!r} differs from payment {payment_id!r} currency {item.currency!r}",
        )
    return item


def rate_for(
    reference: ReferenceData, entity: str, currency: str, on_date: dt.date
) -> Decimal | Held:
    """Rate of record from ``currency`` to the entity's functional currency, or a hold."""
    functional = reference.functional_currency(entity)
    if functional is None:
        raise ValueError(f"rate_for unknown entity {entity!r}")
    rate = reference.rate_of_record(currency, functional, on_date)
    if rate is None:
        return Held(
            EntryStatus.fx_rate_missing,
            fx_key(currency, functional, on_date),
            f"no {currency}/{functional} rate of record on or before {on_date}",
        )
    return rate


def header_for(
    event: Event, reference: ReferenceData, rule: str, description: str, sequence: int = 0
) -> EntryHeader:
    """Entry header: posting date moved out of closed periods, functional currency."""
    original = business_date_of(event)
    posting_date, _ = reference.posting_period(event.entity, original)
    return EntryHeader(
        entity=event.entity,
        customer_id=event.customer_id,
        source_event_id=event.event_id,
        source_event_type=event.event_type,
        rule=rule,
        sequence=sequence,
        posting_date=posting_date,
        original_date=original,
        functional_currency=reference.functional_currency(event.entity) or "",
        description=description,
    )


def dims(header: EntryHeader, **values: str | None) -> tuple[tuple[str, str], ...]:
    """Line dimensions, plus ``original_date`` when the posting date was moved."""
    if header.posting_date != header.original_date:
        values["original_date"] = header.original_date.isoformat()
    return dimensions_of(values)


def make_entry(
    header: EntryHeader,
    currency: str,
    specs: Sequence[LineSpec],
    rate: Decimal,
    *,
    fx_difference: bool = False,
) -> JournalEntry | Rejected:
    """Build a balanced entry, or ``amount_overflows`` when a converted total cannot fit."""
    for amount in (sum(s.amount_minor for s in specs), *(s.amount_minor for s in specs)):
        converted = convert(amount, currency, header.functional_currency, rate)
        if amount_overflows(amount) or amount_overflows(converted):
            return Rejected(
                EntryStatus.amount_overflows,
                f"amount {amount} {currency} overflows a signed 64-bit integer"
                f" (in {header.functional_currency}: {converted})",
            )
    return build_entry(header, currency, specs, rate, fx_difference=fx_difference)
