"""Salesforce end to end on the real broker: raw.salesforce.v1 -> crm-translate -> ledger.

Salesforce messages (Change Data Capture and platform event JSON, as the bridge writes
them with the record attached; the payloads of ``tests/fixtures/salesforce``, whose
Salesforce documentation sources are cited in tests/unit/test_salesforce_translate.py)
go onto ``raw.salesforce.v1`` keyed by record id. Two organisations are translated: one
without CPQ (an opportunity won, a platform event in yen) and one with CPQ (a contract
activated, an amendment adding seats, an amendment lowering a quantity, the contract
terminated). Each organisation has its own ``crm-translate`` (configuration and consumer
group) on the topic, and skips the other's messages. One ledger worker, run as
production runs it, turns the contract events into revenue schedules
(``revenue.schedules.v1``) and, at the business clock's ticks, revenue entries.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from connectors.salesforce import ProductTreatment, SalesforceConfig, Translated, routing_key
from connectors.simulation import builders as b
from revenue.replay import replay_partitions
from streams.admin import ensure_topics
from streams.crm_translator import outcome_of, run_crm_translator
from streams.entries import entry_record
from streams.producer import RecordProducer
from streams.serde import Codec
from streams.stripe_translator import TranslatorOptions
from streams.topics import DLQ, ENTRIES, LEDGER_INPUTS, RAW_SALESFORCE, REVENUE_SCHEDULES, TOPICS

from worker_process import CommittedLog, isolated_settings, producer, running_worker

pytestmark = pytest.mark.integration

CODEC = Codec()
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "salesforce"
PLAIN = SalesforceConfig(
    entities={"USD": "US1", "EUR": "EU1", "JPY": "JP1"},
    products={"ONBOARDING": ProductTreatment("services", "point_in_time")},
    platform_events={"Opportunity_Closed_Won__e": "Opportunity"},
)
CPQ = SalesforceConfig(entities={"*": "EU1"}, cpq=True)
REFERENCE = [*b.base_records(), b.entity("JP1", "JPY")]
ACCOUNT, YEN_ACCOUNT = "0015g00000ACCTAAA1", "0015g00000ACCTAAA2"
OPPORTUNITY, CONTRACT = "0065g00000ABCDEAA1", "8005g00000CNTRAAA1"
JUL31, OCT31 = dt.date(2024, 7, 31), dt.date(2024, 10, 31)


def _load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def _amendment(reduce: bool = False) -> dict[str, Any]:
    message = _load("cpq_amendment_quote.cdc.json")
    message["record"] = _load("cpq_amendment_quote.record.json")
    if reduce:
        # A second amendment, in its own transaction, taking the support line to 0.
        header = message["ChangeEventHeader"]  # the Pub/Sub API shape: no wrapper
        header.update(transactionKey="000b2c3d-reduce-0000-0000-000000000001", sequenceNumber=1)
        message["record"]["Id"] = header["recordIds"][0] = "a0x5g00000QREDAA1"
        message["record"]["SBQQ__LineItems__r"]["records"][1]["SBQQ__Quantity__c"] = 0
    return message


def _terminated() -> dict[str, Any]:
    """The CPQ contract's later change to Terminated (its own transaction and time)."""
    message = _load("cpq_contract_activated.cdc.json")
    header = message["payload"]["ChangeEventHeader"]
    header.update(
        transactionKey="000c4d5e-term-0000-0000-000000000001",
        sequenceNumber=1,
        commitTimestamp=int(dt.datetime(2024, 10, 15, 9, tzinfo=dt.UTC).timestamp() * 1000),
        changedFields=["Status", "StatusCode", "EndDate", "LastModifiedDate"],
    )
    message["payload"].update(Status="Terminated", StatusCode="Terminated", EndDate="2024-12-31")
    message["event"]["replayId"] = 7450
    return message


@dataclass
class Run:
    """What the module's one pipeline run left on the topics."""

    inputs: dict[int, list]
    entries: list
    schedules: list
    dlq: list
    sent: dict[str, bytes]
    warnings: list[str]


class _Warnings(logging.Handler):
    """Keeps the translators' warning lines (the DLQ lines)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _expected_inputs(bodies: list[bytes]) -> int:
    """Canonical events the two translators make of ``bodies`` (pure, as they do)."""
    count = 0
    for body in bodies:
        for config in (PLAIN, CPQ):
            outcome = outcome_of(body, config)
            count += len(outcome.events) if isinstance(outcome, Translated) else 0
    return count


@pytest.fixture(scope="module")
def run(devstack, tmp_path_factory) -> Iterator[Run]:
    """Send both organisations' messages through the translators and one ledger worker."""
    tmp_path = tmp_path_factory.mktemp("crm-e2e")
    settings = isolated_settings(devstack.bootstrap_servers, tmp_path)
    ensure_topics(settings, TOPICS)
    records = RecordProducer(settings, CODEC)
    records.send_all(REFERENCE)
    july = {
        "opportunity": _load("opportunity_closed_won.cdc.json"),
        "platform_event": _load("platform_event_closed_won.json"),
        "contract": _load("cpq_contract_activated.cdc.json"),
    }
    october = {
        "amendment": _amendment(),
        "reduction": _amendment(reduce=True),
        "termination": _terminated(),
    }
    sent = {name: json.dumps(m).encode() for name, m in {**july, **october}.items()}
    raw_topic = settings.topic_prefix + RAW_SALESFORCE.name
    raw = producer(settings.bootstrap_servers)

    warnings = _Warnings()
    logging.getLogger("streams.stripe_translator").addHandler(warnings)
    stop = threading.Event()
    translators = [
        threading.Thread(
            target=run_crm_translator,
            args=(settings, config, TranslatorOptions(group=f"{settings.app_id}-{name}"), stop),
            daemon=True,
        )
        for name, config in (("crm-plain", PLAIN), ("crm-cpq", CPQ))
    ]
    for thread in translators:
        thread.start()
    inputs = CommittedLog(settings, LEDGER_INPUTS)
    try:
        with running_worker(settings, tmp_path / "worker.log"):
            expected = 0
            for phase, month_end in ((july, JUL31), (october, OCT31)):
                bodies = [sent[name] for name in phase]
                for name, message in phase.items():
                    raw.produce(raw_topic, key=routing_key(message).encode(), value=sent[name])
                raw.flush(30)
                expected += _expected_inputs(bodies)
                inputs.wait_for(expected, timeout=60)
                records.send_all([b.clock(month_end)])
                expected += settings.partitions
                inputs.wait_for(expected, timeout=60)
            logs = inputs.by_partition()
            oracle = replay_partitions(REFERENCE, logs.values())
            entries = CommittedLog(settings, ENTRIES)
            entries.wait_for(len(oracle) + 2 * settings.partitions, timeout=60)
            entries.read_for(2)  # an entry posted twice would show up here
            schedules = CommittedLog(settings, REVENUE_SCHEDULES)
            schedules.read_for(2)
    finally:
        stop.set()
        for thread in translators:
            thread.join(30)
        logging.getLogger("streams.stripe_translator").removeHandler(warnings)
        inputs.close()
    dlq = CommittedLog(settings, DLQ)
    dlq.read_for(2)
    posted = [r for log in entries.by_partition().values() for r in log]
    yield Run(
        inputs=logs,
        entries=[r for r in posted if r.schema_name == "JournalEntryPosted"],
        schedules=[r for log in schedules.by_partition().values() for r in log],
        dlq=[CODEC.decode(m.value()) for m in dlq.messages],
        sent=sent,
        warnings=warnings.lines,
    )
    for log in (entries, schedules, dlq):
        log.close()


def _revenue(run: Run, customer: str, clock: dt.date) -> dict[tuple[str, str], int]:
    """Revenue credited at one tick for ``customer``, by (obligation, currency)."""
    revenue: Counter[tuple[str, str]] = Counter()
    for entry in run.entries:
        if entry.source_event_id != f"ref-clock-{clock.isoformat()}/{customer}":
            continue
        for line in entry.lines:
            if line.account == "revenue" and line.side == "credit":
                revenue[(line.dimensions["obligation_id"], line.currency)] += line.amount_minor
    return dict(revenue)


def test_contract_events_reach_the_ledger_once_each_from_the_translator_of_their_org(run):
    events = Counter(
        (r.event_type, r.contract_id)
        for log in run.inputs.values()
        for r in log
        if r.schema_name.startswith("Contract")
    )
    assert events == Counter(
        {
            ("contract.booked", OPPORTUNITY): 1,
            ("contract.booked", "0065g00000PEVTAA1"): 1,
            ("contract.booked", CONTRACT): 1,
            ("contract.amended", CONTRACT): 1,
            ("contract.cancelled", CONTRACT): 1,
        }
    )


def test_entries_are_those_of_a_pure_replay_of_the_input_log_and_none_is_posted_twice(run):
    expected = [entry_record(e) for e in replay_partitions(REFERENCE, run.inputs.values())]

    assert len({e.entry_id for e in run.entries}) == len(run.entries)
    assert sorted(run.entries, key=lambda e: e.entry_id) == sorted(
        expected, key=lambda e: e.entry_id
    )


def test_july_tick_recognises_the_booked_obligations_ahead_of_billing(run):
    # Opportunity: 13,000.00 allocated by SSP (15,000 / 2,000): the platform's 11,470.59
    # over 365 days, July = 31 days; onboarding's 1,529.41 at once (point in time).
    assert _revenue(run, ACCOUNT, JUL31) == {
        ("00k5g00000LINE1AA1", "USD"): 974_21,
        ("00k5g00000LINE2AA1", "USD"): 1_529_41,
        ("a1C5g000001SUB1AA1", "EUR"): 424_66,  # CPQ: 5,000.00 of seats, 31 of 365 days
    }
    assert _revenue(run, YEN_ACCOUNT, JUL31) == {("00k5g00000PEVL1AA1", "JPY"): 12_740}
    (yen,) = [e for e in run.entries if e.customer_id == YEN_ACCOUNT and "07-31" in e.entry_id]
    # Nothing billed yet: revenue ahead of billing is a contract asset (unbilled AR).
    assert {(x.account, x.side, x.currency, x.amount_minor) for x in yen.lines} == {
        ("unbilled_receivable", "debit", "JPY", 12_740),
        ("revenue", "credit", "JPY", 12_740),
    }
    assert (yen.entity, yen.functional_currency) == ("JP1", "JPY")


def test_october_tick_recognises_the_added_seats_and_the_support_line(run):
    october = _revenue(run, ACCOUNT, OCT31)

    assert october[("a0w5g00000QL1AA1", "EUR")] == 255_49  # 3 seats added from Oct 1
    assert october[("a1C5g000001SUB2AA1", "EUR")] == 227_11  # support starts Oct 1


def test_schedules_name_each_contract_and_the_termination_date(run):
    latest = {(s.customer_id, s.contract_id): s for s in run.schedules}  # compacted: last wins
    contract = latest[(ACCOUNT, CONTRACT)]

    assert set(latest) == {
        (ACCOUNT, OPPORTUNITY),
        (YEN_ACCOUNT, "0065g00000PEVTAA1"),
        (ACCOUNT, CONTRACT),
    }
    assert contract.cancelled_on == dt.date(2024, 12, 31)
    assert (contract.entity, contract.currency) == ("EU1", "EUR")
    obligations = {line.obligation_id for line in contract.lines}
    assert obligations == {"a1C5g000001SUB1AA1", "a1C5g000001SUB2AA1", "a0w5g00000QL1AA1"}
    assert latest[(ACCOUNT, OPPORTUNITY)].total_minor == 13_000_00


def test_quantity_reduction_is_dead_lettered_by_crm_translate_with_the_original_bytes(run):
    (record,) = run.dlq

    assert record.reason == "salesforce_amendment_reduction"
    assert record.original_value == run.sent["reduction"]
    assert record.original_key == b"a0x5g00000QREDAA1"
    (line,) = [w for w in run.warnings if "salesforce_amendment_reduction" in w]
    assert line.startswith("crm-translate: ")
    assert not any(w.startswith("stripe-translate") for w in run.warnings)
