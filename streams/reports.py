"""``revledger tb | activity | aging | rollforward | waterfall | statement | trace | periods``.

The accountants' reports on the command line: each command runs one function of
:mod:`connectors.postgres.queries` (views only, bound parameters) in a read-only,
repeatable-read transaction, and prints it as ``--format table`` (default), ``csv`` or
``json``.

Amounts are integer minor units in the database and shown with their currency's
decimals (``ledger.money.exponent``: USD 2, JPY 0, KWD 3), never through a float:

* ``table``: for people, digits grouped: ``1,234.56``, ``-80.00``; a report may add
  sections (totals, entries) after its rows;
* ``csv``: the report's rows only, one header line, plain decimals: ``1234.56``;
* ``json``: ``{"report": ..., <its arguments>, "rows": [...], <other sections>}``, amounts
  as plain decimal strings (``"1234.56"``, exact), dates as ``YYYY-MM-DD``.

Each amount column has a currency column beside it (``currency``, ``functional_currency``).

Exit codes: 0 done; 1 the database is unreachable or failed; 2 a bad argument (a date not
``YYYY-MM-DD``, a period not ``YYYY-MM``) or an unknown entity, customer, period, account
or trace reference, with one line on stderr. The database: ``--database-url``, else
``DATABASE_URL``, else the dev stack's (``revledger dev up``).

Wiring: ``streams.cli`` calls :func:`add_report_commands` on its sub-parsers and, for a
command in :data:`REPORT_COMMANDS`, returns :func:`main_report`. ``python -m
streams.reports tb --entity US1`` runs the same without ``streams.cli``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

# Imports of the domain and psycopg happen inside the functions: streams.cli builds its
# parser with add_report_commands for every command, reports or not.
REPORT_COMMANDS = (
    "tb",
    "activity",
    "aging",
    "rollforward",
    "waterfall",
    "statement",
    "trace",
    "periods",
)
FORMATS = ("table", "csv", "json")
EXIT_OK = 0
EXIT_DATABASE = 1
EXIT_USAGE = 2
# A report is read in one snapshot; an unreachable server must fail within seconds.
CONNECT_TIMEOUT_SECONDS = 10
# Table cells longer than this are cut (descriptions): a row must stay on one line.
MAX_TABLE_CELL = 48


# --- report model and rendering --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Column:
    """A column: ``kind`` is text, int, date or amount (minor units in ``currency``'s column)."""

    name: str
    kind: str = "text"
    currency: str | None = None


@dataclass(frozen=True, slots=True)
class Section:
    """Rows of one shape; rows are dicts by column name."""

    name: str
    columns: tuple[Column, ...]
    rows: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Report:
    """A printed report: a title, its arguments, its rows and any further sections."""

    name: str
    title: str
    arguments: dict[str, Any]
    main: Section
    extra: tuple[Section, ...] = field(default=())


def group_digits(plain: str) -> str:
    """``"-1234567.89"`` -> ``"-1,234,567.89"``."""
    sign = "-" if plain.startswith("-") else ""
    whole, dot, fraction = plain.lstrip("-").partition(".")
    grouped = f"{int(whole):,}"
    return f"{sign}{grouped}{dot}{fraction}"


def format_amount(amount_minor: int, currency: str, *, grouped: bool) -> str:
    """Minor units as a decimal with ``currency``'s decimals; digits grouped if asked."""
    from connectors.erp.formats import format_minor

    plain = format_minor(int(amount_minor), currency)
    return group_digits(plain) if grouped else plain


def _cell(column: Column, row: dict[str, Any], *, grouped: bool) -> Any:
    value = row.get(column.name)
    if value is None:
        return None
    if column.kind == "amount":
        currency = row.get(column.currency or "currency")
        if not currency:
            return str(value)
        return format_amount(value, currency, grouped=grouped)
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return value


def render_table(report: Report) -> str:
    """Aligned columns for people: amounts and numbers right, text left."""
    out = [report.title]
    for section in (report.main, *report.extra):
        out.append("")
        if section is not report.main:
            out.append(section.name)
        out.extend(_table_lines(section))
    return "\n".join(out) + "\n"


def _table_lines(section: Section) -> list[str]:
    header = [column.name for column in section.columns]
    body = []
    for row in section.rows:
        cells = []
        for column in section.columns:
            value = _cell(column, row, grouped=True)
            text = "" if value is None else str(value)
            if len(text) > MAX_TABLE_CELL:
                text = text[: MAX_TABLE_CELL - 1] + "…"
            cells.append(text)
        body.append(cells)
    if not body:
        return ["  ".join(header).rstrip(), "(no rows)"]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    right = [column.kind in ("amount", "int") for column in section.columns]

    def line(cells: list[str]) -> str:
        parts = [
            cell.rjust(width) if flush else cell.ljust(width)
            for cell, width, flush in zip(cells, widths, right, strict=True)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return [line(header), rule, *(line(cells) for cells in body)]


def render_csv(report: Report) -> str:
    """The report's rows (not its extra sections) as CSV with a header line."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([column.name for column in report.main.columns])
    for row in report.main.rows:
        cells = [_cell(column, row, grouped=False) for column in report.main.columns]
        writer.writerow(["" if cell is None else cell for cell in cells])
    return buffer.getvalue()


def render_json(report: Report) -> str:
    """One JSON object: report name, arguments, ``rows`` and each extra section."""

    def rows(section: Section) -> list[dict[str, Any]]:
        return [
            {column.name: _cell(column, row, grouped=False) for column in section.columns}
            for row in section.rows
        ]

    document: dict[str, Any] = {"report": report.name}
    document.update({key: _json_value(value) for key, value in report.arguments.items()})
    document["rows"] = rows(report.main)
    for section in report.extra:
        document[section.name] = rows(section)
    return json.dumps(document, indent=2) + "\n"


def _json_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date) else value


RENDERERS: dict[str, Callable[[Report], str]] = {
    "table": render_table,
    "csv": render_csv,
    "json": render_json,
}


# --- arguments -------------------------------------------------------------------------------


class UsageError(ValueError):
    """A malformed argument: a date not YYYY-MM-DD, a period not YYYY-MM."""


def parse_date(text: str | None, flag: str) -> dt.date | None:
    """``YYYY-MM-DD`` or None.

    Raises:
        UsageError: anything else.
    """
    if text is None:
        return None
    try:
        if len(text) != 10:
            raise ValueError(text)
        return dt.date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{flag} must be a date YYYY-MM-DD, got {text!r}") from None


def parse_period_range(text: str) -> tuple[str, str]:
    """``YYYY-MM`` or ``YYYY-MM..YYYY-MM`` as (first, last).

    Raises:
        UsageError: neither.
    """
    from connectors.postgres.queries import check_period

    first, dots, last = text.partition("..")
    try:
        pair = (check_period(first), check_period(last if dots else first))
    except ValueError:
        raise UsageError(f"--period must be YYYY-MM or YYYY-MM..YYYY-MM, got {text!r}") from None
    if pair[0] > pair[1]:
        raise UsageError(f"--period {text}: the first period is after the last")
    return pair


def _one_period(text: str | None) -> str | None:
    if text is None:
        return None
    first, last = parse_period_range(text)
    if first != last:
        raise UsageError(f"--period takes one period YYYY-MM here, got {text!r}")
    return first


def add_report_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register the report commands (:data:`REPORT_COMMANDS`) on ``subparsers``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--format", choices=FORMATS, default="table")
    common.add_argument(
        "--database-url",
        default=None,
        metavar="URL",
        help="default: DATABASE_URL, else the dev stack's database",
    )
    entity = argparse.ArgumentParser(add_help=False)
    entity.add_argument("--entity", required=True, help="legal entity, e.g. US1")

    def command(name: str, text: str, *parents: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser = subparsers.add_parser(
            name, help=text, description=text, parents=[*parents, common]
        )
        parser.set_defaults(report=name)
        return parser

    tb = command("tb", "trial balance of an entity as of a date", entity)
    _as_of_or_period(tb)
    activity = command("activity", "lines of one account with running balances", entity)
    activity.add_argument("--account", required=True, help="logical account, e.g. revenue")
    activity.add_argument("--from", dest="date_from", metavar="YYYY-MM-DD", default=None)
    activity.add_argument("--to", dest="date_to", metavar="YYYY-MM-DD", default=None)
    activity.add_argument("--period", metavar="YYYY-MM", default=None, help="instead of dates")
    aging = command("aging", "accounts receivable aging by due date", entity)
    aging.add_argument(
        "--as-of", metavar="YYYY-MM-DD", default=None, help="default: latest posting"
    )
    rollforward = command("rollforward", "deferred revenue roll-forward per period", entity)
    rollforward.add_argument(
        "--period", metavar="YYYY-MM[..YYYY-MM]", default=None, help="default: all periods"
    )
    waterfall = command("waterfall", "revenue recognised by month and scheduled after", entity)
    _as_of_or_period(waterfall)
    waterfall.add_argument("--by-contract", action="store_true", help="one row per contract")
    statement = command("statement", "a customer's receivable movements and balance")
    statement.add_argument("--customer", required=True)
    statement.add_argument("--as-of", metavar="YYYY-MM-DD", default=None)
    trace = command("trace", "an ERP batch, entry or event: its entries and source events")
    trace.add_argument("ref", metavar="BATCH_ID|ENTRY_ID|EVENT_ID")
    command("periods", "accounting periods of an entity: status and entries", entity)


def _as_of_or_period(parser: argparse.ArgumentParser) -> None:
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--as-of", metavar="YYYY-MM-DD", default=None, help="default: every entry")
    when.add_argument("--period", metavar="YYYY-MM", default=None, help="as of its last day")


# --- reports ---------------------------------------------------------------------------------


def _amount(name: str, currency: str = "currency") -> Column:
    return Column(name, "amount", currency)


def _as_of(conn: Any, args: argparse.Namespace, entity: str) -> dt.date | None:
    """--as-of, or the last day of --period (a known period), or None."""
    from connectors.postgres import queries

    as_of = parse_date(getattr(args, "as_of", None), "--as-of")
    period = _one_period(getattr(args, "period", None))
    if period is not None:
        queries.require_entity(conn, entity)
        as_of = queries.last_day(queries.require_period(conn, entity, period))
    return as_of


def report_tb(conn: Any, args: argparse.Namespace) -> Report:
    """``revledger tb``: net balance per account and currency, debit or credit."""
    from connectors.postgres import queries

    as_of = _as_of(conn, args, args.entity)
    lines = queries.trial_balance(conn, args.entity, as_of)
    rows = [
        {
            "account": line.account,
            "currency": line.currency,
            "debit": max(line.balance_minor, 0),
            "credit": max(-line.balance_minor, 0),
            "functional_currency": line.functional_currency,
            "functional_debit": max(line.functional_balance_minor, 0),
            "functional_credit": max(-line.functional_balance_minor, 0),
        }
        for line in lines
    ]
    columns = (
        Column("account"),
        Column("currency"),
        _amount("debit"),
        _amount("credit"),
        Column("functional_currency"),
        _amount("functional_debit", "functional_currency"),
        _amount("functional_credit", "functional_currency"),
    )
    totals = _tb_totals(rows)
    shown = as_of.isoformat() if as_of else "latest"
    return Report(
        "tb",
        f"Trial balance {args.entity} as of {shown}",
        {"entity": args.entity, "as_of": as_of},
        Section("rows", columns, rows),
        (Section("totals", columns, totals),),
    )


def _tb_totals(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per transaction currency and in the functional currency: debits and credits."""
    by_currency: dict[str, list[int]] = {}
    functional: dict[str, list[int]] = {}
    for row in rows:
        pair = by_currency.setdefault(row["currency"], [0, 0])
        pair[0] += row["debit"]
        pair[1] += row["credit"]
        f_pair = functional.setdefault(row["functional_currency"], [0, 0])
        f_pair[0] += row["functional_debit"]
        f_pair[1] += row["functional_credit"]
    totals: list[dict[str, Any]] = [
        {"account": "total", "currency": currency, "debit": debit, "credit": credit}
        for currency, (debit, credit) in sorted(by_currency.items())
    ]
    totals += [
        {
            "account": "total functional",
            "functional_currency": currency,
            "functional_debit": debit,
            "functional_credit": credit,
        }
        for currency, (debit, credit) in sorted(functional.items())
    ]
    return totals


def report_activity(conn: Any, args: argparse.Namespace) -> Report:
    """``revledger activity``: opening balances, then each line with running balances."""
    from connectors.postgres import queries
    from ledger.calendar import first_day

    date_from = parse_date(args.date_from, "--from")
    date_to = parse_date(args.date_to, "--to")
    period = _one_period(args.period)
    if period is not None:
        if date_from or date_to:
            raise UsageError("give --period or --from/--to, not both")
        queries.require_entity(conn, args.entity)
        queries.require_period(conn, args.entity, period)
        date_from, date_to = first_day(period), queries.last_day(period)
    activity = queries.account_activity(conn, args.entity, args.account, date_from, date_to)
    rows: list[dict[str, Any]] = [
        {
            "order": 0,
            "date": date_from,
            "description": "opening balance",
            "currency": opening.currency,
            "balance": opening.balance_minor,
            "functional_balance": opening.functional_balance_minor,
        }
        for opening in activity.openings
    ]
    rows += [
        {
            "order": line.running_order,
            "date": line.posting_date,
            "entry_id": line.entry_id,
            "line_no": line.line_no,
            "rule": line.rule,
            "customer": line.customer_id,
            "description": line.description,
            "currency": line.currency,
            "debit": line.debit_minor,
            "credit": line.credit_minor,
            "balance": line.balance_minor,
            "functional_currency": line.functional_currency,
            "functional_debit": line.functional_debit_minor,
            "functional_credit": line.functional_credit_minor,
            "functional_balance": line.functional_balance_minor,
        }
        for line in activity.lines
    ]
    functional = activity.lines[0].functional_currency if activity.lines else None
    for row in rows:
        row.setdefault("functional_currency", functional)
    columns = (
        Column("order", "int"),
        Column("date"),
        Column("entry_id"),
        Column("line_no", "int"),
        Column("rule"),
        Column("customer"),
        Column("description"),
        Column("currency"),
        _amount("debit"),
        _amount("credit"),
        _amount("balance"),
        Column("functional_currency"),
        _amount("functional_debit", "functional_currency"),
        _amount("functional_credit", "functional_currency"),
        _amount("functional_balance", "functional_currency"),
    )
    span = f"{date_from or 'start'} to {date_to or 'latest'}"
    return Report(
        "activity",
        f"Account activity {args.entity} {args.account} {span}",
        {"entity": args.entity, "account": args.account, "from": date_from, "to": date_to},
        Section("rows", columns, rows),
    )


def _default_as_of(conn: Any, entity: str, as_of: dt.date | None) -> dt.date:
    """``as_of``, else the entity's latest posting date (checks the entity first)."""
    from connectors.postgres import queries

    if as_of is not None:
        return as_of
    queries.require_entity(conn, entity)
    return queries.latest_posting_date(conn, entity) or dt.date.today()


def report_aging(conn: Any, args: argparse.Namespace) -> Report:
    """``revledger aging``: open invoices by bucket, then totals per currency."""
    from connectors.postgres import queries

    as_of = _default_as_of(conn, args.entity, parse_date(args.as_of, "--as-of"))
    items = queries.ar_aging(conn, args.entity, as_of)
    rows = [
        {
            "customer": item.customer_id,
            "invoice_id": item.invoice_id,
            "currency": item.currency,
            "issue_date": item.issue_date,
            "due_date": item.due_date,
            "days_past_due": item.days_past_due,
            "bucket": item.bucket,
            "amount_due": item.amount_due_minor,
            "functional_currency": item.functional_currency,
            "functional_amount_due": item.functional_amount_due_minor,
        }
        for item in items
    ]
    columns = (
        Column("customer"),
        Column("invoice_id"),
        Column("currency"),
        Column("issue_date"),
        Column("due_date"),
        Column("days_past_due", "int"),
        Column("bucket"),
        _amount("amount_due"),
        Column("functional_currency"),
        _amount("functional_amount_due", "functional_currency"),
    )
    totals = [
        {
            "currency": total.currency,
            "current": total.current_minor,
            "1-30": total.days_1_30_minor,
            "31-60": total.days_31_60_minor,
            "61-90": total.days_61_90_minor,
            "90+": total.days_over_90_minor,
            "total": total.total_minor,
        }
        for total in queries.aging_totals(items)
    ]
    total_columns = (
        Column("currency"),
        *(_amount(name) for name in ("current", "1-30", "31-60", "61-90", "90+", "total")),
    )
    return Report(
        "aging",
        f"AR aging {args.entity} as of {as_of.isoformat()}",
        {"entity": args.entity, "as_of": as_of},
        Section("rows", columns, rows),
        (Section("totals", total_columns, totals),),
    )


def report_rollforward(conn: Any, args: argparse.Namespace) -> Report:
    """``revledger rollforward``: deferred revenue per currency and period."""
    from connectors.postgres import queries

    first, last = parse_period_range(args.period) if args.period else (None, None)
    lines = queries.deferred_rollforward(conn, args.entity, first, last)
    rows = [
        {
            "currency": line.currency,
            "period": line.period,
            "opening": line.opening_minor,
            "billings": line.billings_minor,
            "recognised": line.recognised_minor,
            "adjustments": line.adjustments_minor,
            "closing": line.closing_minor,
            "unclassified": line.unclassified_minor,
            "functional_currency": line.functional_currency,
            "functional_opening": line.functional_opening_minor,
            "functional_billings": line.functional_billings_minor,
            "functional_recognised": line.functional_recognised_minor,
            "functional_adjustments": line.functional_adjustments_minor,
            "functional_closing": line.functional_closing_minor,
        }
        for line in lines
    ]
    columns = (
        Column("currency"),
        Column("period"),
        *(_amount(n) for n in ("opening", "billings", "recognised", "adjustments", "closing")),
        _amount("unclassified"),
        Column("functional_currency"),
        *(
            _amount(f"functional_{n}", "functional_currency")
            for n in ("opening", "billings", "recognised", "adjustments", "closing")
        ),
    )
    span = args.period or "all periods"
    return Report(
        "rollforward",
        f"Deferred revenue roll-forward {args.entity} {span}"
        " (closing = opening + billings - recognised + adjustments)",
        {"entity": args.entity, "period_from": first, "period_to": last},
        Section("rows", columns, rows),
    )


def report_waterfall(conn: Any, args: argparse.Namespace) -> Report:
    """``revledger waterfall``: per currency and period, or per contract."""
    from connectors.postgres import queries

    as_of = _default_as_of(conn, args.entity, _as_of(conn, args, args.entity))
    lines = queries.waterfall(conn, args.entity, as_of)
    title = f"Revenue waterfall {args.entity} as of {as_of.isoformat()}"
    arguments = {"entity": args.entity, "as_of": as_of}
    if args.by_contract:
        rows = [
            {
                "kind": line.kind,
                "currency": line.currency,
                "period": line.period,
                "customer": line.customer_id,
                "contract_id": line.contract_id,
                "amount": line.amount_minor,
            }
            for line in lines
        ]
        columns = (
            Column("kind"),
            Column("currency"),
            Column("period"),
            Column("customer"),
            Column("contract_id"),
            _amount("amount"),
        )
        return Report("waterfall", title, arguments, Section("rows", columns, rows))
    rows = [
        {
            "currency": line.currency,
            "period": line.period,
            "recognised": line.recognised_minor,
            "scheduled": line.scheduled_minor,
        }
        for line in queries.waterfall_by_period(lines)
    ]
    columns = (Column("currency"), Column("period"), _amount("recognised"), _amount("scheduled"))
    return Report("waterfall", title, arguments, Section("rows", columns, rows))


def report_statement(conn: Any, args: argparse.Namespace) -> Report:
    """``revledger statement``: a customer's movements with running balances."""
    from connectors.postgres import queries

    as_of = parse_date(args.as_of, "--as-of")
    lines = queries.statement(conn, args.customer, as_of)
    rows = [
        {
            "entity": line.entity,
            "currency": line.currency,
            "date": line.posting_date,
            "document": line.document_type,
            "document_id": line.document_id,
            "invoice_id": line.invoice_id,
            "account": line.account,
            "description": line.description,
            "debit": line.debit_minor,
            "credit": line.credit_minor,
            "balance": line.balance_minor,
        }
        for line in lines
    ]
    columns = (
        Column("entity"),
        Column("currency"),
        Column("date"),
        Column("document"),
        Column("document_id"),
        Column("invoice_id"),
        Column("account"),
        Column("description"),
        _amount("debit"),
        _amount("credit"),
        _amount("balance"),
    )
    shown = as_of.isoformat() if as_of else "latest"
    return Report(
        "statement",
        f"Statement of customer {args.customer} as of {shown}",
        {"customer": args.customer, "as_of": as_of},
        Section("rows", columns, rows),
    )


def report_trace(conn: Any, args: argparse.Namespace) -> Report:
    """``revledger trace``: journal lines, then the entries and their source events."""
    from connectors.postgres import queries

    found = queries.trace(conn, args.ref)
    rows = [
        {
            "batch_id": row.batch_id,
            "batch_line_no": row.batch_line_no,
            "gl_code": row.gl_code,
            "entry_id": row.entry_id,
            "line_no": row.line_no,
            "date": row.posting_date,
            "rule": row.rule,
            "account": row.account,
            "side": row.side,
            "currency": row.currency,
            "amount": row.amount_minor,
            "functional_currency": row.functional_currency,
            "functional_amount": row.functional_amount_minor,
            "customer": row.customer_id,
            "source_event_id": row.source_event_id,
            "origin_event_id": row.origin_event_id,
        }
        for row in found.rows
    ]
    columns = (
        Column("batch_id"),
        Column("batch_line_no", "int"),
        Column("gl_code"),
        Column("entry_id"),
        Column("line_no", "int"),
        Column("date"),
        Column("rule"),
        Column("account"),
        Column("side"),
        Column("currency"),
        _amount("amount"),
        Column("functional_currency"),
        _amount("functional_amount", "functional_currency"),
        Column("customer"),
        Column("source_event_id"),
        Column("origin_event_id"),
    )
    entries = _trace_entries(found.rows)
    entry_columns = tuple(
        Column(name, "int" if name == "origin_offset" else "text")
        for name in (
            "entry_id",
            "entity",
            "customer",
            "date",
            "rule",
            "entry_record",
            "source_event_id",
            "origin_event_id",
            "origin_event_type",
            "origin_record",
        )
    )
    status = found.batch_status
    arguments: dict[str, Any] = {"ref": args.ref, "kind": found.kind}
    title = f"Trace of {found.kind} {args.ref}: {len(entries)} entries"
    if status is not None:
        acks = f"{status.ack_count} ack{'s' if status.ack_count != 1 else ''}"
        document = f" {status.erp_document_id}" if status.erp_document_id else ""
        title += f"; ERP {status.status}{document} ({acks})"
        arguments["erp_status"] = status.status
        arguments["erp_document_id"] = status.erp_document_id
    return Report(
        "trace",
        title,
        arguments,
        Section("rows", columns, rows),
        (Section("entries", entry_columns, entries),),
    )


def _trace_entries(rows: Iterable[Any]) -> list[dict[str, Any]]:
    entries: dict[str, dict[str, Any]] = {}
    for row in rows:
        origin = (
            f"{row.origin_topic}[{row.origin_partition}]@{row.origin_offset}"
            if row.origin_event_id
            else None
        )
        entries.setdefault(
            row.entry_id,
            {
                "entry_id": row.entry_id,
                "entity": row.entity,
                "customer": row.customer_id,
                "date": row.posting_date,
                "rule": row.rule,
                "entry_record": f"{row.entry_topic}[{row.entry_partition}]@{row.entry_offset}",
                "source_event_id": row.source_event_id,
                "origin_event_id": row.origin_event_id,
                "origin_event_type": row.origin_event_type,
                "origin_record": origin,
            },
        )
    return list(entries.values())


def report_periods(conn: Any, args: argparse.Namespace) -> Report:
    """``revledger periods``: status, closing date and entries per period."""
    from connectors.postgres import queries

    lines = queries.periods(conn, args.entity)
    rows = [
        {
            "period": line.period,
            "status": line.status,
            "closed_on": line.closed_on,
            "entries": line.entry_count,
            "first_posting_date": line.first_posting_date,
            "last_posting_date": line.last_posting_date,
        }
        for line in lines
    ]
    columns = (
        Column("period"),
        Column("status"),
        Column("closed_on"),
        Column("entries", "int"),
        Column("first_posting_date"),
        Column("last_posting_date"),
    )
    return Report(
        "periods",
        f"Periods of {args.entity}",
        {"entity": args.entity},
        Section("rows", columns, rows),
    )


REPORTS: dict[str, Callable[[Any, argparse.Namespace], Report]] = {
    "tb": report_tb,
    "activity": report_activity,
    "aging": report_aging,
    "rollforward": report_rollforward,
    "waterfall": report_waterfall,
    "statement": report_statement,
    "trace": report_trace,
    "periods": report_periods,
}


# --- running ---------------------------------------------------------------------------------


def database_url(args: argparse.Namespace) -> str | None:
    """``--database-url``, else ``DATABASE_URL``, else the dev stack's; None if none."""
    from streams.devstack_env import settings_from_devstack

    if args.database_url:
        return args.database_url
    return settings_from_devstack().database_url


def run_report(conninfo: str, args: argparse.Namespace) -> str:
    """Connect, build the report in one read-only snapshot, and render it.

    Raises:
        psycopg.OperationalError: the database is unreachable.
        ReportError, UsageError, ValueError: a bad or unknown argument.
    """
    import psycopg

    with psycopg.connect(
        conninfo,
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        application_name=f"revledger-{args.report}",
    ) as conn:
        conn.read_only = True
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        try:
            report = REPORTS[args.report](conn, args)
        finally:
            conn.rollback()
    return RENDERERS[args.format](report)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def main_report(args: argparse.Namespace, out: Callable[[str], Any] | None = None) -> int:
    """Run the report command ``args.report``; see the module docstring for exit codes."""
    import psycopg

    from connectors.postgres.migrate import describe_conninfo
    from connectors.postgres.queries import ReportError
    from streams.settings import SettingsError

    name = f"revledger {args.report}"
    try:
        url = database_url(args)
    except SettingsError as exc:
        print(f"{name}: {_one_line(exc)}", file=sys.stderr)
        return EXIT_DATABASE
    if not url:
        print(
            f"{name}: no database: pass --database-url, set DATABASE_URL"
            " or start the dev stack (revledger dev up)",
            file=sys.stderr,
        )
        return EXIT_DATABASE
    try:
        text = run_report(url, args)
    except (ReportError, ValueError) as exc:
        print(f"{name}: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except psycopg.OperationalError as exc:
        print(f"{name}: cannot read {describe_conninfo(url)}: {_one_line(exc)}", file=sys.stderr)
        return EXIT_DATABASE
    except psycopg.Error as exc:
        print(f"{name}: {describe_conninfo(url)}: {_one_line(exc)}", file=sys.stderr)
        return EXIT_DATABASE
    (out or sys.stdout.write)(text)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m streams.reports COMMAND ...``: the report commands without streams.cli."""
    parser = argparse.ArgumentParser(prog="revledger", description="accountants' reports")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_report_commands(commands)
    return main_report(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
