"""``revledger simulate --to-kafka`` on the test broker: each record on its topic, key, in order.

The command runs in-process (``main_simulate``) with its settings from the environment, on
topics under a uuid prefix; the topics are then read back at read_committed and compared
with the same simulation made again. With ``--paced`` and a real ledger worker running,
nothing is dead-lettered and the worker's entries are the pure replay of what it sequenced.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections import Counter, defaultdict

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from connectors.simulation.saas import simulate_company
from ledger.events import ClockAdvanced
from revenue.replay import replay_all
from streams.admin import ensure_topics
from streams.entries import entry_record
from streams.messages import JournalEntryPosted
from streams.producer import key_for, topic_for
from streams.serde import Codec
from streams.settings import Settings
from streams.simulate import add_simulate_commands, main_simulate
from streams.topics import BY_NAME, CONTROL, DLQ, ENTRIES, LEDGER_INPUTS, TOPICS, TopicSpec

from worker_process import CommittedLog, isolated_settings, running_worker

pytestmark = pytest.mark.integration
CUSTOMERS, MONTHS, SEED, PARTITIONS = 25, 3, 21, 3


def _read(settings: Settings, specs: list[TopicSpec], expected: int, timeout: float = 30.0) -> dict:
    """Every record of the topics at read_committed: ``expected`` in all, then 1 s more.

    Returns each topic's messages (by unprefixed name) in partition and offset order.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.assign(
        [
            TopicPartition(settings.topic_prefix + spec.name, partition, OFFSET_BEGINNING)
            for spec in specs
            for partition in range(spec.partitions(settings.partitions))
        ]
    )
    messages: list = []
    deadline, extra = time.monotonic() + timeout, None
    try:
        while time.monotonic() < (extra or deadline):
            if len(messages) >= expected and extra is None:
                extra = time.monotonic() + 1.0  # a record produced twice would show here
            for message in consumer.consume(1000, 0.5):
                if message.error() is None:
                    messages.append(message)
                elif message.error().code() != KafkaError._PARTITION_EOF:
                    raise RuntimeError(message.error())
    finally:
        consumer.close()
    by_topic: dict[str, list] = defaultdict(list)
    for message in sorted(messages, key=lambda m: (m.topic(), m.partition(), m.offset())):
        by_topic[message.topic().removeprefix(settings.topic_prefix)].append(message)
    return by_topic


def _simulate(settings: Settings, monkeypatch, *flags: str) -> int:
    """``revledger simulate --to-kafka`` in-process, its settings from the environment."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", settings.bootstrap_servers)
    monkeypatch.setenv("REVLEDGER_TOPIC_PREFIX", settings.topic_prefix)
    monkeypatch.setenv("REVLEDGER_PARTITIONS", str(settings.partitions))
    parser = argparse.ArgumentParser()
    add_simulate_commands(parser.add_subparsers(dest="command"))
    argv = ["simulate", "--customers", str(CUSTOMERS), "--months", str(MONTHS), "--seed"]
    return main_simulate(parser.parse_args([*argv, str(SEED), "--to-kafka", *flags]))


def test_simulate_to_kafka_produces_every_record_to_its_topic_and_key_in_order(
    devstack, tmp_path, monkeypatch, capsys
):
    settings = isolated_settings(devstack.bootstrap_servers, tmp_path, partitions=PARTITIONS)
    started = time.monotonic()
    assert _simulate(settings, monkeypatch) == 0
    produced_in = time.monotonic() - started
    output = capsys.readouterr()

    simulation = simulate_company(CUSTOMERS, MONTHS, SEED)
    expected: dict[str, list] = defaultdict(list)  # topic -> (key, event id) in produce order
    for record in [*simulation.reference, *simulation.records]:
        key = key_for(record)
        expected[topic_for(record).name].append((key, record.event_id))
    codec = Codec()
    specs = [BY_NAME[name] for name in expected]
    copies = {name: PARTITIONS if BY_NAME[name] is CONTROL else 1 for name in expected}
    read = _read(settings, specs, sum(len(r) * copies[n] for n, r in expected.items()))
    assert set(read) == set(expected)
    partition_of: dict[bytes, int] = {}
    for name, records in expected.items():
        spec = BY_NAME[name]
        got = [(m.partition(), m.key(), codec.decode(m.value()).event_id) for m in read[name]]
        if spec is CONTROL:  # once to every partition, in order
            for partition in range(PARTITIONS):
                assert [(k, e) for p, k, e in got if p == partition] == records, partition
            continue
        assert Counter((k, e) for _, k, e in got) == Counter(records), name
        for partition, key, _ in got:
            if spec.copartitioned:  # one customer, one partition number, on every topic
                assert partition_of.setdefault(key, partition) == partition, (name, key)
        for partition in {p for p, _, _ in got}:  # each partition in produce order
            keys = {k for p, k, _ in got if p == partition}
            in_order = [(k, e) for k, e in records if k in keys]
            assert [(k, e) for p, k, e in got if p == partition] == in_order, (name, partition)
    assert len(set(partition_of.values())) == PARTITIONS
    messages = len(simulation.reference) + len(simulation.records)
    messages += (PARTITIONS - 1) * simulation.counts["ClockAdvanced"]
    messages += (PARTITIONS - 1) * simulation.counts["PeriodClosed"]
    assert f"produced {messages:,} messages" in output.out
    assert "producing: 100%" in output.err
    print(f"\n{messages:,} messages on {len(expected)} topics, produced in {produced_in:.1f}s")


def test_paced_simulation_is_applied_whole_when_a_ledger_worker_runs(
    devstack, tmp_path, monkeypatch
):
    settings = isolated_settings(devstack.bootstrap_servers, tmp_path, partitions=2)
    ensure_topics(settings, TOPICS)
    simulation = simulate_company(CUSTOMERS, MONTHS, SEED)
    controls = simulation.counts["ClockAdvanced"] + simulation.counts["PeriodClosed"]
    sequenced = len(simulation.records) + controls * (settings.partitions - 1)
    inputs, entries = CommittedLog(settings, LEDGER_INPUTS), CommittedLog(settings, ENTRIES)
    dlq = CommittedLog(settings, DLQ)
    with running_worker(settings, tmp_path / "worker.log"):
        assert _simulate(settings, monkeypatch, "--paced") == 0
        inputs.wait_for(sequenced, timeout=60)
        logs = inputs.by_partition()
        replays = [
            replay_all(simulation.reference, log, hold_timeout_days=7) for log in logs.values()
        ]
        expected = [entry_record(e) for replay in replays for e in replay.entries]
        entries.wait_for(len(expected) + controls * settings.partitions, timeout=60)
        dlq.read_for(2)
    for log in (inputs, entries, dlq):
        log.close()
    assert dlq.messages == []
    for replay in replays:
        assert (replay.rejected, replay.expired, replay.refused) == ([], [], [])
        assert not [cid for cid, books in replay.books.items() if books.ledger.held]
    written = [r for log in entries.by_partition().values() for r in log]
    got = [r for r in written if isinstance(r, JournalEntryPosted)]
    assert sorted(got, key=lambda e: e.entry_id) == sorted(expected, key=lambda e: e.entry_id)
    # Paced: the worker applied each tick after every record produced before it.
    produced_at: dict[str, int] = {}
    for position, record in enumerate(simulation.records):
        produced_at.setdefault(record.event_id, position)
    for log in logs.values():
        applied_at: dict[str, int] = {}
        for position, record in enumerate(log):
            applied_at.setdefault(record.event_id, position)
        for position, record in enumerate(log):
            if isinstance(record, ClockAdvanced):
                tick = produced_at[record.event_id]
                late = [
                    e for e, at in applied_at.items() if produced_at[e] < tick and at > position
                ]
                assert late == [], (record.business_date, late[:5])
