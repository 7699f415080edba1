"""Contract events applied to a customer's :class:`RevenueBook`: booking, modification, end.

Each function returns the new book, or a :class:`Held` (the contract has not arrived) or
:class:`Rejected` (with the status and a message naming the figures). Nothing is posted
here: a schedule change is recognised by the next clock run (:mod:`revenue.recognition`),
which records a retroactive difference as a catch-up entry.

Modifications (ASC 606-10-25-12 and 25-13; IFRS 15.20-21), as the event says:

* ``separate_contract``: the added obligations get the added price by relative SSP; the
  existing ones are untouched.
* ``prospective``: the old terms stop the day before ``effective_date``; what was not
  recognised under them by then, plus the new consideration (= new total − recognised
  by then), is allocated over the obligations still to deliver, by the SSP of what
  remains, from ``effective_date`` on.
* ``cumulative_catch_up``: the new total is re-allocated over all obligations as if
  the modified terms had always applied; the difference with what was recognised is
  caught up at the next clock run.

A cancellation ends every obligation the day before ``effective_date``: what was not
yet due is never recognised; billing beyond it stays deferred until a credit note or
refund takes it back.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from types import MappingProxyType

from ledger.accounts import ProductFamily
from ledger.posting import Held, Rejected, check_entity_and_currency, rate_for
from ledger.reference import ReferenceData
from ledger.results import EntryStatus
from revenue.allocation import AllocationRefused, allocate_by_ssp
from revenue.events import (
    ContractAmended,
    ContractBooked,
    ContractCancelled,
    PerformanceObligationSpec,
)
from revenue.schedule import Method, Segment
from revenue.state import Contract, Obligation, RevenueBook

_DAY = dt.timedelta(days=1)

ContractEvent = ContractBooked | ContractAmended | ContractCancelled


def contract_key(contract_id: str) -> str:
    """Hold key of an event waiting for a contract."""
    return f"contract:{contract_id}"


def method_for(
    spec_pattern: str, entity: str, product_id: str, on_date: dt.date, reference: ReferenceData
) -> Method | None:
    """Amortization method of an obligation (None: usage, recognised as consumed).

    Point in time stays point in time. A ratable pattern takes the product's override,
    else the entity's setting, else its own (``ratable_daily`` by day, ``ratable_monthly``
    monthly even).
    """
    if spec_pattern == "usage":
        return None
    if spec_pattern == "point_in_time":
        return "point_in_time"
    configured = reference.amortization_method(entity, product_id, on_date)
    if configured is not None:
        return configured
    return "daily" if spec_pattern == "ratable_daily" else "monthly_even"


def apply_contract_event(
    book: RevenueBook, event: ContractEvent, reference: ReferenceData
) -> RevenueBook | Held | Rejected:
    """Apply one contract event to ``book`` (see the module docstring)."""
    if isinstance(event, ContractBooked):
        return book_contract(book, event, reference)
    failure = check_entity_and_currency(event, getattr(event, "currency", None), reference)
    if failure is not None:
        return failure
    contract = book.contracts.get(event.contract_id)
    if contract is None:
        return Held(
            EntryStatus.contract_missing,
            contract_key(event.contract_id),
            f"contract_id {event.contract_id!r} has not been booked",
        )
    if contract.entity != event.entity:
        return Rejected(
            EntryStatus.entity_mismatch,
            f"entity {event.entity!r} differs from contract {contract.contract_id!r}"
            f" entity {contract.entity!r}",
        )
    if contract.cancelled_on is not None:
        return Rejected(
            EntryStatus.contract_cancelled,
            f"contract_id {contract.contract_id!r} was cancelled on {contract.cancelled_on}",
        )
    if isinstance(event, ContractCancelled):
        return book.with_contract(_cancelled(contract, event))
    if event.currency != contract.currency:
        return Rejected(
            EntryStatus.currency_mismatch,
            f"currency {event.currency!r} differs from contract {contract.contract_id!r}"
            f" currency {contract.currency!r}",
        )
    if event.amendment_id in contract.amendments:
        return Rejected(
            EntryStatus.contract_exists,
            f"amendment_id {event.amendment_id!r} was applied by another event",
        )
    amended = _amended(contract, event, reference)
    if isinstance(amended, Rejected):
        return amended
    return book.with_contract(amended)


def book_contract(
    book: RevenueBook, event: ContractBooked, reference: ReferenceData
) -> RevenueBook | Held | Rejected:
    """A new contract: obligations, relative-SSP allocation and schedules."""
    failure = check_entity_and_currency(event, event.currency, reference)
    if failure is not None:
        return failure
    if event.contract_id in book.contracts:
        return Rejected(
            EntryStatus.contract_exists,
            f"contract_id {event.contract_id!r} was booked by another event",
        )
    rate = rate_for(reference, event.entity, event.currency, event.booking_date)
    if isinstance(rate, Held):
        return rate
    obligations = [_new_obligation(event, spec, reference) for spec in event.obligations]
    scheduled = {o.obligation_id: o.ssp_minor for o in obligations if not o.is_usage}
    shares = _allocate(event.total_price_minor, scheduled, event.discount_obligation_ids)
    if isinstance(shares, Rejected):
        return shares
    contract = Contract(
        contract_id=event.contract_id,
        entity=event.entity,
        currency=event.currency,
        booking_date=event.booking_date,
        rate=rate,
        total_price_minor=event.total_price_minor,
    )
    for obligation in obligations:
        share = shares.get(obligation.obligation_id)
        if share is not None:
            obligation = replace(obligation, segments=(_segment(obligation, share),))
        contract = contract.with_obligation(obligation)
    return book.with_contract(contract)


def _allocate(
    price_minor: int, ssp_by_obligation: dict[str, int], discounted: tuple[str, ...] = ()
) -> dict[str, int] | Rejected:
    if price_minor and not ssp_by_obligation:
        return Rejected(
            EntryStatus.ssp_all_zero,
            f"price {price_minor} cannot be allocated: no scheduled obligation to carry it",
        )
    shares = allocate_by_ssp(price_minor, ssp_by_obligation, discounted)
    if isinstance(shares, AllocationRefused):
        return Rejected(shares.status, shares.message)
    return shares


def _new_obligation(
    event: ContractBooked | ContractAmended,
    spec: PerformanceObligationSpec,
    reference: ReferenceData,
    contract_id: str | None = None,
) -> Obligation:
    method = method_for(spec.pattern, event.entity, spec.product_id, spec.service_start, reference)
    return Obligation(
        obligation_id=spec.obligation_id,
        contract_id=contract_id or event.contract_id,
        product_id=spec.product_id,
        family=ProductFamily(spec.family),
        pattern=spec.pattern,
        method=method,
        ssp_minor=spec.ssp_minor,
        service_start=spec.service_start,
        service_end=spec.service_end,
    )


def _segment(obligation: Obligation, amount_minor: int, start: dt.date | None = None) -> Segment:
    """The obligation's schedule for ``amount_minor`` from ``start`` (default its start)."""
    method = obligation.method or "point_in_time"
    first = max(start or obligation.service_start, obligation.service_start)
    if method == "point_in_time":
        return Segment(obligation.service_start, obligation.service_start, amount_minor, method)
    last = obligation.service_end or obligation.service_start
    return Segment(min(first, last), last, amount_minor, method)


def _cancelled(contract: Contract, event: ContractCancelled) -> Contract:
    last = event.effective_date - _DAY
    change = f"cancellation:{event.event_id}"
    obligations = {
        oid: replace(o, segments=tuple(s.stopped(last) for s in o.segments), last_change=change)
        for oid, o in contract.obligations.items()
    }
    return replace(
        contract, obligations=MappingProxyType(obligations), cancelled_on=event.effective_date
    )


def _amended(
    contract: Contract, event: ContractAmended, reference: ReferenceData
) -> Contract | Rejected:
    change = f"amendment:{event.amendment_id}"
    if event.treatment == "separate_contract":
        amended = _separate(contract, event, reference, change)
    elif event.treatment == "prospective":
        amended = _prospective(contract, event, reference, change)
    else:
        amended = _catch_up(contract, event, reference, change)
    if isinstance(amended, Rejected):
        return amended
    return replace(amended, amendments=(*contract.amendments, event.amendment_id))


def _separate(
    contract: Contract, event: ContractAmended, reference: ReferenceData, change: str
) -> Contract | Rejected:
    clash = [s.obligation_id for s in event.obligations if s.obligation_id in contract.obligations]
    if clash:
        return Rejected(
            EntryStatus.obligation_exists,
            f"separate contract adds obligations {clash} that contract"
            f" {contract.contract_id!r} already has",
        )
    added = [_new_obligation(event, spec, reference) for spec in event.obligations]
    scheduled = {o.obligation_id: o.ssp_minor for o in added if not o.is_usage}
    shares = _allocate(event.total_price_minor, scheduled)
    if isinstance(shares, Rejected):
        return shares
    for obligation in added:
        share = shares.get(obligation.obligation_id)
        if share is not None:
            obligation = replace(obligation, segments=(_segment(obligation, share),))
        contract = contract.with_obligation(replace(obligation, last_change=change))
    return replace(contract, total_price_minor=contract.total_price_minor + event.total_price_minor)


def _next_terms(
    contract: Contract, event: ContractAmended, reference: ReferenceData
) -> list[Obligation]:
    """The listed obligations under their new terms, keeping what each has recognised."""
    terms = []
    for spec in event.obligations:
        fresh = _new_obligation(event, spec, reference)
        old = contract.obligations.get(spec.obligation_id)
        if old is not None:
            fresh = replace(
                fresh,
                segments=old.segments,
                recognized_minor=old.recognized_minor,
                recognized_through=old.recognized_through,
                billed_on=old.billed_on,
            )
        terms.append(fresh)
    return terms


def _ended(contract: Contract, listed: set[str], last: dt.date, change: str) -> dict:
    """Obligations missing from the new terms, cut off after ``last``."""
    return {
        oid: replace(o, segments=tuple(s.stopped(last) for s in o.segments), last_change=change)
        for oid, o in contract.obligations.items()
        if oid not in listed
    }


def _prospective(
    contract: Contract, event: ContractAmended, reference: ReferenceData, change: str
) -> Contract | Rejected:
    last_old_day = event.effective_date - _DAY
    earned = sum(o.scheduled_through(last_old_day) for o in contract.obligations.values())
    remaining_price = event.total_price_minor - earned
    if remaining_price < 0:
        return Rejected(
            EntryStatus.modification_below_recognized,
            f"new total {event.total_price_minor} is below the {earned} already due under"
            f" the old terms by {last_old_day}",
        )
    terms = _next_terms(contract, event, reference)
    to_deliver = {
        o.obligation_id: o.ssp_minor
        for o in terms
        if not o.is_usage and _delivers_from(o, event.effective_date)
    }
    if remaining_price and not any(to_deliver.values()):
        return Rejected(
            EntryStatus.ssp_all_zero,
            f"{remaining_price} remains to allocate but no obligation with an SSP is"
            f" delivered from {event.effective_date}",
        )
    shares = _allocate(remaining_price, to_deliver)
    if isinstance(shares, Rejected):
        return shares
    obligations = _ended(contract, {o.obligation_id for o in terms}, last_old_day, change)
    for obligation in terms:
        kept = tuple(s.stopped(last_old_day) for s in obligation.segments)
        share = shares.get(obligation.obligation_id)
        new = () if share is None else (_segment(obligation, share, event.effective_date),)
        obligations[obligation.obligation_id] = replace(
            obligation, segments=kept + new, last_change=change
        )
    return replace(
        contract,
        obligations=MappingProxyType(obligations),
        total_price_minor=event.total_price_minor,
    )


def _delivers_from(obligation: Obligation, day: dt.date) -> bool:
    """True when some of ``obligation`` is delivered on or after ``day``."""
    if obligation.method == "point_in_time":
        return obligation.service_start >= day
    return (obligation.service_end or obligation.service_start) >= day


def _catch_up(
    contract: Contract, event: ContractAmended, reference: ReferenceData, change: str
) -> Contract | Rejected:
    last_old_day = event.effective_date - _DAY
    terms = _next_terms(contract, event, reference)
    listed = {o.obligation_id for o in terms}
    obligations = _ended(contract, listed, last_old_day, change)
    # Usage is not part of the price (ASC 606-10-32-40): only scheduled obligations keep some.
    kept_by_ended = sum(o.allocated_minor for o in obligations.values() if not o.is_usage)
    price = event.total_price_minor - kept_by_ended
    if price < 0:
        return Rejected(
            EntryStatus.modification_below_recognized,
            f"new total {event.total_price_minor} is below the {kept_by_ended} earned by"
            f" the obligations it ends",
        )
    shares = _allocate(price, {o.obligation_id: o.ssp_minor for o in terms if not o.is_usage})
    if isinstance(shares, Rejected):
        return shares
    for obligation in terms:
        share = shares.get(obligation.obligation_id)
        segments = () if share is None else (_segment(obligation, share),)
        obligations[obligation.obligation_id] = replace(
            obligation, segments=segments, last_change=change
        )
    return replace(
        contract,
        obligations=MappingProxyType(obligations),
        total_price_minor=event.total_price_minor,
    )
