"""Reading a topic to its end at read_committed: for CLIs, the demo and reconciliation.

Must not import faust.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

from confluent_kafka import Consumer, KafkaError, Message

from streams.settings import Settings

# Polls without a record before the end of the topic is assumed (0.5 s each).
IDLE_POLLS_AT_END = 4


def committed_reader(settings: Settings, group: str | None = None) -> Consumer:
    """A read_committed consumer from the earliest offset; a throwaway group by default."""
    return Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": group or f"revledger-reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )


def read_to_end(consumer: Consumer) -> Iterator[Message]:
    """Yield the subscribed topics' records until none arrives for a while."""
    idle = 0
    while idle < IDLE_POLLS_AT_END:
        message = consumer.poll(0.5)
        if message is None:
            idle += 1
            continue
        if message.error():
            if message.error().code() == KafkaError._PARTITION_EOF:
                continue
            if message.error().code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                # A topic created a moment ago may not be in the metadata yet.
                idle += 1
                continue
            raise RuntimeError(f"reading {message.topic()} failed: {message.error()}")
        idle = 0
        yield message
