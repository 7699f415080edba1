"""Stripe invoices -> canonical billing events (and the amendments their prorations make).

* ``invoice.finalized`` -> ``InvoiceIssued``: one line per Stripe line, net of its discounts
  and of any tax included in its amount; the invoice's taxes as tax lines, per tax rate.
  The lines plus taxes plus shipping must add up to Stripe's ``total`` (else
  ``stripe_invoice_total_mismatch``: nothing is posted from figures that do not agree).
  Proration lines of one subscription are netted:

  - net positive (an upgrade): each charge, less its share of the credits, is a new
    obligation of the subscription's contract added by a ``ContractAmended``
    (``separate_contract``: added service at its price, ASC 606-10-25-12), and the line
    bills it;
  - net negative (a downgrade): each credit, less its share of the charges, is a
    ``CreditNoteIssued`` on the invoice line Stripe says it credits
    (``proration_details.credited_items``), for the remaining service.

  Other negative lines (a manual credit item) reduce the invoice's positive lines in
  proportion, like a discount. Lines of zero are left out; an invoice with nothing left
  is skipped (``zero_amount``).
* ``invoice.voided`` -> ``InvoiceVoided`` (only for an invoice that was issued here);
* ``invoice.marked_uncollectible`` -> ``InvoiceWrittenOff`` of ``amount_remaining``.

Credit notes are in :mod:`connectors.stripe.credit_notes`.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from connectors.stripe.context import Context, Refusal, Skip, build, parse
from connectors.stripe.objects import (
    Invoice,
    InvoiceLine,
    ShippingCost,
    TaxAmount,
    expanded,
    ref_id,
)
from connectors.stripe.subscriptions import line_obligation_id, proration_obligation_id
from ledger.events import (
    CreditNoteIssued,
    Event,
    InvoiceIssued,
    InvoiceVoided,
    InvoiceWrittenOff,
)
from ledger.events import CreditNoteLine as CanonicalCreditLine
from ledger.events import InvoiceLine as CanonicalLine
from ledger.events import TaxLine as CanonicalTax
from ledger.money import allocate
from revenue.events import ContractAmended, PerformanceObligationSpec


@dataclass
class InvoicePlan:
    """What one Stripe invoice becomes."""

    invoice: Invoice
    customer_id: str
    entity: str
    currency: str
    lines: list[CanonicalLine] = field(default_factory=list)
    taxes: list[CanonicalTax] = field(default_factory=list)
    amendments: list[ContractAmended] = field(default_factory=list)
    credits: list[CreditNoteIssued] = field(default_factory=list)

    @property
    def issues_invoice(self) -> bool:
        """Whether an ``InvoiceIssued`` comes out of it (something is billed)."""
        return bool(self.lines)


# --- shared -----------------------------------------------------------------------------


def tax_lines(ctx: Context, taxes: list[TaxAmount], what: str) -> list[CanonicalTax]:
    """Taxes summed per tax rate, as canonical tax lines (zero rates left out)."""
    by_rate: dict[str, int] = defaultdict(int)
    jurisdictions: dict[str, str] = {}
    for tax in taxes:
        rate = tax.rate
        code = ref_id(rate) or "stripe_tax"
        by_rate[code] += tax.amount
        detail = expanded(rate) or {}
        jurisdictions[code] = str(
            detail.get("jurisdiction") or detail.get("country") or detail.get("state") or ""
        )
    lines = []
    for code in sorted(by_rate):
        amount = by_rate[code]
        if amount < 0:
            raise Refusal("stripe_negative_tax", f"{what}: tax rate {code} sums to {amount}")
        if amount:
            lines.append(
                build(
                    CanonicalTax,
                    what,
                    tax_code=code,
                    jurisdiction=jurisdictions[code],
                    amount_minor=amount,
                )
            )
    return lines


def shipping_minor(amount_shipping: int, shipping: ShippingCost | None) -> int:
    """Shipping before tax (its tax is among the document's taxes), 0 without shipping."""
    if amount_shipping <= 0 or shipping is None:
        return 0
    return shipping.amount_subtotal


def _invoice_lines(invoice: Invoice) -> list[InvoiceLine]:
    if invoice.lines.has_more:
        raise Refusal(
            "stripe_invoice_lines_truncated",
            f"invoice {invoice.id}: the payload lists only part of its lines (has_more)",
        )
    return [
        parse(InvoiceLine, raw, f"invoice {invoice.id} line {index}")
        for index, raw in enumerate(invoice.lines.data)
    ]


def _check_total(invoice: Invoice, lines: list[InvoiceLine]) -> None:
    computed = (
        sum(line.net_minor for line in lines)
        + sum(tax.amount for tax in invoice.tax)
        + shipping_minor(invoice.amount_shipping, invoice.shipping_cost)
    )
    if computed != invoice.total:
        raise Refusal(
            "stripe_invoice_total_mismatch",
            f"invoice {invoice.id}: lines net of discounts plus taxes plus shipping come to"
            f" {computed}, Stripe's total is {invoice.total}",
        )


# --- invoices ---------------------------------------------------------------------------


def plan_invoice(ctx: Context) -> InvoicePlan:
    """Read the event's invoice and decide its canonical lines, amendments and credits."""
    invoice = parse(Invoice, ctx.object, "invoice")
    what = f"invoice {invoice.id}"
    currency = ctx.currency(invoice.currency, what)
    plan = InvoicePlan(
        invoice=invoice,
        customer_id=ctx.customer(invoice.customer, what=what),
        entity=ctx.entity(currency, what),
        currency=currency,
    )
    lines = _invoice_lines(invoice)
    _check_total(invoice, lines)
    prorations: dict[str, list[InvoiceLine]] = defaultdict(list)
    others = []
    for line in lines:
        if line.is_proration and line.subscription_id and line.net_minor:
            prorations[line.subscription_id].append(line)
        elif line.net_minor:
            others.append(line)
    plan.lines.extend(_regular_lines(ctx, plan, others))
    for subscription_id in sorted(prorations):
        _prorations(ctx, plan, subscription_id, prorations[subscription_id])
    shipping = shipping_minor(invoice.amount_shipping, invoice.shipping_cost)
    if shipping:
        plan.lines.append(_shipping_line(ctx, invoice, shipping))
    plan.taxes.extend(tax_lines(ctx, invoice.tax, what))
    if plan.taxes and not plan.lines:
        raise Refusal("stripe_tax_without_lines", f"{what}: tax but no positive line to carry it")
    return plan


def _regular_lines(ctx: Context, plan: InvoicePlan, lines: list[InvoiceLine]) -> list:
    """Positive lines as they are, reduced in proportion by the negative (manual) ones."""
    positive = [line for line in lines if line.net_minor > 0]
    credit = -sum(line.net_minor for line in lines if line.net_minor < 0)
    billed = sum(line.net_minor for line in positive)
    if credit > billed:
        raise Refusal(
            "stripe_invoice_negative_lines",
            f"invoice {plan.invoice.id}: negative lines ({credit}) exceed the positive ones"
            f" ({billed})",
        )
    amounts = [line.net_minor for line in positive]
    if credit:
        amounts = allocate(billed - credit, amounts)
    return [
        _canonical_line(ctx, plan, line, amount, obligation_id=None, tie=True)
        for line, amount in zip(positive, amounts, strict=True)
        if amount
    ]


def _is_contract_line(ctx: Context, line: InvoiceLine) -> bool:
    """Whether the line bills an obligation booked from its subscription."""
    if not (ctx.config.subscription_contracts and line.subscription_id):
        return False
    if not line.subscription_item_id or line.period is None:
        return False
    price = line.price or line.plan
    if price is not None and (price.metered or price.one_time):
        return False
    treatment = ctx.config.products.get(line.product_id or "")
    return treatment is None or treatment.pattern != "usage"


def _product(ctx: Context, line: InvoiceLine, what: str) -> str:
    product = line.product_id or ctx.config.default_product_id
    if product is None:
        raise Refusal(
            "stripe_line_without_product",
            f"{what}: line {line.id} names no price or product (set default_product_id)",
        )
    return product


def _canonical_line(
    ctx: Context,
    plan: InvoicePlan,
    line: InvoiceLine,
    amount: int,
    obligation_id: str | None,
    tie: bool,
) -> CanonicalLine:
    """The canonical line; ``tie``: name the obligation booked from the subscription."""
    what = f"invoice {plan.invoice.id}"
    contract_id = None
    if obligation_id is not None:
        contract_id = line.subscription_id
    elif tie and _is_contract_line(ctx, line):
        contract_id = line.subscription_id
        obligation_id = line_obligation_id(ctx, line)
    start = end = None
    if line.period is not None:
        start, end = ctx.service_period(line.period.start, line.period.end)
    return build(
        CanonicalLine,
        what,
        line_id=line.id,
        description=line.description or "",
        product_id=_product(ctx, line, what),
        quantity=max(line.quantity or 1, 0),
        amount_minor=amount,
        contract_id=contract_id,
        obligation_id=obligation_id,
        service_start=start,
        service_end=end,
    )


def _shipping_line(ctx: Context, invoice: Invoice, amount: int) -> CanonicalLine:
    day = ctx.date(invoice.status_transitions.finalized_at or invoice.created)
    return build(
        CanonicalLine,
        f"invoice {invoice.id}",
        line_id=f"{invoice.id}:shipping",
        description="shipping",
        product_id=ctx.config.shipping_product_id,
        quantity=1,
        amount_minor=amount,
        service_start=day,
        service_end=day,
    )


def _prorations(
    ctx: Context, plan: InvoicePlan, subscription_id: str, lines: list[InvoiceLine]
) -> None:
    """Net one subscription's proration lines into added obligations or credit notes."""
    net = sum(line.net_minor for line in lines)
    if net > 0:
        charges = [line for line in lines if line.net_minor > 0]
        amounts = allocate(net, [line.net_minor for line in charges])
        kept = [(line, amount) for line, amount in zip(charges, amounts, strict=True) if amount]
        tied = ctx.config.subscription_contracts
        if tied:
            plan.amendments.append(_proration_amendment(ctx, plan, subscription_id, kept))
        for line, amount in kept:
            obligation = proration_obligation_id(line) if tied else None
            plan.lines.append(_canonical_line(ctx, plan, line, amount, obligation, tie=False))
    elif net < 0:
        credits = [line for line in lines if line.net_minor < 0]
        amounts = allocate(-net, [-line.net_minor for line in credits])
        plan.credits.extend(_proration_credits(ctx, plan, credits, amounts))


def _proration_amendment(
    ctx: Context,
    plan: InvoicePlan,
    subscription_id: str,
    kept: list[tuple[InvoiceLine, int]],
) -> ContractAmended:
    what = f"invoice {plan.invoice.id} prorations of {subscription_id}"
    obligations = []
    for line, amount in kept:
        if line.period is None:
            raise Refusal("stripe_payload_invalid", f"{what}: proration {line.id} has no period")
        start, end = ctx.service_period(line.period.start, line.period.end)
        obligations.append(
            build(
                PerformanceObligationSpec,
                what,
                obligation_id=proration_obligation_id(line),
                product_id=_product(ctx, line, what),
                family="subscription",
                quantity=max(line.quantity or 1, 0),
                price_minor=amount,
                ssp_minor=amount,
                pattern="ratable_daily",
                service_start=start,
                service_end=end,
            )
        )
    effective = min(spec.service_start for spec in obligations)
    return build(
        ContractAmended,
        what,
        **ctx.envelope(
            customer_id=plan.customer_id,
            entity=plan.entity,
            source_id=plan.invoice.id,
            event_id=ctx.event_id(f"amendment:{subscription_id}"),
        ),
        contract_id=subscription_id,
        amendment_id=f"{plan.invoice.id}/{subscription_id}",
        effective_date=effective,
        treatment="separate_contract",
        currency=plan.currency,
        total_price_minor=sum(amount for _, amount in kept),
        obligations=tuple(obligations),
    )


def _proration_credits(
    ctx: Context, plan: InvoicePlan, credits: list[InvoiceLine], amounts: list[int]
) -> list[CreditNoteIssued]:
    """Credit notes on the invoice lines the proration credits give back, per invoice."""
    by_invoice: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for line, amount in zip(credits, amounts, strict=True):
        credited_invoice, credited_lines = line.credited_items
        if not amount:
            continue
        if not credited_invoice or not credited_lines:
            raise Refusal(
                "stripe_proration_credit_unlinked",
                f"invoice {plan.invoice.id}: proration credit {line.id} does not name the"
                " invoice line it credits (proration_details.credited_items)",
            )
        shares = allocate(amount, [1] * len(credited_lines))
        for credited_line, share in zip(credited_lines, shares, strict=True):
            if share:
                by_invoice[credited_invoice][credited_line] += share
    issue_date = _issue_date(ctx, plan.invoice)
    notes = []
    for credited_invoice in sorted(by_invoice):
        lines = by_invoice[credited_invoice]
        what = f"invoice {plan.invoice.id} proration credit on {credited_invoice}"
        notes.append(
            build(
                CreditNoteIssued,
                what,
                **ctx.envelope(
                    customer_id=plan.customer_id,
                    entity=plan.entity,
                    source_id=plan.invoice.id,
                    event_id=ctx.event_id(f"credit:{credited_invoice}"),
                ),
                credit_note_id=f"{plan.invoice.id}/{credited_invoice}",
                invoice_id=credited_invoice,
                issue_date=issue_date,
                currency=plan.currency,
                lines=tuple(
                    CanonicalCreditLine(invoice_line_id=line_id, amount_minor=lines[line_id])
                    for line_id in sorted(lines)
                ),
                total_minor=sum(lines.values()),
                reason=f"proration credit on invoice {plan.invoice.id}",
                applies_to="remaining_service",
            )
        )
    return notes


def _issue_date(ctx: Context, invoice: Invoice) -> dt.date:
    moment = invoice.status_transitions.finalized_at or invoice.effective_at or invoice.created
    return ctx.date(moment)


def invoice_finalized(ctx: Context) -> list[Event] | Skip:
    """``invoice.finalized`` -> amendments, ``InvoiceIssued``, proration credit notes."""
    plan = plan_invoice(ctx)
    events: list[Event] = [*plan.amendments]
    if plan.issues_invoice:
        issue_date = _issue_date(ctx, plan.invoice)
        due = ctx.date(plan.invoice.due_date) if plan.invoice.due_date else issue_date
        events.append(
            build(
                InvoiceIssued,
                f"invoice {plan.invoice.id}",
                **ctx.envelope(
                    customer_id=plan.customer_id, entity=plan.entity, source_id=plan.invoice.id
                ),
                invoice_id=plan.invoice.id,
                issue_date=issue_date,
                due_date=max(due, issue_date),
                currency=plan.currency,
                lines=tuple(plan.lines),
                tax_lines=tuple(plan.taxes),
                total_minor=sum(line.amount_minor for line in plan.lines)
                + sum(tax.amount_minor for tax in plan.taxes),
            )
        )
    events.extend(plan.credits)
    if not events:
        return Skip("zero_amount", f"invoice {plan.invoice.id} bills nothing")
    return events


def invoice_voided(ctx: Context) -> list[Event] | Skip:
    """``invoice.voided`` -> ``InvoiceVoided`` for an invoice that was issued here."""
    plan = plan_invoice(ctx)
    if not plan.issues_invoice:
        return Skip("zero_amount", f"invoice {plan.invoice.id} was never issued to the ledger")
    voided_at = plan.invoice.status_transitions.voided_at
    return [
        build(
            InvoiceVoided,
            f"invoice {plan.invoice.id}",
            **ctx.envelope(
                customer_id=plan.customer_id, entity=plan.entity, source_id=plan.invoice.id
            ),
            invoice_id=plan.invoice.id,
            void_date=ctx.date(voided_at),
            reason="voided in Stripe",
        )
    ]


def invoice_marked_uncollectible(ctx: Context) -> list[Event] | Skip:
    """``invoice.marked_uncollectible`` -> ``InvoiceWrittenOff`` of what remains due."""
    invoice = parse(Invoice, ctx.object, "invoice")
    what = f"invoice {invoice.id}"
    if invoice.amount_remaining <= 0:
        return Skip("nothing_due", f"{what} has nothing left to write off")
    currency = ctx.currency(invoice.currency, what)
    return [
        build(
            InvoiceWrittenOff,
            what,
            **ctx.envelope(
                customer_id=ctx.customer(invoice.customer, what=what),
                entity=ctx.entity(currency, what),
                source_id=invoice.id,
            ),
            invoice_id=invoice.id,
            write_off_date=ctx.date(invoice.status_transitions.marked_uncollectible_at),
            currency=currency,
            amount_minor=invoice.amount_remaining,
            reason="marked uncollectible in Stripe",
        )
    ]


HANDLERS: dict[str, Any] = {
    "invoice.finalized": invoice_finalized,
    "invoice.voided": invoice_voided,
    "invoice.marked_uncollectible": invoice_marked_uncollectible,
}
