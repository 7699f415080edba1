"""Deterministic generator of a contract book: bookings, amendments, billing, usage, cash.

``generate_contracts(seed, customers, months, start, duplicate_rate, out_of_order_rate)``
returns a :class:`~connectors.simulation.company.GeneratedStream`: the reference records
(entities US1 in USD, EU1 in EUR amortizing ``monthly_prorated``, US2 in USD catching up
``at_invoice``; products of every recognition pattern; one EUR/USD rate per day) and the
events in ARRIVAL order, with one ``ClockAdvanced`` tick per month end. Per customer:

* 1-2 contracts booked in the first 12 months, each with a 12- or 24-month subscription
  (ratable daily, monthly even or, by product override, monthly prorated), sometimes a
  point-in-time setup and a usage obligation; service may start before the booking;
* invoices tied to obligations: annual or monthly in advance, the setup on the first
  one, usage monthly in arrears; priced usage events;
* amendments of all three ASC 606 treatments (a separate contract adding an obligation, a
  prospective upgrade priced on what remains, a cumulative catch-up repricing), each
  billed when it raises the price; some cancellations, credited for the unused service;
* outage credits for past service, a few invoices without a contract (implied
  contracts, some voided) and a payment of what is due for most invoices.

Business order is by business date, a month's tick after that month's events. Arrival
order then moves some amendments and usage of the booking's month ahead of their
contract's booking (they are held and released by it; only an event whose one dependency
is the booking moves: a contract's first amendment, usage) and delivers some events twice
(same id, same payload); ticks are never moved nor repeated.
Replaying the arrival order through the revenue engine rejects nothing. Same seed, same
stream. Every event's ``occurred_at`` is its business date (noon UTC).

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

import calendar
import datetime as dt
import random
from dataclasses import dataclass, field

from connectors.simulation import builders as b
from connectors.simulation.company import GeneratedStream
from ledger.errors import InvariantViolation
from ledger.events import ClockAdvanced, Event, ReferenceRecord
from ledger.money import allocate
from revenue.events import PerformanceObligationSpec

US2 = "US2"
_DAY = dt.timedelta(days=1)
# Same-day order in business time: what an event needs sorts before it; the tick is last.
_BOOKING, _AMENDMENT, _CANCELLATION, _INVOICE, _USAGE, _VOID, _CREDIT, _PAYMENT = range(8)
_TICK = 99
# (product id, recognition pattern) of the subscription a contract sells.
_SUBSCRIPTIONS = (("SUB", "ratable_daily"), ("SUBM", "ratable_monthly"), ("SUBP", "ratable_daily"))
# Positions a moved event may land ahead of its booking, and a redelivery after its first.
_MOVE_WINDOW = 40
_REDELIVERY_WINDOW = 30


@dataclass(frozen=True, slots=True)
class _Item:
    """An event with its place in business order; ``booking``: it may move ahead of it."""

    day: dt.date
    rank: int
    customer: int
    order: int
    event: Event | ClockAdvanced
    booking: str | None = None

    @property
    def key(self) -> tuple:
        """Business order: by day, the day's tick last, one customer's events together."""
        return (self.day, self.rank == _TICK, self.customer, self.rank, self.order)


@dataclass(slots=True)
class _Line:
    """A service-period invoice line open to credit."""

    contract_id: str | None
    invoice_id: str
    line_id: str
    amount: int
    service: tuple[dt.date, dt.date] | None
    left: int


@dataclass(slots=True)
class _Invoice:
    """An issued invoice: its gross and the credits dated against it."""

    invoice_id: str
    day: dt.date
    gross: int
    credits: list[tuple[dt.date, int]] = field(default_factory=list)
    voided: bool = False

    @property
    def creditable(self) -> int:
        """What a credit may still take without crediting the invoice in full."""
        return self.gross - 1 - sum(amount for _, amount in self.credits)


@dataclass(slots=True)
class _Contract:
    """A contract as the CRM sees it now: current obligations, price and end."""

    contract_id: str
    booking: dt.date
    booking_event_id: str
    obligations: dict[str, PerformanceObligationSpec]
    total: int
    subscription: str
    ends: dt.date | None = None  # cancellation effective date
    amendments: int = 0


@dataclass(slots=True)
class _Customer:
    """One customer's events under generation (business order comes from sorting)."""

    rng: random.Random
    index: int
    customer_id: str
    entity: str
    currency: str
    start: dt.date
    last: dt.date
    items: list[_Item]
    invoices: dict[str, _Invoice] = field(default_factory=dict)
    lines: list[_Line] = field(default_factory=list)
    counter: int = 0

    def next_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.customer_id}-{self.counter}"

    def add(self, day: dt.date, rank: int, event: Event, booking: str | None = None) -> None:
        """Record ``event`` dated ``day``; events after the horizon are dropped."""
        if day > self.last:
            return
        noon = dt.datetime.combine(day, dt.time(12), dt.UTC)
        dated = event.model_copy(update={"occurred_at": noon})
        self.items.append(_Item(day, rank, self.index, len(self.items), dated, booking))

    def common(self, day: dt.date) -> dict:
        return {
            "currency": self.currency,
            "entity_name": self.entity,
            "on": day,
            "customer": self.customer_id,
        }


def add_months(day: dt.date, months: int) -> dt.date:
    """``day`` moved by whole months, clamped to the month's last day."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return dt.date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def month_ends(start: dt.date, months: int) -> list[dt.date]:
    """The last day of each of ``months`` months from ``start``'s month."""
    first = start.replace(day=1)
    return [add_months(first, n + 1) - _DAY for n in range(months)]


def reference_records(rng: random.Random, start: dt.date, last: dt.date) -> list[ReferenceRecord]:
    """Entities, products of every pattern, GL codes, one EUR/USD rate per day."""
    records: list[ReferenceRecord] = [
        *b.base_records(),
        b.entity(b.EU, "EUR", amortization_method="monthly_prorated"),
        b.entity(US2, "USD", catch_up_policy="at_invoice"),
        b.product("SUBM", "subscription", pattern="ratable_monthly"),
        b.product("SUBP", "subscription", amortization_method="monthly_prorated"),
        b.product("SETUP", "services", pattern="point_in_time"),
        b.product("API", "usage", pattern="usage"),
    ]
    for entity_name in (b.US, b.EU, US2):
        records.extend(b.chart(entity_name))
    rate = 1.0850
    for offset in range(-5, (last - start).days + 6):
        rate = min(max(rate + rng.uniform(-0.004, 0.004), 0.95), 1.25)
        text = f"{round(rate * 10_000) / 10_000:.4f}"
        records.append(b.fx("EUR", "USD", text, start + dt.timedelta(days=offset)))
    return records


def generate_contracts(
    seed: int,
    customers: int,
    months: int = 24,
    start: dt.date = dt.date(2024, 1, 1),
    duplicate_rate: float = 0.03,
    out_of_order_rate: float = 0.03,
) -> GeneratedStream:
    """A deterministic stream: see the module docstring."""
    rng = random.Random(seed)
    ticks = month_ends(start, months)
    reference = reference_records(rng, start, ticks[-1])
    items: list[_Item] = []
    for n in range(customers):
        person = _new_customer(rng, n, start, ticks[-1])
        for k in range(rng.choice((1, 2, 2))):
            _contract(person, f"K{n:04d}-{k + 1}")
        if rng.random() < 0.2:
            _implied_invoices(person)
        _outage_credits(person)
        _payments(person)
        items.extend(person.items)
    items.extend(_Item(day, _TICK, customers, n, b.clock(day)) for n, day in enumerate(ticks))
    business = sorted(items, key=lambda item: item.key)
    arrival = _reorder(rng, business, out_of_order_rate)
    return GeneratedStream(reference, _duplicate(rng, arrival, duplicate_rate))


def _new_customer(rng: random.Random, n: int, start: dt.date, last: dt.date) -> _Customer:
    draw = rng.random()
    if draw < 0.45:
        entity_name, currency = b.US, "USD"
    elif draw < 0.7:
        entity_name, currency = b.EU, "EUR"
    elif draw < 0.85:
        entity_name, currency = b.US, "EUR"
    else:
        entity_name, currency = US2, "USD"
    return _Customer(rng, n, f"C{n:04d}", entity_name, currency, start, last, [])


# --- contracts -----------------------------------------------------------------------------


def _contract(person: _Customer, contract_id: str) -> None:
    """Book a contract, bill it, meter its usage, then amend and maybe cancel it."""
    rng = person.rng
    window = min(365, (person.last - person.start).days + 1)
    booking = person.start + dt.timedelta(days=rng.randrange(window))
    specs, term = _obligations(rng, contract_id, booking, person.start)
    scheduled = [spec for spec in specs if spec.pattern != "usage"]
    total = sum(spec.ssp_minor for spec in scheduled) * rng.choice((100, 95, 90, 85, 80)) // 100
    discounted: tuple[str, ...] = ()
    if len(scheduled) > 1 and rng.random() < 0.3 and total >= scheduled[1].ssp_minor:
        # The discount relates to the subscription only: the setup keeps its SSP.
        discounted = (scheduled[0].obligation_id,)
        prices = [total - scheduled[1].ssp_minor, scheduled[1].ssp_minor]
    else:
        prices = allocate(total, [spec.ssp_minor for spec in scheduled])
    priced = {s.obligation_id: p for s, p in zip(scheduled, prices, strict=True)}
    specs = [s.model_copy(update={"price_minor": priced.get(s.obligation_id, 0)}) for s in specs]
    event = b.contract(contract_id, total, specs, discounted=discounted, **person.common(booking))
    person.add(booking, _BOOKING, event)
    contract = _Contract(
        contract_id,
        booking,
        event.event_id,
        {spec.obligation_id: spec for spec in specs},
        total,
        specs[0].obligation_id,
    )
    amendment_days = _plan_changes(person, contract)
    _subscription_invoices(person, contract, term)
    _usage(person, contract)
    for n, day in enumerate(amendment_days, start=1):
        treatment = rng.choice((_separate, _prospective, _catch_up))
        treatment(person, contract, day, f"{contract_id}-A{n}")
    if contract.ends is not None:
        _cancel(person, contract)


def _obligations(
    rng: random.Random, contract_id: str, booking: dt.date, earliest: dt.date
) -> tuple[list[PerformanceObligationSpec], int]:
    """A subscription (its term in months), sometimes a setup and a usage obligation."""
    draw = rng.random()
    if draw < 0.6:
        begins = booking
    elif draw < 0.8:
        begins = booking + dt.timedelta(days=rng.randrange(1, 20))
    else:  # signed late: service started before the booking
        begins = max(earliest, booking - dt.timedelta(days=rng.randrange(1, 25)))
    term = rng.choice((12, 24))
    ends = add_months(begins, term) - _DAY
    product_id, pattern = rng.choice(_SUBSCRIPTIONS)
    ssp = rng.randrange(1_200, 60_000) * 100 * term // 12
    specs = [
        b.obligation(
            f"{contract_id}-SUB", ssp, begins, ends, pattern=pattern, product_id=product_id
        )
    ]
    if rng.random() < 0.5:
        delivered = begins + dt.timedelta(days=rng.randrange(30))
        ssp = rng.randrange(500, 5_000) * 100
        specs.append(
            b.obligation(
                f"{contract_id}-SET",
                ssp,
                delivered,
                pattern="point_in_time",
                product_id="SETUP",
                family="services",
            )
        )
    if rng.random() < 0.3:
        specs.append(
            b.obligation(
                f"{contract_id}-USE",
                0,
                begins,
                ends,
                pattern="usage",
                product_id="API",
                family="usage",
            )
        )
    return specs, term


def _plan_changes(person: _Customer, contract: _Contract) -> list[dt.date]:
    """Days of the contract's amendments; sets its cancellation day (after them) if any."""
    rng = person.rng
    subscription = contract.obligations[contract.subscription]
    first = max(contract.booking, subscription.service_start) + dt.timedelta(days=20)
    last = min(_end(subscription), person.last) - dt.timedelta(days=20)
    if last <= first:
        return []
    count = rng.choice((0, 0, 0, 0, 0, 1, 1, 1, 2, 2))
    offsets = sorted(rng.sample(range((last - first).days + 1), count))
    days = [first + dt.timedelta(days=offset) for offset in offsets]
    if days and rng.random() < 0.25:  # a change order right after the signature
        days[0] = min(days[0], contract.booking + dt.timedelta(days=rng.randrange(1, 15)))
    after = days[-1] + _DAY if days else first
    if after < last and rng.random() < 0.15:
        contract.ends = after + dt.timedelta(days=rng.randrange((last - after).days + 1))
    return days


# --- billing and usage ---------------------------------------------------------------------

InvoiceLineSpec = tuple[str, int, str | None, tuple[dt.date, dt.date] | None]


def _invoice(
    person: _Customer, contract_id: str | None, day: dt.date, lines: list[InvoiceLineSpec]
) -> str:
    """Issue an invoice of (product, amount, obligation or None, service or None) lines."""
    invoice_id = person.next_id("INV")
    event = b.invoice(
        invoice_id,
        lines=[(product_id, amount) for product_id, amount, _, _ in lines],
        obligations=[obligation for _, _, obligation, _ in lines],
        contract=contract_id or "",
        **person.common(day),
    )
    dated = tuple(
        line.model_copy(update={"service_start": service[0], "service_end": service[1]})
        if service is not None
        else line
        for line, (_, _, _, service) in zip(event.lines, lines, strict=True)
    )
    person.add(day, _INVOICE, event.model_copy(update={"lines": dated}))
    if day <= person.last:
        person.invoices[invoice_id] = _Invoice(invoice_id, day, event.total_minor)
        for line, (product_id, amount, _, service) in zip(event.lines, lines, strict=True):
            if service is not None and product_id != "API":
                person.lines.append(
                    _Line(contract_id, invoice_id, line.line_id, amount, service, amount)
                )
    return invoice_id


def _subscription_invoices(person: _Customer, contract: _Contract, term: int) -> None:
    """Annual or monthly invoices in advance until the contract ends; the setup on the first."""
    rng = person.rng
    subscription = contract.obligations[contract.subscription]
    setup = contract.obligations.get(f"{contract.contract_id}-SET")
    step = 1 if rng.random() < 0.4 else 12
    amounts = allocate(subscription.price_minor, [1] * (term // step))
    for n, amount in enumerate(amounts):
        begins = add_months(subscription.service_start, n * step)
        ends = add_months(subscription.service_start, (n + 1) * step) - _DAY
        issued = max(begins - dt.timedelta(days=rng.randrange(10)), contract.booking)
        if issued > person.last or (contract.ends is not None and issued >= contract.ends):
            return
        lines: list[InvoiceLineSpec] = [
            (subscription.product_id, amount, subscription.obligation_id, (begins, ends))
        ]
        if n == 0 and setup is not None and setup.price_minor:
            lines.append((setup.product_id, setup.price_minor, setup.obligation_id, None))
        _invoice(person, contract.contract_id, issued, lines)


def _usage(person: _Customer, contract: _Contract) -> None:
    """Priced usage on most days of service, billed monthly in arrears."""
    rng = person.rng
    spec = contract.obligations.get(f"{contract.contract_id}-USE")
    if spec is None or spec.service_end is None:
        return
    first = max(spec.service_start, contract.booking)
    last = min(spec.service_end, person.last)
    if contract.ends is not None:
        last = min(last, contract.ends - _DAY)
    month = first.replace(day=1)
    while month <= last:
        lowest, highest = max(first, month), min(last, add_months(month, 1) - _DAY)
        metered = 0
        for _ in range(rng.randrange(4)):
            day = lowest + dt.timedelta(days=rng.randrange((highest - lowest).days + 1))
            amount = rng.randrange(1, 50_000)
            event = b.usage(
                person.next_id("U"),
                amount,
                contract=contract.contract_id,
                obligation=spec.obligation_id,
                **person.common(day),
            )
            person.add(day, _USAGE, event, booking=contract.booking_event_id)
            metered += amount
        if metered:
            lines: list[InvoiceLineSpec] = [("API", metered, spec.obligation_id, (lowest, highest))]
            _invoice(person, contract.contract_id, add_months(month, 1), lines)
        month = add_months(month, 1)


def _credit(person: _Customer, line: _Line, amount: int, day: dt.date, applies_to: str) -> None:
    """A credit note of at most ``amount`` on ``line`` (never the whole invoice)."""
    invoice = person.invoices[line.invoice_id]
    amount = min(amount, line.left, invoice.creditable)
    if amount < 1 or day > person.last or day < invoice.day:
        return
    event = b.credit_note(
        person.next_id("CN"),
        line.invoice_id,
        lines=[(line.line_id, amount)],
        applies_to=applies_to,
        **person.common(day),
    )
    person.add(day, _CREDIT, event)
    line.left -= amount
    invoice.credits.append((day, amount))


# --- modifications -------------------------------------------------------------------------


def _amend(person: _Customer, contract: _Contract, day: dt.date, event: Event) -> None:
    # Only the first amendment depends on nothing but the booking: it may arrive first.
    booking = contract.booking_event_id if contract.amendments == 0 else None
    person.add(day, _AMENDMENT, event, booking=booking)
    contract.amendments += 1


def _amendment(
    person: _Customer,
    contract: _Contract,
    day: dt.date,
    amendment_id: str,
    treatment: str,
    total: int,
    specs: list[PerformanceObligationSpec],
) -> None:
    event = b.amendment(
        amendment_id,
        treatment,
        total,
        specs,
        contract_id=contract.contract_id,
        effective=day,
        currency=person.currency,
        entity_name=person.entity,
        customer=person.customer_id,
    )
    _amend(person, contract, day, event)


def _separate(person: _Customer, contract: _Contract, day: dt.date, amendment_id: str) -> None:
    """A separate contract (ASC 606-10-25-12): training or add-on seats, billed at once."""
    rng = person.rng
    subscription = contract.obligations[contract.subscription]
    obligation_id = f"{amendment_id}-ADD"
    if rng.random() < 0.5:
        delivered = day + dt.timedelta(days=rng.randrange(20))
        ssp = rng.randrange(300, 3_000) * 100
        spec = b.obligation(
            obligation_id,
            ssp,
            delivered,
            pattern="point_in_time",
            product_id="SETUP",
            family="services",
        )
        service = None
    else:
        ssp = subscription.ssp_minor * rng.randrange(10, 60) // 100 + 100
        spec = b.obligation(
            obligation_id,
            ssp,
            day,
            _end(subscription),
            pattern=subscription.pattern,
            product_id=subscription.product_id,
        )
        service = (day, _end(subscription))
    price = ssp * rng.choice((100, 90, 80)) // 100
    spec = spec.model_copy(update={"price_minor": price})
    _amendment(person, contract, day, amendment_id, "separate_contract", price, [spec])
    contract.obligations[obligation_id] = spec
    contract.total += price
    _invoice(person, contract.contract_id, day, [(spec.product_id, price, obligation_id, service)])


def _end(spec: PerformanceObligationSpec) -> dt.date:
    """Last service day of a ratable obligation."""
    if spec.service_end is None:
        raise InvariantViolation(f"{spec.obligation_id} has no service end")
    return spec.service_end


def _remaining(spec: PerformanceObligationSpec, day: dt.date) -> float:
    """Share of a ratable obligation's service period from ``day`` on (0 when over)."""
    if spec.service_end is None or spec.service_end < day:
        return 0.0
    served = (spec.service_end - spec.service_start).days + 1
    return ((spec.service_end - max(day, spec.service_start)).days + 1) / served


def _prospective(person: _Customer, contract: _Contract, day: dt.date, amendment_id: str) -> None:
    """An upgrade (ASC 606-10-25-13a): a higher total; SSPs of what remains to deliver."""
    uplift = person.rng.uniform(0.1, 0.5)
    specs = []
    for spec in contract.obligations.values():
        remaining = _remaining(spec, day) if spec.pattern.startswith("ratable") else 0.0
        if remaining:
            ssp = max(1, round(spec.ssp_minor * remaining * (1 + uplift)))
            spec = spec.model_copy(update={"ssp_minor": ssp})
        specs.append(spec)
    subscription = contract.obligations[contract.subscription]
    extra = max(100, round(subscription.price_minor * _remaining(subscription, day) * uplift))
    _amendment(person, contract, day, amendment_id, "prospective", contract.total + extra, specs)
    contract.obligations = {spec.obligation_id: spec for spec in specs}
    contract.total += extra
    _bill_difference(person, contract, day, extra)


def _catch_up(person: _Customer, contract: _Contract, day: dt.date, amendment_id: str) -> None:
    """A repricing (ASC 606-10-25-13b): same obligations, a new total, caught up."""
    total = contract.total * person.rng.randrange(85, 121) // 100
    specs = list(contract.obligations.values())
    _amendment(person, contract, day, amendment_id, "cumulative_catch_up", total, specs)
    extra = total - contract.total
    contract.total = total
    if extra > 0:
        _bill_difference(person, contract, day, extra)


def _bill_difference(person: _Customer, contract: _Contract, day: dt.date, extra: int) -> None:
    subscription = contract.obligations[contract.subscription]
    service = (day, _end(subscription))
    line = (subscription.product_id, extra, subscription.obligation_id, service)
    _invoice(person, contract.contract_id, day, [line])


def _cancel(person: _Customer, contract: _Contract) -> None:
    """Cancel from ``contract.ends``; credit the billed service after it."""
    day = contract.ends
    if day is None:
        raise InvariantViolation(f"{contract.contract_id} is not cancelled")
    event = b.cancellation(
        contract.contract_id, day, entity_name=person.entity, customer=person.customer_id
    )
    person.add(day, _CANCELLATION, event)
    for line in person.lines:
        if line.contract_id != contract.contract_id or line.service is None:
            continue
        begins, ends = line.service
        if ends < day:
            continue
        unused = (ends - max(day, begins)).days + 1
        amount = line.amount * unused // ((ends - begins).days + 1)
        credited = max(day, person.invoices[line.invoice_id].day)
        credited += dt.timedelta(days=person.rng.randrange(10))
        _credit(person, line, amount, credited, "remaining_service")


# --- invoices without contract, outage credits, payments -----------------------------------


def _implied_invoices(person: _Customer) -> None:
    """Invoices whose lines name no contract (implied contracts); a quarter voided."""
    rng = person.rng
    for _ in range(rng.choice((1, 2))):
        day = person.start + dt.timedelta(days=rng.randrange((person.last - person.start).days))
        options: list[InvoiceLineSpec] = [
            ("SVC", rng.randrange(100, 5_000) * 100, None, (day, day + dt.timedelta(90))),
            ("SETUP", rng.randrange(100, 3_000) * 100, None, None),
            ("SUBM", rng.randrange(300, 9_000) * 100, None, (day, add_months(day, 3) - _DAY)),
        ]
        invoice_id = _invoice(person, None, day, rng.sample(options, rng.choice((1, 2))))
        if invoice_id in person.invoices and rng.random() < 0.25:
            voided = day + dt.timedelta(days=rng.randrange(1, 10))
            event = b.void(
                invoice_id, entity_name=person.entity, on=voided, customer=person.customer_id
            )
            person.add(voided, _VOID, event)
            if voided <= person.last:
                person.invoices[invoice_id].voided = True
                person.lines = [line for line in person.lines if line.invoice_id != invoice_id]


def _outage_credits(person: _Customer) -> None:
    """Credits for service already delivered (an outage) on a few service lines."""
    rng = person.rng
    for line in list(person.lines):
        if rng.random() >= 0.08 or line.service is None:
            continue
        begins, ends = line.service
        day = max(begins, person.invoices[line.invoice_id].day)
        day += dt.timedelta(days=rng.randrange(10, 60))
        if day <= ends:
            amount = max(1, line.amount * rng.randrange(2, 10) // 100)
            _credit(person, line, amount, day, "past_service")


def _payments(person: _Customer) -> None:
    """Most invoices paid within 45 days: what is due after the credits before that day."""
    rng = person.rng
    for invoice in person.invoices.values():
        if invoice.voided or rng.random() < 0.1:
            continue
        day = invoice.day + dt.timedelta(days=rng.randrange(45))
        due = invoice.gross - sum(amount for on, amount in invoice.credits if on <= day)
        fee = rng.choice((0, due * 3 // 100))
        event = b.payment(
            f"PAY-{invoice.invoice_id}",
            [(invoice.invoice_id, due)],
            fee=fee,
            **person.common(day),
        )
        person.add(day, _PAYMENT, event)


# --- arrival order ---------------------------------------------------------------------------


def _reorder(rng: random.Random, business: list[_Item], rate: float) -> list[_Item]:
    """Move some events that depend on their booking alone, of its month, ahead of it."""
    booked = {item.event.event_id: (n, item.day) for n, item in enumerate(business)}
    keys: list[tuple[float, int]] = []
    for n, item in enumerate(business):
        key = float(n)
        if item.booking is not None:
            at, day = booked[item.booking]
            # The CRM sent the booking late within its month: later usage arriving first
            # would come from the future (and post ahead of invoices it follows).
            same_month = (item.day.year, item.day.month) == (day.year, day.month)
            if same_month and rng.random() < rate:
                key = at - rng.randrange(1, _MOVE_WINDOW) + 0.5
        keys.append((key, n))
    return [business[n] for _, n in sorted(keys)]


def _duplicate(rng: random.Random, arrival: list[_Item], rate: float) -> list[Event]:
    """Redeliver some customer events a little later (same id, same payload)."""
    later: dict[int, list[Event]] = {}
    for position, item in enumerate(arrival):
        if item.rank != _TICK and rng.random() < rate:
            at = position + rng.randrange(_REDELIVERY_WINDOW)
            later.setdefault(at, []).append(item.event)
    result: list[Event] = []
    for position, item in enumerate(arrival):
        result.append(item.event)
        result.extend(later.pop(position, []))
    for position in sorted(later):
        result.extend(later[position])
    return result
