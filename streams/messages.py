"""Output wire records of the engine, and the registry of every record on the wire.

Owns the pydantic models of what the workers emit (journal entries, ERP batches and
acknowledgements, DLQ records, reconciliation breaks) and ``MODELS``, the map from
Avro schema name to model that the codec and the contract tests use. Conventions are
those of :mod:`ledger.events`: strict, frozen, unknown fields refused, integer minor
units beside a currency code, one model per ``avro/<Name>.v1.avsc``.

Must not import: faust, aiokafka, confluent_kafka, psycopg, fastavro, other ``streams``
modules (this module is data; the codec imports it, not the reverse).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable
from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from ledger import events as ledger_events
from ledger.events import (
    MAX_MINOR,
    AwareDatetime,
    CurrencyCode,
    Identifier,
    Items,
    NonNegativeMinor,
    PeriodString,
    Record,
)
from revenue import events as revenue_events

# Differences (expected vs actual) may be negative; they still fit an Avro long.
SignedMinor = Annotated[int, Field(ge=-MAX_MINOR - 1, le=MAX_MINOR)]
Count = Annotated[int, Field(ge=0, le=MAX_MINOR)]
Partition = Annotated[int, Field(ge=0, le=2**31 - 1)]
# Free text that crosses to operators and ERPs: bounded like DLQ error messages (STYLE 2.5).
MessageText = Annotated[str, Field(max_length=1024)]
Sha256Hex = Annotated[str, Field(pattern=re.compile(r"^[0-9a-f]{64}$"))]


Side = Literal["debit", "credit"]
ErpAckStatus = Literal["imported", "rejected"]


def digest_entry_ids(entry_ids: Iterable[str]) -> str:
    """Return the control digest of a batch's entry ids.

    Args:
        entry_ids: the entry ids in batch order.

    Returns:
        SHA-256 hex of the ids joined by ``\\n`` (UTF-8), the value an importer recomputes.
    """
    return hashlib.sha256("\n".join(entry_ids).encode()).hexdigest()


# --- journal entries ------------------------------------------------------------------------


class JournalLine(Record):
    """One leg of a journal entry: a non-negative amount on a side of a logical account."""

    schema_name: ClassVar[str] = "JournalLine"
    line_no: int = Field(ge=1, le=2**31 - 1)
    account: Identifier
    side: Side
    amount_minor: NonNegativeMinor
    currency: CurrencyCode
    functional_amount_minor: NonNegativeMinor
    dimensions: dict[str, str] = Field(default_factory=dict)


def _check_balanced(lines: tuple[JournalLine, ...]) -> None:
    """Raise ValueError unless debits equal credits per currency and in functional amounts."""
    net: dict[str, int] = defaultdict(int)
    functional_net = 0
    for line in lines:
        sign = 1 if line.side == "debit" else -1
        net[line.currency] += sign * line.amount_minor
        functional_net += sign * line.functional_amount_minor
    unbalanced = {currency: amount for currency, amount in net.items() if amount}
    if unbalanced:
        raise ValueError(f"debits differ from credits by currency: {unbalanced}")
    if functional_net:
        raise ValueError(f"functional debits differ from credits by {functional_net}")


class JournalEntryPosted(Record):
    """A balanced journal entry posted to the subledger by one rule for one source event."""

    schema_name: ClassVar[str] = "JournalEntryPosted"
    entry_id: Identifier
    entity: Identifier
    customer_id: Identifier
    source_event_id: Identifier
    source_event_type: Identifier
    rule: Identifier
    sequence: int = Field(ge=0, le=2**31 - 1)
    posting_date: dt.date
    original_date: dt.date
    period: PeriodString
    functional_currency: CurrencyCode
    description: str
    lines: Annotated[tuple[JournalLine, ...], Items] = Field(min_length=2)
    schema_version: int = 1

    @model_validator(mode="after")
    def _lines_balance(self) -> JournalEntryPosted:
        numbers = [line.line_no for line in self.lines]
        if len(numbers) != len(set(numbers)):
            raise ValueError("a line_no appears twice")
        _check_balanced(self.lines)
        return self


# --- ERP batches -------------------------------------------------------------------------


class BatchLine(Record):
    """A summarised batch line: one GL code, currency and dimension set, debits and credits."""

    schema_name: ClassVar[str] = "BatchLine"
    line_no: int = Field(ge=1, le=2**31 - 1)
    gl_code: Identifier
    account: Identifier
    currency: CurrencyCode
    debit_minor: NonNegativeMinor
    credit_minor: NonNegativeMinor
    functional_debit_minor: NonNegativeMinor
    functional_credit_minor: NonNegativeMinor
    dimensions: dict[str, str] = Field(default_factory=dict)


class BatchTotal(Record):
    """Control total of one currency in a batch: debits must equal credits."""

    schema_name: ClassVar[str] = "BatchTotal"
    currency: CurrencyCode
    debit_minor: NonNegativeMinor
    credit_minor: NonNegativeMinor


def _check_batch_totals(lines: tuple[BatchLine, ...], totals: tuple[BatchTotal, ...]) -> None:
    """Raise ValueError unless ``totals`` are the balanced per-currency sums of ``lines``."""
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for line in lines:
        sums[line.currency][0] += line.debit_minor
        sums[line.currency][1] += line.credit_minor
    stated = {t.currency: [t.debit_minor, t.credit_minor] for t in totals}
    if len(stated) != len(totals):
        raise ValueError("a currency appears twice in totals")
    if stated != dict(sums):
        raise ValueError(f"totals {stated} differ from the lines' sums {dict(sums)}")
    unbalanced = [currency for currency, (debit, credit) in stated.items() if debit != credit]
    if unbalanced:
        raise ValueError(f"debits differ from credits in {unbalanced}")
    functional = sum(line.functional_debit_minor - line.functional_credit_minor for line in lines)
    if functional:
        raise ValueError(f"functional debits differ from credits by {functional}")


class JournalBatch(Record):
    """Entries of one entity, source partition, period and window, summarised for the ERP.

    ``sequence`` is gap-free per (entity, source_partition) so an importer sees a missing
    batch; ``entry_ids_digest`` is :func:`digest_entry_ids` of ``entry_ids``.
    """

    schema_name: ClassVar[str] = "JournalBatch"
    batch_id: Identifier
    entity: Identifier
    source_partition: Partition
    sequence: int = Field(ge=0, le=MAX_MINOR)
    period: PeriodString
    window_start: AwareDatetime
    window_end: AwareDatetime
    functional_currency: CurrencyCode
    lines: Annotated[tuple[BatchLine, ...], Items] = Field(min_length=1)
    entry_count: Count
    line_count: Count
    entry_ids_digest: Sha256Hex
    entry_ids: Annotated[tuple[str, ...], Items] = Field(min_length=1)
    totals: Annotated[tuple[BatchTotal, ...], Items] = Field(min_length=1)
    first_source_offset: int = Field(ge=0, le=MAX_MINOR)
    last_source_offset: int = Field(ge=0, le=MAX_MINOR)

    @model_validator(mode="after")
    def _controls_agree(self) -> JournalBatch:
        if self.window_end < self.window_start:
            raise ValueError("window_end is before window_start")
        if self.last_source_offset < self.first_source_offset:
            raise ValueError("last_source_offset is before first_source_offset")
        if self.line_count != len(self.lines) or self.entry_count != len(self.entry_ids):
            raise ValueError("line_count or entry_count differs from the lines or entry_ids")
        if len(set(self.entry_ids)) != len(self.entry_ids):
            raise ValueError("an entry id appears twice")
        if self.entry_ids_digest != digest_entry_ids(self.entry_ids):
            raise ValueError("entry_ids_digest is not the digest of entry_ids")
        _check_batch_totals(self.lines, self.totals)
        return self


class ErpAck(Record):
    """The ERP import job's answer for one batch."""

    schema_name: ClassVar[str] = "ErpAck"
    batch_id: Identifier
    entity: Identifier
    sequence: int = Field(ge=0, le=MAX_MINOR)
    status: ErpAckStatus
    erp_document_id: str | None = None
    message: MessageText | None = None
    acknowledged_at: AwareDatetime


# --- Revenue schedules ----------------------------------------------------------------------


class ScheduledRevenue(Record):
    """What one performance obligation is scheduled to earn in one accounting period."""

    schema_name: ClassVar[str] = "ScheduledRevenue"
    obligation_id: Identifier
    period: PeriodString
    # Signed: a modification or credit can take back more than a month's share.
    amount_minor: SignedMinor

    @model_validator(mode="after")
    def _not_zero(self) -> ScheduledRevenue:
        if self.amount_minor == 0:
            raise ValueError("amount_minor is 0: months that earn nothing are left out")
        return self


class RevenueScheduled(Record):
    """A contract's whole revenue schedule by obligation and month, published when it changes."""

    schema_name: ClassVar[str] = "RevenueScheduled"
    customer_id: Identifier
    contract_id: Identifier
    entity: Identifier
    currency: CurrencyCode
    source_event_id: Identifier
    cancelled_on: dt.date | None = None
    lines: Annotated[tuple[ScheduledRevenue, ...], Items]
    total_minor: SignedMinor

    @model_validator(mode="after")
    def _total_agrees(self) -> RevenueScheduled:
        if sum(line.amount_minor for line in self.lines) != self.total_minor:
            raise ValueError("total_minor is not the sum of the lines")
        keys = [(line.obligation_id, line.period) for line in self.lines]
        if len(keys) != len(set(keys)):
            raise ValueError("an (obligation_id, period) appears twice")
        return self


# --- DLQ and reconciliation ----------------------------------------------------------------


class DlqRecord(Record):
    """A message the engine could not process, with why and the original bytes to redrive."""

    schema_name: ClassVar[str] = "DlqRecord"
    reason: Identifier
    error_class: str
    message: MessageText
    source_topic: Identifier
    source_partition: Partition
    source_offset: int = Field(ge=0, le=MAX_MINOR)
    original_key: bytes | None = None
    original_value: bytes | None = None
    original_headers: dict[str, bytes] = Field(default_factory=dict)
    failed_at: AwareDatetime
    service_version: str
    event_id: str | None = None


class ReconBreak(Record):
    """A difference found by reconciliation between what should be and what is."""

    schema_name: ClassVar[str] = "ReconBreak"
    break_id: Identifier
    kind: Identifier
    entity: Identifier
    customer_id: str | None = None
    reference: str
    expected_minor: SignedMinor
    actual_minor: SignedMinor
    currency: CurrencyCode
    detected_at: AwareDatetime
    details: str


OUTPUT_RECORDS: tuple[type[Record], ...] = (
    JournalLine,
    JournalEntryPosted,
    BatchLine,
    BatchTotal,
    JournalBatch,
    ErpAck,
    DlqRecord,
    ReconBreak,
    ScheduledRevenue,
    RevenueScheduled,
)


def _wire_models(*modules: object) -> list[type[Record]]:
    """Every Record subclass with its own ``schema_name`` defined in ``modules``."""
    found = []
    for module in modules:
        for value in vars(module).values():
            is_record = isinstance(value, type) and issubclass(value, Record)
            if is_record and "schema_name" in vars(value):
                found.append(value)
    return found


# Every wire record (inputs, nested records and outputs) by Avro schema name.
MODELS: dict[str, type[Record]] = {
    model.schema_name: model
    for model in (*_wire_models(ledger_events, revenue_events), *OUTPUT_RECORDS)
}
