"""Run workers as subprocesses (as production does) and read topics back, for integration tests."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from fastavro import schemaless_writer

from ledger.events import Record
from streams.schemas import schema_for
from streams.serde import SINGLE_OBJECT_MAGIC
from streams.settings import Settings, load_settings, worker_environment

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
    bootstrap_servers: str, topic: str, expected: int, timeout: float = 90.0
) -> list:
    """Read ``topic`` from the start at read_committed until ``expected`` records or timeout."""
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
            records.append(message)
    finally:
        consumer.close()
    return records


def drain_for(bootstrap_servers: str, topic: str, seconds: float) -> list:
    """Every committed record of ``topic`` readable within ``seconds`` (to prove none extra)."""
    return read_committed(bootstrap_servers, topic, expected=10**9, timeout=seconds)


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
