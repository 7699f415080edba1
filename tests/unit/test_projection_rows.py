"""rows_for: each record type to the rows of the ``revledger`` tables, without a database.

Figures are written out by hand; where the engine decides (allocation, implied
obligations), the rows are also compared with the pure engine's own books.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from connectors.postgres.projection import (
    ACKS,
    ALLOCATION_REFUSED,
    BATCHES,
    COLUMNS,
    DLQ,
    ENTRIES,
    INPUTS,
    PRODUCT_MAPPING_MISSING,
    SCHEDULES,
    TOPICS,
    WRONG_TOPIC,
    Received,
    Rows,
    contract_rows,
    rows_for,
)
from connectors.simulation import builders as b
from ledger.reference import ReferenceData
from revenue.engine import CustomerBooks, apply
from revenue.replay import replay_all
from streams.entries import entry_record
from streams.messages import (
    BatchLine,
    BatchTotal,
    DlqRecord,
    ErpAck,
    JournalBatch,
    RevenueScheduled,
    ScheduledRevenue,
    digest_entry_ids,
)
from streams.topics import BY_NAME

PREFIX = "t1."
AT = dt.datetime(2024, 2, 1, 12, 0, tzinfo=dt.UTC)
REFERENCE = b.reference_data(b.product("USE", "usage", pattern="usage"))


def received(canonical: str, partition: int = 1, offset: int = 7, **kw: bytes) -> Received:
    return Received(
        PREFIX + canonical, canonical, partition, offset, kw.get("key"), kw.get("value")
    )


def only(rows: Rows, table: str) -> tuple:
    (row,) = rows.tables[table]
    return row


def as_dict(table: str, row: tuple) -> dict:
    return dict(zip(COLUMNS[table], row, strict=True))


def non_empty(rows: Rows) -> set[str]:
    return {table for table, found in rows.tables.items() if found}


# --- ledger.entries.v1 ----------------------------------------------------------------------


def test_entry_gives_entry_lines_with_dimensions_and_its_open_period():
    (entry,) = replay_all(b.base_records(), [b.invoice("INV-1", tax=10_00)]).entries
    record = entry_record(entry)

    rows = rows_for(record, received(ENTRIES, partition=3, offset=41), REFERENCE)

    assert non_empty(rows) == {"journal_entries", "journal_lines", "periods"}
    head = as_dict("journal_entries", only(rows, "journal_entries"))
    assert head["entry_id"] == record.entry_id
    assert (head["rule"], head["period"], head["posting_date"]) == (
        "invoice_issued",
        "2024-01",
        dt.date(2024, 1, 15),
    )
    assert (head["topic"], head["kafka_partition"], head["kafka_offset"]) == (
        "t1.ledger.entries.v1",
        3,
        41,
    )
    lines = [as_dict("journal_lines", row) for row in rows.tables["journal_lines"]]
    assert [(x["line_no"], x["account"], x["side"], x["amount_minor"]) for x in lines] == [
        (1, "accounts_receivable", "debit", 110_00),
        (2, "tax_payable", "credit", 10_00),
        (3, "deferred_revenue", "credit", 100_00),
    ]
    assert lines[0]["dimensions"] == {"invoice_id": "INV-1"}
    assert lines[2]["dimensions"] == {
        "contract_id": "implied:INV-1",
        "invoice_id": "INV-1",
        "invoice_line_id": "INV-1-L1",
        "obligation_id": "INV-1-L1",
        "product_family": "subscription",
    }
    assert only(rows, "periods") == ("US1", "2024-01", "open", None)
    assert rows.touched_invoices == {"INV-1"}


def test_forwarded_tick_and_period_close_are_skipped_when_on_the_entries_topic():
    for record in (b.clock(dt.date(2024, 2, 1)), b.period_closed("2024-01")):
        rows = rows_for(record, received(ENTRIES), REFERENCE)

        assert rows.count() == 0
        assert rows.skipped == 1


# --- ledger.inputs.v1 ---------------------------------------------------------------------------


def test_invoice_gives_source_event_invoice_with_due_date_and_its_implied_contract():
    event = b.invoice(
        "INV-7",
        lines=[("SUB", 1200_00), ("SVC", 300_00)],
        tax=150_00,
        service=(dt.date(2024, 1, 1), dt.date(2024, 12, 31)),
    )

    rows = rows_for(event, received(INPUTS, offset=12), REFERENCE)

    source = as_dict("source_events", only(rows, "source_events"))
    assert (source["event_id"], source["event_type"], source["customer_id"]) == (
        "evt-inv-INV-7",
        "invoice.issued",
        "C1",
    )
    assert (source["topic"], source["kafka_offset"], source["business_date"]) == (
        "t1.ledger.inputs.v1",
        12,
        dt.date(2024, 1, 15),
    )
    payload = json.loads(source["payload"])
    assert payload == event.model_dump(mode="json")
    assert payload["lines"][0]["amount_minor"] == 1200_00
    assert payload["due_date"] == "2024-02-14"
    assert only(rows, "invoices") == (
        "INV-7",
        "C1",
        "US1",
        "USD",
        dt.date(2024, 1, 15),
        dt.date(2024, 2, 14),
        1650_00,
        150_00,
        "open",
        "evt-inv-INV-7",
    )
    contract = as_dict("contracts", only(rows, "contracts"))
    assert contract["contract_id"] == "implied:INV-7"
    assert (contract["implied"], contract["total_price_minor"], contract["status"]) == (
        True,
        1500_00,
        "active",
    )
    assert (contract["service_start"], contract["service_end"]) == (
        dt.date(2024, 1, 1),
        dt.date(2024, 12, 31),
    )
    obligations = [
        as_dict("performance_obligations", row) for row in rows.tables["performance_obligations"]
    ]
    assert [
        (o["obligation_id"], o["family"], o["method"], o["allocated_minor"]) for o in obligations
    ] == [
        ("INV-7-L1", "subscription", "daily", 1200_00),
        ("INV-7-L2", "services", "daily", 300_00),
    ]
    assert rows.touched_invoices == {"INV-7"}


def test_implied_obligations_are_those_the_engine_builds_when_an_invoice_names_no_contract():
    service = (dt.date(2024, 1, 10), dt.date(2024, 3, 9))
    reference = b.reference_data(
        b.product("USE", "usage", pattern="usage"),
        b.product("MON", "subscription", pattern="ratable_monthly"),
        b.product("ONE", "services", pattern="point_in_time"),
    )
    event = b.invoice(
        "INV-8", lines=[("MON", 300_00), ("USE", 40_00), ("ONE", 90_00)], service=service
    )

    rows = rows_for(event, received(INPUTS), reference)
    books = apply(CustomerBooks.new("C1"), event, reference).books

    engine = books.revenue.contracts["implied:INV-8"].obligations
    for row in rows.tables["performance_obligations"]:
        mine = as_dict("performance_obligations", row)
        theirs = engine[mine["obligation_id"]]
        assert mine["method"] == theirs.method
        assert mine["allocated_minor"] == theirs.allocated_minor
        assert (mine["service_start"], mine["service_end"]) == (
            theirs.service_start,
            theirs.service_end,
        )
    patterns = [row[4] for row in rows.tables["performance_obligations"]]
    # A usage product billed without usage is recognised at a point in time.
    assert patterns == ["ratable_monthly", "point_in_time", "point_in_time"]


def test_invoice_is_kept_and_its_implied_contract_rejected_when_a_product_has_no_mapping():
    event = b.invoice("INV-9", lines=[("NOPE", 10_00)])
    where = received(INPUTS, key=b"C1", value=b"\xc3\x01bytes")

    rows = rows_for(event, where, REFERENCE)

    assert non_empty(rows) == {"source_events", "invoices", "projection_rejects"}
    topic, partition, offset, reason, message, key, value = only(rows, "projection_rejects")
    assert (topic, partition, offset, reason) == (
        "t1.ledger.inputs.v1",
        1,
        7,
        PRODUCT_MAPPING_MISSING,
    )
    assert "NOPE" in message
    assert (key, value) == (b"C1", b"\xc3\x01bytes")


def test_payment_gives_its_payment_row():
    event = b.payment("PAY-1", [("INV-1", 60_00)], amount=75_00, fee=2_00)

    rows = rows_for(event, received(INPUTS), REFERENCE)

    assert non_empty(rows) == {"source_events", "payments"}
    assert only(rows, "payments") == (
        "PAY-1",
        "C1",
        "US1",
        "USD",
        75_00,
        2_00,
        dt.date(2024, 1, 15),
        "stripe",
        None,
        "evt-pay-PAY-1",
    )


START, END = dt.date(2024, 1, 1), dt.date(2024, 12, 31)


def _booking(total: int = 1000_00, **kw) -> object:
    return b.contract(
        "K1",
        total=total,
        obligations=[
            b.obligation("A", 800_00, START, END),
            b.obligation("B", 400_00, START, pattern="point_in_time", product_id="SVC"),
            b.obligation("U", 0, START, pattern="usage", product_id="USE", family="usage"),
        ],
        **kw,
    )


def obligations_of(folded) -> dict[str, dict]:
    return {row[1]: as_dict("performance_obligations", row) for row in folded.obligations}


def test_contract_event_gives_its_source_event_and_the_contract_to_fold():
    for event in (_booking(), b.cancellation("K1", dt.date(2024, 6, 1))):
        rows = rows_for(event, received(INPUTS), REFERENCE)

        assert non_empty(rows) == {"source_events"}
        assert rows.contracts_touched == {"K1"}


def test_booked_contract_is_allocated_by_relative_ssp_like_the_engine_when_one_is_usage():
    event = _booking()

    folded = contract_rows([event], REFERENCE)
    engine = apply(CustomerBooks.new("C1"), event, REFERENCE).books.revenue.contracts["K1"]

    assert as_dict("contracts", folded.contract) == {
        "contract_id": "K1",
        "customer_id": "C1",
        "entity": "US1",
        "currency": "USD",
        "total_price_minor": 1000_00,
        "booking_date": dt.date(2024, 1, 15),
        "service_start": START,
        "service_end": None,  # open-ended usage
        "status": "active",
        "cancelled_on": None,
        "implied": False,
        "source_event_id": "evt-ctr-K1",
    }
    mine = obligations_of(folded)
    assert [(o, x["method"], x["allocated_minor"]) for o, x in mine.items()] == [
        ("A", "daily", 666_67),
        ("B", "point_in_time", 333_33),
        ("U", None, 0),
    ]
    assert {o: x["allocated_minor"] for o, x in mine.items()} == {
        oid: o.allocated_minor for oid, o in engine.obligations.items()
    }


def test_discount_named_for_some_obligations_leaves_the_others_at_their_ssp():
    event = b.contract(
        "K2",
        total=900_00,
        obligations=[b.obligation("A", 600_00, START, END), b.obligation("B", 400_00, START, END)],
        discounted=["B"],
    )

    folded = contract_rows([event], REFERENCE)

    assert [row[8] for row in folded.obligations] == [600_00, 300_00]


def test_contract_is_rejected_and_not_folded_when_its_price_has_nothing_to_carry_it():
    event = b.contract(
        "K3",
        total=100_00,
        obligations=[
            b.obligation("U", 0, START, pattern="usage", product_id="USE", family="usage")
        ],
    )

    rows = rows_for(event, received(INPUTS), REFERENCE)

    assert non_empty(rows) == {"source_events", "projection_rejects"}
    assert only(rows, "projection_rejects")[3] == ALLOCATION_REFUSED
    assert contract_rows([event], REFERENCE) is None


def test_prospective_amendment_states_new_terms_and_total_when_folded_after_the_booking():
    amendment = b.amendment(
        "AM-1",
        "prospective",
        1500_00,
        [b.obligation("A", 900_00, START, END), b.obligation("C", 600_00, START, END)],
        effective=dt.date(2024, 7, 1),
    )

    folded = contract_rows([_booking(), amendment], REFERENCE)

    contract = as_dict("contracts", folded.contract)
    assert (contract["total_price_minor"], contract["service_end"]) == (1500_00, None)
    mine = obligations_of(folded)
    assert list(mine) == ["A", "B", "U", "C"]
    assert (mine["A"]["ssp_minor"], mine["C"]["ssp_minor"]) == (900_00, 600_00)
    # Provisional (an SSP share of the new total) until the contract's schedule says.
    assert (mine["A"]["allocated_minor"], mine["C"]["allocated_minor"]) == (900_00, 600_00)


def test_separate_contract_adds_its_price_and_obligations_allocated_exactly():
    start = dt.date(2024, 3, 1)
    amendment = b.amendment(
        "AM-2",
        "separate_contract",
        250_00,
        [b.obligation("X", 200_00, start, END), b.obligation("Y", 100_00, start, END)],
    )
    events = [_booking(), amendment]

    folded = contract_rows(events, REFERENCE)
    books = CustomerBooks.new("C1")
    for event in events:
        books = apply(books, event, REFERENCE).books
    engine = books.revenue.contracts["K1"]

    assert as_dict("contracts", folded.contract)["total_price_minor"] == 1250_00
    assert engine.total_price_minor == 1250_00
    assert {o: x["allocated_minor"] for o, x in obligations_of(folded).items()} == {
        oid: o.allocated_minor for oid, o in engine.obligations.items()
    }


def test_fold_is_the_same_when_an_amendment_and_cancellation_arrive_before_the_booking():
    start = dt.date(2024, 3, 1)
    separate = b.amendment(
        "AM-3", "separate_contract", 100_00, [b.obligation("X", 100_00, start, END)]
    )
    cancel = b.cancellation("K1", dt.date(2024, 9, 1))

    early = contract_rows([separate, cancel, _booking()], REFERENCE)
    late = contract_rows([_booking(), separate, cancel], REFERENCE)

    assert early == late
    contract = as_dict("contracts", late.contract)
    assert (contract["status"], contract["cancelled_on"], contract["total_price_minor"]) == (
        "cancelled",
        dt.date(2024, 9, 1),
        1100_00,
    )


def test_fold_ignores_what_the_engine_refuses():
    start = dt.date(2024, 3, 1)
    again = b.amendment(
        "AM-4", "separate_contract", 100_00, [b.obligation("X", 100_00, start, END)]
    )
    clash = b.amendment(
        "AM-5", "separate_contract", 100_00, [b.obligation("A", 100_00, start, END)]
    )
    after_cancel = b.amendment(
        "AM-6", "separate_contract", 50_00, [b.obligation("Z", 50_00, start, END)]
    )
    events = [
        _booking(),
        b.contract("K1", total=5_00, obligations=[b.obligation("Q", 5_00, START, END)]),
        again,
        again.model_copy(update={"event_id": "evt-amd-AM-4-bis"}),
        clash,
        b.amendment(
            "AM-7", "prospective", 1_00, [b.obligation("A", 1_00, START, END)], currency="EUR"
        ),
        b.cancellation("K1", dt.date(2024, 9, 1)),
        after_cancel,
    ]

    folded = contract_rows(events, REFERENCE)

    assert list(obligations_of(folded)) == ["A", "B", "U", "X"]
    assert as_dict("contracts", folded.contract)["total_price_minor"] == 1100_00


def test_nothing_is_folded_when_the_contract_was_never_booked():
    assert contract_rows([b.cancellation("K1", dt.date(2024, 9, 1))], REFERENCE) is None


def test_period_closed_gives_a_closed_period_and_its_source_event():
    rows = rows_for(b.period_closed("2024-03", "EU1"), received(INPUTS), REFERENCE)

    assert only(rows, "periods") == ("EU1", "2024-03", "closed", dt.date(2024, 12, 31))
    source = as_dict("source_events", only(rows, "source_events"))
    assert (source["customer_id"], source["entity"], source["event_type"]) == (
        None,
        "EU1",
        "period.closed",
    )


def test_customer_upsert_and_tick_give_only_their_source_event():
    for record, day in (
        (b.customer_upserted(), None),
        (b.clock(dt.date(2024, 3, 1)), dt.date(2024, 3, 1)),
    ):
        rows = rows_for(record, received(INPUTS), REFERENCE)

        assert non_empty(rows) == {"source_events"}
        assert only(rows, "source_events")[8] == day


# --- the other outputs --------------------------------------------------------------------------


def test_schedule_gives_the_contracts_whole_schedule_to_replace_the_one_before():
    record = RevenueScheduled(
        customer_id="C1",
        contract_id="K1",
        entity="US1",
        currency="USD",
        source_event_id="evt-amd-AM-1",
        cancelled_on=dt.date(2024, 6, 1),
        lines=(
            ScheduledRevenue(obligation_id="A", period="2024-01", amount_minor=100_00),
            ScheduledRevenue(obligation_id="A", period="2024-02", amount_minor=-20_00),
        ),
        total_minor=80_00,
    )

    rows = rows_for(record, received(SCHEDULES, offset=3), REFERENCE)

    assert non_empty(rows) == set()
    (schedule,) = rows.schedules
    assert (schedule.contract_id, schedule.currency, schedule.cancelled_on) == (
        "K1",
        "USD",
        dt.date(2024, 6, 1),
    )
    assert schedule.lines == (("A", "2024-01", 100_00), ("A", "2024-02", -20_00))
    assert schedule.received.offset == 3


def test_batch_gives_the_batch_its_lines_and_its_entry_ids():
    ids = ("e-1:invoice_issued:0", "e-2:payment_settled:0")
    record = JournalBatch(
        batch_id="US1/p0/4",
        entity="US1",
        source_partition=0,
        sequence=4,
        period="2024-01",
        window_start=AT,
        window_end=AT,
        functional_currency="USD",
        lines=(
            BatchLine(
                line_no=1,
                gl_code="US1-1200",
                account="accounts_receivable",
                currency="USD",
                debit_minor=50_00,
                credit_minor=0,
                functional_debit_minor=50_00,
                functional_credit_minor=0,
                dimensions={"product_family": "subscription"},
            ),
            BatchLine(
                line_no=2,
                gl_code="US1-2400",
                account="deferred_revenue",
                currency="USD",
                debit_minor=0,
                credit_minor=50_00,
                functional_debit_minor=0,
                functional_credit_minor=50_00,
            ),
        ),
        entry_count=2,
        line_count=2,
        entry_ids_digest=digest_entry_ids(ids),
        entry_ids=ids,
        totals=(BatchTotal(currency="USD", debit_minor=50_00, credit_minor=50_00),),
        first_source_offset=10,
        last_source_offset=12,
    )

    rows = rows_for(record, received(BATCHES), REFERENCE)

    batch = as_dict("journal_batches", only(rows, "journal_batches"))
    assert (batch["batch_id"], batch["sequence"], batch["entry_count"]) == ("US1/p0/4", 4, 2)
    assert (batch["first_source_offset"], batch["last_source_offset"]) == (10, 12)
    assert rows.tables["journal_batch_lines"][0] == (
        "US1/p0/4",
        1,
        "US1-1200",
        "accounts_receivable",
        "USD",
        50_00,
        0,
        50_00,
        0,
        {"product_family": "subscription"},
    )
    assert rows.tables["journal_batch_entries"] == [("US1/p0/4", ids[0]), ("US1/p0/4", ids[1])]


def test_ack_gives_one_history_row_at_its_position():
    record = ErpAck(
        batch_id="US1/p0/4",
        entity="US1",
        sequence=4,
        status="rejected",
        message="control_totals_mismatch",
        acknowledged_at=AT,
    )

    rows = rows_for(record, received(ACKS, partition=0, offset=99), REFERENCE)

    assert only(rows, "erp_acks") == (
        0,
        99,
        "US1/p0/4",
        "US1",
        4,
        "rejected",
        None,
        "control_totals_mismatch",
        AT,
    )


def test_dlq_record_keeps_reason_origin_and_original_bytes():
    record = DlqRecord(
        reason="orphan_event",
        error_class="Held",
        message="invoice INV-9 never arrived",
        source_topic="ledger.inputs.v1",
        source_partition=2,
        source_offset=17,
        original_key=b"C9",
        original_value=b"\xc3\x01\x00",
        failed_at=AT,
        service_version="0.1.0",
        event_id="e-9",
    )

    rows = rows_for(record, received(DLQ, partition=2, offset=5), REFERENCE)

    row = as_dict("dlq_records", only(rows, "dlq_records"))
    assert (row["kafka_partition"], row["kafka_offset"], row["reason"]) == (2, 5, "orphan_event")
    assert (row["source_topic"], row["source_offset"], row["event_id"]) == (
        "ledger.inputs.v1",
        17,
        "e-9",
    )
    assert (row["original_key"], row["original_value"]) == (b"C9", b"\xc3\x01\x00")


# --- records that do not belong ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("canonical", "record"),
    [
        (ENTRIES, b.invoice("INV-1")),
        (INPUTS, b.entity("XX1")),
        (
            DLQ,
            ErpAck(batch_id="B", entity="US1", sequence=0, status="imported", acknowledged_at=AT),
        ),
    ],
)
def test_record_is_rejected_with_its_bytes_when_it_does_not_belong_on_its_topic(canonical, record):
    where = received(canonical, key=b"k", value=b"v")

    rows = rows_for(record, where, REFERENCE)

    assert non_empty(rows) == {"projection_rejects"}
    assert only(rows, "projection_rejects") == (
        PREFIX + canonical,
        1,
        7,
        WRONG_TOPIC,
        f"{record.schema_name} does not belong on {canonical}",
        b"k",
        b"v",
    )


def test_rows_are_the_same_when_the_same_record_is_mapped_twice():
    event = b.invoice("INV-1", lines=[("SUB", 100_00), ("SVC", 5_00)], tax=1_00)

    assert rows_for(event, received(INPUTS), REFERENCE) == rows_for(
        event, received(INPUTS), REFERENCE
    )


def test_every_topic_read_is_a_system_topic_carrying_the_records_mapped():
    mapped = {
        INPUTS: set(BY_NAME[INPUTS].records),
        ENTRIES: {"JournalEntryPosted", "ClockAdvanced", "PeriodClosed"},
        SCHEDULES: {"RevenueScheduled"},
        BATCHES: {"JournalBatch"},
        ACKS: {"ErpAck"},
        DLQ: {"DlqRecord"},
    }
    assert set(TOPICS) == set(mapped)
    for topic, records in mapped.items():
        assert set(BY_NAME[topic].records) == records


def test_every_row_has_its_tables_columns():
    events = [
        b.invoice("INV-1", tax=1_00),
        b.payment("PAY-1", [("INV-1", 101_00)]),
        b.contract(
            "K1",
            total=100_00,
            obligations=[b.obligation("A", 1, dt.date(2024, 1, 1), dt.date(2024, 2, 1))],
        ),
        b.period_closed("2024-01"),
    ]
    entries = [entry_record(e) for e in replay_all(b.base_records(), events).entries]
    reference = ReferenceData.from_records(b.base_records())
    for record in [*events, *entries]:
        canonical = ENTRIES if record.schema_name == "JournalEntryPosted" else INPUTS
        rows = rows_for(record, received(canonical), reference)
        for table, found in rows.tables.items():
            assert all(len(row) == len(COLUMNS[table]) for row in found), table
