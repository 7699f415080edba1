"""``revledger simulate``: the simulated SaaS company, produced to Kafka or written to a file.

``revledger simulate --customers N --months M --seed S [--clock daily|monthly]
[--start YYYY-MM-DD] (--to-kafka [--paced] | --out FILE)`` runs
:func:`connectors.simulation.saas.simulate_company` and then either

* ``--to-kafka``: creates the topics (``revledger topics create``) and produces the
  reference records, then the records in order, with :class:`streams.producer.RecordProducer`
  (each record to its topic and key; a control record to every partition of
  ``control.v1``), showing progress on stderr. With ``--paced`` (for a running ledger
  worker) it waits, before each tick or period close, until the worker has sequenced
  every record produced before it (and, before a close, applied the ticks before it):
  Kafka orders nothing across topics, so a tick sent at once overtakes the month's events
  on slower topics, recognises ahead of them and expires their holds (``orphan_event``).
  With ``--clock daily`` that is a wait at every tick (about a commit interval each); or
* ``--out FILE``: writes JSON Lines, one per record in produce order:
  ``{"topic": ..., "key": ..., "type": <record type>, "record": <the record as JSON>}``
  (``key`` null for control records, which Kafka gets once per partition). The same
  arguments write the same bytes.

Either way it prints what was simulated: records per type, the business features, and
(to Kafka) messages per topic. :func:`produce_simulation` is the producing part, for the
demo.

Must not import faust.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

from confluent_kafka import OFFSET_END, Consumer, KafkaError, KafkaException, TopicPartition

from connectors.simulation.saas import CLOCKS, DEFAULT_START, Simulation, simulate_company
from ledger.events import PeriodClosed, Record
from streams.producer import key_for, topic_for
from streams.settings import Settings, SettingsError, kafka_client_config
from streams.topics import CONTROL, ENTRIES, LEDGER_INPUTS

Progress = Callable[[int, int], None]
# Waits for a running ledger worker: (records sequenced, control records applied).
WaitForLedger = Callable[[int, int], None]
# How long --paced waits for the worker at one tick or close before giving up.
LEDGER_TIMEOUT_SECONDS = 300.0
# Progress is reported about this many times per run: often enough for a smooth bar,
# rarely enough that reporting costs nothing beside producing.
_PROGRESS_STEPS = 200
_BAR_WIDTH = 30


def add_simulate_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``revledger simulate`` to the CLI's sub-commands."""
    parser = subparsers.add_parser(
        "simulate",
        help="simulate a SaaS company's billing, payments, contracts and usage",
        description="A deterministic subscription company of two entities (US1 in USD, EU1"
        " in EUR): the same arguments give the same records, byte for byte.",
    )
    parser.add_argument("--customers", type=int, default=500, metavar="N")
    parser.add_argument("--months", type=int, default=12, metavar="M")
    parser.add_argument("--seed", type=int, default=7, metavar="S")
    parser.add_argument(
        "--clock",
        choices=CLOCKS,
        default="monthly",
        help="a clock tick at every month end (default) or every day",
    )
    parser.add_argument(
        "--start",
        default=DEFAULT_START.isoformat(),
        metavar="YYYY-MM-DD",
        help=f"first business day (default {DEFAULT_START})",
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--to-kafka", action="store_true", help="produce to the topics (creating them)"
    )
    target.add_argument("--out", metavar="FILE", help="write JSON Lines to FILE ('-': stdout)")
    parser.add_argument(
        "--paced",
        action="store_true",
        help="with --to-kafka: before each tick or period close, wait until a running ledger"
        " worker has sequenced everything produced before it",
    )


def main_simulate(args: argparse.Namespace) -> int:
    """Entry point of ``revledger simulate``: 0 done, 1 Kafka failed, 2 bad arguments."""
    if args.paced and args.out is not None:
        print("revledger simulate: --paced goes with --to-kafka", file=sys.stderr)
        return 2
    try:
        start = dt.date.fromisoformat(args.start)
        simulation = simulate_company(args.customers, args.months, args.seed, args.clock, start)
    except ValueError as exc:
        print(f"revledger simulate: {exc}", file=sys.stderr)
        return 2
    if args.out is not None:
        if args.out == "-":
            write_jsonl(simulation, sys.stdout)
            return 0
        with Path(args.out).open("w", encoding="utf-8", newline="\n") as handle:
            lines = write_jsonl(simulation, handle)
        _print_summary(simulation, None)
        print(f"wrote {lines:,} lines to {args.out}")
        return 0
    return _to_kafka(simulation, paced=args.paced)


def _to_kafka(simulation: Simulation, *, paced: bool) -> int:
    from streams.admin import TopicMismatch, ensure_topics
    from streams.devstack_env import settings_from_devstack

    try:
        settings = settings_from_devstack()
    except SettingsError as exc:
        print(f"revledger simulate: {exc}", file=sys.stderr)
        return 2
    watch = None
    try:
        ensure_topics(settings)
        watch = LedgerWatch(settings) if paced else None
        produced = produce_simulation(settings, simulation, ProgressBar(sys.stderr), wait=watch)
    except (KafkaException, TopicMismatch, RuntimeError, TimeoutError) as exc:
        print(
            f"\nrevledger simulate: Kafka at {settings.bootstrap_servers}: {exc}", file=sys.stderr
        )
        return 1
    finally:
        if watch is not None:
            watch.close()
    _print_summary(simulation, produced)
    prefix = f" (topic prefix {settings.topic_prefix!r})" if settings.topic_prefix else ""
    print(f"produced {sum(produced.values()):,} messages to {settings.bootstrap_servers}{prefix}")
    return 0


def produce_simulation(
    settings: Settings,
    simulation: Simulation,
    progress: Progress | None = None,
    *,
    wait: WaitForLedger | None = None,
) -> dict[str, int]:
    """Produce the reference records, then the records in order; messages per topic.

    Control records go to every partition of ``control.v1`` (``settings.partitions``
    messages each), the producer flushed before each. There, ``wait(sequenced, applied)``
    (e.g. a :class:`LedgerWatch`) may wait for a running ledger worker: until it has
    copied the ``sequenced`` records produced so far to ``ledger.inputs.v1`` (each
    customer event once, each control record once per partition), and, before a period
    close, applied the ``applied`` control records produced so far (the worker learns a
    close from its reference reader, not in input order: a close seen before the month's
    last tick is applied would move that tick's revenue into the next period). It is
    called once more at the end, for everything. ``progress(done, total)`` is called about
    200 times, in records. Topic names are unprefixed.

    Raises:
        RuntimeError: a record could not be delivered (the producer's error).
        TimeoutError: from ``wait``.
    """
    from streams.producer import RecordProducer

    producer = RecordProducer(settings)
    records: list[Record] = [*simulation.reference, *simulation.records]
    total, step = len(records), max(1, len(records) // _PROGRESS_STEPS)
    produced: Counter[str] = Counter()
    sequenced = controls = 0  # messages the worker copies to its input log; control messages
    for done, record in enumerate(records, start=1):
        spec = topic_for(record)
        copies = spec.partitions(settings.partitions) if spec is CONTROL else 1
        if spec is CONTROL:
            producer.flush()
            if wait is not None:
                wait(sequenced, controls if isinstance(record, PeriodClosed) else 0)
            controls += copies
        producer.send(record)
        produced[spec.name] += copies
        sequenced += copies if spec.copartitioned else 0
        if progress is not None and (done % step == 0 or done == total):
            progress(done, total)
    producer.flush()
    if wait is not None:
        wait(sequenced, controls)
    return dict(sorted(produced.items()))


class LedgerWatch:
    """What a running ledger worker has done since the watch was made.

    Counts the records its sequencer committed to ``ledger.inputs.v1`` and the control
    records its ledger agent forwarded to ``ledger.entries.v1`` once applied (those without
    a key). One read_committed consumer, assigned to every partition of both topics at its
    end (the last stable offset); calling the watch waits.
    """

    def __init__(self, settings: Settings, timeout: float = LEDGER_TIMEOUT_SECONDS) -> None:
        self.timeout = timeout
        self.sequenced = self.applied = 0
        self._inputs = settings.topic_prefix + LEDGER_INPUTS.name
        self._entries = settings.topic_prefix + ENTRIES.name
        self._consumer = Consumer(
            kafka_client_config(
                settings,
                {
                    "group.id": "revledger-simulate-watch",
                    "enable.auto.commit": False,
                    "isolation.level": "read_committed",
                    "enable.partition.eof": True,
                },
            )
        )
        assigned = [
            TopicPartition(topic, partition, OFFSET_END)
            for topic, spec in ((self._inputs, LEDGER_INPUTS), (self._entries, ENTRIES))
            for partition in range(spec.partitions(settings.partitions))
        ]
        self._consumer.assign(assigned)
        # OFFSET_END is resolved at the first fetch, not here: fetch now, so that what the
        # worker writes once production has started is counted (found by the demo: the
        # first wait came after the worker had already copied the month, and hung).
        at_end: set[tuple[str, int]] = set()
        deadline = time.monotonic() + timeout
        while len(at_end) < len(assigned):
            if time.monotonic() > deadline:
                raise TimeoutError("could not read the end of ledger.inputs.v1 / ledger.entries.v1")
            for message in self._consumer.consume(1000, 0.2):
                error = message.error()
                if error is not None and error.code() == KafkaError._PARTITION_EOF:
                    at_end.add((message.topic(), message.partition()))
                elif error is not None:
                    raise KafkaException(error)

    def __call__(self, sequenced: int, applied: int) -> None:
        """Wait until ``sequenced`` inputs and ``applied`` control records were committed.

        Raises:
            TimeoutError: still fewer after ``timeout`` seconds (is a worker running?).
            KafkaException: a topic cannot be read.
        """
        deadline = time.monotonic() + self.timeout
        while self.sequenced < sequenced or self.applied < applied:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"after {self.timeout:.0f} s the ledger worker has sequenced"
                    f" {self.sequenced:,} of {sequenced:,} records and applied {self.applied:,}"
                    f" of {applied:,} control records: is `revledger worker` running?"
                )
            for message in self._consumer.consume(1000, 0.2):
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(error)
                elif message.topic() == self._inputs:
                    self.sequenced += 1
                elif message.key() is None:  # a tick or close the ledger agent applied
                    self.applied += 1

    def close(self) -> None:
        """Close the consumer."""
        self._consumer.close()


def jsonl_lines(records: Iterable[Record]) -> Iterable[str]:
    """One JSON line per record: topic, key (text or null), record type and the record."""
    for record in records:
        key = key_for(record)
        line = {
            "topic": topic_for(record).name,
            "key": None if key is None else key.decode(),
            "type": record.schema_name,
            "record": record.model_dump(mode="json"),
        }
        yield json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n"


def write_jsonl(simulation: Simulation, handle: IO[str]) -> int:
    """Write the simulation as JSON Lines in produce order; returns the lines written."""
    count = 0
    for line in jsonl_lines([*simulation.reference, *simulation.records]):
        handle.write(line)
        count += 1
    return count


class ProgressBar:
    """``progress(done, total)`` on a stream: a ``\\r`` bar on a terminal, else a line per 10 %."""

    def __init__(self, stream: IO[str], label: str = "producing") -> None:
        self.stream = stream
        self.label = label
        self.terminal = stream.isatty()
        self._shown = 0

    def __call__(self, done: int, total: int) -> None:
        """Show ``done`` of ``total`` records (only when the figure shown changes)."""
        percent = 100 * done // total if total else 100
        if self.terminal:
            if percent != self._shown:
                filled = _BAR_WIDTH * percent // 100
                bar = "#" * filled + "." * (_BAR_WIDTH - filled)
                self.stream.write(f"\r{self.label} [{bar}] {percent:3d}% {done:,}/{total:,}")
                if done >= total:
                    self.stream.write("\n")
                self.stream.flush()
        elif percent // 10 != self._shown // 10:
            self.stream.write(f"{self.label}: {percent}% ({done:,}/{total:,} records)\n")
            self.stream.flush()
        self._shown = percent


def _print_summary(simulation: Simulation, produced: dict[str, int] | None) -> None:
    """What was simulated: records per type, business features, messages per topic."""
    s = simulation
    print(
        f"simulated {s.customers:,} customers over {s.months} months, {s.start} to {s.end}"
        f" (seed {s.seed}, {s.clock} clock): {len(s.reference):,} reference records,"
        f" {len(s.records):,} records"
    )
    print("records by type:")
    for name, count in s.counts.items():
        print(f"  {name:<24}{count:>10,}")
    print("business features:")
    features = [f"{name.replace('_', ' ')} {count:,}" for name, count in s.features.items()]
    for start in range(0, len(features), 4):
        print("  " + "; ".join(features[start : start + 4]))
    if produced is not None:
        print("messages by topic:")
        for topic, count in produced.items():
            print(f"  {topic:<24}{count:>10,}")
