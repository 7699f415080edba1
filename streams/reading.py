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


def _assigned_reader(
    settings: Settings, topics: list[str], extra: dict | None = None
) -> tuple[Consumer, set[tuple[str, int]]]:
    """A consumer assigned every partition of ``topics`` from its start, and those partitions.

    A throwaway group that never joins nor commits: no group join to wait for.

    Raises:
        KafkaException: a topic does not exist.
    """
    consumer = Consumer(
        kafka_client_config(
            settings,
            {
                "group.id": f"revledger-reader-{uuid.uuid4().hex}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                **(extra or {}),
            },
        )
    )
    try:
        assignment = []
        for topic in topics:
            metadata = consumer.list_topics(topic, timeout=30.0).topics[topic]
            if metadata.error is not None:
                raise KafkaException(metadata.error)
            assignment += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions]
        consumer.assign(sorted(assignment, key=lambda tp: (tp.topic, tp.partition)))
    except BaseException:
        consumer.close()
        raise
    return consumer, {(tp.topic, tp.partition) for tp in assignment}


def read_partitions_to_end(settings: Settings, topic: str) -> Iterator[Message]:
    """Every committed record of ``topic``, each partition from its start to its end.

    Assigns the partitions directly (see :func:`_assigned_reader`) and stops when every
    partition reports its end.
    """
    consumer, left = _assigned_reader(settings, [topic])
    try:
        while left:
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(error)
                left.discard((message.topic(), message.partition()))
                continue
            yield message
    finally:
        consumer.close()


def read_topics_to_end(
    settings: Settings, topics: list[str], fetch_wait_ms: int | None = None
) -> dict[str, list[Message]]:
    """Every committed record of ``topics``, by topic, each partition from start to end.

    One consumer for all of them: a consumer per topic costs a start and an empty fetch
    held by the broker to find each end (~0.5 s a topic). The end of a partition is known
    only from an empty fetch; ``fetch_wait_ms`` bounds how long the broker holds one.

    Raises:
        KafkaException: a topic does not exist, or reading failed.
    """
    extra = {} if fetch_wait_ms is None else {"fetch.wait.max.ms": fetch_wait_ms}
    consumer, left = _assigned_reader(settings, topics, extra)
    read: dict[str, list[Message]] = {topic: [] for topic in topics}
    try:
        while left:
            for message in consumer.consume(500, 0.02):
                error = message.error()
                if error is None:
                    read[message.topic()].append(message)
                elif error.code() == KafkaError._PARTITION_EOF:
                    left.discard((message.topic(), message.partition()))
                else:
                    raise KafkaException(error)
    finally:
        consumer.close()
    return read
