"""Stripe subscriptions -> contracts: one contract per subscription, one obligation per period.

A Stripe subscription renews every period until cancelled: under ASC 606 each period's
service is promised when the period starts, so the mapping is

* ``customer.subscription.created`` -> ``ContractBooked`` (``contract_id`` = the
  subscription id) with one obligation per licensed item for its current period:
  product and price from the item's price, ``price_minor`` = unit amount x quantity
  (0 during a free trial), ``ssp_minor`` the same list amount, ratable by day over
  ``[current_period_start, current_period_end)``; a discount whose coupon arrives
  expanded lowers the contract's price (and names every obligation as discounted);
* ``customer.subscription.updated`` whose items entered a new period (a renewal, or the
  end of a trial) -> ``ContractAmended`` (``separate_contract``: the new period's service
  at its price, ASC 606-10-25-12) adding that period's obligations; an update that
  expired an incomplete subscription -> ``ContractCancelled`` from its start; other
  updates have no accounting effect (skipped: quantity or price changes reach the ledger
  through the proration lines of the invoice, see :mod:`connectors.stripe.billing`);
* ``customer.subscription.deleted`` -> ``ContractCancelled`` from the day it ended.

Obligation ids are ``<subscription item>@<period start date>`` (what an invoice line of
that item and period names) and ``<subscription item>@<invoice line>`` for the service a
proration charge adds. Metered items are not obligations of the contract: their
consideration is variable and billed in arrears, so their invoice lines are recognised
through their product mapping (an implied contract per invoice).

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from connectors.stripe.context import Context, Refusal, Skip, build, parse
from connectors.stripe.objects import (
    Coupon,
    InvoiceLine,
    Price,
    Subscription,
    SubscriptionItem,
    expanded,
    ref_id,
)
from ledger.events import Event
from revenue.events import (
    ContractAmended,
    ContractBooked,
    ContractCancelled,
    PerformanceObligationSpec,
)


def obligation_id(item_id: str, period_start: dt.date) -> str:
    """The obligation of one subscription item for the period starting ``period_start``."""
    return f"{item_id}@{period_start.isoformat()}"


def line_obligation_id(ctx: Context, line: InvoiceLine) -> str | None:
    """The obligation a (non-proration) subscription invoice line bills."""
    if line.subscription_item_id is None or line.period is None:
        return None
    return obligation_id(line.subscription_item_id, ctx.date(line.period.start))


def proration_obligation_id(line: InvoiceLine) -> str:
    """The obligation a proration charge adds (one per invoice line)."""
    return f"{line.subscription_item_id or 'item'}@{line.id}"


# --- prices ---------------------------------------------------------------------------------


def _unit_amount(price: Price, what: str) -> Decimal:
    if price.unit_amount is not None:
        return Decimal(price.unit_amount)
    if price.unit_amount_decimal is not None:
        try:
            return Decimal(price.unit_amount_decimal)
        except InvalidOperation as exc:
            raise Refusal(
                "stripe_payload_invalid",
                f"{what}: unit_amount_decimal {price.unit_amount_decimal!r} is not a number",
            ) from exc
    if price.amount is not None:
        return Decimal(price.amount)
    raise Refusal(
        "stripe_price_unsupported",
        f"{what}: price {price.id} has no unit amount ({price.billing_scheme or 'tiered'}"
        " pricing is not booked as a contract; map its product to usage)",
    )


def _list_minor(price: Price, quantity: int, what: str) -> int:
    """Unit amount x quantity in minor units, rounded half-even once (sub-cent prices)."""
    exact = _unit_amount(price, what) * quantity
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def _coupons(subscription: Subscription) -> list[tuple[Coupon, int | None]]:
    """Expanded coupons of the subscription's discounts, with each discount's end."""
    found = []
    discounts: list[Any] = list(subscription.discounts or [])
    if subscription.discount is not None:
        discounts.append(subscription.discount)
    for discount in discounts:
        obj = expanded(discount)
        if obj is None:
            continue  # only an id: the coupon is not in the payload (see docs/STRIPE.md)
        coupon = obj.get("coupon") or (obj.get("source") or {}).get("coupon")
        if isinstance(coupon, dict):
            found.append((Coupon.model_validate(coupon), obj.get("end")))
    return found


def _discounted(
    ctx: Context, subscription: Subscription, total: int, currency: str, period_start: int
) -> int:
    """``total`` less the expanded coupons that apply to the period starting then."""
    discount = Decimal(0)
    for coupon, end in _coupons(subscription):
        if end is not None and end <= period_start:
            continue
        if coupon.percent_off is not None:
            # A percentage, not money: its decimal text is exact ("25.5").
            discount += Decimal(total) * Decimal(repr(coupon.percent_off)) / 100
        elif coupon.amount_off is not None and (coupon.currency or "").upper() == currency:
            discount += coupon.amount_off
    amount = Decimal(total) - discount
    return max(0, int(amount.quantize(Decimal(1), rounding=ROUND_HALF_EVEN)))


# --- obligations ------------------------------------------------------------------------------


def _items(subscription: Subscription) -> list[SubscriptionItem]:
    if subscription.items.has_more:
        raise Refusal(
            "stripe_subscription_items_truncated",
            f"subscription {subscription.id}: the payload lists only part of its items",
        )
    return [
        parse(SubscriptionItem, raw, f"subscription {subscription.id} item {index}")
        for index, raw in enumerate(subscription.items.data)
    ]


def _period(subscription: Subscription, item: SubscriptionItem) -> tuple[int, int]:
    start = item.current_period_start or subscription.current_period_start
    end = item.current_period_end or subscription.current_period_end
    if start is None or end is None or end <= start:
        raise Refusal(
            "stripe_payload_invalid",
            f"subscription {subscription.id} item {item.id}: no current period",
        )
    return start, end


def _obligation(
    ctx: Context, subscription: Subscription, item: SubscriptionItem
) -> PerformanceObligationSpec | None:
    """The item's obligation for its current period (None: metered or usage product)."""
    what = f"subscription {subscription.id} item {item.id}"
    price = item.priced
    if price is None:
        raise Refusal("stripe_payload_invalid", f"{what}: no price")
    product = ref_id(price.product)
    if not product:
        raise Refusal("stripe_payload_invalid", f"{what}: price {price.id} names no product")
    treatment = ctx.config.products.get(product)
    if price.metered or (treatment is not None and treatment.pattern == "usage"):
        return None
    quantity = item.quantity if item.quantity is not None else 1
    listed = _list_minor(price, quantity, what)
    start, end = _period(subscription, item)
    first, last = ctx.service_period(start, end)
    return build(
        PerformanceObligationSpec,
        what,
        obligation_id=obligation_id(item.id, first),
        product_id=product,
        family=treatment.family if treatment else "subscription",
        quantity=max(quantity, 0),
        # A free trial is service given for nothing: no consideration to allocate.
        price_minor=0 if subscription.status == "trialing" else listed,
        ssp_minor=listed,
        pattern=treatment.pattern if treatment else "ratable_daily",
        service_start=first,
        service_end=last,
    )


def _currency(ctx: Context, subscription: Subscription, items: list[SubscriptionItem]) -> str:
    code = subscription.currency
    if code is None:
        prices = [item.priced for item in items if item.priced is not None]
        code = prices[0].currency if prices else None
    return ctx.currency(code, f"subscription {subscription.id}")


def _price_of(
    ctx: Context,
    subscription: Subscription,
    obligations: list[PerformanceObligationSpec],
    currency: str,
    period_start: int,
) -> int:
    total = sum(spec.price_minor for spec in obligations)
    return _discounted(ctx, subscription, total, currency, period_start)


# --- handlers ------------------------------------------------------------------------------


def _read(ctx: Context) -> Subscription | Skip:
    subscription = parse(Subscription, ctx.object, "subscription")
    if not ctx.config.subscription_contracts:
        return Skip("subscription_contracts_off", f"subscription {subscription.id}")
    return subscription


def subscription_created(ctx: Context) -> list[Event] | Skip:
    """``customer.subscription.created`` -> ``ContractBooked``."""
    subscription = _read(ctx)
    if isinstance(subscription, Skip):
        return subscription
    what = f"subscription {subscription.id}"
    items = _items(subscription)
    obligations = [spec for item in items if (spec := _obligation(ctx, subscription, item))]
    if not obligations:
        return Skip("no_licensed_items", f"{what} has only metered items")
    currency = _currency(ctx, subscription, items)
    start = min(_period(subscription, item)[0] for item in items)
    total = _price_of(ctx, subscription, obligations, currency, start)
    discounted = total < sum(spec.price_minor for spec in obligations)
    return [
        build(
            ContractBooked,
            what,
            **ctx.envelope(
                customer_id=ctx.customer(subscription.customer, what=what),
                entity=ctx.entity(currency, what),
                source_id=subscription.id,
            ),
            contract_id=subscription.id,
            booking_date=ctx.date(subscription.start_date or subscription.created),
            currency=currency,
            total_price_minor=total,
            obligations=tuple(obligations),
            discount_obligation_ids=(
                tuple(spec.obligation_id for spec in obligations) if discounted else ()
            ),
        )
    ]


def _previous_starts(ctx: Context) -> dict[str, int] | int | None:
    """What ``previous_attributes`` says the period start was.

    Returns the start per item (basil: periods live on items), one start for every item
    (older versions: on the subscription), or None when the period did not change.
    """
    previous = ctx.previous
    if isinstance(previous.get("current_period_start"), int):
        return int(previous["current_period_start"])
    items = previous.get("items")
    if isinstance(items, dict) and isinstance(items.get("data"), list):
        return {
            str(item.get("id")): item.get("current_period_start")
            for item in items["data"]
            if isinstance(item, dict) and isinstance(item.get("current_period_start"), int)
        }
    return None


def _renewed(
    subscription: Subscription, items: list[SubscriptionItem], previous: dict[str, int] | int
) -> list[SubscriptionItem]:
    renewed = []
    for item in items:
        start, _ = _period(subscription, item)
        before = previous if isinstance(previous, int) else previous.get(item.id)
        if before is not None and before != start:
            renewed.append(item)
    return renewed


def subscription_updated(ctx: Context) -> list[Event] | Skip:
    """``customer.subscription.updated``: a renewal adds the new period's obligations."""
    subscription = _read(ctx)
    if isinstance(subscription, Skip):
        return subscription
    what = f"subscription {subscription.id}"
    if subscription.status == "incomplete_expired":
        return [_cancelled(ctx, subscription, subscription.start_date or subscription.created)]
    previous = _previous_starts(ctx)
    if previous is None or subscription.status in ("canceled", "incomplete"):
        return Skip("no_contract_change", f"{what}: no new period")
    items = _items(subscription)
    renewed = _renewed(subscription, items, previous)
    obligations = [spec for item in renewed if (spec := _obligation(ctx, subscription, item))]
    if not obligations:
        return Skip("no_contract_change", f"{what}: no licensed item entered a new period")
    currency = _currency(ctx, subscription, items)
    start = min(_period(subscription, item)[0] for item in renewed)
    first = min(spec.service_start for spec in obligations)
    return [
        build(
            ContractAmended,
            what,
            **ctx.envelope(
                customer_id=ctx.customer(subscription.customer, what=what),
                entity=ctx.entity(currency, what),
                source_id=subscription.id,
            ),
            contract_id=subscription.id,
            amendment_id=f"{subscription.id}@{first.isoformat()}",
            effective_date=first,
            treatment="separate_contract",
            currency=currency,
            total_price_minor=_price_of(ctx, subscription, obligations, currency, start),
            obligations=tuple(obligations),
        )
    ]


def _cancelled(ctx: Context, subscription: Subscription, ended: int) -> ContractCancelled:
    what = f"subscription {subscription.id}"
    items = _items(subscription)
    currency = _currency(ctx, subscription, items)
    return build(
        ContractCancelled,
        what,
        **ctx.envelope(
            customer_id=ctx.customer(subscription.customer, what=what),
            entity=ctx.entity(currency, what),
            source_id=subscription.id,
        ),
        contract_id=subscription.id,
        effective_date=ctx.date(ended),
        reason=f"subscription {subscription.status} in Stripe",
    )


def subscription_deleted(ctx: Context) -> list[Event] | Skip:
    """``customer.subscription.deleted`` -> ``ContractCancelled`` from the day it ended."""
    subscription = _read(ctx)
    if isinstance(subscription, Skip):
        return subscription
    ended = subscription.ended_at or subscription.canceled_at or ctx.event.created
    return [_cancelled(ctx, subscription, ended)]


HANDLERS: dict[str, Any] = {
    "customer.subscription.created": subscription_created,
    "customer.subscription.updated": subscription_updated,
    "customer.subscription.deleted": subscription_deleted,
}
