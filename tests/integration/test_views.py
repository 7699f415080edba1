"""The reporting views (0006_views.sql) and their queries against hand-computed figures.

A small scenario written out below (two entities, USD and EUR, an invoice with tax, a
partial payment, a credit note, a write-off, an overpayment refunded, recognition,
schedules, an ERP batch with two acks, DLQ records, closed periods) is inserted once
with ``pg_data``; every report is asserted against numbers worked out by hand in cents.
Then a 24-month simulated company, replayed by the pure engine and inserted without
Kafka: its deferred revenue roll-forward closes in every period, equals the trial
balance at every period end and the entries themselves, and each entity's trial
balance sums to zero per currency.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from connectors.postgres import queries
from connectors.postgres.queries import (
    AgingRow,
    AgingTotal,
    Opening,
    PeriodRow,
    RollforwardRow,
    TrialBalanceRow,
    WaterfallPeriod,
)
from ledger.accounts import Account, Side
from ledger.calendar import period_of
from ledger.entries import JournalEntry, JournalLine, dimensions_of, make_entry_id

import pg_data

pytestmark = pytest.mark.integration

D = dt.date
UTC = dt.UTC
INJECTION = "x'; drop table revledger.journal_lines; --"

# --- the scenario ----------------------------------------------------------------------------
#
# US1 (functional USD). C1 pays in USD (partition 0), C2 in EUR (partition 1; rates 1.08 at
# issue, 1.10 at payment). EU1 (functional EUR): C3 (partition 0).
#
#   date   customer  what                                  AR       deferred   other
#   01-10  C1  INV-1 issued, due 02-09, K1            Dr 1,300.00  Cr 1,200.00  Cr tax 100.00
#   01-31  C1  recognition K1                                      Dr   100.00  Cr revenue
#   02-15  C1  P-1 500.00 on INV-1, fee 15.00         Cr   500.00               cash, fees
#   02-29  C1  recognition K1                                      Dr   100.00
#   03-05  C1  CN-1 130.00 on INV-1 (tax 10.00)       Cr   130.00  Dr   120.00  Dr tax 10.00
#   03-20  C1  INV-6 issued, due 04-19                Dr   150.00  Cr   150.00
#   03-31  C1  recognition K1                                      Dr    88.00
#   04-20  C1  INV-1 written off 100.00               Cr   100.00               Dr bad debt
#   04-30  C1  recognition K1                                      Dr    88.00
#   05-15  C1  INV-3 issued, due 06-14                Dr   250.00  Cr   250.00
#   05-31  C1  recognition K1                                      Dr    88.00
#   06-20  C1  INV-4 issued, due 07-20                Dr    80.00  Cr    80.00
#   06-30  C1  recognition K1                                      Dr    88.00
#   03-01  C2  INV-2 EUR 1,000.00 (USD 1,080.00) due 03-31, K2   Dr AR / Cr deferred
#   03-31..06-30 C2 recognition K2 EUR 100.00 (USD 108.00) a month
#   04-10  C2  P-2 EUR 400.00 (USD 440.00): AR relieved USD 432.00, realized FX Cr 8.00
#   04-15  C2  INV-5 EUR 300.00 (USD 330.00) due 05-15
#   02-01  C3  INV-7 EUR 600.00 due 03-02, K3; 02-20 P-3 EUR 700.00: AR 600.00, credit 100.00
#   02-29..06-30 C3 recognition K3 EUR 50.00 a month; 03-10 R-1 refunds the 100.00 credit


def dr(account: str, amount: int, currency: str = "USD", functional: int | None = None, **dims):
    return (account, "debit", amount, currency, amount if functional is None else functional, dims)


def cr(account: str, amount: int, currency: str = "USD", functional: int | None = None, **dims):
    return (account, "credit", amount, currency, amount if functional is None else functional, dims)


def entry(
    source: str,
    rule: str,
    day: dt.date,
    customer: str,
    lines: list[tuple],
    *,
    source_type: str,
    entity: str = "US1",
    functional: str = "USD",
    description: str = "",
) -> JournalEntry:
    return JournalEntry(
        entry_id=make_entry_id(source, rule, 0),
        entity=entity,
        customer_id=customer,
        source_event_id=source,
        source_event_type=source_type,
        rule=rule,
        sequence=0,
        posting_date=day,
        original_date=day,
        period=period_of(day),
        functional_currency=functional,
        description=description or f"{rule} {source}",
        lines=tuple(
            JournalLine(n, Account(a), Side(s), amount, cur, f, dimensions_of(dims))
            for n, (a, s, amount, cur, f, dims) in enumerate(lines, start=1)
        ),
    )


def recognition(customer: str, day: dt.date, contract: str, amount: int, **money: Any):
    currency = money.get("currency", "USD")
    functional = money.get("functional")
    dims = {
        "contract_id": contract,
        "obligation_id": f"{contract}-O1",
        "product_family": "subscription",
        "recognized_through": day.isoformat(),
    }
    return entry(
        f"tick-{day}/{customer}",
        "revenue_recognition",
        day,
        customer,
        [
            dr("deferred_revenue", amount, currency, functional, **dims),
            cr("revenue", amount, currency, functional, **dims),
        ],
        source_type="clock.advanced",
        entity=money.get("entity", "US1"),
        functional=money.get("functional_currency", "USD"),
        description=f"Revenue {contract} {contract}-O1 through {day}",
    )


def invoice(customer: str, invoice_id: str, day: dt.date, amount: int, contract: str, **kw: Any):
    currency, functional = kw.get("currency", "USD"), kw.get("functional")
    tax = kw.get("tax", 0)
    line_dims = {
        "invoice_id": invoice_id,
        "invoice_line_id": f"{invoice_id}-L1",
        "contract_id": contract,
        "product_family": kw.get("family", "subscription"),
    }
    lines = [
        dr(
            "accounts_receivable",
            amount + tax,
            currency,
            _plus(functional, tax),
            invoice_id=invoice_id,
        )
    ]
    if tax:
        lines.append(cr("tax_payable", tax, currency, invoice_id=invoice_id))
    lines.append(cr("deferred_revenue", amount, currency, functional, **line_dims))
    return entry(
        f"ev-{invoice_id}",
        "invoice_issued",
        day,
        customer,
        lines,
        source_type="invoice.issued",
        entity=kw.get("entity", "US1"),
        functional=kw.get("functional_currency", "USD"),
        description=f"Invoice {invoice_id} issued",
    )


def _plus(functional: int | None, tax: int) -> int | None:
    return None if functional is None else functional + tax


def months(first: str, count: int) -> list[str]:
    out = [first]
    while len(out) < count:
        year, month = map(int, out[-1].split("-"))
        out.append(f"{year + month // 12}-{month % 12 + 1:02d}")
    return out


MONTH_ENDS = [
    D(2024, 1, 31),
    D(2024, 2, 29),
    D(2024, 3, 31),
    D(2024, 4, 30),
    D(2024, 5, 31),
    D(2024, 6, 30),
]

C1_ENTRIES = [
    invoice("C1", "INV-1", D(2024, 1, 10), 120_000, "K1", tax=10_000),
    recognition("C1", D(2024, 1, 31), "K1", 10_000),
    entry(
        "ev-P-1",
        "payment_settled",
        D(2024, 2, 15),
        "C1",
        [
            dr("cash_clearing", 50_000, payment_id="P-1"),
            cr("accounts_receivable", 50_000, payment_id="P-1", invoice_id="INV-1"),
            dr("processor_fees", 1_500, payment_id="P-1"),
            cr("cash_clearing", 1_500, payment_id="P-1"),
        ],
        source_type="payment.settled",
    ),
    recognition("C1", D(2024, 2, 29), "K1", 10_000),
    entry(
        "ev-CN-1",
        "credit_note",
        D(2024, 3, 5),
        "C1",
        [
            dr("tax_payable", 1_000, invoice_id="INV-1", credit_note_id="CN-1"),
            dr(
                "deferred_revenue",
                12_000,
                invoice_id="INV-1",
                credit_note_id="CN-1",
                contract_id="K1",
                obligation_id="K1-O1",
                product_family="subscription",
            ),
            cr("accounts_receivable", 13_000, invoice_id="INV-1", credit_note_id="CN-1"),
        ],
        source_type="credit_note.issued",
    ),
    invoice("C1", "INV-6", D(2024, 3, 20), 15_000, "implied:INV-6", family="services"),
    recognition("C1", D(2024, 3, 31), "K1", 8_800),
    entry(
        "ev-WO-1",
        "write_off",
        D(2024, 4, 20),
        "C1",
        [
            dr("bad_debt", 10_000, invoice_id="INV-1"),
            cr("accounts_receivable", 10_000, invoice_id="INV-1"),
        ],
        source_type="invoice.written_off",
    ),
    recognition("C1", D(2024, 4, 30), "K1", 8_800),
    invoice("C1", "INV-3", D(2024, 5, 15), 25_000, "implied:INV-3", family="services"),
    recognition("C1", D(2024, 5, 31), "K1", 8_800),
    invoice("C1", "INV-4", D(2024, 6, 20), 8_000, "implied:INV-4", family="services"),
    recognition("C1", D(2024, 6, 30), "K1", 8_800),
]
C2_ENTRIES = [
    invoice("C2", "INV-2", D(2024, 3, 1), 100_000, "K2", currency="EUR", functional=108_000),
    recognition("C2", D(2024, 3, 31), "K2", 10_000, currency="EUR", functional=10_800),
    entry(
        "ev-P-2",
        "payment_settled",
        D(2024, 4, 10),
        "C2",
        [
            dr("cash_clearing", 40_000, "EUR", 44_000, payment_id="P-2"),
            cr("accounts_receivable", 40_000, "EUR", 43_200, payment_id="P-2", invoice_id="INV-2"),
            cr("realized_fx", 0, "EUR", 800, payment_id="P-2"),
        ],
        source_type="payment.settled",
    ),
    invoice(
        "C2",
        "INV-5",
        D(2024, 4, 15),
        30_000,
        "implied:INV-5",
        currency="EUR",
        functional=33_000,
        family="services",
    ),
    *(
        recognition("C2", day, "K2", 10_000, currency="EUR", functional=10_800)
        for day in MONTH_ENDS[3:]
    ),
]
EU1 = {"entity": "EU1", "currency": "EUR", "functional_currency": "EUR"}
C3_ENTRIES = [
    invoice("C3", "INV-7", D(2024, 2, 1), 60_000, "K3", **EU1),
    entry(
        "ev-P-3",
        "payment_settled",
        D(2024, 2, 20),
        "C3",
        [
            dr("cash_clearing", 70_000, "EUR", payment_id="P-3"),
            cr("accounts_receivable", 60_000, "EUR", payment_id="P-3", invoice_id="INV-7"),
            cr("customer_credit", 10_000, "EUR", payment_id="P-3"),
        ],
        source_type="payment.settled",
        entity="EU1",
        functional="EUR",
    ),
    entry(
        "ev-R-1",
        "refund",
        D(2024, 3, 10),
        "C3",
        [
            dr("customer_credit", 10_000, "EUR", payment_id="P-3", refund_id="R-1"),
            cr("cash_clearing", 10_000, "EUR", payment_id="P-3", refund_id="R-1"),
        ],
        source_type="refund.issued",
        entity="EU1",
        functional="EUR",
    ),
    *(recognition("C3", day, "K3", 5_000, **EU1) for day in MONTH_ENDS[1:]),
]
INVOICES = [  # (invoice, customer, entity, currency, issue, due, total, tax)
    ("INV-1", "C1", "US1", "USD", D(2024, 1, 10), D(2024, 2, 9), 130_000, 10_000),
    ("INV-2", "C2", "US1", "EUR", D(2024, 3, 1), D(2024, 3, 31), 100_000, 0),
    ("INV-3", "C1", "US1", "USD", D(2024, 5, 15), D(2024, 6, 14), 25_000, 0),
    ("INV-4", "C1", "US1", "USD", D(2024, 6, 20), D(2024, 7, 20), 8_000, 0),
    ("INV-5", "C2", "US1", "EUR", D(2024, 4, 15), D(2024, 5, 15), 30_000, 0),
    ("INV-6", "C1", "US1", "USD", D(2024, 3, 20), D(2024, 4, 19), 15_000, 0),
    ("INV-7", "C3", "EU1", "EUR", D(2024, 2, 1), D(2024, 3, 2), 60_000, 0),
]
BATCH_ID = "US1/p0/0"
INV1 = "ev-INV-1:invoice_issued:0"
REC1 = "tick-2024-01-31/C1:revenue_recognition:0"


def _by_date(entries: list[JournalEntry]) -> list[JournalEntry]:
    return sorted(entries, key=lambda e: e.posting_date)  # stable: same-day order kept


def insert_scenario(conn: psycopg.Connection) -> None:
    pg_data.insert_entries(conn, _by_date(C1_ENTRIES + C3_ENTRIES), partition=0)
    pg_data.insert_entries(conn, C2_ENTRIES, partition=1)
    for entries, partition in ((C1_ENTRIES + C3_ENTRIES, 0), (C2_ENTRIES, 1)):
        for item in _by_date(entries):
            if item.rule != "revenue_recognition":
                pg_data.insert_source_event(
                    conn,
                    item.source_event_id,
                    item.source_event_type,
                    customer_id=item.customer_id,
                    entity=item.entity,
                    business_date=item.posting_date,
                    partition=partition,
                )
    for day in MONTH_ENDS:
        pg_data.insert_source_event(conn, f"tick-{day}", "clock.advanced", business_date=day)
    for invoice_id, customer, entity, currency, issued, due, total, tax in INVOICES:
        pg_data.insert_invoice(
            conn,
            invoice_id,
            customer_id=customer,
            entity=entity,
            currency=currency,
            issue_date=issued,
            due_date=due,
            total_minor=total,
            tax_minor=tax,
        )
    _insert_contracts(conn)
    pg_data.insert_batch(
        conn,
        BATCH_ID,
        entity="US1",
        period="2024-01",
        functional_currency="USD",
        lines=[
            pg_data.batch_line("1100", "accounts_receivable", "USD", debit_minor=130_000),
            pg_data.batch_line("2200", "tax_payable", "USD", credit_minor=10_000),
            pg_data.batch_line(
                "2400",
                "deferred_revenue",
                "USD",
                debit_minor=10_000,
                credit_minor=120_000,
                dimensions={"product_family": "subscription"},
            ),
            pg_data.batch_line(
                "4000",
                "revenue",
                "USD",
                credit_minor=10_000,
                dimensions={"product_family": "subscription"},
            ),
        ],
        entry_ids=[INV1, REC1],
    )
    pg_data.insert_ack(
        conn,
        BATCH_ID,
        entity="US1",
        status="rejected",
        offset=3,
        message="control_totals_mismatch",
        acknowledged_at=dt.datetime(2024, 2, 2, 10, tzinfo=UTC),
    )
    pg_data.insert_ack(
        conn,
        BATCH_ID,
        entity="US1",
        status="imported",
        offset=7,
        erp_document_id="JE-1",
        acknowledged_at=dt.datetime(2024, 2, 2, 9, tzinfo=UTC),
    )
    dead = [
        ("invalid_payload", "ev-bad-1", dt.datetime(2024, 3, 1, 10, tzinfo=UTC)),
        ("invalid_payload", "ev-bad-2", dt.datetime(2024, 3, 2, 11, tzinfo=UTC)),
        ("invalid_payload", "ev-bad-1", dt.datetime(2024, 3, 3, 8, tzinfo=UTC)),
        ("orphan_event", "ev-orphan", dt.datetime(2024, 4, 1, 9, tzinfo=UTC)),
    ]
    for reason, event_id, failed_at in dead:
        pg_data.insert_dlq(conn, reason, event_id=event_id, failed_at=failed_at)
    pg_data.insert_period(conn, "US1", "2024-01", closed_on=D(2024, 2, 5))
    pg_data.insert_period(conn, "US1", "2024-02", closed_on=D(2024, 3, 4))
    pg_data.insert_period(conn, "US1", "2024-03", status="open")
    pg_data.insert_period(conn, "JP1", "2024-01", status="open")  # an entity with no entries


def _insert_contracts(conn: psycopg.Connection) -> None:
    contracts = [  # (contract, customer, entity, currency, start, end, schedule)
        (
            "K1",
            "C1",
            "US1",
            "USD",
            D(2024, 1, 1),
            D(2024, 12, 31),
            [("2024-01", 10_000), ("2024-02", 10_000)]
            + [(p, 8_800) for p in months("2024-03", 10)],
        ),
        (
            "K2",
            "C2",
            "US1",
            "EUR",
            D(2024, 3, 1),
            D(2025, 2, 28),
            [(p, 10_000) for p in months("2024-03", 12)],
        ),
        (
            "K3",
            "C3",
            "EU1",
            "EUR",
            D(2024, 2, 1),
            D(2025, 1, 31),
            [(p, 5_000) for p in months("2024-02", 12)],
        ),
    ]
    for contract, customer, entity, currency, start, end, schedule in contracts:
        total = sum(amount for _, amount in schedule)
        pg_data.insert_contract(
            conn,
            contract,
            customer_id=customer,
            entity=entity,
            currency=currency,
            total_price_minor=total,
            booking_date=start,
            service_start=start,
            service_end=end,
            obligations=[
                pg_data.obligation(
                    f"{contract}-O1", allocated_minor=total, service_start=start, service_end=end
                )
            ],
        )
        pg_data.insert_schedule(conn, contract, f"{contract}-O1", currency, schedule)


@pytest.fixture(scope="module")
def scenario(devstack: Any) -> Iterator[str]:
    with pg_data.fresh_database(devstack.database_url) as conninfo:
        with pg_data.connect(conninfo) as conn:
            insert_scenario(conn)
        yield conninfo


@pytest.fixture
def conn(scenario: str) -> Iterator[psycopg.Connection]:
    with pg_data.connect(scenario) as connection:
        yield connection


# --- trial balance ---------------------------------------------------------------------------


def test_trial_balance_equals_hand_computed_totals_when_taken_at_the_last_day(conn):
    assert queries.trial_balance(conn, "US1", D(2024, 6, 30)) == [
        TrialBalanceRow("accounts_receivable", "EUR", "USD", 130_000, 40_000, 141_000, 43_200),
        TrialBalanceRow("accounts_receivable", "USD", "USD", 178_000, 73_000, 178_000, 73_000),
        TrialBalanceRow("cash_clearing", "EUR", "USD", 40_000, 0, 44_000, 0),
        TrialBalanceRow("cash_clearing", "USD", "USD", 50_000, 1_500, 50_000, 1_500),
        TrialBalanceRow("deferred_revenue", "EUR", "USD", 40_000, 130_000, 43_200, 141_000),
        TrialBalanceRow("deferred_revenue", "USD", "USD", 67_200, 168_000, 67_200, 168_000),
        TrialBalanceRow("tax_payable", "USD", "USD", 1_000, 10_000, 1_000, 10_000),
        TrialBalanceRow("revenue", "EUR", "USD", 0, 40_000, 0, 43_200),
        TrialBalanceRow("revenue", "USD", "USD", 0, 55_200, 0, 55_200),
        TrialBalanceRow("processor_fees", "USD", "USD", 1_500, 0, 1_500, 0),
        TrialBalanceRow("bad_debt", "USD", "USD", 10_000, 0, 10_000, 0),
        TrialBalanceRow("realized_fx", "EUR", "USD", 0, 0, 0, 800),
    ]
    assert queries.trial_balance(conn, "US1") == queries.trial_balance(conn, "US1", D(2024, 6, 30))


def test_trial_balance_sums_to_zero_per_currency_and_in_functional_amounts(conn):
    for entity in ("US1", "EU1"):
        rows = queries.trial_balance(conn, entity)
        for currency in {row.currency for row in rows}:
            assert sum(r.balance_minor for r in rows if r.currency == currency) == 0
        assert sum(row.functional_balance_minor for row in rows) == 0
    assert sum(r.functional_debits_minor for r in queries.trial_balance(conn, "US1")) == 535_900


def test_trial_balance_leaves_out_later_entries_when_taken_as_of_an_earlier_date(conn):
    assert queries.trial_balance(conn, "US1", D(2024, 1, 31)) == [
        TrialBalanceRow("accounts_receivable", "USD", "USD", 130_000, 0, 130_000, 0),
        TrialBalanceRow("deferred_revenue", "USD", "USD", 10_000, 120_000, 10_000, 120_000),
        TrialBalanceRow("tax_payable", "USD", "USD", 0, 10_000, 0, 10_000),
        TrialBalanceRow("revenue", "USD", "USD", 0, 10_000, 0, 10_000),
    ]
    assert queries.trial_balance(conn, "EU1") == [
        TrialBalanceRow("accounts_receivable", "EUR", "EUR", 60_000, 60_000, 60_000, 60_000),
        TrialBalanceRow("cash_clearing", "EUR", "EUR", 70_000, 10_000, 70_000, 10_000),
        TrialBalanceRow("deferred_revenue", "EUR", "EUR", 25_000, 60_000, 25_000, 60_000),
        TrialBalanceRow("customer_credit", "EUR", "EUR", 10_000, 10_000, 10_000, 10_000),
        TrialBalanceRow("revenue", "EUR", "EUR", 0, 25_000, 0, 25_000),
    ]
    assert queries.trial_balance(conn, "JP1") == []  # known from its period, no entries


# --- account activity ------------------------------------------------------------------------


def test_account_activity_runs_balances_per_currency_from_the_opening(conn):
    activity = queries.account_activity(
        conn, "US1", "accounts_receivable", D(2024, 3, 1), D(2024, 4, 30)
    )
    assert activity.openings == (Opening("USD", 80_000, 80_000),)
    got = [
        (
            line.running_order,
            line.posting_date,
            line.entry_id,
            line.currency,
            line.debit_minor,
            line.credit_minor,
            line.balance_minor,
            line.functional_balance_minor,
        )
        for line in activity.lines
    ]
    assert got == [
        (1, D(2024, 3, 1), "ev-INV-2:invoice_issued:0", "EUR", 100_000, 0, 100_000, 188_000),
        (2, D(2024, 3, 5), "ev-CN-1:credit_note:0", "USD", 0, 13_000, 67_000, 175_000),
        (3, D(2024, 3, 20), "ev-INV-6:invoice_issued:0", "USD", 15_000, 0, 82_000, 190_000),
        (4, D(2024, 4, 10), "ev-P-2:payment_settled:0", "EUR", 0, 40_000, 60_000, 146_800),
        (5, D(2024, 4, 15), "ev-INV-5:invoice_issued:0", "EUR", 30_000, 0, 90_000, 179_800),
        (6, D(2024, 4, 20), "ev-WO-1:write_off:0", "USD", 0, 10_000, 72_000, 169_800),
    ]
    payment = activity.lines[3]
    assert (payment.rule, payment.customer_id, payment.source_event_id) == (
        "payment_settled",
        "C2",
        "ev-P-2",
    )
    assert (payment.functional_credit_minor, payment.description) == (
        43_200,
        "payment_settled ev-P-2",
    )


def test_account_activity_refuses_when_the_account_is_not_in_the_chart(conn):
    with pytest.raises(queries.UnknownAccount, match="unknown account 'cash'"):
        queries.account_activity(conn, "US1", "cash")


# --- AR aging --------------------------------------------------------------------------------


def test_ar_aging_buckets_open_invoices_by_days_past_due(conn):
    rows = queries.ar_aging(conn, "US1", D(2024, 6, 30))
    assert rows == [
        AgingRow(
            "INV-1", "C1", "USD", D(2024, 1, 10), D(2024, 2, 9), 142, "90+", 57_000, "USD", 57_000
        ),
        AgingRow(
            "INV-6", "C1", "USD", D(2024, 3, 20), D(2024, 4, 19), 72, "61-90", 15_000, "USD", 15_000
        ),
        AgingRow(
            "INV-3", "C1", "USD", D(2024, 5, 15), D(2024, 6, 14), 16, "1-30", 25_000, "USD", 25_000
        ),
        AgingRow(
            "INV-4",
            "C1",
            "USD",
            D(2024, 6, 20),
            D(2024, 7, 20),
            -20,
            "current",
            8_000,
            "USD",
            8_000,
        ),
        AgingRow(
            "INV-2", "C2", "EUR", D(2024, 3, 1), D(2024, 3, 31), 91, "90+", 60_000, "USD", 64_800
        ),
        AgingRow(
            "INV-5", "C2", "EUR", D(2024, 4, 15), D(2024, 5, 15), 46, "31-60", 30_000, "USD", 33_000
        ),
    ]
    assert queries.aging_totals(rows) == [
        AgingTotal("EUR", 0, 0, 30_000, 0, 60_000),
        AgingTotal("USD", 8_000, 25_000, 0, 15_000, 57_000),
    ]
    # Equal to the receivable in the trial balance: 1,050.00 USD and 900.00 EUR.
    assert [total.total_minor for total in queries.aging_totals(rows)] == [90_000, 105_000]


def test_ar_aging_counts_only_movements_posted_by_the_as_of_date(conn):
    assert queries.ar_aging(conn, "US1", D(2024, 2, 20)) == [
        AgingRow(
            "INV-1", "C1", "USD", D(2024, 1, 10), D(2024, 2, 9), 11, "1-30", 80_000, "USD", 80_000
        ),
    ]
    assert queries.ar_aging(conn, "EU1", D(2024, 6, 30)) == []  # paid in full


@pytest.mark.parametrize(
    ("days", "bucket"),
    [
        (-5, "current"),
        (0, "current"),
        (1, "1-30"),
        (30, "1-30"),
        (31, "31-60"),
        (60, "31-60"),
        (61, "61-90"),
        (90, "61-90"),
        (91, "90+"),
        (4000, "90+"),
    ],
)
def test_aging_bucket_bounds_when_days_sit_on_an_edge(days, bucket):
    assert queries.aging_bucket(days) == bucket


# --- deferred revenue roll-forward -----------------------------------------------------------


def rf(currency, period, opening, billings, recognised, adjustments, closing, functional=None):
    """A USD-entity row; ``functional`` = (opening, billings, recognised, adjustments, closing)."""
    f = functional or (opening, billings, recognised, adjustments, closing)
    return RollforwardRow(
        currency, "USD", period, opening, billings, recognised, adjustments, closing, 0, *f
    )


def test_deferred_rollforward_closes_every_period_with_hand_computed_movements(conn):
    assert queries.deferred_rollforward(conn, "US1") == [
        rf("EUR", "2024-03", 0, 100_000, 10_000, 0, 90_000, (0, 108_000, 10_800, 0, 97_200)),
        rf(
            "EUR",
            "2024-04",
            90_000,
            30_000,
            10_000,
            0,
            110_000,
            (97_200, 33_000, 10_800, 0, 119_400),
        ),
        rf("EUR", "2024-05", 110_000, 0, 10_000, 0, 100_000, (119_400, 0, 10_800, 0, 108_600)),
        rf("EUR", "2024-06", 100_000, 0, 10_000, 0, 90_000, (108_600, 0, 10_800, 0, 97_800)),
        rf("USD", "2024-01", 0, 120_000, 10_000, 0, 110_000),
        rf("USD", "2024-02", 110_000, 0, 10_000, 0, 100_000),
        rf("USD", "2024-03", 100_000, 15_000, 8_800, -12_000, 94_200),  # CN-1: an adjustment
        rf("USD", "2024-04", 94_200, 0, 8_800, 0, 85_400),
        rf("USD", "2024-05", 85_400, 25_000, 8_800, 0, 101_600),
        rf("USD", "2024-06", 101_600, 8_000, 8_800, 0, 100_800),
    ]


def test_deferred_rollforward_opens_with_the_earlier_periods_when_given_a_range(conn):
    rows = queries.deferred_rollforward(conn, "US1", "2024-03", "2024-04")
    assert [(r.currency, r.period, r.opening_minor, r.closing_minor) for r in rows] == [
        ("EUR", "2024-03", 0, 90_000),
        ("EUR", "2024-04", 90_000, 110_000),
        ("USD", "2024-03", 100_000, 94_200),
        ("USD", "2024-04", 94_200, 85_400),
    ]


def test_deferred_rollforward_refuses_when_a_period_is_unknown_or_malformed(conn):
    with pytest.raises(queries.UnknownPeriod, match=r"period 2023-12 .* 2024-01 to 2024-06"):
        queries.deferred_rollforward(conn, "US1", "2023-12")
    with pytest.raises(ValueError, match="YYYY-MM"):
        queries.deferred_rollforward(conn, "US1", "2024-13")


# --- revenue waterfall -----------------------------------------------------------------------


def test_waterfall_gives_recognised_months_then_scheduled_months_after_the_as_of_period(conn):
    rows = queries.waterfall_by_period(queries.waterfall(conn, "US1", D(2024, 6, 30)))
    expected = [WaterfallPeriod("EUR", p, 10_000, 0) for p in months("2024-03", 4)]
    expected += [WaterfallPeriod("EUR", p, 0, 10_000) for p in months("2024-07", 8)]
    expected += [WaterfallPeriod("USD", p, 10_000, 0) for p in ("2024-01", "2024-02")]
    expected += [WaterfallPeriod("USD", p, 8_800, 0) for p in months("2024-03", 4)]
    expected += [WaterfallPeriod("USD", p, 0, 8_800) for p in months("2024-07", 6)]
    assert rows == expected
    by_contract = queries.waterfall(conn, "US1", D(2024, 6, 30))
    assert {(r.contract_id, r.customer_id) for r in by_contract} == {("K1", "C1"), ("K2", "C2")}


def test_waterfall_moves_months_from_scheduled_to_recognised_as_the_date_moves(conn):
    rows = queries.waterfall_by_period(queries.waterfall(conn, "EU1", D(2024, 3, 31)))
    assert rows == [
        WaterfallPeriod("EUR", "2024-02", 5_000, 0),
        WaterfallPeriod("EUR", "2024-03", 5_000, 0),
        *(WaterfallPeriod("EUR", p, 0, 5_000) for p in months("2024-04", 10)),
    ]


# --- customer statement ----------------------------------------------------------------------


def test_statement_lists_invoices_payments_credits_and_write_offs_with_running_balance(conn):
    lines = queries.statement(conn, "C1")
    got = [
        (
            line.posting_date,
            line.document_type,
            line.document_id,
            line.invoice_id,
            line.debit_minor,
            line.credit_minor,
            line.balance_minor,
        )
        for line in lines
    ]
    assert got == [
        (D(2024, 1, 10), "invoice", "INV-1", "INV-1", 130_000, 0, 130_000),
        (D(2024, 2, 15), "payment", "P-1", "INV-1", 0, 50_000, 80_000),
        (D(2024, 3, 5), "credit note", "CN-1", "INV-1", 0, 13_000, 67_000),
        (D(2024, 3, 20), "invoice", "INV-6", "INV-6", 15_000, 0, 82_000),
        (D(2024, 4, 20), "write-off", "INV-1", "INV-1", 0, 10_000, 72_000),
        (D(2024, 5, 15), "invoice", "INV-3", "INV-3", 25_000, 0, 97_000),
        (D(2024, 6, 20), "invoice", "INV-4", "INV-4", 8_000, 0, 105_000),
    ]
    assert [line.balance_minor for line in queries.statement(conn, "C1", D(2024, 3, 31))] == [
        130_000,
        80_000,
        67_000,
        82_000,
    ]


def test_statement_shows_an_overpayment_as_credit_until_it_is_refunded(conn):
    got = [
        (line.document_type, line.document_id, line.account, line.balance_minor)
        for line in queries.statement(conn, "C3")
    ]
    assert got == [
        ("invoice", "INV-7", "accounts_receivable", 60_000),
        ("payment", "P-3", "accounts_receivable", 0),
        ("payment", "P-3", "customer_credit", -10_000),
        ("refund", "R-1", "customer_credit", 0),
    ]


# --- lineage ---------------------------------------------------------------------------------


def test_trace_of_a_batch_gives_its_lines_entries_source_events_and_erp_answer(conn):
    found = queries.trace(conn, BATCH_ID)
    assert found.kind == "batch"
    assert [(r.entry_id, r.line_no, r.account, r.batch_line_no, r.gl_code) for r in found.rows] == [
        (INV1, 1, "accounts_receivable", 1, "1100"),
        (INV1, 2, "tax_payable", 2, "2200"),
        (INV1, 3, "deferred_revenue", 3, "2400"),
        (REC1, 1, "deferred_revenue", 3, "2400"),
        (REC1, 2, "revenue", 4, "4000"),
    ]
    assert found.entry_ids == (INV1, REC1)
    assert found.origin_event_ids == ("ev-INV-1", "tick-2024-01-31")
    assert {r.origin_event_type for r in found.rows} == {"invoice.issued", "clock.advanced"}
    status = found.batch_status
    assert status is not None
    assert (status.status, status.erp_document_id, status.ack_count) == ("imported", "JE-1", 2)


def test_trace_finds_an_entry_an_event_and_a_tick_when_given_their_ids(conn):
    entry_trace = queries.trace(conn, "ev-P-2:payment_settled:0")
    assert entry_trace.kind == "entry"
    assert [(r.line_no, r.batch_id, r.origin_event_id) for r in entry_trace.rows] == [
        (1, None, "ev-P-2"),
        (2, None, "ev-P-2"),
        (3, None, "ev-P-2"),
    ]
    assert (entry_trace.rows[0].entry_partition, entry_trace.rows[0].origin_partition) == (1, 1)
    event_trace = queries.trace(conn, "ev-CN-1")
    assert (event_trace.kind, event_trace.entry_ids) == ("event", ("ev-CN-1:credit_note:0",))
    tick = queries.trace(conn, "tick-2024-03-31")
    assert tick.kind == "event"
    assert sorted(tick.entry_ids) == [
        "tick-2024-03-31/C1:revenue_recognition:0",
        "tick-2024-03-31/C2:revenue_recognition:0",
        "tick-2024-03-31/C3:revenue_recognition:0",
    ]
    assert len(tick.rows) == 6
    with pytest.raises(queries.UnknownReference, match="no batch, entry or event"):
        queries.trace(conn, "no-such-thing")


# --- periods and DLQ -------------------------------------------------------------------------


def test_periods_merge_the_periods_table_with_periods_seen_in_entries(conn):
    assert queries.periods(conn, "US1") == [
        PeriodRow("US1", "2024-01", "closed", D(2024, 2, 5), 2, D(2024, 1, 10), D(2024, 1, 31)),
        PeriodRow("US1", "2024-02", "closed", D(2024, 3, 4), 2, D(2024, 2, 15), D(2024, 2, 29)),
        PeriodRow("US1", "2024-03", "open", None, 5, D(2024, 3, 1), D(2024, 3, 31)),
        PeriodRow("US1", "2024-04", "open", None, 5, D(2024, 4, 10), D(2024, 4, 30)),
        PeriodRow("US1", "2024-05", "open", None, 3, D(2024, 5, 15), D(2024, 5, 31)),
        PeriodRow("US1", "2024-06", "open", None, 3, D(2024, 6, 20), D(2024, 6, 30)),
    ]
    assert [(p.period, p.entry_count) for p in queries.periods(conn, "EU1")] == [
        ("2024-02", 3),
        ("2024-03", 2),
        ("2024-04", 1),
        ("2024-05", 1),
        ("2024-06", 1),
    ]
    assert queries.periods(conn, "JP1") == [
        PeriodRow("JP1", "2024-01", "open", None, 0, None, None)
    ]


def test_dlq_summary_counts_records_and_distinct_events_per_reason(conn):
    summary = queries.dlq_summary(conn)
    assert [(r.reason, r.record_count, r.event_count) for r in summary] == [
        ("invalid_payload", 3, 2),
        ("orphan_event", 1, 1),
    ]
    assert (summary[0].first_failed_at, summary[0].last_failed_at) == (
        dt.datetime(2024, 3, 1, 10, tzinfo=UTC),
        dt.datetime(2024, 3, 3, 8, tzinfo=UTC),
    )


# --- the reader role and hostile arguments ---------------------------------------------------


def run_every_report(conn: psycopg.Connection) -> dict[str, Any]:
    return {
        "tb": queries.trial_balance(conn, "US1", D(2024, 6, 30)),
        "activity": queries.account_activity(conn, "US1", "revenue"),
        "aging": queries.ar_aging(conn, "US1", D(2024, 6, 30)),
        "rollforward": queries.deferred_rollforward(conn, "US1"),
        "waterfall": queries.waterfall(conn, "US1", D(2024, 6, 30)),
        "statement": queries.statement(conn, "C1"),
        "trace": queries.trace(conn, BATCH_ID),
        "periods": queries.periods(conn, "US1"),
        "dlq": queries.dlq_summary(conn),
    }


def test_reader_role_runs_every_report_and_gets_what_the_owner_gets(conn):
    as_owner = run_every_report(conn)
    conn.execute("SET ROLE revledger_reader")
    try:
        assert run_every_report(conn) == as_owner
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM revledger.journal_lines")
    finally:
        conn.execute("RESET ROLE")
    assert all(as_owner.values())


def test_sql_in_an_argument_is_inert_when_given_as_entity_customer_or_reference(conn):
    lines_before = conn.execute("SELECT count(*) FROM revledger.journal_lines").fetchone()
    conn.execute("SET ROLE revledger_reader")
    try:
        with pytest.raises(queries.UnknownEntity, match="unknown entity"):
            queries.trial_balance(conn, INJECTION)
        with pytest.raises(queries.UnknownEntity):
            queries.periods(conn, INJECTION)
        with pytest.raises(queries.UnknownCustomer, match="unknown customer"):
            queries.statement(conn, INJECTION)
        with pytest.raises(queries.UnknownReference):
            queries.trace(conn, INJECTION)
    finally:
        conn.execute("RESET ROLE")
    assert conn.execute("SELECT count(*) FROM revledger.journal_lines").fetchone() == lines_before
    assert lines_before == (sum(len(e.lines) for e in C1_ENTRIES + C2_ENTRIES + C3_ENTRIES),)


# --- a 24-month simulated company ------------------------------------------------------------

SEED = 11
# Every rule of ledger/rules_*.py and revenue/recognition.py that is not a billing or a
# recognition: the roll-forward's adjustments (0006_views.sql).
ADJUSTMENT_RULES = {
    "invoice_voided",
    "credit_note",
    "write_off",
    "revenue_reclass",
    "payment_settled",
    "refund",
    "dispute_lost",
    "dispute_fee",
    "payout",
}


@pytest.fixture(scope="module")
def simulated(devstack: Any) -> Iterator[tuple[str, list[JournalEntry], Any]]:
    """A database with the pure replay's entries and schedules of 40 customers, 24 months."""
    from connectors.simulation.contracts import generate_contracts
    from revenue.replay import replay_all

    stream = generate_contracts(seed=SEED, customers=40, months=24)
    replayed = replay_all(stream.reference, stream.events)
    assert not replayed.rejected and not replayed.expired
    with pg_data.fresh_database(devstack.database_url) as conninfo:
        with pg_data.connect(conninfo) as conn:
            pg_data.insert_entries(conn, replayed.entries)
            _insert_books(conn, replayed.books)
        yield conninfo, replayed.entries, replayed.books


def _insert_books(conn: psycopg.Connection, books: dict[str, Any]) -> None:
    from revenue.recognition import schedule_by_period

    for customer_id, customer_books in sorted(books.items()):
        for contract in customer_books.revenue.contracts.values():
            obligations = list(contract.obligations.values())
            ends = [o.service_end for o in obligations]
            pg_data.insert_contract(
                conn,
                contract.contract_id,
                customer_id=customer_id,
                entity=contract.entity,
                currency=contract.currency,
                total_price_minor=contract.total_price_minor,
                booking_date=contract.booking_date,
                service_start=min(o.service_start for o in obligations),
                service_end=None if None in ends else max(ends),
                status="cancelled" if contract.cancelled_on else "active",
                cancelled_on=contract.cancelled_on,
                implied=contract.implied,
                obligations=[
                    pg_data.obligation(
                        o.obligation_id,
                        allocated_minor=o.allocated_minor,
                        service_start=o.service_start,
                        service_end=o.service_end,
                        product_id=o.product_id,
                        family=str(o.family),
                        pattern=str(o.pattern),
                        method=None if o.method is None else str(o.method),
                        ssp_minor=o.ssp_minor,
                    )
                    for o in obligations
                ],
            )
            rows = defaultdict(list)
            for obligation_id, period, amount in schedule_by_period(contract):
                rows[obligation_id].append((period, amount))
            for obligation_id, amounts in rows.items():
                pg_data.insert_schedule(
                    conn, contract.contract_id, obligation_id, contract.currency, amounts
                )


def _deferred_by_rule(entries: list[JournalEntry]) -> dict[tuple[str, str, str], dict[str, int]]:
    """The oracle: deferred revenue credits - debits per (entity, currency, period), by rule."""
    moves: dict[tuple[str, str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for item in entries:
        for line in item.lines:
            if line.account is Account.deferred_revenue:
                sign = 1 if line.side is Side.credit else -1
                key = (item.entity, line.currency, item.period)
                moves[key][item.rule] += sign * line.amount_minor
    return moves


def test_simulated_rollforward_closes_every_period_and_equals_trial_balance_and_entries(
    simulated,
):
    conninfo, entries, _ = simulated
    oracle = _deferred_by_rule(entries)
    checked = 0
    with pg_data.connect(conninfo) as conn:
        for entity in ("US1", "EU1", "US2"):
            rows = queries.deferred_rollforward(conn, entity)
            assert rows, entity
            first, last = queries.known_periods(conn, entity) or ("", "")
            assert "2024-01" <= first <= "2024-12" and last == "2025-12", (entity, first)
            previous: dict[str, int] = {}
            for row in rows:
                assert row.closing_minor == (
                    row.opening_minor
                    + row.billings_minor
                    - row.recognised_minor
                    + row.adjustments_minor
                )
                assert row.functional_closing_minor == (
                    row.functional_opening_minor
                    + row.functional_billings_minor
                    - row.functional_recognised_minor
                    + row.functional_adjustments_minor
                )
                assert row.opening_minor == previous.get(row.currency, 0)
                previous[row.currency] = row.closing_minor
                assert row.unclassified_minor == 0
                by_rule = oracle.get((entity, row.currency, row.period), {})
                assert row.billings_minor == by_rule.get("invoice_issued", 0)
                recognition = ("revenue_recognition", "revenue_catch_up", "usage_recorded")
                assert row.recognised_minor == -sum(by_rule.get(r, 0) for r in recognition)
                assert row.adjustments_minor == sum(
                    amount for rule, amount in by_rule.items() if rule in ADJUSTMENT_RULES
                )
                tb = queries.trial_balance(conn, entity, queries.last_day(row.period))
                deferred = [
                    r for r in tb if r.account == "deferred_revenue" and r.currency == row.currency
                ]
                assert row.closing_minor == -sum(r.balance_minor for r in deferred)
                assert row.functional_closing_minor == -sum(
                    r.functional_balance_minor for r in deferred
                )
                checked += 1
    # Every period of every entity and currency since its first entry (US1 has two).
    assert checked >= 24 + 24 + 24 + 12, checked


def test_simulated_trial_balance_sums_to_zero_and_equals_the_replayed_entries(simulated):
    conninfo, entries, _ = simulated
    expected: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for item in entries:
        for line in item.lines:
            totals = expected[(item.entity, str(line.account), line.currency)]
            debit = line.side is Side.debit
            totals[0 if debit else 1] += line.amount_minor
            totals[2 if debit else 3] += line.functional_amount_minor
    with pg_data.connect(conninfo) as conn:
        got = {}
        for entity in ("US1", "EU1", "US2"):
            rows = queries.trial_balance(conn, entity)
            for currency in {row.currency for row in rows}:
                assert sum(r.balance_minor for r in rows if r.currency == currency) == 0
            assert sum(row.functional_balance_minor for row in rows) == 0
            for row in rows:
                got[(entity, row.account, row.currency)] = [
                    row.debits_minor,
                    row.credits_minor,
                    row.functional_debits_minor,
                    row.functional_credits_minor,
                ]
    assert got == dict(expected)


def test_simulated_waterfall_schedule_equals_the_engine_waterfall_at_a_month_end(simulated):
    from revenue.recognition import waterfall as engine_waterfall

    conninfo, _, books = simulated
    as_of = D(2024, 12, 31)
    expected: dict[tuple[str, str, str], int] = defaultdict(int)
    for customer_books in books.values():
        contracts = customer_books.revenue.contracts
        for contract_id, _, period, amount in engine_waterfall(customer_books.revenue, as_of):
            contract = contracts[contract_id]
            expected[(contract.entity, contract.currency, period)] += amount
    got: dict[tuple[str, str, str], int] = defaultdict(int)
    with pg_data.connect(conninfo) as conn:
        for entity in ("US1", "EU1", "US2"):
            for row in queries.waterfall(conn, entity, as_of):
                if row.kind == "scheduled":
                    got[(entity, row.currency, row.period)] += row.amount_minor
    assert got == {key: amount for key, amount in expected.items() if amount}
    assert len(got) > 12
