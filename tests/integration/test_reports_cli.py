"""The report commands as a subprocess against a prepared database.

``python -m streams.reports`` is the same parser and entry point that ``streams.cli`` wires
as ``revledger tb | activity | ...``. The database holds a small scenario inserted with
``pg_data``: a USD entity with amounts in the millions (digit grouping), a JPY entity (no
decimals), an ERP batch with its ack, and source events for lineage.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.accounts import Account, Side
from ledger.calendar import period_of
from ledger.entries import JournalEntry, JournalLine, dimensions_of, make_entry_id
from streams.reports import format_amount, group_digits

import pg_data

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
ENTRY_POINT = ("-m", "streams.cli")
INJECTION = "x'; drop table revledger.journal_lines; --"
D = dt.date
BATCH_ID = "US1/p0/0"
INV1 = "ev-INV-1:invoice_issued:0"
REC1 = "tick-2024-01-31/C1:revenue_recognition:0"
PAY1 = "ev-P-1:payment_settled:0"


def make_entry(source: str, rule: str, day: dt.date, lines: list[tuple], **kw: Any):
    return JournalEntry(
        entry_id=make_entry_id(source, rule, 0),
        entity=kw.get("entity", "US1"),
        customer_id=kw.get("customer", "C1"),
        source_event_id=source,
        source_event_type=kw["source_type"],
        rule=rule,
        sequence=0,
        posting_date=day,
        original_date=day,
        period=period_of(day),
        functional_currency=kw.get("currency", "USD"),
        description=f"{rule} {source}",
        lines=tuple(
            JournalLine(
                n,
                Account(account),
                Side(side),
                amount,
                kw.get("currency", "USD"),
                amount,
                dimensions_of(dims),
            )
            for n, (account, side, amount, dims) in enumerate(lines, start=1)
        ),
    )


INVOICE = {"invoice_id": "INV-1"}
RECOGNISED = {"contract_id": "K1", "product_family": "subscription"}
ENTRIES = [
    make_entry(
        "ev-INV-1",
        "invoice_issued",
        D(2024, 1, 10),
        [
            ("accounts_receivable", "debit", 123_456_789, INVOICE),
            ("deferred_revenue", "credit", 123_456_789, {**INVOICE, **RECOGNISED}),
        ],
        source_type="invoice.issued",
    ),
    make_entry(
        "tick-2024-01-31/C1",
        "revenue_recognition",
        D(2024, 1, 31),
        [
            ("deferred_revenue", "debit", 10_000_000, RECOGNISED),
            ("revenue", "credit", 10_000_000, RECOGNISED),
        ],
        source_type="clock.advanced",
    ),
    make_entry(
        "ev-P-1",
        "payment_settled",
        D(2024, 2, 15),
        [
            ("cash_clearing", "debit", 23_456_789, {"payment_id": "P-1"}),
            ("accounts_receivable", "credit", 23_456_789, {"payment_id": "P-1", **INVOICE}),
        ],
        source_type="payment.settled",
    ),
    make_entry(
        "ev-INV-J",
        "invoice_issued",
        D(2024, 1, 5),
        [
            ("accounts_receivable", "debit", 150_000, {"invoice_id": "INV-J"}),
            ("deferred_revenue", "credit", 150_000, {"invoice_id": "INV-J"}),
        ],
        source_type="invoice.issued",
        entity="JP1",
        customer="CJ",
        currency="JPY",
    ),
]


@pytest.fixture(scope="module")
def database(devstack: Any) -> Iterator[str]:
    with pg_data.fresh_database(devstack.database_url) as conninfo:
        with pg_data.connect(conninfo) as conn:
            pg_data.insert_entries(conn, ENTRIES)
            for item in ENTRIES:
                if item.rule != "revenue_recognition":
                    pg_data.insert_source_event(
                        conn,
                        item.source_event_id,
                        item.source_event_type,
                        customer_id=item.customer_id,
                        entity=item.entity,
                        business_date=item.posting_date,
                    )
            pg_data.insert_source_event(
                conn, "tick-2024-01-31", "clock.advanced", business_date=D(2024, 1, 31)
            )
            pg_data.insert_invoice(
                conn,
                "INV-1",
                customer_id="C1",
                entity="US1",
                currency="USD",
                issue_date=D(2024, 1, 10),
                due_date=D(2024, 2, 9),
                total_minor=123_456_789,
            )
            pg_data.insert_batch(
                conn,
                BATCH_ID,
                entity="US1",
                period="2024-01",
                functional_currency="USD",
                lines=[
                    pg_data.batch_line(
                        "1100", "accounts_receivable", "USD", debit_minor=123_456_789
                    ),
                    pg_data.batch_line(
                        "2400",
                        "deferred_revenue",
                        "USD",
                        debit_minor=10_000_000,
                        credit_minor=123_456_789,
                        dimensions={"product_family": "subscription"},
                    ),
                    pg_data.batch_line(
                        "4000",
                        "revenue",
                        "USD",
                        credit_minor=10_000_000,
                        dimensions={"product_family": "subscription"},
                    ),
                ],
                entry_ids=[INV1, REC1],
            )
            pg_data.insert_ack(
                conn,
                BATCH_ID,
                entity="US1",
                status="imported",
                erp_document_id="JE-77",
                acknowledged_at=dt.datetime(2024, 2, 1, 9, tzinfo=dt.UTC),
            )
        yield conninfo


def revledger(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *ENTRY_POINT, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def report(database: str, *args: str) -> subprocess.CompletedProcess[str]:
    done = revledger(*args, "--database-url", database)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done


def refused(database: str, *args: str) -> str:
    """Run a command that must exit 2; return its one stderr line."""
    done = revledger(*args, "--database-url", database)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


# --- tb in three formats ---------------------------------------------------------------------


def test_tb_csv_gives_net_balances_as_plain_decimals(database):
    done = report(database, "tb", "--entity", "US1", "--format", "csv")
    assert list(csv.reader(io.StringIO(done.stdout))) == [
        [
            "account",
            "currency",
            "debit",
            "credit",
            "functional_currency",
            "functional_debit",
            "functional_credit",
        ],
        ["accounts_receivable", "USD", "1000000.00", "0.00", "USD", "1000000.00", "0.00"],
        ["cash_clearing", "USD", "234567.89", "0.00", "USD", "234567.89", "0.00"],
        ["deferred_revenue", "USD", "0.00", "1134567.89", "USD", "0.00", "1134567.89"],
        ["revenue", "USD", "0.00", "100000.00", "USD", "0.00", "100000.00"],
    ]


def test_tb_table_groups_digits_and_totals_each_currency(database):
    done = report(database, "tb", "--entity", "US1", "--as-of", "2024-01-31")
    lines = done.stdout.splitlines()
    assert lines[0] == "Trial balance US1 as of 2024-01-31"
    rows = {line.split()[0]: line.split() for line in lines if line.startswith(("acc", "def"))}
    assert rows["accounts_receivable"][:4] == ["accounts_receivable", "USD", "1,234,567.89", "0.00"]
    assert rows["deferred_revenue"][:4] == ["deferred_revenue", "USD", "0.00", "1,134,567.89"]
    assert "totals" in lines
    total = next(line.split() for line in lines if line.startswith("total "))
    assert total[:4] == ["total", "USD", "1,234,567.89", "1,234,567.89"]


def test_tb_json_carries_amounts_as_exact_decimal_strings(database):
    done = report(database, "tb", "--entity", "JP1", "--format", "json")
    document = json.loads(done.stdout)
    assert document["report"] == "tb"
    assert (document["entity"], document["as_of"]) == ("JP1", None)
    assert document["rows"] == [
        {
            "account": "accounts_receivable",
            "currency": "JPY",
            "debit": "150000",
            "credit": "0",
            "functional_currency": "JPY",
            "functional_debit": "150000",
            "functional_credit": "0",
        },
        {
            "account": "deferred_revenue",
            "currency": "JPY",
            "debit": "0",
            "credit": "150000",
            "functional_currency": "JPY",
            "functional_debit": "0",
            "functional_credit": "150000",
        },
    ]
    assert {
        "account": "total",
        "currency": "JPY",
        "debit": "150000",
        "credit": "150000",
    }.items() <= (document["totals"][0].items())


# --- refusals --------------------------------------------------------------------------------


def test_unknown_entity_exits_2_with_one_line_on_stderr(database):
    line = refused(database, "tb", "--entity", "NOPE")
    assert line == "revledger tb: unknown entity 'NOPE': no entries or periods of it"


def test_sql_given_as_entity_or_customer_is_inert_and_the_table_stays(database):
    assert "unknown entity" in refused(database, "tb", "--entity", INJECTION)
    assert "unknown entity" in refused(database, "aging", "--entity", INJECTION)
    assert "unknown customer" in refused(database, "statement", "--customer", INJECTION)
    assert "no batch, entry or event" in refused(database, "trace", INJECTION)
    with pg_data.connect(database) as conn:
        count = conn.execute("SELECT count(*) FROM revledger.journal_lines").fetchone()
    assert count == (sum(len(item.lines) for item in ENTRIES),)


def test_bad_date_unknown_period_and_unknown_account_exit_2(database):
    assert refused(database, "tb", "--entity", "US1", "--as-of", "2024-02-30") == (
        "revledger tb: --as-of must be a date YYYY-MM-DD, got '2024-02-30'"
    )
    assert "unknown period 1999-01 for entity 'US1' (known: 2024-01 to 2024-02)" in refused(
        database, "tb", "--entity", "US1", "--period", "1999-01"
    )
    assert "unknown entity 'NOPE'" in refused(
        database, "tb", "--entity", "NOPE", "--period", "2024-01"
    )
    assert "--period must be YYYY-MM" in refused(
        database, "rollforward", "--entity", "US1", "--period", "2024-1"
    )
    assert "unknown account 'cash'" in refused(
        database, "activity", "--entity", "US1", "--account", "cash"
    )


def test_unreachable_database_exits_1_with_one_line():
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = revledger(
        "tb", "--entity", "US1", "--database-url", f"postgresql://u:pw@127.0.0.1:{port}/x"
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("revledger tb: cannot read u@127.0.0.1"), lines
    assert "pw" not in done.stderr


# --- trace and the other reports -------------------------------------------------------------


def test_trace_of_a_batch_lists_its_entries_and_source_events(database):
    done = report(database, "trace", BATCH_ID, "--format", "json")
    document = json.loads(done.stdout)
    assert (document["kind"], document["erp_status"], document["erp_document_id"]) == (
        "batch",
        "imported",
        "JE-77",
    )
    assert [
        (e["entry_id"], e["origin_event_id"], e["origin_event_type"]) for e in document["entries"]
    ] == [
        (INV1, "ev-INV-1", "invoice.issued"),
        (REC1, "tick-2024-01-31", "clock.advanced"),
    ]
    assert [(r["entry_id"], r["gl_code"], r["amount"]) for r in document["rows"]] == [
        (INV1, "1100", "1234567.89"),
        (INV1, "2400", "1234567.89"),
        (REC1, "2400", "100000.00"),
        (REC1, "4000", "100000.00"),
    ]
    table = report(database, "trace", BATCH_ID).stdout
    assert table.splitlines()[0] == (
        f"Trace of batch {BATCH_ID}: 2 entries; ERP imported JE-77 (1 ack)"
    )
    for name in (INV1, REC1, "ev-INV-1", "tick-2024-01-31"):
        assert name in table


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("activity", "--entity", "US1", "--account", "accounts_receivable"), "1,000,000.00"),
        (
            ("activity", "--entity", "US1", "--account", "revenue", "--period", "2024-01"),
            "100,000.00",
        ),
        (("aging", "--entity", "US1", "--as-of", "2024-03-31"), "31-60"),
        (("rollforward", "--entity", "US1", "--period", "2024-01..2024-02"), "1,134,567.89"),
        (("waterfall", "--entity", "US1", "--period", "2024-02"), "100,000.00"),
        (("statement", "--customer", "C1"), "1,000,000.00"),
        (("periods", "--entity", "US1"), "2024-02"),
    ],
    ids=[
        "activity",
        "activity-period",
        "aging",
        "rollforward",
        "waterfall",
        "statement",
        "periods",
    ],
)
def test_every_report_runs_when_given_its_arguments(database, args, expected):
    assert expected in report(database, *args).stdout


def test_amounts_are_formatted_with_the_currency_decimals():
    assert format_amount(-123_456_789, "USD", grouped=True) == "-1,234,567.89"
    assert format_amount(-123_456_789, "USD", grouped=False) == "-1234567.89"
    assert format_amount(1_500_000, "JPY", grouped=True) == "1,500,000"
    assert format_amount(1_234_567, "KWD", grouped=True) == "1,234.567"
    assert group_digits("-0.05") == "-0.05"
