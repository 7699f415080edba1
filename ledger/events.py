"""Canonical events: the language billing, payment and reference systems speak to the ledger.

Each class mirrors one Avro schema in ``avro/`` field for field (a contract test proves it).
Models are strict, frozen and refuse unknown fields: pydantic validates once, at the wire,
and the posting rules receive values they can trust.

Money on the wire is always ``*_minor: int`` (integer minor units) beside a ``currency``
ISO 4217 code; floats are refused by strict mode. Rates are decimal strings.

Business dates (``issue_date``, ``settled_date`` ...) live in the payload; ``occurred_at``
is when the source system recorded the event. Neither is the Kafka record timestamp.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

# Avro `long` and PostgreSQL BIGINT are signed 64-bit: anything larger overflows downstream.
MAX_MINOR = 2**63 - 1

_CURRENCY = re.compile(r"^[A-Z]{3}$")
_PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def _currency_code(value: str) -> str:
    if not _CURRENCY.match(value):
        raise ValueError(f"currency must be an ISO 4217 code of three capitals, got {value!r}")
    return value


def _decimal_string(value: str) -> str:
    try:
        number = Decimal(value)
    except InvalidOperation as exc:
        raise ValueError(f"rate must be a decimal string, got {value!r}") from exc
    if not number.is_finite() or number <= 0:
        raise ValueError(f"rate must be a positive finite decimal, got {value!r}")
    return value


def _period_string(value: str) -> str:
    if not _PERIOD.match(value):
        raise ValueError(f"period must be YYYY-MM, got {value!r}")
    return value


def _aware(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("datetime must carry a time zone (Avro timestamps are UTC instants)")
    return value


AwareDatetime = Annotated[dt.datetime, AfterValidator(_aware)]
CurrencyCode = Annotated[str, AfterValidator(_currency_code)]
# Amounts are positive with an explicit meaning; signs come from the posting side.
AmountMinor = Annotated[int, Field(gt=0, le=MAX_MINOR)]
NonNegativeMinor = Annotated[int, Field(ge=0, le=MAX_MINOR)]
DecimalString = Annotated[str, AfterValidator(_decimal_string)]
PeriodString = Annotated[str, AfterValidator(_period_string)]
Identifier = Annotated[str, Field(min_length=1, max_length=200)]
# Avro arrays decode as lists: the container accepts a list, every item stays strict.
Items = Field(strict=False)


class Record(BaseModel):
    """Base of every wire record: strict, frozen, unknown fields refused."""

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")

    # Name of the Avro schema this model mirrors (``<Name>.v<N>.avsc``).
    schema_name: ClassVar[str]


class Event(Record):
    """Envelope shared by every customer event (billing, payments, contracts, usage)."""

    event_id: Identifier
    event_type: str
    occurred_at: AwareDatetime
    source_system: Identifier
    source_id: Identifier
    entity: Identifier
    customer_id: Identifier
    schema_version: int = 1
    correlation_id: str | None = None


class ReferenceRecord(Record):
    """Envelope of reference and control records: not tied to one customer."""

    event_id: Identifier
    event_type: str
    occurred_at: AwareDatetime
    source_system: Identifier
    source_id: Identifier
    schema_version: int = 1
    correlation_id: str | None = None


# --- customers -------------------------------------------------------------------------


class CustomerUpserted(Event):
    """A customer was created or changed in the billing system or CRM."""

    schema_name: ClassVar[str] = "CustomerUpserted"
    event_type: Literal["customer.upserted"] = "customer.upserted"
    name: str
    billing_currency: CurrencyCode
    country: str | None = None
    tax_id: str | None = None


# --- billing -----------------------------------------------------------------------------


class InvoiceLine(Record):
    """One priced line of an invoice, net of tax."""

    schema_name: ClassVar[str] = "InvoiceLine"
    line_id: Identifier
    description: str
    product_id: Identifier
    quantity: int = Field(ge=0)
    amount_minor: AmountMinor
    contract_id: str | None = None
    obligation_id: str | None = None
    service_start: dt.date | None = None
    service_end: dt.date | None = None


class TaxLine(Record):
    """Tax charged on an invoice (or reversed on a credit note)."""

    schema_name: ClassVar[str] = "TaxLine"
    tax_code: Identifier
    jurisdiction: str
    amount_minor: AmountMinor


def _check_total(lines: tuple, tax_lines: tuple, total_minor: int, what: str) -> None:
    computed = sum(line.amount_minor for line in lines) + sum(t.amount_minor for t in tax_lines)
    if computed != total_minor:
        raise ValueError(f"{what} total_minor {total_minor} differs from lines plus tax {computed}")


class InvoiceIssued(Event):
    """An invoice was finalised and sent: the customer owes its total."""

    schema_name: ClassVar[str] = "InvoiceIssued"
    event_type: Literal["invoice.issued"] = "invoice.issued"
    invoice_id: Identifier
    issue_date: dt.date
    due_date: dt.date
    currency: CurrencyCode
    lines: Annotated[tuple[InvoiceLine, ...], Items] = Field(min_length=1)
    tax_lines: Annotated[tuple[TaxLine, ...], Items] = ()
    total_minor: AmountMinor

    @model_validator(mode="after")
    def _totals_agree(self) -> InvoiceIssued:
        _check_total(self.lines, self.tax_lines, self.total_minor, "invoice")
        if self.due_date < self.issue_date:
            raise ValueError("due_date is before issue_date")
        return self


class InvoiceVoided(Event):
    """An issued invoice was voided before payment: as if it had never been issued."""

    schema_name: ClassVar[str] = "InvoiceVoided"
    event_type: Literal["invoice.voided"] = "invoice.voided"
    invoice_id: Identifier
    void_date: dt.date
    reason: str


class CreditNoteLine(Record):
    """The part of one invoice line that a credit note gives back, net of tax."""

    schema_name: ClassVar[str] = "CreditNoteLine"
    invoice_line_id: Identifier
    amount_minor: AmountMinor


# A credit for service still to come is spread over the rest of the service period; one for
# service already delivered (an outage credit) reverses recognised revenue at once.
CreditScope = Literal["remaining_service", "past_service"]


class CreditNoteIssued(Event):
    """A credit note against an invoice: reduces what the customer owes or becomes credit."""

    schema_name: ClassVar[str] = "CreditNoteIssued"
    event_type: Literal["credit_note.issued"] = "credit_note.issued"
    credit_note_id: Identifier
    invoice_id: Identifier
    issue_date: dt.date
    currency: CurrencyCode
    lines: Annotated[tuple[CreditNoteLine, ...], Items] = ()
    tax_lines: Annotated[tuple[TaxLine, ...], Items] = ()
    total_minor: AmountMinor
    reason: str
    applies_to: CreditScope = "remaining_service"

    @model_validator(mode="after")
    def _totals_agree(self) -> CreditNoteIssued:
        _check_total(self.lines, self.tax_lines, self.total_minor, "credit note")
        return self


class CreditNoteVoided(Event):
    """An issued credit note was voided: as if it had never been issued.

    Its entry is reversed in the void's period and what it did to the revenue side is
    restored (see ``ledger/rules_billing.py`` and ``revenue/engine.py``).
    """

    schema_name: ClassVar[str] = "CreditNoteVoided"
    event_type: Literal["credit_note.voided"] = "credit_note.voided"
    credit_note_id: Identifier
    invoice_id: Identifier
    void_date: dt.date
    reason: str


class InvoiceWrittenOff(Event):
    """An invoice's remaining balance (or part of it) was written off as bad debt."""

    schema_name: ClassVar[str] = "InvoiceWrittenOff"
    event_type: Literal["invoice.written_off"] = "invoice.written_off"
    invoice_id: Identifier
    write_off_date: dt.date
    currency: CurrencyCode
    amount_minor: AmountMinor
    reason: str


# --- payments ----------------------------------------------------------------------------


class PaymentApplication(Record):
    """How much of a payment settles one invoice, in the invoice's (= payment's) currency."""

    schema_name: ClassVar[str] = "PaymentApplication"
    invoice_id: Identifier
    amount_minor: AmountMinor


class PaymentSettled(Event):
    """Money from the customer reached the processor balance (cash clearing).

    ``amount_minor`` beyond the sum of ``applications`` is unapplied cash and goes to
    the customer credit balance. ``fee_minor`` is the processor fee, in ``currency``.
    """

    schema_name: ClassVar[str] = "PaymentSettled"
    event_type: Literal["payment.settled"] = "payment.settled"
    payment_id: Identifier
    settled_date: dt.date
    currency: CurrencyCode
    amount_minor: AmountMinor
    fee_minor: NonNegativeMinor = 0
    applications: Annotated[tuple[PaymentApplication, ...], Items] = ()
    processor: str
    method: str | None = None
    settlement_currency: CurrencyCode | None = None
    settlement_amount_minor: NonNegativeMinor | None = None

    @model_validator(mode="after")
    def _amounts_agree(self) -> PaymentSettled:
        applied = sum(a.amount_minor for a in self.applications)
        if applied > self.amount_minor:
            raise ValueError(f"applications {applied} exceed payment amount {self.amount_minor}")
        if self.fee_minor > self.amount_minor:
            raise ValueError("fee_minor exceeds amount_minor")
        ids = [a.invoice_id for a in self.applications]
        if len(ids) != len(set(ids)):
            raise ValueError("an invoice appears twice in applications")
        return self


class PaymentFailed(Event):
    """A payment attempt failed. No posting; kept for visibility and reconciliation."""

    schema_name: ClassVar[str] = "PaymentFailed"
    event_type: Literal["payment.failed"] = "payment.failed"
    payment_id: Identifier
    failed_date: dt.date
    currency: CurrencyCode
    amount_minor: AmountMinor
    failure_code: str
    invoice_ids: Annotated[tuple[str, ...], Items] = ()


class RefundIssued(Event):
    """Money returned to the customer from the processor balance."""

    schema_name: ClassVar[str] = "RefundIssued"
    event_type: Literal["refund.issued"] = "refund.issued"
    refund_id: Identifier
    payment_id: Identifier
    refund_date: dt.date
    currency: CurrencyCode
    amount_minor: AmountMinor
    reason: str


# Avro enums arrive as plain strings; Literal keeps strict validation without Enum coercion.
DisputeOutcome = Literal["won", "lost"]


class DisputeClosed(Event):
    """A chargeback dispute ended. Lost: the processor keeps the money (chargeback loss)."""

    schema_name: ClassVar[str] = "DisputeClosed"
    event_type: Literal["dispute.closed"] = "dispute.closed"
    dispute_id: Identifier
    payment_id: Identifier
    closed_date: dt.date
    outcome: DisputeOutcome
    currency: CurrencyCode
    amount_minor: AmountMinor
    fee_minor: NonNegativeMinor = 0


class PayoutPaid(Event):
    """The processor paid its balance out to the bank.

    Payouts belong to a processor account, not a customer: ``customer_id`` carries the
    processor account id (``processor:<name>:<account>``) so the key still routes it.
    """

    schema_name: ClassVar[str] = "PayoutPaid"
    event_type: Literal["payout.paid"] = "payout.paid"
    payout_id: Identifier
    payout_date: dt.date
    currency: CurrencyCode
    amount_minor: AmountMinor
    bank_account: str


# --- usage ---------------------------------------------------------------------------------


class UsageRecorded(Event):
    """Metered usage against a usage-pattern performance obligation, priced."""

    schema_name: ClassVar[str] = "UsageRecorded"
    event_type: Literal["usage.recorded"] = "usage.recorded"
    usage_id: Identifier
    contract_id: Identifier
    obligation_id: Identifier
    usage_date: dt.date
    quantity: int = Field(ge=0)
    currency: CurrencyCode
    amount_minor: NonNegativeMinor


# --- reference data and control -----------------------------------------------------------


# How a ratable obligation spreads over its service period (revenue.schedule documents each).
AmortizationMethod = Literal["daily", "monthly_even", "monthly_prorated"]
# A service period that starts before its first invoice: recognise the elapsed part when the
# invoice is booked, or in the service months themselves (through unbilled AR).
CatchUpPolicy = Literal["at_invoice", "in_service_months"]
# An invoice written off in full: its contracts stop recognising revenue; what it billed
# ahead of revenue leaves deferred revenue; what was earned is bad debt
# (stop_recognition) or reverses revenue as an implied price concession (reverse_revenue).
UncollectiblePolicy = Literal["stop_recognition", "reverse_revenue"]


class EntityConfigured(ReferenceRecord):
    """A legal entity, its functional currency and its revenue recognition policy.

    ``amortization_method`` None means each obligation's pattern decides (``ratable_daily``
    by day, ``ratable_monthly`` monthly even); a product mapping may override it.
    """

    schema_name: ClassVar[str] = "EntityConfigured"
    event_type: Literal["entity.configured"] = "entity.configured"
    entity: Identifier
    name: str
    functional_currency: CurrencyCode
    first_open_period: PeriodString
    amortization_method: AmortizationMethod | None = None
    catch_up_policy: CatchUpPolicy = "in_service_months"
    uncollectible_policy: UncollectiblePolicy = "stop_recognition"


class FxRate(ReferenceRecord):
    """Rate of record: one unit of ``base_currency`` is ``rate`` units of ``quote_currency``."""

    schema_name: ClassVar[str] = "FxRate"
    event_type: Literal["fx.rate"] = "fx.rate"
    rate_date: dt.date
    base_currency: CurrencyCode
    quote_currency: CurrencyCode
    rate: DecimalString


ProductFamily = Literal["subscription", "usage", "services"]
RecognitionPattern = Literal["ratable_daily", "ratable_monthly", "point_in_time", "usage"]


class ProductMapping(ReferenceRecord):
    """A product's family, default recognition pattern and standalone selling price."""

    schema_name: ClassVar[str] = "ProductMapping"
    event_type: Literal["product.mapping"] = "product.mapping"
    product_id: Identifier
    name: str
    family: ProductFamily
    pattern: RecognitionPattern
    currency: CurrencyCode
    ssp_minor: NonNegativeMinor
    effective_from: dt.date
    # Overrides the entity's amortization method for this product (None: the entity's).
    amortization_method: AmortizationMethod | None = None


class GlMapping(ReferenceRecord):
    """Maps a logical account (and product family) of one entity to an ERP account code."""

    schema_name: ClassVar[str] = "GlMapping"
    event_type: Literal["gl.mapping"] = "gl.mapping"
    entity: Identifier
    account: Identifier
    family: ProductFamily | None = None
    gl_code: Identifier
    effective_from: dt.date
    effective_to: dt.date | None = None


class ClockAdvanced(ReferenceRecord):
    """The business clock moved to ``business_date``; sent once to every partition."""

    schema_name: ClassVar[str] = "ClockAdvanced"
    event_type: Literal["clock.advanced"] = "clock.advanced"
    business_date: dt.date


class PeriodClosed(ReferenceRecord):
    """An entity's accounting period was closed: later postings go to the next open period."""

    schema_name: ClassVar[str] = "PeriodClosed"
    event_type: Literal["period.closed"] = "period.closed"
    entity: Identifier
    period: PeriodString
    closed_on: dt.date


BILLING_EVENTS: tuple[type[Event], ...] = (
    CustomerUpserted,
    InvoiceIssued,
    InvoiceVoided,
    CreditNoteIssued,
    CreditNoteVoided,
    InvoiceWrittenOff,
)
PAYMENT_EVENTS: tuple[type[Event], ...] = (
    PaymentSettled,
    PaymentFailed,
    RefundIssued,
    DisputeClosed,
    PayoutPaid,
)
USAGE_EVENTS: tuple[type[Event], ...] = (UsageRecorded,)
REFERENCE_RECORDS: tuple[type[ReferenceRecord], ...] = (
    EntityConfigured,
    FxRate,
    ProductMapping,
    GlMapping,
)
CONTROL_RECORDS: tuple[type[ReferenceRecord], ...] = (ClockAdvanced, PeriodClosed)
