"""Dead-letter records: why a message could not be processed, with its original bytes.

A DLQ record goes to partition p of ``dlq.v1`` when the failing message came from
partition p, inside the same transaction as the offset commit: the message is then
either processed or dead-lettered, never both and never neither.

The Kafka record keeps the original key as its key; its value is an Avro ``DlqRecord``
holding the original value and headers; ``error.*`` and ``source.*`` headers repeat
the reason for tools that read headers only. ``revledger dlq redrive`` re-produces the
original key, value and headers to the source topic.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass

from streams.messages import DlqRecord
from streams.serde import truncate


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """Where a failing message came from, with its bytes exactly as read."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a message goes to the DLQ: a reason code (``snake_case``) and a message."""

    reason: str
    message: str
    error_class: str = "bad_input"
    event_id: str | None = None


# Headers the sequencer adds when it copies a record to ``ledger.inputs.v1``: where the
# record was first read, so a DLQ record names (and a redrive returns to) the origin.
ORIGIN_TOPIC = "origin.topic"
ORIGIN_PARTITION = "origin.partition"
ORIGIN_OFFSET = "origin.offset"
_ORIGIN = (ORIGIN_TOPIC, ORIGIN_PARTITION, ORIGIN_OFFSET)


def source_of(message: object) -> SourceRecord:
    """The :class:`SourceRecord` of a Faust ``Message`` (``event.message``).

    A record copied by the sequencer names its origin topic, partition and offset; the
    origin headers are taken off again so the original headers are kept as they were.
    """
    headers = getattr(message, "headers", None) or ()
    if isinstance(headers, dict):
        headers = headers.items()
    pairs = tuple((str(k), bytes(v or b"")) for k, v in headers)
    origin = {k: v.decode() for k, v in pairs if k in _ORIGIN}
    return SourceRecord(
        topic=origin.get(ORIGIN_TOPIC, message.topic),  # type: ignore[attr-defined]
        partition=int(origin.get(ORIGIN_PARTITION, message.partition)),  # type: ignore[attr-defined]
        offset=int(origin.get(ORIGIN_OFFSET, message.offset)),  # type: ignore[attr-defined]
        key=message.key,  # type: ignore[attr-defined]
        value=message.value,  # type: ignore[attr-defined]
        headers=tuple((k, v) for k, v in pairs if k not in _ORIGIN),
    )


def origin_headers(source: SourceRecord) -> list[tuple[str, bytes]]:
    """The original headers of ``source`` plus its origin, for a sequenced copy."""
    return [
        *source.headers,
        (ORIGIN_TOPIC, source.topic.encode()),
        (ORIGIN_PARTITION, str(source.partition).encode()),
        (ORIGIN_OFFSET, str(source.offset).encode()),
    ]


def dlq_record(
    failure: Failure, source: SourceRecord, *, service_version: str, failed_at: dt.datetime
) -> DlqRecord:
    """Build the DLQ record for ``source`` failing with ``failure``."""
    return DlqRecord(
        reason=failure.reason,
        error_class=failure.error_class,
        message=truncate(failure.message),
        source_topic=source.topic,
        source_partition=source.partition,
        source_offset=source.offset,
        original_key=source.key,
        original_value=source.value,
        original_headers=dict(source.headers),
        failed_at=failed_at,
        service_version=service_version,
        event_id=failure.event_id,
    )


def dlq_headers(record: DlqRecord) -> Sequence[tuple[str, bytes]]:
    """The ``error.*`` / ``source.*`` headers that repeat a DLQ record's reason."""
    return (
        ("error.code", record.reason.encode()),
        ("error.class", record.error_class.encode()),
        ("error.message", record.message.encode()),
        ("source.topic", record.source_topic.encode()),
        ("source.partition", str(record.source_partition).encode()),
        ("source.offset", str(record.source_offset).encode()),
        ("service.version", record.service_version.encode()),
        ("failed.at", record.failed_at.isoformat().encode()),
    )


def source_token(source: SourceRecord) -> bytes:
    """Pack ``source`` into the opaque token a held event keeps (for a later DLQ record)."""
    return json.dumps(
        {
            "topic": source.topic,
            "partition": source.partition,
            "offset": source.offset,
            "key": None if source.key is None else base64.b64encode(source.key).decode(),
            "value": None if source.value is None else base64.b64encode(source.value).decode(),
            "headers": [[k, base64.b64encode(v).decode()] for k, v in source.headers],
        },
        separators=(",", ":"),
    ).encode()


def source_from_token(token: bytes) -> SourceRecord:
    """The :class:`SourceRecord` packed by :func:`source_token`."""
    raw = json.loads(token)
    return SourceRecord(
        topic=raw["topic"],
        partition=raw["partition"],
        offset=raw["offset"],
        key=None if raw["key"] is None else base64.b64decode(raw["key"]),
        value=None if raw["value"] is None else base64.b64decode(raw["value"]),
        headers=tuple((k, base64.b64decode(v)) for k, v in raw["headers"]),
    )
