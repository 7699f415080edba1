"""What the broker benchmarks stand on: the stack, worker processes, producing and waiting.

- :func:`broker_and_database`: the Kafka broker and PostgreSQL of a run: those named by
  ``KAFKA_BOOTSTRAP_SERVERS`` + ``DATABASE_URL``, or the running dev stack (``--reuse``),
  or a private stack started under the run's work directory and stopped after it (the
  default: no other user's topics or load on the broker while it is measured).
- :func:`scenario_settings`: settings isolated by a unique topic prefix and app id.
- :class:`Process`: a worker subprocess (the real ``revledger worker`` / ``batcher``, the
  pass-through agent, the raw consumer) with its log and its peak RSS (``VmHWM``).
- :class:`FeedProducer`: pre-encoded records produced as fast as possible or at a fixed
  rate, with the wall-clock time of each send.
- :class:`Progress`: whether a consumer group has processed everything, from its committed
  offsets and the topics' high watermarks (no record is read for that).
- :class:`EntryWatcher`: the entries topic read at read_committed, noting when each source
  event's first entry became visible (the latency measurement); optionally
  ``ledger.inputs.v1`` too, noting when each source record was sequenced (the per-hop
  breakdown).

Times that cross processes are wall-clock (``time.time()``): every process runs on this
machine, so they share one clock.

Must not import faust (the workers run in their own processes).
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from fastavro import parse_schema, schemaless_reader

from ledger.events import Record
from streams.admin import ensure_topics
from streams.producer import key_for, topic_for
from streams.schemas import schema_for
from streams.serde import SINGLE_OBJECT_MAGIC, Codec
from streams.settings import Settings, load_settings, worker_environment
from streams.topics import CONTROL, TOPICS, TopicSpec

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
LEDGER_WORKER = (PYTHON, "-m", "streams.cli", "worker")
BATCHER = (PYTHON, "-m", "streams.cli", "batcher")
PASSTHROUGH = (PYTHON, "-m", "benchmarks.passthrough_worker")
RAW_CONSUMER = (PYTHON, "-m", "benchmarks.raw_consumer")
PROFILED_WORKER = (PYTHON, "-m", "benchmarks.profiled_worker")
# How often the committed offsets are polled: the error of an end time, against runs of
# several seconds at least.
POLL_SECONDS = 0.05

Say = Callable[[str], None]


class BenchError(RuntimeError):
    """A benchmark could not be run: a worker died, a wait timed out, a service is missing."""


# --- the broker and the database -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Endpoints:
    """The broker and database of a run, and where they came from."""

    bootstrap_servers: str
    database_url: str
    source: str  # "environment", "dev stack" or "private stack"


@contextlib.contextmanager
def broker_and_database(workdir: Path, reuse: bool, say: Say) -> Iterator[Endpoints]:
    """The run's Kafka + PostgreSQL: from the environment, the dev stack, or started here.

    A private stack (the default) lives under ``workdir/stack`` and is stopped and purged
    when the block ends.
    """
    from streams.devstack import stack

    bootstrap, url = os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), os.environ.get("DATABASE_URL")
    if bootstrap and url:
        yield Endpoints(bootstrap, url, "environment")
        return
    if reuse:
        current = stack.status()
        if not (current.ok and current.state is not None):
            raise BenchError("--reuse: no dev stack is running (revledger dev up)")
        yield Endpoints(current.state.bootstrap_servers, current.state.database_url, "dev stack")
        return
    root = workdir / "stack"
    started = time.monotonic()
    state = _start_private_stack(root, say)
    say(
        f"private stack up in {time.monotonic() - started:.1f} s: kafka {state.kafka_version}"
        f" {state.bootstrap_servers}"
    )
    try:
        yield Endpoints(state.bootstrap_servers, state.database_url, "private stack")
    finally:
        stack.down(root=root, purge=True)


# Starting a broker on a loaded machine sometimes fails at once (seen: the JVM gone before
# writing a line of log); a fresh start in a purged directory then succeeds.
STACK_ATTEMPTS = 3


def _start_private_stack(root: Path, say: Say) -> Any:
    """``stack.up`` under ``root``; after a failed start, stop what it left and try again."""
    from streams.devstack import stack

    for attempt in range(1, STACK_ATTEMPTS + 1):
        try:
            return stack.up(root=root)
        except Exception as exc:  # any start failure: KafkaError, a postgres error ...
            stack.down(root=root, purge=True)  # also a broker the failed start left running
            if attempt == STACK_ATTEMPTS:
                raise BenchError(f"the private stack did not start: {exc}") from exc
            say(f"private stack did not start ({str(exc).splitlines()[0]}); trying again")
    raise AssertionError("unreachable")


def scenario_settings(
    endpoints: Endpoints,
    workdir: Path,
    name: str,
    *,
    partitions: int,
    commit_interval: float = 1.0,
    store: str = "rocksdb://",
) -> Settings:
    """Settings of one scenario: its own topic prefix, app id and data directory."""
    tag = uuid.uuid4().hex[:8]
    return load_settings(
        {},
        bootstrap_servers=endpoints.bootstrap_servers,
        database_url=endpoints.database_url,
        topic_prefix=f"bench{tag}.",
        app_id=f"revledger-bench-{name}-{tag}",
        partitions=partitions,
        store=store,
        web_port=0,
        data_dir=workdir / f"{name}-{tag}",
        commit_interval_seconds=commit_interval,
        # The production default, on purpose: at WARNING and above, Faust's worker sets
        # the root logger to DEBUG for its terminal spinner, and every debug call of
        # aiokafka and Faust then builds a log record (measured: ~9 % of the CPU).
        log_level="INFO",
    )


def create_topics(settings: Settings) -> None:
    """Every topic of the system under the scenario's prefix, leaders elected."""
    ensure_topics(settings, TOPICS)
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    names = {settings.topic_prefix + spec.name for spec in TOPICS}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        topics = admin.list_topics(timeout=10).topics
        if all(
            name in topics and all(p.leader >= 0 for p in topics[name].partitions.values())
            for name in names
        ):
            return
        time.sleep(0.1)
    raise BenchError(f"topics of {settings.topic_prefix} have no leader after 30 s")


# --- processes -------------------------------------------------------------------------------


@dataclass
class Process:
    """A worker subprocess with its log file."""

    name: str
    popen: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.popen.poll() is None

    def log_tail(self, characters: int = 3000) -> str:
        """The end of the process's log."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-characters:]

    def warnings(self, last: int = 3) -> list[str]:
        """The last WARNING / ERROR / CRITICAL lines of the log (what a stall left behind)."""
        noise = ("producer buffer full", "Timer commit is overlapping", "Heartbeat failed")
        found = [
            f"{self.name}: {line.strip()[:300]}"
            for line in self.log_tail(200_000).splitlines()
            if any(level in line for level in ("[WARNING]", "[ERROR]", "[CRITICAL]"))
            and not any(text in line for text in noise)
        ]
        return found[-last:]

    def memory_kib(self, field_name: str = "VmHWM") -> int | None:
        """A ``/proc/<pid>/status`` field in KiB (``VmHWM``: peak RSS; ``VmRSS``: now)."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith(f"{field_name}:"):
                return int(line.split()[1])
        return None

    def cpu_seconds(self) -> float | None:
        """User + system CPU time the process has used so far (``/proc/<pid>/stat``)."""
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return None
        # Fields after the command name (which may hold spaces) start at field 3.
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        return self.popen.returncode


def start_process(
    name: str,
    argv: Sequence[str],
    settings: Settings,
    workdir: Path,
    *,
    data_dir: Path | None = None,
    extra_env: dict[str, str] | None = None,
    stdout_pipe: bool = False,
) -> Process:
    """Start ``argv`` with ``settings`` in its environment; its log goes to ``workdir``.

    ``data_dir`` overrides the settings' one: two workers of one app need their own.
    ``stdout_pipe``: stdout is a pipe the caller reads (stderr still goes to the log).
    """
    env = worker_environment(settings)
    if data_dir is not None:
        env["REVLEDGER_DATA_DIR"] = str(data_dir)
    env.update(extra_env or {})
    log_path = workdir / f"{name}.log"
    retry = 1
    while log_path.exists():  # a retried scenario: its own log, not the failed one's
        retry += 1
        log_path = workdir / f"{name}.{retry}.log"
    log_file = log_path.open("ab")
    popen = subprocess.Popen(
        list(argv),
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE if stdout_pipe else log_file,
        stderr=log_file,
        text=stdout_pipe or None,
    )
    log_file.close()  # the child holds its own descriptor
    return Process(name, popen, log_path)


@contextlib.contextmanager
def running(processes: list[Process]) -> Iterator[list[Process]]:
    """Stop every process of ``processes`` (also those appended inside) when the block ends."""
    try:
        yield processes
    finally:
        for process in reversed(processes):
            process.stop()


def check_alive(processes: Iterable[Process]) -> None:
    """Raise :class:`BenchError` with the log tail of the first process that exited."""
    for process in processes:
        if not process.alive():
            raise BenchError(
                f"{process.name} exited with {process.popen.returncode}:\n{process.log_tail()}"
            )


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    processes: Iterable[Process] = (),
) -> float:
    """Poll ``predicate`` until true; return the wall time it was seen true.

    Raises:
        BenchError: a process of ``processes`` exited, or ``timeout`` seconds passed.
    """
    watched = list(processes)
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return time.time()
        check_alive(watched)
        if time.monotonic() > deadline:
            raise BenchError(
                f"timed out after {timeout:.0f} s waiting for {what}\n"
                + "\n".join(line for process in watched for line in process.warnings())
            )
        time.sleep(POLL_SECONDS)


def wait_group_stable(
    bootstrap_servers: str,
    group: str,
    members: int,
    timeout: float,
    processes: Iterable[Process] = (),
) -> None:
    """Wait until consumer group ``group`` is Stable with ``members`` members."""
    from confluent_kafka import ConsumerGroupState

    admin = AdminClient({"bootstrap.servers": bootstrap_servers})

    def stable() -> bool:
        try:
            found = admin.describe_consumer_groups([group])[group].result(timeout=10)
        except Exception:  # the group does not exist yet: keep polling
            return False
        return found.state == ConsumerGroupState.STABLE and len(found.members) == members

    wait_until(stable, timeout, f"group {group} stable with {members} member(s)", processes)


# --- producing -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One pre-encoded Kafka record (a control record is one of these per partition)."""

    topic: str
    key: bytes | None
    value: bytes
    partition: int | None
    event_id: str | None


def encode_feed(settings: Settings, records: Iterable[Record], codec: Codec) -> list[Outgoing]:
    """Encode ``records`` as :class:`streams.producer.RecordProducer` would send them.

    Encoding happens before the clock starts: what is measured is the system, not the
    benchmark's own encoder.
    """
    feed: list[Outgoing] = []
    for record in records:
        spec = topic_for(record)
        topic = settings.topic_prefix + spec.name
        value = codec.encode(record, topic=topic)
        event_id = getattr(record, "event_id", None)
        if spec is CONTROL:
            for partition in range(spec.partitions(settings.partitions)):
                feed.append(Outgoing(topic, None, value, partition, event_id))
        else:
            feed.append(Outgoing(topic, key_for(record), value, None, event_id))
    return feed


class FeedProducer:
    """Produces a feed as fast as it can, or at a fixed rate; notes when each was sent."""

    def __init__(self, bootstrap_servers: str) -> None:
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap_servers,
                "partitioner": "murmur2_random",
                "enable.idempotence": True,
                "linger.ms": 5,
                "queue.buffering.max.messages": 1_000_000,
            }
        )
        self._errors: list[str] = []

    def _on_delivery(self, error: object, _message: object) -> None:
        if error is not None:
            self._errors.append(str(error))

    def _send(self, item: Outgoing) -> None:
        kwargs = {} if item.partition is None else {"partition": item.partition}
        while True:
            try:
                self._producer.produce(
                    item.topic, item.value, item.key, on_delivery=self._on_delivery, **kwargs
                )
                return
            except BufferError:
                self._producer.poll(0.01)

    def burst(self, feed: Sequence[Outgoing]) -> tuple[float, float]:
        """Send every record at once; returns (first send, all delivered), wall times."""
        first = time.time()
        for n, item in enumerate(feed):
            self._send(item)
            if n % 1000 == 999:
                self._producer.poll(0)
        self.flush()
        return first, time.time()

    def paced(
        self, feed: Sequence[Outgoing], pacer_rate: float, sleep: Callable[[float], None]
    ) -> list[float]:
        """Send record ``i`` at ``i / pacer_rate`` s after the first; returns each send time."""
        from benchmarks.harness import Pacer

        sent_at: list[float] = []
        pacer = Pacer(pacer_rate, time.time())
        while len(sent_at) < len(feed):
            now = time.time()
            due = min(pacer.due(now), len(feed))
            while len(sent_at) < due:
                sent_at.append(time.time())
                self._send(feed[len(sent_at) - 1])
            self._producer.poll(0)
            if len(sent_at) < len(feed):
                sleep(min(pacer.wait(len(sent_at), time.time()), 0.01))
        self.flush()
        return sent_at

    def flush(self, timeout: float = 120.0) -> None:
        """Wait for every delivery; raise if any failed."""
        left = self._producer.flush(timeout)
        if left or self._errors:
            raise BenchError(f"{left} records undelivered; errors: {self._errors[:3]}")


# --- progress from committed offsets ------------------------------------------------------


class Progress:
    """What a consumer group has committed, against the end of the topics it reads.

    Exactly-once apps commit their offsets in the transaction that carries their outputs,
    so once a group's committed offsets cover its inputs, everything it produced from
    them is visible to read_committed consumers.

    On a topic written with transactions every transaction ends with a commit marker, so
    the last record of a partition is a marker and a consumer that processed everything
    commits ``high watermark - 1``; on a plain topic it commits the high watermark.
    """

    def __init__(self, bootstrap_servers: str, group: str) -> None:
        self.group = group
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap_servers,
                "group.id": group,  # only to read its offsets: never subscribes nor commits
                "enable.auto.commit": False,
                # Not read_committed: librdkafka would then ask for "stable" offsets, which
                # the broker refuses while a transaction with offsets is open, and an
                # exactly-once app always has one open. The offsets returned are the
                # committed ones either way: those of open transactions are not counted.
                "isolation.level": "read_uncommitted",
            }
        )

    def committed(self, topic: str, partitions: int) -> dict[int, int]:
        """Committed offset per partition (0 where none yet; -1 everywhere if unanswered)."""
        try:
            found = self._consumer.committed(
                [TopicPartition(topic, p) for p in range(partitions)], timeout=10
            )
        except KafkaException:  # a busy coordinator: the caller polls again
            return dict.fromkeys(range(partitions), -1)
        return {tp.partition: max(tp.offset, 0) for tp in found}

    def ends(self, topic: str, partitions: int) -> dict[int, int]:
        """High watermark per partition."""
        return {
            p: self._consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        }

    def caught_up(self, topic: str, partitions: int, transactional: bool) -> bool:
        """Whether the group committed everything of ``topic`` (see the class docstring)."""
        committed = self.committed(topic, partitions)
        slack = 1 if transactional else 0
        if any(offset < 0 for offset in committed.values()):
            return False
        return all(
            end == 0 or committed[p] >= end - slack
            for p, end in self.ends(topic, partitions).items()
        )

    def topics(self) -> dict[str, int]:
        """Every topic of the broker with its partition count."""
        listed = self._consumer.list_topics(timeout=10).topics
        return {name: len(meta.partitions) for name, meta in listed.items()}

    def total(self, topics: Iterable[str], partitions: int) -> int:
        """Sum of committed offsets over ``topics`` (plain topics: records processed); -1 if
        the coordinator did not answer."""
        total = 0
        for name in topics:
            committed = self.committed(name, partitions)
            if any(offset < 0 for offset in committed.values()):
                return -1
            total += sum(committed.values())
        return total

    def close(self) -> None:
        self._consumer.close()


# --- the latency watcher ---------------------------------------------------------------------


def source_event_reader() -> Callable[[bytes], str | None]:
    """A decoder of an entry's ``source_event_id`` only (None for other record types).

    Avro schema resolution with a one-field reader schema skips the rest of the record
    in fastavro's compiled reader: the watcher keeps up with the worker without
    competing with it for CPU as a full decode and validation would.
    """
    schema = schema_for("JournalEntryPosted")
    prefix = SINGLE_OBJECT_MAGIC + schema.fingerprint
    reader = parse_schema(
        {
            "type": "record",
            "name": schema.full_name,
            "fields": [{"name": "source_event_id", "type": "string"}],
        }
    )

    def read(value: bytes) -> str | None:
        if not value.startswith(prefix):
            return None
        datum = schemaless_reader(io.BytesIO(value[len(prefix) :]), schema.parsed, reader)
        return datum["source_event_id"]  # type: ignore[index]

    return read


@dataclass
class EntryWatcher:
    """A thread reading the entries topic at read_committed from the start.

    Notes, for each source event id, the wall time its first entry was read. With
    ``inputs_topic`` (``ledger.inputs.v1``) the same consumer also reads that topic and
    notes, for each record value, the wall time it was first read there: the sequencer
    copies a source record's value unchanged, so the value sent is the key (no decode).
    One consumer for both topics: one more thread polling every few milliseconds would
    compete with the worker for the two cores.
    """

    bootstrap_servers: str
    topic: str
    partitions: int
    inputs_topic: str | None = None
    first_seen: dict[str, float] = field(default_factory=dict)
    first_sequenced: dict[bytes, float] = field(default_factory=dict)
    records: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _error: BaseException | None = None

    def start(self) -> EntryWatcher:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        ready.wait(30)
        return self

    def _run(self, ready: threading.Event) -> None:
        read = source_event_reader()
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap_servers,
                "group.id": f"bench-watch-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 10,  # a latency probe must not wait for fuller fetches
            }
        )
        topics = [self.topic] if self.inputs_topic is None else [self.topic, self.inputs_topic]
        try:
            consumer.assign(
                [
                    TopicPartition(name, p, OFFSET_BEGINNING)
                    for name in topics
                    for p in range(self.partitions)
                ]
            )
            ready.set()
            while not self._stop.is_set():
                # A short timeout: consume() returns when it has the records asked for or
                # the timeout passed, and every record of a batch gets the batch's time.
                messages = consumer.consume(500, 0.005)
                now = time.time()
                for message in messages:
                    if message.error() is not None:
                        if message.error().code() != KafkaError._PARTITION_EOF:
                            raise BenchError(str(message.error()))
                        continue
                    value = message.value()
                    if message.topic() != self.topic:
                        self.first_sequenced.setdefault(value, now)
                        continue
                    self.records += 1
                    event_id = read(value)
                    if event_id is not None and event_id not in self.first_seen:
                        self.first_seen[event_id] = now
        except BaseException as exc:
            self._error = exc
            ready.set()
        finally:
            consumer.close()

    def stop(self) -> None:
        """Stop the thread; raise what it failed with, if anything."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        if self._error is not None:
            raise BenchError(f"entry watcher failed: {self._error}") from self._error


def topic(settings: Settings, spec: TopicSpec) -> str:
    """The real name of ``spec`` in the scenario."""
    return settings.topic_prefix + spec.name
