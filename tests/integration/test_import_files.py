"""``revledger import billing|payments`` end to end: files -> topics -> the real ledger worker.

A billing CSV and a payments JSON Lines file are imported to uuid-prefixed topics while
the ledger worker runs as production runs it (a subprocess). Their entries post once;
importing the same files again posts nothing (the event ids come from the files' own ids
and the ledger takes the copies for duplicates); a file with bad rows imports its good
rows and reports each bad row with its line and reason.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from connectors.simulation import builders as b
from streams.admin import ensure_topics
from streams.importing import EXIT_OK, EXIT_ROWS_REFUSED, run_import
from streams.producer import RecordProducer
from streams.serde import Codec
from streams.topics import ENTRIES, TOPICS

from worker_process import drain_for, is_entry, isolated_settings, read_committed, running_worker

pytestmark = pytest.mark.integration

CODEC = Codec()
HEADER = (
    "record_type,invoice_id,customer_id,entity,issue_date,due_date,currency,line_id,"
    "product_id,quantity,amount,service_start,service_end,tax_code,jurisdiction\n"
)


def _billing(path: Path, *rows: str) -> Path:
    path.write_text(HEADER + "".join(f"{row}\n" for row in rows))
    return path


def _payments(path: Path) -> Path:
    payment = {
        "record_type": "payment",
        "payment_id": "PAY-1",
        "customer_id": "C1",
        "entity": "US1",
        "date": "2024-07-10",
        "currency": "USD",
        "amount": "108.50",
        "fee": "3.20",
        "processor": "adyen",
        "invoice_id": "INV-1",
        "applied_amount": "108.50",
    }
    path.write_text(json.dumps(payment) + "\n")
    return path


def test_imported_files_post_once_and_bad_rows_are_reported(devstack, tmp_path):
    settings = isolated_settings(devstack.bootstrap_servers, tmp_path)
    ensure_topics(settings, TOPICS)
    RecordProducer(settings, CODEC).send_all(b.base_records())
    billing = _billing(
        tmp_path / "billing.csv",
        "invoice_line,INV-1,C1,US1,2024-07-01,2024-07-31,USD,L1,SUB,1,100.00,2024-07-01,2024-07-31,,",
        "invoice_tax,INV-1,C1,US1,2024-07-01,2024-07-31,USD,,,,8.50,,,VAT,CA",
        "invoice_line,INV-2,C2,US1,2024-07-01,2024-07-31,USD,L1,SVC,1,50.00,,,,",
    )
    payments = _payments(tmp_path / "payments.jsonl")
    later = _billing(
        tmp_path / "later.csv",
        "invoice_line,INV-3,C3,US1,2024-08-01,2024-08-31,USD,L1,SVC,1,70.00,,,,",
        "invoice_line,INV-4,C4,US1,2024-08-01,2024-08-31,USD,L1,SVC,1,70.001,,,,",
        "invoice_line,INV-5,C5,US1,2024-08-01,2024-08-31,EURO,L1,SVC,1,70.00,,,,",
    )

    def send(events) -> int:
        return RecordProducer(settings, CODEC).send_all(events)

    entries_topic = settings.topic_prefix + ENTRIES.name
    out = io.StringIO()
    with running_worker(settings, tmp_path / "worker.log"):
        assert run_import("billing", billing, send, out=out) == EXIT_OK
        assert run_import("payments", payments, send, out=out) == EXIT_OK
        first = read_committed(settings.bootstrap_servers, entries_topic, 3, only=is_entry)
        assert len(first) == 3

        # The same files again: the same event ids, duplicates to the ledger.
        assert run_import("billing", billing, send, out=out) == EXIT_OK
        assert run_import("payments", payments, send, out=out) == EXIT_OK
        assert run_import("billing", later, send, out=out) == EXIT_ROWS_REFUSED
        read_committed(settings.bootstrap_servers, entries_topic, 4, only=is_entry)
        every = drain_for(settings.bootstrap_servers, entries_topic, 4, only=is_entry)

    entries = [CODEC.decode(m.value()) for m in every]
    assert sorted(e.source_event_id for e in entries) == [
        "file:invoice:INV-1",
        "file:invoice:INV-2",
        "file:invoice:INV-3",
        "file:payment:PAY-1",
    ], "an import posted twice, or a good row is missing"
    by_source = {e.source_event_id: e for e in entries}
    assert {(x.account, x.side, x.amount_minor) for x in by_source["file:invoice:INV-1"].lines} >= {
        ("accounts_receivable", "debit", 108_50),
        ("tax_payable", "credit", 8_50),
    }
    assert (tmp_path / "later.csv.errors.csv").read_text().splitlines() == [
        "line,column,reason",
        "3,amount,amount_sub_minor_unit: '70.001' has more decimals than USD's 2",
        "4,currency,'EURO' is not a known ISO 4217 code (e.g. USD)",
    ]
    assert "later.csv: 3 rows, 1 events sent, 2 rows refused" in out.getvalue()
