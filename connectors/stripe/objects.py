"""Stripe's objects as the translator reads them: only the fields it uses, everything else ignored.

Stripe adds fields in every API version and webhooks carry all of them (see the official
examples in ``fixtures3.json``), so every model ignores unknown fields
(``extra="ignore"``) and nearly every field is optional. What the ledger depends on is
strict: amounts are integers (``StrictInt``: a float or a numeric string is refused, never
rounded), ids are strings.

Both shapes of the API versions in use are read:

* before 2025-03-31 ("acacia" and older): ``line.price``, ``line.proration``,
  ``line.subscription_item``, ``tax_amounts`` / ``total_tax_amounts``, ``invoice.charge``,
  ``charge.invoice``, subscription ``current_period_*``;
* from 2025-03-31 ("basil"): ``line.pricing.price_details``, ``line.parent``,
  ``taxes`` / ``total_taxes``, ``invoice.payments``, item ``current_period_*``.

Card and bank details (``payment_method_details``, ``source``, ``billing_details``, a
payout's expanded bank account) are never modelled: what is not read cannot be copied.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt


class StripeObject(BaseModel):
    """Base of every Stripe model: unknown fields ignored, values not coerced loosely."""

    model_config = ConfigDict(extra="ignore", frozen=True)


# An expandable reference: an id, or the expanded object (a dict with "id").
Ref = str | dict[str, Any] | None


def ref_id(value: Ref) -> str | None:
    """The id of an expandable field (a string, or an expanded object's ``id``)."""
    if isinstance(value, dict):
        found = value.get("id")
        return found if isinstance(found, str) else None
    return value


def expanded(value: Ref) -> dict[str, Any] | None:
    """The object of an expandable field when Stripe sent it expanded, else None."""
    return value if isinstance(value, dict) else None


class Page(StripeObject):
    """A Stripe list object (``{"object": "list", "data": [...], "has_more": ...}``)."""

    data: list[dict[str, Any]] = Field(default_factory=list)
    has_more: StrictBool = False


class Period(StripeObject):
    """A service period: Unix seconds, ``end`` exclusive."""

    start: StrictInt
    end: StrictInt


class DiscountAmount(StripeObject):
    """The part of a line taken off by one discount (or, basil, by a credit grant)."""

    amount: StrictInt
    type: str | None = None


class TaxAmount(StripeObject):
    """Tax on a line or a document, in either API shape.

    Before basil: ``{amount, inclusive, tax_rate}``; from basil: ``{amount, tax_behavior,
    tax_rate_details: {tax_rate}}``.
    """

    amount: StrictInt
    inclusive: StrictBool | None = None
    tax_behavior: str | None = None
    tax_rate: Ref = None
    tax_rate_details: dict[str, Any] | None = None

    @property
    def is_inclusive(self) -> bool:
        """True when the tax is inside the line amount (tax-inclusive prices)."""
        return bool(self.inclusive) or self.tax_behavior == "inclusive"

    @property
    def rate(self) -> Ref:
        """The tax rate (id or expanded object), whichever shape carried it."""
        if self.tax_rate is not None:
            return self.tax_rate
        details = self.tax_rate_details or {}
        return details.get("tax_rate")


class Recurring(StripeObject):
    """A recurring price's interval and usage type (``licensed`` or ``metered``)."""

    interval: str | None = None
    interval_count: StrictInt | None = None
    usage_type: str | None = None


class Price(StripeObject):
    """A price (or the legacy plan, read with the same fields where they exist)."""

    id: str
    product: Ref = None
    currency: str | None = None
    unit_amount: StrictInt | None = None
    unit_amount_decimal: str | None = None
    # Legacy plans carry the unit amount as ``amount``.
    amount: StrictInt | None = None
    billing_scheme: str | None = None
    type: str | None = None
    recurring: Recurring | None = None
    # Legacy plans carry the usage type at the top.
    usage_type: str | None = None
    tax_behavior: str | None = None

    @property
    def metered(self) -> bool:
        """True for usage-based (metered) prices, billed in arrears."""
        usage = self.recurring.usage_type if self.recurring else self.usage_type
        return usage == "metered"

    @property
    def one_time(self) -> bool:
        """True for a one-time price (no recurrence)."""
        return self.type == "one_time"


class InvoiceLine(StripeObject):
    """One line of an invoice."""

    id: str
    amount: StrictInt
    currency: str | None = None
    description: str | None = None
    quantity: StrictInt | None = None
    period: Period | None = None
    discount_amounts: list[DiscountAmount] | None = None
    pretax_credit_amounts: list[DiscountAmount] | None = None
    tax_amounts: list[TaxAmount] | None = None
    taxes: list[TaxAmount] | None = None
    # Before basil.
    price: Price | None = None
    plan: Price | None = None
    proration: StrictBool | None = None
    proration_details: dict[str, Any] | None = None
    subscription: Ref = None
    subscription_item: str | None = None
    type: str | None = None
    # From basil.
    parent: dict[str, Any] | None = None
    pricing: dict[str, Any] | None = None

    def _parent_details(self) -> dict[str, Any]:
        parent = self.parent or {}
        kind = parent.get("type")
        details = parent.get(kind) if isinstance(kind, str) else None
        return details if isinstance(details, dict) else {}

    @property
    def subscription_id(self) -> str | None:
        """The subscription the line bills, if any."""
        return ref_id(self.subscription) or ref_id(self._parent_details().get("subscription"))

    @property
    def subscription_item_id(self) -> str | None:
        """The subscription item the line bills, if any."""
        return self.subscription_item or self._parent_details().get("subscription_item")

    @property
    def is_proration(self) -> bool:
        """True for a proration (a charge or credit for part of a period after a change)."""
        return bool(self.proration) or bool(self._parent_details().get("proration"))

    @property
    def credited_items(self) -> tuple[str | None, tuple[str, ...]]:
        """The invoice and its line ids a proration credit gives back (from Stripe)."""
        details = self.proration_details or self._parent_details().get("proration_details") or {}
        credited = details.get("credited_items") or {}
        lines = credited.get("invoice_line_items") or ()
        return credited.get("invoice"), tuple(str(line) for line in lines)

    @property
    def product_id(self) -> str | None:
        """The product billed: from the price (old shape) or the pricing details (basil)."""
        for price in (self.price, self.plan):
            if price is not None and ref_id(price.product):
                return ref_id(price.product)
        details = (self.pricing or {}).get("price_details") or {}
        return ref_id(details.get("product"))

    @property
    def tax(self) -> list[TaxAmount]:
        """The line's taxes in whichever shape Stripe sent."""
        return list(self.taxes if self.taxes is not None else self.tax_amounts or ())

    @property
    def reductions_minor(self) -> int:
        """Discounts (and basil credit grants) taken off the line, before tax."""
        reductions = self.pretax_credit_amounts
        if reductions is None:
            reductions = self.discount_amounts
        return sum(item.amount for item in reductions or ())

    @property
    def net_minor(self) -> int:
        """What the line earns, net of discounts and of tax included in its amount."""
        inclusive = sum(t.amount for t in self.tax if t.is_inclusive)
        return self.amount - self.reductions_minor - inclusive


class StatusTransitions(StripeObject):
    """When an invoice changed status (Unix seconds)."""

    finalized_at: StrictInt | None = None
    paid_at: StrictInt | None = None
    voided_at: StrictInt | None = None
    marked_uncollectible_at: StrictInt | None = None


class ShippingCost(StripeObject):
    """An invoice's or credit note's shipping: before tax, tax, total."""

    amount_subtotal: StrictInt = 0
    amount_tax: StrictInt = 0
    amount_total: StrictInt = 0


class Invoice(StripeObject):
    """An invoice."""

    id: str
    customer: Ref = None
    currency: str
    created: StrictInt
    total: StrictInt
    amount_paid: StrictInt = 0
    amount_remaining: StrictInt = 0
    amount_shipping: StrictInt = 0
    shipping_cost: ShippingCost | None = None
    lines: Page = Field(default_factory=Page)
    total_taxes: list[TaxAmount] | None = None
    total_tax_amounts: list[TaxAmount] | None = None
    status: str | None = None
    status_transitions: StatusTransitions = Field(default_factory=StatusTransitions)
    effective_at: StrictInt | None = None
    due_date: StrictInt | None = None
    # Before basil.
    charge: Ref = None
    payment_intent: Ref = None
    paid_out_of_band: StrictBool | None = None
    # From basil (only when the payload includes it).
    payments: Page | None = None

    @property
    def tax(self) -> list[TaxAmount]:
        """The invoice's taxes in whichever shape Stripe sent."""
        if self.total_taxes is not None:
            return list(self.total_taxes)
        return list(self.total_tax_amounts or ())


class CreditNoteLine(StripeObject):
    """One line of a credit note."""

    id: str
    type: str | None = None
    amount: StrictInt
    invoice_line_item: str | None = None
    discount_amount: StrictInt = 0
    discount_amounts: list[DiscountAmount] | None = None
    pretax_credit_amounts: list[DiscountAmount] | None = None
    tax_amounts: list[TaxAmount] | None = None
    taxes: list[TaxAmount] | None = None

    @property
    def net_minor(self) -> int:
        """What the line gives back, net of discounts and of tax included in its amount."""
        if self.pretax_credit_amounts is not None:
            reductions = sum(item.amount for item in self.pretax_credit_amounts)
        elif self.discount_amounts is not None:
            reductions = sum(item.amount for item in self.discount_amounts)
        else:
            reductions = self.discount_amount
        taxes = self.taxes if self.taxes is not None else self.tax_amounts or ()
        inclusive = sum(t.amount for t in taxes if t.is_inclusive)
        return self.amount - reductions - inclusive


class CreditNote(StripeObject):
    """A credit note against an invoice."""

    id: str
    customer: Ref = None
    invoice: Ref = None
    currency: str
    created: StrictInt
    effective_at: StrictInt | None = None
    total: StrictInt
    amount_shipping: StrictInt = 0
    shipping_cost: ShippingCost | None = None
    lines: Page = Field(default_factory=Page)
    total_taxes: list[TaxAmount] | None = None
    tax_amounts: list[TaxAmount] | None = None
    reason: str | None = None
    memo: str | None = None
    metadata: dict[str, Any] | None = None
    voided_at: StrictInt | None = None

    @property
    def tax(self) -> list[TaxAmount]:
        """The credit note's taxes in whichever shape Stripe sent."""
        if self.total_taxes is not None:
            return list(self.total_taxes)
        return list(self.tax_amounts or ())


class BalanceTransaction(StripeObject):
    """Money moving in the Stripe balance: its fee and, across currencies, the rate."""

    id: str
    amount: StrictInt
    fee: StrictInt = 0
    currency: str
    # Amount in the source currency x exchange_rate = amount here (a rate, not money).
    exchange_rate: float | None = None


class Refund(StripeObject):
    """A refund of (part of) a charge."""

    id: str
    amount: StrictInt
    currency: str
    created: StrictInt
    charge: Ref = None
    customer: Ref = None
    payment_intent: Ref = None
    status: str | None = None
    reason: str | None = None


class Charge(StripeObject):
    """A charge (a payment attempt)."""

    id: str
    amount: StrictInt
    amount_captured: StrictInt | None = None
    amount_refunded: StrictInt = 0
    captured: StrictBool = True
    paid: StrictBool | None = None
    status: str | None = None
    currency: str
    created: StrictInt
    customer: Ref = None
    payment_intent: Ref = None
    balance_transaction: Ref = None
    refunds: Page | None = None
    # Before basil only.
    invoice: Ref = None

    @property
    def captured_minor(self) -> int:
        """The amount captured (a partial capture takes less than ``amount``)."""
        if self.amount_captured:
            return self.amount_captured
        return self.amount


class Dispute(StripeObject):
    """A dispute (chargeback) on a charge, with the balance movements it caused."""

    id: str
    amount: StrictInt
    currency: str
    created: StrictInt
    charge: Ref = None
    status: str
    balance_transactions: list[BalanceTransaction] = Field(default_factory=list)
    metadata: dict[str, Any] | None = None


class Payout(StripeObject):
    """A payout from the Stripe balance to a bank account or card."""

    id: str
    amount: StrictInt
    currency: str
    created: StrictInt
    arrival_date: StrictInt | None = None
    destination: Ref = None
    status: str | None = None
    original_payout: Ref = None


class SubscriptionItem(StripeObject):
    """One item of a subscription: a price and a quantity."""

    id: str
    price: Price | None = None
    plan: Price | None = None
    quantity: StrictInt | None = None
    # From basil the billing period lives on the item.
    current_period_start: StrictInt | None = None
    current_period_end: StrictInt | None = None

    @property
    def priced(self) -> Price | None:
        """The item's price (or legacy plan)."""
        return self.price or self.plan


class Coupon(StripeObject):
    """A coupon, when a discount arrives expanded."""

    id: str | None = None
    percent_off: float | None = None
    amount_off: StrictInt | None = None
    currency: str | None = None


class Subscription(StripeObject):
    """A subscription."""

    id: str
    customer: Ref = None
    currency: str | None = None
    status: str
    created: StrictInt
    start_date: StrictInt | None = None
    items: Page = Field(default_factory=Page)
    current_period_start: StrictInt | None = None
    current_period_end: StrictInt | None = None
    ended_at: StrictInt | None = None
    canceled_at: StrictInt | None = None
    discounts: list[Ref] | None = None
    discount: dict[str, Any] | None = None


class EventData(StripeObject):
    """``event.data``: the object after the change, and what changed (updates only)."""

    object: dict[str, Any]
    previous_attributes: dict[str, Any] | None = None


class StripeEvent(StripeObject):
    """The webhook envelope."""

    id: str = Field(min_length=1, max_length=150)
    type: str = Field(min_length=1)
    created: StrictInt
    livemode: StrictBool = False
    account: str | None = None
    api_version: str | None = None
    data: EventData
