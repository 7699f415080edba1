"""``revledger dlq list|redrive``: read dead-letter records, and put them back where they came from.

Redrive re-produces each record's original key, value and headers to its source topic
and partition, with a ``redrive.of`` header naming the DLQ record. It runs in one Kafka
transaction with the commit of the redrive group's DLQ offsets, so a record is redriven
once even if the command is run again or killed half-way. A redriven event that was
posted meanwhile is a duplicate (same event id, same content) and changes nothing.

Must not import faust.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from confluent_kafka import Consumer, Message, Producer

from streams.devstack_env import settings_from_devstack
from streams.messages import DlqRecord
from streams.reading import committed_reader, read_to_end
from streams.serde import Codec, DecodeError
from streams.settings import Settings
from streams.topics import DLQ


def read_dlq(consumer: Consumer, codec: Codec) -> Iterator[tuple[Message, DlqRecord | None]]:
    """Yield (kafka message, DLQ record or None when it does not decode) to the end."""
    for message in read_to_end(consumer):
        try:
            record = codec.decode(message.value())
        except DecodeError:
            record = None
        yield message, record if isinstance(record, DlqRecord) else None


def list_dlq(settings: Settings, reason: str | None, limit: int) -> int:
    """Print DLQ records (oldest first), optionally only those with ``reason``."""
    consumer = committed_reader(settings)
    consumer.subscribe([settings.topic_prefix + DLQ.name])
    shown = 0
    counts: dict[str, int] = {}
    try:
        for message, record in read_dlq(consumer, Codec()):
            code = record.reason if record else "undecodable_dlq_record"
            counts[code] = counts.get(code, 0) + 1
            if (reason and code != reason) or shown >= limit:
                continue
            shown += 1
            where = f"{record.source_topic}[{record.source_partition}]@{record.source_offset}"
            print(f"{message.partition()}:{message.offset()}\t{code}\t{where}\t{record.message}")
    finally:
        consumer.close()
    summary = ", ".join(f"{code} {n}" for code, n in sorted(counts.items())) or "empty"
    print(f"dlq: {summary}")
    return 0


def redrive(settings: Settings, reason: str | None) -> int:
    """Re-produce DLQ records (all, or those with ``reason``) to their source topics."""
    group = f"revledger-dlq-redrive-{reason or 'all'}"
    consumer = committed_reader(settings, group)
    consumer.subscribe([settings.topic_prefix + DLQ.name])
    producer = Producer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "transactional.id": f"{settings.app_id}-{group}",
            "partitioner": "murmur2_random",
        }
    )
    producer.init_transactions()
    producer.begin_transaction()
    sent = 0
    try:
        for message, record in read_dlq(consumer, Codec()):
            if record is None or (reason and record.reason != reason):
                continue
            headers = [*record.original_headers.items()]
            headers.append(("redrive.of", f"{message.partition()}:{message.offset()}".encode()))
            producer.produce(
                record.source_topic,
                key=record.original_key,
                value=record.original_value,
                partition=record.source_partition,
                headers=headers,
            )
            sent += 1
        producer.send_offsets_to_transaction(
            consumer.position(consumer.assignment()), consumer.consumer_group_metadata()
        )
        producer.commit_transaction()
    except BaseException:
        producer.abort_transaction()
        raise
    finally:
        consumer.close()
    print(f"redrove {sent} records" + (f" with reason {reason}" if reason else ""))
    return 0


def main_dlq(args: argparse.Namespace) -> int:
    """Entry point of ``revledger dlq``."""
    settings = settings_from_devstack()
    if args.action == "list":
        return list_dlq(settings, args.reason, args.limit)
    return redrive(settings, args.reason)
