"""Run workers as subprocesses (as production does) and read topics back, for integration tests."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from fastavro import schemaless_writer

from ledger.events import ClockAdvanced, Record
from streams.producer import RecordProducer
from streams.schemas import schema_for
from streams.serde import SINGLE_OBJECT_MAGIC, Codec
from streams.settings import Settings, load_settings, worker_environment
from streams.topics import TopicSpec

ROOT = Path(__file__).resolve().parents[2]


def isolated_settings(bootstrap_servers: str, tmp_path: Path, **overrides: object) -> Settings:
    """Settings with a uuid topic prefix and app id, memory store and no web server."""
    tag = uuid.uuid4().hex[:10]
    values: dict[str, object] = {
        "bootstrap_servers": bootstrap_servers,
        "topic_prefix": f"t{tag}.",
        "app_id": f"revledger-test-{tag}",
        "partitions": 2,
        "store": "memory://",
        "web_port": 0,
        "data_dir": tmp_path / "worker",
        "commit_interval_seconds": 0.5,
    }
    values.update(overrides)
    return load_settings({}, **values)


@dataclass
class WorkerProcess:
    """A worker subprocess and its log file."""

    process: subprocess.Popen
    log_path: Path
    extra: dict = field(default_factory=dict)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode

    def kill(self) -> None:
        """kill -9: no shutdown, no final commit."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)


def start_worker(
    settings: Settings, log_path: Path, argv: Iterable[str] = (), extra_env: dict | None = None
) -> WorkerProcess:
    """Start ``python argv...`` (default: the real ``revledger worker``) with ``settings``."""
    env = worker_environment(settings)
    env.update(extra_env or {})
    command = list(argv) or [sys.executable, "-m", "streams.cli", "worker"]
    log_file = log_path.open("ab")
    process = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT
    )
    return WorkerProcess(process, log_path)


@contextmanager
def running_worker(settings: Settings, log_path: Path, **kwargs) -> Iterator[WorkerProcess]:
    """A worker for the duration of the block; its log is printed when the block fails."""
    worker = start_worker(settings, log_path, **kwargs)
    try:
        yield worker
    except BaseException:
        print(worker.log()[-6000:])
        raise
    finally:
        worker.stop()


def producer(bootstrap_servers: str) -> Producer:
    """A plain producer with the Java-compatible murmur2 partitioner (as every producer)."""
    return Producer(
        {
            "bootstrap.servers": bootstrap_servers,
            "partitioner": "murmur2_random",
            "enable.idempotence": True,
            "message.max.bytes": 4 * 1024 * 1024,
        }
    )


def read_committed(
    bootstrap_servers: str,
    topic: str,
    expected: int,
    timeout: float = 90.0,
    only: Callable[[Any], bool] | None = None,
) -> list:
    """Read ``topic`` from the start at read_committed until ``expected`` records or timeout.

    ``only`` keeps the messages it accepts (and counts only those), e.g. :func:`is_entry`.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([topic])
    records: list = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                if message.error().code() != KafkaError._PARTITION_EOF:
                    raise RuntimeError(message.error())
                continue
            if only is None or only(message):
                records.append(message)
    finally:
        consumer.close()
    return records


_CODEC = Codec()


def is_entry(message: Any) -> bool:
    """Whether a message of ``ledger.entries.v1`` is an entry (not a forwarded tick)."""
    return _CODEC.decode(message.value()).schema_name == "JournalEntryPosted"


def drain_for(
    bootstrap_servers: str, topic: str, seconds: float, only: Callable[[Any], bool] | None = None
) -> list:
    """Every committed record of ``topic`` readable within ``seconds`` (to prove none extra)."""
    return read_committed(bootstrap_servers, topic, expected=10**9, timeout=seconds, only=only)


def end_offsets(bootstrap_servers: str, topic: str, partitions: int) -> dict[int, int]:
    """High watermark of each partition of ``topic``."""
    consumer = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": "offsets"})
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        }
    finally:
        consumer.close()


def encode_unvalidated(record: Record, **overrides: object) -> bytes:
    """Single-object Avro bytes of ``record`` with ``overrides`` that skip pydantic.

    Gives a message that decodes as Avro but fails validation (``currency="usd"``,
    a negative amount ...), as a buggy producer would send.
    """

    def plain(value: object) -> object:
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    datum = plain(record.model_dump(mode="python"))
    datum.update(overrides)
    schema = schema_for(type(record))
    body = io.BytesIO()
    schemaless_writer(body, schema.parsed, datum)
    return SINGLE_OBJECT_MAGIC + schema.fingerprint + body.getvalue()


class CommittedLog:
    """A topic read from the start at read_committed, by assignment (no group join), kept."""

    def __init__(self, settings, spec: TopicSpec) -> None:
        self.name = spec.name
        self.partitions = settings.partitions
        self.consumer = Consumer(
            {
                "bootstrap.servers": settings.bootstrap_servers,
                "group.id": f"reader-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        topic = settings.topic_prefix + spec.name
        self.consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(self.partitions)]
        )
        self.messages: list = []

    def wait_for(self, count: int, timeout: float) -> None:
        """Read until ``count`` records were committed; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name} holds {len(self.messages)} of {count} records after"
                    f" {timeout:.0f}s"
                )
            self._read(0.5)

    def read_for(self, seconds: float) -> None:
        """Keep reading for ``seconds`` (to see records beyond those expected)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._read(0.5)

    def _read(self, timeout: float) -> None:
        for message in self.consumer.consume(1000, timeout):
            if message.error() is None:
                self.messages.append(message)
            elif message.error().code() != KafkaError._PARTITION_EOF:
                raise RuntimeError(message.error())

    def by_partition(self) -> dict[int, list]:
        """Decoded records of each partition, in offset order."""
        ordered = sorted(self.messages, key=lambda m: (m.partition(), m.offset()))
        records: dict[int, list] = {p: [] for p in range(self.partitions)}
        for message in ordered:
            records[message.partition()].append(_CODEC.decode(message.value()))
        return records

    def close(self) -> None:
        self.consumer.close()


def send_month_by_month(
    producer: RecordProducer, log: CommittedLog, events: list, already: int = 0
) -> int:
    """Each month's events, then its tick once they are sequenced; returns records in the log.

    ``already``: records the log holds before these (an earlier call's result).
    """
    expected = already
    batch: list = []
    for event in [*events, None]:
        if event is not None and not isinstance(event, ClockAdvanced):
            batch.append(event)
            continue
        expected += producer.send_all(batch)
        log.wait_for(expected, timeout=120)
        batch = []
        if event is not None:
            producer.send_all([event])
            expected += log.partitions
    log.wait_for(expected, timeout=120)
    return expected
