"""The subledger of one entity as a Beancount ledger: an independent engine checks our books.

``revledger export beancount --entity E --out FILE`` reads the entity's entries from
PostgreSQL and writes one Beancount transaction per entry, one posting per line, in the
entity's functional currency books:

- a line in the functional currency is posted as its amount;
- a line in another currency is posted in that currency at the total price of its
  functional amount (``100.00 EUR @@ 108.50 USD``), so Beancount keeps both: positions by
  transaction currency, weights in the functional currency;
- a line with no transaction amount (a realized-FX line) is posted as its functional amount.

Entries balance in functional amounts (the ledger refuses any other), so every
transaction balances to the cent in Beancount's weights and ``bean-check`` has nothing to
say; ``bean-query`` balances then equal ``revledger tb``. Debits are positive, credits
negative, as Beancount wants. Account names are the logical accounts under their type:
``Assets:AccountsReceivable``, ``Liabilities:DeferredRevenue``, ``Income:Revenue``,
``Expenses:ContraRevenue`` ...

:func:`beancount_ledger` is pure (entries in, text out); :func:`read_entries` and
:func:`export_beancount` do the database work.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from connectors.erp.formats import format_minor
from connectors.postgres.queries import UnknownEntity
from ledger.accounts import Account, AccountType, account_type
from ledger.money import exponent

_ROOTS = {
    AccountType.asset: "Assets",
    AccountType.liability: "Liabilities",
    AccountType.income: "Income",
    AccountType.expense: "Expenses",
}


@dataclass(frozen=True, slots=True)
class ExportLine:
    """One journal line as exported."""

    account: str
    side: str
    amount_minor: int
    currency: str
    functional_amount_minor: int


@dataclass(frozen=True, slots=True)
class ExportEntry:
    """One journal entry as exported."""

    entry_id: str
    posting_date: dt.date
    customer_id: str
    description: str
    rule: str
    source_event_id: str
    lines: tuple[ExportLine, ...]


def beancount_account(account: str) -> str:
    """Beancount name of a logical account: ``bank`` -> ``Assets:Bank``."""
    logical = Account(account)
    leaf = "".join(part.capitalize() for part in logical.value.split("_"))
    return f"{_ROOTS[account_type(logical)]}:{leaf}"


def beancount_ledger(entity: str, functional_currency: str, entries: Iterable[ExportEntry]) -> str:
    """The Beancount text of ``entity``'s ``entries`` (sorted by date, then entry id)."""
    ordered = sorted(entries, key=lambda e: (e.posting_date, e.entry_id))
    accounts = sorted({line.account for e in ordered for line in e.lines})
    currencies = sorted(
        {functional_currency, *(line.currency for e in ordered for line in e.lines)}
    )
    opened = ordered[0].posting_date if ordered else dt.date(1970, 1, 1)
    out = [
        f'option "title" {_quoted(f"revledger subledger of {entity}")}',
        f'option "operating_currency" "{functional_currency}"',
        # Beancount turns "@@ total" into a per-unit price (28 digits) and gets the weight
        # back within ~1e-24; no posting is in the functional currency to infer a tolerance
        # from, so name one: far below a minor unit, far above that residue.
        f'option "inferred_tolerance_default" "{_tolerance(functional_currency)}"',
        "",
    ]
    out += [f"{opened.isoformat()} commodity {currency}" for currency in currencies]
    out.append("")
    out += [f"{opened.isoformat()} open {beancount_account(account)}" for account in accounts]
    for entry in ordered:
        out.append("")
        out.append(
            f"{entry.posting_date.isoformat()} * {_quoted(entry.customer_id)}"
            f" {_quoted(entry.description)}"
        )
        out.append(f"  entry_id: {_quoted(entry.entry_id)}")
        out.append(f"  source_event_id: {_quoted(entry.source_event_id)}")
        out.append(f"  rule: {_quoted(entry.rule)}")
        for line in entry.lines:
            out.append(
                f"  {beancount_account(line.account):32} {_amount(line, functional_currency)}"
            )
    out.append("")
    return "\n".join(out)


def _amount(line: ExportLine, functional: str) -> str:
    sign = 1 if line.side == "debit" else -1
    if line.amount_minor == 0 or line.currency == functional:
        # Functional books: the functional amount is what the entry balances on.
        return f"{format_minor(sign * line.functional_amount_minor, functional)} {functional}"
    units = format_minor(sign * line.amount_minor, line.currency)
    price = format_minor(line.functional_amount_minor, functional)
    return f"{units} {line.currency} @@ {price} {functional}"


def _tolerance(currency: str) -> str:
    """A hundredth of the minor unit: ``USD`` -> ``USD:0.0001``, ``JPY`` -> ``JPY:0.01``."""
    return f"{currency}:{format(Decimal(1).scaleb(-(exponent(currency) + 2)), 'f')}"


def _quoted(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
    return f'"{escaped}"'


def read_entries(
    conn: object, entity: str, as_of: dt.date | None = None
) -> tuple[str, list[ExportEntry]]:
    """The functional currency and the entries of ``entity`` (through ``as_of``) from PostgreSQL.

    Raises:
        UnknownEntity: no entry of ``entity`` is in the database.
    """
    where, params = "e.entity = %(entity)s", {"entity": entity, "as_of": as_of}
    if as_of is not None:
        where += " AND e.posting_date <= %(as_of)s"
    rows = conn.execute(  # type: ignore[attr-defined]
        "SELECT e.entry_id, e.posting_date, e.customer_id, e.description, e.rule,"
        " e.source_event_id, e.functional_currency, l.account, l.side, l.amount_minor,"
        " l.currency, l.functional_amount_minor"
        " FROM revledger.journal_entries e JOIN revledger.journal_lines l USING (entry_id)"
        f" WHERE {where} ORDER BY e.posting_date, e.entry_id, l.line_no",
        params,
    ).fetchall()
    if not rows:
        known = conn.execute(  # type: ignore[attr-defined]
            "SELECT 1 FROM revledger.journal_entries WHERE entity = %(entity)s LIMIT 1", params
        ).fetchone()
        if known is None:
            raise UnknownEntity(f"no entries of entity {entity!r} in the database")
        return "", []
    headers: dict[str, tuple] = {}
    lines: dict[str, list[ExportLine]] = {}
    functional = rows[0][6]
    for entry_id, day, customer, description, rule, source, _, *line in rows:
        headers.setdefault(entry_id, (entry_id, day, customer, description, rule, source))
        lines.setdefault(entry_id, []).append(ExportLine(*line))
    entries = [ExportEntry(*header, lines=tuple(lines[i])) for i, header in headers.items()]
    return functional.strip(), entries


def export_beancount(conninfo: str, entity: str, out: Path, as_of: dt.date | None = None) -> int:
    """Write ``entity``'s Beancount ledger to ``out``; returns the number of entries written."""
    import psycopg

    with psycopg.connect(conninfo) as conn:
        functional, entries = read_entries(conn, entity, as_of)
    out.write_text(beancount_ledger(entity, functional, entries))
    return len(entries)
