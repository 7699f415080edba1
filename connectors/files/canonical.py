"""Rows of the documented billing / payments layout -> canonical events (docs/IMPORT.md).

Each row has a ``record_type``. Rows of one document share its id: the ``invoice_line``
and ``invoice_tax`` rows of invoice ``INV-7`` make one ``InvoiceIssued``; the
``payment`` rows of ``PAY-3`` make one ``PaymentSettled`` with one application per row
that names an invoice. The columns that describe the document (customer, entity,
dates, currency ...) must agree on every row of it.

A document is imported whole or not at all: a bad row refuses its document, and every
other row of that document is reported too (naming the bad line), so the report lists
each row that was not imported. Other documents are not affected.

Event ids come from the file's own ids (``<source_system>:<document>:<id>``, e.g.
``file:invoice:INV-7``), so importing the same file twice gives the same events and the
ledger takes the second copies for duplicates.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from connectors.files.amounts import AmountError, minor_units
from connectors.files.rows import Row, RowError
from ledger.events import (
    CreditNoteIssued,
    CreditNoteLine,
    CreditNoteVoided,
    CustomerUpserted,
    DisputeClosed,
    Event,
    InvoiceIssued,
    InvoiceLine,
    InvoiceVoided,
    InvoiceWrittenOff,
    PaymentApplication,
    PaymentFailed,
    PaymentSettled,
    PayoutPaid,
    RefundIssued,
    TaxLine,
)
from ledger.money import is_known_currency

DEFAULT_SOURCE_SYSTEM = "file"


class CellError(ValueError):
    """Raised for one unusable cell: its row's line, the column and the reason."""

    def __init__(self, line: int, column: str, reason: str) -> None:
        super().__init__(f"line {line}: {column}: {reason}")
        self.line = line
        self.column = column
        self.reason = reason


# --- cells -------------------------------------------------------------------------------


def text(row: Row, column: str, *, required: bool = True) -> str | None:
    """A text cell (numbers are taken as their decimal text)."""
    value = row.values.get(column)
    if value is None or value == "":
        if required:
            raise CellError(row.line, column, "required")
        return None
    if isinstance(value, dict | list | bool):
        raise CellError(row.line, column, f"expected text, got {value!r}")
    return str(value)


def date(row: Row, column: str, *, required: bool = True) -> dt.date | None:
    """An ISO date cell (``2024-07-31``)."""
    value = text(row, column, required=required)
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise CellError(row.line, column, f"{value!r} is not a date (YYYY-MM-DD)") from None


def instant(row: Row, column: str, default: dt.date) -> dt.datetime:
    """An ISO date-time with its zone; absent: midnight UTC of ``default`` (deterministic)."""
    value = text(row, column, required=False)
    if value is None:
        return dt.datetime(default.year, default.month, default.day, tzinfo=dt.UTC)
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise CellError(row.line, column, f"{value!r} is not an ISO date-time") from None
    if moment.tzinfo is None:
        raise CellError(row.line, column, f"{value!r} has no time zone (add Z or +hh:mm)")
    return moment


def integer(row: Row, column: str, default: int) -> int:
    """A whole-number cell (quantities); absent: ``default``."""
    value = text(row, column, required=False)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise CellError(row.line, column, f"{value!r} is not a whole number") from None
    if number < 0:
        raise CellError(row.line, column, f"{value!r} is negative")
    return number


def currency(row: Row, column: str = "currency") -> str:
    """An ISO 4217 currency code the ledger knows (upper case)."""
    code = text(row, column) or ""
    if code != code.upper() or not is_known_currency(code):
        raise CellError(row.line, column, f"{code!r} is not a known ISO 4217 code (e.g. USD)")
    return code


def amount(row: Row, column: str, code: str, *, required: bool = True, positive: bool = True):
    """A decimal amount in major units as minor units of ``code`` (exact, or refused)."""
    value = row.values.get(column)
    if value is None or value == "":
        if required:
            raise CellError(row.line, column, "required")
        return None
    try:
        return minor_units(value, code, allow_zero=not positive)
    except AmountError as exc:
        raise CellError(row.line, column, f"{exc.reason}: {exc}") from None


# --- documents -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Kind:
    """A ``record_type``: the document it belongs to and the column holding that id."""

    document: str
    id_column: str
    # Columns that describe the document and must agree on each of its rows; a kind
    # without them is a one-row document.
    header: tuple[str, ...] = ()


@dataclass
class Document:
    """The rows of one document, in file order."""

    document: str
    document_id: str
    rows: list[tuple[Row, str]] = field(default_factory=list)

    @property
    def line(self) -> int:
        """The line of the document's first row."""
        return self.rows[0][0].line


_PARTY = ("customer_id", "entity", "source_system")

BILLING_KINDS: Mapping[str, Kind] = {
    "invoice_line": Kind(
        "invoice", "invoice_id", (*_PARTY, "issue_date", "due_date", "currency", "occurred_at")
    ),
    "invoice_tax": Kind(
        "invoice", "invoice_id", (*_PARTY, "issue_date", "due_date", "currency", "occurred_at")
    ),
    "invoice_void": Kind("invoice_void", "invoice_id", ()),
    "credit_note_line": Kind(
        "credit_note",
        "credit_note_id",
        (*_PARTY, "invoice_id", "issue_date", "currency", "reason", "applies_to", "occurred_at"),
    ),
    "credit_note_tax": Kind(
        "credit_note",
        "credit_note_id",
        (*_PARTY, "invoice_id", "issue_date", "currency", "reason", "applies_to", "occurred_at"),
    ),
    "credit_note_void": Kind("credit_note_void", "credit_note_id", ()),
    "write_off": Kind("write_off", "write_off_id", ()),
    "customer": Kind("customer", "customer_id", ()),
}
PAYMENT_KINDS: Mapping[str, Kind] = {
    "payment": Kind(
        "payment",
        "payment_id",
        (*_PARTY, "date", "currency", "amount", "fee", "processor", "method", "occurred_at"),
    ),
    "payment_failed": Kind("payment_failed", "payment_id", ()),
    "refund": Kind("refund", "refund_id", ()),
    "dispute_closed": Kind("dispute_closed", "dispute_id", ()),
    "payout": Kind("payout", "payout_id", ()),
}


@dataclass(frozen=True, slots=True)
class Parsed:
    """The events a file's rows gave, and the rows that were not imported."""

    events: tuple[Event, ...]
    errors: tuple[RowError, ...]


def _envelope(doc: Document, row: Row, business_date: dt.date) -> dict[str, Any]:
    source = text(row, "source_system", required=False) or DEFAULT_SOURCE_SYSTEM
    return {
        "event_id": f"{source}:{doc.document}:{doc.document_id}",
        "occurred_at": instant(row, "occurred_at", business_date),
        "source_system": source,
        "source_id": doc.document_id,
        "entity": text(row, "entity"),
        "customer_id": text(row, "customer_id"),
    }


def _invoice(doc: Document) -> Event:
    first = doc.rows[0][0]
    code = currency(first)
    issue = date(first, "issue_date")
    lines, taxes = [], []
    for row, kind in doc.rows:
        if kind == "invoice_tax":
            taxes.append(
                TaxLine(
                    tax_code=text(row, "tax_code"),
                    jurisdiction=text(row, "jurisdiction", required=False) or "",
                    amount_minor=amount(row, "amount", code),
                )
            )
            continue
        lines.append(
            InvoiceLine(
                line_id=text(row, "line_id"),
                description=text(row, "description", required=False) or "",
                product_id=text(row, "product_id"),
                quantity=integer(row, "quantity", 1),
                amount_minor=amount(row, "amount", code),
                contract_id=text(row, "contract_id", required=False),
                obligation_id=text(row, "obligation_id", required=False),
                service_start=date(row, "service_start", required=False),
                service_end=date(row, "service_end", required=False),
            )
        )
    if not lines:
        raise CellError(
            doc.line, "record_type", f"invoice {doc.document_id} has no invoice_line row"
        )
    return InvoiceIssued(
        **_envelope(doc, first, issue),
        invoice_id=doc.document_id,
        issue_date=issue,
        due_date=date(first, "due_date"),
        currency=code,
        lines=tuple(lines),
        tax_lines=tuple(taxes),
        total_minor=sum(x.amount_minor for x in (*lines, *taxes)),
    )


def _credit_note(doc: Document) -> Event:
    first = doc.rows[0][0]
    code = currency(first)
    issue = date(first, "issue_date")
    lines, taxes = [], []
    for row, kind in doc.rows:
        if kind == "credit_note_tax":
            taxes.append(
                TaxLine(
                    tax_code=text(row, "tax_code"),
                    jurisdiction=text(row, "jurisdiction", required=False) or "",
                    amount_minor=amount(row, "amount", code),
                )
            )
        else:
            lines.append(
                CreditNoteLine(
                    invoice_line_id=text(row, "line_id"),
                    amount_minor=amount(row, "amount", code),
                )
            )
    applies_to = text(first, "applies_to", required=False) or "remaining_service"
    if applies_to not in ("remaining_service", "past_service"):
        raise CellError(
            first.line, "applies_to", f"{applies_to!r} is not remaining_service or past_service"
        )
    return CreditNoteIssued(
        **_envelope(doc, first, issue),
        credit_note_id=doc.document_id,
        invoice_id=text(first, "invoice_id"),
        issue_date=issue,
        currency=code,
        lines=tuple(lines),
        tax_lines=tuple(taxes),
        total_minor=sum(x.amount_minor for x in (*lines, *taxes)),
        reason=text(first, "reason", required=False) or "",
        applies_to=applies_to,
    )


def _void(doc: Document) -> Event:
    row = doc.rows[0][0]
    on = date(row, "date")
    return InvoiceVoided(
        **_envelope(doc, row, on),
        invoice_id=doc.document_id,
        void_date=on,
        reason=text(row, "reason", required=False) or "",
    )


def _credit_note_void(doc: Document) -> Event:
    row = doc.rows[0][0]
    on = date(row, "date")
    return CreditNoteVoided(
        **_envelope(doc, row, on),
        credit_note_id=doc.document_id,
        invoice_id=text(row, "invoice_id"),
        void_date=on,
        reason=text(row, "reason", required=False) or "",
    )


def _write_off(doc: Document) -> Event:
    row = doc.rows[0][0]
    on, code = date(row, "date"), currency(row)
    return InvoiceWrittenOff(
        **_envelope(doc, row, on),
        invoice_id=text(row, "invoice_id"),
        write_off_date=on,
        currency=code,
        amount_minor=amount(row, "amount", code),
        reason=text(row, "reason", required=False) or "",
    )


def _customer(doc: Document) -> Event:
    row = doc.rows[0][0]
    on = date(row, "date")
    return CustomerUpserted(
        **_envelope(doc, row, on),
        name=text(row, "name"),
        billing_currency=currency(row),
        country=text(row, "country", required=False),
        tax_id=text(row, "tax_id", required=False),
    )


def _payment(doc: Document) -> Event:
    first = doc.rows[0][0]
    on, code = date(first, "date"), currency(first)
    applications = []
    for row, _ in doc.rows:
        invoice_id = text(row, "invoice_id", required=False)
        applied = amount(row, "applied_amount", code, required=False)
        if invoice_id is None and applied is not None:
            raise CellError(row.line, "invoice_id", "applied_amount needs the invoice_id it pays")
        if invoice_id is not None:
            if applied is None:
                raise CellError(
                    row.line, "applied_amount", f"required to apply the payment to {invoice_id}"
                )
            applications.append(PaymentApplication(invoice_id=invoice_id, amount_minor=applied))
    return PaymentSettled(
        **_envelope(doc, first, on),
        payment_id=doc.document_id,
        settled_date=on,
        currency=code,
        amount_minor=amount(first, "amount", code),
        fee_minor=amount(first, "fee", code, required=False, positive=False) or 0,
        applications=tuple(applications),
        processor=text(first, "processor"),
        method=text(first, "method", required=False),
    )


def _payment_failed(doc: Document) -> Event:
    row = doc.rows[0][0]
    on, code = date(row, "date"), currency(row)
    invoice_id = text(row, "invoice_id", required=False)
    return PaymentFailed(
        **_envelope(doc, row, on),
        payment_id=doc.document_id,
        failed_date=on,
        currency=code,
        amount_minor=amount(row, "amount", code),
        failure_code=text(row, "failure_code"),
        invoice_ids=(invoice_id,) if invoice_id else (),
    )


def _refund(doc: Document) -> Event:
    row = doc.rows[0][0]
    on, code = date(row, "date"), currency(row)
    return RefundIssued(
        **_envelope(doc, row, on),
        refund_id=doc.document_id,
        payment_id=text(row, "payment_id"),
        refund_date=on,
        currency=code,
        amount_minor=amount(row, "amount", code),
        reason=text(row, "reason", required=False) or "",
    )


def _dispute(doc: Document) -> Event:
    row = doc.rows[0][0]
    on, code = date(row, "date"), currency(row)
    outcome = text(row, "outcome")
    if outcome not in ("won", "lost"):
        raise CellError(row.line, "outcome", f"{outcome!r} is not won or lost")
    return DisputeClosed(
        **_envelope(doc, row, on),
        dispute_id=doc.document_id,
        payment_id=text(row, "payment_id"),
        closed_date=on,
        outcome=outcome,
        currency=code,
        amount_minor=amount(row, "amount", code),
        fee_minor=amount(row, "fee", code, required=False, positive=False) or 0,
    )


def _payout(doc: Document) -> Event:
    row = doc.rows[0][0]
    on, code = date(row, "date"), currency(row)
    return PayoutPaid(
        **_envelope(doc, row, on),
        payout_id=doc.document_id,
        payout_date=on,
        currency=code,
        amount_minor=amount(row, "amount", code),
        bank_account=text(row, "bank_account"),
    )


BUILDERS: Mapping[str, Callable[[Document], Event]] = {
    "invoice": _invoice,
    "credit_note": _credit_note,
    "invoice_void": _void,
    "credit_note_void": _credit_note_void,
    "write_off": _write_off,
    "customer": _customer,
    "payment": _payment,
    "payment_failed": _payment_failed,
    "refund": _refund,
    "dispute_closed": _dispute,
    "payout": _payout,
}

# Canonical field -> the column an operator fixes, for refusals by the canonical model.
_COLUMN_OF_FIELD = {
    "amount_minor": "amount",
    "fee_minor": "fee",
    "total_minor": "amount",
    "settled_date": "date",
    "void_date": "date",
    "write_off_date": "date",
    "refund_date": "date",
    "closed_date": "date",
    "payout_date": "date",
    "failed_date": "date",
    "billing_currency": "currency",
    "applications": "applied_amount",
}


def _model_error(doc: Document, error: ValidationError) -> RowError:
    item = error.errors()[0]
    loc = [str(part) for part in item["loc"]]
    column = next((_COLUMN_OF_FIELD.get(p, p) for p in reversed(loc) if not p.isdigit()), "")
    message = item["msg"].removeprefix("Value error, ")
    return RowError(doc.line, column, f"{doc.document} {doc.document_id}: {message}")


def _group(rows: Iterable[Row], kinds: Mapping[str, Kind]) -> tuple[list[Document], list[RowError]]:
    """Rows by document, in order of first appearance; rows that name no document as errors."""
    documents: dict[tuple[str, str], Document] = {}
    errors: list[RowError] = []
    for row in rows:
        record_type = row.values.get("record_type")
        kind = kinds.get(record_type) if isinstance(record_type, str) else None
        if kind is None:
            known = ", ".join(kinds)
            errors.append(
                RowError(row.line, "record_type", f"{record_type!r} is not one of: {known}")
            )
            continue
        document_id = row.values.get(kind.id_column)
        if document_id is None or isinstance(document_id, dict | list | bool):
            errors.append(RowError(row.line, kind.id_column, "required"))
            continue
        key = (kind.document, str(document_id))
        doc = documents.setdefault(key, Document(kind.document, str(document_id)))
        if doc.rows and not kind.header:
            errors.append(
                RowError(
                    row.line,
                    kind.id_column,
                    f"{kind.document} {document_id} already appears on line {doc.line}",
                )
            )
            continue
        doc.rows.append((row, record_type))
    return list(documents.values()), errors


def _disagreement(doc: Document, kinds: Mapping[str, Kind]) -> RowError | None:
    first, first_kind = doc.rows[0]
    for row, kind in doc.rows[1:]:
        for column in kinds[kind].header:
            if column in kinds[first_kind].header and row.values.get(column) != first.values.get(
                column
            ):
                return RowError(
                    row.line,
                    column,
                    f"differs from line {first.line} of {doc.document} {doc.document_id}"
                    f" ({row.values.get(column)!r} vs {first.values.get(column)!r})",
                )
    return None


def _build(doc: Document, kinds: Mapping[str, Kind]) -> Event | RowError:
    """The document's event, or the first row error that refuses it."""
    disagreement = _disagreement(doc, kinds)
    if disagreement is not None:
        return disagreement
    try:
        return BUILDERS[doc.document](doc)
    except CellError as exc:
        return RowError(exc.line, exc.column, exc.reason)
    except ValidationError as exc:
        return _model_error(doc, exc)


def parse_rows(rows: Iterable[Row], kinds: Mapping[str, Kind]) -> Parsed:
    """Canonical events of ``rows`` (one per document) and the rows not imported.

    Args:
        rows: the file's rows (:func:`connectors.files.rows.read_rows`).
        kinds: :data:`BILLING_KINDS` or :data:`PAYMENT_KINDS`.

    Returns:
        :class:`Parsed`: events in the order their documents first appear; errors by line.
    """
    documents, errors = _group(rows, kinds)
    events: list[Event] = []
    for doc in documents:
        outcome = _build(doc, kinds)
        if isinstance(outcome, RowError):
            errors.append(outcome)
            errors.extend(
                RowError(
                    row.line,
                    "",
                    f"not imported: {doc.document} {doc.document_id} is refused"
                    f" (line {outcome.line})",
                )
                for row, _ in doc.rows
                if row.line != outcome.line
            )
        else:
            events.append(outcome)
    return Parsed(tuple(events), tuple(sorted(errors, key=lambda e: (e.line, e.column))))
