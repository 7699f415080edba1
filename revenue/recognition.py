"""Recognition runs: a business-clock tick posts what the schedules have due.

For each scheduled obligation of a customer, :func:`recognize` compares what should be
recognised (:meth:`Obligation.target`) with what was, and posts the difference:

1. a catch-up first, when the target through the day the obligation was last run to
   moved after that run (a cumulative catch-up modification, an invoice under the
   ``at_invoice`` policy, a credit for past service): rule ``revenue_catch_up``, dated
   in the first period of this run, naming what changed in its lines;
2. then one ``revenue_recognition`` entry per accounting period from the day after the
   last run (or the obligation's first day, when it was never run: so a contract booked
   late is recognised in its service months) through the tick's date.

Running the same tick twice posts nothing: every figure is cumulative, and a tick whose
event id the customer has already run is skipped.

Each entry moves the contract position: recognising revenue (Cr revenue) is Dr deferred
revenue while the contract is billed ahead, the rest Dr unbilled AR; reversing it (a
negative difference) is the mirror image. The position is the one on the entry's day
(billing dated up to then), so revenue back-dated before an invoice is unbilled AR in
its months; a ``revenue_reclass`` entry on the tick's day then leaves the contract
either deferred or unbilled, never both. Entries convert at the contract's booking rate.

Entry ids: source event ``<clock event id>/<customer id>`` (one tick reaches every
customer of a partition under one event id), rule, and a sequence within the run.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from ledger.accounts import Account, Side
from ledger.book import post_entry
from ledger.calendar import period_of
from ledger.drafts import EntryHeader, LineSpec
from ledger.entries import JournalEntry, dimensions_of
from ledger.events import ClockAdvanced
from ledger.posting import Rejected, consume_position, make_entry, restore_position
from ledger.reference import ReferenceData
from ledger.results import EntryStatus
from ledger.state import CustomerLedger
from revenue.schedule import last_day, periods_between
from revenue.state import Contract, Obligation, RevenueBook

_DAY = dt.timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Recognition:
    """Result of :func:`recognize`: both states after the run, its entries, and refusals."""

    ledger: CustomerLedger
    revenue: RevenueBook
    entries: tuple[JournalEntry, ...] = ()
    # (contract id, obligation id, message) of obligations an entry could not be posted for.
    refused: tuple[tuple[str, str, str], ...] = ()


@dataclass(slots=True)
class _Run:
    """Mutable scratch of one customer's run (never leaves :func:`recognize`)."""

    clock: ClockAdvanced
    reference: ReferenceData
    ledger: CustomerLedger
    entries: list[JournalEntry]
    sequence: int = 0
    # Net revenue recognised on the contract being run, and how its deferred revenue
    # and unbilled AR moved in this run (for the reclassification at the end).
    recognized: int = 0
    deferred_moved: int = 0
    unbilled_moved: int = 0


def recognize(
    ledger: CustomerLedger, revenue: RevenueBook, clock: ClockAdvanced, reference: ReferenceData
) -> Recognition:
    """Recognise everything due through ``clock.business_date`` (module docstring).

    A tick dated before the customer's last run changes nothing (the streaming layer
    dead-letters it as ``clock_backwards`` before calling this).
    """
    as_of = clock.business_date
    if revenue.last_clock_id == clock.event_id or (
        revenue.clock is not None and as_of < revenue.clock
    ):
        return Recognition(ledger, revenue)
    run = _Run(clock, reference, ledger, [])
    refused: list[tuple[str, str, str]] = []
    for contract_id in sorted(revenue.contracts):
        contract = revenue.contracts[contract_id]
        position_before = contract_position(run.ledger, contract)
        run.recognized, run.deferred_moved, run.unbilled_moved = contract.recognized_minor, 0, 0
        for obligation_id in sorted(contract.obligations):
            obligation = contract.obligations[obligation_id]
            if obligation.is_usage or obligation.first_day() is None:
                continue
            before = (run.ledger, len(run.entries), run.sequence, run.recognized)
            moved = (run.deferred_moved, run.unbilled_moved)
            done = _recognize_obligation(run, contract, obligation, as_of)
            if isinstance(done, Rejected):
                run.ledger, run.sequence, run.recognized = before[0], before[2], before[3]
                run.deferred_moved, run.unbilled_moved = moved
                del run.entries[before[1] :]
                refused.append((contract_id, obligation_id, done.message))
                continue
            contract = contract.with_obligation(done)
        reclassified = _reclassify(run, contract, position_before, as_of)
        if isinstance(reclassified, Rejected):
            refused.append((contract_id, "", reclassified.message))
        revenue = revenue.with_contract(contract)
    revenue = replace(revenue, clock=as_of, last_clock_id=clock.event_id)
    return Recognition(run.ledger, revenue, tuple(run.entries), tuple(refused))


def _recognize_obligation(
    run: _Run, contract: Contract, obligation: Obligation, as_of: dt.date
) -> Obligation | Rejected:
    policy = run.reference.catch_up_policy(contract.entity)
    through = obligation.recognized_through
    recognized = obligation.recognized_minor
    start = obligation.first_day() if through is None else through + _DAY
    assert start is not None
    finished = through is not None and through >= (obligation.last_day() or through)
    if finished and obligation.target(as_of, policy) == obligation.target(through, policy):
        # Served and settled before this run: only a retroactive change (the catch-up
        # below) can move it, so the months since need no walking.
        start = max(start, as_of + _DAY)
    steps: list[tuple[int, dt.date, bool]] = []
    if through is not None:
        catch_up = obligation.target(through, policy) - recognized
        day = min(as_of, last_day(period_of(start))) if start <= as_of else as_of
        steps.append((catch_up, day, True))
        recognized += catch_up
    for period in periods_between(start, as_of) if start <= as_of else ():
        day = min(last_day(period), as_of)
        billed_on = obligation.billed_on
        if policy == "at_invoice" and billed_on is not None and period_of(billed_on) == period:
            # Under at_invoice the service before the first invoice is caught up on the
            # day the invoice is booked: a catch-up entry of its own.
            elapsed = obligation.scheduled_through(billed_on - _DAY) - recognized
            if elapsed > 0 and billed_on <= day:
                steps.append((elapsed, billed_on, True))
                recognized += elapsed
        amount = obligation.target(day, policy) - recognized
        steps.append((amount, day, False))
        recognized += amount
    for amount, day, catch_up in steps:
        if amount:
            posted = _post(run, contract, obligation, amount, day, catch_up=catch_up)
            if isinstance(posted, Rejected):
                return posted
    return replace(obligation, recognized_minor=recognized, recognized_through=as_of)


def contract_position(ledger: CustomerLedger, contract: Contract) -> int:
    """Billed − recognised on ``contract``: deferred revenue if positive, unbilled if not."""
    return ledger.billed_by_contract.get(contract.contract_id, 0) - contract.recognized_minor


def _header(
    run: _Run, contract: Contract, rule: str, day: dt.date, description: str
) -> EntryHeader:
    posting_date, _ = run.reference.posting_period(contract.entity, day)
    return EntryHeader(
        entity=contract.entity,
        customer_id=run.ledger.customer_id,
        source_event_id=f"{run.clock.event_id}/{run.ledger.customer_id}",
        source_event_type=run.clock.event_type,
        rule=rule,
        sequence=run.sequence,
        posting_date=posting_date,
        original_date=day,
        functional_currency=run.reference.functional_currency(contract.entity) or "",
        description=description,
    )


def _book(
    run: _Run, contract: Contract, header: EntryHeader, specs: list[LineSpec]
) -> Rejected | None:
    specs = [spec for spec in specs if spec.amount_minor]
    entry = make_entry(header, contract.currency, specs, contract.rate)
    if isinstance(entry, Rejected):
        return entry
    posted = post_entry(run.ledger, entry)
    if isinstance(posted, Rejected):
        return posted
    run.ledger = posted
    run.entries.append(entry)
    run.sequence += 1
    return None


def _post(
    run: _Run,
    contract: Contract,
    obligation: Obligation,
    amount: int,
    day: dt.date,
    *,
    catch_up: bool,
) -> Rejected | None:
    """Recognise ``amount`` (reverse when negative), split by the position on ``day``.

    The position is the one the contract had on ``day`` (billing dated up to then):
    revenue back-dated into months before an invoice is a contract asset in those months.
    """
    rule = "revenue_catch_up" if catch_up else "revenue_recognition"
    kind = "Catch-up" if catch_up else "Revenue"
    header = _header(
        run,
        contract,
        rule,
        day,
        f"{kind} {contract.contract_id} {obligation.obligation_id} through {day}",
    )
    dims = dimensions_of(
        {
            "contract_id": contract.contract_id,
            "obligation_id": obligation.obligation_id,
            "product_family": str(obligation.family),
            "recognized_through": day.isoformat(),
            "change": obligation.last_change if catch_up else None,
            "original_date": day.isoformat() if header.posting_date != day else None,
        }
    )
    position = contract.billed_through(day) - run.recognized
    if amount > 0:
        deferred, unbilled = consume_position(position, amount)
        specs = [
            LineSpec(Account.deferred_revenue, Side.debit, deferred, dims),
            LineSpec(Account.unbilled_receivable, Side.debit, unbilled, dims),
            LineSpec(Account.revenue, Side.credit, amount, dims),
        ]
        moved = (-deferred, unbilled)
    else:
        unbilled, deferred = restore_position(position, -amount)
        specs = [
            LineSpec(Account.revenue, Side.debit, -amount, dims),
            LineSpec(Account.unbilled_receivable, Side.credit, unbilled, dims),
            LineSpec(Account.deferred_revenue, Side.credit, deferred, dims),
        ]
        moved = (deferred, -unbilled)
    booked = _book(run, contract, header, specs)
    if booked is None:
        run.recognized += amount
        run.deferred_moved += moved[0]
        run.unbilled_moved += moved[1]
    return booked


def _reclassify(
    run: _Run, contract: Contract, position_before: int, as_of: dt.date
) -> Rejected | None:
    """Leave the contract either deferred or unbilled, never both, after the run.

    Entries back-dated into months before an invoice went to unbilled AR; the invoice
    itself (posted earlier in real time) went to deferred revenue. The difference moves
    between the two accounts on the run's day.
    """
    deferred = max(0, position_before) + run.deferred_moved
    position_after = contract_position(run.ledger, contract)
    excess = deferred - max(0, position_after)
    if not excess:
        return None
    header = _header(
        run, contract, "revenue_reclass", as_of, f"Contract position {contract.contract_id}"
    )
    dims = dimensions_of({"contract_id": contract.contract_id})
    debit, credit = (
        (Account.deferred_revenue, Account.unbilled_receivable)
        if excess > 0
        else (Account.unbilled_receivable, Account.deferred_revenue)
    )
    specs = [
        LineSpec(debit, Side.debit, abs(excess), dims),
        LineSpec(credit, Side.credit, abs(excess), dims),
    ]
    return _book(run, contract, header, specs)


def clock_check(
    last_date: dt.date | None, last_id: str | None, tick: ClockAdvanced
) -> EntryStatus | None:
    """None when ``tick`` should run on a partition whose last tick was ``last_date`` /
    ``last_id``; ``exists`` for a re-delivered tick; ``clock_backwards`` for an earlier one.
    """
    if tick.event_id == last_id:
        return EntryStatus.exists
    if last_date is not None and tick.business_date < last_date:
        return EntryStatus.clock_backwards
    return None


def schedule_by_period(contract: Contract) -> tuple[tuple[str, str, int], ...]:
    """What each scheduled obligation earns, month by month over its whole life.

    ``(obligation id, period, amount)`` in the contract's currency, periods ascending per
    obligation, months that earn nothing left out; usage obligations have no schedule.
    The amounts of an obligation sum to its allocation (after cancellation: to what the
    shortened schedule earns). Published for the query surface's revenue waterfall.
    """
    rows = []
    for obligation_id in sorted(contract.obligations):
        obligation = contract.obligations[obligation_id]
        first, last = obligation.first_day(), obligation.last_day()
        if obligation.is_usage or first is None or last is None:
            continue
        earned = obligation.scheduled_through(first - _DAY)
        for period in periods_between(first, last):
            due = obligation.scheduled_through(last_day(period))
            if due != earned:
                rows.append((obligation_id, period, due - earned))
            earned = due
    return tuple(rows)


def changed_schedules(
    before: RevenueBook, after: RevenueBook
) -> list[tuple[Contract, tuple[tuple[str, str, int], ...]]]:
    """Contracts of ``after`` whose :func:`schedule_by_period` differs from ``before``'s.

    In contract-id order, each with its new schedule: what the worker publishes after an
    event or a tick (a booking, an amendment, a cancellation, a credit, a released hold).
    """
    changed = []
    for contract_id in sorted(after.contracts):
        contract = after.contracts[contract_id]
        old = before.contracts.get(contract_id)
        if old is contract:
            continue
        rows = schedule_by_period(contract)
        if (
            old is None
            or rows != schedule_by_period(old)
            or old.cancelled_on != contract.cancelled_on
        ):
            changed.append((contract, rows))
    return changed


def waterfall(revenue: RevenueBook, after: dt.date) -> list[tuple[str, str, str, int]]:
    """Remaining schedule by future month: ``(contract id, obligation id, period, amount)``.

    What each scheduled obligation still has to earn after ``after``, month by month
    (the schedule itself, whatever the billing); for the query surface's waterfall.
    """
    rows = []
    for contract_id in sorted(revenue.contracts):
        contract = revenue.contracts[contract_id]
        for obligation_id in sorted(contract.obligations):
            obligation = contract.obligations[obligation_id]
            last = obligation.last_day()
            if obligation.is_usage or last is None or last <= after:
                continue
            earned = obligation.scheduled_through(after)
            for period in periods_between(after + _DAY, last):
                due = obligation.scheduled_through(last_day(period))
                if due != earned:
                    rows.append((contract_id, obligation_id, period, due - earned))
                earned = due
    return rows
