"""Kafka records -> rows of the ``revledger`` tables: the pure half of the projection.

:func:`rows_for` maps one decoded record, with where it was read, to the rows it adds;
:mod:`connectors.postgres.sink` writes the rows of a whole poll batch in one transaction
with the consumer offsets; :mod:`streams.projection` is the process around both. Nothing
here reads a clock, the environment or a database: the same record always gives the same
rows, which is what makes a replay change nothing.

What each topic feeds (canonical names, the prefix is the caller's business)::

    ledger.inputs.v1        source_events (every record); invoices; payments; contracts and
                            performance_obligations (bookings, implied contracts of invoice
                            lines that name none, amendments, cancellations); periods
                            (PeriodClosed)
    ledger.entries.v1       journal_entries, journal_lines, periods seen open; the forwarded
                            ClockAdvanced / PeriodClosed are skipped (counted)
    revenue.schedules.v1    the contract's latest schedule (revenue_schedule is replaced)
    erp.journal-batches.v1  journal_batches, journal_batch_lines, journal_batch_entries
    erp.acks.v1             erp_acks (a history: one row per record)
    dlq.v1                  dlq_records

Worked example: ``ContractBooked`` K1 for 1,000.00 with obligations A (SSP 800.00,
ratable) and B (SSP 400.00, point in time) folds (:func:`contract_rows`) to one
``contracts`` row (total 100000, service from the earliest start to the latest end) and
two ``performance_obligations`` rows allocated 66667 and 33333
(:func:`revenue.allocation.allocate_by_ssp`, largest remainder: the parts sum to the
price).

How state-like rows stay deterministic:

- documents (events, entries, invoices, payments, implied contracts, batches, acks, DLQ
  records) are inserted once, by natural key; a second copy changes nothing;
- an explicit contract is folded from all its events in ``source_events``
  (:func:`contract_rows`: the booking first, then amendments and a cancellation in log
  order, as the engine releases what it held for the booking) each time a batch brings
  one of them (``Rows.contracts_touched``), so the row does not depend on arrival order
  or on how the records fell into batches;
- a schedule is a :class:`ScheduleRow`; the sink keeps the one of the highest offset per
  contract and replaces the contract's ``revenue_schedule`` rows with it once the
  contract's obligations are there (the schedule may be read before the booking). Its
  totals per obligation become ``allocated_minor`` (what the engine has allocated now);
- an invoice's ``status`` is recomputed by the sink from its accounts receivable lines
  (``Rows.touched_invoices``), since no single record says what is still due;
- periods: ``open`` when an entry posts in one, ``closed`` (with ``closed_on``) from
  ``PeriodClosed``; closed wins.

A record that belongs to no table of its topic, or cannot be fully projected (an implied
contract's product has no mapping, an allocation the engine would refuse), becomes a
``projection_rejects`` row with its bytes: never dropped silently.

Output records (``streams.messages``) are matched by ``schema_name`` and read by
attribute, because this package must not import ``streams``.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ledger.errors import InvariantViolation
from ledger.events import (
    ClockAdvanced,
    CustomerUpserted,
    Event,
    InvoiceIssued,
    InvoiceLine,
    PaymentSettled,
    PeriodClosed,
    Record,
    ReferenceRecord,
)
from ledger.posting import business_date_of
from ledger.reference import ReferenceData
from revenue.allocation import AllocationRefused, allocate_by_ssp
from revenue.contracts import method_for
from revenue.engine import implied_contract_id
from revenue.events import (
    ContractAmended,
    ContractBooked,
    ContractCancelled,
    PerformanceObligationSpec,
)

INPUTS = "ledger.inputs.v1"
ENTRIES = "ledger.entries.v1"
SCHEDULES = "revenue.schedules.v1"
BATCHES = "erp.journal-batches.v1"
ACKS = "erp.acks.v1"
DLQ = "dlq.v1"
# The topics the projection reads, canonical names, in the order their rows are written.
TOPICS: tuple[str, ...] = (INPUTS, ENTRIES, SCHEDULES, BATCHES, ACKS, DLQ)

# Reasons of projection_rejects rows made here (decode failures use DecodeReason values).
WRONG_TOPIC = "wrong_topic"
PRODUCT_MAPPING_MISSING = "product_mapping_missing"
ALLOCATION_REFUSED = "allocation_refused"
# source_events.event_type of the events an explicit contract is folded from.
CONTRACT_EVENT_TYPES: dict[str, type[ContractBooked | ContractAmended | ContractCancelled]] = {
    "contract.booked": ContractBooked,
    "contract.amended": ContractAmended,
    "contract.cancelled": ContractCancelled,
}

# The account whose lines say what is still due on an invoice (dimension invoice_id).
RECEIVABLE = "accounts_receivable"

# Columns of each table the sink copies into, in the order rows_for fills the tuples.
COLUMNS: dict[str, tuple[str, ...]] = {
    "source_events": (
        "event_id",
        "event_type",
        "customer_id",
        "entity",
        "topic",
        "kafka_partition",
        "kafka_offset",
        "occurred_at",
        "business_date",
        "payload",
    ),
    "journal_entries": (
        "entry_id",
        "entity",
        "customer_id",
        "source_event_id",
        "source_event_type",
        "rule",
        "sequence",
        "posting_date",
        "original_date",
        "period",
        "functional_currency",
        "description",
        "topic",
        "kafka_partition",
        "kafka_offset",
    ),
    "journal_lines": (
        "entry_id",
        "line_no",
        "account",
        "side",
        "amount_minor",
        "currency",
        "functional_amount_minor",
        "dimensions",
    ),
    "periods": ("entity", "period", "status", "closed_on"),
    "invoices": (
        "invoice_id",
        "customer_id",
        "entity",
        "currency",
        "issue_date",
        "due_date",
        "total_minor",
        "tax_minor",
        "status",
        "source_event_id",
    ),
    "payments": (
        "payment_id",
        "customer_id",
        "entity",
        "currency",
        "amount_minor",
        "fee_minor",
        "settled_date",
        "processor",
        "method",
        "source_event_id",
    ),
    "contracts": (
        "contract_id",
        "customer_id",
        "entity",
        "currency",
        "total_price_minor",
        "booking_date",
        "service_start",
        "service_end",
        "status",
        "cancelled_on",
        "implied",
        "source_event_id",
    ),
    "performance_obligations": (
        "contract_id",
        "obligation_id",
        "product_id",
        "family",
        "pattern",
        "method",
        "quantity",
        "ssp_minor",
        "allocated_minor",
        "service_start",
        "service_end",
    ),
    "journal_batches": (
        "batch_id",
        "entity",
        "source_partition",
        "sequence",
        "period",
        "window_start",
        "window_end",
        "functional_currency",
        "entry_count",
        "line_count",
        "entry_ids_digest",
        "first_source_offset",
        "last_source_offset",
    ),
    "journal_batch_lines": (
        "batch_id",
        "line_no",
        "gl_code",
        "account",
        "currency",
        "debit_minor",
        "credit_minor",
        "functional_debit_minor",
        "functional_credit_minor",
        "dimensions",
    ),
    "journal_batch_entries": ("batch_id", "entry_id"),
    "erp_acks": (
        "kafka_partition",
        "kafka_offset",
        "batch_id",
        "entity",
        "sequence",
        "status",
        "erp_document_id",
        "message",
        "acknowledged_at",
    ),
    "dlq_records": (
        "kafka_partition",
        "kafka_offset",
        "reason",
        "error_class",
        "message",
        "source_topic",
        "source_partition",
        "source_offset",
        "event_id",
        "failed_at",
        "service_version",
        "original_key",
        "original_value",
    ),
    "projection_rejects": (
        "topic",
        "kafka_partition",
        "kafka_offset",
        "reason",
        "message",
        "original_key",
        "original_value",
    ),
}
# Columns whose rows hold a JSON object as a dict (the sink dumps them to JSON text). The
# ``source_events.payload`` column is JSON text already (see :func:`source_event_row`).
JSON_COLUMNS = frozenset({"dimensions"})

Row = tuple[Any, ...]
ContractEvent = ContractBooked | ContractAmended | ContractCancelled


@dataclass(frozen=True, slots=True)
class Received:
    """Where a record was read and its original bytes.

    ``topic`` is the name as read (prefix included) and is what the tables store;
    ``canonical`` is the topic's name without the prefix, which decides the mapping.
    """

    topic: str
    canonical: str
    partition: int
    offset: int
    key: bytes | None = None
    value: bytes | None = None

    def describe(self) -> str:
        """``<topic>[<partition>]@<offset>``, for messages."""
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    """A contract's whole schedule, ``lines`` as (obligation id, period, amount)."""

    contract_id: str
    customer_id: str
    entity: str
    currency: str
    source_event_id: str
    cancelled_on: dt.date | None
    lines: tuple[tuple[str, str, int], ...]
    received: Received


@dataclass(slots=True)
class Rows:
    """What some records add: rows per table (:data:`COLUMNS` order) and schedules.

    ``contracts_touched``: explicit contracts to fold again from their events.
    ``touched_invoices``: invoices whose status may have moved (new, or new AR lines).
    ``skipped``: records read on purpose without rows (control records forwarded to the
    entries topic).
    """

    # A table's list is made when first asked for: most records fill one or two tables, and
    # making all fifteen for each record was a tenth of the mapping's time.
    tables: dict[str, list[Row]] = field(default_factory=lambda: defaultdict(list))
    schedules: list[ScheduleRow] = field(default_factory=list)
    contracts_touched: set[str] = field(default_factory=set)
    touched_invoices: set[str] = field(default_factory=set)
    skipped: int = 0

    def add(self, table: str, row: Row) -> None:
        """Append ``row`` to ``table``."""
        self.tables[table].append(row)

    def extend(self, other: Rows) -> None:
        """Append everything of ``other`` (records keep their order)."""
        for table, rows in other.tables.items():
            self.tables[table].extend(rows)
        self.schedules.extend(other.schedules)
        self.contracts_touched |= other.contracts_touched
        self.touched_invoices |= other.touched_invoices
        self.skipped += other.skipped

    def count(self) -> int:
        """Rows, schedules and contracts to fold held (0: nothing to write)."""
        tables = sum(map(len, self.tables.values()))
        return tables + len(self.schedules) + len(self.contracts_touched)

    def rejected(self) -> bool:
        """True when a reject row is among them."""
        return bool(self.tables["projection_rejects"])


def reject(received: Received, reason: str, message: str) -> Rows:
    """Rows of a record the projection refuses: topic, position, reason and its bytes."""
    rows = Rows()
    rows.add(
        "projection_rejects",
        (
            received.topic,
            received.partition,
            received.offset,
            reason,
            message,
            received.key,
            received.value,
        ),
    )
    return rows


def rows_for(record: Record, received: Received, reference: ReferenceData | None = None) -> Rows:
    """The rows ``record`` adds, read at ``received``.

    Args:
        record: a decoded, validated wire record.
        received: where it was read (``canonical`` picks the mapping) and its bytes.
        reference: entities and product mappings, for obligation methods and implied
            contracts; default: none known.

    Returns:
        The rows; a ``projection_rejects`` row when the record does not belong on its
        topic or cannot be projected whole.
    """
    reference = reference or ReferenceData()
    if received.canonical == INPUTS:
        return _input_rows(record, received, reference)
    mapper = _OUTPUT_MAPPERS.get((received.canonical, record.schema_name))
    if mapper is not None:
        return mapper(record, received)
    if received.canonical == ENTRIES and isinstance(record, ClockAdvanced | PeriodClosed):
        rows = Rows()
        rows.skipped = 1
        return rows
    return reject(
        received,
        WRONG_TOPIC,
        f"{record.schema_name} does not belong on {received.canonical}",
    )


# --- ledger.inputs.v1 -----------------------------------------------------------------------


def _input_rows(record: Record, received: Received, reference: ReferenceData) -> Rows:
    """source_events for every input; documents and contracts to fold by type."""
    if not isinstance(record, Event | ClockAdvanced | PeriodClosed):
        return reject(
            received, WRONG_TOPIC, f"{record.schema_name} does not belong on {received.canonical}"
        )
    rows = Rows()
    rows.add("source_events", source_event_row(record, received))
    if isinstance(record, InvoiceIssued):
        rows.extend(invoice_rows(record, received, reference))
    elif isinstance(record, PaymentSettled):
        rows.add("payments", payment_row(record))
    elif isinstance(record, ContractEvent):
        rows.extend(contract_event_rows(record, received))
    elif isinstance(record, PeriodClosed):
        rows.add("periods", (record.entity, record.period, "closed", record.closed_on))
    return rows


def source_event_row(record: Event | ReferenceRecord, received: Received) -> Row:
    """The ``source_events`` row: envelope, position, business date and the payload.

    The payload is the record as JSON text (``model_dump_json``: the same JSON as
    ``model_dump(mode="json")``, made in one call by pydantic instead of a dict then dumped
    by the sink; this was the largest part of mapping and writing an input event).
    """
    customer_id = record.customer_id if isinstance(record, Event) else None
    entity = getattr(record, "entity", None)
    return (
        record.event_id,
        record.event_type,
        customer_id,
        entity,
        received.topic,
        received.partition,
        received.offset,
        record.occurred_at,
        business_date(record),
        record.model_dump_json(),
    )


def business_date(record: Event | ReferenceRecord) -> dt.date | None:
    """The payload's business date (issue_date, settled_date ...); None when it has none."""
    if isinstance(record, ClockAdvanced):
        return record.business_date
    if isinstance(record, PeriodClosed):
        return record.closed_on
    if isinstance(record, Event) and not isinstance(record, CustomerUpserted):
        return business_date_of(record)
    return None


def invoice_rows(event: InvoiceIssued, received: Received, reference: ReferenceData) -> Rows:
    """The invoice (``open`` until its AR lines say otherwise) and its implied contract."""
    rows = Rows()
    rows.add(
        "invoices",
        (
            event.invoice_id,
            event.customer_id,
            event.entity,
            event.currency,
            event.issue_date,
            event.due_date,
            event.total_minor,
            sum(tax.amount_minor for tax in event.tax_lines),
            "open",
            event.event_id,
        ),
    )
    rows.touched_invoices.add(event.invoice_id)
    implied = [
        line for line in event.lines if line.contract_id is None and line.obligation_id is None
    ]
    if implied:
        rows.extend(implied_contract_rows(event, implied, received, reference))
    return rows


def implied_contract_rows(
    event: InvoiceIssued, lines: list[InvoiceLine], received: Received, reference: ReferenceData
) -> Rows:
    """The contract ``implied:<invoice id>`` the engine makes for lines that name none.

    One obligation per line (id = line id), as ``revenue.engine`` builds it: a ratable
    product with a service period is spread over it by its method; anything else is
    recognised at one point (the service end, else the issue date). A usage product billed
    without usage is such a point: its pattern is stored as ``point_in_time`` (the table
    ties pattern ``usage`` to an unscheduled obligation).
    """
    contract_id = implied_contract_id(event.invoice_id)
    obligations = []
    for line in lines:
        mapping = reference.product_mapping(line.product_id, event.issue_date)
        if mapping is None:
            return reject(
                received,
                PRODUCT_MAPPING_MISSING,
                f"implied contract {contract_id}: product {line.product_id!r} of line"
                f" {line.line_id!r} has no mapping",
            )
        start = line.service_start or event.issue_date
        ratable = mapping.pattern in ("ratable_daily", "ratable_monthly")
        if ratable and line.service_end is not None and line.service_start is not None:
            method = method_for(mapping.pattern, event.entity, line.product_id, start, reference)
            pattern, end = mapping.pattern, max(start, line.service_end)
        else:
            start = line.service_end or start
            method, pattern, end = "point_in_time", "point_in_time", None
        obligations.append(
            (
                contract_id,
                line.line_id,
                line.product_id,
                mapping.family,
                pattern,
                method,
                line.quantity,
                line.amount_minor,
                line.amount_minor,
                start,
                end,
            )
        )
    rows = Rows()
    start, end = service_span(obligations)
    total = sum(line.amount_minor for line in lines)
    rows.add(
        "contracts",
        (
            contract_id,
            event.customer_id,
            event.entity,
            event.currency,
            total,
            event.issue_date,
            start,
            end,
            "active",
            None,
            True,
            event.event_id,
        ),
    )
    for obligation in obligations:
        rows.add("performance_obligations", obligation)
    return rows


def service_span(obligations: Iterable[Row]) -> tuple[dt.date, dt.date | None]:
    """A contract's service period from its obligation rows.

    Earliest start; latest end (a point-in-time obligation ends where it starts); no end
    (NULL) when an obligation is open-ended usage.
    """
    starts, ends, open_ended = [], [], False
    for row in obligations:
        pattern, start, end = row[4], row[9], row[10]
        starts.append(start)
        if end is None and pattern == "usage":
            open_ended = True
        ends.append(end or start)
    return min(starts), None if open_ended else max(ends)


def payment_row(event: PaymentSettled) -> Row:
    """The ``payments`` row of a settlement."""
    return (
        event.payment_id,
        event.customer_id,
        event.entity,
        event.currency,
        event.amount_minor,
        event.fee_minor,
        event.settled_date,
        event.processor,
        event.method,
        event.event_id,
    )


def obligation_row(
    contract_id: str,
    entity: str,
    spec: PerformanceObligationSpec,
    allocated_minor: int,
    reference: ReferenceData,
) -> Row:
    """A ``performance_obligations`` row of a spec (method as the engine picks it)."""
    method = method_for(spec.pattern, entity, spec.product_id, spec.service_start, reference)
    return (
        contract_id,
        spec.obligation_id,
        spec.product_id,
        spec.family,
        spec.pattern,
        method,
        spec.quantity,
        spec.ssp_minor,
        allocated_minor,
        spec.service_start,
        spec.service_end,
    )


def allocation(
    price_minor: int,
    specs: Iterable[PerformanceObligationSpec],
    discounted: Iterable[str] = (),
) -> dict[str, int] | str:
    """Price per obligation by relative SSP (usage takes none), or why the engine refuses.

    As ``revenue.contracts``: usage obligations are outside the price; a price with no
    scheduled obligation to carry it, or that :func:`allocate_by_ssp` refuses, is refused.
    """
    scheduled = {s.obligation_id: s.ssp_minor for s in specs if s.pattern != "usage"}
    if price_minor and not scheduled:
        return f"price {price_minor} has no scheduled obligation to carry it"
    shares = allocate_by_ssp(price_minor, scheduled, tuple(discounted))
    if isinstance(shares, AllocationRefused):
        return f"{shares.status}: {shares.message}"
    return shares


def contract_event_rows(event: ContractEvent, received: Received) -> Rows:
    """The contract to fold again; a reject when the engine refuses its allocation."""
    rows = Rows()
    rows.contracts_touched.add(event.contract_id)
    if isinstance(event, ContractBooked):
        refused = allocation(
            event.total_price_minor, event.obligations, event.discount_obligation_ids
        )
    elif isinstance(event, ContractAmended):
        refused = allocation(event.total_price_minor, event.obligations)
    else:
        return rows
    if isinstance(refused, str):
        rows.extend(
            reject(received, ALLOCATION_REFUSED, f"contract {event.contract_id}: {refused}")
        )
    return rows


@dataclass(frozen=True, slots=True)
class ContractRows:
    """A contract's row and its obligations' rows, folded from its events."""

    contract: Row
    obligations: tuple[Row, ...]


@dataclass(slots=True)
class _Fold:
    """A contract while :func:`contract_rows` folds its events (local, never shared)."""

    booking: ContractBooked
    total_price_minor: int
    obligations: dict[str, Row]
    amendments: set[str] = field(default_factory=set)
    cancelled_on: dt.date | None = None


def contract_rows(events: Iterable[ContractEvent], reference: ReferenceData) -> ContractRows | None:
    """Fold a contract's events, in log order, to its row and its obligations' rows.

    The first booking whose price can be allocated comes first (the engine holds an
    amendment or cancellation until its booking and then releases it); the other events
    follow in log order. As the engine, it ignores another booking of the same id, an
    event after the cancellation, one whose entity or currency differs from the
    booking's, a repeated amendment id, a separate contract re-adding an obligation, and a
    price that cannot be allocated.

    Allocations: a booking's and a separate contract's are exact; after a prospective or
    catch-up amendment (which re-allocate against what was recognised, known to the
    engine only) the new terms get a provisional SSP share of the new total, and the
    contract's next schedule sets every obligation's real one.

    Returns:
        None when no usable booking is among ``events``.
    """
    ordered = list(events)
    bookings = [e for e in ordered if isinstance(e, ContractBooked)]
    usable = [e for e in bookings if not isinstance(_shares(e), str)]
    if not usable:
        return None
    fold = _booked(usable[0], reference)
    for event in ordered:
        if isinstance(event, ContractBooked) or fold.cancelled_on is not None:
            continue
        if (event.entity, getattr(event, "currency", fold.booking.currency)) != (
            fold.booking.entity,
            fold.booking.currency,
        ):
            continue
        if isinstance(event, ContractCancelled):
            fold.cancelled_on = event.effective_date
        else:
            _amend(fold, event, reference)
    return _fold_rows(fold)


def _shares(event: ContractBooked) -> dict[str, int] | str:
    return allocation(event.total_price_minor, event.obligations, event.discount_obligation_ids)


def _booked(event: ContractBooked, reference: ReferenceData) -> _Fold:
    shares = _shares(event)
    if isinstance(shares, str):
        raise InvariantViolation(f"booking {event.contract_id} is not allocatable: {shares}")
    obligations = {
        spec.obligation_id: obligation_row(
            event.contract_id, event.entity, spec, shares.get(spec.obligation_id, 0), reference
        )
        for spec in event.obligations
    }
    return _Fold(event, event.total_price_minor, obligations)


def _amend(fold: _Fold, event: ContractAmended, reference: ReferenceData) -> None:
    """Apply one amendment to ``fold`` (see :func:`contract_rows`)."""
    if event.amendment_id in fold.amendments:
        return
    separate = event.treatment == "separate_contract"
    if separate and any(spec.obligation_id in fold.obligations for spec in event.obligations):
        return
    shares = allocation(event.total_price_minor, event.obligations)
    if isinstance(shares, str):
        return
    fold.amendments.add(event.amendment_id)
    for spec in event.obligations:
        fold.obligations[spec.obligation_id] = obligation_row(
            event.contract_id, event.entity, spec, shares.get(spec.obligation_id, 0), reference
        )
    if separate:
        fold.total_price_minor += event.total_price_minor
    else:
        fold.total_price_minor = event.total_price_minor


def _fold_rows(fold: _Fold) -> ContractRows:
    booking = fold.booking
    obligations = tuple(fold.obligations.values())
    start, end = service_span(obligations)
    contract = (
        booking.contract_id,
        booking.customer_id,
        booking.entity,
        booking.currency,
        fold.total_price_minor,
        booking.booking_date,
        start,
        end,
        "active" if fold.cancelled_on is None else "cancelled",
        fold.cancelled_on,
        False,
        booking.event_id,
    )
    return ContractRows(contract, obligations)


# --- outputs ----------------------------------------------------------------------------------


def entry_rows(record: Any, received: Received) -> Rows:
    """A ``JournalEntryPosted``: the entry, its lines, its period seen open."""
    rows = Rows()
    rows.add(
        "journal_entries",
        (
            record.entry_id,
            record.entity,
            record.customer_id,
            record.source_event_id,
            record.source_event_type,
            record.rule,
            record.sequence,
            record.posting_date,
            record.original_date,
            record.period,
            record.functional_currency,
            record.description,
            received.topic,
            received.partition,
            received.offset,
        ),
    )
    for line in record.lines:
        rows.add(
            "journal_lines",
            (
                record.entry_id,
                line.line_no,
                line.account,
                line.side,
                line.amount_minor,
                line.currency,
                line.functional_amount_minor,
                dict(line.dimensions),
            ),
        )
        invoice_id = line.dimensions.get("invoice_id")
        if line.account == RECEIVABLE and invoice_id is not None:
            rows.touched_invoices.add(invoice_id)
    rows.add("periods", (record.entity, record.period, "open", None))
    return rows


def schedule_rows(record: Any, received: Received) -> Rows:
    """A ``RevenueScheduled``: the contract's whole schedule, to replace the one before."""
    rows = Rows()
    rows.schedules.append(
        ScheduleRow(
            contract_id=record.contract_id,
            customer_id=record.customer_id,
            entity=record.entity,
            currency=record.currency,
            source_event_id=record.source_event_id,
            cancelled_on=record.cancelled_on,
            lines=tuple((x.obligation_id, x.period, x.amount_minor) for x in record.lines),
            received=received,
        )
    )
    return rows


def batch_rows(record: Any, received: Received) -> Rows:
    """A ``JournalBatch``: the batch, its summary lines, the entries it summarises."""
    rows = Rows()
    rows.add(
        "journal_batches",
        (
            record.batch_id,
            record.entity,
            record.source_partition,
            record.sequence,
            record.period,
            record.window_start,
            record.window_end,
            record.functional_currency,
            record.entry_count,
            record.line_count,
            record.entry_ids_digest,
            record.first_source_offset,
            record.last_source_offset,
        ),
    )
    for line in record.lines:
        rows.add(
            "journal_batch_lines",
            (
                record.batch_id,
                line.line_no,
                line.gl_code,
                line.account,
                line.currency,
                line.debit_minor,
                line.credit_minor,
                line.functional_debit_minor,
                line.functional_credit_minor,
                dict(line.dimensions),
            ),
        )
    for entry_id in record.entry_ids:
        rows.add("journal_batch_entries", (record.batch_id, entry_id))
    return rows


def ack_rows(record: Any, received: Received) -> Rows:
    """An ``ErpAck``: one history row at its position in ``erp.acks.v1``."""
    rows = Rows()
    rows.add(
        "erp_acks",
        (
            received.partition,
            received.offset,
            record.batch_id,
            record.entity,
            record.sequence,
            record.status,
            record.erp_document_id,
            record.message,
            record.acknowledged_at,
        ),
    )
    return rows


def dlq_rows(record: Any, received: Received) -> Rows:
    """A ``DlqRecord``: reason, origin and the original key and value bytes."""
    rows = Rows()
    rows.add(
        "dlq_records",
        (
            received.partition,
            received.offset,
            record.reason,
            record.error_class,
            record.message,
            record.source_topic,
            record.source_partition,
            record.source_offset,
            record.event_id,
            record.failed_at,
            record.service_version,
            record.original_key,
            record.original_value,
        ),
    )
    return rows


_OUTPUT_MAPPERS: Mapping[tuple[str, str], Callable[[Any, Received], Rows]] = {
    (ENTRIES, "JournalEntryPosted"): entry_rows,
    (SCHEDULES, "RevenueScheduled"): schedule_rows,
    (BATCHES, "JournalBatch"): batch_rows,
    (ACKS, "ErpAck"): ack_rows,
    (DLQ, "DlqRecord"): dlq_rows,
}
