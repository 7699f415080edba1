"""Deterministic generator of a realistic event stream for a small SaaS company.

``generate_company(seed, customers, events, duplicate_rate, out_of_order_rate)`` returns
the reference records (two entities: US1 in USD and EU1 in EUR, a product catalogue, a
daily EUR/USD rate) and the customer events in ARRIVAL order: invoices, payments (partial,
full, with unapplied cash and fees), credit notes, write-offs, refunds, disputes, usage
(on a usage contract booked before the customer's first usage),
failed payments, voids and payouts, some EUR invoices in the USD entity. A fraction of
events arrive twice (same id, same payload) and a fraction of payments arrive before
their invoice. Same seed, same stream, byte for byte.

Every generated stream is valid in business order, and reordering only moves a payment
ahead of its invoice when nothing else touched that invoice in between, so replaying the
arrival order through the ledger posts every event and rejects none.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field

from connectors.simulation import builders as b
from ledger.events import Event, ReferenceRecord

START = dt.date(2024, 1, 2)
# Days the business clock may cover: rates are published for each of them.
HORIZON_DAYS = 400


@dataclass(frozen=True, slots=True)
class GeneratedStream:
    """Reference records (apply first) and customer events in arrival order."""

    reference: list[ReferenceRecord]
    events: list[Event]


@dataclass(slots=True)
class _Customer:
    customer_id: str
    entity: str
    currency: str
    due: dict[str, int] = field(default_factory=dict)  # invoice id -> amount due
    creditable: dict[str, int] = field(default_factory=dict)  # invoice line id -> net left
    invoice_creditable: dict[str, int] = field(default_factory=dict)  # gross - credits - w/o
    touched: set[str] = field(default_factory=set)  # invoices with any application
    refundable: dict[str, int] = field(default_factory=dict)  # payment id -> refundable
    metered: bool = False  # a usage contract was booked
    counter: int = 0

    def next_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.customer_id}-{self.counter}"


def reference_records(rng: random.Random) -> list[ReferenceRecord]:
    """Entities, catalogue, GL mappings and one EUR/USD rate per day of the horizon."""
    records: list[ReferenceRecord] = list(b.base_records())
    rate = 1.0850
    for offset in range(-5, HORIZON_DAYS):
        rate = min(max(rate + rng.uniform(-0.004, 0.004), 0.95), 1.25)
        text = f"{round(rate * 10_000) / 10_000:.4f}"
        records.append(b.fx("EUR", "USD", text, START + dt.timedelta(days=offset)))
    for entity_name in (b.US, b.EU):
        records.extend(b.chart(entity_name))
    return records


def _customers(rng: random.Random, count: int) -> list[_Customer]:
    result = []
    for n in range(count):
        draw = rng.random()
        entity_name, currency = (
            (b.US, "USD") if draw < 0.6 else ((b.EU, "EUR") if draw < 0.85 else (b.US, "EUR"))
        )
        result.append(_Customer(f"C{n:04d}", entity_name, currency))
    return result


def generate_company(
    seed: int,
    customers: int,
    events: int,
    duplicate_rate: float,
    out_of_order_rate: float,
    *,
    book_usage_contracts: bool = True,
) -> GeneratedStream:
    """A deterministic stream: see the module docstring.

    ``book_usage_contracts``: book a usage contract (``K-<customer>``) before a customer's
    first usage, as the revenue engine needs; False for the subledger alone, which takes
    usage without contracts.
    """
    rng = random.Random(seed)
    reference = reference_records(rng)
    people = _customers(rng, customers)
    business: list[Event] = []
    day = START
    for person in people:
        business.append(
            b.customer_upserted(
                person.customer_id, entity_name=person.entity, currency=person.currency
            )
        )
    while len(business) < events:
        if rng.random() < 0.3:
            day = min(day + dt.timedelta(days=1), START + dt.timedelta(days=HORIZON_DAYS - 1))
        if rng.random() < 0.03:
            business.append(_payout(rng, day))
            continue
        business.extend(_next_event(rng, rng.choice(people), day, book_usage_contracts))
    arrival = _reorder(rng, business[:events], out_of_order_rate)
    return GeneratedStream(reference, _duplicate(rng, arrival, duplicate_rate))


def _payout(rng: random.Random, day: dt.date) -> Event:
    entity_name, currency = rng.choice([(b.US, "USD"), (b.EU, "EUR")])
    return b.payout(
        f"PO-{day}-{rng.randrange(10**9)}",
        rng.randrange(1_00, 50_000_00),
        currency=currency,
        entity_name=entity_name,
        on=day,
        customer=f"processor:stripe:{entity_name}",
    )


def _common(person: _Customer, day: dt.date) -> dict:
    return {
        "currency": person.currency,
        "entity_name": person.entity,
        "on": day,
        "customer": person.customer_id,
    }


def _next_event(
    rng: random.Random, person: _Customer, day: dt.date, book_usage_contracts: bool
) -> list[Event]:
    open_invoices = sorted(i for i, due in person.due.items() if due > 0)
    paid = sorted(p for p, left in person.refundable.items() if left > 0)
    draw = rng.random()
    if draw < 0.30 or not open_invoices:
        return [_invoice(rng, person, day)]
    if draw < 0.65:
        return [_payment(rng, person, day, rng.choice(open_invoices))]
    if draw < 0.72:
        return [_credit_note(rng, person, day, rng.choice(sorted(person.due)))]
    if draw < 0.75:
        return [_write_off(rng, person, day, rng.choice(open_invoices))]
    if draw < 0.80 and paid:
        return [_refund_or_dispute(rng, person, day, rng.choice(paid))]
    if draw < 0.88:
        return _usage(rng, person, day, book_usage_contracts)
    if draw < 0.93:
        return [
            b.payment_failed(
                person.next_id("PF"), amount=rng.randrange(1_00, 900_00), **_common(person, day)
            )
        ]
    untouched = [i for i in open_invoices if i not in person.touched]
    if untouched:
        invoice_id = rng.choice(untouched)
        del person.due[invoice_id]
        return [b.void(invoice_id, entity_name=person.entity, on=day, customer=person.customer_id)]
    return [_invoice(rng, person, day)]


def _usage(rng: random.Random, person: _Customer, day: dt.date, book: bool) -> list[Event]:
    contract_id = f"K-{person.customer_id}"
    usage = b.usage(
        person.next_id("U"),
        rng.randrange(0, 200_00),
        contract=contract_id,
        obligation="OB-U",
        **_common(person, day),
    )
    if not book or person.metered:
        return [usage]
    person.metered = True
    metered = b.obligation("OB-U", 0, day, pattern="usage", product_id="USG", family="usage")
    booking = b.contract(contract_id, 0, [metered], **_common(person, day))
    return [booking, usage]


def _invoice(rng: random.Random, person: _Customer, day: dt.date) -> Event:
    invoice_id = person.next_id("INV")
    products = [rng.choice(("SUB", "USG", "SVC")) for _ in range(rng.randrange(1, 4))]
    lines = [(pid, rng.randrange(1_00, 2_000_00)) for pid in products]
    tax = rng.choice([0, 0, sum(a for _, a in lines) // 10])
    event = b.invoice(invoice_id, lines=lines, tax=tax, **_common(person, day))
    person.due[invoice_id] = event.total_minor
    person.invoice_creditable[invoice_id] = event.total_minor
    for line in event.lines:
        person.creditable[line.line_id] = line.amount_minor
    return event


def _payment(rng: random.Random, person: _Customer, day: dt.date, invoice_id: str) -> Event:
    due = person.due[invoice_id]
    applied = due if rng.random() < 0.6 else rng.randrange(1, due + 1)
    extra = rng.choice([0, 0, 0, rng.randrange(1, 50_00)])
    fee = rng.choice([0, (applied + extra) * 3 // 100])
    payment_id = person.next_id("PAY")
    person.due[invoice_id] = due - applied
    person.touched.add(invoice_id)
    person.refundable[payment_id] = applied + extra
    return b.payment(
        payment_id, [(invoice_id, applied)], amount=applied + extra, fee=fee, **_common(person, day)
    )


def _credit_note(rng: random.Random, person: _Customer, day: dt.date, invoice_id: str) -> Event:
    line_ids = sorted(
        k for k, v in person.creditable.items() if k.startswith(f"{invoice_id}-") and v > 0
    )
    if not line_ids:
        return _invoice(rng, person, day)
    line_id = rng.choice(line_ids)
    most = min(person.creditable[line_id], person.invoice_creditable[invoice_id])
    if most <= 0:
        return _invoice(rng, person, day)
    amount = rng.randrange(1, most + 1)
    person.creditable[line_id] -= amount
    person.invoice_creditable[invoice_id] -= amount
    person.due[invoice_id] = max(0, person.due[invoice_id] - amount)
    person.touched.add(invoice_id)
    return b.credit_note(
        person.next_id("CN"), invoice_id, lines=[(line_id, amount)], **_common(person, day)
    )


def _write_off(rng: random.Random, person: _Customer, day: dt.date, invoice_id: str) -> Event:
    amount = person.due[invoice_id]
    person.due[invoice_id] = 0
    person.invoice_creditable[invoice_id] -= amount
    person.touched.add(invoice_id)
    return b.write_off(invoice_id, amount, event_id=person.next_id("WO"), **_common(person, day))


def _refund_or_dispute(
    rng: random.Random, person: _Customer, day: dt.date, payment_id: str
) -> Event:
    left = person.refundable[payment_id]
    amount = rng.randrange(1, left + 1)
    person.refundable[payment_id] = left - amount
    if rng.random() < 0.7:
        return b.refund(person.next_id("RF"), payment_id, amount, **_common(person, day))
    outcome = rng.choice(["lost", "won"])
    if outcome == "won":
        person.refundable[payment_id] = left
    return b.dispute(
        person.next_id("DP"),
        payment_id,
        amount,
        outcome=outcome,
        fee=rng.choice([0, 15_00]),
        **_common(person, day),
    )


def _reorder(rng: random.Random, business: list[Event], rate: float) -> list[Event]:
    """Move some payments ahead of their invoice (only when nothing touched it in between)."""
    arrival = list(business)
    for event in business:
        if event.event_type != "payment.settled" or rng.random() >= rate:
            continue
        invoice_ids = {a.invoice_id for a in event.applications}
        position = next(i for i, e in enumerate(arrival) if e is event)
        invoice_positions = [
            i
            for i, e in enumerate(arrival[:position])
            if e.event_type == "invoice.issued" and e.invoice_id in invoice_ids
        ]
        if not invoice_positions:
            continue
        first = min(invoice_positions)
        if any(_touches(e, invoice_ids) for e in arrival[first + 1 : position]):
            continue
        arrival.pop(position)
        arrival.insert(rng.randrange(max(0, first - 20), first + 1), event)
    return arrival


def _touches(event: Event, invoice_ids: set[str]) -> bool:
    if event.event_type == "payment.settled":
        return any(a.invoice_id in invoice_ids for a in event.applications)
    return getattr(event, "invoice_id", None) in invoice_ids


def _duplicate(rng: random.Random, arrival: list[Event], rate: float) -> list[Event]:
    """Redeliver some events a little later (same id, same payload)."""
    later: dict[int, list[Event]] = {}
    for position, event in enumerate(arrival):
        if rng.random() < rate:
            later.setdefault(position + rng.randrange(0, 30), []).append(event)
    result: list[Event] = []
    for position, event in enumerate(arrival):
        result.append(event)
        result.extend(later.pop(position, []))
    for position in sorted(later):
        result.extend(later[position])
    return result
