"""Stripe events -> canonical events, built around Stripe's own example objects.

Every event here wraps an object from Stripe's ``fixtures3.json`` (stripe/openapi, the
examples Stripe publishes for each API resource), changed only where a case needs it
(amounts, currency, a discount, tax, a proration), so the translator reads every field
Stripe sends in the shapes Stripe sends them.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

import pytest

from connectors.simulation import builders as b
from connectors.stripe import (
    HANDLERS,
    Malformed,
    ProductTreatment,
    Skipped,
    StripeConfig,
    StripeConfigError,
    Translated,
    config_from_environ,
    config_from_mapping,
    routing_key,
    translate,
)
from ledger.events import (
    CreditNoteIssued,
    CreditNoteVoided,
    DisputeClosed,
    InvoiceIssued,
    InvoiceVoided,
    InvoiceWrittenOff,
    PaymentSettled,
    PayoutPaid,
    RefundIssued,
)
from revenue.events import ContractAmended, ContractBooked, ContractCancelled
from revenue.replay import replay_all
from streams.serde import Codec
from streams.stripe_translator import outcome_of
from tests.stripe_objects import RESOURCES, fixture, ts

CONFIG = StripeConfig(entities={"USD": "US1", "EUR": "EU1", "JPY": "JP1", "*": "US1"})
CUSTOMER = "cus_QXg1o8vcGmoR32"


JUL1, JUL16, AUG1, SEP1 = (dt.date(2024, 7, 1), dt.date(2024, 7, 16), dt.date(2024, 8, 1),
                           dt.date(2024, 9, 1))  # fmt: skip


def event(
    kind: str,
    obj: dict[str, Any],
    *,
    event_id: str = "evt_1",
    created: int | None = None,
    previous: dict[str, Any] | None = None,
    account: str | None = None,
) -> dict[str, Any]:
    """A webhook event around ``obj``, from Stripe's example event envelope."""
    envelope = fixture("event", id=event_id, type=kind, created=created or ts(JUL1, 9))
    envelope["data"] = {"object": obj}
    if previous is not None:
        envelope["data"]["previous_attributes"] = previous
    if account is not None:
        envelope["account"] = account
    return envelope


def events_of(stripe_event: dict[str, Any], config: StripeConfig = CONFIG) -> tuple:
    result = translate(stripe_event, config)
    assert isinstance(result, Translated), result
    return result.events


# --- builders of Stripe objects in both API shapes ------------------------------------------


def line(
    line_id: str,
    amount: int,
    *,
    currency: str = "usd",
    product: str = "prod_QXg1hqf4jFNsqG",
    period: tuple[dt.date, dt.date] = (JUL1, AUG1),
    subscription: str | None = None,
    item: str | None = None,
    proration: bool = False,
    credited: tuple[str, list[str]] | None = None,
    discount: int = 0,
    taxes: list[dict] | None = None,
) -> dict[str, Any]:
    """An invoice line in the 2025-03-31 (basil) shape: ``parent`` and ``pricing``."""
    obj = fixture("line_item", id=line_id, amount=amount, currency=currency, taxes=taxes)
    obj["period"] = {"start": ts(period[0]), "end": ts(period[1])}
    obj["pricing"] = {
        "type": "price_details",
        "price_details": {"price": "price_1PgafmB7WZ01zgkW6dKueIc5", "product": product},
        "unit_amount_decimal": str(amount),
    }
    details = {
        "proration": proration,
        "proration_details": {
            "credited_items": (
                None
                if credited is None
                else {"invoice": credited[0], "invoice_line_items": credited[1]}
            )
        },
    }
    if subscription is not None:
        obj["parent"] = {
            "type": "subscription_item_details",
            "subscription_item_details": {
                **details,
                "invoice_item": None,
                "subscription": subscription,
                "subscription_item": item,
            },
        }
    else:
        obj["parent"] = {
            "type": "invoice_item_details",
            "invoice_item_details": {**details, "invoice_item": "ii_1", "subscription": None},
        }
    if discount:
        obj["discount_amounts"] = [{"amount": discount, "discount": "di_1"}]
        obj["pretax_credit_amounts"] = [
            {"amount": discount, "discount": "di_1", "type": "discount"}
        ]
    return obj


def old_line(line_id: str, amount: int, **changes: Any) -> dict[str, Any]:
    """An invoice line in the shape before basil: ``price``, ``proration``, ``tax_amounts``."""
    obj = fixture("line_item", id=line_id, amount=amount, type="invoiceitem", proration=False)
    for basil_only in ("parent", "pricing", "taxes", "pretax_credit_amounts"):
        obj.pop(basil_only)
    obj["price"] = fixture("price")
    obj["period"] = {"start": ts(JUL1), "end": ts(AUG1)}
    obj.update(changes)
    return obj


def invoice(
    lines: list[dict[str, Any]],
    total: int,
    *,
    invoice_id: str = "in_1Pgc6tB7WZ01zgkWu9fdqL6I",
    currency: str = "usd",
    taxes: list[dict] | None = None,
    **changes: Any,
) -> dict[str, Any]:
    """Stripe's example invoice, finalized on July 1 2024, with these lines and total."""
    obj = fixture(
        "invoice",
        id=invoice_id,
        currency=currency,
        total=total,
        amount_due=total,
        amount_remaining=total,
        status="open",
        total_taxes=taxes,
        due_date=ts(dt.date(2024, 7, 31)),
        status_transitions={
            "finalized_at": ts(JUL1, 8),
            "marked_uncollectible_at": None,
            "paid_at": None,
            "voided_at": None,
        },
    )
    obj["lines"] = {"data": lines, "has_more": False, "object": "list", "url": "/v1/invoices"}
    obj.update(changes)
    return obj


def basil_tax(amount: int, rate: str = "txr_1Pgc74B7WZ01zgkW94BlEhHU", inclusive: bool = False):
    return {
        "amount": amount,
        "tax_behavior": "inclusive" if inclusive else "exclusive",
        "tax_rate_details": {"tax_rate": rate},
        "taxability_reason": "standard_rated",
        "taxable_amount": 0,
        "type": "tax_rate_details",
    }


def subscription(status: str = "active", quantity: int = 1, **changes: Any) -> dict[str, Any]:
    """Stripe's example subscription, its one item in period July 2024 (basil shape)."""
    obj = fixture("subscription", status=status, start_date=ts(JUL1), **changes)
    item = obj["items"]["data"][0]
    item.update(quantity=quantity, current_period_start=ts(JUL1), current_period_end=ts(AUG1))
    return obj


def charge(**changes: Any) -> dict[str, Any]:
    """Stripe's example charge, captured, for the example customer."""
    values = {
        "captured": True,
        "amount_captured": changes.get("amount", 100),
        "customer": CUSTOMER,
        "created": ts(JUL1, 10),
    }
    return fixture("charge", **{**values, **changes})


# --- invoices -------------------------------------------------------------------------------


def test_invoice_finalized_gives_lines_net_of_discount_and_tax_per_rate_when_eur():
    taxes = [basil_tax(1710)]
    stripe = invoice(
        [line("il_1", 10_000, currency="eur", discount=1_000, taxes=taxes)],
        total=10_710,
        currency="eur",
        taxes=taxes,
    )

    (issued,) = events_of(event("invoice.finalized", stripe))

    assert isinstance(issued, InvoiceIssued)
    assert issued.event_id == "stripe:evt_1"
    assert (issued.entity, issued.customer_id, issued.currency) == ("EU1", CUSTOMER, "EUR")
    assert (issued.invoice_id, issued.source_system) == (stripe["id"], "stripe")
    assert (issued.issue_date, issued.due_date) == (JUL1, dt.date(2024, 7, 31))
    assert [(x.line_id, x.product_id, x.amount_minor) for x in issued.lines] == [
        ("il_1", "prod_QXg1hqf4jFNsqG", 9_000)
    ]
    assert (issued.lines[0].service_start, issued.lines[0].service_end) == (
        JUL1,
        dt.date(2024, 7, 31),
    )
    assert [(t.tax_code, t.amount_minor) for t in issued.tax_lines] == [
        ("txr_1Pgc74B7WZ01zgkW94BlEhHU", 1_710)
    ]
    assert issued.total_minor == 10_710
    assert issued.lines[0].contract_id is None  # not a subscription: an implied contract


def test_invoice_amounts_are_taken_as_minor_units_when_zero_decimal_jpy():
    stripe = invoice([line("il_1", 5_000, currency="jpy")], total=5_000, currency="jpy")

    (issued,) = events_of(event("invoice.finalized", stripe))

    assert (issued.currency, issued.entity, issued.total_minor) == ("JPY", "JP1", 5_000)
    assert issued.lines[0].amount_minor == 5_000


def test_included_tax_is_taken_out_of_the_line_when_tax_inclusive_old_api_shape():
    rate = fixture("tax_rate", inclusive=True)
    tax = {"amount": 1_900, "inclusive": True, "tax_rate": rate, "taxable_amount": 10_000}
    stripe = invoice(
        [old_line("il_1", 11_900, tax_amounts=[tax])],
        total=11_900,
        taxes=None,
        total_tax_amounts=[tax],
    )

    (issued,) = events_of(event("invoice.finalized", stripe))

    assert [x.amount_minor for x in issued.lines] == [10_000]
    assert [(t.tax_code, t.jurisdiction, t.amount_minor) for t in issued.tax_lines] == [
        (rate["id"], "DE", 1_900)
    ]
    assert issued.lines[0].product_id == "prod_QXg1hqf4jFNsqG"  # from line.price.product


def test_subscription_line_names_the_contract_and_period_obligation_when_finalized():
    stripe = invoice(
        [line("il_1", 2_000, subscription="sub_1", item="si_1", period=(JUL1, AUG1))],
        total=2_000,
    )

    (issued,) = events_of(event("invoice.finalized", stripe))

    assert (issued.lines[0].contract_id, issued.lines[0].obligation_id) == (
        "sub_1",
        "si_1@2024-07-01",
    )


def test_subscription_line_is_an_implied_contract_when_subscription_contracts_off():
    config = StripeConfig(entities={"*": "US1"}, subscription_contracts=False)
    stripe = invoice([line("il_1", 2_000, subscription="sub_1", item="si_1")], total=2_000)

    (issued,) = events_of(event("invoice.finalized", stripe), config)

    assert issued.lines[0].contract_id is None and issued.lines[0].obligation_id is None


def test_proration_upgrade_adds_a_separate_contract_obligation_billed_net_when_finalized():
    credit = line(
        "il_credit", -500, subscription="sub_1", item="si_1", proration=True,
        period=(JUL16, AUG1), credited=("in_old", ["il_old"]),
    )  # fmt: skip
    charge_line = line(
        "il_charge", 1_500, subscription="sub_1", item="si_1", proration=True, period=(JUL16, AUG1)
    )
    stripe = invoice([credit, charge_line], total=1_000, invoice_id="in_2")

    amended, issued = events_of(event("invoice.finalized", stripe))

    assert isinstance(amended, ContractAmended)
    assert (amended.contract_id, amended.treatment) == ("sub_1", "separate_contract")
    assert (amended.amendment_id, amended.event_id) == (
        "in_2/sub_1",
        "stripe:evt_1/amendment:sub_1",
    )
    assert amended.total_price_minor == 1_000
    (spec,) = amended.obligations
    assert (spec.obligation_id, spec.price_minor, spec.ssp_minor) == (
        "si_1@il_charge",
        1_000,
        1_000,
    )
    assert (spec.service_start, spec.service_end) == (JUL16, dt.date(2024, 7, 31))
    assert amended.effective_date == JUL16
    assert [(x.line_id, x.amount_minor, x.obligation_id) for x in issued.lines] == [
        ("il_charge", 1_000, "si_1@il_charge")
    ]
    assert issued.total_minor == 1_000


def test_proration_downgrade_credits_the_credited_line_for_remaining_service_when_finalized():
    credit = line(
        "il_credit", -1_500, subscription="sub_1", item="si_1", proration=True,
        period=(JUL16, AUG1), credited=("in_old", ["il_old"]),
    )  # fmt: skip
    charge_line = line(
        "il_charge", 500, subscription="sub_1", item="si_1", proration=True, period=(JUL16, AUG1)
    )
    stripe = invoice([credit, charge_line], total=-1_000, invoice_id="in_2")

    (note,) = events_of(event("invoice.finalized", stripe))

    assert isinstance(note, CreditNoteIssued)
    assert (note.credit_note_id, note.invoice_id, note.applies_to) == (
        "in_2/in_old",
        "in_old",
        "remaining_service",
    )
    assert [(x.invoice_line_id, x.amount_minor) for x in note.lines] == [("il_old", 1_000)]
    assert note.total_minor == 1_000


def test_manual_negative_line_reduces_the_positive_lines_like_a_discount_when_finalized():
    stripe = invoice(
        [line("il_a", 3_000), line("il_b", 1_000), line("il_credit", -400)], total=3_600
    )

    (issued,) = events_of(event("invoice.finalized", stripe))

    assert [(x.line_id, x.amount_minor) for x in issued.lines] == [("il_a", 2_700), ("il_b", 900)]
    assert issued.total_minor == 3_600


def test_invoice_is_refused_when_lines_and_taxes_do_not_add_up_to_the_total():
    stripe = invoice([line("il_1", 1_000)], total=1_001)

    result = translate(event("invoice.finalized", stripe), CONFIG)

    assert isinstance(result, Malformed)
    assert result.reason == "stripe_invoice_total_mismatch"
    assert "1000" in result.message and "1001" in result.message


def test_invoice_is_refused_when_the_payload_lists_only_part_of_its_lines():
    stripe = invoice([line("il_1", 1_000)], total=1_000)
    stripe["lines"]["has_more"] = True

    result = translate(event("invoice.finalized", stripe), CONFIG)

    assert isinstance(result, Malformed) and result.reason == "stripe_invoice_lines_truncated"


def test_invoice_is_skipped_when_it_bills_nothing():
    stripe = invoice([line("il_trial", 0)], total=0)

    result = translate(event("invoice.finalized", stripe), CONFIG)

    assert result == Skipped("zero_amount", f"invoice {stripe['id']} bills nothing")


def test_invoice_voided_and_marked_uncollectible_name_the_invoice_and_date():
    stripe = invoice([line("il_1", 1_000)], total=1_000)
    stripe["status_transitions"].update(
        voided_at=ts(dt.date(2024, 7, 5)), marked_uncollectible_at=ts(dt.date(2024, 8, 20))
    )
    stripe["amount_remaining"] = 600

    (voided,) = events_of(event("invoice.voided", stripe))
    (written_off,) = events_of(event("invoice.marked_uncollectible", stripe))

    assert isinstance(voided, InvoiceVoided)
    assert (voided.invoice_id, voided.void_date) == (stripe["id"], dt.date(2024, 7, 5))
    assert isinstance(written_off, InvoiceWrittenOff)
    assert (written_off.amount_minor, written_off.write_off_date) == (600, dt.date(2024, 8, 20))


# --- payments -------------------------------------------------------------------------------


def test_invoice_paid_settles_the_invoice_with_the_expanded_balance_transaction_fee():
    transaction = fixture("balance_transaction", amount=2_000, fee=88, currency="usd")
    paid_by = charge(amount=2_000, balance_transaction=transaction)
    stripe = invoice([line("il_1", 2_000)], total=2_000, amount_paid=2_000, charge=paid_by)
    stripe["status_transitions"]["paid_at"] = ts(dt.date(2024, 7, 2))

    (settled,) = events_of(event("invoice.paid", stripe))

    assert isinstance(settled, PaymentSettled)
    assert (settled.payment_id, settled.amount_minor, settled.fee_minor) == (
        paid_by["id"],
        2_000,
        88,
    )
    assert [(a.invoice_id, a.amount_minor) for a in settled.applications] == [(stripe["id"], 2_000)]
    assert (settled.settled_date, settled.processor, settled.method) == (
        dt.date(2024, 7, 2),
        "stripe",
        "card",
    )


def test_fee_in_the_settlement_currency_is_converted_at_the_exchange_rate_when_jpy_charge():
    # 5,000 JPY settled as 33.20 USD (rate 0.00664): a 1.30 USD fee is 195.78 -> 196 JPY.
    transaction = fixture(
        "balance_transaction", amount=3_320, fee=130, currency="usd", exchange_rate=0.00664
    )
    stripe = charge(amount=5_000, currency="jpy", balance_transaction=transaction)

    (settled,) = events_of(event("charge.succeeded", stripe))

    assert (settled.currency, settled.amount_minor, settled.fee_minor) == ("JPY", 5_000, 196)
    assert settled.applications == ()  # no invoice: the customer's credit balance


def test_charge_is_skipped_when_it_pays_an_invoice_or_is_not_captured_or_charges_are_off():
    off = StripeConfig(entities={"*": "US1"}, standalone_charges=False)

    assert translate(event("charge.succeeded", charge(invoice="in_1")), CONFIG).reason == (
        "paid_through_invoice"
    )
    assert translate(event("charge.succeeded", charge(captured=False)), CONFIG).reason == (
        "not_captured"
    )
    assert translate(event("charge.succeeded", charge()), off).reason == "standalone_charges_off"


def test_invoice_paid_out_of_band_is_skipped_when_the_money_is_not_in_stripe():
    stripe = invoice([line("il_1", 1_000)], total=1_000, amount_paid=1_000, paid_out_of_band=True)

    assert translate(event("invoice.paid", stripe), CONFIG).reason == "paid_out_of_band"


def _refund(refund_id: str, amount: int, day: dt.date, charge_id: str) -> dict[str, Any]:
    return fixture("refund", id=refund_id, amount=amount, created=ts(day), charge=charge_id)


def test_partial_refund_gives_one_refund_event_named_after_the_refund_when_charge_refunded():
    first = _refund("re_1", 300, dt.date(2024, 7, 3), "ch_1")
    stripe = charge(id="ch_1", amount=2_000, amount_refunded=300, refunded=False)
    stripe["refunds"] = {"data": [first], "has_more": False, "object": "list", "url": "/v1"}

    (refund,) = events_of(event("charge.refunded", stripe, event_id="evt_a"))

    assert isinstance(refund, RefundIssued)
    assert (refund.event_id, refund.refund_id, refund.payment_id) == ("stripe:re_1", "re_1", "ch_1")
    assert (refund.amount_minor, refund.refund_date, refund.customer_id) == (
        300,
        dt.date(2024, 7, 3),
        CUSTOMER,
    )


def test_second_partial_refund_repeats_the_first_identically_when_charge_lists_both():
    first = _refund("re_1", 300, dt.date(2024, 7, 3), "ch_1")
    second = _refund("re_2", 200, dt.date(2024, 7, 9), "ch_1")
    once = charge(id="ch_1", amount=2_000, amount_refunded=300)
    once["refunds"] = {"data": [first], "has_more": False}
    twice = charge(id="ch_1", amount=2_000, amount_refunded=500)
    twice["refunds"] = {"data": [second, first], "has_more": False}

    (earlier,) = events_of(event("charge.refunded", once, event_id="evt_a"))
    again, new = events_of(event("charge.refunded", twice, event_id="evt_b", created=ts(SEP1)))

    assert again == earlier  # the ledger takes it for a duplicate
    assert (new.refund_id, new.amount_minor) == ("re_2", 200)


def test_refund_amount_is_the_increase_of_amount_refunded_when_the_list_is_left_out():
    stripe = charge(id="ch_1", amount=2_000, amount_refunded=700)
    stripe.pop("refunds")

    (refund,) = events_of(
        event("charge.refunded", stripe, event_id="evt_r", previous={"amount_refunded": 300})
    )

    assert (refund.refund_id, refund.amount_minor) == ("ch_1/refunded:700", 400)


def test_refund_created_translates_the_same_refund_only_when_it_is_the_refund_source():
    from_refunds = StripeConfig(entities={"*": "US1"}, refund_source="refund.created")
    refund = _refund("re_1", 300, dt.date(2024, 7, 3), "ch_1")
    refund["customer"] = CUSTOMER
    listed = charge(id="ch_1", amount=2_000, amount_refunded=300)
    listed["refunds"] = {"data": [refund], "has_more": False}

    skipped = translate(event("refund.created", refund), CONFIG)
    (from_refund,) = events_of(event("refund.created", refund, event_id="evt_x"), from_refunds)
    (from_charge,) = events_of(event("charge.refunded", listed, event_id="evt_y"))

    assert isinstance(skipped, Skipped) and skipped.reason == "refund_source_other"
    assert from_refund == from_charge


def test_lost_dispute_takes_the_customer_from_the_expanded_charge_and_fees_from_its_movements():
    withdrawal = fixture("balance_transaction", id="txn_w", amount=-1_000, fee=1_500)
    stripe = fixture(
        "dispute", status="lost", amount=1_000, charge=charge(id="ch_1"),
        balance_transactions=[withdrawal],
    )  # fmt: skip

    (closed,) = events_of(event("charge.dispute.closed", stripe))

    assert isinstance(closed, DisputeClosed)
    assert (closed.outcome, closed.payment_id, closed.customer_id) == ("lost", "ch_1", CUSTOMER)
    assert (closed.amount_minor, closed.fee_minor) == (1_000, 1_500)


def test_dispute_is_refused_when_no_customer_can_be_found_and_skipped_when_an_inquiry():
    unexpanded = fixture("dispute", status="won")
    inquiry = fixture("dispute", status="warning_closed")

    refused = translate(event("charge.dispute.closed", unexpanded), CONFIG)
    skipped = translate(event("charge.dispute.closed", inquiry), CONFIG)

    assert isinstance(refused, Malformed) and refused.reason == "stripe_customer_missing"
    assert isinstance(skipped, Skipped) and skipped.reason == "inquiry_closed"


def test_payout_is_keyed_by_the_stripe_balance_of_its_account_when_paid():
    stripe = fixture("payout", arrival_date=ts(dt.date(2024, 7, 4)), status="paid")

    (paid,) = events_of(event("payout.paid", stripe, account="acct_9"))

    assert isinstance(paid, PayoutPaid)
    assert (paid.customer_id, paid.payout_date, paid.amount_minor) == (
        "processor:stripe:acct_9",
        dt.date(2024, 7, 4),
        1_100,
    )
    assert paid.bank_account == "ba_1Pgc79B7WZ01zgkWoU5vBiXt"  # the Stripe id, no details


def test_payout_reversal_is_refused_for_a_person_to_post():
    stripe = fixture("payout", original_payout="po_0")

    result = translate(event("payout.paid", stripe), CONFIG)

    assert isinstance(result, Malformed) and result.reason == "stripe_payout_reversal_unsupported"


# --- credit notes ---------------------------------------------------------------------------


def credit_note(total: int, **changes: Any) -> dict[str, Any]:
    """Stripe's example credit note with only its line on an invoice line (11.90, 0.90 off)."""
    note = fixture("credit_note", total=total, **changes)
    note["lines"]["data"] = note["lines"]["data"][:1]
    note["lines"]["data"][0]["pretax_credit_amounts"] = [
        {"amount": 90, "discount": "di_1", "type": "discount"}
    ]
    return note


def test_credit_note_credits_the_invoice_line_net_of_discount_and_tax_when_created():
    tax = {"amount": 209, "inclusive": False, "tax_rate": "txr_1", "taxable_amount": 1_100}
    note = credit_note(
        1_309, effective_at=ts(dt.date(2024, 7, 20)), tax_amounts=[tax], total_taxes=None
    )

    (issued,) = events_of(event("credit_note.created", note))

    assert isinstance(issued, CreditNoteIssued)
    assert (issued.credit_note_id, issued.invoice_id) == (note["id"], note["invoice"])
    assert [(x.invoice_line_id, x.amount_minor) for x in issued.lines] == [
        ("il_1Pgc74B7WZ01zgkWWh45tUBA", 1_100)
    ]
    assert [(t.tax_code, t.amount_minor) for t in issued.tax_lines] == [("txr_1", 209)]
    assert (issued.total_minor, issued.issue_date) == (1_309, dt.date(2024, 7, 20))
    assert issued.applies_to == "remaining_service"


def test_credit_note_applies_to_past_service_when_its_metadata_says_so():
    note = credit_note(1_100, metadata={"revledger_applies_to": "past_service"})

    (issued,) = events_of(event("credit_note.created", note))

    assert issued.applies_to == "past_service"


def test_credit_note_is_refused_when_a_line_is_not_tied_to_an_invoice_line():
    note = credit_note(1_690)
    # Stripe's example also has a 5.00 custom "Service credit" line, on no invoice line.
    note["lines"]["data"].append(RESOURCES["credit_note"]["lines"]["data"][1])

    result = translate(event("credit_note.created", note), CONFIG)

    assert isinstance(result, Malformed) and result.reason == "stripe_credit_note_custom_line"


def test_credit_note_void_names_the_note_its_invoice_and_the_day_it_was_voided():
    note = credit_note(1_100, status="void", voided_at=ts(dt.date(2024, 7, 22), 12))

    (voided,) = events_of(event("credit_note.voided", note))
    (issued,) = events_of(event("credit_note.created", note))

    assert isinstance(voided, CreditNoteVoided)
    assert (voided.credit_note_id, voided.invoice_id, voided.void_date) == (
        note["id"],
        note["invoice"],
        dt.date(2024, 7, 22),
    )
    assert (voided.customer_id, voided.entity) == (issued.customer_id, issued.entity)
    assert voided.source_id == note["id"]


def test_credit_note_void_is_skipped_or_refused_as_the_note_itself_was():
    zero = credit_note(0, status="void")
    zero["lines"]["data"] = []
    custom = credit_note(1_690, status="void")
    custom["lines"]["data"].append(RESOURCES["credit_note"]["lines"]["data"][1])

    skipped = translate(event("credit_note.voided", zero), CONFIG)
    refused = translate(event("credit_note.voided", custom), CONFIG)

    # The ledger never saw these notes: a void would wait for them until it timed out.
    assert isinstance(skipped, Skipped) and skipped.reason == "zero_amount"
    assert isinstance(refused, Malformed) and refused.reason == "stripe_credit_note_custom_line"


# --- subscriptions --------------------------------------------------------------------------


def test_subscription_created_books_a_contract_with_one_obligation_per_item_period():
    stripe = subscription(quantity=3)

    (booked,) = events_of(event("customer.subscription.created", stripe))

    assert isinstance(booked, ContractBooked)
    assert (booked.contract_id, booked.booking_date, booked.currency) == (stripe["id"], JUL1, "USD")
    (spec,) = booked.obligations
    assert (spec.obligation_id, spec.product_id, spec.quantity) == (
        "si_QXhVnC2h0Jczwc@2024-07-01",
        "prod_QXg1hqf4jFNsqG",
        3,
    )
    assert (spec.price_minor, spec.ssp_minor, spec.pattern) == (6_000, 6_000, "ratable_daily")
    assert (spec.service_start, spec.service_end) == (JUL1, dt.date(2024, 7, 31))
    assert booked.total_price_minor == 6_000


def test_subscription_price_is_zero_during_a_free_trial_when_created():
    (booked,) = events_of(event("customer.subscription.created", subscription(status="trialing")))

    assert booked.total_price_minor == 0
    assert booked.obligations[0].ssp_minor == 2_000


def test_expanded_coupon_discounts_the_contract_price_when_created():
    coupon = fixture("coupon")  # Stripe's example: 25.5 % off
    discount = fixture("discount", end=None)
    discount["source"] = {"coupon": coupon, "type": "coupon"}
    stripe = subscription(quantity=2, discounts=[discount])

    (booked,) = events_of(event("customer.subscription.created", stripe))

    assert booked.total_price_minor == 2_980  # 4,000 less 25.5 %
    assert booked.discount_obligation_ids == ("si_QXhVnC2h0Jczwc@2024-07-01",)


def test_subscription_renewal_adds_the_new_periods_obligations_as_a_separate_contract():
    stripe = subscription()
    stripe["items"]["data"][0].update(current_period_start=ts(AUG1), current_period_end=ts(SEP1))
    before = {"items": {"data": [{"id": "si_QXhVnC2h0Jczwc", "current_period_start": ts(JUL1)}]}}

    (amended,) = events_of(event("customer.subscription.updated", stripe, previous=before))

    assert isinstance(amended, ContractAmended)
    assert (amended.treatment, amended.effective_date) == ("separate_contract", AUG1)
    assert amended.amendment_id == f"{stripe['id']}@2024-08-01"
    assert [o.obligation_id for o in amended.obligations] == ["si_QXhVnC2h0Jczwc@2024-08-01"]
    assert amended.total_price_minor == 2_000


def test_subscription_update_without_a_new_period_is_skipped():
    result = translate(
        event("customer.subscription.updated", subscription(), previous={"metadata": {}}), CONFIG
    )

    assert isinstance(result, Skipped) and result.reason == "no_contract_change"


def test_subscription_deleted_cancels_the_contract_from_the_day_it_ended():
    stripe = subscription(status="canceled", ended_at=ts(dt.date(2024, 7, 20), 15))

    (cancelled,) = events_of(event("customer.subscription.deleted", stripe))

    assert isinstance(cancelled, ContractCancelled)
    assert (cancelled.contract_id, cancelled.effective_date) == (stripe["id"], dt.date(2024, 7, 20))


def test_metered_items_are_not_contract_obligations_when_created():
    stripe = subscription()
    stripe["items"]["data"][0]["price"]["recurring"]["usage_type"] = "metered"

    result = translate(event("customer.subscription.created", stripe), CONFIG)

    assert isinstance(result, Skipped) and result.reason == "no_licensed_items"


def test_configured_product_treatment_sets_family_and_pattern_when_created():
    config = StripeConfig(
        entities={"*": "US1"},
        products={"prod_QXg1hqf4jFNsqG": ProductTreatment("services", "ratable_monthly")},
    )

    (booked,) = events_of(event("customer.subscription.created", subscription()), config)

    assert (booked.obligations[0].family, booked.obligations[0].pattern) == (
        "services",
        "ratable_monthly",
    )


# --- the whole story posts through the pure engine ------------------------------------------


def test_translated_subscription_story_posts_through_the_engine_without_rejection_or_hold():
    sub = subscription(id="sub_1")
    sub["items"]["data"][0]["id"] = "si_1"
    first = invoice(
        [line("il_1", 2_000, subscription="sub_1", item="si_1")],
        total=2_000,
        invoice_id="in_1",
        charge="ch_1",
    )
    paid = copy.deepcopy(first)
    paid.update(amount_paid=2_000, amount_remaining=0, status="paid")
    paid["status_transitions"]["paid_at"] = ts(dt.date(2024, 7, 2))
    refunded = charge(id="ch_1", amount=2_000, amount_refunded=500)
    refunded["refunds"] = {"data": [_refund("re_1", 500, dt.date(2024, 7, 5), "ch_1")]}
    upgrade = invoice(
        [
            line("il_2a", -1_000, subscription="sub_1", item="si_1", proration=True,
                 period=(JUL16, AUG1), credited=("in_1", ["il_1"])),
            line("il_2b", 3_000, subscription="sub_1", item="si_1", proration=True,
                 period=(JUL16, AUG1)),
        ],
        total=2_000,
        invoice_id="in_2",
    )  # fmt: skip
    stripe_events = [
        event("customer.subscription.created", sub, event_id="evt_1"),
        event("invoice.finalized", first, event_id="evt_2"),
        event("invoice.paid", paid, event_id="evt_3"),
        event("charge.refunded", refunded, event_id="evt_4"),
        event("invoice.finalized", upgrade, event_id="evt_5"),
    ]
    canonical = [e for stripe in stripe_events for e in events_of(stripe)]
    reference = [*b.base_records(), b.product("prod_QXg1hqf4jFNsqG")]

    result = replay_all(reference, [*canonical, b.clock(dt.date(2024, 7, 31))])

    assert result.rejected == []
    assert all(not books.ledger.held for books in result.books.values())
    kinds = [entry.source_event_id for entry in result.entries]
    assert {"stripe:evt_2", "stripe:evt_3", "stripe:re_1", "stripe:evt_5"} <= set(kinds)
    revenue = sum(
        line.amount_minor
        for entry in result.entries
        for line in entry.lines
        if line.account == "revenue"
    )
    assert revenue == 4_000  # July: 2,000 booked + 2,000 added by the upgrade, all served


# --- every event: deterministic, no card or bank details, valid on the wire ---------------


def _samples() -> list[dict[str, Any]]:
    transaction = fixture("balance_transaction", fee=59)
    refunded = charge(id="ch_1", amount=2_000, amount_refunded=300)
    refunded["refunds"]["data"] = [_refund("re_1", 300, dt.date(2024, 7, 3), "ch_1")]
    note = credit_note(1_100)
    paid = invoice([line("il_1", 1_000)], total=1_000, amount_paid=1_000, charge=charge())
    paid["charge"]["balance_transaction"] = transaction
    return [
        event("invoice.finalized", invoice([line("il_1", 1_000)], total=1_000)),
        event("invoice.paid", paid),
        event("invoice.voided", invoice([line("il_1", 1_000)], total=1_000)),
        event("invoice.marked_uncollectible", invoice([line("il_1", 1_000)], total=1_000)),
        event("credit_note.created", note),
        event("charge.succeeded", charge(balance_transaction=transaction)),
        event("charge.refunded", refunded),
        event(
            "charge.dispute.closed",
            fixture("dispute", status="lost", charge=charge(), balance_transactions=[transaction]),
        ),
        event("payout.paid", fixture("payout")),
        event("customer.subscription.created", subscription()),
        event("customer.subscription.deleted", subscription(status="canceled")),
    ]


SECRETS_OF_CARDS_AND_BANKS = (
    "last4",
    "4242",
    "fingerprint",
    "AOB934RVNwzk6xtn",
    "exp_month",
    "exp_year",
    "payment_method_details",
    "billing_details",
    "Jenny Rosen",
    "routing_number",
    "account_number",
    "client_secret",
)


@pytest.mark.parametrize("stripe", _samples(), ids=lambda e: e["type"])
def test_same_event_twice_gives_identical_canonical_events(stripe):
    assert translate(stripe, CONFIG) == translate(copy.deepcopy(stripe), CONFIG)


@pytest.mark.parametrize("stripe", _samples(), ids=lambda e: e["type"])
def test_no_card_or_bank_detail_reaches_the_output_and_every_event_encodes(stripe):
    codec = Codec()
    events = events_of(stripe)
    text = " ".join(e.model_dump_json() for e in events)
    wire = b"".join(codec.encode(e) for e in events)

    for secret in SECRETS_OF_CARDS_AND_BANKS:
        assert secret not in text
        assert secret.encode() not in wire


def test_every_translated_type_has_a_sample():
    assert {e["type"] for e in _samples()} | {
        "charge.captured",
        "refund.created",
        "credit_note.voided",
        "customer.subscription.updated",
    } == set(HANDLERS)


# --- bad input and configuration ------------------------------------------------------------


def test_unknown_event_type_is_skipped_and_counted_by_reason():
    result = translate(event("plan.created", RESOURCES["event"]["data"]["object"]), CONFIG)

    assert result == Skipped("unknown_type", "plan.created")


def test_payload_of_the_wrong_shape_is_malformed_with_the_field_named():
    stripe = invoice([line("il_1", 1_000)], total=1_000)
    stripe["total"] = 10.5  # a float where Stripe sends an integer: never rounded

    result = translate(event("invoice.finalized", stripe), CONFIG)

    assert isinstance(result, Malformed) and result.reason == "stripe_payload_invalid"
    assert "total" in result.message


def test_not_an_event_and_unknown_currency_and_unmapped_entity_are_malformed():
    only_usd = StripeConfig(entities={"USD": "US1"})
    eur = invoice([line("il_1", 1_000, currency="eur")], total=1_000, currency="eur")
    fake = invoice([line("il_1", 1_000)], total=1_000, currency="zzz")

    assert translate({"object": "charge"}, CONFIG).reason == "stripe_not_an_event"
    assert translate(event("invoice.finalized", fake), CONFIG).reason == "stripe_unknown_currency"
    assert translate(event("invoice.finalized", eur), only_usd).reason == "stripe_entity_unmapped"


def test_most_specific_entity_mapping_wins_when_account_and_currency_match():
    config = StripeConfig(entities={"acct_1:EUR": "DE1", "acct_1": "IE1", "EUR": "EU1", "*": "US1"})

    assert config.entity_for("acct_1", "EUR") == "DE1"
    assert config.entity_for("acct_1", "USD") == "IE1"
    assert config.entity_for("acct_2", "EUR") == "EU1"
    assert config.entity_for(None, "GBP") == "US1"


def test_events_of_the_other_mode_are_skipped_when_only_live_is_accepted():
    live_only = StripeConfig(entities={"*": "US1"}, livemode="live")

    result = translate(event("payout.paid", fixture("payout")), live_only)

    assert isinstance(result, Skipped) and result.reason == "other_mode"


def test_config_is_read_from_the_environment_and_refused_when_unusable(tmp_path):
    path = tmp_path / "stripe.json"
    path.write_text(json.dumps({"entities": {"*": "US1"}, "timezone": "Europe/Berlin"}))

    from_file = config_from_environ({"REVLEDGER_STRIPE_CONFIG": str(path)})
    from_vars = config_from_environ({"REVLEDGER_STRIPE_ENTITIES": "USD=US1, *=EU1"})

    assert from_file.timezone == "Europe/Berlin"
    assert dict(from_vars.entities) == {"USD": "US1", "*": "EU1"}
    with pytest.raises(StripeConfigError, match="REVLEDGER_STRIPE_ENTITIES"):
        config_from_environ({})
    with pytest.raises(StripeConfigError, match="unknown settings"):
        config_from_mapping({"entities": {"*": "US1"}, "entitys": {}})
    with pytest.raises(StripeConfigError, match="timezone"):
        config_from_mapping({"entities": {"*": "US1"}, "timezone": "Mars/Olympus"})


def test_business_dates_are_taken_in_the_configured_time_zone():
    berlin = StripeConfig(entities={"*": "US1"}, timezone="Europe/Berlin")
    stripe = invoice([line("il_1", 1_000)], total=1_000)
    stripe["status_transitions"]["finalized_at"] = ts(dt.date(2024, 6, 30), 23)  # 01:00 Berlin

    (issued,) = events_of(event("invoice.finalized", stripe), berlin)

    assert issued.issue_date == JUL1


def test_routing_key_is_the_customer_or_the_stripe_balance_of_the_account():
    assert routing_key(event("invoice.paid", invoice([], total=0))) == CUSTOMER
    assert routing_key(event("payout.paid", fixture("payout"), account="acct_9")) == (
        "processor:stripe:acct_9"
    )
    assert routing_key(event("payout.paid", fixture("payout")), "acct_me") == (
        "processor:stripe:acct_me"
    )
    assert routing_key({"type": "x"}) == "processor:stripe:self"


def test_raw_record_that_is_not_json_is_malformed_when_read_by_the_translator():
    assert outcome_of(b"\xff not json", CONFIG).reason == "stripe_not_json"
    assert outcome_of(b"[1, 2]", CONFIG).reason == "stripe_not_an_event"
    assert outcome_of(b"", CONFIG).reason == "stripe_not_json"
    payout = event("payout.paid", fixture("payout"))
    assert outcome_of(json.dumps(payout).encode(), CONFIG) == translate(payout, CONFIG)
