"""The one state transition of a customer ledger: :func:`apply`, and its hold companions.

``apply(state, event, reference)`` checks in :class:`EntryStatus` order, duplicates first:

1. same event id, same payload digest (posted or held) → ``duplicate`` (status ``exists``);
   same id, different payload → ``rejected`` (``exists_with_different_payload``);
2. the event's posting rule runs; it returns
   * ``Rejected`` → outcome ``rejected``, state UNCHANGED. A rejected event id is NOT
     remembered: a re-drive after the fix (reference data, an upstream correction) must
     be evaluated again, and evaluating the same event against the same state gives
     the same rejection, so a repeat is still harmless;
   * ``Held`` (a transient status) → outcome ``held``: the event and the caller's opaque
     ``token`` are stored in the state, waiting on a key (``invoice:<id>`` ...);
   * ``Posted`` → entries posted to the balances, event id remembered, then every held
     event whose key is now satisfied is re-tried in arrival order (repeatedly, since a
     released payment may release a refund); their entries follow the trigger's.

:func:`retry_holds` re-tries holds after reference data changed (an FX rate arrived);
:func:`expire_holds` gives up on holds older than a timeout in business days.

What "run the event's rule" and "is the hold key satisfied" mean is a :class:`Rulebook`:
the ledger's own (:class:`LedgerRules`) by default; the revenue engine passes one that
also knows contracts, so one hold list and one release loop serve both.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Protocol

from ledger.accounts import Side
from ledger.calendar import business_days_between
from ledger.entries import JournalEntry
from ledger.errors import InvariantViolation
from ledger.events import (
    CreditNoteIssued,
    CreditNoteVoided,
    CustomerUpserted,
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
from ledger.money import amount_overflows
from ledger.posting import Held, Posted, Rejected, RuleContext, RuleResult, business_date_of
from ledger.reference import ReferenceData
from ledger.results import EntryStatus
from ledger.rules_activity import post_customer_upserted, post_usage_recorded
from ledger.rules_billing import (
    post_credit_note,
    post_credit_note_voided,
    post_invoice_issued,
    post_invoice_voided,
    post_write_off,
)
from ledger.rules_payments import (
    post_dispute_closed,
    post_payment_failed,
    post_payment_settled,
    post_payout,
    post_refund,
)
from ledger.state import Balance, CustomerLedger, HeldEvent, digest_of, frozen

Rule = Callable[[CustomerLedger, Event, RuleContext], RuleResult]

RULES: Mapping[type[Event], Rule] = MappingProxyType(
    {
        InvoiceIssued: post_invoice_issued,
        InvoiceVoided: post_invoice_voided,
        CreditNoteIssued: post_credit_note,
        CreditNoteVoided: post_credit_note_voided,
        InvoiceWrittenOff: post_write_off,
        PaymentSettled: post_payment_settled,
        PaymentFailed: post_payment_failed,
        RefundIssued: post_refund,
        DisputeClosed: post_dispute_closed,
        PayoutPaid: post_payout,
        UsageRecorded: post_usage_recorded,
        CustomerUpserted: post_customer_upserted,
    }
)


class Rulebook(Protocol):
    """How :func:`apply` evaluates an event and decides whether a hold is satisfied."""

    def evaluate(self, state: CustomerLedger, event: Event, reference: ReferenceData) -> RuleResult:
        """Run the event's rule; on success the entries are posted and the id remembered."""
        ...

    def is_waiting(self, key: str, state: CustomerLedger, reference: ReferenceData) -> bool:
        """True while what ``key`` names has not arrived."""
        ...


def _no_amounts() -> Mapping[str, int]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class LedgerRules:
    """The ledger's own rulebook: :data:`RULES`, with the revenue figures given."""

    recognized_to_date: Mapping[str, int] = field(default_factory=_no_amounts)
    credit_to_revenue: Mapping[str, int] = field(default_factory=_no_amounts)

    def evaluate(self, state: CustomerLedger, event: Event, reference: ReferenceData) -> RuleResult:
        """:func:`evaluate` with this rulebook's context."""
        context = RuleContext(reference, self.recognized_to_date, self.credit_to_revenue)
        return evaluate(state, event, context)

    def is_waiting(self, key: str, state: CustomerLedger, reference: ReferenceData) -> bool:
        """:func:`is_waiting`."""
        return is_waiting(key, state, reference)


class OutcomeKind(StrEnum):
    """What :func:`apply` did with an event."""

    posted = "posted"
    duplicate = "duplicate"
    held = "held"
    rejected = "rejected"


@dataclass(frozen=True, slots=True)
class RejectedHold:
    """A held event that was re-tried and rejected: it leaves the state for the DLQ."""

    event: Event
    token: bytes
    status: EntryStatus
    message: str


@dataclass(frozen=True, slots=True)
class ExpiredHold:
    """A held event that waited longer than the timeout: for the DLQ with ``reason``."""

    event: Event
    token: bytes
    waiting_on: str
    reason: EntryStatus
    held_on: dt.date
    message: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """Result of :func:`apply`.

    ``entries`` are the event's own entries followed by those of released holds, in
    posting order; ``released`` names the released event ids; ``rejected_holds`` lists
    released events that were rejected on re-try (the caller sends them to the DLQ).
    """

    kind: OutcomeKind
    state: CustomerLedger
    status: EntryStatus
    entries: tuple[JournalEntry, ...] = ()
    message: str = ""
    waiting_on: str | None = None
    released: tuple[str, ...] = ()
    rejected_holds: tuple[RejectedHold, ...] = ()


@dataclass(frozen=True, slots=True)
class Release:
    """Result of :func:`retry_holds`: same meaning as the fields of :class:`Outcome`."""

    state: CustomerLedger
    entries: tuple[JournalEntry, ...] = ()
    released: tuple[str, ...] = ()
    rejected_holds: tuple[RejectedHold, ...] = ()


def apply(
    state: CustomerLedger,
    event: Event,
    reference: ReferenceData,
    *,
    token: bytes = b"",
    recognized_to_date: Mapping[str, int] | None = None,
    rules: Rulebook | None = None,
) -> Outcome:
    """Apply one customer event to the customer's state (see module docstring).

    Args:
        state: the customer's current state (``state.customer_id == event.customer_id``).
        event: a validated canonical event.
        reference: reference data as of this event.
        token: opaque bytes stored with a held event (the original Kafka record value).
        recognized_to_date: revenue recognised per contract, for the billing split
            (ignored when ``rules`` is given).
        rules: the rulebook; default the ledger's own.

    Raises:
        InvariantViolation: the event belongs to another customer, or a rule broke an
            invariant (a bug).
    """
    if event.customer_id != state.customer_id:
        raise InvariantViolation(
            f"event {event.event_id} of customer {event.customer_id!r} applied to"
            f" {state.customer_id!r}"
        )
    digest = digest_of(event)
    duplicate = _duplicate(state, event, digest)
    if duplicate is not None:
        return duplicate
    if rules is None:
        rules = LedgerRules(MappingProxyType(dict(recognized_to_date or {})))
    result = rules.evaluate(state, event, reference)
    if isinstance(result, Rejected):
        return Outcome(OutcomeKind.rejected, state, result.status, message=result.message)
    if isinstance(result, Held):
        return _hold(state, event, digest, token, result)
    release = _release(result.state, reference, rules)
    return Outcome(
        OutcomeKind.posted,
        release.state,
        EntryStatus.ok,
        entries=result.entries + release.entries,
        released=release.released,
        rejected_holds=release.rejected_holds,
    )


def _hold(state: CustomerLedger, event: Event, digest: str, token: bytes, result: Held) -> Outcome:
    held = HeldEvent(
        state.next_hold_sequence,
        event,
        digest,
        token,
        result.waiting_on,
        result.status,
        business_date_of(event),
    )
    held_state = replace(
        state, held=(*state.held, held), next_hold_sequence=state.next_hold_sequence + 1
    )
    return Outcome(
        OutcomeKind.held,
        held_state,
        result.status,
        message=result.message,
        waiting_on=result.waiting_on,
    )


def _duplicate(state: CustomerLedger, event: Event, digest: str) -> Outcome | None:
    known = known_digest(state, event.event_id)
    if known is None:
        return None
    if known == digest:
        return Outcome(
            OutcomeKind.duplicate,
            state,
            EntryStatus.exists,
            message=f"event_id {event.event_id!r} already applied",
        )
    return Outcome(
        OutcomeKind.rejected,
        state,
        EntryStatus.exists_with_different_payload,
        message=f"event_id {event.event_id!r} was seen with a different payload",
    )


def known_digest(state: CustomerLedger, event_id: str) -> str | None:
    """Digest of ``event_id`` when it was applied or is held, else None."""
    return state.seen.get(event_id) or state.held_digest(event_id)


def evaluate(
    state: CustomerLedger, event: Event, context: RuleContext, *, seen_as: Event | None = None
) -> RuleResult:
    """Run the event's rule; on success post its entries and remember the event id.

    ``seen_as`` is the event to remember when ``event`` is a completed copy of it (the
    revenue engine fills in implied contracts): duplicates are judged on what arrived.
    """
    rule = RULES.get(type(event))
    if rule is None:
        raise InvariantViolation(f"no posting rule for {type(event).__name__}")
    result = rule(state, event, context)
    if not isinstance(result, Posted):
        return result
    posted = post_entries(result.state, result.entries)
    if isinstance(posted, Rejected):
        return posted
    remembered = seen_as or event
    return Posted(posted.with_seen(remembered.event_id, digest_of(remembered)), result.entries)


def post_entries(
    state: CustomerLedger, entries: Sequence[JournalEntry]
) -> CustomerLedger | Rejected:
    """:func:`post_entry` for each of ``entries``; the first rejection stops it."""
    for entry in entries:
        posted = post_entry(state, entry)
        if isinstance(posted, Rejected):
            return posted
        state = posted
    return state


def post_entry(state: CustomerLedger, entry: JournalEntry) -> CustomerLedger | Rejected:
    """Add ``entry`` to the balances; ``amount_overflows`` when a total would not fit.

    Totals only grow (amounts are non-negative), and the entry's per-currency debits
    equal its credits, so the sum of all balances stays zero per currency.
    """
    balances = dict(state.balances)
    for line in entry.lines:
        key = (entry.entity, line.account, line.currency)
        balance = balances.get(key, Balance())
        if line.side is Side.debit:
            balance = replace(
                balance,
                debit_minor=balance.debit_minor + line.amount_minor,
                functional_debit_minor=balance.functional_debit_minor
                + line.functional_amount_minor,
            )
        else:
            balance = replace(
                balance,
                credit_minor=balance.credit_minor + line.amount_minor,
                functional_credit_minor=balance.functional_credit_minor
                + line.functional_amount_minor,
            )
        if any(
            amount_overflows(total)
            for total in (
                balance.debit_minor,
                balance.credit_minor,
                balance.functional_debit_minor,
                balance.functional_credit_minor,
            )
        ):
            return Rejected(
                EntryStatus.amount_overflows,
                f"{line.account} {line.currency} total overflows in {entry.entry_id}",
            )
        balances[key] = balance
    return replace(state, balances=frozen(balances))


def retry_holds(
    state: CustomerLedger, reference: ReferenceData, rules: Rulebook | None = None
) -> Release:
    """Re-try held events whose key is satisfied now (call it when reference data changed)."""
    return _release(state, reference, rules or LedgerRules())


def is_waiting(key: str, state: CustomerLedger, reference: ReferenceData) -> bool:
    """True while what ``key`` names has not arrived (``invoice:``, ``fx:`` ...)."""
    kind, _, name = key.partition(":")
    if kind == "invoice":
        return name not in state.invoices
    if kind == "payment":
        return name not in state.payments
    if kind == "credit_note":
        return not any(
            item.has_credit(name) or name in item.voided_credits for item in state.invoices.values()
        )
    if kind == "product":
        return name not in reference.products
    if kind == "fx":
        pair, _, day = name.partition("@")
        from_currency, _, to_currency = pair.partition("/")
        rate = reference.rate_of_record(from_currency, to_currency, dt.date.fromisoformat(day))
        return rate is None
    raise InvariantViolation(f"unknown hold key {key!r}")


def _release(state: CustomerLedger, reference: ReferenceData, rules: Rulebook) -> Release:
    entries: list[JournalEntry] = []
    released: list[str] = []
    rejected: list[RejectedHold] = []
    progress = True
    while progress:
        progress = False
        for held in state.held:
            if rules.is_waiting(held.waiting_on, state, reference):
                continue
            rest = replace(state, held=tuple(h for h in state.held if h is not held))
            result = rules.evaluate(rest, held.event, reference)
            if isinstance(result, Held):
                state = replace(
                    rest,
                    held=tuple(
                        replace(h, waiting_on=result.waiting_on, status=result.status)
                        if h is held
                        else h
                        for h in state.held
                    ),
                )
                continue
            if isinstance(result, Posted):
                state = result.state
                entries.extend(result.entries)
                released.append(held.event.event_id)
            else:
                state = rest
                rejected.append(RejectedHold(held.event, held.token, result.status, result.message))
            progress = True
            break
    return Release(state, tuple(entries), tuple(released), tuple(rejected))


def expire_holds(
    state: CustomerLedger, business_date: dt.date, timeout_days: int
) -> tuple[CustomerLedger, list[ExpiredHold]]:
    """Remove holds older than ``timeout_days`` business days at ``business_date``.

    Age counts weekdays after the held event's own business date (deterministic on
    replay). Reasons: ``fx_rate_missing`` (waiting on a rate), ``unknown_product``
    (waiting on a product mapping), otherwise ``orphan_event``.
    """
    kept: list[HeldEvent] = []
    expired: list[ExpiredHold] = []
    for held in state.held:
        age = business_days_between(held.held_on, business_date)
        if age <= timeout_days:
            kept.append(held)
            continue
        reason = {
            "fx": EntryStatus.fx_rate_missing,
            "product": EntryStatus.unknown_product,
        }.get(held.waiting_on.partition(":")[0], EntryStatus.orphan_event)
        expired.append(
            ExpiredHold(
                held.event,
                held.token,
                held.waiting_on,
                reason,
                held.held_on,
                f"event_id {held.event.event_id!r} waited {age} business days on"
                f" {held.waiting_on!r} (timeout {timeout_days})",
            )
        )
    if not expired:
        return state, []
    return replace(state, held=tuple(kept)), expired
