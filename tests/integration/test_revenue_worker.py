"""The revenue worker on the real broker: amended contracts over 24 months equal the replay.

The stream (:func:`connectors.simulation.contracts.generate_contracts`) is produced month
by month: a month's events, then, once the sequencer has copied them to
``ledger.inputs.v1``, that month's tick (to every partition of ``control.v1``). Kafka
orders nothing across topics, so within a month the sequencer may still put a payment
before its invoice or an invoice before its contract: the oracle is each partition's
sequenced log replayed through :func:`revenue.replay.replay_all`.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter, defaultdict

import pytest

from connectors.simulation.contracts import generate_contracts, month_ends
from ledger.book import OutcomeKind
from ledger.events import ClockAdvanced
from ledger.reference import ReferenceData
from revenue.engine import CustomerBooks, apply
from revenue.events import ContractAmended, ContractBooked
from revenue.recognition import schedule_by_period
from revenue.replay import replay_all
from streams.admin import ensure_topics
from streams.entries import entry_record
from streams.messages import JournalEntryPosted
from streams.producer import RecordProducer
from streams.schedules import schedule_record
from streams.serde import Codec
from streams.topics import ENTRIES, LEDGER_INPUTS, REVENUE_SCHEDULES, TOPICS

from worker_process import CommittedLog, isolated_settings, running_worker, send_month_by_month

pytestmark = pytest.mark.integration
CODEC = Codec()
CUSTOMERS = 180  # about 300 contracts, 9,000 events
MONTHS = 24
START = dt.date(2024, 1, 1)
# Sign of a debit in each account's balance (credit-normal accounts count credits).
BALANCES = {"revenue": -1, "deferred_revenue": -1, "unbilled_receivable": 1}


def _balances(entries) -> dict[tuple[str, str, str], int]:
    """Net movement of revenue, deferred revenue and unbilled AR by (period, currency)."""
    moved: dict[tuple[str, str, str], int] = defaultdict(int)
    for entry in entries:
        for line in entry.lines:
            if line.account in BALANCES:
                sign = 1 if line.side == "debit" else -1
                key = (entry.period, entry.functional_currency, line.account)
                moved[key] += sign * BALANCES[line.account] * line.functional_amount_minor
    return dict(moved)


def _table(moved: dict[tuple[str, str, str], int]) -> str:
    """Closing balances per month end, functional currency, in major units."""
    columns = [(c, a) for c in ("USD", "EUR") for a in BALANCES]
    header = "period  " + "".join(f"{a[:10]:>13} {c}" for c, a in columns)
    rows, running = [header], Counter[tuple[str, str]]()
    for period in sorted({p for p, _, _ in moved}):
        for currency, account in columns:
            running[currency, account] += moved.get((period, currency, account), 0)
        cells = "".join(f"{running[c, a] / 100:>17,.2f}" for c, a in columns)
        rows.append(f"{period} {cells}")
    return "\n".join(rows)


def _held_and_released(reference: list, records: list) -> tuple[int, int]:
    """Events held (and released later) in one partition's log; holds wait on events only."""
    data = ReferenceData.from_records(reference)
    books: dict[str, CustomerBooks] = {}
    held = released = 0
    for record in records:
        if isinstance(record, ClockAdvanced):
            continue
        outcome = apply(
            books.get(record.customer_id) or CustomerBooks.new(record.customer_id), record, data
        )
        books[record.customer_id] = outcome.books
        held += outcome.kind is OutcomeKind.held
        released += len(outcome.released)
    return held, released


def test_revenue_entries_equal_partition_replays_when_contracts_are_amended_over_24_months(
    devstack, tmp_path
):
    stream = generate_contracts(
        seed=17, customers=CUSTOMERS, months=MONTHS, start=START, out_of_order_rate=0.25
    )
    settings = isolated_settings(
        devstack.bootstrap_servers, tmp_path, partitions=4, store="rocksdb://"
    )
    ensure_topics(settings, TOPICS)
    producer = RecordProducer(settings, CODEC)
    producer.send_all(stream.reference)
    customer_events = [e for e in stream.events if not isinstance(e, ClockAdvanced)]
    inputs, outputs = CommittedLog(settings, LEDGER_INPUTS), CommittedLog(settings, ENTRIES)
    schedules = CommittedLog(settings, REVENUE_SCHEDULES)
    started = time.monotonic()

    with running_worker(settings, tmp_path / "worker.log"):
        sent = send_month_by_month(producer, inputs, stream.events)
        sequenced = inputs.by_partition()
        replays = {
            partition: replay_all(
                stream.reference, records, hold_timeout_days=settings.hold_timeout_days
            )
            for partition, records in sequenced.items()
        }
        expected = [entry_record(e) for r in replays.values() for e in r.entries]
        # Every applied tick follows its entries onto the entries topic.
        outputs.wait_for(len(expected) + MONTHS * settings.partitions, timeout=180)
        outputs.read_for(5)  # an entry produced twice would show here
        schedules.read_for(1)
    elapsed = time.monotonic() - started
    inputs.close()
    outputs.close()
    schedules.close()
    written = outputs.by_partition()
    got = [r for records in written.values() for r in records if isinstance(r, JournalEntryPosted)]
    for records in written.values():
        forwarded = [r.business_date for r in records if isinstance(r, ClockAdvanced)]
        assert forwarded == month_ends(START, MONTHS), "each applied tick, once, in order"

    ids = Counter(e.entry_id for e in got)
    assert not [i for i, n in ids.items() if n > 1], "an entry was produced twice"
    # (c) every partition ran the 24 month-end ticks, in order, and nothing else moved.
    for partition, records in sequenced.items():
        ticks = [r.business_date for r in records if isinstance(r, ClockAdvanced)]
        assert ticks == month_ends(START, MONTHS)
        assert replays[partition].clock == ticks[-1]
    sequenced_ids = Counter(
        r.event_id for rs in sequenced.values() for r in rs if not isinstance(r, ClockAdvanced)
    )
    assert sequenced_ids == Counter(e.event_id for e in customer_events)
    # (a) the worker's entries are the replay's entries.
    assert len(got) == len(expected)
    assert sorted(got, key=lambda e: e.entry_id) == sorted(expected, key=lambda e: e.entry_id)
    # The last schedule published for each contract is the replay's schedule of it.
    published = {
        (r.customer_id, r.contract_id): r
        for records in schedules.by_partition().values()
        for r in records
    }
    replayed = {
        (customer, contract_id): schedule_record(
            customer,
            contract,
            schedule_by_period(contract),
            published[customer, contract_id].source_event_id,
        )
        for r in replays.values()
        for customer, books in r.books.items()
        for contract_id, contract in books.revenue.contracts.items()
        if (customer, contract_id) in published
    }
    assert set(published) == {
        (customer, contract_id)
        for r in replays.values()
        for customer, books in r.books.items()
        for contract_id in books.revenue.contracts
    }
    assert published == replayed
    # (b) so are the month-end balances of revenue, deferred revenue and unbilled AR.
    balances = _balances(got)
    assert balances == _balances(expected)

    periods = {e.period for e in got if e.rule == "revenue_recognition"}
    assert len(periods) == MONTHS
    early = _held_and_released(stream.reference, customer_events)
    held = [_held_and_released(stream.reference, records) for records in sequenced.values()]
    contracts = {e.contract_id for e in customer_events if isinstance(e, ContractBooked)}
    treatments = Counter(e.treatment for e in customer_events if isinstance(e, ContractAmended))
    rejected = Counter(str(s) for r in replays.values() for _, s, _ in r.rejected)
    rules = Counter(e.rule for e in got)
    print(
        f"\n{CUSTOMERS} customers, {len(contracts)} contracts, amendments {dict(treatments)};"
        f" {len(customer_events)} events ({len(customer_events) - len(sequenced_ids)}"
        f" redelivered, {early[0]} held then released in arrival order) + {MONTHS} ticks x"
        f" {settings.partitions} partitions = {sent} records sequenced; held then released in"
        f" the sequenced logs {sum(h for h, _ in held)}/{sum(r for _, r in held)}; replay"
        f" rejected {dict(rejected)}, expired {sum(len(r.expired) for r in replays.values())};"
        f" {len(got)} entries ({rules['revenue_recognition']} recognition,"
        f" {rules['revenue_catch_up']} catch-up); {elapsed:.0f}s with the worker"
    )
    print(_table(balances))
