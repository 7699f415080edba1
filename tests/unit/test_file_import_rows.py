"""Import files: the CSV / JSON Lines parsers, the generic contract JSON, the error report."""

from __future__ import annotations

import datetime as dt
import io
import json
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.files.amounts import AmountError, minor_units
from connectors.files.canonical import BILLING_KINDS, PAYMENT_KINDS, CellError, parse_rows
from connectors.files.contracts import generic_contract_event
from connectors.files.rows import FileUnreadable, RowError, read_csv, read_jsonl
from connectors.salesforce import SalesforceConfig, SalesforceConfigError
from ledger.events import CreditNoteVoided, InvoiceIssued, PaymentSettled, RefundIssued
from revenue.events import ContractAmended, ContractBooked, ContractCancelled
from streams.importing import EXIT_OK, EXIT_ROWS_REFUSED, EXIT_UNREADABLE, run_import

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "salesforce"

BILLING_HEADER = (
    "record_type,invoice_id,customer_id,entity,issue_date,due_date,currency,"
    "line_id,product_id,quantity,amount,tax_code,jurisdiction\n"
)


def billing(*rows: str) -> str:
    return BILLING_HEADER + "".join(f"{row}\n" for row in rows)


@pytest.mark.parametrize(
    ("value", "currency", "minor"),
    [
        ("12.30", "USD", 1230),
        ("500", "JPY", 500),
        ("1.234", "KWD", 1234),
        (Decimal("7"), "EUR", 700),
    ],
)
def test_minor_units_are_exact_when_the_decimals_fit_the_currency(value, currency, minor):
    assert minor_units(value, currency) == minor


@pytest.mark.parametrize(
    ("value", "currency", "reason"),
    [
        ("12.345", "USD", "amount_sub_minor_unit"),
        ("5.5", "JPY", "amount_sub_minor_unit"),
        (12.3, "USD", "amount_float"),
        ("-1.00", "USD", "amount_negative"),
        ("ten", "USD", "amount_not_decimal"),
        ("NaN", "USD", "amount_not_decimal"),
        ("1", "ABC", "unknown_currency"),
        ("92233720368547758.08", "USD", "amount_overflows"),
    ],
)
def test_minor_units_are_refused_when_not_exact(value, currency, reason):
    with pytest.raises(AmountError) as caught:
        minor_units(value, currency)
    assert caught.value.reason == reason


def test_invoice_rows_make_one_invoice_with_lines_and_tax():
    rows, errors = read_csv(
        billing(
            "invoice_line,INV-1,C1,US1,2024-07-01,2024-07-31,USD,L1,SUB,2,100.00,,",
            "invoice_line,INV-1,C1,US1,2024-07-01,2024-07-31,USD,L2,SVC,,5.50,,",
            "invoice_tax,INV-1,C1,US1,2024-07-01,2024-07-31,USD,,,,8.75,VAT,CA",
        )
    )
    parsed = parse_rows(rows, BILLING_KINDS)

    assert errors == [] and parsed.errors == ()
    (invoice,) = parsed.events
    assert isinstance(invoice, InvoiceIssued)
    assert invoice.event_id == "file:invoice:INV-1"
    assert [(x.line_id, x.quantity, x.amount_minor) for x in invoice.lines] == [
        ("L1", 2, 100_00),
        ("L2", 1, 5_50),
    ]
    assert [(t.tax_code, t.amount_minor) for t in invoice.tax_lines] == [("VAT", 8_75)]
    assert invoice.total_minor == 114_25
    assert invoice.occurred_at == dt.datetime(2024, 7, 1, tzinfo=dt.UTC)


def test_a_credit_note_void_row_names_the_note_its_invoice_and_the_day():
    rows, errors = read_jsonl(
        "\n".join(
            json.dumps(row)
            for row in (
                {
                    "record_type": "credit_note_void",
                    "credit_note_id": "CN-1",
                    "invoice_id": "INV-1",
                    "customer_id": "C1",
                    "entity": "US1",
                    "date": "2024-07-22",
                    "reason": "issued by mistake",
                },
                {
                    "record_type": "credit_note_void",
                    "credit_note_id": "CN-2",
                    "customer_id": "C1",
                    "entity": "US1",
                    "date": "2024-07-22",
                },
            )
        )
        + "\n"
    )
    parsed = parse_rows(rows, BILLING_KINDS)

    assert errors == []
    (void,) = parsed.events
    assert isinstance(void, CreditNoteVoided)
    assert (void.event_id, void.credit_note_id, void.invoice_id, void.void_date, void.reason) == (
        "file:credit_note_void:CN-1",
        "CN-1",
        "INV-1",
        dt.date(2024, 7, 22),
        "issued by mistake",
    )
    assert parsed.errors == (RowError(2, "invoice_id", "required"),)


def test_bad_rows_are_reported_by_line_and_column_and_refuse_only_their_document():
    rows, errors = read_csv(
        billing(
            "invoice_line,INV-1,C1,US1,2024-07-01,2024-07-31,USD,L1,SUB,1,100.00,,",
            "invoice_line,INV-2,C2,US1,2024-07-01,2024-07-31,USD,L1,SUB,1,12.345,,",
            "invoice_line,INV-2,C2,US1,2024-07-01,2024-07-31,USD,L2,SVC,1,5.00,,",
            "invoice_line,INV-3,C3,US1,2024-07-01,2024-07-31,USD,L1,SUB,x,5.00,,",
            "refund,INV-4,C3,US1,2024-07-01,2024-07-31,USD,L1,SUB,1,5.00,,",
            "invoice_line,INV-5,C5,US1,2024-07-01,2024-06-30,USD,L1,SUB,1,5.00,,",
            "invoice_line,INV-6,C6,US1,2024-07-01,2024-07-31,USD,L1,SUB,1,5.00,,",
            "invoice_tax,INV-6,C6,US1,2024-07-02,2024-07-31,USD,,,,1.00,VAT,CA",
            "invoice_line,INV-7,C7,US1,2024-07-01,2024-07-31,usd,L1,SUB,1,5.00,,",
            "invoice_line,INV-8,C8,US1,2024-07-01",
        )
    )
    parsed = parse_rows(rows, BILLING_KINDS)

    assert [e.invoice_id for e in parsed.events] == ["INV-1"]
    assert sorted([*errors, *parsed.errors], key=lambda e: e.line) == [
        RowError(3, "amount", "amount_sub_minor_unit: '12.345' has more decimals than USD's 2"),
        RowError(4, "", "not imported: invoice INV-2 is refused (line 3)"),
        RowError(5, "quantity", "'x' is not a whole number"),
        RowError(
            6,
            "record_type",
            "'refund' is not one of: invoice_line, invoice_tax, invoice_void,"
            " credit_note_line, credit_note_tax, credit_note_void, write_off, customer",
        ),
        RowError(7, "", "invoice INV-5: due_date is before issue_date"),
        RowError(8, "", "not imported: invoice INV-6 is refused (line 9)"),
        RowError(
            9, "issue_date", "differs from line 8 of invoice INV-6 ('2024-07-02' vs '2024-07-01')"
        ),
        RowError(10, "currency", "'usd' is not a known ISO 4217 code (e.g. USD)"),
        RowError(11, "", "5 values for 13 columns"),
    ]


def test_csv_without_header_is_unreadable():
    with pytest.raises(FileUnreadable, match="empty"):
        read_csv("")
    with pytest.raises(FileUnreadable, match="distinct"):
        read_csv("record_type,amount,amount\n")


def test_csv_line_numbers_count_quoted_newlines():
    rows, _ = read_csv('a,b\n"one\ntwo",1\nx,2\n')
    assert [(r.line, dict(r.values)) for r in rows] == [
        (2, {"a": "one\ntwo", "b": "1"}),
        (4, {"a": "x", "b": "2"}),
    ]


def test_jsonl_payment_rows_make_one_payment_with_an_application_per_invoice():
    text = "\n".join(
        json.dumps(row)
        for row in [
            {
                "record_type": "payment",
                "payment_id": "P1",
                "customer_id": "C1",
                "entity": "US1",
                "date": "2024-07-05",
                "currency": "EUR",
                "amount": "150.00",
                "fee": "4.50",
                "processor": "adyen",
                "invoice_id": "INV-1",
                "applied_amount": "100.00",
            },
            {
                "record_type": "payment",
                "payment_id": "P1",
                "customer_id": "C1",
                "entity": "US1",
                "date": "2024-07-05",
                "currency": "EUR",
                "amount": "150.00",
                "fee": "4.50",
                "processor": "adyen",
                "invoice_id": "INV-2",
                "applied_amount": "50.00",
            },
            {
                "record_type": "refund",
                "refund_id": "R1",
                "payment_id": "P1",
                "customer_id": "C1",
                "entity": "US1",
                "date": "2024-07-09",
                "currency": "EUR",
                "amount": 20,
            },
        ]
    )
    rows, errors = read_jsonl(text + "\nnot json\n[1]\n")
    parsed = parse_rows(rows, PAYMENT_KINDS)

    payment, refund = parsed.events
    assert isinstance(payment, PaymentSettled) and isinstance(refund, RefundIssued)
    assert (payment.amount_minor, payment.fee_minor, payment.event_id) == (
        150_00,
        4_50,
        "file:payment:P1",
    )
    assert [(a.invoice_id, a.amount_minor) for a in payment.applications] == [
        ("INV-1", 100_00),
        ("INV-2", 50_00),
    ]
    assert refund.amount_minor == 20_00
    assert [(e.line, e.column) for e in errors] == [(4, ""), (5, "")]
    assert errors[1].reason == "not a JSON object"


def test_jsonl_number_with_too_many_decimals_is_refused_not_rounded():
    row = {
        "record_type": "payout",
        "payout_id": "PO1",
        "customer_id": "processor:adyen:1",
        "entity": "US1",
        "date": "2024-07-05",
        "currency": "JPY",
        "amount": 1500.5,
        "bank_account": "ba_1",
    }
    rows, _ = read_jsonl(json.dumps(row))
    parsed = parse_rows(rows, PAYMENT_KINDS)
    assert parsed.events == ()
    assert parsed.errors == (
        RowError(
            1, "amount", "amount_sub_minor_unit: Decimal('1500.5') has more decimals than JPY's 0"
        ),
    )


def test_payment_applications_beyond_the_amount_are_refused():
    rows, _ = read_jsonl(
        json.dumps(
            {
                "record_type": "payment",
                "payment_id": "P1",
                "customer_id": "C1",
                "entity": "US1",
                "date": "2024-07-05",
                "currency": "USD",
                "amount": "10.00",
                "processor": "x",
                "invoice_id": "INV-1",
                "applied_amount": "20.00",
            }
        )
    )
    assert parse_rows(rows, PAYMENT_KINDS).errors == (
        RowError(1, "", "payment P1: applications 2000 exceed payment amount 1000"),
    )


GENERIC = {
    "type": "contract.booked",
    "id": "deal-42-won",
    "source_system": "hubspot",
    "customer_id": "C1",
    "entity": "US1",
    "contract_id": "K-42",
    "booking_date": "2024-07-01",
    "currency": "USD",
    "obligations": [
        {
            "obligation_id": "K-42/platform",
            "product_id": "SUB",
            "quantity": 10,
            "price": "12000.00",
            "ssp": "15000.00",
            "pattern": "ratable_daily",
            "service_start": "2024-07-01",
            "service_end": "2025-06-30",
        },
        {
            "obligation_id": "K-42/setup",
            "product_id": "SVC",
            "family": "services",
            "price": "1000",
            "pattern": "point_in_time",
            "service_start": "2024-07-01",
        },
    ],
}


def test_generic_contract_json_books_amends_and_cancels():
    booked = generic_contract_event(GENERIC)
    assert isinstance(booked, ContractBooked)
    assert (booked.event_id, booked.total_price_minor) == ("hubspot:deal-42-won", 13_000_00)
    assert [(o.price_minor, o.ssp_minor) for o in booked.obligations] == [
        (12_000_00, 15_000_00),
        (1_000_00, 1_000_00),  # no SSP given: the price is the standalone price
    ]
    amended = generic_contract_event(
        {
            **GENERIC,
            "type": "contract.amended",
            "id": "deal-42-upsell",
            "amendment_id": "A1",
            "effective_date": "2024-10-01",
            "treatment": "prospective",
            "total_price": "14000.00",
        }
    )
    assert isinstance(amended, ContractAmended) and amended.total_price_minor == 14_000_00
    cancelled = generic_contract_event(
        {
            "type": "contract.cancelled",
            "id": "x",
            "customer_id": "C1",
            "entity": "US1",
            "contract_id": "K-42",
            "effective_date": "2024-12-31",
            "reason": "churn",
        }
    )
    assert isinstance(cancelled, ContractCancelled) and cancelled.event_id == "crm:x"


@pytest.mark.parametrize(
    ("change", "column", "reason"),
    [
        (
            {"obligations": [{**GENERIC["obligations"][0], "price": "1.001"}]},
            "obligations[0].price",
            "amount_sub_minor_unit: '1.001' has more decimals than USD's 2",
        ),
        ({"obligations": []}, "obligations", "expected a non-empty list"),
        ({"booking_date": "01/07/2024"}, "booking_date", "'01/07/2024' is not a date (YYYY-MM-DD)"),
        (
            {"type": "contract.signed"},
            "type",
            "'contract.signed' is not one of contract.booked, contract.amended, contract.cancelled",
        ),
        (
            {"obligations": [{**GENERIC["obligations"][0], "pattern": "yearly"}]},
            "obligations[0].pattern",
            "'yearly' is not one of ratable_daily, ratable_monthly, point_in_time, usage",
        ),
        (
            {"obligations": [GENERIC["obligations"][0], GENERIC["obligations"][0]]},
            "",
            "an obligation_id appears twice",
        ),
    ],
)
def test_generic_contract_json_is_refused_with_the_field_path(change, column, reason):
    with pytest.raises(CellError) as caught:
        generic_contract_event({**GENERIC, **change}, line=7)
    assert (caught.value.line, caught.value.column, caught.value.reason) == (7, column, reason)


class Sent:
    def __init__(self) -> None:
        self.events: list = []

    def __call__(self, events) -> int:
        batch = list(events)
        self.events.extend(batch)
        return len(batch)


def test_run_import_writes_the_error_report_and_exits_3_when_rows_are_refused(tmp_path):
    path = tmp_path / "billing.csv"
    path.write_text(
        billing(
            "invoice_line,INV-1,C1,US1,2024-07-01,2024-07-31,USD,L1,SUB,1,100.00,,",
            "invoice_line,INV-2,C2,US1,2024-07-01,2024-07-31,USD,L1,SUB,1,,,",
        )
    )
    sent, out = Sent(), io.StringIO()

    assert run_import("billing", path, sent, out=out) == EXIT_ROWS_REFUSED
    assert [e.invoice_id for e in sent.events] == ["INV-1"]
    assert (tmp_path / "billing.csv.errors.csv").read_text().splitlines() == [
        "line,column,reason",
        "3,amount,required",
    ]
    assert out.getvalue().splitlines() == [
        "billing.csv: line 3 column amount: required",
        "import billing: billing.csv: 2 rows, 1 events sent, 1 rows refused"
        " (billing.csv.errors.csv)",
    ]


def test_run_import_exits_0_when_every_row_is_imported_and_2_when_unreadable(tmp_path):
    good = tmp_path / "billing.jsonl"
    good.write_text(
        json.dumps(
            {
                "record_type": "invoice_void",
                "invoice_id": "INV-1",
                "customer_id": "C1",
                "entity": "US1",
                "date": "2024-07-02",
            }
        )
        + "\n"
    )
    assert run_import("billing", good, Sent(), out=io.StringIO()) == EXIT_OK
    assert (tmp_path / "billing.jsonl.errors.csv").read_text() == "line,column,reason\n"

    assert run_import("billing", tmp_path / "missing.csv", Sent()) == EXIT_UNREADABLE
    (tmp_path / "latin1.csv").write_bytes("record_type\ncaf\xe9\n".encode("latin-1"))
    assert run_import("billing", tmp_path / "latin1.csv", Sent()) == EXIT_UNREADABLE
    (tmp_path / "data.xlsx").write_text("x")
    assert run_import("payments", tmp_path / "data.xlsx", Sent()) == EXIT_UNREADABLE
    (tmp_path / "contracts.csv").write_text("type\n")
    assert run_import("contracts", tmp_path / "contracts.csv", Sent()) == EXIT_UNREADABLE


def test_contract_file_mixes_salesforce_messages_and_generic_records(tmp_path):
    won = json.loads(
        (FIXTURES / "opportunity_closed_won.cdc.json").read_text(), parse_float=Decimal
    )
    lost = json.loads(json.dumps(won, default=str))
    lost["data"]["payload"].update(StageName="Closed Lost", IsWon=False)
    broken = json.loads(json.dumps(won, default=str))
    del broken["record"]["OpportunityLineItems"]
    lines = [
        json.dumps(won, default=str),
        json.dumps(GENERIC),
        json.dumps(lost),
        json.dumps(broken),
    ]
    path = tmp_path / "contracts.jsonl"
    path.write_text("\n".join(lines) + "\n")
    config = SalesforceConfig(entities={"*": "US1"})
    sent, out = Sent(), io.StringIO()

    assert run_import("contracts", path, sent, lambda: config, out=out) == EXIT_ROWS_REFUSED
    assert [e.event_id for e in sent.events] == [
        "salesforce:0065g00000ABCDEAA1@0002343d-9d90-e395-ed20-cf416ba652ad.1",
        "hubspot:deal-42-won",
    ]
    assert out.getvalue().splitlines() == [
        "contracts.jsonl: line 4: salesforce_children_missing: Opportunity 0065g00000ABCDEAA1:"
        " attach its OpportunityLineItems to the record (docs/CRM.md)",
        "import contracts: contracts.jsonl: 4 rows, 2 events sent, 1 skipped (no contract"
        " effect), 1 rows refused (contracts.jsonl.errors.csv)",
    ]


def test_contract_file_refuses_salesforce_lines_when_there_is_no_configuration(tmp_path):
    path = tmp_path / "contracts.jsonl"
    path.write_text(
        (FIXTURES / "platform_event_closed_won.json").read_text().replace("\n", "") + "\n"
    )

    def missing() -> SalesforceConfig:
        raise SalesforceConfigError("no Salesforce configuration")

    assert run_import("contracts", path, Sent(), missing, out=io.StringIO()) == EXIT_ROWS_REFUSED
    assert (tmp_path / "contracts.jsonl.errors.csv").read_text().splitlines()[1] == (
        "1,,salesforce_config: no Salesforce configuration"
    )
