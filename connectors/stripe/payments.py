"""Stripe money movements -> canonical payment events.

* ``invoice.paid`` -> ``PaymentSettled`` applied to the invoice: ``payment_id`` is the
  charge that paid it (``invoice.charge`` before API version 2025-03-31, else
  ``invoice.payments`` when the payload includes it, else ``<invoice id>/payment``);
  an invoice paid out of band (outside Stripe) is skipped: the money is not in Stripe's
  balance, the bank's records bring it;
* ``charge.succeeded`` / ``charge.captured`` -> ``PaymentSettled`` without application (the
  customer's credit balance) for a captured charge that names no invoice; a charge of an
  invoice is skipped (``invoice.paid`` carries it), as is every charge when
  ``standalone_charges`` is off;
* ``charge.refunded`` (or ``refund.created``, per ``refund_source``) -> ``RefundIssued`` per
  refund; a failed or cancelled refund moved no money and is left out;
* ``charge.dispute.closed`` -> ``DisputeClosed`` won or lost (an inquiry closed without a
  chargeback is skipped), with the dispute fees of its balance transactions;
* ``payout.paid`` -> ``PayoutPaid`` keyed by the Stripe balance
  (``processor:stripe:<account>``); a payout reversal is refused for a person to post.

Processor fees come from a charge's balance transaction when the payload carries it
expanded (Stripe's own webhooks send only its id: see docs/STRIPE.md); a fee in another
currency than the charge is converted at the balance transaction's exchange rate.

Card and bank details are never read: the payment method becomes its type (``card``),
a payout's destination its Stripe id.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from connectors.stripe.context import (
    PROCESSOR,
    Context,
    Refusal,
    Skip,
    build,
    customer_of_charge,
    parse,
)
from connectors.stripe.objects import (
    BalanceTransaction,
    Charge,
    Dispute,
    Invoice,
    Payout,
    Refund,
    expanded,
    ref_id,
)
from ledger.events import (
    DisputeClosed,
    Event,
    PaymentApplication,
    PaymentSettled,
    PayoutPaid,
    RefundIssued,
)
from ledger.money import exponent

# Refund statuses in which the money has left (or is leaving) the Stripe balance.
_REFUND_MOVED = frozenset({"succeeded", "pending", "requires_action", None})


def fee_in(currency: str, transactions: list[BalanceTransaction], what: str) -> int:
    """Fees of ``transactions`` in ``currency`` (net of fees given back; never below 0).

    A balance transaction in another currency carries ``exchange_rate`` (source amount x
    rate = its amount): the fee is divided by it and rounded half-even once.
    """
    total = Decimal(0)
    for transaction in transactions:
        fee_currency = transaction.currency.upper()
        if fee_currency == currency:
            total += transaction.fee
            continue
        if not transaction.exchange_rate:
            raise Refusal(
                "stripe_payload_invalid",
                f"{what}: balance transaction {transaction.id} in {fee_currency} has no"
                " exchange_rate",
            )
        rate = Decimal(repr(transaction.exchange_rate))
        shift = exponent(currency) - exponent(fee_currency)
        total += (Decimal(transaction.fee) / rate).scaleb(shift)
    return max(0, int(total.quantize(Decimal(1), rounding=ROUND_HALF_EVEN)))


def _charge_fee(charge: Any, currency: str, what: str) -> int:
    """The fee of an expanded charge's expanded balance transaction, else 0."""
    obj = expanded(charge)
    transaction = expanded(obj.get("balance_transaction")) if obj else None
    if transaction is None:
        return 0
    parsed = parse(BalanceTransaction, transaction, f"{what} balance transaction")
    return fee_in(currency, [parsed], what)


def _method(raw_charge: dict[str, Any] | None) -> str | None:
    """The payment method's type only (``card``, ``sepa_debit``): never its details."""
    details = (raw_charge or {}).get("payment_method_details")
    kind = details.get("type") if isinstance(details, dict) else None
    return kind if isinstance(kind, str) else None


# --- payments ---------------------------------------------------------------------------------


def _invoice_payment_id(invoice: Invoice) -> str:
    for ref in (invoice.charge, invoice.payment_intent):
        if ref_id(ref):
            return str(ref_id(ref))
    for payment in invoice.payments.data if invoice.payments else ():
        detail = payment.get("payment") or {}
        for key in ("charge", "payment_intent"):
            if ref_id(detail.get(key)):
                return str(ref_id(detail.get(key)))
    return f"{invoice.id}/payment"


def invoice_paid(ctx: Context) -> list[Event] | Skip:
    """``invoice.paid`` -> ``PaymentSettled`` applied to the invoice."""
    invoice = parse(Invoice, ctx.object, "invoice")
    what = f"invoice {invoice.id}"
    if invoice.paid_out_of_band:
        return Skip("paid_out_of_band", f"{what} was paid outside Stripe")
    if invoice.amount_paid <= 0:
        return Skip("nothing_paid", f"{what} was settled without a payment")
    currency = ctx.currency(invoice.currency, what)
    payment_id = _invoice_payment_id(invoice)
    return [
        build(
            PaymentSettled,
            what,
            **ctx.envelope(
                customer_id=ctx.customer(invoice.customer, what=what),
                entity=ctx.entity(currency, what),
                source_id=payment_id,
            ),
            payment_id=payment_id,
            settled_date=ctx.date(invoice.status_transitions.paid_at),
            currency=currency,
            amount_minor=invoice.amount_paid,
            fee_minor=_charge_fee(invoice.charge, currency, what),
            applications=(
                PaymentApplication(invoice_id=invoice.id, amount_minor=invoice.amount_paid),
            ),
            processor=PROCESSOR,
            method=_method(expanded(invoice.charge)),
        )
    ]


def charge_succeeded(ctx: Context) -> list[Event] | Skip:
    """``charge.succeeded`` / ``charge.captured`` -> unapplied ``PaymentSettled``."""
    charge = parse(Charge, ctx.object, "charge")
    what = f"charge {charge.id}"
    if ref_id(charge.invoice):
        return Skip("paid_through_invoice", f"{what} pays invoice {ref_id(charge.invoice)}")
    if not ctx.config.standalone_charges:
        return Skip("standalone_charges_off", f"{what}: payments come from invoice.paid")
    if not charge.captured:
        return Skip("not_captured", f"{what} is authorised, not captured yet")
    currency = ctx.currency(charge.currency, what)
    return [
        build(
            PaymentSettled,
            what,
            **ctx.envelope(
                customer_id=ctx.customer(charge.customer, what=what),
                entity=ctx.entity(currency, what),
                source_id=charge.id,
            ),
            payment_id=charge.id,
            settled_date=ctx.date(charge.created),
            currency=currency,
            amount_minor=charge.captured_minor,
            fee_minor=_charge_fee(ctx.object, currency, what),
            processor=PROCESSOR,
            method=_method(ctx.object),
        )
    ]


# --- refunds ----------------------------------------------------------------------------------


def _refund_event(ctx: Context, refund: Refund, charge_id: str, customer_id: str) -> Event:
    """One refund; its id and time come from the refund, so every event listing it agrees."""
    what = f"refund {refund.id}"
    currency = ctx.currency(refund.currency, what)
    return build(
        RefundIssued,
        what,
        **ctx.envelope(
            customer_id=customer_id,
            entity=ctx.entity(currency, what),
            source_id=refund.id,
            event_id=f"stripe:{refund.id}",
            occurred_at=ctx.instant(refund.created),
            correlation_id=charge_id,
        ),
        refund_id=refund.id,
        payment_id=charge_id,
        refund_date=ctx.date(refund.created),
        currency=currency,
        amount_minor=refund.amount,
        reason=refund.reason or "refunded in Stripe",
    )


def charge_refunded(ctx: Context) -> list[Event] | Skip:
    """``charge.refunded`` -> ``RefundIssued`` for each refund the charge lists.

    A payload without the refund list (API versions from 2022-11-15 leave it out) gives
    one refund of the increase of ``amount_refunded``, named after the charge and that
    cumulative amount.
    """
    charge = parse(Charge, ctx.object, "charge")
    what = f"charge {charge.id}"
    if ctx.config.refund_source != "charge.refunded":
        return Skip("refund_source_other", f"{what}: refunds are read from refund.created")
    customer_id = ctx.customer(charge.customer, what=what)
    if charge.refunds is not None and charge.refunds.data:
        if charge.refunds.has_more:
            raise Refusal(
                "stripe_refunds_truncated", f"{what}: the payload lists only part of its refunds"
            )
        refunds = [
            parse(Refund, raw, f"{what} refund {index}")
            for index, raw in enumerate(charge.refunds.data)
        ]
        return [
            _refund_event(ctx, refund, charge.id, customer_id)
            for refund in sorted(refunds, key=lambda r: (r.created, r.id))
            if refund.status in _REFUND_MOVED
        ] or Skip("refund_not_moved", f"{what}: no refund moved money")
    before = ctx.previous.get("amount_refunded", 0)
    if not isinstance(before, int) or charge.amount_refunded <= before:
        raise Refusal(
            "stripe_payload_invalid",
            f"{what}: amount_refunded {charge.amount_refunded} does not exceed the previous"
            f" {before!r}, and the payload lists no refunds",
        )
    refund = Refund(
        id=f"{charge.id}/refunded:{charge.amount_refunded}",
        amount=charge.amount_refunded - before,
        currency=charge.currency,
        created=ctx.event.created,
        status="succeeded",
    )
    return [_refund_event(ctx, refund, charge.id, customer_id)]


def refund_created(ctx: Context) -> list[Event] | Skip:
    """``refund.created`` -> ``RefundIssued`` (when refunds are read from it)."""
    refund = parse(Refund, ctx.object, "refund")
    what = f"refund {refund.id}"
    if ctx.config.refund_source != "refund.created":
        return Skip("refund_source_other", f"{what}: refunds are read from charge.refunded")
    if refund.status not in _REFUND_MOVED:
        return Skip("refund_not_moved", f"{what} is {refund.status}")
    charge_id = ref_id(refund.charge)
    if not charge_id:
        raise Refusal("stripe_payload_invalid", f"{what}: names no charge")
    customer_id = ctx.customer(refund.customer, customer_of_charge(refund.charge), what=what)
    return [_refund_event(ctx, refund, charge_id, customer_id)]


# --- disputes and payouts ---------------------------------------------------------------------


def dispute_closed(ctx: Context) -> list[Event] | Skip:
    """``charge.dispute.closed`` -> ``DisputeClosed`` won or lost."""
    dispute = parse(Dispute, ctx.object, "dispute")
    what = f"dispute {dispute.id}"
    if dispute.status not in ("won", "lost"):
        return Skip("inquiry_closed", f"{what} closed as {dispute.status}: no chargeback")
    charge_id = ref_id(dispute.charge)
    if not charge_id:
        raise Refusal("stripe_payload_invalid", f"{what}: names no charge")
    currency = ctx.currency(dispute.currency, what)
    metadata_customer = (dispute.metadata or {}).get("customer")
    return [
        build(
            DisputeClosed,
            what,
            **ctx.envelope(
                customer_id=ctx.customer(
                    customer_of_charge(dispute.charge), metadata_customer, what=what
                ),
                entity=ctx.entity(currency, what),
                source_id=dispute.id,
            ),
            dispute_id=dispute.id,
            payment_id=charge_id,
            closed_date=ctx.date(None),
            outcome=dispute.status,
            currency=currency,
            amount_minor=dispute.amount,
            fee_minor=fee_in(currency, dispute.balance_transactions, what),
        )
    ]


def payout_paid(ctx: Context) -> list[Event] | Skip:
    """``payout.paid`` -> ``PayoutPaid`` on the Stripe balance's key."""
    payout = parse(Payout, ctx.object, "payout")
    what = f"payout {payout.id}"
    if payout.original_payout is not None:
        raise Refusal(
            "stripe_payout_reversal_unsupported",
            f"{what} reverses payout {ref_id(payout.original_payout)}: post the bank return"
            " by hand",
        )
    currency = ctx.currency(payout.currency, what)
    return [
        build(
            PayoutPaid,
            what,
            **ctx.envelope(
                customer_id=ctx.config.processor_key(ctx.event.account),
                entity=ctx.entity(currency, what),
                source_id=payout.id,
            ),
            payout_id=payout.id,
            payout_date=ctx.date(payout.arrival_date or payout.created),
            currency=currency,
            amount_minor=payout.amount,
            # The Stripe id of the destination names the bank account without its details.
            bank_account=ref_id(payout.destination) or f"stripe:{ctx.config.account_id}",
        )
    ]


HANDLERS: dict[str, Any] = {
    "invoice.paid": invoice_paid,
    "charge.succeeded": charge_succeeded,
    "charge.captured": charge_succeeded,
    "charge.refunded": charge_refunded,
    "refund.created": refund_created,
    "charge.dispute.closed": dispute_closed,
    "payout.paid": payout_paid,
}
