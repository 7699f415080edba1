"""``revledger lag-exporter``: consumer-group lag read from the broker alone, for Prometheus.

A process of its own, so it keeps reporting when every worker is down, which is when lag
matters (kafka-lag-exporter stops reporting a group without members; Burrow and
kafka_exporter do not support KRaft / Kafka 4). Every ``--interval`` seconds, for each
``--group``, it reads with confluent-kafka:

- the group's committed offsets (``list_consumer_group_offsets``); every partition of each
  topic the group committed on (or named with ``--topic``) is reported, a partition without
  a committed offset counted from its log start, as the workers' ``auto.offset.reset =
  earliest`` would read it;
- per partition, the log start and the **last stable offset** (``list_offsets`` at
  ``READ_COMMITTED``): records past an open transaction cannot be read yet, so they are not
  lag;
- the next record the group has to process: a throwaway read_committed consumer assigned at
  the committed offset fetches it (Kafka skips commit markers and aborted records). Its
  offset starts the lag in messages and its timestamp gives the lag in seconds.

Why not ``high watermark - committed``: on a transactional topic (``ledger.inputs.v1``,
the ERP topics, changelogs) every transaction ends with a commit marker that takes an
offset, and Faust commits "last processed + 1", which is that marker's offset. A caught-up
group therefore sits one offset (or more) below the end forever, and so it does below the
last stable offset too (with no open transaction the LSO is the high watermark). Counting
from the next *record* instead of the committed offset makes a caught-up group 0: the
probe finds no record before the end. The lag in messages is an offset distance from that
record to the LSO, so markers and aborted records in between still count (exact when the
producers are not transactional, as the sources are).

Serves ``/metrics`` (its own registry), ``/healthz`` and ``/readyz`` (200 while the last read
of every group succeeded within three intervals, else 503 with the reason, as JSON):
``revledger_build_info``,
``revledger_consumer_group_lag_messages{group,topic,partition}``,
``revledger_consumer_group_lag_seconds{group,topic,partition}`` (now minus the timestamp of
the next unprocessed record; 0 when caught up), ``revledger_consumer_group_members{group}``,
``revledger_lag_exporter_scrape_errors_total`` (groups whose read failed),
``revledger_lag_exporter_last_success_timestamp_seconds`` (end of the last read without
error). A group whose read fails keeps its previous figures; the timestamp says how old.

The lag arithmetic is pure (:func:`next_unprocessed`, :func:`lag_of`, :func:`group_lag`,
:func:`lag_families`); :class:`BrokerReader` does the Kafka I/O. Must not import faust.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily, Metric

from streams.health import Heartbeat, Readiness, probe_app, stale_after
from streams.logs import configure_logging
from streams.metrics import build_info
from streams.settings import Settings, SettingsError, kafka_client_config

log = logging.getLogger(__name__)

DEFAULT_PORT = 9308
DEFAULT_INTERVAL_SECONDS = 15.0
# Each broker request of a read; a read slower than a few intervals shows as stale anyway.
REQUEST_TIMEOUT_SECONDS = 10.0
# Finding the next record of every lagging partition: one fetch round trip per partition
# at most, so seconds are plenty unless the broker is struggling (then the read fails).
PROBE_TIMEOUT_SECONDS = 15.0

TopicPartitionKey = tuple[str, int]


# --- the arithmetic (pure) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartitionOffsets:
    """What the broker says about one partition for one group."""

    topic: str
    partition: int
    committed: int | None  # None: the group never committed on this partition
    log_start: int  # first offset still in the log
    last_stable: int  # read_committed end offset (LSO)


@dataclass(frozen=True, slots=True)
class NextRecord:
    """The first record a read_committed consumer gets from the group's position."""

    offset: int | None  # None: nothing but markers or aborted records up to the end
    timestamp_ms: int | None = None  # None when the record carries no timestamp


@dataclass(frozen=True, slots=True)
class LagRow:
    """Lag of one partition: offsets to the LSO, and age of the next unprocessed record."""

    topic: str
    partition: int
    messages: int
    seconds: float | None  # None: the next record has no timestamp


@dataclass(frozen=True, slots=True)
class GroupLag:
    """One group's figures at one read."""

    group: str
    members: int
    rows: tuple[LagRow, ...]


def next_unprocessed(offsets: PartitionOffsets) -> int | None:
    """The offset from which the group's next record is looked for; None when caught up.

    A committed offset below the log start (retention deleted records) reads from the start.
    """
    start = offsets.log_start
    if offsets.committed is not None:
        start = max(offsets.committed, offsets.log_start)
    return start if start < offsets.last_stable else None


def lag_of(offsets: PartitionOffsets, found: NextRecord | None, now_seconds: float) -> LagRow:
    """Lag of a partition given the record found at its :func:`next_unprocessed` offset.

    Args:
        offsets: the partition's offsets.
        found: the next record (None when :func:`next_unprocessed` said caught up).
        now_seconds: the wall clock, seconds since the epoch.
    """
    if found is None or found.offset is None:
        return LagRow(offsets.topic, offsets.partition, 0, 0.0)
    # The LSO was read before the record: it may have moved past it since.
    end = max(offsets.last_stable, found.offset + 1)
    seconds = None
    if found.timestamp_ms is not None:
        seconds = max(0.0, now_seconds - found.timestamp_ms / 1000.0)
    return LagRow(offsets.topic, offsets.partition, end - found.offset, seconds)


def group_lag(
    group: str,
    members: int,
    partitions: Iterable[PartitionOffsets],
    found: Mapping[TopicPartitionKey, NextRecord],
    now_seconds: float,
) -> GroupLag:
    """A group's rows, in topic and partition order."""
    rows = [lag_of(p, found.get((p.topic, p.partition)), now_seconds) for p in partitions]
    rows.sort(key=lambda row: (row.topic, row.partition))
    return GroupLag(group, members, tuple(rows))


def topics_to_report(committed: Mapping[TopicPartitionKey, int], extra: Iterable[str]) -> list[str]:
    """Topics the group committed on, plus those named explicitly, sorted."""
    return sorted({topic for topic, _ in committed} | set(extra))


def lag_families(snapshot: Iterable[GroupLag]) -> list[Metric]:
    """The lag and member gauges of ``snapshot``."""
    labels = ["group", "topic", "partition"]
    messages = GaugeMetricFamily(
        "revledger_consumer_group_lag_messages",
        "Offsets from the group's next unprocessed record to the last stable offset",
        labels=labels,
    )
    seconds = GaugeMetricFamily(
        "revledger_consumer_group_lag_seconds",
        "Now minus the timestamp of the group's next unprocessed record (0: caught up)",
        labels=labels,
    )
    members = GaugeMetricFamily(
        "revledger_consumer_group_members", "Live members of the consumer group", labels=["group"]
    )
    for lag in snapshot:
        members.add_metric([lag.group], lag.members)
        for row in lag.rows:
            values = [lag.group, row.topic, str(row.partition)]
            messages.add_metric(values, row.messages)
            if row.seconds is not None:
                seconds.add_metric(values, row.seconds)
    return [messages, seconds, members]


# --- the broker -----------------------------------------------------------------------------


class LagReadError(RuntimeError):
    """Raised when a group's lag could not be read (broker error, timeout, probe incomplete)."""


class BrokerReader:
    """The Kafka side: committed offsets, LSOs, members, and the next record of a partition."""

    def __init__(self, settings: Settings | str) -> None:
        # A bare bootstrap string (no security settings) is still accepted for callers
        # that have no Settings; the exporter passes its settings.
        self.settings = settings
        self.admin = AdminClient(self._config())

    def _config(self, extra: dict[str, object] | None = None) -> dict[str, object]:
        """The client config: brokers and security settings (see kafka_client_config)."""
        if isinstance(self.settings, str):
            return {"bootstrap.servers": self.settings, **(extra or {})}
        return kafka_client_config(self.settings, extra)

    def committed(self, group: str) -> dict[TopicPartitionKey, int]:
        """The group's committed offsets (empty for an unknown group)."""
        request = [ConsumerGroupTopicPartitions(group)]
        futures = self.admin.list_consumer_group_offsets(
            request, request_timeout=REQUEST_TIMEOUT_SECONDS
        )
        result = _result(futures[group], f"committed offsets of {group}")
        return {
            (tp.topic, tp.partition): tp.offset for tp in result.topic_partitions if tp.offset >= 0
        }

    def members(self, group: str) -> int:
        """Live members of the group (0 for an empty or unknown group)."""
        futures = self.admin.describe_consumer_groups(
            [group], request_timeout=REQUEST_TIMEOUT_SECONDS
        )
        return len(_result(futures[group], f"members of {group}").members)

    def partitions(self, topics: Iterable[str]) -> list[TopicPartitionKey]:
        """Every partition of ``topics``; a topic that no longer exists is left out."""
        found: list[TopicPartitionKey] = []
        for topic in topics:
            metadata = self.admin.list_topics(topic, timeout=REQUEST_TIMEOUT_SECONDS).topics
            described = metadata.get(topic)
            if described is None or described.error is not None:
                log.warning("lag-exporter: topic %s: %s", topic, getattr(described, "error", None))
                continue
            found.extend((topic, p) for p in sorted(described.partitions))
        return found

    def offsets(
        self, partitions: Sequence[TopicPartitionKey], committed: Mapping[TopicPartitionKey, int]
    ) -> list[PartitionOffsets]:
        """Log start and last stable offset of each partition, with the group's committed one.

        Read after ``committed``, so a committed offset never lies beyond the LSO read here.
        """
        starts = self._list_offsets(partitions, OffsetSpec.earliest())
        stable = self._list_offsets(partitions, OffsetSpec.latest())
        return [
            PartitionOffsets(
                topic, p, committed.get((topic, p)), starts[(topic, p)], stable[(topic, p)]
            )
            for topic, p in partitions
        ]

    def _list_offsets(
        self, partitions: Sequence[TopicPartitionKey], spec: OffsetSpec
    ) -> dict[TopicPartitionKey, int]:
        if not partitions:
            return {}
        futures = self.admin.list_offsets(
            {TopicPartition(topic, p): spec for topic, p in partitions},
            isolation_level=IsolationLevel.READ_COMMITTED,
            request_timeout=REQUEST_TIMEOUT_SECONDS,
        )
        return {
            (tp.topic, tp.partition): _result(
                future, f"offsets of {tp.topic}/{tp.partition}"
            ).offset
            for tp, future in futures.items()
        }

    def next_records(
        self, starts: Mapping[TopicPartitionKey, int], timeout: float = PROBE_TIMEOUT_SECONDS
    ) -> dict[TopicPartitionKey, NextRecord]:
        """The first read_committed record at or after each start offset.

        A throwaway consumer (it never joins a group nor commits) is assigned at the starts;
        a partition answers with its first record, or with end-of-partition when only
        markers or aborted records lie before the LSO.

        Raises:
            LagReadError: a partition did not answer within ``timeout`` seconds.
        """
        if not starts:
            return {}
        consumer = Consumer(
            self._config(
                {
                    "group.id": f"revledger-lag-probe-{uuid.uuid4().hex}",
                    "isolation.level": "read_committed",
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                    "auto.offset.reset": "earliest",
                    # One record per partition is all we need: keep the fetches small.
                    "max.partition.fetch.bytes": 65536,
                    "queued.max.messages.kbytes": 1024,
                }
            )
        )
        try:
            consumer.assign([TopicPartition(t, p, offset) for (t, p), offset in starts.items()])
            return _first_records(consumer, set(starts), timeout)
        finally:
            consumer.close()


def _first_records(
    consumer: Consumer, pending: set[TopicPartitionKey], timeout: float
) -> dict[TopicPartitionKey, NextRecord]:
    found: dict[TopicPartitionKey, NextRecord] = {}
    deadline = time.monotonic() + timeout
    while pending:
        if time.monotonic() > deadline:
            raise LagReadError(f"no answer within {timeout:.0f}s from {sorted(pending)}")
        for message in consumer.consume(500, 0.5):
            key = (message.topic(), message.partition())
            if key not in pending:
                continue
            error = message.error()
            if error is not None and error.code() != KafkaError._PARTITION_EOF:
                raise LagReadError(f"reading {key[0]}/{key[1]}: {error}")
            if error is not None:
                found[key] = NextRecord(None)
            else:
                kind, stamp = message.timestamp()
                has_time = kind != TIMESTAMP_NOT_AVAILABLE and stamp >= 0
                found[key] = NextRecord(message.offset(), stamp if has_time else None)
            pending.discard(key)
            consumer.pause([TopicPartition(*key)])
    return found


def _result(future: object, what: str) -> object:
    try:
        return future.result(timeout=REQUEST_TIMEOUT_SECONDS * 2)  # type: ignore[attr-defined]
    except KafkaException as exc:
        raise LagReadError(f"{what}: {exc.args[0]}") from exc
    except TimeoutError as exc:
        raise LagReadError(f"{what}: no answer") from exc


def read_group_lag(
    reader: BrokerReader,
    group: str,
    extra_topics: Iterable[str] = (),
    now: Callable[[], float] = time.time,
) -> GroupLag:
    """One read of a group's lag from the broker.

    Raises:
        LagReadError: the broker did not answer, or answered with an error.
    """
    try:
        committed = reader.committed(group)
        members = reader.members(group)
        partitions = reader.partitions(topics_to_report(committed, extra_topics))
        offsets = reader.offsets(partitions, committed)
        starts = {
            (o.topic, o.partition): start
            for o in offsets
            if (start := next_unprocessed(o)) is not None
        }
        found = reader.next_records(starts)
    except KafkaException as exc:  # raised directly by list_topics, Consumer, consume
        raise LagReadError(f"{group}: {exc.args[0] if exc.args else exc}") from exc
    return group_lag(group, members, offsets, found, now())


def read_lag_from(
    reader: BrokerReader,
    committed: Mapping[TopicPartitionKey, int],
    partitions: Sequence[TopicPartitionKey],
    now: Callable[[], float] = time.time,
) -> list[LagRow]:
    """Lag of ``partitions`` from offsets kept outside Kafka (the projection's, in PostgreSQL).

    The same arithmetic as a group's: from the next record at or after the offset to the LSO.

    Raises:
        LagReadError: the broker did not answer, or answered with an error.
    """
    try:
        offsets = reader.offsets(partitions, committed)
        starts = {
            (o.topic, o.partition): start
            for o in offsets
            if (start := next_unprocessed(o)) is not None
        }
        found = reader.next_records(starts)
    except KafkaException as exc:
        raise LagReadError(f"{exc.args[0] if exc.args else exc}") from exc
    return list(group_lag("", 0, offsets, found, now()).rows)


# --- serving --------------------------------------------------------------------------------


@dataclass(eq=False)  # registered in its registry: hashed by identity
class LagMetrics:
    """The exporter's registry: the latest figures of each group, errors and last success."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    snapshot: dict[str, GroupLag] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.registry.register(self)
        self.errors = Counter(
            "revledger_lag_exporter_scrape_errors",
            "Group lag reads that failed (the group keeps its previous figures)",
            registry=self.registry,
        )
        self.last_success = Gauge(
            "revledger_lag_exporter_last_success_timestamp_seconds",
            "End of the last read of every group without error, seconds since the epoch",
            registry=self.registry,
        )
        build_info(self.registry)
        # Readiness: the broker answered every group's read recently (run_exporter sets
        # the allowed age from the interval).
        self.broker = Heartbeat("broker", stale_after(DEFAULT_INTERVAL_SECONDS))

    def collect(self) -> list[Metric]:
        """Called by the registry at each scrape."""
        return lag_families(list(self.snapshot.values()))


@dataclass(frozen=True)
class ExporterOptions:
    """What ``revledger lag-exporter`` was asked to do."""

    groups: tuple[str, ...]
    topics: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    interval_seconds: float = DEFAULT_INTERVAL_SECONDS


def refresh(reader: BrokerReader, metrics: LagMetrics, options: ExporterOptions) -> bool:
    """Read every group once into ``metrics``; True when no read failed."""
    ok = True
    for group in options.groups:
        try:
            lag = read_group_lag(reader, group, options.topics)
            # A new dict, swapped in whole: a scrape iterates the old one meanwhile.
            metrics.snapshot = {**metrics.snapshot, group: lag}
        except LagReadError as exc:
            ok = False
            metrics.errors.inc()
            metrics.broker.failed(exc)
            log.warning("lag-exporter: group %s: %s", group, exc)
    if ok:
        metrics.last_success.set(time.time())
        metrics.broker.ok()
    return ok


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return


def serve(metrics: LagMetrics, host: str, port: int) -> WSGIServer:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` on a daemon thread; returns the server."""
    readiness = Readiness()
    readiness.add("broker", metrics.broker.check)
    app = probe_app(metrics.registry, readiness)
    server = make_server(host, port, app, _ThreadingServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="lag-exporter-http", daemon=True).start()
    return server


def run_exporter(settings: Settings, options: ExporterOptions, stop: threading.Event) -> int:
    """Serve until ``stop`` is set, reading every group each ``interval_seconds``."""
    metrics = LagMetrics()
    metrics.broker.max_age_seconds = stale_after(options.interval_seconds)
    reader = BrokerReader(settings)
    server = serve(metrics, options.host, options.port)
    host, port = server.server_address[:2]
    print(
        f"lag-exporter: serving http://{host}:{port}/metrics for {', '.join(options.groups)}"
        f" every {options.interval_seconds:g}s",
        flush=True,
    )
    try:
        while not stop.is_set():
            refresh(reader, metrics, options)
            stop.wait(options.interval_seconds)
    finally:
        server.shutdown()
        server.server_close()
    return 0


# --- command line ---------------------------------------------------------------------------


def add_lag_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``revledger lag-exporter`` to the CLI's sub-commands."""
    parser = subparsers.add_parser(
        "lag-exporter",
        help="serve consumer-group lag read from the broker alone on /metrics (Prometheus)",
    )
    parser.add_argument(
        "--group", action="append", required=True, metavar="GROUP", help="repeatable"
    )
    parser.add_argument(
        "--topic",
        action="append",
        default=[],
        metavar="TOPIC",
        help="also report every partition of TOPIC, committed on or not (repeatable)",
    )
    parser.add_argument(
        "--host", default=None, help="address to bind (default: REVLEDGER_WEB_HOST, 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0: any free port")
    parser.add_argument(
        "--interval", type=float, default=DEFAULT_INTERVAL_SECONDS, metavar="SECONDS"
    )
    parser.add_argument(
        "--once", action="store_true", help="read once, print the metrics and exit (1 on error)"
    )


def main_lag(args: argparse.Namespace) -> int:
    """Entry point of ``revledger lag-exporter``."""
    from streams.devstack_env import settings_from_devstack

    if args.interval <= 0 or not 0 <= args.port <= 65535:
        print("revledger lag-exporter: --interval must be > 0, --port 0-65535", file=sys.stderr)
        return 2
    try:
        settings = settings_from_devstack()
    except SettingsError as exc:
        print(f"revledger lag-exporter: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    options = ExporterOptions(
        groups=tuple(dict.fromkeys(args.group)),
        topics=tuple(args.topic),
        host=args.host or settings.web_host,
        port=args.port,
        interval_seconds=args.interval,
    )
    if args.once:
        return _print_once(settings, options)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return run_exporter(settings, options, stop)


def _print_once(settings: Settings, options: ExporterOptions) -> int:
    from prometheus_client import generate_latest

    metrics = LagMetrics()
    ok = refresh(BrokerReader(settings), metrics, options)
    sys.stdout.write(generate_latest(metrics.registry).decode())
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m streams.lag_exporter [options]``: the command without the ``revledger`` CLI."""
    parser = argparse.ArgumentParser(prog="python -m streams.lag_exporter")
    commands = parser.add_subparsers(dest="command")
    add_lag_commands(commands)
    args = parser.parse_args(["lag-exporter", *(sys.argv[1:] if argv is None else argv)])
    return main_lag(args)


if __name__ == "__main__":
    sys.exit(main())
