"""Producing canonical records the way every source must: right topic, key and partitioner.

- The topic comes from the record type (:data:`streams.topics.TOPICS` lists the records
  each topic carries).
- Customer events are keyed by customer id and partitioned with murmur2 (librdkafka's
  ``murmur2_random``), the Java client's and Faust's partitioner, so one customer id maps
  to one partition number on every topic.
- Control records (clock, period close) go once to every partition of ``control.v1``.
- Reference records are keyed by what they describe, so compaction keeps the latest.

Must not import faust.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from confluent_kafka import Producer

from ledger.events import (
    EntityConfigured,
    Event,
    FxRate,
    GlMapping,
    ProductMapping,
    Record,
)
from streams.serde import Codec
from streams.settings import Settings, kafka_client_config
from streams.topics import CONTROL, ENTRIES, LEDGER_INPUTS, TOPICS, TopicSpec

# Where a source writes each record type. ``ledger.inputs.v1`` also carries customer
# events and ``ledger.entries.v1`` the control records the ledger applied, but only the
# worker writes them: they are never a source's destination.
TOPIC_OF_RECORD: Mapping[str, TopicSpec] = {
    name: spec
    for spec in TOPICS
    if spec is not LEDGER_INPUTS
    for name in spec.records
    if spec is not ENTRIES or name == "JournalEntryPosted"
}


class UnroutableRecord(ValueError):
    """Raised for a record that no topic carries."""


def topic_for(record: Record) -> TopicSpec:
    """The topic that carries ``record``'s type."""
    try:
        return TOPIC_OF_RECORD[record.schema_name]
    except KeyError as exc:
        raise UnroutableRecord(f"no topic carries {record.schema_name}") from exc


def key_for(record: Record) -> bytes | None:
    """The Kafka key of ``record`` (None for control records, sent to every partition)."""
    if isinstance(record, Event):
        return record.customer_id.encode()
    if isinstance(record, EntityConfigured):
        return record.entity.encode()
    if isinstance(record, FxRate):
        return f"{record.base_currency}/{record.quote_currency}@{record.rate_date}".encode()
    if isinstance(record, ProductMapping):
        return f"{record.product_id}@{record.effective_from}".encode()
    if isinstance(record, GlMapping):
        family = record.family or "*"
        return f"{record.entity}/{record.account}/{family}@{record.effective_from}".encode()
    return None


class RecordProducer:
    """Encodes and produces canonical records to their topics (idempotent producer)."""

    def __init__(self, settings: Settings, codec: Codec | None = None) -> None:
        self.settings = settings
        self.codec = codec or Codec(schema_registry_url=settings.schema_registry_url)
        self._producer = Producer(
            kafka_client_config(
                settings,
                {"partitioner": "murmur2_random", "enable.idempotence": True, "linger.ms": 5},
            )
        )
        self._errors: list[str] = []

    def _on_delivery(self, error: object, message: object) -> None:
        if error is not None:
            self._errors.append(str(error))

    def send(self, record: Record) -> None:
        """Queue ``record`` for its topic (every partition for control records)."""
        spec = topic_for(record)
        topic = self.settings.topic_prefix + spec.name
        value = self.codec.encode(record, topic=topic)
        if spec is CONTROL:
            for partition in range(spec.partitions(self.settings.partitions)):
                self._produce(topic, None, value, partition)
            return
        self._produce(topic, key_for(record), value, None)

    def send_raw(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Queue bytes as they are (tests of bad input, redrive)."""
        self._produce(self.settings.topic_prefix + topic, key, value, None)

    def send_all(self, records: Iterable[Record]) -> int:
        """Queue every record, then flush; returns how many were sent."""
        count = 0
        for record in records:
            self.send(record)
            count += 1
        self.flush()
        return count

    def flush(self, timeout: float = 60.0) -> None:
        """Wait for delivery of everything queued; raise if any delivery failed."""
        left = self._producer.flush(timeout)
        if left or self._errors:
            raise RuntimeError(f"{left} records undelivered; errors: {self._errors[:3]}")

    def _produce(self, topic: str, key: bytes | None, value: bytes, partition: int | None) -> None:
        kwargs = {} if partition is None else {"partition": partition}
        while True:
            try:
                self._producer.produce(
                    topic, key=key, value=value, on_delivery=self._on_delivery, **kwargs
                )
                return
            except BufferError:
                self._producer.poll(0.1)
