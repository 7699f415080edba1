"""Broker benchmarks: the ledger worker and batcher end to end, and what they are compared with.

Every scenario gets its own topic prefix and app id on the run's broker, 4 partitions
(by default), and the production store (``rocksdb://``). A scenario starts its processes,
waits until their consumer groups are stable, sends a warm-up (the customers' upserts and
a slice of their events) and waits until it is processed, so start-up, rebalancing and
exactly-once recovery are not measured. Then:

- **max throughput**: a burst of events produced as fast as the producer goes; the figure
  is events / (time from the first send to the moment the group's committed offsets
  covered everything). For the ledger that is two moments: every entry committed (the
  ledger's offsets on ``ledger.inputs.v1``, committed in the transaction that carries
  the entries) and every entry batched (the batcher's offsets on ``ledger.entries.v1``);
  the headline is the second.
- **latency at a fixed load**: after the burst, events at half the burst's throughput for
  a fixed time; each event's latency is from its send to the first of its entries read
  by a read_committed consumer (matched by source event id). Events that post nothing
  (failed payments, upserts, redeliveries) have no latency. The same consumer reads
  ``ledger.inputs.v1`` at read_committed, which splits each latency in two hops: the
  sequencer's (sent → its copy on ``ledger.inputs.v1`` visible) and the ledger's (that
  copy visible → the first entry visible); each hop ends with a transaction commit.
- the **pass-through Faust agent** (:mod:`benchmarks.passthrough_worker`) and the **raw
  consume loop** (:mod:`benchmarks.raw_consumer`) get the same burst of the same events.
- **RSS**: one ledger worker fed one invoice per customer (and a payment for every other
  one) for N customers; peak RSS is ``VmHWM`` once everything is processed.
- **profile**: a burst through the ledger worker under cProfile (CPU time), the profiler
  switched on for the burst only.

Must not import faust.
"""

from __future__ import annotations

import datetime as dt
import io
import pstats
import queue
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.harness import percentile, rate
from benchmarks.infra import (
    BATCHER,
    LEDGER_WORKER,
    PASSTHROUGH,
    PROFILED_WORKER,
    RAW_CONSUMER,
    BenchError,
    Endpoints,
    EntryWatcher,
    FeedProducer,
    Outgoing,
    Process,
    Progress,
    Say,
    check_alive,
    create_topics,
    encode_feed,
    running,
    scenario_settings,
    start_process,
    topic,
    wait_group_stable,
    wait_until,
)
from benchmarks.profiled_worker import START as PROFILE_START
from benchmarks.profiled_worker import STOP as PROFILE_STOP
from connectors.simulation import builders as b
from connectors.simulation.company import GeneratedStream, generate_company, reference_records
from ledger.events import Event
from streams.producer import RecordProducer
from streams.serde import Codec
from streams.settings import Settings
from streams.topics import (
    BILLING,
    CONTRACTS,
    CONTROL,
    DLQ,
    ENTRIES,
    LEDGER_INPUTS,
    PAYMENTS,
    REFERENCE_TOPICS,
    USAGE,
)

SOURCES = (BILLING, PAYMENTS, CONTRACTS, USAGE, CONTROL)
GROUP_TIMEOUT_SECONDS = 120.0  # exactly-once start and recovery take ~10-15 s each
CODEC = Codec()


@dataclass(frozen=True, slots=True)
class PipelineSizes:
    """How big the broker scenarios are (``--quick`` or full)."""

    partitions: int
    customers: int  # customers of the company stream
    warmup: int  # business events after the customers' upserts, before the burst
    burst: int  # events of the max-throughput burst
    latency_seconds: float  # length of the fixed-load phase
    rss_customers: tuple[int, ...]
    profile_events: int
    # The old default (1 s) against the new one (0.1 s, streams.settings): the ratio of
    # their throughputs is what the shorter exactly-once commit interval costs.
    commit_interval: float = 1.0
    short_commit_interval: float = 0.1
    seed: int = 29
    timeout: float = 2400.0  # any single wait (100,000 customers at ~100 events/s fit)
    # The warm-up is small: a start that stalls (seen: partitions of a worker left without
    # a working transaction after the second worker joined) fails here, and is retried.
    warmup_timeout: float = 120.0

    @property
    def stream_events(self) -> int:
        """Events generated: upserts, warm-up, burst, and as many again for the load phase."""
        return self.customers + self.warmup + 2 * self.burst


@dataclass(slots=True)
class Throughput:
    """A max-throughput burst: when it started and when each stage had processed it."""

    events: int
    first_sent: float
    all_sent: float
    committed: float  # ledger: entries committed; others: outputs committed / consumed
    batched: float | None = None  # ledger only
    cpu: dict[str, float] = field(default_factory=dict)  # process -> CPU seconds in the burst

    def events_per_second(self, stage: str = "end") -> float:
        """Events per second to ``stage``: ``sent``, ``committed`` or ``end`` (batched if any)."""
        end = {
            "sent": self.all_sent,
            "committed": self.committed,
            "end": self.batched if self.batched is not None else self.committed,
        }[stage]
        return rate(self.events, end - self.first_sent)


@dataclass(slots=True)
class Latency:
    """The fixed-load phase: offered rate and latencies (seconds) of matched events.

    ``sequencer`` and ``ledger`` are the two hops of the events seen on both topics:
    sent → visible on ``ledger.inputs.v1``, and from there → first entry visible.
    """

    offered_rate: float
    events: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    sequencer: list[float] = field(default_factory=list)
    ledger: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """p50, p90, p99 and max, in seconds, and each hop's p50 and p99 (``sequencer_p99``,
        ``ledger_p99`` ...); empty when nothing matched."""
        if not self.latencies:
            return {}
        found = {
            "p50": percentile(self.latencies, 0.50),
            "p90": percentile(self.latencies, 0.90),
            "p99": percentile(self.latencies, 0.99),
            "max": max(self.latencies),
        }
        for hop, values in (("sequencer", self.sequencer), ("ledger", self.ledger)):
            if values:
                found[f"{hop}_p50"] = percentile(values, 0.50)
                found[f"{hop}_p99"] = percentile(values, 0.99)
        return found

    def describe(self) -> str:
        """One line: p50/p99 overall and per hop (seconds)."""
        found = self.summary()
        if not found:
            return "no event matched"
        parts = [f"p50/p99 {found['p50']:.2f}/{found['p99']:.2f} s"]
        for hop in ("sequencer", "ledger"):
            if f"{hop}_p50" in found:
                parts.append(f"{hop} hop {found[f'{hop}_p50']:.2f}/{found[f'{hop}_p99']:.2f} s")
        return "; ".join(parts)


@dataclass(slots=True)
class LedgerRun:
    """What one ledger scenario measured."""

    name: str
    settings: Settings
    workers: int
    commit_interval: float
    burst: Throughput
    latency: Latency | None
    peak_rss_kib: list[int]
    entries: int
    dlq_records: int
    records_written_per_event: float


def cpu_of(processes: Sequence[Process]) -> dict[str, float]:
    """CPU seconds used so far by each process, by name."""
    return {p.name: p.cpu_seconds() or 0.0 for p in processes}


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds each process used between two readings."""
    return {name: after[name] - before.get(name, 0.0) for name in after}


# --- streams -------------------------------------------------------------------------------


def company_stream(sizes: PipelineSizes) -> GeneratedStream:
    """The simulated company of the ledger scenarios (full run: 400 customers, ~40 events each).

    Redeliveries (3 %) are part of a realistic input; no event arrives before what it
    needs (out of order 0), so a latency is the system's, not a wait for a late invoice.
    """
    return generate_company(
        seed=sizes.seed,
        customers=sizes.customers,
        events=sizes.stream_events,
        duplicate_rate=0.03,
        out_of_order_rate=0.0,
    )


def split_feed(
    feed: list[Outgoing], sizes: PipelineSizes
) -> tuple[list[Outgoing], list[Outgoing], list[Outgoing]]:
    """Warm-up (upserts + ``warmup``), burst and the rest (the fixed-load phase)."""
    warm = sizes.customers + sizes.warmup
    return feed[:warm], feed[warm : warm + sizes.burst], feed[warm + sizes.burst :]


def rss_stream(customers: int, seed: int) -> GeneratedStream:
    """One invoice per customer (a subscription: an implied contract) and a payment for every
    fourth: every customer has a subledger and a revenue book to keep, at ~1.25 events each
    (100,000 customers must go through the worker in minutes, not hours)."""
    rng = random.Random(seed)
    reference = reference_records(rng)
    events: list[Event] = []
    day = dt.date(2024, 1, 2)
    for n in range(customers):
        customer = f"R{n:06d}"
        entity_name, currency = (b.US, "USD") if n % 3 else (b.EU, "EUR")
        common = {"customer": customer, "entity_name": entity_name, "currency": currency, "on": day}
        amount = rng.randrange(10_00, 2_000_00)
        invoice = b.invoice(f"INV-{customer}", lines=[("SUB", amount)], **common)
        events.append(invoice)
        if n % 4 == 0:
            events.append(b.payment(f"PAY-{customer}", [(invoice.invoice_id, amount)], **common))
    return GeneratedStream(reference, events)


# --- waiting for a ledger scenario ----------------------------------------------------------


class LedgerProgress:
    """Committed offsets of the ledger's and the batcher's groups (see :class:`Progress`)."""

    def __init__(self, settings: Settings, batcher: bool) -> None:
        self.settings = settings
        self.ledger = Progress(settings.bootstrap_servers, settings.app_id)
        self.batcher = (
            Progress(settings.bootstrap_servers, f"{settings.app_id}-batcher") if batcher else None
        )
        self.sources = [topic(settings, spec) for spec in SOURCES]
        self.inputs = topic(settings, LEDGER_INPUTS)
        self.entries = topic(settings, ENTRIES)

    def wait(
        self, sent: int, processes: Sequence[Process], timeout: float
    ) -> tuple[float, float, float | None]:
        """Wait until ``sent`` source records are sequenced, applied and batched.

        Returns the wall times at which all were applied (entries committed) and batched
        (None without a batcher); and when they were sequenced, first.
        """
        partitions = self.settings.partitions
        sequenced = wait_until(
            lambda: self.ledger.total(self.sources, partitions) >= sent,
            timeout,
            f"the sequencer to commit {sent} source records",
            processes,
        )
        committed = wait_until(
            lambda: self.ledger.caught_up(self.inputs, partitions, transactional=True),
            timeout,
            "the ledger to apply ledger.inputs.v1",
            processes,
        )
        batched = None
        if self.batcher is not None:
            batcher = self.batcher
            batched = wait_until(
                lambda: batcher.caught_up(self.entries, partitions, transactional=True),
                timeout,
                "the batcher to batch ledger.entries.v1",
                processes,
            )
        return sequenced, committed, batched

    def close(self) -> None:
        self.ledger.close()
        if self.batcher is not None:
            self.batcher.close()


def records_written(settings: Settings) -> int:
    """Kafka records the scenario's apps wrote: outputs, ``ledger.inputs.v1``, changelogs.

    High watermarks summed over every topic of the scenario but its inputs (source and
    reference topics), so transaction markers are counted too.
    """
    inputs = {topic(settings, spec) for spec in (*SOURCES, *REFERENCE_TOPICS)}
    progress = Progress(settings.bootstrap_servers, f"bench-count-{settings.app_id}")
    try:
        listed = progress.topics()
        total = 0
        for name, partitions in listed.items():
            ours = name.startswith(settings.topic_prefix) or name.startswith(settings.app_id)
            if ours and name not in inputs and "__assignor" not in name:
                total += sum(progress.ends(name, partitions).values())
        return total
    finally:
        progress.close()


def _dlq_records(settings: Settings) -> int:
    """Records on the scenario's DLQ topic (plain count of offsets: 0 expected)."""
    progress = Progress(settings.bootstrap_servers, f"bench-dlq-{settings.app_id}")
    try:
        return sum(progress.ends(topic(settings, DLQ), settings.partitions).values())
    finally:
        progress.close()


# --- the ledger scenario ---------------------------------------------------------------------


def run_ledger(
    endpoints: Endpoints,
    workdir: Path,
    sizes: PipelineSizes,
    stream: GeneratedStream,
    say: Say,
    *,
    name: str,
    workers: int = 1,
    commit_interval: float = 1.0,
    latency: bool = False,
    profile_to: Path | None = None,
    burst_events: int | None = None,
) -> LedgerRun:
    """The ledger worker(s) and the batcher on ``stream``: a burst, then optionally a load phase.

    ``profile_to``: run the (single) ledger worker under cProfile, stats written there.
    """
    settings = scenario_settings(
        endpoints, workdir, name, partitions=sizes.partitions, commit_interval=commit_interval
    )
    create_topics(settings)
    RecordProducer(settings, CODEC).send_all(stream.reference)
    warm, burst, rest = split_feed(encode_feed(settings, stream.events, CODEC), sizes)
    if burst_events is not None:
        burst = burst[:burst_events]
    processes: list[Process] = []
    with running(processes):
        for n in range(workers):
            argv = LEDGER_WORKER if profile_to is None else (*PROFILED_WORKER, str(profile_to))
            data_dir = settings.data_dir / f"worker-{n}"
            processes.append(
                start_process(f"{name}-ledger-{n}", argv, settings, workdir, data_dir=data_dir)
            )
        processes.append(start_process(f"{name}-batcher", BATCHER, settings, workdir))
        wait_group_stable(
            settings.bootstrap_servers, settings.app_id, workers, GROUP_TIMEOUT_SECONDS, processes
        )
        wait_group_stable(
            settings.bootstrap_servers,
            f"{settings.app_id}-batcher",
            1,
            GROUP_TIMEOUT_SECONDS,
            processes,
        )
        progress = LedgerProgress(settings, batcher=True)
        watcher = EntryWatcher(
            settings.bootstrap_servers,
            progress.entries,
            settings.partitions,
            inputs_topic=progress.inputs if latency else None,
        ).start()
        producer = FeedProducer(settings.bootstrap_servers)
        try:
            producer.burst(warm)
            progress.wait(len(warm), processes, sizes.warmup_timeout)
            say(f"  {name}: warm-up of {len(warm):,} records processed; burst of {len(burst):,}")
            cpu_before = cpu_of(processes)
            if profile_to is not None:
                processes[0].popen.send_signal(PROFILE_START)
            first, all_sent = producer.burst(burst)
            _, committed, batched = progress.wait(len(warm) + len(burst), processes, sizes.timeout)
            if profile_to is not None:
                _stop_profile(processes[0], profile_to)
            result = Throughput(len(burst), first, all_sent, committed, batched)
            result.cpu = cpu_used(cpu_before, cpu_of(processes))
            phase = None
            sent = len(warm) + len(burst)
            if latency:
                phase = _latency_phase(
                    producer, progress, watcher, rest, result, sent, sizes, processes, say, name
                )
                sent += phase.events
            peaks = [p.memory_kib("VmHWM") or 0 for p in processes if "-ledger-" in p.name]
        finally:
            watcher.stop()
            progress.close()
    return LedgerRun(
        name,
        settings,
        workers,
        commit_interval,
        result,
        phase,
        peaks,
        watcher.records,
        _dlq_records(settings),
        records_written(settings) / sent,
    )


def _latency_phase(
    producer: FeedProducer,
    progress: LedgerProgress,
    watcher: EntryWatcher,
    rest: list[Outgoing],
    burst: Throughput,
    already: int,
    sizes: PipelineSizes,
    processes: Sequence[Process],
    say: Say,
    name: str,
) -> Latency:
    """Events at half the burst's throughput for ``latency_seconds``; their latencies."""
    offered = burst.events_per_second() / 2
    count = min(len(rest), max(1, int(offered * sizes.latency_seconds)))
    feed = rest[:count]
    say(f"  {name}: fixed load of {offered:,.0f} events/s for {count / offered:.0f} s")
    started = time.time()
    sent_at = producer.paced(feed, offered, time.sleep)
    progress.wait(already + count, processes, sizes.timeout)
    time.sleep(0.5)  # the watcher reads what the last commit made visible
    phase = Latency(offered, count, time.time() - started)
    first_sent: dict[str, tuple[float, bytes]] = {}
    for item, at in zip(feed, sent_at, strict=True):
        if item.event_id is not None and item.event_id not in first_sent:
            first_sent[item.event_id] = (at, item.value)
    for event_id, (at, value) in first_sent.items():
        seen = watcher.first_seen.get(event_id)
        if seen is None or seen < at:  # an event posted before the phase is no sample
            continue
        phase.latencies.append(seen - at)
        sequenced = watcher.first_sequenced.get(value)
        if sequenced is not None and at <= sequenced <= seen:
            phase.sequencer.append(sequenced - at)
            phase.ledger.append(seen - sequenced)
    say(f"  {name}: {len(phase.latencies):,} events matched; {phase.describe()}")
    return phase


def _stop_profile(worker: Process, path: Path) -> None:
    """Signal the profiled worker to stop profiling; wait until its stats are written."""
    path.unlink(missing_ok=True)
    worker.popen.send_signal(PROFILE_STOP)
    size = -1
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        current = path.stat().st_size if path.exists() else -1
        if current > 0 and current == size:
            return
        size = current
        time.sleep(0.5)
    raise BenchError(f"the profiled worker wrote no stats to {path}")


# --- the pass-through agent and the raw loop ------------------------------------------------


def run_passthrough(
    endpoints: Endpoints, workdir: Path, sizes: PipelineSizes, stream: GeneratedStream, say: Say
) -> Throughput:
    """The pass-through Faust agent on the same warm-up and burst."""
    settings = scenario_settings(
        endpoints,
        workdir,
        "passthrough",
        partitions=sizes.partitions,
        commit_interval=sizes.commit_interval,
    )
    create_topics(settings)
    warm, burst, _ = split_feed(encode_feed(settings, stream.events, CODEC), sizes)
    sources = [topic(settings, spec) for spec in SOURCES]
    processes: list[Process] = []
    with running(processes):
        processes.append(start_process("passthrough", PASSTHROUGH, settings, workdir))
        wait_group_stable(
            settings.bootstrap_servers, settings.app_id, 1, GROUP_TIMEOUT_SECONDS, processes
        )
        progress = Progress(settings.bootstrap_servers, settings.app_id)
        producer = FeedProducer(settings.bootstrap_servers)
        try:
            producer.burst(warm)
            done = len(warm)
            wait_until(
                lambda: progress.total(sources, settings.partitions) >= done,
                sizes.warmup_timeout,
                "pass-through warm-up",
                processes,
            )
            say(f"  passthrough: warm-up processed; burst of {len(burst):,}")
            cpu_before = cpu_of(processes)
            first, all_sent = producer.burst(burst)
            total = len(warm) + len(burst)
            committed = wait_until(
                lambda: progress.total(sources, settings.partitions) >= total,
                sizes.timeout,
                "pass-through burst",
                processes,
            )
            cpu = cpu_used(cpu_before, cpu_of(processes))
        finally:
            progress.close()
    return Throughput(len(burst), first, all_sent, committed, cpu=cpu)


def run_raw(
    endpoints: Endpoints, workdir: Path, sizes: PipelineSizes, stream: GeneratedStream, say: Say
) -> Throughput:
    """The raw confluent-kafka decode loop on the same warm-up and burst."""
    settings = scenario_settings(endpoints, workdir, "raw", partitions=sizes.partitions)
    create_topics(settings)
    warm, burst, _ = split_feed(encode_feed(settings, stream.events, CODEC), sizes)
    marks = (len(warm), len(warm) + len(burst))
    argv = (*RAW_CONSUMER, "--marks", ",".join(str(m) for m in marks))
    processes: list[Process] = []
    with running(processes):
        process = start_process("raw", argv, settings, workdir, stdout_pipe=True)
        processes.append(process)
        lines = _lines_of(process)
        _expect(lines, "ready", processes, sizes.timeout)
        producer = FeedProducer(settings.bootstrap_servers)
        producer.burst(warm)
        _expect(lines, f"mark {marks[0]} ", processes, sizes.warmup_timeout)
        say(f"  raw: warm-up consumed; burst of {len(burst):,}")
        cpu_before = cpu_of(processes)
        first, all_sent = producer.burst(burst)
        line = _expect(lines, f"mark {marks[1]} ", processes, sizes.timeout)
        cpu = cpu_used(cpu_before, cpu_of(processes))
    return Throughput(len(burst), first, all_sent, float(line.split()[2]), cpu=cpu)


def _lines_of(process: Process) -> queue.Queue[str]:
    """A queue filled with the stdout lines of ``process`` by a reader thread."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.popen.stdout is not None
        for line in process.popen.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    return lines


def _expect(
    lines: queue.Queue[str], prefix: str, processes: Sequence[Process], timeout: float
) -> str:
    """The next stdout line starting with ``prefix``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            check_alive(processes)
            continue
        if line.startswith(prefix):
            return line
    raise BenchError(f"timed out waiting for {prefix!r} from the raw consumer")


# --- RSS -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RssRun:
    """Peak RSS of one ledger worker holding ``customers`` customers' state."""

    customers: int
    events: int
    seconds: float
    peak_kib: int
    final_kib: int


def run_rss(
    endpoints: Endpoints, workdir: Path, sizes: PipelineSizes, customers: int, say: Say
) -> RssRun:
    """One ledger worker (no batcher) fed :func:`rss_stream`; ``VmHWM`` at the end.

    Runs at the short commit interval (the production default): the state kept does not
    depend on it.
    """
    stream = rss_stream(customers, sizes.seed)
    settings = scenario_settings(
        endpoints,
        workdir,
        f"rss{customers}",
        partitions=sizes.partitions,
        commit_interval=sizes.short_commit_interval,
    )
    create_topics(settings)
    RecordProducer(settings, CODEC).send_all(stream.reference)
    feed = encode_feed(settings, stream.events, CODEC)
    processes: list[Process] = []
    with running(processes):
        worker = start_process(f"rss{customers}-ledger", LEDGER_WORKER, settings, workdir)
        processes.append(worker)
        wait_group_stable(
            settings.bootstrap_servers, settings.app_id, 1, GROUP_TIMEOUT_SECONDS, processes
        )
        progress = LedgerProgress(settings, batcher=False)
        try:
            say(f"  rss: {customers:,} customers, {len(feed):,} events")
            first, _ = FeedProducer(settings.bootstrap_servers).burst(feed)
            _, done, _ = progress.wait(len(feed), processes, sizes.timeout)
        finally:
            progress.close()
        peak = worker.memory_kib("VmHWM") or 0
        final = worker.memory_kib("VmRSS") or 0
    return RssRun(customers, len(feed), done - first, peak, final)


# --- profile -------------------------------------------------------------------------------------

# Where CPU goes, by the file a function lives in: first match wins.
PROFILE_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("state JSON codec (ledger/codec, revenue/codec)", ("ledger/codec.py", "revenue/codec.py")),
    ("json module", ("json/",)),
    ("pydantic", ("pydantic",)),
    ("Avro serde (streams/serde, fastavro)", ("streams/serde.py", "fastavro")),
    ("revenue domain", ("/revenue/",)),
    ("ledger domain", ("/ledger/",)),
    ("ledger worker (streams/)", ("/streams/",)),
    ("faust / mode", ("/faust/", "/mode/")),
    ("aiokafka / kafka protocol", ("/aiokafka/", "/kafka/")),
    ("rocksdict", ("rocksdict",)),
    ("asyncio", ("asyncio/",)),
)


# Steps of the ledger worker's hot path, by (file suffix, function): their cumulative time
# (callees included) says what each step costs, Kafka sends and table writes included.
HOT_PATH: tuple[tuple[str, str, str], ...] = (
    ("ledger agent: one ledger.inputs record", "streams/ledger_worker.py", "handle"),
    ("sequencer: one source record", "streams/ledger_worker.py", "sequence"),
    ("  load books (table get + JSON decode or cache)", "streams/ledger_worker.py", "load"),
    ("  save books (JSON encode + table set)", "streams/ledger_worker.py", "_save"),
    ("  engine.apply (pure domain)", "revenue/engine.py", "apply"),
    ("  emit entries", "streams/ledger_worker.py", "_emit"),
    ("  publish schedules", "streams/ledger_worker.py", "_publish_schedules"),
    ("state_from_json", "ledger/codec.py", "state_from_json"),
    ("state_to_json", "ledger/codec.py", "state_to_json"),
    ("book_from_json", "revenue/codec.py", "book_from_json"),
    ("book_to_json", "revenue/codec.py", "book_to_json"),
    ("Avro decode + validate", "streams/serde.py", "decode"),
    ("Avro encode", "streams/serde.py", "encode"),
    ("Faust fetch: drain messages", "faust/transport/consumer.py", "_drain_messages"),
    ("Faust commit (transactions)", "faust/transport/consumer.py", "commit"),
    ("aiokafka send", "aiokafka/producer/producer.py", "send"),
)


@dataclass(frozen=True, slots=True)
class Profile:
    """The profile of one burst: total CPU seconds, top functions, shares by group."""

    cpu_seconds: float
    top: list[tuple[str, float, float]]  # function, own seconds, share of total
    groups: list[tuple[str, float]]  # group, share of total (own time)
    hot: list[tuple[str, float, float]]  # hot-path step, cumulative seconds, share of total
    text: str


def summarise_profile(path: Path, top: int = 20) -> Profile:
    """Read a cProfile dump: the functions with the most own time, and shares by group."""
    stats = pstats.Stats(str(path))
    raw = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values()) or 1e-9
    own: list[tuple[str, float]] = []
    groups: dict[str, float] = {}
    for (filename, line, function), entry in raw.items():
        seconds = entry[2]
        own.append((f"{_short(filename)}:{line}({function})", seconds))
        group = next(
            (name for name, marks in PROFILE_GROUPS if any(m in filename for m in marks)),
            "other (builtins, stdlib)",
        )
        groups[group] = groups.get(group, 0.0) + seconds
    own.sort(key=lambda item: item[1], reverse=True)
    hot = []
    for label, suffix, function in HOT_PATH:
        seconds = sum(
            entry[3]
            for (filename, _, name), entry in raw.items()
            if name == function and filename.endswith(suffix)
        )
        hot.append((label, seconds, seconds / total))
    text = io.StringIO()
    stats.stream = text  # type: ignore[attr-defined]
    stats.sort_stats("cumulative").print_stats(30)
    return Profile(
        total,
        [(name, seconds, seconds / total) for name, seconds in own[:top]],
        sorted(((g, s / total) for g, s in groups.items()), key=lambda x: x[1], reverse=True),
        hot,
        text.getvalue(),
    )


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename
