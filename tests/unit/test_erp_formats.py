"""ERP import layouts: NetSuite Journal Entry CSV, Oracle FBDI GlInterface.csv, batch JSON.

Sources (see docs/erp-formats.md):
- NetSuite: Oracle NetSuite Help, "Journal Entry and Intercompany Journal Entry Header Fields
  Table" (section_1534492479), "... Line-Level Fields Table" (section_1534492737),
  "Importing a Journal Entry" (section_N1472877).
- Oracle: Oracle Fusion Cloud Financials, "How Journal Import Data Is Processed" (FBDI
  Journal Import, JournalImportTemplate.xlsm GL_INTERFACE sheet) and the GL_INTERFACE
  table reference (oedmf glinterface).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from decimal import Decimal

import pytest

from connectors.erp.formats import (
    NETSUITE_COLUMNS,
    ORACLE_COLUMN_COUNT,
    ORACLE_NAMED_COLUMNS,
    LayoutError,
    batch_json,
    format_minor,
    netsuite_journal_csv,
    oracle_gl_interface_csv,
)
from ledger.batching import Batch, SummaryLine
from ledger.errors import InvariantViolation

FAMILY = (("product_family", "saas"),)


def batch_factory(lines: tuple[SummaryLine, ...] | None = None) -> Batch:
    """A USD-functional batch: USD, EUR (rate 1.085) and JPY (1 USD = 150 JPY) lines."""
    default = (
        SummaryLine("1100-000", "receivable", "USD", (), 12345, 0, 12345, 0),
        SummaryLine("4000-100", "revenue", "USD", FAMILY, 0, 12345, 0, 12345),
        SummaryLine("1100-000", "receivable", "EUR", (), 10000, 0, 10850, 0),
        SummaryLine("4000-100", "revenue", "EUR", FAMILY, 0, 10000, 0, 10850),
        SummaryLine("1100.000", "receivable", "JPY", (), 150000, 0, 100000, 0),
        SummaryLine("4000.100", "revenue", "JPY", FAMILY, 0, 150000, 0, 100000),
    )
    return Batch(
        batch_id="US01/p3/7",
        entity="US01",
        source_partition=3,
        sequence=7,
        period="2024-03",
        first_date=dt.date(2024, 3, 4),
        last_date=dt.date(2024, 3, 5),
        functional_currency="USD",
        lines=default if lines is None else lines,
        entry_ids=("e-1", "e-2", "e-3"),
        first_offset=40,
        last_offset=42,
    )


def read_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def netsuite_records() -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(netsuite_journal_csv(batch_factory()))))


def test_format_minor_uses_currency_decimals_when_exponent_is_0_2_or_3():
    """Amounts from integer minor units: JPY 0, USD 2, KWD 3 decimals, no float."""
    assert format_minor(150000, "JPY") == "150000"
    assert format_minor(12345, "USD") == "123.45"
    assert format_minor(5, "USD") == "0.05"
    assert format_minor(1234, "KWD") == "1.234"
    assert format_minor(-1234, "KWD") == "-1.234"
    assert format_minor(0, "EUR") == "0.00"
    with pytest.raises(InvariantViolation):
        format_minor(12.5, "USD")  # type: ignore[arg-type]


def test_netsuite_header_is_documented_columns_in_order_when_written():
    """Column headers of NetSuite Help "Journal Entry ... Header Fields Table" and
    "Line-Level Fields Table"; Memo plus Line Memo map to body and line memo
    ("Importing a Journal Entry")."""
    rows = read_rows(netsuite_journal_csv(batch_factory()))
    assert rows[0] == [
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
    ]
    assert tuple(rows[0]) == NETSUITE_COLUMNS
    assert all(len(row) == len(NETSUITE_COLUMNS) for row in rows)


def test_netsuite_writes_one_row_per_line_grouped_by_currency_when_batch_is_multicurrency():
    """NetSuite journals are single-currency (Currency is a body field); rows sharing an
    External ID form one journal, which must have balancing debits and credits."""
    records = netsuite_records()
    assert len(records) == len(batch_factory().lines)
    journals: dict[str, list[dict[str, str]]] = {}
    for record in records:
        journals.setdefault(record["External ID"], []).append(record)
    assert list(journals) == ["US01/p3/7/EUR", "US01/p3/7/JPY", "US01/p3/7/USD"]
    for external_id, rows in journals.items():
        currency = external_id.rsplit("/", 1)[1]
        assert {row["Currency"] for row in rows} == {currency}
        debits = sum(Decimal(row["Debit"] or "0") for row in rows)
        credits = sum(Decimal(row["Credit"] or "0") for row in rows)
        assert debits == credits > 0


def test_netsuite_places_amounts_on_their_side_when_formatting_each_currency():
    """Debit/Credit: "a number with ... 2 digits after the decimal" (Line-Level Fields);
    JPY has none, so it is written with 0 decimals."""
    by_key = {(r["Currency"], r["Account"]): r for r in netsuite_records()}
    assert by_key["USD", "1100-000"]["Debit"] == "123.45"
    assert by_key["USD", "1100-000"]["Credit"] == ""
    assert by_key["USD", "4000-100"]["Debit"] == ""
    assert by_key["USD", "4000-100"]["Credit"] == "123.45"
    assert by_key["EUR", "1100-000"]["Debit"] == "100.00"
    assert by_key["JPY", "1100.000"]["Debit"] == "150000"
    assert by_key["JPY", "4000.100"]["Credit"] == "150000"


def test_netsuite_fills_header_fields_and_class_when_line_has_product_family():
    """Date in the user's date preference (default MM/DD/YYYY), Posting Period by name."""
    record = next(r for r in netsuite_records() if r["Account"] == "4000-100")
    assert record["Subsidiary"] == "US01"
    assert record["Date"] == "03/05/2024"
    assert record["Posting Period"] == "Mar 2024"
    assert record["Memo"].startswith("revledger US01/p3/7 2024-03: 3 entries")
    assert record["Line Memo"] == "revenue"
    assert record["Class"] == "saas"
    assert record["Department"] == record["Location"] == ""
    iso = netsuite_journal_csv(batch_factory(), date_format="%Y-%m-%d")
    assert ",2024-03-05," in iso


def test_oracle_rows_have_no_header_and_template_field_count_when_written():
    """FBDI CSVs have no header row; GL_INTERFACE sheet order STATUS, LEDGER_ID,
    ACCOUNTING_DATE, USER_JE_SOURCE_NAME, USER_JE_CATEGORY_NAME, CURRENCY_CODE,
    DATE_CREATED, ACTUAL_FLAG, SEGMENT1..30, ENTERED_DR/CR, ACCOUNTED_DR/CR, REFERENCE1.."""
    rows = read_rows(oracle_gl_interface_csv(batch_factory(), ledger_id="300000046975971"))
    assert len(rows) == len(batch_factory().lines)
    assert all(len(row) == ORACLE_COLUMN_COUNT == 149 for row in rows)
    assert all(row[0] == "NEW" for row in rows)  # no header row: every row is data
    assert ORACLE_NAMED_COLUMNS[:8] == (
        "STATUS",
        "LEDGER_ID",
        "ACCOUNTING_DATE",
        "USER_JE_SOURCE_NAME",
        "USER_JE_CATEGORY_NAME",
        "CURRENCY_CODE",
        "DATE_CREATED",
        "ACTUAL_FLAG",
    )
    positions = {name: i for i, name in enumerate(ORACLE_NAMED_COLUMNS, start=1)}
    assert positions["SEGMENT1"] == 9
    assert positions["SEGMENT30"] == 38
    assert positions["ENTERED_DR"] == 39
    assert positions["ACCOUNTED_CR"] == 42
    assert positions["REFERENCE1"] == 43
    assert positions["REFERENCE10"] == 52
    assert positions["REFERENCE21"] == 53
    assert positions["GROUP_ID"] == 67
    assert positions["LEDGER_NAME"] == 92
    assert positions["PERIOD_NAME"] == 95


def oracle_records() -> list[dict[str, str]]:
    text = oracle_gl_interface_csv(batch_factory(), ledger_id="1", source="RevSub", category="Rev")
    return [dict(zip(ORACLE_NAMED_COLUMNS, row, strict=False)) for row in read_rows(text)]


def test_oracle_fills_dates_segments_and_amounts_when_line_is_functional_currency():
    """ACCOUNTING_DATE in YYYY/MM/DD; gl_code split on '-' or '.' into SEGMENTn."""
    record = next(r for r in oracle_records() if r["CURRENCY_CODE"] == "USD")
    assert record["LEDGER_ID"] == "1"
    assert record["ACCOUNTING_DATE"] == record["DATE_CREATED"] == "2024/03/05"
    assert record["USER_JE_SOURCE_NAME"] == "RevSub"
    assert record["USER_JE_CATEGORY_NAME"] == "Rev"
    assert record["ACTUAL_FLAG"] == "A"
    assert (record["SEGMENT1"], record["SEGMENT2"], record["SEGMENT3"]) == ("1100", "000", "")
    assert (record["ENTERED_DR"], record["ENTERED_CR"]) == ("123.45", "")
    assert (record["ACCOUNTED_DR"], record["ACCOUNTED_CR"]) == ("123.45", "")
    assert record["USER_CURRENCY_CONVERSION_TYPE"] == ""
    assert record["REFERENCE1"] == "US01/p3/7"
    assert record["REFERENCE4"] == "US01/p3/7/USD"


def test_oracle_gives_accounted_amount_and_user_rate_when_line_is_foreign_currency():
    """ENTERED_* in the entered currency's decimals, ACCOUNTED_* in the ledger currency's;
    conversion type User with CURRENCY_CONVERSION_RATE (GL_INTERFACE table reference)."""
    records = {(r["CURRENCY_CODE"], r["SEGMENT1"]): r for r in oracle_records()}
    eur_credit = records["EUR", "4000"]
    assert (eur_credit["ENTERED_DR"], eur_credit["ENTERED_CR"]) == ("", "100.00")
    assert (eur_credit["ACCOUNTED_DR"], eur_credit["ACCOUNTED_CR"]) == ("", "108.50")
    assert eur_credit["USER_CURRENCY_CONVERSION_TYPE"] == "User"
    assert eur_credit["CURRENCY_CONVERSION_DATE"] == "2024/03/05"
    assert eur_credit["CURRENCY_CONVERSION_RATE"] == "1.085"
    jpy_debit = records["JPY", "1100"]
    assert (jpy_debit["SEGMENT1"], jpy_debit["SEGMENT2"]) == ("1100", "000")
    assert (jpy_debit["ENTERED_DR"], jpy_debit["ACCOUNTED_DR"]) == ("150000", "1000.00")
    assert jpy_debit["CURRENCY_CONVERSION_RATE"] == "0.006666666667"


def test_oracle_rejects_gl_code_when_it_has_more_than_30_segments():
    """GL_INTERFACE has SEGMENT1..SEGMENT30 only."""
    code = "-".join(["1"] * 31)
    lines = (
        SummaryLine(code, "receivable", "USD", (), 100, 0, 100, 0),
        SummaryLine("4000", "revenue", "USD", (), 0, 100, 0, 100),
    )
    with pytest.raises(LayoutError, match="30 segments"):
        oracle_gl_interface_csv(batch_factory(lines), ledger_id="1")


def test_oracle_refuses_gl_code_as_bad_data_when_a_segment_is_empty():
    lines = (
        SummaryLine("101--1200", "receivable", "USD", (), 100, 0, 100, 0),
        SummaryLine("4000", "revenue", "USD", (), 0, 100, 0, 100),
    )
    with pytest.raises(LayoutError, match="empty segment"):
        oracle_gl_interface_csv(batch_factory(lines), ledger_id="1")


def test_both_layouts_split_a_line_when_it_has_debit_and_credit():
    """One side per journal line in both ERPs: a two-sided summary line gives two rows."""
    lines = (
        SummaryLine("1100", "receivable", "USD", (), 500, 200, 500, 200),
        SummaryLine("4000", "revenue", "USD", (), 0, 300, 0, 300),
    )
    batch = batch_factory(lines)
    netsuite = list(csv.DictReader(io.StringIO(netsuite_journal_csv(batch))))
    assert [(r["Account"], r["Debit"], r["Credit"]) for r in netsuite] == [
        ("1100", "5.00", ""),
        ("1100", "", "2.00"),
        ("4000", "", "3.00"),
    ]
    oracle = read_rows(oracle_gl_interface_csv(batch, ledger_id="1"))
    assert [(r[38], r[39], r[40], r[41]) for r in oracle] == [
        ("5.00", "", "5.00", ""),
        ("", "2.00", "", "2.00"),
        ("", "3.00", "", "3.00"),
    ]


def test_batch_json_round_trips_to_the_same_figures_when_parsed():
    """Canonical JSON: sorted keys, integer minor units beside their currency."""
    batch = batch_factory()
    text = batch_json(batch)
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    document = json.loads(text)
    rebuilt = Batch(
        **{
            **document,
            "first_date": dt.date.fromisoformat(document["first_date"]),
            "last_date": dt.date.fromisoformat(document["last_date"]),
            "lines": tuple(
                SummaryLine(**{**line, "dimensions": tuple(map(tuple, line["dimensions"]))})
                for line in document["lines"]
            ),
            "entry_ids": tuple(document["entry_ids"]),
        }
    )
    assert rebuilt == batch
    assert all(type(line["debit_minor"]) is int for line in document["lines"])
    assert document["lines"][4]["currency"] == "JPY"
    assert document["lines"][4]["debit_minor"] == 150000
