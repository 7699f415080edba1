"""The accountants' reports: one function per report, over the views of ``0006_views.sql``.

Every function takes an open psycopg connection and reads VIEWS only, so a connection as
``revledger_reader`` runs them all; every argument is a bound parameter, and the SQL text
is fixed (composed from constant fragments only). Results are small frozen dataclasses
of integer minor units beside their currency: formatting is the caller's business
(``streams/reports.py``).

Reports: :func:`trial_balance`, :func:`account_activity`, :func:`ar_aging`,
:func:`deferred_rollforward`, :func:`waterfall`, :func:`statement`, :func:`trace`,
:func:`periods`, :func:`dlq_summary`.

Errors::

    ReportError (LookupError)        a name the database does not know
    ├── UnknownEntity                no entry and no period of that entity
    ├── UnknownCustomer              no entry of that customer
    ├── UnknownPeriod                a period outside the entity's known periods
    ├── UnknownAccount               not an account of the chart (ledger.accounts.Account)
    └── UnknownReference             trace: no batch, entry or event by that id
    ValueError                       a malformed argument (a period not YYYY-MM)
    InvariantViolation               a view broke its own sum (roll-forward): a bug

Must not import: faust, aiokafka, confluent_kafka, anything under ``streams``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from ledger.accounts import Account
from ledger.calendar import first_day, next_period, period_of
from ledger.errors import InvariantViolation

_PERIOD = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")
# AR aging buckets: (label, lowest days past due, highest or None); "current" is not yet due.
AGING_BUCKETS: tuple[tuple[str, int | None, int | None], ...] = (
    ("current", None, 0),
    ("1-30", 1, 30),
    ("31-60", 31, 60),
    ("61-90", 61, 90),
    ("90+", 91, None),
)
_CHART = {account.value: position for position, account in enumerate(Account)}


class ReportError(LookupError):
    """A report was asked about something the database does not know."""


class UnknownEntity(ReportError):
    """Raised when no entry and no period of the entity is in the database."""


class UnknownCustomer(ReportError):
    """Raised when no entry of the customer is in the database."""


class UnknownPeriod(ReportError):
    """Raised when a period lies outside the entity's first and last known periods."""


class UnknownAccount(ReportError):
    """Raised when an account is not one of the chart's logical accounts."""


class UnknownReference(ReportError):
    """Raised by :func:`trace` when no batch, entry or event has the id."""


# --- results ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrialBalanceRow:
    """Totals of one account in one transaction currency through the as-of date."""

    account: str
    currency: str
    functional_currency: str
    debits_minor: int
    credits_minor: int
    functional_debits_minor: int
    functional_credits_minor: int

    @property
    def balance_minor(self) -> int:
        """Debits minus credits: positive is a debit balance."""
        return self.debits_minor - self.credits_minor

    @property
    def functional_balance_minor(self) -> int:
        """Functional debits minus functional credits."""
        return self.functional_debits_minor - self.functional_credits_minor


@dataclass(frozen=True, slots=True)
class Opening:
    """Balance of an account in one currency before a report's first day (debit positive)."""

    currency: str
    balance_minor: int
    functional_balance_minor: int


@dataclass(frozen=True, slots=True)
class ActivityLine:
    """One line of an account, with the running balances after it (debit positive)."""

    running_order: int
    posting_date: dt.date
    entry_id: str
    line_no: int
    rule: str
    description: str
    customer_id: str
    source_event_id: str
    currency: str
    debit_minor: int
    credit_minor: int
    balance_minor: int
    functional_currency: str
    functional_debit_minor: int
    functional_credit_minor: int
    functional_balance_minor: int


@dataclass(frozen=True, slots=True)
class AccountActivity:
    """An account's lines between two dates, after its opening balances per currency."""

    entity: str
    account: str
    date_from: dt.date | None
    date_to: dt.date | None
    openings: tuple[Opening, ...]
    lines: tuple[ActivityLine, ...]


@dataclass(frozen=True, slots=True)
class AgingRow:
    """What is due on one invoice as of a date, and how late it is."""

    invoice_id: str | None
    customer_id: str
    currency: str
    issue_date: dt.date
    due_date: dt.date
    days_past_due: int
    bucket: str
    amount_due_minor: int
    functional_currency: str
    functional_amount_due_minor: int


@dataclass(frozen=True, slots=True)
class AgingTotal:
    """Amounts due per bucket in one currency."""

    currency: str
    current_minor: int
    days_1_30_minor: int
    days_31_60_minor: int
    days_61_90_minor: int
    days_over_90_minor: int

    @property
    def total_minor(self) -> int:
        """All buckets together."""
        return (
            self.current_minor
            + self.days_1_30_minor
            + self.days_31_60_minor
            + self.days_61_90_minor
            + self.days_over_90_minor
        )


@dataclass(frozen=True, slots=True)
class RollforwardRow:
    """Deferred revenue of one currency over one period.

    ``closing = opening + billings - recognised + adjustments`` in both amounts;
    ``unclassified_minor`` is the part of the adjustments from rules no list names.
    """

    currency: str
    functional_currency: str
    period: str
    opening_minor: int
    billings_minor: int
    recognised_minor: int
    adjustments_minor: int
    closing_minor: int
    unclassified_minor: int
    functional_opening_minor: int
    functional_billings_minor: int
    functional_recognised_minor: int
    functional_adjustments_minor: int
    functional_closing_minor: int


@dataclass(frozen=True, slots=True)
class WaterfallRow:
    """Revenue of one contract in one period: ``recognised`` (booked) or ``scheduled``."""

    kind: str
    currency: str
    period: str
    customer_id: str
    contract_id: str | None
    amount_minor: int


@dataclass(frozen=True, slots=True)
class WaterfallPeriod:
    """Revenue of one currency in one period, recognised and scheduled."""

    currency: str
    period: str
    recognised_minor: int
    scheduled_minor: int


@dataclass(frozen=True, slots=True)
class StatementLine:
    """One movement of a customer's balance, with the balance after it (owed positive)."""

    entity: str
    currency: str
    posting_date: dt.date
    document_type: str
    document_id: str
    invoice_id: str | None
    account: str
    description: str
    entry_id: str
    line_no: int
    debit_minor: int
    credit_minor: int
    balance_minor: int


@dataclass(frozen=True, slots=True)
class TraceRow:
    """A journal line with its ERP batch line (if batched) and its source event (if known)."""

    batch_id: str | None
    batch_line_no: int | None
    gl_code: str | None
    entity: str
    entry_id: str
    line_no: int
    account: str
    currency: str
    side: str
    amount_minor: int
    functional_currency: str
    functional_amount_minor: int
    posting_date: dt.date
    rule: str
    customer_id: str
    source_event_id: str
    entry_topic: str
    entry_partition: int
    entry_offset: int
    origin_event_id: str | None
    origin_event_type: str | None
    origin_topic: str | None
    origin_partition: int | None
    origin_offset: int | None


@dataclass(frozen=True, slots=True)
class BatchStatus:
    """The latest ERP answer on a batch (view ``erp_batch_status``)."""

    batch_id: str
    status: str
    erp_document_id: str | None
    message: str | None
    acknowledged_at: dt.datetime
    ack_count: int


@dataclass(frozen=True, slots=True)
class Trace:
    """What :func:`trace` found: ``kind`` is ``batch``, ``entry`` or ``event``."""

    ref: str
    kind: str
    rows: tuple[TraceRow, ...]
    batch_status: BatchStatus | None

    @property
    def entry_ids(self) -> tuple[str, ...]:
        """The entries, in the order of the rows, each once."""
        return tuple(dict.fromkeys(row.entry_id for row in self.rows))

    @property
    def origin_event_ids(self) -> tuple[str, ...]:
        """The source events found, in the order of the rows, each once."""
        return tuple(dict.fromkeys(r.origin_event_id for r in self.rows if r.origin_event_id))


@dataclass(frozen=True, slots=True)
class PeriodRow:
    """An accounting period of an entity: its status and the entries posted in it."""

    entity: str
    period: str
    status: str
    closed_on: dt.date | None
    entry_count: int
    first_posting_date: dt.date | None
    last_posting_date: dt.date | None


@dataclass(frozen=True, slots=True)
class DlqReasonRow:
    """Dead letters of one reason."""

    reason: str
    record_count: int
    event_count: int
    first_failed_at: dt.datetime
    last_failed_at: dt.datetime


# --- checks ----------------------------------------------------------------------------------


def _one(conn: psycopg.Connection, query: sql.Composable | str, params: Any) -> Any:
    row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]


def check_period(period: str) -> str:
    """``period`` if it is ``YYYY-MM``.

    Raises:
        ValueError: it is not.
    """
    if not isinstance(period, str) or _PERIOD.match(period) is None:
        raise ValueError(f"period must be YYYY-MM, got {period!r}")
    return period


def require_entity(conn: psycopg.Connection, entity: str) -> None:
    """Raises :class:`UnknownEntity` unless an entry or a period of ``entity`` exists."""
    known = _one(
        conn,
        "SELECT EXISTS (SELECT 1 FROM revledger.trial_balance_lines WHERE entity = %(e)s)"
        " OR EXISTS (SELECT 1 FROM revledger.period_status WHERE entity = %(e)s)",
        {"e": entity},
    )
    if not known:
        raise UnknownEntity(f"unknown entity {entity!r}: no entries or periods of it")


def require_customer(conn: psycopg.Connection, customer_id: str) -> None:
    """Raises :class:`UnknownCustomer` unless an entry of ``customer_id`` exists."""
    known = _one(
        conn,
        "SELECT EXISTS (SELECT 1 FROM revledger.account_activity WHERE customer_id = %s)",
        [customer_id],
    )
    if not known:
        raise UnknownCustomer(f"unknown customer {customer_id!r}: no entries of it")


def known_periods(conn: psycopg.Connection, entity: str) -> tuple[str, str] | None:
    """First and last period of ``entity`` (periods table and entries), or None."""
    row = conn.execute(
        "SELECT min(period), max(period) FROM revledger.period_status WHERE entity = %s",
        [entity],
    ).fetchone()
    if row is None or row[0] is None:
        return None
    return str(row[0]), str(row[1])


def require_period(conn: psycopg.Connection, entity: str, period: str) -> str:
    """``period`` if well formed and within ``entity``'s known periods.

    Raises:
        ValueError: not ``YYYY-MM``.
        UnknownPeriod: before the first or after the last known period of ``entity``.
    """
    check_period(period)
    span = known_periods(conn, entity)
    if span is None or not span[0] <= period <= span[1]:
        known = "none" if span is None else f"{span[0]} to {span[1]}"
        raise UnknownPeriod(f"unknown period {period} for entity {entity!r} (known: {known})")
    return period


def last_day(period: str) -> dt.date:
    """The last calendar day of ``period``."""
    return first_day(next_period(period)) - dt.timedelta(days=1)


def latest_posting_date(conn: psycopg.Connection, entity: str) -> dt.date | None:
    """The latest posting date of ``entity``'s entries, or None without entries."""
    return _one(
        conn,
        "SELECT max(posting_date) FROM revledger.trial_balance_lines WHERE entity = %s",
        [entity],
    )


def _chart_order(account: str) -> tuple[int, str]:
    return (_CHART.get(account, len(_CHART)), account)


# --- trial balance and account activity ------------------------------------------------------


def trial_balance(
    conn: psycopg.Connection, entity: str, as_of: dt.date | None = None
) -> list[TrialBalanceRow]:
    """Debits and credits per account and transaction currency through ``as_of``.

    Args:
        entity: the legal entity.
        as_of: last posting date included; None: every entry.

    Returns:
        Rows in chart order, then currency. Debits equal credits per transaction currency,
        and functional debits equal functional credits over the entity.

    Raises:
        UnknownEntity: see :func:`require_entity`.
    """
    require_entity(conn, entity)
    where = [sql.SQL("entity = %(entity)s")]
    if as_of is not None:
        where.append(sql.SQL("posting_date <= %(as_of)s"))
    query = sql.SQL(
        "SELECT account, currency, functional_currency, sum(debit_minor), sum(credit_minor),"
        " sum(functional_debit_minor), sum(functional_credit_minor)"
        " FROM revledger.trial_balance_lines WHERE {}"
        " GROUP BY account, currency, functional_currency"
    ).format(sql.SQL(" AND ").join(where))
    rows = conn.execute(query, {"entity": entity, "as_of": as_of}).fetchall()
    result = [
        TrialBalanceRow(account, currency, functional, *(int(total) for total in totals))
        for account, currency, functional, *totals in rows
    ]
    return sorted(result, key=lambda row: (*_chart_order(row.account), row.currency))


def require_account(account: str) -> str:
    """``account`` if it is a logical account of the chart, else :class:`UnknownAccount`."""
    if account not in _CHART:
        names = ", ".join(_CHART)
        raise UnknownAccount(f"unknown account {account!r} (accounts: {names})")
    return account


def account_activity(
    conn: psycopg.Connection,
    entity: str,
    account: str,
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
) -> AccountActivity:
    """An account's lines from ``date_from`` to ``date_to`` (both included, None: open).

    Lines are in running order (posting date, Kafka partition and offset of the entry,
    line number, entry id) with running balances per currency and in the functional
    currency, starting from the balances before ``date_from``.

    Raises:
        UnknownEntity, UnknownAccount.
    """
    require_entity(conn, entity)
    require_account(account)
    params = {"entity": entity, "account": account, "from": date_from, "to": date_to}
    openings: dict[str, list[int]] = {}
    if date_from is not None:
        for currency, balance, functional in conn.execute(
            "SELECT currency, sum(debit_minor - credit_minor),"
            " sum(functional_debit_minor - functional_credit_minor)"
            " FROM revledger.account_activity"
            " WHERE entity = %(entity)s AND account = %(account)s AND posting_date < %(from)s"
            " GROUP BY currency ORDER BY currency",
            params,
        ):
            openings[currency] = [int(balance), int(functional)]
    where = [sql.SQL("entity = %(entity)s AND account = %(account)s")]
    if date_from is not None:
        where.append(sql.SQL("posting_date >= %(from)s"))
    if date_to is not None:
        where.append(sql.SQL("posting_date <= %(to)s"))
    query = sql.SQL(
        "SELECT posting_date, entry_id, line_no, rule, description, customer_id,"
        " source_event_id, currency, debit_minor, credit_minor, functional_currency,"
        " functional_debit_minor, functional_credit_minor"
        " FROM revledger.account_activity WHERE {}"
        " ORDER BY posting_date, kafka_partition, kafka_offset, line_no, entry_id"
    ).format(sql.SQL(" AND ").join(where))
    start = tuple(Opening(c, b, f) for c, (b, f) in sorted(openings.items()))
    functional_balance = sum(functional for _, functional in openings.values())
    lines = []
    for order, row in enumerate(conn.execute(query, params).fetchall(), start=1):
        (day, entry_id, line_no, rule, description, customer, source, currency) = row[:8]
        debit, credit, functional_currency, functional_debit, functional_credit = row[8:]
        balance = openings.setdefault(currency, [0, 0])
        balance[0] += debit - credit
        functional_balance += functional_debit - functional_credit
        lines.append(
            ActivityLine(
                running_order=order,
                posting_date=day,
                entry_id=entry_id,
                line_no=line_no,
                rule=rule,
                description=description,
                customer_id=customer,
                source_event_id=source,
                currency=currency,
                debit_minor=debit,
                credit_minor=credit,
                balance_minor=balance[0],
                functional_currency=functional_currency,
                functional_debit_minor=functional_debit,
                functional_credit_minor=functional_credit,
                functional_balance_minor=functional_balance,
            )
        )
    return AccountActivity(entity, account, date_from, date_to, start, tuple(lines))


# --- AR aging --------------------------------------------------------------------------------


def aging_bucket(days_past_due: int) -> str:
    """The bucket label of an amount ``days_past_due`` days after its due date."""
    for label, low, high in AGING_BUCKETS:
        if (low is None or days_past_due >= low) and (high is None or days_past_due <= high):
            return label
    raise InvariantViolation(f"no aging bucket for {days_past_due} days")  # pragma: no cover


def ar_aging(conn: psycopg.Connection, entity: str, as_of: dt.date) -> list[AgingRow]:
    """What is due per invoice as of ``as_of``, bucketed by days past the due date.

    The amount due is the invoice's accounts-receivable lines posted through ``as_of``
    (invoice, payments, credit notes, write-offs, refunds reopening it); an invoice not
    in the invoices table is aged from its first posting. Invoices with nothing due are
    left out. Rows by customer, due date, invoice.

    Raises:
        UnknownEntity.
    """
    require_entity(conn, entity)
    rows = conn.execute(
        "SELECT invoice_id, customer_id, currency, functional_currency,"
        " coalesce(min(issue_date), min(posting_date)),"
        " coalesce(min(due_date), min(posting_date)),"
        " sum(amount_minor), sum(functional_amount_minor)"
        " FROM revledger.ar_open_items WHERE entity = %(entity)s AND posting_date <= %(as_of)s"
        " GROUP BY invoice_id, customer_id, currency, functional_currency"
        " HAVING sum(amount_minor) <> 0 OR sum(functional_amount_minor) <> 0",
        {"entity": entity, "as_of": as_of},
    ).fetchall()
    result = []
    for invoice_id, customer, currency, functional, issued, due, amount, f_amount in rows:
        days = (as_of - due).days
        result.append(
            AgingRow(
                invoice_id=invoice_id,
                customer_id=customer,
                currency=currency,
                issue_date=issued,
                due_date=due,
                days_past_due=days,
                bucket=aging_bucket(days),
                amount_due_minor=int(amount),
                functional_currency=functional,
                functional_amount_due_minor=int(f_amount),
            )
        )
    return sorted(result, key=lambda r: (r.customer_id, r.due_date, r.invoice_id or ""))


def aging_totals(rows: Iterable[AgingRow]) -> list[AgingTotal]:
    """Per currency, the amounts of ``rows`` in each bucket (currencies sorted)."""
    sums: dict[str, dict[str, int]] = {}
    for row in rows:
        buckets = sums.setdefault(row.currency, dict.fromkeys([b[0] for b in AGING_BUCKETS], 0))
        buckets[row.bucket] += row.amount_due_minor
    return [
        AgingTotal(currency, *(buckets[label] for label, _, _ in AGING_BUCKETS))
        for currency, buckets in sorted(sums.items())
    ]


# --- deferred revenue roll-forward -----------------------------------------------------------

_MOVEMENTS = (
    "billings_minor",
    "recognised_minor",
    "adjustments_minor",
    "unclassified_minor",
    "net_change_minor",
    "functional_billings_minor",
    "functional_recognised_minor",
    "functional_adjustments_minor",
    "functional_net_change_minor",
)


def periods_between(first: str, last: str) -> list[str]:
    """``first``, the periods after it, up to ``last`` (empty when ``last < first``)."""
    out = []
    period = first
    while period <= last:
        out.append(period)
        period = next_period(period)
    return out


def deferred_rollforward(
    conn: psycopg.Connection,
    entity: str,
    period_from: str | None = None,
    period_to: str | None = None,
) -> list[RollforwardRow]:
    """Deferred revenue per currency and period: opening, billings, recognised,
    adjustments, closing (``closing = opening + billings - recognised + adjustments``).

    Args:
        period_from, period_to: the periods shown (default: the entity's first and last
            known periods); the opening of ``period_from`` sums every period before it.

    Returns:
        Rows by currency, then period; a currency's period with no balance and no
        movement is left out.

    Raises:
        UnknownEntity, UnknownPeriod, ValueError (a period not YYYY-MM, or from > to).
        InvariantViolation: a period's movements do not add up to its net change.
    """
    require_entity(conn, entity)
    span = known_periods(conn, entity)
    if span is None:
        return []
    first = require_period(conn, entity, period_from) if period_from else span[0]
    last = require_period(conn, entity, period_to) if period_to else span[1]
    if first > last:
        raise ValueError(f"period range {first}..{last} is empty")
    columns = sql.SQL(", ").join(map(sql.Identifier, _MOVEMENTS))
    query = sql.SQL(
        "SELECT currency, functional_currency, period, {} FROM revledger.deferred_revenue_movements"
        " WHERE entity = %(entity)s AND period <= %(last)s ORDER BY currency, period"
    ).format(columns)
    by_currency: dict[tuple[str, str], dict[str, dict[str, int]]] = {}
    for currency, functional, period, *amounts in conn.execute(
        query, {"entity": entity, "last": last}
    ):
        moves = dict(zip(_MOVEMENTS, (int(a) for a in amounts), strict=True))
        _check_movements(entity, currency, period, moves)
        by_currency.setdefault((currency, functional), {})[period] = moves
    rows = []
    for (currency, functional), moves_by_period in sorted(by_currency.items()):
        rows += _rollforward_rows(currency, functional, moves_by_period, first, last)
    return rows


def _check_movements(entity: str, currency: str, period: str, moves: dict[str, int]) -> None:
    for prefix in ("", "functional_"):
        total = (
            moves[f"{prefix}billings_minor"]
            - moves[f"{prefix}recognised_minor"]
            + moves[f"{prefix}adjustments_minor"]
        )
        if total != moves[f"{prefix}net_change_minor"]:
            raise InvariantViolation(
                f"deferred revenue {entity} {currency} {period}: {prefix}movements {total}"
                f" != net change {moves[f'{prefix}net_change_minor']}"
            )


def _rollforward_rows(
    currency: str,
    functional: str,
    moves_by_period: dict[str, dict[str, int]],
    first: str,
    last: str,
) -> list[RollforwardRow]:
    opening = sum(m["net_change_minor"] for p, m in moves_by_period.items() if p < first)
    f_opening = sum(
        m["functional_net_change_minor"] for p, m in moves_by_period.items() if p < first
    )
    rows = []
    for period in periods_between(first, last):
        moves = moves_by_period.get(period)
        if moves is None and opening == 0 and f_opening == 0:
            continue
        m = moves or dict.fromkeys(_MOVEMENTS, 0)
        closing = opening + m["net_change_minor"]
        f_closing = f_opening + m["functional_net_change_minor"]
        rows.append(
            RollforwardRow(
                currency=currency,
                functional_currency=functional,
                period=period,
                opening_minor=opening,
                billings_minor=m["billings_minor"],
                recognised_minor=m["recognised_minor"],
                adjustments_minor=m["adjustments_minor"],
                closing_minor=closing,
                unclassified_minor=m["unclassified_minor"],
                functional_opening_minor=f_opening,
                functional_billings_minor=m["functional_billings_minor"],
                functional_recognised_minor=m["functional_recognised_minor"],
                functional_adjustments_minor=m["functional_adjustments_minor"],
                functional_closing_minor=f_closing,
            )
        )
        opening, f_opening = closing, f_closing
    return rows


# --- revenue waterfall -----------------------------------------------------------------------


def waterfall(conn: psycopg.Connection, entity: str, as_of: dt.date) -> list[WaterfallRow]:
    """Revenue recognised by month through ``as_of``, and scheduled by month after it.

    Recognised: net credits to the revenue account posted through ``as_of``, by period.
    Scheduled: the contracts' published schedules for the periods after ``as_of``'s
    period (run it at a month end for a full picture: the rest of the as-of month is in
    neither). Rows per contract, by currency, period, kind, customer, contract.

    Raises:
        UnknownEntity.
    """
    require_entity(conn, entity)
    rows = conn.execute(
        "SELECT kind, currency, period, customer_id, contract_id, sum(amount_minor)"
        " FROM revledger.revenue_waterfall"
        " WHERE entity = %(entity)s AND ((kind = 'recognised' AND posting_date <= %(as_of)s)"
        "   OR (kind = 'scheduled' AND period > %(period)s))"
        " GROUP BY kind, currency, period, customer_id, contract_id"
        " HAVING sum(amount_minor) <> 0",
        {"entity": entity, "as_of": as_of, "period": period_of(as_of)},
    ).fetchall()
    result = [
        WaterfallRow(kind, currency, period, customer, contract, int(amount))
        for kind, currency, period, customer, contract, amount in rows
    ]
    return sorted(
        result,
        key=lambda r: (r.currency, r.period, r.kind, r.customer_id, r.contract_id or ""),
    )


def waterfall_by_period(rows: Iterable[WaterfallRow]) -> list[WaterfallPeriod]:
    """``rows`` summed per currency and period."""
    sums: dict[tuple[str, str], list[int]] = {}
    for row in rows:
        pair = sums.setdefault((row.currency, row.period), [0, 0])
        pair[0 if row.kind == "recognised" else 1] += row.amount_minor
    return [WaterfallPeriod(c, p, r, s) for (c, p), (r, s) in sorted(sums.items())]


# --- customer statement ----------------------------------------------------------------------


def statement(
    conn: psycopg.Connection, customer_id: str, as_of: dt.date | None = None
) -> list[StatementLine]:
    """A customer's receivable and credit movements through ``as_of``, with running
    balances per entity and currency (positive: the customer owes).

    Raises:
        UnknownCustomer.
    """
    require_customer(conn, customer_id)
    where = [sql.SQL("customer_id = %(customer)s")]
    if as_of is not None:
        where.append(sql.SQL("posting_date <= %(as_of)s"))
    order = sql.SQL("posting_date, kafka_partition, kafka_offset, line_no, entry_id")
    query = sql.SQL(
        "SELECT entity, currency, posting_date, document_type, document_id, invoice_id, account,"
        " description, entry_id, line_no, debit_minor, credit_minor,"
        " sum(debit_minor - credit_minor) OVER (PARTITION BY entity, currency ORDER BY {}"
        "   ROWS UNBOUNDED PRECEDING)"
        " FROM revledger.customer_statement WHERE {} ORDER BY entity, currency, {}"
    ).format(order, sql.SQL(" AND ").join(where), order)
    rows = conn.execute(query, {"customer": customer_id, "as_of": as_of}).fetchall()
    return [StatementLine(*row[:-1], balance_minor=int(row[-1])) for row in rows]


# --- lineage ---------------------------------------------------------------------------------

_TRACE_COLUMNS = (
    "batch_id",
    "batch_line_no",
    "gl_code",
    "entity",
    "entry_id",
    "line_no",
    "account",
    "currency",
    "side",
    "amount_minor",
    "functional_currency",
    "functional_amount_minor",
    "posting_date",
    "rule",
    "customer_id",
    "source_event_id",
    "entry_topic",
    "entry_partition",
    "entry_offset",
    "origin_event_id",
    "origin_event_type",
    "origin_topic",
    "origin_partition",
    "origin_offset",
)
# How trace tries a reference, in order: (kind, the batch_lineage column it must equal).
_TRACE_LOOKUPS = (
    ("batch", "batch_id"),
    ("entry", "entry_id"),
    ("event", "source_event_id"),
    # A clock tick: the recognition entries sourced from it (`<tick id>/<customer>`).
    ("event", "origin_event_id"),
)


def _trace_rows(conn: psycopg.Connection, column: str, ref: str) -> list[TraceRow]:
    query = sql.SQL(
        "SELECT {} FROM revledger.batch_lineage WHERE {} = %s"
        " ORDER BY batch_id, entry_partition, entry_offset, entry_id, line_no"
    ).format(sql.SQL(", ").join(map(sql.Identifier, _TRACE_COLUMNS)), sql.Identifier(column))
    return [TraceRow(*row) for row in conn.execute(query, [ref]).fetchall()]


def batch_status(conn: psycopg.Connection, batch_id: str) -> BatchStatus | None:
    """The latest ack of ``batch_id``, or None when the ERP has not answered."""
    row = conn.execute(
        "SELECT batch_id, status, erp_document_id, message, acknowledged_at, ack_count"
        " FROM revledger.erp_batch_status WHERE batch_id = %s",
        [batch_id],
    ).fetchone()
    return None if row is None else BatchStatus(*row)


def trace(conn: psycopg.Connection, ref: str) -> Trace:
    """Lineage of a batch id, an entry id or an event id: journal lines with their batch
    lines and source events, and the ERP's latest answer on the batch.

    ``ref`` is tried as a batch id, an entry id, a source event id, then a clock tick's
    event id (its recognition entries); the first that matches wins.

    Raises:
        UnknownReference: nothing matches (a batch known only from acks is reported with
            no rows).
    """
    for kind, column in _TRACE_LOOKUPS:
        rows = _trace_rows(conn, column, ref)
        if rows:
            status = batch_status(conn, ref) if kind == "batch" else None
            return Trace(ref, kind, tuple(rows), status)
    status = batch_status(conn, ref)
    if status is not None:
        return Trace(ref, "batch", (), status)
    raise UnknownReference(f"no batch, entry or event with id {ref!r}")


# --- periods and DLQ -------------------------------------------------------------------------


def periods(conn: psycopg.Connection, entity: str) -> list[PeriodRow]:
    """The entity's periods in order: status, closing date, entries posted.

    Raises:
        UnknownEntity.
    """
    require_entity(conn, entity)
    rows = conn.execute(
        "SELECT entity, period, status, closed_on, entry_count, first_posting_date,"
        " last_posting_date FROM revledger.period_status WHERE entity = %s ORDER BY period",
        [entity],
    ).fetchall()
    return [PeriodRow(*row) for row in rows]


def dlq_summary(conn: psycopg.Connection) -> list[DlqReasonRow]:
    """Dead letters per reason, most records first."""
    rows = conn.execute(
        "SELECT reason, record_count, event_count, first_failed_at, last_failed_at"
        " FROM revledger.dlq_summary ORDER BY record_count DESC, reason"
    ).fetchall()
    return [DlqReasonRow(*row) for row in rows]
