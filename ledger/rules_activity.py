"""Posting rules for usage and customer master data.

Postings (Dr / Cr):

* usage recorded: Cr revenue (family ``usage``): usage is recognised as consumed; Dr deferred
  revenue while the contract is billed ahead (a prepaid commitment), the rest Dr unbilled
  AR (billed later); nothing when the amount is 0;
* customer upserted: none (the event id is remembered).

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

from ledger.accounts import Account, ProductFamily, Side
from ledger.drafts import LineSpec
from ledger.events import CustomerUpserted, UsageRecorded
from ledger.posting import (
    Held,
    Posted,
    Rejected,
    RuleContext,
    check_entity_and_currency,
    consume_position,
    dims,
    header_for,
    make_entry,
    rate_for,
)
from ledger.state import CustomerLedger


def post_usage_recorded(
    state: CustomerLedger, event: UsageRecorded, context: RuleContext
) -> Posted | Held | Rejected:
    """Dr deferred revenue / unbilled AR, Cr revenue (usage family) for priced usage."""
    failure = check_entity_and_currency(event, event.currency, context.reference)
    if failure is not None:
        return failure
    if event.amount_minor == 0:
        return Posted(state)
    rate = rate_for(context.reference, event.entity, event.currency, event.usage_date)
    if isinstance(rate, Held):
        return rate
    header = header_for(event, context.reference, "usage_recorded", f"Usage {event.usage_id}")
    usage_dims = dims(
        header,
        usage_id=event.usage_id,
        contract_id=event.contract_id,
        obligation_id=event.obligation_id,
        product_family=ProductFamily.usage,
    )
    deferred, unbilled = consume_position(
        context.position(state, event.contract_id), event.amount_minor
    )
    specs = [
        LineSpec(Account.deferred_revenue, Side.debit, deferred, usage_dims),
        LineSpec(Account.unbilled_receivable, Side.debit, unbilled, usage_dims),
        LineSpec(Account.revenue, Side.credit, event.amount_minor, usage_dims),
    ]
    specs = [spec for spec in specs if spec.amount_minor]
    entry = make_entry(header, event.currency, specs, rate)
    return entry if isinstance(entry, Rejected) else Posted(state, (entry,))


def post_customer_upserted(
    state: CustomerLedger, event: CustomerUpserted, context: RuleContext
) -> Posted | Rejected:
    """No posting: the customer's master data lives elsewhere; the id is remembered."""
    failure = check_entity_and_currency(event, event.billing_currency, context.reference)
    return failure if failure is not None else Posted(state)
