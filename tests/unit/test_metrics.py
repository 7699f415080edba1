"""Worker metrics: names in base units, no customer or account labels, lag and hold figures,
the last check before an entry is produced, and the readiness answers."""

from __future__ import annotations

import asyncio
import json
import re
from io import BytesIO

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from connectors.simulation import builders as b
from ledger.errors import InvariantViolation
from streams import health, metrics
from streams.entries import entry_record
from streams.health import (
    Heartbeat,
    PartitionWatch,
    Readiness,
    lag_seconds,
    probe_app,
    refuse_unbalanced,
    worker_lag,
)
from streams.lag_exporter import LagMetrics
from streams.messages import JournalEntryPosted, JournalLine
from streams.metrics import (
    IMBALANCE,
    HeldEvents,
    LagFigure,
    PartitionLag,
    check_balanced,
    held_rows,
    sample_names,
    unbalanced_currencies,
)
from streams.settings import load_settings

# Labels that would put a customer, an account or a document in a series name: one
# series per customer is a cardinality bomb and personal data in the monitoring system.
FORBIDDEN_LABELS = re.compile(r"customer|account|invoice|payment|contract|event_id|entry_id|key")


def _registries() -> dict[str, CollectorRegistry]:
    projection = health.ProjectionHealth(
        load_settings({}), "projection", "postgresql://x@127.0.0.1:1/x", dict, list
    )
    metrics.set_build_info("test")
    return {
        "worker": REGISTRY,
        "lag exporter": LagMetrics().registry,
        "projector": projection.registry,
    }


def _families(registry: CollectorRegistry) -> list:
    return [
        family
        for collector in list(registry._collector_to_names)
        for family in (collector.describe() if hasattr(collector, "describe") else [])
        if family.name.startswith("revledger_")
    ]


@pytest.mark.parametrize("process", ["worker", "lag exporter", "projector"])
def test_names_use_base_units_and_total_when_registered(process):
    families = _families(_registries()[process])
    assert families
    for family in families:
        assert re.fullmatch(r"revledger_[a-z0-9_]+", family.name), family.name
        assert not re.search(r"_(ms|milliseconds|minutes|hours|percent)(_|$)", family.name)
        # A counter's family name has no suffix: its samples are <name>_total. Anything
        # else named _total would read as a counter.
        assert not family.name.endswith("_total"), family.name
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name
        measured = re.search(r"(latency|duration|_age|_time|_lag)(_|$)", family.name)
        if family.type != "counter" and measured:
            assert re.search(r"_(seconds|messages)$", family.name), family.name


@pytest.mark.parametrize("process", ["worker", "lag exporter", "projector"])
def test_no_customer_or_account_label_when_registered(process):
    registry = _registries()[process]
    for family in _families(registry):
        for sample in family.samples:
            bad = [label for label in sample.labels if FORBIDDEN_LABELS.search(label)]
            assert not bad, f"{family.name} labels {bad}"
    # Labelled metrics list their label names in the exposition only once used: check
    # the wrappers' declared names too.
    for value in vars(metrics).values():
        names = getattr(value, "_labelnames", ())
        assert not [n for n in names if FORBIDDEN_LABELS.search(n)], value


def test_expected_families_are_registered_when_the_module_loads():
    names = sample_names(REGISTRY)
    for name in (
        "revledger_consumer_lag_messages",
        "revledger_consumer_lag_seconds",
        "revledger_consumer_commit_age_seconds",
        "revledger_transaction_commits_total",
        "revledger_transaction_aborts_total",
        "revledger_producer_fencings_total",
        "revledger_events_total",
        "revledger_dlq_records_total",
        "revledger_held_events",
        "revledger_held_events_oldest_age_seconds",
        "revledger_entries_total",
        "revledger_journal_batches_total",
        "revledger_imbalanced_entries_total",
        "revledger_processing_latency_seconds_bucket",
        "revledger_recognition_run_seconds_bucket",
        "revledger_rebalances_total",
        "revledger_table_recovery_seconds_bucket",
        "revledger_build_info",
    ):
        assert name in names, name


# --- the last check before produce --------------------------------------------------------


def _posted(lines: list[tuple[str, int, int]], construct: bool = False) -> JournalEntryPosted:
    wire = [
        JournalLine(
            line_no=n,
            account="accounts_receivable" if side == "debit" else "deferred_revenue",
            side=side,
            amount_minor=amount,
            currency="USD",
            functional_amount_minor=functional,
        )
        for n, (side, amount, functional) in enumerate(lines, start=1)
    ]
    fields = {
        "entry_id": "evt-1:invoice_issued:0",
        "entity": "US1",
        "customer_id": "C1",
        "source_event_id": "evt-1",
        "source_event_type": "invoice.issued",
        "rule": "invoice_issued",
        "sequence": 0,
        "posting_date": b.DAY,
        "original_date": b.DAY,
        "period": "2024-01",
        "functional_currency": "USD",
        "description": "test",
        "lines": tuple(wire),
    }
    # model_construct skips the model's validator, as a bug upstream of produce would.
    return (
        JournalEntryPosted.model_construct(**fields) if construct else JournalEntryPosted(**fields)
    )


def test_balanced_entries_pass_when_checked_before_produce():
    before = IMBALANCE._value.get()
    check_balanced([_posted([("debit", 100, 100), ("credit", 100, 100)])])
    assert IMBALANCE._value.get() == before


def test_unbalanced_entry_is_refused_and_counted_when_it_bypassed_its_constructor():
    forced = _posted([("debit", 100, 100), ("credit", 99, 100)], construct=True)
    before = IMBALANCE._value.get()

    with pytest.raises(InvariantViolation, match="evt-1:invoice_issued:0 refused before produce"):
        check_balanced([forced])

    assert IMBALANCE._value.get() == before + 1
    assert "revledger_imbalanced_entries_total" in generate_latest().decode()


def test_functional_imbalance_is_refused_when_transaction_amounts_balance():
    forced = _posted([("debit", 100, 108), ("credit", 100, 107)], construct=True)
    assert unbalanced_currencies(forced) == ["USD"]


def test_domain_entry_is_checked_too_when_built_by_the_worker():
    _, outcomes = b.apply_all([b.invoice(lines=[("SUB", 100_00)])])
    entry = outcomes[0].entries[0]
    assert unbalanced_currencies(entry) == []
    assert unbalanced_currencies(entry_record(entry)) == []


def test_worker_path_refuses_counts_and_stops_readiness_when_an_entry_does_not_balance():
    forced = _posted([("debit", 100, 100), ("credit", 1, 1)], construct=True)
    before = IMBALANCE._value.get()
    readiness = Readiness()
    readiness.add("invariants", health._invariants_check)
    try:
        with pytest.raises(InvariantViolation):
            asyncio.run(refuse_unbalanced([forced], grace_seconds=0))
        status, body = readiness.answer()
        assert status == 503
        assert "refused before produce" in json.loads(body)["reason"]
    finally:
        health._HALTED.clear()
    assert IMBALANCE._value.get() == before + 1


# --- lag ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lso", "committed", "position", "received", "lag"),
    [
        (0, None, 0, None, 0),  # empty partition
        (10, 10, 10, 9, 0),  # caught up on a plain topic
        (11, 10, 11, 9, 0),  # caught up; offset 10 is a commit marker
        (11, 10, 10, 9, 1),  # offset 10 not fetched yet: it may be a record
        (11, 10, 11, 10, 1),  # record 10 received, not committed yet
        (1010, 10, 400, 399, 1000),  # backlog
        (50, None, None, None, 50),  # never committed, position unknown
    ],
)
def test_worker_lag_counts_only_what_is_left_to_process_when_computed(
    lso, committed, position, received, lag
):
    assert worker_lag(lso, committed, position, received) == lag


def test_lag_seconds_is_the_age_of_the_next_record_when_known():
    assert lag_seconds(0, None, None, now=100.0) == 0.0
    assert lag_seconds(5, 90.0, 80.0, now=100.0) == 10.0
    assert lag_seconds(5, None, 80.0, now=100.0) == 20.0  # upper bound: not fetched yet
    assert lag_seconds(5, None, None, now=100.0) is None


def test_partition_watch_forgets_committed_records_when_a_commit_comes():
    watch = PartitionWatch()
    for offset in range(5):
        watch.received("t", 0, offset, 1000.0 + offset)
    watch.committed("t", 0, 3)

    figure = watch.figure(("t", 0), last_stable=8, committed=3, position=5, now=1010.0)

    assert figure == LagFigure(5, 7.0)  # next unprocessed: offset 3, stamped 1003
    watch.committed("t", 0, 5)
    caught_up = watch.figure(("t", 0), last_stable=6, committed=5, position=6, now=1010.0)
    assert caught_up == LagFigure(0, 0.0)  # offset 5 is a commit marker


def test_lag_collector_reports_commit_age_when_scraped():
    lag = PartitionLag(now=lambda: 1_000.0)
    lag.replace({("g", "t", 0): LagFigure(3, 2.5), ("g", "t", 1): LagFigure(0, None)})
    lag.committed(("g", "t", 0), 990.0)

    samples = {(s.name, s.labels["partition"]): s.value for f in lag.collect() for s in f.samples}

    assert samples == {
        ("revledger_consumer_lag_messages", "0"): 3,
        ("revledger_consumer_lag_messages", "1"): 0,
        ("revledger_consumer_lag_seconds", "0"): 2.5,
        ("revledger_consumer_commit_age_seconds", "0"): 10.0,
    }


# --- holds --------------------------------------------------------------------------------


def test_held_events_are_counted_by_reason_and_band_with_the_oldest_age_when_scraped():
    reference = b.reference_data()
    thresholds = load_settings({}).thresholds
    # Payments before their invoices: held, waiting for the invoice.
    state, _ = b.apply_all(
        [
            b.payment("P1", [("INV-9", 50_00)]),
            b.payment("P2", [("INV-8", 20_000_00)], customer="C1"),
        ],
        reference,
    )
    rows = held_rows(state, reference, thresholds)
    assert len(rows) == 2
    held = HeldEvents(now=lambda: b.OCCURRED.timestamp() + 60)
    held.track(0, "C1", rows)
    held.track(1, "C2", rows[:1])

    samples = [(s.name, s.labels["band"], s.value) for f in held.collect() for s in f.samples]

    reason = rows[0][0]
    assert all(s_reason == reason for s_reason, _, _ in rows)
    assert ("revledger_held_events", "low", 2) in samples
    assert ("revledger_held_events", "high", 1) in samples
    assert ("revledger_held_events_oldest_age_seconds", "low", 60.0) in samples
    held.retain([1])
    held.track(1, "C2", ())
    assert [s for f in held.collect() for s in f.samples] == []


# --- readiness ----------------------------------------------------------------------------


def _get(app, path: str) -> tuple[str, bytes]:
    answer: list[str] = []
    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "wsgi.input": BytesIO()}
    body = b"".join(app(environ, lambda status, headers: answer.append(status)))
    return answer[0], body


def test_probes_answer_alive_and_not_ready_with_reasons_when_a_check_fails():
    clock = [100.0]
    broker = Heartbeat("broker", 30.0, now=lambda: clock[0])
    readiness = Readiness()
    readiness.add("broker", broker.check)
    readiness.add("partitions", lambda: None)
    app = probe_app(CollectorRegistry(), readiness)

    assert _get(app, "/healthz") == ("200 OK", b"ok\n")
    status, body = _get(app, "/readyz")
    assert status.startswith("503")
    assert json.loads(body)["reason"] == "broker: broker not reached yet"

    broker.ok()
    assert _get(app, "/readyz")[0] == "200 OK"
    clock[0] += 31
    broker.failed("timed out")
    status, body = _get(app, "/readyz")
    assert status.startswith("503")
    assert json.loads(body)["checks"] == {
        "broker": "broker not reached for 31s (timed out)",
        "partitions": "ok",
    }
