"""Reading a topic to its end at read_committed: for CLIs, the demo and reconciliation.

Must not import faust.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from streams.settings import Settings, kafka_client_config

# A safety net only: reading ends when every assigned partition reported its end.
QUIET_POLLS_LIMIT = 60
ASSIGNMENT_TIMEOUT_SECONDS = 60.0


def committed_reader(settings: Settings, group: str | None = None) -> Consumer:
    """A read_committed consumer from the earliest offset; a throwaway group by default."""
    return Consumer(
        kafka_client_config(
            settings,
            {
                "group.id": group or f"revledger-reader-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
            },
        )
    )


def read_to_end(consumer: Consumer) -> Iterator[Message]:
    """Yield the subscribed topics' records until every assigned partition is at its end.

    Waits for the group to assign partitions first (a join takes seconds), then stops once
    each assigned partition has reported end-of-partition since its last record; quiet
    polls only end the read as a safety net (:data:`QUIET_POLLS_LIMIT`).
    """
    at_end: set[tuple[str, int]] = set()
    quiet = 0
    waited = 0.0
    while True:
        assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        if assigned and assigned <= at_end:
            return
        if not assigned and waited > ASSIGNMENT_TIMEOUT_SECONDS:
            raise RuntimeError("no partition was assigned to the reader in time")
        message = consumer.poll(0.5)
        if message is None:
            waited += 0.5
            quiet += 1 if assigned else 0
            if quiet >= QUIET_POLLS_LIMIT:
                return
            continue
        error = message.error()
        if error:
            if error.code() == KafkaError._PARTITION_EOF:
                at_end.add((message.topic(), message.partition()))
                continue
            if error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                # A topic created a moment ago may not be in the metadata yet.
                waited += 0.5
                continue
            raise RuntimeError(f"reading {message.topic()} failed: {error}")
        quiet = 0
        at_end.discard((message.topic(), message.partition()))
        yield message


def read_partitions_to_end(settings: Settings, topic: str) -> Iterator[Message]:
    """Every committed record of ``topic``, each partition from its start to its end.

    Assigns the partitions directly (a throwaway group that never joins nor commits), so
    there is no group join to wait for, and stops when every partition reports its end.
    """
    consumer = Consumer(
        kafka_client_config(
            settings,
            {
                "group.id": f"revledger-reader-{uuid.uuid4().hex}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            },
        )
    )
    try:
        metadata = consumer.list_topics(topic, timeout=30.0).topics[topic]
        if metadata.error is not None:
            raise KafkaException(metadata.error)
        partitions = sorted(metadata.partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        left = set(partitions)
        while left:
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(error)
                left.discard(message.partition())
                continue
            yield message
    finally:
        consumer.close()
