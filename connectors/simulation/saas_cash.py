"""A simulated SaaS customer's cash: card charges, bank transfers, refunds, disputes.

Runs once a customer's invoices and credits are generated, so that every payment settles
what is due on its day after the credits dated up to then:

* card: charged on the invoice day; some charges fail and are retried after 3 (or 7) days;
* bank transfer: within net 30; some late, a few in two parts, a few overpaid (the rest is
  unapplied cash, the customer's credit);
* dunning: an invoice that is never paid is charged three times (cards), then what is
  still due is written off on the day the plan decided;
* refunds of credit notes issued after an invoice was paid in full (all customer credit,
  so a refund never reopens the invoice) and of overpaid cash;
* a few card payments disputed, won or lost, with the processor's fee.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

import datetime as dt

from connectors.simulation.saas_catalogue import (
    CARD,
    CARD_RETRY_RATE,
    DISPUTE_FEE_MINOR,
    DISPUTE_RATE,
    TRANSFER_LATE_RATE,
    TRANSFER_OVERPAID_RATE,
    TRANSFER_PARTIAL_RATE,
)
from connectors.simulation.saas_model import (
    DISPUTE,
    FAILURE,
    PAYMENT,
    REFUND,
    WRITE_OFF,
    Customer,
    Invoice,
    Payment,
)
from ledger.events import (
    DisputeClosed,
    InvoiceWrittenOff,
    PaymentApplication,
    PaymentFailed,
    PaymentSettled,
    RefundIssued,
)


def settle(person: Customer) -> None:
    """Payments of every invoice, by the customer's method; dunning and write-offs."""
    for invoice in person.invoices:
        if invoice.dunning:
            _dunning(person, invoice)
        elif person.method == CARD:
            _charge(person, invoice)
        else:
            _transfer(person, invoice)


def _charge(person: Customer, invoice: Invoice) -> None:
    """A card charge on the invoice day; some fail and are retried after 3 (or 7) days."""
    rng, day = person.rng, invoice.day
    if rng.random() < CARD_RETRY_RATE:
        _fail(person, invoice, day)
        if rng.random() < 0.3:
            _fail(person, invoice, day + dt.timedelta(days=3))
            day += dt.timedelta(days=4)
        if _pay(person, invoice, day + dt.timedelta(days=3)) is not None:
            person.features["retried_payments"] += 1
        return
    _pay(person, invoice, day)


def _transfer(person: Customer, invoice: Invoice) -> None:
    """A bank transfer: on time within net 30; some late, in two parts, or overpaid."""
    rng, draw = person.rng, person.rng.random()
    on_time = invoice.day + dt.timedelta(days=rng.randrange(3, 30))
    if draw < TRANSFER_OVERPAID_RATE:
        extra = rng.randrange(1_00, 200_00)
        if _pay(person, invoice, on_time, extra=extra) is not None:
            person.features["overpayments"] += 1
    elif draw < TRANSFER_OVERPAID_RATE + TRANSFER_PARTIAL_RATE:
        part = invoice.due_on(on_time) * rng.randrange(40, 80) // 100
        if _pay(person, invoice, on_time, amount=max(1, part)) is not None:
            person.features["partial_payments"] += 1
            _pay(person, invoice, on_time + dt.timedelta(days=rng.randrange(7, 30)))
    elif draw < TRANSFER_OVERPAID_RATE + TRANSFER_PARTIAL_RATE + TRANSFER_LATE_RATE:
        late = invoice.day + dt.timedelta(days=30 + rng.randrange(5, 60))
        if _pay(person, invoice, late) is not None:
            person.features["late_payments"] += 1
    else:
        _pay(person, invoice, on_time)


def _pay(
    person: Customer, invoice: Invoice, day: dt.date, *, amount: int | None = None, extra: int = 0
) -> Payment | None:
    """Settle ``amount`` (default: all that is due on ``day``) plus ``extra`` unapplied cash."""
    due = invoice.due_on(day)
    if due <= 0:
        return None
    applied = due if amount is None else min(amount, due)
    total = applied + extra
    card = person.method == CARD
    # Processor list prices: cards 2.9 % + 30 minor units, bank debits 0.8 % capped at 5.00.
    fee = total * 29 // 1_000 + 30 if card else min(total * 8 // 1_000, 5_00)
    payment_id = person.next_id("PAY")
    event = PaymentSettled(
        **person.envelope("stripe", payment_id, day),
        payment_id=payment_id,
        settled_date=day,
        currency=person.currency,
        amount_minor=total,
        fee_minor=fee,
        applications=(PaymentApplication(invoice_id=invoice.invoice_id, amount_minor=applied),),
        processor="stripe",
        method=person.method,
    )
    if not person.add(day, PAYMENT, event):
        return None
    invoice.paid += applied
    if applied == due:
        invoice.paid_on = day
    payment = Payment(payment_id, day, total, extra, invoice, total)
    person.payments.append(payment)
    return payment


def _fail(person: Customer, invoice: Invoice, day: dt.date) -> None:
    due = invoice.due_on(day)
    if due <= 0:
        return
    payment_id = person.next_id("PF")
    event = PaymentFailed(
        **person.envelope("stripe", payment_id, day),
        payment_id=payment_id,
        failed_date=day,
        currency=person.currency,
        amount_minor=due,
        failure_code=person.rng.choice(("card_declined", "insufficient_funds", "expired_card")),
        invoice_ids=(invoice.invoice_id,),
    )
    if person.add(day, FAILURE, event):
        person.features["failed_payments"] += 1


def _dunning(person: Customer, invoice: Invoice) -> None:
    """Charges that fail (cards), then what is still due written off."""
    if person.method == CARD:
        for offset in (0, 3, 7):
            _fail(person, invoice, invoice.day + dt.timedelta(days=offset))
    day = invoice.write_off_on
    if day is None or invoice.due_on(day) <= 0:
        return
    write_off_id = person.next_id("WO")
    event = InvoiceWrittenOff(
        **person.envelope("billing", write_off_id, day),
        invoice_id=invoice.invoice_id,
        write_off_date=day,
        currency=person.currency,
        amount_minor=invoice.due_on(day),
        reason="uncollectible after dunning",
    )
    if person.add(day, WRITE_OFF, event):
        person.features["write_offs"] += 1


def _refund(person: Customer, payment: Payment, amount: int, day: dt.date, reason: str) -> None:
    refund_id = person.next_id("RF")
    event = RefundIssued(
        **person.envelope("stripe", refund_id, day),
        refund_id=refund_id,
        payment_id=payment.payment_id,
        refund_date=day,
        currency=person.currency,
        amount_minor=amount,
        reason=reason,
    )
    if person.add(day, REFUND, event):
        payment.refundable -= amount
        payment.refunded = True
        person.features["refunds"] += 1


def refund_credits(person: Customer) -> None:
    """Refund credit notes issued after an invoice was paid, and overpaid cash.

    Such a credit is all customer credit (nothing was due), so the refund takes customer
    credit and never reopens the invoice.
    """
    rng = person.rng
    share = 0.8 if person.method == CARD else 0.5
    for invoice in person.invoices:
        if invoice.paid_on is None:
            continue
        for credit in invoice.credits:
            if credit.day <= invoice.paid_on or rng.random() >= share:
                continue
            paying = [p for p in person.payments if p.invoice is invoice]
            payment = next((p for p in reversed(paying) if p.refundable >= credit.total), None)
            if payment is not None:
                day = credit.day + dt.timedelta(days=rng.randrange(1, 8))
                _refund(person, payment, credit.total, day, "credit note refunded")
    for payment in person.payments:
        if payment.extra and rng.random() < 0.6:
            day = payment.day + dt.timedelta(days=rng.randrange(5, 21))
            _refund(person, payment, payment.extra, day, "overpayment returned")


def disputes(person: Customer) -> None:
    """A few card payments disputed by the cardholder, won or lost, with a fee."""
    rng = person.rng
    for payment in person.payments:
        if person.method != CARD or payment.refunded or payment.extra:
            continue
        if any(credit.day >= payment.day for credit in payment.invoice.credits):
            continue
        if rng.random() >= DISPUTE_RATE:
            continue
        day = payment.day + dt.timedelta(days=rng.randrange(30, 76))
        lost = rng.random() < 0.5
        dispute_id = person.next_id("DP")
        event = DisputeClosed(
            **person.envelope("stripe", dispute_id, day),
            dispute_id=dispute_id,
            payment_id=payment.payment_id,
            closed_date=day,
            outcome="lost" if lost else "won",
            currency=person.currency,
            amount_minor=payment.amount,
            fee_minor=DISPUTE_FEE_MINOR,
        )
        if person.add(day, DISPUTE, event):
            payment.refundable -= payment.amount if lost else 0
            person.features["disputes_lost" if lost else "disputes_won"] += 1
