"""Topic administration with confluent-kafka's AdminClient: create what the table declares.

Must not import faust: this runs in CLIs and tests before any worker exists.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from streams.settings import Settings, kafka_client_config
from streams.topics import TOPICS, TopicSpec

_ADMIN_TIMEOUT_SECONDS = 30.0


class TopicMismatch(RuntimeError):
    """Raised when an existing topic's partition count differs from the declared one.

    A co-partitioned topic with another count would break the rule that partition p of
    every customer-keyed topic belongs to one task.
    """


def admin_client(settings: Settings | str) -> AdminClient:
    """An AdminClient with the brokers and security settings of ``settings``.

    A bare bootstrap string (no security settings) is still accepted for callers that
    have no :class:`Settings`; pass the settings wherever they are at hand.
    """
    if isinstance(settings, str):
        return AdminClient({"bootstrap.servers": settings})
    return AdminClient(kafka_client_config(settings))


def ensure_topics(settings: Settings, specs: tuple[TopicSpec, ...] = TOPICS) -> list[str]:
    """Create every topic in ``specs`` that does not exist; check the ones that do.

    Returns:
        The names of the topics created now.

    Raises:
        TopicMismatch: an existing topic has another partition count.
        KafkaException: the broker refused a creation for another reason.
    """
    admin = admin_client(settings)
    existing = admin.list_topics(timeout=_ADMIN_TIMEOUT_SECONDS).topics
    wanted = {f"{settings.topic_prefix}{spec.name}": spec for spec in specs}
    for name, spec in wanted.items():
        if name in existing:
            have = len(existing[name].partitions)
            want = spec.partitions(settings.partitions)
            if have != want:
                raise TopicMismatch(f"{name} has {have} partitions, declared {want}")
    new = [
        NewTopic(
            name,
            num_partitions=spec.partitions(settings.partitions),
            replication_factor=settings.replication_factor,
            config=dict(spec.config),
        )
        for name, spec in wanted.items()
        if name not in existing
    ]
    if not new:
        return []
    for future in admin.create_topics(new, operation_timeout=_ADMIN_TIMEOUT_SECONDS).values():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
    return [topic.topic for topic in new]


def ensure_changelog_topics(
    settings: Settings, names: Iterable[str], timeout: float = _ADMIN_TIMEOUT_SECONDS
) -> list[str]:
    """Create the app's table changelog topics before the worker joins its group.

    Faust creates them itself while starting, but its first partition assignment can
    come before the broker's metadata shows a topic created a moment earlier: the
    assignor then ignores the topic ("Ignoring missing topic"), and the first write to
    that table fails with ``PartitionsMismatch`` (seen on a loaded 2-core machine).
    Created here, compacted, with the co-partitioned count, and waited for until the
    metadata lists every partition.

    Returns:
        The names created now.
    """
    admin = admin_client(settings)
    wanted = sorted(set(names))
    existing = admin.list_topics(timeout=timeout).topics
    new = [
        NewTopic(
            name,
            num_partitions=settings.partitions,
            replication_factor=settings.replication_factor,
            config={"cleanup.policy": "compact"},
        )
        for name in wanted
        if name not in existing
    ]
    if new:
        for future in admin.create_topics(new, operation_timeout=timeout).values():
            try:
                future.result()
            except KafkaException as exc:
                if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                    raise
    deadline = time.monotonic() + timeout
    while True:
        listed = admin.list_topics(timeout=timeout).topics
        missing = [n for n in wanted if n not in listed or not listed[n].partitions]
        if not missing:
            return [topic.topic for topic in new]
        if time.monotonic() > deadline:
            raise TimeoutError(f"changelog topics not in the metadata: {', '.join(missing)}")
        time.sleep(0.2)
