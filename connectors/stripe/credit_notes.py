"""Stripe credit notes -> ``CreditNoteIssued`` and ``CreditNoteVoided``.

* ``credit_note.created`` -> ``CreditNoteIssued``: one line per Stripe line on an invoice
  line, net of its discounts and of tax included in its amount; taxes per tax rate; the
  shipping credited on the invoice's shipping line. The lines plus taxes must add up to
  Stripe's ``total``. ``applies_to`` is ``remaining_service`` (spread over the service
  still to come) unless the credit note's metadata ``revledger_applies_to`` says
  ``past_service`` (an outage credit: reverses recognised revenue at once). A custom line
  (not tied to an invoice line) is refused: the ledger credits invoice lines.
* ``credit_note.voided`` -> ``CreditNoteVoided`` (dated ``voided_at``): the ledger
  reverses the credit note's entry and the revenue engine restores what it took from the
  schedule. The note is read as for ``credit_note.created`` first, so a void of a note
  that was skipped (``zero_amount``) is skipped, and one of a note that was refused is
  refused for the same reason (the ledger never saw the note; the void would only wait).

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

from typing import Any

from connectors.stripe.billing import shipping_minor, tax_lines
from connectors.stripe.context import Context, Refusal, Skip, build, parse
from connectors.stripe.objects import CreditNote, CreditNoteLine, ref_id
from ledger.events import CreditNoteIssued, CreditNoteVoided, Event
from ledger.events import CreditNoteLine as CanonicalCreditLine

APPLIES_TO_KEY = "revledger_applies_to"


def _credit_lines(note: CreditNote) -> list[CanonicalCreditLine]:
    if note.lines.has_more:
        raise Refusal(
            "stripe_credit_note_lines_truncated",
            f"credit note {note.id}: the payload lists only part of its lines (has_more)",
        )
    lines = []
    for index, raw in enumerate(note.lines.data):
        line = parse(CreditNoteLine, raw, f"credit note {note.id} line {index}")
        if line.type == "custom_line_item" or not line.invoice_line_item:
            raise Refusal(
                "stripe_credit_note_custom_line",
                f"credit note {note.id}: line {line.id} ({line.net_minor}) is not tied to an"
                " invoice line; credit the invoice line it relates to instead",
            )
        if line.net_minor < 0:
            raise Refusal(
                "stripe_credit_note_negative_line",
                f"credit note {note.id}: line {line.id} is negative ({line.net_minor})",
            )
        if line.net_minor:
            lines.append(
                CanonicalCreditLine(
                    invoice_line_id=line.invoice_line_item, amount_minor=line.net_minor
                )
            )
    return lines


def credit_note_created(ctx: Context) -> list[Event] | Skip:
    """``credit_note.created`` -> ``CreditNoteIssued``."""
    note = parse(CreditNote, ctx.object, "credit note")
    what = f"credit note {note.id}"
    invoice_id = ref_id(note.invoice)
    if not invoice_id:
        raise Refusal("stripe_payload_invalid", f"{what}: names no invoice")
    currency = ctx.currency(note.currency, what)
    lines = _credit_lines(note)
    shipping = shipping_minor(note.amount_shipping, note.shipping_cost)
    if shipping:
        lines.append(
            CanonicalCreditLine(invoice_line_id=f"{invoice_id}:shipping", amount_minor=shipping)
        )
    taxes = tax_lines(ctx, note.tax, what)
    total = sum(line.amount_minor for line in lines) + sum(tax.amount_minor for tax in taxes)
    if total != note.total:
        raise Refusal(
            "stripe_credit_note_total_mismatch",
            f"{what}: lines net of discounts plus taxes plus shipping come to {total},"
            f" Stripe's total is {note.total}",
        )
    if not total:
        return Skip("zero_amount", f"{what} credits nothing")
    applies_to = (note.metadata or {}).get(APPLIES_TO_KEY, "remaining_service")
    if applies_to not in ("remaining_service", "past_service"):
        raise Refusal(
            "stripe_payload_invalid",
            f"{what}: metadata {APPLIES_TO_KEY}={applies_to!r} is not remaining_service or"
            " past_service",
        )
    return [
        build(
            CreditNoteIssued,
            what,
            **ctx.envelope(
                customer_id=ctx.customer(note.customer, what=what),
                entity=ctx.entity(currency, what),
                source_id=note.id,
            ),
            credit_note_id=note.id,
            invoice_id=invoice_id,
            issue_date=ctx.date(note.effective_at or note.created),
            currency=currency,
            lines=tuple(lines),
            tax_lines=tuple(taxes),
            total_minor=total,
            reason=note.reason or note.memo or "credit note in Stripe",
            applies_to=applies_to,
        )
    ]


def credit_note_voided(ctx: Context) -> list[Event] | Skip:
    """``credit_note.voided`` -> ``CreditNoteVoided`` (see the module docstring)."""
    created = credit_note_created(ctx)
    if isinstance(created, Skip):
        return created
    [issued] = created
    note = parse(CreditNote, ctx.object, "credit note")
    what = f"credit note {note.id}"
    return [
        build(
            CreditNoteVoided,
            what,
            **ctx.envelope(customer_id=issued.customer_id, entity=issued.entity, source_id=note.id),
            credit_note_id=note.id,
            invoice_id=ref_id(note.invoice),
            void_date=ctx.date(note.voided_at),
            reason="voided in Stripe",
        )
    ]


HANDLERS: dict[str, Any] = {
    "credit_note.created": credit_note_created,
    "credit_note.voided": credit_note_voided,
}
