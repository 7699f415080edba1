"""One customer of the simulated SaaS company: plan terms, seat changes, usage, billing.

:mod:`connectors.simulation.saas` makes a :class:`~connectors.simulation.saas_model.Customer`
per customer id with :func:`new_customer`, calls :func:`live`, and merges every customer's
items into business order. A life, in business time:

* sign-up: ``CustomerUpserted``; for some, a one-off onboarding package (a contract of its
  own: one point-in-time obligation delivered a few weeks later, invoiced at booking);
* terms of a monthly or an annual plan (Team or Business, priced per seat; 10 % off annual
  plans from 100 seats), each a contract booked on its first day (the seats, and a usage
  obligation when the customer took the API add-on) and invoiced in advance that day;
* seat upgrades mid-term: a prospective amendment (ASC 606-10-25-13a) whose proration is a
  line of the next renewal invoice (monthly plans) or an invoice of its own at once (annual
  plans). Downgrades: at the renewal (monthly), or mid-term with a prospective amendment
  and a credit note for the unused seats (annual);
* API usage on a few days a month, billed monthly in arrears;
* churn: a monthly plan not renewed, or cancelled at once with the unused days credited;
  an annual plan not renewed, or cancelled mid-term with the rest of the term credited;
  involuntary churn (dunning): charges fail, the plan is cancelled and credited, and what
  is still due is written off a month later;
* a training day bought later by some (another one-off contract); outage credits for past
  service on a few subscription invoices;
* then its cash (:mod:`connectors.simulation.saas_cash`).

Invoices carry sales tax or VAT by the customer's jurisdiction; credit notes give back the
tax of what they credit, and never the whole invoice. Amounts are integers in minor units:
proration by days, tax at a rate in thousandths of a percent, rounded half up, all in
integer arithmetic.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random

from connectors.simulation import builders as b
from connectors.simulation.contracts import add_months
from connectors.simulation.saas_cash import disputes, refund_credits, settle
from connectors.simulation.saas_catalogue import (
    ANNUAL_CANCELLATION_RATE,
    ANNUAL_NON_RENEWAL_RATE,
    API,
    CARD,
    CATALOGUE,
    COMPANY_NAMES,
    DUNNING_RATE,
    EU_TAX,
    MONTHLY_CHURN_RATE,
    MONTHLY_UPGRADE_RATE,
    ONBOARDING,
    OUTAGE_CREDIT_RATE,
    PLANS,
    PRICE_PER_THOUSAND_CALLS,
    RENEWAL_DOWNGRADE_RATE,
    SERVICE_PRICES,
    TRAINING,
    TRANSFER,
    US_TAX,
)
from connectors.simulation.saas_model import (
    AMENDMENT,
    BOOKING,
    CANCELLATION,
    CREDIT,
    CUSTOMER,
    DAY,
    INVOICE,
    USAGE,
    Charge,
    Credit,
    Customer,
    Invoice,
    Line,
    Term,
)
from ledger.events import (
    CreditNoteIssued,
    CreditNoteLine,
    CustomerUpserted,
    InvoiceIssued,
    InvoiceLine,
    TaxLine,
    UsageRecorded,
)
from revenue.events import (
    ContractAmended,
    ContractBooked,
    ContractCancelled,
    PerformanceObligationSpec,
)


def new_customer(
    rng: random.Random, index: int, width: int, start: dt.date, last: dt.date
) -> Customer:
    """A customer's traits: entity and currency, tax, plan, seats, payment method, sign-up."""
    draw = rng.random()
    if draw < 0.55:
        entity, currency, regimes = b.US, "USD", US_TAX
    elif draw < 0.90:
        entity, currency, regimes = b.EU, "EUR", EU_TAX
    else:  # customers abroad billed in euros by the US entity: no US tax
        entity, currency, regimes = b.US, "EUR", ((None, 1),)
    tax = rng.choices([r for r, _ in regimes], [w for _, w in regimes])[0]
    if tax is not None:
        country = tax.country
    elif entity == b.EU:  # reverse charge: a business in another member state
        country = rng.choice(("AT", "BE", "DK", "PL", "SE"))
    else:
        country = "US" if currency == "USD" else "CH"
    tier = "business" if rng.random() < 0.35 else "team"
    plan_months = 12 if rng.random() < 0.4 else 1
    seats = rng.randint(10, 250) if tier == "business" else rng.randint(2, 30)
    card_share = 0.85 if plan_months == 1 else 0.4
    method = CARD if rng.random() < card_share else TRANSFER
    horizon = (last - start).days + 1
    # A third sign up in the first weeks (the existing base moving over), the rest later.
    window = min(horizon, 28) if rng.random() < 0.35 else max(1, horizon * 9 // 10)
    return Customer(
        rng=rng,
        index=index,
        customer_id=f"C{index:0{width}d}",
        entity=entity,
        currency=currency,
        tax=tax,
        country=country,
        tier=tier,
        plan_months=plan_months,
        seats=seats,
        method=method,
        metered=rng.random() < 0.35,
        signup=start + dt.timedelta(days=rng.randrange(window)),
        last=last,
    )


def live(person: Customer) -> None:
    """Generate the customer's whole life (see the module docstring) into ``person.items``."""
    rng = person.rng
    name = " ".join(rng.choice(words) for words in COMPANY_NAMES)
    suffix = "Inc." if person.country == "US" else ("GmbH" if person.country == "DE" else "Ltd")
    event = CustomerUpserted(
        **person.envelope("billing", f"CUS-{person.customer_id}", person.signup),
        name=f"{name} {suffix}",
        billing_currency=person.currency,
        country=person.country,
        # EU business customers give their VAT number (reverse charge needs it).
        tax_id=f"{person.country}{person.index:09d}" if person.entity == b.EU else None,
    )
    person.add(person.signup, CUSTOMER, event)
    if rng.random() < (0.6 if person.tier == "business" else 0.2):
        _one_off(person, person.signup, ONBOARDING)
    if person.plan_months == 1:
        _monthly_terms(person)
    else:
        _annual_terms(person)
    _training(person)
    _outage_credits(person)
    settle(person)
    refund_credits(person)
    disputes(person)


# --- terms, contracts and amendments -----------------------------------------------------


def _book_term(person: Customer, number: int, begins: dt.date, ends: dt.date, seats: int) -> Term:
    """Book the contract of one plan term: the seats, and usage for the API add-on."""
    plan = PLANS[person.tier, person.plan_months]
    discount = 10 if plan.months == 12 and seats >= 100 else 0
    seat_price = plan.seat_price_minor * (100 - discount) // 100
    contract_id = f"SUB-{person.customer_id}-{number + 1:02d}"
    seats_spec = PerformanceObligationSpec(
        obligation_id=f"{contract_id}-SEATS",
        product_id=plan.product_id,
        family="subscription",
        quantity=seats,
        price_minor=seats * seat_price,
        ssp_minor=seats * plan.seat_price_minor,
        pattern=plan.pattern,
        service_start=begins,
        service_end=ends,
    )
    usage_spec = None
    if person.metered:
        usage_spec = b.obligation(
            f"{contract_id}-API", 0, begins, ends, pattern="usage", product_id=API, family="usage"
        )
    specs = (seats_spec,) if usage_spec is None else (seats_spec, usage_spec)
    event = ContractBooked(
        **person.envelope("crm", contract_id, begins),
        contract_id=contract_id,
        booking_date=begins,
        currency=person.currency,
        total_price_minor=seats * seat_price,
        obligations=specs,
    )
    person.add(begins, BOOKING, event)
    return Term(
        contract_id,
        plan,
        begins,
        ends,
        seats,
        seat_price,
        seats * seat_price,
        seats_spec,
        usage_spec,
    )


def _bill_term(person: Customer, term: Term, carry: list[Charge], dunning: bool) -> Invoice:
    """Invoice the term in advance on its first day, with lines carried from the last term."""
    charge = Charge(
        term.plan.product_id,
        f"{term.plan.name}, {term.seats} seats, {term.begins} to {term.ends}",
        term.seats,
        term.total,
        term.contract_id,
        term.seats_spec.obligation_id,
        (term.begins, term.ends),
    )
    invoice = _invoice(person, term.begins, [charge, *carry], dunning=dunning)
    if invoice is None:  # the caller checked that the term begins within the horizon
        raise ValueError(f"term {term.contract_id} begins after the horizon")
    term.invoice = invoice
    person.service_lines.append((invoice, invoice.lines[0], term.begins, term.ends))
    return invoice


def _monthly_terms(person: Customer) -> None:
    """Month-to-month terms from the sign-up day until churn or the horizon."""
    rng, seats, carry = person.rng, person.seats, []
    for number in itertools.count():
        begins = add_months(person.signup, number)
        if begins > person.last:
            return
        term = _book_term(
            person, number, begins, add_months(person.signup, number + 1) - DAY, seats
        )
        dunning = person.method == CARD and rng.random() < DUNNING_RATE[CARD]
        _bill_term(person, term, carry, dunning)
        carry = []
        if dunning:
            _involuntary_churn(person, term, term.begins + dt.timedelta(days=14))
            return
        churn = rng.random() < MONTHLY_CHURN_RATE
        if churn and rng.random() < 0.5:  # cancelled at once, the unused days credited
            stop = term.begins + dt.timedelta(days=rng.randrange(5, 20))
            _stop(person, term, stop, "customer cancelled", _usage_charges(person, term, stop))
            return
        if rng.random() < MONTHLY_UPGRADE_RATE and term.days > 10:
            day = term.begins + dt.timedelta(days=rng.randrange(3, term.days - 3))
            carry.extend(_upgrade(person, term, day))
        carry.extend(_usage_charges(person, term, term.ends + DAY))
        if churn:  # not renewed: the last usage and proration billed the next day
            person.active_until = term.ends
            _cancel(person, term, term.ends + DAY, "not renewed")
            if carry:
                _invoice(person, term.ends + DAY, carry)
            return
        seats = term.seats
        if rng.random() < RENEWAL_DOWNGRADE_RATE and seats >= 2:
            seats -= rng.randint(1, max(1, seats // 3))
            person.features["downgrades_at_renewal"] += 1


def _annual_terms(person: Customer) -> None:
    """Annual terms from the sign-up day until churn or the horizon."""
    rng, seats = person.rng, person.seats
    for number in itertools.count():
        begins = add_months(person.signup, 12 * number)
        if begins > person.last:
            return
        ends = add_months(person.signup, 12 * (number + 1)) - DAY
        term = _book_term(person, number, begins, ends, seats)
        dunning = rng.random() < DUNNING_RATE[person.method]
        _bill_term(person, term, [], dunning)
        stop = None
        if dunning:
            stop = begins + dt.timedelta(days=60)
        elif rng.random() < ANNUAL_CANCELLATION_RATE:
            stop = begins + dt.timedelta(days=rng.randrange(60, term.days - 30))
        else:
            _seat_changes(person, term)
        _annual_usage(person, term, stop)
        if dunning and stop is not None:
            _involuntary_churn(person, term, stop, usage_billed=True)
            return
        if stop is not None:
            _stop(person, term, stop, "customer cancelled", [])
            return
        if rng.random() < ANNUAL_NON_RENEWAL_RATE:
            person.active_until = term.ends
            _cancel(person, term, term.ends + DAY, "not renewed")
            return
        seats = term.seats


def _stop(person: Customer, term: Term, stop: dt.date, reason: str, final: list[Charge]) -> bool:
    """Cancel ``term`` from ``stop``: the unused service credited, ``final`` billed that day.

    Returns False (nothing recorded) past the horizon.
    """
    person.active_until = stop - DAY
    if not _cancel(person, term, stop, reason):
        return False
    if final:
        _invoice(person, stop, final)
    if term.invoice is not None:
        unused = (term.ends - stop).days + 1
        amount = term.invoice.lines[0].amount * unused // term.days
        _credit(person, term.invoice, 0, amount, stop, "remaining_service", "unused service")
    return True


def _involuntary_churn(
    person: Customer, term: Term, stop: dt.date, *, usage_billed: bool = False
) -> None:
    """Dunning failed: cancel and credit from ``stop``; write off what is due a month later."""
    final = [] if usage_billed else _usage_charges(person, term, stop)
    if not _stop(person, term, stop, "payment failed", []):
        return
    write_off_on = stop + dt.timedelta(days=30)
    if final:
        invoice = _invoice(person, stop, final, dunning=True)
        if invoice is not None:
            invoice.write_off_on = write_off_on
    if term.invoice is not None:
        term.invoice.write_off_on = write_off_on
    person.features["involuntary_churn"] += 1


def _cancel(person: Customer, term: Term, effective: dt.date, reason: str) -> bool:
    event = ContractCancelled(
        **person.envelope("crm", f"CXL-{term.contract_id}", effective),
        contract_id=term.contract_id,
        effective_date=effective,
        reason=reason,
    )
    if not person.add(effective, CANCELLATION, event):
        return False
    person.features["cancellations"] += 1
    return True


def _amend(person: Customer, term: Term, day: dt.date, seats: int, total: int) -> bool:
    """A prospective amendment: ``seats`` from ``day``, the contract now worth ``total``.

    Returns False (nothing recorded) past the horizon.
    """
    term.amendments += 1
    amendment_id = f"{term.contract_id}-A{term.amendments}"
    remaining = (term.ends - day).days + 1
    # SSP of what remains to deliver from the effective date (ASC 606-10-25-13a).
    ssp = max(1, seats * term.plan.seat_price_minor * remaining // term.days)
    spec = term.seats_spec.model_copy(update={"quantity": seats, "ssp_minor": ssp})
    specs = (spec,) if term.usage_spec is None else (spec, term.usage_spec)
    event = ContractAmended(
        **person.envelope("crm", amendment_id, day),
        contract_id=term.contract_id,
        amendment_id=amendment_id,
        effective_date=day,
        treatment="prospective",
        currency=person.currency,
        total_price_minor=total,
        obligations=specs,
    )
    term.seats_spec, term.seats, term.total = spec, seats, total
    return person.add(day, AMENDMENT, event)


def _upgrade(person: Customer, term: Term, day: dt.date) -> list[Charge]:
    """More seats from ``day``: the amendment, and the proration charge for the rest."""
    added = person.rng.randint(1, max(1, term.seats // 4))
    remaining = (term.ends - day).days + 1
    extra = max(1_00, added * term.seat_price * remaining // term.days)
    if _amend(person, term, day, term.seats + added, term.total + extra):
        person.features["upgrades"] += 1
    description = f"Proration: {added} more seats, {day} to {term.ends}"
    charge = Charge(
        term.plan.product_id,
        description,
        added,
        extra,
        term.contract_id,
        term.seats_spec.obligation_id,
        (day, term.ends),
    )
    return [charge]


def _seat_changes(person: Customer, term: Term) -> None:
    """An annual term's mid-term changes: upgrades billed at once, downgrades credited."""
    rng = person.rng
    first, last = term.begins + dt.timedelta(days=30), term.ends - dt.timedelta(days=60)
    if last <= first:
        return
    count = rng.choice((0, 0, 1, 1, 1, 2))
    for offset in sorted(rng.sample(range((last - first).days + 1), count)):
        day = first + dt.timedelta(days=offset)
        if rng.random() < 0.7 or term.seats < 2 or not _downgrade(person, term, day):
            _upgrade_at_once(person, term, day)


def _upgrade_at_once(person: Customer, term: Term, day: dt.date) -> None:
    """An annual plan's upgrade, its proration invoiced the same day."""
    if _invoice(person, day, _upgrade(person, term, day)) is not None:
        person.features["proration_invoices"] += 1


def _downgrade(person: Customer, term: Term, day: dt.date) -> bool:
    """Fewer seats from ``day``, the unused part credited; False when it cannot be credited."""
    invoice = term.invoice
    removed = person.rng.randint(1, max(1, term.seats // 2))
    credit = removed * term.seat_price * ((term.ends - day).days + 1) // term.days
    if invoice is None or day > person.last or not _can_credit(person, invoice, 0, credit):
        return False
    _amend(person, term, day, term.seats - removed, term.total - credit)
    _credit(person, invoice, 0, credit, day, "remaining_service", f"{removed} seats fewer")
    person.features["downgrades"] += 1
    return True


# --- one-off services, usage and credits --------------------------------------------------


def _one_off(person: Customer, day: dt.date, product_id: str) -> None:
    """A service sold on its own contract, delivered later, invoiced on booking."""
    contract_id = person.next_id("SVC")
    price = SERVICE_PRICES[product_id, person.tier]
    delivered = day + dt.timedelta(days=person.rng.randrange(5, 30))
    spec = PerformanceObligationSpec(
        obligation_id=f"{contract_id}-1",
        product_id=product_id,
        family="services",
        quantity=1,
        price_minor=price,
        ssp_minor=price,
        pattern="point_in_time",
        service_start=delivered,
    )
    event = ContractBooked(
        **person.envelope("crm", contract_id, day),
        contract_id=contract_id,
        booking_date=day,
        currency=person.currency,
        total_price_minor=price,
        obligations=(spec,),
    )
    if person.add(day, BOOKING, event):
        name = next(c[1] for c in CATALOGUE if c[0] == product_id)
        charge = Charge(
            product_id, f"{name}, on {delivered}", 1, price, contract_id, f"{contract_id}-1"
        )
        _invoice(person, day, [charge])
        person.features["one_off_services"] += 1


def _training(person: Customer) -> None:
    """Some customers buy a training day while they are customers."""
    rng = person.rng
    if rng.random() >= 0.12:
        return
    day = person.signup + dt.timedelta(days=rng.randrange(20, 300))
    if day <= min(person.active_until or person.last, person.last):
        _one_off(person, day, TRAINING)


def _usage(person: Customer, term: Term, first: dt.date, last: dt.date) -> int:
    """Priced API usage on a few days of ``[first, last]``; returns the amount metered."""
    if term.usage_spec is None or last < first:
        return 0
    rng, metered = person.rng, 0
    for _ in range(rng.randrange(1, 5)):
        day = first + dt.timedelta(days=rng.randrange((last - first).days + 1))
        calls = rng.randrange(5, 400) * 1_000 + rng.randrange(1_000)
        amount = calls * PRICE_PER_THOUSAND_CALLS // 1_000
        usage_id = person.next_id("USE")
        event = UsageRecorded(
            **person.envelope("metering", usage_id, day),
            usage_id=usage_id,
            contract_id=term.contract_id,
            obligation_id=term.usage_spec.obligation_id,
            usage_date=day,
            quantity=calls,
            currency=person.currency,
            amount_minor=amount,
        )
        if person.add(day, USAGE, event):
            metered += amount
            person.features["usage_records"] += 1
    return metered


def _usage_charges(person: Customer, term: Term, stop: dt.date) -> list[Charge]:
    """The term's usage before ``stop`` and its charge (billed in arrears)."""
    last = min(stop - DAY, term.ends, person.last)
    amount = _usage(person, term, term.begins, last)
    if not amount or term.usage_spec is None:
        return []
    description = f"API calls, {term.begins} to {last}"
    return [
        Charge(
            API,
            description,
            1,
            amount,
            term.contract_id,
            term.usage_spec.obligation_id,
            (term.begins, last),
        )
    ]


def _annual_usage(person: Customer, term: Term, stop: dt.date | None) -> None:
    """An annual term's usage, invoiced each month in arrears (the last part at ``stop``)."""
    if term.usage_spec is None:
        return
    for month in range(12):
        begins = add_months(term.begins, month)
        ends = add_months(term.begins, month + 1) - DAY
        if stop is not None:
            ends = min(ends, stop - DAY)
        if begins > min(ends, person.last):
            return
        amount = _usage(person, term, begins, ends)
        if amount:
            charge = Charge(
                API,
                f"API calls, {begins} to {ends}",
                1,
                amount,
                term.contract_id,
                term.usage_spec.obligation_id,
                (begins, ends),
            )
            _invoice(person, ends + DAY, [charge])


def _outage_credits(person: Customer) -> None:
    """Service credits for an outage, on a few subscription lines, for service delivered."""
    rng = person.rng
    for invoice, line, begins, ends in person.service_lines:
        if rng.random() >= OUTAGE_CREDIT_RATE:
            continue
        ends = min(ends, person.active_until or ends)
        day = begins + dt.timedelta(days=rng.randrange(5, 26))
        if day <= ends:
            amount = line.amount * rng.randrange(5, 21) // 100
            index = invoice.lines.index(line)
            if _credit(person, invoice, index, amount, day, "past_service", "outage credit"):
                person.features["outage_credits"] += 1


def _can_credit(person: Customer, invoice: Invoice, index: int, amount: int) -> bool:
    tax = min(_tax_of(person, invoice, amount), invoice.tax_left)
    return 1 <= amount <= invoice.lines[index].left and amount + tax <= invoice.creditable


def _tax_lines(person: Customer, tax: int) -> tuple[TaxLine, ...]:
    if not tax or person.tax is None:
        return ()
    regime = person.tax
    return (TaxLine(tax_code=regime.tax_code, jurisdiction=regime.jurisdiction, amount_minor=tax),)


def _tax_of(person: Customer, invoice: Invoice, amount: int) -> int:
    return person.tax.tax_of(amount) if person.tax is not None and invoice.tax_left else 0


def _credit(
    person: Customer,
    invoice: Invoice,
    index: int,
    amount: int,
    day: dt.date,
    scope: str,
    reason: str,
) -> int:
    """A credit note of ``amount`` (capped) on line ``index``, with its tax; returns its total."""
    line = invoice.lines[index]
    amount = min(amount, line.left)
    while amount >= 1 and not _can_credit(person, invoice, index, amount):
        amount = amount * 9 // 10  # the invoice's remaining room is smaller: credit less
    if amount < 1 or day < invoice.day:
        return 0
    tax = min(_tax_of(person, invoice, amount), invoice.tax_left)
    credit_note_id = person.next_id("CN")
    taxes = _tax_lines(person, tax)
    event = CreditNoteIssued(
        **person.envelope("billing", credit_note_id, day),
        credit_note_id=credit_note_id,
        invoice_id=invoice.invoice_id,
        issue_date=day,
        currency=person.currency,
        lines=(CreditNoteLine(invoice_line_id=line.line_id, amount_minor=amount),),
        tax_lines=taxes,
        total_minor=amount + tax,
        reason=reason,
        applies_to=scope,
    )
    if not person.add(day, CREDIT, event):
        return 0
    line.left -= amount
    invoice.tax_left -= tax
    invoice.credits.append(Credit(day, amount + tax))
    person.features["credit_notes"] += 1
    return amount + tax


def _invoice(
    person: Customer, day: dt.date, charges: list[Charge], *, dunning: bool = False
) -> Invoice | None:
    """Issue an invoice of ``charges`` with tax; None past the horizon."""
    invoice_id = person.next_id("INV")
    lines = tuple(
        InvoiceLine(
            line_id=f"{invoice_id}-{n}",
            description=charge.description,
            product_id=charge.product_id,
            quantity=charge.quantity,
            amount_minor=charge.amount_minor,
            contract_id=charge.contract_id,
            obligation_id=charge.obligation_id,
            service_start=charge.service[0] if charge.service else None,
            service_end=charge.service[1] if charge.service else None,
        )
        for n, charge in enumerate(charges, start=1)
    )
    net = sum(charge.amount_minor for charge in charges)
    tax = person.tax.tax_of(net) if person.tax is not None else 0
    taxes = _tax_lines(person, tax)
    terms = dt.timedelta(days=30 if person.method == TRANSFER else 0)
    event = InvoiceIssued(
        **person.envelope("billing", invoice_id, day),
        invoice_id=invoice_id,
        issue_date=day,
        due_date=day + terms,
        currency=person.currency,
        lines=lines,
        tax_lines=taxes,
        total_minor=net + tax,
    )
    if not person.add(day, INVOICE, event):
        return None
    invoice = Invoice(
        invoice_id,
        day,
        net + tax,
        tax,
        [Line(line.line_id, line.amount_minor, line.amount_minor) for line in lines],
        dunning,
    )
    person.invoices.append(invoice)
    return invoice
