"""A simulated SaaS company, deterministic to the byte: ``revledger simulate`` and the demo.

:func:`simulate_company` returns a :class:`Simulation`: the reference records (entities US1,
USD functional, and EU1, EUR functional, amortizing monthly prorated; the catalogue with
SSPs; GL mappings; an EUR/USD rate for every business day of the horizon) and the records
to produce after them, in PRODUCE order: customer events
(:mod:`connectors.simulation.saas_customer` tells a customer's life), payouts, period
closes and clock ticks, with counters per record type and per business feature.

Order. Business order is by day: a day's period closes first, then each customer's events
together (what an event needs first), then payouts; ticks follow what they close. Arrival
then differs, as it does from real sources:

* a few card payments arrive just before their invoice (a webhook race): the ledger holds
  them until the invoice and releases them;
* a few payments settled on a month's last days arrive after that month was closed (a
  settlement report sent late): they post to the next open period, keeping their date;
* a few events are delivered twice (same id, same payload), a little later.

Payouts (Tuesdays and Fridays, per entity and currency, from a processor account
``processor:stripe:<entity>-<currency>``) sweep the cash that arrived two days before, never
more than the processor balance. US1 closes a month on its 3rd business day after, EU1 on
its 5th. The clock ticks at every month end (``clock="monthly"``) or every day
(``"daily"``); the cadence changes only the ticks: the other records, and their order,
are the same.

Same arguments, same records, byte for byte: one seeded ``random.Random`` (each customer
gets its own from it), no wall clock, no ``hash()`` order, no set iteration.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

import datetime as dt
import heapq
import random
from collections import Counter
from dataclasses import dataclass, field

from connectors.simulation import builders as b
from connectors.simulation.contracts import month_ends
from connectors.simulation.saas_catalogue import CATALOGUE
from connectors.simulation.saas_customer import live, new_customer
from connectors.simulation.saas_model import CLOSE_GROUP, DAY, PAYOUT_GROUP, Item
from ledger.calendar import period_of
from ledger.events import (
    ClockAdvanced,
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
    PeriodClosed,
    ReferenceRecord,
    RefundIssued,
)

CLOCKS = ("monthly", "daily")
DEFAULT_START = dt.date(2024, 1, 1)
# Business days after a month end on which each entity closes it.
CLOSE_BUSINESS_DAY = {b.US: 3, b.EU: 5}
PAYOUT_WEEKDAYS = (1, 4)  # Tuesday, Friday
PAYOUT_DELAY = dt.timedelta(days=2)  # cash is paid out two days after it settled
# How far (in records) a moved or redelivered record may land from its place.
_EARLY_WINDOW, _LATE_WINDOW, _REDELIVERY_WINDOW = 4, 15, 30


@dataclass(frozen=True, slots=True)
class Simulation:
    """A simulated company: reference records, then records in produce order."""

    customers: int
    months: int
    seed: int
    clock: str
    start: dt.date
    end: dt.date
    reference: list[ReferenceRecord]
    records: list[Event | ReferenceRecord]
    # Records per record type (schema name), and business features seen, for a summary.
    counts: dict[str, int]
    features: dict[str, int]

    def __len__(self) -> int:
        return len(self.records)


def simulate_company(
    customers: int,
    months: int,
    seed: int,
    clock: str = "monthly",
    start: dt.date = DEFAULT_START,
    *,
    duplicate_rate: float = 0.02,
    early_payment_rate: float = 0.05,
    late_arrival_rate: float = 0.15,
) -> Simulation:
    """Simulate ``customers`` customers over ``months`` months from ``start`` (module docstring).

    Args:
        customers: number of customers (ids ``C0000`` ...).
        months: calendar months from ``start``'s month; the last tick is the last month end.
        seed: the only source of randomness.
        clock: ``"monthly"`` (a tick at each month end) or ``"daily"`` (one each day).
        start: first business day of the simulation (the entities' first open period).
        duplicate_rate: share of events delivered twice.
        early_payment_rate: share of same-day card payments that arrive before their invoice.
        late_arrival_rate: share of payments of a month's last days arriving after its close.

    Raises:
        ValueError: a count below 1, an unknown clock, or a rate outside [0, 1].
    """
    _check(customers, months, clock, (duplicate_rate, early_payment_rate, late_arrival_rate))
    rng = random.Random(seed)
    ends = month_ends(start, months)
    end = ends[-1]
    reference = reference_records(rng, start, end)
    width = max(4, len(str(customers - 1)))
    features: Counter[str] = Counter()
    items: list[Item] = []
    for index in range(customers):
        person = new_customer(random.Random(rng.getrandbits(64)), index, width, start, end)
        live(person)
        items.extend(person.items)
        features.update(person.features)
    items.extend(_closes(ends, end))
    business = sorted(items, key=lambda item: item.key)
    arrival = _arrival(rng, business, early_payment_rate, late_arrival_rate, features)
    delivered = _duplicate(rng, _with_payouts(arrival, start, end), duplicate_rate, features)
    days = [start + dt.timedelta(n) for n in range((end - start).days + 1)]
    records = _with_ticks(delivered, [_tick(day) for day in (days if clock == "daily" else ends)])
    counts = Counter(record.schema_name for record in records)
    features["payouts"] = counts["PayoutPaid"]
    features["period_closes"] = counts["PeriodClosed"]
    features["clock_ticks"] = counts["ClockAdvanced"]
    return Simulation(
        customers,
        months,
        seed,
        clock,
        start,
        end,
        reference,
        records,
        dict(sorted(counts.items())),
        dict(sorted(features.items())),
    )


def _check(customers: int, months: int, clock: str, rates: tuple[float, ...]) -> None:
    if customers < 1 or months < 1:
        raise ValueError(f"customers and months must be at least 1, got {customers}, {months}")
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
    if not all(0.0 <= rate <= 1.0 for rate in rates):
        raise ValueError(f"rates must be between 0 and 1, got {rates}")


# --- reference and control records ----------------------------------------------------------


def reference_records(rng: random.Random, start: dt.date, end: dt.date) -> list[ReferenceRecord]:
    """Entities, the catalogue with SSPs, GL mappings, an EUR/USD rate per business day."""
    first_open = period_of(start)
    records: list[ReferenceRecord] = [
        b.entity(b.US, "USD", first_open),
        b.entity(b.EU, "EUR", first_open, amortization_method="monthly_prorated"),
    ]
    for product_id, name, family, pattern, ssp in CATALOGUE:
        records.append(b.product(product_id, family, pattern=pattern, ssp_minor=ssp, name=name))
    for entity in (b.US, b.EU):
        records.extend(b.chart(entity))
    day = start
    while day.weekday() >= 5:  # a rate of record on or before the first day
        day -= DAY
    rate = 10_850  # EUR/USD in ten-thousandths, a bounded random walk
    while day <= end:
        if day.weekday() < 5:
            rate = min(max(rate + rng.randrange(-40, 41), 9_500), 12_500)
            records.append(b.fx("EUR", "USD", f"{rate // 10_000}.{rate % 10_000:04d}", day))
        day += DAY
    return records


def _business_day_after(day: dt.date, count: int) -> dt.date:
    while count:
        day += DAY
        count -= day.weekday() < 5
    return day


def _closes(ends: list[dt.date], end: dt.date) -> list[Item]:
    """Each entity closes each month some business days after it (within the horizon)."""
    items = []
    for month_end in ends:
        for entity, count in CLOSE_BUSINESS_DAY.items():
            day = _business_day_after(month_end, count)
            if day > end:
                continue
            period = period_of(month_end)
            event = PeriodClosed(
                event_id=f"close-{entity}-{period}",
                occurred_at=dt.datetime.combine(day, dt.time(9), dt.UTC),
                source_system="controller",
                source_id=f"{entity}/{period}",
                entity=entity,
                period=period,
                closed_on=day,
            )
            items.append(Item(day, CLOSE_GROUP, -1, 0, len(items), event))
    return items


def _tick(day: dt.date) -> ClockAdvanced:
    return ClockAdvanced(
        event_id=f"clock-{day}",
        occurred_at=dt.datetime.combine(day, dt.time(23, 59), dt.UTC),
        source_system="scheduler",
        source_id=day.isoformat(),
        business_date=day,
    )


# --- arrival order --------------------------------------------------------------------------


def _references(event: Event | ReferenceRecord) -> tuple[str, ...]:
    """Invoice and payment ids an event refers to (what a moved payment must not pass)."""
    if isinstance(
        event,
        InvoiceIssued | CreditNoteIssued | CreditNoteVoided | InvoiceWrittenOff | InvoiceVoided,
    ):
        return (event.invoice_id,)
    if isinstance(event, PaymentSettled):
        return (event.payment_id, *(a.invoice_id for a in event.applications))
    if isinstance(event, PaymentFailed):
        return event.invoice_ids
    if isinstance(event, RefundIssued | DisputeClosed):
        return (event.payment_id,)
    return ()


def _arrival(
    rng: random.Random,
    business: list[Item],
    early_rate: float,
    late_rate: float,
    features: Counter[str],
) -> list[tuple[Item, bool]]:
    """Business order with some payments moved (see the module docstring); (item, moved)."""
    positions: dict[str, list[int]] = {}
    closes: dict[tuple[str, str], int] = {}
    first_of_day: dict[dt.date, int] = {}
    for n, item in enumerate(business):
        for ref in _references(item.event):
            positions.setdefault(ref, []).append(n)
        if isinstance(item.event, PeriodClosed):
            closes[item.event.entity, item.event.period] = n
        elif item.day not in first_of_day:
            first_of_day[item.day] = n
    keys: list[tuple[int, int, int]] = []
    for n, item in enumerate(business):
        key, event = (n, 1, 0), item.event
        if isinstance(event, PaymentSettled) and len(event.applications) == 1:
            invoice_at = positions[event.applications[0].invoice_id][0]
            refs = (event.payment_id, event.applications[0].invoice_id)
            if business[invoice_at].day == item.day and rng.random() < early_rate:
                if _untouched(positions, refs, invoice_at, n):
                    lowest = first_of_day[item.day]
                    key = (max(lowest, invoice_at - rng.randrange(_EARLY_WINDOW)), 0, n)
                    features["early_payments"] += 1
            elif (item.day + 3 * DAY).month != item.day.month:
                close = closes.get((event.entity, period_of(item.day)))
                if close is not None and rng.random() < late_rate:
                    target = min(len(business) - 1, close + rng.randrange(_LATE_WINDOW))
                    if _untouched(positions, refs, n, target + 1):
                        key = (target, 2, n)
                        features["late_arriving_payments"] += 1
        keys.append(key)
    order = sorted(range(len(business)), key=keys.__getitem__)
    return [(business[n], keys[n][1] != 1) for n in order]


def _untouched(positions: dict[str, list[int]], refs: tuple[str, ...], low: int, high: int) -> bool:
    """True when no record strictly between ``low`` and ``high`` refers to ``refs``."""
    return not any(low < at < high for ref in refs for at in positions[ref])


def _duplicate(
    rng: random.Random, arrival: list[tuple[Item, bool]], rate: float, features: Counter[str]
) -> list[tuple[Item, bool]]:
    """Redeliver some events a little later (same id, same payload); (item, in place)."""
    later: dict[int, list[Item]] = {}
    for position, (item, _) in enumerate(arrival):
        if item.group != CLOSE_GROUP and rng.random() < rate:
            later.setdefault(position + rng.randrange(1, _REDELIVERY_WINDOW), []).append(item)
    result: list[tuple[Item, bool]] = []
    for position, (item, moved) in enumerate(arrival):
        result.append((item, not moved))
        for again in later.pop(position, []):
            result.append((again, False))
            features["redelivered"] += 1
    for position in sorted(later):
        for again in later[position]:
            result.append((again, False))
            features["redelivered"] += 1
    return result


def _with_ticks(delivered: list[tuple[Item, bool]], ticks: list[ClockAdvanced]) -> list:
    """Records with each tick after every in-place record of its day and before the next day's.

    Moved and redelivered records do not place ticks, so the cadence changes nothing else.
    """
    records: list[Event | ReferenceRecord] = []
    next_tick = 0
    for item, in_place in delivered:
        while in_place and next_tick < len(ticks) and ticks[next_tick].business_date < item.day:
            records.append(ticks[next_tick])
            next_tick += 1
        records.append(item.event)
    records.extend(ticks[next_tick:])
    return records


# --- payouts --------------------------------------------------------------------------------


def _cash_movement(event: Event | ReferenceRecord) -> int:
    """What ``event`` moves on the processor balance (cash clearing)."""
    if isinstance(event, PaymentSettled):
        return event.amount_minor - event.fee_minor
    if isinstance(event, RefundIssued):
        return -event.amount_minor
    if isinstance(event, DisputeClosed):
        lost = event.amount_minor if event.outcome == "lost" else 0
        return -lost - event.fee_minor
    return 0


@dataclass(slots=True)
class _Balance:
    """One processor account: cash arrived, cash old enough to pay out, cash paid out."""

    arrived: int = 0
    matured: int = 0
    paid: int = 0
    pending: list[tuple[dt.date, int, int]] = field(default_factory=list)  # heap: day, seq, amount


def _with_payouts(
    arrival: list[tuple[Item, bool]], start: dt.date, end: dt.date
) -> list[tuple[Item, bool]]:
    """Insert each payout day's payouts after the day's records, from cash that arrived."""
    days = [
        start + dt.timedelta(n)
        for n in range((end - start).days + 1)
        if (start + dt.timedelta(n)).weekday() in PAYOUT_WEEKDAYS
    ]
    balances: dict[tuple[str, str], _Balance] = {}
    result: list[tuple[Item, bool]] = []
    next_day = 0
    for seq, (item, moved) in enumerate(arrival):
        while not moved and next_day < len(days) and days[next_day] < item.day:
            result.extend((payout, False) for payout in _payouts(balances, days[next_day]))
            next_day += 1
        result.append((item, moved))
        amount = _cash_movement(item.event)
        if amount:
            event = item.event
            balance = balances.setdefault((event.entity, event.currency), _Balance())
            balance.arrived += amount
            heapq.heappush(balance.pending, (item.day, seq, amount))
    for day in days[next_day:]:
        result.extend((payout, False) for payout in _payouts(balances, day))
    return result


def _payouts(balances: dict[tuple[str, str], _Balance], day: dt.date) -> list[Item]:
    """Pay out each account's matured cash, never more than its balance."""
    items = []
    for (entity, currency), balance in sorted(balances.items()):
        while balance.pending and balance.pending[0][0] <= day - PAYOUT_DELAY:
            balance.matured += heapq.heappop(balance.pending)[2]
        amount = min(balance.matured, balance.arrived) - balance.paid
        if amount < 1:
            continue
        balance.paid += amount
        payout_id = f"PO-{entity}-{currency}-{day:%Y%m%d}"
        event = PayoutPaid(
            event_id=f"evt-{payout_id}",
            occurred_at=dt.datetime.combine(day, dt.time(18), dt.UTC),
            source_system="stripe",
            source_id=payout_id,
            entity=entity,
            customer_id=f"processor:stripe:{entity}-{currency}",
            payout_id=payout_id,
            payout_date=day,
            currency=currency,
            amount_minor=amount,
            bank_account=f"{entity}-{currency}-operating",
        )
        items.append(Item(day, PAYOUT_GROUP, -1, 0, len(items), event))
    return items
