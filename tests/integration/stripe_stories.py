"""Stripe webhook events for the broker end-to-end test, built around Stripe's own objects.

Every event wraps an object of Stripe's ``fixtures3.json`` (the examples Stripe publishes
for each API resource), changed only where the story needs it: ids, amounts, currency,
dates, a discount, tax, a proration, an expanded balance transaction. Each story is one
Stripe customer, so the stories run side by side in one worker and each customer's
entries can be checked on their own:

* :func:`subscription_story` (USD): subscription created, its invoice (with tax)
  finalized and paid with a processor fee, partly refunded (``charge.refunded``, and the
  same refund as ``refund.created``), a mid-period upgrade (proration lines -> contract
  modification), the renewal (``customer.subscription.updated``), the cancellation;
* :func:`euro_story` (EUR): an invoice with a discount and tax, a credit note on it and
  that credit note voided, an invoice voided, an invoice marked uncollectible;
* :func:`yen_story` (JPY, zero decimals): an invoice paid through a charge settled in
  USD (the fee converted at the balance transaction's rate), a standalone charge;
* :func:`dispute_story` (USD): two standalone charges, a dispute lost and a dispute won;
* :func:`payout_story`: a payout of the Stripe balance to the bank.

Pure: no broker, no clock; the test module sends the bodies and checks the entries.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from tests.stripe_objects import fixture, ts

PRODUCT = "prod_QXg1hqf4jFNsqG"  # the product of Stripe's example price
PRICE = "price_1PgafmB7WZ01zgkW6dKueIc5"
TAX_RATE = "txr_1Pgc74B7WZ01zgkW94BlEhHU"

SUBSCRIBER = "cus_e2e_sub"
EURO_CUSTOMER = "cus_e2e_eur"
YEN_CUSTOMER = "cus_e2e_jpy"
DISPUTER = "cus_e2e_dsp"
STRIPE_BALANCE = "processor:stripe:self"  # payouts: StripeConfig.processor_key(None)

JUL1, JUL2, JUL5, JUL16, JUL20 = (dt.date(2024, 7, d) for d in (1, 2, 5, 16, 20))
AUG1, AUG20, SEP1 = dt.date(2024, 8, 1), dt.date(2024, 8, 20), dt.date(2024, 9, 1)


def event(event_id: str, kind: str, obj: dict[str, Any], day: dt.date, **extra: Any) -> dict:
    """A webhook event around ``obj`` (Stripe's example event envelope), at 09:00 UTC."""
    envelope = fixture("event", id=event_id, type=kind, created=ts(day, 9), api_version=None)
    envelope["data"] = {"object": obj, **extra}
    return envelope


def line(
    line_id: str,
    amount: int,
    *,
    currency: str = "usd",
    period: tuple[dt.date, dt.date] = (JUL1, AUG1),
    subscription: tuple[str, str] | None = None,
    proration: bool = False,
    credited: tuple[str, list[str]] | None = None,
    discount: int = 0,
) -> dict[str, Any]:
    """An invoice line (API 2025-03-31 shape: ``parent`` and ``pricing``)."""
    obj = fixture("line_item", id=line_id, amount=amount, currency=currency, taxes=None)
    obj["period"] = {"start": ts(period[0]), "end": ts(period[1])}
    obj["pricing"] = {
        "type": "price_details",
        "price_details": {"price": PRICE, "product": PRODUCT},
        "unit_amount_decimal": str(amount),
    }
    details = {
        "proration": proration,
        "proration_details": {
            "credited_items": None
            if credited is None
            else {"invoice": credited[0], "invoice_line_items": credited[1]}
        },
    }
    if subscription is not None:
        obj["parent"] = {
            "type": "subscription_item_details",
            "subscription_item_details": {
                **details,
                "invoice_item": None,
                "subscription": subscription[0],
                "subscription_item": subscription[1],
            },
        }
    else:
        obj["parent"] = {
            "type": "invoice_item_details",
            "invoice_item_details": {**details, "invoice_item": "ii_e2e", "subscription": None},
        }
    if discount:
        obj["discount_amounts"] = [{"amount": discount, "discount": "di_e2e"}]
        obj["pretax_credit_amounts"] = [
            {"amount": discount, "discount": "di_e2e", "type": "discount"}
        ]
    return obj


def tax(amount: int) -> dict[str, Any]:
    """An exclusive tax amount at Stripe's example tax rate (``total_taxes`` shape)."""
    return {
        "amount": amount,
        "tax_behavior": "exclusive",
        "tax_rate_details": {"tax_rate": TAX_RATE},
        "taxability_reason": "standard_rated",
        "taxable_amount": 0,
        "type": "tax_rate_details",
    }


def invoice(
    invoice_id: str,
    customer: str,
    lines: list[dict[str, Any]],
    total: int,
    *,
    currency: str = "usd",
    taxes: list[dict[str, Any]] | None = None,
    finalized: dt.date = JUL1,
    **changes: Any,
) -> dict[str, Any]:
    """Stripe's example invoice, open, due 30 days after it was finalized."""
    obj = fixture(
        "invoice",
        id=invoice_id,
        customer=customer,
        currency=currency,
        total=total,
        amount_due=total,
        amount_paid=0,
        amount_remaining=total,
        status="open",
        total_taxes=taxes,
        due_date=ts(finalized + dt.timedelta(days=30)),
        status_transitions={
            "finalized_at": ts(finalized, 8),
            "marked_uncollectible_at": None,
            "paid_at": None,
            "voided_at": None,
        },
    )
    obj["lines"] = {"data": lines, "has_more": False, "object": "list", "url": "/v1/invoices"}
    obj.update(changes)
    return obj


def paid(stripe_invoice: dict[str, Any], charge: dict[str, Any], day: dt.date) -> dict:
    """The invoice as ``invoice.paid`` sends it: paid in full by ``charge`` on ``day``."""
    obj = copy.deepcopy(stripe_invoice)
    obj.update(status="paid", amount_paid=obj["total"], amount_remaining=0, charge=charge)
    obj["status_transitions"]["paid_at"] = ts(day, 10)
    return obj


def balance_transaction(amount: int, fee: int, currency: str = "usd", **changes: Any) -> dict:
    """Stripe's example balance transaction with this amount and fee."""
    return fixture(
        "balance_transaction",
        id=f"txn_{amount}_{fee}",
        amount=amount,
        fee=fee,
        net=amount - fee,
        currency=currency,
        **changes,
    )


def charge(charge_id: str, customer: str, amount: int, day: dt.date, **changes: Any) -> dict:
    """Stripe's example charge, captured, of ``customer``, made on ``day``."""
    values = {
        "id": charge_id,
        "customer": customer,
        "amount": amount,
        "amount_captured": amount,
        "captured": True,
        "invoice": None,
        "created": ts(day, 10),
    }
    return fixture("charge", **{**values, **changes})


def refund(refund_id: str, charge_id: str, amount: int, day: dt.date) -> dict[str, Any]:
    """Stripe's example refund, succeeded."""
    return fixture("refund", id=refund_id, charge=charge_id, amount=amount, created=ts(day, 11))


def subscription(sub_id: str, item_id: str, customer: str, start: dt.date, end: dt.date):
    """Stripe's example subscription (one licensed item at 20.00 a month) in one period."""
    obj = fixture("subscription", id=sub_id, customer=customer, status="active")
    obj.update(start_date=ts(JUL1), discounts=[], ended_at=None, canceled_at=None)
    item = obj["items"]["data"][0]
    item.update(
        id=item_id,
        subscription=sub_id,
        quantity=1,
        current_period_start=ts(start),
        current_period_end=ts(end),
    )
    return obj


# --- the stories ---------------------------------------------------------------------------


def subscription_story() -> list[dict[str, Any]]:
    """USD: subscription, invoice with tax, paid with a fee, refund, upgrade, renewal, end."""
    sub, item = "sub_e2e", "si_e2e"
    july = subscription(sub, item, SUBSCRIBER, JUL1, AUG1)
    first = invoice(
        "in_e2e_s1",
        SUBSCRIBER,
        [line("il_e2e_s1", 20_00, subscription=(sub, item))],
        21_70,
        taxes=[tax(1_70)],
        subscription=sub,
    )
    paying = charge(
        "ch_e2e_s1",
        SUBSCRIBER,
        21_70,
        JUL2,
        invoice="in_e2e_s1",
        balance_transaction=balance_transaction(21_70, 93),
    )
    refunded = charge("ch_e2e_s1", SUBSCRIBER, 21_70, JUL2, invoice="in_e2e_s1")
    first_refund = refund("re_e2e_s1", "ch_e2e_s1", 5_00, JUL5)
    refunded.update(amount_refunded=5_00, refunded=False)
    refunded["refunds"] = {"data": [first_refund], "has_more": False, "object": "list"}
    # Upgrade on July 16: the unused half of the 20.00 month credited, 30.00 charged
    # for the rest of the month at the new price: a net 20.00 proration invoice.
    unused = line(
        "il_e2e_s2a", -10_00, subscription=(sub, item), proration=True,
        period=(JUL16, AUG1), credited=("in_e2e_s1", ["il_e2e_s1"]),
    )  # fmt: skip
    remaining = line(
        "il_e2e_s2b", 30_00, subscription=(sub, item), proration=True, period=(JUL16, AUG1)
    )
    upgrade = invoice(
        "in_e2e_s2", SUBSCRIBER, [unused, remaining], 20_00, finalized=JUL16, subscription=sub
    )
    august = subscription(sub, item, SUBSCRIBER, AUG1, SEP1)
    before = {"items": {"data": [{"id": item, "current_period_start": ts(JUL1)}]}}
    ended = subscription(sub, item, SUBSCRIBER, AUG1, SEP1)
    ended.update(status="canceled", ended_at=ts(AUG20, 15), canceled_at=ts(AUG20, 15))
    return [
        event("evt_e2e_s1", "customer.subscription.created", july, JUL1),
        event("evt_e2e_s2", "invoice.finalized", first, JUL1),
        event("evt_e2e_s3", "invoice.paid", paid(first, paying, JUL2), JUL2),
        event("evt_e2e_s4", "charge.refunded", refunded, JUL5),
        event("evt_e2e_s5", "refund.created", {**first_refund, "customer": SUBSCRIBER}, JUL5),
        event("evt_e2e_s6", "invoice.finalized", upgrade, JUL16),
        event(
            "evt_e2e_s7", "customer.subscription.updated", august, AUG1, previous_attributes=before
        ),
        event("evt_e2e_s8", "customer.subscription.deleted", ended, AUG20),
    ]


def credit_note(note_id: str, invoice_id: str, line_id: str, day: dt.date) -> dict[str, Any]:
    """Stripe's example credit note: 11.90 on one invoice line, 0.90 of it discount, 2.09 tax."""
    note = fixture(
        "credit_note",
        id=note_id,
        invoice=invoice_id,
        customer=EURO_CUSTOMER,
        currency="eur",
        total=13_09,
        effective_at=ts(day, 12),
        created=ts(day, 12),
        total_taxes=None,
        tax_amounts=[
            {"amount": 2_09, "inclusive": False, "tax_rate": TAX_RATE, "taxable_amount": 11_00}
        ],
    )
    note["lines"]["data"] = note["lines"]["data"][:1]
    note["lines"]["data"][0].update(invoice_line_item=line_id)
    note["lines"]["data"][0]["pretax_credit_amounts"] = [
        {"amount": 90, "discount": "di_e2e", "type": "discount"}
    ]
    return note


def euro_story() -> list[dict[str, Any]]:
    """EUR: invoice with discount and tax, credit note and its void, a void, a write-off."""
    first = invoice(
        "in_e2e_e1",
        EURO_CUSTOMER,
        [line("il_e2e_e1", 100_00, currency="eur", discount=10_00)],
        107_10,
        currency="eur",
        taxes=[tax(17_10)],
    )
    note = credit_note("cn_e2e_e1", "in_e2e_e1", "il_e2e_e1", JUL20)
    voided_note = copy.deepcopy(note)
    voided_note.update(status="void", voided_at=ts(dt.date(2024, 7, 22), 12))
    second = invoice(
        "in_e2e_e2", EURO_CUSTOMER, [line("il_e2e_e2", 50_00, currency="eur")], 50_00,
        currency="eur",
    )  # fmt: skip
    voided = copy.deepcopy(second)
    voided.update(status="void", amount_remaining=0)
    voided["status_transitions"]["voided_at"] = ts(JUL5, 14)
    third = invoice(
        "in_e2e_e3", EURO_CUSTOMER, [line("il_e2e_e3", 30_00, currency="eur")], 30_00,
        currency="eur",
    )  # fmt: skip
    uncollectible = copy.deepcopy(third)
    uncollectible.update(status="uncollectible")
    uncollectible["status_transitions"]["marked_uncollectible_at"] = ts(AUG20, 14)
    return [
        event("evt_e2e_e1", "invoice.finalized", first, JUL1),
        event("evt_e2e_e2", "credit_note.created", note, JUL20),
        event("evt_e2e_e3", "credit_note.voided", voided_note, dt.date(2024, 7, 22)),
        event("evt_e2e_e4", "invoice.finalized", second, JUL1),
        event("evt_e2e_e5", "invoice.voided", voided, JUL5),
        event("evt_e2e_e6", "invoice.finalized", third, JUL1),
        event("evt_e2e_e7", "invoice.marked_uncollectible", uncollectible, AUG20),
    ]


def yen_story() -> list[dict[str, Any]]:
    """JPY: an invoice paid by a charge settled in USD, and a standalone charge."""
    bill = invoice(
        "in_e2e_j1", YEN_CUSTOMER, [line("il_e2e_j1", 5_000, currency="jpy")], 5_000,
        currency="jpy",
    )  # fmt: skip
    # 5,000 JPY settled as 33.20 USD (rate 0.00664): the 1.30 USD fee is 195.78 -> 196 JPY.
    settled_in_usd = balance_transaction(33_20, 1_30, exchange_rate=0.00664)
    paying = charge(
        "ch_e2e_j1", YEN_CUSTOMER, 5_000, JUL2, currency="jpy", invoice="in_e2e_j1",
        balance_transaction=settled_in_usd,
    )  # fmt: skip
    standalone = charge(
        "ch_e2e_j2", YEN_CUSTOMER, 3_000, JUL5, currency="jpy",
        balance_transaction=balance_transaction(3_000, 120, "jpy"),
    )  # fmt: skip
    return [
        event("evt_e2e_j1", "invoice.finalized", bill, JUL1),
        event("evt_e2e_j2", "invoice.paid", paid(bill, paying, JUL2), JUL2),
        event("evt_e2e_j3", "charge.succeeded", standalone, JUL5),
    ]


def dispute(dispute_id: str, disputed: dict[str, Any], status: str, fees: list[dict]) -> dict:
    """Stripe's example dispute, closed, on the expanded charge ``disputed``."""
    return fixture(
        "dispute",
        id=dispute_id,
        charge=disputed,
        amount=disputed["amount"],
        status=status,
        balance_transactions=fees,
    )


def dispute_story() -> list[dict[str, Any]]:
    """USD: two standalone charges; the first's dispute lost, the second's won."""
    lost_charge = charge(
        "ch_e2e_d1", DISPUTER, 50_00, JUL2, balance_transaction=balance_transaction(50_00, 175)
    )
    won_charge = charge("ch_e2e_d2", DISPUTER, 40_00, JUL2)
    withdrawal = balance_transaction(-50_00, 15_00, type="adjustment")
    won_fee = balance_transaction(-40_00, 15_00, type="adjustment")
    reinstated = balance_transaction(40_00, 0, type="adjustment")
    return [
        event("evt_e2e_d1", "charge.succeeded", lost_charge, JUL2),
        event("evt_e2e_d2", "charge.succeeded", won_charge, JUL2),
        event(
            "evt_e2e_d3", "charge.dispute.closed",
            dispute("dp_e2e_d1", lost_charge, "lost", [withdrawal]), JUL20,
        ),
        event(
            "evt_e2e_d4", "charge.dispute.closed",
            dispute("dp_e2e_d2", won_charge, "won", [won_fee, reinstated]), JUL20,
        ),
    ]  # fmt: skip


def payout_story() -> list[dict[str, Any]]:
    """The Stripe balance paid out to the bank on July 20."""
    payout = fixture(
        "payout", id="po_e2e_1", amount=60_00, status="paid", arrival_date=ts(JUL20), currency="usd"
    )
    return [event("evt_e2e_p1", "payout.paid", payout, JUL20)]


def all_stories() -> list[dict[str, Any]]:
    """Every story's events, customer after customer (each customer's in its own order)."""
    return [
        *subscription_story(),
        *euro_story(),
        *yen_story(),
        *dispute_story(),
        *payout_story(),
    ]
