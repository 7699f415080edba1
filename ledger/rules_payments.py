"""Posting rules for payment events: settled, failed, refund, dispute, payout.

Postings (Dr / Cr):

* payment settled: Dr cash clearing amount; Cr AR per application (at most the invoice's
  amount due); Cr customer credit for unapplied cash and overpayment; fee Dr processor
  fees / Cr cash clearing; FX difference to realized FX;
* payment failed: none (the event id is remembered);
* refund: Dr customer credit first (the payment's unapplied cash, or the customer's credit
  balance, e.g. from a credit note on a paid invoice, whichever is larger), then Dr AR
  reopening the payment's applications, newest first; Cr cash clearing;
* dispute lost: Dr chargeback loss / Cr cash clearing; fee Dr processor fees / Cr cash
  clearing; dispute won: the fee only (no entry without a fee);
* payout: Dr bank / Cr cash clearing.

Choices: an application to an invoice with nothing due is rejected
(``invoice_already_settled``: likely a duplicate charge, for a human to look at); the
part of an application above the amount due is overpayment and goes to customer credit.
A refund takes back customer credit before reopening invoices, so customer credit never
goes negative, a credited paid invoice is not reopened, and an invoice's AR always
equals gross − payments − credits − write-offs.

FX: AR is relieved (or reopened) at the invoice's functional amount (cumulative share of
its functional gross); cash, fees and customer credit at the rate of record of the
event's date; the difference is one ``realized_fx`` line (debit = loss, credit = gain).

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from ledger.accounts import Account, Side
from ledger.drafts import EntryHeader, LineSpec
from ledger.errors import InvariantViolation
from ledger.events import DisputeClosed, PaymentFailed, PaymentSettled, PayoutPaid, RefundIssued
from ledger.posting import (
    Held,
    Posted,
    Rejected,
    RuleContext,
    check_entity_and_currency,
    dims,
    find_invoice,
    find_payment,
    header_for,
    make_entry,
    rate_for,
)
from ledger.results import EntryStatus
from ledger.state import CustomerLedger, InvoiceItem, PaymentItem

Application = tuple[InvoiceItem, int]


def post_payment_settled(
    state: CustomerLedger, event: PaymentSettled, context: RuleContext
) -> Posted | Held | Rejected:
    """Dr cash clearing / Cr AR per application, rest Cr customer credit; fee; FX."""
    failure = check_entity_and_currency(event, event.currency, context.reference)
    if failure is not None:
        return failure
    if event.payment_id in state.payments:
        return Rejected(
            EntryStatus.payment_exists,
            f"payment_id {event.payment_id!r} was settled by another event",
        )
    applications = _applications(state, event)
    if not isinstance(applications, list):
        return applications
    rate = rate_for(context.reference, event.entity, event.currency, event.settled_date)
    if isinstance(rate, Held):
        return rate
    header = header_for(
        event, context.reference, "payment_settled", f"Payment {event.payment_id} settled"
    )
    unapplied = event.amount_minor - sum(applied for _, applied in applications)
    entry = make_entry(
        header,
        event.currency,
        _payment_specs(header, event, applications, unapplied),
        rate,
        fx_difference=True,
    )
    if isinstance(entry, Rejected):
        return entry
    payment = PaymentItem(
        payment_id=event.payment_id,
        entity=event.entity,
        currency=event.currency,
        settled_date=event.settled_date,
        amount_minor=event.amount_minor,
        fee_minor=event.fee_minor,
        unapplied_minor=unapplied,
        applications=tuple((item.invoice_id, applied) for item, applied in applications),
    )
    new_state = state.with_payment(payment)
    for item, applied in applications:
        new_state = new_state.with_invoice(item.with_application(event.payment_id, applied))
    return Posted(new_state, (entry,))


def _applications(
    state: CustomerLedger, event: PaymentSettled
) -> list[Application] | Held | Rejected:
    """Invoices and the amount each relieves (capped at its amount due), checked."""
    found = [find_invoice(state, event, a.invoice_id, event.currency) for a in event.applications]
    for result in found:
        if isinstance(result, Held):
            return result
    for result in found:
        if isinstance(result, Rejected):
            return result
    applications: list[Application] = []
    for item, application in zip(found, event.applications, strict=True):
        if not isinstance(item, InvoiceItem):
            raise InvariantViolation("holds and rejections were returned above")
        if item.amount_due_minor == 0:
            return Rejected(
                EntryStatus.invoice_already_settled,
                f"invoice_id {application.invoice_id!r} has nothing due",
            )
        applications.append((item, min(application.amount_minor, item.amount_due_minor)))
    return applications


def _ar_relief(item: InvoiceItem, delta_minor: int) -> int:
    """Functional AR moved when ``delta_minor`` more (or, negative, less) is relieved."""
    before = item.relieved_minor
    return abs(item.functional_relieved(before + delta_minor) - item.functional_relieved(before))


def _payment_specs(
    header: EntryHeader, event: PaymentSettled, applications: list[Application], unapplied: int
) -> list[LineSpec]:
    payment_dims = dims(header, payment_id=event.payment_id)
    specs = [LineSpec(Account.cash_clearing, Side.debit, event.amount_minor, payment_dims)]
    for item, applied in applications:
        specs.append(
            LineSpec(
                Account.accounts_receivable,
                Side.credit,
                applied,
                dims(header, payment_id=event.payment_id, invoice_id=item.invoice_id),
                _ar_relief(item, applied),
            )
        )
    if unapplied:
        specs.append(LineSpec(Account.customer_credit, Side.credit, unapplied, payment_dims))
    if event.fee_minor:
        specs.append(LineSpec(Account.processor_fees, Side.debit, event.fee_minor, payment_dims))
        specs.append(LineSpec(Account.cash_clearing, Side.credit, event.fee_minor, payment_dims))
    return specs


def post_payment_failed(
    state: CustomerLedger, event: PaymentFailed, context: RuleContext
) -> Posted | Rejected:
    """No posting: a failed attempt is only remembered (its event id)."""
    failure = check_entity_and_currency(event, event.currency, context.reference)
    return failure if failure is not None else Posted(state)


def post_refund(
    state: CustomerLedger, event: RefundIssued, context: RuleContext
) -> Posted | Held | Rejected:
    """Dr customer credit (unapplied cash, credit-note credit), then Dr AR; Cr cash clearing."""
    failure = check_entity_and_currency(event, event.currency, context.reference)
    if failure is not None:
        return failure
    payment = find_payment(state, event, event.payment_id, event.currency)
    if not isinstance(payment, PaymentItem):
        return payment
    if event.amount_minor > payment.refundable_minor:
        return Rejected(
            EntryStatus.refund_exceeds_payment,
            f"amount_minor {event.amount_minor} exceeds payment"
            f" {payment.payment_id!r} refundable {payment.refundable_minor}",
        )
    rate = rate_for(context.reference, event.entity, event.currency, event.refund_date)
    if isinstance(rate, Held):
        return rate
    # Customer credit first: the payment's unapplied cash, or credit that credit notes
    # on paid invoices left; only the rest reopens the invoices the payment settled.
    credit = state.balance(event.entity, Account.customer_credit, event.currency)
    available = max(payment.unapplied_minor, credit.net_minor(Account.customer_credit))
    from_credit = min(event.amount_minor, available)
    reopened = _reopened(state, payment, event.amount_minor - from_credit)
    header = header_for(event, context.reference, "refund", f"Refund {event.refund_id}")
    entry = make_entry(
        header,
        event.currency,
        _refund_specs(header, event, from_credit, reopened),
        rate,
        fx_difference=True,
    )
    if isinstance(entry, Rejected):
        return entry
    return Posted(_after_refund(state, event, payment, from_credit, reopened), (entry,))


def _reopened(state: CustomerLedger, payment: PaymentItem, amount_minor: int) -> list[Application]:
    """Applications of ``payment`` taken back, newest first, for ``amount_minor`` in total."""
    reopened: list[Application] = []
    for invoice_id, applied in reversed(payment.applications):
        if amount_minor == 0:
            break
        taken = min(applied, amount_minor)
        reopened.append((state.invoices[invoice_id], taken))
        amount_minor -= taken
    return reopened


def _refund_specs(
    header: EntryHeader, event: RefundIssued, from_credit: int, reopened: list[Application]
) -> list[LineSpec]:
    refund_dims = dims(header, payment_id=event.payment_id, refund_id=event.refund_id)
    specs = []
    if from_credit:
        specs.append(LineSpec(Account.customer_credit, Side.debit, from_credit, refund_dims))
    for item, taken in reopened:
        specs.append(
            LineSpec(
                Account.accounts_receivable,
                Side.debit,
                taken,
                dims(
                    header,
                    payment_id=event.payment_id,
                    refund_id=event.refund_id,
                    invoice_id=item.invoice_id,
                ),
                _ar_relief(item, -taken),
            )
        )
    specs.append(LineSpec(Account.cash_clearing, Side.credit, event.amount_minor, refund_dims))
    return specs


def _after_refund(
    state: CustomerLedger,
    event: RefundIssued,
    payment: PaymentItem,
    from_credit: int,
    reopened: list[Application],
) -> CustomerLedger:
    taken_by_invoice = {item.invoice_id: taken for item, taken in reopened}
    applications = tuple(
        (invoice_id, applied - taken_by_invoice.get(invoice_id, 0))
        for invoice_id, applied in payment.applications
    )
    new_payment = replace(
        payment,
        applications=tuple(pair for pair in applications if pair[1] > 0),
        unapplied_minor=payment.unapplied_minor - min(from_credit, payment.unapplied_minor),
        refunded_minor=payment.refunded_minor + event.amount_minor,
    )
    new_state = state.with_payment(new_payment)
    for item, taken in reopened:
        current = dict(item.applications)[payment.payment_id]
        new_state = new_state.with_invoice(
            item.with_application(payment.payment_id, current - taken)
        )
    return new_state


def post_dispute_closed(
    state: CustomerLedger, event: DisputeClosed, context: RuleContext
) -> Posted | Held | Rejected:
    """Lost: Dr chargeback loss / Cr cash clearing, plus fee. Won: fee only."""
    failure = check_entity_and_currency(event, event.currency, context.reference)
    if failure is not None:
        return failure
    payment = find_payment(state, event, event.payment_id, event.currency)
    if not isinstance(payment, PaymentItem):
        return payment
    lost = event.outcome == "lost"
    if lost and event.amount_minor > payment.refundable_minor:
        return Rejected(
            EntryStatus.dispute_exceeds_payment,
            f"amount_minor {event.amount_minor} exceeds payment"
            f" {payment.payment_id!r} refundable {payment.refundable_minor}",
        )
    if not lost and event.fee_minor == 0:
        return Posted(state)
    rate = rate_for(context.reference, event.entity, event.currency, event.closed_date)
    if isinstance(rate, Held):
        return rate
    entry = _dispute_entry(event, context, rate, lost)
    if isinstance(entry, Rejected):
        return entry
    if lost:
        disputed = payment.disputed_minor + event.amount_minor
        state = state.with_payment(replace(payment, disputed_minor=disputed))
    return Posted(state, (entry,))


def _dispute_entry(event: DisputeClosed, context: RuleContext, rate: Decimal, lost: bool):
    rule = "dispute_lost" if lost else "dispute_fee"
    header = header_for(
        event,
        context.reference,
        rule,
        f"Dispute {event.dispute_id} {event.outcome} on {event.payment_id}",
    )
    dispute_dims = dims(header, payment_id=event.payment_id, dispute_id=event.dispute_id)
    specs = []
    if lost:
        specs.append(
            LineSpec(Account.chargeback_loss, Side.debit, event.amount_minor, dispute_dims)
        )
        specs.append(LineSpec(Account.cash_clearing, Side.credit, event.amount_minor, dispute_dims))
    if event.fee_minor:
        specs.append(LineSpec(Account.processor_fees, Side.debit, event.fee_minor, dispute_dims))
        specs.append(LineSpec(Account.cash_clearing, Side.credit, event.fee_minor, dispute_dims))
    return make_entry(header, event.currency, specs, rate)


def post_payout(
    state: CustomerLedger, event: PayoutPaid, context: RuleContext
) -> Posted | Held | Rejected:
    """Dr bank / Cr cash clearing."""
    failure = check_entity_and_currency(event, event.currency, context.reference)
    if failure is not None:
        return failure
    rate = rate_for(context.reference, event.entity, event.currency, event.payout_date)
    if isinstance(rate, Held):
        return rate
    header = header_for(event, context.reference, "payout", f"Payout {event.payout_id}")
    payout_dims = dims(header, payout_id=event.payout_id, bank_account=event.bank_account)
    specs = [
        LineSpec(Account.bank, Side.debit, event.amount_minor, payout_dims),
        LineSpec(Account.cash_clearing, Side.credit, event.amount_minor, payout_dims),
    ]
    entry = make_entry(header, event.currency, specs, rate)
    return entry if isinstance(entry, Rejected) else Posted(state, (entry,))
