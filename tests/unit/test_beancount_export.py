"""The Beancount text of entries: balanced in functional weights, both currencies kept."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from dataclasses import replace

from connectors.postgres.beancount import (
    ExportEntry,
    ExportLine,
    beancount_account,
    beancount_ledger,
)

D = dt.date(2024, 3, 5)


def _entries() -> list[ExportEntry]:
    invoice = ExportEntry(
        "evt-1:invoice_issued:0",
        D,
        "C1",
        'Invoice "INV-1"',
        "invoice_issued",
        "evt-1",
        (
            ExportLine("accounts_receivable", "debit", 100_00, "EUR", 108_50),
            ExportLine("deferred_revenue", "credit", 100_00, "EUR", 108_50),
        ),
    )
    payment = ExportEntry(
        "evt-2:payment_settled:0",
        D + dt.timedelta(days=10),
        "C1",
        "Payment PAY-1",
        "payment_settled",
        "evt-2",
        (
            ExportLine("cash_clearing", "debit", 100_00, "EUR", 110_00),
            ExportLine("accounts_receivable", "credit", 100_00, "EUR", 108_50),
            ExportLine("realized_fx", "credit", 0, "EUR", 1_50),
        ),
    )
    return [payment, invoice]


def test_account_names_follow_the_account_type():
    assert beancount_account("accounts_receivable") == "Assets:AccountsReceivable"
    assert beancount_account("deferred_revenue") == "Liabilities:DeferredRevenue"
    assert beancount_account("contra_revenue") == "Expenses:ContraRevenue"
    assert beancount_account("realized_fx") == "Income:RealizedFx"


def test_foreign_lines_keep_their_currency_at_the_functional_total_price():
    text = beancount_ledger("US1", "USD", _entries())
    assert "Assets:AccountsReceivable" in text and "100.00 EUR @@ 108.50 USD" in text
    assert "-100.00 EUR @@ 108.50 USD" in text
    assert "Income:RealizedFx" in text and "-1.50 USD" in text
    assert text.index('"Invoice \\"INV-1\\""') < text.index('"Payment PAY-1"'), "date order"
    assert 'entry_id: "evt-1:invoice_issued:0"' in text


def test_bean_check_accepts_the_export_when_entries_balance(tmp_path):
    ledger = tmp_path / "us1.beancount"
    ledger.write_text(beancount_ledger("US1", "USD", _entries()))
    checked = subprocess.run(
        [sys.executable, "-m", "beancount.scripts.check", str(ledger)],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_bean_check_refuses_a_cent_of_imbalance_despite_the_price_tolerance(tmp_path):
    invoice, payment = sorted(_entries(), key=lambda e: e.posting_date)
    off_by_a_cent = replace(
        invoice,
        lines=(invoice.lines[0], replace(invoice.lines[1], functional_amount_minor=108_49)),
    )
    ledger = tmp_path / "us1.beancount"
    ledger.write_text(beancount_ledger("US1", "USD", [off_by_a_cent, payment]))
    checked = subprocess.run(
        [sys.executable, "-m", "beancount.scripts.check", str(ledger)],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 1 and "does not balance" in checked.stdout + checked.stderr
