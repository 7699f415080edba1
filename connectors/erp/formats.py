"""ERP import layouts of a closed :class:`~ledger.batching.Batch`: NetSuite, Oracle FBDI, JSON.

Owns the column sets and value formats of the files revledger hands to an ERP
(column-by-column sources in ``docs/erp-formats.md``):

- :func:`netsuite_journal_csv`: NetSuite CSV import of Journal Entries, one row per journal
  line, header fields repeated on every row, rows grouped into journals by External ID.
  NetSuite journals are single-currency, so a batch becomes one journal per currency,
  External ID ``<batch_id>/<currency>``.
- :func:`oracle_gl_interface_csv`: Oracle Fusion General Ledger FBDI ``GlInterface.csv``
  (the GL_INTERFACE sheet of JournalImportTemplate.xlsm): positional, no header row.
- :func:`batch_json`: canonical JSON, amounts as integer minor units beside their currency.

Amounts are written from integer minor units with exactly the currency's decimals
(JPY ``1500``, USD ``12.34``, KWD ``1.234``) by integer division: no float anywhere.
A summary line carries normally one side; a line with both a debit and a credit is
written as two rows (debit first), because both ERPs expect one side per journal line.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``;
only ``ledger`` types and helpers. Nothing here reads the clock: every date comes from
the batch, so the same batch always gives the same bytes.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
import re
from collections.abc import Iterator, Mapping
from decimal import Decimal

from ledger.batching import Batch, SummaryLine
from ledger.calendar import first_day
from ledger.errors import InvariantViolation
from ledger.money import exponent

# NetSuite "Journal Entry and Intercompany Journal Entry Header Fields / Line-Level Fields"
# (Oracle NetSuite Help, Journal Entry Import). "Memo" and "Line Memo" both present: the
# Single Journal Entry Import then maps Memo to the body and Line Memo to the line.
NETSUITE_COLUMNS: tuple[str, ...] = (
    "External ID",
    "Subsidiary",
    "Currency",
    "Date",
    "Posting Period",
    "Memo",
    "Account",
    "Debit",
    "Credit",
    "Line Memo",
    "Department",
    "Class",
    "Location",
)

# NetSuite line segment column -> batch dimension key. ``product_family`` is the one
# dimension the batcher keeps by default (BatchPolicy.dimensions); Class is NetSuite's
# usual product-line segment. Dimensions not named here stay out of the NetSuite file.
NETSUITE_SEGMENTS: Mapping[str, str] = {
    "Department": "department",
    "Class": "product_family",
    "Location": "location",
}

# NetSuite's default accounting period names ("Jan 2024"); fixed, not locale-dependent.
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# GL_INTERFACE sheet of the FBDI JournalImportTemplate.xlsm, in template order (1-based
# position = index + 1). Positions 96..149 are later template columns revledger leaves empty.
ORACLE_NAMED_COLUMNS: tuple[str, ...] = (
    "STATUS",
    "LEDGER_ID",
    "ACCOUNTING_DATE",
    "USER_JE_SOURCE_NAME",
    "USER_JE_CATEGORY_NAME",
    "CURRENCY_CODE",
    "DATE_CREATED",
    "ACTUAL_FLAG",
    *(f"SEGMENT{n}" for n in range(1, 31)),
    "ENTERED_DR",
    "ENTERED_CR",
    "ACCOUNTED_DR",
    "ACCOUNTED_CR",
    *(f"REFERENCE{n}" for n in range(1, 11)),
    *(f"REFERENCE{n}" for n in range(21, 31)),
    "STAT_AMOUNT",
    "USER_CURRENCY_CONVERSION_TYPE",
    "CURRENCY_CONVERSION_DATE",
    "CURRENCY_CONVERSION_RATE",
    "GROUP_ID",
    "ATTRIBUTE_CATEGORY",
    *(f"ATTRIBUTE{n}" for n in range(1, 21)),
    "ATTRIBUTE_CATEGORY3",
    "AVERAGE_JOURNAL_FLAG",
    "ORIGINATING_BAL_SEG_VALUE",
    "LEDGER_NAME",
    "ENCUMBRANCE_TYPE_ID",
    "JGZZ_RECON_REF",
    "PERIOD_NAME",
)


# Field count of the template's generated CSV rows (a live-loaded GlInterface.csv has 149).
class LayoutError(ValueError):
    """The batch cannot be written in this layout (its data, not a bug): refuse the batch."""


ORACLE_COLUMN_COUNT = 149
ORACLE_SEGMENT_COUNT = 30

_SEGMENT_SEPARATORS = re.compile(r"[-.]")
# Enough digits for any 64-bit amount ratio; the rate is display data, amounts stay exact.
_RATE_PRECISION = 40
_RATE_PLACES = Decimal("1E-12")


def format_minor(amount_minor: int, currency: str) -> str:
    """``amount_minor`` in major units with exactly ``currency``'s decimals, no float.

    ``format_minor(1234, "USD") == "12.34"``, ``format_minor(1500, "JPY") == "1500"``,
    ``format_minor(1234, "KWD") == "1.234"``.
    """
    if type(amount_minor) is not int:
        raise InvariantViolation(f"amount must be int minor units, got {amount_minor!r}")
    places = exponent(currency)
    sign = "-" if amount_minor < 0 else ""
    units, cents = divmod(abs(amount_minor), 10**places)
    if places == 0:
        return f"{sign}{units}"
    return f"{sign}{units}.{cents:0{places}d}"


def netsuite_journal_csv(batch: Batch, *, date_format: str = "%m/%d/%Y") -> str:
    """NetSuite Journal Entry CSV import file: one journal per currency of ``batch``.

    Args:
        batch: a closed, balanced batch.
        date_format: the importing user's NetSuite Date Format preference (CSV import reads
            dates in it); the default is NetSuite's US default ``M/D/YYYY`` zero-padded.

    Returns:
        CSV text with a header row (:data:`NETSUITE_COLUMNS`), then one row per line side,
        journals in currency order, External ID ``<batch_id>/<currency>``.

    Raises:
        InvariantViolation: a currency's debits and credits differ.
    """
    rows: list[list[str]] = [list(NETSUITE_COLUMNS)]
    period_start = first_day(batch.period)
    period_name = f"{_MONTHS[period_start.month - 1]} {period_start.year}"
    for currency, (debits, credits) in sorted(batch.totals().items()):
        if debits != credits:
            raise InvariantViolation(f"batch {batch.batch_id} {currency}: {debits} != {credits}")
        head = [
            f"{batch.batch_id}/{currency}",
            batch.entity,
            currency,
            batch.last_date.strftime(date_format),
            period_name,
            _memo(batch),
        ]
        for line, debit, credit in _sides(batch.lines, currency):
            dims = dict(line.dimensions)
            segments = [dims.get(key, "") for key in NETSUITE_SEGMENTS.values()]
            rows.append(
                [
                    *head,
                    line.gl_code,
                    format_minor(debit, currency) if debit else "",
                    format_minor(credit, currency) if credit else "",
                    line.account,
                    *segments,
                ]
            )
    return _csv(rows)


def oracle_gl_interface_csv(
    batch: Batch,
    *,
    ledger_id: str,
    source: str = "revledger",
    category: str = "Revenue Subledger",
) -> str:
    """Oracle Fusion GL FBDI ``GlInterface.csv``: no header, :data:`ORACLE_COLUMN_COUNT` fields.

    One row per line side. SEGMENT1..n come from splitting ``gl_code`` on ``-`` or ``.``
    (``"101-10-40100"`` and ``"101.10.40100"`` both give 101, 10, 40100). ENTERED_* are
    transaction amounts, ACCOUNTED_* the batch's functional amounts; a foreign-currency row
    says so with conversion type ``User`` and the exact ratio of the two as its rate.

    Args:
        batch: a closed, balanced batch.
        ledger_id: the Oracle ledger (LEDGER_ID).
        source: journal source (USER_JE_SOURCE_NAME), defined in Oracle beforehand.
        category: journal category (USER_JE_CATEGORY_NAME), defined in Oracle beforehand.

    Raises:
        InvariantViolation: a ``gl_code`` has more than 30 segments or an empty segment.
    """
    accounting_date = _oracle_date(batch.last_date)
    rows: list[list[str]] = []
    for currency in sorted(batch.totals()):
        for index, (line, debit, credit) in enumerate(_sides(batch.lines, currency)):
            values = {
                "STATUS": "NEW",
                "LEDGER_ID": ledger_id,
                "ACCOUNTING_DATE": accounting_date,
                "USER_JE_SOURCE_NAME": source,
                "USER_JE_CATEGORY_NAME": category,
                "CURRENCY_CODE": currency,
                # NOT NULL in GL_INTERFACE; the batch's last date keeps the file reproducible.
                "DATE_CREATED": accounting_date,
                "ACTUAL_FLAG": "A",
                **_segments(line.gl_code),
                **_oracle_amounts(batch, line, debit, credit),
                "REFERENCE1": batch.batch_id,
                "REFERENCE2": _memo(batch),
                "REFERENCE4": f"{batch.batch_id}/{currency}",
                "REFERENCE5": _memo(batch),
                "REFERENCE10": _line_memo(line),
                "REFERENCE21": f"{batch.batch_id}/{currency}/{index + 1}",
            }
            rows.append(_positional(values))
    return _csv(rows)


def batch_json(batch: Batch) -> str:
    """Canonical JSON of ``batch``: sorted keys, compact, amounts as integer minor units.

    Each line carries its ``currency`` beside ``debit_minor``/``credit_minor``; functional
    amounts are in the batch's ``functional_currency``. Dates are ISO ``YYYY-MM-DD``;
    dimensions are ``[key, value]`` pairs in batch order.
    """
    document = {
        "batch_id": batch.batch_id,
        "entity": batch.entity,
        "source_partition": batch.source_partition,
        "sequence": batch.sequence,
        "period": batch.period,
        "first_date": batch.first_date.isoformat(),
        "last_date": batch.last_date.isoformat(),
        "functional_currency": batch.functional_currency,
        "lines": [
            {
                "gl_code": line.gl_code,
                "account": line.account,
                "currency": line.currency,
                "dimensions": [list(pair) for pair in line.dimensions],
                "debit_minor": line.debit_minor,
                "credit_minor": line.credit_minor,
                "functional_debit_minor": line.functional_debit_minor,
                "functional_credit_minor": line.functional_credit_minor,
            }
            for line in batch.lines
        ],
        "entry_ids": list(batch.entry_ids),
        "first_offset": batch.first_offset,
        "last_offset": batch.last_offset,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _sides(lines: tuple[SummaryLine, ...], currency: str) -> Iterator[tuple[SummaryLine, int, int]]:
    """(line, debit, credit) per non-zero side of ``currency``'s lines, debit side first."""
    for line in lines:
        if line.currency != currency:
            continue
        if line.debit_minor:
            yield line, line.debit_minor, 0
        if line.credit_minor:
            yield line, 0, line.credit_minor


def _memo(batch: Batch) -> str:
    return (
        f"revledger {batch.batch_id} {batch.period}: {len(batch.entry_ids)} entries, "
        f"partition {batch.source_partition} entry positions"
        f" {batch.first_offset}-{batch.last_offset}"
    )


def _line_memo(line: SummaryLine) -> str:
    return " ".join([line.account, *(f"{key}={value}" for key, value in line.dimensions)])


def _segments(gl_code: str) -> dict[str, str]:
    parts = _SEGMENT_SEPARATORS.split(gl_code)
    # A GL mapping is reference data: a code the layout cannot carry is bad input.
    if len(parts) > ORACLE_SEGMENT_COUNT:
        raise LayoutError(f"gl_code {gl_code!r} has more than 30 segments")
    if not all(parts):
        raise LayoutError(f"gl_code {gl_code!r} has an empty segment")
    return {f"SEGMENT{n}": part for n, part in enumerate(parts, start=1)}


def _oracle_amounts(batch: Batch, line: SummaryLine, debit: int, credit: int) -> dict[str, str]:
    functional = batch.functional_currency
    # A two-sided line is split in _sides; its functional amounts split with it.
    functional_debit = line.functional_debit_minor if debit else 0
    functional_credit = line.functional_credit_minor if credit else 0
    values = {
        "ENTERED_DR": format_minor(debit, line.currency) if debit else "",
        "ENTERED_CR": format_minor(credit, line.currency) if credit else "",
        "ACCOUNTED_DR": format_minor(functional_debit, functional) if debit else "",
        "ACCOUNTED_CR": format_minor(functional_credit, functional) if credit else "",
    }
    if line.currency != functional:
        values["USER_CURRENCY_CONVERSION_TYPE"] = "User"
        values["CURRENCY_CONVERSION_DATE"] = _oracle_date(batch.last_date)
        values["CURRENCY_CONVERSION_RATE"] = _rate(
            debit or credit, line.currency, functional_debit or functional_credit, functional
        )
    return values


def _rate(entered_minor: int, currency: str, accounted_minor: int, functional: str) -> str:
    """Functional units per transaction unit, from the two exact amounts, 12 places."""
    with decimal.localcontext() as context:
        context.prec = _RATE_PRECISION
        entered = Decimal(entered_minor).scaleb(-exponent(currency))
        accounted = Decimal(accounted_minor).scaleb(-exponent(functional))
        rate = (accounted / entered).quantize(_RATE_PLACES)
    return format(rate.normalize(), "f")


def _oracle_date(day: dt.date) -> str:
    return f"{day.year:04d}/{day.month:02d}/{day.day:02d}"


def _positional(values: Mapping[str, str]) -> list[str]:
    unknown = set(values) - set(ORACLE_NAMED_COLUMNS)
    if unknown:
        raise InvariantViolation(f"not GL_INTERFACE columns: {sorted(unknown)}")
    row = [values.get(name, "") for name in ORACLE_NAMED_COLUMNS]
    return row + [""] * (ORACLE_COLUMN_COUNT - len(row))


def _csv(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows(rows)
    return buffer.getvalue()
