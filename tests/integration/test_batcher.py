"""Ledger and batcher on the real broker: ERP batches sum to the entries, in sequence, replayable.

A simulated company's contracts over 24 months go through the ledger worker and the batcher
(two processes, as production runs them). One entity starts without the GL mapping of its
revenue account: its batches wait (``gl_mapping_missing``, visible on the batcher's
``/metrics``) until the mapping is published half-way, then go out in sequence. At the end:

- every batch balances, sequences run 0..n per (entity, partition) with no gap or repeat;
- batch lines sum, per entity, account and currency, to the entries they list, and the
  entries in no batch are exactly the windows still open;
- the bytes equal the pure replay of each partition's entries log
  (:func:`streams.batcher.replay_batches`), and a second batcher in a fresh consumer group
  sends every batch again with identical bytes.
"""

from __future__ import annotations

import datetime as dt
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter, defaultdict

import pytest

from connectors.simulation import builders as b
from connectors.simulation.contracts import generate_contracts
from ledger.events import ClockAdvanced, GlMapping
from ledger.reference import ReferenceData
from revenue.replay import replay_all
from streams.admin import ensure_topics
from streams.batcher import batch_policy, replay_batches
from streams.batches import batch_record
from streams.messages import JournalBatch, JournalEntryPosted
from streams.producer import RecordProducer
from streams.serde import Codec
from streams.settings import worker_environment
from streams.topics import ENTRIES, JOURNAL_BATCHES, LEDGER_INPUTS, TOPICS

from worker_process import (
    CommittedLog,
    isolated_settings,
    running_worker,
    send_month_by_month,
    start_worker,
)

pytestmark = pytest.mark.integration
CODEC = Codec()
CUSTOMERS = 110  # about 5,500 events over 24 months
MONTHS = 24
START = dt.date(2024, 1, 1)
HELD_ENTITY = b.EU
MONTHS_HELD = 6
BATCHER = [sys.executable, "-m", "streams.cli", "batcher"]


def _free_port_pair() -> int:
    """A port p with p and p + 1 free (the ledger's and the batcher's web servers)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        try:
            with socket.socket() as second:
                second.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two consecutive free ports")


def _held(port: int) -> float:
    """``revledger_journal_batches_held`` of HELD_ENTITY on the batcher's /metrics (0 if none)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as page:
            text = page.read().decode()
    except OSError:
        return -1.0
    found = re.search(
        rf'^revledger_journal_batches_held\{{entity="{HELD_ENTITY}",'
        r'reason="gl_mapping_missing"\} (\S+)$',
        text,
        re.MULTILINE,
    )
    return float(found.group(1)) if found else 0.0


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(1.0)
    raise AssertionError(f"timed out waiting for {what}")


def _logs(log: CommittedLog) -> dict[int, list[tuple[int, object]]]:
    """(offset, decoded record) of each partition, in offset order."""
    found: dict[int, list] = {p: [] for p in range(log.partitions)}
    for message in sorted(log.messages, key=lambda m: (m.partition(), m.offset())):
        found[message.partition()].append((message.offset(), CODEC.decode(message.value())))
    return found


def _sums(rows) -> dict[tuple[str, str, str], int]:
    """(entity, account, currency) -> net debit, in transaction and functional minor units."""
    totals: Counter = Counter()
    for entity, account, currency, debit, credit, f_debit, f_credit in rows:
        totals[entity, account, currency, "transaction"] += debit - credit
        totals[entity, account, currency, "functional"] += f_debit - f_credit
    return {key: value for key, value in totals.items() if value}


def test_batches_sum_to_the_entries_run_in_sequence_and_replay_byte_for_byte(devstack, tmp_path):
    stream = generate_contracts(
        seed=23, customers=CUSTOMERS, months=MONTHS, start=START, out_of_order_rate=0.1
    )
    port = _free_port_pair()
    settings = isolated_settings(
        devstack.bootstrap_servers,
        tmp_path,
        partitions=4,
        store="rocksdb://",
        web_port=port,
        batch_max_entries=150,
    )
    ensure_topics(settings, TOPICS)
    missing = [
        r
        for r in stream.reference
        if isinstance(r, GlMapping) and r.entity == HELD_ENTITY and r.account == "revenue"
    ]
    assert len(missing) == 1
    producer = RecordProducer(settings, CODEC)
    producer.send_all([r for r in stream.reference if r not in missing])
    ticks = [i for i, e in enumerate(stream.events) if isinstance(e, ClockAdvanced)]
    split = ticks[MONTHS_HELD - 1] + 1
    customer_events = [e for e in stream.events if not isinstance(e, ClockAdvanced)]
    inputs = CommittedLog(settings, LEDGER_INPUTS)
    entries_log = CommittedLog(settings, ENTRIES)
    batches_log = CommittedLog(settings, JOURNAL_BATCHES)
    started = time.monotonic()

    with (
        running_worker(settings, tmp_path / "ledger.log"),
        running_worker(settings, tmp_path / "batcher.log", argv=BATCHER) as batcher,
    ):
        sent = send_month_by_month(producer, inputs, stream.events[:split])
        held = _wait(lambda: _held(port + 1) > 0 and _held(port + 1), 120, "a held batch")
        batches_log.read_for(2)
        before_release = [CODEC.decode(m.value()) for m in batches_log.messages]
        producer.send_all(missing)
        sent = send_month_by_month(producer, inputs, stream.events[split:], already=sent)

        sequenced = {p: [r for _, r in log] for p, log in _logs(inputs).items()}
        replays = {
            p: replay_all(stream.reference, rs, hold_timeout_days=settings.hold_timeout_days)
            for p, rs in sequenced.items()
        }
        expected_entries = sum(len(r.entries) for r in replays.values())
        entries_log.wait_for(expected_entries + MONTHS * settings.partitions, timeout=180)
        reference = ReferenceData.from_records(stream.reference)
        oracle = {
            p: replay_batches(p, log, reference, batch_policy(settings))
            for p, log in _logs(entries_log).items()
        }
        expected_batches = sum(len(batches) for batches, _ in oracle.values())
        batches_log.wait_for(expected_batches, timeout=180)
        batches_log.read_for(3)  # a batch sent twice would show here
        _wait(lambda: _held(port + 1) == 0, 60, "the held batches to be released")
        batcher_log = batcher.log()
    elapsed = time.monotonic() - started

    first_run = [(m.partition(), m.value()) for m in batches_log.messages]
    batches = [CODEC.decode(value) for _, value in first_run]
    assert all(isinstance(x, JournalBatch) for x in batches)
    # Balanced, gap-free, each batch once, on the partition of its entries.
    assert len({x.batch_id for x in batches}) == len(batches) == expected_batches
    for partition, value in first_run:
        batch = CODEC.decode(value)
        assert batch.source_partition == partition
        assert all(t.debit_minor == t.credit_minor for t in batch.totals)
        assert (
            sum(line.functional_debit_minor - line.functional_credit_minor for line in batch.lines)
            == 0
        )
    streams: dict[tuple[str, int], list[int]] = defaultdict(list)
    for batch in batches:
        streams[batch.entity, batch.source_partition].append(batch.sequence)
    for key, sequences in streams.items():
        assert sorted(sequences) == list(range(len(sequences))), key
        assert sequences == sorted(sequences), f"{key} sent out of sequence"

    # Lines sum to the entries they list; what no batch lists is the windows still open.
    entries = {
        r.entry_id: r
        for log in _logs(entries_log).values()
        for _, r in log
        if isinstance(r, JournalEntryPosted)
    }
    assert len(entries) == expected_entries
    batched = [i for x in batches for i in x.entry_ids]
    assert len(batched) == len(set(batched))
    still_open = {
        e.entry_id
        for _, state in oracle.values()
        for w in state.windows.values()
        for _, e in w.entries
    }
    assert set(entries) - set(batched) == still_open
    from_batches = _sums(
        (
            x.entity,
            line.account,
            line.currency,
            line.debit_minor,
            line.credit_minor,
            line.functional_debit_minor,
            line.functional_credit_minor,
        )
        for x in batches
        for line in x.lines
    )
    from_entries = _sums(
        (
            entries[i].entity,
            line.account,
            line.currency,
            line.amount_minor if line.side == "debit" else 0,
            line.amount_minor if line.side == "credit" else 0,
            line.functional_amount_minor if line.side == "debit" else 0,
            line.functional_amount_minor if line.side == "credit" else 0,
        )
        for i in batched
        for line in entries[i].lines
    )
    assert from_batches == from_entries

    # The held entity: waiting while unmapped, then released in sequence.
    held_before = [x for x in before_release if x.entity == HELD_ENTITY]
    held_after = [x for x in batches if x.entity == HELD_ENTITY]
    assert "gl_mapping_missing" in batcher_log
    assert len(held_after) > len(held_before)

    # Byte for byte: the pure replay of each partition's entries log ...
    expected_bytes = {
        x.batch_id: CODEC.encode(
            batch_record(x), topic=settings.topic_prefix + JOURNAL_BATCHES.name
        )
        for batches_of_partition, _ in oracle.values()
        for x in batches_of_partition
    }
    assert {CODEC.decode(v).batch_id: v for _, v in first_run} == expected_bytes

    # ... and a batcher in a fresh consumer group over the same log.
    again = settings.model_copy(
        update={"app_id": f"{settings.app_id}-again", "web_port": 0, "data_dir": tmp_path / "again"}
    )
    second = start_worker(again, tmp_path / "batcher-again.log", argv=BATCHER)
    try:
        batches_log.wait_for(2 * expected_batches, timeout=180)
        batches_log.read_for(3)
    finally:
        second.stop()
    copies: dict[str, list[bytes]] = defaultdict(list)
    for message in batches_log.messages:
        copies[CODEC.decode(message.value()).batch_id].append(message.value())
    assert all(len(values) == 2 and values[0] == values[1] for values in copies.values())
    for log in (inputs, entries_log, batches_log):
        log.close()

    # The ERP import job takes each batch once; the fresh group's copies are duplicates.
    out = tmp_path / "erp"
    imported = subprocess.run(
        [*BATCHER[:-1], "erp-import", "--format", "netsuite-csv", "--out", str(out)],
        env=worker_environment(settings),
        capture_output=True,
        text=True,
        timeout=300,
    )
    summary = (
        f"imported {expected_batches}, already imported {expected_batches}, rejected 0,"
        " pending 0; gaps: none"
    )
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert summary in imported.stdout
    assert len(list(out.rglob("*.csv"))) == expected_batches

    print(
        f"\n{len(customer_events)} events, {sent} records sequenced over"
        f" {settings.partitions} partitions; {len(entries)} entries; {len(batches)} batches"
        f" ({sum(len(x.lines) for x in batches)} lines) in {len(streams)} entity/partition"
        f" sequences; {len(still_open)} entries in windows still open; {held:.0f} windows of"
        f" {HELD_ENTITY} held, released after the mapping; replay and fresh group"
        f" byte-identical; erp-import wrote {expected_batches} NetSuite files; {elapsed:.0f}s"
    )
    assert len(customer_events) >= 5_000


def test_batcher_killed_mid_log_resumes_without_losing_or_doubling_a_batch(devstack, tmp_path):
    stream = generate_contracts(seed=29, customers=60, months=12, start=START)
    settings = isolated_settings(
        devstack.bootstrap_servers,
        tmp_path,
        partitions=2,
        store="rocksdb://",
        batch_max_entries=5,
        commit_interval_seconds=0.2,
    )
    ensure_topics(settings, TOPICS)
    producer = RecordProducer(settings, CODEC)
    producer.send_all(stream.reference)
    inputs = CommittedLog(settings, LEDGER_INPUTS)
    entries_log = CommittedLog(settings, ENTRIES)
    batches_log = CommittedLog(settings, JOURNAL_BATCHES)
    with running_worker(settings, tmp_path / "ledger.log"):
        send_month_by_month(producer, inputs, stream.events)
        sequenced = {p: [r for _, r in log] for p, log in _logs(inputs).items()}
        expected_entries = sum(
            len(replay_all(stream.reference, rs, hold_timeout_days=7).entries)
            for rs in sequenced.values()
        )
        entries_log.wait_for(expected_entries + 12 * settings.partitions, timeout=180)
    reference = ReferenceData.from_records(stream.reference)
    oracle = {
        x.batch_id: CODEC.encode(
            batch_record(x), topic=settings.topic_prefix + JOURNAL_BATCHES.name
        )
        for p, log in _logs(entries_log).items()
        for x in replay_batches(p, log, reference, batch_policy(settings))[0]
    }

    first = start_worker(settings, tmp_path / "batcher-1.log", argv=BATCHER)
    try:
        batches_log.wait_for(1, timeout=120)  # it is under way: kill it
    finally:
        first.kill()
    killed_after = len(batches_log.messages)
    with running_worker(settings, tmp_path / "batcher-2.log", argv=BATCHER):
        batches_log.wait_for(len(oracle), timeout=180)
        batches_log.read_for(5)  # a batch sent twice would show here
    got = [(CODEC.decode(m.value()).batch_id, m.value()) for m in batches_log.messages]
    for log in (inputs, entries_log, batches_log):
        log.close()
    print(
        f"\n{len(oracle)} batches expected; killed after {killed_after} were committed;"
        f" {len(got)} read after the restart"
    )
    assert killed_after < len(oracle), "the kill came too late to test anything"
    assert len(got) == len(oracle), "a batch was lost or sent twice"
    assert dict(got) == oracle
