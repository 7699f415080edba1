"""Builders of canonical events and reference data with sensible defaults.

Every builder takes keyword overrides; ids default from the business object's id so a
test reads like its scenario (``invoice("INV-1", lines=[("SUB", 100_00)])``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from ledger.book import Outcome, apply
from ledger.entries import JournalEntry
from ledger.events import (
    ClockAdvanced,
    CreditNoteIssued,
    CreditNoteLine,
    CreditNoteVoided,
    CustomerUpserted,
    DisputeClosed,
    EntityConfigured,
    FxRate,
    GlMapping,
    InvoiceIssued,
    InvoiceLine,
    InvoiceVoided,
    InvoiceWrittenOff,
    PaymentApplication,
    PaymentFailed,
    PaymentSettled,
    PayoutPaid,
    PeriodClosed,
    ProductMapping,
    ReferenceRecord,
    RefundIssued,
    TaxLine,
    UsageRecorded,
)
from ledger.reference import ReferenceData
from ledger.state import CustomerLedger
from revenue.events import (
    ContractAmended,
    ContractBooked,
    ContractCancelled,
    PerformanceObligationSpec,
)

OCCURRED = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
DAY = dt.date(2024, 1, 15)
CUSTOMER = "C1"
US = "US1"
EU = "EU1"

# (product_id, family) of the default catalogue.
PRODUCTS = (("SUB", "subscription"), ("USG", "usage"), ("SVC", "services"))


def _ref(kind: str, key: str) -> dict:
    return {
        "event_id": f"ref-{kind}-{key}",
        "occurred_at": OCCURRED,
        "source_system": "test",
        "source_id": key,
    }


def _env(kind: str, key: str, customer: str, entity: str, event_id: str | None) -> dict:
    return {
        "event_id": event_id or f"evt-{kind}-{key}",
        "occurred_at": OCCURRED,
        "source_system": "test",
        "source_id": key,
        "entity": entity,
        "customer_id": customer,
    }


def entity(
    name: str = US,
    currency: str = "USD",
    first_open: str = "2024-01",
    *,
    amortization_method: str | None = None,
    catch_up_policy: str = "in_service_months",
    uncollectible_policy: str = "stop_recognition",
) -> EntityConfigured:
    """An entity with its functional currency and revenue policy."""
    return EntityConfigured(
        **_ref("entity", f"{name}{amortization_method}{catch_up_policy}{uncollectible_policy}"),
        entity=name,
        name=name,
        functional_currency=currency,
        first_open_period=first_open,
        amortization_method=amortization_method,
        catch_up_policy=catch_up_policy,
        uncollectible_policy=uncollectible_policy,
    )


def fx(base: str, quote: str, rate: str, on: dt.date = dt.date(2024, 1, 1)) -> FxRate:
    """Rate of record: 1 ``base`` = ``rate`` ``quote`` from ``on``."""
    return FxRate(
        **_ref("fx", f"{base}{quote}{on}"),
        rate_date=on,
        base_currency=base,
        quote_currency=quote,
        rate=rate,
    )


def product(
    product_id: str,
    family: str = "subscription",
    effective_from: dt.date = dt.date(2020, 1, 1),
    *,
    pattern: str = "ratable_daily",
    amortization_method: str | None = None,
    ssp_minor: int = 0,
    currency: str = "USD",
    name: str | None = None,
) -> ProductMapping:
    """A product mapping of ``family`` (its pattern, SSP and optional amortization override)."""
    return ProductMapping(
        **_ref("product", f"{product_id}{effective_from}"),
        product_id=product_id,
        name=name or product_id,
        family=family,
        pattern=pattern,
        currency=currency,
        ssp_minor=ssp_minor,
        effective_from=effective_from,
        amortization_method=amortization_method,
    )


def gl(
    entity_name: str,
    account: str,
    code: str,
    family: str | None = None,
    effective_from: dt.date = dt.date(2020, 1, 1),
    effective_to: dt.date | None = None,
) -> GlMapping:
    """A GL mapping."""
    return GlMapping(
        **_ref("gl", f"{entity_name}{account}{family}{code}"),
        entity=entity_name,
        account=account,
        family=family,
        gl_code=code,
        effective_from=effective_from,
        effective_to=effective_to,
    )


# ERP natural accounts of the simulated company's chart (one per logical account).
CHART: dict[str, str] = {
    "bank": "1000",
    "cash_clearing": "1150",
    "accounts_receivable": "1200",
    "unbilled_receivable": "1250",
    "tax_payable": "2200",
    "customer_credit": "2300",
    "deferred_revenue": "2400",
    "revenue": "4000",
    "contra_revenue": "4900",
    "processor_fees": "6100",
    "bad_debt": "6200",
    "chargeback_loss": "6300",
    "realized_fx": "7100",
}


def chart(entity_name: str, skip: tuple[str, ...] = ()) -> list[GlMapping]:
    """GL mappings of every logical account to ``<entity>-<natural account>`` (but ``skip``)."""
    return [
        gl(entity_name, account, f"{entity_name}-{code}")
        for account, code in CHART.items()
        if account not in skip
    ]


def period_closed(period: str, entity_name: str = US) -> PeriodClosed:
    """Close ``period`` of an entity."""
    return PeriodClosed(
        **_ref("close", f"{entity_name}{period}"),
        entity=entity_name,
        period=period,
        closed_on=dt.date(2024, 12, 31),
    )


def clock(on: dt.date) -> ClockAdvanced:
    """Business clock tick."""
    return ClockAdvanced(**_ref("clock", on.isoformat()), business_date=on)


def base_records() -> list[ReferenceRecord]:
    """US1 (USD) and EU1 (EUR) entities, an EUR/USD rate of 1.10, the default catalogue."""
    return [
        entity(US, "USD"),
        entity(EU, "EUR"),
        fx("EUR", "USD", "1.10"),
        *(product(pid, family) for pid, family in PRODUCTS),
    ]


def reference_data(*extra: ReferenceRecord, base: bool = True) -> ReferenceData:
    """ReferenceData of :func:`base_records` (unless ``base=False``) plus ``extra``."""
    return ReferenceData.from_records([*(base_records() if base else []), *extra])


def invoice(
    invoice_id: str = "INV-1",
    *,
    lines: Sequence[tuple[str, int]] = (("SUB", 100_00),),
    tax: int = 0,
    currency: str = "USD",
    entity_name: str = US,
    on: dt.date = DAY,
    customer: str = CUSTOMER,
    event_id: str | None = None,
    obligations: Sequence[str | None] | None = None,
    contract: str = "K1",
    service: tuple[dt.date, dt.date] | None = None,
) -> InvoiceIssued:
    """An invoice with ``lines`` of (product_id, net amount) and one tax line of ``tax``.

    ``obligations`` ties each line to an obligation of ``contract`` (None: no contract);
    ``service`` is every line's service period (start, end inclusive).
    """
    obligations = obligations or [None] * len(lines)
    invoice_lines = tuple(
        InvoiceLine(
            line_id=f"{invoice_id}-L{n}",
            description=pid,
            product_id=pid,
            quantity=1,
            amount_minor=amount,
            obligation_id=obligation,
            contract_id=None if obligation is None else contract,
            service_start=None if service is None else service[0],
            service_end=None if service is None else service[1],
        )
        for n, ((pid, amount), obligation) in enumerate(
            zip(lines, obligations, strict=True), start=1
        )
    )
    taxes = (TaxLine(tax_code="VAT", jurisdiction="X", amount_minor=tax),) if tax else ()
    total = sum(amount for _, amount in lines) + tax
    return InvoiceIssued(
        **_env("inv", invoice_id, customer, entity_name, event_id),
        invoice_id=invoice_id,
        issue_date=on,
        due_date=on + dt.timedelta(30),
        currency=currency,
        lines=invoice_lines,
        tax_lines=taxes,
        total_minor=total,
    )


def void(
    invoice_id: str = "INV-1",
    *,
    entity_name: str = US,
    on: dt.date = DAY,
    customer: str = CUSTOMER,
    event_id: str | None = None,
) -> InvoiceVoided:
    """Void an invoice."""
    return InvoiceVoided(
        **_env("void", invoice_id, customer, entity_name, event_id),
        invoice_id=invoice_id,
        void_date=on,
        reason="test",
    )


def credit_note(
    credit_note_id: str = "CN-1",
    invoice_id: str = "INV-1",
    *,
    lines: Sequence[tuple[str, int]] = (),
    tax: int = 0,
    currency: str = "USD",
    entity_name: str = US,
    on: dt.date = DAY,
    customer: str = CUSTOMER,
    event_id: str | None = None,
    applies_to: str = "remaining_service",
) -> CreditNoteIssued:
    """A credit note with ``lines`` of (invoice_line_id, amount) and ``tax``."""
    cn_lines = tuple(CreditNoteLine(invoice_line_id=lid, amount_minor=a) for lid, a in lines)
    taxes = (TaxLine(tax_code="VAT", jurisdiction="X", amount_minor=tax),) if tax else ()
    total = sum(a for _, a in lines) + tax
    return CreditNoteIssued(
        **_env("cn", credit_note_id, customer, entity_name, event_id),
        credit_note_id=credit_note_id,
        invoice_id=invoice_id,
        issue_date=on,
        currency=currency,
        lines=cn_lines,
        tax_lines=taxes,
        total_minor=total,
        reason="test",
        applies_to=applies_to,
    )


def credit_note_void(
    credit_note_id: str = "CN-1",
    invoice_id: str = "INV-1",
    *,
    entity_name: str = US,
    on: dt.date = DAY,
    customer: str = CUSTOMER,
    event_id: str | None = None,
) -> CreditNoteVoided:
    """Void a credit note."""
    return CreditNoteVoided(
        **_env("cnvoid", credit_note_id, customer, entity_name, event_id),
        credit_note_id=credit_note_id,
        invoice_id=invoice_id,
        void_date=on,
        reason="test",
    )


def write_off(
    invoice_id: str = "INV-1",
    amount: int = 100_00,
    *,
    currency: str = "USD",
    entity_name: str = US,
    on: dt.date = DAY,
    customer: str = CUSTOMER,
    event_id: str | None = None,
) -> InvoiceWrittenOff:
    """Write off part of an invoice."""
    return InvoiceWrittenOff(
        **_env("wo", invoice_id, customer, entity_name, event_id),
        invoice_id=invoice_id,
        write_off_date=on,
        currency=currency,
        amount_minor=amount,
        reason="test",
    )


def payment(
    payment_id: str = "PAY-1",
    applications: Iterable[tuple[str, int]] = (),
    *,
    amount: int | None = None,
    fee: int = 0,
    currency: str = "USD",
    entity_name: str = US,
    on: dt.date = DAY,
    customer: str = CUSTOMER,
    event_id: str | None = None,
) -> PaymentSettled:
    """A settled payment applied to (invoice_id, amount) pairs; amount defaults to their sum."""
    apps = tuple(PaymentApplication(invoice_id=i, amount_minor=a) for i, a in applications)
    total = amount if amount is not None else sum(a.amount_minor for a in apps)
    return PaymentSettled(
        **_env("pay", payment_id, customer, entity_name, event_id),
        payment_id=payment_id,
        settled_date=on,
        currency=currency,
        amount_minor=total,
        fee_minor=fee,
        applications=apps,
        processor="stripe",
    )


def payment_failed(
    payment_id: str = "PAY-F",
    *,
    amount: int = 100_00,
    currency: str = "USD",
    entity_name: str = US,
    on: dt.date = DAY,
    customer: str = CUSTOMER,
    event_id: str | None = None,
) -> PaymentFailed:
    """A failed payment attempt."""
    return PaymentFailed(
        **_env("fail", payment_id, customer, entity_name, event_id),
        payment_id=payment_id,
        failed_date=on,
        currency=currency,
        amount_minor=amount,
        failure_code="card_declined",
    )


def refund(
    refund_id: str = "RF-1",
    payment_id: str = "PAY-1",
    amount: int = 100_00,
    *,
    currency: str = "USD",
    entity_name: str = US,
    on: dt.date = DAY,
    customer: str = CUSTOMER,
    event_id: str | None = None,
) -> RefundIssued:
    """A refund of part of a payment."""
    return RefundIssued(
        **_env("rf", refund_id, customer, entity_name, event_id),
        refund_id=refund_id,
        payment_id=payment_id,
        refund_date=on,
        currency=currency,
        amount_minor=amount,
        reason="test",
    )


def dispute(
    dispute_id: str = "DP-1",
    payment_id: str = "PAY-1",
    amount: int = 100_00,
    *,
    outcome: str = "lost",
    fee: int = 0,
    currency: str = "USD",
    entity_name: str = US,
    on: dt.date = DAY,
    customer: str = CUSTOMER,
    event_id: str | None = None,
) -> DisputeClosed:
    """A closed dispute."""
    return DisputeClosed(
        **_env("dp", dispute_id, customer, entity_name, event_id),
        dispute_id=dispute_id,
        payment_id=payment_id,
        closed_date=on,
        outcome=outcome,
        currency=currency,
        amount_minor=amount,
        fee_minor=fee,
    )


def payout(
    payout_id: str = "PO-1",
    amount: int = 100_00,
    *,
    currency: str = "USD",
    entity_name: str = US,
    on: dt.date = DAY,
    customer: str = "processor:stripe:acct1",
    event_id: str | None = None,
) -> PayoutPaid:
    """A processor payout to the bank."""
    return PayoutPaid(
        **_env("po", payout_id, customer, entity_name, event_id),
        payout_id=payout_id,
        payout_date=on,
        currency=currency,
        amount_minor=amount,
        bank_account="bank-1",
    )


def usage(
    usage_id: str = "U-1",
    amount: int = 5_00,
    *,
    currency: str = "USD",
    entity_name: str = US,
    on: dt.date = DAY,
    customer: str = CUSTOMER,
    event_id: str | None = None,
    contract: str = "K1",
    obligation: str = "OB-U",
) -> UsageRecorded:
    """Priced usage on ``contract``, ``obligation``."""
    return UsageRecorded(
        **_env("use", usage_id, customer, entity_name, event_id),
        usage_id=usage_id,
        contract_id=contract,
        obligation_id=obligation,
        usage_date=on,
        quantity=1,
        currency=currency,
        amount_minor=amount,
    )


def obligation(
    obligation_id: str,
    ssp: int,
    start: dt.date,
    end: dt.date | None = None,
    *,
    pattern: str = "ratable_daily",
    product_id: str = "SUB",
    family: str = "subscription",
    price: int | None = None,
    quantity: int = 1,
) -> PerformanceObligationSpec:
    """A performance obligation spec (``end`` inclusive; None for point in time / usage)."""
    return PerformanceObligationSpec(
        obligation_id=obligation_id,
        product_id=product_id,
        family=family,
        quantity=quantity,
        price_minor=ssp if price is None else price,
        ssp_minor=ssp,
        pattern=pattern,
        service_start=start,
        service_end=end,
    )


def contract(
    contract_id: str = "K1",
    total: int = 1200_00,
    obligations: Sequence[PerformanceObligationSpec] = (),
    *,
    on: dt.date = DAY,
    currency: str = "USD",
    entity_name: str = US,
    customer: str = CUSTOMER,
    event_id: str | None = None,
    discounted: Sequence[str] = (),
) -> ContractBooked:
    """A booked contract of ``obligations`` for ``total``."""
    return ContractBooked(
        **_env("ctr", contract_id, customer, entity_name, event_id),
        contract_id=contract_id,
        booking_date=on,
        currency=currency,
        total_price_minor=total,
        obligations=tuple(obligations),
        discount_obligation_ids=tuple(discounted),
    )


def amendment(
    amendment_id: str,
    treatment: str,
    total: int,
    obligations: Sequence[PerformanceObligationSpec],
    *,
    contract_id: str = "K1",
    effective: dt.date = DAY,
    currency: str = "USD",
    entity_name: str = US,
    customer: str = CUSTOMER,
    event_id: str | None = None,
) -> ContractAmended:
    """A contract modification under ``treatment``."""
    return ContractAmended(
        **_env("amd", amendment_id, customer, entity_name, event_id),
        contract_id=contract_id,
        amendment_id=amendment_id,
        effective_date=effective,
        treatment=treatment,
        currency=currency,
        total_price_minor=total,
        obligations=tuple(obligations),
    )


def cancellation(
    contract_id: str = "K1",
    effective: dt.date = DAY,
    *,
    entity_name: str = US,
    customer: str = CUSTOMER,
    event_id: str | None = None,
) -> ContractCancelled:
    """A contract cancelled from ``effective`` (its last service day is the day before)."""
    return ContractCancelled(
        **_env("cxl", contract_id, customer, entity_name, event_id),
        contract_id=contract_id,
        effective_date=effective,
        reason="test",
    )


def customer_upserted(
    customer: str = CUSTOMER,
    *,
    entity_name: str = US,
    currency: str = "USD",
    event_id: str | None = None,
) -> CustomerUpserted:
    """Customer master data."""
    return CustomerUpserted(
        **_env("cust", customer, customer, entity_name, event_id),
        name="Acme",
        billing_currency=currency,
    )


def apply_all(
    events: Iterable, reference: ReferenceData | None = None, state: CustomerLedger | None = None
) -> tuple[CustomerLedger, list[Outcome]]:
    """Apply ``events`` (one customer) in order; return the final state and every outcome."""
    reference = reference or reference_data()
    outcomes: list[Outcome] = []
    for event in events:
        state = state or CustomerLedger(event.customer_id)
        outcome = apply(state, event, reference)
        outcomes.append(outcome)
        state = outcome.state
    return state, outcomes


def rows(entry: JournalEntry) -> list[tuple[str, str, int, int]]:
    """Compact lines: (account, side, amount, functional amount)."""
    return [
        (str(line.account), str(line.side), line.amount_minor, line.functional_amount_minor)
        for line in entry.lines
    ]
