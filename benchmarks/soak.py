"""``make soak``: the ledger worker and batcher under a steady load for half an hour.

Not a test and not part of ``make bench``: a long run that shows what a short benchmark
cannot: memory that grows, lag that builds up, latency that drifts, workers that die.

What it does (``python -m benchmarks.soak [--rate 120] [--minutes 30]``):

1. starts a private stack (or uses ``--reuse`` / the environment, as ``make bench``), the
   real ``revledger worker`` and ``revledger batcher`` as subprocesses on a unique topic
   prefix, and waits until their consumer groups are stable;
2. sends a warm-up (the customers' upserts and a slice of their events) and waits until it
   is processed, so start-up is not in the figures;
3. offers events of a simulated company (:func:`generate_company`, 3 % redeliveries) at a
   fixed rate (default 120 events/s: about half the last full benchmark's maximum of
   ~236 events/s) for ``--minutes``;
4. every ``--sample-seconds`` (10) prints a row and keeps a sample: each worker's RSS,
   the consumer lag of the ledger's group (end minus committed offsets on the source
   topics and on its own ``ledger.inputs.v1``) and of the batcher's group, the latency from
   an event's send to its first entry read at read_committed (p50/p99 of the entries that
   became visible in the window), events/s committed (the ledger group's committed
   source offsets), and the load average;
5. a worker that exits is restarted (and counted): a soak measures what a supervisor
   would see;
6. at the end waits until everything sent is processed and checks the invariants: every
   produced event was sequenced, the entries on ``ledger.entries.v1`` (read committed)
   are exactly those of the pure replay of the sequenced log (every event that posts has
   its entries), and no entry id appears twice;
7. prints the summary (RSS start/end/max and slope in MiB per 10 minutes, lag max and
   final, latency overall and per third of the run, restarts, DLQ records) and writes
   everything to ``benchmarks/results/soak-<UTC time>.json``.

Exit status: 0 if the run finished and the invariants held, 1 otherwise.

Must not import faust (the workers run in their own processes).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from fastavro import parse_schema, schemaless_reader

from benchmarks.harness import Figure, Pacer, format_table, percentile, results_document
from benchmarks.infra import (
    BATCHER,
    LEDGER_WORKER,
    BenchError,
    Endpoints,
    EntryWatcher,
    FeedProducer,
    Outgoing,
    Process,
    Progress,
    Say,
    broker_and_database,
    create_topics,
    encode_feed,
    running,
    scenario_settings,
    start_process,
    topic,
    wait_group_stable,
)
from benchmarks.pipeline import SOURCES, LedgerProgress
from connectors.simulation.company import generate_company
from revenue.replay import replay_partitions
from streams.producer import RecordProducer
from streams.schemas import schema_for
from streams.serde import SINGLE_OBJECT_MAGIC, Codec
from streams.settings import Settings
from streams.topics import DLQ, ENTRIES, LEDGER_INPUTS

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# Half the maximum of the last full benchmark (~236 events/s end to end on this machine).
DEFAULT_RATE = 120.0
DEFAULT_MINUTES = 30.0
SAMPLE_SECONDS = 10.0
PARTITIONS = 4
CUSTOMERS = 2_000
WARMUP_EVENTS = 400
SEED = 31
GROUP_TIMEOUT_SECONDS = 120.0
# The end of the run: the backlog (if the workers fell behind) must drain within this,
# or the invariants are not checked.
DRAIN_MINUTES = 30.0
KIB_PER_MIB = 1024
CODEC = Codec()


# --- one sample --------------------------------------------------------------------------------


@dataclass(slots=True)
class Sample:
    """What one sampling window saw."""

    at: float  # seconds since the load started
    sent: int  # events sent so far (load phase)
    offered_per_second: float  # events sent in the window / window
    committed_per_second: float  # ledger group's committed source offsets, delta / window
    entries_per_second: float  # entry-topic records read at read_committed, delta / window
    ledger_lag: int  # source topics: end - committed (-1: coordinator did not answer)
    inputs_lag: int  # ledger.inputs.v1: end - committed (less the last commit marker)
    batcher_lag: int  # ledger.entries.v1: end - committed by the batcher's group
    latency_p50: float | None  # seconds, events whose first entry appeared in the window
    latency_p99: float | None
    latency_samples: int
    rss_mib: dict[str, float]  # process name -> VmRSS now
    load1: float


@dataclass(slots=True)
class LoadThread:
    """Sends the load feed at a fixed rate from a thread; notes each event's first send time.

    The schedule is one absolute :class:`Pacer` over the whole run: every second the thread
    hands :meth:`FeedProducer.paced` the events due by the end of the next second, so a
    slow second (a flush, a GIL pause) is made up by the next one and the mean rate stays
    the one offered.
    """

    producer: FeedProducer
    feed: Sequence[Outgoing]
    rate: float
    seconds: float
    sent_at: dict[str, float] = field(default_factory=dict)  # event id -> first send
    sent: int = 0
    started: float = 0.0
    error: BaseException | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> LoadThread:
        self.started = time.time()
        self._thread = threading.Thread(target=self._run, name="soak-load", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        pacer = Pacer(self.rate, self.started)
        total = min(len(self.feed), math.floor(self.rate * self.seconds))
        try:
            while self.sent < total and not self._stop.is_set():
                due = min(pacer.due(time.time() + 1.0), total)
                chunk = self.feed[self.sent : due]
                if not chunk:
                    time.sleep(0.05)
                    continue
                times = self.producer.paced(chunk, self.rate, time.sleep)
                for item, at in zip(chunk, times, strict=True):
                    if item.event_id is not None:
                        self.sent_at.setdefault(item.event_id, at)
                self.sent = due
        except BaseException as exc:  # surfaced by the sampling loop
            self.error = exc

    def running(self) -> bool:
        """Whether the thread is still sending."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)


# --- the processes, restarted when they die ------------------------------------------------


@dataclass(slots=True)
class Workers:
    """The ledger worker and the batcher of the soak; restarts one that exited."""

    settings: Settings
    workdir: Path
    processes: list[Process]
    restarts: list[dict[str, Any]] = field(default_factory=list)

    def start(self) -> None:
        ledger_dir = self.settings.data_dir / "worker-0"
        self.processes.append(
            start_process(
                "soak-ledger", LEDGER_WORKER, self.settings, self.workdir, data_dir=ledger_dir
            )
        )
        self.processes.append(start_process("soak-batcher", BATCHER, self.settings, self.workdir))

    def restart_dead(self, at: float, say: Say) -> None:
        """Start again every process that exited; note when, with what code and log tail."""
        for n, process in enumerate(self.processes):
            if process.alive():
                continue
            code = process.popen.returncode
            tail = process.log_tail(1500)
            say(f"  ! {process.name} exited with {code} at {at:.0f} s; restarting")
            argv = LEDGER_WORKER if process.name == "soak-ledger" else BATCHER
            data_dir = self.settings.data_dir / "worker-0" if argv is LEDGER_WORKER else None
            self.processes[n] = start_process(
                process.name, argv, self.settings, self.workdir, data_dir=data_dir
            )
            self.restarts.append(
                {
                    "process": process.name,
                    "at_seconds": round(at, 1),
                    "exit_code": code,
                    "log_tail": tail,
                }
            )

    def rss_mib(self) -> dict[str, float]:
        """Current RSS of each process (0 for one that is gone)."""
        return {p.name: (p.memory_kib("VmRSS") or 0) / KIB_PER_MIB for p in self.processes}


# --- lag ----------------------------------------------------------------------------------------


def group_lag(progress: Progress, topics: dict[str, int], transactional: bool = False) -> int:
    """End minus committed offsets of a group over ``topics`` (name -> partitions); -1 if the
    coordinator did not answer.

    ``transactional``: the topic is written in transactions, so a partition read to the
    end still has its last commit marker after the committed offset (not counted).
    """
    slack = 1 if transactional else 0
    lag = 0
    for name, partitions in topics.items():
        committed = progress.committed(name, partitions)
        if any(offset < 0 for offset in committed.values()):
            return -1
        ends = progress.ends(name, partitions)
        lag += sum(max(0, ends[p] - committed[p] - slack) for p in ends if ends[p] > 0)
    return lag


# --- the invariants ---------------------------------------------------------------------------


def entry_id_reader() -> Any:
    """A decoder of an entry's ``entry_id`` and ``source_event_id`` (None for control records).

    A two-field reader schema: fastavro skips the rest, so reading a few hundred thousand
    entries takes seconds.
    """
    schema = schema_for("JournalEntryPosted")
    prefix = SINGLE_OBJECT_MAGIC + schema.fingerprint
    reader = parse_schema(
        {
            "type": "record",
            "name": schema.full_name,
            "fields": [
                {"name": "entry_id", "type": "string"},
                {"name": "source_event_id", "type": "string"},
            ],
        }
    )

    def read(value: bytes) -> tuple[str, str] | None:
        if not value.startswith(prefix):
            return None
        datum = schemaless_reader(io.BytesIO(value[len(prefix) :]), schema.parsed, reader)
        return datum["entry_id"], datum["source_event_id"]  # type: ignore[index]

    return read


def read_all_committed(
    bootstrap_servers: str, name: str, partitions: int
) -> dict[int, list[bytes]]:
    """Every committed value of topic ``name``, per partition in offset order."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"soak-check-{os.getpid()}-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    values: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
    at_end: set[int] = set()
    try:
        consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in range(partitions)])
        deadline = time.monotonic() + 600
        while len(at_end) < partitions:
            if time.monotonic() > deadline:
                raise BenchError(f"reading {name}: no end after 600 s")
            for message in consumer.consume(1000, 1.0):
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise BenchError(f"reading {name}: {error}")
                    at_end.add(message.partition())
                    continue
                at_end.discard(message.partition())
                values[message.partition()].append(message.value())
    finally:
        consumer.close()
    return values


@dataclass(slots=True)
class Invariants:
    """What the end-of-run check found."""

    produced_events: int  # distinct event ids sent (warm-up + load)
    not_sequenced: int  # of those, missing from ledger.inputs.v1
    entries: int  # entry records on ledger.entries.v1 (read committed)
    duplicate_entry_ids: int
    expected_entries: int | None  # the pure replay's (None: replay skipped)
    missing_entries: int | None  # replay's entry ids absent from the topic
    unexpected_entries: int | None  # topic entry ids the replay does not make
    events_without_entry: int | None  # produced events whose replay posts, with no entry
    replay_seconds: float | None

    def held(self) -> bool:
        """Whether every invariant held."""
        return (
            self.not_sequenced == 0
            and self.duplicate_entry_ids == 0
            and not self.missing_entries
            and not self.unexpected_entries
            and not self.events_without_entry
        )


def check_invariants(
    settings: Settings, reference: Sequence[Any], produced: set[str], replay: bool, say: Say
) -> Invariants:
    """Every produced event sequenced and with its entries; no entry id twice."""
    partitions = settings.partitions
    say("checking invariants: reading ledger.entries.v1 and ledger.inputs.v1 (read committed)")
    read = entry_id_reader()
    entry_ids: Counter[str] = Counter()
    sources: set[str] = set()
    for log in read_all_committed(
        settings.bootstrap_servers, topic(settings, ENTRIES), partitions
    ).values():
        for value in log:
            found = read(value)
            if found is not None:
                entry_ids[found[0]] += 1
                sources.add(found[1])
    inputs = read_all_committed(
        settings.bootstrap_servers, topic(settings, LEDGER_INPUTS), partitions
    )
    logs = [[CODEC.decode(value) for value in inputs[p]] for p in range(partitions)]
    sequenced = {getattr(r, "event_id", None) for log in logs for r in log}
    invariants = Invariants(
        produced_events=len(produced),
        not_sequenced=len(produced - sequenced),
        entries=sum(entry_ids.values()),
        duplicate_entry_ids=sum(1 for n in entry_ids.values() if n > 1),
        expected_entries=None,
        missing_entries=None,
        unexpected_entries=None,
        events_without_entry=None,
        replay_seconds=None,
    )
    if replay:
        say(f"  pure replay of the sequenced log ({sum(map(len, logs)):,} records)")
        started = time.monotonic()
        expected = replay_partitions(reference, logs)
        invariants.replay_seconds = round(time.monotonic() - started, 1)
        expected_ids = {entry.entry_id for entry in expected}
        posting = {entry.source_event_id for entry in expected}
        invariants.expected_entries = len(expected)
        invariants.missing_entries = len(expected_ids - entry_ids.keys())
        invariants.unexpected_entries = len(entry_ids.keys() - expected_ids)
        invariants.events_without_entry = len((produced & posting) - sources)
    return invariants


# --- figures ----------------------------------------------------------------------------------


def slope_per_10_minutes(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MiB) points, in MiB per 10 minutes."""
    if len(points) < 2:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread * 600


def latency_figures(
    latencies: Sequence[tuple[float, float]], seconds: float
) -> tuple[list[Figure], dict[str, Any]]:
    """p50/p99 overall and per third of the run; ``latencies`` is (sent at, seconds)."""
    figures: list[Figure] = []
    thirds: dict[str, Any] = {}
    values = [lat for _, lat in latencies]
    if values:
        figures.append(
            Figure("soak.latency.p50", "latency p50 (overall)", percentile(values, 0.5), "s")
        )
        figures.append(
            Figure("soak.latency.p99", "latency p99 (overall)", percentile(values, 0.99), "s")
        )
        figures.append(Figure("soak.latency.max", "latency max (overall)", max(values), "s"))
    for n in range(3):
        low, high = seconds * n / 3, seconds * (n + 1) / 3
        part = [lat for at, lat in latencies if low <= at < high]
        name = f"{low / 60:.3g}-{high / 60:.3g} min"
        if part:
            p50, p99 = percentile(part, 0.5), percentile(part, 0.99)
            figures.append(
                Figure(f"soak.latency.third{n + 1}.p50", f"latency p50 {name}", p50, "s")
            )
            figures.append(
                Figure(f"soak.latency.third{n + 1}.p99", f"latency p99 {name}", p99, "s")
            )
            thirds[name] = {"p50": p50, "p99": p99, "events": len(part)}
    return figures, thirds


def rss_figures(samples: Sequence[Sample]) -> list[Figure]:
    """RSS start, end, max and slope for each process."""
    figures: list[Figure] = []
    names = sorted({name for s in samples for name in s.rss_mib})
    for name in names:
        points = [(s.at, s.rss_mib[name]) for s in samples if s.rss_mib.get(name)]
        if not points:
            continue
        key = f"soak.rss.{name}"
        figures.append(Figure(f"{key}.start", f"{name} RSS start", points[0][1], "MiB"))
        figures.append(Figure(f"{key}.end", f"{name} RSS end", points[-1][1], "MiB"))
        figures.append(Figure(f"{key}.max", f"{name} RSS max", max(p[1] for p in points), "MiB"))
        figures.append(
            Figure(
                f"{key}.slope",
                f"{name} RSS slope",
                slope_per_10_minutes(points),
                "MiB/10 min",
                note="least squares over every sample",
            )
        )
        later = [p for p in points if p[0] >= points[-1][0] / 3]
        figures.append(
            Figure(
                f"{key}.slope_late",
                f"{name} RSS slope, last 2/3",
                slope_per_10_minutes(later),
                "MiB/10 min",
                note="start-up growth excluded",
            )
        )
    return figures


def lag_figures(samples: Sequence[Sample]) -> list[Figure]:
    """Lag max and final of the ledger (source topics, own log) and the batcher."""
    figures: list[Figure] = []
    for attr, label in (
        ("ledger_lag", "ledger lag (source topics)"),
        ("inputs_lag", "ledger lag (ledger.inputs.v1)"),
        ("batcher_lag", "batcher lag (ledger.entries.v1)"),
    ):
        values = [getattr(s, attr) for s in samples if getattr(s, attr) >= 0]
        if values:
            figures.append(Figure(f"soak.{attr}.max", f"{label} max", max(values), "records"))
            figures.append(Figure(f"soak.{attr}.final", f"{label} final", values[-1], "records"))
    return figures


# --- the run ------------------------------------------------------------------------------------


def _row(sample: Sample) -> str:
    rss = " ".join(f"{v:7.1f}" for v in sample.rss_mib.values())
    p50 = "-" if sample.latency_p50 is None else f"{sample.latency_p50:6.2f}"
    p99 = "-" if sample.latency_p99 is None else f"{sample.latency_p99:6.2f}"
    return (
        f"{sample.at:7.0f} {sample.sent:8d} {sample.offered_per_second:7.1f}"
        f" {sample.committed_per_second:7.1f} {sample.entries_per_second:7.1f}"
        f" {sample.ledger_lag:6d} {sample.inputs_lag:6d} {sample.batcher_lag:6d}"
        f" {p50:>6} {p99:>6} {sample.latency_samples:5d} {rss} {sample.load1:5.2f}"
    )


HEADER = (
    "      s     sent  offer/s commit/s entry/s   lag  inlag  btlag    p50    p99     n"
    "  ledgerMiB batchMiB load1"
)


@dataclass(slots=True)
class SoakRun:
    """Everything one soak measured."""

    rate: float
    minutes: float
    samples: list[Sample] = field(default_factory=list)
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (sent at, seconds)
    restarts: list[dict[str, Any]] = field(default_factory=list)
    dlq_records: int = 0
    invariants: Invariants | None = None
    load_seconds: float = 0.0
    drain_seconds: float = 0.0
    events_sent: int = 0
    drained: bool = False  # everything sent was processed before --drain-minutes passed


def run_soak(
    endpoints: Endpoints, workdir: Path, args: argparse.Namespace, say: Say, result: SoakRun
) -> None:
    """The soak on ``endpoints``: see the module docstring.

    Fills ``result`` as it goes, so a run that fails (a drain that times out) still has
    its samples for the summary and the JSON.
    """
    load_events = math.floor(args.rate * args.minutes * 60)
    say(f"generating {args.customers:,} customers and {load_events + WARMUP_EVENTS:,} events")
    stream = generate_company(
        seed=args.seed,
        customers=args.customers,
        events=args.customers + WARMUP_EVENTS + load_events,
        duplicate_rate=0.03,
        out_of_order_rate=0.0,
    )
    settings = scenario_settings(endpoints, workdir, "soak", partitions=args.partitions)
    create_topics(settings)
    RecordProducer(settings, CODEC).send_all(stream.reference)
    feed = encode_feed(settings, stream.events, CODEC)
    produced = {e.event_id for e in stream.events}
    reference = stream.reference
    del stream  # the events are on the topics now; the check decodes the sequenced log
    warm_count = args.customers + WARMUP_EVENTS
    warm, load = feed[:warm_count], feed[warm_count:]
    say(
        f"feed: {len(warm):,} warm-up and {len(load):,} load records;"
        f" topics {settings.topic_prefix}*"
    )

    processes: list[Process] = []
    workers = Workers(settings, workdir, processes)
    with running(processes):
        workers.start()
        for group in (settings.app_id, f"{settings.app_id}-batcher"):
            wait_group_stable(
                settings.bootstrap_servers, group, 1, GROUP_TIMEOUT_SECONDS, processes
            )
        progress = LedgerProgress(settings, batcher=True)
        watcher = EntryWatcher(
            settings.bootstrap_servers, progress.entries, settings.partitions
        ).start()
        producer = FeedProducer(settings.bootstrap_servers)
        try:
            producer.burst(warm)
            progress.wait(len(warm), processes, 600)
            say(
                f"warm-up of {len(warm):,} records processed;"
                f" load {args.rate:g} events/s for {args.minutes:g} min"
            )
            matcher = _load_phase(
                result, settings, workers, progress, watcher, producer, load, len(warm), args, say
            )
            time.sleep(1.0)  # the watcher reads what the last commit made visible
            matcher.window()  # the events still in flight at the last sample
        finally:
            watcher.stop()
            progress.close()
    result.dlq_records = _dlq_records(settings)
    sent_ids = (
        produced
        if result.events_sent == len(load)
        else _ids_sent(feed, warm_count + result.events_sent)
    )
    if result.drained:
        result.invariants = check_invariants(settings, reference, sent_ids, not args.no_replay, say)
    else:
        say("invariants not checked: the workers did not drain the load in time")


def _ids_sent(feed: Sequence[Outgoing], count: int) -> set[str]:
    return {item.event_id for item in feed[:count] if item.event_id is not None}


def _load_phase(
    result: SoakRun,
    settings: Settings,
    workers: Workers,
    progress: LedgerProgress,
    watcher: EntryWatcher,
    producer: FeedProducer,
    load: list[Outgoing],
    warm: int,
    args: argparse.Namespace,
    say: Say,
) -> LatencyMatcher:
    """Offer the load, sampling every ``args.sample_seconds``, until it is over and drained.

    ``warm``: source records sent before the load (the warm-up), for the drain check.
    """
    partitions = settings.partitions
    ledger_group = Progress(settings.bootstrap_servers, settings.app_id)
    batcher_group = Progress(settings.bootstrap_servers, f"{settings.app_id}-batcher")
    sources = {topic(settings, spec): spec.partitions(partitions) for spec in SOURCES}
    inputs = {progress.inputs: partitions}
    entries = {progress.entries: partitions}
    seconds = args.minutes * 60
    sender = LoadThread(producer, load, args.rate, seconds).start()
    matcher = LatencyMatcher(watcher, sender, result.latencies)
    last_committed = max(0, ledger_group.total(sources, partitions))
    last_records, last_sent, last_at = watcher.records, 0, 0.0
    drain_started: float | None = None
    say(HEADER)
    try:
        next_sample = sender.started + args.sample_seconds
        while True:
            time.sleep(max(0.0, next_sample - time.time()))
            now = time.time()
            at = now - sender.started
            next_sample += args.sample_seconds
            if sender.error is not None:
                raise BenchError(f"the load thread failed: {sender.error}") from sender.error
            workers.restart_dead(at, say)
            window = matcher.window()
            committed = ledger_group.total(sources, partitions)
            span = max(at - last_at, 1e-6)
            sample = Sample(
                at=round(at, 1),
                sent=sender.sent,
                offered_per_second=(sender.sent - last_sent) / span,
                committed_per_second=(committed - last_committed) / span if committed >= 0 else 0.0,
                entries_per_second=(watcher.records - last_records) / span,
                ledger_lag=group_lag(ledger_group, sources),
                inputs_lag=group_lag(ledger_group, inputs, transactional=True),
                batcher_lag=group_lag(batcher_group, entries, transactional=True),
                latency_p50=percentile(window, 0.5) if window else None,
                latency_p99=percentile(window, 0.99) if window else None,
                latency_samples=len(window),
                rss_mib=workers.rss_mib(),
                load1=os.getloadavg()[0],
            )
            result.samples.append(sample)
            say(_row(sample))
            if committed >= 0:
                last_committed = committed
            last_records, last_sent, last_at = watcher.records, sender.sent, at
            if sender.running():
                continue
            # The load is over: keep sampling while the workers drain what is left, so
            # the rows show the lag going back to zero.
            if drain_started is None:
                drain_started = time.monotonic()
                result.events_sent = sender.sent
                result.load_seconds = now - sender.started
                say(f"load done ({sender.sent:,} events); sampling until the workers drained")
            if _drained(progress, warm + sender.sent):
                result.drain_seconds = time.monotonic() - drain_started
                result.drained = True
                break
            if time.monotonic() - drain_started > args.drain_minutes * 60:
                # Reported, not raised: the samples so far are the result.
                result.drain_seconds = time.monotonic() - drain_started
                say(f"  ! not drained {args.drain_minutes:g} min after the load; stopping")
                break
    finally:
        sender.stop()
        if drain_started is None:
            result.events_sent = sender.sent
            result.load_seconds = time.time() - sender.started
        result.restarts = workers.restarts
        ledger_group.close()
        batcher_group.close()
    return matcher


def _drained(progress: LedgerProgress, sent: int) -> bool:
    """Whether ``sent`` source records are sequenced, applied and batched (no waiting)."""
    partitions = progress.settings.partitions
    batcher = progress.batcher
    return (
        progress.ledger.total(progress.sources, partitions) >= sent
        and progress.ledger.caught_up(progress.inputs, partitions, transactional=True)
        and (batcher is None or batcher.caught_up(progress.entries, partitions, transactional=True))
    )


@dataclass(slots=True)
class LatencyMatcher:
    """Matches entries read by the watcher with their events' send times, window by window.

    An entry can be read before its event's send time is known (the load thread hands
    the times over a second at a time): such an event is matched in a later window.
    """

    watcher: EntryWatcher
    sender: LoadThread
    latencies: list[tuple[float, float]]  # (sent, seconds after the load started; latency)
    _done: set[str] = field(default_factory=set)

    def window(self) -> list[float]:
        """Latencies (seconds) of the events matched since the last call."""
        found: list[float] = []
        sent_at = self.sender.sent_at
        # copy(): the watcher's thread adds to the dict while this runs.
        for event_id, seen in self.watcher.first_seen.copy().items():
            if event_id in self._done:
                continue
            at = sent_at.get(event_id)
            if at is None:
                continue  # a warm-up event, or one whose send time comes next window
            self._done.add(event_id)
            if seen >= at:  # an entry seen before the send is a redelivery's original
                found.append(seen - at)
                self.latencies.append((at - self.sender.started, seen - at))
        return found


def _dlq_records(settings: Settings) -> int:
    """Records on the soak's DLQ topic (0 expected: the simulated company sends no poison)."""
    progress = Progress(settings.bootstrap_servers, f"soak-dlq-{settings.app_id}")
    try:
        return sum(progress.ends(topic(settings, DLQ), settings.partitions).values())
    finally:
        progress.close()


def summary_figures(result: SoakRun) -> tuple[list[Figure], dict[str, Any]]:
    """The figures of the summary, and the per-third latencies."""
    figures: list[Figure] = [
        Figure("soak.rate", "offered rate", result.rate, "events/s"),
        Figure(
            "soak.achieved",
            "achieved send rate",
            result.events_sent / result.load_seconds if result.load_seconds else None,
            "events/s",
        ),
        Figure("soak.events", "events sent (load phase)", result.events_sent, "events"),
        Figure(
            "soak.drain",
            "drain after the load",
            result.drain_seconds,
            "s",
            note="" if result.drained else "NOT drained: stopped",
        ),
    ]
    figures += rss_figures(result.samples)
    figures += lag_figures(result.samples)
    latency, thirds = latency_figures(result.latencies, result.load_seconds)
    figures += latency
    figures.append(Figure("soak.restarts", "worker restarts", len(result.restarts), "count"))
    figures.append(Figure("soak.dlq", "DLQ records", result.dlq_records, "records"))
    if result.invariants is not None:
        inv = result.invariants
        figures.append(Figure("soak.entries", "entries on the topic", inv.entries, "records"))
        figures.append(
            Figure("soak.duplicates", "duplicate entry ids", inv.duplicate_entry_ids, "count")
        )
        figures.append(
            Figure("soak.not_sequenced", "events not sequenced", inv.not_sequenced, "count")
        )
        if inv.missing_entries is not None:
            figures.append(
                Figure(
                    "soak.missing",
                    "replay entries missing",
                    inv.missing_entries,
                    "count",
                    note=f"of {inv.expected_entries:,} expected;"
                    f" {inv.unexpected_entries} unexpected;"
                    f" {inv.events_without_entry} events without entry",
                )
            )
    return figures, thirds


# --- command line ---------------------------------------------------------------------------


def add_soak_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``revledger soak`` to the CLI's sub-commands."""
    parser = subparsers.add_parser(
        "soak", help="benchmark: ledger worker + batcher at a fixed load for 30 minutes"
    )
    add_soak_arguments(parser)


def add_soak_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``revledger soak`` / ``python -m benchmarks.soak``."""
    parser.add_argument(
        "--rate",
        type=float,
        default=DEFAULT_RATE,
        help=f"events per second offered (default {DEFAULT_RATE:g}: half the benchmark's max)",
    )
    parser.add_argument("--minutes", type=float, default=DEFAULT_MINUTES)
    parser.add_argument("--sample-seconds", type=float, default=SAMPLE_SECONDS)
    parser.add_argument(
        "--drain-minutes",
        type=float,
        default=DRAIN_MINUTES,
        help="after the load, wait this long at most for the workers to catch up",
    )
    parser.add_argument("--customers", type=int, default=CUSTOMERS)
    parser.add_argument("--partitions", type=int, default=PARTITIONS)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument(
        "--no-replay",
        action="store_true",
        help="skip the pure replay at the end (only sequencing and duplicate checks)",
    )
    parser.add_argument("--out", type=Path, default=None, metavar="FILE")
    parser.add_argument(
        "--reuse", action="store_true", help="use the running dev stack, not a private one"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")


def main_soak(args: argparse.Namespace) -> int:
    """Run the soak; print the rows and the summary; write the JSON. 0 if the invariants held."""
    if args.rate <= 0 or args.minutes <= 0 or args.sample_seconds <= 0:
        print("soak: --rate, --minutes and --sample-seconds must be positive", file=sys.stderr)
        return 2
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or RESULTS / f"soak-{stamp}.json"
    workdir = Path(tempfile.mkdtemp(prefix="revledger-soak-"))
    load_start, started = os.getloadavg(), time.monotonic()

    def say(text: str) -> None:
        print(text, flush=True)

    say(
        f"revledger soak: {args.rate:g} events/s for {args.minutes:g} min; load average"
        f" {_load(load_start)} on {os.cpu_count()} CPUs; work directory {workdir}"
    )
    result = SoakRun(args.rate, args.minutes)
    failed: str | None = None
    try:
        with broker_and_database(workdir, args.reuse, say) as endpoints:
            run_soak(endpoints, workdir, args, say, result)
    except KeyboardInterrupt:  # stopped by hand: what was sampled is still the result
        failed = "interrupted"
        args.keep = True
    except Exception as exc:  # the summary and JSON of what was measured come out anyway
        failed = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
        args.keep = True
    load_end, seconds = os.getloadavg(), time.monotonic() - started
    figures, thirds = summary_figures(result)
    say(f"\n== soak summary ({seconds / 60:.1f} min in all)")
    say(format_table(figures))
    if result.restarts:
        for restart in result.restarts:
            say(
                f"restart: {restart['process']} at {restart['at_seconds']} s,"
                f" exit {restart['exit_code']}"
            )
    held = result.invariants is not None and result.invariants.held()
    if result.invariants is None:
        say("invariants: not checked (the run did not drain)")
    else:
        say(f"invariants: {'held' if held else 'NOT held'} {asdict(result.invariants)}")
    say(f"load average: start {_load(load_start)}, end {_load(load_end)}")
    if failed:
        say(f"soak failed: {failed}")
    document = results_document(
        figures,
        mode="soak",
        load_start=load_start,
        load_end=load_end,
        seconds=seconds,
        extra={
            "rate": args.rate,
            "minutes": args.minutes,
            "customers": args.customers,
            "partitions": args.partitions,
            "latency_thirds": thirds,
            "samples": [asdict(s) for s in result.samples],
            "restarts": result.restarts,
            "drained": result.drained,
            "invariants": asdict(result.invariants) if result.invariants else None,
            "failed": failed,
        },
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2) + "\n")
    say(f"wrote {out}")
    if args.keep:
        say(f"logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if held and not failed else 1


def _load(values: Sequence[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.soak [--rate R] [--minutes M] ...``."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0]
    )
    add_soak_arguments(parser)
    return main_soak(parser.parse_args(argv))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
